#pragma once
// What raftd's shell (RaftNode, node.h) needs from the world outside it: time and timers,
// work off the loop thread, the peers, and the process. The daemon gives it a host built on
// its event loop, ZeroMQ and threads (daemon_host.h); the shell's simulation
// (tests/raft/shell_sim.cpp) gives it a virtual clock, a network that loses, duplicates,
// delays and partitions, and runs background work inline, so the real shell — not a model of
// it — runs deterministically (LogCabin's substitution points, STYLE.md).
//
// Every call happens on the shell's thread, and every callback the host makes runs there.

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/bus.h"
#include "common/loop.h"
#include "common/result.h"

namespace shoal::raftd {

class NodeHost {
 public:
  using Clock = Loop::Clock;
  using TimerId = Loop::TimerId;
  using ReplyFn = std::function<void(Result<bus::Frame>)>;

  virtual ~NodeHost() = default;

  // --- time ---
  virtual Clock::time_point now() = 0;
  // Wall-clock time in Unix nanoseconds: the proposal time written into entries.
  virtual int64_t unixNanos() = 0;
  virtual TimerId after(Clock::duration delay, std::function<void()> fn) = 0;
  virtual TimerId every(Clock::duration period, std::function<void()> fn) = 0;
  virtual void cancel(TimerId id) = 0;
  // Runs fn soon, after what is already due (group commit relies on this).
  virtual void post(std::function<void()> fn) = 0;
  // Runs work off the shell's thread, then done(work's result) on it. work touches only
  // what the shell leaves to it until done runs: what it captured (an LMDB read transaction,
  // a path), or the storage while the shell keeps off it (a snapshot install: the shell
  // neither steps its core nor reads its store until done).
  virtual void background(std::function<Status()> work, std::function<void(Status)> done) = 0;
  // Returns once no background work runs; the done callbacks of what ran are dropped. The
  // node calls it when it is destroyed, since its work may use the node's storage.
  virtual void waitBackground() {}

  // --- the peer port ---
  // Binds the peer port (DaemonHost: CURVE with the node key; the node's admitsPeerKey()
  // decides who may connect) and serves it until closePeers(). An error names the address.
  virtual Status listenPeers(const std::string& listenAddr, const std::string& advertiseAddr) = 0;
  // Unbinds the peer port and drops every peer connection (the node left its cluster).
  virtual void closePeers() = 0;
  // The keys the node knows its peers by (peerKeyOf, admitsPeerKey) changed: connections made
  // with an old key are remade, connected peers that lost admission are refused from now on.
  virtual void peerKeysChanged() {}

  // --- peers, by address (host:port) ---
  // A one-way raft message; lost silently if the peer cannot be reached.
  virtual void postToPeer(const std::string& address, bus::Buffer message) = 0;
  // A request to a peer (a forwarded store request). fn gets the answer, or an error
  // when it fails or times out; it is never called after cancelPeerCall(id).
  virtual uint64_t callPeer(const std::string& address, const bus::Protocol& protocol,
                            std::string envelope, bus::Millis timeout, ReplyFn fn) = 0;
  virtual void cancelPeerCall(const std::string& address, uint64_t id) = 0;
  // The connection to address is not needed any more (the member left or moved).
  virtual void dropPeer(const std::string& address) = 0;

  // --- the process ---
  // State that must not be lost could not be written: stop serving (the daemon exits).
  virtual void fatal(const std::string& why) = 0;
  // One line for systemd's STATUS= and Status.
  virtual void setStatusText(const std::string& text) = 0;
  // The Status a store client gets: j holds the node's; the daemon's host replaces it by the
  // whole daemon's (pid, RSS, log level, bus counters, and the node's).
  virtual void describe(nlohmann::json& j) { (void)j; }
};

}  // namespace shoal::raftd
