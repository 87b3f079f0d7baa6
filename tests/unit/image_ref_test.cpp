// common/image_ref.h: docker's normalisation of image references, case by case.
#include <doctest/doctest.h>

#include <string>

#include "common/image_ref.h"

using shoal::image::parse;

namespace {

std::string full(const char* text) {
  auto r = parse(text);
  REQUIRE_MESSAGE(r.ok(), (r ? "" : r.error().message));
  return r->full();
}

std::string refusal(const char* text) {
  auto r = parse(text);
  REQUIRE_MESSAGE(!r.ok(), text, " was accepted");
  return r.error().message;
}

const std::string kDigest = "sha256:" + std::string(64, 'a');

}  // namespace

TEST_CASE("docker hub names get docker.io, library/ and latest") {
  CHECK(full("busybox") == "docker.io/library/busybox:latest");
  CHECK(full("busybox:1.36") == "docker.io/library/busybox:1.36");
  CHECK(full("me/app") == "docker.io/me/app:latest");
  CHECK(full("docker.io/busybox") == "docker.io/library/busybox:latest");
  CHECK(full("index.docker.io/me/app:2") == "docker.io/me/app:2");
  CHECK(full("registry-1.docker.io/library/nginx") == "docker.io/library/nginx:latest");
  auto r = parse("nginx:1");
  REQUIRE(r);
  CHECK(r->apiHost() == "registry-1.docker.io");
  CHECK(r->familiar() == "nginx:1");
  CHECK(r->manifestRef() == "1");
}

TEST_CASE("a first component with a dot, a port or localhost is a registry") {
  CHECK(full("localhost/app") == "localhost/app:latest");
  CHECK(full("localhost:5000/app:1.0") == "localhost:5000/app:1.0");
  CHECK(full("198.18.0.2:5000/tools/busybox") == "198.18.0.2:5000/tools/busybox:latest");
  CHECK(full("registry.example.com/a/b/c:v2") == "registry.example.com/a/b/c:v2");
  auto r = parse("localhost:5000/app");
  REQUIRE(r);
  CHECK(r->registry == "localhost:5000");
  CHECK(r->path == "app");  // no library/ outside docker.io
  CHECK(r->apiHost() == "localhost:5000");
  CHECK(r->familiar() == "localhost:5000/app:latest");
  CHECK(full("app/sub") == "docker.io/app/sub:latest");  // no dot, no port: a user name
}

TEST_CASE("digests, with and without a tag") {
  CHECK(full(("busybox@" + kDigest).c_str()) == "docker.io/library/busybox@" + kDigest);
  CHECK(full(("busybox:1@" + kDigest).c_str()) == "docker.io/library/busybox:1@" + kDigest);
  auto r = parse(("localhost:5000/app@" + kDigest).c_str());
  REQUIRE(r);
  CHECK(r->tag.empty());
  CHECK(r->manifestRef() == kDigest);
  CHECK(refusal("busybox@sha256:abc").find("64 hex digits") != std::string::npos);
  CHECK(refusal("busybox@sha256").find("algorithm:hex") != std::string::npos);
  CHECK(refusal(("busybox@sha256:" + std::string(64, 'A')).c_str()).find("0-9 and a-f") !=
        std::string::npos);
}

TEST_CASE("names and tags break docker's rules with a message that says which") {
  CHECK(refusal("") == "invalid image \"\": give a name, e.g. busybox or registry:5000/app:1.0");
  CHECK(refusal("Busybox") == "invalid image \"Busybox\": repository names must be lowercase");
  CHECK(refusal("busy box").find("component \"busy box\" is not valid") != std::string::npos);
  CHECK(refusal("me//app").find("component \"\"") != std::string::npos);
  CHECK(refusal("-app").find("is not valid") != std::string::npos);
  CHECK(refusal("app-").find("is not valid") != std::string::npos);
  CHECK(refusal("a-.b").find("is not valid") != std::string::npos);
  CHECK(refusal("a___b").find("is not valid") != std::string::npos);
  CHECK(full("a--b.c__d_e") == "docker.io/library/a--b.c__d_e:latest");
  CHECK(refusal("busybox:").find("tag \"\" is not valid") != std::string::npos);
  CHECK(refusal("busybox:.1").find("tag \".1\" is not valid") != std::string::npos);
  CHECK(refusal(("busybox:" + std::string(129, 'x')).c_str()).find("at most 128") !=
        std::string::npos);
  CHECK(refusal(("a/" + std::string(260, 'b')).c_str()).find("at most 255") != std::string::npos);
}
