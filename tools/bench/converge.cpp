#include "tools/bench/converge.h"

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
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
constexpr const char* kWarmUp = "bench-warmup";
constexpr const char* kImage = "busybox:bench";  // the fake executor pulls nothing
// What a runc task runs: busybox's sleep, long enough for any run, under a shell that exits on
// SIGTERM. A bare `sleep` as the container's PID 1 ignores SIGTERM (the kernel gives PID 1 no
// default action), so every removal would wait out the 10 s stop grace period and measure
// that, not shoal (docker's `stop` of such a container takes the same 10 s).
const std::vector<std::string> kSleep = {"sh", "-c", "trap 'exit 0' TERM; sleep 1000000 & wait"};

// The states a task goes through on its way to RUNNING, as stages_s names them.
const std::vector<std::pair<objects::TaskState, const char*>>& stages() {
  static const std::vector<std::pair<objects::TaskState, const char*>> s = {
      {objects::TaskState::Assigned, "assigned"}, {objects::TaskState::Accepted, "accepted"},
      {objects::TaskState::Preparing, "preparing"}, {objects::TaskState::Ready, "ready"},
      {objects::TaskState::Starting, "starting"},   {objects::TaskState::Running, "running"}};
  return s;
}

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
  std::vector<size_t> reached = std::vector<size_t>(stages().size());  // desired RUNNING, at or past stage i
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
    if (task->desired_state() != objects::TaskState::Running || !task->status()) continue;
    auto state = task->status()->state();
    if (state == objects::TaskState::Running) ++c.running;
    for (size_t i = 0; i < stages().size(); ++i)
      if (state >= stages()[i].first && state <= objects::TaskState::Running) ++c.reached[i];
  }
  return c;
}

// When every one of n tasks had reached each stage, in seconds from t0 (as first polled).
using Stages = std::map<std::string, double>;

// Polls the service's tasks until done(count); the seconds from t0, or nothing (why in *why).
// With stages, notes when all n tasks had reached each state on the way to RUNNING.
template <class F>
std::optional<double> waitTasks(store::SyncClient& client, const std::string& serviceId, Clock::time_point t0,
                                const ConvergeOptions& o, F done, std::string& why, Stages* stagesSeen = nullptr,
                                size_t n = 0) {
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
      double t = std::chrono::duration<double>(at - t0).count();
      for (size_t i = 0; stagesSeen && i < stages().size(); ++i)
        if (c.reached[i] == n && !stagesSeen->count(stages()[i].second)) (*stagesSeen)[stages()[i].second] = t;
      if (done(c)) return t;
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

// Each node's agentd peak RSS (VmHWM), in MB: what a node pays for its containers' agent.
nlohmann::ordered_json agentdRssMb(const lab::Lab& l) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  for (auto& n : l.nodes) {
    auto it = n.daemons.find("agentd");
    if (it != n.daemons.end() && lab::sameProcess(it->second.pid, it->second.startTime))
      j[n.name] = std::round(peakRssKb(it->second.pid) / 102.4) / 10;
  }
  return j;
}

// The containers runc holds on the lab's nodes: the state dirs in each node's runc root
// (agentd's default <run dir>/runc), which `runc delete` removes. 0 with the fake executor.
size_t containersOn(const lab::Lab& l) {
  size_t n = 0;
  std::error_code ec;
  for (auto& node : l.nodes)
    for (auto& e : std::filesystem::directory_iterator(l.runDir(node) + "/runc", ec)) n += e.is_directory() ? 1 : 0;
  return n;
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
  if (o.executor != "fake" && o.executor != "runc") return "--executor " + o.executor + ": give fake or runc";
  if (o.executor == "runc" && (o.fakeNodes > 0 || !o.fakeDelay.empty()))
    return "--fake-nodes and --fake-delay need --executor fake";
  if (o.executor == "runc" && (o.makeImage.empty() || ::access(o.makeImage.c_str(), X_OK) != 0))
    return "--executor runc builds a busybox image with tools/images/make-busybox-image: cannot run '" +
           o.makeImage + "'; give its path with --make-image";
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
  if (o.executor == "runc") args.push_back("--registry");
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

// The id of the service named name, read through the store.
std::optional<std::string> serviceId(store::SyncClient& client, std::string& why, const std::string& name = kService) {
  auto got = client.getByName(objects::ObjectKind::Service, name, {.timeout = 10s});
  if (!got) {
    why = "the service " + name + " cannot be read: " + got.error().message;
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
  Stages stages;
  std::string why;
};

// What the service runs: with runc, busybox from the lab's registry sleeping; with the fake
// executor an image name nobody pulls.
struct Workload {
  std::string image = kImage;
  std::vector<std::string> command;
};

// `service create -d --name name ARGS... IMAGE COMMAND...` on m1.
lab::CommandResult createService(const lab::Lab& l, const std::string& name, std::vector<std::string> args,
                                 const Workload& w) {
  std::vector<std::string> all = {"service", "create", "-d", "--name", name};
  all.insert(all.end(), args.begin(), args.end());
  all.push_back(w.image);
  all.insert(all.end(), w.command.begin(), w.command.end());
  return shoalIn(l, l.nodes.front(), all, 60s);
}

// make-busybox-image into a temp dir, `shoal-lab push` into the lab's registry; the
// reference the nodes pull, or nothing (said on stderr).
std::optional<std::string> pushBusybox(const ConvergeOptions& o) {
  char tmpl[] = "/tmp/shoal-bench-image.XXXXXX";
  if (!::mkdtemp(tmpl)) return std::cerr << "shoal-bench: cannot make a temp dir in /tmp\n", std::nullopt;
  std::string dir = tmpl;
  auto made = lab::runCommand({o.makeImage, "--out", dir + "/oci"}, 120s);
  auto pushed = made.code == 0 ? labCommand(o, "push", {"oci:" + dir + "/oci:latest", "busybox:latest"}, 300s)
                               : made;
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (pushed.code != 0) return std::cerr << "shoal-bench: making or pushing busybox failed: " << said(pushed), std::nullopt;
  return pushed.out.substr(0, pushed.out.find('\n'));
}

// A global service of the workload, so every node pulls the image before anything is timed;
// removed again, with its containers, before the measure. Empty when done, else why not.
std::string warmUp(const ConvergeOptions& o, const lab::Lab& l, store::SyncClient& client, const Workload& w) {
  std::cerr << "shoal-bench: warming up: " << w.image << " pulled on every node (a global service)\n";
  auto t0 = Clock::now();
  if (auto r = createService(l, kWarmUp, {"--mode", "global"}, w); r.code != 0)
    return "the warm-up service create failed: " + said(r);
  std::string why;
  auto id = serviceId(client, why, kWarmUp);
  if (!id) return why;
  const size_t nodes = l.nodes.size();
  if (!waitTasks(client, *id, t0, o, [nodes](const TaskCount& c) { return c.running == nodes; }, why))
    return "the warm-up service did not run on all " + std::to_string(nodes) + " nodes: " + why;
  if (auto r = shoalIn(l, l.nodes.front(), {"service", "rm", kWarmUp}, 60s); r.code != 0)
    return "the warm-up service rm failed: " + said(r);
  if (!waitTasks(client, *id, Clock::now(), o, [&l](const TaskCount& c) { return c.total == 0 && containersOn(l) == 0; },
                 why))
    return "the warm-up service's tasks or containers were not removed: " + why;
  std::cerr << "shoal-bench: warmed up in " << round3(secondsSince(t0)) << " s\n";
  return "";
}

// Create → all RUNNING, then rm → no task left, timed from each command's start.
Phases measure(const ConvergeOptions& o, const lab::Lab& l, store::SyncClient& client, const Workload& w) {
  Phases p;
  auto fail = [&p](std::string why) {
    p.why = std::move(why);
    return p;
  };
  const lab::Node& m1 = l.nodes.front();
  auto t0 = Clock::now();
  auto created = createService(l, kService, {"--replicas", std::to_string(o.replicas)}, w);
  if (created.code != 0) return fail("`shoal service create` failed: " + said(created));
  auto id = serviceId(client, p.why);
  if (!id) return p;
  const size_t n = o.replicas;
  p.create = waitTasks(client, *id, t0, o, [n](const TaskCount& c) { return c.running == n; }, p.why, &p.stages, n);
  if (!p.create) return fail("not all RUNNING within " + std::to_string(o.timeoutS) + " s: " + p.why);
  std::cerr << "shoal-bench: " << n << " RUNNING after " << round3(*p.create) << " s; removing\n";
  auto t1 = Clock::now();
  auto removed = shoalIn(l, m1, {"service", "rm", kService}, 60s);
  if (removed.code != 0) return fail("`shoal service rm` failed: " + said(removed));
  // Removed means the tasks gone from the store and, with runc, their containers from the nodes.
  p.remove = waitTasks(client, *id, t1, o, [&l](const TaskCount& c) { return c.total == 0 && containersOn(l) == 0; },
                       p.why);
  if (!p.remove) p.why = "tasks left " + std::to_string(o.timeoutS) + " s after the removal: " + p.why;
  return p;
}

nlohmann::ordered_json stagesJson(const Stages& seen) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  for (auto& [state, name] : stages())
    if (seen.count(name)) j[name] = round3(seen.at(name));
  return j;
}

std::string exeDir() {
  std::error_code ec;
  return std::filesystem::read_symlink("/proc/self/exe", ec).parent_path().string();
}

}  // namespace

std::string defaultMakeImagePath() {
  // <source>/<build>/tools/bench/shoal-bench -> <source>/tools/images/make-busybox-image
  std::string c = exeDir() + "/../../../tools/images/make-busybox-image";
  std::error_code ec;
  return ::access(c.c_str(), X_OK) == 0 ? std::filesystem::weakly_canonical(c, ec).string() : "";
}

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

  Workload w;
  if (o.executor == "runc") {
    auto ref = pushBusybox(o);
    if (!ref) return 1;
    w = Workload{*ref, kSleep};
    if (auto bad = warmUp(o, *l, client, w); !bad.empty()) return std::cerr << "shoal-bench: " << bad << "\n", 1;
  }
  double cpu0 = managerCpu(leaderNode);
  auto p = measure(o, *l, client, w);
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
                                {"stages_s", stagesJson(p.stages)},
                                {"leader", *leader},
                                {"leader_cpu_s", round3(leaderCpu)},
                                {"manager_rss_mb", managerRssMb(*l)},
                                {"agentd_rss_mb", agentdRssMb(*l)},
                                {"goal_s", 3}};
  std::cout << out.dump() << std::endl;
  return 0;
}

}  // namespace shoal::bench
