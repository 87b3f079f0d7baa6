// `shoal image load`: OCI layout and docker-archive tarballs into the image store (see
// image_archive.h).
#include "services/agentd/image_archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sodium.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/image_ref.h"

namespace shoal::agentd {
namespace {

using nlohmann::json;

constexpr int64_t kMaxDocument = 4 << 20;  // index.json, manifests, configs
constexpr int kMaxLinkHops = 8;
constexpr int kMaxIndexDepth = 4;
constexpr size_t kMaxEntries = 100'000;
constexpr std::string_view kOciConfig = "application/vnd.oci.image.config.v1+json";
constexpr std::string_view kLayerTar = "application/vnd.oci.image.layer.v1.tar";
constexpr std::string_view kContainerdName = "io.containerd.image.name";
constexpr std::string_view kRefName = "org.opencontainers.image.ref.name";

std::string hexOf(const unsigned char* bytes, size_t n) {
  std::string hex(n * 2 + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), bytes, n);
  hex.pop_back();
  return hex;
}

// An archive path as a key: no leading "./" or "/", no "." components, ".." applied; ""
// when it would leave the archive's root (such a link is treated as absent).
std::string normalisePath(std::string_view path) {
  std::vector<std::string> parts;
  std::stringstream in{std::string(path)};
  std::string part;
  while (std::getline(in, part, '/')) {
    if (part.empty() || part == ".") continue;
    if (part != "..") {
      parts.push_back(part);
    } else if (parts.empty()) {
      return "";
    } else {
      parts.pop_back();
    }
  }
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : "/") + p;
  return out;
}

std::string dirOf(std::string_view path) {
  auto slash = path.rfind('/');
  return slash == std::string_view::npos ? std::string() : std::string(path.substr(0, slash));
}

// ---- planning (pure)

struct Planner {
  std::string_view archive;
  const ArchiveEntries& entries;
  const ReadEntry& read;
  image::Platform platform;
  LoadPlan plan;
  std::set<std::string> used;

  Error fail(std::string_view entry, const std::string& what) const {
    return Error{"cannot load " + std::string(archive) + ": " + std::string(entry) + ": " + what};
  }

  // The entry at path, links followed; its resolved path in *resolved.
  Result<const ArchiveEntry*> resolve(const std::string& path, std::string* resolved) const {
    std::string at = path;
    for (int hop = 0; hop <= kMaxLinkHops; ++hop) {
      auto it = entries.find(at);
      if (it == entries.end())
        return fail(path, at == path ? "the archive has no such file"
                                     : "a link to " + at + ", which the archive does not have");
      if (it->second.linkTo.empty()) {
        if (resolved) *resolved = at;
        return &it->second;
      }
      at = it->second.linkTo;
    }
    return fail(path, "links lead through more than " + std::to_string(kMaxLinkHops) +
                          " others (a loop?)");
  }

  Result<std::string> document(const std::string& path) const {
    std::string at;
    auto e = resolve(path, &at);
    if (!e) return e.error();
    if ((*e)->size > kMaxDocument)
      return fail(path, std::to_string((*e)->size) + " bytes is too large for a JSON document (at "
                            "most " + std::to_string(kMaxDocument) + ")");
    auto body = read(at);
    if (!body) return fail(path, body.error().message);
    return body;
  }

  void use(const std::string& resolvedPath) {
    if (used.insert(resolvedPath).second) plan.entries.push_back(resolvedPath);
  }
};

std::string blobPath(std::string_view digest) {
  auto colon = digest.find(':');
  return "blobs/" + std::string(digest.substr(0, colon)) + "/" +
         std::string(digest.substr(colon + 1));
}

// The blob of a descriptor, checked: there, its content's digest the one named, its size the
// descriptor's. `what` says who refers to it ("the config of blobs/sha256/…").
Result<std::string> checkedBlob(Planner& p, const image::Descriptor& d, const std::string& what) {
  std::string path = blobPath(d.digest), at;
  if (p.entries.find(path) == p.entries.end())
    return p.fail(path, "the archive does not have " + what + " (" + d.digest + ")");
  auto e = p.resolve(path, &at);
  if (!e) return e.error();
  if ((*e)->digest != d.digest)
    return p.fail(path, "its content's digest is " + (*e)->digest + ", not the " + d.digest +
                            " its name says: the archive was changed or damaged after it was "
                            "written; make it again");
  if ((*e)->size != d.size)
    return p.fail(path, "it is " + std::to_string((*e)->size) + " bytes, but " + what + " is " +
                            std::to_string(d.size) + " bytes in its descriptor");
  return at;
}

Status planOciManifest(Planner& p, const image::Manifest& m, const std::string& manifestPath) {
  auto config = checkedBlob(p, m.config, "the config of " + manifestPath);
  if (!config) return config.error();
  p.use(*config);
  for (size_t i = 0; i < m.layers.size(); ++i) {
    auto layer = checkedBlob(p, m.layers[i],
                             "layer " + std::to_string(i + 1) + " of " + manifestPath);
    if (!layer) return layer.error();
    p.use(*layer);
  }
  return {};
}

// A manifest or an index (this node's platform picked) named by an index.json entry.
Status planOciImage(Planner& p, const image::Descriptor& d, const std::string& name, int depth) {
  if (depth > kMaxIndexDepth)
    return p.fail(blobPath(d.digest), "indexes nest deeper than " + std::to_string(kMaxIndexDepth));
  auto path = checkedBlob(p, d, "a manifest index.json refers to");
  if (!path) return path.error();
  auto body = p.document(*path);
  if (!body) return body.error();
  auto parsed = image::parse(*body, d.mediaType);
  if (!parsed) return p.fail(*path, parsed.error().message);
  if (parsed->isIndex) {
    auto picked = image::pickPlatform(parsed->entries, p.platform);
    if (!picked) return p.fail(*path, picked.error().message);
    return planOciImage(p, *picked, name, depth + 1);
  }
  if (auto st = planOciManifest(p, parsed->manifest, *path); !st) return st;
  p.use(*path);
  p.plan.images.push_back({name, d.digest});
  return {};
}

std::map<std::string, std::string> annotationsOf(const json& entry) {
  std::map<std::string, std::string> out;
  if (!entry.is_object() || !entry.contains("annotations") || !entry["annotations"].is_object())
    return out;
  for (const auto& [k, v] : entry["annotations"].items())
    if (v.is_string()) out[k] = v.get<std::string>();
  return out;
}

bool forOtherPlatform(const image::IndexEntry& e, const image::Platform& want) {
  if (e.platform.os.empty() && e.platform.architecture.empty()) return false;
  return !image::pickPlatform({e}, want);
}

Status checkLayoutFile(Planner& p) {
  auto layout = p.document("oci-layout");
  if (!layout) return layout.error();
  json doc = json::parse(*layout, nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("imageLayoutVersion") ||
      !doc["imageLayoutVersion"].is_string())
    return p.fail("oci-layout", "not the OCI layout's {\"imageLayoutVersion\": \"1.0.0\"}");
  return {};
}

Status planOci(Planner& p) {
  if (auto st = checkLayoutFile(p); !st) return st;
  auto body = p.document("index.json");
  if (!body) return body.error();
  auto parsed = image::parse(*body, image::media::kOciIndex);
  if (!parsed) return p.fail("index.json", parsed.error().message);
  json raw = json::parse(*body);  // parse() above has checked it is a JSON object
  size_t skipped = 0;
  for (size_t i = 0; i < parsed->entries.size(); ++i) {
    const auto& e = parsed->entries[i];
    if (forOtherPlatform(e, p.platform)) {
      ++skipped;
      continue;
    }
    auto name = ociImageName(annotationsOf(raw["manifests"][i]));
    if (!name) return p.fail("index.json", name.error().message);
    if (auto st = planOciImage(p, e.manifest, *name, 0); !st) return st;
  }
  if (p.plan.images.empty())
    return p.fail("index.json", skipped ? "it lists no image for " + p.platform.os + "/" +
                                              p.platform.architecture
                                        : "it lists no image");
  return {};
}

// ---- docker-archive

struct DockerImage {
  std::string config;
  std::vector<std::string> repoTags, layers;
};

Result<std::vector<DockerImage>> readDockerManifest(const Planner& p, std::string_view body) {
  json doc = json::parse(body, nullptr, false);
  auto bad = [&](const std::string& why) { return p.fail("manifest.json", why); };
  if (doc.is_discarded() || !doc.is_array()) return bad("not a JSON array of images");
  std::vector<DockerImage> out;
  auto strings = [](const json& j, std::vector<std::string>& into) {
    if (j.is_null()) return true;
    if (!j.is_array()) return false;
    for (const auto& s : j) {
      if (!s.is_string()) return false;
      into.push_back(s.get<std::string>());
    }
    return true;
  };
  for (const auto& i : doc) {
    DockerImage d;
    if (!i.is_object() || !i.contains("Config") || !i["Config"].is_string())
      return bad("image " + std::to_string(out.size() + 1) + " has no Config");
    d.config = normalisePath(i["Config"].get<std::string>());
    if (!strings(i.value("RepoTags", json()), d.repoTags) ||
        !strings(i.value("Layers", json()), d.layers))
      return bad("image " + std::to_string(out.size() + 1) +
                 ": RepoTags and Layers must be lists of strings");
    for (auto& l : d.layers) l = normalisePath(l);
    out.push_back(std::move(d));
  }
  if (out.empty()) return bad("it lists no image");
  return out;
}

// The hex a file name promises (blobs/sha256/<hex> or <hex>.json, <hex>/layer.tar), or "".
std::string promisedHex(std::string_view path) {
  auto isHex = [](std::string_view s) {
    return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string_view::npos;
  };
  if (path.rfind("blobs/sha256/", 0) == 0 && isHex(path.substr(13))) return std::string(path.substr(13));
  if (path.size() == 69 && path.substr(64) == ".json" && isHex(path.substr(0, 64)))
    return std::string(path.substr(0, 64));
  return "";
}

Result<image::Descriptor> dockerBlob(Planner& p, const std::string& path, std::string mediaType) {
  std::string at;
  auto e = p.resolve(path, &at);
  if (!e) return e.error();
  std::string hex = promisedHex(path);
  if (!hex.empty() && (*e)->digest != "sha256:" + hex)
    return p.fail(path, "its content's digest is " + (*e)->digest +
                            ", not the one its name says: the archive was changed or damaged "
                            "after it was written; make it again");
  if (mediaType.empty()) mediaType = layerMediaType((*e)->head);
  p.use(at);
  return image::Descriptor{mediaType, (*e)->digest, (*e)->size};
}

Result<std::vector<std::string>> diffIds(const Planner& p, const std::string& path,
                                         std::string_view body) {
  json doc = json::parse(body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return p.fail(path, "not a JSON object (an image config)");
  const json* ids = nullptr;
  if (doc.contains("rootfs") && doc["rootfs"].is_object() && doc["rootfs"].contains("diff_ids"))
    ids = &doc["rootfs"]["diff_ids"];
  std::vector<std::string> out;
  if (!ids || !ids->is_array()) return p.fail(path, "the image config has no rootfs.diff_ids");
  for (const auto& id : *ids) {
    if (!id.is_string()) return p.fail(path, "rootfs.diff_ids holds something not a digest");
    out.push_back(id.get<std::string>());
  }
  return out;
}

// A layer against the config's diff_id: a plain tar's digest is its diff_id. (A compressed
// layer's is checked when the store unpacks it.)
Status checkDiffId(const Planner& p, const std::string& path, const image::Descriptor& layer,
                   const std::string& diffId) {
  if (layer.mediaType != kLayerTar || layer.digest == diffId) return {};
  return p.fail(path, "its digest is " + layer.digest + ", but the image config says the layer is " +
                          diffId + ": the archive was changed or damaged after it was written; "
                          "make it again");
}

Result<std::vector<image::Descriptor>> dockerLayers(Planner& p, const DockerImage& d,
                                                    const std::vector<std::string>& ids) {
  if (ids.size() != d.layers.size())
    return p.fail(d.config, "the config lists " + std::to_string(ids.size()) +
                                " layers, manifest.json " + std::to_string(d.layers.size()));
  std::vector<image::Descriptor> layers;
  for (size_t i = 0; i < d.layers.size(); ++i) {
    auto l = dockerBlob(p, d.layers[i], "");
    if (!l) return l.error();
    if (auto st = checkDiffId(p, d.layers[i], *l, ids[i]); !st) return st.error();
    layers.push_back(*l);
  }
  return layers;
}

Status planDockerImage(Planner& p, const DockerImage& d) {
  auto config = dockerBlob(p, d.config, std::string(kOciConfig));
  if (!config) return config.error();
  auto body = p.document(d.config);
  if (!body) return body.error();
  auto ids = diffIds(p, d.config, *body);
  if (!ids) return ids.error();
  auto layers = dockerLayers(p, d, *ids);
  if (!layers) return layers.error();
  auto made = makeManifest(*config, *layers);
  p.plan.synthesized[made.digest] = made.json;
  if (d.repoTags.empty()) p.plan.images.push_back({"", made.digest});
  for (const auto& tag : d.repoTags) {
    auto ref = shoal::image::parse(tag);
    if (!ref) return p.fail("manifest.json", "RepoTags: " + ref.error().message);
    p.plan.images.push_back({ref->full(), made.digest});
  }
  return {};
}

Status planDocker(Planner& p) {
  auto body = p.document("manifest.json");
  if (!body) return body.error();
  auto images = readDockerManifest(p, *body);
  if (!images) return images.error();
  for (const auto& d : *images)
    if (auto st = planDockerImage(p, d); !st) return st;
  return {};
}

}  // namespace

// ---- the pure part's API

std::string sha256Digest(std::string_view bytes) {
  std::array<unsigned char, crypto_hash_sha256_BYTES> out;
  crypto_hash_sha256(out.data(), reinterpret_cast<const unsigned char*>(bytes.data()),
                     bytes.size());
  return "sha256:" + hexOf(out.data(), out.size());
}

std::string layerMediaType(std::string_view head) {
  if (head.size() >= 2 && head.substr(0, 2) == "\x1f\x8b") return std::string(kLayerTar) + "+gzip";
  if (head.size() >= 4 && head.substr(0, 4) == "\x28\xb5\x2f\xfd")
    return std::string(kLayerTar) + "+zstd";
  return std::string(kLayerTar);
}

MadeManifest makeManifest(const image::Descriptor& config,
                          const std::vector<image::Descriptor>& layers) {
  auto descriptor = [](const image::Descriptor& d) {
    return json{{"mediaType", d.mediaType}, {"digest", d.digest}, {"size", d.size}};
  };
  json doc = {{"schemaVersion", 2},
              {"mediaType", image::media::kOciManifest},
              {"config", descriptor(config)},
              {"layers", json::array()}};
  for (const auto& l : layers) doc["layers"].push_back(descriptor(l));
  MadeManifest m{doc.dump(), ""};
  m.digest = sha256Digest(m.json);
  return m;
}

Result<std::string> ociImageName(const std::map<std::string, std::string>& annotations) {
  std::string key(kContainerdName);
  auto it = annotations.find(key);
  if (it == annotations.end() || it->second.empty()) {
    key = std::string(kRefName);
    it = annotations.find(key);
    // The OCI layout spec's ref.name is often a tag alone ("latest", "v1.0"): not a name.
    if (it == annotations.end() || it->second.find_first_of(":/@") == std::string::npos)
      return std::string();
  }
  auto ref = shoal::image::parse(it->second);
  if (!ref)
    return Error{"the annotation " + key + " does not name an image: " + ref.error().message};
  return ref->full();
}

Result<LoadPlan> planLoad(std::string_view archive, const ArchiveEntries& entries,
                          const ReadEntry& read, const image::Platform& platform) {
  Planner p{archive, entries, read, platform, {}, {}};
  bool oci = entries.contains("index.json") && entries.contains("oci-layout");
  if (!oci && !entries.contains("manifest.json"))
    return Error{"cannot load " + std::string(archive) +
                 ": it is neither an OCI image layout (oci-layout, index.json, blobs/) nor a "
                 "docker-archive (manifest.json), as `docker save` or `skopeo copy ... "
                 "oci-archive:FILE` write"};
  if (auto st = oci ? planOci(p) : planDocker(p); !st) return st.error();
  return std::move(p.plan);
}

// ---- extraction (I/O)

namespace {

// The temporary files of one load; whatever is still there at the end goes.
struct TempFiles {
  std::map<std::string, std::string> byEntry;  // archive path → temp file
  std::vector<std::string> all;
  ~TempFiles() {
    for (const auto& f : all) ::unlink(f.c_str());
  }
};

using ArchivePtr = std::unique_ptr<struct archive, decltype(&archive_read_free)>;

Status writeAll(int fd, const char* data, size_t n, const std::string& path) {
  while (n > 0) {
    ssize_t w = ::write(fd, data, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return Error{"cannot write " + path + ": " + std::strerror(errno), errno};
    data += w;
    n -= static_cast<size_t>(w);
  }
  return {};
}

// The current entry's data into a new file at tempPath, hashed on the way.
Result<ArchiveEntry> extractFile(struct archive* a, const std::string& tempPath) {
  int fd = ::open(tempPath.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Error{"cannot create " + tempPath + ": " + std::strerror(errno), errno};
  crypto_hash_sha256_state hash;
  crypto_hash_sha256_init(&hash);
  ArchiveEntry entry;
  std::array<char, 1 << 16> buf;
  Status st;
  for (;;) {
    la_ssize_t n = archive_read_data(a, buf.data(), buf.size());
    if (n < 0) st = Error{std::string("it is truncated or damaged: ") + archive_error_string(a)};
    if (n <= 0) break;
    if (entry.head.size() < 8)
      entry.head.append(buf.data(), std::min<size_t>(8 - entry.head.size(), n));
    crypto_hash_sha256_update(&hash, reinterpret_cast<unsigned char*>(buf.data()), n);
    entry.size += n;
    if (st = writeAll(fd, buf.data(), n, tempPath); !st) break;
  }
  ::close(fd);
  if (!st) return st.error();
  std::array<unsigned char, crypto_hash_sha256_BYTES> out;
  crypto_hash_sha256_final(&hash, out.data());
  entry.digest = "sha256:" + hexOf(out.data(), out.size());
  return entry;
}

// A link entry's target as an archive path ("" when it leaves the archive).
std::string linkTarget(struct archive_entry* e, const std::string& name) {
  if (const char* hard = archive_entry_hardlink(e)) return normalisePath(hard);
  const char* sym = archive_entry_symlink(e);
  if (!sym || sym[0] == '/') return "";
  return normalisePath(dirOf(name) + "/" + sym);
}

Status readEntry(struct archive* a, struct archive_entry* e, const std::string& name,
                 ImageStore& store, ArchiveEntries& entries, TempFiles& temps) {
  bool link = archive_entry_hardlink(e) || archive_entry_filetype(e) == AE_IFLNK;
  if (link) {
    std::string target = linkTarget(e, name);
    if (!target.empty()) entries[name] = ArchiveEntry{"", 0, "", target};
    return {};
  }
  if (archive_entry_filetype(e) != AE_IFREG) return {};  // directories and the like
  std::string temp = store.tempPath();
  temps.all.push_back(temp);
  auto got = extractFile(a, temp);
  if (!got) return got.error();
  entries[name] = *got;
  temps.byEntry[name] = temp;
  return {};
}

Result<ArchiveEntries> extractAll(const std::string& tarPath, ImageStore& store, TempFiles& temps) {
  ArchivePtr a(archive_read_new(), archive_read_free);
  archive_read_support_filter_all(a.get());
  archive_read_support_format_tar(a.get());
  if (archive_read_open_filename(a.get(), tarPath.c_str(), 1 << 16) != ARCHIVE_OK)
    return Error{"cannot read " + tarPath + ": " + archive_error_string(a.get())};
  ArchiveEntries entries;
  std::string last = "(its start)";
  for (size_t n = 0;; ++n) {
    if (n >= kMaxEntries)
      return Error{"cannot load " + tarPath + ": more than " + std::to_string(kMaxEntries) +
                   " entries; an image archive has a few per image"};
    struct archive_entry* e = nullptr;
    int r = archive_read_next_header(a.get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN)
      return Error{"cannot load " + tarPath + ": it is truncated or not a tar archive (after " +
                   last + "): " + archive_error_string(a.get())};
    std::string name = normalisePath(archive_entry_pathname(e) ? archive_entry_pathname(e) : "");
    if (name.empty()) continue;
    if (auto st = readEntry(a.get(), e, name, store, entries, temps); !st)
      return Error{"cannot load " + tarPath + ": " + name + ": " + st.error().message};
    last = name;
  }
  return entries;
}

Result<std::string> readSmallFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{"cannot read it back from " + path + ": " + std::strerror(errno)};
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

Status putPlanned(ImageStore& store, const LoadPlan& plan, const ArchiveEntries& entries,
                  const TempFiles& temps) {
  for (const auto& path : plan.entries) {
    auto put = store.putBlob(temps.byEntry.at(path), entries.find(path)->second.digest);
    if (!put) return Error{path + ": " + put.error().message};
  }
  for (const auto& [digest, body] : plan.synthesized) {
    std::string temp = store.tempPath();
    std::ofstream out(temp, std::ios::binary);
    out << body;
    out.close();
    if (!out) {
      ::unlink(temp.c_str());
      return Error{"cannot write " + temp + ": " + std::strerror(errno)};
    }
    auto put = store.putBlob(temp, digest);
    ::unlink(temp.c_str());  // still there only when the put failed
    if (!put) return Error{"the manifest made for it: " + put.error().message};
  }
  return {};
}

}  // namespace

Result<std::vector<Image>> loadImageArchive(ImageStore& store, const std::string& tarPath) {
  TempFiles temps;
  auto entries = extractAll(tarPath, store, temps);
  if (!entries) return entries.error();
  ReadEntry read = [&temps](const std::string& path) -> Result<std::string> {
    return readSmallFile(temps.byEntry.at(path));
  };
  auto plan = planLoad(tarPath, *entries, read, image::hostPlatform());
  if (!plan) return plan.error();
  if (auto st = putPlanned(store, *plan, *entries, temps); !st)
    return Error{"cannot load " + tarPath + ": " + st.error().message};
  std::vector<Image> loaded;
  for (const auto& i : plan->images) {
    auto image = store.commit(i.ref, i.manifestDigest);
    if (!image)
      return Error{"cannot load " + tarPath + ": image " + (i.ref.empty() ? i.manifestDigest : i.ref) +
                   ": " + image.error().message};
    loaded.push_back(std::move(*image));
  }
  return loaded;
}

}  // namespace shoal::agentd
