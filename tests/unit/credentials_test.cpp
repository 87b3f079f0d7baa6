// The CLI's registry credentials (tools/shoal/credentials.h) against docker's config.json:
// the keys docker writes, the hosts a key matches, the entries read back, and the file kept
// 0600 with its other keys when written.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>

#include "tests/support/tempdir.h"
#include "tools/shoal/credentials.h"
#include "tools/shoal/services.h"

using nlohmann::json;
using namespace shoal::cli;

namespace {

// "user:secret" in base64, as docker writes "auth".
constexpr const char* kUserSecret = "dXNlcjpzZWNyZXQ=";

Credentials mustFind(const json& config, const std::string& host) {
  auto c = credentialsFor(config, host);
  REQUIRE_MESSAGE(c, (c ? "" : c.error().message));
  REQUIRE_MESSAGE(c->has_value(), "no credentials found for " << host);
  return **c;
}

}  // namespace

TEST_CASE("login keys are docker's: Docker Hub's v1 URL, else host[:port]") {
  CHECK(*loginKey("") == "https://index.docker.io/v1/");
  CHECK(*loginKey("docker.io") == "https://index.docker.io/v1/");
  CHECK(*loginKey("index.docker.io") == "https://index.docker.io/v1/");
  CHECK(*loginKey("https://index.docker.io/v1/") == "https://index.docker.io/v1/");
  CHECK(*loginKey("registry-1.docker.io") == "https://index.docker.io/v1/");
  CHECK(*loginKey("127.0.0.1:5000") == "127.0.0.1:5000");
  CHECK(*loginKey("https://Registry.Example.com/v2/") == "registry.example.com");
  CHECK(*loginKey("http://localhost:5000") == "localhost:5000");
  auto bad = loginKey("https:///v2");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("host[:port]") != std::string::npos);
}

TEST_CASE("a key's registry host is image_ref's name for it") {
  CHECK(registryHostOf("https://index.docker.io/v1/") == "docker.io");
  CHECK(registryHostOf("registry-1.docker.io") == "docker.io");
  CHECK(registryHostOf("https://host:5000/v2/") == "host:5000");
  CHECK(registryHostOf("host:5000") == "host:5000");
  CHECK(registryHostOf("host:5001") != "host:5000");
}

TEST_CASE("credentials are found by the image's registry host") {
  json config = {{"auths",
                  {{"https://index.docker.io/v1/", {{"auth", kUserSecret}}},
                   {"https://127.0.0.1:5000", {{"auth", "YWxpY2U6cDpzcw=="}}},  // alice:p:ss
                   {"other:5000", {{"username", "bob"}, {"password", "pw"}}}}},
                 {"credsStore", "desktop"}};
  auto hub = mustFind(config, "docker.io");
  CHECK(hub.username == "user");
  CHECK(hub.password == "secret");
  auto local = mustFind(config, "127.0.0.1:5000");
  CHECK(local.username == "alice");
  CHECK(local.password == "p:ss");  // only the first colon splits
  CHECK(mustFind(config, "other:5000").username == "bob");
  auto none = credentialsFor(config, "127.0.0.1:5001");
  REQUIRE(none);
  CHECK_FALSE(none->has_value());
  auto empty = credentialsFor(json::object(), "docker.io");
  REQUIRE(empty);
  CHECK_FALSE(empty->has_value());
}

TEST_CASE("an entry that is there but broken is an error naming its key") {
  json config = {{"auths", {{"host:5000", {{"auth", "not base64!"}}}}}};
  auto c = credentialsFor(config, "host:5000");
  REQUIRE_FALSE(c);
  CHECK(c.error().message.find("host:5000") != std::string::npos);
  CHECK(c.error().message.find("shoal login host:5000") != std::string::npos);
  config = {{"auths", {{"host:5000", {{"auth", "bm9jb2xvbg=="}}}}}};  // "nocolon"
  CHECK_FALSE(credentialsFor(config, "host:5000"));
  // An entry a credential helper keeps (docker writes {}) holds nothing here.
  config = {{"auths", {{"host:5000", json::object()}}}};
  auto helper = credentialsFor(config, "host:5000");
  REQUIRE(helper);
  CHECK_FALSE(helper->has_value());
}

TEST_CASE("storing and removing keep the file's other keys") {
  json config = {{"proxies", {{"default", {{"httpProxy", "http://p:3128"}}}}},
                 {"auths", {{"keep:5000", {{"auth", kUserSecret}}}}}};
  config = withCredentials(config, "127.0.0.1:5000", {"alice", "pw", ""});
  CHECK(config["proxies"]["default"]["httpProxy"] == "http://p:3128");
  CHECK(config["auths"]["127.0.0.1:5000"]["auth"] == "YWxpY2U6cHc=");
  CHECK(mustFind(config, "127.0.0.1:5000").password == "pw");
  CHECK(removeCredentials(config, "127.0.0.1:5000"));
  CHECK_FALSE(config["auths"].contains("127.0.0.1:5000"));
  CHECK(config["auths"].contains("keep:5000"));
  CHECK_FALSE(removeCredentials(config, "127.0.0.1:5000"));
  config = withCredentials(config, "https://index.docker.io/v1/", {"u", "p", ""});
  CHECK(removeCredentials(config, ""));  // logout without a server is Docker Hub's
  CHECK_FALSE(config["auths"].contains("https://index.docker.io/v1/"));
}

TEST_CASE("config.json is written 0600 and atomically, and read back") {
  shoal::testing::TempDir dir;
  std::string path = dir / "docker/config.json";
  auto absent = readConfig(path);
  REQUIRE(absent);
  CHECK(*absent == json::object());
  REQUIRE(writeConfig(path, withCredentials(json::object(), "h:1", {"a", "b", ""})));
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  auto back = readConfig(path);
  REQUIRE(back);
  CHECK(mustFind(*back, "h:1").username == "a");
  std::ofstream(path) << "{not json";
  auto broken = readConfig(path);
  REQUIRE_FALSE(broken);
  CHECK(broken.error().message.find(path) != std::string::npos);
}

TEST_CASE("the config file is $DOCKER_CONFIG's, else ~/.docker's") {
  const char* saved = std::getenv("DOCKER_CONFIG");
  std::string keep = saved ? saved : "";
  ::setenv("DOCKER_CONFIG", "/tmp/dc", 1);
  CHECK(*configPath() == "/tmp/dc/config.json");
  ::unsetenv("DOCKER_CONFIG");
  ::setenv("HOME", "/home/u", 1);
  CHECK(*configPath() == "/home/u/.docker/config.json");
  if (saved) ::setenv("DOCKER_CONFIG", keep.c_str(), 1);
}

TEST_CASE("service inspect never prints --with-registry-auth's credentials") {
  shoal::objects::ServiceT s;
  s.id = "svc1";
  s.spec = std::make_unique<shoal::objects::ServiceSpecT>();
  s.spec->task = std::make_unique<shoal::objects::TaskSpecT>();
  s.spec->task->container = std::make_unique<shoal::objects::ContainerSpecT>();
  s.spec->task->container->image = "127.0.0.1:5000/app:1";
  s.spec->task->container->registry_auth = "eyJ1c2VybmFtZSI6ImEiLCJwYXNzd29yZCI6InNlY3JldCJ9";
  json j = serviceInspect(s, {}, 0);
  CHECK(j["Spec"]["TaskTemplate"]["ContainerSpec"]["RegistryAuth"] == "<redacted>");
  CHECK(j.dump().find("eyJ1c2Vy") == std::string::npos);
}
