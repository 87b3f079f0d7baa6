#pragma once
// agentd's swarm side (docs/cluster.md): the node's answer to `shoal swarm join`, `swarm
// leave` and `shoal info` on agentd.sock (schemas/agent.fbs), node.json kept up to date, and
// the session with the managers (session.h), opened at start and on a control Reload whenever
// node.json says the node is in a swarm. Certificates are renewed at identity::renewAt; a role
// change sent by the managers starts or stops the local raftd. The node's tasks (worker.h)
// come and go through that session and run on the executor chosen by `--executor`;
// agentd.sock also answers TasksRequest and, with the fake executor, FakeTaskRequest.

#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>

#include <nlohmann/json.hpp>

#include "common/bus.h"
#include "common/daemon.h"
#include "common/identity.h"
#include "common/node_dir.h"
#include "services/agentd/container_api.h"
#include "services/agentd/executor.h"
#include "services/agentd/fake_executor.h"
#include "services/agentd/image_api.h"
#include "services/agentd/join.h"
#include "services/agentd/log_agent.h"
#include "services/agentd/local_daemons.h"
#include "services/agentd/node_description.h"
#include "services/agentd/runc_executor.h"
#include "services/agentd/runtime.h"
#include "services/agentd/sandbox_client.h"
#include "services/agentd/secrets.h"
#include "services/agentd/session.h"
#include "services/agentd/worker.h"

namespace shoal::agentd {

// The node's swarm state as `docker info` names it (LocalNodeState).
enum class SwarmState { Inactive, Pending, Active, Error };
const char* swarmStateName(SwarmState state);
// configBroken: node.json cannot be read. A node in a swarm is pending until its session is up.
SwarmState swarmState(bool inSwarm, bool configBroken, bool joining, SessionState session);

// How the node runs its tasks (`--executor`, `--fake-delay`, and the runc executor's flags).
struct TaskOptions {
  ExecutorKind executor = ExecutorKind::Runc;
  std::chrono::milliseconds fakeDelay = FakeExecutor::kDefaultDelay;
  std::string runtimePath = "runc";            // --runtime
  std::string runcRoot;                        // --runc-root; "" → <run dir>/runc
  std::set<std::string> insecureRegistries;    // --insecure-registry HOST:PORT
  std::string registryCa;                      // --registry-ca FILE
};

// The executor and what it runs on. The runc executor's image store, runtime, sandbox client
// and secrets are the agent's (the image and container APIs use them too); the fake one has
// none of them but the secrets, which the session fills either way.
struct ExecutorParts {
  std::unique_ptr<ImageStore> images;
  std::unique_ptr<Runtime> runtime;
  std::unique_ptr<SandboxClient> sandboxes;
  std::unique_ptr<SecretStore> secrets = std::make_unique<SecretStore>();
  std::unique_ptr<Executor> executor;
  RuncExecutor* runc = nullptr;  // executor, when it is the runc one
};
// The executor of that kind, opened in the daemon's state and run dirs. Errors name the flag
// or the path that is wrong.
Result<ExecutorParts> makeExecutor(Daemon& daemon, const TaskOptions& options);

// agent.fbs replies shared by agentd's two faces (a node, or many fake nodes).
bus::Buffer tasksReply(const nlohmann::json& tasks);
bus::Buffer fakeTaskReply();
// Wall-clock ns since the epoch: the workers' clock.
int64_t wallClockNs();

class SwarmAgent {
 public:
  // How long a join may take to reach the managers and hear back; the local raftd and
  // dispatcherd then have LocalDaemons::kTimeout each.
  static constexpr std::chrono::milliseconds kJoinBudget{10000};

  // Serves agent.fbs on the daemon's socket and opens the session when node.json is there.
  static Result<std::unique_ptr<SwarmAgent>> start(Daemon& daemon, const std::string& hostname,
                                                   const TaskOptions& tasks = {});
  ~SwarmAgent();
  SwarmAgent(const SwarmAgent&) = delete;
  SwarmAgent& operator=(const SwarmAgent&) = delete;

 private:
  SwarmAgent(Daemon& daemon, node::NodeDir dir, NodeDescription description,
             ExecutorParts parts);

  void serve(bus::Call call);
  void join(bus::Call call);
  void onJoined(Result<JoinOutcome> result);
  void finishJoin(const std::string& localError);
  void leave(bus::Call call);
  void finishLeave(bool wasManager);
  void info(bus::Call call);
  void tasks(bus::Call call);
  void fakeTask(bus::Call call);
  void replyToPending(Status st, std::function<bus::Buffer(flatbuffers::FlatBufferBuilder&)> ok);

  // node.json again (start, Reload). Its error is the Reload's answer.
  Status reload();
  // Takes a config read from node.json or made by a join; opens the session for it.
  void adopt(node::NodeConfig config, std::chrono::nanoseconds period);
  void forget();
  Status save();

  void onSessionReply(const dispatch::SessionReply& reply);
  void onManagersChanged(const std::vector<node::Manager>& managers);
  // The session is up: the log agent connects to the same dispatcher (log_agent.h).
  void openLogs(const std::string& sessionId);
  // A certificate the managers sent (session reply or renewal): checked, stored; a role
  // change starts or stops raft here.
  void takeCertificate(std::span<const uint8_t> bytes, const dispatch::RaftJoin* raft);
  void becameManager(const RaftJoinInfo& raft);
  void becameWorker();
  // Picks when to renew the certificate (identity::renewAt) and waits for it.
  void scheduleRenewal();
  void armRenewal();
  void renew();
  void cancelRenewal();

  SwarmState state() const;
  void updateStatusText();
  nlohmann::json infoJson() const;
  void status(nlohmann::json& j) const;

  Daemon& daemon_;
  node::NodeDir dir_;
  NodeDescription description_;
  LocalDaemons local_;
  // Before the session, which uses them until it is destroyed; the executor before what it
  // runs on (destroyed first).
  ExecutorParts parts_;
  std::unique_ptr<Executor> executor_;
  std::unique_ptr<ContainerApi> containerApi_;
  std::unique_ptr<ImageApi> imageApi_;  // with the runc executor's image store
  Worker worker_;
  // Between the worker (its resolver) and the session (whose hooks call it until it goes).
  std::unique_ptr<LogAgent> logs_;
  Session session_;

  std::optional<node::NodeConfig> config_;
  std::optional<identity::Certificate> cert_;  // config_'s, verified
  std::string configError_;                    // node.json cannot be read or trusted

  enum class Busy { None, Joining, Leaving };
  Busy busy_ = Busy::None;
  std::optional<bus::Call> pending_;  // the Join or Leave being served
  std::unique_ptr<JoinFlow> join_;
  std::unique_ptr<JoinFlow> finishedJoin_;  // destroyed from a timer, outside its callbacks
  std::optional<JoinOutcome> joined_;
  Loop::TimerId joinCleanup_ = 0;

  int64_t renewAt_ = 0;
  Loop::TimerId renewTimer_ = 0;
};

}  // namespace shoal::agentd
