#pragma once
// Swarm's placement language (DESIGN.md §6; SwarmKit's manager/constraint and the scheduler's
// spread preferences), in one place for everyone who needs it: raftd validates a spec with the
// parsers, schedulerd's scheduler and its global orchestrator decide with the matchers.
//
// Constraints: `<key>==<value>` or `<key>!=<value>`, spaces around key and value allowed, with
// key one of
//   node.id, node.hostname, node.role (manager | worker), node.platform.os,
//   node.platform.arch, node.labels.<label>, engine.labels.<label>,
//   node.ip (an address or a CIDR network, matched against the address the managers see).
// As in Swarm: the key's fixed part is matched without regard to case, a label name with it;
// values compare without regard to case (ASCII); a label the node lacks has the value "", so
// `node.labels.zone!=b` holds on a node without a zone. Unlike Swarm, an unknown key is an error
// at parse time instead of a constraint that silently never holds.
//
// Preferences: docker's `--placement-pref spread=<descriptor>`, stored in the spec as the bare
// descriptor (PlacementPreference.spread_descriptor): node.labels.<label> or
// engine.labels.<label>. A node without the label is in the "" group, as in Swarm.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "objects_generated.h"

namespace shoal::constraints {

enum class Key : uint8_t {
  NodeId,
  NodeHostname,
  NodeRole,
  NodeOs,
  NodeArch,
  NodeLabel,    // node.labels.<label>: the node's spec labels
  EngineLabel,  // engine.labels.<label>: the labels the node's engine reports
  NodeIp,       // node.ip: NodeStatus.addr within `network`
};

// node.ip's value: one address (all bits) or a network, IPv4 or IPv6.
struct IpNetwork {
  bool v6 = false;
  uint8_t bytes[16] = {};
  uint8_t prefix = 0;
};

enum class Operator : uint8_t { Equal, NotEqual };

struct Constraint {
  Key key = Key::NodeId;
  Operator op = Operator::Equal;
  std::string label;  // NodeLabel, EngineLabel: the label's name, as written
  std::string value;  // trimmed
  std::string text;   // the whole expression, trimmed, as written: for messages
  IpNetwork network;  // NodeIp
};

// One expression, e.g. "node.labels.zone == b". The error quotes the text, says what is wrong
// and lists the valid forms, e.g.
//   constraint "node.labels.zone=b" has no == or != operator; valid forms: ...
Result<Constraint> parseConstraint(std::string_view text);
// Every expression of a spec (Placement.constraints); the first bad one is the error.
Result<std::vector<Constraint>> parseConstraints(const std::vector<std::string>& texts);

// Whether the node satisfies the constraint (Swarm's NodeMatches for one expression).
bool matches(const Constraint& constraint, const objects::NodeT& node);
// Whether the node satisfies every constraint.
bool matchesAll(const std::vector<Constraint>& constraints, const objects::NodeT& node);

struct SpreadDescriptor {
  bool engine = false;  // engine.labels.<label>; otherwise node.labels.<label>
  std::string label;
  std::string text;     // as it is stored: "node.labels.zone"
};

// A stored descriptor: "node.labels.zone" or "engine.labels.zone".
Result<SpreadDescriptor> parseSpreadDescriptor(std::string_view descriptor);
// docker's flag form: "spread=node.labels.zone"; anything but spread= is an error.
Result<SpreadDescriptor> parsePreference(std::string_view text);

// The value the node takes for the descriptor: its label's value, "" when it has none. Valid
// while the node lives.
std::string_view spreadValue(const SpreadDescriptor& descriptor, const objects::NodeT& node);

// Swarm's platform filter: a node fits when `platforms` is empty or one of them has an empty
// or equal os and an empty or equal architecture (x86_64 is amd64, aarch64 is arm64).
bool platformMatches(const std::vector<std::unique_ptr<objects::PlatformT>>& platforms,
                     const objects::NodeT& node);

}  // namespace shoal::constraints
