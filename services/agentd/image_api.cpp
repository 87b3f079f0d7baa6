// agentd's image API: `shoal image pull|load|ls|rm` (see image_api.h).
#include "services/agentd/image_api.h"

#include <spdlog/spdlog.h>

#include "common/image_ref.h"
#include "common/protocols.h"
#include "services/agentd/image_archive.h"

namespace shoal::agentd {
namespace {

std::string str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }

bus::Buffer imagesReply(const nlohmann::json& j) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = imageapi::CreateImagesReply(fbb, fbb.CreateString(j.dump()));
  return bus::message<imageapi::Envelope>(fbb, imageapi::Body::ImagesReply, body.Union());
}

// The normalised name `ref` means when it is one of the image's names (`image rm busybox`),
// "" when it is an id or id prefix.
std::string nameIn(const Image& image, std::string_view ref) {
  auto parsed = shoal::image::parse(ref);
  if (!parsed) return "";
  for (const auto& n : image.names)
    if (n == parsed->full()) return n;
  return "";
}

}  // namespace

nlohmann::json imagesJson(const std::vector<Image>& images) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& i : images) list.push_back(imageJson(i));
  return {{"images", list}};
}

ImageApi::ImageApi(bus::Server& server, Loop& loop, ImageStore& store, InUseFn inUse)
    : loop_(loop), store_(store), inUse_(std::move(inUse)) {
  server.serve(kImageProtocol, [this](bus::Call call) { serve(std::move(call)); });
}

ImageApi::~ImageApi() {
  *alive_ = false;
  for (auto& [id, t] : loads_)
    if (t.joinable()) t.join();
}

nlohmann::json ImageApi::status() const {
  return {{"loads_in_flight", loads_.size()}, {"loaded", loaded_}, {"load_failed", loadFailed_},
          {"pulls", pulls_}, {"removed", removed_}};
}

void ImageApi::serve(bus::Call call) {
  auto* env = call.as<imageapi::Envelope>();
  switch (env->body_type()) {
    case imageapi::Body::PullRequest: return pull(std::move(call));
    case imageapi::Body::LoadRequest: return load(std::move(call));
    case imageapi::Body::ListRequest: return list(std::move(call));
    case imageapi::Body::RemoveRequest: return remove(std::move(call));
    default:
      call.fail(wire::ErrorCode::Unimplemented,
                std::string("image message ") + imageapi::EnumNameBody(env->body_type()) +
                    " is not a request agentd serves");
  }
}

void ImageApi::pull(bus::Call call) {
  const auto* req = call.as<imageapi::Envelope>()->body_as_PullRequest();
  std::string ref = str(req->ref());
  if (auto parsed = shoal::image::parse(ref); !parsed)
    return call.fail(wire::ErrorCode::InvalidArgument, parsed.error().message);
  RegistryAuth auth;
  if (std::string encoded = str(req->registry_auth()); !encoded.empty()) {
    auto decoded = decodeRegistryAuth(encoded);
    if (!decoded)
      return call.fail(wire::ErrorCode::InvalidArgument,
                       "the registry credentials sent with the pull cannot be read: " +
                           decoded.error().message + "; run `shoal login` again");
    auth = std::move(*decoded);
  }
  ++pulls_;
  auto shared = std::make_shared<bus::Call>(std::move(call));
  std::weak_ptr<bool> alive = alive_;
  store_.pull(ref, auth, [shared, alive](Result<Image> image) {
    if (alive.expired()) return;
    if (!image) return shared->fail(wire::ErrorCode::Unavailable, image.error().message);
    shared->reply(imagesReply(imagesJson({*image})));
  });
}

void ImageApi::load(bus::Call call) {
  const auto* req = call.as<imageapi::Envelope>()->body_as_LoadRequest();
  std::string path = str(req->path());
  if (path.empty() || path.front() != '/')
    return call.fail(wire::ErrorCode::InvalidArgument,
                     "image load needs the archive's absolute path on this node, not \"" + path +
                         "\"");
  if (loads_.size() >= kMaxLoads)
    return call.fail(wire::ErrorCode::Unavailable,
                     std::to_string(loads_.size()) +
                         " image loads are under way on this node; wait for one to finish");
  uint64_t id = nextLoad_++;
  auto shared = std::make_shared<bus::Call>(std::move(call));
  std::weak_ptr<bool> alive = alive_;
  spdlog::info("image load {}: {}", id, path);
  // The load blocks on disk for as long as the archive takes; its answer comes back to the
  // loop, which alone touches this object.
  loads_[id] = std::thread([this, id, shared, alive, path] {
    auto loaded = loadImageArchive(store_, path);
    loop_.post([this, id, shared, alive, loaded = std::move(loaded)]() mutable {
      if (alive.expired()) return;
      finishLoad(id, shared, std::move(loaded));
    });
  });
}

void ImageApi::finishLoad(uint64_t id, const SharedCall& call, Result<std::vector<Image>> loaded) {
  if (auto it = loads_.find(id); it != loads_.end()) {
    it->second.join();  // it posted this as its last act
    loads_.erase(it);
  }
  if (!loaded) {
    ++loadFailed_;
    spdlog::warn("image load {}: {}", id, loaded.error().message);
    return call->fail(wire::ErrorCode::InvalidArgument, loaded.error().message);
  }
  ++loaded_;
  for (const auto& i : *loaded)
    spdlog::info("image load {}: {} ({})", id, i.names.empty() ? "unnamed" : i.names.front(), i.id);
  call->reply(imagesReply(imagesJson(*loaded)));
}

void ImageApi::list(bus::Call call) { call.reply(imagesReply(imagesJson(store_.list()))); }

void ImageApi::remove(bus::Call call) {
  const auto* req = call.as<imageapi::Envelope>()->body_as_RemoveRequest();
  std::string ref = str(req->ref());
  auto before = store_.find(ref);
  if (!before) return call.fail(wire::ErrorCode::NotFound, "No such image: " + ref);
  std::string name = nameIn(*before, ref);
  std::set<std::string> inUse = inUse_ ? inUse_() : std::set<std::string>();
  if (auto st = store_.remove(ref, req->force(), inUse); !st)
    return call.fail(wire::ErrorCode::Conflict, st.error().message);
  ++removed_;
  nlohmann::json untagged = nlohmann::json::array(), deleted = nlohmann::json::array();
  for (const auto& n : name.empty() ? before->names : std::vector<std::string>{name})
    untagged.push_back(n);
  // An image left without a name and unused goes with the collection below.
  auto after = store_.find(before->id);
  if (!after || (after->names.empty() && !inUse.contains(before->id)))
    deleted.push_back(before->id);
  spdlog::info("image rm {}: untagged {}, deleted {}", ref, untagged.dump(), deleted.dump());
  // Blobs and layer dirs no image refers to any more go (on a worker thread).
  store_.collect(inUse);
  call.reply(imagesReply({{"untagged", untagged}, {"deleted", deleted}}));
}

}  // namespace shoal::agentd
