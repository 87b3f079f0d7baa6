#include "tools/bench/cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <random>
#include <sstream>
#include <thread>

#include "common/ids.h"
#include "common/identity.h"
#include "common/node_dir.h"
#include "common/protocols.h"
#include "common/store_client.h"

namespace shoal::bench {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

std::atomic<bool> gInterrupted{false};

void onInterrupt(int) { gInterrupted.store(true); }

Error errnoError(const std::string& what) {
  return Error{what + ": " + std::strerror(errno), errno};
}

bool isSocket(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

}  // namespace

void installInterruptHandlers() {
  struct sigaction sa {};
  sa.sa_handler = onInterrupt;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGHUP, &sa, nullptr);
}

bool interrupted() { return gInterrupted.load(); }

Result<uint16_t> freeLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errnoError("cannot open a socket to find a free port");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    auto e = errnoError("cannot bind 127.0.0.1:0 to find a free port");
    ::close(fd);
    return e;
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string defaultRaftdPath() {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    // <build>/tools/bench/shoal-bench -> <build>/services/raftd/raftd
    auto built = self.parent_path().parent_path().parent_path() / "services/raftd/raftd";
    if (::access(built.c_str(), X_OK) == 0) return built.string();
  }
  for (const char* p : {"/usr/sbin/raftd", "/usr/local/sbin/raftd"})
    if (::access(p, X_OK) == 0) return p;
  return "raftd";
}

LocalCluster::LocalCluster(ClusterOptions options) : options_(std::move(options)) {}

LocalCluster::~LocalCluster() {
  stop();
  if (dir_.empty()) return;
  if (options_.keep) {
    std::cerr << "shoal-bench: kept the cluster's state and logs in " << dir_ << "\n";
  } else {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

Result<uint16_t> freeRaftPort() {
  int low = 32768;
  if (std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range"); range) range >> low;
  static std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> pick(10001, std::max(low - 1, 10002));
  for (int i = 0; i < 200; ++i) {
    int p = pick(rng);
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return errnoError("cannot make a socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(p));
    bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    if (ok) return static_cast<uint16_t>(p);
  }
  return Error{"no free port on 127.0.0.1 below the ephemeral range (" + std::to_string(low) + ")"};
}

Status LocalCluster::start(std::chrono::seconds timeout) {
  if (options_.nodes < 1) return Error{"--nodes must be at least 1"};
  if (::access(options_.raftd.c_str(), X_OK) != 0)
    return Error{"cannot run raftd at " + options_.raftd +
                 ": build it (ninja -C <build>) or give its path with --raftd"};
  std::string tmpl = options_.parentDir + "/shoal-bench.XXXXXX";
  if (!::mkdtemp(tmpl.data())) return errnoError("cannot create a temp dir under " + options_.parentDir);
  dir_ = tmpl;

  // Find all ports first, holding none: distinct raft ports (P+1) for distinct members. Below
  // the kernel's ephemeral range: raftd binds them only at init or JoinRaft, and meanwhile
  // outgoing connections take ephemeral ports, one of which could be a port handed out here.
  members_.resize(static_cast<size_t>(options_.nodes));
  for (size_t i = 0; i < members_.size(); ++i) {
    for (int attempt = 0;; ++attempt) {
      auto port = freeRaftPort();
      if (!port) return port.error();
      std::string addr = "127.0.0.1:" + std::to_string(*port);
      bool taken = false;
      for (size_t j = 0; j < i; ++j) taken |= members_[j].address == addr;
      if (!taken) {
        members_[i].address = addr;
        members_[i].port = static_cast<uint16_t>(*port - 1);
        break;
      }
      if (attempt > 100) return Error{"the kernel keeps handing out the same port; retry"};
    }
    std::string n = std::to_string(i + 1);
    members_[i].stateDir = dir_ + "/state" + n;
    members_[i].runDir = dir_ + "/run" + n;
    members_[i].nodeDir = dir_ + "/node" + n;
    members_[i].logFile = dir_ + "/raftd" + n + ".log";
  }

  auto deadline = Clock::now() + timeout;
  for (size_t i = 0; i < members_.size(); ++i)
    if (auto st = spawn(i); !st) return st;
  for (size_t i = 0; i < members_.size(); ++i)
    if (auto st = waitAnswering(i, deadline); !st) return st;
  if (auto st = init(); !st) return st;
  if (auto led = waitLeader(5s, 1); !led) return led.error();
  for (size_t i = 1; i < members_.size(); ++i)
    if (auto st = join(i); !st) return st;
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  auto led = waitLeader(std::max(left, 1ms), members_.size());
  if (!led) return led.error();
  for (size_t i = 0; i < members_.size(); ++i)
    if (auto st = status(i); st) members_[i].nodeId = st->value("node_id", "");
  return {};
}

namespace {

// One swarm protocol call on a raftd.sock; its error as an Error.
Result<bus::Frame> swarmCall(const std::string& endpoint, bus::Buffer request) {
  bus::SyncClient c(kSwarmProtocol);
  if (auto st = c.connect(endpoint); !st) return st.error();
  auto r = c.call(std::move(request), 20s);
  if (!r) return r.error();
  if (r->error() && r->error()->code() != wire::ErrorCode::None) return bus::errorFrom(*r);
  return r;
}

uint64_t randomRaftId() {
  std::random_device rd;
  uint64_t v = 0;
  while (v == 0) v = (static_cast<uint64_t>(rd()) << 32) | rd();
  return v;
}

}  // namespace

Status LocalCluster::init() {
  std::string addr = "127.0.0.1:" + std::to_string(members_[0].port);
  flatbuffers::FlatBufferBuilder fbb;
  auto body = swarmapi::CreateInitRequestDirect(fbb, addr.c_str(), addr.c_str());
  auto r = swarmCall(endpoint(0), bus::message<swarmapi::Envelope>(fbb, swarmapi::Body::InitRequest, body.Union()));
  if (!r) return Error{"swarm init on raftd 1: " + r.error().message};
  return {};
}

Status LocalCluster::join(size_t i) {
  Member& m = members_[i];
  auto first = status(0);
  if (!first) return Error{"raftd 1: " + first.error().message};
  uint64_t cluster = first->value("raft_cluster_id", uint64_t{0});
  uint64_t firstId = first->value("raft_id", uint64_t{0});
  if (cluster == 0 || firstId == 0) return Error{"raftd 1 is not in a cluster after swarm init"};
  auto firstDir = node::NodeDir::open(members_[0].nodeDir);
  if (!firstDir) return firstDir.error();
  auto dir = node::NodeDir::open(m.nodeDir);
  if (!dir) return dir.error();
  auto key = identity::curveKeyFromZ85(dir->key().publicKey);
  if (!key) return key.error();
  uint64_t raftId = randomRaftId();
  std::string nodeId = newId();

  // On the leader: the member's manager Node (its key, its raft id), then AddMember.
  flatbuffers::FlatBufferBuilder nb;
  auto spec = objects::CreateNodeSpec(nb, 0, objects::NodeRole::Manager, objects::NodeMembership::Accepted);
  auto ms = objects::CreateManagerStatus(nb, raftId, nb.CreateString(m.address));
  objects::Meta meta(0, 0, 0);
  nb.Finish(objects::CreateNode(nb, nb.CreateString(nodeId), &meta, spec, 0, 0, ms, objects::NodeRole::Manager,
                                nb.CreateVector(key->data(), key->size())));
  std::string object(reinterpret_cast<const char*>(nb.GetBufferPointer()), nb.GetSize());
  store::SyncClient leader;
  if (auto st = leader.connect(endpoint(0)); !st) return st.error();
  if (auto w = leader.txn({{objects::ObjectKind::Node, objects::Operation::Create, nodeId, 0, object}}); !w)
    return Error{"the Node of raftd " + std::to_string(i + 1) + ": " + w.error().message};
  {
    bus::SyncClient c(kStoreProtocol);
    if (auto st = c.connect(endpoint(0)); !st) return st.error();
    auto r = c.call(store::addMemberRequest(raftId, m.address), 10s);
    if (!r) return Error{"AddMember raftd " + std::to_string(i + 1) + ": " + r.error().message};
  }
  // agentd's part on the joiner: node.json, then JoinRaft with the first as its peer.
  node::NodeConfig config;
  config.nodeId = nodeId;
  config.clusterId = newId();
  config.manager = true;
  config.advertiseHost = "127.0.0.1";
  config.listenHost = "127.0.0.1";
  config.port = m.port;
  config.raft = node::RaftIdentity{raftId, cluster};
  if (auto st = dir->save(config); !st) return st.error();
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<flatbuffers::Offset<swarmapi::RaftPeer>> peers{swarmapi::CreateRaftPeerDirect(
      fbb, firstId, members_[0].address.c_str(), firstDir->key().publicKey.c_str())};
  auto body = swarmapi::CreateJoinRaftRequestDirect(fbb, raftId, cluster, m.address.c_str(), m.address.c_str(), &peers);
  auto r = swarmCall(endpoint(i), bus::message<swarmapi::Envelope>(fbb, swarmapi::Body::JoinRaftRequest, body.Union()));
  if (!r) return Error{"JoinRaft on raftd " + std::to_string(i + 1) + ": " + r.error().message};
  return {};
}

Status LocalCluster::spawn(size_t i) {
  Member& m = members_[i];
  std::vector<std::string> args = {options_.raftd,
                                   "--foreground",
                                   "--state-dir", m.stateDir,
                                   "--run-dir", m.runDir,
                                   "--node-dir", m.nodeDir,
                                   "--log-file", m.logFile,
                                   "--log-level", options_.logLevel,
                                   "--tick-ms", std::to_string(options_.tickMs),
                                   "--election-ticks", std::to_string(options_.electionTicks)};
  args.insert(args.end(), options_.extraArgs.begin(), options_.extraArgs.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::string stderrPath = m.logFile + ".stderr";
  pid_t parent = ::getpid();

  pid_t pid = ::fork();
  if (pid < 0) return errnoError("cannot fork raftd");
  if (pid == 0) {
    // Only async-signal-safe calls until exec. Own process group: a terminal's ^C reaches
    // the bench, which stops its members in order. PDEATHSIG: none outlives a killed bench.
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    int null = ::open("/dev/null", O_RDWR);
    int err = ::open(stderrPath.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (null >= 0) {
      ::dup2(null, 0);
      ::dup2(null, 1);
    }
    if (err >= 0) ::dup2(err, 2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  m.pid = pid;
  m.running = true;
  return {};
}

Status LocalCluster::waitAnswering(size_t i, Clock::time_point deadline) {
  Member& m = members_[i];
  while (true) {
    if (interrupted()) return Error{"interrupted"};
    int wstatus = 0;
    if (::waitpid(m.pid, &wstatus, WNOHANG) == m.pid) {
      m.running = false;
      return Error{"raftd " + std::to_string(i + 1) + " exited at start (status " +
                   std::to_string(wstatus) + "); see " + m.logFile + " and " + m.logFile +
                   ".stderr (run with --keep to keep them)"};
    }
    if (isSocket(m.runDir + "/raftd.sock")) {
      auto st = status(i, 500ms);
      if (st) {
        m.nodeId = st->value("node_id", "");
        if (!m.nodeId.empty()) return {};
      }
    }
    if (Clock::now() > deadline)
      return Error{"raftd " + std::to_string(i + 1) + " did not answer on " + endpoint(i) +
                   " in time; see " + m.logFile};
    std::this_thread::sleep_for(20ms);
  }
}

std::string LocalCluster::endpoint(size_t i) const {
  return "ipc://" + members_[i].runDir + "/raftd.sock";
}

Result<nlohmann::json> LocalCluster::status(size_t i, std::chrono::milliseconds timeout) const {
  store::SyncClient client;
  if (auto st = client.connect(endpoint(i)); !st) return st.error();
  return client.status(timeout);
}

Result<size_t> LocalCluster::leader() const {
  std::optional<size_t> leaderIndex;
  std::string leaderId;
  std::vector<nlohmann::json> views;
  for (size_t i = 0; i < members_.size(); ++i) {
    if (!members_[i].running || members_[i].frozen) continue;
    auto st = status(i, 500ms);
    if (!st) return Error{"member " + std::to_string(i + 1) + ": " + st.error().message};
    if (!st->value("in_swarm", true)) continue;  // not joined yet: it knows no leader
    if (st->value("role", "") == "Leader") {
      if (leaderIndex) return Error{"two members report leadership"};
      leaderIndex = i;
      leaderId = st->value("node_id", "");
    }
    views.push_back(*st);
  }
  if (!leaderIndex) return Error{"no member leads"};
  for (auto& v : views)
    if (v.value("leader", "") != leaderId) return Error{"members disagree about the leader"};
  return *leaderIndex;
}

Result<size_t> LocalCluster::waitLeader(std::chrono::milliseconds timeout, size_t voters) const {
  auto deadline = Clock::now() + timeout;
  std::string last = "no member answered";
  while (true) {
    if (interrupted()) return Error{"interrupted"};
    auto led = leader();
    if (led) {
      if (voters == 0) return *led;
      auto st = status(*led, 500ms);
      if (st) {
        size_t n = 0;
        for (auto& m : (*st)["members"])
          if (m.value("suffrage", "") == "voter") ++n;
        if (n == voters) return *led;
        last = std::to_string(n) + " of " + std::to_string(voters) + " members are voters";
      }
    } else {
      last = led.error().message;
    }
    if (Clock::now() > deadline)
      return Error{"the cluster did not settle on a leader in time (" + last + "); see the logs in " +
                   dir_ + " (run with --keep to keep them)"};
    std::this_thread::sleep_for(20ms);
  }
}

void LocalCluster::kill(size_t i) {
  Member& m = members_[i];
  if (!m.running) return;
  ::kill(m.pid, SIGKILL);
  int wstatus = 0;
  while (::waitpid(m.pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  m.running = false;
}

void LocalCluster::freeze(size_t i) {
  Member& m = members_[i];
  if (!m.running || m.frozen) return;
  ::kill(m.pid, SIGSTOP);
  m.frozen = true;
}

namespace {
// A "Name:   1234 kB" line of /proc/<pid>/status, in bytes; 0 if absent.
uint64_t statusKiB(pid_t pid, std::string_view name) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (!line.starts_with(name)) continue;
    return std::strtoull(line.c_str() + name.size(), nullptr, 10) * 1024;
  }
  return 0;
}
}  // namespace

uint64_t LocalCluster::anonRss(size_t i) const {
  const Member& m = members_[i];
  return m.running ? statusKiB(m.pid, "RssAnon:") : 0;
}

uint64_t LocalCluster::peakRss(size_t i) const {
  const Member& m = members_[i];
  return m.running ? statusKiB(m.pid, "VmHWM:") : 0;
}

double LocalCluster::cpuSeconds(size_t i) const {
  const Member& m = members_[i];
  if (!m.running) return 0;
  std::ifstream in("/proc/" + std::to_string(m.pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The command name (field 2) may hold spaces; the fields after its ')' are fixed: utime and
  // stime are the 12th and 13th after it (fields 14 and 15 of proc(5)).
  auto close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(stat.substr(close + 1));
  std::string field;
  uint64_t utime = 0, stime = 0;
  for (int f = 3; f <= 15 && rest >> field; ++f) {
    if (f == 14) utime = std::strtoull(field.c_str(), nullptr, 10);
    if (f == 15) stime = std::strtoull(field.c_str(), nullptr, 10);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

double selfCpuSeconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  auto secs = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6; };
  return secs(ru.ru_utime) + secs(ru.ru_stime);
}

std::pair<uint64_t, uint64_t> machineJiffies() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  in >> cpu;  // "cpu": user nice system idle iowait irq softirq steal ...
  uint64_t v = 0, total = 0, idle = 0;
  for (int f = 0; f < 8 && in >> v; ++f) {
    total += v;
    if (f == 3 || f == 4) idle += v;  // idle and iowait
  }
  return {total - idle, total};
}

void LocalCluster::stop() {
  // A stopped process cannot act on SIGTERM: a frozen member is killed.
  for (auto& m : members_)
    if (m.running) ::kill(m.pid, m.frozen ? SIGKILL : SIGTERM);
  auto deadline = Clock::now() + 5s;
  for (auto& m : members_) {
    while (m.running) {
      int wstatus = 0;
      pid_t r = ::waitpid(m.pid, &wstatus, WNOHANG);
      if (r == m.pid || (r < 0 && errno == ECHILD)) {
        m.running = false;
      } else if (Clock::now() > deadline) {
        ::kill(m.pid, SIGKILL);
        while (::waitpid(m.pid, &wstatus, 0) < 0 && errno == EINTR) {
        }
        m.running = false;
      } else {
        std::this_thread::sleep_for(10ms);
      }
    }
  }
}

}  // namespace shoal::bench
