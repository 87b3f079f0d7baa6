// dispatcherd's pure cores (services/dispatcherd): the session table and its heartbeat
// expiry on a clock of the test's own, the batching of node status writes, the join verdicts
// and the choice of leader for a redirect, and the Node/Cluster values read from and written
// to the store.
#include <doctest/doctest.h>

#include <memory>
#include <random>

#include "services/dispatcherd/join.h"
#include "services/dispatcherd/records.h"
#include "services/dispatcherd/sessions.h"
#include "services/dispatcherd/status_writes.h"

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

}  // namespace shoal::dispatcherd
