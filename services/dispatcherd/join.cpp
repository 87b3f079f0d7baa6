#include "services/dispatcherd/join.h"

#include <cstring>
#include <ctime>

#include "common/node_dir.h"

namespace shoal::dispatcherd {

Result<identity::Role> judgeToken(std::string_view token, const identity::JoinTokens& current,
                                  const identity::ClusterCA& ca) {
  auto parsed = identity::parseJoinToken(token);
  if (!parsed) return parsed.error();
  if (!identity::tokenMatchesCA(*parsed, ca.publicKey()))
    return Error{"this join token belongs to another swarm: its CA digest is not the one of "
                 "swarm " + ca.clusterId() + "; ask a manager of the swarm you mean to join "
                 "for its token (`shoal swarm join-token worker`)"};
  auto role = current.admits(token);
  if (!role)
    return Error{"this join token is not one of swarm " + ca.clusterId() +
                 "'s current tokens (it may have been rotated); ask a manager for the current "
                 "one: `shoal swarm join-token worker` or `shoal swarm join-token manager`"};
  return *role;
}

Status checkKeyFree(const NodeTable& nodes, const std::string& keyZ85) {
  if (auto* n = nodes.byKey(keyZ85))
    return Error{"this node's key is already registered as node " + n->id +
                 (n->description.hostname.empty() ? "" : " (" + n->description.hostname + ")") +
                 ": the node is in the swarm already. To join again as a new node, run `shoal "
                 "swarm leave` on it and `shoal node rm " + n->id + "` on a manager first"};
  return {};
}

std::optional<std::string> certificateRefusal(int64_t expiryNs, int64_t nowNs) {
  if (expiryNs <= 0 || nowNs < expiryNs) return std::nullopt;
  std::time_t t = static_cast<std::time_t>(expiryNs / 1'000'000'000);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char when[32];
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string("this node's certificate expired at ") + when +
         " and was not renewed in time (was the node off that long, or is a clock wrong?); "
         "join again with a token: `shoal swarm leave`, then `shoal swarm join --token ...`";
}

Result<std::string> advertiseHost(std::string_view addr) {
  constexpr size_t kMaxAddr = 300;
  if (addr.size() > kMaxAddr)
    return Error{"the advertise address is " + std::to_string(addr.size()) +
                 " bytes long; an address is host[:port]"};
  auto parsed = node::parseAddr(addr, node::kDefaultPort, /*resolveInterfaces=*/false);
  if (!parsed) return Error{"bad advertise address: " + parsed.error().message};
  return parsed->host;
}

std::string dispatcherAddrOf(const NodeRecord& node, uint16_t clusterPort) {
  if (node.managerStatus && !node.managerStatus->addr.empty()) {
    auto raft = node::parseAddr(node.managerStatus->addr, node::raftPort(clusterPort), false);
    if (raft && raft->port > 1) return node::joinHostPort(raft->host, raft->port - 1);
  }
  return node.addr.empty() ? std::string() : node::joinHostPort(node.addr, clusterPort);
}

std::vector<ManagerInfo> managersOf(const NodeTable& nodes, uint16_t clusterPort) {
  std::vector<ManagerInfo> out;
  for (auto& [id, n] : nodes.all()) {
    if (n.role != objects::NodeRole::Manager || !n.curveKey) continue;
    ManagerInfo m{id, dispatcherAddrOf(n, clusterPort), n.curveKeyZ85(), 0, {}};
    if (n.managerStatus) {
      m.raftId = n.managerStatus->raftId;
      m.raftAddr = n.managerStatus->addr;
    }
    if (m.dispatcherAddr.empty()) continue;  // nowhere to reach it
    out.push_back(std::move(m));
  }
  return out;
}

std::optional<ManagerInfo> leaderOf(const NodeTable& nodes, uint64_t leaderRaftId,
                                    uint16_t clusterPort) {
  if (leaderRaftId == 0) return std::nullopt;
  for (auto& m : managersOf(nodes, clusterPort))
    if (m.raftId == leaderRaftId) return m;
  return std::nullopt;
}

uint64_t pickRaftId(const NodeTable& nodes, const identity::FillRandom& random) {
  // 64 random bits collide with a handful of managers' ids with probability ~2^-60; the loop
  // is bounded all the same.
  uint64_t id = 0;
  for (int attempt = 0; attempt < 16; ++attempt) {
    uint8_t bytes[8];
    random(bytes);
    std::memcpy(&id, bytes, sizeof id);
    if (id == 0) continue;
    bool used = false;
    for (auto& [nid, n] : nodes.all())
      used = used || (n.managerStatus && n.managerStatus->raftId == id);
    if (!used) return id;
  }
  return id | 1;
}

NodeRecord joinedNode(const JoinPlan& plan) {
  NodeRecord n;
  n.id = plan.nodeId;
  auto role = static_cast<objects::NodeRole>(plan.role);
  n.desiredRole = role;
  n.role = role;
  n.membership = objects::NodeMembership::Accepted;
  n.availability = objects::NodeAvailability::Active;
  n.description = plan.description;
  n.state = objects::NodeState::Ready;
  n.addr = plan.addr;
  n.curveKey = plan.key;
  n.certificate = plan.certificate;
  n.certificateExpiry = plan.certificateExpiryNs;
  if (plan.role == identity::Role::Manager)
    n.managerStatus = ManagerStatus{plan.raftId, plan.raftAddr, false, objects::Reachability::Unknown};
  return n;
}

}  // namespace shoal::dispatcherd
