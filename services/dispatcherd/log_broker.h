#pragma once
// The log broker (docs/containers.md "Logs", schemas/logs.fbs), active on the leader's
// dispatcherd: `shoal service logs` as Swarm's dispatcher does it. A subscriber (an agent
// relaying a CLI) sends a SubscribeRequest; the broker resolves it to task ids per node from
// the dispatcher's Task view, tells each node a LogSubscription on the SubscriptionsRequest
// stream the node's agent opened, relays what the nodes publish (PublishRequest) to the
// subscriber as LogBatch items, and without follow ends the subscriber's stream once every
// node said it is done. A node with no stream here is named in `missing` and counted done.
// The subscriber going away tells the nodes to stop (close = true).
//
// LogBook is the bookkeeping, pure (tests/unit/log_broker_test.cpp); LogBroker is the shell
// around it on the dispatcher's CURVE server.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/bus.h"
#include "common/loop.h"
#include "common/result.h"
#include "logs_generated.h"

namespace shoal::dispatcherd {

struct LogOptionsValue {
  bool follow = false;
  int64_t tail = -1;
  int64_t since = 0;
};

// What the shell sends or ends because of a LogBook step.
struct LogEffects {
  struct ToNode {
    std::string nodeId;
    std::string subscriptionId;
    std::vector<std::string> taskIds;  // empty with close
    LogOptionsValue options;
    bool close = false;
  };
  std::vector<ToNode> toNodes;
  // A LogBatch naming nodes that could not be asked (or went away) for a subscriber.
  std::map<uint64_t, std::vector<std::string>> missing;
  // Subscribers whose stream is complete: end it (after any missing batch).
  std::vector<uint64_t> finished;
};

class LogBook {
 public:
  using SubscriberId = uint64_t;
  static constexpr size_t kDefaultMaxSubscriptions = 256;

  explicit LogBook(size_t maxSubscriptions = kDefaultMaxSubscriptions)
      : max_(maxSubscriptions) {}

  // --- nodes' SubscriptionsRequest streams (one per node: a newer one replaces the older)
  void nodeUp(const std::string& nodeId) { up_.insert(nodeId); }
  // The node's stream or session went: it is done (and missing) in every subscription.
  LogEffects nodeDown(const std::string& nodeId);
  bool isUp(const std::string& nodeId) const { return up_.count(nodeId) > 0; }

  // --- subscribers
  // A new subscription for `subscriber` over the tasks by node. Refused (ResourceExhausted)
  // when kMax are open. Nodes without a stream are missing at once.
  Result<LogEffects> subscribe(SubscriberId subscriber,
                               const std::map<std::string, std::vector<std::string>>& tasksByNode,
                               const LogOptionsValue& options);
  // The subscriber went away: its nodes are told to stop.
  LogEffects unsubscribe(SubscriberId subscriber);

  // --- publications
  enum class Verdict { Relay, Unknown, NotYours };
  // Whether `nodeId` may publish for `subscriptionId` (it is one of its nodes, not done);
  // `subscriber` is set for Relay.
  Verdict check(const std::string& nodeId, const std::string& subscriptionId,
                SubscriberId* subscriber) const;
  // Whether taskId is one of the node's tasks in that subscription.
  bool allowed(const std::string& nodeId, const std::string& subscriptionId,
               const std::string& taskId) const;
  // The node published its last lines (PublishRequest.close).
  LogEffects nodeClosed(const std::string& nodeId, const std::string& subscriptionId);

  size_t size() const { return subs_.size(); }
  size_t max() const { return max_; }
  std::optional<std::string> subscriptionOf(SubscriberId subscriber) const;
  nlohmann::json json() const;

 private:
  struct Sub {
    std::string id;
    SubscriberId subscriber = 0;
    LogOptionsValue options;
    std::map<std::string, std::set<std::string>> tasks;  // node -> task ids
    std::set<std::string> open;                          // nodes not done
  };
  // Ends the subscription if nothing is open and it does not follow.
  void finishIfDone(Sub& s, LogEffects& fx);

  size_t max_;
  uint64_t next_ = 1;
  std::set<std::string> up_;
  std::map<std::string, Sub> subs_;             // by subscription id
  std::map<SubscriberId, std::string> bySubscriber_;
};

// The shell: served on the dispatcher's CURVE server (the agents' endpoint).
class LogBroker {
 public:
  struct Hooks {
    // The node the peer key belongs to, or an Error for the call (unknown, expired cert).
    std::function<Result<std::string>(const std::string& peerKey)> nodeOfKey;
    std::function<bool(const std::string& nodeId, const std::string& sessionId)> inSession;
    std::function<bool(const std::string& nodeId)> isManager;
    // Why the broker cannot serve now (not the leader, still loading), or nothing.
    std::function<std::optional<std::string>()> refusal;
    // The selector's tasks by node: services' tasks and named tasks, every assigned one.
    std::function<std::map<std::string, std::vector<std::string>>(const logapi::LogSelector*)> resolve;
  };
  // Items a node may have in flight per subscription (each reply is its credit).
  static constexpr uint32_t kSubscriptionsWindow = 64;

  LogBroker(Loop& loop, Hooks hooks, size_t maxSubscriptions = LogBook::kDefaultMaxSubscriptions);
  // Before the server it serves on closes: it ends its streams while they can still go.
  ~LogBroker();
  LogBroker(const LogBroker&) = delete;
  LogBroker& operator=(const LogBroker&) = delete;

  void serve(bus::Call call);
  // The node's session ended (expired, removed, replaced by session `keep`): its stream of
  // another session ends and it is missing from now on.
  void nodeGone(const std::string& nodeId, const std::string& keep = {});
  // Not the leader any more: every stream ends.
  void reset(const std::string& why);
  void status(nlohmann::json& j) const;

 private:
  struct Subscriber {
    std::shared_ptr<bus::ServerStream> stream;
    // Batches held for credits, in order, each with the publication it answers (if any):
    // a node's next batch waits until its last one went on (one in flight per node).
    std::vector<std::pair<bus::Buffer, std::shared_ptr<bus::Call>>> queued;
    bool finished = false;  // end the stream once the queue is empty
  };
  struct NodeStream {
    std::shared_ptr<bus::ServerStream> stream;
    std::string sessionId;
  };

  void subscribe(bus::Call& call, const logapi::SubscribeRequest& request);
  void subscriptions(bus::Call& call, const logapi::SubscriptionsRequest& request);
  void publish(bus::Call call, const logapi::PublishRequest& request);
  void apply(const LogEffects& fx);
  void sendToNode(const LogEffects::ToNode& msg);
  // Sends what the subscriber holds while it has credits; answers held publications.
  void pump(LogBook::SubscriberId id);
  void subscriberClosed(LogBook::SubscriberId id);
  void nodeStreamClosed(const std::string& nodeId, uint64_t streamId);

  Loop& loop_;
  Hooks hooks_;
  LogBook book_;
  LogBook::SubscriberId nextSubscriber_ = 1;
  std::map<LogBook::SubscriberId, Subscriber> subscribers_;
  std::map<std::string, NodeStream> nodes_;
  struct Counters {
    uint64_t subscribed = 0, refused = 0, published = 0, lines = 0, foreign = 0;
  } counters_;
  bus::RateLimitedWarning warning_;
  // Posted callbacks check it: a stream's close may come after the broker is gone.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

// A LogSubscription item for a node's stream.
bus::Buffer encodeLogSubscription(const LogEffects::ToNode& msg);
// A LogBatch that names missing nodes.
bus::Buffer encodeMissing(const std::vector<std::string>& nodes);

}  // namespace shoal::dispatcherd
