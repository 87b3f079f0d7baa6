// agentd's pure parts (services/agentd): the node description, the failover order and
// backoff, heartbeat timing, the join's plan and the checks of what managers send (hello,
// join reply, raft membership, managers lists), and the swarm state Info shows.
#include <doctest/doctest.h>

#include <ctime>

#include "common/ids.h"
#include "common/identity.h"
#include "common/protocols.h"
#include "services/agentd/failover.h"
#include "services/agentd/join.h"
#include "services/agentd/manager_replies.h"
#include "services/agentd/node_description.h"
#include "services/agentd/session.h"
#include "services/agentd/swarm_agent.h"

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
                   [&](const dispatch::SessionReply&) { ++replies; }, [&] { ++stateChanges; }});
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

}  // namespace
}  // namespace shoal::agentd
