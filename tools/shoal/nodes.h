#pragma once
// What `shoal node ls` and `shoal node inspect` print, from Node objects (schemas/objects.fbs),
// in docker's shapes (github.com/docker/cli cli/command/node/formatter.go, list.go; moby's
// api/types/swarm/node.go), so that Swarm users' scripts and habits work unchanged. Pure: the
// commands in node.cpp fetch the objects and print what these return.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "objects_generated.h"
#include "tools/shoal/format.h"

namespace shoal::cli {

// Docker's JSON enum strings (moby api/types/swarm): "worker", "manager"; "active", "pause",
// "drain"; "unknown", "down", "ready", "disconnected"; "unknown", "unreachable", "reachable".
std::string_view dockerRole(objects::NodeRole role);
std::string_view dockerAvailability(objects::NodeAvailability availability);
std::string_view dockerState(objects::NodeState state);
std::string_view dockerReachability(objects::Reachability reachability);

// Docker's formatter.PrettyPrint of a string: its first letter upper case ("ready" → "Ready").
std::string capitalizeFirst(std::string_view text);

// A time in nanoseconds since the epoch, as Go's encoding/json writes a time.Time in UTC
// (RFC 3339 with nanoseconds, trailing zeros cut): "2017-05-16T22:52:44.9910662Z".
std::string rfc3339Nano(int64_t unixNanos);
// As Go's time.Time.String() in UTC: "2017-05-16 22:52:44.9910662 +0000 UTC".
std::string goTimeString(int64_t unixNanos);
// docker/go-units BytesSize: binary units, four significant figures ("1.952GiB", "512MiB").
std::string bytesSize(double bytes);

// `node ls`'s default table (docker's defaultNodeTableFormat) and its column titles.
inline constexpr std::string_view kNodeTable =
    "table {{.ID}} {{if .Self}}*{{else}} {{ end }}\t{{.Hostname}}\t{{.Status}}\t"
    "{{.Availability}}\t{{.ManagerStatus}}\t{{.EngineVersion}}";
const Headers& nodeHeaders();

// One row of `node ls`, docker's fields: ID, Self, Hostname, Status ("Ready"), Availability
// ("Active"), ManagerStatus ("Leader", "Reachable", "Unreachable", "Unknown"; "" for a
// worker), EngineVersion, TLSStatus. selfId: the id of the node the command runs on ("" when
// unknown: no row is Self).
nlohmann::json nodeRow(const objects::Node& node, std::string_view selfId);

// `node inspect`'s object, docker's swarm.Node. Json leaves out what docker's JSON omits
// (empty optional fields), for printing; Template keeps every field docker's struct has, so
// that `{{.Status.Message}}` prints "" as docker's typed template does, not `<no value>`.
// ManagerStatus is absent for a worker in both, as docker's nil pointer.
enum class InspectShape { Json, Template };
nlohmann::json nodeInspect(const objects::Node& node, InspectShape shape);

// `node inspect --pretty`: docker's human text for one node (each line ends with "\n").
std::string nodePretty(const objects::Node& node);

// `node ls --filter`: docker's keys id, name (prefixes), role, membership, label (engine
// labels), node.label (the node's own labels), each `key=value`. Values of one key are OR-ed,
// different keys AND-ed, as docker does.
struct NodeFilter {
  std::vector<std::string> ids;
  std::vector<std::string> names;
  std::vector<objects::NodeRole> roles;
  std::vector<objects::NodeMembership> memberships;
  std::vector<std::pair<std::string, std::optional<std::string>>> engineLabels;
  std::vector<std::pair<std::string, std::optional<std::string>>> nodeLabels;
};
// Errors name the bad filter and the accepted forms (a usage error).
Result<NodeFilter> parseNodeFilters(const std::vector<std::string>& flags);
bool matches(const NodeFilter& filter, const objects::Node& node);

// fvbommel/sortorder's NaturalLess, which `docker node ls` sorts hostnames with: runs of
// digits compare as numbers ("node2" < "node10").
bool naturalLess(std::string_view a, std::string_view b);
// Docker's order for `node ls`: hostname by naturalLess, then id (docker leaves ties unsorted).
void sortNodes(std::vector<const objects::Node*>& nodes);

// A NODE argument, as docker's daemon finds it (moby daemon/cluster/helpers.go getNode): a
// full id, else an exact hostname, else a unique id prefix. "self" is selfId. Errors: docker's
// "node X not found" and "node X is ambiguous (N matches found)".
Result<const objects::Node*> resolveNode(const std::vector<const objects::Node*>& nodes,
                                         std::string_view ref, std::string_view selfId);

}  // namespace shoal::cli
