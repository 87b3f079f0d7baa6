// services/agentd/image_manifest.h: manifests and indexes as registries send them.
#include <doctest/doctest.h>

#include <string>

#include "services/agentd/image_manifest.h"

using namespace shoal::agentd::image;

namespace {

std::string digest(char c) { return "sha256:" + std::string(64, c); }

std::string descriptorJson(const std::string& type, char c, int size) {
  return R"({"mediaType":")" + type + R"(","digest":")" + digest(c) + R"(","size":)" +
         std::to_string(size) + "}";
}

std::string ociManifest() {
  return R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",)"
         R"("config":)" +
         descriptorJson("application/vnd.oci.image.config.v1+json", 'c', 500) + R"(,"layers":[)" +
         descriptorJson("application/vnd.oci.image.layer.v1.tar+gzip", '1', 1000) + "," +
         descriptorJson("application/vnd.oci.image.layer.v1.tar+gzip", '2', 2000) + "]}";
}

std::string entry(char c, const std::string& os, const std::string& arch,
                  const std::string& variant = "") {
  std::string platform = R"({"os":")" + os + R"(","architecture":")" + arch + "\"" +
                         (variant.empty() ? "" : R"(,"variant":")" + variant + "\"") + "}";
  std::string d = descriptorJson(std::string(media::kOciManifest), c, 700);
  d.pop_back();
  return d + R"(,"platform":)" + platform + "}";
}

std::string index(const std::string& entries) {
  return R"({"schemaVersion":2,"manifests":[)" + entries + "]}";
}

}  // namespace

TEST_CASE("an OCI manifest: config and layers in order, digests and sizes kept") {
  auto p = parse(ociManifest(), media::kOciManifest);
  REQUIRE_MESSAGE(p.ok(), (p ? "" : p.error().message));
  CHECK_FALSE(p->isIndex);
  CHECK(p->manifest.config.digest == digest('c'));
  REQUIRE(p->manifest.layers.size() == 2);
  CHECK(p->manifest.layers[0].digest == digest('1'));
  CHECK(p->manifest.layers[1].size == 2000);
  // Without a Content-Type (or a generic one) the document's mediaType decides.
  CHECK(parse(ociManifest(), "").ok());
  CHECK(parse(ociManifest(), "application/json; charset=utf-8").ok());
  auto docker = parse(ociManifest(), std::string(media::kDockerManifest) + "; charset=utf-8");
  CHECK(docker.ok());
}

TEST_CASE("an index: the node's platform is picked, or the error lists what there is") {
  std::string body = index(entry('a', "linux", "amd64") + "," + entry('b', "linux", "arm64", "v8") +
                           "," + entry('d', "unknown", "unknown"));
  auto p = parse(body, media::kOciIndex);
  REQUIRE(p.ok());
  CHECK(p->isIndex);
  REQUIRE(p->entries.size() == 3);
  CHECK(pickPlatform(p->entries, {"linux", "amd64", ""})->digest == digest('a'));
  CHECK(pickPlatform(p->entries, {"linux", "arm64", "v8"})->digest == digest('b'));
  CHECK(pickPlatform(p->entries, {"linux", "arm64", ""})->digest == digest('b'));
  auto none = pickPlatform(p->entries, {"linux", "s390x", ""});
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().message ==
        "the image has no linux/s390x variant "
        "(it has: linux/amd64, linux/arm64/v8, unknown/unknown)");
  CHECK(parse(body, media::kDockerList)->isIndex);
  CHECK(parse(body, "")->isIndex);  // no type anywhere: manifests make it an index
}

TEST_CASE("documents that cannot be used are refused with what is wrong") {
  auto message = [](const std::string& body, std::string_view type) {
    auto p = parse(body, type);
    REQUIRE_MESSAGE(!p.ok(), body, " was accepted");
    return p.error().message;
  };
  CHECK(message("not json", "") ==
        "the registry's manifest is not usable: it is not a JSON object");
  CHECK(message(R"({"schemaVersion":1,"fsLayers":[]})", "").find("schema version 1") !=
        std::string::npos);
  CHECK(message(R"({"schemaVersion":2,"layers":[]})", media::kOciManifest)
            .find("without a config") != std::string::npos);
  std::string badDigest = ociManifest();
  badDigest.replace(badDigest.find(digest('1')), 71, "sha256:1234");
  CHECK(message(badDigest, media::kOciManifest).find("layer 1 has a malformed digest") !=
        std::string::npos);
  CHECK(message(ociManifest(), "text/html").find("media type \"text/html\"") != std::string::npos);
  CHECK(message(index(R"({"size":3})"), media::kOciIndex).find("index entry 1 has no digest") !=
        std::string::npos);
}

TEST_CASE("the Accept header names every kind read, and the host platform is linux") {
  auto accept = acceptHeader();
  for (auto t : {media::kOciIndex, media::kOciManifest, media::kDockerList, media::kDockerManifest})
    CHECK(accept.find(t) != std::string::npos);
  auto host = hostPlatform();
  CHECK(host.os == "linux");
  CHECK_FALSE(host.architecture.empty());
}
