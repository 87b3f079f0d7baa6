#pragma once
// The node's session with the leader's dispatcher (DESIGN.md §7, docs/cluster.md "Sessions
// and heartbeats"): OpenSession with the node's key, then a heartbeat every period ± 10 %;
// a redirect, an error or a heartbeat without an answer sends it to the next manager after a
// backoff (100 ms doubling to 8 s, reset once a session is up). A session refused because the
// node was removed is shown as such and asked again only every 8 s.
//
// With a worker attached (worker.h), an open session also carries the node's tasks
// (docs/services.md "Assignments"): the assignments stream is opened on the same client once
// the session is Active, its items are checked against the version chain (a gap cancels the
// stream and opens it again, which starts with a complete set), and the worker's status
// reports go back as UpdateTaskStatusRequest, batched, one call in flight. Reports not
// acknowledged when a session goes are sent again on the next one.

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "common/bus.h"
#include "common/curve.h"
#include "common/loop.h"
#include "common/node_dir.h"
#include "dispatch_generated.h"
#include "services/agentd/failover.h"
#include "services/agentd/node_description.h"
#include "services/agentd/secrets.h"
#include "services/agentd/worker.h"

namespace shoal::agentd {

enum class SessionState {
  Stopped,     // not in a swarm, or leaving
  Connecting,  // looking for the leader's dispatcher
  Active,      // a session is open and heartbeats are answered
  Refused,     // the managers refuse this node (removed): asked again slowly
};
const char* sessionStateName(SessionState state);

class Session {
 public:
  struct Hooks {
    // The managers sent another list (already checked); node.json keeps it.
    std::function<void(const std::vector<node::Manager>&)> managersChanged;
    // Every SessionReply, after the session took its id, period and managers: the caller
    // looks at its certificate and role.
    std::function<void(const dispatch::SessionReply&)> reply;
    // The state went to or from Active or Refused (for the daemon's status line).
    std::function<void()> stateChanged;
    // A session became Active on this client (the log agent opens its subscriptions stream
    // on it, docs/containers.md "Logs"), and the session on it is gone. The client lives
    // until closed() returns; never keep it past that.
    std::function<void(bus::Client& client, const std::string& sessionId)> opened;
    std::function<void()> closed;
  };
  // How long an OpenSession may wait for its answer: a live dispatcher answers at once, and a
  // dead one should not hold the node's failover back. Never more than one heartbeat timeout
  // (failover.h): after a leader's node dies, the rotation may try that dead manager again,
  // and a 3 s wait there used up the 3 periods a new leader gives every node with a 1 s
  // heartbeat (the lab saw every survivor marked Down).
  static constexpr Millis kOpenTimeout{3000};
  // Reports are gathered this long before they go (docs/services.md: at most 100 ms), and a
  // message carries at most this many (a few thousand, well under the bus's size limit).
  static constexpr Millis kReportBatch{50};
  static constexpr size_t kMaxReportsPerMessage = 2000;
  // Items the dispatcher may push ahead of the agent on the assignments stream.
  static constexpr uint32_t kAssignmentsWindow = 16;

  Session(Loop& loop, zmq::context_t& ctx, curve::KeyPair nodeKey, NodeDescription description,
          Hooks hooks);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Opens a session at one of `managers` (the one tried first is the first) for a node
  // reached at `addr`. A running session is closed first.
  void start(std::vector<node::Manager> managers, std::string addr, Nanos period);
  void stop();
  // The node's key changed (a leave makes a new one); used from the next session on.
  void setNodeKey(curve::KeyPair key) { nodeKey_ = std::move(key); }
  // The node's tasks: assignments go to it and its reports to the dispatcher. Set once,
  // before start(); the worker outlives the session's use of it (stop() ends that).
  void attach(Worker* worker);
  // Where the secrets and configs of the assignments go (before the worker sees the tasks
  // that use them). Set once, before start().
  void attachSecrets(SecretStore* secrets) { secrets_ = secrets; }

  // Renews the node's certificate on the open session (dispatch RenewRequest).
  using RenewFn = std::function<void(Result<std::vector<uint8_t>>)>;
  void renew(RenewFn done);

  SessionState state() const { return state_; }
  const std::vector<node::Manager>& managers() const { return rotation_.managers(); }
  // The manager the session is open at (the log agent connects there too), while Active.
  std::optional<node::Manager> activeManager() const {
    if (state_ != SessionState::Active) return std::nullopt;
    for (auto& m : rotation_.managers())
      if (m.addr == manager_) return m;
    return std::nullopt;
  }
  Nanos period() const { return period_; }
  // Why the managers refused this node, while state() is Refused.
  const std::string& refusal() const { return refusal_; }
  // {state, manager, since, last_heartbeat, session_id, backoff_ms, last_error, refused}, and
  // with a worker {assignments: {version, stream_open, items, gaps, last_error}, reports:
  // {waiting, in_flight, sent}}
  nlohmann::json json() const;

 private:
  void attempt();
  void onOpen(const bus::Client* client, Result<bus::Frame> r);
  void scheduleHeartbeat();
  void heartbeat();
  void onHeartbeat(const bus::Client* client, Result<bus::Frame> r);
  // Takes a SessionReply: managers, period, the caller's hook. False when it is not one.
  bool accept(const dispatch::Envelope* env, const std::string& manager);
  // The session is gone (or never opened): try again after the backoff, at the next manager
  // unless the manager was just chosen by a redirect.
  void lost(const std::string& why, bool advance = true);
  void refused(const std::string& why);
  bool followRedirect(const dispatch::Envelope* env);
  void cancelTimers();
  void changed();

  // ---- the node's tasks (with a worker attached)
  void openAssignments();
  void onAssignments(const bus::Client* client, const bus::Frame& frame);
  void onAssignmentsEnd(const bus::Client* client, const Status& st);
  void reopenAssignments(Millis after);
  // The session is gone or going: its stream with it; reports in flight are sent again.
  void resetTaskLink();
  void scheduleReports();
  void sendReports();
  void onReportsReply(const bus::Client* client, const Result<bus::Frame>& r,
                      const std::vector<ReportQueue::Item>& batch);

  Loop& loop_;
  zmq::context_t& ctx_;
  curve::KeyPair nodeKey_;
  NodeDescription description_;
  Hooks hooks_;
  std::mt19937_64 random_;

  SessionState state_ = SessionState::Stopped;
  ManagerRotation rotation_;
  Backoff backoff_;
  std::string addr_;
  Nanos period_{std::chrono::seconds(5)};
  std::unique_ptr<bus::Client> client_;
  std::unique_ptr<bus::Client> retired_;  // stopped; destroyed at the next attempt
  std::string manager_;    // the address client_ talks to
  std::string sessionId_;
  std::string refusal_;
  std::string lastError_;
  int redirectsInARow_ = 0;
  Millis lastBackoff_{0};
  std::optional<std::chrono::system_clock::time_point> since_, lastHeartbeat_;
  Loop::TimerId retryTimer_ = 0;
  Loop::TimerId heartbeatTimer_ = 0;

  Worker* worker_ = nullptr;
  SecretStore* secrets_ = nullptr;
  bool openedHookCalled_ = false;
  AssignmentChain chain_;
  uint64_t assignmentsStream_ = 0;
  Backoff streamBackoff_;
  Loop::TimerId reopenTimer_ = 0;
  Loop::TimerId reportTimer_ = 0;
  bool reportInFlight_ = false;
  uint64_t assignmentItems_ = 0, gaps_ = 0, reportsSent_ = 0;
  std::string taskLinkError_;
};

// RFC 3339 in UTC, seconds: how times appear in Status and Info.
std::string rfc3339(std::chrono::system_clock::time_point t);
std::string rfc3339(int64_t unixSeconds);

}  // namespace shoal::agentd
