#pragma once
// raftd's control API (schemas/swarm.fbs, DESIGN.md §5, docs/cluster.md): the cluster
// operations, on raftd.sock beside the store API. `swarm init`, `join-token`, `update`,
// `info`, `node promote|demote|update|rm`, and from the local agentd JoinRaft and Leave.
//
// Every operation is validated here (the rules are in control_rules.h), then done through
// the normal store path: RaftNode::serveStore with local calls, so reads are linearizable and
// a follower forwards writes to its leader. Operations run one at a time, in the order they
// came: each is a short chain of store calls, and two of them interleaved (an init and a
// leave, two promotions) would only make each other's checks stale.

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/daemon.h"
#include "common/node_dir.h"
#include "common/protocols.h"
#include "common/store_client.h"
#include "services/raftd/control_rules.h"
#include "services/raftd/local_store.h"
#include "services/raftd/node.h"

namespace shoal::raftd {

class Control {
 public:
  // Serves the swarm protocol on the daemon's socket. options: raftd's own (the cluster
  // object records its raft settings).
  static Result<std::unique_ptr<Control>> start(Daemon& daemon, RaftNode& node,
                                                const NodeOptions& options);
  ~Control();
  Control(const Control&) = delete;
  Control& operator=(const Control&) = delete;

 private:
  using Millis = std::chrono::milliseconds;
  // A request being served. Queued ones run one at a time, and answering one starts the
  // next; Info, a read, runs at once so that `shoal` can always ask who this node is.
  struct Request {
    bus::Call call;
    bool queued = true;
  };
  using Req = std::shared_ptr<Request>;
  template <class T>
  using Then = std::function<void(Result<T>)>;

  Control(Daemon& daemon, RaftNode& node, node::NodeDir dir, const NodeOptions& options);

  // The queue.
  void enqueue(bus::Call call);
  void next();
  // After r was answered: the next queued request may start.
  void done(const Req& r);
  void serve(Req r);
  void reply(const Req& r, bus::Buffer buf);
  void fail(const Req& r, wire::ErrorCode code, const std::string& message);
  void fail(const Req& r, const Error& error);
  void ok(const Req& r);

  // The operations.
  void init(Req r);
  void initNew(Req r, control::InitSettings s);
  void forceNewCluster(Req r, node::NodeConfig config);
  void joinRaft(Req r);
  void joinToken(Req r);
  void update(Req r);
  void info(Req r);
  void nodeUpdate(Req r);
  void nodeRemove(Req r);
  void leave(Req r);

  // A change to a Node, applied to the Node as read just before it is written.
  using Mutation = std::function<Status(objects::NodeT&)>;
  // Undoes a raft membership change when the Node write that follows it fails.
  using Undo = std::function<void(std::function<void(Status)>)>;
  struct NodeContext {
    std::vector<std::unique_ptr<objects::NodeT>> nodes;
    std::shared_ptr<objects::NodeT> target;
  };
  // All Nodes and the one `query` names (control::resolveNode).
  void withNode(std::string query, Then<NodeContext> fn);
  // The role part of a node update, then the Node write (with `apply`, the other changes).
  void promote(Req r, std::shared_ptr<objects::NodeT> target, Mutation apply,
               std::vector<control::ManagerView> managers);
  void demote(Req r, std::shared_ptr<objects::NodeT> target, Mutation apply,
              std::vector<control::ManagerView> managers);
  // Reads the Node, applies mutate, writes it (again from the read on a Conflict, a few
  // times), and answers r with NodeReply or the error (after undo, when given).
  void writeNode(Req r, std::string id, Mutation mutate, Undo undo, int attempt = 0);
  // The managers as the quorum rule sees them (control_rules.h).
  std::vector<control::ManagerView> managerViews(
      const std::vector<std::unique_ptr<objects::NodeT>>& nodes) const;
  // Whether raft's configuration has raftId (true when this raftd cannot tell).
  bool inRaftConfig(uint64_t raftId) const;
  // Moves leadership off `raftId` when it leads, then calls fn.
  void moveLeadershipOff(uint64_t raftId, const std::vector<control::ManagerView>& managers,
                         std::function<void(Status)> fn);

  // The store, through the node's own store API (local_store.h).
  void storeCall(bus::Buffer request, Then<bus::Frame> fn, Millis budget = std::chrono::seconds(8));
  void get(objects::ObjectKind kind, const std::string& id, Then<std::string> fn);
  void list(objects::ObjectKind kind, bool local, Then<std::vector<std::string>> fn,
            Millis budget = std::chrono::seconds(8));
  void listNodes(Then<std::vector<std::unique_ptr<objects::NodeT>>> fn,
                 Millis budget = std::chrono::seconds(8));
  void getCluster(Then<std::unique_ptr<objects::ClusterT>> fn);
  void commit(std::vector<store::ChangeSpec> changes, Then<uint64_t> fn);
  void member(bus::Buffer request, std::function<void(Status)> fn);
  // Asks done() every 20 ms: fn(true) once it holds, fn(false) after limit.
  void waitUntil(std::function<bool()> done, Millis limit, std::function<void(bool)> fn);
  // Calls fn(true) once this raftd leads, fn(false) after `limit`.
  void waitUntilLeader(Millis limit, std::function<void(bool)> fn);
  // Calls fn(true) once `raftId` no longer leads and some node does, fn(false) after limit.
  void waitLeaderOtherThan(uint64_t raftId, Millis limit, std::function<void(bool)> fn);

  // This node's config (node.json), or an error for a node in no swarm.
  Result<node::NodeConfig> swarmConfig() const;
  // The same, or an error naming `what` for a worker.
  Result<node::NodeConfig> managerConfig(std::string_view what) const;
  void status(nlohmann::json& j) const;

  Daemon& daemon_;
  RaftNode& node_;
  node::NodeDir dir_;
  NodeOptions options_;
  LocalStore store_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::deque<bus::Call> queue_;
  bool busy_ = false;
  uint64_t served_ = 0;
  uint64_t refused_ = 0;
  std::string lastError_;
};

}  // namespace shoal::raftd
