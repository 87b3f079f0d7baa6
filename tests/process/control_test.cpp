// raftd's control API (schemas/swarm.fbs, services/raftd/control.h) on a real raftd with its
// own node dir: swarm init and what it writes, a second init refused with the store
// unchanged, bad input refused with clear messages, join tokens, swarm update, info, node
// update / promote / demote / rm on Nodes made by txn, and leave. The quorum rule with
// several managers is in tests/unit/control_test.cpp (one raftd is one voter).
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/bus.h"
#include "common/identity.h"
#include "common/ids.h"
#include "common/node_dir.h"
#include "common/protocols.h"
#include "common/store_client.h"
#include "tests/support/daemons.h"
#include "tests/support/process.h"
#include "tests/support/tempdir.h"

// The requests below are written with designated initializers, naming only what a case sets.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace shoal {
namespace {

using namespace std::chrono_literals;
using objects::ObjectKind;
using testing::daemonPath;
using testing::freePortPair;
using testing::Process;

constexpr int64_t kSecond = 1'000'000'000;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

struct InitArgs {
  std::string advertise;
  std::string listen;
  std::vector<std::string> pools;
  uint32_t subnetSize = 0;
  int64_t heartbeat = 0;
  int64_t certExpiry = 0;
  bool force = false;
};

bus::Buffer initRequest(const InitArgs& a) {
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<flatbuffers::Offset<flatbuffers::String>> pools;
  for (auto& p : a.pools) pools.push_back(fbb.CreateString(p));
  auto body = swarmapi::CreateInitRequestDirect(fbb, a.advertise.c_str(), a.listen.c_str(), &pools,
                                                a.subnetSize, a.heartbeat, a.certExpiry, a.force);
  return bus::message<swarmapi::Envelope>(fbb, swarmapi::Body::InitRequest, body.Union());
}

bus::Buffer joinTokenRequest(objects::NodeRole role, bool rotate) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = swarmapi::CreateJoinTokenRequest(fbb, role, rotate);
  return bus::message<swarmapi::Envelope>(fbb, swarmapi::Body::JoinTokenRequest, body.Union());
}

bus::Buffer updateRequest(int64_t heartbeat, int64_t certExpiry) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = swarmapi::CreateUpdateRequest(fbb, heartbeat, certExpiry);
  return bus::message<swarmapi::Envelope>(fbb, swarmapi::Body::UpdateRequest, body.Union());
}

bus::Buffer infoRequest() {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = swarmapi::CreateInfoRequest(fbb);
  return bus::message<swarmapi::Envelope>(fbb, swarmapi::Body::InfoRequest, body.Union());
}

struct NodeUpdate {
  std::string node;
  int16_t role = -1;
  int16_t availability = -1;
  std::vector<std::pair<std::string, std::string>> add;
  std::vector<std::string> rm;
};

bus::Buffer nodeUpdateRequest(const NodeUpdate& u) {
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<flatbuffers::Offset<objects::KeyValue>> add;
  for (auto& [k, v] : u.add)
    add.push_back(objects::CreateKeyValueDirect(fbb, k.c_str(), v.c_str()));
  std::vector<flatbuffers::Offset<flatbuffers::String>> rm;
  for (auto& k : u.rm) rm.push_back(fbb.CreateString(k));
  auto body = swarmapi::CreateNodeUpdateRequestDirect(fbb, u.node.c_str(), u.role, u.availability,
                                                      &add, &rm);
  return bus::message<swarmapi::Envelope>(fbb, swarmapi::Body::NodeUpdateRequest, body.Union());
}

bus::Buffer nodeRemoveRequest(const std::string& node, bool force) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = swarmapi::CreateNodeRemoveRequestDirect(fbb, node.c_str(), force);
  return bus::message<swarmapi::Envelope>(fbb, swarmapi::Body::NodeRemoveRequest, body.Union());
}

bus::Buffer leaveRequest(bool force) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = swarmapi::CreateLeaveRequest(fbb, force);
  return bus::message<swarmapi::Envelope>(fbb, swarmapi::Body::LeaveRequest, body.Union());
}

bus::Buffer joinRaftRequest(uint64_t id, uint64_t cluster, const std::string& listen,
                            const std::string& advertise, const std::string& peerKey) {
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<flatbuffers::Offset<swarmapi::RaftPeer>> peers;
  peers.push_back(swarmapi::CreateRaftPeerDirect(fbb, 1, "127.0.0.1:1", peerKey.c_str()));
  auto body = swarmapi::CreateJoinRaftRequestDirect(fbb, id, cluster, listen.c_str(),
                                                    advertise.c_str(), &peers);
  return bus::message<swarmapi::Envelope>(fbb, swarmapi::Body::JoinRaftRequest, body.Union());
}

// A worker Node as dispatcherd would have written it at a join.
std::string workerNode(const std::string& id, const std::string& hostname,
                       objects::NodeState state) {
  objects::NodeT n;
  n.id = id;
  n.meta = std::make_unique<objects::Meta>();
  n.spec = std::make_unique<objects::NodeSpecT>();
  n.spec->membership = objects::NodeMembership::Accepted;
  n.description = std::make_unique<objects::NodeDescriptionT>();
  n.description->hostname = hostname;
  n.status = std::make_unique<objects::NodeStatusT>();
  n.status->state = state;
  n.status->addr = "127.0.0.2";
  flatbuffers::FlatBufferBuilder fbb;
  fbb.Finish(objects::Node::Pack(fbb, &n));
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

// A manager Node of another raftd, as the store would hold it.
std::string managerNode(const std::string& id, const std::string& hostname, uint64_t raftId,
                        const std::string& raftAddr) {
  objects::NodeT n;
  auto worker = workerNode(id, hostname, objects::NodeState::Ready);
  flatbuffers::GetRoot<objects::Node>(worker.data())->UnPackTo(&n);
  n.role = objects::NodeRole::Manager;
  n.spec->desired_role = objects::NodeRole::Manager;
  n.manager_status = std::make_unique<objects::ManagerStatusT>();
  n.manager_status->raft_id = raftId;
  n.manager_status->addr = raftAddr;
  n.manager_status->reachability = objects::Reachability::Reachable;
  flatbuffers::FlatBufferBuilder fbb;
  fbb.Finish(objects::Node::Pack(fbb, &n));
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

class Raftd {
 public:
  Raftd()
      : run_(tmp_ / "run"),
        nodeDir_(tmp_ / "node"),
        process_({daemonPath("raftd"), "--foreground", "--state-dir", tmp_ / "state", "--run-dir",
                  run_, "--node-dir", nodeDir_, "--log-file", tmp_ / "raftd.log"}),
        swarm_(kSwarmProtocol) {
    REQUIRE(swarm_.connect("ipc://" + run_ + "/raftd.sock"));
    REQUIRE(store_.connect(store::endpointIn(run_)));
    // Up once its socket answers.
    bool up = testing::waitFor([&] { return swarm_.call(infoRequest(), 1s).ok(); }, 10s);
    REQUIRE_MESSAGE(up, "raftd did not answer Info:\n", process_.err());
  }
  ~Raftd() {
    if (!process_.running()) MESSAGE("raftd ended early:\n", process_.err());
  }

  Result<bus::Frame> call(bus::Buffer request) { return swarm_.call(std::move(request), 30s); }
  // A refused call's message; fails the test when the call was not refused.
  std::string refusal(bus::Buffer request) {
    auto r = call(std::move(request));
    REQUIRE_MESSAGE(!r.ok(), "the call was expected to be refused");
    return r.error().message;
  }
  store::SyncClient& store() { return store_; }
  const std::string& nodeDir() const { return nodeDir_; }
  bool nodeJsonExists() const { return std::filesystem::exists(nodeDir_ + "/node.json"); }
  nlohmann::json info() {
    auto r = call(infoRequest());
    REQUIRE_MESSAGE(r.ok(), (r ? "" : r.error().message));
    return nlohmann::json::parse(r->as<swarmapi::Envelope>()->body_as_InfoReply()->json()->str());
  }

  std::unique_ptr<objects::NodeT> node(const std::string& id) {
    auto got = store_.get(ObjectKind::Node, id);
    REQUIRE_MESSAGE(got.ok(), (got ? "" : got.error().message));
    return std::unique_ptr<objects::NodeT>(
        flatbuffers::GetRoot<objects::Node>(got->data.data())->UnPack());
  }
  std::unique_ptr<objects::ClusterT> cluster(const std::string& id) {
    auto got = store_.get(ObjectKind::Cluster, id);
    REQUIRE_MESSAGE(got.ok(), (got ? "" : got.error().message));
    return std::unique_ptr<objects::ClusterT>(
        flatbuffers::GetRoot<objects::Cluster>(got->data.data())->UnPack());
  }

 private:
  testing::TempDir tmp_;
  std::string run_;
  std::string nodeDir_;
  Process process_;
  bus::SyncClient swarm_;
  store::SyncClient store_;
};

TEST_CASE("swarm init on a real raftd, and the cluster operations after it") {
  Raftd raftd;
  int port = freePortPair();
  std::string advertise = "127.0.0.1:" + std::to_string(port);

  // Before init: an inactive node, and nothing a manager serves.
  CHECK(raftd.info().value("LocalNodeState", "") == "inactive");
  CHECK(contains(raftd.refusal(joinTokenRequest(objects::NodeRole::Worker, false)),
                 "not part of a swarm"));

  // Bad input is refused, says what was wrong, and leaves no node.json behind.
  CHECK(contains(raftd.refusal(initRequest({.advertise = "no such thing!"})), "--advertise-addr"));
  CHECK(contains(raftd.refusal(initRequest({.advertise = "0.0.0.0"})),
                 "not an address other nodes can reach"));
  CHECK(contains(raftd.refusal(initRequest({.advertise = advertise, .pools = {"10.0.0.1/8"}})),
                 "did you mean 10.0.0.0/8?"));
  CHECK(contains(raftd.refusal(initRequest(
                     {.advertise = advertise, .pools = {"10.0.0.0/8"}, .subnetSize = 31})),
                 "subnet size /31"));
  CHECK(contains(raftd.refusal(initRequest({.advertise = advertise, .heartbeat = 50'000'000})),
                 "heartbeat"));
  CHECK(contains(raftd.refusal(initRequest({.advertise = advertise, .certExpiry = 60 * kSecond})),
                 "the minimum is 1h0m0s"));
  CHECK_FALSE(raftd.nodeJsonExists());

  // JoinRaft checks what the join reply gave before raft sees it.
  auto key = curve::generate().publicKey;
  CHECK(contains(raftd.refusal(joinRaftRequest(0, 9, "127.0.0.1:1", "127.0.0.1:1", key)),
                 "raft id is 0"));
  CHECK(contains(raftd.refusal(joinRaftRequest(5, 9, "127.0.0.1:1", "127.0.0.1:1", "bad")),
                 "no valid public key"));
  CHECK(contains(raftd.refusal(joinRaftRequest(5, 9, "127.0.0.1:1", "127.0.0.1:1", key)),
                 "not part of a swarm"));

  // --- init
  auto initialized = raftd.call(initRequest({.advertise = advertise, .heartbeat = kSecond}));
  REQUIRE_MESSAGE(initialized.ok(), (initialized ? "" : initialized.error().message));
  auto* reply = initialized->as<swarmapi::Envelope>()->body_as_InitReply();
  REQUIRE(reply);
  std::string nodeId = reply->node_id()->str(), clusterId = reply->cluster_id()->str();
  std::string workerToken = reply->worker_token()->str(),
              managerToken = reply->manager_token()->str();
  CHECK(isValidId(nodeId));
  CHECK(isValidId(clusterId));
  CHECK(identity::parseJoinToken(workerToken).ok());
  CHECK(workerToken != managerToken);
  CHECK(reply->advertise_addr()->str() == advertise);

  // node.json: a manager with its raft identity and the CA's public form.
  auto dir = node::NodeDir::open(raftd.nodeDir());
  REQUIRE(dir.ok());
  auto config = dir->load();
  REQUIRE(config.ok());
  REQUIRE(config->has_value());
  CHECK((*config)->nodeId == nodeId);
  CHECK((*config)->manager);
  REQUIRE((*config)->raft.has_value());
  CHECK((*config)->port == port);
  CHECK((*config)->advertiseHost == "127.0.0.1");

  // The Cluster and this Node, written in one transaction.
  auto cluster = raftd.cluster(clusterId);
  CHECK(cluster->spec->annotations->name == "default");
  CHECK(cluster->spec->dispatcher->heartbeat_period == kSecond);
  CHECK(cluster->spec->ca_config->node_cert_expiry == 90LL * 24 * 3600 * kSecond);
  CHECK(cluster->default_address_pool == std::vector<std::string>{"10.0.0.0/8"});
  CHECK(cluster->subnet_size == 24);
  CHECK(cluster->vxlan_udp_port == 4789);
  CHECK(cluster->root_ca->join_tokens->worker == workerToken);
  CHECK(cluster->root_ca->join_tokens->manager == managerToken);
  auto ca = identity::ClusterCA::load(cluster->root_ca->ca_key);
  REQUIRE(ca.ok());
  CHECK(ca->canSign());
  auto self = raftd.node(nodeId);
  CHECK(self->role == objects::NodeRole::Manager);
  CHECK(self->spec->desired_role == objects::NodeRole::Manager);
  CHECK(self->status->state == objects::NodeState::Ready);
  CHECK(self->status->addr == "127.0.0.1");
  CHECK(self->manager_status->leader);
  CHECK(self->manager_status->raft_id == (*config)->raft->id);
  CHECK(self->manager_status->addr == "127.0.0.1:" + std::to_string(port + 1));
  auto now = std::chrono::duration_cast<std::chrono::seconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  auto cert = ca->verify(self->certificate, now);
  REQUIRE_MESSAGE(cert.ok(), (cert ? "" : cert.error().message));
  CHECK(cert->nodeId == nodeId);
  CHECK(cert->role == identity::Role::Manager);
  CHECK(identity::curveKeyToZ85(cert->curvePublicKey) == dir->key().publicKey);
  CHECK(self->curve_public_key ==
        std::vector<uint8_t>(cert->curvePublicKey.begin(), cert->curvePublicKey.end()));

  // A second init is refused and changes nothing.
  uint64_t clusterVersion = cluster->meta->version(), selfVersion = self->meta->version();
  CHECK(contains(raftd.refusal(initRequest({.advertise = advertise})), "already part of a swarm"));
  CHECK(raftd.cluster(clusterId)->meta->version() == clusterVersion);
  CHECK(raftd.node(nodeId)->meta->version() == selfVersion);
  CHECK(raftd.store().list(ObjectKind::Cluster)->objects.size() == 1);
  CHECK(raftd.store().list(ObjectKind::Node)->objects.size() == 1);

  auto info = raftd.info();
  CHECK(info.value("LocalNodeState", "") == "active");
  CHECK(info.value("NodeID", "") == nodeId);
  CHECK(info.value("ClusterID", "") == clusterId);
  CHECK(info.value("Leader", "") == nodeId);

  SUBCASE("join tokens: get, and rotate replaces only the one asked for") {
    auto got = raftd.call(joinTokenRequest(objects::NodeRole::Worker, false));
    REQUIRE(got.ok());
    CHECK(got->as<swarmapi::Envelope>()->body_as_JoinTokenReply()->token()->str() == workerToken);
    CHECK(got->as<swarmapi::Envelope>()->body_as_JoinTokenReply()->manager_addr()->str() ==
          advertise);
    auto rotated = raftd.call(joinTokenRequest(objects::NodeRole::Worker, true));
    REQUIRE(rotated.ok());
    std::string fresh = rotated->as<swarmapi::Envelope>()->body_as_JoinTokenReply()->token()->str();
    CHECK(fresh != workerToken);
    CHECK(identity::parseJoinToken(fresh).ok());
    auto stored = raftd.cluster(clusterId);
    CHECK(stored->root_ca->join_tokens->worker == fresh);
    CHECK(stored->root_ca->join_tokens->manager == managerToken);
    identity::JoinTokens tokens{stored->root_ca->join_tokens->worker,
                                stored->root_ca->join_tokens->manager};
    CHECK_FALSE(tokens.admits(workerToken).has_value());
    CHECK(tokens.admits(fresh) == identity::Role::Worker);
  }

  SUBCASE("swarm update: validated, and only what is given changes") {
    CHECK(contains(raftd.refusal(updateRequest(0, 0)), "nothing to change"));
    CHECK(contains(raftd.refusal(updateRequest(-kSecond, 0)), "heartbeat"));
    CHECK(raftd.cluster(clusterId)->meta->version() == clusterVersion);
    REQUIRE(raftd.call(updateRequest(2 * kSecond, 0)).ok());
    auto stored = raftd.cluster(clusterId);
    CHECK(stored->spec->dispatcher->heartbeat_period == 2 * kSecond);
    CHECK(stored->spec->ca_config->node_cert_expiry == 90LL * 24 * 3600 * kSecond);
    REQUIRE(raftd.call(updateRequest(0, 48 * 3600 * kSecond)).ok());
    CHECK(raftd.cluster(clusterId)->spec->ca_config->node_cert_expiry == 48 * 3600 * kSecond);
  }

  SUBCASE("nodes: update, promote, demote, rm") {
    std::string w1 = newId(), w2 = newId();
    REQUIRE(raftd.store()
                .txn({{ObjectKind::Node, objects::Operation::Create, w1, 0,
                       workerNode(w1, "w1", objects::NodeState::Ready)}})
                .ok());

    // Availability and labels, naming the node by hostname.
    auto updated = raftd.call(nodeUpdateRequest(
        {.node = "w1", .availability = 2, .add = {{"zone", "a"}, {"disk", "ssd"}}}));
    REQUIRE_MESSAGE(updated.ok(), (updated ? "" : updated.error().message));
    CHECK(updated->as<swarmapi::Envelope>()->body_as_NodeReply()->node_id()->str() == w1);
    auto n = raftd.node(w1);
    CHECK(n->spec->availability == objects::NodeAvailability::Drain);
    REQUIRE(n->spec->annotations->labels.size() == 2);
    CHECK(n->spec->annotations->labels[0]->key == "disk");
    CHECK(n->spec->annotations->labels[1]->value == "a");
    CHECK(n->description->hostname == "w1");  // the rest of the Node is kept
    CHECK(n->status->addr == "127.0.0.2");
    uint64_t version = n->meta->version();

    // Refusals change nothing.
    CHECK(contains(raftd.refusal(nodeUpdateRequest(
                       {.node = w1.substr(0, 6), .availability = 0, .rm = {"nope"}})),
                   "has no label \"nope\""));
    CHECK(contains(raftd.refusal(nodeUpdateRequest({.node = "w1", .add = {{"bad key", "x"}}})),
                   "label key"));
    CHECK(contains(raftd.refusal(nodeUpdateRequest({.node = "w1", .availability = 9})),
                   "not active, pause or drain"));
    CHECK(contains(raftd.refusal(nodeUpdateRequest({.node = "nobody"})), "shoal node ls"));
    CHECK(contains(raftd.refusal(nodeRemoveRequest("w1", false)), "is not down (it is ready)"));
    CHECK(raftd.node(w1)->meta->version() == version);

    // A manager cannot be removed; the only manager cannot be demoted.
    uint64_t managerVersion = raftd.node(nodeId)->meta->version();
    CHECK(contains(raftd.refusal(nodeRemoveRequest(nodeId, true)), "demote it first"));
    CHECK(contains(raftd.refusal(nodeUpdateRequest({.node = nodeId, .role = 0})),
                   "would lose quorum: 0 of the 1 managers would remain"));
    CHECK(raftd.node(nodeId)->meta->version() == managerVersion);
    CHECK(raftd.node(nodeId)->role == objects::NodeRole::Manager);

    // Promote: raft gets a learner at the node's address and P+1, the Node says manager.
    auto promoted = raftd.call(nodeUpdateRequest({.node = "w1", .role = 1}));
    REQUIRE_MESSAGE(promoted.ok(), (promoted ? "" : promoted.error().message));
    n = raftd.node(w1);
    CHECK(n->role == objects::NodeRole::Manager);
    CHECK(n->spec->desired_role == objects::NodeRole::Manager);
    REQUIRE(n->manager_status);
    CHECK(n->manager_status->raft_id != 0);
    CHECK(n->manager_status->addr == "127.0.0.2:" + std::to_string(port + 1));
    CHECK(n->spec->availability == objects::NodeAvailability::Drain);
    CHECK(contains(raftd.refusal(nodeRemoveRequest("w1", true)), "is a manager: demote it first"));

    // Demote: a learner carries no vote, so quorum holds; raft and the Node forget it.
    auto demoted = raftd.call(nodeUpdateRequest({.node = "w1", .role = 0}));
    REQUIRE_MESSAGE(demoted.ok(), (demoted ? "" : demoted.error().message));
    n = raftd.node(w1);
    CHECK(n->role == objects::NodeRole::Worker);
    CHECK(n->spec->desired_role == objects::NodeRole::Worker);
    CHECK_FALSE(n->manager_status);

    // Two nodes with one hostname: the name is ambiguous, the error lists both.
    REQUIRE(raftd.store()
                .txn({{ObjectKind::Node, objects::Operation::Create, w2, 0,
                       workerNode(w2, "w1", objects::NodeState::Down)}})
                .ok());
    auto ambiguous = raftd.refusal(nodeRemoveRequest("w1", false));
    CHECK(contains(ambiguous, w1));
    CHECK(contains(ambiguous, w2));

    // rm: a Down worker goes; a Ready one only with --force.
    REQUIRE(raftd.call(nodeRemoveRequest(w2, false)).ok());
    CHECK(store::codeOf(raftd.store().get(ObjectKind::Node, w2).error()) ==
          wire::ErrorCode::NotFound);
    REQUIRE(raftd.call(nodeRemoveRequest("w1", true)).ok());
    CHECK_FALSE(raftd.store().get(ObjectKind::Node, w1).ok());
    CHECK(raftd.store().list(ObjectKind::Node)->objects.size() == 1);
  }

  SUBCASE("--force-new-cluster: this manager alone, with the store it had") {
    std::string m2 = newId();
    REQUIRE(raftd.store()
                .txn({{ObjectKind::Node, objects::Operation::Create, m2, 0,
                       managerNode(m2, "m2", 77, "127.0.0.3:" + std::to_string(port + 1))}})
                .ok());
    CHECK(contains(raftd.refusal(initRequest({.pools = {"10.0.0.0/8"}, .force = true})),
                   "keeps the cluster's settings"));
    CHECK(contains(raftd.refusal(initRequest({.advertise = "127.0.0.1:1", .force = true})),
                   "keeps this manager's addresses"));
    CHECK(raftd.node(m2)->role == objects::NodeRole::Manager);

    auto forced = raftd.call(initRequest({.force = true}));
    REQUIRE_MESSAGE(forced.ok(), (forced ? "" : forced.error().message));
    auto* again = forced->as<swarmapi::Envelope>()->body_as_InitReply();
    CHECK(again->node_id()->str() == nodeId);
    CHECK(again->cluster_id()->str() == clusterId);
    CHECK(again->worker_token()->str() == workerToken);
    CHECK(again->advertise_addr()->str() == advertise);
    // The other manager is demoted and marked Down for the operator to remove.
    auto other = raftd.node(m2);
    CHECK(other->role == objects::NodeRole::Worker);
    CHECK(other->spec->desired_role == objects::NodeRole::Worker);
    CHECK_FALSE(other->manager_status);
    CHECK(other->status->state == objects::NodeState::Down);
    CHECK(contains(other->status->message, "force-new-cluster"));
    CHECK(raftd.node(nodeId)->manager_status->leader);
    // Writable, and the old objects are there.
    REQUIRE(raftd.call(updateRequest(3 * kSecond, 0)).ok());
    CHECK(raftd.cluster(clusterId)->spec->dispatcher->heartbeat_period == 3 * kSecond);
    REQUIRE(raftd.call(nodeRemoveRequest("m2", false)).ok());
  }

  SUBCASE("leave: the last manager only with --force; then a new init works") {
    CHECK(contains(raftd.refusal(leaveRequest(false)), "leaving the swarm would lose quorum"));
    CHECK(raftd.info().value("LocalNodeState", "") == "active");
    REQUIRE(raftd.call(leaveRequest(true)).ok());
    // agentd forgets node.json after raftd left; until then a new init is refused.
    CHECK(
        contains(raftd.refusal(initRequest({.advertise = advertise})), "already part of a swarm"));
    REQUIRE(dir->clear());
    CHECK(raftd.info().value("LocalNodeState", "") == "inactive");
    auto again = raftd.call(initRequest({.advertise = advertise}));
    REQUIRE_MESSAGE(again.ok(), (again ? "" : again.error().message));
    std::string newCluster =
        again->as<swarmapi::Envelope>()->body_as_InitReply()->cluster_id()->str();
    CHECK(newCluster != clusterId);
    CHECK(raftd.store().list(ObjectKind::Node)->objects.size() == 1);
  }
}

}  // namespace
}  // namespace shoal
