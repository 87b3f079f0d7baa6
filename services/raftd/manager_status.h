#pragma once
// The manager status the leader's raftd keeps in the store (docs/cluster.md "Manager
// status"): pure functions, testable without I/O (tests/unit/manager_status_test.cpp).
//
// The leader knows who leads and whom it heard from lately; each manager Node's
// manager_status (leader flag, reachability) says what `node ls` shows. managerStatusTxn
// compares the two and writes one StoreTxn that updates only the Nodes that differ, each with
// its expected version (a Node changed meanwhile makes the whole transaction a Conflict: the
// next round computes it again).

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "objects_generated.h"

namespace shoal::raftd {

// What the leader knows about the managers, by raft id.
struct ManagerTruth {
  uint64_t leader = 0;             // the raft id of the leader (this node)
  std::set<uint64_t> reachable;    // raft ids heard from recently, the leader's included
};

// A copy of the Node object `node` (a verified objects::Node buffer) whose manager_status
// has these leader and reachability values; every other field, nested ones included, as it
// was. An error when the buffer is not a Node or holds a field this copy cannot carry.
Result<std::string> withManagerStatus(std::string_view node, bool leader,
                                      objects::Reachability reachability);

// The StoreTxn (objects.fbs) bringing the manager Nodes among `nodes` in line with truth,
// or nothing when they all agree. A Node counts when its role or desired role is Manager and
// its manager_status names a raft id.
Result<std::optional<std::string>> managerStatusTxn(const std::vector<std::string_view>& nodes,
                                                    const ManagerTruth& truth);

// The peer keys the store names (Z85), from its Node objects.
struct ManagerKeys {
  std::set<std::string> managers;            // keys of Nodes whose role or desired role is Manager
  std::map<uint64_t, std::string> byRaftId;  // manager_status.raft_id -> key, for managers
};
ManagerKeys managerKeys(const std::vector<std::string_view>& nodes);

}  // namespace shoal::raftd
