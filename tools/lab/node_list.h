#pragma once
// What the lab reads from `shoal node ls --format json` (docker's JSON lines: one object per
// node with ID, Hostname, Status, Availability, ManagerStatus, Self, ...) and from `shoal
// swarm join-token -q`. Pure code, shared by shoal-lab (is the cluster formed?), the lab's
// tests and `shoal-bench failover` (who leads?).

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace shoal::lab {

struct SwarmNode {
  std::string id;
  std::string hostname;
  std::string status;         // Ready, Down, Unknown, Disconnected
  std::string availability;   // Active, Pause, Drain
  std::string managerStatus;  // Leader, Reachable, Unreachable; "" for a worker
  bool self = false;          // the node that was asked
};

// Parses `node ls --format json`: one JSON object per line (blank lines skipped); a JSON array
// of such objects is taken too. Throws LabError naming the line that is not a node.
std::vector<SwarmNode> parseNodeList(std::string_view text);

// The node with that hostname, if listed exactly once.
std::optional<SwarmNode> findHost(const std::vector<SwarmNode>& nodes, std::string_view hostname);

// The hostname of the one node whose ManagerStatus is Leader; nothing when none or several.
std::optional<std::string> soleLeader(const std::vector<SwarmNode>& nodes);

// Why `nodes` is not yet the formed cluster of exactly these hostnames, each listed once and
// Ready, the managers (hostnames in `managers`) Leader or Reachable with exactly one Leader,
// the others workers; "" when it is.
std::string notFormedBecause(const std::vector<SwarmNode>& nodes, const std::vector<std::string>& managers,
                             const std::vector<std::string>& workers);

// The same for a lab whose fake nodes' host (shoal-lab up --fake-nodes) poses as fakeNodes
// nodes: the hostnames in managers and workers as above, and besides them exactly fakeNodes
// more nodes (whatever their names, the host's own included), every one Ready and a worker.
std::string notFormedBecause(const std::vector<SwarmNode>& nodes, const std::vector<std::string>& managers,
                             const std::vector<std::string>& workers, int fakeNodes);

// The join token in what `shoal swarm join-token -q` printed: the one word that starts with
// "SWMTKN-"; nothing when there is none or more than one.
std::optional<std::string> findJoinToken(std::string_view text);

}  // namespace shoal::lab
