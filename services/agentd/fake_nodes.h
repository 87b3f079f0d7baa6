#pragma once
// `agentd --executor fake --fake-nodes N` (issue 9, the scale benchmark): one agentd poses as
// N worker nodes. On `shoal swarm join` (agentd.sock JoinRequest) each fake node joins with
// the token given, as <hostname>-1 .. <hostname>-N, at most kJoinsInFlight joins at a time,
// and keeps its own session (session.h), worker (worker.h) and fake executor. Each node's key
// and node.json live in <state-dir>/fake-nodes/<i> (a node::NodeDir), so that a restarted
// agentd is the same N nodes again without a token. Status counts sessions and tasks; Tasks
// and FakeTask look through every node's tasks.
//
// Kept small per node (1000 nodes in one process): no local raftd or dispatcherd, no
// certificate renewal (a fake node lives far less than a certificate's 90 days), no role
// changes (the token must be the worker token). The sessions use a ZeroMQ context of their
// own, sized for N sessions, and the process's open-file limit is raised to what they need.

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "common/bus.h"
#include "common/daemon.h"
#include "common/node_dir.h"
#include "services/agentd/fake_executor.h"
#include "services/agentd/join.h"
#include "services/agentd/node_description.h"
#include "services/agentd/session.h"
#include "services/agentd/worker.h"

namespace shoal::agentd {

class FakeNodes {
 public:
  static constexpr size_t kMaxNodes = 10000;
  static constexpr size_t kJoinsInFlight = 20;

  // Serves agent.fbs on the daemon's socket and opens the sessions of the nodes that joined
  // before.
  static Result<std::unique_ptr<FakeNodes>> start(Daemon& daemon, const std::string& hostname,
                                                  size_t count, std::chrono::milliseconds delay);
  ~FakeNodes();
  FakeNodes(const FakeNodes&) = delete;
  FakeNodes& operator=(const FakeNodes&) = delete;

 private:
  struct Node {
    Node(Loop& loop, zmq::context_t& ctx, size_t index, node::NodeDir dir,
         NodeDescription description, std::chrono::milliseconds delay);
    size_t index;
    node::NodeDir dir;  // its key and node.json
    NodeDescription description;
    std::optional<node::NodeConfig> config;
    FakeExecutor executor;
    Worker worker;
    Session session;
  };

  FakeNodes(Daemon& daemon, size_t count);
  Status openNodes(const std::string& hostname, std::chrono::milliseconds delay);

  void serve(bus::Call call);
  void join(bus::Call call);
  void joinNext();
  void onJoined(Node& n, Result<JoinOutcome> result);
  void endJoin();
  void leave(bus::Call call);
  void info(bus::Call call);
  void tasks(bus::Call call);
  void fakeTask(bus::Call call);
  // The node is in the swarm now (a join, or node.json at start): its session opens.
  void adopt(Node& n, node::NodeConfig config, std::chrono::nanoseconds period);

  size_t joinedNodes() const;
  nlohmann::json counts() const;
  void status(nlohmann::json& j) const;
  void updateStatusText();

  Daemon& daemon_;
  zmq::context_t ctx_;  // the sessions', sized for them
  size_t count_;
  std::vector<std::unique_ptr<Node>> nodes_;

  // The join under way (one at a time).
  std::optional<bus::Call> pending_;
  std::optional<JoinPlan> plan_;
  size_t nextJoin_ = 0, inFlight_ = 0, joinsDone_ = 0, joinsFailed_ = 0;
  std::string firstJoinError_;
  bool firstChecked_ = false;  // the first join's role was seen to be worker
  std::vector<std::unique_ptr<JoinFlow>> flows_;     // under way, by node index - 1
  std::vector<std::unique_ptr<JoinFlow>> finished_;  // destroyed from a timer
  Loop::TimerId cleanup_ = 0;
};

}  // namespace shoal::agentd
