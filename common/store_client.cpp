#include "common/store_client.h"

#include <algorithm>

namespace shoal::store {

namespace {

using Clock = Loop::Clock;

// Credits of a watch: enough batches in flight to keep up, few enough that a stalled reader
// is cut off (and resyncs) rather than buffering without bound.
constexpr uint32_t kWatchWindow = 64;
constexpr uint32_t kLeadershipWindow = 4;

Error storeError(wire::ErrorCode code, std::string message) {
  return Error{std::move(message), static_cast<int>(code)};
}

Result<Objects> objectsOf(const bus::Frame& frame) {
  auto* env = frame.as<storeapi::Envelope>();
  auto* reply = env ? env->body_as_ObjectsReply() : nullptr;
  if (!reply) return storeError(wire::ErrorCode::BadMessage, "raftd answered a read without ObjectsReply");
  Objects out;
  out.index = reply->index();
  if (reply->objects())
    for (auto* o : *reply->objects())
      out.objects.emplace_back(o->data() ? std::string(reinterpret_cast<const char*>(o->data()->data()), o->data()->size())
                                         : std::string());
  return out;
}

Result<Object> objectOf(Result<bus::Frame> r) {
  if (!r) return r.error();
  auto all = objectsOf(*r);
  if (!all) return all.error();
  if (all->objects.size() != 1)
    return storeError(wire::ErrorCode::BadMessage,
                      "raftd answered a Get with " + std::to_string(all->objects.size()) + " objects");
  return Object{all->index, std::move(all->objects.front())};
}

std::vector<Change> changesOf(const storeapi::WatchEvents& batch) {
  std::vector<Change> out;
  if (!batch.events()) return out;
  out.reserve(batch.events()->size());
  for (auto* e : *batch.events()) {
    Change c;
    c.index = e->index();
    c.kind = e->kind();
    c.operation = e->operation();
    c.id = e->id() ? e->id()->str() : std::string();
    c.version = e->version();
    if (e->object()) c.object.assign(reinterpret_cast<const char*>(e->object()->data()), e->object()->size());
    out.push_back(std::move(c));
  }
  return out;
}

std::vector<objects::ObjectKind> kindsOrAll(std::vector<objects::ObjectKind> kinds) {
  if (!kinds.empty()) return kinds;
  for (auto k : objects::EnumValuesObjectKind())
    if (k != objects::ObjectKind::Unknown) kinds.push_back(k);
  return kinds;
}

bool taskOnNode(std::string_view data, std::string_view nodeId) {
  flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(data.data()), data.size());
  if (!v.VerifyBuffer<objects::Task>(nullptr)) return false;
  auto* t = flatbuffers::GetRoot<objects::Task>(data.data());
  return t->node_id() && t->node_id()->string_view() == nodeId;
}

}  // namespace

// --- Request builders --------------------------------------------------------------------

std::string configObject(std::string_view id, std::string_view name, std::string_view data,
                         uint64_t version) {
  flatbuffers::FlatBufferBuilder fbb(128 + data.size());
  auto ann = objects::CreateAnnotations(fbb, fbb.CreateString(name));
  auto spec = objects::CreateConfigSpec(
      fbb, ann, fbb.CreateVector(reinterpret_cast<const uint8_t*>(data.data()), data.size()));
  objects::Meta meta(version, 0, 0);
  auto cfg = objects::CreateConfig(fbb, fbb.CreateString(id), &meta, spec);
  fbb.Finish(cfg);
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

bus::Buffer txnRequest(const std::vector<ChangeSpec>& changes) {
  flatbuffers::FlatBufferBuilder inner;
  std::vector<flatbuffers::Offset<objects::Change>> offs;
  for (auto& c : changes)
    offs.push_back(objects::CreateChange(
        inner, c.kind, c.operation, inner.CreateString(c.id), c.expectedVersion,
        c.object.empty() ? 0
                         : inner.CreateVector(reinterpret_cast<const uint8_t*>(c.object.data()),
                                              c.object.size())));
  inner.Finish(objects::CreateStoreTxn(inner, inner.CreateVector(offs)), objects::StoreTxnIdentifier());
  flatbuffers::FlatBufferBuilder fbb(inner.GetSize() + 128);
  auto body = storeapi::CreateTxnRequest(fbb, fbb.CreateVector(inner.GetBufferPointer(), inner.GetSize()));
  return bus::message<storeapi::Envelope>(fbb, storeapi::Body::TxnRequest, body.Union());
}

bus::Buffer listRequest(objects::ObjectKind kind, bool local) { return listRequest(kind, ListFilter{}, local); }

bus::Buffer listRequest(objects::ObjectKind kind, const ListFilter& filter, bool local) {
  flatbuffers::FlatBufferBuilder fbb;
  auto service = filter.serviceId.empty() ? 0 : fbb.CreateString(filter.serviceId);
  auto node = filter.nodeId.empty() ? 0 : fbb.CreateString(filter.nodeId);
  storeapi::ListRequestBuilder b(fbb);
  b.add_kind(kind);
  if (!service.IsNull()) b.add_service_id(service);
  b.add_slot(filter.slot);
  if (!node.IsNull()) b.add_node_id(node);
  b.add_role(filter.role);
  b.add_local(local);
  auto body = b.Finish();
  return bus::message<storeapi::Envelope>(fbb, storeapi::Body::ListRequest, body.Union());
}

bus::Buffer getRequest(objects::ObjectKind kind, std::string_view id, bool local) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = storeapi::CreateGetRequest(fbb, kind, fbb.CreateString(id), 0, local);
  return bus::message<storeapi::Envelope>(fbb, storeapi::Body::GetRequest, body.Union());
}

bus::Buffer getByNameRequest(objects::ObjectKind kind, std::string_view name, bool local) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = storeapi::CreateGetRequest(fbb, kind, 0, fbb.CreateString(name), local);
  return bus::message<storeapi::Envelope>(fbb, storeapi::Body::GetRequest, body.Union());
}

bus::Buffer storeStatusRequest() {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = storeapi::CreateStatusRequest(fbb);
  return bus::message<storeapi::Envelope>(fbb, storeapi::Body::StatusRequest, body.Union());
}

bus::Buffer addMemberRequest(uint64_t nodeId, std::string_view address) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = storeapi::CreateAddMemberRequest(fbb, nodeId, fbb.CreateString(address));
  return bus::message<storeapi::Envelope>(fbb, storeapi::Body::AddMemberRequest, body.Union());
}

bus::Buffer removeMemberRequest(uint64_t nodeId) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = storeapi::CreateRemoveMemberRequest(fbb, nodeId);
  return bus::message<storeapi::Envelope>(fbb, storeapi::Body::RemoveMemberRequest, body.Union());
}

bus::Buffer transferLeaderRequest(uint64_t nodeId) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = storeapi::CreateTransferLeaderRequest(fbb, nodeId);
  return bus::message<storeapi::Envelope>(fbb, storeapi::Body::TransferLeaderRequest, body.Union());
}

bus::Buffer watchRequest(std::vector<objects::ObjectKind> kinds, uint64_t fromIndex) {
  return watchRequest(std::move(kinds), fromIndex, EventFilter{});
}

bus::Buffer watchRequest(std::vector<objects::ObjectKind> kinds, uint64_t fromIndex,
                         const EventFilter& filter) {
  flatbuffers::FlatBufferBuilder fbb;
  auto kindsVec = fbb.CreateVector(kinds);
  auto service = filter.serviceId.empty() ? 0 : fbb.CreateString(filter.serviceId);
  auto node = filter.nodeId.empty() ? 0 : fbb.CreateString(filter.nodeId);
  auto body = storeapi::CreateWatchRequest(fbb, kindsVec, fromIndex, service, node);
  return bus::message<storeapi::Envelope>(fbb, storeapi::Body::WatchRequest, body.Union());
}

bus::Buffer leadershipRequest() {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = storeapi::CreateLeadershipRequest(fbb);
  return bus::message<storeapi::Envelope>(fbb, storeapi::Body::LeadershipRequest, body.Union());
}

// --- Answers -------------------------------------------------------------------------------

wire::ErrorCode codeOf(const Error& error) { return static_cast<wire::ErrorCode>(error.code); }

bool retryable(const Error& error) {
  switch (codeOf(error)) {
    case wire::ErrorCode::NotLeader:
    case wire::ErrorCode::Unavailable:
      return true;
    case wire::ErrorCode::ResourceExhausted:
      // The code alone does not tell an overloaded raftd (retry shortly) from a transaction
      // too large or a store nearly full (retrying changes nothing); its message does.
      return error.message.find("overloaded") != std::string::npos;
    default:
      return false;
  }
}

std::string endpointIn(std::string_view runDir) { return "ipc://" + std::string(runDir) + "/raftd.sock"; }

// --- Client: calls ---------------------------------------------------------------------------

struct Client::Op {
  bool write;
  std::function<bus::Buffer()> build;  // a request per attempt: sending consumes it
  Clock::time_point deadline;
  Millis backoff;
  std::function<void(Result<bus::Frame>)> done;
  uint64_t busId = 0;       // the attempt in flight
  Loop::TimerId timer = 0;  // the next attempt
};

struct Client::Watch {
  std::vector<objects::ObjectKind> kinds;
  uint64_t fromIndex;
  EventFilter filter;
  EventsFn onEvents;
  ResyncFn onResync;
  uint64_t streamId = 0;
};

struct Client::Resyncing {
  std::vector<objects::ObjectKind> kinds;
  EventFilter filter;
  SnapshotFn onSnapshot;
  EventsFn onEvents;
  uint64_t fromIndex;                              // the watch's start, when not from a snapshot
  std::map<objects::ObjectKind, uint64_t> listed;  // each kind's list index in the last snapshot
  Snapshot pending;                                // lists gathered so far
  WatchId inner = 0;
  Loop::TimerId timer = 0;
  Millis backoff;
};

struct Client::LeaderSub {
  LeadershipFn onChange;
  Loop::TimerId timer = 0;
  Millis backoff;
  uint64_t streamId = 0;
  Leadership last;
  std::function<void()> ended;  // the stream is over: say so, and open it again later
};

Client::Client(Loop& loop, zmq::context_t& ctx, Backoff backoff)
    : loop_(loop), bus_(loop, ctx, kStoreProtocol), backoff_(backoff) {
  bus_.onDisconnect([this] { onDisconnect(); });
}

Client::~Client() {
  for (auto& [id, op] : ops_)
    if (op->timer) loop_.cancel(op->timer);
  for (auto& [id, r] : resyncing_)
    if (r->timer) loop_.cancel(r->timer);
  for (auto& [id, l] : leaders_)
    if (l->timer) loop_.cancel(l->timer);
}

Status Client::connect(const std::string& endpoint) { return bus_.connect(endpoint); }

void Client::start(bool write, std::function<bus::Buffer()> build, Millis timeout,
                   std::function<void(Result<bus::Frame>)> done) {
  uint64_t id = nextId_++;
  ops_[id] = std::make_unique<Op>(Op{write, std::move(build), loop_.now() + timeout, backoff_.first, std::move(done)});
  attempt(id);
}

void Client::attempt(uint64_t opId) {
  Op& op = *ops_.at(opId);
  op.timer = 0;
  auto left = std::chrono::duration_cast<Millis>(op.deadline - loop_.now());
  if (left <= Millis(0)) {
    auto done = std::move(op.done);
    ops_.erase(opId);
    return done(storeError(wire::ErrorCode::DeadlineExceeded, "not done: the deadline passed before it could be sent"));
  }
  op.busId = bus_.call(op.build(), left, [this, opId](Result<bus::Frame> r) { answered(opId, std::move(r)); });
}

void Client::answered(uint64_t opId, Result<bus::Frame> r) {
  auto it = ops_.find(opId);
  if (it == ops_.end()) return;
  it->second->busId = 0;
  if (!r) {
    auto code = codeOf(r.error());
    if (it->second->write && (code == wire::ErrorCode::DeadlineExceeded || code == wire::ErrorCode::Indeterminate)) {
      // Sent and not answered in time: raftd may have proposed it. Only a read tells.
      r = storeError(wire::ErrorCode::Indeterminate,
                     code == wire::ErrorCode::Indeterminate
                         ? r.error().message
                         : "no answer within the deadline (" + r.error().message +
                               "): the write may or may not have been applied; read before retrying");
    } else if (retryable(r.error())) {
      return retryLater(opId, r.error());
    }
  }
  auto op = std::move(it->second);
  ops_.erase(it);
  op->done(std::move(r));
}

void Client::retryLater(uint64_t opId, Error why) {
  auto it = ops_.find(opId);
  if (it == ops_.end()) return;
  Op& op = *it->second;
  Millis delay = op.backoff;
  op.backoff = std::min(op.backoff * 2, backoff_.max);
  if (loop_.now() + delay >= op.deadline) {
    auto done = std::move(op.done);
    ops_.erase(it);
    // Every attempt said that nothing was done, so a write was not applied.
    return done(storeError(wire::ErrorCode::DeadlineExceeded,
                           "not done within the deadline; raftd's last answer: " + why.message));
  }
  op.timer = loop_.after(delay, [this, opId] { attempt(opId); });
}

void Client::onDisconnect() {
  // raftd's process went away (or restarted). Writes in flight may have been proposed; reads
  // did nothing and are tried again.
  std::vector<uint64_t> inFlight;
  for (auto& [id, op] : ops_)
    if (op->busId) inFlight.push_back(id);
  for (auto id : inFlight) {
    auto it = ops_.find(id);
    if (it == ops_.end() || !it->second->busId) continue;
    bus_.cancel(it->second->busId);
    it->second->busId = 0;
    if (it->second->write) {
      auto op = std::move(it->second);
      ops_.erase(it);
      op->done(storeError(wire::ErrorCode::Indeterminate,
                          "the connection to raftd dropped while the write was in flight: it may or "
                          "may not have been applied; read before retrying"));
    } else {
      retryLater(id, storeError(wire::ErrorCode::Unavailable, "the connection to raftd dropped"));
    }
  }
  std::vector<WatchId> watches;
  for (auto& [id, w] : watches_) watches.push_back(id);
  for (auto id : watches) endWatch(id, storeError(wire::ErrorCode::Unavailable, "the connection to raftd dropped"));
  std::vector<WatchId> leaders;
  for (auto& [id, l] : leaders_) leaders.push_back(id);
  for (auto id : leaders) {
    auto it = leaders_.find(id);
    if (it == leaders_.end() || !it->second->streamId) continue;
    bus_.cancel(it->second->streamId);
    it->second->streamId = 0;
    it->second->ended();
  }
}

void Client::get(objects::ObjectKind kind, std::string_view id, ReadOptions options, ObjectFn fn) {
  start(false, [kind, id = std::string(id), local = options.local] { return getRequest(kind, id, local); },
        options.timeout, [fn = std::move(fn)](Result<bus::Frame> r) { fn(objectOf(std::move(r))); });
}

void Client::getByName(objects::ObjectKind kind, std::string_view name, ReadOptions options, ObjectFn fn) {
  start(false, [kind, name = std::string(name), local = options.local] { return getByNameRequest(kind, name, local); },
        options.timeout, [fn = std::move(fn)](Result<bus::Frame> r) { fn(objectOf(std::move(r))); });
}

void Client::list(objects::ObjectKind kind, const ListFilter& filter, ReadOptions options, ObjectsFn fn) {
  start(false, [kind, filter, local = options.local] { return listRequest(kind, filter, local); },
        options.timeout, [fn = std::move(fn)](Result<bus::Frame> r) {
          if (!r) return fn(r.error());
          fn(objectsOf(*r));
        });
}

void Client::txn(std::vector<ChangeSpec> changes, WriteOptions options, IndexFn fn) {
  start(true, [changes = std::move(changes)] { return txnRequest(changes); }, options.timeout,
        [fn = std::move(fn)](Result<bus::Frame> r) {
          if (!r) return fn(r.error());
          auto* env = r->as<storeapi::Envelope>();
          auto* reply = env ? env->body_as_TxnReply() : nullptr;
          // The write was applied (raftd answers only then) even if the answer is odd.
          if (!reply) return fn(storeError(wire::ErrorCode::Indeterminate, "raftd answered a Txn without TxnReply"));
          fn(reply->index());
        });
}

void Client::status(Millis timeout, JsonFn fn) {
  start(false, [] { return storeStatusRequest(); }, timeout, [fn = std::move(fn)](Result<bus::Frame> r) {
    if (!r) return fn(r.error());
    auto* env = r->as<storeapi::Envelope>();
    auto* body = env ? env->body_as_StatusReply() : nullptr;
    if (!body || !body->json()) return fn(storeError(wire::ErrorCode::BadMessage, "raftd answered Status without a StatusReply"));
    auto j = nlohmann::json::parse(body->json()->string_view(), nullptr, false);
    if (j.is_discarded()) return fn(storeError(wire::ErrorCode::BadMessage, "raftd's Status is not JSON"));
    fn(std::move(j));
  });
}

void Client::addMember(uint64_t raftId, std::string_view address, WriteOptions options, IndexFn fn) {
  start(true, [raftId, address = std::string(address)] { return addMemberRequest(raftId, address); },
        options.timeout, [fn = std::move(fn)](Result<bus::Frame> r) {
          if (!r) return fn(r.error());
          auto* env = r->as<storeapi::Envelope>();
          auto* reply = env ? env->body_as_MemberReply() : nullptr;
          if (!reply)
            return fn(storeError(wire::ErrorCode::Indeterminate, "raftd answered AddMember without MemberReply"));
          fn(reply->index());
        });
}

// --- Client: watches -------------------------------------------------------------------------

Client::WatchId Client::watch(std::vector<objects::ObjectKind> kinds, uint64_t fromIndex, EventFilter filter,
                              EventsFn onEvents, ResyncFn onResync) {
  WatchId id = nextId_++;
  watches_[id] = std::make_unique<Watch>(
      Watch{std::move(kinds), fromIndex, std::move(filter), std::move(onEvents), std::move(onResync)});
  openWatch(id);
  return id;
}

void Client::openWatch(WatchId id) {
  Watch& w = *watches_.at(id);
  w.streamId = bus_.openStream(
      watchRequest(w.kinds, w.fromIndex, w.filter), kWatchWindow,
      [this, id](const bus::Frame& frame) {
        auto it = watches_.find(id);
        if (it == watches_.end()) return;
        auto* env = frame.as<storeapi::Envelope>();
        auto* batch = env ? env->body_as_WatchEvents() : nullptr;
        if (!batch)
          return endWatch(id, storeError(wire::ErrorCode::BadMessage, "raftd sent a watch item without WatchEvents"));
        if (batch->resync_needed())
          return endWatch(id, Error{"raftd's watch history does not reach index " +
                                    std::to_string(it->second->fromIndex) + " any more: resync needed"});
        it->second->fromIndex = std::max(it->second->fromIndex, batch->last_index());
        auto events = changesOf(*batch);
        if (!events.empty()) it->second->onEvents(batch->last_index(), std::move(events));
      },
      [this, id](Status st) {
        // Items stop short only with an end (common/bus.h): whatever the reason, the caller
        // must resync from what it has.
        auto it = watches_.find(id);
        if (it == watches_.end()) return;
        it->second->streamId = 0;
        endWatch(id, st ? storeError(wire::ErrorCode::Unavailable, "raftd ended the watch") : st.error());
      });
}

void Client::endWatch(WatchId id, Error why) {
  auto it = watches_.find(id);
  if (it == watches_.end()) return;
  auto w = std::move(it->second);
  watches_.erase(it);
  if (w->streamId) bus_.cancel(w->streamId);
  w->onResync(std::move(why));
}

Client::WatchId Client::watchWithResync(std::vector<objects::ObjectKind> kinds, EventFilter filter,
                                        SnapshotFn onSnapshot, EventsFn onEvents, uint64_t fromIndex) {
  WatchId id = nextId_++;
  resyncing_[id] = std::make_unique<Resyncing>(Resyncing{kindsOrAll(std::move(kinds)), std::move(filter),
                                                         std::move(onSnapshot), std::move(onEvents), fromIndex,
                                                         {}, {}, 0, 0, backoff_.first});
  if (fromIndex > 0)
    resyncWatch(id);
  else
    resyncList(id, 0);
  return id;
}

// Lists the kinds one after another. Each list has its own index, so the watch starts at the
// oldest and drops the events of a kind that its list already holds.
void Client::resyncList(WatchId id, size_t next) {
  Resyncing& r = *resyncing_.at(id);
  r.timer = 0;
  if (next == 0) r.pending = {};
  if (next == r.kinds.size()) {
    r.listed.clear();
    for (auto& k : r.pending.kinds) r.listed[k.kind] = k.index;
    r.fromIndex = 0;
    auto snapshot = std::move(r.pending);
    r.pending = {};
    r.onSnapshot(std::move(snapshot));
    if (resyncing_.count(id)) resyncWatch(id);
    return;
  }
  auto kind = r.kinds[next];
  ListFilter lf;
  if (kind == objects::ObjectKind::Task) {
    lf.serviceId = r.filter.serviceId;
    if (lf.serviceId.empty()) lf.nodeId = r.filter.nodeId;
  }
  list(kind, lf, ReadOptions{}, [this, id, next, kind](Result<Objects> got) {
    auto it = resyncing_.find(id);
    if (it == resyncing_.end()) return;
    Resyncing& r = *it->second;
    if (!got) {
      Millis delay = r.backoff;
      r.backoff = std::min(r.backoff * 2, backoff_.max);
      r.timer = loop_.after(delay, [this, id, next] { resyncList(id, next); });
      return;
    }
    auto objs = std::move(got->objects);
    if (kind == objects::ObjectKind::Task && !r.filter.serviceId.empty() && !r.filter.nodeId.empty())
      std::erase_if(objs, [&](const std::string& o) { return !taskOnNode(o, r.filter.nodeId); });
    r.pending.kinds.push_back({kind, got->index, std::move(objs)});
    resyncList(id, next + 1);
  });
}

void Client::resyncWatch(WatchId id) {
  Resyncing& r = *resyncing_.at(id);
  uint64_t from = r.fromIndex;
  if (!r.listed.empty()) {
    from = UINT64_MAX;
    for (auto& [kind, index] : r.listed) from = std::min(from, index);
  }
  // Index 0 would mean "from now on" and could skip what happened since the lists.
  from = std::max<uint64_t>(from, 1);
  r.inner = watch(
      r.kinds, from, r.filter,
      [this, id](uint64_t last, std::vector<Change> events) {
        auto it = resyncing_.find(id);
        if (it == resyncing_.end()) return;
        Resyncing& r = *it->second;
        r.backoff = backoff_.first;
        std::erase_if(events, [&](const Change& c) {
          auto k = r.listed.find(c.kind);
          return k != r.listed.end() && c.index <= k->second;
        });
        if (!events.empty()) r.onEvents(last, std::move(events));
      },
      [this, id](Error) {
        auto it = resyncing_.find(id);
        if (it == resyncing_.end()) return;
        Resyncing& r = *it->second;
        r.inner = 0;
        Millis delay = r.backoff;
        r.backoff = std::min(r.backoff * 2, backoff_.max);
        r.timer = loop_.after(delay, [this, id] { resyncList(id, 0); });
      });
}

// --- Client: leadership ------------------------------------------------------------------------

Client::WatchId Client::leadership(LeadershipFn onChange) {
  WatchId id = nextId_++;
  auto sub = std::make_unique<LeaderSub>();
  sub->onChange = std::move(onChange);
  sub->backoff = backoff_.first;
  sub->ended = [this, id] {
    auto it = leaders_.find(id);
    if (it == leaders_.end()) return;
    LeaderSub& s = *it->second;
    Millis delay = s.backoff;
    s.backoff = std::min(s.backoff * 2, backoff_.max);
    s.timer = loop_.after(delay, [this, id] { openLeadership(id); });
    if (s.last.known) {
      s.last = Leadership{};
      s.onChange(s.last);
    }
  };
  leaders_[id] = std::move(sub);
  openLeadership(id);
  return id;
}

void Client::openLeadership(WatchId id) {
  LeaderSub& s = *leaders_.at(id);
  s.timer = 0;
  s.streamId = bus_.openStream(
      leadershipRequest(), kLeadershipWindow,
      [this, id](const bus::Frame& frame) {
        auto it = leaders_.find(id);
        if (it == leaders_.end()) return;
        auto* env = frame.as<storeapi::Envelope>();
        auto* l = env ? env->body_as_Leadership() : nullptr;
        if (!l) return;
        LeaderSub& s = *it->second;
        s.backoff = backoff_.first;
        s.last = Leadership{true, l->is_leader(), l->leader_id(), l->term()};
        s.onChange(s.last);
      },
      [this, id](Status) {
        auto it = leaders_.find(id);
        if (it == leaders_.end()) return;
        it->second->streamId = 0;
        it->second->ended();
      });
}

void Client::cancel(WatchId id) {
  if (auto it = watches_.find(id); it != watches_.end()) {
    if (it->second->streamId) bus_.cancel(it->second->streamId);
    watches_.erase(it);
  }
  if (auto it = resyncing_.find(id); it != resyncing_.end()) {
    auto r = std::move(it->second);
    resyncing_.erase(it);
    if (r->timer) loop_.cancel(r->timer);
    if (r->inner) cancel(r->inner);
  }
  if (auto it = leaders_.find(id); it != leaders_.end()) {
    if (it->second->streamId) bus_.cancel(it->second->streamId);
    if (it->second->timer) loop_.cancel(it->second->timer);
    leaders_.erase(it);
  }
}

// --- SyncClient --------------------------------------------------------------------------------

SyncClient::SyncClient(Backoff backoff) : client_(loop_, ctx_, backoff) {}

template <class T, class Start>
Result<T> SyncClient::wait(Start start) {
  std::optional<Result<T>> out;
  start([&](Result<T> r) { out.emplace(std::move(r)); });
  // Every call is answered: by raftd, by its deadline, or by giving up on retries.
  while (!out) loop_.runOnce(Millis(100));
  return std::move(*out);
}

Result<Object> SyncClient::get(objects::ObjectKind kind, std::string_view id, ReadOptions options) {
  return wait<Object>([&](auto fn) { client_.get(kind, id, options, std::move(fn)); });
}

Result<Object> SyncClient::getByName(objects::ObjectKind kind, std::string_view name, ReadOptions options) {
  return wait<Object>([&](auto fn) { client_.getByName(kind, name, options, std::move(fn)); });
}

Result<Objects> SyncClient::list(objects::ObjectKind kind, const ListFilter& filter, ReadOptions options) {
  return wait<Objects>([&](auto fn) { client_.list(kind, filter, options, std::move(fn)); });
}

Result<uint64_t> SyncClient::txn(std::vector<ChangeSpec> changes, WriteOptions options) {
  return wait<uint64_t>([&](auto fn) { client_.txn(std::move(changes), options, std::move(fn)); });
}

Result<nlohmann::json> SyncClient::status(Millis timeout) {
  return wait<nlohmann::json>([&](auto fn) { client_.status(timeout, std::move(fn)); });
}

}  // namespace shoal::store
