#pragma once
// The node's image API (schemas/images.fbs, docs/containers.md "Node-local commands"): agentd
// answers `shoal image pull|load|ls|rm` on agentd.sock, as docker's engine answers `docker
// image ...` on each node. Images are per node.
//
// Wiring (engineer D, where the ImageStore lives; the runc executor owns it):
//   imageApi_ = std::make_unique<ImageApi>(daemon.server(), daemon.loop(), *store,
//                                          [executor] { return executor->imagesInUse(); });
//   daemon.addStatus([api = imageApi_.get()](nlohmann::json& j) { j["image_api"] = api->status(); });
// It must be destroyed before the store, and while the loop is not running a callback of its
// own (as every agentd part is: at shutdown, after the loop stopped).
//
// Replies are ImagesReply JSON documents, what the CLI prints from:
//   pull, list:  {"images": [imageJson]}           (image_store.h imageJson)
//   load:        {"images": [imageJson]}           one per name loaded (an unnamed one once)
//   remove:      {"untagged": [name...], "deleted": [image id...]}
// Errors: InvalidArgument (a bad reference, path or credentials; an archive that cannot be
// loaded), NotFound (no such image), Conflict (the image is in use), Unavailable (a pull that
// failed; too many loads at once).

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/bus.h"
#include "common/loop.h"
#include "services/agentd/image_store.h"

namespace shoal::agentd {

class ImageApi {
 public:
  // The image ids the node's tasks use: those `image rm` refuses without -f, and that
  // collection keeps.
  using InUseFn = std::function<std::set<std::string>()>;
  // Loads (each a thread reading a tarball) at once; more are refused as Unavailable.
  static constexpr size_t kMaxLoads = 4;

  ImageApi(bus::Server& server, Loop& loop, ImageStore& store, InUseFn inUse);
  // Waits for the loads under way (their answers are dropped).
  ~ImageApi();
  ImageApi(const ImageApi&) = delete;
  ImageApi& operator=(const ImageApi&) = delete;

  // {loads_in_flight, loaded, load_failed, pulls, removed}
  nlohmann::json status() const;

 private:
  using SharedCall = std::shared_ptr<bus::Call>;
  void serve(bus::Call call);
  void pull(bus::Call call);
  void load(bus::Call call);
  void list(bus::Call call);
  void remove(bus::Call call);
  void finishLoad(uint64_t id, const SharedCall& call, Result<std::vector<Image>> loaded);

  Loop& loop_;
  ImageStore& store_;
  InUseFn inUse_;
  // Tells callbacks posted by loads and pulls whether this object is still there.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::map<uint64_t, std::thread> loads_;
  uint64_t nextLoad_ = 1;
  uint64_t loaded_ = 0, loadFailed_ = 0, pulls_ = 0, removed_ = 0;
};

// The ImagesReply JSON of images: {"images": [imageJson...]}.
nlohmann::json imagesJson(const std::vector<Image>& images);

}  // namespace shoal::agentd
