#include "services/raftd/daemon_host.h"

#include <spdlog/spdlog.h>

#include "services/raftd/protocols.h"

namespace shoal::raftd {

Result<std::unique_ptr<DaemonHost>> DaemonHost::start(Daemon& daemon, const NodeOptions& options) {
  std::unique_ptr<DaemonHost> host(new DaemonHost(daemon));
  auto node = RaftNode::open(*host, daemon.stateDir(), options);
  if (!node) return node.error();
  host->node_ = std::move(node).value();
  if (auto st = host->bindPeerPort(options.listenAddr, host->node_->address()); !st) return st.error();
  RaftNode* n = host->node_.get();
  daemon.addStatus([h = host.get()](nlohmann::json& j) { h->status(j); });
  daemon.server().serve(kStoreProtocol, [n](bus::Call call) { n->serveStore(std::move(call)); });
  daemon.onStop([n] { n->stop(); });
  return host;
}

DaemonHost::~DaemonHost() {
  node_.reset();  // it waits for background work through waitBackground()
  waitBackground();
}

int64_t DaemonHost::unixNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Status DaemonHost::bindPeerPort(const std::string& listenAddr, const std::string& advertiseAddr) {
  peerServer_ = std::make_unique<bus::Server>(daemon_.loop(), daemon_.zmq());
  peerServer_->serve(kRaftProtocol, [this](bus::Call call) { node_->servePeer(std::move(call)); });
  peerServer_->serve(kStoreProtocol, [this](bus::Call call) { node_->serveForwarded(std::move(call)); });
  if (auto st = peerServer_->bind("tcp://" + listenAddr); !st)
    return Error{st.error().message + "; choose another --listen-addr"};
  spdlog::info("raft peers: listening on {} (advertised as {})", listenAddr, advertiseAddr);
  return {};
}

void DaemonHost::background(std::function<Status()> work, std::function<void(Status)> done) {
  uint64_t id = nextWorker_++;
  workers_[id] = std::thread([this, id, work = std::move(work), done = std::move(done), gen = generation_]() mutable {
    Status st = work();
    daemon_.loop().post([this, id, st, gen, done = std::move(done)] {
      // The worker has posted this as its last act: joining it takes no time.
      if (auto it = workers_.find(id); it != workers_.end()) {
        it->second.join();
        workers_.erase(it);
      }
      if (gen == generation_) done(st);
    });
  });
}

void DaemonHost::waitBackground() {
  for (auto& [id, t] : workers_) t.join();
  workers_.clear();
  ++generation_;
}

DaemonHost::Peer& DaemonHost::peer(const std::string& address) {
  Peer& p = peers_[address];
  if (!p.raft) {
    p.raft = std::make_unique<bus::Client>(daemon_.loop(), daemon_.zmq(), kRaftProtocol);
    p.store = std::make_unique<bus::Client>(daemon_.loop(), daemon_.zmq(), kStoreProtocol);
    if (auto st = p.raft->connect("tcp://" + address); !st) spdlog::warn("{}", st.error().message);
    if (auto st = p.store->connect("tcp://" + address); !st) spdlog::warn("{}", st.error().message);
    p.raft->onDisconnect([this, address] {
      if (node_) node_->peerDisconnected(address);
    });
  }
  return p;
}

void DaemonHost::postToPeer(const std::string& address, bus::Buffer message) {
  peer(address).raft->post(std::move(message));
}

uint64_t DaemonHost::callPeer(const std::string& address, const bus::Protocol& protocol,
                              std::string envelope, bus::Millis timeout, ReplyFn fn) {
  bool store = protocol.name == kStoreProtocol.name;
  Peer& p = peer(address);
  uint64_t id = nextCall_++;
  uint64_t clientCall = (store ? p.store : p.raft)->callRaw(
      std::move(envelope), timeout, [this, id, fn = std::move(fn)](Result<bus::Frame> r) {
        calls_.erase(id);
        fn(std::move(r));
      });
  calls_[id] = {address, store, clientCall};
  return id;
}

void DaemonHost::cancelPeerCall(const std::string& address, uint64_t id) {
  auto it = calls_.find(id);
  if (it == calls_.end() || it->second.address != address) return;
  auto p = peers_.find(address);
  if (p != peers_.end()) (it->second.store ? p->second.store : p->second.raft)->cancel(it->second.clientCall);
  calls_.erase(it);
}

void DaemonHost::dropPeer(const std::string& address) {
  std::erase_if(calls_, [&](auto& kv) { return kv.second.address == address; });
  peers_.erase(address);
}

void DaemonHost::fatal(const std::string& why) {
  daemon_.setStatusText("stopping: " + why);
  daemon_.requestStop();
}

void DaemonHost::status(nlohmann::json& j) const {
  node_->status(j);
  if (peerServer_) {
    auto& s = peerServer_->stats();
    j["peer_bus"] = {{"received", s.received},   {"sent", s.sent},
                     {"bad_messages", s.badMessages}, {"dropped", s.dropped},
                     {"fell_behind", s.fellBehind}, {"held", peerServer_->held()}};
  }
}

}  // namespace shoal::raftd
