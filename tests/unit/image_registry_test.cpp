// The pure parts of the image store and the registry client: WWW-Authenticate challenges,
// which registries get plain HTTP, token answers, registry error bodies, image configs, and
// docker's X-Registry-Auth encoding.
#include <doctest/doctest.h>

#include "services/agentd/image_store.h"
#include "services/agentd/registry.h"

namespace shoal::agentd {
namespace {

using namespace registry;

TEST_CASE("parseChallenge: docker's bearer challenge") {
  auto ch = parseChallenge(
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",)"
      R"(scope="repository:library/busybox:pull")");
  REQUIRE(ch);
  CHECK(ch->scheme == "bearer");
  CHECK(ch->param("realm") == "https://auth.docker.io/token");
  CHECK(ch->param("service") == "registry.docker.io");
  CHECK(ch->param("scope") == "repository:library/busybox:pull");
  CHECK(ch->param("error").empty());
}

TEST_CASE("parseChallenge: basic, unquoted values, spaces, escapes, case") {
  auto basic = parseChallenge(R"(Basic realm="shoal-test")");
  REQUIRE(basic);
  CHECK(basic->scheme == "basic");
  CHECK(basic->param("realm") == "shoal-test");
  auto loose = parseChallenge(R"(BEARER Realm=http://x/t , Service = "a\"b", scope="a,b")");
  REQUIRE(loose);
  CHECK(loose->scheme == "bearer");
  CHECK(loose->param("realm") == "http://x/t");
  CHECK(loose->param("service") == "a\"b");
  CHECK(loose->param("scope") == "a,b");
  CHECK(parseChallenge("Bearer")->params.empty());
}

TEST_CASE("parseChallenge: broken headers are errors quoting them") {
  auto unterminated = parseChallenge(R"(Bearer realm="https://x)");
  REQUIRE_FALSE(unterminated);
  CHECK(unterminated.error().message.find("unterminated") != std::string::npos);
  CHECK_FALSE(parseChallenge("Bearer realm"));
  CHECK_FALSE(parseChallenge("   "));
}

TEST_CASE("plainHttp: loopback and the insecure list only") {
  CHECK(plainHttp("localhost:5000", {}));
  CHECK(plainHttp("127.0.0.1:5000", {}));
  CHECK(plainHttp("127.1.2.3", {}));
  CHECK(plainHttp("[::1]:5000", {}));
  CHECK_FALSE(plainHttp("docker.io", {}));
  CHECK_FALSE(plainHttp("128.0.0.1:5000", {}));
  CHECK_FALSE(plainHttp("127.0.0.1.evil.com", {}));
  CHECK(plainHttp("10.0.0.5:5000", {"10.0.0.5:5000"}));
  CHECK_FALSE(plainHttp("10.0.0.5:5001", {"10.0.0.5:5000"}));
}

TEST_CASE("parseToken: token or access_token, and its lifetime") {
  auto t = parseToken(R"({"token":"abc","expires_in":300})");
  REQUIRE(t);
  CHECK(t->value == "abc");
  CHECK(t->lifetime == std::chrono::seconds(300));
  auto oauth = parseToken(R"({"access_token":"xyz"})");
  REQUIRE(oauth);
  CHECK(oauth->value == "xyz");
  CHECK(oauth->lifetime == std::chrono::seconds(60));
  CHECK_FALSE(parseToken(R"({"expires_in":300})"));
  CHECK_FALSE(parseToken("<html>"));
}

TEST_CASE("errorSummary: a registry's error document as one line") {
  CHECK(errorSummary(R"({"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]})") ==
        "manifest unknown");
  CHECK(errorSummary(R"({"errors":[{"message":"a"},{"message":"b"}]})") == "a; b");
  CHECK(errorSummary("404 page not found").empty());
}

TEST_CASE("parseImageConfig: what a container takes from its image") {
  auto c = parseImageConfig(R"({"architecture":"amd64","os":"linux","config":{
      "Entrypoint":["/init"],"Cmd":["sh","-c","x"],"Env":["PATH=/bin"],"User":"nobody",
      "WorkingDir":"/srv","StopSignal":"SIGQUIT","Labels":{"a":"b"},
      "Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":1000000000,"Retries":2}}})");
  REQUIRE_MESSAGE(c, (c ? "" : c.error().message));
  CHECK(c->architecture == "amd64");
  CHECK(c->entrypoint == std::vector<std::string>{"/init"});
  CHECK(c->cmd == std::vector<std::string>{"sh", "-c", "x"});
  CHECK(c->env == std::vector<std::string>{"PATH=/bin"});
  CHECK(c->user == "nobody");
  CHECK(c->workingDir == "/srv");
  CHECK(c->stopSignal == "SIGQUIT");
  CHECK(c->labels.at("a") == "b");
  REQUIRE(c->healthcheck);
  CHECK(c->healthcheck->test == std::vector<std::string>{"CMD-SHELL", "true"});
  CHECK(c->healthcheck->interval == 1000000000);
  CHECK(c->healthcheck->retries == 2);
}

TEST_CASE("parseImageConfig: nulls are absent, wrong types are errors naming the field") {
  auto c = parseImageConfig(R"({"architecture":"arm64","os":"linux","config":{"Cmd":null,
      "Labels":null}})");
  REQUIRE(c);
  CHECK(c->cmd.empty());
  CHECK_FALSE(c->healthcheck);
  CHECK(parseImageConfig(R"({"os":"linux"})"));
  auto bad = parseImageConfig(R"({"config":{"Cmd":"sh"}})");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("Cmd") != std::string::npos);
  auto badLabel = parseImageConfig(R"({"config":{"Labels":{"a":1}}})");
  REQUIRE_FALSE(badLabel);
  CHECK(badLabel.error().message.find("label a") != std::string::npos);
  CHECK_FALSE(parseImageConfig(R"({"config":{"Healthcheck":{"Interval":-1}}})"));
  CHECK_FALSE(parseImageConfig("[]"));
}

TEST_CASE("registry auth: docker's X-Registry-Auth encoding round-trips") {
  RegistryAuth a;
  a.username = "alice";
  a.password = "p@ss:word/+";
  a.serverAddress = "127.0.0.1:5000";
  std::string encoded = encodeRegistryAuth(a);
  CHECK(encoded.find('+') == std::string::npos);  // URL-safe alphabet
  CHECK(encoded.find('/') == std::string::npos);
  auto back = decodeRegistryAuth(encoded);
  REQUIRE(back);
  CHECK(back->username == "alice");
  CHECK(back->password == "p@ss:word/+");
  CHECK(back->serverAddress == "127.0.0.1:5000");
  CHECK_FALSE(back->empty());
}

TEST_CASE("registry auth: the standard alphabet, an identity token; junk refused") {
  // base64 of {"identitytoken":"tok"} in the standard alphabet, without padding.
  auto t = decodeRegistryAuth("eyJpZGVudGl0eXRva2VuIjoidG9rIn0");
  REQUIRE(t);
  CHECK(t->identityToken == "tok");
  auto junk = decodeRegistryAuth("!!!");
  REQUIRE_FALSE(junk);
  CHECK(junk.error().message.find("not base64") != std::string::npos);
  CHECK_FALSE(decodeRegistryAuth("WzFd"));                  // [1]: not an object
  CHECK_FALSE(decodeRegistryAuth("eyJ1c2VybmFtZSI6MX0"));   // {"username":1}
}

}  // namespace
}  // namespace shoal::agentd
