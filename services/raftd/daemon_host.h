#pragma once
// raftd as a daemon: the NodeHost (host.h) built on the daemon's event loop, ZeroMQ sockets
// and threads, the peer port (raft messages and forwarded store requests), and the wiring of
// the node into raftd.sock, Status and shutdown.
//
// The peer port runs on CURVE only (docs/cluster.md "Ports"): its server key and the client
// key of every peer link are the node key (node dir's node.key); a ZAP handler admits the
// keys the node admits (RaftNode::admitsPeerKey: manager Nodes of the store, joinRaft's
// seeds), and a message from a key that lost admission since it connected is dropped.

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/bus.h"
#include "common/curve.h"
#include "common/daemon.h"
#include "services/raftd/host.h"
#include "services/raftd/node.h"

namespace shoal::raftd {

class DaemonHost final : public NodeHost {
 public:
  // Opens the node in the daemon's state dir (binding the peer port when it is in a cluster)
  // and serves the store protocol on raftd.sock.
  static Result<std::unique_ptr<DaemonHost>> start(Daemon& daemon, const NodeOptions& options);
  ~DaemonHost() override;

  RaftNode& node() { return *node_; }

  Clock::time_point now() override { return daemon_.loop().now(); }
  int64_t unixNanos() override;
  TimerId after(Clock::duration delay, std::function<void()> fn) override {
    return daemon_.loop().after(delay, std::move(fn));
  }
  TimerId every(Clock::duration period, std::function<void()> fn) override {
    return daemon_.loop().every(period, std::move(fn));
  }
  void cancel(TimerId id) override { daemon_.loop().cancel(id); }
  void post(std::function<void()> fn) override { daemon_.loop().post(std::move(fn)); }
  void background(std::function<Status()> work, std::function<void(Status)> done) override;
  void waitBackground() override;

  Status listenPeers(const std::string& listenAddr, const std::string& advertiseAddr) override;
  void closePeers() override;
  void peerKeysChanged() override;

  void postToPeer(const std::string& address, bus::Buffer message) override;
  uint64_t callPeer(const std::string& address, const bus::Protocol& protocol, std::string envelope,
                    bus::Millis timeout, ReplyFn fn) override;
  void cancelPeerCall(const std::string& address, uint64_t id) override;
  void dropPeer(const std::string& address) override;

  void fatal(const std::string& why) override;
  void setStatusText(const std::string& text) override { daemon_.setStatusText(text); }
  void describe(nlohmann::json& j) override { j = daemon_.status(); }

 private:
  struct Peer {
    std::string key;                     // the server key the clients connected with
    std::unique_ptr<bus::Client> raft;   // one-way raft messages
    std::unique_ptr<bus::Client> store;  // forwarded store requests
  };
  struct PeerCall {
    std::string address;
    bool store;
    uint64_t clientCall;
  };

  explicit DaemonHost(Daemon& daemon) : daemon_(daemon) {}
  // The connection to the peer at address, made with its key; null when its key is unknown.
  Peer* peer(const std::string& address);
  // Whether a call on the peer port comes from a key still admitted (else it is dropped).
  bool admitted(bus::Call& call);
  void status(nlohmann::json& j) const;

  Daemon& daemon_;
  curve::KeyPair key_;  // the node key
  std::unique_ptr<curve::ZapHandler> zap_;
  std::unique_ptr<bus::Server> peerServer_;
  bus::RateLimitedWarning noKeyWarning_;
  std::map<std::string, Peer> peers_;
  std::map<uint64_t, PeerCall> calls_;
  uint64_t nextCall_ = 1;
  std::map<uint64_t, std::thread> workers_;
  uint64_t nextWorker_ = 1;
  uint64_t generation_ = 0;  // done callbacks of an earlier generation are dropped
  std::unique_ptr<RaftNode> node_;
};

}  // namespace shoal::raftd
