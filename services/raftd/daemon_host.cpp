#include "services/raftd/daemon_host.h"

#include <spdlog/spdlog.h>

#include "common/node_dir.h"
#include "services/raftd/protocols.h"

namespace shoal::raftd {

namespace {
// The ZAP domain of the peer port: the ZAP handler answers for no other server.
constexpr const char* kPeerDomain = "raft";
}  // namespace

Result<std::unique_ptr<DaemonHost>> DaemonHost::start(Daemon& daemon, const NodeOptions& options) {
  std::unique_ptr<DaemonHost> host(new DaemonHost(daemon));
  auto dir = node::NodeDir::open(daemon.nodeDir());
  if (!dir) return Error{"cannot open the node dir: " + dir.error().message, dir.error().code};
  host->key_ = dir->key();
  host->zap_ = std::make_unique<curve::ZapHandler>(
      daemon.loop(), daemon.zmq(),
      [h = host.get()](std::string_view domain, std::string_view, std::string_view key) {
        return domain == kPeerDomain && h->node_ && h->node_->admitsPeerKey(key);
      });
  auto node = RaftNode::open(*host, daemon.stateDir(), options);
  if (!node) return node.error();
  host->node_ = std::move(node).value();
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

Status DaemonHost::listenPeers(const std::string& listenAddr, const std::string& advertiseAddr) {
  closePeers();
  // The key may have changed since start: a leave makes a new one (node_dir.h).
  auto dir = node::NodeDir::open(daemon_.nodeDir());
  if (!dir) return Error{"cannot open the node dir: " + dir.error().message, dir.error().code};
  key_ = dir->key();
  auto server = std::make_unique<bus::Server>(daemon_.loop(), daemon_.zmq());
  server->setCurve({key_.publicKey, key_.secretKey}, kPeerDomain);
  // node_ is null while RaftNode::open runs a node from its state: nothing arrives before
  // the loop runs, by which time it is set.
  server->serve(kRaftProtocol, [this](bus::Call call) {
    if (node_ && admitted(call)) node_->servePeer(std::move(call));
  });
  server->serve(kStoreProtocol, [this](bus::Call call) {
    if (!node_) return call.fail(wire::ErrorCode::Unavailable, "raftd is starting; retry");
    if (admitted(call)) node_->serveForwarded(std::move(call));
  });
  if (auto st = server->bind("tcp://" + listenAddr); !st)
    return Error{"cannot listen for raft peers on " + listenAddr + ": " + st.error().message +
                     "; choose another listen address (the dispatcher's port + 1 is used)",
                 st.error().code};
  peerServer_ = std::move(server);
  spdlog::info("raft peers: listening on {} with CURVE (advertised as {})", listenAddr, advertiseAddr);
  return {};
}

void DaemonHost::closePeers() {
  calls_.clear();
  peers_.clear();
  if (peerServer_) {
    peerServer_->close();
    peerServer_.reset();
    spdlog::info("raft peers: the peer port is closed");
  }
}

void DaemonHost::peerKeysChanged() {
  // A connection made with a key that is no longer the peer's is made again with the new one.
  for (auto it = peers_.begin(); it != peers_.end();) {
    if (node_ && node_->peerKeyOf(it->first) != it->second.key) {
      std::erase_if(calls_, [&](auto& kv) { return kv.second.address == it->first; });
      it = peers_.erase(it);
    } else {
      ++it;
    }
  }
}

bool DaemonHost::admitted(bus::Call& call) {
  if (node_->admitsPeerKey(call.peerKey())) return true;
  // It connected while its key was admitted; its Node has since been removed or demoted.
  node_->droppedPeerMessage("dropped a peer message from key " + call.peerKey() +
                            ", which is not a manager's of this cluster");
  if (call.request().kind() == wire::Kind::Request && call.requestId() != 0 &&
      &call.request().protocol() == &kStoreProtocol)
    call.fail(wire::ErrorCode::Unavailable, "the raft peer port serves managers of this cluster only");
  return false;
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

DaemonHost::Peer* DaemonHost::peer(const std::string& address) {
  if (auto it = peers_.find(address); it != peers_.end()) return &it->second;
  std::string key = node_ ? node_->peerKeyOf(address) : std::string();
  if (key.empty()) {
    noKeyWarning_.warn("no key is known for the raft peer at " + address +
                       " (no manager Node names it yet); not connecting");
    return nullptr;
  }
  Peer& p = peers_[address];
  p.key = key;
  {
    p.raft = std::make_unique<bus::Client>(daemon_.loop(), daemon_.zmq(), kRaftProtocol);
    p.store = std::make_unique<bus::Client>(daemon_.loop(), daemon_.zmq(), kStoreProtocol);
    p.raft->setCurve({key, key_.publicKey, key_.secretKey});
    p.store->setCurve({key, key_.publicKey, key_.secretKey});
    if (auto st = p.raft->connect("tcp://" + address); !st) spdlog::warn("{}", st.error().message);
    if (auto st = p.store->connect("tcp://" + address); !st) spdlog::warn("{}", st.error().message);
    p.raft->onDisconnect([this, address] {
      if (node_) node_->peerDisconnected(address);
    });
  }
  return &p;
}

void DaemonHost::postToPeer(const std::string& address, bus::Buffer message) {
  if (Peer* p = peer(address)) p->raft->post(std::move(message));
}

uint64_t DaemonHost::callPeer(const std::string& address, const bus::Protocol& protocol,
                              std::string envelope, bus::Millis timeout, ReplyFn fn) {
  bool store = protocol.name == kStoreProtocol.name;
  uint64_t id = nextCall_++;
  Peer* p = peer(address);
  if (!p) {
    // Answered from the loop, as a reply would be: the caller has recorded the call by then.
    calls_[id] = {address, store, 0};
    daemon_.loop().post([this, id, fn = std::move(fn), address] {
      if (!calls_.erase(id)) return;  // cancelled meanwhile
      fn(Error{"no key is known for the raft peer at " + address + "; retry shortly",
               static_cast<int>(wire::ErrorCode::Unavailable)});
    });
    return id;
  }
  uint64_t clientCall = (store ? p->store : p->raft)->callRaw(
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
  if (p != peers_.end() && it->second.clientCall)
    (it->second.store ? p->second.store : p->second.raft)->cancel(it->second.clientCall);
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
  j["peer_zap"] = {{"admitted", zap_ ? zap_->admitted() : 0}, {"refused", zap_ ? zap_->refused() : 0}};
  j["peer_connections"] = peers_.size();
  if (peerServer_) {
    auto& s = peerServer_->stats();
    j["peer_bus"] = {{"received", s.received},   {"sent", s.sent},
                     {"bad_messages", s.badMessages}, {"dropped", s.dropped},
                     {"fell_behind", s.fellBehind}, {"held", peerServer_->held()}};
  }
}

}  // namespace shoal::raftd
