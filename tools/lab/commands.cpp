#include "tools/lab/commands.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "tools/lab/host.h"
#include "tools/lab/lab.h"
#include "tools/lab/node_list.h"

namespace shoal::lab {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr auto kDaemonReady = 30s;   // a daemon's start, up to its "ready"
constexpr auto kSwarmCommand = 60s;  // one `shoal swarm init/join-token/join`
constexpr auto kClusterReady = 60s;  // every node Ready, one Leader
constexpr auto kKillBound = 10s;
constexpr const char* kBridge = "br0";

void checkRoot() {
  if (::geteuid() != 0)
    throw LabError("shoal-lab needs root: it creates network namespaces and links (run it with sudo)");
}

// Held while a lab's name and index are taken, so that two `up`s never pick the same ones.
class RootLock {
 public:
  RootLock() {
    // The last `down` removes the lock file (and the root dir): a lock taken on a file that
    // was unlinked meanwhile locks nothing, so take it again (bounded).
    for (int attempt = 0; attempt < 100; ++attempt) {
      fs::create_directories(kLabRoot);
      fd_ = ::open(path().c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
      if (fd_ < 0 || ::flock(fd_, LOCK_EX) != 0) throw LabError("cannot lock " + path());
      struct stat held, now;
      if (::fstat(fd_, &held) == 0 && ::stat(path().c_str(), &now) == 0 && held.st_ino == now.st_ino) return;
      ::close(fd_);
    }
    throw LabError("cannot lock " + path() + ": it keeps being removed");
  }
  ~RootLock() { ::close(fd_); }
  static std::string path() { return std::string(kLabRoot) + "/.lock"; }
  // Removes the root dir once no lab is left, so that nothing of the lab stays behind.
  void removeRootIfEmpty() {
    std::error_code ec;
    for (auto& e : fs::directory_iterator(kLabRoot, ec))
      if (e.path().filename() != ".lock") return;
    ::unlink(path().c_str());
    ::rmdir(kLabRoot);
  }
  RootLock(const RootLock&) = delete;
  RootLock& operator=(const RootLock&) = delete;

 private:
  int fd_ = -1;
};

// Held by a command that changes a lab (kill, start, partition, heal) from reading its state
// file to writing it back, so that two of them on one lab do not lose each other's change.
class LabLock {
 public:
  explicit LabLock(const std::string& name) {
    fd_ = ::open((labDir(name) + "/.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ >= 0) ::flock(fd_, LOCK_EX);  // no dir: mustLoad says there is no such lab
  }
  ~LabLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  LabLock(const LabLock&) = delete;
  LabLock& operator=(const LabLock&) = delete;

 private:
  int fd_ = -1;
};

Lab mustLoad(const std::string& name) {
  checkName(name);
  auto lab = load(name);
  bool leftovers = false;
  for (auto& ns : listNetns()) leftovers = leftovers || ownsNetns(name, ns);
  if (!lab && leftovers)
    throw LabError("lab " + name + " has no state file (" + stateFile(name) +
                   ") but its namespaces exist: a crash left it half-made; `shoal-lab down --name " + name +
                   "` removes it");
  if (!lab)
    throw LabError("there is no lab named " + name + " (`shoal-lab ls` lists the labs; `shoal-lab up --name " +
                   name + "` makes it)");
  return *lab;
}

std::string exeDir() {
  std::error_code ec;
  return fs::read_symlink("/proc/self/exe", ec).parent_path().string();
}

// The daemons and the CLI: from --bin-dir (a build dir or a dir holding them all), else the
// build tree shoal-lab is in, else where the Debian package installs them.
std::map<std::string, std::string> findBinaries(const std::string& binDir) {
  std::map<std::string, std::string> found;
  std::string here = exeDir();
  auto candidates = [&](const std::string& b) {
    std::vector<std::string> c;
    bool cli = b == "shoal";
    std::string inTree = cli ? "tools/shoal/shoal" : "services/" + b + "/" + b;
    if (!binDir.empty()) return std::vector<std::string>{binDir + "/" + inTree, binDir + "/" + b};
    c.push_back(here + "/../../" + inTree);
    c.push_back(here + "/" + b);
    c.push_back(cli ? "/usr/bin/shoal" : "/usr/sbin/" + b);
    return c;
  };
  std::vector<std::string> wanted = allDaemons();
  wanted.push_back("shoal");
  for (auto& b : wanted) {
    for (auto& c : candidates(b))
      if (::access(c.c_str(), X_OK) == 0) {
        found[b] = fs::weakly_canonical(c).string();
        break;
      }
    if (!found.count(b)) {
      std::string tried;
      for (auto& c : candidates(b)) tried += "\n  " + c;
      throw LabError("cannot find " + b + "; tried:" + tried +
                     "\nbuild it (ninja -C build) or point at the build dir with --bin-dir");
    }
  }
  return found;
}

const std::vector<std::string>& daemonsOf(const Node&) { return allDaemons(); }

// How a daemon is started on its node: its own state dir, the node's run dir and node dir, a
// log file. agentd is told the node's name as its hostname: the lab's nodes share the
// machine's UTS namespace, and `node ls` should tell m1 from w1. No flag says how the
// cluster is formed: `swarm init` and `swarm join` do that, and node.json remembers it.
std::vector<std::string> daemonArgv(const Lab& lab, const Node& n, const std::string& d) {
  std::vector<std::string> argv = {lab.binaries.at(d), "--state-dir", lab.stateDir(n, d),
                                   "--run-dir",        lab.runDir(n),  "--node-dir",
                                   lab.identityDir(n), "--log-file",   lab.logFile(n, d)};
  if (d == "agentd") {
    argv.push_back("--hostname");
    argv.push_back(n.name);
    argv.insert(argv.end(), lab.agentdArgs.begin(), lab.agentdArgs.end());
    if (n.fakeNodes > 0) {
      argv.push_back("--fake-nodes");
      argv.push_back(std::to_string(n.fakeNodes));
    }
  }
  return argv;
}

// Starts a daemon in its node's namespace and records it. The daemon is not given
// --foreground: it detaches itself once it is ready and its first process exits 0, or 1 with
// its error on stderr, so `up` waits for readiness and reports a start-up error as the daemon
// words it. Its pid is then in its pid file.
void startDaemon(Lab& lab, Node& n, const std::string& d) {
  auto& rec = n.daemons[d];
  if (rec.argv.empty()) rec.argv = daemonArgv(lab, n, d);
  fs::create_directories(lab.stateDir(n, d));
  fs::create_directories(lab.runDir(n));
  fs::create_directories(fs::path(lab.logFile(n, d)).parent_path());
  std::string out = lab.nodeDir(n) + "/log/" + d + ".out";
  pid_t first = spawnInNetns(n.netns, rec.argv, labEnvironment({}), lab.nodeDir(n), out);
  auto code = waitChild(first, kDaemonReady);
  if (!code) {
    ::kill(first, SIGKILL);
    waitChild(first, 5s);
  }
  if (!code || *code != 0) {
    std::string why = !code ? "it was not ready within 30 s" : "it exited with " + std::to_string(*code);
    throw LabError(d + " on " + n.name + " did not start: " + why + "\n--- " + out + "\n" +
                   tail(readFile(out), 10) + "--- " + lab.logFile(n, d) + "\n" +
                   tail(readFile(lab.logFile(n, d)), 10));
  }
  std::string pidFile = lab.runDir(n) + "/" + d + ".pid";
  pid_t pid = std::atoi(readFile(pidFile).c_str());
  auto started = pid > 0 ? startTime(pid) : std::nullopt;
  if (!started) throw LabError(d + " on " + n.name + " said it was ready but " + pidFile + " names no live process");
  rec.pid = pid;
  rec.startTime = *started;
  save(lab);
}

bool running(const DaemonRecord& r) { return r.pid > 0 && sameProcess(r.pid, r.startTime); }

// The hub namespace holds the lab's bridge; each node's eth0 is a veth whose other end is a
// port of that bridge named after the node. The root namespace is never touched.
void createNetwork(Lab& lab) {
  ip({"netns", "add", lab.hubNetns});
  ip({"-n", lab.hubNetns, "link", "set", "lo", "up"});
  ip({"-n", lab.hubNetns, "link", "add", kBridge, "type", "bridge"});
  ip({"-n", lab.hubNetns, "link", "set", kBridge, "up"});
  for (auto& n : lab.nodes) {
    ip({"netns", "add", n.netns});
    ip({"-n", lab.hubNetns, "link", "add", n.hubPort, "type", "veth", "peer", "name", "eth0", "netns", n.netns});
    ip({"-n", lab.hubNetns, "link", "set", n.hubPort, "master", kBridge, "up"});
    ip({"-n", n.netns, "addr", "add", n.address + "/24", "dev", "eth0"});
    ip({"-n", n.netns, "link", "set", "eth0", "up"});
    ip({"-n", n.netns, "link", "set", "lo", "up"});
  }
}

void writeFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  if (!out.flush()) throw LabError("cannot write " + path);
}

// Waits until the registry accepts connections on its address (from inside the hub), or says
// why not: it exited (its log tells why, e.g. the address is taken) or it took too long.
void waitForRegistry(const Lab& lab, pid_t pid, const std::string& log) {
  const auto& address = lab.registry->address;
  std::string host = address.substr(0, address.rfind(':'));
  std::string probe = "exec 3<>/dev/tcp/" + host + "/" + std::to_string(kRegistryPort);
  auto end = Clock::now() + kDaemonReady;
  while (Clock::now() < end) {
    if (auto code = waitChild(pid, 0ms))
      throw LabError("the registry (" + std::string(kRegistryBinary) + ") exited with " + std::to_string(*code) +
                     " before it listened on " + address + "\n--- " + log + "\n" + tail(readFile(log), 10));
    if (runInNetns(lab.hubNetns, {"/bin/bash", "-c", probe}, labEnvironment({}), 5s).code == 0) return;
    std::this_thread::sleep_for(100ms);
  }
  throw LabError("the registry did not listen on " + address + " within 30 s\n--- " + log + "\n" +
                 tail(readFile(log), 10));
}

// Debian's docker-registry in the hub namespace, on an address of the bridge itself, so every
// node reaches it on the lab's subnet and nothing outside the lab does. Its config, storage
// and log are in the lab's dir; its pid is recorded at once (and `down` also finds it as a
// process of the hub namespace, should the state file be lost).
void startRegistry(Lab& lab) {
  ip({"-n", lab.hubNetns, "addr", "add", lab.registryHost() + "/24", "dev", kBridge});
  Registry r;
  r.address = lab.registryHost() + ":" + std::to_string(kRegistryPort);
  fs::create_directories(lab.registryDir() + "/data");
  const std::string config = lab.registryDir() + "/config.yml", log = lab.registryDir() + "/registry.log";
  writeFile(config, registryConfig(r.address, lab.registryDir() + "/data"));
  r.process.argv = {kRegistryBinary, "serve", config};
  r.process.pid = spawnInNetns(lab.hubNetns, r.process.argv, labEnvironment({}), lab.registryDir(), log);
  r.process.startTime = startTime(r.process.pid).value_or(0);
  lab.registry = r;
  save(lab);
  waitForRegistry(lab, r.process.pid, log);
}

// A command run in a node's namespace with its run dir, as `shoal-lab exec` runs it, output
// captured (for `up`'s checks).
CommandResult runInNode(const Lab& lab, const Node& n, const std::vector<std::string>& argv,
                        std::chrono::milliseconds bound) {
  return runInNetns(n.netns, argv,
                    labEnvironment({"SHOAL_RUN_DIR=" + lab.runDir(n), "SHOAL_LAB=" + lab.name,
                                    "SHOAL_LAB_NODE=" + n.name}),
                    bound);
}

std::string commandLine(const std::vector<std::string>& argv) {
  std::string line;
  for (auto& a : argv) line += (line.empty() ? "" : " ") + (a.starts_with("SWMTKN-") ? a.substr(0, 12) + "..." : a);
  return line;
}

// How long the swarm may take to hold every node: a fake nodes' host joins them one by one.
std::chrono::milliseconds fakeNodesTime(const Lab& lab) {
  int fakes = 0;
  for (auto& n : lab.nodes) fakes += n.fakeNodes;
  return std::chrono::milliseconds(100) * fakes;
}

// Runs `shoal ARGS...` in node n; its stdout, or LabError with everything it said.
std::string shoalIn(const Lab& lab, const Node& n, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {lab.binaries.at("shoal")};
  argv.insert(argv.end(), args.begin(), args.end());
  auto bound = std::chrono::duration_cast<std::chrono::milliseconds>(kSwarmCommand) +
               (n.fakeNodes > 0 ? fakeNodesTime(lab) : std::chrono::milliseconds(0));
  auto r = runInNode(lab, n, argv, bound);
  if (r.code != 0)
    throw LabError("`" + commandLine(argv) + "` in " + n.name + " failed (exit " + std::to_string(r.code) +
                   "):\n" + r.out + r.err + "(the node's daemons log to " + lab.nodeDir(n) + "/log)");
  return r.out;
}

std::string joinToken(const Lab& lab, const Node& first, const std::string& role) {
  auto out = shoalIn(lab, first, {"swarm", "join-token", "-q", role});
  auto token = findJoinToken(out);
  if (!token)
    throw LabError("`shoal swarm join-token -q " + role + "` in " + first.name + " printed no single token: " + out);
  return *token;
}

void startDaemons(Lab& lab, Node& n) {
  for (auto& d : daemonsOf(n))
    if (!running(n.daemons[d])) startDaemon(lab, n, d);
}

// Forms the swarm as a user would, with the node's daemons already running: `swarm init` on
// m1, then `swarm join` of every other node with the token of its role, aimed at m1's
// dispatcher. Managers join one at a time (each is a raft membership change).
void formCluster(Lab& lab, const std::string& heartbeat) {
  Node& first = lab.nodes.front();
  std::vector<std::string> init = {"swarm", "init", "--advertise-addr", first.address};
  if (!heartbeat.empty()) {
    init.push_back("--dispatcher-heartbeat");
    init.push_back(heartbeat);
  }
  shoalIn(lab, first, init);
  std::map<std::string, std::string> tokens;
  const std::string target = first.address + ":" + std::to_string(kDispatcherPort);
  for (bool managers : {true, false})
    for (auto& n : lab.nodes) {
      if (&n == &first || n.manager() != managers) continue;
      auto& token = tokens[n.role];
      if (token.empty()) token = joinToken(lab, first, n.role);
      shoalIn(lab, n, {"swarm", "join", "--token", token, target});
    }
}

std::vector<std::string> namesOf(const Lab& lab, bool managers) {
  std::vector<std::string> names;
  for (auto& n : lab.nodes)
    if (n.manager() == managers) names.push_back(n.name);
  return names;
}

// Waits until m1's `shoal node ls` lists every node of the lab Ready, the managers Leader or
// Reachable with exactly one Leader.
void waitForCluster(const Lab& lab) {
  const Node& first = lab.nodes.front();
  auto managers = namesOf(lab, true), workers = namesOf(lab, false);
  int fakes = 0;
  for (auto& n : lab.nodes)
    if (n.fakeNodes > 0) {
      fakes += n.fakeNodes;
      workers.erase(std::find(workers.begin(), workers.end(), n.name));  // counted among the fakes
    }
  auto limit = std::chrono::duration_cast<std::chrono::milliseconds>(kClusterReady) + fakeNodesTime(lab);
  auto end = Clock::now() + limit;
  std::string why = "m1 was not asked";
  while (Clock::now() < end) {
    auto r = runInNode(lab, first, {lab.binaries.at("shoal"), "node", "ls", "--format", "json"}, 10s);
    if (r.code != 0) {
      why = "`shoal node ls` in " + first.name + " failed: " + r.out + r.err;
    } else {
      try {
        why = fakes > 0 ? notFormedBecause(parseNodeList(r.out), managers, workers, fakes)
                        : notFormedBecause(parseNodeList(r.out), managers, workers);
        if (why.empty()) return;
      } catch (const LabError& e) {
        why = e.what();
      }
    }
    std::this_thread::sleep_for(200ms);
  }
  throw LabError("the swarm did not form within " + std::to_string(limit.count() / 1000) +
                 " s: in m1's `shoal node ls`, " + why);
}

void printUsage(const Lab& lab) {
  const std::string n = lab.name == kDefaultName ? "" : " --name " + lab.name;
  std::cout << "lab " << lab.name << " is up on " << lab.subnet() << " (" << lab.dir << ")\n\n";
  ls(lab.name, false);
  std::cout << "\nThe swarm was formed by `shoal swarm init --advertise-addr " << lab.nodes.front().address
            << "` on m1\nand `shoal swarm join --token <manager or worker token> " << lab.nodes.front().address << ":"
            << kDispatcherPort << "` on every other node.\n\n"
            << "Use it:\n"
            << "  shoal-lab exec" << n << " m1 shoal node ls             # any command, inside node m1\n"
            << "  shoal-lab exec" << n << " w1 bash                      # a shell on w1 (SHOAL_RUN_DIR is set)\n"
            << "  shoal-lab ls" << n << "                                # nodes, addresses, daemon pids\n"
            << "  shoal-lab kill" << n << " m1          /  shoal-lab start" << n << " m1   # SIGKILL all of m1's daemons, or one: kill m1 raftd\n"
            << "  shoal-lab partition" << n << " m1     /  shoal-lab heal" << n << "\n"
            << "  shoal-lab down" << n << "                              # removes everything\n";
  if (lab.registry)
    std::cout << "  shoal-lab push" << n << " oci:DIR:latest busybox:latest  # an image into the lab's registry, as "
              << lab.registry->address << "/busybox:latest\n";
  std::cout
            << "(export SHOAL_LAB=" << lab.name << " to leave out --name)\n";
}

int freeIndex() {
  std::set<int> used;
  for (auto& l : loadAll()) used.insert(l.index);
  for (int i = 0; i < kMaxLabs; ++i)
    if (!used.count(i)) return i;
  throw LabError("all " + std::to_string(kMaxLabs) + " lab subnets are taken: remove a lab with shoal-lab down");
}

std::vector<std::string> namespacesOf(const std::string& name) {
  std::vector<std::string> namespaces;
  for (auto& ns : listNetns())
    if (ownsNetns(name, ns)) namespaces.push_back(ns);
  return namespaces;
}

// The recorded daemons, each only if it is still the process the lab started, and whatever
// else runs in the lab's namespaces (exec'd commands, daemons of a lab whose state file was
// lost): only processes inside a namespace this lab made.
std::vector<pid_t> processesOf(const std::optional<Lab>& lab, const std::vector<std::string>& namespaces) {
  std::vector<pid_t> pids;
  if (lab)
    for (auto& n : lab->nodes)
      for (auto& [d, r] : n.daemons)
        if (running(r)) pids.push_back(r.pid);
  for (auto& ns : namespaces)
    for (pid_t p : processesIn(ns)) pids.push_back(p);
  std::sort(pids.begin(), pids.end());
  pids.erase(std::unique(pids.begin(), pids.end()), pids.end());
  return pids;
}

// Kills them in a few rounds: a process may have forked another while the first round looked.
std::string killProcessesOf(const std::optional<Lab>& lab, const std::vector<std::string>& namespaces) {
  std::vector<pid_t> left;
  for (int round = 0; round < 5; ++round) {
    auto pids = processesOf(lab, namespaces);
    if (pids.empty()) return "";
    left = killAll(pids, kKillBound);
  }
  std::string problems;
  for (pid_t p : left) problems += "\n  pid " + std::to_string(p) + " did not die on SIGKILL";
  return problems;
}

// The dirs of lab name's nodes, found on disk (m1, w2, ...), not through the state file.
std::vector<fs::path> nodeDirsOf(const std::string& name) {
  static const std::regex node("[mw][1-9][0-9]{0,2}");
  std::vector<fs::path> dirs;
  std::error_code ec;
  for (auto& e : fs::directory_iterator(labDir(name), ec))
    if (e.is_directory() && std::regex_match(e.path().filename().string(), node)) dirs.push_back(e.path());
  return dirs;
}

// The names in dir that can be container ids (runc's state dirs, bundles): never "." or "..".
std::vector<std::string> idsIn(const fs::path& dir) {
  static const std::regex id("[A-Za-z0-9][A-Za-z0-9_.-]{0,127}");
  std::vector<std::string> ids;
  std::error_code ec;
  for (auto& e : fs::directory_iterator(dir, ec))
    if (e.is_directory() && std::regex_match(e.path().filename().string(), id))
      ids.push_back(e.path().filename().string());
  return ids;
}

std::string findRunc() {
  for (const char* p : {"/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc", "/usr/local/bin/runc"})
    if (::access(p, X_OK) == 0) return p;
  return "";
}

// Kills what is left in a container's cgroups (/sys/fs/cgroup/<controller>/shoal/<id> on this
// hybrid machine, /sys/fs/cgroup/shoal/<id> on a pure v2 one) and removes them, deepest first.
std::string removeCgroups(const std::string& id) {
  std::vector<fs::path> dirs;
  std::error_code ec;
  for (auto& top : fs::directory_iterator("/sys/fs/cgroup", ec)) {
    fs::path base = top.path() / "shoal" / id;
    if (!top.is_directory() || !fs::is_directory(base)) continue;
    for (auto& e : fs::recursive_directory_iterator(base, ec))
      if (e.is_directory()) dirs.push_back(e.path());
    dirs.push_back(base);
  }
  if (fs::is_directory("/sys/fs/cgroup/shoal/" + id)) dirs.push_back("/sys/fs/cgroup/shoal/" + id);
  std::sort(dirs.begin(), dirs.end(), [](auto& a, auto& b) { return a.string().size() > b.string().size(); });
  std::string problems;
  for (auto& d : dirs) {
    std::vector<pid_t> pids;
    std::stringstream procs(readFile((d / "cgroup.procs").string()));
    for (pid_t p; procs >> p;) pids.push_back(p);
    killAll(pids, kKillBound);
    // A cgroup whose last process just died may stay busy for a moment.
    bool gone = false;
    for (int i = 0; i < 50 && !gone; ++i) {
      gone = ::rmdir(d.c_str()) == 0 || errno == ENOENT;
      if (!gone) std::this_thread::sleep_for(20ms);
    }
    if (!gone) problems += "\n  cannot remove cgroup " + d.string() + ": " + std::strerror(errno);
  }
  return problems;
}

// The containers the lab's agentds ran, found on disk whatever the state file says: each
// process in a task's network namespace (overlayd's bind mounts in <node>/run/netns) is
// killed, each container in a node's runc root (agentd's default <node>/run/runc, or
// <node>/runc) is deleted with `runc delete --force` (its processes and runc's state), and
// the cgroups of every container id (runc's and the bundles' in agentd's state) are emptied
// and removed. Called once the daemons and shims are dead, so that none starts another.
std::string removeContainers(const std::string& name) {
  std::string problems;
  std::set<std::string> ids;
  for (auto& node : nodeDirsOf(name)) {
    std::vector<pid_t> inSandboxes;
    std::error_code ec;
    for (auto& e : fs::directory_iterator(node / "run/netns", ec))
      for (pid_t p : processesInNetnsFile(e.path().string())) inSandboxes.push_back(p);
    for (pid_t p : killAll(inSandboxes, kKillBound))
      problems += "\n  pid " + std::to_string(p) + " in a task's namespace did not die on SIGKILL";
    for (auto& id : idsIn(node / "state/agentd/containers")) ids.insert(id);
    for (auto root : {node / "run/runc", node / "runc"})
      for (auto& id : idsIn(root)) {
        ids.insert(id);
        std::string runc = findRunc();
        auto r = runc.empty() ? CommandResult{-1, "", "runc is not installed"}
                              : runCommand({runc, "--root", root.string(), "delete", "--force", id}, 30s);
        if (r.code != 0 && fs::exists(root / id))
          problems += "\n  runc --root " + root.string() + " delete --force " + id + " failed: " + r.err;
      }
  }
  for (auto& id : ids) problems += removeCgroups(id);
  return problems;
}

// Removes everything of lab name that exists, whatever state it was left in; returns whether
// there was anything.
bool teardown(const std::string& name) {
  std::optional<Lab> lab;
  try {
    lab = load(name);
  } catch (const LabError&) {
  }
  auto namespaces = namespacesOf(name);
  std::string problems = killProcessesOf(lab, namespaces);
  problems += removeContainers(name);
  // Deleting a node's namespace deletes its veth pair; deleting the hub deletes the bridges.
  for (auto& ns : namespaces)
    if (!ipQuiet({"netns", "delete", ns}) && netnsExists(ns)) problems += "\n  cannot delete netns " + ns;
  // Whatever a daemon mounted under the lab's dir (a container's rootfs, say), deepest first.
  for (auto& m : mountsUnder(labDir(name)))
    if (!detachMount(m)) problems += "\n  cannot unmount " + m + ": " + std::strerror(errno);
  std::error_code ec;
  bool hadDir = fs::exists(labDir(name));
  fs::remove_all(labDir(name), ec);
  if (ec) problems += "\n  cannot remove " + labDir(name) + ": " + ec.message();
  if (!problems.empty()) throw LabError("lab " + name + " was not removed completely:" + problems);
  return hadDir || !namespaces.empty();
}

// --executor, --fake-delay and --fake-nodes, checked before anything is made.
void checkExecutorOptions(const UpOptions& o) {
  static const std::regex duration("([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+");
  if (!o.executor.empty() && o.executor != "fake" && o.executor != "runc")
    throw LabError("bad --executor '" + o.executor + "': give fake or runc");
  if (!o.fakeDelay.empty() && !std::regex_match(o.fakeDelay, duration))
    throw LabError("bad --fake-delay '" + o.fakeDelay + "': give a duration such as 10ms or 1s");
  if ((!o.fakeDelay.empty() || o.fakeNodes != 0) && o.executor != "fake")
    throw LabError("--fake-delay and --fake-nodes need --executor fake");
  if (o.fakeNodes < 0 || o.fakeNodes > 100000)
    throw LabError("--fake-nodes must be 0 to 100000, not " + std::to_string(o.fakeNodes));
}

// What every agentd of the lab is given besides its node's own flags.
std::vector<std::string> agentdArgs(const UpOptions& o) {
  std::vector<std::string> args;
  if (!o.executor.empty()) args.insert(args.end(), {"--executor", o.executor});
  if (!o.fakeDelay.empty()) args.insert(args.end(), {"--fake-delay", o.fakeDelay});
  return args;
}

}  // namespace

int up(const UpOptions& o) {
  checkRoot();
  checkName(o.name);
  if (o.managers < 1 || o.managers > kMaxManagers)
    throw LabError("--managers must be 1 to " + std::to_string(kMaxManagers));
  if (o.workers < 0 || o.workers > kMaxWorkers)
    throw LabError("--workers must be 0 to " + std::to_string(kMaxWorkers));
  static const std::regex duration("([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+");
  if (!o.heartbeat.empty() && !std::regex_match(o.heartbeat, duration))
    throw LabError("bad --heartbeat '" + o.heartbeat + "': give a duration such as 1s or 500ms");
  checkExecutorOptions(o);
  if (o.registry && ::access(kRegistryBinary, X_OK) != 0)
    throw LabError(std::string("--registry needs Debian's docker-registry at ") + kRegistryBinary +
                   ": install it (./tools/deps does, or apt-get install docker-registry)");
  auto binaries = findBinaries(o.binDir);
  Lab lab;
  {
    RootLock lock;
    bool leftovers = false;
    for (auto& ns : listNetns()) leftovers = leftovers || ownsNetns(o.name, ns);
    if (fs::exists(labDir(o.name)) || leftovers)
      throw LabError("a lab named " + o.name + " exists: `shoal-lab ls --name " + o.name +
                     "` shows it, `shoal-lab down --name " + o.name + "` removes it");
    lab = plan(o.name, freeIndex(), o.managers, o.workers);
    if (o.fakeNodes > 0) addFakeHost(lab, o.fakeNodes);
    lab.agentdArgs = agentdArgs(o);
    if (o.registry)
      lab.agentdArgs.insert(lab.agentdArgs.end(), {"--insecure-registry", lab.registryHost() + ":" +
                                                                              std::to_string(kRegistryPort)});
    lab.binaries = binaries;
    fs::create_directories(lab.dir);
    save(lab);  // from here on, a failure or a crash leaves something `down` can find
  }
  try {
    createNetwork(lab);
    if (o.registry) startRegistry(lab);
    for (auto& n : lab.nodes) startDaemons(lab, n);
    formCluster(lab, o.heartbeat);
    waitForCluster(lab);
  } catch (const std::exception& e) {
    std::cerr << "shoal-lab: error: " << e.what() << "\nshoal-lab: removing the half-made lab " << o.name << "\n";
    teardown(o.name);
    RootLock lock;
    lock.removeRootIfEmpty();
    return 1;
  }
  printUsage(lab);
  return 0;
}

int down(const std::string& name) {
  checkRoot();
  checkName(name);
  bool removed = teardown(name);
  {
    RootLock lock;
    lock.removeRootIfEmpty();
  }
  std::cout << (removed ? "lab " + name + " removed\n" : "there was no lab named " + name + "\n");
  return 0;
}

int ls(const std::optional<std::string>& name, bool json) {
  std::vector<Lab> labs;
  if (name)
    labs.push_back(mustLoad(*name));
  else
    labs = loadAll();
  if (json) {
    auto all = nlohmann::json::array();
    for (auto& lab : labs) {
      auto j = lab.toJson();
      for (auto& jn : j["nodes"])
        for (auto& [d, jd] : jn["daemons"].items()) {
          const auto& r = lab.node(jn["name"]).daemons.at(d);
          jd["running"] = running(r);
        }
      if (lab.registry) j["registry"]["running"] = running(lab.registry->process);
      all.push_back(j);
    }
    std::cout << all.dump(2) << "\n";
    return 0;
  }
  for (auto& lab : labs) {
    if (!name) std::cout << "lab " << lab.name << " (" << lab.subnet() << ")\n";
    std::printf("%-5s %-8s %-24s %-15s %-4s %s\n", "NODE", "ROLE", "NETNS", "ADDRESS", "CUT", "DAEMONS");
    for (auto& n : lab.nodes) {
      std::string daemons;
      for (auto& d : daemonsOf(n)) {
        auto it = n.daemons.find(d);
        bool up = it != n.daemons.end() && running(it->second);
        daemons += (daemons.empty() ? "" : " ") + d + "=" + (up ? std::to_string(it->second.pid) : "down");
      }
      std::string cut = n.partition ? std::to_string(n.partition) : "-";
      std::printf("%-5s %-8s %-24s %-15s %-4s %s\n", n.name.c_str(), n.role.c_str(), n.netns.c_str(),
                  n.address.c_str(), cut.c_str(), daemons.c_str());
    }
    if (lab.registry) {
      const auto& r = *lab.registry;
      std::string pid = running(r.process) ? std::to_string(r.process.pid) : "down";
      std::printf("registry %s in %s: docker-registry=%s (%s)\n", r.address.c_str(), lab.hubNetns.c_str(),
                  pid.c_str(), lab.registryDir().c_str());
    }
  }
  if (!name && labs.empty()) std::cout << "no labs (shoal-lab up makes one)\n";
  return 0;
}

int exec(const std::string& name, const std::string& node, const std::vector<std::string>& command) {
  checkRoot();
  Lab lab = mustLoad(name);
  const Node& n = lab.node(node);
  if (command.empty()) throw LabError("exec needs a command: shoal-lab exec NODE CMD...");
  // The shoal CLI first in PATH, so `shoal ...` is the lab's own.
  const char* path = std::getenv("PATH");
  std::string cliDir = fs::path(lab.binaries.at("shoal")).parent_path().string();
  return execInNetns(n.netns, command,
                     labEnvironment({"SHOAL_RUN_DIR=" + lab.runDir(n), "SHOAL_LAB=" + lab.name,
                                     "SHOAL_LAB_NODE=" + n.name,
                                     "PATH=" + cliDir + ":" + (path ? path : "/usr/sbin:/usr/bin:/sbin:/bin")}));
}

namespace {
std::vector<std::string> chosenDaemons(const Node& n, const std::optional<std::string>& daemon) {
  if (!daemon) return daemonsOf(n);
  for (auto& d : daemonsOf(n))
    if (d == *daemon) return {d};
  std::string list;
  for (auto& d : daemonsOf(n)) list += " " + d;
  throw LabError(n.name + " runs no " + *daemon + " (a " + n.role + " runs" + list + ")");
}
}  // namespace

int kill(const std::string& name, const std::string& node, const std::optional<std::string>& daemon) {
  checkRoot();
  checkName(name);
  LabLock lock(name);
  Lab lab = mustLoad(name);
  Node& n = lab.node(node);
  for (auto& d : chosenDaemons(n, daemon)) {
    auto& r = n.daemons[d];
    if (!running(r)) {
      std::cout << d << " on " << n.name << " was not running\n";
    } else {
      if (!killAll({r.pid}, kKillBound).empty())
        throw LabError(d + " on " + n.name + " (pid " + std::to_string(r.pid) + ") did not die on SIGKILL");
      std::cout << "killed " << d << " on " << n.name << " (pid " << r.pid << ")\n";
    }
    r.pid = 0;
    r.startTime = 0;
    save(lab);
  }
  return 0;
}

int start(const std::string& name, const std::string& node, const std::optional<std::string>& daemon) {
  checkRoot();
  checkName(name);
  LabLock lock(name);
  Lab lab = mustLoad(name);
  Node& n = lab.node(node);
  for (auto& d : chosenDaemons(n, daemon)) {
    if (running(n.daemons[d])) {
      std::cout << d << " on " << n.name << " is running already (pid " << n.daemons[d].pid << ")\n";
      continue;
    }
    startDaemon(lab, n, d);
    std::cout << "started " << d << " on " << n.name << " (pid " << n.daemons[d].pid << ")\n";
  }
  return 0;
}

// Each partition moves the named nodes' bridge ports to a bridge of their own in the hub: they
// still reach each other, and nothing else of the lab (nor it them).
int partition(const std::string& name, const std::vector<std::string>& nodes) {
  checkRoot();
  checkName(name);
  LabLock lock(name);
  Lab lab = mustLoad(name);
  if (nodes.empty()) throw LabError("partition needs the nodes to cut off: shoal-lab partition NODE...");
  int group = 1;
  for (auto& n : lab.nodes) group = std::max(group, n.partition + 1);
  for (auto& x : nodes) lab.node(x);  // every name checked before anything changes
  std::string bridge = "br" + std::to_string(group);
  ip({"-n", lab.hubNetns, "link", "add", bridge, "type", "bridge"});
  ip({"-n", lab.hubNetns, "link", "set", bridge, "up"});
  for (auto& x : nodes) {
    Node& n = lab.node(x);
    ip({"-n", lab.hubNetns, "link", "set", n.hubPort, "master", bridge});
    n.partition = group;
  }
  save(lab);
  std::string list;
  for (auto& x : nodes) list += " " + x;
  std::cout << "cut off" << list << " from the rest of lab " << lab.name << " (group " << group
            << "; shoal-lab heal undoes it)\n";
  return 0;
}

int heal(const std::string& name) {
  checkRoot();
  checkName(name);
  LabLock lock(name);
  Lab lab = mustLoad(name);
  std::set<int> groups;
  for (auto& n : lab.nodes)
    if (n.partition) {
      ip({"-n", lab.hubNetns, "link", "set", n.hubPort, "master", kBridge});
      groups.insert(n.partition);
      n.partition = 0;
    }
  // Every bridge but br0, also one of a partition that failed half-way.
  auto bridges = ipCapture({"-n", lab.hubNetns, "-o", "link", "show", "type", "bridge"});
  std::stringstream in(bridges.out);
  for (std::string line; std::getline(in, line);) {
    auto a = line.find(": "), b = line.find(':', a + 2);
    if (a == std::string::npos || b == std::string::npos) continue;
    std::string bridge = line.substr(a + 2, b - a - 2);
    if (bridge != kBridge) ipQuiet({"-n", lab.hubNetns, "link", "delete", bridge});
  }
  save(lab);
  std::cout << (groups.empty() ? "lab " + lab.name + " had no partitions\n" : "lab " + lab.name + " healed\n");
  return 0;
}

namespace {
// skopeo's transports that read a local image; docker:// would copy from another registry,
// which the lab (no way out of the machine) cannot reach from the hub anyway.
bool localSource(const std::string& source) {
  for (const char* t : {"oci:", "oci-archive:", "docker-archive:", "dir:"})
    if (source.starts_with(t) && source.size() > std::strlen(t)) return true;
  return false;
}
}  // namespace

int push(const std::string& name, const std::string& source, const std::string& image) {
  checkRoot();
  Lab lab = mustLoad(name);
  if (!lab.registry)
    throw LabError("lab " + name + " has no registry: it was made without --registry (`shoal-lab down --name " + name +
                   "`, then `shoal-lab up --registry ...`)");
  if (!running(lab.registry->process))
    throw LabError("the registry of lab " + name + " is not running (its log: " + lab.registryDir() +
                   "/registry.log)");
  if (auto bad = checkRepositoryRef(image); !bad.empty()) throw LabError("bad image '" + image + "': " + bad);
  if (!localSource(source))
    throw LabError("bad source '" + source + "': give oci:DIR[:REF], oci-archive:FILE, docker-archive:FILE or dir:DIR");
  std::string dest = lab.registry->address + "/" + image + (image.find(':') == std::string::npos ? ":latest" : "");
  // In the hub, where the registry's address is local. --insecure-policy: the machine's
  // /etc/containers/policy.json is about pulling from elsewhere; this copies our own image.
  std::vector<std::string> argv = {"/usr/bin/skopeo", "--insecure-policy", "copy", "--all",
                                   "--dest-tls-verify=false", source, "docker://" + dest};
  if (::access(argv[0].c_str(), X_OK) != 0) throw LabError("push needs skopeo: install it (./tools/deps does)");
  auto r = runInNetns(lab.hubNetns, argv, labEnvironment({}), 300s);
  if (r.code != 0)
    throw LabError("`" + commandLine(argv) + "` failed (exit " + std::to_string(r.code) + "):\n" + r.out + r.err);
  std::cout << dest << "\n";
  return 0;
}

}  // namespace shoal::lab
