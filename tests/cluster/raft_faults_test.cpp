// raftd under real faults, judged by the linearizability checker (tests/lincheck): three
// members on loopback, clients through raftd.sock of every member, and one fault at a time for
// a bounded time: the leader SIGKILLed and restarted, SIGSTOPped and continued, cut off by a
// partition or made deaf (it sends, hears nothing), a follower cut off. Every answer is taken
// for exactly what it promises (applied, refused by the store, definitely not applied, may or
// may not have been applied), so a server that promises more than it knows, such as "not
// applied" for a write that still commits, produces a history that is not linearizable.
//
// SHOAL_FAULT_SECONDS: how long faults are injected (default 20, what ./tools/test runs;
// tools/raft-faults runs it longer). SHOAL_FAULT_SEED: the clients' choices (the timing is the
// machine's). SHOAL_FAULT_ARTIFACTS=DIR: the history and the raftd logs are copied there.
// Each run prints one JSON line (see report()).
#include <doctest/doctest.h>

#include <signal.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/bus.h"
#include "common/ids.h"
#include "common/protocols.h"
#include "services/raftd/store_client.h"
#include "tests/lincheck/lincheck.h"
#include "tests/support/raft_members.h"

namespace shoal::raftd {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using shoal::testing::freePort;
using shoal::testing::raftdPath;
using shoal::testing::waitFor;
using lincheck::Operation;
using lincheck::Outcome;

// ---- the run's parameters

struct Params {
  std::chrono::seconds faultTime{20};
  uint64_t seed = 0;
  std::string artifacts;
  int clients = 9;  // three through each member
  bus::Millis clientTimeout{2000};  // then the answer is Unknown
};

Params paramsFromEnv() {
  Params p;
  if (const char* s = std::getenv("SHOAL_FAULT_SECONDS")) p.faultTime = std::chrono::seconds(std::max(1L, std::atol(s)));
  if (const char* s = std::getenv("SHOAL_FAULT_SEED"); s && *s)
    p.seed = std::strtoull(s, nullptr, 10);
  else
    p.seed = std::random_device{}();
  if (const char* s = std::getenv("SHOAL_FAULT_ARTIFACTS")) p.artifacts = s;
  return p;
}

int64_t micros(Clock::time_point t, Clock::time_point origin) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t - origin).count();
}

std::string firstExisting(std::initializer_list<const char*> paths) {
  for (auto* p : paths)
    if (::access(p, X_OK) == 0) return p;
  return {};
}

// ---- cleanup when the test is interrupted (SIGINT, SIGTERM, SIGHUP: meson's timeout, ^C)
//
// Destructors do not run then. The handler only makes async-signal-safe calls: it kills the
// raftd processes, deletes the nftables table and removes the temporary directory (fork and
// execve), then lets the signal take its course. Tables left by a test that died of SIGKILL
// are removed by the next run (Firewall::removeStale).

struct Emergency {
  static constexpr int kMaxPids = 8;
  static inline std::atomic<pid_t> pids[kMaxPids];
  static inline char nft[64], table[64], rm[64], dir[512];
  static inline struct sigaction previous[3];
  static constexpr int kSignals[3] = {SIGINT, SIGTERM, SIGHUP};

  static void spawn(char* const argv[]) {
    pid_t p = ::fork();
    if (p == 0) {
      char* none[] = {nullptr};
      ::execve(argv[0], argv, none);
      ::_exit(127);
    }
    if (p > 0) ::waitpid(p, nullptr, 0);
  }
  static void handle(int sig) {
    for (auto& p : pids)
      if (pid_t pid = p.load(); pid > 0) ::kill(pid, SIGKILL);
    if (nft[0] && table[0]) {
      char del[] = "delete", tbl[] = "table", fam[] = "inet";
      char* argv[] = {nft, del, tbl, fam, table, nullptr};
      spawn(argv);
    }
    if (rm[0] && dir[0]) {
      char rf[] = "-rf";
      char* argv[] = {rm, rf, dir, nullptr};
      spawn(argv);
    }
    for (int i = 0; i < 3; ++i)
      if (kSignals[i] == sig) ::sigaction(sig, &previous[i], nullptr);
    ::raise(sig);
  }
  static void copy(char* to, size_t size, const std::string& from) {
    std::snprintf(to, size, "%s", from.size() < size ? from.c_str() : "");
  }

  Emergency(const std::string& nftPath, const std::string& tableName, const std::string& tempDir) {
    copy(nft, sizeof nft, nftPath);
    copy(table, sizeof table, tableName);
    copy(rm, sizeof rm, firstExisting({"/usr/bin/rm", "/bin/rm"}));
    copy(dir, sizeof dir, tempDir);
    struct sigaction sa {};
    sa.sa_handler = handle;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 3; ++i) ::sigaction(kSignals[i], &sa, &previous[i]);
  }
  ~Emergency() {
    for (int i = 0; i < 3; ++i) ::sigaction(kSignals[i], &previous[i], nullptr);
    for (auto& p : pids) p = 0;
    nft[0] = table[0] = dir[0] = 0;
  }
  static void track(int slot, pid_t pid) { pids[slot] = pid; }
};

// ---- partitions: one nftables table of this test process, `inet shoal_test_<pid>`
//
// raftd peers talk over ZeroMQ: each member sends its raft messages on its own connections to
// the others' listen ports, and serves forwarded requests on its own port. Dropping what goes
// to or comes from a member's port therefore only silences what the others send it; what it
// sends still arrives. That is a real fault of its own (deafen: the leader keeps sending
// heartbeats nobody can answer). To cut a member off in both directions, it also runs with a
// group id of its own, and everything its sockets send on loopback is dropped (meta skgid).

class Firewall {
 public:
  static std::string nftPath() { return firstExisting({"/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"}); }

  Firewall() : nft_(nftPath()), table_("shoal_test_" + std::to_string(::getpid())) {
    REQUIRE_MESSAGE(!nft_.empty(), "nft is not installed (Debian package nftables; run tools/deps)");
    removeStale();
    nft({"add", "table", "inet", table_});
    nft({"add", "chain", "inet", table_, "output", "{", "type", "filter", "hook", "output", "priority", "0", ";",
         "policy", "accept", ";", "}"});
  }
  ~Firewall() { shoal::testing::run({nft_, "delete", "table", "inet", table_}); }
  Firewall(const Firewall&) = delete;
  Firewall& operator=(const Firewall&) = delete;

  const std::string& table() const { return table_; }
  const std::string& path() const { return nft_; }

  // Each is one nft command line, so one netlink batch: the rules take effect together.
  void isolate(int port, gid_t gid) {
    auto rules = portRules(port);
    for (auto& a : {";", "add", "rule", "inet"}) rules.push_back(a);
    for (auto& a : {table_, std::string("output"), std::string("oifname"), std::string("lo"), std::string("meta"),
                    std::string("skgid"), std::to_string(gid), std::string("counter"), std::string("drop")})
      rules.push_back(a);
    nft(rules);
  }
  void deafen(int port) { nft(portRules(port)); }
  // Packets the rules dropped so far: those the member sent (skgid) and those sent to it or
  // from its port. Proof that a partition was one.
  struct Dropped {
    uint64_t fromMember = 0, atPort = 0;
  };
  Dropped dropped() {
    auto r = shoal::testing::run({nft_, "list", "chain", "inet", table_, "output"});
    Dropped d;
    std::istringstream in(r.out);
    std::string line;
    for (int i = 0; i < 1000 && std::getline(in, line); ++i) {
      auto at = line.find("counter packets ");
      if (at == std::string::npos) continue;
      uint64_t n = std::strtoull(line.c_str() + at + 16, nullptr, 10);
      (line.find("skgid") != std::string::npos ? d.fromMember : d.atPort) += n;
    }
    return d;
  }
  void heal() { nft({"flush", "chain", "inet", table_, "output"}); }

 private:
  std::vector<std::string> portRules(int port) const {
    std::vector<std::string> r;
    for (const char* dir : {"dport", "sport"}) {
      if (!r.empty()) r.push_back(";");
      for (auto& a : {std::string("add"), std::string("rule"), std::string("inet"), table_, std::string("output"),
                      std::string("oifname"), std::string("lo"), std::string("tcp"), std::string(dir),
                      std::to_string(port), std::string("counter"), std::string("drop")})
        r.push_back(a);
    }
    return r;
  }

  void nft(std::vector<std::string> args) {
    args.insert(args.begin(), nft_);
    auto r = shoal::testing::run(args);
    std::string cmd;
    for (auto& a : args) cmd += a + " ";
    REQUIRE_MESSAGE(r.status.code == 0, cmd << "failed: " << r.err);
  }
  // Tables of earlier runs whose process is gone (killed before it could clean up).
  void removeStale() {
    auto r = shoal::testing::run({nft_, "list", "tables"});
    REQUIRE_MESSAGE(r.status.code == 0, "nft list tables failed (nftables needs root): " << r.err);
    std::istringstream in(r.out);
    std::string line;
    for (int i = 0; i < 10'000 && std::getline(in, line); ++i) {
      const std::string prefix = "table inet shoal_test_";
      if (!line.starts_with(prefix)) continue;
      std::string name = line.substr(std::string("table inet ").size());
      pid_t pid = static_cast<pid_t>(std::atol(line.c_str() + prefix.size()));
      if (pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH) {
        MESSAGE("removing nftables table " << name << " of a test that is gone");
        shoal::testing::run({nft_, "delete", "table", "inet", name});
      }
    }
  }

  std::string nft_;
  std::string table_;
};

// ---- the cluster

// A member whose PID the emergency handler knows while it runs, in slot `slot`.
struct Member : shoal::testing::RaftMember {
  int slot = 0;
  int raftPort = 0;  // its raft peer port (RaftMember::port is the dispatcher port below it)
  gid_t gid = 0;  // its own, so that a partition can match what its sockets send

  void start() {
    RaftMember::start();
    Emergency::track(slot, proc->pid());
  }
  void kill9() {
    RaftMember::kill9(10s);
    Emergency::track(slot, 0);
  }
};

struct Cluster {
  shoal::testing::TempDir dir;
  std::vector<Member> members;

  Cluster() {
    gid_t base = 100'000 + 4 * static_cast<gid_t>(::getpid());  // apart from other runs' groups
    for (int i = 0; i < 3; ++i) {
      Member m;
      m.slot = i;
      m.name = "n" + std::to_string(i + 1);
      m.place(dir.path());
      m.raftPort = shoal::node::raftPort(m.port);
      m.gid = base + i;
      // Under setpriv with the member's group; setpriv sets the parent-death signal again after
      // changing the group, which clears it.
      m.runUnder = {"/usr/bin/setpriv", "--regid", std::to_string(m.gid), "--clear-groups", "--pdeathsig", "SIGKILL",
                    "--"};
      members.push_back(std::move(m));
    }
  }
  ~Cluster() {
    for (auto& m : members)
      if (m.proc) {
        m.proc->signal(SIGCONT);
        m.proc->signal(SIGTERM);
        m.proc->wait(3s);
        m.proc.reset();  // SIGKILL if it did not stop
        Emergency::track(m.slot, 0);
      }
  }
  void startThree() {
    for (auto& m : members) m.start();
    shoal::testing::formCluster(members, 3, [&] { return logs(); });
  }
  // The member that says it leads, among those in `among` (all by default); -1 if none.
  int leader(std::vector<int> among = {0, 1, 2}) const {
    for (int i : among)
      if (members[i].proc && members[i].leads()) return i;
    return -1;
  }
  std::string logs(size_t tail = 4000) const { return shoal::testing::logTails(members, tail); }
};

// ---- the clients

// The objects the clients work on: Configs with fixed ids and a fixed name each (names are
// unique per kind). A two-key transaction takes a pair {0,1}, {2,3}, ..., so the history falls
// into independent parts the checker can judge one at a time. Twelve keys for nine clients:
// contended enough for conflicts, not so much that most writes are refused (a refused write
// changes nothing, so a wrong answer to it could not show).
constexpr int kKeys = 12;

std::string keyId(int k) {
  std::string number = std::to_string(100 + k).substr(1);  // two digits
  return "faultkey" + std::string(kIdLength - 8 - number.size(), '0') + number;
}
std::string keyName(int k) { return "fault-config-" + std::to_string(k); }

struct Tally {
  std::map<std::string, uint64_t> answers;  // "ok", "refused: Conflict", "NotLeader", ...
};

// What an answer promises, by error code (schemas/wire.fbs, docs/raftd.md "Errors a caller can
// act on"). Refused: the store judged the transaction and did not apply it, or a read found
// nothing: an Ok answer.
enum class Judged { Refused, Failed, Unknown };

Judged judge(wire::ErrorCode code, Operation::Kind kind) {
  switch (code) {
    case wire::ErrorCode::NotFound:
      return Judged::Refused;
    case wire::ErrorCode::Conflict:
      return kind == Operation::Txn ? Judged::Refused : Judged::Unknown;
    case wire::ErrorCode::NotLeader:
    case wire::ErrorCode::Unavailable:
    case wire::ErrorCode::ResourceExhausted:
    case wire::ErrorCode::InvalidArgument:
      return Judged::Failed;
    default:  // Indeterminate, DeadlineExceeded (the client's timeout too), Cancelled, others
      return Judged::Unknown;
  }
}

// One client: one operation in flight, through one member's raftd.sock. It remembers the
// version it last saw of each key, and sometimes uses an older one on purpose.
struct Client {
  int id = 0;
  std::unique_ptr<bus::Client> bus;
  std::mt19937_64 rng;
  int written = 0;
  std::vector<std::optional<uint64_t>> known = std::vector<std::optional<uint64_t>>(kKeys, uint64_t{0});  // 0 = absent
  std::vector<std::vector<uint64_t>> seen = std::vector<std::vector<uint64_t>>(kKeys);
  bool busy = false;
  Clock::time_point nextAt{};

  double uniform() { return std::uniform_real_distribution<double>(0, 1)(rng); }
  int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); }

  void learn(int k, uint64_t version) {
    known[k] = version;
    if (version && (seen[k].empty() || seen[k].back() != version)) seen[k].push_back(version);
  }
  // Mostly the version last seen; now and then one of the few before it (or one below it),
  // which the store must refuse.
  uint64_t versionFor(int k) {
    uint64_t v = *known[k];
    if (uniform() < 0.1) {
      size_t n = seen[k].size();
      if (n > 1) return seen[k][n - 2 - pick(static_cast<int>(std::min<size_t>(n - 1, 3)))];
      return v > 1 ? v - 1 : v + 1;
    }
    return v;
  }
  lincheck::Change changeFor(int k) {
    lincheck::Change c;
    c.key = keyId(k);
    c.value = "c" + std::to_string(id) + "-" + std::to_string(++written);
    if (!known[k] || *known[k] == 0) {
      c.kind = lincheck::Change::Create;  // unknown state: try a create; a refusal teaches too
    } else if (uniform() < 0.75) {
      c.kind = lincheck::Change::Update;
      c.expectedVersion = versionFor(k);
    } else {
      c.kind = lincheck::Change::Delete;
      c.expectedVersion = versionFor(k);
    }
    return c;
  }

  Operation next() {
    Operation op;
    op.client = id;
    double r = uniform();
    int k = pick(kKeys);
    if (r < 0.4 || !known[k]) {
      op.kind = Operation::Read;
      op.key = keyId(k);
      return op;
    }
    op.kind = Operation::Txn;
    op.changes.push_back(changeFor(k));
    if (r < 0.5) {
      int other = k ^ 1;  // the pair's other key
      if (known[other]) op.changes.push_back(changeFor(other));
    }
    return op;
  }
};

int keyIndex(const std::string& id) { return std::stoi(id.substr(id.size() - 2)); }

bus::Buffer requestFor(const Operation& op) {
  if (op.kind == Operation::Read) return getRequest(objects::ObjectKind::Config, op.key);
  std::vector<ChangeSpec> specs;
  for (auto& c : op.changes) {
    auto kind = c.kind == lincheck::Change::Create   ? objects::Operation::Create
                : c.kind == lincheck::Change::Update ? objects::Operation::Update
                                                     : objects::Operation::Delete;
    std::string object = c.kind == lincheck::Change::Delete
                             ? std::string()
                             : configObject(c.key, keyName(keyIndex(c.key)), c.value);
    specs.push_back({objects::ObjectKind::Config, kind, c.key, c.expectedVersion, object});
  }
  return txnRequest(specs);
}

// Records the answer in op and in the client's memory of versions; `note` gets the error.
void record(Client& cl, Operation& op, const Result<bus::Frame>& r, Tally& tally, std::string& note) {
  auto forget = [&] {
    if (op.kind == Operation::Read) cl.known[keyIndex(op.key)].reset();
    for (auto& c : op.changes) cl.known[keyIndex(c.key)].reset();
  };
  if (!r) {
    auto code = static_cast<wire::ErrorCode>(r.error().code);
    Judged j = judge(code, op.kind);
    std::string name = bus::errorCodeName(code);
    note = name + " (" + std::to_string(r.error().code) + "): " + r.error().message;
    if (j == Judged::Refused) {
      op.outcome = Outcome::Ok;
      op.applied = false;
      op.found = false;
      tally.answers["refused: " + name]++;
      if (op.kind == Operation::Read) cl.learn(keyIndex(op.key), 0);
      else forget();
      return;
    }
    op.outcome = j == Judged::Failed ? Outcome::Failed : Outcome::Unknown;
    tally.answers[std::string(j == Judged::Failed ? "failed: " : "unknown: ") + name]++;
    forget();
    return;
  }
  auto* env = r->as<storeapi::Envelope>();
  if (op.kind == Operation::Txn) {
    auto* reply = env ? env->body_as_TxnReply() : nullptr;
    if (!reply) {
      op.outcome = Outcome::Unknown;
      tally.answers["unknown: unreadable reply"]++;
      return forget();
    }
    op.outcome = Outcome::Ok;
    op.applied = true;
    op.index = reply->index();
    tally.answers["ok"]++;
    for (auto& c : op.changes) cl.learn(keyIndex(c.key), c.kind == lincheck::Change::Delete ? 0 : op.index);
    return;
  }
  auto* reply = env ? env->body_as_ObjectsReply() : nullptr;
  if (!reply || !reply->objects() || reply->objects()->size() != 1) {
    op.outcome = Outcome::Unknown;
    tally.answers["unknown: unreadable reply"]++;
    return forget();
  }
  auto* data = reply->objects()->Get(0)->data();
  flatbuffers::Verifier v(data->data(), data->size());
  auto* cfg = flatbuffers::GetRoot<objects::Config>(data->data());
  if (!cfg->Verify(v) || !cfg->meta() || !cfg->spec() || !cfg->spec()->data()) {
    op.outcome = Outcome::Unknown;
    tally.answers["unknown: unreadable reply"]++;
    return forget();
  }
  op.outcome = Outcome::Ok;
  op.found = true;
  op.version = cfg->meta()->version();
  op.value.assign(reinterpret_cast<const char*>(cfg->spec()->data()->data()), cfg->spec()->data()->size());
  tally.answers["ok"]++;
  cl.learn(keyIndex(op.key), op.version);
}

struct Workload {
  std::vector<Operation> history;
  std::vector<std::string> notes;  // by operation: the error it got, and through which member
  Tally tally;
  std::string trouble;  // the client thread cannot use doctest's REQUIRE: it says here instead
};

// Runs the clients on this thread (its own loop and sockets) until `stop`, then waits for the
// operations in flight (each ends by the client timeout at the latest).
void runClients(const Params& params, std::vector<std::string> sockets, const std::atomic<bool>& stop,
                Clock::time_point origin, Workload& out) {
  zmq::context_t ctx{1};
  Loop loop;
  std::vector<Client> clients(params.clients);
  for (int i = 0; i < params.clients; ++i) {
    clients[i].id = i;
    clients[i].rng.seed(params.seed * 1000 + i);
    clients[i].bus = std::make_unique<bus::Client>(loop, ctx, kStoreProtocol);
    if (auto st = clients[i].bus->connect(sockets[i % sockets.size()]); !st) {
      out.trouble = "client " + std::to_string(i) + " cannot connect: " + st.error().message;
      return;
    }
  }
  auto issue = [&](Client& cl) {
    size_t slot = out.history.size();
    out.history.push_back(cl.next());
    out.notes.push_back("via n" + std::to_string(cl.id % sockets.size() + 1));
    cl.busy = true;
    out.history[slot].invoke = micros(Clock::now(), origin);
    cl.bus->call(requestFor(out.history[slot]), params.clientTimeout, [&, slot](Result<bus::Frame> r) {
      Operation& op = out.history[slot];
      op.complete = micros(Clock::now(), origin);
      std::string note;
      record(cl, op, r, out.tally, note);
      if (!note.empty()) out.notes[slot] += ": " + note;
      cl.busy = false;
      // A little time between operations, more after a failure (as a real client backs off).
      auto pause = std::chrono::milliseconds(op.outcome == Outcome::Ok ? 1 + cl.pick(8) : 50 + cl.pick(100));
      cl.nextAt = Clock::now() + pause;
    });
  };
  while (!stop.load()) {
    auto now = Clock::now();
    for (auto& cl : clients)
      if (!cl.busy && cl.nextAt <= now) issue(cl);
    loop.runOnce(2ms);
  }
  auto drainEnd = Clock::now() + params.clientTimeout + 3s;
  auto busy = [&] { return std::any_of(clients.begin(), clients.end(), [](auto& c) { return c.busy; }); };
  while (busy() && Clock::now() < drainEnd) loop.runOnce(10ms);
  if (busy()) out.trouble = "an operation was still in flight after the client timeout";
}

// ---- faults

enum class Fault { KillLeader, StopLeader, PartitionFollower, PartitionLeader, DeafLeader };
constexpr Fault kFaults[] = {Fault::KillLeader, Fault::StopLeader, Fault::PartitionFollower,
                             Fault::PartitionLeader, Fault::DeafLeader};

const char* faultName(Fault f) {
  switch (f) {
    case Fault::KillLeader: return "kill_leader";
    case Fault::StopLeader: return "stop_leader";
    case Fault::PartitionFollower: return "partition_follower";
    case Fault::PartitionLeader: return "partition_leader";
    case Fault::DeafLeader: return "deaf_leader";
  }
  return "?";
}

struct FaultWindow {
  Fault kind = Fault::KillLeader;
  std::string target;
  int64_t start = 0, end = 0;  // microseconds since the run's origin
  bool leaderMoved = false;    // partitions: another member led before the heal
  Firewall::Dropped dropped;
};

// Injects one fault on the cluster and returns its window. The leader is found first; the hold
// times are long enough for an election (10 ticks of 100 ms, 1-2 s with the lease).
FaultWindow inject(Fault kind, Cluster& c, Firewall& fw, std::mt19937_64& rng, Clock::time_point origin) {
  int lead = -1;
  REQUIRE_MESSAGE(waitFor([&] { return (lead = c.leader()) >= 0; }, 20s), "no leader before a fault\n" << c.logs());
  int target = lead;
  if (kind == Fault::PartitionFollower) target = (lead + 1 + static_cast<int>(rng() % 2)) % 3;
  Member& m = c.members[target];
  std::vector<int> others;
  for (int i = 0; i < 3; ++i)
    if (i != target) others.push_back(i);

  FaultWindow w;
  w.kind = kind;
  w.target = m.name;
  auto begins = [&] { w.start = micros(Clock::now(), origin); };  // once the fault is in effect
  switch (kind) {
    case Fault::KillLeader:
      m.kill9();
      begins();
      std::this_thread::sleep_for(1s);
      m.start();
      CHECK_MESSAGE(waitFor([&] { return !m.status().empty(); }, 20s), m.name << " did not come back\n" << c.logs());
      break;
    case Fault::StopLeader:
      // 1.5 to 2.5 s: sometimes the others have elected a leader by then, and the old one
      // wakes up to its proposals of a term that is over; sometimes not.
      m.proc->signal(SIGSTOP);
      begins();
      std::this_thread::sleep_for(std::chrono::milliseconds(1500 + rng() % 1000));
      m.proc->signal(SIGCONT);
      break;
    case Fault::PartitionFollower:
    case Fault::PartitionLeader:
    case Fault::DeafLeader:
      if (kind == Fault::DeafLeader)
        fw.deafen(m.raftPort);
      else
        fw.isolate(m.raftPort, m.gid);
      begins();
      std::this_thread::sleep_for(kind == Fault::PartitionFollower ? 3s : 4s);
      w.leaderMoved = c.leader(others) >= 0;
      w.dropped = fw.dropped();
      fw.heal();
      break;
  }
  w.end = micros(Clock::now(), origin);
  return w;
}

// ---- judging and reporting

// The longest time between two successful writes (Ok and applied, by completion) whose gap
// overlaps [from, to]; a gap still open at the end of the history counts up to `last`.
int64_t longestGap(const std::vector<int64_t>& writes, int64_t from, int64_t to, int64_t last) {
  int64_t longest = 0;
  int64_t prev = 0;  // the clients start at the origin
  for (size_t i = 0; i <= writes.size(); ++i) {
    int64_t next = i < writes.size() ? writes[i] : last;
    if (next > from && prev < to) longest = std::max(longest, next - prev);
    prev = next;
  }
  return longest;
}

nlohmann::json report(const Params& params, const Workload& w, const std::vector<FaultWindow>& faults,
                      const lincheck::Verdict& verdict, int64_t checkMs, int64_t runEnd) {
  nlohmann::json j;
  j["test"] = "raft-faults";
  j["seed"] = params.seed;
  j["fault_seconds"] = params.faultTime.count();
  j["raftd"] = raftdPath();
  std::map<std::string, uint64_t> ops;
  std::vector<int64_t> writes;
  for (auto& op : w.history) {
    const char* outcome = op.outcome == Outcome::Ok ? "ok" : op.outcome == Outcome::Failed ? "failed" : "unknown";
    ops[std::string(op.kind == Operation::Read ? "read_" : "txn_") + outcome]++;
    ops["total"]++;
    if (op.kind == Operation::Txn && op.outcome == Outcome::Ok && op.applied) {
      ops["txn_applied"]++;
      writes.push_back(op.complete);
    }
  }
  std::sort(writes.begin(), writes.end());
  j["ops"] = ops;
  j["answers"] = w.tally.answers;
  std::map<std::string, uint64_t> count, moved, dropped;
  std::map<std::string, double> gaps;
  for (auto& f : faults) {
    std::string name = faultName(f.kind);
    count[name]++;
    if (f.kind == Fault::PartitionLeader || f.kind == Fault::DeafLeader) moved[name] += f.leaderMoved;
    if (f.kind == Fault::PartitionFollower || f.kind == Fault::PartitionLeader || f.kind == Fault::DeafLeader) {
      dropped[name + "_to"] += f.dropped.atPort;
      if (f.kind != Fault::DeafLeader) dropped[name + "_from"] += f.dropped.fromMember;
    }
    double ms = static_cast<double>(longestGap(writes, f.start, f.end, runEnd)) / 1000.0;
    gaps[name] = std::max(gaps[name], ms);
  }
  j["faults"] = count;
  j["leader_moved"] = moved;
  j["dropped_packets"] = dropped;
  j["linearizable"] = verdict.linearizable;
  j["gave_up"] = verdict.gaveUp;
  j["states_explored"] = verdict.statesExplored;
  j["check_ms"] = checkMs;
  j["longest_write_gap_ms"] = gaps;
  return j;
}

// The history (by invocation, with each operation's error and member), the faults, the
// checker's explanation and the raftd logs; times are microseconds since `origin`.
void saveArtifacts(const Params& params, const Cluster& c, const Workload& w, const std::vector<FaultWindow>& faults,
                   const lincheck::Verdict& v, std::chrono::system_clock::time_point origin) {
  if (params.artifacts.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(params.artifacts, ec);
  std::ofstream h(params.artifacts + "/history.txt");
  std::vector<size_t> order(w.history.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return w.history[a].invoke < w.history[b].invoke; });
  for (size_t i : order) h << lincheck::describe(w.history[i]) << "    [" << w.notes[i] << "]\n";
  std::ofstream f(params.artifacts + "/faults.txt");
  auto unixMs = std::chrono::duration_cast<std::chrono::milliseconds>(origin.time_since_epoch()).count();
  f << "origin (time 0) is unix ms " << unixMs << "; seed " << params.seed << "\n";
  for (auto& x : faults)
    f << faultName(x.kind) << " " << x.target << " [" << x.start << ".." << x.end << "]"
      << (x.leaderMoved ? " leader moved" : "") << " dropped to/at its port " << x.dropped.atPort
      << ", from it " << x.dropped.fromMember << "\n";
  std::ofstream(params.artifacts + "/verdict.txt") << v.explanation << "\n";
  for (auto& m : c.members)
    std::filesystem::copy_file(m.log, params.artifacts + "/" + m.name + ".log",
                               std::filesystem::copy_options::overwrite_existing, ec);
}

// The Configs a member holds, read from its own copy: id -> (version, data).
std::map<std::string, std::pair<uint64_t, std::string>> configsOn(const Member& m) {
  std::map<std::string, std::pair<uint64_t, std::string>> out;
  bus::SyncClient c(kStoreProtocol);
  if (!c.connect(m.socket())) return out;
  auto r = c.call(listRequest(objects::ObjectKind::Config, /*local=*/true), 5s);
  if (!r) return out;
  auto* objs = r->as<storeapi::Envelope>()->body_as_ObjectsReply()->objects();
  if (objs)
    for (auto* o : *objs) {
      auto* cfg = flatbuffers::GetRoot<objects::Config>(o->data()->data());
      auto* d = cfg->spec()->data();
      out[cfg->id()->str()] = {cfg->meta()->version(), std::string(reinterpret_cast<const char*>(d->data()), d->size())};
    }
  return out;
}

bool nothingPending(const Member& m) {
  auto s = m.status();
  if (!s.contains("pending")) return false;
  auto& p = s["pending"];
  return p.value("proposals", -1) == 0 && p.value("reads", -1) == 0 && p.value("forwarded", -1) == 0;
}

// Linearizable reads of every key through every member, after the clients stopped: what the
// cluster settled on becomes part of the history the checker judges.
void finalReads(Cluster& c, Clock::time_point origin, Workload& w) {
  for (int i = 0; i < 3; ++i) {
    bus::SyncClient sc(kStoreProtocol);
    REQUIRE(sc.connect(c.members[i].socket()));
    Client reader;
    reader.id = 100 + i;
    for (int k = 0; k < kKeys; ++k) {
      Operation op;
      op.client = reader.id;
      op.kind = Operation::Read;
      op.key = keyId(k);
      op.invoke = micros(Clock::now(), origin);
      auto r = sc.call(requestFor(op), 5s);
      op.complete = micros(Clock::now(), origin);
      std::string note;
      record(reader, op, r, w.tally, note);
      w.history.push_back(op);
      w.notes.push_back("final read via " + c.members[i].name + (note.empty() ? "" : ": " + note));
    }
  }
}

TEST_CASE("raftd under SIGKILL, SIGSTOP and partitions: every history is linearizable") {
  REQUIRE_MESSAGE(::geteuid() == 0, "this test needs root: nftables rules and setpriv");
  REQUIRE_MESSAGE(::access("/usr/bin/setpriv", X_OK) == 0, "setpriv (util-linux) is missing");
  Params params = paramsFromEnv();
  MESSAGE("seed " << params.seed << " (SHOAL_FAULT_SEED), faults for " << params.faultTime.count() << " s");

  Cluster c;
  Firewall fw;
  Emergency emergency(fw.path(), fw.table(), c.dir.path());
  c.startThree();

  auto origin = Clock::now();
  auto wallOrigin = std::chrono::system_clock::now();
  std::vector<std::string> sockets;
  for (auto& m : c.members) sockets.push_back(m.socket());
  Workload w;
  std::atomic<bool> stop{false};
  std::thread clients([&] { runClients(params, sockets, stop, origin, w); });
  struct Joiner {
    std::atomic<bool>& stop;
    std::thread& t;
    ~Joiner() {
      stop = true;
      if (t.joinable()) t.join();
    }
  } joiner{stop, clients};

  // Faults run on this thread: the members it restarts are its children, and a child's
  // parent-death signal follows the thread that started it.
  std::mt19937_64 rng(params.seed);
  std::vector<FaultWindow> faults;
  auto deadline = Clock::now() + params.faultTime;
  std::this_thread::sleep_for(1s);  // healthy first
  for (size_t i = 0; i < 100'000 && (i < std::size(kFaults) || Clock::now() < deadline); ++i) {
    faults.push_back(inject(kFaults[i % std::size(kFaults)], c, fw, rng, origin));
    std::this_thread::sleep_for(1s);
  }
  // Healed: every member runs and is reachable. Writes go on for a while before the clients stop.
  for (auto& m : c.members) REQUIRE(m.proc->running());
  std::this_thread::sleep_for(3s);
  stop = true;
  clients.join();
  REQUIRE_MESSAGE(w.trouble.empty(), w.trouble);

  CHECK_MESSAGE(waitFor([&] { return c.leader() >= 0; }, 20s), c.logs());
  finalReads(c, origin, w);
  int64_t runEnd = micros(Clock::now(), origin);

  auto checkStart = Clock::now();
  auto verdict = lincheck::check(w.history);
  auto checkMs = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - checkStart).count();
  auto j = report(params, w, faults, verdict, checkMs, runEnd);
  std::cout << j.dump() << std::endl;
  saveArtifacts(params, c, w, faults, verdict, wallOrigin);

  CHECK_FALSE(verdict.gaveUp);
  CHECK_MESSAGE(verdict.linearizable, "seed " << params.seed << ": not linearizable\n"
                                              << verdict.explanation.substr(0, 20000));
  for (Fault f : kFaults) CHECK_MESSAGE(j["faults"].value(faultName(f), 0) >= 1, faultName(f) << " was not injected");
  // The partitions were ones: the rules dropped what was sent to the member and what it sent.
  for (auto& f : faults) {
    if (f.kind == Fault::KillLeader || f.kind == Fault::StopLeader) continue;
    CHECK_MESSAGE(f.dropped.atPort > 0, faultName(f.kind) << " of " << f.target << " dropped nothing sent to it");
    if (f.kind != Fault::DeafLeader)
      CHECK_MESSAGE(f.dropped.fromMember > 0, faultName(f.kind) << " of " << f.target << " dropped nothing it sent");
  }
  // Not vacuous: the clients read and wrote through the faults.
  CHECK(j["ops"].value("txn_applied", 0) >= 20);
  CHECK(j["ops"].value("read_ok", 0) >= 20);

  // All members converge: the same applied index, then the same objects in their own copies.
  CHECK_MESSAGE(waitFor([&] {
    std::set<int64_t> applied;
    for (auto& m : c.members) applied.insert(m.status().value("applied", int64_t{-1}));
    return applied.size() == 1 && *applied.begin() > 0;
  }, 30s), c.logs());
  auto reference = configsOn(c.members[0]);
  for (auto& m : c.members) CHECK_MESSAGE(configsOn(m) == reference, m.name << " holds other objects than n1");
  // Nothing is left waiting: every proposal, read and forwarded request was answered.
  for (auto& m : c.members)
    CHECK_MESSAGE(waitFor([&] { return nothingPending(m); }, 20s), m.name << " pending: " << m.status()["pending"].dump());
}

}  // namespace
}  // namespace shoal::raftd
