// dispatcherd's pure cores (services/dispatcherd): the session table and its heartbeat
// expiry on a clock of the test's own, the batching of node status writes, the join verdicts
// and the choice of leader for a redirect, and the Node/Cluster values read from and written
// to the store.
#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <random>
#include <set>

#include "common/protocols.h"
#include "services/dispatcherd/assignments.h"
#include "services/dispatcherd/join.h"
#include "services/dispatcherd/records.h"
#include "services/dispatcherd/sessions.h"
#include "services/dispatcherd/status_writes.h"
#include "services/dispatcherd/task_status.h"

namespace shoal::dispatcherd {
namespace {

using namespace std::chrono_literals;
using identity::Role;

identity::FillRandom seeded(uint64_t seed) {
  auto engine = std::make_shared<std::mt19937_64>(seed);
  return [engine](std::span<uint8_t> out) {
    for (auto& b : out) b = static_cast<uint8_t>((*engine)());
  };
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A clock of the test's own: time moves only when the test says so.
struct TestClock {
  Clock::time_point now = Clock::time_point(1000s);
  void advance(Clock::duration d) { now += d; }
};

identity::CurvePublicKey keyOf(uint8_t fill) {
  identity::CurvePublicKey k;
  k.fill(fill);
  return k;
}

NodeRecord worker(const std::string& id, uint8_t key) {
  NodeRecord n;
  n.id = id;
  n.version = 10;
  n.role = objects::NodeRole::Worker;
  n.state = objects::NodeState::Ready;
  n.addr = "10.0.0." + std::to_string(key);
  n.curveKey = keyOf(key);
  n.description.hostname = "host-" + id.substr(0, 3);
  return n;
}

NodeRecord manager(const std::string& id, uint8_t key, uint64_t raftId, const std::string& raftAddr) {
  NodeRecord n = worker(id, key);
  n.role = n.desiredRole = objects::NodeRole::Manager;
  n.managerStatus = ManagerStatus{raftId, raftAddr, false, objects::Reachability::Reachable};
  return n;
}

const std::string kA = "aaaaaaaaaaaaaaaaaaaaaaaaa";
const std::string kB = "bbbbbbbbbbbbbbbbbbbbbbbbb";
const std::string kC = "ccccccccccccccccccccccccc";

}  // namespace

// --- sessions and heartbeat expiry -------------------------------------------------------------

TEST_CASE("a node whose certificate expired holds no session; it must join again") {
  constexpr int64_t kS = 1'000'000'000;
  const int64_t expiry = int64_t{1'800'000'000} * kS;  // 2027-01-15T08:00:00Z
  CHECK_FALSE(certificateRefusal(expiry, expiry - 1).has_value());
  CHECK_FALSE(certificateRefusal(0, expiry).has_value());  // no expiry recorded: not refused
  auto why = certificateRefusal(expiry, expiry);
  REQUIRE(why.has_value());
  CHECK(why->find("expired at 2027-01-15T08:00:00Z") != std::string::npos);
  CHECK(why->find("shoal swarm join --token") != std::string::npos);
}

TEST_CASE("a node first seen gets 3 periods, and is down just when they are over") {
  TestClock clock;
  SessionTable t;
  t.observe(kA, false, clock.now, 1s);
  clock.advance(2999ms);
  CHECK(t.expire(clock.now).empty());
  clock.advance(1ms);
  CHECK(t.expire(clock.now) == std::vector<std::string>{kA});
  // Expired once: it is not reported again, and observing it again changes nothing.
  t.observe(kA, false, clock.now, 1s);
  clock.advance(10s);
  CHECK(t.expire(clock.now).empty());
  REQUIRE(t.find(kA));
  CHECK(t.find(kA)->expired);
}

TEST_CASE("heartbeats keep a session alive; a node that stops is down after 3 missed periods") {
  TestClock clock;
  SessionTable t;
  t.open(kA, "s1", clock.now, 1s);
  CHECK(t.sessions() == 1);
  for (int i = 0; i < 10; ++i) {
    clock.advance(2500ms);  // late, but within 3 periods
    CHECK(t.heartbeat(kA, "s1", clock.now, 1s));
    CHECK(t.expire(clock.now).empty());
  }
  clock.advance(3s);
  CHECK(t.expire(clock.now) == std::vector<std::string>{kA});
  // The session ended with the expiry: a late heartbeat in it must open a new one.
  CHECK(t.sessions() == 0);
  CHECK_FALSE(t.heartbeat(kA, "s1", clock.now, 1s));
  t.open(kA, "s2", clock.now, 1s);
  CHECK_FALSE(t.find(kA)->expired);
  CHECK(t.heartbeat(kA, "s2", clock.now, 1s));
}

TEST_CASE("a heartbeat in another session, or of a node without one, is refused") {
  TestClock clock;
  SessionTable t;
  CHECK_FALSE(t.heartbeat(kA, "s1", clock.now, 1s));
  t.observe(kB, false, clock.now, 1s);
  CHECK_FALSE(t.heartbeat(kB, "", clock.now, 1s));
  t.open(kA, "s1", clock.now, 1s);
  t.open(kA, "s2", clock.now, 1s);  // a reopened session replaces the old one
  CHECK_FALSE(t.heartbeat(kA, "s1", clock.now, 1s));
  CHECK(t.heartbeat(kA, "s2", clock.now, 1s));
}

TEST_CASE("a shorter period counts from the next heartbeat, never against one already promised") {
  TestClock clock;
  SessionTable t;
  t.open(kA, "s", clock.now, 5s);  // the node was told 5 s
  clock.advance(4s);
  // The cluster's period is now 1 s; the node sends its heartbeat at 5 s as it was told.
  CHECK(t.expire(clock.now).empty());
  clock.advance(1s);
  CHECK(t.heartbeat(kA, "s", clock.now, 1s));
  clock.advance(2999ms);
  CHECK(t.expire(clock.now).empty());
  clock.advance(1ms);
  CHECK(t.expire(clock.now) == std::vector<std::string>{kA});
}

TEST_CASE("a new leader gives every node 3 periods from when it took over") {
  TestClock clock;
  SessionTable t;
  t.open(kA, "s", clock.now, 1s);
  clock.advance(2s);
  t.reset();  // leadership lost and won again
  CHECK(t.sessions() == 0);
  t.observe(kA, false, clock.now, 1s);
  t.observe(kB, false, clock.now, 1s);
  t.observe(kC, /*storedDown=*/true, clock.now, 1s);  // down already: not counted again
  clock.advance(2s);
  CHECK(t.expire(clock.now).empty());  // 4 s after A's last heartbeat, but 2 s into the term
  REQUIRE(t.nextDeadline());
  CHECK(*t.nextDeadline() == clock.now + 1s);
  clock.advance(1s);
  CHECK(t.expire(clock.now) == std::vector<std::string>{kA, kB});
  CHECK_FALSE(t.nextDeadline());
}

TEST_CASE("a node opening a session after being down is alive again; a forgotten node is gone") {
  TestClock clock;
  SessionTable t;
  t.observe(kA, true, clock.now, 1s);
  t.open(kA, "s", clock.now, 1s);
  CHECK_FALSE(t.find(kA)->expired);
  t.forget(kA);
  CHECK(t.find(kA) == nullptr);
  clock.advance(1h);
  CHECK(t.expire(clock.now).empty());
}

// --- batching of status writes ---------------------------------------------------------------

NodeUpdate stateUpdate(objects::NodeState s, std::string message = {}) {
  NodeUpdate u;
  u.state = s;
  u.message = std::move(message);
  return u;
}

TEST_CASE("status writes: at most one batch per 100 ms, never two in flight") {
  TestClock clock;
  StatusWrites w;
  CHECK_FALSE(w.due(clock.now));  // nothing owed
  w.add(kA, stateUpdate(objects::NodeState::Ready));
  CHECK(w.due(clock.now));
  auto batch = w.take(clock.now);
  REQUIRE(batch.size() == 1);
  CHECK(batch[0].first == kA);
  w.add(kB, stateUpdate(objects::NodeState::Down, "heartbeat failure"));
  clock.advance(500ms);
  CHECK_FALSE(w.due(clock.now));  // the first is still in flight
  w.succeeded();
  CHECK(w.due(clock.now));
  w.take(clock.now);
  w.succeeded();
  w.add(kC, stateUpdate(objects::NodeState::Ready));
  clock.advance(99ms);
  CHECK_FALSE(w.due(clock.now));
  clock.advance(1ms);
  CHECK(w.due(clock.now));
}

TEST_CASE("status writes: updates of one node merge, and a batch holds at most 200 nodes") {
  TestClock clock;
  StatusWrites w;
  for (int i = 0; i < 450; ++i) w.add("node" + std::to_string(1000 + i), stateUpdate(objects::NodeState::Ready));
  NodeUpdate desc;
  desc.description = Description{"h", "linux", "amd64", 1, 2, 3, "1.0", {}};
  w.add("node1000", desc);
  w.add("node1000", stateUpdate(objects::NodeState::Down, "heartbeat failure"));
  CHECK(w.pending() == 450);
  auto first = w.take(clock.now);
  CHECK(first.size() == 200);
  CHECK(first[0].first == "node1000");
  CHECK(first[0].second.state == objects::NodeState::Down);
  CHECK(first[0].second.message == "heartbeat failure");
  REQUIRE(first[0].second.description);
  CHECK(first[0].second.description->hostname == "h");
  w.succeeded();
  clock.advance(100ms);
  CHECK(w.take(clock.now).size() == 200);
  w.succeeded();
  clock.advance(100ms);
  CHECK(w.take(clock.now).size() == 50);
  w.succeeded();
  CHECK(w.pending() == 0);
}

TEST_CASE("status writes: a failed batch comes back under what came meanwhile") {
  TestClock clock;
  StatusWrites w;
  NodeUpdate first = stateUpdate(objects::NodeState::Down, "heartbeat failure");
  first.addr = "10.0.0.1";
  w.add(kA, first);
  w.add(kB, stateUpdate(objects::NodeState::Down, "heartbeat failure"));
  w.take(clock.now);
  CHECK(w.inFlight() == 2);
  // A opened a session while the batch was out: Ready is newer than Down.
  w.add(kA, stateUpdate(objects::NodeState::Ready));
  REQUIRE(w.owed(kA));
  CHECK(w.owed(kA)->state == objects::NodeState::Ready);
  CHECK(w.owed(kA)->addr == "10.0.0.1");
  w.failed();
  CHECK(w.inFlight() == 0);
  CHECK(w.pending() == 2);
  clock.advance(100ms);
  auto again = w.take(clock.now);
  REQUIRE(again.size() == 2);
  CHECK(again[0].second.state == objects::NodeState::Ready);
  CHECK(again[0].second.addr == "10.0.0.1");  // the older batch's other fields survive
  CHECK(again[1].second.state == objects::NodeState::Down);
  w.succeeded();
  w.add(kC, stateUpdate(objects::NodeState::Ready));
  w.drop(kC);
  CHECK(w.pending() == 0);
  CHECK_FALSE(w.owed(kC));
}

TEST_CASE("applyUpdate changes only what differs, and never installs a certificate of another role") {
  NodeRecord n = worker(kA, 1);
  CHECK_FALSE(applyUpdate(n, stateUpdate(objects::NodeState::Ready)));
  CHECK_FALSE(applyUpdate(n, NodeUpdate{}));
  auto down = applyUpdate(n, stateUpdate(objects::NodeState::Down, "heartbeat failure"));
  REQUIRE(down);
  CHECK(down->state == objects::NodeState::Down);
  CHECK(down->message == "heartbeat failure");
  CHECK(down->id == n.id);
  CHECK(down->curveKey == n.curveKey);

  NodeUpdate cert;
  cert.certificate = NodeUpdate::Cert{{1, 2, 3}, 42, objects::NodeRole::Manager};
  CHECK_FALSE(applyUpdate(n, cert));  // n is a worker: a manager certificate would be stale
  cert.certificate->role = objects::NodeRole::Worker;
  auto withCert = applyUpdate(n, cert);
  REQUIRE(withCert);
  CHECK(withCert->certificate == std::vector<uint8_t>{1, 2, 3});
  CHECK(withCert->certificateExpiry == 42);
}

TEST_CASE("a batch is one Update per changed node, expecting the version the view holds") {
  NodeTable nodes;
  nodes.put(worker(kA, 1));
  NodeRecord b = worker(kB, 2);
  b.version = 17;
  nodes.put(b);
  std::vector<std::pair<std::string, NodeUpdate>> updates = {
      {kA, stateUpdate(objects::NodeState::Ready)},                     // no change: left out
      {kB, stateUpdate(objects::NodeState::Down, "heartbeat failure")},
      {kC, stateUpdate(objects::NodeState::Down, "heartbeat failure")},  // deleted meanwhile
  };
  Batch batch = buildBatch(nodes, updates);
  REQUIRE(batch.changes.size() == 1);
  auto& c = batch.changes[0];
  CHECK(c.kind == objects::ObjectKind::Node);
  CHECK(c.operation == objects::Operation::Update);
  CHECK(c.id == kB);
  CHECK(c.expectedVersion == 17);
  auto written = parseNode(c.object);
  REQUIRE(written);
  CHECK(written->state == objects::NodeState::Down);
  CHECK(written->message == "heartbeat failure");
  CHECK(written->curveKey == b.curveKey);
  REQUIRE(batch.written.size() == 1);
  CHECK(batch.written[0].state == objects::NodeState::Down);
  CHECK(buildBatch(nodes, {}).changes.empty());
}

// --- join verdicts ---------------------------------------------------------------------------

TEST_CASE("a join token admits the role it was made for, against the current tokens only") {
  auto ca = identity::ClusterCA::create("clusterclusterclusterclus");
  REQUIRE(ca);
  auto random = seeded(1);
  auto tokens = identity::JoinTokens::make(*ca, random);

  auto w = judgeToken(tokens.worker, tokens, *ca);
  REQUIRE(w);
  CHECK(*w == Role::Worker);
  auto m = judgeToken(tokens.manager, tokens, *ca);
  REQUIRE(m);
  CHECK(*m == Role::Manager);

  std::string old = tokens.worker;
  tokens.rotate(Role::Worker, *ca, random);
  auto rotated = judgeToken(old, tokens, *ca);
  REQUIRE_FALSE(rotated);
  CHECK(contains(rotated.error().message, "not one of swarm clusterclusterclusterclus's current tokens"));
  CHECK(contains(rotated.error().message, "shoal swarm join-token"));

  auto other = identity::ClusterCA::create("otherotherotherotherother");
  REQUIRE(other);
  auto foreign = judgeToken(identity::makeJoinToken(*other, random), tokens, *ca);
  REQUIRE_FALSE(foreign);
  CHECK(contains(foreign.error().message, "belongs to another swarm"));

  auto garbage = judgeToken("hello", tokens, *ca);
  REQUIRE_FALSE(garbage);
  CHECK(contains(garbage.error().message, "not a swarm join token"));
  CHECK_FALSE(judgeToken("", tokens, *ca));
}

TEST_CASE("a key already registered to a node cannot join again") {
  NodeTable nodes;
  nodes.put(worker(kA, 1));
  auto st = checkKeyFree(nodes, identity::curveKeyToZ85(keyOf(1)));
  REQUIRE_FALSE(st);
  CHECK(contains(st.error().message, "already registered as node " + kA));
  CHECK(contains(st.error().message, "shoal node rm " + kA));
  CHECK(checkKeyFree(nodes, identity::curveKeyToZ85(keyOf(2))));
}

TEST_CASE("the advertise host of a join: an address or name; the port is dropped") {
  CHECK(*advertiseHost("10.1.2.3") == "10.1.2.3");
  CHECK(*advertiseHost("10.1.2.3:4000") == "10.1.2.3");
  CHECK(*advertiseHost("[fd00::1]:2377") == "fd00::1");
  CHECK(*advertiseHost("node-1.example") == "node-1.example");
  CHECK_FALSE(advertiseHost(""));
  CHECK_FALSE(advertiseHost("bad host"));
  CHECK_FALSE(advertiseHost("10.0.0.1:99999"));
  CHECK_FALSE(advertiseHost(std::string(1000, 'a')));
}

TEST_CASE("a new Node from a join: ready, active, accepted; managers get raft status") {
  JoinPlan plan;
  plan.nodeId = kA;
  plan.role = Role::Manager;
  plan.key = keyOf(7);
  plan.addr = "10.0.0.7";
  plan.raftId = 99;
  plan.raftAddr = "10.0.0.7:2378";
  plan.certificate = {9, 9};
  plan.certificateExpiryNs = 123;
  NodeRecord n = joinedNode(plan);
  CHECK(n.role == objects::NodeRole::Manager);
  CHECK(n.desiredRole == objects::NodeRole::Manager);
  CHECK(n.state == objects::NodeState::Ready);
  CHECK(n.availability == objects::NodeAvailability::Active);
  CHECK(n.membership == objects::NodeMembership::Accepted);
  REQUIRE(n.managerStatus);
  CHECK(n.managerStatus->raftId == 99);
  CHECK(n.managerStatus->reachability == objects::Reachability::Unknown);
  plan.role = Role::Worker;
  CHECK_FALSE(joinedNode(plan).managerStatus);
}

// --- managers and redirects -----------------------------------------------------------------

TEST_CASE("the redirect goes to the manager whose raft id leads, at its raft port - 1") {
  NodeTable nodes;
  nodes.put(manager(kA, 1, 11, "10.0.0.1:4001"));
  nodes.put(manager(kB, 2, 22, "10.0.0.2:2378"));
  nodes.put(worker(kC, 3));
  auto managers = managersOf(nodes, 2377);
  REQUIRE(managers.size() == 2);
  CHECK(managers[0].nodeId == kA);
  CHECK(managers[0].dispatcherAddr == "10.0.0.1:4000");
  CHECK(managers[0].keyZ85 == identity::curveKeyToZ85(keyOf(1)));
  CHECK(managers[1].dispatcherAddr == "10.0.0.2:2377");

  auto leader = leaderOf(nodes, 22, 2377);
  REQUIRE(leader);
  CHECK(leader->nodeId == kB);
  CHECK_FALSE(leaderOf(nodes, 0, 2377));   // no leader elected
  CHECK_FALSE(leaderOf(nodes, 33, 2377));  // its Node is not known yet
}

TEST_CASE("a manager without raft status is reached at its advertise host and the cluster's port") {
  NodeTable nodes;
  NodeRecord m = worker(kA, 1);
  m.role = objects::NodeRole::Manager;
  nodes.put(m);
  auto managers = managersOf(nodes, 5000);
  REQUIRE(managers.size() == 1);
  CHECK(managers[0].dispatcherAddr == "10.0.0.1:5000");
  CHECK(managers[0].raftId == 0);
}

TEST_CASE("a new raft id is never 0 and never one a manager has") {
  NodeTable nodes;
  auto first = pickRaftId(nodes, seeded(5));
  CHECK(first != 0);
  nodes.put(manager(kA, 1, first, "10.0.0.1:2378"));
  // The same seed draws `first` again first: the next draw is taken.
  auto second = pickRaftId(nodes, seeded(5));
  CHECK(second != 0);
  CHECK(second != first);
}

// --- the store's objects -----------------------------------------------------------------------

TEST_CASE("a Node goes to the store and back unchanged") {
  NodeRecord n = manager(kA, 4, 77, "10.0.0.4:2378");
  n.name = "n1";
  n.labels = {{"zone", "a"}};
  n.availability = objects::NodeAvailability::Drain;
  n.message = "m";
  n.description = Description{"host", "linux", "arm64", 4'000'000'000, 1 << 30, 0, "0.1.0", {{"k", "v"}}};
  n.certificate = {1, 2, 3, 4};
  n.certificateExpiry = 5;
  auto back = parseNode(buildNode(n));
  REQUIRE(back);
  n.version = 0;  // a built Node has a zero Meta: the store sets it
  CHECK(back->version == 0);
  CHECK(back->id == n.id);
  CHECK(back->name == "n1");
  CHECK(back->labels == n.labels);
  CHECK(back->availability == objects::NodeAvailability::Drain);
  CHECK(back->description == n.description);
  CHECK(back->message == "m");
  CHECK(back->managerStatus == n.managerStatus);
  CHECK(back->role == objects::NodeRole::Manager);
  CHECK(back->curveKey == n.curveKey);
  CHECK(back->certificate == n.certificate);
  CHECK(back->certificateExpiry == 5);
}

TEST_CASE("bytes that are not a Node are refused with a reason") {
  auto bad = parseNode("these are not a node");
  REQUIRE_FALSE(bad);
  CHECK(contains(bad.error().message, "verifier"));
  NodeRecord noId = worker("", 1);
  CHECK_FALSE(parseNode(buildNode(noId)));
}

TEST_CASE("the node table: newer versions win, keys follow their node") {
  NodeTable t;
  NodeRecord a = worker(kA, 1);
  t.put(a);
  std::string key1 = identity::curveKeyToZ85(keyOf(1));
  REQUIRE(t.byKey(key1));
  CHECK(t.byKey(key1)->id == kA);

  NodeRecord older = a;
  older.version = 5;
  older.state = objects::NodeState::Down;
  t.put(older);  // a watch event behind a write already in the view
  CHECK(t.byId(kA)->state == objects::NodeState::Ready);

  NodeRecord rekeyed = a;
  rekeyed.version = 11;
  rekeyed.curveKey = keyOf(2);
  t.put(rekeyed);
  CHECK(t.byKey(key1) == nullptr);
  CHECK(t.byKey(identity::curveKeyToZ85(keyOf(2)))->id == kA);

  t.erase(kA);
  CHECK(t.size() == 0);
  CHECK(t.byKey(identity::curveKeyToZ85(keyOf(2))) == nullptr);
}

TEST_CASE("node descriptions from a message are bounded") {
  flatbuffers::FlatBufferBuilder fbb;
  auto d = objects::CreateNodeDescription(fbb, fbb.CreateString(std::string(300, 'h')));
  fbb.Finish(d);
  auto r = descriptionFrom(flatbuffers::GetRoot<objects::NodeDescription>(fbb.GetBufferPointer()));
  REQUIRE_FALSE(r);
  CHECK(contains(r.error().message, "hostname"));
  CHECK(descriptionFrom(nullptr));  // none given: an empty one

  flatbuffers::FlatBufferBuilder neg;
  auto res = objects::CreateResources(neg, -1, 0, 0);
  neg.Finish(objects::CreateNodeDescription(neg, neg.CreateString("h"), 0, res));
  auto n = descriptionFrom(flatbuffers::GetRoot<objects::NodeDescription>(neg.GetBufferPointer()));
  REQUIRE_FALSE(n);
  CHECK(contains(n.error().message, "negative"));
}

TEST_CASE("the cluster's heartbeat period and certificate expiry, with Swarm's defaults") {
  flatbuffers::FlatBufferBuilder fbb;
  auto dispatcher = objects::CreateDispatcherConfig(fbb, 1'000'000'000);
  auto caConfig = objects::CreateCaConfig(fbb, 7200LL * 1'000'000'000);
  objects::ClusterSpecBuilder sb(fbb);
  sb.add_dispatcher(dispatcher);
  sb.add_ca_config(caConfig);
  auto spec = sb.Finish();
  auto tokens = objects::CreateJoinTokens(fbb, fbb.CreateString("w"), fbb.CreateString("m"));
  auto rootCa = objects::CreateRootCa(fbb, fbb.CreateVector(std::vector<uint8_t>{1}), 0, 0, tokens);
  auto id = fbb.CreateString(kA);
  objects::Meta meta(9, 0, 0);
  fbb.Finish(objects::CreateCluster(fbb, id, &meta, spec, rootCa));
  auto c = parseCluster(std::string_view(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize()));
  REQUIRE(c);
  CHECK(c->id == kA);
  CHECK(c->version == 9);
  CHECK(heartbeatPeriodNs(&*c) == 1'000'000'000);
  CHECK(certExpiryNs(&*c) == 7200LL * 1'000'000'000);
  CHECK(c->tokens.worker == "w");
  CHECK(c->tokens.manager == "m");
  CHECK(c->caKey == std::vector<uint8_t>{1});

  CHECK(heartbeatPeriodNs(nullptr) == kDefaultHeartbeatPeriodNs);
  c->heartbeatPeriodNs = 0;
  CHECK(heartbeatPeriodNs(&*c) == kDefaultHeartbeatPeriodNs);
  c->heartbeatPeriodNs = 1;  // 1 ns: no agent could keep up
  CHECK(heartbeatPeriodNs(&*c) == kDefaultHeartbeatPeriodNs);
  c->nodeCertExpiryNs = 0;
  CHECK(certExpiryNs(&*c) == kDefaultCertExpiryNs);
  CHECK_FALSE(parseCluster("not a cluster"));
}

// --- assignments (assignments.h) ------------------------------------------------------------

namespace {

using objects::TaskState;

// A Task as the store holds it: meta.version set, a name of `pad` bytes to make it large.
std::string taskBytes(const std::string& id, uint64_t version, const std::string& node, TaskState state,
                      size_t pad = 0, TaskState desired = TaskState::Running) {
  objects::TaskT t;
  t.id = id;
  t.meta = std::make_unique<objects::Meta>(version, 0, 0);
  t.node_id = node;
  t.service_id = "svc";
  t.desired_state = desired;
  t.status = std::make_unique<objects::TaskStatusT>();
  t.status->state = state;
  t.status->message = "as stored";
  t.annotations = std::make_unique<objects::AnnotationsT>();
  t.annotations->name = "svc.1" + std::string(pad, 'x');
  flatbuffers::FlatBufferBuilder fbb;
  fbb.Finish(objects::Task::Pack(fbb, &t));
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

TaskEntry taskEntry(const std::string& id, uint64_t version, const std::string& node, TaskState state,
                    size_t pad = 0, TaskState desired = TaskState::Running) {
  auto t = readTask(taskBytes(id, version, node, state, pad, desired));
  REQUIRE(t.ok());
  return std::move(t).value();
}

std::string idOf(const std::string& bytes) {
  return flatbuffers::GetRoot<objects::Task>(bytes.data())->id()->str();
}

std::set<std::string> idsOf(const std::vector<std::string>& tasks) {
  std::set<std::string> out;
  for (auto& b : tasks) out.insert(idOf(b));
  return out;
}

// What an agent does with a stream's items: a complete set replaces what it holds, an
// increment must follow the version it holds (the test fails on a gap).
struct AgentView {
  uint64_t version = 0;
  std::map<std::string, uint64_t> held;
  void apply(const AssignmentItem& item) {
    if (item.full) {
      held.clear();
    } else {
      REQUIRE_MESSAGE(item.previous == version, "a gap: item ", item.version, " follows ", item.previous,
                      ", the agent holds ", version);
    }
    for (auto& b : item.updated)
      held[idOf(b)] = flatbuffers::GetRoot<objects::Task>(b.data())->meta()->version();
    for (auto& id : item.removed) {
      CHECK_MESSAGE(held.count(id), "removed ", id, " which the agent does not hold");
      held.erase(id);
    }
    version = item.version;
  }
};

// The node's set as the view says it should be: id -> version.
std::map<std::string, uint64_t> expectedSet(const Assignments& a, const std::string& node) {
  std::map<std::string, uint64_t> out;
  if (auto it = a.byNode().find(node); it != a.byNode().end())
    for (auto& id : it->second) out[id] = a.task(id)->version;
  return out;
}

}  // namespace

TEST_CASE("readTask verifies the bytes and reads id, version, node and state") {
  auto t = readTask(taskBytes("t1", 42, "n1", TaskState::Running));
  REQUIRE(t.ok());
  CHECK(t->id == "t1");
  CHECK(t->version == 42);
  CHECK(t->nodeId == "n1");
  CHECK(t->state == TaskState::Running);
  auto bad = readTask("not a task at all");
  REQUIRE_FALSE(bad.ok());
  CHECK(contains(bad.error().message, "does not verify"));
  CHECK(isAssigned(TaskState::Assigned));
  CHECK_FALSE(isAssigned(TaskState::Pending));
}

TEST_CASE("a stream starts with the complete set, then increments chained by version") {
  TestClock clock;
  Assignments a;
  a.put(taskEntry("t1", 1, "n1", TaskState::Assigned));
  a.put(taskEntry("t2", 2, "n1", TaskState::Running));
  a.put(taskEntry("t3", 3, "n2", TaskState::Assigned));
  a.put(taskEntry("t4", 4, "n1", TaskState::Pending));  // not the node's business yet
  a.open(1, "n1");
  CHECK(a.due(1, clock.now));
  auto first = a.take(1, clock.now, 10);
  REQUIRE(first.size() == 1);
  CHECK(first[0].full);
  CHECK(first[0].previous == 0);
  CHECK(idsOf(first[0].updated) == std::set<std::string>{"t1", "t2"});
  CHECK(first[0].removed.empty());
  AgentView agent;
  agent.apply(first[0]);
  CHECK_FALSE(a.due(1, clock.now));  // nothing changed

  // Within 100 ms of the complete set a change waits; then it goes.
  clock.advance(10ms);
  CHECK(a.put(taskEntry("t1", 5, "n1", TaskState::Accepted)));
  CHECK_FALSE(a.due(1, clock.now));
  CHECK(a.nextDue(clock.now) == clock.now + 90ms);
  clock.advance(90ms);
  auto second = a.take(1, clock.now, 10);
  REQUIRE(second.size() == 1);
  CHECK_FALSE(second[0].full);
  CHECK(second[0].previous == first[0].version);
  CHECK(idsOf(second[0].updated) == std::set<std::string>{"t1"});
  agent.apply(second[0]);

  // A task scheduled to the node, one deleted, one of another node changed: one increment.
  clock.advance(500ms);
  a.put(taskEntry("t4", 6, "n1", TaskState::Assigned));
  a.erase("t2");
  a.put(taskEntry("t3", 7, "n2", TaskState::Running));
  CHECK(a.due(1, clock.now));  // idle for 100 ms: at once
  auto third = a.take(1, clock.now, 10);
  REQUIRE(third.size() == 1);
  CHECK(third[0].previous == second[0].version);
  CHECK(idsOf(third[0].updated) == std::set<std::string>{"t4"});
  CHECK(third[0].removed == std::vector<std::string>{"t2"});
  agent.apply(third[0]);
  CHECK(agent.held == expectedSet(a, "n1"));
  CHECK(a.versionOf(1) == third[0].version);
}

TEST_CASE("an item goes on the wire as a dispatch Assignments that verifies") {
  AssignmentItem item;
  item.full = false;
  item.version = 7;
  item.previous = 6;
  item.updated = {taskBytes("t1", 3, "n1", TaskState::Running)};
  item.removed = {"t2"};
  auto buf = encodeAssignments(item);
  const bus::Protocol* protocols[] = {&kDispatchProtocol};
  REQUIRE(bus::verify({buf.data(), buf.size()}, protocols).ok());
  auto* body = flatbuffers::GetRoot<dispatch::Envelope>(buf.data())->body_as_Assignments();
  REQUIRE(body);
  CHECK(body->version() == 7);
  CHECK(body->previous() == 6);
  CHECK_FALSE(body->full());
  REQUIRE(body->updated()->size() == 1);
  auto* task = body->updated()->Get(0)->task();
  flatbuffers::Verifier v(task->data(), task->size());
  REQUIRE(v.VerifyBuffer<objects::Task>(nullptr));
  CHECK(flatbuffers::GetRoot<objects::Task>(task->data())->id()->str() == "t1");
  CHECK(body->removed()->Get(0)->str() == "t2");
}

TEST_CASE("a task leaves the node's set when it moves, is deleted, or its node changes") {
  TestClock clock;
  Assignments a;
  a.put(taskEntry("t1", 1, "n1", TaskState::Running));
  a.put(taskEntry("t2", 2, "n1", TaskState::Running));
  a.open(1, "n1");
  a.open(2, "n2");
  AgentView one, two;
  for (auto& i : a.take(1, clock.now, 10)) one.apply(i);
  for (auto& i : a.take(2, clock.now, 10)) two.apply(i);
  CHECK(two.held.empty());  // an empty complete set is still a complete set
  clock.advance(1s);
  a.put(taskEntry("t1", 3, "n2", TaskState::Assigned));  // not something schedulerd does, but
  a.erase("t2");
  auto i1 = a.take(1, clock.now, 10);
  auto i2 = a.take(2, clock.now, 10);
  REQUIRE(i1.size() == 1);
  REQUIRE(i2.size() == 1);
  CHECK(std::set<std::string>(i1[0].removed.begin(), i1[0].removed.end()) == std::set<std::string>{"t1", "t2"});
  CHECK(idsOf(i2[0].updated) == std::set<std::string>{"t1"});
  one.apply(i1[0]);
  two.apply(i2[0]);
  CHECK(one.held.empty());
  CHECK(two.held == expectedSet(a, "n2"));
  // A task created and deleted before the stream's next item leaves nothing to say.
  clock.advance(1s);
  a.put(taskEntry("t9", 9, "n1", TaskState::Assigned));
  a.erase("t9");
  CHECK(a.take(1, clock.now, 10).empty());
  CHECK_FALSE(a.due(1, clock.now));
}

TEST_CASE("a stream never outruns its credits, and what waited goes as one increment") {
  TestClock clock;
  Assignments a;
  a.open(1, "n1");
  CHECK(a.take(1, clock.now, 0).empty());
  a.put(taskEntry("t1", 1, "n1", TaskState::Assigned));
  auto first = a.take(1, clock.now, 1);
  REQUIRE(first.size() == 1);
  CHECK(first[0].full);
  AgentView agent;
  agent.apply(first[0]);
  for (int i = 0; i < 5; ++i) {
    clock.advance(200ms);
    a.put(taskEntry("t" + std::to_string(i + 2), 10 + i, "n1", TaskState::Assigned));
    CHECK(a.take(1, clock.now, 0).empty());  // no credits
  }
  auto later = a.take(1, clock.now, 5);
  REQUIRE(later.size() == 1);
  CHECK(later[0].updated.size() == 5);
  agent.apply(later[0]);
  CHECK(agent.held == expectedSet(a, "n1"));
}

TEST_CASE("an old version of a task (a watch event behind a re-read) is ignored") {
  Assignments a;
  CHECK(a.put(taskEntry("t1", 5, "n1", TaskState::Running)));
  CHECK_FALSE(a.put(taskEntry("t1", 4, "n1", TaskState::Starting)));
  CHECK_FALSE(a.put(taskEntry("t1", 5, "n1", TaskState::Starting)));
  CHECK(a.task("t1")->state == TaskState::Running);
}

TEST_CASE("a set larger than an item goes as a complete set and increments chained to it") {
  TestClock clock;
  Assignments a;
  const size_t pad = Assignments::kMaxItemBytes * 2 / 5;  // two tasks per item
  for (int i = 0; i < 5; ++i) a.put(taskEntry("t" + std::to_string(i), 1 + i, "n1", TaskState::Assigned, pad));
  a.open(1, "n1");
  // One credit at a time: the rest follows at once, not 100 ms later.
  AgentView agent;
  std::vector<AssignmentItem> items;
  for (int i = 0; i < 10 && a.due(1, clock.now); ++i)
    for (auto& item : a.take(1, clock.now, 1)) items.push_back(std::move(item));
  REQUIRE(items.size() == 3);
  CHECK(items[0].full);
  CHECK_FALSE(items[1].full);
  CHECK_FALSE(items[2].full);
  for (auto& item : items) {
    size_t bytes = 0;
    for (auto& b : item.updated) bytes += b.size();
    CHECK(bytes <= Assignments::kMaxItemBytes);
    agent.apply(item);
  }
  CHECK(agent.held == expectedSet(a, "n1"));
  CHECK(agent.held.size() == 5);
  // A task larger than an item still goes, alone.
  clock.advance(1s);
  a.put(taskEntry("big", 20, "n1", TaskState::Assigned, Assignments::kMaxItemBytes + 10));
  auto big = a.take(1, clock.now, 5);
  REQUIRE(big.size() == 1);
  agent.apply(big[0]);
  CHECK(agent.held.count("big"));
}

TEST_CASE("after a resync the streams get the difference, and a reopened stream a complete set") {
  TestClock clock;
  Assignments a;
  a.put(taskEntry("t1", 1, "n1", TaskState::Running));
  a.put(taskEntry("t2", 2, "n1", TaskState::Running));
  a.open(1, "n1");
  AgentView agent;
  for (auto& i : a.take(1, clock.now, 10)) agent.apply(i);
  clock.advance(1s);
  std::vector<TaskEntry> snapshot;
  snapshot.push_back(taskEntry("t1", 1, "n1", TaskState::Running));   // as it was
  snapshot.push_back(taskEntry("t3", 30, "n1", TaskState::Assigned));  // new meanwhile
  a.replaceAll(std::move(snapshot));
  auto diff = a.take(1, clock.now, 10);
  REQUIRE(diff.size() == 1);
  CHECK(idsOf(diff[0].updated) == std::set<std::string>{"t3"});
  CHECK(diff[0].removed == std::vector<std::string>{"t2"});
  agent.apply(diff[0]);
  CHECK(agent.held == expectedSet(a, "n1"));

  a.close(1);
  CHECK(a.streams().empty());
  a.open(2, "n1");
  auto again = a.take(2, clock.now, 10);
  REQUIRE(again.size() == 1);
  CHECK(again[0].full);
  CHECK(again[0].version > diff[0].version);  // versions are never reused
  CHECK(idsOf(again[0].updated) == std::set<std::string>{"t1", "t3"});
  CHECK(a.streamsOf("n1") == std::vector<Assignments::StreamId>{2});
}

TEST_CASE("many random changes: every agent's set follows the view without a gap") {
  TestClock clock;
  Assignments a;
  std::mt19937_64 rng(7);
  const std::vector<std::string> nodes = {"n1", "n2", "n3"};
  for (Assignments::StreamId s = 1; s <= 3; ++s) a.open(s, nodes[s - 1]);
  std::map<Assignments::StreamId, AgentView> agents;
  uint64_t version = 1;
  for (int round = 0; round < 300; ++round) {
    for (int i = 0; i < 5; ++i) {
      std::string id = "t" + std::to_string(rng() % 40);
      if (rng() % 6 == 0) {
        a.erase(id);
        continue;
      }
      auto state = std::vector<TaskState>{TaskState::Pending, TaskState::Assigned, TaskState::Running,
                                          TaskState::Shutdown}[rng() % 4];
      a.put(taskEntry(id, ++version, nodes[rng() % 3], state));
    }
    clock.advance(std::chrono::milliseconds(rng() % 150));
    for (Assignments::StreamId s = 1; s <= 3; ++s)
      for (auto& item : a.take(s, clock.now, static_cast<uint32_t>(rng() % 3))) agents[s].apply(item);
  }
  clock.advance(1s);
  for (Assignments::StreamId s = 1; s <= 3; ++s) {
    for (auto& item : a.take(s, clock.now, 100)) agents[s].apply(item);
    CHECK(agents[s].held == expectedSet(a, nodes[s - 1]));
  }
}

// --- task status (task_status.h) ----------------------------------------------------------------

namespace {

// A TaskStatus as an agent puts it in UpdateTaskStatusRequest.
std::unique_ptr<objects::TaskStatusT> reported(TaskState state, const std::string& err = {}) {
  objects::TaskStatusT s;
  s.state = state;
  s.message = objects::EnumNameTaskState(state);
  s.err = err;
  flatbuffers::FlatBufferBuilder fbb;
  fbb.Finish(objects::TaskStatus::Pack(fbb, &s));
  auto out = reportedStatus(flatbuffers::GetRoot<objects::TaskStatus>(fbb.GetBufferPointer()), "n1", 77);
  REQUIRE_MESSAGE(out.ok(), (out ? "" : out.error().message));
  return std::move(out).value();
}

const objects::Task* written(const store::ChangeSpec& c) {
  flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(c.object.data()), c.object.size());
  REQUIRE(v.VerifyBuffer<objects::Task>(nullptr));
  return flatbuffers::GetRoot<objects::Task>(c.object.data());
}

}  // namespace

TEST_CASE("a reported status is checked, bounded and stamped with the node") {
  flatbuffers::FlatBufferBuilder fbb;
  auto check = [&](objects::TaskStatusT s) {
    fbb.Clear();
    fbb.Finish(objects::TaskStatus::Pack(fbb, &s));
    return reportedStatus(flatbuffers::GetRoot<objects::TaskStatus>(fbb.GetBufferPointer()), "n1", 77);
  };
  CHECK(contains(reportedStatus(nullptr, "n1", 0).error().message, "no status"));
  objects::TaskStatusT s;
  s.state = TaskState::Assigned;
  CHECK(contains(check(s).error().message, "not one an agent reports"));
  s.state = static_cast<TaskState>(300);
  CHECK_FALSE(check(s).ok());
  s.state = TaskState::Remove;
  CHECK_FALSE(check(s).ok());
  s.state = TaskState::Failed;
  s.err = std::string(kMaxStatusErr - 1, 'e') + "é";  // cut before the two-byte character
  s.applied_by = "someone else";
  auto ok = check(s);
  REQUIRE(ok.ok());
  CHECK((*ok)->err == std::string(kMaxStatusErr - 1, 'e'));
  CHECK((*ok)->applied_by == "n1");
  CHECK((*ok)->applied_at == 77);
  for (size_t i = 0; i <= kMaxPortStatus; ++i) s.port_status.push_back(std::make_unique<objects::PortConfigT>());
  CHECK(contains(check(s).error().message, "port_status"));
}

TEST_CASE("reports count only for a task of the node that moves forward; the later state wins") {
  Assignments view;
  view.put(taskEntry("t1", 10, "n1", TaskState::Assigned));
  view.put(taskEntry("t2", 11, "n2", TaskState::Assigned));
  view.put(taskEntry("t3", 12, "n1", TaskState::Running));
  view.put(taskEntry("t4", 13, "n1", TaskState::Pending));
  TaskStatusWrites w;
  CHECK(w.report("n1", "nope", reported(TaskState::Running), view) == Report::UnknownTask);
  CHECK(w.report("n1", "t2", reported(TaskState::Running), view) == Report::OtherNode);
  CHECK(w.report("n1", "t4", reported(TaskState::Running), view) == Report::OtherNode);  // not assigned yet
  CHECK(w.report("n1", "t3", reported(TaskState::Starting), view) == Report::Backwards);
  CHECK(w.report("n1", "", reported(TaskState::Running), view) == Report::Invalid);
  CHECK(w.report("n1", "t1", reported(TaskState::Preparing), view) == Report::Accepted);
  CHECK(w.report("n1", "t1", reported(TaskState::Running), view) == Report::Accepted);
  CHECK(w.report("n1", "t1", reported(TaskState::Starting), view) == Report::Backwards);
  auto same = std::make_unique<objects::TaskStatusT>();
  same->state = TaskState::Running;
  same->message = "as stored";
  CHECK(w.report("n1", "t3", std::move(same), view) == Report::Unchanged);
  CHECK(w.pending() == 1);
  CHECK(w.counters().received == 9);
  CHECK(w.counters().accepted == 2);

  auto txns = w.take(Clock::time_point(1s), view);
  REQUIRE(txns.size() == 1);
  REQUIRE(txns[0].changes.size() == 1);
  auto& c = txns[0].changes[0];
  CHECK(c.kind == objects::ObjectKind::Task);
  CHECK(c.operation == objects::Operation::Update);
  CHECK(c.id == "t1");
  CHECK(c.expectedVersion == 10);
  auto* t = written(c);
  CHECK(t->status()->state() == TaskState::Running);
  CHECK(t->status()->applied_by()->str() == "n1");
  // Only the status changes: the rest is the stored task's.
  CHECK(t->annotations()->name()->str() == "svc.1");
  CHECK(t->desired_state() == TaskState::Running);
  CHECK(t->node_id()->str() == "n1");
  CHECK(t->meta()->version() == 0);  // the store fills it in
}

TEST_CASE("writes: due every 100 ms or at 10,000 pending, in transactions of at most 200") {
  TestClock clock;
  Assignments view;
  for (int i = 0; i < 10'000; ++i)
    view.put(taskEntry("t" + std::to_string(i), 1 + i, "n1", TaskState::Assigned));
  TaskStatusWrites w;
  CHECK_FALSE(w.due(clock.now));
  w.report("n1", "t0", reported(TaskState::Accepted), view);
  CHECK(w.due(clock.now));  // nothing written yet: at once
  CHECK(w.take(clock.now, view).size() == 1);
  w.report("n1", "t1", reported(TaskState::Accepted), view);
  clock.advance(99ms);
  CHECK_FALSE(w.due(clock.now));
  CHECK(w.dueAt(clock.now) == clock.now + 1ms);
  clock.advance(1ms);
  CHECK(w.due(clock.now));
  auto one = w.take(clock.now, view);
  for (auto& t : one) w.succeeded(t.id, 20'000);
  w.succeeded(1, 20'001);  // the first one too
  for (int i = 2; i < 10'000; ++i) w.report("n1", "t" + std::to_string(i), reported(TaskState::Accepted), view);
  clock.advance(1ms);
  CHECK_FALSE(w.due(clock.now));  // 9,998 pending: wait
  w.report("n1", "t0", reported(TaskState::Running), view);
  w.report("n1", "t1", reported(TaskState::Running), view);
  CHECK(w.pending() == 10'000);
  CHECK(w.due(clock.now));  // 10,000: at once
  auto txns = w.take(clock.now, view);
  CHECK(txns.size() == TaskStatusWrites::kMaxInFlight);
  size_t changes = 0;
  for (auto& t : txns) {
    CHECK(t.changes.size() <= TaskStatusWrites::kMaxChanges);
    CHECK(t.changes.size() == t.taskIds.size());
    changes += t.changes.size();
  }
  CHECK(changes == TaskStatusWrites::kMaxInFlight * TaskStatusWrites::kMaxChanges);
  CHECK_FALSE(w.due(clock.now));  // as many in flight as allowed
  CHECK_FALSE(w.dueAt(clock.now));
  w.succeeded(txns[0].id, 30'000);
  clock.advance(100ms);
  CHECK(w.due(clock.now));
  // t0 and t1 were written at 20,000 and the view has not seen it: they wait.
  auto next = w.take(clock.now, view);
  for (auto& t : next)
    for (auto& id : t.taskIds) CHECK((id != "t0" && id != "t1"));
}

TEST_CASE("a failed write goes back under later reports; nothing is lost or moved backwards") {
  TestClock clock;
  Assignments view;
  view.put(taskEntry("t1", 10, "n1", TaskState::Assigned));
  view.put(taskEntry("t2", 11, "n1", TaskState::Assigned));
  TaskStatusWrites w;
  w.report("n1", "t1", reported(TaskState::Starting), view);
  w.report("n1", "t2", reported(TaskState::Running), view);
  auto txns = w.take(clock.now, view);
  REQUIRE(txns.size() == 1);
  // Meanwhile: t1 moves on; t2 reports an earlier state (out of order), refused.
  CHECK(w.report("n1", "t1", reported(TaskState::Running), view) == Report::Accepted);
  CHECK(w.report("n1", "t2", reported(TaskState::Starting), view) == Report::Backwards);
  w.failed(txns[0].id);
  CHECK(w.pending() == 2);
  clock.advance(100ms);
  auto again = w.take(clock.now, view);
  REQUIRE(again.size() == 1);
  std::map<std::string, TaskState> states;
  for (auto& c : again[0].changes) states[c.id] = written(c)->status()->state();
  CHECK(states == std::map<std::string, TaskState>{{"t1", TaskState::Running}, {"t2", TaskState::Running}});
}

TEST_CASE("after a Conflict the write is rebuilt on the re-read task, keeping its other fields") {
  TestClock clock;
  Assignments view;
  view.put(taskEntry("t1", 10, "n1", TaskState::Assigned));
  TaskStatusWrites w;
  w.report("n1", "t1", reported(TaskState::Running), view);
  auto txns = w.take(clock.now, view);
  REQUIRE(txns.size() == 1);
  // schedulerd set desired SHUTDOWN meanwhile: the shell re-reads t1 into the view.
  view.put(taskEntry("t1", 15, "n1", TaskState::Assigned, 0, TaskState::Shutdown));
  w.failed(txns[0].id);
  clock.advance(100ms);
  auto rebuilt = w.take(clock.now, view);
  REQUIRE(rebuilt.size() == 1);
  auto& c = rebuilt[0].changes.at(0);
  CHECK(c.expectedVersion == 15);
  CHECK(written(c)->desired_state() == TaskState::Shutdown);
  CHECK(written(c)->status()->state() == TaskState::Running);
}

TEST_CASE("a pending status whose task was deleted, moved or went further is dropped") {
  TestClock clock;
  Assignments view;
  view.put(taskEntry("t1", 10, "n1", TaskState::Assigned));
  view.put(taskEntry("t2", 11, "n1", TaskState::Assigned));
  view.put(taskEntry("t3", 12, "n1", TaskState::Assigned));
  TaskStatusWrites w;
  w.report("n1", "t1", reported(TaskState::Running), view);
  w.report("n1", "t2", reported(TaskState::Running), view);
  w.report("n1", "t3", reported(TaskState::Running), view);
  view.erase("t1");
  view.put(taskEntry("t2", 20, "n2", TaskState::Assigned));
  view.put(taskEntry("t3", 21, "n1", TaskState::Failed));
  CHECK(w.take(clock.now, view).empty());
  CHECK(w.pending() == 0);
  CHECK(w.counters().dropped == 3);
  CHECK(w.inFlight() == 0);
}

// --- secrets and configs in assignments (docs/containers.md "Secrets and configs") -------------

namespace {

// A task of node `node` whose container refers to the secrets and configs given by id.
TaskEntry taskUsing(const std::string& id, uint64_t version, const std::string& node,
                    const std::vector<std::string>& secrets, const std::vector<std::string>& configs) {
  auto t = std::unique_ptr<objects::TaskT>(
      flatbuffers::GetRoot<objects::Task>(taskBytes(id, version, node, TaskState::Assigned).data())->UnPack());
  t->spec = std::make_unique<objects::TaskSpecT>();
  t->spec->container = std::make_unique<objects::ContainerSpecT>();
  for (const auto& s : secrets) {
    auto r = std::make_unique<objects::SecretReferenceT>();
    r->secret_id = s;
    t->spec->container->secrets.push_back(std::move(r));
  }
  for (const auto& c : configs) {
    auto r = std::make_unique<objects::ConfigReferenceT>();
    r->config_id = c;
    t->spec->container->configs.push_back(std::move(r));
  }
  flatbuffers::FlatBufferBuilder fbb;
  fbb.Finish(objects::Task::Pack(fbb, t.get()));
  auto entry = readTask({reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize()});
  REQUIRE(entry.ok());
  return std::move(entry).value();
}

template <class T>
std::string fileBytes(const std::string& id, uint64_t version, const std::string& data) {
  typename T::NativeTableType o;
  o.id = id;
  o.meta = std::make_unique<objects::Meta>(version, 0, 0);
  o.spec = std::make_unique<typename std::remove_reference_t<decltype(*o.spec)>>();
  o.spec->annotations = std::make_unique<objects::AnnotationsT>();
  o.spec->annotations->name = id + "-name";
  o.spec->data.assign(data.begin(), data.end());
  flatbuffers::FlatBufferBuilder fbb;
  fbb.Finish(T::Pack(fbb, &o));
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

FileEntry secretEntry(const std::string& id, uint64_t version = 1, const std::string& data = "pw") {
  auto e = readSecret(fileBytes<objects::Secret>(id, version, data));
  REQUIRE(e.ok());
  return std::move(e).value();
}

FileEntry configEntry(const std::string& id, uint64_t version = 1) {
  auto e = readConfig(fileBytes<objects::Config>(id, version, "conf"));
  REQUIRE(e.ok());
  return std::move(e).value();
}

std::set<std::string> secretIdsOf(const std::vector<std::string>& bytes) {
  std::set<std::string> out;
  for (auto& b : bytes) out.insert(flatbuffers::GetRoot<objects::Secret>(b.data())->id()->str());
  return out;
}

std::set<std::string> configIdsOf(const std::vector<std::string>& bytes) {
  std::set<std::string> out;
  for (auto& b : bytes) out.insert(flatbuffers::GetRoot<objects::Config>(b.data())->id()->str());
  return out;
}

}  // namespace

TEST_CASE("readTask reads the secret and config ids its container refers to; readSecret verifies") {
  auto t = taskUsing("t1", 3, "n1", {"s1", "s2"}, {"c1"});
  CHECK(t.secretIds == std::vector<std::string>{"s1", "s2"});
  CHECK(t.configIds == std::vector<std::string>{"c1"});
  auto s = secretEntry("s1", 7);
  CHECK(s.id == "s1");
  CHECK(s.version == 7);
  auto bad = readSecret("not a secret");
  REQUIRE_FALSE(bad.ok());
  CHECK(contains(bad.error().message, "does not verify"));
  CHECK_FALSE(readConfig(fileBytes<objects::Config>("", 1, "x")).ok());  // no id
}

TEST_CASE("a complete set carries the secrets and configs of the node's tasks, and only those") {
  TestClock clock;
  Assignments a;
  a.replaceSecrets({secretEntry("s1"), secretEntry("s2"), secretEntry("s3")});
  a.replaceConfigs({configEntry("c1"), configEntry("c2")});
  a.put(taskUsing("t1", 1, "n1", {"s1"}, {"c1"}));
  a.put(taskUsing("t2", 2, "n1", {"s1", "s2"}, {}));
  a.put(taskUsing("t3", 3, "n2", {"s3"}, {"c2"}));  // another node's: never sent to n1
  a.put(taskUsing("t4", 4, "n1", {"gone"}, {}));    // a secret the view has not: left out
  a.open(1, "n1");
  auto first = a.take(1, clock.now, 10);
  REQUIRE(first.size() == 1);
  CHECK(first[0].full);
  CHECK(secretIdsOf(first[0].secrets) == std::set<std::string>{"s1", "s2"});
  CHECK(configIdsOf(first[0].configs) == std::set<std::string>{"c1"});

  // An increment: those of its updated tasks only.
  clock.advance(200ms);
  a.put(taskUsing("t5", 5, "n1", {"s3"}, {"c2"}));
  auto second = a.take(1, clock.now, 10);
  REQUIRE(second.size() == 1);
  CHECK(idsOf(second[0].updated) == std::set<std::string>{"t5"});
  CHECK(secretIdsOf(second[0].secrets) == std::set<std::string>{"s3"});
  CHECK(configIdsOf(second[0].configs) == std::set<std::string>{"c2"});

  // A removal carries nothing; a task without references neither.
  clock.advance(200ms);
  a.erase("t5");
  a.put(taskUsing("t6", 6, "n1", {}, {}));
  auto third = a.take(1, clock.now, 10);
  REQUIRE(third.size() == 1);
  CHECK(third[0].removed == std::vector<std::string>{"t5"});
  CHECK(third[0].secrets.empty());
  CHECK(third[0].configs.empty());
}

TEST_CASE("secrets follow the store's view: newer versions win, deleted ones are not sent") {
  TestClock clock;
  Assignments a;
  a.putSecret(secretEntry("s1", 5, "new"));
  a.putSecret(secretEntry("s1", 4, "old"));  // a watch event behind a re-read
  a.putSecret(secretEntry("s2", 1));
  a.eraseSecret("s2");
  CHECK(a.secrets() == 1);
  a.put(taskUsing("t1", 1, "n1", {"s1", "s2"}, {}));
  a.open(1, "n1");
  auto items = a.take(1, clock.now, 10);
  REQUIRE(items.size() == 1);
  REQUIRE(items[0].secrets.size() == 1);
  auto* s = flatbuffers::GetRoot<objects::Secret>(items[0].secrets[0].data());
  CHECK(std::string(s->spec()->data()->begin(), s->spec()->data()->end()) == "new");
}

TEST_CASE("an item's secrets and configs go on the wire as the agent reads them") {
  AssignmentItem item;
  item.full = true;
  item.version = 3;
  item.updated = {taskUsing("t1", 1, "n1", {"s1"}, {"c1"}).bytes};
  item.secrets = {secretEntry("s1", 2, "p@ss").bytes};
  item.configs = {configEntry("c1").bytes};
  auto buf = encodeAssignments(item);
  const bus::Protocol* protocols[] = {&kDispatchProtocol};
  REQUIRE(bus::verify({buf.data(), buf.size()}, protocols).ok());
  auto* body = flatbuffers::GetRoot<dispatch::Envelope>(buf.data())->body_as_Assignments();
  REQUIRE(body);
  REQUIRE(body->secrets()->size() == 1);
  auto* s = body->secrets()->Get(0);
  CHECK(s->id()->str() == "s1");
  CHECK(s->spec()->annotations()->name()->str() == "s1-name");
  CHECK(std::string(s->spec()->data()->begin(), s->spec()->data()->end()) == "p@ss");
  REQUIRE(body->configs()->size() == 1);
  CHECK(body->configs()->Get(0)->id()->str() == "c1");
}

}  // namespace shoal::dispatcherd
