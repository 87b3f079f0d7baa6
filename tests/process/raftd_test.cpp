// raftd alone as a process, at its limits: a store that fills up refuses writes with a clear
// error and goes on serving reads (issue 7, bug 4: a full map used to stop raftd).
#include <doctest/doctest.h>

#include <chrono>
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
#include "tests/support/tempdir.h"

namespace shoal::raftd {
namespace {

using namespace std::chrono_literals;
using testing::Process;
using testing::daemonPath;
using testing::freePort;

nlohmann::json storeStatus(bus::SyncClient& c) {
  auto r = c.call(storeStatusRequest(), 5s);
  if (!r) {
    MESSAGE("Status: ", r.error().message);
    return nlohmann::json::object();
  }
  return nlohmann::json::parse(r->as<storeapi::Envelope>()->body_as_StatusReply()->json()->str());
}

TEST_CASE("a full store refuses writes with a clear error, and raftd goes on serving reads") {
  testing::TempDir tmp;
  std::string run = tmp / "run";
  Process raftd({daemonPath("raftd"), "--foreground", "--state-dir", tmp / "state", "--run-dir", run,
                 "--listen-addr", "127.0.0.1:" + std::to_string(freePort()), "--bootstrap",
                 "--max-store-size", "16", "--log-file", tmp / "raftd.log"});
  bus::SyncClient client(kStoreProtocol);
  REQUIRE(client.connect("ipc://" + run + "/raftd.sock"));
  bool leading = false;
  for (int i = 0; i < 100 && !leading; ++i) {
    leading = storeStatus(client).value("role", "") == "Leader";
    if (!leading) std::this_thread::sleep_for(100ms);
  }
  REQUIRE(leading);

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

TEST_CASE("the peer port takes forwarded writes only: reads and Status belong to raftd.sock") {
  testing::TempDir tmp;
  std::string run = tmp / "run";
  std::string peer = "127.0.0.1:" + std::to_string(freePort());
  Process raftd({daemonPath("raftd"), "--foreground", "--state-dir", tmp / "state", "--run-dir", run,
                 "--listen-addr", peer, "--bootstrap", "--log-file", tmp / "raftd.log"});
  bus::SyncClient local(kStoreProtocol);
  REQUIRE(local.connect("ipc://" + run + "/raftd.sock"));
  bool leading = false;
  for (int i = 0; i < 100 && !leading; ++i) {
    leading = storeStatus(local).value("role", "") == "Leader";
    if (!leading) std::this_thread::sleep_for(100ms);
  }
  REQUIRE(leading);

  bus::SyncClient remote(kStoreProtocol);
  REQUIRE(remote.connect("tcp://" + peer));
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
}

}  // namespace
}  // namespace shoal::raftd
