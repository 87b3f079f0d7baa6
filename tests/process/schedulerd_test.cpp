// schedulerd as a process beside real raftd members (docs/services.md): idle outside a swarm;
// active once its raftd leads (swarm init, no Reload needed); a replicated Service written
// straight into the store gets its 3 tasks ASSIGNED to the node, a scale to 1 shuts 2 down,
// and a schedulerd stopped with SIGTERM and started again creates no second task for a slot.
// On a 3-member raft the followers' schedulerd idles and says why, the leader's acts; when the
// leader's raftd dies its schedulerd stops and a survivor's takes over; SIGTERM stops them all
// cleanly. With dispatcherd and a fake-executor agentd on the node, the tasks run, a failed one
// is replaced after its restart delay, and a scale down stops the others, while dispatcherd
// writes the tasks' status beside schedulerd.
#include <doctest/doctest.h>

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/bus.h"
#include "common/ids.h"
#include "common/node_dir.h"
#include "common/object_codec.h"
#include "common/protocols.h"
#include "common/store_client.h"
#include "tests/support/daemons.h"
#include "tests/support/tempdir.h"
#include "tests/support/node_daemons.h"
#include "tests/support/process.h"
#include "tests/support/raft_members.h"

namespace shoal {
namespace {

using namespace std::chrono_literals;
using objects::ObjectKind;
using objects::TaskState;
using testing::Process;
using testing::waitFor;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// schedulerd on a raft member's run and node dirs.
struct Schedulerd {
  std::string run, log, state;
  std::unique_ptr<Process> proc;

  explicit Schedulerd(const testing::RaftMember& m)
      : run(m.run), log(m.log + ".schedulerd"), state(m.state + "-schedulerd") {}
  Schedulerd(std::string runDir, std::string logFile, std::string stateDir)
      : run(std::move(runDir)), log(std::move(logFile)), state(std::move(stateDir)) {}
  ~Schedulerd() {
    if (proc) {
      proc->signal(SIGTERM);
      proc->wait(10s);
    }
  }

  void start(const std::string& nodeDir) {
    proc = std::make_unique<Process>(std::vector<std::string>{
        testing::daemonPath("schedulerd"), "--foreground", "--state-dir", state, "--run-dir", run,
        "--node-dir", nodeDir, "--log-file", log});
    REQUIRE_MESSAGE(waitFor([&] { return !status().empty(); }, 20s),
                    "schedulerd does not answer on " << socket() << ": " << logs());
  }
  // SIGTERM: it must end, with exit code 0, within 10 s.
  void stop() {
    REQUIRE(proc);
    proc->signal(SIGTERM);
    auto st = proc->wait(10s);
    REQUIRE_MESSAGE(st.has_value(), "schedulerd did not stop on SIGTERM within 10 s: " << logs());
    CHECK_MESSAGE((st->exited() && st->code == 0),
                  "schedulerd ended with code " << st->code << ", signal " << st->signal << ": " << logs());
    proc.reset();
  }
  std::string socket() const { return "ipc://" + run + "/schedulerd.sock"; }
  std::string logs() const {
    return "\n--- schedulerd log\n" + testing::readFile(log) + (proc ? proc->err() : std::string());
  }
  // Status' "scheduler" part; empty when schedulerd does not answer.
  nlohmann::json status() const {
    if (!proc) return nlohmann::json::object();
    flatbuffers::FlatBufferBuilder fbb;
    auto body = control::CreateStatusRequest(fbb);
    auto r = testing::callOn<control::Envelope>(
        socket(), bus::message<control::Envelope>(fbb, control::Body::StatusRequest, body.Union()), 2s);
    if (!r) return nlohmann::json::object();
    auto j = nlohmann::json::parse(r->as<control::Envelope>()->body_as_StatusReply()->json()->str());
    return j.value("scheduler", nlohmann::json::object());
  }
  bool active() const {
    auto s = status();
    return s.value("active", false) && s.value("view", nlohmann::json::object()).value("loaded", false);
  }
};

std::string nodeIdOf(const testing::RaftMember& m) {
  auto dir = node::NodeDir::open(m.nodeDir);
  REQUIRE(dir.ok());
  auto config = dir->load();
  REQUIRE_MESSAGE((config.ok() && config->has_value()), m.name << " has no node.json after swarm init");
  return (**config).nodeId;
}

std::unique_ptr<objects::ServiceT> replicatedService(const std::string& name, uint64_t replicas) {
  auto s = std::make_unique<objects::ServiceT>();
  s->id = newId();
  s->spec = std::make_unique<objects::ServiceSpecT>();
  s->spec->annotations = std::make_unique<objects::AnnotationsT>();
  s->spec->annotations->name = name;
  s->spec->task = std::make_unique<objects::TaskSpecT>();
  s->spec->task->container = std::make_unique<objects::ContainerSpecT>();
  s->spec->task->container->image = "busybox:latest";
  s->spec->mode = std::make_unique<objects::ServiceModeT>();
  s->spec->mode->kind = objects::ServiceModeKind::Replicated;
  s->spec->mode->replicas = replicas;
  s->spec_version = 1;
  return s;
}

// As the service API's update does for a scale: replicas changed, spec_version bumped.
void scale(store::SyncClient& store, const std::string& serviceId, uint64_t replicas) {
  auto stored = store.get(ObjectKind::Service, serviceId);
  REQUIRE(stored.ok());
  auto svc = objects_codec::unpack<objects::Service>(stored->data, "service");
  REQUIRE(svc.ok());
  uint64_t version = objects_codec::versionOf((*svc)->meta);
  (*svc)->spec->mode->replicas = replicas;
  (*svc)->spec_version += 1;
  auto scaled = store.txn({{ObjectKind::Service, objects::Operation::Update, serviceId, version,
                            objects_codec::pack<objects::Service>(**svc)}});
  REQUIRE_MESSAGE(scaled.ok(), "scaling: " << (scaled ? "" : scaled.error().message));
}

// Why the last tasksOf() found nothing, for failure messages.
std::string lastListError;

// The service's tasks; none when they cannot be listed (a busy machine can make raftd miss a
// read's deadline). It asserts nothing: waits retry it, and failure messages call it.
std::vector<std::unique_ptr<objects::TaskT>> tasksOf(store::SyncClient& store, const std::string& serviceId) {
  store::ListFilter filter;
  filter.serviceId = serviceId;
  auto listed = store.list(ObjectKind::Task, filter);
  std::vector<std::unique_ptr<objects::TaskT>> out;
  lastListError = listed ? "" : "listing the tasks failed: " + listed.error().message;
  if (!listed) return out;
  for (auto& o : listed->objects) {
    auto t = objects_codec::unpack<objects::Task>(o, "task");
    if (!t) {
      lastListError = t.error().message;
      return {};
    }
    out.push_back(std::move(t).value());
  }
  return out;
}

TaskState stateOf(const objects::TaskT& t) { return t.status ? t.status->state : TaskState::New; }
bool live(const objects::TaskT& t) { return t.desired_state <= TaskState::Running; }

// One line per task, for failure messages.
std::string describe(const std::vector<std::unique_ptr<objects::TaskT>>& tasks) {
  std::string out = lastListError;
  for (auto& t : tasks)
    out += "\n  " + t->id + " slot " + std::to_string(t->slot) + " node " + t->node_id + " state " +
           objects::EnumNameTaskState(stateOf(*t)) + " desired " + objects::EnumNameTaskState(t->desired_state) +
           (t->status && !t->status->err.empty() ? " err " + t->status->err : "");
  return out;
}

// At most one live task per slot, and `want` live in all.
bool oneLivePerSlot(const std::vector<std::unique_ptr<objects::TaskT>>& tasks, size_t want) {
  std::map<uint64_t, int> bySlot;
  size_t n = 0;
  for (auto& t : tasks)
    if (live(*t)) {
      ++n;
      if (++bySlot[t->slot] > 1) return false;
    }
  return n == want;
}

TEST_CASE("schedulerd on one manager: idle outside a swarm, then 3 replicas assigned, a scale "
          "to 1, and a restart without duplicates") {
  testing::RaftCluster c;
  auto& m = c.add();
  m.start();
  Schedulerd sd(m);
  sd.start(m.nodeDir);
  auto logs = [&] { return c.logs() + sd.logs(); };

  INFO("before swarm init");
  REQUIRE_MESSAGE(waitFor([&] { return contains(sd.status().value("why", ""), "not in a swarm"); }, 10s),
                  sd.status().dump() << logs());
  CHECK_FALSE(sd.status().value("active", true));

  m.init();
  REQUIRE_MESSAGE(waitFor([&] { return m.leads(); }, 20s), logs());
  // No Reload: raftd's leadership alone makes it act.
  REQUIRE_MESSAGE(waitFor([&] { return sd.active(); }, 20s), sd.status().dump() << logs());
  std::string nodeId = nodeIdOf(m);

  store::SyncClient store;
  REQUIRE(store.connect(m.socket()).ok());
  auto node = store.get(ObjectKind::Node, nodeId);
  REQUIRE_MESSAGE(node.ok(), "the Node of swarm init: " << (node ? "" : node.error().message));
  auto nodeT = objects_codec::unpack<objects::Node>(node->data, "node");
  REQUIRE(nodeT.ok());
  REQUIRE_MESSAGE(((*nodeT)->status && (*nodeT)->status->state == objects::NodeState::Ready),
                  "swarm init left its node not Ready");

  auto service = replicatedService("web", 3);
  std::string serviceId = service->id;
  auto created = store.txn({{ObjectKind::Service, objects::Operation::Create, serviceId, 0,
                             objects_codec::pack<objects::Service>(*service)}});
  REQUIRE_MESSAGE(created.ok(), "writing the Service: " << (created ? "" : created.error().message));

  INFO("3 replicas, each ASSIGNED to the one node");
  bool assigned = waitFor([&] {
    auto tasks = tasksOf(store, serviceId);
    if (tasks.size() != 3 || !oneLivePerSlot(tasks, 3)) return false;
    std::set<uint64_t> slots;
    for (auto& t : tasks) {
      if (stateOf(*t) != TaskState::Assigned || t->node_id != nodeId) return false;
      slots.insert(t->slot);
    }
    return slots == std::set<uint64_t>{1, 2, 3};
  }, 30s);
  REQUIRE_MESSAGE(assigned, "tasks:" << describe(tasksOf(store, serviceId)) << "\n" << sd.status().dump() << logs());

  INFO("scale to 1: 2 tasks get desired SHUTDOWN, none is added");
  scale(store, serviceId, 1);
  bool shutDown = waitFor([&] {
    auto tasks = tasksOf(store, serviceId);
    size_t down = 0;
    for (auto& t : tasks) down += t->desired_state == TaskState::Shutdown;
    return tasks.size() == 3 && down == 2 && oneLivePerSlot(tasks, 1);
  }, 30s);
  REQUIRE_MESSAGE(shutDown, "tasks:" << describe(tasksOf(store, serviceId)) << "\n" << sd.status().dump() << logs());
  auto before = sd.status();
  CHECK_MESSAGE(before.value("conflicts", 1) == 0, before.dump());
  CHECK_MESSAGE(before.value("failures", 1) == 0, before.dump());
  CHECK_MESSAGE(before.value("pass_errors", 1) == 0, before.dump());

  INFO("SIGTERM, start again: the same tasks, no second live task in a slot");
  std::set<std::string> ids;
  for (auto& t : tasksOf(store, serviceId)) ids.insert(t->id);
  sd.stop();
  sd.start(m.nodeDir);
  REQUIRE_MESSAGE(waitFor([&] {
    auto s = sd.status();
    return sd.active() && s.value("passes", 0) >= 1 && s.value("in_flight", 1) == 0;
  }, 20s), sd.status().dump() << logs());
  // Whatever a pass may still be gathering is due within a second.
  std::this_thread::sleep_for(1500ms);
  auto tasks = tasksOf(store, serviceId);
  std::set<std::string> after;
  for (auto& t : tasks) after.insert(t->id);
  CHECK_MESSAGE(after == ids, "tasks:" << describe(tasks));
  CHECK_MESSAGE(oneLivePerSlot(tasks, 1), "tasks:" << describe(tasks));
  auto restarted = sd.status();
  CHECK_MESSAGE(restarted.value("conflicts", 1) == 0, restarted.dump());
  CHECK_MESSAGE(restarted.value("view", nlohmann::json::object()).value("services", 0) == 1, restarted.dump());
  sd.stop();
}

TEST_CASE("schedulerd on three managers: the followers' idle and say why, the leader's acts and "
          "hands over when its raftd dies; SIGTERM stops them cleanly") {
  testing::RaftCluster c;
  int lead = testing::startThree(c);
  std::vector<std::unique_ptr<Schedulerd>> sds;
  for (auto& m : c.members) {
    sds.push_back(std::make_unique<Schedulerd>(m));
    sds.back()->start(m.nodeDir);
  }
  auto logs = [&] {
    std::string out = c.logs();
    for (auto& s : sds) out += s->logs();
    return out;
  };
  // Leadership may move while the cluster settles; wait for the roles to be stable.
  REQUIRE_MESSAGE(waitFor([&] {
    lead = c.leader();
    if (lead < 0) return false;
    for (size_t i = 0; i < sds.size(); ++i)
      if (sds[i]->active() != (static_cast<int>(i) == lead)) return false;
    return true;
  }, 30s), logs());
  for (size_t i = 0; i < sds.size(); ++i) {
    if (static_cast<int>(i) == lead) continue;
    auto s = sds[i]->status();
    CHECK_MESSAGE(contains(s.value("why", ""), "follower"), s.dump());
    CHECK(s.value("state", "") == "idle");
    CHECK(s.value("view", nlohmann::json::object()).value("nodes", 1) == 0);
  }
  auto leader = sds[lead]->status();
  CHECK_MESSAGE(leader.value("view", nlohmann::json::object()).value("nodes", 0) == 3, leader.dump());
  CHECK(leader.value("passes", 0) >= 1);

  INFO("the leader's raftd dies: its schedulerd stops and drops its view, a survivor's takes over");
  int old = lead;
  c.members[old].kill9();
  REQUIRE_MESSAGE(waitFor([&] {
    auto s = sds[old]->status();
    return !s.value("active", true) && s.value("view", nlohmann::json::object()).value("nodes", 1) == 0;
  }, 10s), sds[old]->status().dump() << logs());
  CHECK_MESSAGE(contains(sds[old]->status().value("why", ""), "not known"), sds[old]->status().dump());
  REQUIRE_MESSAGE(waitFor([&] {
    lead = c.leader();
    return lead >= 0 && lead != old && sds[lead]->active();
  }, 30s), logs());
  for (size_t i = 0; i < sds.size(); ++i)
    if (static_cast<int>(i) != lead) CHECK_FALSE(sds[i]->status().value("active", true));
  for (auto& s : sds) s->stop();
}

// ---- with dispatcherd and agentd --executor fake on the node

// One node's daemons, and the calls this test makes on their sockets.
struct FullNode : testing::NodeDaemons {
  using NodeDaemons::NodeDaemons;

  void control(const std::string& daemon, control::Body type, flatbuffers::Offset<void> body,
               flatbuffers::FlatBufferBuilder& fbb) const {
    auto r = testing::callOn<control::Envelope>(socketOf(daemon),
                                                bus::message<control::Envelope>(fbb, type, body), 10s);
    REQUIRE_MESSAGE(r.ok(), daemon << ": " << (r ? "" : r.error().message) << logs());
  }
  void reload(const std::string& daemon) const {
    flatbuffers::FlatBufferBuilder fbb;
    control(daemon, control::Body::ReloadRequest, control::CreateReloadRequest(fbb).Union(), fbb);
  }
  nlohmann::json scheduler() const {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = control::CreateStatusRequest(fbb);
    auto r = testing::callOn<control::Envelope>(
        socketOf("schedulerd"), bus::message<control::Envelope>(fbb, control::Body::StatusRequest, body.Union()), 2s);
    if (!r) return nlohmann::json::object();
    auto j = nlohmann::json::parse(r->as<control::Envelope>()->body_as_StatusReply()->json()->str());
    return j.value("scheduler", nlohmann::json::object());
  }
  void init(uint16_t port) const {
    flatbuffers::FlatBufferBuilder fbb;
    std::string a = "127.0.0.1:" + std::to_string(port);
    auto body = swarmapi::CreateInitRequestDirect(fbb, a.c_str(), a.c_str());
    auto r = testing::callOn<swarmapi::Envelope>(
        socketOf("raftd"), bus::message<swarmapi::Envelope>(fbb, swarmapi::Body::InitRequest, body.Union()), 20s);
    REQUIRE_MESSAGE(r.ok(), "swarm init: " << (r ? "" : r.error().message) << logs());
  }
  void failTask(const std::string& taskId, int exitCode) const {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = agentapi::CreateFakeTaskRequestDirect(fbb, taskId.c_str(), agentapi::FakeAction::Fail, exitCode);
    auto r = testing::callOn<agentapi::Envelope>(
        socketOf("agentd"), bus::message<agentapi::Envelope>(fbb, agentapi::Body::FakeTaskRequest, body.Union()), 5s);
    REQUIRE_MESSAGE(r.ok(), "failing task " << taskId << ": " << (r ? "" : r.error().message));
  }
};

size_t countIn(const std::vector<std::unique_ptr<objects::TaskT>>& tasks, TaskState state) {
  return std::count_if(tasks.begin(), tasks.end(), [&](auto& t) { return stateOf(*t) == state; });
}

TEST_CASE("schedulerd with dispatcherd and a fake executor: 3 replicas run, a failed one is "
          "replaced after its restart delay, a scale to 1 stops two") {
  testing::TempDir tmp;
  FullNode n(tmp.path(), "m1");
  uint16_t port = testing::freeRaftPort();
  n.start("raftd");
  n.start("dispatcherd");
  n.start("agentd", {"--executor", "fake", "--fake-delay", "5ms"});
  n.start("schedulerd");
  n.init(port);
  n.reload("dispatcherd");
  n.reload("agentd");
  REQUIRE_MESSAGE(waitFor([&] { return n.scheduler().value("state", "") == "active"; }, 20s),
                  n.scheduler().dump() << n.logs());

  store::SyncClient store;
  REQUIRE(store.connect(n.socketOf("raftd")).ok());
  auto service = replicatedService("web", 3);
  service->spec->task->restart = std::make_unique<objects::RestartPolicyT>();
  service->spec->task->restart->condition = objects::RestartCondition::Any;
  service->spec->task->restart->delay = 300 * 1'000'000;  // 300 ms: a wake the cores ask for
  std::string serviceId = service->id;
  auto created = store.txn({{ObjectKind::Service, objects::Operation::Create, serviceId, 0,
                             objects_codec::pack<objects::Service>(*service)}});
  REQUIRE_MESSAGE(created.ok(), "writing the Service: " << (created ? "" : created.error().message));
  auto report = [&] { return "tasks:" + describe(tasksOf(store, serviceId)) + "\n" + n.scheduler().dump() + n.logs(); };

  INFO("3 replicas RUNNING");
  REQUIRE_MESSAGE(waitFor([&] {
    auto tasks = tasksOf(store, serviceId);
    return tasks.size() == 3 && countIn(tasks, TaskState::Running) == 3 && oneLivePerSlot(tasks, 3);
  }, 30s), report());

  INFO("slot 1's task fails: a new one runs in its slot, the failed one stays as history");
  std::string failed;
  for (auto& t : tasksOf(store, serviceId))
    if (t->slot == 1) failed = t->id;
  n.failTask(failed, 3);
  REQUIRE_MESSAGE(waitFor([&] {
    auto tasks = tasksOf(store, serviceId);
    size_t inSlot1 = 0;
    for (auto& t : tasks) inSlot1 += t->slot == 1;
    return tasks.size() == 4 && inSlot1 == 2 && countIn(tasks, TaskState::Running) == 3 &&
           countIn(tasks, TaskState::Failed) == 1 && oneLivePerSlot(tasks, 3);
  }, 30s), report());

  INFO("scale to 1: the tasks of slots 2 and 3 reach SHUTDOWN");
  scale(store, serviceId, 1);
  REQUIRE_MESSAGE(waitFor([&] {
    auto tasks = tasksOf(store, serviceId);
    return countIn(tasks, TaskState::Shutdown) == 2 && countIn(tasks, TaskState::Running) == 1 &&
           oneLivePerSlot(tasks, 1);
  }, 30s), report());
  auto s = n.scheduler();
  CHECK_MESSAGE(s.value("pass_errors", 1) == 0, s.dump());
  CHECK_MESSAGE(s.value("bad_objects", 1) == 0, s.dump());
  MESSAGE("schedulerd beside dispatcherd: " << s.value("passes", 0) << " passes, " << s.value("txns", 0)
          << " transactions, " << s.value("conflicts", 0) << " conflicts, " << s.value("resyncs", 0) << " resyncs");
  n.stop("schedulerd");
}

}  // namespace
}  // namespace shoal
