#pragma once
// The decisions of a join and of whom agents are sent to (docs/cluster.md "swarm join",
// "Sessions and heartbeats"). Pure: the store's view, the token and the randomness come in,
// a verdict or a plan comes out; the shell does the writing.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/identity.h"
#include "common/result.h"
#include "services/dispatcherd/records.h"

namespace shoal::dispatcherd {

// The role a join token admits, against the cluster's current tokens. Errors: not a token at
// all, a token of another swarm (its CA digest is not this CA's), a token that is not (or no
// longer) one of this swarm's.
Result<identity::Role> judgeToken(std::string_view token, const identity::JoinTokens& current,
                                  const identity::ClusterCA& ca);

// The joiner's key must not be a node already: a node that left and comes back joins as a
// new node (Swarm's rule), after `node rm` of the old one.
Status checkKeyFree(const NodeTable& nodes, const std::string& keyZ85);

// Why a node whose certificate ends at expiryNs (ns since the epoch; 0 = unknown, not
// refused) may not hold a session at nowNs: none while it is valid.
std::optional<std::string> certificateRefusal(int64_t expiryNs, int64_t nowNs);

// The joiner's advertise host from a JoinRequest or OpenSession: an IP address or a host name
// (a port, if one is given, is dropped: the node's addresses derive from the cluster's port).
Result<std::string> advertiseHost(std::string_view addr);

// A manager as agents and joining managers need it.
struct ManagerInfo {
  std::string nodeId;
  std::string dispatcherAddr;  // host:P
  std::string keyZ85;
  uint64_t raftId = 0;
  std::string raftAddr;        // host:P+1
};

// The dispatcher address of a manager Node: host:(raft port - 1) from its manager status,
// else its advertise host with this cluster's port.
std::string dispatcherAddrOf(const NodeRecord& node, uint16_t clusterPort);
// Every manager Node with a key, in node id order.
std::vector<ManagerInfo> managersOf(const NodeTable& nodes, uint16_t clusterPort);
// The manager whose raft id is the leader's, for a Redirect; none while there is no leader
// or its Node is not known yet.
std::optional<ManagerInfo> leaderOf(const NodeTable& nodes, uint64_t leaderRaftId,
                                    uint16_t clusterPort);

// A raft id for a new manager: random, not 0, not one a manager Node already has.
uint64_t pickRaftId(const NodeTable& nodes, const identity::FillRandom& random);

// The Node a join creates: role from the token, Ready, Active, Accepted.
struct JoinPlan {
  std::string nodeId;
  identity::Role role = identity::Role::Worker;
  identity::CurvePublicKey key{};
  Description description;
  std::string addr;               // advertise host
  std::vector<uint8_t> certificate;
  int64_t certificateExpiryNs = 0;
  uint64_t raftId = 0;            // managers
  std::string raftAddr;           // managers: host:P+1
};
NodeRecord joinedNode(const JoinPlan& plan);

}  // namespace shoal::dispatcherd
