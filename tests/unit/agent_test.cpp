// agentd's pure parts (services/agentd): the node description, the failover order and
// backoff, heartbeat timing, the join's plan and the checks of what managers send (hello,
// join reply, raft membership, managers lists), and the swarm state Info shows; the worker's
// rules (worker.h), the report queue and the assignments' version chain, the fake executor,
// and a session carrying assignments and reports to a test dispatcher.
#include <doctest/doctest.h>

#include <ctime>

#include "common/ids.h"
#include "common/identity.h"
#include "common/object_codec.h"
#include "common/protocols.h"
#include "services/agentd/executor.h"
#include "services/agentd/failover.h"
#include "services/agentd/fake_executor.h"
#include "services/agentd/join.h"
#include "services/agentd/manager_replies.h"
#include "services/agentd/node_description.h"
#include "services/agentd/session.h"
#include "services/agentd/swarm_agent.h"
#include "services/agentd/worker.h"

namespace shoal::agentd {
namespace {

using namespace std::chrono_literals;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST_CASE("the node description: OCI architecture names, CPUs in nano, hostnames checked") {
  CHECK(ociArchitecture("x86_64") == "amd64");
  CHECK(ociArchitecture("aarch64") == "arm64");
  CHECK(ociArchitecture("armv7l") == "arm");
  CHECK(ociArchitecture("i686") == "386");
  CHECK(ociArchitecture("ppc64le") == "ppc64le");
  CHECK(ociArchitecture("s390x") == "s390x");
  CHECK(ociArchitecture("loongarch64") == "loong64");
  CHECK(ociArchitecture("weird9") == "weird9");

  auto d = describeNode({"n1", "x86_64", 4, 8LL << 30}, "0.1.0");
  CHECK(d.hostname == "n1");
  CHECK(d.os == "linux");
  CHECK(d.architecture == "amd64");
  CHECK(d.nanoCpus == 4'000'000'000LL);
  CHECK(d.memoryBytes == 8LL << 30);
  CHECK(d.engineVersion == "0.1.0");

  flatbuffers::FlatBufferBuilder fbb;
  fbb.Finish(buildDescription(fbb, d));
  auto* fb = flatbuffers::GetRoot<objects::NodeDescription>(fbb.GetBufferPointer());
  CHECK(fb->hostname()->str() == "n1");
  CHECK(fb->platform()->architecture()->str() == "amd64");
  CHECK(fb->platform()->os()->str() == "linux");
  CHECK(fb->resources()->nano_cpus() == 4'000'000'000LL);
  CHECK(fb->resources()->memory_bytes() == 8LL << 30);
  CHECK(fb->engine()->engine_version()->str() == "0.1.0");

  CHECK(checkHostname("lab-a.m1_2").ok());
  CHECK_FALSE(checkHostname("").ok());
  CHECK(contains(checkHostname("a b").error().message, "'a b'"));
  CHECK_FALSE(checkHostname(std::string(254, 'a')).ok());
  CHECK(checkHostname(std::string(253, 'a')).ok());

  auto probed = probeHost("given");
  REQUIRE(probed.ok());
  CHECK(probed->hostname == "given");
  CHECK(probed->cpus >= 1);
  CHECK(probed->memoryBytes > 0);
  CHECK_FALSE(probeHost("bad name").ok());
}

TEST_CASE("backoff: 100 ms doubling to 8 s, reset by a session, held at 8 s when removed") {
  Backoff b;
  std::vector<int64_t> waits;
  for (int i = 0; i < 10; ++i) waits.push_back(b.next().count());
  CHECK(waits == std::vector<int64_t>{100, 200, 400, 800, 1600, 3200, 6400, 8000, 8000, 8000});
  b.reset();
  CHECK(b.next() == 100ms);
  CHECK(b.peek() == 200ms);
  b.holdAtMax();
  CHECK(b.next() == 8000ms);
  CHECK(b.next() == 8000ms);
}

TEST_CASE("failover after a lost session waits at most a quarter period while the node is live") {
  using namespace std::chrono;
  const Nanos period = seconds(1);
  // The lab's failover: a leaderless second made the backoff grow; the node's last heartbeat
  // was 1.5 s ago, so the dispatcher of the new leader would mark it Down 1.5 s from now.
  CHECK(failoverWait(3200ms, period, Nanos(milliseconds(1500))) == 250ms);
  CHECK(failoverWait(200ms, period, Nanos(milliseconds(1500))) == 200ms);
  // 3 periods without a heartbeat: the node is Down already; the backoff spares the managers.
  CHECK(failoverWait(3200ms, period, Nanos(seconds(3))) == 3200ms);
  CHECK(failoverWait(3200ms, period, std::nullopt) == 3200ms);
  // A short period never makes the wait shorter than the first backoff step.
  CHECK(failoverWait(3200ms, milliseconds(200), Nanos(milliseconds(100))) == 100ms);
  // Swarm's default period: at most 1.25 s.
  CHECK(failoverWait(6400ms, seconds(5), Nanos(seconds(4))) == 1250ms);
}

node::Manager m(const std::string& id, int port) {
  return {id, "10.0.0.1:" + std::to_string(port),
          std::string(40, static_cast<char>('a' + port % 26))};
}

TEST_CASE("manager rotation: round the list, redirects first, a new list keeps the current") {
  ManagerRotation r;
  CHECK(r.current() == nullptr);
  r.advance();  // nothing to advance over
  CHECK(r.current() == nullptr);

  r = ManagerRotation({m("a", 1), m("b", 2), m("c", 3)});
  CHECK(r.current()->nodeId == "a");
  r.advance();
  CHECK(r.current()->nodeId == "b");
  r.advance();
  r.advance();
  CHECK(r.current()->nodeId == "a");

  r.redirectTo(m("c", 3));
  CHECK(r.current()->nodeId == "c");
  CHECK(r.managers().size() == 3);
  r.redirectTo(m("d", 4));  // a leader not in the list yet
  CHECK(r.current()->nodeId == "d");
  CHECK(r.managers().size() == 4);
  r.advance();
  CHECK(r.current()->nodeId == "a");

  r.advance();  // at b
  CHECK_FALSE(r.replace({m("a", 1), m("b", 2), m("c", 3), m("d", 4)}));
  CHECK(r.replace({m("c", 3), m("b", 2)}));
  CHECK(r.current()->nodeId == "b");
  CHECK(r.replace({m("e", 5)}));  // b is gone: start at the first
  CHECK(r.current()->nodeId == "e");
}

TEST_CASE("heartbeat timing: period ± 10 %, answer within a period bounded to 1..10 s") {
  CHECK(heartbeatDelay(5s, 0.0) == 4500ms);
  CHECK(heartbeatDelay(5s, 0.5) == 5000ms);
  CHECK(heartbeatDelay(5s, 0.999999) == 5500ms);
  CHECK(heartbeatDelay(1s, 2.0) == 1100ms);  // a draw out of range is clamped
  CHECK(heartbeatTimeout(5s) == 5000ms);
  CHECK(heartbeatTimeout(200ms) == 1000ms);
  CHECK(heartbeatTimeout(60s) == 10000ms);
  CHECK(sanePeriod(2'000'000'000) == 2s);
  CHECK(sanePeriod(0) == 5s);
  CHECK(sanePeriod(-1) == 5s);
  CHECK(sanePeriod(50'000'000) == 5s);
}

Result<std::string> source10(std::string_view) { return std::string("10.9.9.9"); }

TEST_CASE("the join's plan: token, manager address, advertise and listen addresses") {
  auto ca = identity::ClusterCA::create(newId());
  REQUIRE(ca.ok());
  std::string token = identity::makeJoinToken(*ca, identity::systemRandom());

  auto plan = planJoin({token, "10.0.0.1", "", ""}, source10);
  REQUIRE(plan.ok());
  CHECK(plan->manager.host == "10.0.0.1");
  CHECK(plan->manager.port == 2377);
  CHECK(plan->advertiseHost == "10.9.9.9");
  CHECK(plan->listenHost == "0.0.0.0");
  CHECK(plan->port == 2377);
  CHECK(identity::tokenMatchesCA(plan->parsedToken, ca->publicKey()));

  plan = planJoin({token, "10.0.0.1:4000", "10.0.0.2:5000", ""}, source10);
  REQUIRE(plan.ok());
  CHECK(plan->manager.port == 4000);
  CHECK(plan->advertiseHost == "10.0.0.2");
  CHECK(plan->port == 5000);

  plan = planJoin({token, "10.0.0.1", "", "10.0.0.3:6000"}, source10);
  REQUIRE(plan.ok());
  CHECK(plan->listenHost == "10.0.0.3");
  CHECK(plan->port == 6000);

  CHECK(contains(planJoin({"", "10.0.0.1", "", ""}, source10).error().message, "--token"));
  CHECK(contains(planJoin({"SWMTKN-1-x", "10.0.0.1", "", ""}, source10).error().message,
                 "not a swarm join token"));
  CHECK(contains(planJoin({token, "", "", ""}, source10).error().message, "manager's address"));
  CHECK(contains(planJoin({token, "10.0.0.1:0", "", ""}, source10).error().message,
                 "the manager address"));
  CHECK(
      contains(planJoin({token, "10.0.0.1", "10.0.0.2:1", "10.0.0.2:2"}, source10).error().message,
               "one port"));
  CHECK(contains(planJoin({token, "10.0.0.1", "no such host!", ""}, source10).error().message,
                 "--advertise-addr"));
  auto local = sourceAddressTowards("localhost");  // by name: resolved, then routed
  REQUIRE_MESSAGE(local.ok(), (local ? "" : local.error().message));
  CHECK((*local == "127.0.0.1" || *local == "::1"));
  CHECK(sourceAddressTowards("127.0.0.1").value() == "127.0.0.1");
  CHECK(contains(sourceAddressTowards("no-such-host.invalid").error().message, "cannot resolve"));
  auto noRoute = [](std::string_view) -> Result<std::string> { return Error{"no route to x"}; };
  CHECK(contains(planJoin({token, "10.0.0.1", "", ""}, noRoute).error().message, "no route to x"));
}

// A cluster as a manager would show it: a CA, a manager's certificate and key.
struct Cluster {
  identity::ClusterCA ca = identity::ClusterCA::create(newId()).value();
  curve::KeyPair managerKey = curve::generate();
  int64_t now = std::time(nullptr);

  std::vector<uint8_t> certificate(const std::string& nodeId, identity::Role role,
                                   const curve::KeyPair& key, int64_t notBefore = 0,
                                   std::chrono::seconds life = std::chrono::hours(24)) const {
    auto k = identity::curveKeyFromZ85(key.publicKey);
    REQUIRE(k.ok());
    auto c = ca.issue(nodeId, role, *k, notBefore ? notBefore : now - 3600, life, 1);
    REQUIRE_MESSAGE(c.ok(), (c ? "" : c.error().message));
    return *c;
  }
  std::string token() const { return identity::makeJoinToken(ca, identity::systemRandom()); }
};

std::vector<uint8_t> hello(const std::vector<uint8_t>& ca, const std::vector<uint8_t>& cert) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = dispatch::CreateHelloReply(fbb, ca.empty() ? 0 : fbb.CreateVector(ca),
                                         cert.empty() ? 0 : fbb.CreateVector(cert));
  fbb.Finish(body);
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

const dispatch::HelloReply* asHello(const std::vector<uint8_t>& b) {
  return flatbuffers::GetRoot<dispatch::HelloReply>(b.data());
}

identity::ParsedJoinToken parsed(const std::string& token) {
  auto t = identity::parseJoinToken(token);
  REQUIRE(t.ok());
  return *t;
}

TEST_CASE("hello: the token's CA, a manager's certificate signed by it, its key") {
  Cluster c;
  const std::string mgr1 = newId();
  auto cert = c.certificate(mgr1, identity::Role::Manager, c.managerKey);
  auto good = hello(c.ca.savePublic(), cert);
  auto trusted = checkHello(asHello(good), parsed(c.token()), "10.0.0.1:2379", c.now);
  REQUIRE_MESSAGE(trusted.ok(), (trusted ? "" : trusted.error().message));
  CHECK(trusted->nodeId == mgr1);
  CHECK(trusted->publicKey == c.managerKey.publicKey);
  CHECK(trusted->ca.clusterId() == c.ca.clusterId());
  CHECK_FALSE(trusted->ca.canSign());

  Cluster other;
  auto r = checkHello(asHello(good), parsed(other.token()), "10.0.0.1:2379", c.now);
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "the join token was made for another swarm (its CA digest " +
                                        shortDigest(other.ca.digest())));
  CHECK(contains(r.error().message, shortDigest(c.ca.digest())));

  auto worker =
      hello(c.ca.savePublic(), c.certificate(newId(), identity::Role::Worker, c.managerKey));
  r = checkHello(asHello(worker), parsed(c.token()), "10.0.0.1:2379", c.now);
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "is a worker"));

  // A certificate of another CA shown beside this CA.
  auto forged =
      hello(c.ca.savePublic(), other.certificate(mgr1, identity::Role::Manager, c.managerKey));
  r = checkHello(asHello(forged), parsed(c.token()), "10.0.0.1:2379", c.now);
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "does not vouch"));

  auto expired = hello(c.ca.savePublic(), c.certificate(mgr1, identity::Role::Manager,
                                                        c.managerKey, c.now - 7200, 1h));
  r = checkHello(asHello(expired), parsed(c.token()), "10.0.0.1:2379", c.now);
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "clocks"));

  auto noCA = hello({}, cert);
  CHECK(contains(checkHello(asHello(noCA), parsed(c.token()), "h:2379", c.now).error().message,
                 "sent no CA"));
  auto garbageCA = hello({1, 2, 3}, cert);
  CHECK(contains(checkHello(asHello(garbageCA), parsed(c.token()), "h:2379", c.now).error().message,
                 "cannot be read"));
  auto noCert = hello(c.ca.savePublic(), {});
  CHECK(contains(checkHello(asHello(noCert), parsed(c.token()), "h:2379", c.now).error().message,
                 "no certificate"));
}

struct Reply {
  std::vector<uint8_t> bytes;
  const dispatch::JoinReply* get() const {
    return flatbuffers::GetRoot<dispatch::JoinReply>(bytes.data());
  }
};

struct ReplyFields {
  std::string nodeId;
  objects::NodeRole role = objects::NodeRole::Worker;
  std::vector<uint8_t> certificate;
  std::string clusterId;
  std::vector<node::Manager> managers;
  bool raft = false;
  std::vector<std::string> peerAddrs = {"10.0.0.1:2378"};
};

Reply joinReply(const ReplyFields& f) {
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<flatbuffers::Offset<dispatch::Manager>> managers;
  for (const auto& m : f.managers)
    managers.push_back(dispatch::CreateManagerDirect(fbb, m.nodeId.c_str(), m.addr.c_str(),
                                                     m.publicKey.c_str()));
  flatbuffers::Offset<dispatch::RaftJoin> raft = 0;
  if (f.raft) {
    std::vector<uint64_t> ids = {11};
    std::vector<std::string> keys = {curve::generate().publicKey};
    raft = dispatch::CreateRaftJoin(fbb, 22, 33, fbb.CreateVector(ids),
                                    fbb.CreateVectorOfStrings(f.peerAddrs),
                                    fbb.CreateVectorOfStrings(keys));
  }
  auto body = dispatch::CreateJoinReply(fbb, fbb.CreateString(f.nodeId), f.role,
                                        fbb.CreateVector(f.certificate),
                                        fbb.CreateString(f.clusterId), fbb.CreateVector(managers),
                                        2'000'000'000, raft);
  fbb.Finish(body);
  return {{fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()}};
}

TEST_CASE("a join reply: a certificate for this key and node, the role it says, a manager's raft") {
  Cluster c;
  auto nodeKey = curve::generate();
  JoinPlan plan;
  plan.advertiseHost = "10.0.0.7";
  plan.listenHost = "0.0.0.0";
  plan.port = 2377;
  node::Manager joinedAt{"mgr1", "10.0.0.1:2377", c.managerKey.publicKey};

  const std::string node1 = newId(), node2 = newId();
  ReplyFields f;
  f.nodeId = node1;
  f.certificate = c.certificate(node1, identity::Role::Worker, nodeKey);
  f.clusterId = c.ca.clusterId();
  auto r = acceptJoinReply(joinReply(f).get(), c.ca, nodeKey, plan, joinedAt, c.now);
  REQUIRE_MESSAGE(r.ok(), (r ? "" : r.error().message));
  CHECK(r->config.nodeId == node1);
  CHECK(r->config.clusterId == c.ca.clusterId());
  CHECK_FALSE(r->config.manager);
  CHECK(r->config.certificate == f.certificate);
  CHECK(r->config.ca == c.ca.savePublic());
  CHECK(r->config.advertiseHost == "10.0.0.7");
  CHECK(r->config.port == 2377);
  REQUIRE(r->config.managers.size() == 1);  // none listed: the one that answered
  CHECK(r->config.managers[0].addr == "10.0.0.1:2377");
  CHECK_FALSE(r->raft);
  CHECK_FALSE(r->config.raft);
  CHECK(r->heartbeatPeriod == 2s);

  SUBCASE("a certificate for another key") {
    f.certificate = c.certificate(node1, identity::Role::Worker, curve::generate());
    auto bad = acceptJoinReply(joinReply(f).get(), c.ca, nodeKey, plan, joinedAt, c.now);
    CHECK(contains(bad.error().message, "another node's key"));
  }
  SUBCASE("a certificate for another node id") {
    f.certificate = c.certificate(node2, identity::Role::Worker, nodeKey);
    auto bad = acceptJoinReply(joinReply(f).get(), c.ca, nodeKey, plan, joinedAt, c.now);
    CHECK(contains(bad.error().message, "for node " + node2));
  }
  SUBCASE("a role the certificate does not say") {
    f.role = objects::NodeRole::Manager;
    auto bad = acceptJoinReply(joinReply(f).get(), c.ca, nodeKey, plan, joinedAt, c.now);
    CHECK(contains(bad.error().message, "role Manager"));
  }
  SUBCASE("another cluster's id") {
    f.clusterId = "other";
    auto bad = acceptJoinReply(joinReply(f).get(), c.ca, nodeKey, plan, joinedAt, c.now);
    CHECK(contains(bad.error().message, "cluster other"));
  }
  SUBCASE("a manager without its raft membership, then with it") {
    f.role = objects::NodeRole::Manager;
    f.certificate = c.certificate(node1, identity::Role::Manager, nodeKey);
    auto bad = acceptJoinReply(joinReply(f).get(), c.ca, nodeKey, plan, joinedAt, c.now);
    CHECK(contains(bad.error().message, "no raft membership"));
    f.raft = true;
    f.managers = {{"mgr1", "10.0.0.1:2377", c.managerKey.publicKey},
                  {"mgr2", "10.0.0.2:2377", curve::generate().publicKey}};
    auto ok = acceptJoinReply(joinReply(f).get(), c.ca, nodeKey, plan, joinedAt, c.now);
    REQUIRE_MESSAGE(ok.ok(), (ok ? "" : ok.error().message));
    CHECK(ok->config.manager);
    REQUIRE(ok->config.raft);
    CHECK(ok->config.raft->id == 22);
    CHECK(ok->config.raft->clusterId == 33);
    REQUIRE(ok->raft);
    REQUIRE(ok->raft->peers.size() == 1);
    CHECK(ok->raft->peers[0].raftId == 11);
    CHECK(ok->config.managers.size() == 2);
  }
  SUBCASE("a raft membership whose lists disagree") {
    f.role = objects::NodeRole::Manager;
    f.certificate = c.certificate(node1, identity::Role::Manager, nodeKey);
    f.raft = true;
    f.peerAddrs = {"10.0.0.1:2378", "10.0.0.2:2378"};
    auto bad = acceptJoinReply(joinReply(f).get(), c.ca, nodeKey, plan, joinedAt, c.now);
    CHECK(contains(bad.error().message, "1 peer ids, 2 addresses and 1 keys"));
  }
  SUBCASE("a managers list with a bad entry") {
    f.managers = {{"mgr1", "10.0.0.1:2377", "short"}};
    auto bad = acceptJoinReply(joinReply(f).get(), c.ca, nodeKey, plan, joinedAt, c.now);
    CHECK(contains(bad.error().message, "CURVE key"));
    f.managers = {{"mgr1", "10.0.0.1", c.managerKey.publicKey}};
    bad = acceptJoinReply(joinReply(f).get(), c.ca, nodeKey, plan, joinedAt, c.now);
    CHECK(contains(bad.error().message, "has no port"));
    f.managers = {{"", "10.0.0.1:2377", c.managerKey.publicKey}};
    bad = acceptJoinReply(joinReply(f).get(), c.ca, nodeKey, plan, joinedAt, c.now);
    CHECK(contains(bad.error().message, "no node id"));
  }
}

TEST_CASE("the swarm state Info shows") {
  CHECK(std::string(swarmStateName(swarmState(false, false, false, SessionState::Stopped))) ==
        "inactive");
  CHECK(std::string(swarmStateName(swarmState(false, false, true, SessionState::Stopped))) ==
        "pending");
  CHECK(std::string(swarmStateName(swarmState(true, false, false, SessionState::Connecting))) ==
        "pending");
  CHECK(std::string(swarmStateName(swarmState(true, false, false, SessionState::Active))) ==
        "active");
  CHECK(std::string(swarmStateName(swarmState(true, false, false, SessionState::Refused))) ==
        "error");
  CHECK(std::string(swarmStateName(swarmState(false, true, false, SessionState::Stopped))) ==
        "error");
}

// A dispatcher as the session meets it: CURVE on loopback, answering as `answer` says.
struct TestDispatcher {
  enum class Mode { Serve, Redirect, FailHeartbeats, Removed };
  bus::Server server;
  curve::KeyPair key = curve::generate();
  std::string id = newId();
  Mode mode = Mode::Serve;
  node::Manager redirectTo;
  std::vector<node::Manager> managers;
  int opens = 0, heartbeats = 0;

  TestDispatcher(Loop& loop, zmq::context_t& ctx) : server(loop, ctx) {
    server.setCurve({key.publicKey, key.secretKey});
    server.serve(kDispatchProtocol, [this](bus::Call call) { answer(call); });
    REQUIRE(server.bind("tcp://127.0.0.1:*").ok());
  }
  node::Manager manager() const {
    std::string ep = server.endpoint();
    return {id, ep.substr(ep.rfind('/') + 1), key.publicKey};
  }
  void answer(bus::Call& call) {
    auto type = call.as<dispatch::Envelope>()->body_type();
    if (type == dispatch::Body::OpenSessionRequest) ++opens;
    if (type == dispatch::Body::HeartbeatRequest) ++heartbeats;
    flatbuffers::FlatBufferBuilder fbb;
    if (type == dispatch::Body::RenewRequest) {
      std::vector<uint8_t> cert = {1, 2, 3};
      auto body = dispatch::CreateRenewReply(fbb, fbb.CreateVector(cert));
      return call.reply(
          bus::message<dispatch::Envelope>(fbb, dispatch::Body::RenewReply, body.Union()));
    }
    if (mode == Mode::Removed)
      return call.fail(wire::ErrorCode::NotFound, "this node was removed from the swarm");
    if (mode == Mode::FailHeartbeats && type == dispatch::Body::HeartbeatRequest)
      return call.fail(wire::ErrorCode::NotLeader, "not the leader any more");
    if (mode == Mode::Redirect) {
      auto leader = dispatch::CreateManagerDirect(fbb, redirectTo.nodeId.c_str(),
                                                  redirectTo.addr.c_str(),
                                                  redirectTo.publicKey.c_str());
      auto body = dispatch::CreateRedirect(fbb, leader);
      return call.reply(
          bus::message<dispatch::Envelope>(fbb, dispatch::Body::Redirect, body.Union()));
    }
    std::vector<flatbuffers::Offset<dispatch::Manager>> list;
    for (const auto& m : managers)
      list.push_back(dispatch::CreateManagerDirect(fbb, m.nodeId.c_str(), m.addr.c_str(),
                                                   m.publicKey.c_str()));
    auto body = dispatch::CreateSessionReply(fbb, fbb.CreateString("s-" + id), 0,
                                             200'000'000, fbb.CreateVector(list));
    call.reply(bus::message<dispatch::Envelope>(fbb, dispatch::Body::SessionReply, body.Union()));
  }
};

template <class F>
bool runUntil(Loop& loop, F done, std::chrono::milliseconds limit) {
  auto end = Loop::Clock::now() + limit;
  while (!done() && Loop::Clock::now() < end) loop.runOnce(10ms);
  return done();
}

TEST_CASE("the session: a redirect to the leader, heartbeats, failover on a lost leader, a "
          "removed node held at the longest backoff") {
  Loop loop;
  zmq::context_t ctx(1);
  TestDispatcher follower(loop, ctx), leader(loop, ctx);
  follower.mode = TestDispatcher::Mode::Redirect;
  follower.redirectTo = leader.manager();
  leader.managers = {leader.manager(), follower.manager()};
  int replies = 0, listChanges = 0, stateChanges = 0;
  Session session(loop, ctx, curve::generate(), describeNode({"n1", "x86_64", 1, 1 << 30}, "t"),
                  {[&](const std::vector<node::Manager>&) { ++listChanges; },
                   [&](const dispatch::SessionReply&) { ++replies; }, [&] { ++stateChanges; }, {}, {}});
  session.start({follower.manager()}, "127.0.0.1", 5s);
  CHECK(session.state() == SessionState::Connecting);

  REQUIRE_MESSAGE(runUntil(loop, [&] { return session.state() == SessionState::Active; }, 5s),
                  session.json().dump());
  CHECK(follower.opens == 1);
  CHECK(leader.opens == 1);
  CHECK(session.json().value("manager", "") == leader.manager().addr);
  CHECK(session.period() == 200ms);
  // The leader's list replaced the one the session made of its start and the redirect.
  REQUIRE(session.managers().size() == 2);
  CHECK(session.managers()[0].addr == leader.manager().addr);
  CHECK(listChanges == 1);

  // Heartbeats every 200 ms ± 10 %: 4 or 5 in a second.
  int before = leader.heartbeats;
  runUntil(loop, [] { return false; }, 1000ms);
  CHECK(leader.heartbeats - before >= 4);
  CHECK(leader.heartbeats - before <= 6);
  CHECK(replies == 1 + leader.heartbeats);

  // A renewal goes on the open session; its certificate is the caller's to check.
  std::optional<Result<std::vector<uint8_t>>> renewed;
  session.renew([&](Result<std::vector<uint8_t>> r) { renewed = std::move(r); });
  REQUIRE(runUntil(loop, [&] { return renewed.has_value(); }, 2s));
  REQUIRE(renewed->ok());
  CHECK(renewed->value() == std::vector<uint8_t>{1, 2, 3});

  // The leader stops leading: the session goes round the list, and is redirected back.
  leader.mode = TestDispatcher::Mode::FailHeartbeats;
  REQUIRE(runUntil(loop, [&] { return session.state() == SessionState::Connecting; }, 2s));
  CHECK(contains(session.json().value("last_error", ""), "not the leader any more"));
  leader.mode = TestDispatcher::Mode::Serve;
  REQUIRE(runUntil(loop, [&] { return session.state() == SessionState::Active; }, 5s));
  CHECK(follower.opens == 2);

  // Removed: refused everywhere, asked again only every 8 s.
  leader.mode = follower.mode = TestDispatcher::Mode::Removed;
  REQUIRE(runUntil(loop, [&] { return session.state() == SessionState::Refused; }, 5s));
  CHECK(session.json().value("backoff_ms", 0) == 8000);
  CHECK(contains(session.refusal(), "removed"));
  int opens = leader.opens + follower.opens;
  runUntil(loop, [] { return false; }, 1500ms);
  CHECK(leader.opens + follower.opens == opens);
  CHECK(stateChanges >= 4);

  renewed.reset();
  session.renew([&](Result<std::vector<uint8_t>> r) { renewed = std::move(r); });
  REQUIRE(renewed.has_value());
  CHECK(contains(renewed->error().message, "no session is open"));

  session.stop();
  CHECK(session.state() == SessionState::Stopped);
  CHECK(session.managers().empty());
}

// ---- the node's tasks (worker.h, fake_executor.h)

using objects::TaskState;

// A stored Task as the dispatcher sends it.
std::string taskBytes(const std::string& id, TaskState desired,
                      TaskState state = TaskState::Assigned, uint64_t slot = 1,
                      const std::string& service = "web") {
  objects::TaskT t;
  t.id = id;
  t.meta = std::make_unique<objects::Meta>();
  t.service_id = "svc-" + service;
  t.slot = slot;
  t.node_id = "node-1";
  t.desired_state = desired;
  t.service_annotations = std::make_unique<objects::AnnotationsT>();
  t.service_annotations->name = service;
  t.annotations = std::make_unique<objects::AnnotationsT>();
  t.annotations->name = service + "." + std::to_string(slot) + "." + id;
  t.status = std::make_unique<objects::TaskStatusT>();
  t.status->state = state;
  return objects_codec::pack<objects::Task>(t);
}

AssignedTask assigned(const std::string& id, TaskState desired,
                      TaskState state = TaskState::Assigned, uint64_t slot = 1) {
  auto t = readAssignedTask(taskBytes(id, desired, state, slot));
  REQUIRE(t.ok());
  return std::move(t).value();
}

// An executor that records what it is asked; the test plays its events.
struct RecordingExecutor : Executor {
  std::vector<std::string> calls;
  std::string_view name() const override { return "recording"; }
  void prepare(const objects::Task& t) override { calls.push_back("prepare " + t.id()->str()); }
  void start(const std::string& id) override { calls.push_back("start " + id); }
  void stop(const std::string& id) override { calls.push_back("stop " + id); }
  void remove(const std::string& id) override { calls.push_back("remove " + id); }
  void adopt(const objects::Task& t) override { calls.push_back("adopt " + t.id()->str()); }
  void fire(const std::string& id, TaskState s, int exitCode = 0) {
    emit(TaskEvent{id, s, stateName(s), "", exitCode});
  }
  std::vector<std::string> take() { return std::exchange(calls, {}); }
};

using Calls = std::vector<std::string>;

// The reports waiting, as "id:state".
std::vector<std::string> reported(Worker& w) {
  std::vector<std::string> out;
  auto batch = w.reports().take(100);
  for (const auto& item : batch) out.push_back(item.taskId + ":" + stateName(item.report.state));
  w.reports().ack(batch);
  return out;
}

TEST_CASE("the worker's decision, rule by rule") {
  using A = Action;
  using P = Pending;
  // Desired RUNNING: prepare, then start once READY; nothing while the executor works.
  CHECK(nextAction(TaskState::Assigned, TaskState::Running, false, P::None) == A::Prepare);
  CHECK(nextAction(TaskState::Preparing, TaskState::Running, true, P::Prepare) == A::None);
  CHECK(nextAction(TaskState::Ready, TaskState::Running, true, P::None) == A::Start);
  CHECK(nextAction(TaskState::Starting, TaskState::Running, true, P::Start) == A::None);
  CHECK(nextAction(TaskState::Running, TaskState::Running, true, P::None) == A::None);
  // A job runs to completion the same way.
  CHECK(nextAction(TaskState::Ready, TaskState::Complete, true, P::None) == A::Start);
  // Desired READY (a restart's delay): prepared, never started.
  CHECK(nextAction(TaskState::Assigned, TaskState::Ready, false, P::None) == A::Prepare);
  CHECK(nextAction(TaskState::Ready, TaskState::Ready, true, P::None) == A::None);
  // Desired SHUTDOWN: stop whatever is under way; never started: SHUTDOWN at once.
  CHECK(nextAction(TaskState::Running, TaskState::Shutdown, true, P::None) == A::Stop);
  CHECK(nextAction(TaskState::Preparing, TaskState::Remove, true, P::Prepare) == A::Stop);
  CHECK(nextAction(TaskState::Running, TaskState::Shutdown, true, P::Stop) == A::None);
  CHECK(nextAction(TaskState::Assigned, TaskState::Shutdown, false, P::None) ==
        A::ReportShutdown);
  // Started before agentd restarted: found again (and then stopped if it must be).
  CHECK(nextAction(TaskState::Running, TaskState::Running, false, P::None) == A::Adopt);
  CHECK(nextAction(TaskState::Starting, TaskState::Shutdown, false, P::None) == A::Adopt);
  CHECK(nextAction(TaskState::Preparing, TaskState::Running, false, P::None) == A::Prepare);
  // Terminal: never started again here, whatever is desired.
  for (auto s : {TaskState::Complete, TaskState::Shutdown, TaskState::Failed, TaskState::Rejected})
    for (auto d : {TaskState::Running, TaskState::Ready, TaskState::Shutdown})
      CHECK(nextAction(s, d, false, P::None) == A::None);
}

TEST_CASE("the worker walks a task to RUNNING, reporting only forward") {
  RecordingExecutor ex;
  int64_t now = 1000;
  Worker w(ex, [&] { return now; });
  int wakeups = 0;
  w.onReport([&] { ++wakeups; });

  w.replaceAll({assigned("t1", TaskState::Running)});
  CHECK(ex.take() == Calls{"prepare t1"});
  for (auto s : {TaskState::Accepted, TaskState::Preparing}) ex.fire("t1", s);
  CHECK(ex.take().empty());
  CHECK(wakeups == 1);  // one wake-up while reports wait, not one per report
  ex.fire("t1", TaskState::Ready);
  CHECK(ex.take() == Calls{"start t1"});
  now = 2000;
  ex.fire("t1", TaskState::Starting);
  ex.fire("t1", TaskState::Running);
  // Only the latest state of a task waits to go.
  auto batch = w.reports().take(10);
  REQUIRE(batch.size() == 1);
  CHECK(batch[0].report.state == TaskState::Running);
  CHECK(batch[0].report.message == "running");
  CHECK(batch[0].report.timestamp == 2000);
  w.reports().ack(batch);

  // An earlier state, or the same again, is never reported.
  ex.fire("t1", TaskState::Preparing);
  ex.fire("t1", TaskState::Running);
  CHECK(w.reports().size() == 0);

  // The container exits: FAILED with its code; the agent does not restart it.
  ex.fire("t1", TaskState::Failed, 3);
  batch = w.reports().take(10);
  REQUIRE(batch.size() == 1);
  CHECK(batch[0].report.state == TaskState::Failed);
  CHECK(batch[0].report.exitCode == 3);
  w.reports().ack(batch);
  w.update({assigned("t1", TaskState::Running, TaskState::Failed)}, {});
  CHECK(ex.take().empty());
  auto list = nlohmann::json::array();
  w.appendJson(list);
  REQUIRE(list.size() == 1);
  CHECK(list[0]["state"] == "failed");
  CHECK(list[0]["exit_code"] == 3);
  CHECK(list[0]["name"] == "web.1");
  CHECK(list[0]["desired_state"] == "running");
}

TEST_CASE("a task desired READY is prepared and held until its desired state is RUNNING") {
  RecordingExecutor ex;
  Worker w(ex, [] { return int64_t{0}; });
  w.replaceAll({assigned("t1", TaskState::Ready)});
  CHECK(ex.take() == Calls{"prepare t1"});
  for (auto s : {TaskState::Accepted, TaskState::Preparing, TaskState::Ready}) ex.fire("t1", s);
  CHECK(ex.take().empty());
  CHECK(reported(w) == std::vector<std::string>{"t1:ready"});
  // The restart delay passed: schedulerd sets desired RUNNING.
  w.update({assigned("t1", TaskState::Running)}, {});
  CHECK(ex.take() == Calls{"start t1"});
}

TEST_CASE("desired SHUTDOWN stops a task; one never started is reported SHUTDOWN at once") {
  RecordingExecutor ex;
  Worker w(ex, [] { return int64_t{0}; });
  w.replaceAll({assigned("t1", TaskState::Running), assigned("t2", TaskState::Shutdown, TaskState::Assigned, 2)});
  CHECK(ex.take() == Calls{"prepare t1"});
  CHECK(reported(w) == std::vector<std::string>{"t2:shutdown"});
  ex.fire("t1", TaskState::Accepted);
  // A stop also cancels a prepare under way.
  w.update({assigned("t1", TaskState::Shutdown)}, {});
  CHECK(ex.take() == Calls{"stop t1"});
  ex.fire("t1", TaskState::Preparing);  // late; still reported (forward), nothing asked again
  CHECK(ex.take().empty());
  ex.fire("t1", TaskState::Shutdown);
  CHECK(reported(w) == std::vector<std::string>{"t1:shutdown"});
  w.update({assigned("t1", TaskState::Remove, TaskState::Shutdown)}, {});
  CHECK(ex.take().empty());
}

TEST_CASE("a task gone from the set is stopped and forgotten, with its unsent reports") {
  RecordingExecutor ex;
  Worker w(ex, [] { return int64_t{0}; });
  w.replaceAll({assigned("t1", TaskState::Running), assigned("t2", TaskState::Running, TaskState::Assigned, 2)});
  ex.take();
  ex.fire("t1", TaskState::Accepted);
  ex.fire("t2", TaskState::Accepted);
  // A complete set without t1.
  w.replaceAll({assigned("t2", TaskState::Running, TaskState::Accepted, 2)});
  CHECK(ex.take() == Calls{"remove t1"});
  CHECK(w.size() == 1);
  CHECK(reported(w) == std::vector<std::string>{"t2:accepted"});
  ex.fire("t1", TaskState::Preparing);  // an event after the removal is nobody's
  CHECK(w.reports().size() == 0);
  // An increment removing t2.
  w.update({}, {"t2"});
  CHECK(ex.take() == Calls{"remove t2"});
  CHECK(w.size() == 0);
}

TEST_CASE("after a restart, tasks that ran are adopted and the stored state is not reported "
          "again") {
  RecordingExecutor ex;
  Worker w(ex, [] { return int64_t{0}; });
  w.replaceAll({assigned("t1", TaskState::Running, TaskState::Running),
                assigned("t2", TaskState::Running, TaskState::Preparing, 2)});
  CHECK(ex.take() == Calls{"adopt t1", "prepare t2"});
  ex.fire("t1", TaskState::Running);
  ex.fire("t2", TaskState::Accepted);
  ex.fire("t2", TaskState::Preparing);
  CHECK(w.reports().size() == 0);
  ex.fire("t2", TaskState::Ready);
  CHECK(ex.take() == Calls{"start t2"});
  CHECK(reported(w) == std::vector<std::string>{"t2:ready"});
}

TEST_CASE("the report queue keeps the latest status per task until acknowledged") {
  ReportQueue q;
  q.put("a", Report{TaskState::Accepted, "", "", 0, 1});
  q.put("a", Report{TaskState::Preparing, "", "", 0, 2});
  q.put("b", Report{TaskState::Running, "", "", 0, 3});
  CHECK(q.size() == 2);
  auto first = q.take(1);
  REQUIRE(first.size() == 1);
  CHECK(first[0].taskId == "a");
  CHECK(first[0].report.state == TaskState::Preparing);
  CHECK(q.waiting() == 1);
  // A newer report while "a" is in flight: the ack does not drop it.
  q.put("a", Report{TaskState::Ready, "", "", 0, 4});
  q.ack(first);
  CHECK(q.size() == 2);
  auto second = q.take(10);
  CHECK(second.size() == 2);
  CHECK(q.waiting() == 0);
  // The session went: everything in flight goes again.
  q.retryAll();
  CHECK(q.waiting() == 2);
  auto third = q.take(10);
  q.ack(third);
  CHECK(q.size() == 0);
  q.ack(second);  // a late ack of what is already gone changes nothing
  CHECK(q.size() == 0);
}

TEST_CASE("the assignments' version chain: a complete set starts it, a gap breaks it") {
  using V = AssignmentChain::Verdict;
  AssignmentChain c;
  CHECK(c.take(false, 5, 4) == V::Gap);  // an increment before any complete set
  CHECK(c.take(true, 7, 0) == V::Apply);
  CHECK(c.version() == 7u);
  CHECK(c.take(false, 8, 7) == V::Apply);
  CHECK(c.take(false, 10, 9) == V::Gap);  // 9 never came
  CHECK_FALSE(c.version().has_value());
  CHECK(c.take(false, 11, 10) == V::Gap);  // still nothing held until a complete set
  CHECK(c.take(true, 12, 0) == V::Apply);
  CHECK(c.take(false, 13, 12) == V::Apply);
  c.reset();
  CHECK(c.take(false, 14, 13) == V::Gap);
}

TEST_CASE("an assigned task is verified; names, ids and prefixes find it") {
  CHECK_FALSE(readAssignedTask("").ok());
  CHECK(contains(readAssignedTask("not a task at all").error().message, "does not verify"));
  CHECK(contains(readAssignedTask(taskBytes("", TaskState::Running)).error().message, "no id"));

  RecordingExecutor ex;
  Worker w(ex, [] { return int64_t{0}; });
  w.replaceAll({assigned("abc1", TaskState::Running), assigned("abc2", TaskState::Running, TaskState::Assigned, 2)});
  CHECK(*w.find("abc1") == "abc1");
  CHECK(*w.find("web.2") == "abc2");
  CHECK(*w.find("web.1.abc1") == "abc1");
  CHECK(contains(w.find("abc").error().message, "names 2 tasks"));
  CHECK(w.find("zzz").error().code == static_cast<int>(wire::ErrorCode::NotFound));
}

TEST_CASE("a slot's name finds its live task while the node still holds older ones") {
  RecordingExecutor ex;
  Worker w(ex, [] { return int64_t{0}; });
  w.replaceAll({assigned("old1", TaskState::Shutdown, TaskState::Failed),
                assigned("new1", TaskState::Running)});
  CHECK(*w.find("web.1") == "new1");
  w.replaceAll({assigned("old1", TaskState::Shutdown, TaskState::Failed),
                assigned("old2", TaskState::Shutdown, TaskState::Failed)});
  CHECK(contains(w.find("web.1").error().message, "names 2 tasks"));
}

TEST_CASE("the fake executor walks to RUNNING on timers and obeys a test's actions") {
  Loop loop;
  FakeExecutor fake(loop, 1ms);
  Worker w(fake, [] { return int64_t{0}; });
  w.replaceAll({assigned("t1", TaskState::Running), assigned("t2", TaskState::Ready, TaskState::Assigned, 2),
                assigned("t3", TaskState::Running, TaskState::Assigned, 3)});
  auto stateOf = [&](const std::string& id) {
    auto list = nlohmann::json::array();
    w.appendJson(list);
    for (auto& t : list)
      if (t["id"] == id) return t["state"].get<std::string>();
    return std::string("gone");
  };
  REQUIRE(runUntil(loop, [&] {
    return stateOf("t1") == "running" && stateOf("t2") == "ready" && stateOf("t3") == "running";
  }, 5s));
  runUntil(loop, [] { return false; }, 20ms);
  CHECK(stateOf("t2") == "ready");  // held

  // Fail and Exit act on running tasks only.
  auto st = fake.act("t2", agentapi::FakeAction::Fail, 1, "");
  REQUIRE_FALSE(st.ok());
  CHECK(contains(st.error().message, "not running"));
  REQUIRE(fake.act("t1", agentapi::FakeAction::Exit, 7, "").ok());
  CHECK(stateOf("t1") == "failed");
  CHECK(contains(fake.act("t1", agentapi::FakeAction::Fail, 1, "").error().message,
                 "already ended"));
  REQUIRE(fake.act("t3", agentapi::FakeAction::Unhealthy, 1, "").ok());
  CHECK(stateOf("t3") == "failed");
  REQUIRE(fake.act("t2", agentapi::FakeAction::Reject, 1, "no such image").ok());
  CHECK(stateOf("t2") == "rejected");
  auto list = nlohmann::json::array();
  w.appendJson(list);
  for (auto& t : list) {
    if (t["id"] == "t1") CHECK(t["exit_code"] == 7);
    if (t["id"] == "t3") CHECK(t["err"] == "task: non-zero exit (1): unhealthy container");
    if (t["id"] == "t2") CHECK(t["err"] == "no such image");
  }
  CHECK(fake.act("nope", agentapi::FakeAction::Fail, 1, "").error().code ==
        static_cast<int>(wire::ErrorCode::NotFound));

  // A stop reaches SHUTDOWN; removal forgets.
  w.update({assigned("t4", TaskState::Running, TaskState::Assigned, 4)}, {});
  REQUIRE(runUntil(loop, [&] { return stateOf("t4") == "running"; }, 5s));
  w.update({assigned("t4", TaskState::Shutdown, TaskState::Running, 4)}, {});
  REQUIRE(runUntil(loop, [&] { return stateOf("t4") == "shutdown"; }, 5s));
  w.replaceAll({});
  CHECK(fake.size() == 0);
}

// An executor that only records what the worker tells it about complete sets.
struct ReconcileRecorder : FakeExecutor {
  using FakeExecutor::FakeExecutor;
  std::vector<std::set<std::string>> sets;
  void reconcile(const std::set<std::string>& assigned) override { sets.push_back(assigned); }
};

TEST_CASE("a complete set tells the executor every task the node holds (reconcile), after "
          "the tasks were prepared or adopted") {
  Loop loop;
  ReconcileRecorder exec(loop, 1ms);
  Worker w(exec, [] { return int64_t{0}; });
  w.replaceAll({assigned("t1", TaskState::Running), assigned("t2", TaskState::Running)});
  REQUIRE(exec.sets.size() == 1);
  CHECK(exec.sets[0] == std::set<std::string>{"t1", "t2"});
  CHECK(exec.size() == 2);  // prepared before the reconcile
  w.update({assigned("t3", TaskState::Running)}, {"t1"});
  CHECK(exec.sets.size() == 1);  // increments do not reconcile
  w.replaceAll({});
  REQUIRE(exec.sets.size() == 2);
  CHECK(exec.sets[1].empty());
}

// A dispatcher that opens sessions, streams scripted assignments and takes status reports.
struct TaskDispatcher : TestDispatcher {
  std::shared_ptr<bus::ServerStream> stream;
  int streamsOpened = 0;
  std::map<std::string, TaskState> statuses;
  int reportCalls = 0;

  TaskDispatcher(Loop& loop, zmq::context_t& ctx) : TestDispatcher(loop, ctx) {
    server.serve(kDispatchProtocol, [this](bus::Call call) {
      auto* env = call.as<dispatch::Envelope>();
      if (env->body_type() == dispatch::Body::AssignmentsRequest) {
        ++streamsOpened;
        stream = call.openStream();
        return;
      }
      if (auto* req = env->body_as_UpdateTaskStatusRequest()) {
        ++reportCalls;
        for (const auto* u : *req->updates()) statuses[u->task_id()->str()] = u->status()->state();
        flatbuffers::FlatBufferBuilder fbb;
        return call.reply(bus::message<dispatch::Envelope>(
            fbb, dispatch::Body::UpdateTaskStatusReply,
            dispatch::CreateUpdateTaskStatusReply(fbb).Union()));
      }
      answer(call);
    });
  }
  bool send(bool full, uint64_t version, uint64_t previous, const std::vector<std::string>& tasks,
            const std::vector<std::string>& removed = {}) {
    flatbuffers::FlatBufferBuilder fbb;
    std::vector<flatbuffers::Offset<dispatch::AssignedTask>> updated;
    for (const auto& t : tasks)
      updated.push_back(dispatch::CreateAssignedTask(
          fbb, fbb.CreateVector(reinterpret_cast<const uint8_t*>(t.data()), t.size())));
    auto body = dispatch::CreateAssignments(fbb, full, version, previous,
                                            fbb.CreateVector(updated),
                                            fbb.CreateVectorOfStrings(removed));
    return stream && stream->send(
        bus::message<dispatch::Envelope>(fbb, dispatch::Body::Assignments, body.Union()));
  }
};

TEST_CASE("the session carries assignments to the worker and its reports back; a gap asks "
          "for a complete set") {
  Loop loop;
  zmq::context_t ctx(1);
  TaskDispatcher d(loop, ctx);
  FakeExecutor fake(loop, 1ms);
  Worker worker(fake, [] { return int64_t{42}; });
  Session session(loop, ctx, curve::generate(), describeNode({"n1", "x86_64", 1, 1 << 30}, "t"),
                  {});
  session.attach(&worker);
  session.start({d.manager()}, "127.0.0.1", 5s);
  REQUIRE(runUntil(loop, [&] { return d.streamsOpened == 1 && d.stream; }, 5s));

  REQUIRE(d.send(true, 10, 0, {taskBytes("t1", TaskState::Running)}));
  REQUIRE_MESSAGE(runUntil(loop, [&] { return d.statuses["t1"] == TaskState::Running; }, 5s),
                  session.json().dump());
  // The walk's five steps went in a few batched calls, not one each.
  CHECK(d.reportCalls < 5);
  REQUIRE(d.send(false, 11, 10, {taskBytes("t2", TaskState::Running, TaskState::Assigned, 2)}));
  REQUIRE(runUntil(loop, [&] { return d.statuses["t2"] == TaskState::Running; }, 5s));
  CHECK(session.json()["assignments"]["version"] == 11);

  // 12 never came: the agent cancels and opens a new stream, whose complete set replaces all.
  REQUIRE(d.send(false, 13, 12, {}, {"t1"}));
  REQUIRE(runUntil(loop, [&] { return d.streamsOpened == 2; }, 5s));
  CHECK(worker.size() == 2);  // the increment after the gap was not applied
  CHECK(session.json()["assignments"]["gaps"] == 1);
  REQUIRE(runUntil(loop, [&] { return d.stream && d.stream->open() && d.send(true, 20, 0, {
    taskBytes("t2", TaskState::Shutdown, TaskState::Running, 2)}); }, 5s));
  REQUIRE(runUntil(loop, [&] { return d.statuses["t2"] == TaskState::Shutdown; }, 5s));
  CHECK(worker.size() == 1);
  CHECK(fake.size() == 1);
  session.stop();
}

}  // namespace
}  // namespace shoal::agentd
