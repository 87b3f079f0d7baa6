// shoal debug: talk to one daemon alone through its local control socket.
#include <sys/stat.h>

#include <iostream>

#include <nlohmann/json.hpp>

#include "common/bus.h"
#include "common/protocols.h"
#include "tools/shoal/cli.h"

namespace shoal::cli {
namespace {

const char* kDaemons[] = {"raftd", "schedulerd", "dispatcherd", "agentd", "overlayd", "meshd"};
constexpr auto kTimeout = std::chrono::seconds(5);

std::string socketOf(const Globals& g, const std::string& daemon) {
  return g.runDir + "/" + daemon + ".sock";
}

// Calls a daemon's control socket, or says why it cannot be reached and what to do.
Result<bus::Frame> callDaemon(const Globals& g, const std::string& daemon, bus::Buffer request) {
  std::string path = socketOf(g, daemon);
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode))
    return Error{"cannot reach " + daemon + ": no socket at " + path + ". Is " + daemon +
                 " running? Start it (systemctl start shoal-" + daemon +
                 "), or point at its run dir with --run-dir or $SHOAL_RUN_DIR."};
  bus::SyncClient client(kControlProtocol);
  if (auto c = client.connect("ipc://" + path); !c) return c.error();
  auto reply = client.call(std::move(request), kTimeout);
  if (!reply && reply.error().code == static_cast<int>(wire::ErrorCode::DeadlineExceeded))
    return Error{daemon + " did not answer on " + path + " within 5s: it may be hung or "
                 "stopped (stale socket); check `systemctl status shoal-" + daemon +
                 "` or its log"};
  return reply;
}

void printHuman(const nlohmann::json& j, const std::string& indent = "") {
  for (auto& [key, value] : j.items()) {
    if (value.is_object()) {
      std::cout << indent << key << ":\n";
      printHuman(value, indent + "  ");
    } else if (value.is_string()) {
      std::cout << indent << key << ": " << value.get<std::string>() << "\n";
    } else {
      std::cout << indent << key << ": " << value.dump() << "\n";
    }
  }
}

int status(const Globals& g, const std::string& daemon, bool json) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = control::CreateStatusRequest(fbb);
  auto reply = callDaemon(g, daemon,
                          bus::message<control::Envelope>(fbb, control::Body::StatusRequest, body.Union()));
  if (!reply) {
    std::cerr << "error: " << reply.error().message << "\n";
    return 1;
  }
  auto* r = reply->as<control::Envelope>()->body_as_StatusReply();
  if (!r || !r->json()) {
    std::cerr << "error: " << daemon << " answered Status without a status\n";
    return 1;
  }
  auto j = nlohmann::json::parse(r->json()->str(), nullptr, false);
  if (j.is_discarded()) {
    std::cerr << "error: " << daemon << " answered Status with text that is not JSON\n";
    return 1;
  }
  if (json)
    std::cout << j.dump(2) << "\n";
  else
    printHuman(j);
  return 0;
}

int logLevel(const Globals& g, const std::string& daemon, const std::string& level) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = control::CreateSetLogLevelRequest(fbb, fbb.CreateString(level));
  auto reply = callDaemon(g, daemon, bus::message<control::Envelope>(
                                         fbb, control::Body::SetLogLevelRequest, body.Union()));
  if (!reply) {
    std::cerr << "error: " << reply.error().message << "\n";
    return 1;
  }
  auto* r = reply->as<control::Envelope>()->body_as_SetLogLevelReply();
  std::cout << daemon << ": log level " << (r && r->previous() ? r->previous()->str() : "?")
            << " -> " << (r && r->level() ? r->level()->str() : "?") << "\n";
  return 0;
}

}  // namespace

void addDebugCommands(CLI::App& app, Globals& g, Outcome& outcome) {
  auto* debug = app.add_subcommand("debug", "Inspect and tune one daemon (for operators)");
  debug->require_subcommand(1);

  static std::string daemon, level;
  static bool json = false;
  std::vector<std::string> names(std::begin(kDaemons), std::end(kDaemons));

  auto* st = debug->add_subcommand("status", "Show a daemon's state");
  st->add_option("daemon", daemon, "raftd, schedulerd, dispatcherd, agentd, overlayd or meshd")
      ->required()
      ->check(CLI::IsMember(names));
  st->add_flag("--json", json, "Print the JSON the daemon answered");
  st->callback([&g, &outcome] { outcome.code = status(g, daemon, json); });

  auto* ll = debug->add_subcommand("log-level", "Change a daemon's log level while it runs");
  ll->add_option("daemon", daemon, "the daemon")->required()->check(CLI::IsMember(names));
  ll->add_option("level", level, "trace, debug, info, warn, error, critical or off")->required();
  ll->callback([&g, &outcome] { outcome.code = logLevel(g, daemon, level); });

  addDumpStoreCommand(*debug, outcome);
}

}  // namespace shoal::cli
