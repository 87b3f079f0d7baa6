// agentd as a process (issue 8 point 6, docs/cluster.md "swarm join"): what a node outside a
// swarm answers, the join's refusals (a bad token, a manager that does not answer, a manager
// of another swarm), a node.json that is there (leave), and, with raftd and dispatcherd on
// loopback, a worker that joins with a token and after a restart is the same node again
// without one; and with the fake executor, a task written ASSIGNED to the node reaches RUNNING
// in the store through the assignments and the status reports, and fails with its exit code
// when a test says so. Every child is killed and reaped on failure; every dir is temporary.
#include <doctest/doctest.h>

#include <signal.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/bus.h"
#include "common/ids.h"
#include "common/identity.h"
#include "common/loop.h"
#include "common/node_dir.h"
#include "common/object_codec.h"
#include "common/protocols.h"
#include "common/store_client.h"
#include "tests/support/daemons.h"
#include "tests/support/node_daemons.h"
#include "tests/support/process.h"
#include "tests/support/raft_members.h"
#include "tests/support/tempdir.h"

namespace shoal {
namespace {

using namespace std::chrono_literals;
using testing::Process;
using testing::TempDir;
using testing::callOn;
using testing::daemonPath;
using testing::freePort;
using testing::readFile;
using testing::waitFor;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// One node's daemons (tests/support/node_daemons.h) and what this test asks of them.
struct Node : testing::NodeDaemons {
  using NodeDaemons::NodeDaemons;

  void start(const std::string& daemon, std::vector<std::string> extra = {}) {
    extra.insert(extra.end(), {"--log-level", "debug"});
    NodeDaemons::start(daemon, extra);
    REQUIRE_MESSAGE(waitFor([&] { return !status(daemon).empty(); }, 20s),
                    name << "'s " << daemon << " does not answer: " << logs());
  }

  nlohmann::json status(const std::string& daemon = "agentd") const {
    if (!procs.count(daemon)) return nlohmann::json::object();
    flatbuffers::FlatBufferBuilder fbb;
    auto body = control::CreateStatusRequest(fbb);
    auto r = callOn<control::Envelope>(
        socketOf(daemon),
        bus::message<control::Envelope>(fbb, control::Body::StatusRequest, body.Union()), 1s);
    if (!r) return nlohmann::json::object();
    return nlohmann::json::parse(r->as<control::Envelope>()->body_as_StatusReply()->json()->str());
  }
  void reload(const std::string& daemon) const {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = control::CreateReloadRequest(fbb);
    auto r = callOn<control::Envelope>(
        socketOf(daemon),
        bus::message<control::Envelope>(fbb, control::Body::ReloadRequest, body.Union()), 10s);
    REQUIRE_MESSAGE(r.ok(),
                    name << "'s " << daemon << ": Reload: " << (r ? "" : r.error().message));
  }
  // Info's JSON, or {"call_error": why}. No assertion in here: failure messages call it.
  nlohmann::json info() const {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = agentapi::CreateInfoRequest(fbb);
    auto r = callOn<agentapi::Envelope>(
        socketOf("agentd"),
        bus::message<agentapi::Envelope>(fbb, agentapi::Body::InfoRequest, body.Union()), 5s);
    if (!r) return {{"call_error", r.error().message}};
    auto* reply = r->as<agentapi::Envelope>()->body_as_InfoReply();
    if (!reply || !reply->json()) return {{"call_error", "agentd answered Info without JSON"}};
    return nlohmann::json::parse(reply->json()->str());
  }
  Result<bus::Frame> join(const std::string& token, const std::string& remote,
                          const std::string& advertise = "127.0.0.1",
                          const std::string& listen = "") const {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = agentapi::CreateJoinRequestDirect(fbb, token.c_str(), remote.c_str(),
                                                  advertise.c_str(), listen.c_str());
    return callOn<agentapi::Envelope>(
        socketOf("agentd"),
        bus::message<agentapi::Envelope>(fbb, agentapi::Body::JoinRequest, body.Union()), 30s);
  }
  Result<bus::Frame> leave(bool force = false) const {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = agentapi::CreateLeaveRequest(fbb, force);
    return callOn<agentapi::Envelope>(
        socketOf("agentd"),
        bus::message<agentapi::Envelope>(fbb, agentapi::Body::LeaveRequest, body.Union()), 15s);
  }
  bool inSwarm() const { return std::filesystem::exists(nodeDir + "/node.json"); }
  std::string swarmState() const { return info().value("LocalNodeState", ""); }
};

std::string errorOf(const Result<bus::Frame>& r) { return r ? std::string() : r.error().message; }

// A well-formed token of a CA that no manager here has.
std::string strangerToken() {
  auto ca = identity::ClusterCA::create(newId());
  REQUIRE(ca.ok());
  return identity::makeJoinToken(*ca, identity::systemRandom());
}

TEST_CASE("agentd outside a swarm: inactive, nothing to leave, bad tokens and silent managers "
          "refused clearly") {
  TempDir tmp;
  Node a(tmp.path(), "a1");
  a.start("agentd");

  auto info = a.info();
  CHECK(info.value("LocalNodeState", "") == "inactive");
  CHECK(info.value("ControlAvailable", true) == false);
  CHECK_FALSE(info.contains("NodeID"));
  auto status = a.status();
  CHECK(status["swarm"].value("state", "") == "inactive");
  CHECK(status["swarm"].value("hostname", "") == "a1");

  auto left = a.leave();
  REQUIRE_FALSE(left.ok());
  CHECK(contains(errorOf(left), "this node is not part of a swarm"));

  auto bad = a.join("SWMTKN-1-nonsense", "127.0.0.1:2377");
  REQUIRE_FALSE(bad.ok());
  CHECK_MESSAGE(contains(errorOf(bad), "not a swarm join token"), errorOf(bad));

  auto noAddr = a.join(strangerToken(), "");
  REQUIRE_FALSE(noAddr.ok());
  CHECK_MESSAGE(contains(errorOf(noAddr), "manager's address"), errorOf(noAddr));

  // Nothing listens at P+2: the hello gets no answer, and the join says so within its bound.
  int port = freePort();
  auto t0 = std::chrono::steady_clock::now();
  auto silent = a.join(strangerToken(), "127.0.0.1:" + std::to_string(port));
  auto took = std::chrono::steady_clock::now() - t0;
  REQUIRE_FALSE(silent.ok());
  std::string hello = "127.0.0.1:" + std::to_string(port + 2);
  CHECK_MESSAGE(contains(errorOf(silent), "cannot reach a manager at " + hello + " (hello)"),
                errorOf(silent));
  CHECK(contains(errorOf(silent), "dispatcherd running"));
  CHECK(took < 12s);
  CHECK_FALSE(a.inSwarm());
  CHECK(a.swarmState() == "inactive");
}

// A test peer that answers hello as a manager of its own CA would.
struct HelloPeer {
  Loop loop;
  zmq::context_t ctx{1};
  std::unique_ptr<bus::Server> server;
  std::thread thread;

  HelloPeer(int port, const identity::ClusterCA& ca, identity::Role role) {
    server = std::make_unique<bus::Server>(loop, ctx);
    auto key = curve::generate();
    auto curveKey = identity::curveKeyFromZ85(key.publicKey);
    REQUIRE(curveKey.ok());
    auto cert = ca.issue(newId(), role, *curveKey, std::time(nullptr) - 3600,
                         std::chrono::hours(24), 1);
    REQUIRE(cert.ok());
    std::vector<uint8_t> caPublic = ca.savePublic(), certBytes = *cert;
    server->serve(kDispatchProtocol, [caPublic, certBytes](bus::Call call) {
      flatbuffers::FlatBufferBuilder fbb;
      auto body = dispatch::CreateHelloReply(fbb, fbb.CreateVector(caPublic),
                                             fbb.CreateVector(certBytes), fbb.CreateString(""));
      call.reply(bus::message<dispatch::Envelope>(fbb, dispatch::Body::HelloReply, body.Union()));
    });
    REQUIRE(server->bind("tcp://127.0.0.1:" + std::to_string(port + 2)).ok());
    thread = std::thread([this] { loop.run(); });
  }
  ~HelloPeer() {
    loop.post([this] {
      server->close();
      loop.stop();
    });
    thread.join();
    server.reset();
  }
};

TEST_CASE("agentd refuses a manager of another swarm, and a worker's hello") {
  TempDir tmp;
  Node a(tmp.path(), "a1");
  a.start("agentd");
  auto ca = identity::ClusterCA::create(newId());
  REQUIRE(ca.ok());
  int port = freePort();
  std::string remote = "127.0.0.1:" + std::to_string(port);

  SUBCASE("a token of another swarm") {
    HelloPeer peer(port, *ca, identity::Role::Manager);
    auto r = a.join(strangerToken(), remote);
    REQUIRE_FALSE(r.ok());
    CHECK_MESSAGE(contains(errorOf(r), "the join token was made for another swarm"), errorOf(r));
    CHECK(contains(errorOf(r), "shoal swarm join-token"));
  }
  SUBCASE("the address of a worker") {
    HelloPeer peer(port, *ca, identity::Role::Worker);
    auto r = a.join(identity::makeJoinToken(*ca, identity::systemRandom()), remote);
    REQUIRE_FALSE(r.ok());
    CHECK_MESSAGE(contains(errorOf(r), "is a worker"), errorOf(r));
  }
  CHECK_FALSE(a.inSwarm());
  CHECK(a.swarmState() == "inactive");
}

// node.json as a join would have left it, for a manager at a port where nothing answers.
node::NodeConfig configWithSilentManager(const std::string& nodeDir) {
  auto dir = node::NodeDir::open(nodeDir);
  REQUIRE(dir.ok());
  std::string clusterId = newId(), nodeId = newId();
  auto ca = identity::ClusterCA::create(clusterId);
  REQUIRE(ca.ok());
  auto key = identity::curveKeyFromZ85(dir->key().publicKey);
  REQUIRE(key.ok());
  auto cert = ca->issue(nodeId, identity::Role::Worker, *key, std::time(nullptr) - 3600,
                        std::chrono::hours(24), 7);
  REQUIRE(cert.ok());
  node::NodeConfig c;
  c.nodeId = nodeId;
  c.clusterId = clusterId;
  c.certificate = *cert;
  c.ca = ca->savePublic();
  c.advertiseHost = "127.0.0.1";
  c.managers = {{newId(), "127.0.0.1:" + std::to_string(freePort()), curve::generate().publicKey}};
  REQUIRE(dir->save(c).ok());
  return c;
}

TEST_CASE("agentd with node.json: pending while no manager answers, backing off; join refused; "
          "leave forgets it") {
  TempDir tmp;
  Node a(tmp.path(), "a1");
  auto config = configWithSilentManager(a.nodeDir);
  a.start("agentd");

  auto info = a.info();
  CHECK(info.value("LocalNodeState", "") == "pending");
  CHECK(info.value("NodeID", "") == config.nodeId);
  CHECK(info.value("ClusterID", "") == config.clusterId);
  CHECK(info.value("NodeAddr", "") == "127.0.0.1");
  REQUIRE(info["RemoteManagers"].size() == 1);
  CHECK(info["RemoteManagers"][0].value("Addr", "") == config.managers[0].addr);

  // The open gets no answer (3 s), then the backoff grows from 100 ms.
  CHECK(waitFor([&] {
    auto s = a.status()["swarm"]["session"];
    return s.value("state", "") == "connecting" && s.value("backoff_ms", 0) >= 100 &&
           contains(s.value("last_error", ""), config.managers[0].addr);
  }, 10s));
  CHECK_FALSE(a.status()["swarm"]
                  .value("certificate", nlohmann::json::object())
                  .value("expires_at", "")
                  .empty());

  auto again = a.join(strangerToken(), "127.0.0.1:2377");
  REQUIRE_FALSE(again.ok());
  CHECK(contains(errorOf(again),
                 "this node is already part of a swarm; use `shoal swarm leave` first"));

  auto left = a.leave();
  REQUIRE_MESSAGE(left.ok(), errorOf(left));
  CHECK_FALSE(a.inSwarm());
  CHECK(a.swarmState() == "inactive");
  CHECK(a.status()["swarm"]["session"].value("state", "") == "stopped");
}

TEST_CASE("agentd with a damaged node.json: error, refused leave, forced leave") {
  TempDir tmp;
  Node a(tmp.path(), "a1");
  REQUIRE(node::NodeDir::open(a.nodeDir).ok());
  std::ofstream(a.nodeDir + "/node.json") << "{ not json";
  a.start("agentd");
  auto info = a.info();
  CHECK(info.value("LocalNodeState", "") == "error");
  CHECK(contains(info.value("Error", ""), "node.json is damaged"));
  auto left = a.leave();
  REQUIRE_FALSE(left.ok());
  CHECK(contains(errorOf(left), "node.json is damaged"));
  // --force: raftd (not running here) is asked and does not answer; the leave goes on.
  auto forced = a.leave(true);
  REQUIRE_MESSAGE(forced.ok(), errorOf(forced));
  CHECK_FALSE(a.inSwarm());
  CHECK(a.swarmState() == "inactive");
}

// swarm init on raftd.sock, as `shoal swarm init` sends it; the worker token.
std::string initSwarm(const Node& m, uint16_t port) {
  flatbuffers::FlatBufferBuilder fbb;
  std::string addr = "127.0.0.1:" + std::to_string(port);
  auto body = swarmapi::CreateInitRequestDirect(fbb, addr.c_str(), addr.c_str(), nullptr, 0,
                                                1'000'000'000);
  auto r = callOn<swarmapi::Envelope>(
      m.socketOf("raftd"),
      bus::message<swarmapi::Envelope>(fbb, swarmapi::Body::InitRequest, body.Union()), 20s);
  REQUIRE_MESSAGE(r.ok(), "swarm init: " << errorOf(r) << m.logs());
  auto* reply = r->as<swarmapi::Envelope>()->body_as_InitReply();
  REQUIRE(reply);
  REQUIRE(reply->worker_token());
  return reply->worker_token()->str();
}

TEST_CASE("a worker joins with a token, and after a restart is the same node without one") {
  TempDir tmp;
  Node m(tmp.path(), "m1"), w(tmp.path(), "w1");
  uint16_t port = testing::freeRaftPort();
  std::string manager = "127.0.0.1:" + std::to_string(port);
  for (auto daemon : {"raftd", "dispatcherd", "agentd"}) m.start(daemon);
  std::string token = initSwarm(m, port);
  m.reload("dispatcherd");
  m.reload("agentd");
  REQUIRE_MESSAGE(waitFor([&] { return m.swarmState() == "active"; }, 20s),
                  m.info().dump() << m.status().dump() << m.logs());
  CHECK(m.info().value("ControlAvailable", false));

  w.start("agentd");
  auto joined = w.join(token, manager);
  REQUIRE_MESSAGE(joined.ok(), errorOf(joined) << m.logs() << w.logs());
  auto* reply = joined->as<agentapi::Envelope>()->body_as_JoinReply();
  REQUIRE(reply);
  std::string nodeId = reply->node_id()->str();
  CHECK(reply->role() == objects::NodeRole::Worker);
  CHECK(w.inSwarm());
  REQUIRE_MESSAGE(waitFor([&] { return w.swarmState() == "active"; }, 20s),
                  w.status().dump() << m.logs() << w.logs());
  auto info = w.info();
  CHECK(info.value("NodeID", "") == nodeId);
  CHECK(info.value("NodeAddr", "") == "127.0.0.1");
  CHECK_FALSE(info.value("ControlAvailable", true));
  CHECK(info.value("ClusterID", "") == m.info().value("ClusterID", "?"));
  REQUIRE(info["RemoteManagers"].size() == 1);
  CHECK(info["RemoteManagers"][0].value("Addr", "") == manager);

  auto again = w.join(token, manager);
  REQUIRE_FALSE(again.ok());
  CHECK(contains(errorOf(again), "already part of a swarm"));

  // Heartbeats go on (the period is 1 s): the last one is recent.
  auto beat = w.status()["swarm"]["session"].value("last_heartbeat", "");
  CHECK(waitFor([&] { return w.status()["swarm"]["session"].value("last_heartbeat", "") != beat; },
                5s));

  w.stop("agentd");
  w.start("agentd");
  REQUIRE_MESSAGE(waitFor([&] { return w.swarmState() == "active"; }, 20s),
                  w.status().dump() << m.logs() << w.logs());
  CHECK(w.info().value("NodeID", "") == nodeId);

  // `shoal node rm --force`: the managers forget the node, and its session is refused.
  flatbuffers::FlatBufferBuilder fbb;
  auto body = swarmapi::CreateNodeRemoveRequestDirect(fbb, nodeId.c_str(), true);
  auto removed = callOn<swarmapi::Envelope>(
      m.socketOf("raftd"),
      bus::message<swarmapi::Envelope>(fbb, swarmapi::Body::NodeRemoveRequest, body.Union()), 10s);
  REQUIRE_MESSAGE(removed.ok(), "node rm: " << errorOf(removed));
  REQUIRE_MESSAGE(waitFor([&] { return w.swarmState() == "error"; }, 15s),
                  w.info().dump() << w.status().dump() << m.logs() << w.logs());
  CHECK(contains(w.info().value("Error", ""), "removed"));
  auto session = w.status()["swarm"]["session"];
  CHECK(session.value("state", "") == "refused");
  CHECK(session.value("backoff_ms", 0) == 8000);
  CHECK(contains(readFile(w.logOf("agentd")), "was it removed (`shoal node rm`)?"));
  // Leaving is how the node gets out of that state.
  auto left = w.leave();
  REQUIRE_MESSAGE(left.ok(), errorOf(left));
  CHECK(w.swarmState() == "inactive");
}

TEST_CASE("a manager joins: raft and the dispatcher start on it; leaving alone would lose "
          "quorum and is refused, --force leaves") {
  // Every manager of a swarm has the same port P (docs/cluster.md "Ports"): on one loopback
  // the two managers differ by address, 127.0.0.1 and 127.0.0.2.
  TempDir tmp;
  Node m1(tmp.path(), "m1"), m2(tmp.path(), "m2");
  uint16_t port = testing::freeRaftPort();
  for (auto daemon : {"raftd", "dispatcherd", "agentd"}) m1.start(daemon);
  initSwarm(m1, port);
  m1.reload("dispatcherd");
  m1.reload("agentd");
  REQUIRE_MESSAGE(waitFor([&] { return m1.swarmState() == "active"; }, 20s), m1.logs());

  flatbuffers::FlatBufferBuilder fbb;
  auto body = swarmapi::CreateJoinTokenRequest(fbb, objects::NodeRole::Manager);
  auto t = callOn<swarmapi::Envelope>(
      m1.socketOf("raftd"),
      bus::message<swarmapi::Envelope>(fbb, swarmapi::Body::JoinTokenRequest, body.Union()), 10s);
  REQUIRE_MESSAGE(t.ok(), errorOf(t));
  std::string token = t->as<swarmapi::Envelope>()->body_as_JoinTokenReply()->token()->str();

  for (auto daemon : {"raftd", "dispatcherd", "agentd"}) m2.start(daemon);
  std::string self = "127.0.0.2:" + std::to_string(port);
  auto joined = m2.join(token, "127.0.0.1:" + std::to_string(port), "127.0.0.2", self);
  REQUIRE_MESSAGE(joined.ok(), errorOf(joined) << m1.logs() << m2.logs());
  CHECK(joined->as<agentapi::Envelope>()->body_as_JoinReply()->role() ==
        objects::NodeRole::Manager);
  REQUIRE_MESSAGE(waitFor([&] { return m2.swarmState() == "active"; }, 20s),
                  m2.status().dump() << m1.logs() << m2.logs());
  CHECK(m2.info().value("ControlAvailable", false));
  // raftd runs raft on P+1 with the raft id the join gave; the leader counts it a voter.
  auto config = node::NodeDir::open(m2.nodeDir)->load();
  REQUIRE(config.ok());
  REQUIRE(*config);
  REQUIRE((*config)->raft);
  CHECK((*config)->port == port);
  CHECK((*config)->advertiseHost == "127.0.0.2");
  CHECK((*config)->listenHost == "127.0.0.2");
  CHECK(waitFor(
      [&] { return m2.status("raftd").value("raft_id", uint64_t{0}) == (*config)->raft->id; },
      10s));
  CHECK_MESSAGE(waitFor([&] {
    size_t voters = 0;
    for (auto& x : m1.status("raftd").value("members", nlohmann::json::array()))
      voters += x.value("suffrage", "") == "voter";
    return voters == 2;
  }, 30s), m1.status("raftd").dump() << m1.logs() << m2.logs());

  // A join aimed at the follower m2 is redirected to the leader m1.
  Node w(tmp.path(), "w1");
  w.start("agentd");
  auto workerToken = callOn<swarmapi::Envelope>(m1.socketOf("raftd"), [] {
    flatbuffers::FlatBufferBuilder b;
    auto req = swarmapi::CreateJoinTokenRequest(b, objects::NodeRole::Worker);
    return bus::message<swarmapi::Envelope>(b, swarmapi::Body::JoinTokenRequest, req.Union());
  }(), 10s);
  REQUIRE(workerToken.ok());
  auto viaFollower =
      w.join(workerToken->as<swarmapi::Envelope>()->body_as_JoinTokenReply()->token()->str(), self,
             "127.0.0.1");
  REQUIRE_MESSAGE(viaFollower.ok(), errorOf(viaFollower) << m2.logs() << w.logs());
  CHECK(contains(readFile(w.logOf("agentd")),
                 "is not the leader; going to 127.0.0.1:" + std::to_string(port)));
  CHECK(waitFor([&] { return w.swarmState() == "active"; }, 20s));

  auto refused = m2.leave();
  REQUIRE_FALSE(refused.ok());
  CHECK_MESSAGE(contains(errorOf(refused), "quorum"), errorOf(refused));
  CHECK(m2.inSwarm());
  auto forced = m2.leave(true);
  REQUIRE_MESSAGE(forced.ok(), errorOf(forced) << m2.logs());
  CHECK_FALSE(m2.inSwarm());
  CHECK(m2.swarmState() == "inactive");
}

TEST_CASE("a worker promoted: the new certificate and raft membership come in its session, and "
          "its raftd joins raft") {
  TempDir tmp;
  Node m1(tmp.path(), "m1"), w(tmp.path(), "w1");
  uint16_t port = testing::freeRaftPort();
  for (auto daemon : {"raftd", "dispatcherd", "agentd"}) m1.start(daemon);
  std::string token = initSwarm(m1, port);
  m1.reload("dispatcherd");
  m1.reload("agentd");
  for (auto daemon : {"raftd", "dispatcherd", "agentd"}) w.start(daemon);
  auto joined = w.join(token, "127.0.0.1:" + std::to_string(port), "127.0.0.2",
                       "127.0.0.2:" + std::to_string(port));
  REQUIRE_MESSAGE(joined.ok(), errorOf(joined) << m1.logs() << w.logs());
  std::string nodeId = joined->as<agentapi::Envelope>()->body_as_JoinReply()->node_id()->str();
  REQUIRE_MESSAGE(waitFor([&] { return w.swarmState() == "active"; }, 20s), w.logs());
  CHECK_FALSE(w.info().value("ControlAvailable", true));

  flatbuffers::FlatBufferBuilder fbb;
  auto body = swarmapi::CreateNodeUpdateRequestDirect(
      fbb, nodeId.c_str(), static_cast<int16_t>(objects::NodeRole::Manager));
  auto promoted = callOn<swarmapi::Envelope>(
      m1.socketOf("raftd"),
      bus::message<swarmapi::Envelope>(fbb, swarmapi::Body::NodeUpdateRequest, body.Union()), 20s);
  REQUIRE_MESSAGE(promoted.ok(), "node promote: " << errorOf(promoted) << m1.logs());

  REQUIRE_MESSAGE(waitFor([&] { return w.info().value("ControlAvailable", false); }, 20s),
                  w.status().dump() << m1.logs() << w.logs());
  auto config = node::NodeDir::open(w.nodeDir)->load();
  REQUIRE(config.ok());
  REQUIRE(*config);
  CHECK((*config)->manager);
  REQUIRE((*config)->raft);
  CHECK(waitFor([&] {
    return w.status("raftd").value("raft_id", uint64_t{0}) == (*config)->raft->id;
  }, 10s));
  CHECK_MESSAGE(waitFor([&] {
    size_t voters = 0;
    for (auto& x : m1.status("raftd").value("members", nlohmann::json::array()))
      voters += x.value("suffrage", "") == "voter";
    return voters == 2;
  }, 30s), m1.status("raftd").dump() << m1.logs() << w.logs());
  CHECK(contains(readFile(w.logOf("agentd")), "promoted to manager"));
}

// ---- the node's tasks with the fake executor (docs/services.md "Assignments", "The fake
// executor"). No schedulerd runs: the test writes the Task as the scheduler would.

std::string assignedTask(const std::string& id, const std::string& nodeId, uint64_t slot,
                         objects::TaskState desired) {
  objects::TaskT t;
  t.id = id;
  t.meta = std::make_unique<objects::Meta>();
  t.service_id = "svc-web";
  t.slot = slot;
  t.node_id = nodeId;
  t.desired_state = desired;
  t.service_annotations = std::make_unique<objects::AnnotationsT>();
  t.service_annotations->name = "web";
  t.annotations = std::make_unique<objects::AnnotationsT>();
  t.annotations->name = "web." + std::to_string(slot) + "." + id;
  t.status = std::make_unique<objects::TaskStatusT>();
  t.status->state = objects::TaskState::Assigned;
  t.status->message = "assigned";
  return objects_codec::pack<objects::Task>(t);
}

// The stored Task, or null when it cannot be read.
std::unique_ptr<objects::TaskT> storedTask(store::SyncClient& store, const std::string& id) {
  auto got = store.get(objects::ObjectKind::Task, id);
  if (!got) return nullptr;
  auto t = objects_codec::unpack<objects::Task>(got->data, "task");
  return t ? std::move(t).value() : nullptr;
}

objects::TaskState storedState(store::SyncClient& store, const std::string& id) {
  auto t = storedTask(store, id);
  return t && t->status ? t->status->state : objects::TaskState::New;
}

Result<bus::Frame> fakeTask(const Node& n, const std::string& task, agentapi::FakeAction action,
                            int exitCode) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = agentapi::CreateFakeTaskRequestDirect(fbb, task.c_str(), action, exitCode);
  return callOn<agentapi::Envelope>(
      n.socketOf("agentd"),
      bus::message<agentapi::Envelope>(fbb, agentapi::Body::FakeTaskRequest, body.Union()), 5s);
}

nlohmann::json agentTasks(const Node& n) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = agentapi::CreateTasksRequest(fbb);
  auto r = callOn<agentapi::Envelope>(
      n.socketOf("agentd"),
      bus::message<agentapi::Envelope>(fbb, agentapi::Body::TasksRequest, body.Union()), 5s);
  if (!r) return {{"call_error", r.error().message}};
  return nlohmann::json::parse(r->as<agentapi::Envelope>()->body_as_TasksReply()->json()->str());
}

TEST_CASE("--executor fake: a task assigned to the node reaches RUNNING in the store, fails "
          "with its exit code when told, and a desired SHUTDOWN stops another") {
  TempDir tmp;
  Node m(tmp.path(), "m1");
  uint16_t port = testing::freeRaftPort();
  m.start("raftd");
  m.start("dispatcherd");
  m.start("agentd", {"--executor", "fake", "--fake-delay", "5ms"});
  initSwarm(m, port);
  m.reload("dispatcherd");
  m.reload("agentd");
  REQUIRE_MESSAGE(waitFor([&] { return m.swarmState() == "active"; }, 20s), m.logs());
  std::string nodeId = m.info().value("NodeID", "");
  REQUIRE_FALSE(nodeId.empty());

  store::SyncClient store;
  REQUIRE(store.connect(store::endpointIn(m.run)).ok());
  std::string t1 = newId(), t2 = newId();
  auto written = store.txn(
      {{objects::ObjectKind::Task, objects::Operation::Create, t1, 0,
        assignedTask(t1, nodeId, 1, objects::TaskState::Running)},
       {objects::ObjectKind::Task, objects::Operation::Create, t2, 0,
        assignedTask(t2, nodeId, 2, objects::TaskState::Running)}});
  REQUIRE_MESSAGE(written.ok(), "writing the tasks: " << (written ? "" : written.error().message));

  REQUIRE_MESSAGE(waitFor([&] {
    return storedState(store, t1) == objects::TaskState::Running &&
           storedState(store, t2) == objects::TaskState::Running;
  }, 20s), agentTasks(m).dump() << m.status().dump() << m.logs());
  auto listed = agentTasks(m);
  REQUIRE(listed.is_array());
  REQUIRE(listed.size() == 2);
  CHECK(listed[0].value("state", "") == "running");
  CHECK(listed[0].value("node_id", "") == nodeId);
  CHECK(m.status()["tasks"]["by_state"].value("running", 0) == 2);

  // The test makes web.1 fail with exit code 3: FAILED in the store, with the code.
  auto failed = fakeTask(m, "web.1", agentapi::FakeAction::Fail, 3);
  REQUIRE_MESSAGE(failed.ok(), errorOf(failed));
  REQUIRE_MESSAGE(waitFor([&] { return storedState(store, t1) == objects::TaskState::Failed; },
                          20s), m.logs());
  auto stored = storedTask(store, t1);
  REQUIRE(stored);
  REQUIRE(stored->status->container);
  CHECK(stored->status->container->exit_code == 3);
  CHECK(stored->status->err == "task: non-zero exit (3)");
  // A task that ended takes no more actions; an unknown one is not found.
  CHECK(contains(errorOf(fakeTask(m, "web.1", agentapi::FakeAction::Fail, 1)), "already ended"));
  CHECK(contains(errorOf(fakeTask(m, "web.9", agentapi::FakeAction::Fail, 1)), "no task 'web.9'"));

  // schedulerd's way of stopping a task: desired SHUTDOWN; the agent reports SHUTDOWN.
  auto t2now = storedTask(store, t2);
  REQUIRE(t2now);
  uint64_t version = objects_codec::versionOf(t2now->meta);
  t2now->desired_state = objects::TaskState::Shutdown;
  auto stopped = store.txn({{objects::ObjectKind::Task, objects::Operation::Update, t2, version,
                             objects_codec::pack<objects::Task>(*t2now)}});
  REQUIRE_MESSAGE(stopped.ok(), (stopped ? std::string() : stopped.error().message));
  CHECK_MESSAGE(waitFor([&] { return storedState(store, t2) == objects::TaskState::Shutdown; },
                        20s), m.logs());
}

TEST_CASE("the runc executor rejects a task it cannot run, saying why, and refuses fake actions") {
  TempDir tmp;
  Node m(tmp.path(), "m1");
  uint16_t port = testing::freeRaftPort();
  for (auto daemon : {"raftd", "dispatcherd", "agentd"}) m.start(daemon);
  initSwarm(m, port);
  m.reload("dispatcherd");
  m.reload("agentd");
  REQUIRE_MESSAGE(waitFor([&] { return m.swarmState() == "active"; }, 20s), m.logs());
  std::string nodeId = m.info().value("NodeID", "");

  store::SyncClient store;
  REQUIRE(store.connect(store::endpointIn(m.run)).ok());
  std::string t1 = newId();
  REQUIRE(store.txn({{objects::ObjectKind::Task, objects::Operation::Create, t1, 0,
                      assignedTask(t1, nodeId, 1, objects::TaskState::Running)}})
              .ok());
  REQUIRE_MESSAGE(waitFor([&] { return storedState(store, t1) == objects::TaskState::Rejected; },
                          20s), m.logs());
  // The test's task has no image (tests/process/runc_agent_test.cpp runs real ones).
  CHECK(storedTask(store, t1)->status->err == "the task's spec names no image");
  CHECK(contains(errorOf(fakeTask(m, t1, agentapi::FakeAction::Fail, 1)), "--executor fake"));
}

TEST_CASE("--fake-nodes: one agentd joins as N workers, keeps N sessions, and is the same N "
          "nodes after a restart") {
  TempDir tmp;
  Node m(tmp.path(), "m1"), f(tmp.path(), "f");
  uint16_t port = testing::freeRaftPort();
  for (auto daemon : {"raftd", "dispatcherd", "agentd"}) m.start(daemon);
  std::string token = initSwarm(m, port);
  m.reload("dispatcherd");
  m.reload("agentd");
  REQUIRE_MESSAGE(waitFor([&] { return m.swarmState() == "active"; }, 20s), m.logs());

  const std::vector<std::string> fakeFlags = {"--executor", "fake", "--fake-nodes", "5"};
  f.start("agentd", fakeFlags);
  CHECK(f.swarmState() == "inactive");
  auto joined = f.join(token, "127.0.0.1:" + std::to_string(port));
  REQUIRE_MESSAGE(joined.ok(), errorOf(joined) << f.status().dump() << m.logs() << f.logs());
  auto sessionsActive = [&] {
    return f.status()["fake_nodes"]["sessions"].value("active", 0);
  };
  REQUIRE_MESSAGE(waitFor([&] { return sessionsActive() == 5; }, 30s),
                  f.status().dump() << f.logs());
  CHECK(f.swarmState() == "active");

  // Five worker Nodes named f-1 .. f-5, Ready in the store.
  store::SyncClient store;
  REQUIRE(store.connect(store::endpointIn(m.run)).ok());
  auto readyFakes = [&] {
    std::set<std::string> ids;
    auto nodes = store.list(objects::ObjectKind::Node);
    if (!nodes) return ids;
    for (const auto& bytes : nodes->objects) {
      auto n = objects_codec::unpack<objects::Node>(bytes, "node");
      if (!n || !(*n)->description || !(*n)->status) continue;
      if ((*n)->description->hostname.rfind("f-", 0) == 0 &&
          (*n)->status->state == objects::NodeState::Ready)
        ids.insert((*n)->id);
    }
    return ids;
  };
  REQUIRE(waitFor([&] { return readyFakes().size() == 5; }, 20s));
  auto before = readyFakes();
  auto again = f.join(token, "127.0.0.1:" + std::to_string(port));
  CHECK(contains(errorOf(again), "all 5 fake nodes are part of a swarm"));

  // A restart: the same nodes open their sessions again, without a token.
  f.stop("agentd");
  f.start("agentd", fakeFlags);
  REQUIRE_MESSAGE(waitFor([&] { return sessionsActive() == 5; }, 30s),
                  f.status().dump() << f.logs());
  CHECK(readyFakes() == before);

  auto left = f.leave();
  REQUIRE_MESSAGE(left.ok(), errorOf(left));
  CHECK(f.swarmState() == "inactive");
}

TEST_CASE("agentd refuses flags that do not go together, saying why") {
  auto run = [](std::vector<std::string> args) {
    args.insert(args.begin(), daemonPath("agentd"));
    auto r = testing::run(args);
    return std::make_pair(r.status.code, r.err);
  };
  auto [code, err] = run({"--fake-nodes", "3"});
  CHECK(code == 2);
  CHECK(contains(err, "--fake-nodes needs --executor fake"));
  std::tie(code, err) = run({"--executor", "docker"});
  CHECK(code == 2);
  CHECK(contains(err, "'docker' is not an executor; use runc or fake"));
  std::tie(code, err) = run({"--executor", "fake", "--fake-delay", "soon"});
  CHECK(code == 2);
  CHECK(contains(err, "--fake-delay"));
}

}  // namespace
}  // namespace shoal
