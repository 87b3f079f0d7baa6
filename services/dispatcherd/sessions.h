#pragma once
// Which nodes are alive, as the active dispatcher sees them (DESIGN.md §7, docs/cluster.md
// "Sessions and heartbeats"). Pure: the time is an argument, so a test drives it with a clock
// of its own.
//
// Every node of the store is tracked while this dispatcher is active. A node is alive until
// its deadline: 3 heartbeat periods after its last sign of life (Swarm's grace multiplier).
// The period counted is the one the node was told in that reply, so a shorter period set by
// `swarm update` never makes a node late for a heartbeat it was told to send later. A node
// first seen by this dispatcher (it just became leader, or the node was created) gets 3
// periods from then to open a session; a node past its deadline is expired: its session ends
// and the dispatcher marks it Down, until it opens a new one.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace shoal::dispatcherd {

using Clock = std::chrono::steady_clock;

inline constexpr int kMissedPeriods = 3;

class SessionTable {
 public:
  struct Entry {
    std::optional<std::string> session;  // the open session's id
    Clock::time_point lastSeen{};        // the last heartbeat or open (or when first tracked)
    Clock::time_point deadline{};
    bool expired = false;                // past its deadline; the node is (being marked) Down
  };

  // Forgets every node and session: a new term as the active dispatcher starts from nothing.
  void reset() { entries_.clear(); }

  // A node this dispatcher knows of. Not tracked yet: it gets kMissedPeriods periods from
  // now, or is taken as expired when the store already says it is Down.
  void observe(const std::string& nodeId, bool storedDown, Clock::time_point now,
               Clock::duration period);
  // The node was deleted from the store.
  void forget(const std::string& nodeId) { entries_.erase(nodeId); }

  // A new session for the node (replacing any other it had): alive from now.
  void open(const std::string& nodeId, const std::string& sessionId, Clock::time_point now,
            Clock::duration period);
  // A heartbeat in session `sessionId`; false when the node has no such session (it must open
  // a new one: the session expired, or a previous leader's dispatcher opened it).
  bool heartbeat(const std::string& nodeId, const std::string& sessionId, Clock::time_point now,
                 Clock::duration period);

  // The nodes whose deadline passed by `now`, in id order; each is expired once.
  std::vector<std::string> expire(Clock::time_point now);

  const Entry* find(const std::string& nodeId) const;
  const std::map<std::string, Entry>& all() const { return entries_; }
  size_t sessions() const;
  // The soonest deadline of a live node, to know when to look again.
  std::optional<Clock::time_point> nextDeadline() const;

 private:
  std::map<std::string, Entry> entries_;
};

}  // namespace shoal::dispatcherd
