// Real containers on a shoal-lab (issue 10's "In the lab", docs/containers.md): 3 managers and
// 2 workers whose agentd run the runc executor, with the lab's registry (`up --registry`)
// holding a busybox image built on the spot (tools/images/make-busybox-image) and pushed with
// `shoal-lab push`. A 6-replica service printing lines runs on all 5 nodes, `service logs`
// shows lines of all 6 tasks, a container removed by hand is replaced, `service rm` leaves no
// container, bundle, mount or cgroup on any node, and `down` removes live containers too, also
// after agentd was killed and the lab's state file lost. Needs root, runc, docker-registry
// and skopeo (tools/deps installs them).
#include <doctest/doctest.h>

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/cluster/lab_support.h"

namespace {

using namespace shoal::labtest;
using nlohmann::json;
namespace fs = std::filesystem;

// Prints a line every second, naming the container (its hostname is the task's container id).
const std::vector<std::string> kLoop = {"sh", "-c", "while true; do echo \"hello from $(hostname)\"; sleep 1; done"};

std::string dump(const Rows& rows) {
  std::string s;
  for (auto& r : rows) s += r.dump() + "\n";
  return s;
}

std::string sourceDir() {
  const char* s = std::getenv("SHOAL_SOURCE_DIR");
  REQUIRE_MESSAGE(s, "SHOAL_SOURCE_DIR must name the source tree (meson sets it)");
  return s;
}

// A temp dir removed when the test ends.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/shoal-containers.XXXXXX";
    REQUIRE(::mkdtemp(tmpl));
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// The task ids in `service logs` output: docker's prefix `<name>.<slot>.<task id>@<node>    | line`,
// counted only on lines the service printed.
std::set<std::string> taskIdsInLogs(const std::string& out) {
  std::set<std::string> ids;
  for (auto& l : lines(out)) {
    auto bar = l.find(" | "), at = l.find('@');
    if (bar == std::string::npos || at == std::string::npos || at > bar) continue;
    if (l.find("hello from", bar) == std::string::npos) continue;
    auto dot = l.rfind('.', at);
    if (dot != std::string::npos) ids.insert(l.substr(dot + 1, at - dot - 1));
  }
  return ids;
}

// The cgroup dirs of container id on this machine (any controller; v2 too).
std::vector<std::string> cgroupsOf(const std::string& id) {
  std::vector<std::string> found;
  std::error_code ec;
  for (auto& top : fs::directory_iterator("/sys/fs/cgroup", ec))
    if (fs::exists(top.path() / "shoal" / id)) found.push_back((top.path() / "shoal" / id).string());
  if (fs::exists("/sys/fs/cgroup/shoal/" + id)) found.push_back("/sys/fs/cgroup/shoal/" + id);
  return found;
}

// A 3+2 lab of its own with the runc executor and a registry holding busybox; down (and
// checked gone) at the end, failed or not.
class ContainerLab {
 public:
  explicit ContainerLab(const std::string& tag) : name_(uniqueName(tag)), linksBefore_(rootLinks()), guard_{name_} {
    auto up = lab({"up", "--name", name_, "--managers", "3", "--workers", "2", "--bin-dir", buildDir(), "--heartbeat",
                   "1s", "--executor", "runc", "--registry"},
                  300s);
    REQUIRE_MESSAGE(up.status.code == 0, said(up));
    auto made = shoal::testing::run({sourceDir() + "/tools/images/make-busybox-image", "--out", image_.path + "/oci"},
                                    {}, 120s);
    REQUIRE_MESSAGE(made.status.code == 0, said(made));
    auto pushed = lab({"push", "--name", name_, "oci:" + image_.path + "/oci:latest", "busybox:latest"}, 300s);
    REQUIRE_MESSAGE(pushed.status.code == 0, said(pushed));
    ref = pushed.out.substr(0, pushed.out.find('\n'));
    REQUIRE_MESSAGE(ref.ends_with("/busybox:latest"), said(pushed));
  }
  const std::string& name() const { return name_; }

  RunResult shoal(const std::string& node, std::vector<std::string> args, std::chrono::milliseconds bound = 30s) {
    args.insert(args.begin(), {"exec", "--name", name_, node, "shoal"});
    return lab(args, bound);
  }
  std::optional<Rows> ps(const std::string& service, std::string* why) {
    auto r = shoal("m1", {"service", "ps", "--no-trunc", "--format", "json", service}, 20s);
    try {
      if (r.status.code == 0) return jsonLines(r.out);
      *why = said(r);
    } catch (const std::exception& e) {
      *why = e.what();
    }
    return std::nullopt;
  }
  template <class F>
  Rows waitPs(const std::string& service, F done, std::chrono::milliseconds limit, const std::string& what) {
    Rows last;
    std::string why = "service ps was not asked";
    bool ok = waitFor([&] {
      auto rows = ps(service, &why);
      if (rows) last = *rows;
      return rows && done(last);
    }, limit, 500ms);
    CHECK_MESSAGE(ok, what << " within " << limit.count() / 1000 << " s; the last service ps:\n"
                           << dump(last) << (last.empty() ? why : ""));
    return last;
  }
  // What is left of containers on every node: runc's containers, bundles, mounts under the
  // bundles, cgroups of the given ids. Empty when nothing is.
  std::string containersLeft(const std::set<std::string>& ids) {
    std::string left;
    auto l = ls(name_);
    for (auto& n : l["nodes"]) {
      std::string dir = n["dir"], node = n["name"];
      auto runc = shoal::testing::run({"/usr/sbin/runc", "--root", dir + "/run/runc", "list", "-q"});
      if (!runc.out.empty()) left += node + ": runc containers " + runc.out;
      std::error_code ec;
      for (auto& e : fs::directory_iterator(dir + "/state/agentd/containers", ec))
        left += node + ": bundle " + e.path().string() + "\n";
    }
    std::ifstream in("/proc/self/mountinfo");
    for (std::string m; std::getline(in, m);)
      if (m.find("/var/lib/shoal-lab/" + name_ + "/") != std::string::npos &&
          m.find("/state/agentd/containers/") != std::string::npos)
        left += "mount: " + m + "\n";
    for (auto& id : ids)
      for (auto& c : cgroupsOf(id)) left += "cgroup: " + c + "\n";
    return left;
  }
  // The pids of the containers' inits, from each node's runc root.
  std::vector<pid_t> containerPids() {
    std::vector<pid_t> pids;
    auto l = ls(name_);  // named: a loop over a temporary's member would read a dead object
    for (auto& n : l["nodes"]) {
      std::string dir = n["dir"];
      auto r = shoal::testing::run({"/usr/sbin/runc", "--root", dir + "/run/runc", "list", "--format", "json"});
      auto j = json::parse(r.out, nullptr, false);
      if (!j.is_array()) continue;
      for (auto& c : j)
        if (c.value("pid", 0) > 0) pids.push_back(c["pid"].get<int>());
    }
    return pids;
  }
  void down(const std::vector<pid_t>& morePids, const std::set<std::string>& ids) {
    std::vector<pid_t> pids;
    if (fs::exists("/var/lib/shoal-lab/" + name_ + "/lab.json")) pids = pidsOf(ls(name_));
    pids.insert(pids.end(), morePids.begin(), morePids.end());
    auto d = lab({"down", "--name", name_}, 180s);
    CHECK_MESSAGE(d.status.code == 0, said(d));
    checkGone(name_, pids, linksBefore_);
    for (auto& id : ids) CHECK_MESSAGE(cgroupsOf(id).empty(), "the cgroups of " << id << " are left");
  }

  std::string ref;  // the image in the lab's registry

 private:
  std::string name_;
  std::set<std::string> linksBefore_;
  LabGuard guard_;
  TempDir image_;
};

// Whether the ids in the logs are the tasks' (docker's logs may print 12-character ids), one each.
bool sameTasks(const std::set<std::string>& inLogs, const std::set<std::string>& tasks) {
  if (inLogs.size() != tasks.size()) return false;
  return std::all_of(inLogs.begin(), inLogs.end(), [&](const std::string& shown) {
    return shown.size() >= 12 &&
           std::any_of(tasks.begin(), tasks.end(), [&](const std::string& id) { return id.starts_with(shown); });
  });
}

std::set<std::string> idsOf(const Rows& rows) {
  std::set<std::string> ids;
  for (auto& r : rows) ids.insert(field(r, "ID"));
  return ids;
}

void createDemo(ContainerLab& l, int replicas) {
  std::vector<std::string> args = {"service", "create", "-d", "--name", "demo", "--replicas", std::to_string(replicas),
                                   l.ref};
  args.insert(args.end(), kLoop.begin(), kLoop.end());
  auto r = l.shoal("m1", args, 60s);
  REQUIRE_MESSAGE(r.status.code == 0, said(r));
}

}  // namespace

TEST_CASE("6 busybox replicas on all 5 nodes: logs from all 6, one removed by hand is replaced, rm leaves nothing") {
  requireRoot();
  ContainerLab l("ct");
  createDemo(l, 6);
  auto rows = l.waitPs("demo", [](const Rows& r) { return running(r).size() == 6; }, 240s, "6 tasks of demo RUNNING");
  auto run = running(rows);
  REQUIRE(run.size() == 6);
  std::set<std::string> nodes;
  for (auto& r : run) nodes.insert(field(r, "Node"));
  CHECK_MESSAGE(nodes.size() == 5, "the 6 tasks run on " << nodes.size() << " nodes:\n" << dump(run));
  std::set<std::string> seen = idsOf(rows);

  // service logs without -f: every node's lines, prefixed with task and node as docker's.
  std::set<std::string> inLogs;
  std::string last;
  bool all = waitFor([&] {
    auto r = l.shoal("m1", {"service", "logs", "--no-trunc", "demo"}, 30s);
    last = said(r);
    inLogs = taskIdsInLogs(r.out);
    return r.status.code == 0 && sameTasks(inLogs, idsOf(run));
  }, 90s, 1s);
  CHECK_MESSAGE(all, "service logs shows lines of " << inLogs.size() << " of the 6 tasks:\n" << last);

  // One container removed by hand on its node: the task fails, and the slot runs a new one.
  const json victim = run.front();
  const std::string node = field(victim, "Node"), id = field(victim, "ID");
  auto rm = l.shoal(node, {"container", "rm", "-f", id});  // a task's container id is the task's
  REQUIRE_MESSAGE(rm.status.code == 0, said(rm));
  auto after = l.waitPs("demo", [&](const Rows& r) {
    bool failed = std::any_of(r.begin(), r.end(), [&](const json& x) {
      return field(x, "ID") == id && lower(field(x, "CurrentState")).starts_with("failed");
    });
    auto now = running(r);
    return failed && now.size() == 6 && !idsOf(now).count(id);
  }, 120s, "the removed container's task FAILED and 6 RUNNING again");
  for (auto& x : after)
    if (field(x, "ID") == id) MESSAGE("the removed task: " << x.dump());
  for (auto& i : idsOf(after)) seen.insert(i);

  // service rm: no container, bundle, mount or cgroup left on any node.
  auto srm = l.shoal("m1", {"service", "rm", "demo"});
  REQUIRE_MESSAGE(srm.status.code == 0, said(srm));
  std::string left;
  bool clean = waitFor([&] { return (left = l.containersLeft(seen)).empty(); }, 120s, 1s);
  CHECK_MESSAGE(clean, "120 s after service rm:\n" << left);
  l.down({}, seen);
}

TEST_CASE("down removes running containers, also after agentd was killed and the state file lost") {
  requireRoot();
  ContainerLab l("cd");
  createDemo(l, 5);
  auto rows = l.waitPs("demo", [](const Rows& r) { return running(r).size() == 5; }, 240s, "5 tasks of demo RUNNING");
  REQUIRE(running(rows).size() == 5);
  auto pids = l.containerPids();
  CHECK_MESSAGE(pids.size() == 5, "runc lists " << pids.size() << " running containers on the nodes");
  for (pid_t p : pids) CHECK(alive(p));
  // A crash: w1's agentd dies (its shims and containers live on), then shoal-lab's state.
  auto k = lab({"kill", "--name", l.name(), "w1", "agentd"});
  CHECK_MESSAGE(k.status.code == 0, said(k));
  auto daemons = pidsOf(ls(l.name()));
  pids.insert(pids.end(), daemons.begin(), daemons.end());
  fs::remove("/var/lib/shoal-lab/" + l.name() + "/lab.json");
  l.down(pids, idsOf(rows));
}
