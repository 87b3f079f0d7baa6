// raftd's real shell under deterministic simulation (DESIGN.md §5, docs/raftd.md).
//
// raft-sim (sim.cpp) checks the pure core against a model of a shell. This runs the shell
// itself — RaftNode with its real LMDB stores in a temporary directory — for 3 or 5 nodes in
// one process, over a virtual clock and network (sim_host.h): messages are lost, duplicated,
// delayed and reordered, nodes are partitioned (both ways and one way) and crash and restart,
// keeping exactly what LMDB committed. Clients keep one operation each in flight — creates,
// updates with the version they last read (or a stale one), deletes, two-key transactions and
// linearizable reads of a few Config objects — and record what they learned. After the faults
// the network heals and the cluster settles; then:
//   - the clients' history is linearizable (tests/lincheck): an answer raftd gives that is
//     not the truth (an acknowledged write that never happened, a stale read, "failed" for a
//     write that was applied) shows up here;
//   - nothing waits in a node any more (Status pending.proposals, .reads, .forwarded), and
//     every call a living node was handed got exactly one answer;
//   - every node holds the same applied index and the same objects;
//   - a write succeeds after healing; at most one leader was seen per term, all along.
// The nemesis favours what broke before: crashes of a leader under load, quick restarts, a
// node in a crash loop (a late answer to its previous life's read must not release a read
// of this one), and a leader that restarts with a tail of its previous life's entries and
// leads again (their commit must not answer its new callers). Two in five seeds are mostly
// such bounces.
//
// A seed replays exactly (same seed, same trace digest: checked on the first seed of every
// run); a failure prints `replay: raft-shell-sim --seed S`.

#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>
#include <zmq.hpp>

#include "common/curve.h"
#include "objects_generated.h"
#include "services/raftd/protocols.h"
#include "services/raftd/store_client.h"
#include "tests/lincheck/lincheck.h"
#include "tests/raft/sim_host.h"

namespace shoal::raftd::sim {
namespace {

using lincheck::Outcome;

// --- what a run is made of ---------------------------------------------------------------

struct Options {
  uint64_t firstSeed = 1;
  uint64_t seeds = 200;
  double seconds = 0;  // of faults per seed; 0: the plan's own
  bool verbose = false;
  bool longRun = false;
  std::string logLevel = "off";
};

// What a seed draws before it starts.
struct Plan {
  int nodes = 3;
  int clients = 5;
  int keys = 4;
  uint64_t snapshotInterval = 100;
  uint64_t keepEntries = 20;
  Weather weather;              // between storms
  Clock::duration think{};      // longest pause between a client's operations
  int readShare = 35;           // percent of operations that are reads
  // Mostly leader bounces (Nemesis::bounceLeaderWithTail): few reads then, so that the
  // proposal sequences of a node's young lives start alike.
  bool bouncy = false;
  Clock::duration faults{};     // how long the nemesis acts
  // Clients go on after healing: first until what was in flight then has ended (a request or
  // a raft message lost in the last partition leaves its caller waiting out the client's
  // timeout, kClientTimeout), then 3 s in which a write must succeed (checkLiveness).
  Clock::duration tail = 3s + 3s;
  Clock::duration settle = 7s;  // then nothing new, and everything in flight ends
};

constexpr auto kClientTimeout = 3s;  // Plan::tail counts it
constexpr auto kRequestTimeout = 2s;  // NodeOptions::requestTimeout, below the client's

Plan drawPlan(uint64_t seed, const Options& opt) {
  Rng r(mixSeed(seed, 0x9a11));
  Plan p;
  p.nodes = r.chance(0.6) ? 3 : 5;
  p.clients = static_cast<int>(r.between(4, 6));
  p.keys = static_cast<int>(r.between(3, 5));
  p.snapshotInterval = r.between(50, 200);
  p.keepEntries = r.between(5, 40);
  p.weather.loss = r.chance(0.5) ? 0.0 : 0.01 * static_cast<double>(r.between(1, 5));
  p.weather.duplicate = r.chance(0.5) ? 0.0 : 0.01 * static_cast<double>(r.between(1, 4));
  p.weather.slow = 0.01;
  p.weather.maxDelay = r.between(Clock::duration(3ms), Clock::duration(20ms));
  p.think = r.between(Clock::duration(20ms), Clock::duration(150ms));
  p.bouncy = r.chance(0.4);
  if (p.bouncy) p.clients = static_cast<int>(r.between(5, 9));  // a longer tail, more callers
  p.readShare = p.bouncy && r.chance(0.7) ? 10 : 35;
  double seconds = opt.seconds > 0 ? opt.seconds : (opt.longRun ? 120.0 : 45.0);
  p.faults = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  return p;
}

// Everything a seed counts, summed over the run.
struct Counts {
  uint64_t ops = 0, ok = 0, unknown = 0, failed = 0;
  uint64_t crashes = 0, partitions = 0, bounces = 0, storms = 0;
  uint64_t snapshotsInstalled = 0, snapshotsTaken = 0;
  uint64_t states = 0;  // lincheck's, the most of any seed
  uint64_t messages = 0, events = 0;

  void add(const Counts& o) {
    ops += o.ops, ok += o.ok, unknown += o.unknown, failed += o.failed;
    crashes += o.crashes, partitions += o.partitions, bounces += o.bounces, storms += o.storms;
    snapshotsInstalled += o.snapshotsInstalled, snapshotsTaken += o.snapshotsTaken;
    states = std::max(states, o.states);
    messages += o.messages, events += o.events;
  }
};

struct Failures {
  std::vector<std::string> list;
  void add(std::string what) {
    if (list.size() < 20) list.push_back(std::move(what));
  }
  bool any() const { return !list.empty(); }
};

// raftd's log lines, captured with the virtual time: printed for a failing seed.
class LogCapture : public spdlog::sinks::base_sink<std::mutex> {
 public:
  const World* world = nullptr;
  std::vector<std::string> lines;

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    double t = world ? std::chrono::duration<double>(world->elapsed()).count() : 0;
    if (lines.size() < 200'000)
      lines.push_back(fmt::format("{:9.3f} {:<5} {}", t, spdlog::level::to_string_view(msg.level),
                                  std::string_view(msg.payload.data(), msg.payload.size())));
  }
  void flush_() override {}
};

std::shared_ptr<LogCapture> logCapture;

// A number in a node's Status, 0 when it is not there (a node installing a snapshot leaves
// out what it cannot read meanwhile).
uint64_t statusNumber(const nlohmann::json& j, const char* object, const char* key) {
  auto o = j.find(object);
  if (o == j.end() || !o->is_object()) return 0;
  auto v = o->find(key);
  return v != o->end() && v->is_number_unsigned() ? v->get<uint64_t>() : 0;
}

std::string keyId(int i) { return fmt::format("shellsimkey{:014d}", i); }  // 25 base36 chars
std::string keyName(int i) { return fmt::format("sim-key-{}", i); }

bus::Frame decodeStore(std::string_view bytes) {
  static const bus::Protocol* const kStore[] = {&kStoreProtocol};
  auto frame = bus::decode(zmq::message_t(bytes.data(), bytes.size()), kStore);
  assert(frame.ok());  // the sim's own requests, and the node's answers: verified below
  return std::move(frame).value();
}

Result<bus::Frame> decodeAnswer(std::string_view bytes) {
  static const bus::Protocol* const kStore[] = {&kStoreProtocol};
  return bus::decode(zmq::message_t(bytes.data(), bytes.size()), kStore);
}

// --- the cluster -------------------------------------------------------------------------

struct Member {
  int slot = 0;
  std::string address;
  std::string dir;
  int lives = 0;
  Incarnation incarnation = 0;
  std::unique_ptr<SimHost> host;
  std::unique_ptr<RaftNode> node;
  raft::NodeId raftId = 0;
  std::string key;  // a Z85 key for joinRaft's peers (the simulated network checks none)

  bool up() const { return node != nullptr; }
  std::string name() const { return "n" + std::to_string(slot + 1); }
};

class Cluster {
 public:
  Cluster(World& world, Network& net, Rng& rng, const Plan& plan, uint64_t seed,
          const std::string& root, Failures& failures, Counts& counts)
      : world_(world), net_(net), rng_(rng), plan_(plan), seed_(seed), failures_(failures),
        counts_(counts) {
    for (int i = 0; i < plan.nodes; ++i) {
      Member m;
      m.slot = i;
      m.address = fmt::format("n{}:2378", i + 1);
      m.dir = fmt::format("{}/n{}", root, i + 1);
      m.raftId = mixSeed(seed, static_cast<uint64_t>(i + 1), 0x1d);
      m.key = curve::generate().publicKey;
      members_.push_back(std::move(m));
    }
  }

  ~Cluster() { shutdown(); }

  // Ends every node, as a power cut would: what they still hold answers nobody.
  void shutdown() {
    for (auto& m : members_) world_.kill(m.incarnation);
    for (auto& m : members_) {
      if (m.host) m.host->die();
      m.node.reset();
      m.host.reset();
    }
  }

  std::vector<Member>& members() { return members_; }
  // Clients' operations in flight on an incarnation that dies become Unknown.
  std::function<void(Incarnation)> onCrash;

  Endpoint endpoint(const std::string& address) {
    for (auto& m : members_)
      if (m.address == address && m.up()) return {m.incarnation, m.node.get()};
    return {};
  }

  bool start(int slot);
  // The first life of the cluster: member 0 bootstraps, each other member is added by the
  // leader (AddMember) and then joins with member 0 as its peer, as swarm init and a manager
  // join do. False (and a failure recorded) when a step is refused.
  bool bootstrap();
  bool join(int slot);
  void crash(int slot);
  int down() const;
  Member* leader();
  nlohmann::json status(const Member& m) const;
  // Samples who leads: two leaders of one term is the one thing Raft must never allow.
  void checkLeaders();
  void countSnapshots(const Member& m);

 private:
  NodeOptions options(const Member& m) const;

  World& world_;
  Network& net_;
  Rng& rng_;
  const Plan& plan_;
  uint64_t seed_;
  Failures& failures_;
  Counts& counts_;
  std::vector<Member> members_;
  std::map<uint64_t, raft::NodeId> leaderOfTerm_;
};

NodeOptions Cluster::options(const Member& m) const {
  NodeOptions o;
  o.snapshotInterval = plan_.snapshotInterval;
  o.keepEntries = plan_.keepEntries;
  o.requestTimeout = kRequestTimeout;
  o.maxStoreBytes = size_t{256} << 20;
  // Each life is a new process with new randomness (its boot id, its election timeouts).
  o.seed = mixSeed(seed_, static_cast<uint64_t>(m.slot + 1), static_cast<uint64_t>(m.lives));
  return o;
}

bool Cluster::start(int slot) {
  Member& m = members_[static_cast<size_t>(slot)];
  if (m.up()) return true;
  std::error_code ec;
  std::filesystem::create_directories(m.dir, ec);  // the daemon's state dir exists before it
  ++m.lives;
  m.incarnation = world_.born();
  m.host = std::make_unique<SimHost>(world_, net_, rng_, m.address, m.incarnation);
  m.host->onFatal = [this, slot, name = m.name()](const std::string& why) {
    failures_.add(fmt::format("{} stopped (NodeHost::fatal) at {:.3f}s: {}", name,
                              std::chrono::duration<double>(world_.elapsed()).count(), why));
    world_.at(world_.now(), 0, [this, slot] { crash(slot); });
  };
  auto node = RaftNode::open(*m.host, m.dir, options(m));
  if (!node) {
    failures_.add(fmt::format("{} (life {}) does not open: {}", m.name(), m.lives, node.error().message));
    world_.kill(m.incarnation);
    m.host.reset();
    return false;
  }
  m.node = std::move(node).value();
  world_.trace(0x57a27, static_cast<uint64_t>(slot), m.node->id());
  return true;
}

bool Cluster::bootstrap() {
  Member& m = members_[0];
  if (auto st = m.node->bootstrap(m.raftId, mixSeed(seed_, 0xc1), m.address, m.address); !st) {
    failures_.add(fmt::format("{} does not bootstrap: {}", m.name(), st.error().message));
    return false;
  }
  return true;
}

bool Cluster::join(int slot) {
  Member& first = members_[0];
  Member& m = members_[static_cast<size_t>(slot)];
  if (m.node->inCluster()) return true;
  // AddMember on the leader (member 0, which bootstrapped), as dispatcherd sends it.
  auto request = addMemberRequest(m.raftId, m.address);
  bus::setHeader(request, 1, wire::Kind::Request, 5000, 0);
  std::optional<Result<bus::Frame>> answer;
  net_.dispatch({first.incarnation, first.node.get()},
                std::string_view(reinterpret_cast<const char*>(request.data()), request.size()),
                [&answer](std::string_view bytes) { answer.emplace(decodeAnswer(bytes)); });
  for (int i = 0; i < 1000 && !answer; ++i) world_.runFor(10ms);
  if (!answer || !*answer || ((*answer)->error() && (*answer)->error()->code() != wire::ErrorCode::None)) {
    failures_.add(fmt::format("{} was not added as a member: {}", m.name(),
                              !answer ? "no answer"
                              : !*answer ? answer->error().message
                                         : bus::errorFrom(**answer).message));
    return false;
  }
  auto st = m.node->joinRaft(m.raftId, mixSeed(seed_, 0xc1), m.address, m.address,
                             {{first.raftId, first.address, first.key}});
  if (!st) {
    failures_.add(fmt::format("{} does not join: {}", m.name(), st.error().message));
    return false;
  }
  return true;
}

void Cluster::countSnapshots(const Member& m) {
  auto j = status(m);
  counts_.snapshotsInstalled += statusNumber(j, "snapshot", "installed");
  counts_.snapshotsTaken += statusNumber(j, "snapshot", "taken");
}

void Cluster::crash(int slot) {
  Member& m = members_[static_cast<size_t>(slot)];
  if (!m.up()) return;
  countSnapshots(m);
  // Dead first: whatever the node does while it is destroyed (failing its callers, cancelling
  // timers) reaches nobody, as nothing leaves a killed process.
  world_.kill(m.incarnation);
  m.host->die();
  m.node.reset();
  m.host.reset();
  ++counts_.crashes;
  world_.trace(0xc4a5, static_cast<uint64_t>(slot));
  if (onCrash) onCrash(m.incarnation);
  // The kernel closes the dead process's connections: its peers hear of it at once.
  for (auto& o : members_) {
    if (!o.up() || !o.host->connected().count(m.address)) continue;
    world_.at(world_.now() + rng_.between(Clock::duration(0ms), Clock::duration(2ms)),
              o.incarnation, [node = o.node.get(), address = m.address] {
                node->peerDisconnected(address);
              });
  }
}

int Cluster::down() const {
  return static_cast<int>(std::count_if(members_.begin(), members_.end(),
                                        [](const Member& m) { return !m.up(); }));
}

nlohmann::json Cluster::status(const Member& m) const {
  nlohmann::json j;
  m.node->status(j);
  return j;
}

Member* Cluster::leader() {
  Member* best = nullptr;
  uint64_t bestTerm = 0;
  for (auto& m : members_) {
    if (!m.up() || m.node->role() != raft::Role::Leader) continue;
    uint64_t term = status(m).value("term", uint64_t{0});
    if (!best || term > bestTerm) best = &m, bestTerm = term;
  }
  return best;
}

void Cluster::checkLeaders() {
  for (auto& m : members_) {
    if (!m.up() || m.node->role() != raft::Role::Leader) continue;
    uint64_t term = status(m).value("term", uint64_t{0});
    if (term == 0) continue;  // not in its Status now (installing a snapshot)
    auto [it, fresh] = leaderOfTerm_.emplace(term, m.node->id());
    if (!fresh && it->second != m.node->id())
      failures_.add(fmt::format("two leaders in term {}: node {:x} and node {:x} ({}) at {:.3f}s",
                                term, it->second, m.node->id(), m.name(),
                                std::chrono::duration<double>(world_.elapsed()).count()));
  }
}

// --- clients -----------------------------------------------------------------------------

// What a client believes about a key, from its own answers.
struct Known {
  bool exists = false;
  uint64_t version = 0;
  bool sure = true;            // false after an answer that left it unsure: read first
  std::vector<uint64_t> seen;  // versions it saw: the stale ones it sometimes sends
};

class Clients {
 public:
  Clients(World& world, Cluster& cluster, Rng& rng, const Plan& plan, Failures& failures)
      : world_(world), cluster_(cluster), rng_(rng), plan_(plan), failures_(failures) {
    for (int i = 0; i < plan.keys; ++i) keys_.push_back(keyId(i + 1));
    for (int c = 0; c < plan.clients; ++c) {
      Client cl;
      cl.id = c + 1;
      cl.sticky = static_cast<int>(rng_.below(static_cast<uint64_t>(plan.nodes)));
      clients_.push_back(std::move(cl));
    }
  }

  void start() {
    for (size_t c = 0; c < clients_.size(); ++c)
      world_.at(world_.now() + rng_.between(Clock::duration(0ms), plan_.think), 0,
                [this, c] { issue(c); });
  }
  void stop() { stopped_ = true; }
  void nodeCrashed(Incarnation incarnation);

  std::vector<lincheck::Operation>& history() { return history_; }
  int64_t stamp();
  // Every call a node that still lives was handed got exactly one answer.
  void checkAnswered(const World& world);
  bool inFlight() const;

 private:
  struct InFlight {
    size_t op;
    size_t call;
    uint64_t timer;
  };
  struct Client {
    int id = 0;
    int sticky = 0;
    uint64_t written = 0;
    int refusals = 0;  // Failed answers in a row
    std::map<std::string, Known> known;
    std::optional<InFlight> op;
  };
  // A call handed to a node: who, and how many answers it got.
  struct CallRecord {
    Incarnation target;
    std::string node;
    size_t op;
    int answers = 0;
  };

  void issue(size_t c);
  Member* pickNode(Client& cl);
  bus::Buffer draw(Client& cl, lincheck::Operation& op);
  lincheck::Change change(Client& cl, const std::string& key);
  void answered(size_t c, size_t call, std::string_view envelope);
  void classify(lincheck::Operation& op, std::string_view envelope);
  void classifyError(lincheck::Operation& op, const Error& e);
  void finish(size_t c, Outcome unknownOrNot);
  void learn(Client& cl, const lincheck::Operation& op);

  World& world_;
  Cluster& cluster_;
  Rng& rng_;
  const Plan& plan_;
  Failures& failures_;
  std::vector<std::string> keys_;
  std::vector<Client> clients_;
  std::vector<lincheck::Operation> history_;
  std::vector<CallRecord> calls_;
  uint64_t nextRequest_ = 1;
  int64_t lastStamp_ = 0;
  bool stopped_ = false;
};

int64_t Clients::stamp() {
  // Virtual nanoseconds, strictly increasing: two things at one virtual instant still
  // happened in the order the world ran them.
  int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(world_.elapsed()).count();
  lastStamp_ = std::max(lastStamp_ + 1, ns);
  return lastStamp_;
}

Member* Clients::pickNode(Client& cl) {
  auto& ms = cluster_.members();
  if (ms[static_cast<size_t>(cl.sticky)].up() && rng_.chance(0.85))
    return &ms[static_cast<size_t>(cl.sticky)];
  std::vector<int> up;
  for (auto& m : ms)
    if (m.up()) up.push_back(m.slot);
  if (up.empty()) return nullptr;
  cl.sticky = up[rng_.below(up.size())];
  return &ms[static_cast<size_t>(cl.sticky)];
}

lincheck::Change Clients::change(Client& cl, const std::string& key) {
  Known& k = cl.known[key];
  lincheck::Change ch;
  ch.key = key;
  if (!k.exists) {
    ch.kind = lincheck::Change::Create;
  } else if (rng_.chance(0.12)) {
    ch.kind = lincheck::Change::Delete;
    ch.expectedVersion = k.version;
  } else {
    ch.kind = lincheck::Change::Update;
    ch.expectedVersion = k.version;
  }
  // Sometimes a version it saw before: the store must refuse it (or, if the object came back
  // to that version... it cannot: versions are raft indexes and only grow).
  if (!k.seen.empty() && rng_.chance(0.08)) {
    if (ch.kind == lincheck::Change::Create) ch.kind = lincheck::Change::Update;
    ch.expectedVersion = k.seen[rng_.below(k.seen.size())];
  }
  if (ch.kind != lincheck::Change::Delete) ch.value = fmt::format("c{}-{}", cl.id, ++cl.written);
  return ch;
}

objects::Operation wireOperation(lincheck::Change::Kind k) {
  switch (k) {
    case lincheck::Change::Create: return objects::Operation::Create;
    case lincheck::Change::Update: return objects::Operation::Update;
    case lincheck::Change::Delete: return objects::Operation::Delete;
  }
  return objects::Operation::Create;
}

std::string nameOfKey(const std::string& id) {
  return keyName(std::stoi(id.substr(std::string("shellsimkey").size())));
}

bus::Buffer Clients::draw(Client& cl, lincheck::Operation& op) {
  size_t k = rng_.below(keys_.size());
  const std::string& key = keys_[k];
  uint64_t r = rng_.below(100);
  uint64_t reads = static_cast<uint64_t>(plan_.readShare);
  if (r < reads || (!cl.known[key].sure && r < reads + 40)) {
    op.kind = lincheck::Operation::Read;
    op.key = key;
    return getRequest(objects::ObjectKind::Config, key, false);
  }
  op.kind = lincheck::Operation::Txn;
  op.changes.push_back(change(cl, key));
  if (r >= 92) op.changes.push_back(change(cl, keys_[(k + 1 + rng_.below(keys_.size() - 1)) % keys_.size()]));
  std::vector<ChangeSpec> specs;
  for (auto& ch : op.changes)
    specs.push_back({objects::ObjectKind::Config, wireOperation(ch.kind), ch.key, ch.expectedVersion,
                     ch.kind == lincheck::Change::Delete
                         ? std::string()
                         : configObject(ch.key, nameOfKey(ch.key), ch.value, ch.expectedVersion)});
  return txnRequest(specs);
}

void Clients::issue(size_t c) {
  if (stopped_) return;
  Client& cl = clients_[c];
  Member* m = pickNode(cl);
  if (!m) {
    world_.at(world_.now() + 50ms, 0, [this, c] { issue(c); });
    return;
  }
  lincheck::Operation op;
  bus::Buffer request = draw(cl, op);
  op.client = cl.id;
  op.invoke = stamp();
  size_t opIndex = history_.size();
  history_.push_back(std::move(op));
  size_t callIndex = calls_.size();
  calls_.push_back({m->incarnation, m->name(), opIndex});
  // As bus::Client::call sends it: a request id and the caller's deadline in the header.
  bus::setHeader(request, nextRequest_++, wire::Kind::Request,
                 static_cast<uint32_t>(std::chrono::milliseconds(kClientTimeout).count()), 0);
  uint64_t timer = world_.at(world_.now() + kClientTimeout, 0, [this, c, callIndex] {
    if (clients_[c].op && clients_[c].op->call == callIndex) finish(c, Outcome::Unknown);
  });
  cl.op = InFlight{opIndex, callIndex, timer};
  auto frame = decodeStore({reinterpret_cast<const char*>(request.data()), request.size()});
  // The hop from client to node has no faults: the node's own socket (raftd.sock).
  m->node->serveStore(bus::Call::local(std::move(frame), [this, c, callIndex](std::string_view env) {
    answered(c, callIndex, env);
  }));
}

void Clients::answered(size_t c, size_t call, std::string_view envelope) {
  CallRecord& rec = calls_[call];
  if (!world_.alive(rec.target)) return;  // nothing leaves a killed process
  if (++rec.answers > 1) {
    failures_.add(fmt::format("{} answered a call twice: {}", rec.node,
                              lincheck::describe(history_[rec.op])));
    return;
  }
  Client& cl = clients_[c];
  if (!cl.op || cl.op->call != call) return;  // the client gave up on it already
  world_.trace(0xa45, call, envelope.size());
  classify(history_[rec.op], envelope);
  finish(c, history_[rec.op].outcome);
}

void Clients::classify(lincheck::Operation& op, std::string_view envelope) {
  auto frame = decodeAnswer(envelope);
  if (!frame) {
    failures_.add("an answer to a client does not decode: " + frame.error().message);
    op.outcome = Outcome::Unknown;
    return;
  }
  if (frame->kind() == wire::Kind::Error) return classifyError(op, bus::errorFrom(*frame));
  auto* env = frame->as<storeapi::Envelope>();
  op.outcome = Outcome::Ok;
  if (op.kind == lincheck::Operation::Txn) {
    auto* r = env->body_as_TxnReply();
    if (!r) return failures_.add("a transaction was answered without a TxnReply");
    op.applied = true;
    op.index = r->index();
    return;
  }
  auto* r = env->body_as_ObjectsReply();
  if (!r || !r->objects() || r->objects()->size() != 1 || !r->objects()->Get(0)->data())
    return failures_.add("a Get was answered without exactly one object");
  auto* data = r->objects()->Get(0)->data();
  flatbuffers::Verifier v(data->data(), data->size());
  if (!v.VerifyBuffer<objects::Config>(nullptr))
    return failures_.add("a Get was answered with an object that is not a Config");
  auto* cfg = flatbuffers::GetRoot<objects::Config>(data->data());
  op.found = true;
  op.version = cfg->meta() ? cfg->meta()->version() : 0;
  if (cfg->spec() && cfg->spec()->data())
    op.value.assign(reinterpret_cast<const char*>(cfg->spec()->data()->data()), cfg->spec()->data()->size());
}

// What an error tells: the store refused the transaction when it applied it (Ok, not
// applied: the checker verifies the refusal), it may or may not have happened (Unknown), or
// it certainly did not (Failed). Exact on purpose: a wrong code from raftd must show up as a
// history that is not linearizable.
void Clients::classifyError(lincheck::Operation& op, const Error& e) {
  auto code = static_cast<wire::ErrorCode>(e.code);
  bool txn = op.kind == lincheck::Operation::Txn;
  switch (code) {
    case wire::ErrorCode::Conflict:
      if (!txn) break;
      op.outcome = Outcome::Ok;
      op.applied = false;
      return;
    case wire::ErrorCode::NotFound:
      op.outcome = Outcome::Ok;
      op.applied = false;
      op.found = false;
      return;
    case wire::ErrorCode::Indeterminate:
    case wire::ErrorCode::DeadlineExceeded:
    case wire::ErrorCode::Cancelled:
      op.outcome = Outcome::Unknown;
      return;
    case wire::ErrorCode::NotLeader:
    case wire::ErrorCode::Unavailable:
    case wire::ErrorCode::ResourceExhausted:
    case wire::ErrorCode::InvalidArgument:
      op.outcome = Outcome::Failed;
      return;
    default:
      break;
  }
  op.outcome = Outcome::Unknown;
  failures_.add(fmt::format("unexpected error {} ({}) for {}", bus::errorCodeName(code), e.message,
                            lincheck::describe(op)));
}

void Clients::finish(size_t c, Outcome outcome) {
  Client& cl = clients_[c];
  lincheck::Operation& op = history_[cl.op->op];
  op.outcome = outcome;
  op.complete = stamp();
  world_.cancel(cl.op->timer);
  cl.op.reset();
  learn(cl, op);
  // After a failure a client tries elsewhere: often where the leader is (as a client that
  // follows Status' leader_address would), else anywhere.
  if (outcome != Outcome::Ok && rng_.chance(0.6)) {
    Member* leader = rng_.chance(0.6) ? cluster_.leader() : nullptr;
    cl.sticky = leader ? leader->slot : static_cast<int>(rng_.below(static_cast<uint64_t>(plan_.nodes)));
  }
  // A client told to retry backs off, more each time in a row (up to a second).
  cl.refusals = outcome == Outcome::Failed ? std::min(cl.refusals + 1, 6) : 0;
  auto backoff = Clock::duration(10ms) * (1 << cl.refusals);
  auto pause = cl.refusals ? rng_.between(backoff / 2, backoff)
                           : rng_.between(Clock::duration(0ms), plan_.think);
  world_.at(world_.now() + pause, 0, [this, c] { issue(c); });
}

void Clients::learn(Client& cl, const lincheck::Operation& op) {
  if (op.kind == lincheck::Operation::Read) {
    Known& k = cl.known[op.key];
    if (op.outcome != Outcome::Ok) return;
    k = {op.found, op.version, true, std::move(k.seen)};
    if (op.found) k.seen.push_back(op.version);
    return;
  }
  if (op.outcome == Outcome::Failed) return;  // nothing happened
  for (auto& ch : op.changes) {
    Known& k = cl.known[ch.key];
    if (op.outcome != Outcome::Ok || !op.applied) {
      k.sure = false;
      continue;
    }
    k.exists = ch.kind != lincheck::Change::Delete;
    k.version = op.index;
    k.sure = true;
    k.seen.push_back(op.index);
  }
}

void Clients::nodeCrashed(Incarnation incarnation) {
  for (size_t c = 0; c < clients_.size(); ++c)
    if (clients_[c].op && calls_[clients_[c].op->call].target == incarnation)
      finish(c, Outcome::Unknown);
}

bool Clients::inFlight() const {
  return std::any_of(clients_.begin(), clients_.end(), [](const Client& c) { return c.op.has_value(); });
}

void Clients::checkAnswered(const World& world) {
  int reported = 0;
  for (auto& rec : calls_) {
    if (rec.answers > 0 || !world.alive(rec.target) || reported++ >= 3) continue;
    failures_.add(fmt::format("{} never answered a call it still holds: {}", rec.node,
                              lincheck::describe(history_[rec.op])));
  }
}

// --- the nemesis -------------------------------------------------------------------------

class Nemesis {
 public:
  Nemesis(World& world, Network& net, Cluster& cluster, Rng& rng, const Plan& plan,
          Counts& counts, bool verbose)
      : world_(world), net_(net), cluster_(cluster), rng_(rng), plan_(plan), counts_(counts),
        verbose_(verbose) {}

  void start(Clock::time_point until) {
    until_ = until;
    net_.weather = plan_.weather;
    later(rng_.between(Clock::duration(200ms), Clock::duration(1s)), [this] { next(); });
  }
  // Ends every fault: cuts healed, calm weather, every node up.
  void healAll();

 private:
  void next();
  void later(Clock::duration d, std::function<void()> fn);
  void log(const std::string& what);
  bool mayCrash() const { return cluster_.down() + 1 <= (plan_.nodes - 1) / 2; }
  bool up(int slot) { return cluster_.members()[static_cast<size_t>(slot)].up(); }
  void crashFor(int slot, Clock::duration downFor, std::function<void()> thenUp = {});
  Clock::duration restartDelay();
  void isolate(int slot, bool in, bool out, Clock::duration d);
  void bounceLeaderWithTail(int leader, int again);
  void whenLeading(int slot, Clock::time_point giveUp, std::function<void()> fn);
  void flap(int slot, int times);
  void storm();
  int randomSlot() { return static_cast<int>(rng_.below(static_cast<uint64_t>(plan_.nodes))); }
  int leaderSlot() {
    Member* l = cluster_.leader();
    return l ? l->slot : -1;
  }
  const std::string& address(int slot) { return cluster_.members()[static_cast<size_t>(slot)].address; }

  World& world_;
  Network& net_;
  Cluster& cluster_;
  Rng& rng_;
  const Plan& plan_;
  Counts& counts_;
  bool verbose_;
  Clock::time_point until_;
  Clock::time_point chainUntil_;  // a chain of bounces is under way
  bool healed_ = false;
};

// Runs fn after d unless everything has healed meanwhile.
void Nemesis::later(Clock::duration d, std::function<void()> fn) {
  world_.at(world_.now() + d, 0, [this, fn = std::move(fn)] {
    if (!healed_) fn();
  });
}

void Nemesis::log(const std::string& what) {
  if (verbose_)
    fmt::print("  {:8.3f}s {}\n", std::chrono::duration<double>(world_.elapsed()).count(), what);
}

std::string ms(Clock::duration d) {
  return fmt::format("{}ms", std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
}

void Nemesis::next() {
  if (world_.now() >= until_) return;
  later(rng_.between(Clock::duration(200ms), Clock::duration(1500ms)), [this] { next(); });
  // A bouncy seed's chains run alone: another fault would end them before their last life.
  if (plan_.bouncy && world_.now() < chainUntil_) return;
  uint64_t r = rng_.below(100);
  int leader = leaderSlot();
  if (plan_.bouncy && r < 70) {
    if (mayCrash() && leader >= 0) bounceLeaderWithTail(leader, static_cast<int>(rng_.between(1, 6)));
  } else if (r < 14 && mayCrash()) {
    crashFor(randomSlot(), restartDelay());
  } else if (r < 30 && mayCrash() && leader >= 0) {
    crashFor(leader, restartDelay());  // under load: its entries in flight
  } else if (r < 48 && mayCrash() && leader >= 0) {
    bounceLeaderWithTail(leader, static_cast<int>(rng_.between(1, 4)));
  } else if (r < 56 && mayCrash()) {
    flap(leader >= 0 && rng_.chance(0.3) ? leader : randomSlot(), static_cast<int>(rng_.between(2, 5)));
  } else if (r < 68) {
    isolate(randomSlot(), true, true, rng_.between(Clock::duration(300ms), Clock::duration(3s)));
  } else if (r < 78 && leader >= 0) {
    isolate(leader, true, true, rng_.between(Clock::duration(300ms), Clock::duration(3s)));
  } else if (r < 90) {
    bool in = rng_.chance(0.5);
    isolate(leader >= 0 && rng_.chance(0.5) ? leader : randomSlot(), in, !in,
            rng_.between(Clock::duration(300ms), Clock::duration(3s)));
  } else {
    storm();
  }
}

Clock::duration Nemesis::restartDelay() {
  // Quick restarts matter most: the new life meets messages and commits of the old one.
  uint64_t r = rng_.below(100);
  if (r < 45) return rng_.between(Clock::duration(5ms), Clock::duration(150ms));
  if (r < 85) return rng_.between(Clock::duration(150ms), Clock::duration(1500ms));
  return rng_.between(Clock::duration(1500ms), Clock::duration(5s));
}

void Nemesis::crashFor(int slot, Clock::duration downFor, std::function<void()> thenUp) {
  if (!up(slot)) return;
  log(fmt::format("crash n{} for {}", slot + 1, ms(downFor)));
  cluster_.crash(slot);
  later(downFor, [this, slot, thenUp = std::move(thenUp)] {
    log(fmt::format("restart n{}", slot + 1));
    if (cluster_.start(slot) && thenUp) thenUp();
  });
}

void Nemesis::isolate(int slot, bool in, bool out, Clock::duration d) {
  log(fmt::format("cut n{}{}{} for {}", slot + 1, in ? " in" : "", out ? " out" : "", ms(d)));
  ++counts_.partitions;
  std::vector<std::pair<std::string, std::string>> cuts;
  for (auto& m : cluster_.members()) {
    if (m.slot == slot) continue;
    if (in) cuts.emplace_back(m.address, address(slot));
    if (out) cuts.emplace_back(address(slot), m.address);
  }
  for (auto& [a, b] : cuts) net_.cut(a, b);
  later(d, [this, cuts] {
    for (auto& [a, b] : cuts) net_.restore(a, b);
  });
}

// A leader that cannot replicate for a moment holds a tail of entries only it has; it
// crashes, the followers that could outvote it are cut off, and it restarts at once. Only it
// can win the next election (its log is the longest of a majority), so its previous life's
// entries commit under its new life. Bounced again as soon as it leads, its lives are young,
// and their proposal sequences start alike; the last life is held back from replicating for
// a moment too, but not crashed: its new callers wait on it when the entries of the life
// before commit. An answer to them must come from their own entries.
void Nemesis::bounceLeaderWithTail(int leader, int again) {
  if (!up(leader)) return;
  ++counts_.bounces;
  chainUntil_ = world_.now() + 7s;  // ended sooner by its last step
  auto hold = again > 0 ? rng_.between(Clock::duration(30ms), Clock::duration(400ms))
                        : rng_.between(Clock::duration(100ms), Clock::duration(800ms));
  log(fmt::format("bounce leader n{} with a tail of {}{}", leader + 1, ms(hold), again > 0 ? "" : ", last"));
  isolate(leader, false, true, hold);
  if (again <= 0) {
    chainUntil_ = world_.now() + hold;
    return;
  }
  later(hold, [this, leader, again] {
    if (!up(leader) || !mayCrash()) return;
    // Cut off enough followers that the rest cannot elect one of their own.
    std::vector<int> followers;
    for (auto& m : cluster_.members())
      if (m.slot != leader) followers.push_back(m.slot);
    for (int i = 0; i < (plan_.nodes - 1) / 2; ++i) {
      size_t pick = rng_.below(followers.size());
      isolate(followers[pick], true, true, rng_.between(Clock::duration(2500ms), Clock::duration(5s)));
      followers.erase(followers.begin() + static_cast<long>(pick));
    }
    crashFor(leader, rng_.between(Clock::duration(5ms), Clock::duration(120ms)), [this, leader, again] {
      whenLeading(leader, world_.now() + 5s, [this, leader, again] { bounceLeaderWithTail(leader, again - 1); });
    });
  });
}

// Runs fn as soon as the node at slot leads (checked every virtual millisecond: before its
// first entry commits).
void Nemesis::whenLeading(int slot, Clock::time_point giveUp, std::function<void()> fn) {
  if (world_.now() > giveUp || !up(slot)) return;
  if (cluster_.members()[static_cast<size_t>(slot)].node->role() == raft::Role::Leader) return fn();
  later(1ms, [this, slot, giveUp, fn = std::move(fn)] { whenLeading(slot, giveUp, fn); });
}

// A node in a crash loop: short lives, quick restarts. A late answer to a read one life
// asked must not release a read of the next.
void Nemesis::flap(int slot, int times) {
  if (times <= 0 || !mayCrash()) return;
  crashFor(slot, rng_.between(Clock::duration(2ms), Clock::duration(30ms)), [this, slot, times] {
    later(rng_.between(Clock::duration(10ms), Clock::duration(150ms)),
          [this, slot, times] { flap(slot, times - 1); });
  });
}

void Nemesis::storm() {
  ++counts_.storms;
  Weather w = plan_.weather;
  w.loss = 0.05 + 0.01 * static_cast<double>(rng_.below(20));
  w.duplicate = 0.01 * static_cast<double>(rng_.below(10));
  w.slow = 0.02 + 0.01 * static_cast<double>(rng_.below(8));
  w.maxDelay = rng_.between(Clock::duration(10ms), Clock::duration(60ms));
  auto d = rng_.between(Clock::duration(500ms), Clock::duration(3s));
  log(fmt::format("storm for {}: loss {:.2f} dup {:.2f} slow {:.2f}", ms(d), w.loss, w.duplicate, w.slow));
  net_.weather = w;
  later(d, [this] { net_.weather = plan_.weather; });
}

void Nemesis::healAll() {
  healed_ = true;
  log("heal: every cut restored, calm network, every node up");
  net_.healAll();
  net_.weather = Weather{};
  for (auto& m : cluster_.members())
    if (!m.up()) cluster_.start(m.slot);
}

// --- one seed ----------------------------------------------------------------------------

struct SeedResult {
  uint64_t seed = 0;
  Plan plan;
  Failures failures;
  Counts counts;
  uint64_t digest = 0;
  double wallSeconds = 0;
};

// The state directory of a seed, removed however the seed ends.
class TempDir {
 public:
  explicit TempDir(uint64_t seed) {
    std::string base = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
    path_ = fmt::format("{}/raft-shell-sim.{}/seed-{}", base, getpid(), seed);
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
    std::filesystem::create_directories(path_, ec);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
    std::filesystem::remove(std::filesystem::path(path_).parent_path(), ec);  // if empty
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class SeedRun {
 public:
  SeedRun(uint64_t seed, const Options& opt)
      : seed_(seed), opt_(opt), plan_(drawPlan(seed, opt)), dir_(seed),
        netRng_(mixSeed(seed, 1)), hostRng_(mixSeed(seed, 2)), clientRng_(mixSeed(seed, 3)),
        nemesisRng_(mixSeed(seed, 4)),
        net_(world_, netRng_, [this](const std::string& a) { return cluster_.endpoint(a); }),
        cluster_(world_, net_, hostRng_, plan_, seed, dir_.path(), result_.failures, result_.counts),
        clients_(world_, cluster_, clientRng_, plan_, result_.failures),
        nemesis_(world_, net_, cluster_, nemesisRng_, plan_, result_.counts, opt.verbose) {
    cluster_.onCrash = [this](Incarnation inc) { clients_.nodeCrashed(inc); };
    if (logCapture) logCapture->world = &world_;
  }
  ~SeedRun() {
    cluster_.shutdown();  // before the clients whose calls the nodes hold
    if (logCapture) logCapture->world = nullptr;
  }

  SeedResult run();

 private:
  bool form();
  void settleAndCheck(Clock::time_point healedAt);
  void checkPending();
  void checkConverged();
  void checkLiveness(int64_t healedStamp);
  void checkHistory();
  std::optional<std::string> askLocally(Member& m, bus::Buffer request);

  uint64_t seed_;
  Options opt_;
  Plan plan_;
  SeedResult result_;
  TempDir dir_;
  World world_;
  Rng netRng_, hostRng_, clientRng_, nemesisRng_;
  Network net_;
  Cluster cluster_;
  Clients clients_;
  Nemesis nemesis_;
};

// Starts every node: the first bootstraps, the others join through it and are promoted.
bool SeedRun::form() {
  for (int i = 0; i < plan_.nodes; ++i)
    if (!cluster_.start(i)) return false;
  if (!cluster_.bootstrap()) return false;
  for (int i = 1; i < plan_.nodes; ++i)
    if (!cluster_.join(i)) return false;
  for (int step = 0; step < 300; ++step) {
    world_.runFor(100ms);
    Member* l = cluster_.leader();
    if (!l) continue;
    auto j = cluster_.status(*l);
    int voters = 0;
    for (auto& m : j["members"])
      if (m.value("suffrage", "") == "voter") ++voters;
    if (voters == plan_.nodes) return true;
  }
  result_.failures.add(fmt::format("the cluster did not form in 30s: {} nodes never all voters",
                                   plan_.nodes));
  return false;
}

SeedResult SeedRun::run() {
  auto wallStart = std::chrono::steady_clock::now();
  result_.seed = seed_;
  result_.plan = plan_;
  if (form()) {
    world_.every(20ms, 0, [this] { cluster_.checkLeaders(); });
    clients_.start();
    nemesis_.start(world_.now() + plan_.faults);
    world_.runFor(plan_.faults);
    nemesis_.healAll();
    settleAndCheck(world_.now());
  }
  for (auto& p : net_.problems) result_.failures.add(p);
  result_.counts.events = world_.eventsRun();
  result_.counts.messages = net_.stats().sent;
  result_.digest = world_.digest();
  result_.wallSeconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wallStart).count();
  return result_;
}

void SeedRun::settleAndCheck(Clock::time_point healedAt) {
  int64_t healedStamp = clients_.stamp();
  world_.runUntil(healedAt + plan_.tail);
  clients_.stop();
  world_.runFor(plan_.settle);
  if (clients_.inFlight()) result_.failures.add("a client operation never ended (no answer, no timeout)");
  clients_.checkAnswered(world_);
  checkPending();
  checkConverged();
  checkLiveness(healedStamp);
  for (auto& m : cluster_.members())
    if (m.up()) cluster_.countSnapshots(m);
  checkHistory();
}

// After settling nothing may wait in a node: a proposal, a read or a forwarded request
// still held is a caller that never hears back (or a leak that grows).
void SeedRun::checkPending() {
  for (auto& m : cluster_.members()) {
    if (!m.up()) {
      result_.failures.add(m.name() + " is down after healing");
      continue;
    }
    auto j = cluster_.status(m);
    if (j.value("installing_snapshot", false))
      result_.failures.add(m.name() + " is still installing a snapshot after settling");
    for (const char* what : {"proposals", "reads", "forwarded"}) {
      if (!j.contains("pending") || !j["pending"].contains(what)) {
        result_.failures.add(fmt::format("{} Status has no pending.{}", m.name(), what));
        continue;
      }
      if (auto n = statusNumber(j, "pending", what))
        result_.failures.add(fmt::format("{} still holds {} pending {} after settling", m.name(), n, what));
    }
  }
}

// A store request answered by the node on this thread, or within a virtual second.
std::optional<std::string> SeedRun::askLocally(Member& m, bus::Buffer request) {
  bus::setHeader(request, 1, wire::Kind::Request, 1000, 0);
  auto answer = std::make_shared<std::optional<std::string>>();
  auto frame = decodeStore({reinterpret_cast<const char*>(request.data()), request.size()});
  m.node->serveStore(bus::Call::local(std::move(frame), [answer](std::string_view env) {
    *answer = std::string(env);
  }));
  for (int i = 0; i < 100 && !*answer; ++i) world_.runFor(10ms);
  return *answer;
}

// Every node holds the same applied index and the same objects; and what they hold is read
// into the history last, so that the checker also judges the final state.
void SeedRun::checkConverged() {
  std::optional<std::pair<uint64_t, std::vector<std::string>>> first;
  std::string firstName;
  for (auto& m : cluster_.members()) {
    if (!m.up()) continue;
    auto answer = askLocally(m, listRequest(objects::ObjectKind::Config, true));
    auto frame = answer ? decodeAnswer(*answer) : Result<bus::Frame>(Error{"no answer"});
    const storeapi::ObjectsReply* reply =
        frame && frame->kind() == wire::Kind::Reply
            ? frame->as<storeapi::Envelope>()->body_as_ObjectsReply()
            : nullptr;
    if (!reply) {
      result_.failures.add(m.name() + " does not answer a local List");
      continue;
    }
    std::pair<uint64_t, std::vector<std::string>> held{reply->index(), {}};
    if (reply->objects())
      for (auto* o : *reply->objects())
        held.second.emplace_back(reinterpret_cast<const char*>(o->data()->data()), o->data()->size());
    std::sort(held.second.begin(), held.second.end());
    world_.trace(0xc0417, held.first, held.second.size());
    if (!first) {
      first = held, firstName = m.name();
    } else if (*first != held) {
      result_.failures.add(fmt::format("{} and {} differ after settling: applied {} with {} objects, "
                                       "applied {} with {} objects",
                                       firstName, m.name(), first->first, first->second.size(),
                                       held.first, held.second.size()));
    }
  }
  if (!first) return;
  for (int i = 1; i <= plan_.keys; ++i) {
    lincheck::Operation op;
    op.kind = lincheck::Operation::Read;
    op.client = 0;
    op.key = keyId(i);
    op.invoke = clients_.stamp();
    op.complete = clients_.stamp();
    for (auto& bytes : first->second) {
      auto* cfg = flatbuffers::GetRoot<objects::Config>(bytes.data());
      if (!cfg->id() || cfg->id()->str() != op.key) continue;
      op.found = true;
      op.version = cfg->meta() ? cfg->meta()->version() : 0;
      if (cfg->spec() && cfg->spec()->data())
        op.value.assign(reinterpret_cast<const char*>(cfg->spec()->data()->data()), cfg->spec()->data()->size());
    }
    clients_.history().push_back(op);
  }
}

void SeedRun::checkLiveness(int64_t healedStamp) {
  for (auto& op : clients_.history())
    if (op.kind == lincheck::Operation::Txn && op.outcome == Outcome::Ok && op.invoke > healedStamp)
      return;
  std::string states;
  for (auto& m : cluster_.members()) {
    if (!m.up()) continue;
    auto j = cluster_.status(m);
    states += fmt::format("\n    {}: {} term {} leader {} commit {} applied {} pending {}", m.name(),
                          j.value("role", "?"), j.value("term", uint64_t{0}), j.value("leader", ""),
                          j.value("commit", uint64_t{0}), j.value("applied", uint64_t{0}),
                          j.value("pending", nlohmann::json::object()).dump());
  }
  // What the clients did from a second before healing on: (invoke, complete) in ms after it.
  std::string outcomes;
  for (auto& op : clients_.history())
    if (op.client != 0 && op.complete > healedStamp - 1'000'000'000)
      outcomes += fmt::format(" c{} {} {:.0f}..{:.0f} {};", op.client, op.kind == lincheck::Operation::Txn ? "txn" : "read",
                              static_cast<double>(op.invoke - healedStamp) / 1e6,
                              static_cast<double>(op.complete - healedStamp) / 1e6,
                              op.outcome == Outcome::Ok ? "ok" : op.outcome == Outcome::Unknown ? "unknown" : "failed");
  result_.failures.add(fmt::format("no write succeeded in the {}s after healing (operations since a second before:{}); nodes:{}",
                                   std::chrono::duration<double>(plan_.tail).count(), outcomes, states));
}

void SeedRun::checkHistory() {
  auto& history = clients_.history();
  for (auto& op : history) {
    if (op.client == 0) continue;  // the final reads
    ++result_.counts.ops;
    if (op.outcome == Outcome::Ok) ++result_.counts.ok;
    if (op.outcome == Outcome::Unknown) ++result_.counts.unknown;
    if (op.outcome == Outcome::Failed) ++result_.counts.failed;
    world_.trace(static_cast<uint64_t>(op.outcome), op.index, op.version);
  }
  auto verdict = lincheck::check(history);
  result_.counts.states = verdict.statesExplored;
  if (verdict.gaveUp)
    result_.failures.add(fmt::format("the linearizability check gave up after {} states",
                                     verdict.statesExplored));
  else if (!verdict.linearizable)
    result_.failures.add("the history is not linearizable:\n" + verdict.explanation);
}

// --- the command -------------------------------------------------------------------------

void usage() {
  std::fprintf(stderr,
               "usage: raft-shell-sim [--seeds N] [--first-seed S] [--seed S] [--seconds V]\n"
               "                      [--long] [--verbose] [--log LEVEL]\n"
               "  --seeds N       seeds to run (default 200; --long: 1000)\n"
               "  --first-seed S  the first of them (default 1)\n"
               "  --seed S        only seed S (a failure's replay command)\n"
               "  --seconds V     virtual seconds of faults per seed (default 45; --long: 120)\n"
               "  --verbose       a line per seed with its trace digest, and the nemesis' actions\n"
               "  --log LEVEL     raftd's log (trace..critical) of a failing seed is printed\n");
}

bool parse(int argc, char** argv, Options& o) {
  bool seedsGiven = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (a == "--verbose") {
      o.verbose = true;
    } else if (a == "--long") {
      o.longRun = true;
    } else if ((a == "--seeds" || a == "--first-seed" || a == "--seed" || a == "--seconds" ||
                a == "--log") && (v = value())) {
      if (a == "--seeds") o.seeds = std::strtoull(v, nullptr, 10), seedsGiven = true;
      if (a == "--first-seed") o.firstSeed = std::strtoull(v, nullptr, 10);
      if (a == "--seed") o.firstSeed = std::strtoull(v, nullptr, 10), o.seeds = 1, seedsGiven = true;
      if (a == "--seconds") o.seconds = std::strtod(v, nullptr);
      if (a == "--log") o.logLevel = v;
    } else {
      return false;
    }
  }
  if (o.longRun && !seedsGiven) o.seeds = 1000;
  return true;
}

std::string replayCommand(uint64_t seed, const Options& o) {
  std::string cmd = fmt::format("raft-shell-sim --seed {}", seed);
  if (o.seconds > 0) cmd += fmt::format(" --seconds {}", o.seconds);
  if (o.longRun) cmd += " --long";
  return cmd;
}

void report(const SeedResult& r, const Options& o) {
  if (o.verbose || r.failures.any())
    fmt::print("seed {}: {} nodes, {} clients, {} keys; {} ops ({} ok, {} unknown, {} failed), "
               "{} crashes, {} partitions, {} snapshots installed, {} states; digest {:016x}; "
               "{:.2f}s{}\n",
               r.seed, r.plan.nodes, r.plan.clients, r.plan.keys, r.counts.ops, r.counts.ok,
               r.counts.unknown, r.counts.failed, r.counts.crashes, r.counts.partitions,
               r.counts.snapshotsInstalled, r.counts.states, r.digest, r.wallSeconds,
               r.failures.any() ? " FAILED" : "");
  if (!r.failures.any()) return;
  for (auto& f : r.failures.list) fmt::print("  - {}\n", f);
  if (logCapture && !logCapture->lines.empty()) {
    fmt::print("  raftd's log ({} lines):\n", logCapture->lines.size());
    for (auto& l : logCapture->lines) fmt::print("    {}\n", l);
  }
  fmt::print("  replay: {}\n", replayCommand(r.seed, o));
}

void setUpLogging(const Options& o) {
  logCapture = std::make_shared<LogCapture>();
  auto logger = std::make_shared<spdlog::logger>("raftd", logCapture);
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(o.logLevel));
}

int run(int argc, char** argv) {
  Options opt;
  if (!parse(argc, argv, opt)) {
    usage();
    return 2;
  }
  setUpLogging(opt);
  auto start = std::chrono::steady_clock::now();
  Counts total;
  uint64_t failed = 0;
  for (uint64_t s = opt.firstSeed; s < opt.firstSeed + opt.seeds; ++s) {
    logCapture->lines.clear();
    SeedResult r = SeedRun(s, opt).run();
    if (s == opt.firstSeed) {
      // The same seed must replay the same run, or a failure's replay command is worthless.
      logCapture->lines.clear();
      SeedResult again = SeedRun(s, Options{opt.firstSeed, 1, opt.seconds, false, opt.longRun, opt.logLevel}).run();
      if (again.digest != r.digest)
        r.failures.add(fmt::format("not deterministic: the seed ran twice gave digests {:016x} and {:016x}",
                                   r.digest, again.digest));
    }
    total.add(r.counts);
    if (r.failures.any()) ++failed;
    report(r, opt);
    std::fflush(stdout);
  }
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  fmt::print("raft-shell-sim: {} seeds, {} failed; {} ops ({} ok, {} unknown, {} failed); {} crashes, "
             "{} partitions ({} leader bounces), {} storms; {} snapshots taken, {} installed; "
             "{} messages; max {} states explored; {:.1f}s\n",
             opt.seeds, failed, total.ops, total.ok, total.unknown, total.failed, total.crashes,
             total.partitions, total.bounces, total.storms, total.snapshotsTaken,
             total.snapshotsInstalled, total.messages, total.states, wall);
  return failed ? 1 : 0;
}

}  // namespace
}  // namespace shoal::raftd::sim

int main(int argc, char** argv) { return shoal::raftd::sim::run(argc, argv); }
