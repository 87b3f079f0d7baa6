#include "services/agentd/image_manifest.h"

#include <sys/utsname.h>

#include <cctype>

#include <nlohmann/json.hpp>

#include "common/image_ref.h"

namespace shoal::agentd::image {
namespace {

using nlohmann::json;

Error bad(const std::string& why) {
  return Error{"the registry's manifest is not usable: " + why};
}

Result<Descriptor> descriptor(const json& j, const std::string& where) {
  if (!j.is_object()) return bad(where + " is not an object");
  Descriptor d;
  if (j.contains("mediaType") && j["mediaType"].is_string()) d.mediaType = j["mediaType"];
  if (!j.contains("digest") || !j["digest"].is_string()) return bad(where + " has no digest");
  d.digest = j["digest"];
  if (auto st = shoal::image::checkDigest(d.digest); !st)
    return bad(where + " has a malformed digest \"" + d.digest + "\": " + st.error().message);
  if (!j.contains("size") || !j["size"].is_number_integer() || j["size"].get<int64_t>() < 0)
    return bad(where + " has no size");
  d.size = j["size"];
  return d;
}

Result<Manifest> manifestOf(const json& doc) {
  if (!doc.contains("config")) return bad("an image manifest without a config");
  auto config = descriptor(doc["config"], "the config");
  if (!config) return config.error();
  Manifest m{*config, {}};
  if (!doc.contains("layers") || !doc["layers"].is_array())
    return bad("an image manifest without layers");
  for (size_t i = 0; i < doc["layers"].size(); ++i) {
    auto layer = descriptor(doc["layers"][i], "layer " + std::to_string(i + 1));
    if (!layer) return layer.error();
    m.layers.push_back(*layer);
  }
  return m;
}

Result<std::vector<IndexEntry>> indexOf(const json& doc) {
  if (!doc.contains("manifests") || !doc["manifests"].is_array())
    return bad("an index without manifests");
  std::vector<IndexEntry> out;
  for (size_t i = 0; i < doc["manifests"].size(); ++i) {
    const json& e = doc["manifests"][i];
    auto d = descriptor(e, "index entry " + std::to_string(i + 1));
    if (!d) return d.error();
    IndexEntry entry{*d, {}};
    if (e.contains("platform") && e["platform"].is_object()) {
      const json& p = e["platform"];
      auto text = [&](const char* k) {
        return p.contains(k) && p[k].is_string() ? p[k].get<std::string>() : std::string();
      };
      entry.platform = {text("os"), text("architecture"), text("variant")};
    }
    out.push_back(std::move(entry));
  }
  return out;
}

std::string baseType(std::string_view contentType) {
  auto semi = contentType.find(';');
  std::string t(contentType.substr(0, semi));
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.pop_back();
  return t;
}

}  // namespace

std::string acceptHeader() {
  return std::string(media::kOciIndex) + ", " + std::string(media::kOciManifest) + ", " +
         std::string(media::kDockerList) + ", " + std::string(media::kDockerManifest);
}

Result<Parsed> parse(std::string_view body, std::string_view contentType) {
  json doc = json::parse(body.begin(), body.end(), nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return bad("it is not a JSON object");
  if (doc.contains("schemaVersion") && doc["schemaVersion"] != 2)
    return bad("schema version " + doc["schemaVersion"].dump() +
               " (only version 2 manifests are read: push the image again with a current client)");
  std::string type = baseType(contentType);
  if ((type.empty() || type == "application/json") && doc.contains("mediaType") &&
      doc["mediaType"].is_string())
    type = doc["mediaType"];
  if (type.empty()) type = doc.contains("manifests") ? media::kOciIndex : media::kOciManifest;
  Parsed p;
  if (type == media::kOciIndex || type == media::kDockerList) {
    auto entries = indexOf(doc);
    if (!entries) return entries.error();
    p.isIndex = true;
    p.entries = std::move(*entries);
    return p;
  }
  if (type == media::kOciManifest || type == media::kDockerManifest) {
    auto m = manifestOf(doc);
    if (!m) return m.error();
    p.manifest = std::move(*m);
    return p;
  }
  return bad("media type \"" + type + "\" is not an image manifest or index");
}

Result<Descriptor> pickPlatform(const std::vector<IndexEntry>& entries, const Platform& want) {
  std::string have;
  for (const auto& e : entries) {
    const Platform& p = e.platform;
    bool variantOk = want.variant.empty() || p.variant.empty() || want.variant == p.variant;
    if (p.os == want.os && p.architecture == want.architecture && variantOk) return e.manifest;
    if (p.os.empty() && p.architecture.empty()) continue;  // attestations and the like
    if (!have.empty()) have += ", ";
    have += p.os + "/" + p.architecture + (p.variant.empty() ? "" : "/" + p.variant);
  }
  return Error{"the image has no " + want.os + "/" + want.architecture + " variant (it has: " +
               (have.empty() ? "none" : have) + ")"};
}

Platform hostPlatform() {
  struct utsname u {};
  ::uname(&u);
  std::string m = u.machine;
  if (m == "x86_64") return {"linux", "amd64", ""};
  if (m == "aarch64") return {"linux", "arm64", "v8"};
  if (m.rfind("armv7", 0) == 0) return {"linux", "arm", "v7"};
  if (m == "i686" || m == "i386") return {"linux", "386", ""};
  return {"linux", m, ""};
}

}  // namespace shoal::agentd::image
