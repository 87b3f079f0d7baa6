// raftd alone as a process: a fresh raftd idles until swarm init, then runs at once after a
// restart; at its limits a store that fills up refuses writes with a clear error and goes on
// serving reads (issue 7, bug 4: a full map used to stop raftd); its peer port is CURVE with
// manager keys only and takes forwarded writes only.
#include <doctest/doctest.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/bus.h"
#include "common/ids.h"
#include "common/protocols.h"
#include "services/raftd/store_client.h"
#include "tests/support/daemons.h"
#include "tests/support/process.h"
#include "tests/support/raft_members.h"
#include "tests/support/tempdir.h"

namespace shoal::raftd {
namespace {

using namespace std::chrono_literals;
using testing::Process;
using testing::daemonPath;
using testing::freePort;
using testing::waitFor;

nlohmann::json storeStatus(bus::SyncClient& c) {
  auto r = c.call(storeStatusRequest(), 5s);
  if (!r) {
    MESSAGE("Status: ", r.error().message);
    return nlohmann::json::object();
  }
  return nlohmann::json::parse(r->as<storeapi::Envelope>()->body_as_StatusReply()->json()->str());
}

// One raftd under a temporary directory.
struct One {
  testing::TempDir tmp;
  testing::RaftMember m;
  explicit One(std::vector<std::string> flags = {}) {
    m.name = "n1";
    m.place(tmp.path());
    m.flags = std::move(flags);
  }
  // Started and initialized: the leader of its own one-member cluster.
  void startLeading() {
    m.start();
    m.init();
    REQUIRE_MESSAGE(waitFor([&] { return m.leads(); }, 10s), log());
  }
  std::string log() const {
    std::ifstream in(m.log);
    return std::string((std::istreambuf_iterator<char>(in)), {});
  }
  ~One() {
    if (m.proc) {
      m.proc->signal(SIGTERM);
      m.proc->wait(3s);
    }
  }
};

// Whether something accepts TCP connections at host:port.
bool listening(const std::string& addr) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(std::stoi(addr.substr(addr.find(':') + 1))));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

TEST_CASE("a fresh raftd idles until swarm init, and after a restart runs at once") {
  One one;
  auto& m = one.m;
  m.start();
  auto st = m.status();
  CHECK(st.value("in_swarm", true) == false);
  CHECK(st.value("raft_id", uint64_t{1}) == 0);
  CHECK(st.value("role", "x") == "");
  CHECK(st.find("peer_bus") == st.end());
  CHECK_FALSE(listening(m.addr));
  // Store requests say what to do.
  for (auto* request : {"get", "txn"}) {
    std::string id = newId();
    auto r = std::string(request) == "get"
                 ? m.store(getRequest(objects::ObjectKind::Config, id))
                 : m.store(txnRequest({{objects::ObjectKind::Config, objects::Operation::Create, id, 0,
                                        configObject(id, "x", "x")}}));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == static_cast<int>(wire::ErrorCode::Unavailable));
    CHECK(r.error().message.find("not in a swarm; run `shoal swarm init` or `shoal swarm join`") !=
          std::string::npos);
  }
  // Idle means idle: nothing in the log but the start.
  std::this_thread::sleep_for(500ms);
  CHECK(m.status().value("in_swarm", true) == false);

  m.init();
  REQUIRE(waitFor([&] { return m.leads(); }, 10s));
  st = m.status();
  CHECK(st.value("in_swarm", false));
  CHECK(st.value("raft_id", uint64_t{0}) != 0);
  CHECK(st.value("raft_cluster_id", uint64_t{0}) != 0);
  CHECK(st.value("address", "") == m.addr);
  CHECK(listening(m.addr));
  uint64_t id = st["raft_id"].get<uint64_t>();

  // A restart binds and runs from the state: same identity, leader again, no init.
  m.proc->signal(SIGTERM);
  REQUIRE(m.proc->wait(5s));
  m.proc.reset();
  m.start();
  REQUIRE(waitFor([&] { return m.leads(); }, 10s));
  CHECK(m.raftId() == id);
  CHECK(listening(m.addr));
  // A second init is refused.
  flatbuffers::FlatBufferBuilder fbb;
  std::string a = "127.0.0.1:" + std::to_string(m.port);
  auto body = swarmapi::CreateInitRequestDirect(fbb, a.c_str(), a.c_str());
  auto again = testing::callOn<swarmapi::Envelope>(
      m.socket(), bus::message<swarmapi::Envelope>(fbb, swarmapi::Body::InitRequest, body.Union()));
  CHECK_FALSE(again.ok());
}

TEST_CASE("a full store refuses writes with a clear error, and raftd goes on serving reads") {
  One one({"--max-store-size", "16"});
  one.startLeading();
  auto& raftd = *one.m.proc;
  bus::SyncClient client(kStoreProtocol);
  REQUIRE(client.connect(one.m.socket()));

  // 1 MiB objects: the 16 MiB map holds a handful (each is in the log and in the table).
  std::string big(1 << 20, 'x');
  std::string first;
  std::optional<Error> refused;
  int written = 0;
  for (int i = 0; i < 40 && !refused; ++i) {
    std::string id = newId();
    auto r = client.call(txnRequest({{objects::ObjectKind::Config, objects::Operation::Create, id, 0,
                                      configObject(id, "big-" + std::to_string(i), big)}}),
                         10s);
    if (r) {
      if (first.empty()) first = id;
      ++written;
    } else {
      refused = r.error();
    }
  }
  INFO("written: ", written);
  REQUIRE(refused.has_value());
  CHECK(refused->code == static_cast<int>(wire::ErrorCode::ResourceExhausted));
  CHECK(refused->message.find("nearly full") != std::string::npos);
  CHECK(refused->message.find("--max-store-size") != std::string::npos);
  CHECK(written >= 2);

  // Still running, still reading (linearizable and local), and it says why it refuses.
  REQUIRE(raftd.running());
  REQUIRE_FALSE(first.empty());
  auto got = client.call(getRequest(objects::ObjectKind::Config, first), 5s);
  REQUIRE_MESSAGE(got.ok(), (got ? "" : got.error().message));
  auto local = client.call(getRequest(objects::ObjectKind::Config, first, true), 5s);
  CHECK(local.ok());
  auto st = storeStatus(client);
  CHECK(st.value("store_nearly_full", false));
  // Smaller writes fill what is left, then are refused the same way, never by stopping.
  std::optional<Error> refusedSmall;
  std::string mid(64 << 10, 'y');
  for (int i = 0; i < 200 && !refusedSmall; ++i) {
    std::string id = newId();
    auto r = client.call(txnRequest({{objects::ObjectKind::Config, objects::Operation::Create, id, 0,
                                      configObject(id, "mid-" + std::to_string(i), mid)}}),
                         5s);
    if (!r) refusedSmall = r.error();
  }
  REQUIRE(refusedSmall.has_value());
  CHECK(refusedSmall->message.find("nearly full") != std::string::npos);
  CHECK(raftd.running());
}

TEST_CASE("the peer port: CURVE with manager keys only, forwarded writes only") {
  One one;
  one.startLeading();
  auto& m = one.m;
  auto zap = [&](const char* what) { return m.status()["peer_zap"][what].get<uint64_t>(); };

  // A key the store does not name as a manager's: refused at the handshake, nothing answers.
  uint64_t refused = zap("refused");
  {
    bus::SyncClient stranger(kStoreProtocol);
    auto key = curve::generate();
    stranger.setCurve({m.publicKey(), key.publicKey, key.secretKey});
    REQUIRE(stranger.connect("tcp://" + m.addr));
    auto r = stranger.call(storeStatusRequest(), 1s);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == static_cast<int>(wire::ErrorCode::DeadlineExceeded));
  }
  CHECK(zap("refused") > refused);
  // Plain TCP without CURVE: no answer either.
  {
    bus::SyncClient plain(kStoreProtocol);
    REQUIRE(plain.connect("tcp://" + m.addr));
    auto r = plain.call(storeStatusRequest(), 1s);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == static_cast<int>(wire::ErrorCode::DeadlineExceeded));
  }

  // The node's own key is a manager's (its Node is in the store): admitted.
  auto dir = node::NodeDir::open(m.nodeDir);
  REQUIRE(dir.ok());
  bus::SyncClient remote(kStoreProtocol);
  remote.setCurve({m.publicKey(), dir->key().publicKey, dir->key().secretKey});
  REQUIRE(remote.connect("tcp://" + m.addr));
  std::vector<bus::Buffer> requests;
  requests.push_back(getRequest(objects::ObjectKind::Config, newId()));
  requests.push_back(listRequest(objects::ObjectKind::Config));
  requests.push_back(storeStatusRequest());
  for (auto& request : requests) {
    auto r = remote.call(std::move(request), 5s);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == static_cast<int>(wire::ErrorCode::Unimplemented));
    CHECK(r.error().message.find("raftd.sock") != std::string::npos);
  }
  // A write, as a follower forwards it, is served.
  std::string id = newId();
  auto w = remote.call(txnRequest({{objects::ObjectKind::Config, objects::Operation::Create, id, 0,
                                    configObject(id, "forwarded", "x")}}),
                       5s);
  CHECK_MESSAGE(w.ok(), (w ? "" : w.error().message));
  CHECK(zap("admitted") >= 1);
}

}  // namespace
}  // namespace shoal::raftd
