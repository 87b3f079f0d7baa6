// services/raftd/manager_status.h: the copy of a Node with a new manager status keeps every
// other field; the leader's transaction updates exactly the manager Nodes that differ from
// the truth, each with its expected version; the peer keys come from manager Nodes only.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "common/curve.h"
#include "common/identity.h"
#include "services/raftd/manager_status.h"

namespace shoal::raftd {
namespace {

struct NodeSpec {
  std::string id;
  objects::NodeRole role;
  objects::NodeRole desired;
  uint64_t raftId;  // 0: no manager_status
  bool leader;
  objects::Reachability reach;
  uint64_t version;
  std::string key;  // Z85; empty: none
};

std::string makeNode(std::string nodeId, objects::NodeRole role = objects::NodeRole::Manager,
                     objects::NodeRole desired = objects::NodeRole::Manager, uint64_t raftId = 0,
                     bool leader = false, objects::Reachability reach = objects::Reachability::Unknown,
                     uint64_t version = 7, std::string keyZ85 = "") {
  NodeSpec n{std::move(nodeId), role, desired, raftId, leader, reach, version, std::move(keyZ85)};
  flatbuffers::FlatBufferBuilder fbb;
  auto id = fbb.CreateString(n.id);
  std::vector<flatbuffers::Offset<objects::KeyValue>> labels{
      objects::CreateKeyValue(fbb, fbb.CreateString("zone"), fbb.CreateString("a"))};
  auto spec = objects::CreateNodeSpec(
      fbb, objects::CreateAnnotations(fbb, fbb.CreateString("name-" + n.id), fbb.CreateVector(labels)),
      n.desired, objects::NodeMembership::Accepted, objects::NodeAvailability::Drain);
  std::vector<flatbuffers::Offset<objects::KeyValue>> engineLabels{
      objects::CreateKeyValue(fbb, fbb.CreateString("disk"), fbb.CreateString("ssd"))};
  auto desc = objects::CreateNodeDescription(
      fbb, fbb.CreateString("host-" + n.id),
      objects::CreatePlatform(fbb, fbb.CreateString("amd64"), fbb.CreateString("linux")),
      objects::CreateResources(fbb, 4'000'000'000, 8ll << 30, 0),
      objects::CreateEngineDescription(fbb, fbb.CreateString("0.1"), fbb.CreateVector(engineLabels)));
  auto status = objects::CreateNodeStatus(fbb, objects::NodeState::Ready, fbb.CreateString("ok"),
                                          fbb.CreateString("10.0.0.1"));
  flatbuffers::Offset<objects::ManagerStatus> ms;
  if (n.raftId)
    ms = objects::CreateManagerStatus(fbb, n.raftId, fbb.CreateString("10.0.0.1:2378"), n.leader, n.reach);
  flatbuffers::Offset<flatbuffers::Vector<uint8_t>> key;
  if (!n.key.empty()) {
    auto raw = identity::curveKeyFromZ85(n.key);
    REQUIRE(raw.ok());
    key = fbb.CreateVector(raw->data(), raw->size());
  }
  auto cert = fbb.CreateVector(std::vector<uint8_t>{1, 2, 3, 4});
  objects::Meta meta(n.version, 11, 22);
  auto node = objects::CreateNode(fbb, id, &meta, spec, desc, status, ms, n.role, key, cert, 123456789);
  fbb.Finish(node);
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

const objects::Node* read(const std::string& bytes) {
  flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  REQUIRE(v.VerifyBuffer<objects::Node>(nullptr));
  return flatbuffers::GetRoot<objects::Node>(bytes.data());
}

TEST_CASE("withManagerStatus changes the manager status and keeps every other field") {
  std::string key = curve::generate().publicKey;
  std::string before = makeNode("n1", objects::NodeRole::Manager, objects::NodeRole::Manager, 42,
                                 false, objects::Reachability::Unknown, 9, key);
  auto after = withManagerStatus(before, true, objects::Reachability::Reachable);
  REQUIRE(after.ok());
  const objects::Node* n = read(*after);
  CHECK(n->id()->str() == "n1");
  CHECK(n->meta()->version() == 9);
  CHECK(n->meta()->created_at() == 11);
  CHECK(n->meta()->updated_at() == 22);
  CHECK(n->spec()->annotations()->name()->str() == "name-n1");
  CHECK(n->spec()->annotations()->labels()->Get(0)->value()->str() == "a");
  CHECK(n->spec()->availability() == objects::NodeAvailability::Drain);
  CHECK(n->spec()->membership() == objects::NodeMembership::Accepted);
  CHECK(n->description()->hostname()->str() == "host-n1");
  CHECK(n->description()->platform()->os()->str() == "linux");
  CHECK(n->description()->resources()->memory_bytes() == (8ll << 30));
  CHECK(n->description()->engine()->labels()->Get(0)->key()->str() == "disk");
  CHECK(n->status()->state() == objects::NodeState::Ready);
  CHECK(n->status()->addr()->str() == "10.0.0.1");
  CHECK(n->role() == objects::NodeRole::Manager);
  REQUIRE(n->curve_public_key());
  CHECK(n->curve_public_key()->size() == 32);
  CHECK(n->certificate()->size() == 4);
  CHECK(n->certificate_expiry() == 123456789);
  REQUIRE(n->manager_status());
  CHECK(n->manager_status()->raft_id() == 42);
  CHECK(n->manager_status()->addr()->str() == "10.0.0.1:2378");
  CHECK(n->manager_status()->leader());
  CHECK(n->manager_status()->reachability() == objects::Reachability::Reachable);

  // And back: a false leader flag is written too, not left out as a default.
  auto again = withManagerStatus(*after, false, objects::Reachability::Unreachable);
  REQUIRE(again.ok());
  CHECK_FALSE(read(*again)->manager_status()->leader());
  CHECK(read(*again)->manager_status()->reachability() == objects::Reachability::Unreachable);
  CHECK(read(*again)->description()->platform()->architecture()->str() == "amd64");
}

TEST_CASE("withManagerStatus gives a Node without one a manager status, and refuses garbage") {
  auto made = withManagerStatus(makeNode("w1"), false, objects::Reachability::Reachable);
  REQUIRE(made.ok());
  REQUIRE(read(*made)->manager_status());
  CHECK(read(*made)->manager_status()->reachability() == objects::Reachability::Reachable);
  CHECK(read(*made)->manager_status()->raft_id() == 0);
  CHECK_FALSE(withManagerStatus("not a node", true, objects::Reachability::Reachable).ok());
}

TEST_CASE("managerStatusTxn updates only the managers whose status differs from the truth") {
  std::vector<std::string> nodes{
      // m1 leads now but its Node says otherwise; m2 led and is gone; m3 is right already.
      makeNode("m1", objects::NodeRole::Manager, objects::NodeRole::Manager, 1, false,
                objects::Reachability::Unknown, 10),
      makeNode("m2", objects::NodeRole::Manager, objects::NodeRole::Manager, 2, true,
                objects::Reachability::Reachable, 20),
      makeNode("m3", objects::NodeRole::Manager, objects::NodeRole::Manager, 3, false,
                objects::Reachability::Reachable, 30),
      // A worker, and a manager without a raft id yet: never written.
      makeNode("w1", objects::NodeRole::Worker, objects::NodeRole::Worker, 0),
      makeNode("m4", objects::NodeRole::Manager, objects::NodeRole::Manager, 0),
  };
  std::vector<std::string_view> views(nodes.begin(), nodes.end());
  ManagerTruth truth{1, {1, 3}};
  auto txn = managerStatusTxn(views, truth);
  REQUIRE(txn.ok());
  REQUIRE(txn->has_value());
  flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>((*txn)->data()), (*txn)->size());
  REQUIRE(objects::VerifyStoreTxnBuffer(v));
  auto* t = objects::GetStoreTxn((*txn)->data());
  REQUIRE(t->changes()->size() == 2);
  auto* c1 = t->changes()->Get(0);
  auto* c2 = t->changes()->Get(1);
  CHECK(c1->id()->str() == "m1");
  CHECK(c1->operation() == objects::Operation::Update);
  CHECK(c1->kind() == objects::ObjectKind::Node);
  CHECK(c1->expected_version() == 10);
  auto* n1 = flatbuffers::GetRoot<objects::Node>(c1->object()->data());
  CHECK(n1->manager_status()->leader());
  CHECK(n1->manager_status()->reachability() == objects::Reachability::Reachable);
  CHECK(c2->id()->str() == "m2");
  CHECK(c2->expected_version() == 20);
  auto* n2 = flatbuffers::GetRoot<objects::Node>(c2->object()->data());
  CHECK_FALSE(n2->manager_status()->leader());
  CHECK(n2->manager_status()->reachability() == objects::Reachability::Unreachable);

  // Once written, nothing more to do.
  std::vector<std::string> written{std::string(reinterpret_cast<const char*>(c1->object()->data()), c1->object()->size()),
                                   std::string(reinterpret_cast<const char*>(c2->object()->data()), c2->object()->size()),
                                   nodes[2], nodes[3], nodes[4]};
  std::vector<std::string_view> views2(written.begin(), written.end());
  auto none = managerStatusTxn(views2, truth);
  REQUIRE(none.ok());
  CHECK_FALSE(none->has_value());
}

TEST_CASE("a node being promoted counts as a manager (desired role), a demoted one still does") {
  std::vector<std::string> nodes{
      makeNode("p", objects::NodeRole::Worker, objects::NodeRole::Manager, 5),
      makeNode("d", objects::NodeRole::Manager, objects::NodeRole::Worker, 6),
      makeNode("w", objects::NodeRole::Worker, objects::NodeRole::Worker, 7),
  };
  std::vector<std::string_view> views(nodes.begin(), nodes.end());
  auto txn = managerStatusTxn(views, {9, {9}});
  REQUIRE(txn.ok());
  REQUIRE(txn->has_value());
  CHECK(objects::GetStoreTxn((*txn)->data())->changes()->size() == 2);
}

TEST_CASE("managerKeys: the keys of manager Nodes, by raft id; workers' keys are not admitted") {
  auto k1 = curve::generate().publicKey, k2 = curve::generate().publicKey, kw = curve::generate().publicKey;
  std::vector<std::string> nodes{
      makeNode("m1", objects::NodeRole::Manager, objects::NodeRole::Manager, 1, false,
                objects::Reachability::Unknown, 1, k1),
      makeNode("m2", objects::NodeRole::Worker, objects::NodeRole::Manager, 0, false,
                objects::Reachability::Unknown, 1, k2),
      makeNode("w", objects::NodeRole::Worker, objects::NodeRole::Worker, 3, false,
                objects::Reachability::Unknown, 1, kw),
  };
  std::vector<std::string_view> views(nodes.begin(), nodes.end());
  ManagerKeys keys = managerKeys(views);
  CHECK(keys.managers == std::set<std::string>{k1, k2});
  CHECK(keys.byRaftId == std::map<uint64_t, std::string>{{1, k1}});
}

}  // namespace
}  // namespace shoal::raftd
