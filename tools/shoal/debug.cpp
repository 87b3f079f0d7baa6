// shoal debug: talk to one daemon alone through its local control socket.
#include <sys/stat.h>

#include <iostream>
#include <map>

#include <nlohmann/json.hpp>

#include "common/bus.h"
#include "common/protocols.h"
#include "tools/shoal/cli.h"
#include "tools/shoal/daemons.h"

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

// `shoal debug fake-task`: what agentd's fake executor (agentd --executor fake) makes a task
// do, for tests (docs/services.md "The fake executor").
struct FakeTaskOptions {
  std::string task, action, message;
  int exitCode = 1;
};

const std::map<std::string, agentapi::FakeAction>& fakeActions() {
  static const std::map<std::string, agentapi::FakeAction> actions = {
      {"fail", agentapi::FakeAction::Fail},
      {"exit", agentapi::FakeAction::Exit},
      {"unhealthy", agentapi::FakeAction::Unhealthy},
      {"reject", agentapi::FakeAction::Reject},
  };
  return actions;
}

int fakeTask(const Globals& g, const FakeTaskOptions& o) {
  auto action = fakeActions().at(o.action);  // CLI11 checked it is one of them
  flatbuffers::FlatBufferBuilder fbb;
  auto body = agentapi::CreateFakeTaskRequestDirect(fbb, o.task.c_str(), action, o.exitCode,
                                                    o.message.empty() ? nullptr : o.message.c_str());
  CallError why;
  auto reply = shoal::cli::callDaemon(
      g, "agentd", kAgentProtocol,
      bus::message<agentapi::Envelope>(fbb, agentapi::Body::FakeTaskRequest, body.Union()),
      std::chrono::milliseconds(10'000), &why);
  if (!reply) return printCallError(why);
  std::cout << o.task << "\n";
  return 0;
}

// `shoal debug agent-tasks`: the tasks this node's agentd holds, one JSON object per line
// (agent.fbs TasksReply), as `--format json` listings print.
int agentTasks(const Globals& g) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = agentapi::CreateTasksRequest(fbb);
  CallError why;
  auto reply = shoal::cli::callDaemon(
      g, "agentd", kAgentProtocol,
      bus::message<agentapi::Envelope>(fbb, agentapi::Body::TasksRequest, body.Union()),
      std::chrono::milliseconds(10'000), &why);
  if (!reply) return printCallError(why);
  const auto* env = reply->as<agentapi::Envelope>();
  const auto* r = env ? env->body_as_TasksReply() : nullptr;
  auto j = r && r->json() ? nlohmann::json::parse(r->json()->str(), nullptr, false) : nlohmann::json();
  if (!j.is_array()) {
    std::cerr << "error: agentd answered Tasks without a JSON array of tasks; check agentd's log\n";
    return 1;
  }
  for (const auto& task : j) std::cout << task.dump() << "\n";
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

  static FakeTaskOptions fake;
  std::vector<std::string> actions;
  for (const auto& [name, action] : fakeActions()) actions.push_back(name);
  auto* ft = debug->add_subcommand(
      "fake-task", "Make a task of this node's fake executor (agentd --executor fake) fail, exit, turn unhealthy or be rejected");
  ft->add_option("TASK", fake.task, "Task id, unique id prefix or name (<service>.<slot>)")->required();
  ft->add_option("ACTION", fake.action, "fail, exit, unhealthy or reject")->required()->check(CLI::IsMember(actions));
  ft->add_option("--exit-code", fake.exitCode, "The container's exit code (fail, exit; default 1)");
  ft->add_option("--message", fake.message, "The task's error message");
  ft->callback([&g, &outcome] { outcome.code = fakeTask(g, fake); });

  auto* at = debug->add_subcommand("agent-tasks", "List the tasks this node's agentd holds, one JSON object per line");
  at->callback([&g, &outcome] { outcome.code = agentTasks(g); });
}

}  // namespace shoal::cli
