#pragma once
// How an agent keeps its session (DESIGN.md §7, docs/cluster.md "Sessions and heartbeats"):
// which manager to try next, how long to wait before it, and when to send the next
// heartbeat. Pure: time and randomness come from the caller.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/node_dir.h"

namespace shoal::agentd {

using Millis = std::chrono::milliseconds;
using Nanos = std::chrono::nanoseconds;

// Waits between attempts to reach a manager: 100 ms, doubling up to 8 s, back to 100 ms once
// a session is up. Swarm's agent does the same so that a cluster without a leader is not
// hammered by every node at once.
class Backoff {
 public:
  static constexpr Millis kFirst{100};
  static constexpr Millis kMax{8000};

  // The wait before the next attempt; each call doubles the one after it.
  Millis next();
  // The wait the next call of next() returns, without taking it.
  Millis peek() const { return current_; }
  void reset() { current_ = kFirst; }
  // Every wait is the longest from now on (a node the managers removed: it keeps asking,
  // slowly, in case it was a mistake of the moment).
  void holdAtMax() { current_ = kMax; }

 private:
  Millis current_ = kFirst;
};

// The managers an agent knows and the one it tries now. Failover goes round the list in its
// order; a follower's redirect names the leader, who is tried next. A new list from a
// manager keeps the current manager when it is still in it.
class ManagerRotation {
 public:
  ManagerRotation() = default;
  explicit ManagerRotation(std::vector<node::Manager> managers) { replace(std::move(managers)); }

  const std::vector<node::Manager>& managers() const { return managers_; }
  bool empty() const { return managers_.empty(); }
  // The manager to try now; none when the list is empty.
  const node::Manager* current() const;
  // After a failure: the next manager of the list (the first again after the last).
  void advance();
  // A follower named the leader: it is the current one (added to the list if it was not in it).
  void redirectTo(const node::Manager& leader);
  // A manager sent its list. Returns whether it differs from the one kept (node.json is
  // rewritten then).
  bool replace(std::vector<node::Manager> managers);

 private:
  std::vector<node::Manager> managers_;
  size_t index_ = 0;
};

bool sameManagers(const std::vector<node::Manager>& a, const std::vector<node::Manager>& b);

// The wait before the next heartbeat: the period ± 10 % (docs/cluster.md), so that nodes
// started together do not beat together. unit is a uniform draw from [0, 1).
Millis heartbeatDelay(Nanos period, double unit);

// How long a heartbeat may wait for its answer before the session counts as lost: one period,
// at least 1 s and at most 10 s. The dispatcher marks the node down after 3 missed periods,
// so the agent has gone to another manager well before that.
Millis heartbeatTimeout(Nanos period);

// The wait before the next attempt after a failure: the backoff's, but while the node's last
// heartbeat is less than 3 periods old (the dispatcher's limit before it marks the node Down)
// at most a quarter period, so that a live node finds the new leader's dispatcher before that
// one gives up on it. After a failover the new leader gives every node 3 periods; a backoff
// grown to seconds while there was no leader would miss them.
Millis failoverWait(Millis backoff, Nanos period, std::optional<Nanos> sinceLastHeartbeat);

// A period from a manager, or the default 5 s when it sent none or nonsense (a period below
// 100 ms or above one hour is nonsense for a heartbeat).
Nanos sanePeriod(int64_t periodNs);

}  // namespace shoal::agentd
