#include "services/agentd/log_agent.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <type_traits>

#include "common/protocols.h"

namespace shoal::agentd {
namespace {

using namespace std::chrono_literals;

std::string str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }

// Items the broker or the dispatcher may push ahead of us on a stream.
constexpr uint32_t kRelayWindow = 16;
constexpr uint32_t kSubscriptionsWindow = 64;
// A relay holds at most this many batches for a CLI that does not read.
constexpr size_t kMaxRelayQueue = 256;

ReadOptions readOptionsFrom(const logapi::LogOptions* o) {
  ReadOptions r;
  if (!o) return r;
  r.tail = o->tail();
  r.since = o->since();
  return r;
}

bus::Buffer batchOf(const std::vector<LogSource::Entry>& entries, const std::string& nodeId) {
  flatbuffers::FlatBufferBuilder fbb;
  auto messages = encodeEntries(fbb, entries, nodeId);
  auto body = logapi::CreateLogBatch(fbb, messages);
  return bus::message<logapi::Envelope>(fbb, logapi::Body::LogBatch, body.Union());
}

// A copy of a LogBatch received from the broker, to send on to the CLI.
bus::Buffer copyBatch(const logapi::LogBatch& in) {
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<flatbuffers::Offset<logapi::LogMessage>> out;
  if (in.messages())
    for (auto* m : *in.messages()) {
      auto line = m->line() ? fbb.CreateVector(m->line()->data(), m->line()->size())
                            : fbb.CreateVector<uint8_t>({});
      out.push_back(logapi::CreateLogMessage(fbb, fbb.CreateSharedString(str(m->task_id())),
                                             fbb.CreateSharedString(str(m->node_id())), m->stream(),
                                             m->timestamp(), line));
    }
  std::vector<std::string> missing;
  if (in.missing())
    for (auto* s : *in.missing()) missing.push_back(s->str());
  auto messages = fbb.CreateVector(out);
  auto body = logapi::CreateLogBatch(fbb, messages, fbb.CreateVectorOfStrings(missing));
  return bus::message<logapi::Envelope>(fbb, logapi::Body::LogBatch, body.Union());
}

wire::ErrorCode codeOf(const Error& e) {
  if (e.code > 0 && e.code <= static_cast<int>(wire::ErrorCode::MAX)) return static_cast<wire::ErrorCode>(e.code);
  return wire::ErrorCode::Unavailable;
}

}  // namespace

// ---- LogSource ----------------------------------------------------------------------------

LogSource::LogSource(const std::string& logsDir, const std::vector<std::string>& taskIds,
                     const ReadOptions& options, bool follow)
    : follow_(follow) {
  std::vector<Entry> all;
  for (auto& id : taskIds) {
    auto log = std::make_unique<TaskLog>(logsDir + "/" + id);
    auto lines = log->readAll(options);
    if (lines)
      for (auto& l : *lines) all.push_back({id, std::move(l)});
    if (!follow)
      for (auto& l : log->flush()) all.push_back({id, std::move(l)});
    logs_.emplace_back(id, std::move(log));
  }
  // By time across tasks; a task's own lines keep their file order.
  std::stable_sort(all.begin(), all.end(),
                   [](const Entry& a, const Entry& b) { return a.line.timestamp < b.line.timestamp; });
  queue_.assign(std::make_move_iterator(all.begin()), std::make_move_iterator(all.end()));
}

void LogSource::poll() {
  for (auto& [id, log] : logs_)
    for (auto& l : log->readNew()) queue_.push_back({id, std::move(l)});
}

std::vector<LogSource::Entry> LogSource::take(size_t maxLines, size_t maxBytes) {
  std::vector<Entry> out;
  size_t bytes = 0;
  while (!queue_.empty() && out.size() < maxLines) {
    size_t next = queue_.front().line.text.size() + 64;  // the message's own fields
    if (!out.empty() && bytes + next > maxBytes) break;
    bytes += next;
    out.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  return out;
}

uint64_t LogSource::badLines() const {
  uint64_t n = 0;
  for (auto& [id, log] : logs_) n += log->badLines();
  return n;
}

bool plausibleTaskId(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z');
  });
}

flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<logapi::LogMessage>>> encodeEntries(
    flatbuffers::FlatBufferBuilder& fbb, const std::vector<LogSource::Entry>& entries,
    const std::string& nodeId) {
  std::vector<flatbuffers::Offset<logapi::LogMessage>> out;
  auto node = fbb.CreateSharedString(nodeId);
  for (auto& e : entries) {
    auto line = fbb.CreateVector(reinterpret_cast<const uint8_t*>(e.line.text.data()), e.line.text.size());
    out.push_back(logapi::CreateLogMessage(
        fbb, fbb.CreateSharedString(e.taskId), node,
        e.line.stderrStream ? logapi::LogStream::Stderr : logapi::LogStream::Stdout, e.line.timestamp,
        line));
  }
  return fbb.CreateVector(out);
}

// ---- LogAgent: the CLI's subscriptions ------------------------------------------------------

LogAgent::LogAgent(Loop& loop, zmq::context_t& ctx, std::string logsDir, Resolver resolve,
                   std::function<std::string()> nodeId)
    : loop_(loop), ctx_(ctx), logsDir_(std::move(logsDir)), resolve_(std::move(resolve)),
      nodeId_(std::move(nodeId)) {}

LogAgent::~LogAgent() {
  closed();
  if (pollTimer_) loop_.cancel(pollTimer_);
  for (auto& [id, l] : locals_)
    if (l.stream->open()) l.stream->end(wire::ErrorCode::Unavailable, "agentd is stopping");
}

void LogAgent::serve(bus::Call call) {
  auto* env = call.as<logapi::Envelope>();
  if (!env || env->body_type() != logapi::Body::SubscribeRequest || !env->body())
    return call.fail(wire::ErrorCode::Unimplemented,
                     "agentd.sock serves the log protocol's SubscribeRequest only");
  auto* request = env->body_as_SubscribeRequest();
  auto* o = request->options();
  if (o && (o->tail() < -1 || o->since() < 0))
    return call.fail(wire::ErrorCode::InvalidArgument,
                     "tail must be -1 (all) or a count, and since a time after the epoch");
  if (request->local()) return serveLocal(call, *request);
  serveRemote(call, *request);
}

Result<std::vector<std::string>> LogAgent::resolveLocal(const logapi::LogSelector* selector) const {
  if (!selector || !selector->task_ids() || selector->task_ids()->size() == 0)
    return Error{"name a container (its task name or id): local logs are read by task",
                 static_cast<int>(wire::ErrorCode::InvalidArgument)};
  if (selector->service_ids() && selector->service_ids()->size() > 0)
    return Error{"local logs are read by task; `shoal service logs` reads a service's on every node",
                 static_cast<int>(wire::ErrorCode::InvalidArgument)};
  std::vector<std::string> ids;
  for (auto* ref : *selector->task_ids()) {
    auto id = resolve_(ref->string_view());
    if (id) {
      ids.push_back(*id);
      continue;
    }
    std::string text = ref->str();
    // A container's name, <service>.<slot>.<task id>, also names it by its last part.
    if (auto dot = text.rfind('.'); dot != std::string::npos && plausibleTaskId(text.substr(dot + 1)))
      if (auto byId = resolve_(text.substr(dot + 1)); byId && *byId == text.substr(dot + 1)) {
        ids.push_back(*byId);
        continue;
      }
    // A task the node no longer holds may still have its logs here.
    if (plausibleTaskId(text) && TaskLog(logsDir_ + "/" + text).readAll({0, 0}).ok()) {
      ids.push_back(text);
      continue;
    }
    return Error{"no such container on this node: " + text.substr(0, 100) + " (" + id.error().message + ")",
                 static_cast<int>(wire::ErrorCode::NotFound)};
  }
  return ids;
}

template <class Map>
void LogAgent::watchStream(Map& map, uint64_t id, void (LogAgent::*pump)(uint64_t)) {
  auto& stream = map[id].stream;
  stream->onCredit([this, id, pump] { (this->*pump)(id); });
  // close() calls this from inside the stream: erase it later, and only while we live.
  stream->onClose([this, id, &map, &loop = loop_, alive = std::weak_ptr<int>(alive_)] {
    loop.post([this, id, &map, alive] {
      if (!alive.lock()) return;
      auto it = map.find(id);
      if (it == map.end()) return;
      if constexpr (std::is_same_v<Map, std::map<uint64_t, Relay>>)
        if (it->second.upstream && client_) client_->cancel(it->second.upstream);
      map.erase(it);
    });
  });
}

void LogAgent::serveLocal(bus::Call& call, const logapi::SubscribeRequest& request) {
  auto ids = resolveLocal(request.selector());
  if (!ids) return call.fail(codeOf(ids.error()), ids.error().message);
  bool follow = request.options() && request.options()->follow();
  auto source = std::make_unique<LogSource>(logsDir_, *ids, readOptionsFrom(request.options()), follow);
  ++counters_.local;
  uint64_t id = nextId_++;
  locals_[id] = LocalStream{call.openStream(), std::move(source)};
  watchStream(locals_, id, &LogAgent::pumpLocal);
  pumpLocal(id);
  if (follow) armPoll();
}

void LogAgent::pumpLocal(uint64_t id) {
  auto it = locals_.find(id);
  if (it == locals_.end()) return;
  auto stream = it->second.stream;
  auto& source = *it->second.source;
  while (stream->open() && stream->credits() > 0 && !source.empty())
    if (!stream->send(batchOf(source.take(kMaxBatchLines, kMaxBatchBytes), nodeId_()))) return;
  if (!stream->open()) return;
  if (source.follow() && source.queued() > kMaxQueuedLines)
    return stream->end(wire::ErrorCode::ResourceExhausted,
                       "the reader fell behind the log by more than " + std::to_string(kMaxQueuedLines) +
                           " lines; read again with --since");
  if (!source.follow() && source.empty()) stream->end();
}

void LogAgent::serveRemote(bus::Call& call, const logapi::SubscribeRequest& request) {
  if (!client_ || !link_)
    return call.fail(wire::ErrorCode::Unavailable,
                     "this node has no session with the swarm's managers (not in a swarm, or the "
                     "leader cannot be reached); `shoal info` shows why");
  // The request goes on as it came; the broker resolves it against the store's tasks.
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<std::string> services, tasks;
  if (auto* s = request.selector()) {
    if (s->service_ids())
      for (auto* v : *s->service_ids()) services.push_back(v->str());
    if (s->task_ids())
      for (auto* v : *s->task_ids()) tasks.push_back(v->str());
  }
  auto servicesVec = fbb.CreateVectorOfStrings(services);
  auto tasksVec = fbb.CreateVectorOfStrings(tasks);
  auto selector = logapi::CreateLogSelector(fbb, servicesVec, tasksVec);
  auto* o = request.options();
  auto options = logapi::CreateLogOptions(fbb, o && o->follow(), o ? o->tail() : -1, o ? o->since() : 0);
  auto body = logapi::CreateSubscribeRequest(fbb, selector, options, false);
  ++counters_.relayed;
  uint64_t id = nextId_++;
  relays_[id].stream = call.openStream();
  watchStream(relays_, id, &LogAgent::pumpRelay);
  uint64_t gen = generation_;
  relays_[id].upstream = client_->openStream(
      bus::message<logapi::Envelope>(fbb, logapi::Body::SubscribeRequest, body.Union()), kRelayWindow,
      [this, id, gen](const bus::Frame& f) {
        if (gen == generation_) onRelayItem(id, f);
      },
      [this, id, gen](Status st) {
        if (gen == generation_) onRelayEnd(id, std::move(st));
      },
      false);
}

void LogAgent::onRelayItem(uint64_t id, const bus::Frame& frame) {
  auto it = relays_.find(id);
  if (it == relays_.end()) return;
  auto* env = frame.as<logapi::Envelope>();
  auto* batch = env ? env->body_as_LogBatch() : nullptr;
  if (!batch) return warning_.warn("the broker sent a log stream item that is not a LogBatch; dropped");
  if (it->second.queued.size() >= kMaxRelayQueue) {
    if (client_) client_->cancel(it->second.upstream);
    it->second.upstream = 0;
    return it->second.stream->end(wire::ErrorCode::ResourceExhausted,
                                  "the log reader fell behind; read again with --since");
  }
  it->second.queued.push_back(copyBatch(*batch));
  pumpRelay(id);
}

void LogAgent::onRelayEnd(uint64_t id, Status st) {
  auto it = relays_.find(id);
  if (it == relays_.end()) return;
  it->second.upstream = 0;
  it->second.ended = std::move(st);
  pumpRelay(id);
}

// The CLI's credits pace the broker: each item sent on grants one upstream.
void LogAgent::pumpRelay(uint64_t id) {
  auto it = relays_.find(id);
  if (it == relays_.end()) return;
  auto stream = it->second.stream;
  auto& r = it->second;
  while (stream->open() && stream->credits() > 0 && !r.queued.empty()) {
    bus::Buffer next = std::move(r.queued.front());
    r.queued.pop_front();
    if (!stream->send(std::move(next))) return;
    if (r.upstream && client_) client_->grant(r.upstream, 1);
  }
  if (!stream->open() || !r.queued.empty() || !r.ended) return;
  if (r.ended->ok()) return stream->end();
  stream->end(codeOf(r.ended->error()), r.ended->error().message);
}

// ---- LogAgent: the session's side --------------------------------------------------------------

void LogAgent::opened(Link link) {
  closed();
  link_ = std::move(link);
  ++generation_;
  client_ = std::make_unique<bus::Client>(loop_, ctx_, kLogProtocol);
  client_->setCurve(link_->keys);
  if (auto st = client_->connect(link_->endpoint); !st) {
    spdlog::warn("logs: cannot connect to {}: {}; service logs will not reach this node until the "
                 "next session", link_->endpoint, st.error().message);
    return;
  }
  openSubscriptions();
}

void LogAgent::openSubscriptions() {
  if (!client_ || !link_) return;
  flatbuffers::FlatBufferBuilder fbb;
  auto body = logapi::CreateSubscriptionsRequest(fbb, fbb.CreateString(link_->sessionId));
  uint64_t gen = generation_;
  subscriptionsStream_ = client_->openStream(
      bus::message<logapi::Envelope>(fbb, logapi::Body::SubscriptionsRequest, body.Union()),
      kSubscriptionsWindow,
      [this, gen](const bus::Frame& f) {
        if (gen == generation_) onSubscription(f);
      },
      [this, gen](Status st) {
        if (gen != generation_) return;
        subscriptionsStream_ = 0;
        // The session lives on (else closed() came first): ask again shortly.
        spdlog::info("logs: the subscriptions stream ended ({}); opening it again",
                     st ? std::string("by the dispatcher") : st.error().message);
        publications_.clear();
        reopenTimer_ = loop_.after(1s, [this] {
          reopenTimer_ = 0;
          openSubscriptions();
        });
      });
}

void LogAgent::onSubscription(const bus::Frame& frame) {
  auto* env = frame.as<logapi::Envelope>();
  auto* sub = env ? env->body_as_LogSubscription() : nullptr;
  if (!sub) return warning_.warn("the dispatcher sent a subscriptions item that is not a LogSubscription; dropped");
  std::string id = str(sub->id());
  if (sub->close()) {
    publications_.erase(id);
    return;
  }
  std::vector<std::string> tasks;
  if (sub->selector() && sub->selector()->task_ids())
    for (auto* t : *sub->selector()->task_ids()) {
      // Never a path out of the logs dir, whoever sent it.
      if (plausibleTaskId(t->string_view())) tasks.push_back(t->str());
      else warning_.warn("log subscription " + id.substr(0, 64) + " names a task id that is not one; skipped");
    }
  ++counters_.subscriptions;
  bool follow = sub->options() && sub->options()->follow();
  publications_[id] = Publication{
      std::make_unique<LogSource>(logsDir_, tasks, readOptionsFrom(sub->options()), follow), false};
  publishNext(id);
  if (follow) armPoll();
}

void LogAgent::publishNext(const std::string& id) {
  auto it = publications_.find(id);
  if (it == publications_.end() || it->second.inFlight || !client_ || !link_) return;
  auto& source = *it->second.source;
  if (source.follow() && source.empty()) return;  // the poll brings more
  auto entries = source.take(kMaxBatchLines, kMaxBatchBytes);
  bool closing = !source.follow() && source.empty();
  flatbuffers::FlatBufferBuilder fbb;
  auto sid = fbb.CreateString(link_->sessionId);
  auto subId = fbb.CreateString(id);
  auto messages = encodeEntries(fbb, entries, nodeId_());
  auto body = logapi::CreatePublishRequest(fbb, sid, subId, messages, closing);
  it->second.inFlight = true;
  ++counters_.publishes;
  counters_.linesPublished += entries.size();
  uint64_t gen = generation_;
  client_->call(bus::message<logapi::Envelope>(fbb, logapi::Body::PublishRequest, body.Union()),
                kPublishTimeout, [this, id, gen, closing](Result<bus::Frame> r) {
                  onPublished(id, gen, closing, std::move(r));
                });
}

void LogAgent::onPublished(const std::string& id, uint64_t gen, bool closing, Result<bus::Frame> r) {
  if (gen != generation_) return;
  auto it = publications_.find(id);
  if (it == publications_.end()) return;
  it->second.inFlight = false;
  if (!r) {
    // The subscriber went away (NotFound) or the dispatcher did: stop this one.
    spdlog::debug("logs: publishing {} stopped: {}", id, r.error().message);
    publications_.erase(it);
    return;
  }
  if (closing) {
    publications_.erase(it);
    return;
  }
  publishNext(id);
}

void LogAgent::closed() {
  if (reopenTimer_) loop_.cancel(reopenTimer_);
  reopenTimer_ = 0;
  ++generation_;
  publications_.clear();
  subscriptionsStream_ = 0;
  bool hadLink = link_.has_value();
  link_.reset();
  // The CLIs reading through the session hear why their stream ended.
  std::vector<std::shared_ptr<bus::ServerStream>> ending;
  for (auto& [id, r] : relays_) ending.push_back(r.stream);
  relays_.clear();
  for (auto& s : ending)
    if (s->open())
      s->end(wire::ErrorCode::Unavailable,
             "this node's session with the managers ended (the leader changed or cannot be "
             "reached); run the command again once `shoal info` shows the swarm active");
  // Not destroyed here: this may run inside one of its callbacks.
  if (client_) loop_.post([old = std::shared_ptr<bus::Client>(std::move(client_))] {});
  if (hadLink) spdlog::debug("logs: the session closed");
}

// ---- following -------------------------------------------------------------------------------

bool LogAgent::anyFollower() const {
  for (auto& [id, l] : locals_)
    if (l.source->follow()) return true;
  for (auto& [id, p] : publications_)
    if (p.source->follow()) return true;
  return false;
}

void LogAgent::armPoll() {
  if (pollTimer_) return;
  pollTimer_ = loop_.every(kPoll, [this] { poll(); });
}

void LogAgent::poll() {
  if (!anyFollower()) {
    loop_.cancel(pollTimer_);
    pollTimer_ = 0;
    return;
  }
  std::vector<uint64_t> locals;
  for (auto& [id, l] : locals_)
    if (l.source->follow()) {
      l.source->poll();
      locals.push_back(id);
    }
  for (auto id : locals) pumpLocal(id);
  std::vector<std::string> pubs;
  for (auto& [id, p] : publications_)
    if (p.source->follow()) {
      p.source->poll();
      pubs.push_back(id);
    }
  for (auto& id : pubs) publishNext(id);
}

void LogAgent::status(nlohmann::json& j) const {
  uint64_t bad = 0;
  for (auto& [id, l] : locals_) bad += l.source->badLines();
  for (auto& [id, p] : publications_) bad += p.source->badLines();
  j["logs"] = {{"local_streams", locals_.size()},
               {"relays", relays_.size()},
               {"publications", publications_.size()},
               {"connected", client_ != nullptr},
               {"subscriptions_stream", subscriptionsStream_ != 0},
               {"served", {{"local", counters_.local}, {"relayed", counters_.relayed}}},
               {"subscriptions", counters_.subscriptions},
               {"publishes", counters_.publishes},
               {"lines_published", counters_.linesPublished},
               {"bad_lines", bad}};
}

}  // namespace shoal::agentd
