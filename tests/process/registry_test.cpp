// The image store against a real registry (docs/containers.md "Images"): Debian's
// docker-registry on loopback (tests/support/registry.h), busybox pushed with
// tools/images/make-busybox-image and skopeo.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include "tests/support/registry.h"

namespace shoal {
namespace {

using testing::TestRegistry;

TEST_CASE("test registry: busybox pushed, its blobs in the registry's storage") {
  TestRegistry registry;
  std::string ref = registry.pushBusybox("busybox");
  CHECK(ref == registry.host() + "/busybox:latest");
  CHECK(testing::httpStatus("127.0.0.1", registry.port(), "/v2/busybox/tags/list") == 200);
  CHECK(std::filesystem::exists(registry.storage() + "/docker/registry/v2/repositories/busybox"));
}

TEST_CASE("test registry: with a user, anonymous requests are refused") {
  TestRegistry registry({.user = "alice", .password = "s3cret"});
  registry.pushBusybox("private/busybox");
  CHECK(testing::httpStatus("127.0.0.1", registry.port(), "/v2/") == 401);
}

}  // namespace
}  // namespace shoal
