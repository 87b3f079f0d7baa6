#include "tools/bench/failover.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "tools/bench/cluster.h"
#include "tools/lab/host.h"
#include "tools/lab/lab.h"
#include "tools/lab/node_list.h"

namespace shoal::bench {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr int kInterruptedExit = 130;
constexpr auto kUpBound = 300s;        // shoal-lab up: namespaces, 30 daemons, init and joins
constexpr auto kWholeBound = 90s;      // the swarm whole again after a restart
constexpr auto kFailoverBound = 30s;   // a new leader after the kill
constexpr auto kPollBound = 2s;        // one `shoal node ls`

void emit(const nlohmann::ordered_json& j) { std::cout << j.dump() << std::endl; }
double round1(double x) { return std::round(x * 10) / 10; }
double msBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

std::string exeDir() {
  std::error_code ec;
  auto self = fs::read_symlink("/proc/self/exe", ec);
  return ec ? "" : self.parent_path().string();
}

// `shoal-lab SUBCOMMAND --name N ARGS...`, bounded, output captured.
lab::CommandResult labCommand(const LabFailoverOptions& o, const std::string& sub,
                              const std::vector<std::string>& args, std::chrono::milliseconds bound) {
  std::vector<std::string> argv = {o.shoalLab, sub, "--name", o.labName};
  argv.insert(argv.end(), args.begin(), args.end());
  return lab::runCommand(argv, bound);
}

std::string said(const lab::CommandResult& r) { return r.out + r.err; }

// `shoal node ls --format json` inside node n, as `shoal-lab exec n shoal node ls` runs it.
std::optional<std::vector<lab::SwarmNode>> nodeLs(const lab::Lab& l, const lab::Node& n,
                                                  std::chrono::milliseconds bound, std::string* why) {
  auto r = lab::runInNetns(n.netns, {l.binaries.at("shoal"), "node", "ls", "--format", "json"},
                           lab::labEnvironment({"SHOAL_RUN_DIR=" + l.runDir(n)}), bound);
  if (r.code != 0) {
    if (why) *why = n.name + ": `shoal node ls` failed (exit " + std::to_string(r.code) + "): " + r.out + r.err;
    return std::nullopt;
  }
  try {
    return lab::parseNodeList(r.out);
  } catch (const lab::LabError& e) {
    if (why) *why = n.name + ": " + e.what();
    return std::nullopt;
  }
}

std::vector<std::string> namesOf(const lab::Lab& l, bool managers) {
  std::vector<std::string> names;
  for (auto& n : l.nodes)
    if (n.manager() == managers) names.push_back(n.name);
  return names;
}

// Waits until some manager's node ls shows the whole swarm (every node Ready, the managers
// Leader or Reachable, one Leader); the leader's name, or nothing with why.
std::optional<std::string> waitWhole(const lab::Lab& l, std::chrono::milliseconds bound, std::string& why) {
  auto managers = namesOf(l, true), workers = namesOf(l, false);
  auto end = Clock::now() + bound;
  while (Clock::now() < end && !interrupted()) {
    for (auto& n : l.nodes) {
      if (!n.manager()) continue;
      auto nodes = nodeLs(l, n, 5s, &why);
      if (!nodes) continue;
      why = lab::notFormedBecause(*nodes, managers, workers);
      if (why.empty()) return lab::soleLeader(*nodes);
      why = n.name + " says: " + why;
    }
    std::this_thread::sleep_for(200ms);
  }
  return std::nullopt;
}

// VmHWM of pid in KiB, 0 if unknown.
uint64_t peakRssKb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.starts_with("VmHWM:")) return std::stoull(line.substr(6));
  return 0;
}

// The largest VmHWM of each kind of daemon among the running daemons of the lab.
std::map<std::string, uint64_t> peakRssByDaemon(const std::string& labName) {
  std::map<std::string, uint64_t> peak;
  std::optional<lab::Lab> l;
  try {
    l = lab::load(labName);
  } catch (const lab::LabError&) {
  }
  if (!l) return peak;
  for (auto& n : l->nodes)
    for (auto& [d, r] : n.daemons)
      if (r.pid > 0 && lab::sameProcess(r.pid, r.startTime)) peak[d] = std::max(peak[d], peakRssKb(r.pid));
  return peak;
}

// Every survivor asked by two staggered pollers, so that a `node ls` that waits for the
// election does not hide the moment the new Leader shows: the first answer naming another
// Leader ends the measurement.
struct Detection {
  std::mutex mu;
  std::optional<Clock::time_point> at;
  std::string newLeader, seenOn, last;
  std::atomic<bool> done{false};
  std::atomic<int> polls{0};
};

void pollSurvivor(const lab::Lab& l, const lab::Node& n, const std::string& old, Clock::time_point deadline,
          std::chrono::milliseconds every, std::chrono::milliseconds offset, Detection& d) {
  std::this_thread::sleep_for(offset);
  while (!d.done && Clock::now() < deadline && !interrupted()) {
    std::string why;
    auto nodes = nodeLs(l, n, kPollBound, &why);
    auto answered = Clock::now();
    ++d.polls;
    std::optional<std::string> leader = nodes ? lab::soleLeader(*nodes) : std::nullopt;
    {
      std::lock_guard lock(d.mu);
      d.last = nodes ? n.name + " says leader " + leader.value_or("none") : why;
      if (leader && *leader != old && (!d.at || answered < *d.at)) {
        d.at = answered;
        d.newLeader = *leader;
        d.seenOn = n.name;
        d.done = true;
      }
    }
    if (!d.done) std::this_thread::sleep_for(every);
  }
}

// Takes the lab down when the bench ends, also on a failure (unless --keep).
struct LabGuard {
  const LabFailoverOptions& o;
  bool armed = false;
  ~LabGuard() {
    if (!armed) return;
    if (o.keep) {
      std::cerr << "shoal-bench: the lab is kept: shoal-lab down --name " << o.labName << " removes it\n";
      return;
    }
    auto r = labCommand(o, "down", {}, 60s);
    if (r.code != 0) std::cerr << "shoal-bench: shoal-lab down failed: " << said(r);
  }
};

}  // namespace

std::string defaultShoalLabPath() {
  std::string here = exeDir();
  // <build>/tools/bench/shoal-bench -> <build>/tools/lab/shoal-lab
  for (auto& c : {here + "/../lab/shoal-lab", here + "/shoal-lab"})
    if (::access(c.c_str(), X_OK) == 0) return fs::weakly_canonical(c).string();
  for (const char* p : {"/usr/bin/shoal-lab", "/usr/sbin/shoal-lab", "/usr/local/bin/shoal-lab"})
    if (::access(p, X_OK) == 0) return p;
  return "shoal-lab";
}

std::string defaultBinDir() {
  std::string here = exeDir();
  if (here.empty() || ::access((here + "/../../build.ninja").c_str(), R_OK) != 0) return "";
  return fs::weakly_canonical(here + "/../..").string();
}

int runLabFailover(const LabFailoverOptions& o) {
  if (o.runs < 1) return std::cerr << "shoal-bench: --runs must be positive\n", 1;
  if (::geteuid() != 0) {
    std::cerr << "shoal-bench: failover makes a shoal-lab, which needs root (run it with sudo)\n";
    return 1;
  }
  try {
    lab::checkName(o.labName);
  } catch (const lab::LabError& e) {
    std::cerr << "shoal-bench: --lab-name: " << e.what() << "\n";
    return 1;
  }
  if (o.shoalLab.find('/') == std::string::npos || ::access(o.shoalLab.c_str(), X_OK) != 0) {
    std::cerr << "shoal-bench: cannot run shoal-lab at '" << o.shoalLab
              << "': build it (ninja -C build tools/lab/shoal-lab) or give its path with --shoal-lab\n";
    return 1;
  }

  std::cerr << "shoal-bench: making lab " << o.labName << " (3 managers, 2 workers)\n";
  std::vector<std::string> upArgs = {"--managers", "3", "--workers", "2"};
  if (!o.binDir.empty()) upArgs.insert(upArgs.end(), {"--bin-dir", o.binDir});
  LabGuard guard{o};
  auto t0 = Clock::now();
  auto up = labCommand(o, "up", upArgs, kUpBound);
  if (up.code != 0) {
    std::cerr << "shoal-bench: shoal-lab up failed:\n" << said(up);
    if (up.err.find("exists") == std::string::npos) guard.armed = true;  // not somebody else's lab
    return 1;
  }
  guard.armed = true;
  std::cerr << "shoal-bench: lab up in " << round1(msBetween(t0, Clock::now()) / 1000) << " s\n";
  std::optional<lab::Lab> l;
  try {
    l = lab::load(o.labName);
  } catch (const lab::LabError& e) {
    std::cerr << "shoal-bench: " << e.what() << "\n";
    return 1;
  }
  if (!l) return std::cerr << "shoal-bench: the lab has no state file after up\n", 1;

  std::vector<double> results;
  uint64_t peakRss = 0;
  int failures = 0;
  for (int run = 1; run <= o.runs && !interrupted(); ++run) {
    std::string why;
    auto leader = waitWhole(*l, kWholeBound, why);
    if (!leader) {
      std::cerr << "shoal-bench: run " << run << ": the swarm is not whole: " << why << "\n";
      ++failures;
      break;
    }
    const std::string old = *leader;
    std::cerr << "shoal-bench: run " << run << ": SIGKILL every daemon of " << old << ", the leader\n";

    auto killed = Clock::now();
    auto k = labCommand(o, "kill", {old}, 30s);
    double killMs = msBetween(killed, Clock::now());
    if (k.code != 0) {
      std::cerr << "shoal-bench: shoal-lab kill " << old << " failed: " << said(k);
      ++failures;
      break;
    }
    Detection d;
    auto deadline = killed + kFailoverBound;
    std::vector<std::thread> pollers;
    const auto every = std::chrono::milliseconds(o.pollMs);
    for (auto& n : l->nodes) {
      if (!n.manager() || n.name == old) continue;
      pollers.emplace_back(pollSurvivor, std::cref(*l), std::cref(n), old, deadline, every, 0ms, std::ref(d));
      pollers.emplace_back(pollSurvivor, std::cref(*l), std::cref(n), old, deadline, every, every / 2, std::ref(d));
    }
    for (auto& t : pollers) t.join();

    auto rss = peakRssByDaemon(o.labName);
    uint64_t runPeak = 0;
    nlohmann::ordered_json byDaemon = nlohmann::ordered_json::object();
    for (auto& [daemon, kb] : rss) {
      byDaemon[daemon] = kb;
      runPeak = std::max(runPeak, kb);
    }
    peakRss = std::max(peakRss, runPeak);

    std::optional<double> ms;
    if (d.at) ms = msBetween(killed, *d.at);
    if (!ms) {
      std::cerr << "shoal-bench: run " << run << ": no survivor showed a new Leader within "
                << kFailoverBound.count() << " s; last: " << d.last << "\n";
      ++failures;
    }

    // The killed node back, and the swarm whole, before the next run.
    auto restarted = Clock::now();
    auto s = labCommand(o, "start", {old}, 120s);
    std::optional<double> recoverMs;
    if (s.code != 0) {
      std::cerr << "shoal-bench: shoal-lab start " << old << " failed: " << said(s);
    } else if (waitWhole(*l, kWholeBound, why)) {
      recoverMs = msBetween(restarted, Clock::now());
    } else {
      std::cerr << "shoal-bench: run " << run << ": " << old << " did not rejoin within "
                << std::chrono::duration_cast<std::chrono::seconds>(kWholeBound).count() << " s: " << why << "\n";
    }
    if (ms) {
      results.push_back(*ms);
      emit({{"bench", "lab-failover"},
            {"run", run},
            {"old_leader", old},
            {"new_leader", d.newLeader},
            {"seen_on", d.seenOn},
            {"failover_ms", round1(*ms)},
            {"kill_ms", round1(killMs)},
            {"polls", d.polls.load()},
            {"poll_ms", o.pollMs},
            {"rejoined_ms", recoverMs ? nlohmann::ordered_json(round1(*recoverMs)) : nlohmann::ordered_json()},
            {"peak_rss_kb", runPeak},
            {"peak_rss_kb_by_daemon", byDaemon}});
    }
    if (!recoverMs) {
      ++failures;
      break;
    }
  }

  std::vector<double> sorted = results;
  std::sort(sorted.begin(), sorted.end());
  double median = 0;
  if (!sorted.empty()) {
    size_t n = sorted.size();
    median = n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  }
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (double r : results) list.push_back(round1(r));
  emit({{"bench", "lab-failover"},
        {"runs", static_cast<int>(results.size())},
        {"failed_runs", failures},
        {"failover_ms", list},
        {"failover_ms_median", round1(median)},
        {"failover_ms_max", round1(sorted.empty() ? 0 : sorted.back())},
        {"goal_ms", 2000},
        {"peak_rss_kb", peakRss}});
  if (interrupted()) return kInterruptedExit;
  return failures == 0 && static_cast<int>(results.size()) == o.runs ? 0 : 1;
}

}  // namespace shoal::bench
