// `shoal image load`'s plan (services/agentd/image_archive.h) from archives built in memory:
// OCI layouts (names from annotations, nested indexes, other platforms) and docker-archives
// (RepoTags, links, the manifest made for them), and the broken ones, refused before anything
// would be put into the store.
#include <doctest/doctest.h>

#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "services/agentd/image_archive.h"

using nlohmann::json;
using namespace shoal::agentd;
using shoal::Result;

namespace {

const image::Platform kAmd64{"linux", "amd64", ""};

// An archive in memory: path → content (a link: "-> target").
struct Archive {
  std::map<std::string, std::string> files;
  std::map<std::string, std::string> links;

  // Adds a blob under blobs/sha256/ and returns its descriptor JSON.
  json blob(const std::string& content, const std::string& mediaType) {
    std::string digest = sha256Digest(content);
    files["blobs/sha256/" + digest.substr(7)] = content;
    return {{"mediaType", mediaType}, {"digest", digest}, {"size", content.size()}};
  }

  ArchiveEntries entries() const {
    ArchiveEntries out;
    for (const auto& [path, content] : files)
      out[path] = ArchiveEntry{sha256Digest(content), static_cast<int64_t>(content.size()),
                               content.substr(0, 8), ""};
    for (const auto& [path, target] : links) out[path] = ArchiveEntry{"", 0, "", target};
    return out;
  }

  Result<LoadPlan> plan(const image::Platform& platform = kAmd64) const {
    ReadEntry read = [this](const std::string& path) -> Result<std::string> {
      return files.at(path);
    };
    return planLoad("test.tar", entries(), read, platform);
  }
};

std::string layerTar(const std::string& marker) {
  return std::string("layer-") + marker + std::string(600, '\0');  // not gzip, not zstd
}

// An OCI image (config + one gzip layer + manifest) in `a`; its manifest descriptor.
json ociImage(Archive& a, const std::string& arch) {
  json layer = a.blob("\x1f\x8b" + arch + " layer", "application/vnd.oci.image.layer.v1.tar+gzip");
  json config = a.blob(json{{"architecture", arch}, {"os", "linux"}}.dump(),
                       "application/vnd.oci.image.config.v1+json");
  json manifest = {{"schemaVersion", 2},
                   {"mediaType", image::media::kOciManifest},
                   {"config", config},
                   {"layers", {layer}}};
  return a.blob(manifest.dump(), std::string(image::media::kOciManifest));
}

void ociLayout(Archive& a, json entries) {
  a.files["oci-layout"] = R"({"imageLayoutVersion":"1.0.0"})";
  a.files["index.json"] = json{{"schemaVersion", 2}, {"manifests", entries}}.dump();
}

json named(json descriptor, const std::string& key, const std::string& name) {
  descriptor["annotations"] = {{key, name}};
  return descriptor;
}

std::string planError(const Archive& a) {
  auto p = a.plan();
  REQUIRE_FALSE(p);
  return p.error().message;
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("an OCI layout's image is loaded under its ref.name, blobs first") {
  Archive a;
  json m = ociImage(a, "amd64");
  ociLayout(a, {named(m, "org.opencontainers.image.ref.name", "busybox:latest")});
  auto p = a.plan();
  REQUIRE_MESSAGE(p, (p ? "" : p.error().message));
  REQUIRE(p->images.size() == 1);
  CHECK(p->images[0].ref == "docker.io/library/busybox:latest");
  CHECK(p->images[0].manifestDigest == m["digest"]);
  REQUIRE(p->entries.size() == 3);  // config, layer, then the manifest that names them
  CHECK(p->entries.back() == "blobs/sha256/" + m["digest"].get<std::string>().substr(7));
  CHECK(p->synthesized.empty());
}

TEST_CASE("OCI names: containerd's annotation first; a bare tag names nothing") {
  CHECK(*ociImageName({}) == "");
  CHECK(*ociImageName({{"org.opencontainers.image.ref.name", "latest"}}) == "");
  CHECK(*ociImageName({{"org.opencontainers.image.ref.name", "127.0.0.1:5000/app:1"}}) ==
        "127.0.0.1:5000/app:1");
  CHECK(*ociImageName({{"org.opencontainers.image.ref.name", "latest"},
                       {"io.containerd.image.name", "docker.io/me/app:2"}}) ==
        "docker.io/me/app:2");
  auto bad = ociImageName({{"io.containerd.image.name", "Bad:Name"}});
  REQUIRE_FALSE(bad);
  CHECK(has(bad.error().message, "io.containerd.image.name"));

  Archive a;
  ociLayout(a, {named(ociImage(a, "amd64"), "org.opencontainers.image.ref.name", "latest")});
  auto p = a.plan();
  REQUIRE(p);
  REQUIRE(p->images.size() == 1);
  CHECK(p->images[0].ref == "");  // loaded unnamed, listed by id
}

TEST_CASE("a nested index picks this node's platform; other platforms are skipped") {
  Archive a;
  json amd = ociImage(a, "amd64"), arm = ociImage(a, "arm64");
  amd["platform"] = {{"os", "linux"}, {"architecture", "amd64"}};
  arm["platform"] = {{"os", "linux"}, {"architecture", "arm64"}, {"variant", "v8"}};
  json index = a.blob(json{{"schemaVersion", 2}, {"mediaType", image::media::kOciIndex},
                           {"manifests", {amd, arm}}}.dump(),
                      std::string(image::media::kOciIndex));
  ociLayout(a, {named(index, "org.opencontainers.image.ref.name", "x/multi:1")});
  auto p = a.plan();
  REQUIRE_MESSAGE(p, (p ? "" : p.error().message));
  REQUIRE(p->images.size() == 1);
  CHECK(p->images[0].manifestDigest == amd["digest"]);
  CHECK(p->images[0].ref == "docker.io/x/multi:1");
  auto arm64 = a.plan({"linux", "arm64", "v8"});
  REQUIRE(arm64);
  CHECK(arm64->images[0].manifestDigest == arm["digest"]);
  auto none = a.plan({"linux", "s390x", ""});
  REQUIRE_FALSE(none);
  CHECK(has(none.error().message, "linux/s390x"));

  Archive flat;  // index.json itself lists the platforms
  json only = ociImage(flat, "arm64");
  only["platform"] = {{"os", "linux"}, {"architecture", "arm64"}};
  ociLayout(flat, {only});
  CHECK(has(planError(flat), "no image for linux/amd64"));
}

TEST_CASE("a tampered, resized or missing OCI blob refuses the whole archive") {
  Archive a;
  json m = ociImage(a, "amd64");
  ociLayout(a, {m});
  std::string layerPath;
  for (const auto& [path, content] : a.files)
    if (content.rfind("\x1f\x8b", 0) == 0) layerPath = path;
  REQUIRE_FALSE(layerPath.empty());

  Archive tampered = a;
  tampered.files[layerPath][3] ^= 1;  // same size, other content
  std::string e = planError(tampered);
  CHECK(has(e, "test.tar"));
  CHECK(has(e, layerPath));
  CHECK(has(e, "changed or damaged"));

  Archive missing = a;
  missing.files.erase(layerPath);
  CHECK(has(planError(missing), "does not have layer 1"));

  Archive noLayout = a;
  noLayout.files.erase("oci-layout");
  CHECK(has(planError(noLayout), "neither an OCI image layout"));

  Archive badIndex = a;
  badIndex.files["index.json"] = "[1,2]";
  CHECK(has(planError(badIndex), "index.json"));
}

TEST_CASE("a docker-archive gets an OCI manifest, committed under each RepoTag") {
  Archive a;
  std::string l1 = layerTar("one"), l2 = layerTar("two");
  std::string config = json{{"architecture", "amd64"},
                            {"os", "linux"},
                            {"rootfs", {{"type", "layers"},
                                        {"diff_ids", {sha256Digest(l1), sha256Digest(l2)}}}}}
                           .dump();
  std::string configName = sha256Digest(config).substr(7) + ".json";
  a.files[configName] = config;
  a.files["aaa/layer.tar"] = l1;
  a.files["bbb/layer.tar"] = l2;
  a.links["ccc/layer.tar"] = "bbb/layer.tar";  // docker save links a layer it has already
  a.files["manifest.json"] =
      json::array({{{"Config", configName},
                    {"RepoTags", {"busybox:latest", "127.0.0.1:5000/b:1"}},
                    {"Layers", {"aaa/layer.tar", "./ccc/layer.tar"}}}})
          .dump();
  auto p = a.plan();
  REQUIRE_MESSAGE(p, (p ? "" : p.error().message));
  REQUIRE(p->images.size() == 2);
  CHECK(p->images[0].ref == "docker.io/library/busybox:latest");
  CHECK(p->images[1].ref == "127.0.0.1:5000/b:1");
  CHECK(p->images[0].manifestDigest == p->images[1].manifestDigest);
  REQUIRE(p->synthesized.size() == 1);
  const auto& [digest, body] = *p->synthesized.begin();
  CHECK(digest == sha256Digest(body));
  auto parsed = image::parse(body, "");
  REQUIRE(parsed);
  CHECK(parsed->manifest.config.digest == sha256Digest(config));
  REQUIRE(parsed->manifest.layers.size() == 2);
  CHECK(parsed->manifest.layers[1].digest == sha256Digest(l2));
  CHECK(parsed->manifest.layers[1].mediaType == "application/vnd.oci.image.layer.v1.tar");
  CHECK(p->entries == std::vector<std::string>{configName, "aaa/layer.tar", "bbb/layer.tar"});

  SUBCASE("a layer that is not the config's diff_id is refused") {
    a.files["aaa/layer.tar"] = layerTar("evil");
    CHECK(has(planError(a), "aaa/layer.tar: its digest is"));
  }
  SUBCASE("a config whose content is not its name is refused") {
    a.files[configName] = config + " ";
    CHECK(has(planError(a), configName + ": its content's digest"));
  }
  SUBCASE("a link to nowhere is refused") {
    a.links["ccc/layer.tar"] = "zzz/layer.tar";
    CHECK(has(planError(a), "zzz/layer.tar, which the archive does not have"));
  }
  SUBCASE("an image without RepoTags is loaded unnamed") {
    a.files["manifest.json"] =
        json::array({{{"Config", configName}, {"RepoTags", nullptr},
                      {"Layers", {"aaa/layer.tar", "bbb/layer.tar"}}}}).dump();
    auto unnamed = a.plan();
    REQUIRE(unnamed);
    REQUIRE(unnamed->images.size() == 1);
    CHECK(unnamed->images[0].ref == "");
  }
}

TEST_CASE("layer media types come from the layer's first bytes") {
  CHECK(layerMediaType("\x1f\x8b\x08") == "application/vnd.oci.image.layer.v1.tar+gzip");
  CHECK(layerMediaType("\x28\xb5\x2f\xfd") == "application/vnd.oci.image.layer.v1.tar+zstd");
  CHECK(layerMediaType("bin/") == "application/vnd.oci.image.layer.v1.tar");
  CHECK(layerMediaType("") == "application/vnd.oci.image.layer.v1.tar");
}
