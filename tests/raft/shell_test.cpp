// The real raftd shell (RaftNode) on the simulated host (sim_host.h), one behaviour at a time:
// requests past its bounds are refused, a read the leader never confirms ends at its
// deadline, and a received snapshot is installed as background work while the node goes
// on (issue 7's bugs 2, 6 and 7); a node out of a swarm idles, leaves and starts again,
// forces a new cluster from a survivor, and its leader writes the managers' status (issue 8).
// raft-shell-sim runs the same shell under random faults.
#include <doctest/doctest.h>

#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include <fmt/format.h>
#include <zmq.hpp>

#include "common/curve.h"
#include "common/ids.h"
#include "services/raftd/protocols.h"
#include "services/raftd/store_client.h"
#include "tests/raft/sim_host.h"
#include "tests/support/tempdir.h"

namespace shoal::raftd::sim {
namespace {

struct Answer {
  std::optional<Result<bus::Frame>> got;
  bool ok() const { return got && got->ok(); }
  int code() const { return got && !got->ok() ? got->error().code : 0; }
  std::string message() const { return got && !got->ok() ? got->error().message : ""; }
};

// A few nodes on one simulated network; node 0 bootstraps, the others join through it.
class Nodes {
 public:
  explicit Nodes(int count, std::function<void(NodeOptions&)> tune = {})
      : rng_(7), net_(world_, rng_, [this](const std::string& a) { return endpoint(a); }),
        tune_(std::move(tune)) {
    for (int i = 0; i < count; ++i) {
      Slot s;
      s.address = fmt::format("n{}:2378", i + 1);
      s.dir = tmp_ / fmt::format("n{}", i + 1);
      slots_.push_back(std::move(s));
    }
  }
  ~Nodes() {
    for (auto& s : slots_) world_.kill(s.incarnation);
    for (auto& s : slots_) {
      if (s.host) s.host->die();
      s.node.reset();
      s.host.reset();
    }
  }

  void start(int i) {
    Slot& s = slots_[static_cast<size_t>(i)];
    std::filesystem::create_directories(s.dir);
    s.incarnation = world_.born();
    s.host = std::make_unique<SimHost>(world_, net_, rng_, s.address, s.incarnation);
    NodeOptions o;
    o.seed = static_cast<uint64_t>(i + 1) * 7919;
    o.maxStoreBytes = size_t{64} << 20;
    if (tune_) tune_(o);
    auto node = RaftNode::open(*s.host, s.dir, o);
    REQUIRE_MESSAGE(node.ok(), (node ? "" : node.error().message));
    s.node = std::move(node).value();
    if (s.node->inCluster()) return;  // a restart: it runs from its state
    if (i == 0) {
      auto st = s.node->bootstrap(raftId(0), kClusterId, s.address, s.address);
      REQUIRE_MESSAGE(st.ok(), (st ? "" : st.error().message));
      return;
    }
    // As a manager joins: the leader (node 0) adds it, then it joins with node 0 as its peer.
    auto added = ask(0, addMemberRequest(raftId(i), s.address), 5000);
    REQUIRE(runUntil([&] { return added->got.has_value(); }, 10s));
    REQUIRE_MESSAGE(added->ok(), added->message());
    auto st = s.node->joinRaft(raftId(i), kClusterId, s.address, s.address,
                               {{raftId(0), slots_[0].address, key(0)}});
    REQUIRE_MESSAGE(st.ok(), (st ? "" : st.error().message));
  }
  // Starts node i's process without joining it to anything.
  void startIdle(int i) {
    Slot& s = slots_[static_cast<size_t>(i)];
    std::filesystem::create_directories(s.dir);
    s.incarnation = world_.born();
    s.host = std::make_unique<SimHost>(world_, net_, rng_, s.address, s.incarnation);
    NodeOptions o;
    o.seed = static_cast<uint64_t>(i + 1) * 7919;
    o.maxStoreBytes = size_t{64} << 20;
    if (tune_) tune_(o);
    auto node = RaftNode::open(*s.host, s.dir, o);
    REQUIRE_MESSAGE(node.ok(), (node ? "" : node.error().message));
    s.node = std::move(node).value();
  }
  // Ends node i's process as a crash would.
  void crash(int i) {
    Slot& s = slots_[static_cast<size_t>(i)];
    world_.kill(s.incarnation);
    s.host->die();
    s.node.reset();
    s.host.reset();
  }
  static constexpr uint64_t kClusterId = 0xc1a5;
  static raft::NodeId raftId(int i) { return static_cast<raft::NodeId>(0x100 + i); }
  std::string key(int i) {
    while (keys_.size() <= static_cast<size_t>(i)) keys_.push_back(curve::generate().publicKey);
    return keys_[static_cast<size_t>(i)];
  }
  SimHost& host(int i) { return *slots_[static_cast<size_t>(i)].host; }

  RaftNode& node(int i) { return *slots_[static_cast<size_t>(i)].node; }
  World& world() { return world_; }
  Network& net() { return net_; }
  nlohmann::json status(int i) {
    nlohmann::json j;
    node(i).status(j);
    return j;
  }

  // Hands a store request to node i as a client on its raftd.sock would.
  std::shared_ptr<Answer> ask(int i, bus::Buffer request, uint32_t timeoutMs = 0) {
    bus::setHeader(request, nextRequest_++, wire::Kind::Request, timeoutMs, 0);
    auto answer = std::make_shared<Answer>();
    net_.dispatch(endpoint(slots_[static_cast<size_t>(i)].address),
                  std::string_view(reinterpret_cast<const char*>(request.data()), request.size()),
                  [answer](std::string_view bytes) {
                    static const bus::Protocol* const kStore[] = {&kStoreProtocol};
                    auto frame = bus::decode(zmq::message_t(bytes.data(), bytes.size()), kStore);
                    if (frame && frame->error() && frame->error()->code() != wire::ErrorCode::None)
                      answer->got.emplace(bus::errorFrom(*frame));
                    else
                      answer->got.emplace(std::move(frame));
                  });
    return answer;
  }

  bool runUntil(const std::function<bool()>& done, Clock::duration limit) {
    auto until = world_.now() + limit;
    while (!done() && world_.now() < until) world_.runFor(5ms);
    return done();
  }

 private:
  struct Slot {
    std::string address;
    std::string dir;
    Incarnation incarnation = 0;
    std::unique_ptr<SimHost> host;
    std::unique_ptr<RaftNode> node;
  };
  Endpoint endpoint(const std::string& address) {
    for (auto& s : slots_)
      if (s.address == address && s.node) return {s.incarnation, s.node.get()};
    return {};
  }

  testing::TempDir tmp_;
  World world_;
  Rng rng_;
  Network net_;
  std::function<void(NodeOptions&)> tune_;
  std::vector<Slot> slots_;
  std::vector<std::string> keys_;
  uint64_t nextRequest_ = 1;
};

bus::Buffer create(const std::string& id, const std::string& data = "x") {
  return txnRequest({{objects::ObjectKind::Config, objects::Operation::Create, id, 0,
                      configObject(id, "name-" + id, data)}});
}

TEST_CASE("writes and reads past the bounds are refused as overloaded, not queued") {
  Nodes n(1, [](NodeOptions& o) {
    o.maxPendingProposals = 2;
    o.maxPendingReads = 2;
  });
  n.start(0);
  REQUIRE(n.runUntil([&] { return n.node(0).role() == raft::Role::Leader; }, 10s));

  // Five writes and five reads arrive before the node's next Ready.
  std::vector<std::shared_ptr<Answer>> writes, reads;
  for (int i = 0; i < 5; ++i) writes.push_back(n.ask(0, create(newId())));
  for (int i = 0; i < 5; ++i) reads.push_back(n.ask(0, getRequest(objects::ObjectKind::Config, newId())));
  REQUIRE(n.runUntil([&] {
    for (auto& a : writes)
      if (!a->got) return false;
    for (auto& a : reads)
      if (!a->got) return false;
    return true;
  }, 5s));
  int written = 0, overloaded = 0;
  for (auto& a : writes) {
    written += a->ok();
    if (a->code() == static_cast<int>(wire::ErrorCode::ResourceExhausted)) {
      ++overloaded;
      CHECK(a->message().find("overloaded") != std::string::npos);
    }
  }
  CHECK(written == 2);
  CHECK(overloaded == 3);
  int refusedReads = 0;
  for (auto& a : reads) refusedReads += a->code() == static_cast<int>(wire::ErrorCode::ResourceExhausted);
  CHECK(refusedReads == 3);  // the other two were answered: NotFound
  CHECK(n.status(0)["refused_overloaded"].get<uint64_t>() == 6);
  CHECK(n.status(0)["pending"]["proposals"].get<uint64_t>() == 0);
}

TEST_CASE("a read the leader never confirms ends at its deadline instead of waiting for ever") {
  // A long election timeout keeps the leader leading (check-quorum) through the test.
  Nodes n(2, [](NodeOptions& o) {
    o.electionTicks = 60;
    o.requestTimeout = 1s;
  });
  n.start(0);
  REQUIRE(n.runUntil([&] { return n.node(0).role() == raft::Role::Leader; }, 20s));
  n.start(1);
  auto caughtUp = [&] {
    auto lead = n.status(0);
    int voters = 0;
    for (auto& m : lead["members"]) voters += m["suffrage"] == "voter";
    return voters == 2 && !n.status(1)["installing_snapshot"].get<bool>() &&
           n.node(1).applied() == n.node(0).applied();
  };
  REQUIRE(n.runUntil(caughtUp, 20s));
  n.world().runFor(1s);
  REQUIRE(caughtUp());

  // The leader stops hearing the follower: ReadIndex requests never reach it, but the
  // follower still hears the leader, so the leader does not change.
  n.net().cut("n2:2378", "n1:2378");
  auto bounded = n.ask(1, getRequest(objects::ObjectKind::Config, newId()), 2000);
  auto unbounded = n.ask(1, getRequest(objects::ObjectKind::Config, newId()));  // requestTimeout
  n.world().runFor(500ms);
  INFO("status: ", n.status(1).dump());
  CHECK_FALSE(bounded->got.has_value());
  CHECK_FALSE(unbounded->got.has_value());
  CHECK(n.status(1)["pending"]["reads"].get<uint64_t>() == 2);
  REQUIRE(n.runUntil([&] { return bounded->got && unbounded->got; }, 3s));
  CHECK(n.node(1).leader() == n.node(0).id());
  CHECK(bounded->code() == static_cast<int>(wire::ErrorCode::DeadlineExceeded));
  CHECK(unbounded->code() == static_cast<int>(wire::ErrorCode::DeadlineExceeded));
  CHECK(n.status(1)["pending"]["reads"].get<uint64_t>() == 0);
  CHECK(n.status(1)["expired_reads"].get<uint64_t>() == 2);
}

TEST_CASE("a received snapshot is installed as background work; reads wait it out with a clear error") {
  Nodes n(2, [](NodeOptions& o) {
    o.snapshotInterval = 20;
    o.keepEntries = 5;
  });
  n.start(0);
  REQUIRE(n.runUntil([&] { return n.node(0).role() == raft::Role::Leader; }, 10s));
  std::vector<std::shared_ptr<Answer>> writes;
  for (int i = 0; i < 60; ++i) {
    writes.push_back(n.ask(0, create(newId(), std::string(2000, 'd'))));
    n.world().runFor(2ms);
  }
  REQUIRE(n.runUntil([&] { return writes.back()->got.has_value(); }, 5s));
  REQUIRE(n.status(0)["snapshot"]["taken"].get<uint64_t>() >= 1);

  // The joiner is behind the compacted log: it gets the snapshot. Sample it every
  // millisecond of virtual time; while it installs, a read there is refused.
  n.start(1);
  bool sawInstalling = false;
  std::shared_ptr<Answer> duringInstall;
  auto installed = [&] {
    if (!sawInstalling && n.status(1)["installing_snapshot"].get<bool>()) {
      sawInstalling = true;
      duringInstall = n.ask(1, getRequest(objects::ObjectKind::Config, newId(), true));
    }
    return n.status(1).value("snapshot", nlohmann::json::object()).value("installed", 0) >= 1;
  };
  auto until = n.world().now() + 20s;
  while (!installed() && n.world().now() < until) n.world().runFor(1ms);
  REQUIRE(installed());
  CHECK(sawInstalling);
  REQUIRE(duringInstall);
  REQUIRE(duringInstall->got.has_value());
  CHECK(duringInstall->code() == static_cast<int>(wire::ErrorCode::Unavailable));
  CHECK(duringInstall->message().find("installing a snapshot") != std::string::npos);
  // And it catches up to the leader afterwards.
  REQUIRE(n.runUntil([&] { return n.node(1).applied() == n.node(0).applied(); }, 10s));
  CHECK(n.status(1)["pending"]["held_messages"].get<uint64_t>() == 0);
}


// A manager's Node for raft id `raftId` (as the dispatcher commits it), with a zero Meta.
std::string managerNode(const std::string& id, raft::NodeId raftId) {
  flatbuffers::FlatBufferBuilder fbb;
  auto spec = objects::CreateNodeSpec(fbb, 0, objects::NodeRole::Manager);
  auto ms = objects::CreateManagerStatus(fbb, raftId, fbb.CreateString("x:2378"));
  objects::Meta meta(0, 0, 0);
  std::vector<uint8_t> key(32, static_cast<uint8_t>(raftId));
  fbb.Finish(objects::CreateNode(fbb, fbb.CreateString(id), &meta, spec, 0, 0, ms, objects::NodeRole::Manager,
                                 fbb.CreateVector(key)));
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

// The manager status the store holds, by raft id: (leader, reachability).
std::map<raft::NodeId, std::pair<bool, objects::Reachability>> managerStatus(Nodes& n, int i) {
  std::map<raft::NodeId, std::pair<bool, objects::Reachability>> out;
  auto a = n.ask(i, listRequest(objects::ObjectKind::Node, true));
  n.runUntil([&] { return a->got.has_value(); }, 1s);
  if (!a->ok()) return out;
  for (auto* o : *(*a->got)->as<storeapi::Envelope>()->body_as_ObjectsReply()->objects()) {
    auto* node = flatbuffers::GetRoot<objects::Node>(o->data()->data());
    if (node->manager_status())
      out[node->manager_status()->raft_id()] = {node->manager_status()->leader(),
                                                node->manager_status()->reachability()};
  }
  return out;
}

TEST_CASE("not in a swarm: store requests are refused; leave forgets everything; init works again") {
  Nodes n(1);
  n.startIdle(0);
  CHECK_FALSE(n.node(0).inCluster());
  CHECK_FALSE(n.host(0).listening());
  CHECK(n.status(0)["in_swarm"] == false);
  auto refused = n.ask(0, create(newId()));
  REQUIRE(n.runUntil([&] { return refused->got.has_value(); }, 1s));
  CHECK(refused->code() == static_cast<int>(wire::ErrorCode::Unavailable));
  CHECK(refused->message() == "this node is not in a swarm; run `shoal swarm init` or `shoal swarm join`");
  // Bad arguments are refused with what was wrong, and leave nothing behind.
  CHECK_FALSE(n.node(0).bootstrap(0, 1, "n1:2378", "n1:2378").ok());
  CHECK_FALSE(n.node(0).bootstrap(1, 1, "n1:2378", "0.0.0.0:2378").ok());
  CHECK_FALSE(n.node(0).joinRaft(1, 1, "n1:2378", "n1:2378", {}).ok());
  CHECK_FALSE(n.node(0).joinRaft(1, 1, "n1:2378", "n1:2378", {{2, "n2:2378", "short"}}).ok());
  CHECK_FALSE(n.node(0).inCluster());

  REQUIRE(n.node(0).bootstrap(Nodes::raftId(0), 77, "n1:2378", "n1:2378").ok());
  CHECK(n.node(0).role() == raft::Role::Leader);  // at once: a single voter
  CHECK(n.host(0).listening());
  CHECK_FALSE(n.node(0).bootstrap(Nodes::raftId(0), 77, "n1:2378", "n1:2378").ok());  // twice
  std::string id = newId();
  auto wrote = n.ask(0, create(id));
  REQUIRE(n.runUntil([&] { return wrote->got.has_value(); }, 5s));
  REQUIRE(wrote->ok());
  CHECK(n.status(0)["raft_cluster_id"] == 77);

  REQUIRE(n.node(0).leave().ok());
  CHECK_FALSE(n.node(0).inCluster());
  CHECK_FALSE(n.host(0).listening());
  CHECK(n.status(0)["raft_id"] == 0);
  n.world().runFor(2s);  // idle: no tick, nothing happens
  auto after = n.ask(0, getRequest(objects::ObjectKind::Config, id));
  REQUIRE(n.runUntil([&] { return after->got.has_value(); }, 1s));
  CHECK(after->code() == static_cast<int>(wire::ErrorCode::Unavailable));

  // A new cluster in the same process, with another identity: the old objects are gone.
  REQUIRE(n.node(0).bootstrap(Nodes::raftId(5), 78, "n1:2378", "n1:2378").ok());
  CHECK(n.node(0).id() == Nodes::raftId(5));
  auto gone = n.ask(0, getRequest(objects::ObjectKind::Config, id));
  REQUIRE(n.runUntil([&] { return gone->got.has_value(); }, 5s));
  CHECK(gone->code() == static_cast<int>(wire::ErrorCode::NotFound));
  // And a restart runs from the new state at once.
  n.crash(0);
  n.start(0);
  REQUIRE(n.node(0).inCluster());
  CHECK(n.node(0).id() == Nodes::raftId(5));
  REQUIRE(n.runUntil([&] { return n.node(0).role() == raft::Role::Leader; }, 5s));
}

TEST_CASE("force new cluster: a survivor of a cluster that lost quorum leads alone with every object") {
  Nodes n(3);
  n.start(0);
  REQUIRE(n.runUntil([&] { return n.node(0).role() == raft::Role::Leader; }, 5s));
  n.start(1);
  n.start(2);
  auto voters = [&](int i) {
    int v = 0;
    auto st = n.status(i);  // kept: the loop reads into it
    for (auto& m : st["members"]) v += m["suffrage"] == "voter";
    return v;
  };
  REQUIRE_MESSAGE(n.runUntil([&] { return voters(0) == 3; }, 30s), n.status(0).dump());
  std::string id = newId();
  auto wrote = n.ask(0, create(id));
  REQUIRE(n.runUntil([&] { return wrote->got.has_value(); }, 5s));
  REQUIRE(wrote->ok());
  REQUIRE(n.runUntil([&] { return n.node(2).applied() == n.node(0).applied(); }, 5s));
  n.crash(0);
  n.crash(1);
  n.world().runFor(3s);
  CHECK(n.node(2).role() != raft::Role::Leader);  // no quorum

  REQUIRE(n.node(2).forceNewCluster().ok());
  CHECK(n.node(2).role() == raft::Role::Leader);
  auto ms = n.node(2).members();
  REQUIRE(ms.size() == 1);
  CHECK(ms[0].id == Nodes::raftId(2));
  CHECK(ms[0].voter);
  auto got = n.ask(2, getRequest(objects::ObjectKind::Config, id));
  REQUIRE(n.runUntil([&] { return got->got.has_value(); }, 5s));
  CHECK_MESSAGE(got->ok(), got->message());
  auto more = n.ask(2, create(newId()));
  REQUIRE(n.runUntil([&] { return more->got.has_value(); }, 5s));
  CHECK_MESSAGE(more->ok(), more->message());
  // It survives a restart as the one-member cluster.
  n.crash(2);
  n.start(2);
  REQUIRE(n.runUntil([&] { return n.node(2).role() == raft::Role::Leader; }, 5s));
  CHECK(n.node(2).members().size() == 1);
}

TEST_CASE("manager status: the leader writes itself Leader, the others Reachable, a dead one Unreachable") {
  Nodes n(3);
  n.start(0);
  REQUIRE(n.runUntil([&] { return n.node(0).role() == raft::Role::Leader; }, 5s));
  n.start(1);
  n.start(2);
  std::vector<ChangeSpec> nodes;
  for (int i = 0; i < 3; ++i) {
    std::string id = newId();
    nodes.push_back({objects::ObjectKind::Node, objects::Operation::Create, id, 0, managerNode(id, Nodes::raftId(i))});
  }
  auto wrote = n.ask(0, txnRequest(nodes));
  REQUIRE(n.runUntil([&] { return wrote->got.has_value(); }, 5s));
  REQUIRE_MESSAGE(wrote->ok(), wrote->message());
  auto is = [&](int on, raft::NodeId leader, std::set<raft::NodeId> unreachable) {
    auto m = managerStatus(n, on);
    if (m.size() != 3) return false;
    for (auto& [id, st] : m)
      if (st.first != (id == leader) ||
          st.second != (unreachable.count(id) ? objects::Reachability::Unreachable : objects::Reachability::Reachable))
        return false;
    return true;
  };
  REQUIRE(n.runUntil([&] { return is(0, Nodes::raftId(0), {}); }, 5s));
  for (auto& m : n.node(0).members()) CHECK(m.reachable);
  uint64_t writes = n.status(0)["manager_status_writes"].get<uint64_t>();
  CHECK(writes >= 1);
  n.world().runFor(3s);  // nothing changed: nothing written
  CHECK(n.status(0)["manager_status_writes"].get<uint64_t>() == writes);

  // A follower dies: after two election timeouts (2 s here) the leader writes it Unreachable.
  n.crash(2);
  n.world().runFor(1500ms);
  CHECK(is(0, Nodes::raftId(0), {}));
  REQUIRE(n.runUntil([&] { return is(0, Nodes::raftId(0), {Nodes::raftId(2)}); }, 2s));
  for (auto& m : n.node(0).members()) CHECK(m.reachable == (m.id != Nodes::raftId(2)));
  // The follower comes back: Reachable again.
  n.start(2);
  REQUIRE(n.runUntil([&] { return is(0, Nodes::raftId(0), {}); }, 5s));
}

}  // namespace
}  // namespace shoal::raftd::sim
