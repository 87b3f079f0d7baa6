// dispatcherd as a process, beside a real raftd on one node dir (docs/cluster.md): idle until
// swarm init and a Reload; then, as an agent would, hello on P+2, joins with bad tokens
// (refused, the store unchanged), a join with the worker token (a Ready Node), a session with
// heartbeats, the node Down after 3 missed periods of 1 s, a key the store does not know, a
// renewal, and garbage on both endpoints answered with errors while Status goes on answering.
// Then a manager's join and a promotion, a second manager whose dispatcher (a follower)
// redirects to the leader's, three managers losing their leader's raftd (a survivor's
// dispatcher takes over without a restart), and a worker's node dir where it idles. And the
// assignments: a task written for a node reaches its stream, the status it reports is stored.
#include <doctest/doctest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "common/bus.h"
#include "common/curve.h"
#include "common/identity.h"
#include "common/ids.h"
#include "common/node_dir.h"
#include "common/protocols.h"
#include "common/store_client.h"
#include "tests/support/daemons.h"
#include "tests/support/process.h"
#include "tests/support/tempdir.h"

namespace shoal {
namespace {

using namespace std::chrono_literals;
using objects::ObjectKind;
using testing::Process;
using testing::daemonPath;
using testing::waitFor;

constexpr int64_t kSecond = 1'000'000'000;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::string errorOf(const Result<bus::Frame>& r) { return r ? std::string() : r.error().message; }

bool portFree(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool free = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return free;
}

// A dispatcher port P whose P+1 (raft) and P+2 (hello) were free a moment ago too.
int freePortTriple() {
  for (int i = 0; i < 50; ++i) {
    int p = testing::freePort();
    if (p < 65533 && portFree(p + 1) && portFree(p + 2)) return p;
  }
  FAIL("no three free ports in a row");
  return 0;
}

template <class Env>
Result<bus::Frame> callOn(const std::string& endpoint, bus::Buffer request,
                          std::chrono::milliseconds timeout = 10s) {
  bus::SyncClient c(bus::protocolOf<Env>());
  if (auto st = c.connect(endpoint); !st) return st.error();
  return c.call(std::move(request), timeout);
}

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// raftd and dispatcherd of one node: one run dir, one node dir.
struct Manager {
  testing::TempDir tmp;
  std::string run = tmp / "run";
  std::string nodeDir = tmp / "node";
  std::unique_ptr<Process> raftd, dispatcherd;

  Manager() {
    raftd = start("raftd");
    dispatcherd = start("dispatcherd");
  }
  ~Manager() {
    for (auto* p : {dispatcherd.get(), raftd.get()}) {
      p->signal(SIGTERM);
      p->wait(3s);
    }
  }
  std::unique_ptr<Process> start(const std::string& daemon) {
    auto p = std::make_unique<Process>(std::vector<std::string>{
        daemonPath(daemon), "--foreground", "--state-dir", tmp / daemon, "--run-dir", run,
        "--node-dir", nodeDir, "--log-file", tmp / (daemon + ".log")});
    bool up = waitFor([&] { return std::filesystem::exists(run + "/" + daemon + ".sock"); }, 10s);
    REQUIRE_MESSAGE(up, daemon, " did not start: ", p->err());
    return p;
  }
  std::string logs() {
    return "\n--- raftd.log\n" + readFile(tmp / "raftd.log") + "\n--- dispatcherd.log\n" +
           readFile(tmp / "dispatcherd.log");
  }
  std::string socket(const std::string& daemon) const { return "ipc://" + run + "/" + daemon + ".sock"; }

  nlohmann::json status() {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = control::CreateStatusRequest(fbb);
    auto r = callOn<control::Envelope>(
        socket("dispatcherd"), bus::message<control::Envelope>(fbb, control::Body::StatusRequest, body.Union()), 5s);
    REQUIRE_MESSAGE(r.ok(), "dispatcherd Status: ", errorOf(r));
    return nlohmann::json::parse(r->as<control::Envelope>()->body_as_StatusReply()->json()->str());
  }
  Result<bus::Frame> reload() {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = control::CreateReloadRequest(fbb);
    return callOn<control::Envelope>(
        socket("dispatcherd"), bus::message<control::Envelope>(fbb, control::Body::ReloadRequest, body.Union()));
  }
  struct Init {
    std::string node_id, cluster_id, worker_token, manager_token;
  };
  // swarm init with a 1 s heartbeat period.
  Init init(int port) {
    flatbuffers::FlatBufferBuilder fbb;
    std::string addr = "127.0.0.1:" + std::to_string(port);
    auto body = swarmapi::CreateInitRequestDirect(fbb, addr.c_str(), addr.c_str(), nullptr, 0, kSecond);
    Result<bus::Frame> r = Error{"raftd did not answer"};
    // raftd's socket may take a moment to answer after it appears.
    waitFor([&] {
      r = callOn<swarmapi::Envelope>(socket("raftd"),
                                     bus::message<swarmapi::Envelope>(fbb, swarmapi::Body::InitRequest, body.Union()), 20s);
      return r.ok() || store::codeOf(r.error()) != wire::ErrorCode::DeadlineExceeded;
    }, 20s);
    REQUIRE_MESSAGE(r.ok(), "swarm init: ", errorOf(r), logs());
    auto* reply = r->as<swarmapi::Envelope>()->body_as_InitReply();
    REQUIRE(reply);
    return {reply->node_id()->str(), reply->cluster_id()->str(), reply->worker_token()->str(),
            reply->manager_token()->str()};
  }
};

// A node's side of the dispatcher protocol on P, with its own key.
struct Agent {
  curve::KeyPair key;
  bus::SyncClient client{kDispatchProtocol};

  Agent(const std::string& serverKey, int port, curve::KeyPair own = curve::generate(),
        const std::string& host = "127.0.0.1")
      : key(std::move(own)) {
    client.setCurve({serverKey, key.publicKey, key.secretKey});
    REQUIRE(client.connect("tcp://" + host + ":" + std::to_string(port)));
  }
  Result<bus::Frame> call(flatbuffers::FlatBufferBuilder& fbb, dispatch::Body type, flatbuffers::Offset<void> body) {
    return client.call(bus::message<dispatch::Envelope>(fbb, type, body), 10s);
  }
  flatbuffers::Offset<objects::NodeDescription> description(flatbuffers::FlatBufferBuilder& fbb,
                                                            const std::string& hostname) {
    auto platform = objects::CreatePlatformDirect(fbb, "amd64", "linux");
    auto resources = objects::CreateResources(fbb, 2 * kSecond, 1 << 30);
    auto engine = objects::CreateEngineDescriptionDirect(fbb, "0.1.0");
    return objects::CreateNodeDescriptionDirect(fbb, hostname.c_str(), platform, resources, engine);
  }
  Result<bus::Frame> join(const std::string& token, const std::string& hostname = "w1",
                          const std::string& addr = "127.0.0.1") {
    flatbuffers::FlatBufferBuilder fbb;
    auto d = description(fbb, hostname);
    auto body = dispatch::CreateJoinRequestDirect(fbb, token.c_str(), addr.c_str(), d);
    return call(fbb, dispatch::Body::JoinRequest, body.Union());
  }
  Result<bus::Frame> open(const std::string& hostname = "w1") {
    flatbuffers::FlatBufferBuilder fbb;
    auto d = description(fbb, hostname);
    auto body = dispatch::CreateOpenSessionRequestDirect(fbb, d, "127.0.0.1");
    return call(fbb, dispatch::Body::OpenSessionRequest, body.Union());
  }
  Result<bus::Frame> heartbeat(const std::string& session) {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = dispatch::CreateHeartbeatRequestDirect(fbb, session.c_str());
    return call(fbb, dispatch::Body::HeartbeatRequest, body.Union());
  }
  Result<bus::Frame> renew() {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = dispatch::CreateRenewRequest(fbb);
    return call(fbb, dispatch::Body::RenewRequest, body.Union());
  }
};

// Sends raw bytes on a DEALER (with CURVE keys when given) and decodes the one answer.
bus::Frame rawExchange(const std::string& endpoint, std::string_view bytes,
                       const std::string& serverKey = {}) {
  zmq::context_t ctx(1);
  zmq::socket_t raw(ctx, zmq::socket_type::dealer);
  raw.set(zmq::sockopt::linger, 0);
  if (!serverKey.empty()) {
    auto k = curve::generate();
    raw.set(zmq::sockopt::curve_serverkey, serverKey);
    raw.set(zmq::sockopt::curve_publickey, k.publicKey);
    raw.set(zmq::sockopt::curve_secretkey, k.secretKey);
  }
  raw.connect(endpoint);
  raw.send(zmq::buffer(bytes), zmq::send_flags::none);
  zmq::pollitem_t item{raw.handle(), 0, ZMQ_POLLIN, 0};
  REQUIRE_MESSAGE(zmq::poll(&item, 1, 5000ms) == 1, "no answer within 5 s on ", endpoint);
  zmq::message_t reply;
  REQUIRE(raw.recv(reply, zmq::recv_flags::dontwait));
  const bus::Protocol* any[] = {&kDispatchProtocol};
  auto frame = bus::decode(std::move(reply), any);
  std::string why = frame.ok() ? "" : frame.error().message;
  REQUIRE_MESSAGE(frame.ok(), "the answer does not verify: ", why);
  return std::move(frame).value();
}

std::unique_ptr<objects::NodeT> nodeOf(store::SyncClient& s, const std::string& id) {
  auto got = s.get(ObjectKind::Node, id);
  if (!got) return nullptr;
  return std::unique_ptr<objects::NodeT>(flatbuffers::GetRoot<objects::Node>(got->data.data())->UnPack());
}

size_t nodeCount(store::SyncClient& s) {
  auto all = s.list(ObjectKind::Node);
  REQUIRE_MESSAGE(all.ok(), (all ? "" : all.error().message));
  return all->objects.size();
}

TEST_CASE("dispatcherd beside raftd: hello, joins, a session, Down after 3 missed heartbeats, garbage") {
  Manager m;
  int port = freePortTriple();
  std::string hello = "tcp://127.0.0.1:" + std::to_string(port + 2);

  // Not in a swarm yet: idle, and it says why.
  auto before = m.status()["dispatcher"];
  CHECK_FALSE(before.value("active", true));
  CHECK(contains(before.value("why", ""), "not in a swarm"));

  auto init = m.init(port);
  auto reloaded = m.reload();
  REQUIRE_MESSAGE(reloaded.ok(), errorOf(reloaded), m.logs());
  REQUIRE_MESSAGE(waitFor([&] {
      auto d = m.status()["dispatcher"];
      return d.value("active", false) && d["store_view"].value("loaded", false);
    }, 10s),
                  m.status().dump(), m.logs());
  CHECK(m.status()["dispatcher"].value("heartbeat_period_ms", 0) == 1000);

  // --- hello: the CA and this manager's certificate, in the clear.
  flatbuffers::FlatBufferBuilder hfbb;
  auto helloReq = dispatch::CreateHelloRequest(hfbb);
  auto hr = callOn<dispatch::Envelope>(hello, bus::message<dispatch::Envelope>(hfbb, dispatch::Body::HelloRequest, helloReq.Union()));
  REQUIRE_MESSAGE(hr.ok(), errorOf(hr), m.logs());
  auto* helloReply = hr->as<dispatch::Envelope>()->body_as_HelloReply();
  REQUIRE(helloReply);
  REQUIRE(helloReply->ca());
  REQUIRE(helloReply->certificate());
  CHECK(helloReply->addr()->str() == "127.0.0.1:" + std::to_string(port));
  auto ca = identity::ClusterCA::load({helloReply->ca()->data(), helloReply->ca()->size()});
  REQUIRE(ca.ok());
  CHECK_FALSE(ca->canSign());  // nothing secret on the plain endpoint
  CHECK(ca->clusterId() == init.cluster_id);
  auto managerCert = ca->verify({helloReply->certificate()->data(), helloReply->certificate()->size()},
                                std::time(nullptr));
  REQUIRE(managerCert.ok());
  CHECK(managerCert->nodeId == init.node_id);
  CHECK(managerCert->role == identity::Role::Manager);
  std::string serverKey = identity::curveKeyToZ85(managerCert->curvePublicKey);

  store::SyncClient store;
  REQUIRE(store.connect(store::endpointIn(m.run)));
  size_t nodesBefore = nodeCount(store);
  CHECK(nodesBefore == 1);

  // --- joins that must be refused, leaving the store as it was.
  Agent w(serverKey, port);
  {
    auto other = identity::ClusterCA::create(newId());
    REQUIRE(other.ok());
    auto foreign = w.join(identity::makeJoinToken(*other, identity::systemRandom()));
    REQUIRE_FALSE(foreign.ok());
    CHECK(contains(errorOf(foreign), "belongs to another swarm"));
    auto guessed = w.join(identity::makeJoinToken(*ca, identity::systemRandom()));
    REQUIRE_FALSE(guessed.ok());
    CHECK(contains(errorOf(guessed), "not one of swarm " + init.cluster_id + "'s current tokens"));
    auto garbage = w.join("SWMTKN-1-nonsense");
    REQUIRE_FALSE(garbage.ok());
    CHECK(contains(errorOf(garbage), "not a swarm join token"));
    auto noSession = w.open();
    REQUIRE_FALSE(noSession.ok());
    CHECK(contains(errorOf(noSession), "removed from the swarm"));
    CHECK(nodeCount(store) == nodesBefore);
    CHECK(m.status()["dispatcher"]["joins"].value("refused", 0) == 3);
  }

  // --- the worker token of the Cluster object joins.
  auto clusterObj = store.get(ObjectKind::Cluster, init.cluster_id);
  REQUIRE(clusterObj.ok());
  auto* cluster = flatbuffers::GetRoot<objects::Cluster>(clusterObj->data.data());
  std::string workerToken = cluster->root_ca()->join_tokens()->worker()->str();
  CHECK(workerToken == init.worker_token);
  auto joined = w.join(workerToken);
  REQUIRE_MESSAGE(joined.ok(), errorOf(joined), m.logs());
  auto* jr = joined->as<dispatch::Envelope>()->body_as_JoinReply();
  REQUIRE(jr);
  std::string nodeId = jr->node_id()->str();
  CHECK(isValidId(nodeId));
  CHECK(jr->role() == objects::NodeRole::Worker);
  CHECK(jr->cluster_id()->str() == init.cluster_id);
  CHECK(jr->heartbeat_period() == kSecond);
  CHECK(jr->raft() == nullptr);
  REQUIRE(jr->managers());
  REQUIRE(jr->managers()->size() == 1);
  CHECK(jr->managers()->Get(0)->node_id()->str() == init.node_id);
  CHECK(jr->managers()->Get(0)->addr()->str() == "127.0.0.1:" + std::to_string(port));
  CHECK(jr->managers()->Get(0)->curve_public_key()->str() == serverKey);
  auto workerCert = ca->verify({jr->certificate()->data(), jr->certificate()->size()}, std::time(nullptr));
  REQUIRE(workerCert.ok());
  CHECK(workerCert->nodeId == nodeId);
  CHECK(workerCert->role == identity::Role::Worker);
  CHECK(identity::curveKeyToZ85(workerCert->curvePublicKey) == w.key.publicKey);

  auto stored = nodeOf(store, nodeId);
  REQUIRE(stored);
  CHECK(stored->role == objects::NodeRole::Worker);
  CHECK(stored->status->state == objects::NodeState::Ready);
  CHECK(stored->status->addr == "127.0.0.1");
  CHECK(stored->description->hostname == "w1");
  CHECK(stored->spec->availability == objects::NodeAvailability::Active);
  CHECK(nodeCount(store) == nodesBefore + 1);

  // The same key cannot join twice.
  auto twice = w.join(workerToken);
  REQUIRE_FALSE(twice.ok());
  CHECK(contains(errorOf(twice), "already registered as node " + nodeId));

  // --- a session, heartbeats within the period, then silence: Down.
  auto opened = w.open("w1-renamed");
  REQUIRE_MESSAGE(opened.ok(), errorOf(opened), m.logs());
  auto* sr = opened->as<dispatch::Envelope>()->body_as_SessionReply();
  REQUIRE(sr);
  std::string session = sr->session_id()->str();
  CHECK(sr->node_id()->str() == nodeId);
  CHECK(sr->heartbeat_period() == kSecond);
  CHECK(sr->role() == objects::NodeRole::Worker);
  CHECK(sr->certificate() == nullptr);  // the role has not changed
  REQUIRE(sr->managers());
  CHECK(sr->managers()->size() == 1);
  for (int i = 0; i < 4; ++i) {
    std::this_thread::sleep_for(500ms);
    auto beat = w.heartbeat(session);
    REQUIRE_MESSAGE(beat.ok(), errorOf(beat), m.logs());
    CHECK(beat->as<dispatch::Envelope>()->body_as_SessionReply()->session_id()->str() == session);
  }
  auto wrong = w.heartbeat("not-the-session");
  REQUIRE_FALSE(wrong.ok());
  CHECK(contains(errorOf(wrong), "open a new session"));
  // The changed hostname was written (in a batch).
  CHECK(waitFor([&] {
    auto n = nodeOf(store, nodeId);
    return n && n->description->hostname == "w1-renamed";
  }, 3s));
  auto ours = m.status()["dispatcher"]["sessions"]["nodes"];
  bool listed = false;
  for (auto& n : ours) listed = listed || (n.value("node_id", "") == nodeId && n.value("session", false));
  CHECK_MESSAGE(listed, ours.dump());

  auto silentSince = std::chrono::steady_clock::now();
  bool down = waitFor([&] {
    auto n = nodeOf(store, nodeId);
    return n && n->status->state == objects::NodeState::Down;
  }, 8s);
  auto took = std::chrono::steady_clock::now() - silentSince;
  REQUIRE_MESSAGE(down, m.status().dump(), m.logs());
  CHECK(took >= 2500ms);  // 3 periods of 1 s after the last heartbeat, not fewer
  CHECK(nodeOf(store, nodeId)->status->message == "heartbeat failure");
  auto late = w.heartbeat(session);
  REQUIRE_FALSE(late.ok());
  CHECK(contains(errorOf(late), "open a new session"));

  // A new session makes it Ready again.
  auto reopened = w.open("w1-renamed");
  REQUIRE_MESSAGE(reopened.ok(), errorOf(reopened));
  CHECK(waitFor([&] {
    auto n = nodeOf(store, nodeId);
    return n && n->status->state == objects::NodeState::Ready && n->status->message.empty();
  }, 3s));

  // --- renewal: a new certificate, same node and role.
  auto renewed = w.renew();
  REQUIRE_MESSAGE(renewed.ok(), errorOf(renewed));
  auto* rr = renewed->as<dispatch::Envelope>()->body_as_RenewReply();
  REQUIRE(rr);
  auto fresh = ca->verify({rr->certificate()->data(), rr->certificate()->size()}, std::time(nullptr));
  REQUIRE(fresh.ok());
  CHECK(fresh->nodeId == nodeId);
  CHECK(fresh->role == identity::Role::Worker);
  CHECK(fresh->serial != workerCert->serial);
  CHECK(waitFor([&] {
    auto n = nodeOf(store, nodeId);
    return n && n->certificate == std::vector<uint8_t>(rr->certificate()->begin(), rr->certificate()->end());
  }, 3s));

  // --- `swarm update --dispatcher-heartbeat 2s`: the next reply tells the node.
  {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = swarmapi::CreateUpdateRequest(fbb, 2 * kSecond, 0);
    auto updated = callOn<swarmapi::Envelope>(m.socket("raftd"),
                                              bus::message<swarmapi::Envelope>(fbb, swarmapi::Body::UpdateRequest, body.Union()), 20s);
    REQUIRE_MESSAGE(updated.ok(), errorOf(updated));
    CHECK(waitFor([&] { return m.status()["dispatcher"].value("heartbeat_period_ms", 0) == 2000; }, 5s));
    auto open2 = w.open("w1-renamed");
    REQUIRE(open2.ok());
    CHECK(open2->as<dispatch::Envelope>()->body_as_SessionReply()->heartbeat_period() == 2 * kSecond);
  }

  // --- `node rm --force`: the node's key gets nothing any more.
  {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = swarmapi::CreateNodeRemoveRequestDirect(fbb, nodeId.c_str(), true);
    auto removed = callOn<swarmapi::Envelope>(m.socket("raftd"),
                                              bus::message<swarmapi::Envelope>(fbb, swarmapi::Body::NodeRemoveRequest, body.Union()), 20s);
    REQUIRE_MESSAGE(removed.ok(), errorOf(removed));
    Result<bus::Frame> refused = Error{"not asked"};
    CHECK(waitFor([&] {
      refused = w.open("w1-renamed");
      return !refused.ok();
    }, 5s));
    CHECK(contains(errorOf(refused), "removed from the swarm"));
    auto renewRefused = w.renew();
    REQUIRE_FALSE(renewRefused.ok());
    CHECK(contains(errorOf(renewRefused), "removed from the swarm"));
  }

  // --- garbage on both endpoints: an error each, and the daemon goes on.
  {
    auto onHello = rawExchange(hello, "these bytes are not a FlatBuffer");
    CHECK(onHello.kind() == wire::Kind::Error);
    REQUIRE(onHello.error());
    CHECK(onHello.error()->code() == wire::ErrorCode::UnknownProtocol);
    auto onCurve = rawExchange("tcp://127.0.0.1:" + std::to_string(port), "garbage on the session port", serverKey);
    CHECK(onCurve.kind() == wire::Kind::Error);
    REQUIRE(onCurve.error());
    CHECK(onCurve.error()->code() == wire::ErrorCode::UnknownProtocol);
    // A join cut in half: the verifier refuses it.
    flatbuffers::FlatBufferBuilder fbb;
    auto body = dispatch::CreateJoinRequestDirect(fbb, std::string(200, 'x').c_str(), "127.0.0.1");
    auto whole = bus::message<dispatch::Envelope>(fbb, dispatch::Body::JoinRequest, body.Union());
    std::string half(reinterpret_cast<const char*>(whole.data()), whole.size() / 2);
    auto cut = rawExchange("tcp://127.0.0.1:" + std::to_string(port), half, serverKey);
    CHECK(cut.kind() == wire::Kind::Error);
    REQUIRE(cut.error());
    CHECK(cut.error()->code() == wire::ErrorCode::BadMessage);
    // A session request on the hello endpoint is not served there.
    flatbuffers::FlatBufferBuilder ofbb;
    auto openBody = dispatch::CreateOpenSessionRequest(ofbb);
    auto onHelloOpen = callOn<dispatch::Envelope>(
        hello, bus::message<dispatch::Envelope>(ofbb, dispatch::Body::OpenSessionRequest, openBody.Union()));
    REQUIRE_FALSE(onHelloOpen.ok());
    CHECK(contains(errorOf(onHelloOpen), "HelloRequest only"));
    // A request that names its kind and leaves its table out passes the verifier: refused.
    for (auto kind : {dispatch::Body::HeartbeatRequest, dispatch::Body::JoinRequest,
                      dispatch::Body::UpdateTaskStatusRequest}) {
      flatbuffers::FlatBufferBuilder efbb;
      auto empty = w.client.call(bus::message<dispatch::Envelope>(efbb, kind, 0), 10s);
      REQUIRE_FALSE(empty.ok());
      CHECK(store::codeOf(empty.error()) == wire::ErrorCode::BadMessage);
      CHECK(contains(errorOf(empty), "without its body"));
    }
  }
  auto after = m.status()["dispatcher"];
  CHECK(after.value("active", false));
  CHECK(after["dispatch_bus"].value("bad_messages", 0) == 2);
  CHECK(after["hello_bus"].value("bad_messages", 0) == 1);
  CHECK(after["joins"].value("accepted", 0) == 1);
  CHECK(after["status_writes"].value("txns", 0) >= 2);
  CHECK(m.dispatcherd->running());
}

// swarm init, a Reload, and the dispatcher active; what hello says.
struct Swarm {
  Manager m;
  int port = freePortTriple();
  Manager::Init init;
  std::optional<identity::ClusterCA> ca;
  std::string serverKey;
  store::SyncClient store;

  Swarm() {
    init = m.init(port);
    auto reloaded = m.reload();
    REQUIRE_MESSAGE(reloaded.ok(), errorOf(reloaded), m.logs());
    REQUIRE_MESSAGE(waitFor([&] {
      auto d = m.status()["dispatcher"];
      return d.value("active", false) && d["store_view"].value("loaded", false);
    }, 10s),
                    m.status().dump(), m.logs());
    flatbuffers::FlatBufferBuilder fbb;
    auto req = dispatch::CreateHelloRequest(fbb);
    auto hr = callOn<dispatch::Envelope>("tcp://127.0.0.1:" + std::to_string(port + 2),
                                         bus::message<dispatch::Envelope>(fbb, dispatch::Body::HelloRequest, req.Union()));
    REQUIRE_MESSAGE(hr.ok(), errorOf(hr), m.logs());
    auto* reply = hr->as<dispatch::Envelope>()->body_as_HelloReply();
    REQUIRE(reply);
    auto loaded = identity::ClusterCA::load({reply->ca()->data(), reply->ca()->size()});
    REQUIRE(loaded.ok());
    ca = std::move(loaded).value();
    auto cert = ca->verify({reply->certificate()->data(), reply->certificate()->size()}, std::time(nullptr));
    REQUIRE(cert.ok());
    serverKey = identity::curveKeyToZ85(cert->curvePublicKey);
    REQUIRE(store.connect(store::endpointIn(m.run)));
  }
  node::NodeConfig config() {
    auto dir = node::NodeDir::open(m.nodeDir);
    REQUIRE(dir.ok());
    auto c = dir->load();
    REQUIRE(c.ok());
    REQUIRE(c->has_value());
    return **c;
  }
};

std::string raftAddr(int port) { return "127.0.0.1:" + std::to_string(port + 1); }

TEST_CASE("a manager joins with the manager token; a promoted worker gets its manager certificate "
          "and RaftJoin in a heartbeat") {
  Swarm s;
  auto config = s.config();
  REQUIRE(config.raft);

  // --- a manager's join: a raft id, the peers, and a learner in raftd.
  Agent joiner(s.serverKey, s.port);
  auto joined = joiner.join(s.init.manager_token, "m2");
  REQUIRE_MESSAGE(joined.ok(), errorOf(joined), s.m.logs());
  auto* jr = joined->as<dispatch::Envelope>()->body_as_JoinReply();
  REQUIRE(jr);
  CHECK(jr->role() == objects::NodeRole::Manager);
  auto cert = s.ca->verify({jr->certificate()->data(), jr->certificate()->size()}, std::time(nullptr));
  REQUIRE(cert.ok());
  CHECK(cert->role == identity::Role::Manager);
  REQUIRE(jr->raft());
  uint64_t raftId = jr->raft()->raft_id();
  CHECK(raftId != 0);
  CHECK(raftId != config.raft->id);
  CHECK(jr->raft()->raft_cluster_id() == config.raft->clusterId);
  REQUIRE(jr->raft()->peers_raft_ids());
  REQUIRE(jr->raft()->peers_raft_ids()->size() == 1);
  CHECK(jr->raft()->peers_raft_ids()->Get(0) == config.raft->id);
  CHECK(jr->raft()->peers_addrs()->Get(0)->str() == raftAddr(s.port));
  CHECK(jr->raft()->peers_keys()->Get(0)->str() == s.serverKey);
  CHECK(jr->managers()->size() == 2);
  auto m2 = nodeOf(s.store, jr->node_id()->str());
  REQUIRE(m2);
  CHECK(m2->role == objects::NodeRole::Manager);
  REQUIRE(m2->manager_status);
  CHECK(m2->manager_status->raft_id == raftId);
  CHECK(m2->manager_status->addr == raftAddr(s.port));
  auto raftStatus = s.store.status();
  REQUIRE(raftStatus.ok());
  bool learner = false;
  for (auto& member : (*raftStatus)["members"])
    learner = learner || (member.value("raft_id", uint64_t{0}) == raftId && member.value("suffrage", "") == "learner");
  CHECK_MESSAGE(learner, raftStatus->dump());

  // --- a worker, promoted: its next heartbeat brings the new certificate and the RaftJoin.
  Agent w(s.serverKey, s.port);
  auto wj = w.join(s.init.worker_token, "w1");
  REQUIRE_MESSAGE(wj.ok(), errorOf(wj));
  std::string workerId = wj->as<dispatch::Envelope>()->body_as_JoinReply()->node_id()->str();
  auto opened = w.open("w1");
  REQUIRE_MESSAGE(opened.ok(), errorOf(opened));
  std::string session = opened->as<dispatch::Envelope>()->body_as_SessionReply()->session_id()->str();

  flatbuffers::FlatBufferBuilder fbb;
  auto body = swarmapi::CreateNodeUpdateRequestDirect(fbb, workerId.c_str(), static_cast<int16_t>(objects::NodeRole::Manager));
  auto promoted = callOn<swarmapi::Envelope>(s.m.socket("raftd"),
                                             bus::message<swarmapi::Envelope>(fbb, swarmapi::Body::NodeUpdateRequest, body.Union()), 20s);
  REQUIRE_MESSAGE(promoted.ok(), errorOf(promoted), s.m.logs());
  std::unique_ptr<objects::NodeT> stored;
  REQUIRE(waitFor([&] {
    stored = nodeOf(s.store, workerId);
    return stored && stored->role == objects::NodeRole::Manager && stored->manager_status;
  }, 5s));

  const dispatch::SessionReply* sr = nullptr;
  Result<bus::Frame> beat = Error{"no heartbeat"};
  // The dispatcher's view follows the store by its watch: a heartbeat or two may come first.
  REQUIRE(waitFor([&] {
    beat = w.heartbeat(session);
    if (!beat) return false;
    sr = beat->as<dispatch::Envelope>()->body_as_SessionReply();
    return sr && sr->certificate() != nullptr;
  }, 5s));
  CHECK(sr->role() == objects::NodeRole::Manager);
  auto managerCert = s.ca->verify({sr->certificate()->data(), sr->certificate()->size()}, std::time(nullptr));
  REQUIRE(managerCert.ok());
  CHECK(managerCert->role == identity::Role::Manager);
  CHECK(managerCert->nodeId == workerId);
  REQUIRE(sr->raft());
  CHECK(sr->raft()->raft_id() == stored->manager_status->raft_id);
  CHECK(sr->raft()->raft_cluster_id() == config.raft->clusterId);
  // Once given, it is not given again, and the store holds it.
  auto next = w.heartbeat(session);
  REQUIRE(next.ok());
  CHECK(next->as<dispatch::Envelope>()->body_as_SessionReply()->certificate() == nullptr);
  CHECK(waitFor([&] {
    auto n = nodeOf(s.store, workerId);
    return n && n->certificate == std::vector<uint8_t>(sr->certificate()->begin(), sr->certificate()->end());
  }, 3s));
}

// Joins `b` as a manager at `host` (another loopback address, the same ports) as agentd would:
// the join with its node key at the first manager's dispatcher, node.json, JoinRaft, Reload.
void joinManager(Swarm& s, Manager& b, const std::string& host, const std::string& hostname) {
  auto bDir = node::NodeDir::open(b.nodeDir);
  REQUIRE(bDir.ok());
  Agent bAgent(s.serverKey, s.port, bDir->key());
  auto bj = bAgent.join(s.init.manager_token, hostname, host);
  REQUIRE_MESSAGE(bj.ok(), errorOf(bj), s.m.logs());
  auto* jr = bj->as<dispatch::Envelope>()->body_as_JoinReply();
  REQUIRE(jr);
  REQUIRE(jr->raft());
  node::NodeConfig bc;
  bc.nodeId = jr->node_id()->str();
  bc.clusterId = jr->cluster_id()->str();
  bc.manager = true;
  bc.certificate.assign(jr->certificate()->begin(), jr->certificate()->end());
  bc.ca = s.ca->savePublic();
  bc.advertiseHost = host;
  bc.listenHost = host;
  bc.port = static_cast<uint16_t>(s.port);
  bc.raft = node::RaftIdentity{jr->raft()->raft_id(), jr->raft()->raft_cluster_id()};
  REQUIRE(bDir->save(bc).ok());
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<flatbuffers::Offset<swarmapi::RaftPeer>> peers;
  for (unsigned i = 0; i < jr->raft()->peers_raft_ids()->size(); ++i)
    peers.push_back(swarmapi::CreateRaftPeerDirect(fbb, jr->raft()->peers_raft_ids()->Get(i),
                                                   jr->raft()->peers_addrs()->Get(i)->c_str(),
                                                   jr->raft()->peers_keys()->Get(i)->c_str()));
  std::string raftAddr = host + ":" + std::to_string(s.port + 1);
  auto body = swarmapi::CreateJoinRaftRequestDirect(fbb, bc.raft->id, bc.raft->clusterId, raftAddr.c_str(),
                                                    raftAddr.c_str(), &peers);
  auto joinedRaft = callOn<swarmapi::Envelope>(b.socket("raftd"),
                                               bus::message<swarmapi::Envelope>(fbb, swarmapi::Body::JoinRaftRequest, body.Union()), 20s);
  REQUIRE_MESSAGE(joinedRaft.ok(), errorOf(joinedRaft), b.logs());
  auto reloaded = b.reload();
  REQUIRE_MESSAGE(reloaded.ok(), errorOf(reloaded), b.logs());
}

TEST_CASE("a follower's dispatcher sends joins and sessions to the leader's") {
  Swarm s;
  Agent w(s.serverKey, s.port);
  auto wj = w.join(s.init.worker_token, "w1");
  REQUIRE_MESSAGE(wj.ok(), errorOf(wj));

  // A second manager on 127.0.0.2 (the same ports, another loopback address).
  Manager b;
  auto bDir = node::NodeDir::open(b.nodeDir);
  REQUIRE(bDir.ok());
  joinManager(s, b, "127.0.0.2", "m2");
  // B follows: it knows the leader's Node, and is not active.
  REQUIRE_MESSAGE(waitFor([&] {
    auto d = b.status()["dispatcher"];
    return d["leadership"].value("known", false) && !d.value("active", true) && d.contains("leader");
  }, 20s), b.status().dump(), b.logs(), s.m.logs());
  auto bStatus = b.status()["dispatcher"];
  CHECK(contains(bStatus.value("why", ""), "follower"));
  CHECK(bStatus["leader"].value("node_id", "") == s.init.node_id);

  std::string bKey = bDir->key().publicKey;
  auto redirected = [&](const Result<bus::Frame>& r) {
    REQUIRE_MESSAGE(r.ok(), errorOf(r), b.logs());
    auto* redirect = r->as<dispatch::Envelope>()->body_as_Redirect();
    REQUIRE(redirect);
    REQUIRE(redirect->leader());
    CHECK(redirect->leader()->node_id()->str() == s.init.node_id);
    CHECK(redirect->leader()->addr()->str() == "127.0.0.1:" + std::to_string(s.port));
    CHECK(redirect->leader()->curve_public_key()->str() == s.serverKey);
  };
  Agent atB(bKey, s.port, w.key, "127.0.0.2");
  redirected(atB.open("w1"));
  redirected(atB.heartbeat("any"));
  Agent stranger(bKey, s.port, curve::generate(), "127.0.0.2");
  redirected(stranger.join(s.init.worker_token, "w2"));
  CHECK(b.status()["dispatcher"]["sessions"].value("redirects", 0) == 3);
  // Task status is refused with NotLeader, not redirected: an agent takes any reply to its
  // reports as their receipt.
  flatbuffers::FlatBufferBuilder tfbb;
  std::vector<flatbuffers::Offset<dispatch::TaskStatusUpdate>> none;
  auto treq = dispatch::CreateUpdateTaskStatusRequestDirect(tfbb, "any", &none);
  auto reports = atB.call(tfbb, dispatch::Body::UpdateTaskStatusRequest, treq.Union());
  REQUIRE_FALSE(reports.ok());
  CHECK(store::codeOf(reports.error()) == wire::ErrorCode::NotLeader);
  CHECK(contains(errorOf(reports), "leader's dispatcher"));
  // Hello is a follower's to answer too: its own certificate and address.
  flatbuffers::FlatBufferBuilder hfbb;
  auto hreq = dispatch::CreateHelloRequest(hfbb);
  auto hr = callOn<dispatch::Envelope>("tcp://127.0.0.2:" + std::to_string(s.port + 2),
                                       bus::message<dispatch::Envelope>(hfbb, dispatch::Body::HelloRequest, hreq.Union()));
  REQUIRE_MESSAGE(hr.ok(), errorOf(hr));
  CHECK(hr->as<dispatch::Envelope>()->body_as_HelloReply()->addr()->str() == "127.0.0.2:" + std::to_string(s.port));
}

TEST_CASE("when the leader's raftd dies, a survivor's dispatcher becomes active without a restart") {
  Swarm s;
  Manager b, c;
  joinManager(s, b, "127.0.0.2", "m2");
  joinManager(s, c, "127.0.0.3", "m3");
  // Both learners are promoted to voters once caught up: three voters, one may die.
  REQUIRE_MESSAGE(waitFor([&] {
    auto st = s.store.status();
    if (!st) return false;
    int voters = 0;
    for (auto& member : (*st)["members"]) voters += member.value("suffrage", "") == "voter";
    return voters == 3;
  }, 20s), s.store.status()->dump(), s.m.logs());
  auto bKey = node::NodeDir::open(b.nodeDir)->key().publicKey;
  auto cKey = node::NodeDir::open(c.nodeDir)->key().publicKey;

  s.m.raftd->signal(SIGKILL);
  s.m.raftd->wait(3s);
  // Active, with its view of the store read (until then it asks agents to retry shortly).
  auto activeOf = [](Manager& m) {
    auto d = m.status()["dispatcher"];
    return d.value("active", false) && d["store_view"].value("loaded", false);
  };
  REQUIRE_MESSAGE(waitFor([&] { return activeOf(b) || activeOf(c); }, 15s),
                  b.status().dump(), c.status().dump(), b.logs(), c.logs());
  Manager& leader = activeOf(b) ? b : c;
  const std::string leaderHost = &leader == &b ? "127.0.0.2" : "127.0.0.3";
  const std::string followerHost = &leader == &b ? "127.0.0.3" : "127.0.0.2";
  const std::string leaderKey = &leader == &b ? bKey : cKey;
  const std::string followerKey = &leader == &b ? cKey : bKey;

  // The old leader's dispatcher, its raftd gone, serves no session and says why.
  REQUIRE(waitFor([&] { return !s.m.status()["dispatcher"]["leadership"].value("known", true); }, 10s));
  CHECK(contains(s.m.status()["dispatcher"].value("why", ""), "not known"));
  Agent atOld(s.serverKey, s.port);
  auto old = atOld.join(s.init.worker_token);
  REQUIRE_FALSE(old.ok());
  CHECK(contains(errorOf(old), "try another manager"));

  // A worker joins at the new leader; the follower sends it there.
  Agent w(leaderKey, s.port, curve::generate(), leaderHost);
  auto joined = w.join(s.init.worker_token, "w1");
  REQUIRE_MESSAGE(joined.ok(), errorOf(joined), leader.logs());
  auto opened = w.open("w1");
  REQUIRE_MESSAGE(opened.ok(), errorOf(opened));
  CHECK(opened->as<dispatch::Envelope>()->body_as_SessionReply()->managers()->size() == 3);
  Agent viaFollower(followerKey, s.port, w.key, followerHost);
  REQUIRE(waitFor([&] {
    auto r = viaFollower.open("w1");
    auto* redirect = r ? r->as<dispatch::Envelope>()->body_as_Redirect() : nullptr;
    return redirect && redirect->leader()->addr()->str() == leaderHost + ":" + std::to_string(s.port);
  }, 10s));
  // The dead manager's node, whose agent never opened a session here, is Down 3 periods after
  // the new leader took over.
  store::SyncClient survivor;
  REQUIRE(survivor.connect(store::endpointIn(leader.run)));
  REQUIRE_MESSAGE(waitFor([&] {
    auto n = nodeOf(survivor, s.init.node_id);
    return n && n->status->state == objects::NodeState::Down;
  }, 15s), leader.status().dump());
}

// A Task as schedulerd writes it for a node: ASSIGNED, desired RUNNING, a zero Meta.
std::string assignedTask(const std::string& id, const std::string& nodeId) {
  objects::TaskT t;
  t.id = id;
  t.meta = std::make_unique<objects::Meta>();
  t.service_id = "svc-of-the-test";
  t.slot = 1;
  t.node_id = nodeId;
  t.desired_state = objects::TaskState::Running;
  t.status = std::make_unique<objects::TaskStatusT>();
  t.status->state = objects::TaskState::Assigned;
  t.status->message = "scheduler assigned task to node";
  t.annotations = std::make_unique<objects::AnnotationsT>();
  t.annotations->name = "svc.1";
  flatbuffers::FlatBufferBuilder fbb;
  fbb.Finish(objects::Task::Pack(fbb, &t));
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

std::unique_ptr<objects::TaskT> taskOf(store::SyncClient& s, const std::string& id) {
  auto got = s.get(ObjectKind::Task, id);
  if (!got) return nullptr;
  return std::unique_ptr<objects::TaskT>(flatbuffers::GetRoot<objects::Task>(got->data.data())->UnPack());
}

// An assignments stream as an agent holds it: the items as they came, and how it ended.
struct AssignmentsStream {
  struct Item {
    bool full;
    uint64_t version, previous;
    std::map<std::string, objects::TaskState> updated;
    std::vector<std::string> removed;
  };
  std::vector<Item> items;
  std::optional<Status> ended;

  AssignmentsStream(Agent& agent, const std::string& session) {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = dispatch::CreateAssignmentsRequestDirect(fbb, session.c_str());
    agent.client.client().openStream(
        bus::message<dispatch::Envelope>(fbb, dispatch::Body::AssignmentsRequest, body.Union()), 8,
        [this](const bus::Frame& f) { take(f); }, [this](Status st) { ended = std::move(st); });
  }
  void take(const bus::Frame& f) {
    auto* a = f.as<dispatch::Envelope>()->body_as_Assignments();
    REQUIRE(a);
    Item item{a->full(), a->version(), a->previous(), {}, {}};
    if (a->updated())
      for (auto* u : *a->updated()) {
        flatbuffers::Verifier v(u->task()->data(), u->task()->size());
        REQUIRE(v.VerifyBuffer<objects::Task>(nullptr));
        auto* t = flatbuffers::GetRoot<objects::Task>(u->task()->data());
        item.updated[t->id()->str()] = t->status()->state();
      }
    if (a->removed())
      for (auto* r : *a->removed()) item.removed.push_back(r->str());
    // The server never leaves a gap: every increment follows the item before it.
    if (!items.empty() && !item.full) CHECK(item.previous == items.back().version);
    items.push_back(std::move(item));
  }
};

TEST_CASE("assignments: a task written for a node reaches its stream; the status it reports is stored") {
  Swarm s;
  Agent w(s.serverKey, s.port);
  auto joined = w.join(s.init.worker_token);
  REQUIRE_MESSAGE(joined.ok(), errorOf(joined), s.m.logs());
  std::string nodeId = joined->as<dispatch::Envelope>()->body_as_JoinReply()->node_id()->str();
  auto opened = w.open();
  REQUIRE_MESSAGE(opened.ok(), errorOf(opened));
  std::string session = opened->as<dispatch::Envelope>()->body_as_SessionReply()->session_id()->str();
  // Turns the agent's loop until cond holds, with heartbeats (the period is 1 s).
  auto pump = [&](auto cond, std::chrono::milliseconds limit) {
    auto start = std::chrono::steady_clock::now();
    auto beat = start;
    while (!cond()) {
      auto now = std::chrono::steady_clock::now();
      if (now - start > limit) return false;
      if (now - beat > 400ms) {
        beat = now;
        auto hb = w.heartbeat(session);
        REQUIRE_MESSAGE(hb.ok(), errorOf(hb));
      }
      w.client.loop().runOnce(20ms);
    }
    return true;
  };
  auto report = [&](const std::string& taskId, objects::TaskState state) {
    flatbuffers::FlatBufferBuilder fbb;
    auto st = objects::CreateTaskStatusDirect(fbb, 0, state, objects::EnumNameTaskState(state));
    std::vector<flatbuffers::Offset<dispatch::TaskStatusUpdate>> updates = {
        dispatch::CreateTaskStatusUpdateDirect(fbb, taskId.c_str(), st)};
    auto body = dispatch::CreateUpdateTaskStatusRequestDirect(fbb, session.c_str(), &updates);
    return w.call(fbb, dispatch::Body::UpdateTaskStatusRequest, body.Union());
  };

  // A stream in a session that is not the node's is refused.
  AssignmentsStream wrong(w, "not-the-session");
  REQUIRE(pump([&] { return wrong.ended.has_value(); }, 5s));
  REQUIRE_FALSE(wrong.ended->ok());
  CHECK(contains(wrong.ended->error().message, "open a new session"));

  // The first item is the complete set: nothing yet.
  AssignmentsStream stream(w, session);
  REQUIRE_MESSAGE(pump([&] { return !stream.items.empty(); }, 5s), s.m.logs());
  CHECK(stream.items[0].full);
  CHECK(stream.items[0].updated.empty());

  // schedulerd's write of an ASSIGNED task for the node: an increment brings it.
  std::string taskId = newId();
  auto created = s.store.txn({{ObjectKind::Task, objects::Operation::Create, taskId, 0, assignedTask(taskId, nodeId)}});
  REQUIRE_MESSAGE(created.ok(), (created ? "" : created.error().message));
  auto holds = [&](objects::TaskState state) {
    return [&, state] {
      for (auto& i : stream.items)
        if (auto u = i.updated.find(taskId); u != i.updated.end() && u->second == state) return true;
      return false;
    };
  };
  REQUIRE_MESSAGE(pump(holds(objects::TaskState::Assigned), 5s), s.m.status().dump(), s.m.logs());
  CHECK_FALSE(stream.items.back().full);

  // The agent reports RUNNING: stored (only the status), and its stream gets the new version.
  auto ran = report(taskId, objects::TaskState::Running);
  REQUIRE_MESSAGE(ran.ok(), errorOf(ran));
  CHECK(ran->as<dispatch::Envelope>()->body_as_UpdateTaskStatusReply());
  REQUIRE_MESSAGE(pump([&] {
    auto t = taskOf(s.store, taskId);
    return t && t->status && t->status->state == objects::TaskState::Running;
  }, 5s), s.m.status().dump(), s.m.logs());
  auto stored = taskOf(s.store, taskId);
  CHECK(stored->status->applied_by == nodeId);
  CHECK(stored->status->message == "Running");
  CHECK(stored->desired_state == objects::TaskState::Running);
  CHECK(stored->annotations->name == "svc.1");
  CHECK(pump(holds(objects::TaskState::Running), 5s));

  // An earlier state, and a task that is not there: answered, ignored, counted.
  REQUIRE(report(taskId, objects::TaskState::Starting).ok());
  REQUIRE(report(newId(), objects::TaskState::Running).ok());
  auto ts = s.m.status()["dispatcher"]["task_status"];
  CHECK(ts["ignored"].value("backwards", 0) == 1);
  CHECK(ts["ignored"].value("unknown_task", 0) == 1);
  CHECK(ts.value("written", 0) == 1);
  CHECK(ts.value("txns", 0) >= 1);
  std::this_thread::sleep_for(300ms);
  CHECK(taskOf(s.store, taskId)->status->state == objects::TaskState::Running);
  auto as = s.m.status()["dispatcher"]["assignments"];
  CHECK(as.value("streams", 0) == 1);
  CHECK(as["tasks_by_node"].value(nodeId, 0) == 1);

  // The task deleted: the stream says it is removed.
  auto current = s.store.get(ObjectKind::Task, taskId);
  REQUIRE(current.ok());
  uint64_t version = flatbuffers::GetRoot<objects::Task>(current->data.data())->meta()->version();
  REQUIRE(s.store.txn({{ObjectKind::Task, objects::Operation::Delete, taskId, version, {}}}).ok());
  REQUIRE(pump([&] {
    auto& r = stream.items.back().removed;
    return std::find(r.begin(), r.end(), taskId) != r.end();
  }, 5s));

  // A new session ends the streams of the old one.
  auto reopened = w.open();
  REQUIRE(reopened.ok());
  session = reopened->as<dispatch::Envelope>()->body_as_SessionReply()->session_id()->str();
  REQUIRE(pump([&] { return stream.ended.has_value(); }, 5s));
  REQUIRE_FALSE(stream.ended->ok());
  CHECK(contains(stream.ended->error().message, "new one"));
  CHECK(s.m.dispatcherd->running());
}

TEST_CASE("dispatcherd on a worker's node dir idles and says why; a damaged node.json is named") {
  testing::TempDir tmp;
  std::string nodeDir = tmp / "node";
  auto dir = node::NodeDir::open(nodeDir);
  REQUIRE(dir.ok());
  node::NodeConfig worker;
  worker.nodeId = newId();
  worker.clusterId = newId();
  worker.manager = false;
  worker.advertiseHost = "127.0.0.1";
  worker.port = static_cast<uint16_t>(freePortTriple());
  REQUIRE(dir->save(worker).ok());
  std::string run = tmp / "run";
  Process d({daemonPath("dispatcherd"), "--foreground", "--state-dir", tmp / "state", "--run-dir", run,
             "--node-dir", nodeDir, "--log-file", tmp / "dispatcherd.log"});
  auto status = [&] {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = control::CreateStatusRequest(fbb);
    auto r = callOn<control::Envelope>("ipc://" + run + "/dispatcherd.sock",
                                       bus::message<control::Envelope>(fbb, control::Body::StatusRequest, body.Union()), 5s);
    REQUIRE_MESSAGE(r.ok(), errorOf(r), d.err());
    return nlohmann::json::parse(r->as<control::Envelope>()->body_as_StatusReply()->json()->str())["dispatcher"];
  };
  REQUIRE(waitFor([&] { return std::filesystem::exists(run + "/dispatcherd.sock"); }, 10s));
  auto s = status();
  CHECK_FALSE(s.value("active", true));
  CHECK(contains(s.value("why", ""), "worker"));
  CHECK(portFree(worker.port));  // nothing bound on a worker

  std::ofstream(nodeDir + "/node.json") << "{ damaged";
  flatbuffers::FlatBufferBuilder fbb;
  auto body = control::CreateReloadRequest(fbb);
  auto r = callOn<control::Envelope>("ipc://" + run + "/dispatcherd.sock",
                                     bus::message<control::Envelope>(fbb, control::Body::ReloadRequest, body.Union()));
  REQUIRE_FALSE(r.ok());
  CHECK(contains(errorOf(r), "node.json"));
  CHECK(contains(status().value("why", ""), "node.json"));
  d.signal(SIGTERM);
  auto end = d.wait(3s);
  REQUIRE(end.has_value());
  CHECK(end->code == 0);
}

}  // namespace
}  // namespace shoal
