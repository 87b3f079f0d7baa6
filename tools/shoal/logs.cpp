// shoal service logs and shoal container logs (docs/containers.md "Logs"): the CLI resolves
// what to read (a service or a task through the store; a container by name on this node),
// opens a SubscribeRequest stream (schemas/logs.fbs) on this node's agentd.sock and prints
// the lines as docker does: `<task name>.<task id>@<node hostname>    | <line>`, stderr lines
// on stderr. Ctrl-C ends a follow cleanly.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/object_codec.h"
#include "common/units.h"
#include "services/agentd/log_reader.h"
#include "tools/shoal/cli.h"
#include "tools/shoal/daemons.h"
#include "tools/shoal/services.h"

namespace shoal::cli {
namespace {

constexpr Millis kCall{10'000};
// Items agentd may push ahead of the printing.
constexpr uint32_t kWindow = 32;

std::atomic<bool> interrupted{false};

struct LogFlags {
  bool follow = false;
  std::string tail = "all";
  std::string since;
  bool timestamps = false;
  bool raw = false;
  bool noTaskIds = false;
  bool noTrunc = false;
  std::string ref;
};

int64_t nowNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// --tail: "all" or a count.
Result<int64_t> parseTail(const std::string& text) {
  if (text == "all" || text.empty()) return int64_t{-1};
  int64_t n = 0;
  for (char c : text) {
    if (c < '0' || c > '9' || n > 1'000'000'000) return Error{"--tail: '" + text + "' is not a number of lines or \"all\""};
    n = n * 10 + (c - '0');
  }
  return n;
}

// --since: a duration before now (10m, 1h30m), an RFC 3339 time, or Unix seconds, as docker's.
Result<int64_t> parseSince(const std::string& text, int64_t now) {
  if (text.empty()) return int64_t{0};
  if (auto d = parseDuration(text); d) {
    if (d->count() <= 0) return Error{"--since: a duration must be positive, as 10m"};
    return std::max<int64_t>(1, now - d->count());
  }
  if (auto t = agentd::parseRfc3339Nanos(text); t) return std::max<int64_t>(1, *t);
  if (!text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::stoll(text.substr(0, 12)) * 1'000'000'000;
  return Error{"--since: '" + text + "' is neither a duration (10m, 1h30m), an RFC 3339 time "
               "(2026-11-30T13:37:00Z) nor Unix seconds"};
}

std::string rfc3339Nanos(int64_t ns) {
  agentd::LogLine l;
  l.timestamp = ns;
  std::string cri = agentd::formatCriLine(l);
  return cri.substr(0, cri.find(' '));
}

// What docker prints before a line: the task's name, its id (12 characters unless
// --no-trunc; none with --no-task-ids), @ the node's hostname.
struct TaskLabel {
  std::string name;  // web.1
  std::string nodeId;
  std::string serviceId;
};
struct Labels {
  std::map<std::string, TaskLabel> tasks;
  std::map<std::string, std::string> hostnames;
  size_t width = 0;
};

std::string contextOf(const Labels& labels, const std::string& taskId, const std::string& nodeId,
                      const LogFlags& f) {
  auto t = labels.tasks.find(taskId);
  std::string name = t != labels.tasks.end() ? t->second.name : taskId.substr(0, 12);
  if (!f.noTaskIds) name += "." + (f.noTrunc ? taskId : taskId.substr(0, 12));
  auto h = labels.hostnames.find(nodeId);
  return name + "@" + (h != labels.hostnames.end() ? h->second : nodeId);
}

void printMessage(const logapi::LogMessage& m, const Labels* labels, const LogFlags& f) {
  std::string out;
  if (f.timestamps) out = rfc3339Nanos(m.timestamp()) + " ";
  if (labels && !f.raw) {
    std::string context = contextOf(*labels, m.task_id() ? m.task_id()->str() : "",
                                    m.node_id() ? m.node_id()->str() : "", f);
    out += context + std::string(std::max(labels->width, context.size()) - context.size() + 4, ' ') + "| ";
  }
  if (m.line()) out.append(reinterpret_cast<const char*>(m.line()->data()), m.line()->size());
  out += '\n';
  auto& stream = m.stream() == logapi::LogStream::Stderr ? std::cerr : std::cout;
  stream << out;
}

std::string hostnameOf(const Labels* labels, const std::string& nodeId) {
  if (!labels) return nodeId;
  auto h = labels->hostnames.find(nodeId);
  return h != labels->hostnames.end() ? h->second : nodeId;
}

void onSignal(int) { interrupted = true; }

// Streams a SubscribeRequest through agentd.sock and prints what comes. The exit code.
int stream(const Globals& g, bus::Buffer request, const Labels* labels, const LogFlags& f) {
  std::string path = socketOf(g, "agentd");
  if (!socketExists(path)) return printCallError({CallError::Kind::Unreachable, unreachable(g, "agentd")});
  bus::SyncClient client(kLogProtocol);
  if (auto c = client.connect("ipc://" + path); !c)
    return printCallError({CallError::Kind::Unreachable, "cannot connect to agentd at " + path + ": " + c.error().message});
  std::optional<Status> ended;
  auto id = client.client().openStream(
      std::move(request), kWindow,
      [&](const bus::Frame& frame) {
        auto* env = frame.as<logapi::Envelope>();
        auto* batch = env ? env->body_as_LogBatch() : nullptr;
        if (!batch) return;
        if (batch->messages())
          for (auto* m : *batch->messages()) printMessage(*m, labels, f);
        if (batch->missing())
          for (auto* n : *batch->missing())
            std::cerr << "warning: node " << hostnameOf(labels, n->str())
                      << " could not be asked for its logs (down, or no session with the leader)\n";
        std::cout.flush();
      },
      [&](Status st) { ended = std::move(st); });
  struct sigaction sa {};
  sa.sa_handler = onSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  while (!ended && !interrupted) client.loop().runOnce(std::chrono::milliseconds(100));
  if (!ended) {
    client.client().cancel(id);
    client.loop().runOnce(std::chrono::milliseconds(50));  // the cancel goes before we exit
    return 0;
  }
  if (!*ended) return printCallError({CallError::Kind::Daemon, ended->error().message});
  return 0;
}

bus::Buffer subscribeRequest(const std::vector<std::string>& services, const std::vector<std::string>& tasks,
                             bool follow, int64_t tail, int64_t since, bool local) {
  flatbuffers::FlatBufferBuilder fbb;
  auto s = fbb.CreateVectorOfStrings(services);
  auto t = fbb.CreateVectorOfStrings(tasks);
  auto selector = logapi::CreateLogSelector(fbb, s, t);
  auto options = logapi::CreateLogOptions(fbb, follow, tail, since);
  auto body = logapi::CreateSubscribeRequest(fbb, selector, options, local);
  return bus::message<logapi::Envelope>(fbb, logapi::Body::SubscribeRequest, body.Union());
}

template <class T>
Result<std::vector<std::unique_ptr<typename T::NativeTableType>>> listAll(store::SyncClient& c, objects::ObjectKind kind,
                                                                          const char* what) {
  auto l = c.list(kind, {}, {});
  if (!l) return l.error();
  std::vector<std::unique_ptr<typename T::NativeTableType>> out;
  for (auto& b : l->objects) {
    auto o = objects_codec::unpack<T>(b, what);
    if (!o) return o.error();
    out.push_back(std::move(*o));
  }
  return out;
}

// What `service logs REF` reads: the service's id, or one task's, and the labels to print.
struct Target {
  std::vector<std::string> services, tasks;
  Labels labels;
};

Result<Target> resolveTarget(const Globals& g, const std::string& ref, CallError& why) {
  if (auto m = requireManager(g, &why); !m) return m.error();
  store::SyncClient c;
  if (auto st = c.connect(store::endpointIn(g.runDir)); !st) {
    why = {CallError::Kind::Unreachable, "cannot connect to raftd at " + socketOf(g, "raftd") + ": " + st.error().message};
    return Error{why.message};
  }
  auto fail = [&why](const Error& e) -> Result<Target> {
    why = {CallError::Kind::Daemon, e.message};
    return e;
  };
  auto services = listAll<objects::Service>(c, objects::ObjectKind::Service, "Service");
  if (!services) return fail(services.error());
  auto tasks = listAll<objects::Task>(c, objects::ObjectKind::Task, "Task");
  if (!tasks) return fail(tasks.error());
  auto nodes = listAll<objects::Node>(c, objects::ObjectKind::Node, "Node");
  if (!nodes) return fail(nodes.error());
  Target t;
  std::vector<const objects::ServiceT*> ptrs;
  std::map<std::string, const objects::ServiceT*> byId;
  for (auto& s : *services) {
    ptrs.push_back(s.get());
    byId[s->id] = s.get();
  }
  if (auto s = resolveService(ptrs, ref)) t.services.push_back((*s)->id);
  for (auto& task : *tasks) {
    auto sit = byId.find(task->service_id);
    std::string name = taskDisplayName(*task, sit == byId.end() ? nullptr : sit->second);
    if (t.services.empty() && (task->id == ref || name + "." + task->id == ref || name == ref))
      t.tasks.push_back(task->id);
    t.labels.tasks[task->id] = {name, task->node_id, task->service_id};
  }
  if (t.services.empty() && t.tasks.size() != 1) {
    why = {CallError::Kind::Daemon, t.tasks.empty() ? "no such service: " + ref
                                                    : "task " + ref + " is ambiguous (" + std::to_string(t.tasks.size()) + " matches found)"};
    return Error{why.message};
  }
  for (auto& n : *nodes)
    t.labels.hostnames[n->id] = n->description && !n->description->hostname.empty() ? n->description->hostname : n->id;
  return t;
}

// The context's width, so that the bars line up as docker's do.
void measure(Target& t, const LogFlags& f) {
  for (auto& [id, label] : t.labels.tasks) {
    bool shown = std::find(t.tasks.begin(), t.tasks.end(), id) != t.tasks.end() ||
                 std::find(t.services.begin(), t.services.end(), label.serviceId) != t.services.end();
    if (!shown) continue;
    t.labels.width = std::max(t.labels.width, contextOf(t.labels, id, label.nodeId, f).size());
  }
}

// --tail and --since read, or the usage error printed (false).
struct Window {
  int64_t tail = -1, since = 0;
};
std::optional<Window> readWindow(const LogFlags& f) {
  auto tail = parseTail(f.tail);
  auto since = parseSince(f.since, nowNanos());
  for (auto* e : {tail ? nullptr : &tail.error(), since ? nullptr : &since.error()})
    if (e) {
      std::cerr << "error: " << e->message << "\n";
      return std::nullopt;
    }
  return Window{*tail, *since};
}

int serviceLogs(const Globals& g, const LogFlags& f) {
  auto w = readWindow(f);
  if (!w) return 2;
  CallError why;
  auto target = resolveTarget(g, f.ref, why);
  if (!target) return printCallError(why);
  measure(*target, f);
  return stream(g, subscribeRequest(target->services, target->tasks, f.follow, w->tail, w->since, false),
                &target->labels, f);
}

int containerLogs(const Globals& g, const LogFlags& f) {
  auto w = readWindow(f);
  if (!w) return 2;
  LogFlags raw = f;
  raw.raw = true;
  return stream(g, subscribeRequest({}, {f.ref}, f.follow, w->tail, w->since, true), nullptr, raw);
}

void addCommonFlags(CLI::App* cmd, LogFlags& f) {
  cmd->add_flag("-f,--follow", f.follow, "Follow log output");
  cmd->add_option("-n,--tail", f.tail, "Number of lines to show from the end of the logs of each task (\"all\")");
  cmd->add_option("--since", f.since, "Show logs since a time (2026-11-30T13:23:37Z) or relative (42m)");
  cmd->add_flag("-t,--timestamps", f.timestamps, "Show timestamps");
}

}  // namespace

void addLogsCommands(CLI::App& service, CLI::App& container, Globals& g, Outcome& outcome) {
  auto sf = std::make_shared<LogFlags>();
  auto* s = service.add_subcommand("logs", "Fetch the logs of a service or task");
  addCommonFlags(s, *sf);
  s->add_flag("--raw", sf->raw, "Do not neatly format logs");
  s->add_flag("--no-task-ids", sf->noTaskIds, "Do not include task IDs in output");
  s->add_flag("--no-trunc", sf->noTrunc, "Do not truncate output");
  s->add_option("SERVICE|TASK", sf->ref, "The service or task")->required();
  s->callback([&g, &outcome, sf] { outcome.code = serviceLogs(g, *sf); });

  auto cf = std::make_shared<LogFlags>();
  auto* c = container.add_subcommand("logs", "Fetch the logs of a task's container on this node");
  addCommonFlags(c, *cf);
  c->add_option("NAME", cf->ref, "The container (<service>.<slot>.<task id>, <service>.<slot>, or the task id)")->required();
  c->callback([&g, &outcome, cf] { outcome.code = containerLogs(g, *cf); });
}

}  // namespace shoal::cli
