#pragma once
// What the lab's tests (tests/cluster/lab_test.cpp, swarm_test.cpp) share: shoal-lab run as a
// user runs it, a guard that takes a lab down when a test ends however it ends, and the
// checks that nothing of a lab is left (namespace, link, mount, process, dir). Needs root.

#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/process.h"

namespace shoal::labtest {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using shoal::testing::RunResult;

inline std::string buildDir() {
  const char* b = std::getenv("SHOAL_BUILD_DIR");
  REQUIRE_MESSAGE(b, "SHOAL_BUILD_DIR must name the build dir (meson sets it)");
  return b;
}

inline std::string labBinary() { return buildDir() + "/tools/lab/shoal-lab"; }

inline RunResult lab(std::vector<std::string> args, std::chrono::milliseconds timeout = 120s) {
  args.insert(args.begin(), labBinary());
  return shoal::testing::run(args, {"SHOAL_LAB="}, timeout);
}

inline std::string said(const RunResult& r) {
  return "exit " + std::to_string(r.status.code) + (r.timedOut ? " (timed out)" : "") + "\nstdout:\n" + r.out +
         "\nstderr:\n" + r.err;
}

// A name no other run of this test uses, so that a crashed earlier run is no obstacle.
inline std::string uniqueName(const std::string& tag) { return "t" + std::to_string(::getpid()) + tag; }

inline bool alive(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), {});
  auto close = stat.rfind(')');
  return close != std::string::npos && stat.size() > close + 2 && stat[close + 2] != 'Z';
}

inline std::set<std::string> lines(const std::string& text) {
  std::set<std::string> out;
  std::stringstream in(text);
  std::string l;
  while (std::getline(in, l)) out.insert(l);
  return out;
}

inline std::string ipOut(std::vector<std::string> args) {
  args.insert(args.begin(), "/usr/sbin/ip");
  auto r = shoal::testing::run(args);
  REQUIRE_MESSAGE(r.status.code == 0, said(r));
  return r.out;
}

// The root namespace's link names (their indexes and states may change under other tests).
inline std::set<std::string> rootLinks() {
  std::set<std::string> names;
  for (auto& l : lines(ipOut({"-o", "link", "show"}))) {
    auto a = l.find(": "), b = l.find(':', a + 2);
    if (a != std::string::npos && b != std::string::npos) names.insert(l.substr(a + 2, b - a - 2));
  }
  return names;
}

inline std::vector<std::string> netnsOf(const std::string& name) {
  std::vector<std::string> found;
  for (auto& l : lines(ipOut({"netns", "list"})))
    if (l.starts_with("shoal-" + name + "-")) found.push_back(l.substr(0, l.find(' ')));
  return found;
}

// The mount points that belong to lab name: its dir, its namespaces' files.
inline std::vector<std::string> mountsOf(const std::string& name) {
  std::vector<std::string> found;
  std::ifstream in("/proc/self/mountinfo");
  for (std::string l; std::getline(in, l);)
    if (l.find("/var/lib/shoal-lab/" + name + "/") != std::string::npos ||
        l.find("/run/netns/shoal-" + name + "-") != std::string::npos)
      found.push_back(l);
  return found;
}

// Runs `down` when the test ends, pass or fail, so that a failed test leaves no lab behind.
struct LabGuard {
  std::string name;
  ~LabGuard() { lab({"down", "--name", name}); }
};

inline nlohmann::json ls(const std::string& name) {
  auto r = lab({"ls", "--name", name, "--format", "json"});
  REQUIRE_MESSAGE(r.status.code == 0, said(r));
  auto all = nlohmann::json::parse(r.out);
  REQUIRE(all.size() == 1);
  return all[0];
}

inline nlohmann::json nodeOf(const nlohmann::json& l, const std::string& node) {
  for (auto& n : l["nodes"])
    if (n["name"] == node) return n;
  FAIL("no node " << node << " in " << l.dump());
  return {};
}

inline std::vector<pid_t> pidsOf(const nlohmann::json& l) {
  std::vector<pid_t> pids;
  for (auto& n : l["nodes"])
    for (auto& [d, r] : n["daemons"].items())
      if (r["pid"].get<int>() > 0) pids.push_back(r["pid"].get<int>());
  return pids;
}

template <class F>
bool waitFor(F done, std::chrono::milliseconds limit, std::chrono::milliseconds every = 200ms) {
  auto end = Clock::now() + limit;
  while (Clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(every);
  }
  return done();
}

// Nothing of lab name is left: no namespace, no link in the root namespace that was not there
// before, no mount, no dir, none of its processes.
inline void checkGone(const std::string& name, const std::vector<pid_t>& pids,
                      const std::set<std::string>& linksBefore) {
  // Every message is made before its check: doctest evaluates a message lazily, inside its
  // reporter's lock, where a REQUIRE of ours (in ipOut) would deadlock.
  const auto netns = netnsOf(name);
  const std::string allNetns = ipOut({"netns", "list"});
  CHECK_MESSAGE(netns.empty(), allNetns);
  const auto links = rootLinks();
  const std::string allLinks = ipOut({"-o", "link", "show"});
  CHECK_MESSAGE(links == linksBefore, allLinks);
  std::string mounts;
  for (auto& m : mountsOf(name)) mounts += m + "\n";
  CHECK_MESSAGE(mounts.empty(), mounts);
  CHECK_FALSE(std::filesystem::exists("/var/lib/shoal-lab/" + name));
  for (pid_t p : pids) CHECK_MESSAGE(!alive(p), "pid " << p << " of lab " << name << " still runs");
}

// A CLI's `--format json` output: one JSON object per line (docker's), blank lines skipped.
// Throws on a line that is not JSON, naming it.
inline std::vector<nlohmann::json> jsonLines(const std::string& text) {
  std::vector<nlohmann::json> rows;
  std::stringstream in(text);
  for (std::string l; std::getline(in, l);) {
    if (l.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto j = nlohmann::json::parse(l, nullptr, false);
    if (j.is_discarded()) throw std::runtime_error("not a JSON line: " + l.substr(0, 200));
    rows.push_back(std::move(j));
  }
  return rows;
}

inline void requireRoot() {
  REQUIRE_MESSAGE(::geteuid() == 0, "this test needs root: it makes network namespaces");
}

// Rows of `shoal service ps --format json`, as the lab tests read them.
using Rows = std::vector<nlohmann::json>;

inline std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

inline std::string field(const nlohmann::json& row, const char* name) {
  auto it = row.find(name);
  return it != row.end() && it->is_string() ? it->get<std::string>() : "";
}

// A live task that runs: desired Running and current "Running 3 seconds ago".
inline bool runs(const nlohmann::json& row) {
  return lower(field(row, "DesiredState")) == "running" &&
         lower(field(row, "CurrentState")).starts_with("running");
}

inline Rows running(const Rows& rows) {
  Rows out;
  std::copy_if(rows.begin(), rows.end(), std::back_inserter(out), runs);
  return out;
}

}  // namespace shoal::labtest
