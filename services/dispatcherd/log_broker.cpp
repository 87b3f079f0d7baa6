#include "services/dispatcherd/log_broker.h"

#include <spdlog/spdlog.h>

#include "common/protocols.h"

namespace shoal::dispatcherd {
namespace {

std::string str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }

bus::Buffer publishReply() {
  flatbuffers::FlatBufferBuilder fbb;
  return bus::message<logapi::Envelope>(fbb, logapi::Body::PublishReply,
                                        logapi::CreatePublishReply(fbb).Union());
}

LogOptionsValue optionsFrom(const logapi::LogOptions* o) {
  LogOptionsValue v;
  if (!o) return v;
  v.follow = o->follow();
  v.tail = o->tail();
  v.since = o->since();
  return v;
}

}  // namespace

// ---- LogBook ----------------------------------------------------------------------------

Result<LogEffects> LogBook::subscribe(SubscriberId subscriber,
                                      const std::map<std::string, std::vector<std::string>>& tasksByNode,
                                      const LogOptionsValue& options) {
  if (subs_.size() >= max_)
    return Error{std::to_string(max_) + " log subscriptions are open on this manager, its limit; "
                     "end some `service logs -f` and try again",
                 static_cast<int>(wire::ErrorCode::ResourceExhausted)};
  if (bySubscriber_.count(subscriber))
    return Error{"subscriber " + std::to_string(subscriber) + " already has a subscription",
                 static_cast<int>(wire::ErrorCode::InvalidArgument)};
  Sub s;
  s.id = "logs-" + std::to_string(next_++);
  s.subscriber = subscriber;
  s.options = options;
  LogEffects fx;
  for (auto& [node, ids] : tasksByNode) {
    if (ids.empty()) continue;
    s.tasks[node] = std::set<std::string>(ids.begin(), ids.end());
    if (!isUp(node)) {
      fx.missing[subscriber].push_back(node);
      continue;
    }
    s.open.insert(node);
    fx.toNodes.push_back({node, s.id, ids, options, false});
  }
  bySubscriber_[subscriber] = s.id;
  auto& stored = subs_[s.id] = std::move(s);
  finishIfDone(stored, fx);
  return fx;
}

void LogBook::finishIfDone(Sub& s, LogEffects& fx) {
  if (!s.open.empty() || s.options.follow) return;
  fx.finished.push_back(s.subscriber);
  bySubscriber_.erase(s.subscriber);
  subs_.erase(s.id);
}

LogEffects LogBook::unsubscribe(SubscriberId subscriber) {
  LogEffects fx;
  auto it = bySubscriber_.find(subscriber);
  if (it == bySubscriber_.end()) return fx;
  auto sub = subs_.find(it->second);
  if (sub != subs_.end()) {
    for (auto& node : sub->second.open) fx.toNodes.push_back({node, sub->first, {}, {}, true});
    subs_.erase(sub);
  }
  bySubscriber_.erase(it);
  return fx;
}

LogEffects LogBook::nodeDown(const std::string& nodeId) {
  up_.erase(nodeId);
  LogEffects fx;
  std::vector<std::string> ids;
  for (auto& [id, s] : subs_)
    if (s.open.count(nodeId)) ids.push_back(id);
  for (auto& id : ids) {
    Sub& s = subs_[id];
    s.open.erase(nodeId);
    fx.missing[s.subscriber].push_back(nodeId);
    finishIfDone(s, fx);
  }
  return fx;
}

LogBook::Verdict LogBook::check(const std::string& nodeId, const std::string& subscriptionId,
                                SubscriberId* subscriber) const {
  auto it = subs_.find(subscriptionId);
  if (it == subs_.end()) return Verdict::Unknown;
  if (!it->second.open.count(nodeId)) return Verdict::NotYours;
  if (subscriber) *subscriber = it->second.subscriber;
  return Verdict::Relay;
}

bool LogBook::allowed(const std::string& nodeId, const std::string& subscriptionId,
                      const std::string& taskId) const {
  auto it = subs_.find(subscriptionId);
  if (it == subs_.end()) return false;
  auto node = it->second.tasks.find(nodeId);
  return node != it->second.tasks.end() && node->second.count(taskId) > 0;
}

LogEffects LogBook::nodeClosed(const std::string& nodeId, const std::string& subscriptionId) {
  LogEffects fx;
  auto it = subs_.find(subscriptionId);
  if (it == subs_.end() || !it->second.open.erase(nodeId)) return fx;
  finishIfDone(it->second, fx);
  return fx;
}

std::optional<std::string> LogBook::subscriptionOf(SubscriberId subscriber) const {
  auto it = bySubscriber_.find(subscriber);
  if (it == bySubscriber_.end()) return std::nullopt;
  return it->second;
}

nlohmann::json LogBook::json() const {
  nlohmann::json subs = nlohmann::json::array();
  for (auto& [id, s] : subs_) {
    size_t tasks = 0;
    for (auto& [node, ids] : s.tasks) tasks += ids.size();
    subs.push_back({{"id", id}, {"follow", s.options.follow}, {"nodes", s.tasks.size()},
                    {"nodes_open", s.open.size()}, {"tasks", tasks}});
  }
  return {{"nodes_up", up_.size()}, {"subscriptions", std::move(subs)}, {"max", max_}};
}

// ---- encoding -----------------------------------------------------------------------------

bus::Buffer encodeLogSubscription(const LogEffects::ToNode& msg) {
  flatbuffers::FlatBufferBuilder fbb;
  auto id = fbb.CreateString(msg.subscriptionId);
  auto tasks = fbb.CreateVectorOfStrings(msg.taskIds);
  auto selector = logapi::CreateLogSelector(fbb, 0, tasks);
  auto options = logapi::CreateLogOptions(fbb, msg.options.follow, msg.options.tail, msg.options.since);
  auto body = logapi::CreateLogSubscription(fbb, id, selector, options, msg.close);
  return bus::message<logapi::Envelope>(fbb, logapi::Body::LogSubscription, body.Union());
}

bus::Buffer encodeMissing(const std::vector<std::string>& nodes) {
  flatbuffers::FlatBufferBuilder fbb;
  auto missing = fbb.CreateVectorOfStrings(nodes);
  auto body = logapi::CreateLogBatch(fbb, 0, missing);
  return bus::message<logapi::Envelope>(fbb, logapi::Body::LogBatch, body.Union());
}

// ---- LogBroker --------------------------------------------------------------------------

LogBroker::LogBroker(Loop& loop, Hooks hooks, size_t maxSubscriptions)
    : loop_(loop), hooks_(std::move(hooks)), book_(maxSubscriptions) {}

LogBroker::~LogBroker() { reset("dispatcherd is stopping"); }

void LogBroker::serve(bus::Call call) {
  auto* env = call.as<logapi::Envelope>();
  if (!env) return call.fail(wire::ErrorCode::UnknownProtocol, "the log broker serves the log protocol");
  if (env->body_type() != logapi::Body::NONE && !env->body())
    return call.fail(wire::ErrorCode::BadMessage, std::string("a ") + logapi::EnumNameBody(env->body_type()) +
                                                      " without its body: send the request's table");
  if (auto why = hooks_.refusal())
    return call.fail(wire::ErrorCode::NotLeader, "this dispatcher serves no logs now (" + *why +
                                                     "); ask through a session with the leader's");
  auto node = hooks_.nodeOfKey(call.peerKey());
  if (!node) return call.fail(wire::ErrorCode::NotFound, node.error().message);
  switch (env->body_type()) {
    case logapi::Body::SubscribeRequest:
      if (!hooks_.isManager(*node))
        return call.fail(wire::ErrorCode::InvalidArgument,
                         "node " + *node + " is a worker: service logs are read on a manager, as "
                         "in Swarm (`container logs` reads this node's own)");
      return subscribe(call, *env->body_as_SubscribeRequest());
    case logapi::Body::SubscriptionsRequest: {
      auto* r = env->body_as_SubscriptionsRequest();
      if (!hooks_.inSession(*node, str(r->session_id())))
        return call.fail(wire::ErrorCode::NotFound,
                         "no session " + str(r->session_id()).substr(0, 64) + " for node " + *node +
                             " here: open a session, then the subscriptions stream in it");
      return subscriptions(call, *r);
    }
    case logapi::Body::PublishRequest: {
      auto* r = env->body_as_PublishRequest();
      if (!hooks_.inSession(*node, str(r->session_id())))
        return call.fail(wire::ErrorCode::NotFound,
                         "no session " + str(r->session_id()).substr(0, 64) + " for node " + *node +
                             " here: its subscriptions ended with it; stop publishing");
      return publish(std::move(call), *r);
    }
    default:
      return call.fail(wire::ErrorCode::Unimplemented,
                       std::string("log message ") + logapi::EnumNameBody(env->body_type()) +
                           " is not a request the broker serves (Subscribe, Subscriptions, Publish)");
  }
}

void LogBroker::subscribe(bus::Call& call, const logapi::SubscribeRequest& request) {
  LogOptionsValue options = optionsFrom(request.options());
  if (options.tail < -1 || options.since < 0)
    return call.fail(wire::ErrorCode::InvalidArgument,
                     "tail must be -1 (all) or a count and since a time after the epoch");
  if (request.local())
    return call.fail(wire::ErrorCode::InvalidArgument,
                     "local = true is for agentd's own socket; the broker reads every node");
  auto byNode = hooks_.resolve(request.selector());
  LogBook::SubscriberId id = nextSubscriber_++;
  auto fx = book_.subscribe(id, byNode, options);
  if (!fx) {
    ++counters_.refused;
    return call.fail(static_cast<wire::ErrorCode>(fx.error().code), fx.error().message);
  }
  ++counters_.subscribed;
  auto stream = call.openStream();
  subscribers_[id].stream = stream;
  stream->onCredit([this, id] { pump(id); });
  // Called from inside the stream's close(): what it does must not free the stream there.
  stream->onClose([this, id, &loop = loop_, alive = std::weak_ptr<int>(alive_)] {
    loop.post([this, id, alive] {
      if (alive.lock()) subscriberClosed(id);
    });
  });
  size_t tasks = 0;
  for (auto& [node, ids] : byNode) tasks += ids.size();
  spdlog::info("log subscription {}: {} tasks on {} nodes{}", book_.subscriptionOf(id).value_or("(done)"),
               tasks, byNode.size(), options.follow ? ", following" : "");
  apply(*fx);
}

void LogBroker::subscriptions(bus::Call& call, const logapi::SubscriptionsRequest& request) {
  std::string nodeId = *hooks_.nodeOfKey(call.peerKey());
  if (auto old = nodes_.find(nodeId); old != nodes_.end()) {
    auto previous = old->second.stream;
    nodes_.erase(old);
    previous->end(wire::ErrorCode::Cancelled, "a newer subscriptions stream of this node replaced this one");
    apply(book_.nodeDown(nodeId));
  }
  auto stream = call.openStream();
  nodes_[nodeId] = NodeStream{stream, str(request.session_id())};
  book_.nodeUp(nodeId);
  uint64_t streamId = stream->id();
  stream->onClose([this, nodeId, streamId, &loop = loop_, alive = std::weak_ptr<int>(alive_)] {
    loop.post([this, nodeId, streamId, alive] {
      if (alive.lock()) nodeStreamClosed(nodeId, streamId);
    });
  });
  spdlog::debug("node {} opened its log subscriptions stream", nodeId);
}

void LogBroker::publish(bus::Call call, const logapi::PublishRequest& request) {
  std::string nodeId = *hooks_.nodeOfKey(call.peerKey());
  std::string subId = str(request.subscription_id());
  LogBook::SubscriberId subscriber = 0;
  auto verdict = book_.check(nodeId, subId, &subscriber);
  if (verdict != LogBook::Verdict::Relay)
    return call.fail(wire::ErrorCode::NotFound,
                     "no log subscription " + subId.substr(0, 64) + " for node " + nodeId +
                         " here (its subscriber went away, or the node closed it): stop publishing it");
  ++counters_.published;
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<flatbuffers::Offset<logapi::LogMessage>> out;
  auto node = fbb.CreateSharedString(nodeId);
  if (auto* messages = request.messages())
    for (auto* m : *messages) {
      std::string task = str(m->task_id());
      // A node speaks only for its own tasks in this subscription.
      if (!book_.allowed(nodeId, subId, task)) {
        ++counters_.foreign;
        continue;
      }
      auto line = m->line() ? fbb.CreateVector(m->line()->data(), m->line()->size()) : fbb.CreateVector<uint8_t>({});
      out.push_back(logapi::CreateLogMessage(fbb, fbb.CreateSharedString(task), node, m->stream(),
                                             m->timestamp(), line));
    }
  if (out.size() < (request.messages() ? request.messages()->size() : 0))
    warning_.warn("node " + nodeId + " published lines of tasks not in subscription " + subId + "; dropped");
  counters_.lines += out.size();
  auto held = std::make_shared<bus::Call>(std::move(call));
  auto& s = subscribers_[subscriber];
  if (!out.empty()) {
    auto body = logapi::CreateLogBatch(fbb, fbb.CreateVector(out));
    s.queued.push_back({bus::message<logapi::Envelope>(fbb, logapi::Body::LogBatch, body.Union()), held});
  } else {
    s.queued.push_back({bus::Buffer(), held});
  }
  LogEffects fx;
  if (request.close()) fx = book_.nodeClosed(nodeId, subId);
  pump(subscriber);
  apply(fx);
}

void LogBroker::apply(const LogEffects& fx) {
  for (auto& msg : fx.toNodes) sendToNode(msg);
  for (auto& [id, nodes] : fx.missing) {
    auto it = subscribers_.find(id);
    if (it == subscribers_.end()) continue;
    it->second.queued.push_back({encodeMissing(nodes), nullptr});
    pump(id);
  }
  for (auto id : fx.finished) {
    auto it = subscribers_.find(id);
    if (it == subscribers_.end()) continue;
    it->second.finished = true;
    pump(id);
  }
}

void LogBroker::sendToNode(const LogEffects::ToNode& msg) {
  auto it = nodes_.find(msg.nodeId);
  if (it == nodes_.end()) return;
  auto stream = it->second.stream;
  if (stream->send(encodeLogSubscription(msg))) return;
  // Out of credits (64 subscriptions unanswered) or gone: the node cannot follow.
  if (stream->open())
    stream->end(wire::ErrorCode::ResourceExhausted, "too many log subscriptions unread; open the stream again");
}

void LogBroker::pump(LogBook::SubscriberId id) {
  auto it = subscribers_.find(id);
  if (it == subscribers_.end()) return;
  auto stream = it->second.stream;  // alive through a send that ends it
  auto& queued = it->second.queued;
  size_t sent = 0;
  for (; sent < queued.size(); ++sent) {
    auto& [buf, call] = queued[sent];
    if (buf.size() > 0) {
      if (!stream->open() || stream->credits() == 0) break;
      if (!stream->send(std::move(buf))) break;  // it ended the stream: onClose cleans up
    }
    // The reply is the node's credit for its next batch: only once its lines went on.
    if (call) call->reply(publishReply());
  }
  it = subscribers_.find(id);
  if (it == subscribers_.end()) return;
  it->second.queued.erase(it->second.queued.begin(), it->second.queued.begin() + sent);
  if (it->second.finished && it->second.queued.empty() && stream->open()) stream->end();
}

void LogBroker::subscriberClosed(LogBook::SubscriberId id) {
  auto it = subscribers_.find(id);
  if (it == subscribers_.end()) return;
  for (auto& [buf, call] : it->second.queued)
    if (call) call->fail(wire::ErrorCode::NotFound, "the subscriber went away: stop publishing");
  subscribers_.erase(it);
  apply(book_.unsubscribe(id));
}

void LogBroker::nodeStreamClosed(const std::string& nodeId, uint64_t streamId) {
  auto it = nodes_.find(nodeId);
  if (it != nodes_.end() && it->second.stream->id() == streamId) nodes_.erase(it);
  else if (it != nodes_.end()) return;  // a newer stream replaced it
  apply(book_.nodeDown(nodeId));
}

void LogBroker::nodeGone(const std::string& nodeId, const std::string& keep) {
  auto it = nodes_.find(nodeId);
  if (it != nodes_.end() && !keep.empty() && it->second.sessionId == keep) return;
  if (it != nodes_.end()) {
    auto stream = it->second.stream;
    nodes_.erase(it);
    if (stream->open()) stream->end(wire::ErrorCode::NotFound, "the node's session ended: open a new one");
  }
  apply(book_.nodeDown(nodeId));
}

void LogBroker::reset(const std::string& why) {
  auto subscribers = std::move(subscribers_);
  auto nodes = std::move(nodes_);
  subscribers_.clear();
  nodes_.clear();
  for (auto& [id, s] : subscribers) {
    for (auto& [buf, call] : s.queued)
      if (call) call->fail(wire::ErrorCode::NotLeader, why);
    if (s.stream->open()) s.stream->end(wire::ErrorCode::NotLeader, why);
  }
  for (auto& [id, n] : nodes)
    if (n.stream->open()) n.stream->end(wire::ErrorCode::NotLeader, why);
  book_ = LogBook(book_.max());
}

void LogBroker::status(nlohmann::json& j) const {
  auto b = book_.json();
  b["subscribers"] = subscribers_.size();
  b["node_streams"] = nodes_.size();
  b["subscribed"] = counters_.subscribed;
  b["refused"] = counters_.refused;
  b["publications"] = counters_.published;
  b["lines"] = counters_.lines;
  b["foreign_lines_dropped"] = counters_.foreign;
  j["logs"] = std::move(b);
}

}  // namespace shoal::dispatcherd
