#pragma once
// dispatcherd's shell (docs/cluster.md): the node dir, the two endpoints, the store client and
// the timers around the pure cores (records.h, sessions.h, status_writes.h, join.h,
// assignments.h, task_status.h).
//
// On a manager it binds P with CURVE (joins from any key, sessions from keys the store knows)
// and P+2 plain (hello), reads the Cluster and the Nodes through a store watch, and follows
// its raftd's leadership: only while that raftd leads does it admit joins, keep sessions and
// write node status; otherwise it sends agents to the leader's dispatcher. While active it also
// streams each node its assignments (docs/services.md "Assignments") from a watch of the Tasks,
// and writes the task status the agents report, in batches. On a worker, or a
// node not in a swarm, it idles and its Status says why. A control Reload re-reads node.json.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "common/curve.h"
#include "common/daemon.h"
#include "common/identity.h"
#include "common/node_dir.h"
#include "common/store_client.h"
#include "services/dispatcherd/assignments.h"
#include "services/dispatcherd/join.h"
#include "services/dispatcherd/log_broker.h"
#include "services/dispatcherd/records.h"
#include "services/dispatcherd/sessions.h"
#include "services/dispatcherd/status_writes.h"
#include "services/dispatcherd/task_status.h"

namespace shoal::dispatcherd {

class Dispatcher {
 public:
  // Wires dispatcherd into the daemon and acts on the node dir as it is now. A node dir that
  // cannot be read leaves the daemon running, idle, with the reason in its Status.
  static Result<std::unique_ptr<Dispatcher>> start(Daemon& daemon);
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

 private:
  explicit Dispatcher(Daemon& daemon) : daemon_(daemon) {}

  // --- node dir and endpoints
  Status reload();
  Status bind(const node::NodeConfig& config, const curve::KeyPair& key);
  void idle(std::string why);
  void closeEndpoints();
  void stop();

  // --- the store's view and leadership
  void onLeadership(const store::Leadership& leadership);
  void updateActive();
  void onSnapshot(store::Snapshot snapshot);
  void onEvents(std::vector<store::Change> events);
  void putNode(std::string_view bytes);
  void removeNode(const std::string& id);
  void putCluster(std::string_view bytes);
  void putTask(std::string_view bytes, uint64_t version);
  // Secrets and configs for the assignments (assignments.h).
  void putFile(const store::Change& e);
  static void keepFile(Result<FileEntry> file, std::vector<FileEntry>& into);
  void refreshNodes();
  void readRaftClusterId();
  const identity::ClusterCA* ca();
  Clock::duration period() const;

  // --- the active dispatcher's work
  void tick();
  void flush(Clock::time_point now);
  objects::NodeState effectiveState(const NodeRecord& node) const;

  // --- requests
  void serveHello(bus::Call call);
  void serveDispatch(bus::Call call);
  // Answers for a dispatcher that cannot serve sessions now (Redirect, or an error); false
  // when it can.
  bool refuseUnlessActive(bus::Call& call);
  // The same for assignments and task status: an error whenever it cannot serve them.
  bool refuseTaskLinkUnlessActive(bus::Call& call);
  const NodeRecord* knownNode(bus::Call& call);
  void hello(bus::Call& call);
  void join(bus::Call call, const dispatch::JoinRequest& request);
  void joined(std::shared_ptr<bus::Call> call, JoinPlan plan, uint64_t index);
  void addManager(std::shared_ptr<bus::Call> call, JoinPlan plan, uint64_t index);
  void refuseJoin(bus::Call& call, wire::ErrorCode code, const std::string& why);
  void openSession(bus::Call& call, const dispatch::OpenSessionRequest& request);
  void heartbeat(bus::Call& call, const dispatch::HeartbeatRequest& request);
  void renew(bus::Call& call);
  // Whether sessionId is the node's current session.
  bool inSession(const std::string& nodeId, const std::string& sessionId) const;

  // --- assignments (assignments.h)
  void openAssignments(bus::Call& call, const dispatch::AssignmentsRequest& request);
  // Sends what the stream is due, within its credits.
  void pushAssignments(Assignments::StreamId id);
  // Every stream due now; then the timer for the next one due.
  void pushDue();
  void armAssignments();
  void onStreamClosed(Assignments::StreamId id);
  // Ends the node's streams (all but those of session `keep`), saying why.
  void endStreams(const std::string& nodeId, wire::ErrorCode code, const std::string& why,
                  const std::string& keep = {});
  void endAllStreams(wire::ErrorCode code, const std::string& why);

  // --- task status (task_status.h)
  void updateTaskStatus(bus::Call& call, const dispatch::UpdateTaskStatusRequest& request);
  void flushTaskStatus(Clock::time_point now);
  // A timer for the next write due, so that it goes on time rather than at the next tick.
  void armTaskStatus();
  // After a Conflict: the transaction's tasks are read again, then it is rebuilt.
  void rereadTasks(uint64_t txn, const std::vector<std::string>& taskIds);
  // A certificate for the node's current role, issued now (and owed to the store).
  Result<NodeUpdate::Cert> issueCertificate(const NodeRecord& node);
  // The role of the certificate the node holds (the one owed to the store, else the stored
  // one); none when it cannot be read.
  std::optional<objects::NodeRole> certificateRole(const NodeRecord& node);
  void replySession(bus::Call& call, const NodeRecord& node, const std::string& sessionId,
                    const std::optional<NodeUpdate::Cert>& cert);

  void status(nlohmann::json& j);
  std::string why() const;

  // --- logs (log_broker.h): the broker on the CURVE server, with the view it reads.
  std::unique_ptr<LogBroker> makeLogBroker();
  std::map<std::string, std::vector<std::string>> logTasks(const logapi::LogSelector* selector) const;

  Daemon& daemon_;
  identity::FillRandom random_ = identity::systemRandom();

  // What node.json said when the endpoints were bound; none while idle.
  std::optional<node::NodeConfig> config_;
  std::string idleReason_;
  std::unique_ptr<curve::ZapHandler> zap_;
  std::unique_ptr<bus::Server> server_;  // P, CURVE
  std::unique_ptr<bus::Server> hello_;   // P+2, plain
  std::unique_ptr<LogBroker> logs_;      // on server_; goes before it
  std::unique_ptr<store::Client> store_;
  uint64_t raftClusterId_ = 0;

  store::Leadership leadership_;
  bool active_ = false;
  Clock::time_point activeSince_{};
  bool loaded_ = false;  // the view has had its first snapshot
  NodeTable nodes_;
  std::optional<ClusterRecord> cluster_;
  std::optional<identity::ClusterCA> ca_;
  std::vector<uint8_t> caKey_;  // the stored form ca_ was loaded from
  std::string caError_;

  SessionTable sessions_;
  StatusWrites writes_;
  uint64_t writeGeneration_ = 0;  // a batch answered after a change of term is not ours
  bool refreshing_ = false;       // re-reading the nodes after a Conflict
  std::set<std::string> joining_;  // keys whose join is being written
  Loop::TimerId tick_ = 0;
  bus::RateLimitedWarning refusedJoins_;

  // Assignments: the Task view and what each stream's agent holds.
  Assignments assignments_;
  struct AssignmentStream {
    std::shared_ptr<bus::ServerStream> stream;
    std::string nodeId;
    std::string sessionId;
  };
  std::map<Assignments::StreamId, AssignmentStream> streams_;
  Assignments::StreamId nextStream_ = 1;
  Loop::TimerId assignTimer_ = 0;
  Clock::time_point assignTimerAt_{};
  TaskStatusWrites taskWrites_;
  Loop::TimerId statusTimer_ = 0;
  bus::RateLimitedWarning badReports_;
  bus::RateLimitedWarning taskWriteWarning_;

  struct Counters {
    uint64_t joinsAccepted = 0;
    uint64_t joinsRefused = 0;
    uint64_t sessionsOpened = 0;
    uint64_t heartbeats = 0;
    uint64_t redirects = 0;
    uint64_t downs = 0;
    uint64_t writeTxns = 0;
    uint64_t writeConflicts = 0;
    uint64_t writeFailures = 0;
    uint64_t streamsOpened = 0;
    uint64_t assignmentItems = 0;
    uint64_t statusRequests = 0;
    uint64_t taskTxns = 0;
    uint64_t taskConflicts = 0;
    uint64_t taskFailures = 0;
  } counters_;
};

}  // namespace shoal::dispatcherd
