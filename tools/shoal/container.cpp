// shoal container ls|rm and shoal volume ls|rm: this node's task containers and named volumes,
// answered by the node's own agentd (schemas/containers.fbs, docs/containers.md "Node-local
// commands"), as docker's are by the local engine. `container logs` is logs.cpp's, registered
// on the `container` group made here.
#include <iostream>

#include <nlohmann/json.hpp>

#include "tools/shoal/daemons.h"
#include "tools/shoal/format.h"

namespace shoal::cli {
namespace {

constexpr Millis kCall{10'000};
constexpr const char* kContainerTable =
    "table {{.ID}}\t{{.Image}}\t{{.RunningFor}}\t{{.Status}}\t{{.Names}}";
constexpr const char* kVolumeTable = "table {{.Driver}}\t{{.Name}}";

const Headers& containerHeaders() {
  static const Headers h = {{"ID", "CONTAINER ID"}, {"RunningFor", "CREATED"},
                            {"Names", "NAMES"},     {"Image", "IMAGE"},
                            {"Status", "STATUS"},   {"State", "STATE"}};
  return h;
}

const Headers& volumeHeaders() {
  static const Headers h = {{"Driver", "DRIVER"}, {"Name", "VOLUME NAME"}};
  return h;
}

Result<bus::Frame> callAgent(const Globals& g, flatbuffers::FlatBufferBuilder& fbb,
                             containerapi::Body type, flatbuffers::Offset<void> body,
                             CallError* why) {
  return callDaemon(g, "agentd", kContainerProtocol,
                    bus::message<containerapi::Envelope>(fbb, type, body), kCall, why);
}

// The reply's JSON document's `key` array, or why not.
Result<nlohmann::json> replyArray(const flatbuffers::String* json, const char* key) {
  auto j = json ? nlohmann::json::parse(json->str(), nullptr, false) : nlohmann::json();
  if (!j.is_object() || !j.contains(key) || !j[key].is_array())
    return Error{std::string("agentd answered without a list of ") + key +
                 "; check agentd's log"};
  return j[key];
}

std::string ago(int64_t thenNs) {
  if (thenNs <= 0) return "";
  auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  int64_t s = std::max<int64_t>(0, (now - thenNs) / 1'000'000'000);
  if (s < 60) return std::to_string(s) + " seconds ago";
  if (s < 3600) return std::to_string(s / 60) + " minutes ago";
  if (s < 172800) return std::to_string(s / 3600) + " hours ago";
  return std::to_string(s / 86400) + " days ago";
}

// Docker's `container ls` row keys, from agentd's container object.
nlohmann::json containerRow(const nlohmann::json& c) {
  std::string id = c.value("id", "");
  return {{"ID", id.substr(0, 12)},          {"FullID", id},
          {"Image", c.value("image", "")},   {"Command", ""},
          {"CreatedAt", c.value("created", int64_t{0})},
          {"RunningFor", ago(c.value("created", int64_t{0}))},
          {"Status", c.value("status", "")}, {"State", c.value("state", "")},
          {"Ports", ""},                     {"Names", c.value("name", "")},
          {"Pid", c.value("pid", 0)},        {"ExitCode", c.value("exit_code", 0)}};
}

struct LsOptions {
  bool all = false, quiet = false;
  std::string format;
};

int printRows(const ListingFormat& format, const std::vector<nlohmann::json>& rows,
              const Headers& headers) {
  auto text = format.render(rows, headers);
  if (!text) {
    std::cerr << "error: --format: " << text.error().message << "\n";
    return 1;
  }
  std::cout << *text;
  return 0;
}

int containerLs(const Globals& g, const LsOptions& o) {
  bool quietFormat = o.quiet && (o.format.empty() || o.format == "table");
  auto format = ListingFormat::parse(quietFormat ? "{{.ID}}" : o.format, kContainerTable);
  if (!format) {
    std::cerr << "error: --format: " << format.error().message << "\n";
    return 2;
  }
  flatbuffers::FlatBufferBuilder fbb;
  CallError why;
  auto reply = callAgent(g, fbb, containerapi::Body::ListRequest,
                         containerapi::CreateListRequest(fbb, o.all).Union(), &why);
  if (!reply) return printCallError(why);
  const auto* r = reply->as<containerapi::Envelope>()->body_as_ListReply();
  auto list = replyArray(r ? r->json() : nullptr, "containers");
  if (!list) {
    std::cerr << "error: " << list.error().message << "\n";
    return 1;
  }
  std::vector<nlohmann::json> rows;
  for (const auto& c : *list) rows.push_back(containerRow(c));
  return printRows(*format, rows, containerHeaders());
}

// Each name on its own, as docker does: the ones that went are printed, the others' errors
// follow, and the exit code says whether any failed.
int containerRm(const Globals& g, const std::vector<std::string>& names, bool force) {
  int rc = 0;
  for (const auto& name : names) {
    flatbuffers::FlatBufferBuilder fbb;
    CallError why;
    auto body = containerapi::CreateRemoveRequestDirect(fbb, name.c_str(), force);
    auto reply = callAgent(g, fbb, containerapi::Body::RemoveRequest, body.Union(), &why);
    if (!reply) {
      rc = printCallError(why);
      if (why.kind != CallError::Kind::Daemon) return rc;  // agentd is not there for any
      continue;
    }
    std::cout << name << "\n";
  }
  return rc;
}

int volumeLs(const Globals& g, const LsOptions& o) {
  bool quietFormat = o.quiet && (o.format.empty() || o.format == "table");
  auto format = ListingFormat::parse(quietFormat ? "{{.Name}}" : o.format, kVolumeTable);
  if (!format) {
    std::cerr << "error: --format: " << format.error().message << "\n";
    return 2;
  }
  flatbuffers::FlatBufferBuilder fbb;
  CallError why;
  auto reply = callAgent(g, fbb, containerapi::Body::VolumeListRequest,
                         containerapi::CreateVolumeListRequest(fbb).Union(), &why);
  if (!reply) return printCallError(why);
  const auto* r = reply->as<containerapi::Envelope>()->body_as_VolumeListReply();
  auto list = replyArray(r ? r->json() : nullptr, "volumes");
  if (!list) {
    std::cerr << "error: " << list.error().message << "\n";
    return 1;
  }
  std::vector<nlohmann::json> rows;
  for (const auto& v : *list)
    rows.push_back({{"Driver", v.value("driver", "local")}, {"Name", v.value("name", "")},
                    {"Mountpoint", v.value("mountpoint", "")}, {"Scope", "local"},
                    {"Labels", ""}, {"InUseBy", v.value("in_use_by", nlohmann::json::array())}});
  return printRows(*format, rows, volumeHeaders());
}

int volumeRm(const Globals& g, const std::vector<std::string>& names, bool force) {
  int rc = 0;
  for (const auto& name : names) {
    flatbuffers::FlatBufferBuilder fbb;
    CallError why;
    auto body = containerapi::CreateVolumeRemoveRequestDirect(fbb, name.c_str(), force);
    auto reply = callAgent(g, fbb, containerapi::Body::VolumeRemoveRequest, body.Union(), &why);
    if (!reply) {
      rc = printCallError(why);
      if (why.kind != CallError::Kind::Daemon) return rc;
      continue;
    }
    std::cout << name << "\n";
  }
  return rc;
}

void addVolumeCommands(CLI::App& app, Globals& g, Outcome& outcome) {
  auto* volume = app.add_subcommand("volume", "Named local volumes on this node");
  volume->require_subcommand(1);
  static LsOptions ls;
  auto* l = volume->add_subcommand("ls", "List volumes");
  l->alias("list");
  l->add_flag("-q,--quiet", ls.quiet, "Only display volume names");
  l->add_option("--format", ls.format,
                "Format output: 'table', 'table TEMPLATE', 'json' or a Go template, e.g. "
                "'{{.Name}}'");
  l->callback([&g, &outcome] { outcome.code = volumeLs(g, ls); });

  static std::vector<std::string> names;
  static bool force = false;
  auto* rm = volume->add_subcommand("rm", "Remove one or more volumes (and their data)");
  rm->alias("remove");
  rm->add_option("VOLUME", names, "Volume names")->required();
  rm->add_flag("-f,--force", force, "Do not fail when a volume does not exist");
  rm->callback([&g, &outcome] { outcome.code = volumeRm(g, names, force); });
}

}  // namespace

void addContainerCommands(CLI::App& app, Globals& g, Outcome& outcome) {
  auto* container = app.add_subcommand("container", "The task containers on this node");
  container->require_subcommand(1);
  static LsOptions ls;
  auto* l = container->add_subcommand("ls", "List the task containers on this node");
  l->alias("list")->alias("ps");
  l->add_flag("-a,--all", ls.all, "Show all containers (default shows just running)");
  l->add_flag("-q,--quiet", ls.quiet, "Only display container IDs");
  l->add_option("--format", ls.format,
                "Format output: 'table', 'table TEMPLATE', 'json' or a Go template, e.g. "
                "'{{.Names}}'");
  l->callback([&g, &outcome] { outcome.code = containerLs(g, ls); });

  static std::vector<std::string> names;
  static bool force = false;
  auto* rm = container->add_subcommand(
      "rm", "Remove task containers; the task fails and its service replaces it");
  rm->alias("remove");
  rm->add_option("CONTAINER", names, "Container names (<service>.<slot>.<task id>) or ids")
      ->required();
  rm->add_flag("-f,--force", force, "Force the removal of a running container (SIGKILL)");
  rm->callback([&g, &outcome] { outcome.code = containerRm(g, names, force); });

  addVolumeCommands(app, g, outcome);
}

}  // namespace shoal::cli
