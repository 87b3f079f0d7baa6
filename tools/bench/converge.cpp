#include "tools/bench/converge.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

#include <flatbuffers/flatbuffers.h>
#include <nlohmann/json.hpp>

#include "common/store_client.h"
#include "objects_generated.h"
#include "tools/bench/cluster.h"
#include "tools/lab/host.h"
#include "tools/lab/lab.h"
#include "tools/lab/node_list.h"

namespace shoal::bench {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr int kInterruptedExit = 130;
constexpr const char* kService = "bench-converge";
constexpr const char* kImage = "busybox:bench";

double secondsSince(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
double round3(double x) { return std::round(x * 1000) / 1000; }

std::string said(const lab::CommandResult& r) { return r.out + r.err; }

lab::CommandResult labCommand(const ConvergeOptions& o, const std::string& sub, const std::vector<std::string>& args,
                              std::chrono::milliseconds bound) {
  std::vector<std::string> argv = {o.shoalLab, sub, "--name", o.labName};
  argv.insert(argv.end(), args.begin(), args.end());
  return lab::runCommand(argv, bound);
}

// `shoal ARGS...` inside node n, as `shoal-lab exec n shoal ...` runs it.
lab::CommandResult shoalIn(const lab::Lab& l, const lab::Node& n, std::vector<std::string> args,
                           std::chrono::milliseconds bound) {
  args.insert(args.begin(), l.binaries.at("shoal"));
  return lab::runInNetns(n.netns, args, lab::labEnvironment({"SHOAL_RUN_DIR=" + l.runDir(n)}), bound);
}

struct TaskCount {
  size_t total = 0;
  size_t running = 0;  // desired RUNNING and RUNNING
  size_t damaged = 0;  // did not verify as a Task
};

// Counts the listed tasks that run, reading two fields of each (no unpacking: a list of
// 10,000 tasks is read every poll).
TaskCount countTasks(const std::vector<std::string>& tasks) {
  TaskCount c;
  for (auto& t : tasks) {
    ++c.total;
    flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(t.data()), t.size());
    if (!v.VerifyBuffer<objects::Task>(nullptr)) {
      ++c.damaged;
      continue;
    }
    auto* task = flatbuffers::GetRoot<objects::Task>(t.data());
    if (task->desired_state() == objects::TaskState::Running && task->status() &&
        task->status()->state() == objects::TaskState::Running)
      ++c.running;
  }
  return c;
}

// Polls the service's tasks until done(count); the seconds from t0, or nothing (why in *why).
template <class F>
std::optional<double> waitTasks(store::SyncClient& client, const std::string& serviceId, Clock::time_point t0,
                                const ConvergeOptions& o, F done, std::string& why) {
  auto end = t0 + std::chrono::seconds(o.timeoutS);
  store::ListFilter filter;
  filter.serviceId = serviceId;
  while (Clock::now() < end && !interrupted()) {
    auto listed = client.list(objects::ObjectKind::Task, filter, {.timeout = 10s});
    auto at = Clock::now();
    if (!listed) {
      why = "listing the tasks failed: " + listed.error().message;
    } else {
      auto c = countTasks(listed->objects);
      why = std::to_string(c.running) + " of " + std::to_string(c.total) + " tasks RUNNING" +
            (c.damaged ? ", " + std::to_string(c.damaged) + " do not verify" : "");
      if (done(c)) return std::chrono::duration<double>(at - t0).count();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(o.pollMs));
  }
  if (interrupted()) why = "interrupted; " + why;
  return std::nullopt;
}

// CPU seconds (user + system, all threads) of pid so far, 0 if it is gone.
double cpuSecondsOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The command name may hold spaces; utime and stime are the 12th and 13th fields after ')'.
  auto close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(stat.substr(close + 1));
  std::string f;
  uint64_t utime = 0, stime = 0;
  for (int i = 1; i <= 13 && rest >> f; ++i) {
    if (i == 12) utime = std::stoull(f);
    if (i == 13) stime = std::stoull(f);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

uint64_t peakRssKb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.starts_with("VmHWM:")) return std::stoull(line.substr(6));
  return 0;
}

const std::vector<std::string>& managerDaemons() {
  static const std::vector<std::string> d = {"raftd", "schedulerd", "dispatcherd"};
  return d;
}

// The CPU seconds of node n's manager daemons (raftd, schedulerd, dispatcherd) together.
double managerCpu(const lab::Node& n) {
  double s = 0;
  for (auto& d : managerDaemons()) {
    auto it = n.daemons.find(d);
    if (it != n.daemons.end() && lab::sameProcess(it->second.pid, it->second.startTime))
      s += cpuSecondsOf(it->second.pid);
  }
  return s;
}

// The largest VmHWM of each manager daemon over the managers, in MB.
nlohmann::ordered_json managerRssMb(const lab::Lab& l) {
  std::map<std::string, uint64_t> peak;
  for (auto& n : l.nodes)
    for (auto& d : managerDaemons()) {
      auto it = n.daemons.find(d);
      if (n.manager() && it != n.daemons.end() && lab::sameProcess(it->second.pid, it->second.startTime))
        peak[d] = std::max(peak[d], peakRssKb(it->second.pid));
    }
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  for (auto& d : managerDaemons()) j[d] = std::round(peak[d] / 102.4) / 10;
  return j;
}

// The lab's node that leads, as m1's `shoal node ls` says.
std::optional<std::string> leaderOf(const lab::Lab& l, std::string& why) {
  auto r = shoalIn(l, l.nodes.front(), {"node", "ls", "--format", "json"}, 30s);
  if (r.code != 0) {
    why = "`shoal node ls` in m1 failed: " + said(r);
    return std::nullopt;
  }
  try {
    auto leader = lab::soleLeader(lab::parseNodeList(r.out));
    if (!leader) why = "m1's node ls shows no single Leader";
    return leader;
  } catch (const lab::LabError& e) {
    why = e.what();
    return std::nullopt;
  }
}

struct LabGuard {
  const ConvergeOptions& o;
  bool armed = false;
  ~LabGuard() {
    if (!armed) return;
    if (o.keep) {
      std::cerr << "shoal-bench: the lab is kept: shoal-lab down --name " << o.labName << " removes it\n";
      return;
    }
    auto r = labCommand(o, "down", {}, 120s);
    if (r.code != 0) std::cerr << "shoal-bench: shoal-lab down failed: " << said(r);
  }
};

std::string checkOptions(const ConvergeOptions& o) {
  if (o.executor != "fake")
    return "--executor " + o.executor + ": only the fake executor runs tasks so far (agentd --executor fake)";
  if (o.replicas < 1) return "--replicas must be positive";
  if (o.fakeNodes < 0) return "--fake-nodes must be 0 or more";
  if (::geteuid() != 0) return "converge makes a shoal-lab, which needs root (run it with sudo)";
  try {
    lab::checkName(o.labName);
  } catch (const lab::LabError& e) {
    return std::string("--lab-name: ") + e.what();
  }
  if (o.shoalLab.find('/') == std::string::npos || ::access(o.shoalLab.c_str(), X_OK) != 0)
    return "cannot run shoal-lab at '" + o.shoalLab +
           "': build it (ninja -C build tools/lab/shoal-lab) or give its path with --shoal-lab";
  return "";
}

// shoal-lab up with the fake executor; the lab's model, or nothing (said on stderr).
std::optional<lab::Lab> makeLab(const ConvergeOptions& o, LabGuard& guard) {
  std::vector<std::string> args = {"--managers", "3", "--workers", "2", "--executor", o.executor};
  if (o.fakeNodes > 0) args.insert(args.end(), {"--fake-nodes", std::to_string(o.fakeNodes)});
  if (!o.fakeDelay.empty()) args.insert(args.end(), {"--fake-delay", o.fakeDelay});
  if (!o.binDir.empty()) args.insert(args.end(), {"--bin-dir", o.binDir});
  std::cerr << "shoal-bench: making lab " << o.labName << " (3 managers, 2 workers"
            << (o.fakeNodes ? ", " + std::to_string(o.fakeNodes) + " fake nodes" : "") << ")\n";
  auto t0 = Clock::now();
  auto up = labCommand(o, "up", args, std::chrono::seconds(300) + std::chrono::milliseconds(200) * o.fakeNodes);
  // A name taken by somebody else's lab is not ours to take down.
  guard.armed = up.code == 0 || up.err.find("exists") == std::string::npos;
  if (up.code != 0) {
    std::cerr << "shoal-bench: shoal-lab up failed:\n" << said(up);
    return std::nullopt;
  }
  std::cerr << "shoal-bench: lab up in " << round3(secondsSince(t0)) << " s\n";
  try {
    auto l = lab::load(o.labName);
    if (!l) std::cerr << "shoal-bench: the lab has no state file after up\n";
    return l;
  } catch (const lab::LabError& e) {
    std::cerr << "shoal-bench: " << e.what() << "\n";
    return std::nullopt;
  }
}

// The id of the service named kService, read through the store.
std::optional<std::string> serviceId(store::SyncClient& client, std::string& why) {
  auto got = client.getByName(objects::ObjectKind::Service, kService, {.timeout = 10s});
  if (!got) {
    why = "the service " + std::string(kService) + " cannot be read: " + got.error().message;
    return std::nullopt;
  }
  flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(got->data.data()), got->data.size());
  if (!v.VerifyBuffer<objects::Service>(nullptr)) {
    why = "the stored service does not verify";
    return std::nullopt;
  }
  auto* s = flatbuffers::GetRoot<objects::Service>(got->data.data());
  if (!s->id()) {
    why = "the stored service has no id";
    return std::nullopt;
  }
  return s->id()->str();
}

struct Phases {
  std::optional<double> create, remove;
  std::string why;
};

// Create → all RUNNING, then rm → no task left, timed from each command's start.
Phases measure(const ConvergeOptions& o, const lab::Lab& l, store::SyncClient& client) {
  Phases p;
  auto fail = [&p](std::string why) {
    p.why = std::move(why);
    return p;
  };
  const lab::Node& m1 = l.nodes.front();
  auto t0 = Clock::now();
  auto created = shoalIn(l, m1, {"service", "create", "-d", "--name", kService, "--replicas",
                                 std::to_string(o.replicas), kImage}, 60s);
  if (created.code != 0) return fail("`shoal service create` failed: " + said(created));
  auto id = serviceId(client, p.why);
  if (!id) return p;
  const size_t n = o.replicas;
  p.create = waitTasks(client, *id, t0, o, [n](const TaskCount& c) { return c.running == n; }, p.why);
  if (!p.create) return fail("not all RUNNING within " + std::to_string(o.timeoutS) + " s: " + p.why);
  std::cerr << "shoal-bench: " << n << " RUNNING after " << round3(*p.create) << " s; removing\n";
  auto t1 = Clock::now();
  auto removed = shoalIn(l, m1, {"service", "rm", kService}, 60s);
  if (removed.code != 0) return fail("`shoal service rm` failed: " + said(removed));
  p.remove = waitTasks(client, *id, t1, o, [](const TaskCount& c) { return c.total == 0; }, p.why);
  if (!p.remove) p.why = "tasks left " + std::to_string(o.timeoutS) + " s after the removal: " + p.why;
  return p;
}

}  // namespace

int runConverge(const ConvergeOptions& o) {
  if (auto bad = checkOptions(o); !bad.empty()) return std::cerr << "shoal-bench: " << bad << "\n", 1;
  LabGuard guard{o};
  auto l = makeLab(o, guard);
  if (!l) return 1;
  std::string why;
  auto leader = leaderOf(*l, why);
  if (!leader) return std::cerr << "shoal-bench: " << why << "\n", 1;
  const lab::Node& leaderNode = l->node(*leader);
  store::SyncClient client;
  if (auto c = client.connect(store::endpointIn(l->runDir(l->nodes.front()))); !c)
    return std::cerr << "shoal-bench: cannot connect to m1's raftd: " << c.error().message << "\n", 1;

  double cpu0 = managerCpu(leaderNode);
  auto p = measure(o, *l, client);
  double leaderCpu = managerCpu(leaderNode) - cpu0;
  if (!p.remove) {
    std::cerr << "shoal-bench: " << p.why << "\n";
    return interrupted() ? kInterruptedExit : 1;
  }
  nlohmann::ordered_json out = {{"bench", "converge"},
                                {"executor", o.executor},
                                {"replicas", o.replicas},
                                {"fake_nodes", o.fakeNodes},
                                {"create_to_running_s", round3(*p.create)},
                                {"remove_s", round3(*p.remove)},
                                {"leader", *leader},
                                {"leader_cpu_s", round3(leaderCpu)},
                                {"manager_rss_mb", managerRssMb(*l)},
                                {"goal_s", 3}};
  std::cout << out.dump() << std::endl;
  return 0;
}

}  // namespace shoal::bench
