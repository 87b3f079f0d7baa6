#pragma once
// The rules of raftd's control API (schemas/swarm.fbs, docs/cluster.md), without I/O: what a
// valid `swarm init`, `swarm update` or `node update` asks for, which node a name means, and
// when removing a manager would lose quorum. services/raftd/control.cpp applies them to the
// store; tests/unit/control_test.cpp checks them.

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/node_dir.h"
#include "common/result.h"
#include "objects_generated.h"

namespace shoal::raftd::control {

using std::chrono::nanoseconds;

// Defaults and bounds, Swarm's where Swarm has them.
inline constexpr nanoseconds kDefaultHeartbeat = std::chrono::seconds(5);
inline constexpr nanoseconds kMinHeartbeat = std::chrono::milliseconds(100);
inline constexpr nanoseconds kMaxHeartbeat = std::chrono::hours(24);
inline constexpr nanoseconds kDefaultCertExpiry = std::chrono::hours(24 * 90);
// SwarmKit's ca.MinNodeCertExpiration.
inline constexpr nanoseconds kMinCertExpiry = std::chrono::hours(1);
inline constexpr nanoseconds kMaxCertExpiry = std::chrono::hours(24 * 365 * 100);
inline constexpr std::string_view kDefaultAddressPool = "10.0.0.0/8";
inline constexpr uint32_t kDefaultSubnetSize = 24;
inline constexpr uint32_t kMaxSubnetSize = 29;  // a /30 leaves no address for a container
inline constexpr uint32_t kVxlanPort = 4789;

// --- swarm init -------------------------------------------------------------------------------

// An InitRequest's fields as they came.
struct InitInput {
  std::string advertiseAddr;
  std::string listenAddr;
  std::vector<std::string> addressPools;
  uint32_t subnetSize = 0;
  int64_t heartbeatNs = 0;
  int64_t certExpiryNs = 0;
};

// What a valid InitRequest means, defaults filled in.
struct InitSettings {
  std::string advertiseHost;  // an IP address
  std::string listenHost;     // an IP address, 0.0.0.0 by default
  uint16_t port = node::kDefaultPort;  // the dispatcher's; raft P+1, hello P+2
  std::vector<std::string> addressPools;
  uint32_t subnetSize = kDefaultSubnetSize;
  nanoseconds heartbeat = kDefaultHeartbeat;
  nanoseconds certExpiry = kDefaultCertExpiry;
};

// The advertise host when the request names none: the address of the interface of the
// default route (control.cpp reads it from the system).
using DefaultHost = std::function<Result<std::string>()>;

// Errors say which field was wrong and what to give instead.
Result<InitSettings> validateInit(const InitInput& in, const DefaultHost& defaultHost);

// 0 (unchanged/default) is for the caller to handle; these check a value that was given.
Result<nanoseconds> checkHeartbeat(int64_t ns);
Result<nanoseconds> checkCertExpiry(int64_t ns);

// An IPv4 CIDR in its network form ("10.0.0.0/8").
struct Cidr {
  uint32_t address = 0;  // host order
  uint32_t prefix = 0;
};
Result<Cidr> parseCidr(std::string_view text);
// Valid, distinct, non-overlapping pools, each large enough for subnets of subnetSize.
Status checkAddressPools(std::span<const std::string> pools, uint32_t subnetSize);

// The interface of the IPv4 default route in /proc/net/route's text, if any.
std::optional<std::string> defaultRouteInterface(std::string_view procNetRoute);

// --- swarm join (raftd's part) ----------------------------------------------------------------

struct RaftPeerInput {
  uint64_t raftId = 0;
  std::string addr;
  std::string publicKey;  // Z85
};
struct JoinRaftInput {
  uint64_t raftId = 0;
  uint64_t raftClusterId = 0;
  std::string listenAddr;
  std::string advertiseAddr;
  std::vector<RaftPeerInput> peers;
};
// Both addresses are host:port (the raft port, given explicitly); peers need an id other
// than this node's, an address and a valid key.
Status validateJoinRaft(const JoinRaftInput& in);

// --- nodes ------------------------------------------------------------------------------------

struct NodeName {
  std::string id;
  std::string hostname;
};
// The node `query` names, docker's way: an exact id, else an exact hostname, else a unique
// id prefix. Errors name the candidates when several match.
Result<std::string> resolveNode(std::string_view query, std::span<const NodeName> nodes);
// How a node is named in messages: "m2 (p8x2k0m4q9w7)".
std::string nodeLabel(const objects::NodeT& node);

// Docker's label key rule: not empty, no whitespace, no '=', printable ASCII.
Status checkLabelKey(std::string_view key);

struct NodeChanges {
  std::optional<objects::NodeAvailability> availability;
  std::vector<std::pair<std::string, std::string>> labelAdd;
  std::vector<std::string> labelRm;
};
// Applies availability and label changes to node.spec (labels stay sorted by key). Nothing
// changes on an error (a bad key, removing a label the node does not have).
Status applyNodeChanges(objects::NodeT& node, const NodeChanges& changes);

// --- quorum (docs/cluster.md "Roles and removal") ---------------------------------------------

struct ManagerView {
  std::string name;  // for messages
  uint64_t raftId = 0;
  bool voter = true;  // a learner does not count toward quorum
  bool reachable = false;
};
// A manager Node as the store holds it: storedReachable is its manager_status's reachability
// (the leader writes it).
struct StoredManager {
  std::string name;
  uint64_t raftId = 0;
  bool storedReachable = false;
};
// Raft's configuration as this raftd sees it (RaftNode::members): reachable is meaningful only
// on the leader. members empty: not known here.
struct RaftMember {
  uint64_t raftId = 0;
  bool voter = false;
  bool reachable = false;
};
struct RaftView {
  uint64_t self = 0;
  uint64_t leader = 0;
  bool leads = false;
  std::vector<RaftMember> members;
};
// The managers for the quorum rule: every stored manager (a voter when the configuration has
// it as one; every one when the configuration is not known) and every member the store does
// not name. Reachable: this raftd and the leader; the rest as the leader heard them when this
// raftd leads, else as the stored manager status says.
std::vector<ManagerView> managerViews(std::span<const StoredManager> stored, const RaftView& raft);

// Refused when the voters that stay reachable after `raftId` leaves would be fewer than a
// majority of the current voters. `action` starts the message ("demoting m2"), `advice` ends
// it ("promote another node first").
Status keepsQuorum(std::span<const ManagerView> managers, uint64_t raftId,
                   std::string_view action, std::string_view advice);

}  // namespace shoal::raftd::control
