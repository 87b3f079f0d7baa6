#pragma once
// The store objects dispatcherd reads and writes (schemas/objects.fbs Node and Cluster), as
// plain values: parsed from the store's FlatBuffers (verified first, like every buffer from
// outside), changed, and built again for a transaction. NodeTable is the dispatcher's view of
// the Nodes, kept up to date by a store watch: it answers "which node owns this key" and
// "which nodes are managers" without a store round trip per heartbeat.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/identity.h"
#include "common/result.h"
#include "objects_generated.h"

namespace shoal::dispatcherd {

using Labels = std::vector<std::pair<std::string, std::string>>;

// What a node says about itself (NodeDescription): in a JoinRequest and every OpenSession.
struct Description {
  std::string hostname;
  std::string os;
  std::string architecture;
  int64_t nanoCpus = 0;
  int64_t memoryBytes = 0;
  int64_t pids = 0;
  std::string engineVersion;
  Labels engineLabels;
  bool operator==(const Description&) const = default;
};

// The description in a message (null: an empty one). Strings and labels are bounded, so that
// a node cannot grow its Node object without limit; errors say which field is wrong.
Result<Description> descriptionFrom(const objects::NodeDescription* d);

struct ManagerStatus {
  uint64_t raftId = 0;
  std::string addr;  // host:port of its raft peer port
  bool leader = false;
  objects::Reachability reachability = objects::Reachability::Unknown;
  bool operator==(const ManagerStatus&) const = default;
};

struct NodeRecord {
  std::string id;
  uint64_t version = 0;  // meta.version: the expected version of an Update
  // spec
  std::string name;
  Labels labels;
  objects::NodeRole desiredRole = objects::NodeRole::Worker;
  objects::NodeMembership membership = objects::NodeMembership::Accepted;
  objects::NodeAvailability availability = objects::NodeAvailability::Active;
  Description description;
  // status
  objects::NodeState state = objects::NodeState::Unknown;
  std::string message;
  std::string addr;  // the node's advertise host
  std::optional<ManagerStatus> managerStatus;
  objects::NodeRole role = objects::NodeRole::Worker;
  std::optional<identity::CurvePublicKey> curveKey;
  std::vector<uint8_t> certificate;
  int64_t certificateExpiry = 0;  // ns since the epoch

  // The key as ZeroMQ writes it (Z85), empty when the Node has none.
  std::string curveKeyZ85() const;

  // The store's bytes this record was read from (verified), so that a write keeps the fields
  // this daemon does not know (a later schema's) as they were.
  std::string stored;
};

// A Node from the store. Errors name what is wrong; a Node the dispatcher cannot read is
// left out of its view (and logged) rather than taken for a node without a key.
Result<NodeRecord> parseNode(std::string_view bytes);
// The Node as a FlatBuffer with a zero Meta, for a Create or an Update: the stored bytes with
// every field of the record written over them.
std::string buildNode(const NodeRecord& node);

// The cluster settings the dispatcher needs (Cluster object).
struct ClusterRecord {
  std::string id;
  uint64_t version = 0;
  int64_t heartbeatPeriodNs = 0;  // 0: the default
  int64_t nodeCertExpiryNs = 0;   // 0: the default
  std::vector<uint8_t> caKey;     // ClusterCA::saveWithSecret() form
  std::vector<uint8_t> caPublicKey;
  identity::JoinTokens tokens;
};

inline constexpr int64_t kDefaultHeartbeatPeriodNs = 5'000'000'000;        // DESIGN.md §13
inline constexpr int64_t kDefaultCertExpiryNs = 90LL * 24 * 3600 * 1'000'000'000;

Result<ClusterRecord> parseCluster(std::string_view bytes);
// The period in effect: the cluster's, or 5 s when it is unset or out of range.
int64_t heartbeatPeriodNs(const ClusterRecord* cluster);
int64_t certExpiryNs(const ClusterRecord* cluster);

// The dispatcher's view of the Nodes: by id, and by Curve key (the identity a CURVE link
// authenticates).
class NodeTable {
 public:
  void clear();
  // Takes a newer version of a node; an older one (a watch event behind a write this
  // dispatcher already put in the view) is ignored.
  void put(NodeRecord node);
  void erase(const std::string& id);

  const NodeRecord* byId(const std::string& id) const;
  const NodeRecord* byKey(const std::string& keyZ85) const;
  const std::map<std::string, NodeRecord>& all() const { return nodes_; }
  size_t size() const { return nodes_.size(); }

 private:
  std::map<std::string, NodeRecord> nodes_;
  std::map<std::string, std::string> byKey_;  // Z85 key -> node id
};

}  // namespace shoal::dispatcherd
