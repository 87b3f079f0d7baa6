#include "services/agentd/sandbox_client.h"

#include <sys/stat.h>

#include "common/bus.h"
#include "common/protocols.h"

namespace shoal::agentd {

namespace {

// Making a netns is about a millisecond; this covers an overlayd that is busy, not one that
// is gone (that is told at once by its missing socket).
constexpr std::chrono::milliseconds kTimeout{10'000};

bool socketThere(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

}  // namespace

struct SandboxClient::Impl {
  Impl(Loop& l, zmq::context_t& ctx, std::string run)
      : loop(l), socket(run + "/overlayd.sock"), client(l, ctx, kOverlayProtocol) {
    // An ipc connect succeeds before overlayd is there; a call then waits for it.
    connected = client.connect("ipc://" + socket);
  }

  std::string notAnswering() const {
    return "overlayd is not answering at " + socket +
           ": start it (systemctl start shoal-overlayd, or overlayd --run-dir " +
           socket.substr(0, socket.rfind('/')) + ")";
  }

  // The call's reply frame, or an error that says which daemon failed and what to do.
  void call(bus::Buffer request, std::function<void(Result<bus::Frame>)> done) {
    if (!connected || !socketThere(socket)) {
      Error e{notAnswering(), static_cast<int>(wire::ErrorCode::Unavailable)};
      return loop.post([done = std::move(done), e] { done(e); });
    }
    std::weak_ptr<bool> live = alive;
    client.call(std::move(request), kTimeout,
                [this, live, done = std::move(done)](Result<bus::Frame> r) {
      if (live.expired()) return;
      if (!r && r.error().code == static_cast<int>(wire::ErrorCode::DeadlineExceeded))
        return done(Error{notAnswering() + " (no answer within " +
                              std::to_string(kTimeout.count() / 1000) + " s)",
                          r.error().code});
      if (!r) return done(Error{"overlayd: " + r.error().message, r.error().code});
      done(std::move(r));
    });
  }

  Loop& loop;
  std::string socket;
  bus::Client client;
  Status connected;
  std::shared_ptr<bool> alive = std::make_shared<bool>(true);
};

SandboxClient::SandboxClient(Loop& loop, zmq::context_t& ctx, std::string runDir)
    : impl_(std::make_unique<Impl>(loop, ctx, std::move(runDir))) {}

SandboxClient::~SandboxClient() = default;

void SandboxClient::create(const std::string& taskId, PathFn done) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = overlayapi::CreateCreateSandboxRequestDirect(fbb, taskId.c_str());
  impl_->call(bus::message<overlayapi::Envelope>(fbb, overlayapi::Body::CreateSandboxRequest, body.Union()),
              [done = std::move(done)](Result<bus::Frame> r) {
    if (!r) return done(r.error());
    const auto* reply = r->as<overlayapi::Envelope>()->body_as_SandboxReply();
    if (!reply || !reply->path() || reply->path()->size() == 0)
      return done(Error{"overlayd answered a sandbox create without its path"});
    done(reply->path()->str());
  });
}

void SandboxClient::remove(const std::string& taskId, std::function<void(Status)> done) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = overlayapi::CreateRemoveSandboxRequestDirect(fbb, taskId.c_str());
  impl_->call(bus::message<overlayapi::Envelope>(fbb, overlayapi::Body::RemoveSandboxRequest, body.Union()),
              [done = std::move(done)](Result<bus::Frame> r) {
    if (!r) return done(r.error());
    done(Status{});
  });
}

}  // namespace shoal::agentd
