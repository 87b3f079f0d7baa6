#include "services/agentd/local_daemons.h"

#include <spdlog/spdlog.h>

#include "common/protocols.h"

namespace shoal::agentd {

LocalDaemons::LocalDaemons(Loop& loop, zmq::context_t& ctx, const std::string& runDir)
    : raftdSocket_(runDir + "/raftd.sock"),
      dispatcherdSocket_(runDir + "/dispatcherd.sock"),
      raftd_(loop, ctx, kSwarmProtocol),
      dispatcherd_(loop, ctx, kControlProtocol) {
  // ipc connects succeed before the daemon is there; a call then waits for it (or times out).
  if (auto st = raftd_.connect("ipc://" + raftdSocket_); !st)
    spdlog::warn("{}", st.error().message);
  if (auto st = dispatcherd_.connect("ipc://" + dispatcherdSocket_); !st)
    spdlog::warn("{}", st.error().message);
}

LocalDaemons::Done LocalDaemons::explain(std::string daemon, std::string socket, Done done) {
  return [daemon = std::move(daemon), socket = std::move(socket),
          done = std::move(done)](Status st) {
    if (st || st.error().code != static_cast<int>(wire::ErrorCode::DeadlineExceeded))
      return done(std::move(st));
    done(Error{daemon + " did not answer on " + socket + " within " +
                   std::to_string(kTimeout.count() / 1000) + " s; is it running?",
               st.error().code});
  };
}

namespace {

// The reply of a call whose answer carries nothing but success.
Status outcome(Result<bus::Frame>& r) {
  if (!r) return r.error();
  return {};
}

}  // namespace

void LocalDaemons::joinRaft(const RaftStart& start, Done done) {
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<flatbuffers::Offset<swarmapi::RaftPeer>> peers;
  for (const auto& p : start.membership.peers)
    peers.push_back(swarmapi::CreateRaftPeer(fbb, p.raftId, fbb.CreateString(p.addr),
                                             fbb.CreateString(p.publicKey)));
  auto body = swarmapi::CreateJoinRaftRequest(
      fbb, start.membership.raftId, start.membership.raftClusterId,
      fbb.CreateString(start.listenAddr), fbb.CreateString(start.advertiseAddr),
      fbb.CreateVector(peers));
  raftd_.call(bus::message<swarmapi::Envelope>(fbb, swarmapi::Body::JoinRaftRequest, body.Union()),
              kTimeout, [done = explain("raftd", raftdSocket_, std::move(done))](
                            Result<bus::Frame> r) { done(outcome(r)); });
}

void LocalDaemons::leaveRaft(bool force, Done done) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = swarmapi::CreateLeaveRequest(fbb, force);
  raftd_.call(bus::message<swarmapi::Envelope>(fbb, swarmapi::Body::LeaveRequest, body.Union()),
              kTimeout, [done = explain("raftd", raftdSocket_, std::move(done))](
                            Result<bus::Frame> r) { done(outcome(r)); });
}

void LocalDaemons::reloadDispatcher(Done done) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = control::CreateReloadRequest(fbb);
  dispatcherd_.call(
      bus::message<control::Envelope>(fbb, control::Body::ReloadRequest, body.Union()), kTimeout,
      [done = explain("dispatcherd", dispatcherdSocket_, std::move(done))](Result<bus::Frame> r) {
        done(outcome(r));
      });
}

}  // namespace shoal::agentd
