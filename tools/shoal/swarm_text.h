#pragma once
// What `shoal swarm ...` and `shoal info` print, in docker's words (github.com/docker/cli
// cli/command/swarm/init.go, join_token.go; cli/command/system/info.go printSwarmInfo), so a
// Swarm user reads what they know. Pure: swarm.cpp and info.cpp do the calls.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "objects_generated.h"

namespace shoal::cli {

// `swarm init`'s text, with the worker's join command.
std::string initText(std::string_view nodeId, std::string_view workerToken,
                     std::string_view managerAddr);

// `swarm join-token ROLE`'s text: the join command for that role ("worker" or "manager").
std::string joinTokenText(std::string_view role, std::string_view token,
                          std::string_view managerAddr);
// `swarm join-token --rotate ROLE` prints this first.
std::string rotatedText(std::string_view role);

// --dispatcher-heartbeat and --cert-expiry: a Go duration ("5s", "1m30s", "2160h") more than 0.
// Errors quote the flag's text and show the form.
Result<std::chrono::nanoseconds> parsePositiveDuration(std::string_view text);

// docker/go-units HumanDuration: "5 seconds", "About a minute", "3 months".
std::string humanDuration(std::chrono::nanoseconds d);

// docker's swarm.ClusterInfo of a Cluster object: ID, Version, CreatedAt, UpdatedAt, Spec
// (Name, Labels, Orchestration, Raft, Dispatcher, CAConfig, TaskDefaults, EncryptionConfig),
// TLSInfo, RootRotationInProgress, DefaultAddrPool, SubnetSize, DataPathPort.
nlohmann::json clusterInfo(const objects::Cluster& cluster);

// What `shoal info` knows, from whichever daemons answered (docs/cluster.md "`shoal info`'s
// fields"): agentd's and raftd's InfoReply JSON, and from the store (on a manager) the Cluster
// object and the Nodes.
struct InfoSources {
  std::optional<nlohmann::json> agent;  // agentd's InfoReply, when agentd answered
  std::optional<nlohmann::json> raft;   // raftd's InfoReply, when raftd answered
  const objects::Cluster* cluster = nullptr;
  std::optional<std::vector<const objects::Node*>> nodes;
};

// docker's Info object with its Swarm part: {"Swarm": {NodeID, NodeAddr, LocalNodeState,
// ControlAvailable, Error, RemoteManagers, Nodes, Managers, Cluster}}, plus shoal's Swarm.Leader
// (the leader's node id) and Swarm.LeaderAddr when the nodes say who leads.
nlohmann::json swarmInfo(const InfoSources& sources);

// docker info's Swarm section of such an object ("Swarm: active\n NodeID: ...\n"), with
// shoal's " Raft:\n  Leader: ..." line.
std::string infoText(const nlohmann::json& info);

}  // namespace shoal::cli
