// The runc executor end to end (docs/containers.md): one node (raftd, dispatcherd,
// schedulerd, overlayd, agentd --executor runc) and a busybox image in a docker-registry on
// loopback, driven through the CLI as a user would. Real containers: replicas run, exit codes
// reach `service ps`, limits are in the container's cgroup, a secret is a file with its mode, a
// read-only rootfs refuses writes, an unhealthy task is replaced, `container rm -f` is
// reconciled, agentd killed with 10 live containers adopts them again, bad images are
// REJECTED with the reason, and `service rm` leaves nothing behind.
//
// Needs root, runc, docker-registry and skopeo (tools/deps); CI has them.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/daemons.h"
#include "tests/support/node_daemons.h"
#include "tests/support/process.h"
#include "tests/support/registry.h"
#include "tests/support/tempdir.h"

namespace shoal {
namespace {

using namespace std::chrono_literals;
using testing::RunResult;
using testing::waitFor;
namespace fs = std::filesystem;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::string show(const RunResult& r) {
  return "exit " + std::to_string(r.status.code) + (r.timedOut ? " (timed out)" : "") +
         "\nstdout:\n" + r.out + "stderr:\n" + r.err;
}

std::vector<std::string> linesOf(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(line);
  return out;
}

std::string firstLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// One node with every daemon a task needs, its runc root in the test's dir.
struct RuncNode : testing::NodeDaemons {
  std::string runcRoot, registry;

  RuncNode(const fs::path& root, std::string registryHost)
      : NodeDaemons(root, "n1"), runcRoot((root / "runc").string()),
        registry(std::move(registryHost)) {}
  ~RuncNode() { cleanup(); }

  void startAll() {
    start("raftd");
    start("dispatcherd");
    start("overlayd");
    startAgent();
    start("schedulerd");
    auto init = shoal({"swarm", "init", "--advertise-addr",
                       "127.0.0.1:" + std::to_string(testing::freePortPair()),
                       "--dispatcher-heartbeat", "1s"});
    REQUIRE_MESSAGE(init.status.code == 0, show(init) << logs());
  }
  void startAgent() {
    start("agentd", {"--executor", "runc", "--runc-root", runcRoot, "--insecure-registry",
                     registry});
  }
  std::string agentState() const { return (root / name / "agentd").string(); }

  RunResult shoal(std::vector<std::string> args, std::chrono::milliseconds timeout = 60s) const {
    std::vector<std::string> argv = {testing::buildDir() + "/tools/shoal/shoal", "--run-dir", run};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::run(argv, {}, timeout);
  }
  RunResult runc(std::vector<std::string> args) const {
    std::vector<std::string> argv = {"/usr/sbin/runc", "--root", runcRoot};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::run(argv, {}, 30s);
  }
  // `service ps` rows (docker's JSON keys), the full ids.
  std::vector<nlohmann::json> ps(const std::string& service) const {
    auto r = shoal({"service", "ps", service, "--no-trunc", "--format", "json"});
    std::vector<nlohmann::json> rows;
    for (const auto& line : linesOf(r.out)) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_object()) rows.push_back(j);
    }
    return rows;
  }
  size_t countState(const std::string& service, const std::string& state) const {
    auto rows = ps(service);
    return std::count_if(rows.begin(), rows.end(), [&](auto& r) {
      return r.value("CurrentState", "").rfind(state + " ", 0) == 0;
    });
  }
  std::string psText(const std::string& service) const {
    return shoal({"service", "ps", service, "--no-trunc"}).out;
  }
  // container ls rows for a service's containers (name prefix <service>.).
  std::vector<nlohmann::json> containers(const std::string& service, bool all = false) const {
    std::vector<std::string> args = {"container", "ls", "--format", "json"};
    if (all) args.push_back("-a");
    std::vector<nlohmann::json> out;
    for (const auto& line : linesOf(shoal(args).out)) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_object() && j.value("Names", "").rfind(service + ".", 0) == 0) out.push_back(j);
    }
    return out;
  }
  void create(std::vector<std::string> args) const {
    std::vector<std::string> argv = {"service", "create", "-d"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = shoal(argv);
    REQUIRE_MESSAGE(r.status.code == 0, show(r) << logs());
  }
  void remove(const std::string& service) const {
    auto r = shoal({"service", "rm", service});
    CHECK_MESSAGE(r.status.code == 0, show(r));
  }
  std::string report(const std::string& service) const {
    return "\nservice ps:\n" + psText(service) + "\ncontainers:\n" +
           shoal({"container", "ls", "-a"}).out + logs(8000);
  }
  // Whatever a failed test left: containers killed and deleted, mounts under the state dir.
  void cleanup() {
    for (auto& [daemon, proc] : procs) proc->signal(SIGTERM);
    for (auto& [daemon, proc] : procs) proc->wait(10s);
    procs.clear();
    for (const auto& line : linesOf(runc({"list", "-q"}).out)) runc({"delete", "--force", line});
    for (const auto& m : mountsUnder(agentState())) ::umount2(m.c_str(), MNT_DETACH);
    for (const auto& m : mountsUnder(run)) ::umount2(m.c_str(), MNT_DETACH);
  }
  static std::vector<std::string> mountsUnder(const std::string& dir) {
    std::vector<std::string> out;
    std::ifstream in("/proc/self/mountinfo");
    for (std::string line; std::getline(in, line);) {
      std::istringstream fields(line);
      std::string id, parent, dev, rootField, point;
      fields >> id >> parent >> dev >> rootField >> point;
      if (point.rfind(dir + "/", 0) == 0) out.push_back(point);
    }
    std::sort(out.rbegin(), out.rend());  // deepest first
    return out;
  }
};

// Leftover cgroup dirs of a task, in every v1 hierarchy and the unified one.
std::vector<std::string> cgroupDirsOf(const std::string& taskId) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& h : fs::directory_iterator("/sys/fs/cgroup", ec)) {
    auto dir = h.path() / "shoal" / taskId;
    if (fs::exists(dir, ec)) out.push_back(dir.string());
  }
  return out;
}

TEST_CASE("runc executor: replicas, exit codes, limits, secrets, read-only, health, rm -f, "
          "nothing left") {
  testing::TempDir tmp;
  testing::TestRegistry registry;
  std::string image = registry.pushBusybox("busybox");
  RuncNode n(tmp.path(), registry.host());
  n.startAll();

  INFO("3 replicas of sleep 1000 run, and container ls shows them");
  n.create({"--name", "top", "--replicas", "3", image, "sleep", "1000"});
  REQUIRE_MESSAGE(waitFor([&] { return n.countState("top", "Running") == 3; }, 120s),
                  n.report("top"));
  auto listed = n.containers("top");
  CHECK_MESSAGE(listed.size() == 3, n.report("top"));
  for (const auto& c : listed) {
    CHECK(c.value("State", "") == "running");
    CHECK(c.value("Pid", 0) > 0);
  }
  CHECK(linesOf(n.runc({"list", "-q"}).out).size() == 3);

  INFO("a job that exits 0 is COMPLETE; exit 3 without restarts is FAILED with its code");
  n.create({"--name", "ok", "--mode", "replicated-job", image, "sh", "-c", "exit 0"});
  n.create({"--name", "three", "--restart-condition", "none", image, "sh", "-c", "exit 3"});
  CHECK_MESSAGE(waitFor([&] { return n.countState("ok", "Complete") == 1; }, 60s), n.report("ok"));
  REQUIRE_MESSAGE(waitFor([&] { return n.countState("three", "Failed") == 1; }, 60s),
                  n.report("three"));
  CHECK_MESSAGE(contains(n.psText("three"), "task: non-zero exit (3)"), n.psText("three"));

  INFO("limits: memory, CPU quota and pids in the container's cgroup");
  n.create({"--name", "limited", "--limit-memory", "64M", "--limit-cpu", "0.5", "--limit-pids",
            "40", image, "sleep", "1000"});
  REQUIRE_MESSAGE(waitFor([&] { return n.countState("limited", "Running") == 1; }, 60s),
                  n.report("limited"));
  std::string limitedId = n.ps("limited").front().value("ID", "");
  CHECK(firstLine("/sys/fs/cgroup/memory/shoal/" + limitedId + "/memory.limit_in_bytes") ==
        std::to_string(64 << 20));
  CHECK(firstLine("/sys/fs/cgroup/cpu/shoal/" + limitedId + "/cpu.cfs_quota_us") == "50000");
  CHECK(firstLine("/sys/fs/cgroup/pids/shoal/" + limitedId + "/pids.max") == "40");

  INFO("a secret is a file with its content and mode 0400");
  std::string secretFile = tmp / "secret.txt";
  std::ofstream(secretFile) << "s3cr3t";
  auto made = n.shoal({"secret", "create", "token", secretFile});
  REQUIRE_MESSAGE(made.status.code == 0, show(made));
  n.create({"--name", "secretive", "--secret", "source=token,mode=0400", image, "sleep", "1000"});
  REQUIRE_MESSAGE(waitFor([&] { return n.countState("secretive", "Running") == 1; }, 60s),
                  n.report("secretive"));
  std::string secretiveId = n.ps("secretive").front().value("ID", "");
  auto cat = n.runc({"exec", secretiveId, "cat", "/run/secrets/token"});
  CHECK_MESSAGE(cat.out == "s3cr3t", show(cat));
  auto mode = n.runc({"exec", secretiveId, "stat", "-c", "%a", "/run/secrets/token"});
  CHECK_MESSAGE(mode.out == "400\n", show(mode));

  INFO("a read-only rootfs refuses a write");
  n.create({"--name", "ro", "--read-only", "--restart-condition", "none", image, "sh", "-c",
            "touch /written || exit 7"});
  REQUIRE_MESSAGE(waitFor([&] { return n.countState("ro", "Failed") == 1; }, 60s), n.report("ro"));
  CHECK_MESSAGE(contains(n.psText("ro"), "task: non-zero exit (7)"), n.psText("ro"));

  INFO("a task whose health check never passes fails as unhealthy and is replaced");
  n.create({"--name", "sick", "--health-cmd", "test -f /tmp/ok", "--health-interval", "200ms",
            "--health-retries", "2", "--health-timeout", "2s", "--restart-delay", "100ms", image,
            "sleep", "1000"});
  REQUIRE_MESSAGE(waitFor([&] {
    return n.countState("sick", "Failed") >= 1 && n.ps("sick").size() >= 2;
  }, 60s), n.report("sick"));
  CHECK_MESSAGE(contains(n.psText("sick"), "unhealthy container"), n.psText("sick"));

  INFO("container rm -f: the task fails and the service replaces it");
  std::string victim = n.containers("top").front().value("Names", "");
  auto rm = n.shoal({"container", "rm", "-f", victim});
  REQUIRE_MESSAGE(rm.status.code == 0, show(rm));
  CHECK_MESSAGE(waitFor([&] {
    return contains(n.psText("top"), "container removed by hand") &&
           n.countState("top", "Running") == 3;
  }, 60s), n.report("top"));
  auto refused = n.shoal({"container", "rm", n.containers("top").front().value("Names", "")});
  CHECK_MESSAGE(refused.status.code == 1, show(refused));
  CHECK(contains(refused.err, "You cannot remove a running container"));

  INFO("service rm: nothing is left (runc, mounts, cgroups, bundles)");
  std::vector<std::string> ids;
  for (const char* s : {"top", "ok", "three", "limited", "secretive", "ro", "sick"})
    for (const auto& row : n.ps(s)) ids.push_back(row.value("ID", ""));
  for (const char* s : {"top", "ok", "three", "limited", "secretive", "ro", "sick"}) n.remove(s);
  CHECK_MESSAGE(waitFor([&] {
    return linesOf(n.runc({"list", "-q"}).out).empty() &&
           RuncNode::mountsUnder(n.agentState()).empty() &&
           fs::is_empty(n.agentState() + "/containers");
  }, 60s), "runc list:\n" << n.runc({"list"}).out << n.logs());
  for (const auto& id : ids) CHECK_MESSAGE(cgroupDirsOf(id).empty(), id);
}

TEST_CASE("runc executor: agentd killed with 10 live containers adopts them again; one killed "
          "meanwhile is FAILED with its exit code") {
  testing::TempDir tmp;
  testing::TestRegistry registry;
  std::string image = registry.pushBusybox("busybox");
  RuncNode n(tmp.path(), registry.host());
  n.startAll();

  // The image is pulled once first, so the figure is of running containers, not of a pull.
  n.create({"--name", "warm", "--mode", "replicated-job", image, "true"});
  REQUIRE_MESSAGE(waitFor([&] { return n.countState("warm", "Complete") == 1; }, 120s),
                  n.report("warm"));
  auto began = std::chrono::steady_clock::now();
  n.create({"--name", "ten", "--replicas", "10", image, "sleep", "1000"});
  REQUIRE_MESSAGE(waitFor([&] { return n.countState("ten", "Running") == 10; }, 120s),
                  n.report("ten"));
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
  MESSAGE("service create of 10 replicas to 10 RUNNING on one node: " << seconds << " s");

  std::map<std::string, int> pids;  // task id (runc's container id) → init pid
  for (const auto& c : n.containers("ten")) pids[c.value("FullID", "")] = c.value("Pid", 0);
  REQUIRE(pids.size() == 10);

  INFO("kill -9 agentd; one container is killed while it is down");
  n.procs.at("agentd")->signal(SIGKILL);
  n.procs.at("agentd")->wait(10s);
  n.procs.erase("agentd");
  std::string victimId = pids.begin()->first;
  auto killed = n.runc({"kill", victimId, "KILL"});
  REQUIRE_MESSAGE(killed.status.code == 0, show(killed));
  for (const auto& [name, pid] : pids)
    if (name != victimId) CHECK_MESSAGE(::kill(pid, 0) == 0, name << " died with agentd");

  n.startAgent();
  REQUIRE_MESSAGE(waitFor([&] {
    return n.countState("ten", "Failed") == 1 && n.countState("ten", "Running") == 10;
  }, 60s), n.report("ten"));
  CHECK_MESSAGE(contains(n.psText("ten"), "task: non-zero exit (137)"), n.psText("ten"));
  // The nine survivors are the same processes, adopted.
  for (const auto& c : n.containers("ten")) {
    auto it = pids.find(c.value("FullID", ""));
    if (it != pids.end()) CHECK(c.value("Pid", 0) == it->second);
  }
  n.remove("ten");
  n.remove("warm");
  CHECK_MESSAGE(waitFor([&] { return linesOf(n.runc({"list", "-q"}).out).empty(); }, 60s),
                n.runc({"list"}).out);
}

TEST_CASE("runc executor: bad image name, missing tag and a registry that is down are REJECTED "
          "with the reason, and the image store's tmp/ is empty") {
  testing::TempDir tmp;
  testing::TestRegistry registry;
  std::string image = registry.pushBusybox("busybox");
  RuncNode n(tmp.path(), registry.host());
  n.startAll();

  n.create({"--name", "notag", "--restart-condition", "none", registry.host() + "/busybox:nope",
            "true"});
  n.create({"--name", "noimage", "--restart-condition", "none",
            registry.host() + "/nothing-here:latest", "true"});
  for (const char* s : {"notag", "noimage"})
    CHECK_MESSAGE(waitFor([&] { return n.countState(s, "Rejected") == 1; }, 60s), n.report(s));
  CHECK_MESSAGE(contains(n.psText("notag"), "busybox:nope"), n.psText("notag"));

  // A name docker refuses (upper case): refused by the service API, or REJECTED by the node.
  auto bad = n.shoal({"service", "create", "-d", "--name", "badname", "--restart-condition",
                      "none", registry.host() + "/BusyBox:latest", "true"});
  if (bad.status.code == 0)
    CHECK_MESSAGE(waitFor([&] { return n.countState("badname", "Rejected") == 1; }, 60s),
                  n.report("badname"));
  else
    CHECK_MESSAGE(contains(bad.err, "BusyBox"), show(bad));

  registry.stop();
  n.create({"--name", "down", "--restart-condition", "none", image, "true"});
  CHECK_MESSAGE(waitFor([&] { return n.countState("down", "Rejected") == 1; }, 60s),
                n.report("down"));
  CHECK_MESSAGE(contains(n.psText("down"), registry.host()), n.psText("down"));

  std::error_code ec;
  std::string tmpDir = n.agentState() + "/images/tmp";
  CHECK_MESSAGE((!fs::exists(tmpDir, ec) || fs::is_empty(tmpDir, ec)), tmpDir);
  CHECK(fs::is_empty(n.agentState() + "/containers"));
}

}  // namespace
}  // namespace shoal
