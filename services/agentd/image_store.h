#pragma once
// The node's images (DESIGN.md §8, docs/containers.md "Images"): a content-addressed store in
// agentd's state dir, filled by pulls from registries (registry.h) and by `shoal image load`
// (image_archive.h), read by the runc executor. Layout under root():
//   blobs/sha256/<hex>      manifests, configs and layer tarballs, each checked against its
//                           digest before it is renamed in from tmp/
//   layers/<hex>/           a layer unpacked (layer_unpack.h), named by its blob's digest;
//                           renamed in complete from tmp/, so never half there
//   images.json             the images: name → manifest digest, config, layers (atomic rename)
//   tmp/                    downloads and unpacks under way; emptied at open()
//
// Thread safety: pulls and loads run on worker threads; every public method may be called from
// the loop thread while they run. Callbacks (PullFn) run on the loop thread.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/loop.h"
#include "common/result.h"

namespace shoal::agentd {

// An image's HEALTHCHECK (OCI config "Healthcheck", docker's field names); durations in ns.
struct ImageHealthcheck {
  std::vector<std::string> test;  // ["CMD", ...], ["CMD-SHELL", "..."] or ["NONE"]
  int64_t interval = 0, timeout = 0, startPeriod = 0, startInterval = 0;
  int retries = 0;
};

// What a container takes from its image's config (the OCI image config's "config" object).
struct ImageConfig {
  std::vector<std::string> entrypoint, cmd, env;
  std::string user, workingDir, stopSignal;
  std::optional<ImageHealthcheck> healthcheck;
  std::map<std::string, std::string> labels;
  std::string architecture, os;  // the config's top level
};
// Reads an OCI/Docker image config JSON document. Errors say which field is wrong.
Result<ImageConfig> parseImageConfig(std::string_view json);

struct Image {
  std::vector<std::string> names;   // normalised references (docker.io/library/busybox:latest)
  std::string id;                   // the config's digest: docker's image ID
  std::string digest;               // the manifest's digest (the repo digest)
  ImageConfig config;
  std::vector<std::string> layers;  // unpacked layer dirs, lowest first (absolute paths)
  int64_t size = 0;                 // bytes of its compressed layers
  int64_t created = 0;              // ns since the epoch, when it came to this node
};
nlohmann::json imageJson(const Image& image);  // {names, id, digest, size, created, layers}

// Credentials for a registry, from ContainerSpec.registry_auth (`--with-registry-auth`) or a
// PullRequest. Encoded as docker's X-Registry-Auth: base64url of a JSON object with
// "username"/"password" or "identitytoken" (and optionally "serveraddress").
struct RegistryAuth {
  std::string username, password, identityToken, serverAddress;
  bool empty() const { return username.empty() && identityToken.empty(); }
};
Result<RegistryAuth> decodeRegistryAuth(std::string_view encoded);
std::string encodeRegistryAuth(const RegistryAuth& auth);

class ImageStore {
 public:
  struct Options {
    size_t parallelDownloads = 4;   // layer downloads at once, per pull
    // Registries spoken to over plain HTTP (host:port), as dockerd's --insecure-registry;
    // localhost and 127.0.0.0/8 always are. Others: HTTPS with the system's CAs.
    std::set<std::string> insecureRegistries;
    std::string caFile;             // extra CA bundle for HTTPS registries; "" none
  };

  // Opens (creates) the store at root, emptying tmp/. Errors name the path.
  static Result<std::unique_ptr<ImageStore>> open(Loop& loop, std::string root, Options options);
  ~ImageStore();
  ImageStore(const ImageStore&) = delete;
  ImageStore& operator=(const ImageStore&) = delete;

  using PullFn = std::function<void(Result<Image>)>;
  // The image `ref` names, from the store when it has it (pull policy "missing"), else
  // pulled. Concurrent calls for one reference share one pull. `done` runs on the loop,
  // never inside this call. Errors are what `service ps` shows: they name the image and say
  // what went wrong ("pull access denied for 127.0.0.1:5000/x: wrong username or password").
  void ensure(const std::string& ref, const RegistryAuth& auth, PullFn done);
  // Always asks the registry (`shoal image pull`); shares a pull under way like ensure().
  void pull(const std::string& ref, const RegistryAuth& auth, PullFn done);

  // By reference (normalised here), image id, or unique id prefix. NotFound otherwise.
  Result<Image> find(std::string_view refOrId) const;
  std::vector<Image> list() const;

  // ---- for image_archive.h (`shoal image load`), on its worker thread
  // Moves the file at `path` into blobs/ if its sha256 is `expectedDigest` (sha256:<hex>);
  // an empty expectedDigest takes the file's digest. Returns the digest.
  Result<std::string> putBlob(const std::string& path, std::string_view expectedDigest);
  // Records an image whose manifest (and its config and layers) are in blobs/: unpacks the
  // layers not unpacked yet and names it `ref` (moving the name from an older image).
  Result<Image> commit(const std::string& ref, std::string_view manifestDigest);
  // A fresh path under tmp/ for a blob or an unpack being written.
  std::string tempPath() const;

  // `shoal image rm`: the name, or an id (all its names). An image a task uses (`inUse`
  // holds image ids) is refused unless force, which removes only the names.
  Status remove(std::string_view refOrId, bool force, const std::set<std::string>& inUse);
  // Unused images collected: images without a name and not in use go, then blobs and layer
  // dirs no image refers to. Runs on a worker thread; returns at once.
  void collect(const std::set<std::string>& inUse);

  const std::string& root() const;
  // {images, blobs, layers, pulls_in_flight, pulled, failed, bytes_downloaded}
  nlohmann::json status() const;

 private:
  struct State;
  explicit ImageStore(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace shoal::agentd
