#pragma once
// raftd members as processes on loopback, for the cluster tests: a member started to bootstrap,
// to join or from its state, SIGKILLed, asked for its Status; a cluster of them under one
// temporary directory with its leader and voters. Failures are doctest REQUIREs.

#include <doctest/doctest.h>

#include <signal.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/bus.h"
#include "common/loop.h"
#include "common/protocols.h"
#include "tests/support/daemons.h"
#include "tests/support/process.h"
#include "tests/support/tempdir.h"

namespace shoal::testing {

inline std::string raftdPath() { return daemonPath("raftd"); }

struct RaftMember {
  std::string name, state, run, addr, log;
  std::vector<std::string> runUnder;  // when set, raftd runs under this program (e.g. setpriv)
  std::vector<std::string> flags;     // raftd flags of every start
  std::unique_ptr<Process> proc;

  // how: "bootstrap" a new cluster, "join=<addr>" one through that member, "" start from the
  // state (a restart).
  void start(const std::string& how = "") {
    std::vector<std::string> argv = runUnder;
    argv.insert(argv.end(), {raftdPath(), "--foreground", "--state-dir", state, "--run-dir", run,
                             "--listen-addr", addr, "--log-file", log});
    argv.insert(argv.end(), flags.begin(), flags.end());
    if (how == "bootstrap") argv.push_back("--bootstrap");
    if (how.starts_with("join=")) {
      argv.push_back("--join");
      argv.push_back(how.substr(5));
    }
    proc = std::make_unique<Process>(argv);
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
  uint64_t nodeId() const { return std::stoull(status().value("node_id", "0"), nullptr, 16); }
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
    m.state = dir / (m.name + "/state");
    m.run = dir / (m.name + "/run");
    m.addr = "127.0.0.1:" + std::to_string(freePort());
    m.log = dir / (m.name + ".log");
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

// Starts three members (one bootstraps, two join) and returns the leader's index.
inline int startThree(RaftCluster& c) {
  auto& a = c.add();
  auto& b = c.add();
  auto& d = c.add();
  a.start("bootstrap");
  REQUIRE(waitFor([&] { return a.leads(); }, std::chrono::seconds(10)));
  b.start("join=" + a.addr);
  d.start("join=" + a.addr);
  REQUIRE_MESSAGE(waitFor([&] { return c.members[0].voters() == 3; }, std::chrono::seconds(15)), c.logs());
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
