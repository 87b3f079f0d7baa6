#pragma once
// agentd's side of task logs (docs/containers.md "Logs", schemas/logs.fbs).
//
// On agentd.sock it serves the CLI's SubscribeRequest: with local = true from this node's
// own files (`shoal container logs`, names resolved by the worker); otherwise it forwards the
// subscription to the leader's dispatcherd and relays the LogBatch items back (`shoal
// service logs` on a manager). While the node's session is up it also keeps a
// SubscriptionsRequest stream open at the leader's dispatcherd and publishes the lines of
// each LogSubscription it is sent (PublishRequest: at most kMaxBatchLines lines or
// kMaxBatchBytes per request, one request in flight per subscription, close = true after the
// last one unless it follows).
//
// The log traffic has a connection of its own to the session's manager (same node key, same
// CURVE identity): a bus::Client reads one protocol, and a burst of log lines must not queue
// in front of the session's heartbeats and assignments.

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "common/bus.h"
#include "common/loop.h"
#include "common/result.h"
#include "logs_generated.h"
#include "services/agentd/log_reader.h"

namespace shoal::agentd {

// The lines of one subscription's tasks on this node: read once, then followed.
class LogSource {
 public:
  struct Entry {
    std::string taskId;
    LogLine line;
  };
  // Reads what the tasks' files hold now (tail and since per task), merged by time. Tasks
  // without a log dir are skipped (a task that never started has none).
  LogSource(const std::string& logsDir, const std::vector<std::string>& taskIds,
            const ReadOptions& options, bool follow);
  // Lines appended since (follow).
  void poll();
  // Up to maxLines lines / maxBytes of text, oldest first (at least one line if any).
  std::vector<Entry> take(size_t maxLines, size_t maxBytes);
  bool empty() const { return queue_.empty(); }
  size_t queued() const { return queue_.size(); }
  bool follow() const { return follow_; }
  uint64_t badLines() const;

 private:
  std::vector<std::pair<std::string, std::unique_ptr<TaskLog>>> logs_;
  std::deque<Entry> queue_;
  bool follow_;
};

// A task id as the managers make them: what may name a dir under <state>/logs.
bool plausibleTaskId(std::string_view id);

// LogMessages of these entries, for a LogBatch or a PublishRequest.
flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<logapi::LogMessage>>> encodeEntries(
    flatbuffers::FlatBufferBuilder& fbb, const std::vector<LogSource::Entry>& entries,
    const std::string& nodeId);

class LogAgent {
 public:
  using Resolver = std::function<Result<std::string>(std::string_view ref)>;
  // Where the session is open: the log connection goes to the same dispatcher as the node.
  struct Link {
    std::string endpoint;  // tcp://host:port of the leader's dispatcher
    bus::CurveClientKeys keys;
    std::string sessionId;
  };

  static constexpr auto kPoll = std::chrono::milliseconds(250);
  static constexpr size_t kMaxBatchLines = 1000;
  static constexpr size_t kMaxBatchBytes = 64u << 10;
  // A follower whose reader is this far behind is ended rather than held in memory.
  static constexpr size_t kMaxQueuedLines = 200'000;
  static constexpr auto kPublishTimeout = std::chrono::seconds(60);

  LogAgent(Loop& loop, zmq::context_t& ctx, std::string logsDir, Resolver resolve,
           std::function<std::string()> nodeId);
  ~LogAgent();
  LogAgent(const LogAgent&) = delete;
  LogAgent& operator=(const LogAgent&) = delete;

  // kLogProtocol on agentd.sock: the CLI's SubscribeRequest.
  void serve(bus::Call call);
  // Session hooks (session.h): the session is up at link / it is gone.
  void opened(Link link);
  void closed();
  void status(nlohmann::json& j) const;

 private:
  struct LocalStream {
    std::shared_ptr<bus::ServerStream> stream;
    std::unique_ptr<LogSource> source;
  };
  struct Relay {
    std::shared_ptr<bus::ServerStream> stream;
    uint64_t upstream = 0;
    std::deque<bus::Buffer> queued;
    std::optional<Status> ended;  // the broker ended it: end the CLI's once queued went
  };
  struct Publication {
    std::unique_ptr<LogSource> source;
    bool inFlight = false;
  };

  void serveLocal(bus::Call& call, const logapi::SubscribeRequest& request);
  void serveRemote(bus::Call& call, const logapi::SubscribeRequest& request);
  // The task ids a local selector names, or an error naming the first that is not here.
  Result<std::vector<std::string>> resolveLocal(const logapi::LogSelector* selector) const;
  void pumpLocal(uint64_t id);
  void pumpRelay(uint64_t id);
  void onRelayItem(uint64_t id, const bus::Frame& frame);
  void onRelayEnd(uint64_t id, Status st);

  void openSubscriptions();
  void onSubscription(const bus::Frame& frame);
  void publishNext(const std::string& id);
  void onPublished(const std::string& id, uint64_t generation, bool closing, Result<bus::Frame> r);

  void armPoll();
  void poll();
  bool anyFollower() const;
  // Sets a stream's credit and close callbacks; `id` indexes the map it is kept in.
  template <class Map>
  void watchStream(Map& map, uint64_t id, void (LogAgent::*pump)(uint64_t));

  Loop& loop_;
  zmq::context_t& ctx_;
  std::string logsDir_;
  Resolver resolve_;
  std::function<std::string()> nodeId_;

  uint64_t nextId_ = 1;
  std::map<uint64_t, LocalStream> locals_;
  std::map<uint64_t, Relay> relays_;

  // While the session is up.
  std::optional<Link> link_;
  uint64_t generation_ = 0;  // of link_: callbacks of an older link are ignored
  std::unique_ptr<bus::Client> client_;
  uint64_t subscriptionsStream_ = 0;
  Loop::TimerId reopenTimer_ = 0;
  std::map<std::string, Publication> publications_;

  Loop::TimerId pollTimer_ = 0;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
  bus::RateLimitedWarning warning_;
  struct Counters {
    uint64_t local = 0, relayed = 0, subscriptions = 0, publishes = 0, linesPublished = 0, refused = 0;
  } counters_;
};

}  // namespace shoal::agentd
