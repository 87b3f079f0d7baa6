#include "services/agentd/container_api.h"

#include <spdlog/spdlog.h>

#include "common/protocols.h"

namespace shoal::agentd {
namespace {

std::string str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }

wire::ErrorCode codeOf(const Error& e, wire::ErrorCode otherwise) {
  if (e.code > 0 && e.code <= static_cast<int>(wire::ErrorCode::MAX))
    return static_cast<wire::ErrorCode>(e.code);
  return otherwise;
}

template <class Body>
bus::Buffer reply(flatbuffers::FlatBufferBuilder& fbb, containerapi::Body type,
                  flatbuffers::Offset<Body> body) {
  return bus::message<containerapi::Envelope>(fbb, type, body.Union());
}

}  // namespace

void ContainerApi::serve(bus::Call call) {
  const auto* env = call.as<containerapi::Envelope>();
  if (!executor_)
    return call.fail(wire::ErrorCode::Unavailable,
                     "this agentd runs the fake executor (--executor fake): it has no "
                     "containers or volumes; start it with --executor runc");
  switch (env->body_type()) {
    case containerapi::Body::ListRequest: return list(std::move(call), *env->body_as_ListRequest());
    case containerapi::Body::RemoveRequest:
      return remove(std::move(call), *env->body_as_RemoveRequest());
    case containerapi::Body::VolumeListRequest: return listVolumes(std::move(call));
    case containerapi::Body::VolumeRemoveRequest:
      return removeVolume(std::move(call), *env->body_as_VolumeRemoveRequest());
    default:
      // The verifier lets a union's body be absent: a kind without its table lands here too.
      call.fail(wire::ErrorCode::Unimplemented,
                std::string("container message ") + containerapi::EnumNameBody(env->body_type()) +
                    " is not a request agentd serves (or its body is missing)");
  }
}

void ContainerApi::list(bus::Call call, const containerapi::ListRequest& req) {
  nlohmann::json j = {{"containers", executor_->containers(req.all())}};
  flatbuffers::FlatBufferBuilder fbb;
  auto body = containerapi::CreateListReply(fbb, fbb.CreateString(j.dump()));
  call.reply(reply(fbb, containerapi::Body::ListReply, body));
}

void ContainerApi::remove(bus::Call call, const containerapi::RemoveRequest& req) {
  auto st = executor_->removeByHand(str(req.container()), req.force());
  if (!st) return call.fail(codeOf(st.error(), wire::ErrorCode::Internal), st.error().message);
  flatbuffers::FlatBufferBuilder fbb;
  call.reply(reply(fbb, containerapi::Body::RemoveReply, containerapi::CreateRemoveReply(fbb)));
}

void ContainerApi::listVolumes(bus::Call call) {
  auto users = executor_->volumeUsers();
  auto volumes = nlohmann::json::array();
  for (const auto& v : executor_->volumes().list()) {
    auto it = users.find(v.name);
    volumes.push_back({{"name", v.name}, {"driver", "local"}, {"mountpoint", v.mountpoint},
                       {"created", v.created},
                       {"in_use_by", it == users.end() ? std::vector<std::string>{}
                                                       : it->second}});
  }
  flatbuffers::FlatBufferBuilder fbb;
  nlohmann::json j = {{"volumes", volumes}};
  auto body = containerapi::CreateVolumeListReply(fbb, fbb.CreateString(j.dump()));
  call.reply(reply(fbb, containerapi::Body::VolumeListReply, body));
}

// Docker's rules: a volume a container uses (running or not) stays; -f only quiets a
// volume that is not there.
void ContainerApi::removeVolume(bus::Call call, const containerapi::VolumeRemoveRequest& req) {
  std::string name = str(req.name());
  auto users = executor_->volumeUsers();
  if (auto it = users.find(name); it != users.end() && !it->second.empty())
    return call.fail(wire::ErrorCode::Conflict,
                     "remove " + name + ": volume is in use - [" + it->second.front() +
                         (it->second.size() > 1 ? ", ..." : "") +
                         "]; remove the service (or its task's container) first");
  auto st = executor_->volumes().remove(name);
  bool missing = !st && st.error().code == static_cast<int>(wire::ErrorCode::NotFound);
  if (!st && !(missing && req.force()))
    return call.fail(codeOf(st.error(), wire::ErrorCode::Internal), st.error().message);
  if (st) spdlog::info("volume {} removed", name);
  flatbuffers::FlatBufferBuilder fbb;
  call.reply(reply(fbb, containerapi::Body::VolumeRemoveReply,
                   containerapi::CreateVolumeRemoveReply(fbb)));
}

}  // namespace shoal::agentd
