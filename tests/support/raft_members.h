#pragma once
// raftd members as processes on loopback, for the cluster tests: a member started (idle, or
// from its state), put in a cluster through raftd.sock as `swarm init` and a manager join do
// (docs/cluster.md), SIGKILLed, asked for its Status; a cluster of them under one temporary
// directory with its leader and voters. Failures are doctest REQUIREs.
//
// Forming a cluster: InitRequest (swarm.fbs) on the first member; then for each other
// member, on the first: a manager Node with the member's key (read from ITS node dir) and
// raft id, and AddMemberRequest; then node.json in the member's node dir (agentd's part) and
// JoinRaftRequest to the member with the first as its peer.

#include <doctest/doctest.h>

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/bus.h"
#include "common/ids.h"
#include "common/identity.h"
#include "common/loop.h"
#include "common/node_dir.h"
#include "common/protocols.h"
#include "common/store_client.h"
#include "tests/support/daemons.h"
#include "tests/support/process.h"
#include "tests/support/tempdir.h"

namespace shoal::testing {

inline std::string raftdPath() { return daemonPath("raftd"); }

// Whether a TCP port on 127.0.0.1 can be bound now.
inline bool loopbackPortFree(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

// A port P whose P+1 is free now: the member's dispatcher port, whose raft peer port is P+1
// (docs/cluster.md "Ports"). Drawn below the kernel's ephemeral range (ip_local_port_range),
// because raftd binds P+1 only at init or JoinRaft, long after this choice: meanwhile every
// outgoing connection of the test's processes takes an ephemeral port, and one of those
// would have taken a port that freePort() handed out.
inline uint16_t freeRaftPort() {
  int low = 32768;
  if (std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range"); range) range >> low;
  static std::mt19937 rng(std::random_device{}());
  int top = std::max(low - 2, 10002);
  std::uniform_int_distribution<int> pick(10000, top);
  for (int i = 0; i < 200; ++i) {
    int p = pick(rng);
    if (loopbackPortFree(p + 1)) return static_cast<uint16_t>(p);
  }
  FAIL("no free port between 10000 and " << top);
  return 0;
}

// One call of a protocol on a socket; the reply, or the error with its message.
template <class Env>
Result<bus::Frame> callOn(const std::string& socket, bus::Buffer request,
                          std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  bus::SyncClient c(bus::protocolOf<Env>());
  if (auto st = c.connect(socket); !st) return st.error();
  auto r = c.call(std::move(request), timeout);
  if (!r) return r.error();
  if (r->error() && r->error()->code() != wire::ErrorCode::None) return bus::errorFrom(*r);
  return r;
}

// A manager's Node object as the dispatcher commits it for a joining manager (zero Meta).
inline std::string managerNodeObject(const std::string& id, uint64_t raftId, const std::string& raftAddr,
                                     const std::string& keyZ85) {
  auto key = identity::curveKeyFromZ85(keyZ85);
  REQUIRE_MESSAGE(key.ok(), "node key " << keyZ85 << ": " << (key ? "" : key.error().message));
  flatbuffers::FlatBufferBuilder fbb;
  auto spec = objects::CreateNodeSpec(fbb, objects::CreateAnnotations(fbb, fbb.CreateString("")),
                                      objects::NodeRole::Manager, objects::NodeMembership::Accepted,
                                      objects::NodeAvailability::Active);
  auto desc = objects::CreateNodeDescription(fbb, fbb.CreateString("host-" + id.substr(0, 6)));
  auto status = objects::CreateNodeStatus(fbb, objects::NodeState::Ready, 0, fbb.CreateString("127.0.0.1"));
  auto ms = objects::CreateManagerStatus(fbb, raftId, fbb.CreateString(raftAddr), false,
                                         objects::Reachability::Unknown);
  objects::Meta meta(0, 0, 0);
  auto node = objects::CreateNode(fbb, fbb.CreateString(id), &meta, spec, desc, status, ms,
                                  objects::NodeRole::Manager, fbb.CreateVector(key->data(), key->size()));
  fbb.Finish(node);
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

struct RaftMember {
  std::string name, state, run, nodeDir, addr, log;
  uint16_t port = 0;                  // the dispatcher port P; addr is 127.0.0.1:P+1
  std::vector<std::string> runUnder;  // when set, raftd runs under this program (e.g. setpriv)
  std::vector<std::string> flags;     // raftd flags of every start
  std::unique_ptr<Process> proc;

  // Places the member's dirs under root and picks its ports.
  void place(const std::filesystem::path& root) {
    state = root / (name + "/state");
    run = root / (name + "/run");
    nodeDir = root / (name + "/node");
    log = root / (name + ".log");
    port = freeRaftPort();
    addr = "127.0.0.1:" + std::to_string(node::raftPort(port));
  }
  // Starts raftd: idle when it has no raft state, else it binds and runs from its state.
  void start() {
    std::vector<std::string> argv = runUnder;
    argv.insert(argv.end(), {raftdPath(), "--foreground", "--state-dir", state, "--run-dir", run,
                             "--node-dir", nodeDir, "--log-file", log});
    argv.insert(argv.end(), flags.begin(), flags.end());
    proc = std::make_unique<Process>(argv);
    REQUIRE_MESSAGE(waitFor([&] { return !status().empty(); }, std::chrono::seconds(20)),
                    name << "'s raftd does not answer on " << socket());
  }
  // The node key (node.key in its node dir; made here if raftd has not made it yet).
  std::string publicKey() const {
    auto dir = node::NodeDir::open(nodeDir);
    REQUIRE_MESSAGE(dir.ok(), (dir ? "" : dir.error().message));
    return dir->key().publicKey;
  }
  uint64_t raftId() const { return status().value("raft_id", uint64_t{0}); }
  uint64_t raftClusterId() const { return status().value("raft_cluster_id", uint64_t{0}); }
  // swarm init on this member (InitRequest on raftd.sock): a one-member cluster it leads.
  void init() {
    flatbuffers::FlatBufferBuilder fbb;
    std::string a = "127.0.0.1:" + std::to_string(port);
    auto body = swarmapi::CreateInitRequestDirect(fbb, a.c_str(), a.c_str());
    auto r = callOn<swarmapi::Envelope>(socket(), bus::message<swarmapi::Envelope>(fbb, swarmapi::Body::InitRequest, body.Union()),
                                        std::chrono::seconds(20));
    REQUIRE_MESSAGE(r.ok(), name << ": swarm init: " << (r ? "" : r.error().message));
  }
  // A store request on this member's raftd.sock.
  Result<bus::Frame> store(bus::Buffer request) const {
    return callOn<storeapi::Envelope>(socket(), std::move(request));
  }
  // Adds `joiner` to the cluster this member leads, as a manager join does (see the top).
  void addManager(RaftMember& joiner, uint64_t joinerRaftId) {
    uint64_t cluster = raftClusterId();
    REQUIRE(cluster != 0);
    std::string nodeId = newId();
    std::string key = joiner.publicKey();
    auto node = managerNodeObject(nodeId, joinerRaftId, joiner.addr, key);
    auto txn = store(store::txnRequest({{objects::ObjectKind::Node, objects::Operation::Create, nodeId, 0, node}}));
    REQUIRE_MESSAGE(txn.ok(), "the Node of " << joiner.name << ": " << (txn ? "" : txn.error().message));
    auto added = store(store::addMemberRequest(joinerRaftId, joiner.addr));
    REQUIRE_MESSAGE(added.ok(), "AddMember " << joiner.name << ": " << (added ? "" : added.error().message));
    // agentd's part: node.json names it a manager of this raft cluster.
    node::NodeConfig config;
    config.nodeId = nodeId;
    config.clusterId = newId();
    config.manager = true;
    config.advertiseHost = "127.0.0.1";
    config.listenHost = "127.0.0.1";
    config.port = joiner.port;
    config.raft = node::RaftIdentity{joinerRaftId, cluster};
    auto dir = node::NodeDir::open(joiner.nodeDir);
    REQUIRE(dir.ok());
    REQUIRE(dir->save(config).ok());
    flatbuffers::FlatBufferBuilder fbb;
    std::vector<flatbuffers::Offset<swarmapi::RaftPeer>> peers{
        swarmapi::CreateRaftPeerDirect(fbb, raftId(), addr.c_str(), publicKey().c_str())};
    auto body = swarmapi::CreateJoinRaftRequestDirect(fbb, joinerRaftId, cluster, joiner.addr.c_str(),
                                                      joiner.addr.c_str(), &peers);
    auto r = callOn<swarmapi::Envelope>(joiner.socket(),
                                        bus::message<swarmapi::Envelope>(fbb, swarmapi::Body::JoinRaftRequest, body.Union()));
    REQUIRE_MESSAGE(r.ok(), joiner.name << ": JoinRaft: " << (r ? "" : r.error().message));
  }
  void kill9(std::chrono::milliseconds reapWithin = std::chrono::seconds(5)) {
    proc->signal(SIGKILL);
    REQUIRE(proc->wait(reapWithin));
    proc.reset();
  }
  // raftd.sock in its run dir: the store and the control protocol (store::endpointIn).
  std::string socket() const { return "ipc://" + run + "/raftd.sock"; }
  // The daemon's Status, or an empty object when it does not answer.
  nlohmann::json status() const {
    if (!proc) return nlohmann::json::object();
    bus::SyncClient c(kControlProtocol);
    if (!c.connect(socket())) return nlohmann::json::object();
    flatbuffers::FlatBufferBuilder fbb;
    auto body = control::CreateStatusRequest(fbb);
    auto r = c.call(bus::message<control::Envelope>(fbb, control::Body::StatusRequest, body.Union()),
                    std::chrono::seconds(1));
    if (!r) return nlohmann::json::object();
    return nlohmann::json::parse(r->as<control::Envelope>()->body_as_StatusReply()->json()->str());
  }
  bool leads() const { return status().value("role", "") == "Leader"; }
  uint64_t nodeId() const { return raftId(); }
  // The voters in the configuration this member knows.
  size_t voters() const {
    size_t n = 0;
    for (auto& x : status().value("members", nlohmann::json::array())) n += x.value("suffrage", "") == "voter";
    return n;
  }
};

// The last `tail` bytes of each member's log, for a failure message.
template <class Member>
std::string logTails(const std::vector<Member>& members, size_t tail = 4000) {
  std::string out;
  for (auto& m : members) {
    std::ifstream in(m.log);
    std::string all((std::istreambuf_iterator<char>(in)), {});
    out += "--- " + m.name + "\n" + (all.size() > tail ? all.substr(all.size() - tail) : all);
  }
  return out;
}

// Members n1, n2, ... on loopback ports, their state, run dir and log under one temporary
// directory. Those still running at the end get SIGTERM, then SIGKILL from their Process.
struct RaftCluster {
  static constexpr size_t kMaxMembers = 8;
  TempDir dir;
  std::vector<RaftMember> members;
  std::vector<std::string> flags;  // raftd flags of every member

  explicit RaftCluster(std::vector<std::string> memberFlags = {}) : flags(std::move(memberFlags)) {
    members.reserve(kMaxMembers);  // add() hands out references that must stay valid
  }
  ~RaftCluster() {
    for (auto& m : members)
      if (m.proc) {
        m.proc->signal(SIGTERM);
        m.proc->wait(std::chrono::seconds(3));
      }
  }
  RaftMember& add() {
    REQUIRE(members.size() < kMaxMembers);
    RaftMember m;
    m.name = "n" + std::to_string(members.size() + 1);
    m.place(dir.path());
    m.flags = flags;
    members.push_back(std::move(m));
    return members.back();
  }
  std::string logs() const { return logTails(members); }
  // The index of a running member that says it leads, -1 if none does.
  int leader() const {
    for (size_t i = 0; i < members.size(); ++i)
      if (members[i].proc && members[i].leads()) return static_cast<int>(i);
    return -1;
  }
};

// A raft id for a test member: random, never 0.
inline uint64_t newRaftId() {
  static std::mt19937_64 rng(std::random_device{}());
  uint64_t v = 0;
  while (v == 0) v = rng();
  return v;
}

// Forms a cluster of members[0..n) (running, idle): swarm init on the first, the others
// added as managers; returns once the first counts n voters.
template <class Member, class Logs>
void formCluster(std::vector<Member>& members, size_t n, Logs logs) {
  auto& a = members[0];
  a.init();
  REQUIRE_MESSAGE(waitFor([&] { return a.leads(); }, std::chrono::seconds(10)), logs());
  for (size_t i = 1; i < n; ++i) a.addManager(members[i], newRaftId());
  REQUIRE_MESSAGE(waitFor([&] { return a.voters() == n; }, std::chrono::seconds(30)), logs());
}

// Starts three members (one inits, two join) and returns the leader's index.
inline int startThree(RaftCluster& c) {
  c.add();
  c.add();
  c.add();
  for (auto& m : c.members) m.start();
  formCluster(c.members, 3, [&] { return c.logs(); });
  int lead = c.leader();
  REQUIRE(lead >= 0);
  return lead;
}

// Runs loop until done() holds or limit passed; whether it held.
template <class F>
bool spin(Loop& loop, F done, std::chrono::milliseconds limit) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (!done() && std::chrono::steady_clock::now() < end) loop.runOnce(std::chrono::milliseconds(10));
  return done();
}

}  // namespace shoal::testing
