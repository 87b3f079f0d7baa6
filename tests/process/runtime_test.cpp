// Containers through runc and shoal-shim (services/agentd/runtime.h), as root: a busybox
// rootfs made on the spot, bundles made by makeRuntimeSpec, a Runtime on a Loop. Exit codes
// and signals, the CRI log of both streams, a read-only rootfs, limits in the container's v1
// cgroups, adoption by a second Runtime after the first is gone (as after `kill -9 agentd`),
// exec with its timeout, log rotation, a start that fails. Every container is deleted, every
// shim gone and every dir removed, also when a check fails (Cleanup).
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/object_codec.h"
#include "services/agentd/bundle.h"
#include "services/agentd/runtime.h"
#include "tests/support/tempdir.h"
#include "wire_generated.h"

namespace shoal::agentd {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::string shimPath() {
  const char* build = std::getenv("SHOAL_BUILD_DIR");
  return std::string(build ? build : ".") + "/services/agentd/shoal-shim";
}

// A busybox rootfs: the static binary, the applets the tests run, a passwd and group.
void makeRootfs(const std::string& root) {
  fs::create_directories(root + "/bin");
  fs::create_directories(root + "/etc");
  fs::create_directories(root + "/tmp");
  fs::copy_file("/bin/busybox", root + "/bin/busybox");
  for (const char* applet : {"sh", "echo", "sleep", "cat", "touch", "true"})
    fs::create_symlink("busybox", root + "/bin/" + applet);
  std::ofstream(root + "/etc/passwd") << "root:x:0:0:root:/root:/bin/sh\n";
  std::ofstream(root + "/etc/group") << "root:x:0:\n";
}

struct Limits {
  int64_t nanoCpus = 0, memory = 0, pids = 0;
};

// Everything a test made, undone whatever happens: containers deleted (which removes their
// cgroups), shims still alive killed by PID, then the dirs (TempDir).
struct Lab {
  testing::TempDir dir;
  std::string rootfs = dir / "rootfs";
  std::string runcRoot = dir / "runc";
  std::vector<std::string> ids;
  std::string prefix = "shoal-rt-" + std::to_string(::getpid()) + "-";

  Lab() { makeRootfs(rootfs); }
  ~Lab() {
    for (auto& id : ids) {
      std::string cmd = "runc --root " + runcRoot + " delete --force " + id + " >/dev/null 2>&1";
      [[maybe_unused]] int rc = std::system(cmd.c_str());
      int pid = std::atoi(readFile(bundle(id) + "/shim.pid").c_str());
      if (pid > 0 && contains(readFile("/proc/" + std::to_string(pid) + "/cmdline"), id))
        ::kill(pid, SIGKILL);
    }
  }
  std::string bundle(const std::string& id) const { return dir / ("c/" + id); }
  std::string log(const std::string& id) const { return dir / ("logs/" + id + "/container.log"); }

  // A bundle running argv; returns the container id.
  std::string make(std::vector<std::string> argv, bool readOnly = false, Limits limits = {}) {
    std::string id = prefix + std::to_string(ids.size());
    ids.push_back(id);
    objects::TaskT t;
    t.id = id;
    t.spec = std::make_unique<objects::TaskSpecT>();
    t.spec->container = std::make_unique<objects::ContainerSpecT>();
    t.spec->container->command = std::move(argv);
    t.spec->container->read_only = readOnly;
    t.spec->resources = std::make_unique<objects::ResourceRequirementsT>();
    t.spec->resources->limits = std::make_unique<objects::ResourcesT>();
    t.spec->resources->limits->nano_cpus = limits.nanoCpus;
    t.spec->resources->limits->memory_bytes = limits.memory;
    t.spec->resources->limits->pids = limits.pids;
    std::string bytes = objects_codec::pack<objects::Task>(t);
    ImageConfig image;
    BundleInput in{flatbuffers::GetRoot<objects::Task>(bytes.data()), &image, rootfs, "",
                   "", "/shoal/" + id, {}};
    auto spec = makeRuntimeSpec(in);
    REQUIRE_MESSAGE(spec.ok(), (spec.ok() ? "" : spec.error().message));
    fs::create_directories(bundle(id));
    fs::create_directories(fs::path(log(id)).parent_path());
    std::ofstream(bundle(id) + "/config.json") << spec->dump();
    return id;
  }
};

// A Runtime on a loop, and what it told.
struct Host {
  Loop loop;
  std::unique_ptr<Runtime> runtime;
  std::map<std::string, ContainerExit> exits;

  explicit Host(const Lab& lab, int64_t logMaxBytes = 10 << 20, int logMaxFiles = 3) {
    open(lab, logMaxBytes, logMaxFiles);
  }
  void open(const Lab& lab, int64_t logMaxBytes = 10 << 20, int logMaxFiles = 3) {
    runtime.reset();
    auto r = Runtime::open(loop, {"runc", lab.runcRoot, shimPath(), logMaxBytes, logMaxFiles});
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
    runtime = std::move(r).value();
    runtime->onExit([this](const std::string& id, const ContainerExit& e) { exits[id] = e; });
  }
  bool runUntil(const std::function<bool()>& done, std::chrono::seconds limit = 30s) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (!done() && std::chrono::steady_clock::now() < end) loop.runOnce(10ms);
    return done();
  }
  Result<int> start(const Lab& lab, const std::string& id) {
    std::optional<Result<int>> got;
    runtime->start(id, lab.bundle(id), lab.log(id), [&](Result<int> r) { got = std::move(r); });
    REQUIRE(runUntil([&] { return got.has_value(); }));
    return std::move(*got);
  }
  ContainerExit waitExit(const std::string& id) {
    REQUIRE_MESSAGE(runUntil([&] { return exits.count(id) > 0; }), "no exit for " << id);
    return exits[id];
  }
  Status call(const std::function<void(Runtime::DoneFn)>& fn) {
    std::optional<Status> got;
    fn([&](Status s) { got = std::move(s); });
    REQUIRE(runUntil([&] { return got.has_value(); }));
    return *got;
  }
  std::pair<Result<int>, std::string> exec(const std::string& id, std::vector<std::string> argv,
                                           std::chrono::milliseconds timeout) {
    std::optional<std::pair<Result<int>, std::string>> got;
    runtime->exec(id, std::move(argv), timeout,
                  [&](Result<int> code, std::string out) { got.emplace(std::move(code), out); });
    REQUIRE(runUntil([&] { return got.has_value(); }));
    return std::move(*got);
  }
  void remove(const std::string& id) {
    auto st = call([&](auto done) { runtime->remove(id, done); });
    CHECK_MESSAGE(st.ok(), (st.ok() ? "" : st.error().message));
  }
};

int shimPid(const Lab& lab, const std::string& id) {
  return std::atoi(readFile(lab.bundle(id) + "/shim.pid").c_str());
}

bool alive(int pid) { return pid > 0 && ::kill(pid, 0) == 0 && !contains(readFile("/proc/" + std::to_string(pid) + "/stat"), ") Z "); }

TEST_CASE("a container's exit code, and both its streams in the CRI log") {
  Lab lab;
  Host host(lab);
  std::string id = lab.make({"sh", "-c", "echo out; echo err >&2; exit 3"});
  auto pid = host.start(lab, id);
  REQUIRE_MESSAGE(pid.ok(), (pid.ok() ? "" : pid.error().message));
  CHECK(*pid > 0);
  ContainerExit e = host.waitExit(id);
  CHECK(e.exitCode == 3);
  CHECK(e.signal == 0);
  CHECK(e.error.empty());
  CHECK(e.at > 0);
  std::string log = readFile(lab.log(id));
  CHECK(contains(log, "Z stdout F out\n"));
  CHECK(contains(log, "Z stderr F err\n"));
  CHECK(log.size() > 30);
  CHECK(log[4] == '-');  // 2026-11-30T13:37:11.123456789Z
  CHECK(log.find('Z') == 29);
  CHECK_FALSE(alive(shimPid(lab, id)));
  auto ids = host.runtime->list();
  CHECK(std::find(ids.begin(), ids.end(), id) != ids.end());
  host.remove(id);
  ids = host.runtime->list();
  CHECK(std::find(ids.begin(), ids.end(), id) == ids.end());
}

TEST_CASE("a read-only rootfs refuses a write") {
  Lab lab;
  Host host(lab);
  std::string id = lab.make({"touch", "/x"}, true);
  REQUIRE(host.start(lab, id).ok());
  CHECK(host.waitExit(id).exitCode != 0);
  CHECK(contains(readFile(lab.log(id)), "Read-only file system"));
  CHECK_FALSE(fs::exists(lab.rootfs + "/x"));
  host.remove(id);
}

TEST_CASE("limits show in the container's cgroups; SIGKILL ends it as 137; remove drops them") {
  Lab lab;
  Host host(lab);
  std::string id = lab.make({"sleep", "1000"}, false, {500'000'000, 64 << 20, 50});
  REQUIRE(host.start(lab, id).ok());
  auto cg = [&](const std::string& ctrl, const std::string& file) {
    return readFile("/sys/fs/cgroup/" + ctrl + "/shoal/" + id + "/" + file);
  };
  CHECK(cg("memory", "memory.limit_in_bytes") == "67108864\n");
  CHECK(cg("cpu", "cpu.cfs_quota_us") == "50000\n");
  CHECK(cg("cpu", "cpu.cfs_period_us") == "100000\n");
  CHECK(cg("pids", "pids.max") == "50\n");
  CHECK(host.call([&](auto done) { host.runtime->kill(id, SIGKILL, done); }).ok());
  ContainerExit e = host.waitExit(id);
  CHECK(e.exitCode == 137);
  CHECK(e.signal == SIGKILL);
  host.remove(id);
  for (const char* ctrl : {"memory", "cpu", "pids"})
    CHECK_FALSE(fs::exists(std::string("/sys/fs/cgroup/") + ctrl + "/shoal/" + id));
}

TEST_CASE("a second Runtime adopts a running container after the first is gone") {
  Lab lab;
  // pid 1 of a namespace ignores a signal it has no handler for: the shell's trap is one,
  // and "ready" says it is set.
  std::string id = lab.make({"sh", "-c", "trap 'exit 143' TERM; echo ready; sleep 1000 & wait"});
  int shim = 0;
  {
    Host first(lab);
    REQUIRE(first.start(lab, id).ok());
    shim = shimPid(lab, id);
  }  // as if agentd died: the shim and the container go on
  CHECK(alive(shim));
  Host second(lab);
  auto adopted = second.runtime->adopt(id, lab.bundle(id));
  REQUIRE_MESSAGE(adopted.ok(), (adopted.ok() ? "" : adopted.error().message));
  CHECK(adopted->running);
  CHECK(adopted->pid > 0);
  CHECK(second.runtime->status()["shims_adopted"] == 1);
  REQUIRE(second.runUntil([&] { return contains(readFile(lab.log(id)), "stdout F ready"); }));
  CHECK(second.call([&](auto done) { second.runtime->kill(id, SIGTERM, done); }).ok());
  CHECK(second.waitExit(id).exitCode == 143);
  CHECK(second.runUntil([&] { return !alive(shim); }));
  second.remove(id);
}

TEST_CASE("adopt: a container that ended while nobody watched is told with its exit code") {
  Lab lab;
  std::string id = lab.make({"sh", "-c", "exit 7"});
  {
    Host first(lab);
    REQUIRE(first.start(lab, id).ok());
  }
  auto end = std::chrono::steady_clock::now() + 30s;
  while (!fs::exists(lab.bundle(id) + "/exit.json") && std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(10ms);
  Host second(lab);
  auto adopted = second.runtime->adopt(id, lab.bundle(id));
  REQUIRE(adopted.ok());
  CHECK_FALSE(adopted->running);
  CHECK(adopted->exit.exitCode == 7);
  auto none = second.runtime->adopt("nosuch", lab.dir / "nosuch");
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().code == static_cast<int>(wire::ErrorCode::NotFound));
  second.remove(id);
}

TEST_CASE("exec: its exit code and output; killed at its timeout") {
  Lab lab;
  Host host(lab);
  std::string id = lab.make({"sleep", "1000"});
  REQUIRE(host.start(lab, id).ok());
  auto [code, out] = host.exec(id, {"sh", "-c", "echo hello; exit 4"}, 20s);
  REQUIRE(code.ok());
  CHECK(*code == 4);
  CHECK(out == "hello\n");
  auto t0 = std::chrono::steady_clock::now();
  auto [late, _] = host.exec(id, {"sleep", "100"}, 500ms);
  REQUIRE_FALSE(late.ok());
  CHECK(late.error().code == static_cast<int>(wire::ErrorCode::DeadlineExceeded));
  CHECK(std::chrono::steady_clock::now() - t0 < 30s);
  CHECK(host.runtime->status()["execs_in_flight"] == 0);
  CHECK(host.call([&](auto done) { host.runtime->kill(id, SIGKILL, done); }).ok());
  host.waitExit(id);
  host.remove(id);
}

TEST_CASE("the log rotates at its size, keeping its number of files") {
  Lab lab;
  Host host(lab, 2000, 3);
  std::string id = lab.make(
      {"sh", "-c", "i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); done"});
  REQUIRE(host.start(lab, id).ok());
  CHECK(host.waitExit(id).exitCode == 0);
  std::string log = lab.log(id);
  CHECK(fs::exists(log + ".1"));
  CHECK(fs::exists(log + ".2"));
  CHECK_FALSE(fs::exists(log + ".3"));
  for (auto& f : {log, log + ".1", log + ".2"}) CHECK(fs::file_size(f) <= 2000);
  CHECK(contains(readFile(log), "stdout F line 299\n"));
  CHECK(contains(readFile(log + ".1"), "stdout F line"));
  host.remove(id);
}

TEST_CASE("a start runc refuses is told to `started` with runc's message, not as an exit") {
  Lab lab;
  Host host(lab);
  std::string id = lab.make({"/no/such/program"});
  auto r = host.start(lab, id);
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "/no/such/program"));
  CHECK(host.runUntil([&] { return host.runtime->status()["shims"] == 0; }));
  CHECK(host.exits.empty());
  host.remove(id);
}

TEST_CASE("a runc that hangs: the shim is killed at the start timeout, DeadlineExceeded") {
  Lab lab;
  std::string fakeRunc = lab.dir / "hung-runc";
  std::ofstream(fakeRunc) << "#!/bin/sh\necho $$ > " << (lab.dir / "hung.pid") << "\nexec sleep 100\n";
  fs::permissions(fakeRunc, fs::perms::owner_all);
  Loop loop;
  RuntimeOptions o{fakeRunc, lab.runcRoot, shimPath(), 10 << 20, 3, 500ms};
  auto runtime = Runtime::open(loop, o);
  REQUIRE(runtime.ok());
  std::string id = lab.make({"true"});
  std::optional<Result<int>> got;
  (*runtime)->start(id, lab.bundle(id), lab.log(id), [&](Result<int> r) { got = std::move(r); });
  auto end = std::chrono::steady_clock::now() + 30s;
  while (!got && std::chrono::steady_clock::now() < end) loop.runOnce(10ms);
  int hung = std::atoi(readFile(lab.dir / "hung.pid").c_str());
  if (hung > 0) ::kill(hung, SIGKILL);  // the fake runc, orphaned by its killed shim
  REQUIRE(got.has_value());
  REQUIRE_FALSE(got->ok());
  CHECK(got->error().code == static_cast<int>(wire::ErrorCode::DeadlineExceeded));
  CHECK(contains(got->error().message, "did not start container " + id + " within 500 ms"));
  CHECK(hung > 0);
}

TEST_CASE("figures: Runtime::start of busybox (median of 20) and a shim's RSS") {
  Lab lab;
  Host host(lab);
  std::vector<double> ms;
  for (int i = 0; i < 20; ++i) {
    std::string id = lab.make({"sleep", "1000"});
    auto t0 = std::chrono::steady_clock::now();
    REQUIRE(host.start(lab, id).ok());
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::string status = readFile("/proc/" + std::to_string(shimPid(lab, lab.ids[0])) + "/status");
  auto rss = status.substr(status.find("VmRSS:"));
  std::sort(ms.begin(), ms.end());
  MESSAGE("Runtime::start median " << ms[10] << " ms (min " << ms[0] << ", max " << ms[19]
          << "); shim " << rss.substr(0, rss.find('\n')));
  for (auto& id : lab.ids) {
    CHECK(host.call([&](auto done) { host.runtime->kill(id, SIGKILL, done); }).ok());
    host.waitExit(id);
    host.remove(id);
  }
}

}  // namespace
}  // namespace shoal::agentd
