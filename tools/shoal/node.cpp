// shoal node ls|inspect|promote|demote|update|rm: reads through the store client, changes through
// raftd's control API (schemas/swarm.fbs), docker's output (nodes.h).
#include <algorithm>
#include <iostream>
#include <map>

#include "common/units.h"
#include "tools/shoal/daemons.h"
#include "tools/shoal/nodes.h"

namespace shoal::cli {
namespace {

constexpr Millis kCall{10'000};

struct LsOptions {
  bool quiet = false;
  std::vector<std::string> filters;
  std::string format;
};

int ls(const Globals& g, const LsOptions& o) {
  auto filter = parseNodeFilters(o.filters);
  if (!filter) {
    std::cerr << "error: " << filter.error().message << "\n";
    return 2;
  }
  // -q is docker's quiet format unless another format is asked for.
  bool quietFormat = o.quiet && (o.format.empty() || o.format == "table");
  auto format = ListingFormat::parse(quietFormat ? std::string_view("{{.ID}}") : o.format, kNodeTable);
  if (!format) {
    std::cerr << "error: --format: " << format.error().message << "\n";
    return 2;
  }
  CallError why;
  if (auto m = requireManager(g, &why); !m) return printCallError(why);
  auto list = listNodes(g, &why);
  if (!list) return printCallError(why);
  std::vector<const objects::Node*> shown;
  for (const auto* n : list->nodes)
    if (matches(*filter, *n)) shown.push_back(n);
  sortNodes(shown);
  std::string self = shown.empty() || quietFormat ? "" : selfNodeId(g);
  std::vector<nlohmann::json> rows;
  for (const auto* n : shown) rows.push_back(nodeRow(*n, self));
  auto text = format->render(rows, nodeHeaders());
  if (!text) {
    std::cerr << "error: --format: " << text.error().message << "\n";
    return 1;
  }
  std::cout << *text;
  return 0;
}

int inspect(const Globals& g, const std::vector<std::string>& refs, const std::string& formatFlag,
            bool pretty) {
  auto format = InspectFormat::parse(pretty ? "" : formatFlag);
  if (!format) {
    std::cerr << "error: --format: " << format.error().message << "\n";
    return 2;
  }
  CallError why;
  if (auto m = requireManager(g, &why); !m) return printCallError(why);
  auto list = listNodes(g, &why);
  if (!list) return printCallError(why);
  bool needSelf = std::find(refs.begin(), refs.end(), "self") != refs.end();
  std::string self = needSelf ? selfNodeId(g) : "";
  std::vector<const objects::Node*> found;
  std::vector<std::string> errors;
  for (const auto& ref : refs) {
    auto n = resolveNode(list->nodes, ref, self);
    if (n)
      found.push_back(*n);
    else
      errors.push_back(n.error().message);
  }
  if (pretty) {
    for (const auto* n : found) std::cout << nodePretty(*n);
  } else if (!found.empty() || format->kind() != InspectFormat::Kind::Template) {
    // Docker prints the array even when no node was found: "[]".
    auto shape = format->kind() == InspectFormat::Kind::Template ? InspectShape::Template : InspectShape::Json;
    std::vector<nlohmann::json> objects;
    for (const auto* n : found) objects.push_back(nodeInspect(*n, shape));
    auto text = format->render(objects);
    if (!text) {
      std::cerr << "error: --format: " << text.error().message << "\n";
      return 1;
    }
    std::cout << *text;
  }
  for (const auto& e : errors) std::cerr << "Error response from daemon: " << e << "\n";
  return errors.empty() ? 0 : 1;
}

// One NodeUpdateRequest or NodeRemoveRequest; the daemon's error when it fails.
Result<std::string> send(const Globals& g, flatbuffers::FlatBufferBuilder& fbb, swarmapi::Body type,
                         flatbuffers::Offset<void> body, CallError& why) {
  auto reply = callDaemon(g, "raftd", kSwarmProtocol, bus::message<swarmapi::Envelope>(fbb, type, body),
                          kCall, &why);
  if (!reply) return reply.error();
  const auto* env = reply->as<swarmapi::Envelope>();
  const auto* r = env ? env->body_as_NodeReply() : nullptr;
  return r && r->node_id() ? r->node_id()->str() : std::string();
}

// promote / demote: docker checks the node's role first and says when there is nothing to do.
int changeRole(const Globals& g, const std::vector<std::string>& refs, objects::NodeRole role) {
  CallError why;
  if (auto m = requireManager(g, &why); !m) return printCallError(why);
  auto list = listNodes(g, &why);
  if (!list) return printCallError(why);
  int code = 0;
  for (const auto& ref : refs) {
    auto n = resolveNode(list->nodes, ref, "");
    if (!n) {
      std::cerr << "Error response from daemon: " << n.error().message << "\n";
      code = 1;
      continue;
    }
    auto desired = (*n)->spec() ? (*n)->spec()->desired_role() : (*n)->role();
    if (desired == role) {
      std::cout << "Node " << ((*n)->id() ? (*n)->id()->str() : ref) << " is already a "
                << (role == objects::NodeRole::Manager ? "manager" : "worker") << ".\n";
      continue;
    }
    flatbuffers::FlatBufferBuilder fbb;
    auto body = swarmapi::CreateNodeUpdateRequestDirect(fbb, ref.c_str(), static_cast<int16_t>(role));
    if (auto r = send(g, fbb, swarmapi::Body::NodeUpdateRequest, body.Union(), why); !r) {
      code = printCallError(why);
      if (why.kind != CallError::Kind::Daemon) return code;
      continue;
    }
    if (role == objects::NodeRole::Manager)
      std::cout << "Node " << ref << " promoted to a manager in the swarm.\n";
    else
      std::cout << "Manager " << ref << " demoted in the swarm.\n";
  }
  return code;
}

struct UpdateOptions {
  std::string availability;
  std::vector<std::string> labelAdd, labelRm;
  std::string node;
};

int update(const Globals& g, const UpdateOptions& o) {
  int16_t availability = -1;
  if (!o.availability.empty()) {
    std::string a = o.availability;
    std::transform(a.begin(), a.end(), a.begin(), [](unsigned char c) { return std::tolower(c); });
    if (a == "active") availability = static_cast<int16_t>(objects::NodeAvailability::Active);
    else if (a == "pause") availability = static_cast<int16_t>(objects::NodeAvailability::Pause);
    else if (a == "drain") availability = static_cast<int16_t>(objects::NodeAvailability::Drain);
    else {
      std::cerr << "error: invalid availability " << quoteInput(o.availability)
                << ": use active, pause or drain\n";
      return 2;
    }
  }
  // Keys sorted and once each (the last value wins), as objects.fbs keeps label sets.
  std::map<std::string, std::string> adds;
  for (const auto& kv : o.labelAdd) {
    auto eq = kv.find('=');
    std::string key = kv.substr(0, eq), value = eq == std::string::npos ? "" : kv.substr(eq + 1);
    if (key.empty()) {
      std::cerr << "error: --label-add " << quoteInput(kv) << ": the label has no key; use key=value or key\n";
      return 2;
    }
    adds[key] = value;
  }
  for (const auto& k : o.labelRm)
    if (k.empty() || k.find('=') != std::string::npos) {
      std::cerr << "error: --label-rm " << quoteInput(k) << ": give a label's key alone\n";
      return 2;
    }
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<flatbuffers::Offset<objects::KeyValue>> add;
  for (const auto& [key, value] : adds) add.push_back(objects::CreateKeyValueDirect(fbb, key.c_str(), value.c_str()));
  auto body = swarmapi::CreateNodeUpdateRequest(fbb, fbb.CreateString(o.node), -1, availability,
                                                fbb.CreateVector(add), fbb.CreateVectorOfStrings(o.labelRm));
  CallError why;
  if (auto r = send(g, fbb, swarmapi::Body::NodeUpdateRequest, body.Union(), why); !r)
    return printCallError(why);
  std::cout << o.node << "\n";
  return 0;
}

int remove(const Globals& g, const std::vector<std::string>& refs, bool force) {
  int code = 0;
  for (const auto& ref : refs) {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = swarmapi::CreateNodeRemoveRequestDirect(fbb, ref.c_str(), force);
    CallError why;
    if (auto r = send(g, fbb, swarmapi::Body::NodeRemoveRequest, body.Union(), why); !r) {
      code = printCallError(why);
      if (why.kind != CallError::Kind::Daemon) return code;
      continue;
    }
    std::cout << ref << "\n";
  }
  return code;
}

}  // namespace

void addNodeCommands(CLI::App& app, Globals& g, Outcome& outcome) {
  auto* node = app.add_subcommand("node", "Manage swarm nodes");
  node->require_subcommand(1);

  static LsOptions ls_;
  auto* l = node->add_subcommand("ls", "List nodes in the swarm");
  l->alias("list");
  l->add_flag("-q,--quiet", ls_.quiet, "Only display IDs");
  l->add_option("-f,--filter", ls_.filters,
                "Filter output based on conditions provided (id=, name=, role=manager|worker, "
                "membership=, label=, node.label=)");
  l->add_option("--format", ls_.format,
                "Format output: 'table', 'table TEMPLATE', 'json' or a Go template, e.g. '{{.Hostname}}'");
  l->callback([&g, &outcome] { outcome.code = ls(g, ls_); });

  static std::vector<std::string> inspectRefs;
  static std::string inspectFormat;
  static bool pretty = false;
  auto* in = node->add_subcommand("inspect", "Display detailed information on one or more nodes");
  in->add_flag("--pretty", pretty, "Print the information in a human friendly format");
  in->add_option("-f,--format", inspectFormat, "Format output: 'json' or a Go template, e.g. '{{.Status.State}}'");
  in->add_option("NODE", inspectRefs, "Node id, id prefix, hostname, or self")->required();
  in->callback([&g, &outcome] { outcome.code = inspect(g, inspectRefs, inspectFormat, pretty); });

  static std::vector<std::string> promoteRefs, demoteRefs;
  auto* pr = node->add_subcommand("promote", "Promote one or more nodes to manager in the swarm");
  pr->add_option("NODE", promoteRefs, "Node id, id prefix or hostname")->required();
  pr->callback([&g, &outcome] { outcome.code = changeRole(g, promoteRefs, objects::NodeRole::Manager); });
  auto* de = node->add_subcommand("demote", "Demote one or more nodes from manager in the swarm");
  de->add_option("NODE", demoteRefs, "Node id, id prefix or hostname")->required();
  de->callback([&g, &outcome] { outcome.code = changeRole(g, demoteRefs, objects::NodeRole::Worker); });

  static UpdateOptions update_;
  auto* up = node->add_subcommand("update", "Update a node");
  up->add_option("--availability", update_.availability, "Availability of the node (active, pause, drain)");
  up->add_option("--label-add", update_.labelAdd, "Add or update a node label (key=value)");
  up->add_option("--label-rm", update_.labelRm, "Remove a node label if exists");
  up->add_option("NODE", update_.node, "Node id, id prefix or hostname")->required();
  up->callback([&g, &outcome] { outcome.code = update(g, update_); });

  static std::vector<std::string> rmRefs;
  static bool force = false;
  auto* rm = node->add_subcommand("rm", "Remove one or more nodes from the swarm");
  rm->alias("remove");
  rm->add_flag("-f,--force", force, "Force remove a node from the swarm");
  rm->add_option("NODE", rmRefs, "Node id, id prefix or hostname")->required();
  rm->callback([&g, &outcome] { outcome.code = remove(g, rmRefs, force); });
}

}  // namespace shoal::cli
