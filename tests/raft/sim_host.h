#pragma once
// A virtual world for raftd's real shell (services/raftd/node.h): one clock and one event
// queue for every node, client and message; a network between the nodes that loses,
// duplicates, delays, reorders and partitions what they send; and a NodeHost
// (services/raftd/host.h) for each life of each node over them. Everything runs on one
// thread in the order (virtual time, sequence), so a seed replays exactly — FoundationDB's
// simulation, with LogCabin's substitution points (STYLE.md).
//
// An incarnation is one life of one node's process. Its timers, posted work, background
// completions and peer calls die with it, as they would with the process: the world drops
// every event of a dead incarnation.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "services/raftd/host.h"
#include "services/raftd/node.h"

namespace shoal::raftd::sim {

using Clock = NodeHost::Clock;
using Incarnation = uint64_t;
using namespace std::chrono_literals;

// splitmix64: small, fast, and the same on every platform (std:: distributions are not).
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed * 0x2545f4914f6cdd1dULL + 1) {}
  uint64_t next();
  uint64_t below(uint64_t n) { return n ? next() % n : 0; }
  // Uniform in [lo, hi].
  uint64_t between(uint64_t lo, uint64_t hi) { return lo + below(hi - lo + 1); }
  Clock::duration between(Clock::duration lo, Clock::duration hi);
  bool chance(double p) { return static_cast<double>(next() >> 11) * 0x1.0p-53 < p; }

 private:
  uint64_t s_;
};

// Mixes numbers into one seed (a node's seed from the run's seed, its slot and its life).
uint64_t mixSeed(uint64_t a, uint64_t b, uint64_t c = 0);

class World {
 public:
  static constexpr Clock::time_point kEpoch{std::chrono::hours(1000)};
  // The wall clock the virtual epoch stands for (2024-01-01), for entries' proposal times.
  static constexpr int64_t kEpochUnixNanos = 1'704'067'200'000'000'000;

  Clock::time_point now() const { return now_; }
  Clock::duration elapsed() const { return now_ - kEpoch; }
  int64_t unixNanos() const;

  // Runs fn at `when` (not before now) unless `owner` has died by then; owner 0 is the
  // world itself (clients, the nemesis, the checks), whose events are never dropped.
  uint64_t at(Clock::time_point when, Incarnation owner, std::function<void()> fn);
  uint64_t every(Clock::duration period, Incarnation owner, std::function<void()> fn);
  void cancel(uint64_t id);
  // Runs every event due up to `until`, in order; the clock then reads `until`.
  void runUntil(Clock::time_point until);
  void runFor(Clock::duration d) { runUntil(now_ + d); }

  Incarnation born();
  void kill(Incarnation incarnation);
  bool alive(Incarnation incarnation) const { return alive_.count(incarnation) > 0; }

  // What happened, folded in order (FNV-1a): same seed, same digest.
  void trace(uint64_t a, uint64_t b = 0, uint64_t c = 0);
  uint64_t digest() const { return digest_; }
  uint64_t eventsRun() const { return eventsRun_; }

 private:
  struct Event {
    uint64_t id;
    Incarnation owner;
    Clock::duration period;  // zero: runs once
    std::shared_ptr<std::function<void()>> fn;
  };
  using Key = std::pair<Clock::time_point, uint64_t>;  // (due, sequence)

  void insert(Clock::time_point when, Event ev);

  Clock::time_point now_ = kEpoch;
  uint64_t nextSeq_ = 1;
  uint64_t nextId_ = 1;
  std::map<Key, Event> queue_;
  std::map<uint64_t, Key> byId_;
  std::set<Incarnation> alive_;
  Incarnation nextIncarnation_ = 1;
  uint64_t digest_ = 0xcbf29ce484222325ULL;
  uint64_t eventsRun_ = 0;
};

// How the network behaves now. Delays are drawn per message, so messages reorder.
struct Weather {
  double loss = 0;
  double duplicate = 0;
  double slow = 0;  // share of messages that take slowDelay instead
  Clock::duration minDelay = 1ms;
  Clock::duration maxDelay = 10ms;
  Clock::duration minSlow = 50ms;
  Clock::duration maxSlow = 300ms;
};

struct NetworkStats {
  uint64_t sent = 0;
  uint64_t delivered = 0;
  uint64_t lost = 0;        // to the weather
  uint64_t cut = 0;         // to a partition
  uint64_t unreachable = 0; // nobody alive at the address
  uint64_t duplicated = 0;
};

class SimHost;

// The node living at an address now.
struct Endpoint {
  Incarnation incarnation = 0;
  RaftNode* node = nullptr;
};

class Network {
 public:
  using Resolver = std::function<Endpoint(const std::string& address)>;
  using Arrive = std::function<void(const Endpoint& to, std::string_view bytes)>;

  Network(World& world, Rng& rng, Resolver resolve)
      : world_(world), rng_(rng), resolve_(std::move(resolve)) {}

  Weather weather;
  const NetworkStats& stats() const { return stats_; }

  // One-way cuts, counted: overlapping partitions heal independently.
  void cut(const std::string& from, const std::string& to);
  void restore(const std::string& from, const std::string& to);
  void healAll() { cuts_.clear(); }
  bool isCut(const std::string& from, const std::string& to) const;

  // Carries bytes from one address to another under the weather; `arrive` runs at the
  // other end for each copy that gets there while someone lives at the address. Only Raft's
  // one-way messages may be duplicated: the core must bear it (the paper's network may), but
  // the bus runs over TCP, which never hands a request or an answer over twice.
  enum class Copies { One, MaybeTwo };
  void send(const std::string& from, const std::string& to, std::string bytes, Copies copies,
            Arrive arrive);

  // Hands a request that arrived to the node: the raft protocol to servePeer, the store
  // protocol to serveStore, as a call whose answer goes to `sink`.
  void dispatch(const Endpoint& to, std::string_view bytes, bus::Call::Sink sink);

  // Hosts by incarnation, so that an answer finds its caller while it lives.
  void enroll(Incarnation incarnation, SimHost* host) { hosts_[incarnation] = host; }
  void leave(Incarnation incarnation) { hosts_.erase(incarnation); }
  SimHost* host(Incarnation incarnation) const;

  // Problems the network itself saw (a message that does not decode): the run fails.
  std::vector<std::string> problems;

 private:
  void deliverLater(const std::string& from, const std::string& to,
                    std::shared_ptr<const std::string> bytes, std::shared_ptr<Arrive> arrive);

  World& world_;
  Rng& rng_;
  Resolver resolve_;
  std::map<std::pair<std::string, std::string>, int> cuts_;
  std::map<Incarnation, SimHost*> hosts_;
  NetworkStats stats_;
};

// One incarnation's view of the world.
class SimHost final : public NodeHost {
 public:
  SimHost(World& world, Network& net, Rng& rng, std::string address, Incarnation incarnation);
  ~SimHost() override;

  Clock::time_point now() override { return world_.now(); }
  int64_t unixNanos() override { return world_.unixNanos(); }
  TimerId after(Clock::duration delay, std::function<void()> fn) override;
  TimerId every(Clock::duration period, std::function<void()> fn) override;
  void cancel(TimerId id) override { world_.cancel(id); }
  void post(std::function<void()> fn) override;
  void background(std::function<Status()> work, std::function<void(Status)> done) override;
  void waitBackground() override;

  // The simulated network needs no port and no keys: every address is reachable, whoever
  // lives there gets what is sent.
  Status listenPeers(const std::string&, const std::string&) override {
    listening_ = true;
    return {};
  }
  void closePeers() override {
    listening_ = false;
    connected_.clear();
  }
  bool listening() const { return listening_; }

  void postToPeer(const std::string& address, bus::Buffer message) override;
  uint64_t callPeer(const std::string& address, const bus::Protocol& protocol,
                    std::string envelope, bus::Millis timeout, ReplyFn fn) override;
  void cancelPeerCall(const std::string& address, uint64_t id) override;
  void dropPeer(const std::string& address) override;

  void fatal(const std::string& why) override;
  void setStatusText(const std::string&) override {}

  // Called on fatal(): the owner records it and ends this incarnation (the daemon exits).
  std::function<void(const std::string& why)> onFatal;

  // An answer to callPeer(id) came back over the network.
  void answered(uint64_t id, std::string_view envelope);
  // The process dies: background work not yet run never runs (its captures, such as an LMDB
  // read transaction, end now, while the node's environment is still open).
  void die();

  Incarnation incarnation() const { return incarnation_; }
  // The peers this incarnation opened a connection to: the ones whose death it would hear
  // of from the kernel (RaftNode::peerDisconnected).
  const std::set<std::string>& connected() const { return connected_; }

 private:
  struct PendingCall {
    ReplyFn fn;
    uint64_t timer;
  };
  struct Work {
    std::function<Status()> work;
    std::function<void(Status)> done;
  };

  void runWork(uint64_t id);

  World& world_;
  Network& net_;
  Rng& rng_;
  std::string address_;
  Incarnation incarnation_;
  uint64_t nextCall_ = 1;
  std::map<uint64_t, PendingCall> calls_;
  uint64_t nextWork_ = 1;
  std::map<uint64_t, Work> work_;
  std::map<uint64_t, uint64_t> dones_;  // completions due: their world event
  std::set<std::string> connected_;
  bool listening_ = false;
};

}  // namespace shoal::raftd::sim
