#include "services/dispatcherd/dispatcher.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstring>

#include "common/ids.h"
#include "common/protocols.h"

namespace shoal::dispatcherd {
namespace {

using namespace std::chrono_literals;

// How often the active dispatcher looks for expired nodes and owed writes. The batching
// (one transaction per 100 ms at most) is StatusWrites' decision; this only bounds how late
// a due batch or a missed deadline is noticed.
constexpr auto kTick = 50ms;
constexpr store::Millis kWriteTimeout = 5s;
// Swarm backdates certificates by an hour so that a joiner whose clock is a little behind
// can use its certificate at once.
constexpr int64_t kBackdateSeconds = 3600;

int64_t unixSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t unixNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t msOf(Clock::duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

flatbuffers::Offset<dispatch::Manager> buildManager(flatbuffers::FlatBufferBuilder& fbb,
                                                    const ManagerInfo& m) {
  return dispatch::CreateManager(fbb, fbb.CreateString(m.nodeId), fbb.CreateString(m.dispatcherAddr),
                                 fbb.CreateString(m.keyZ85));
}

flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<dispatch::Manager>>> buildManagers(
    flatbuffers::FlatBufferBuilder& fbb, const std::vector<ManagerInfo>& managers) {
  std::vector<flatbuffers::Offset<dispatch::Manager>> out;
  for (auto& m : managers) out.push_back(buildManager(fbb, m));
  return fbb.CreateVector(out);
}

// What a new manager needs to start raft: its raft id and the other managers' peer ports.
flatbuffers::Offset<dispatch::RaftJoin> buildRaftJoin(flatbuffers::FlatBufferBuilder& fbb,
                                                      uint64_t raftId, uint64_t raftClusterId,
                                                      const std::vector<ManagerInfo>& managers) {
  std::vector<uint64_t> ids;
  std::vector<std::string> addrs, keys;
  for (auto& m : managers) {
    if (m.raftId == 0 || m.raftId == raftId || m.raftAddr.empty()) continue;
    ids.push_back(m.raftId);
    addrs.push_back(m.raftAddr);
    keys.push_back(m.keyZ85);
  }
  auto idsVec = fbb.CreateVector(ids);
  auto addrsVec = fbb.CreateVectorOfStrings(addrs);
  auto keysVec = fbb.CreateVectorOfStrings(keys);
  return dispatch::CreateRaftJoin(fbb, raftId, raftClusterId, idsVec, addrsVec, keysVec);
}

std::string str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }

const char* stateName(objects::NodeState s) { return objects::EnumNameNodeState(s); }

}  // namespace

// --- start, node dir, endpoints -------------------------------------------------------------

Result<std::unique_ptr<Dispatcher>> Dispatcher::start(Daemon& daemon) {
  std::unique_ptr<Dispatcher> d(new Dispatcher(daemon));
  Dispatcher* self = d.get();
  daemon.addStatus([self](nlohmann::json& j) { self->status(j); });
  daemon.onReload([self] { return self->reload(); });
  daemon.onStop([self] { self->stop(); });
  if (auto st = self->reload(); !st) spdlog::error("{}", st.error().message);
  return d;
}

Dispatcher::~Dispatcher() { stop(); }

void Dispatcher::stop() {
  closeEndpoints();
  zap_.reset();
}

void Dispatcher::closeEndpoints() {
  // The store client first: its callbacks hold calls that the servers would answer.
  store_.reset();
  if (tick_) daemon_.loop().cancel(tick_);
  tick_ = 0;
  if (assignTimer_) daemon_.loop().cancel(assignTimer_);
  assignTimer_ = 0;
  if (statusTimer_) daemon_.loop().cancel(statusTimer_);
  statusTimer_ = 0;
  logs_.reset();  // ends its streams while the server can still send
  if (server_) server_->close();
  if (hello_) hello_->close();
  server_.reset();
  hello_.reset();
  // The ZAP handler stays: its inproc endpoint is the context's for as long as it lives, and
  // binding it again right after a close could find it still taken.
}

Status Dispatcher::reload() {
  auto dir = node::NodeDir::open(daemon_.nodeDir());
  if (!dir) {
    idle("the node dir cannot be opened: " + dir.error().message);
    return Error{dir.error().message + "; check --node-dir"};
  }
  auto config = dir->load();
  if (!config) {
    idle("node.json cannot be read: " + config.error().message);
    return config.error();
  }
  if (!*config) {
    idle("this node is not in a swarm (no node.json in " + dir->path() +
         "); `shoal swarm init` or `shoal swarm join` makes it one");
    return {};
  }
  const node::NodeConfig& c = **config;
  if (!c.manager) {
    idle("this node is a worker: the dispatcher serves on managers only");
    return {};
  }
  if (config_ && config_->listenHost == c.listenHost && config_->port == c.port &&
      config_->nodeId == c.nodeId && config_->clusterId == c.clusterId) {
    // The same endpoints: keep the sessions, take what else changed (certificate, raft ids).
    config_ = c;
    if (c.raft && c.raft->clusterId) raftClusterId_ = c.raft->clusterId;
    return {};
  }
  idle("rebinding");
  return bind(c, dir->key());
}

Status Dispatcher::bind(const node::NodeConfig& config, const curve::KeyPair& key) {
  Loop& loop = daemon_.loop();
  // ZeroMQ asks the ZAP handler about every CURVE connection. Any key may connect: a
  // joiner's key is new by definition, and CURVE has already proved that the peer holds the
  // key it shows. Each message is authorized by that key (serveDispatch).
  if (!zap_)
    zap_ = std::make_unique<curve::ZapHandler>(loop, daemon_.zmq(),
                                               [](std::string_view, std::string_view, std::string_view) { return true; });
  server_ = std::make_unique<bus::Server>(loop, daemon_.zmq());
  server_->setCurve({key.publicKey, key.secretKey}, "dispatcher");
  server_->serve(kDispatchProtocol, [this](bus::Call call) { serveDispatch(std::move(call)); });
  logs_ = makeLogBroker();
  server_->serve(kLogProtocol, [this](bus::Call call) { logs_->serve(std::move(call)); });
  std::string listen = node::joinHostPort(config.listenHost, config.port);
  if (auto st = server_->bind("tcp://" + listen); !st) {
    std::string why = "cannot listen on " + listen + ": " + st.error().message;
    idle(why);
    return Error{why + "; is another dispatcherd using the port? (node.json sets it)"};
  }
  hello_ = std::make_unique<bus::Server>(loop, daemon_.zmq());
  hello_->serve(kDispatchProtocol, [this](bus::Call call) { serveHello(std::move(call)); });
  std::string helloAddr = node::joinHostPort(config.listenHost, node::helloPort(config.port));
  if (auto st = hello_->bind("tcp://" + helloAddr); !st) {
    std::string why = "cannot listen on " + helloAddr + " (hello): " + st.error().message;
    idle(why);
    return Error{why + "; is another dispatcherd using the port? (node.json sets it)"};
  }
  config_ = config;
  raftClusterId_ = config.raft ? config.raft->clusterId : 0;
  idleReason_.clear();

  store_ = std::make_unique<store::Client>(loop, daemon_.zmq());
  if (auto st = store_->connect(store::endpointIn(daemon_.runDir())); !st) {
    std::string why = "cannot reach raftd: " + st.error().message;
    idle(why);
    return Error{why};
  }
  store_->leadership([this](const store::Leadership& l) { onLeadership(l); });
  store_->watchWithResync(
      {objects::ObjectKind::Cluster, objects::ObjectKind::Node, objects::ObjectKind::Task,
       objects::ObjectKind::Secret, objects::ObjectKind::Config},
      {},
      [this](store::Snapshot s) { onSnapshot(std::move(s)); },
      [this](uint64_t, std::vector<store::Change> events) { onEvents(std::move(events)); });
  tick_ = loop.every(kTick, [this] { tick(); });
  spdlog::info("listening on {} (CURVE) and {} (hello) as node {} of cluster {}; waiting for "
               "raftd's leadership", listen, helloAddr, config.nodeId, config.clusterId);
  daemon_.setStatusText("manager: waiting for raftd's leadership");
  return {};
}

void Dispatcher::idle(std::string why) {
  bool wasBound = server_ || hello_;
  closeEndpoints();
  config_.reset();
  leadership_ = {};
  loaded_ = false;
  nodes_.clear();
  cluster_.reset();
  ca_.reset();
  caKey_.clear();
  joining_.clear();
  assignments_.replaceAll({});  // its streams ended with the endpoints
  updateActive();
  if (why != idleReason_ && why != "rebinding") spdlog::info("idle: {}", why);
  if (wasBound && why != "rebinding") spdlog::info("stopped listening");
  idleReason_ = std::move(why);
  daemon_.setStatusText("idle: " + idleReason_);
}

// --- the store's view and leadership ------------------------------------------------------

void Dispatcher::onLeadership(const store::Leadership& l) {
  bool leaderChanged = l.leaderId != leadership_.leaderId || l.known != leadership_.known;
  leadership_ = l;
  if (leaderChanged && l.known) readRaftClusterId();
  updateActive();
}

void Dispatcher::updateActive() {
  bool want = server_ && leadership_.known && leadership_.isLeader;
  if (want == active_) {
    if (server_) daemon_.setStatusText("manager: " + why());
    return;
  }
  active_ = want;
  // Either way the sessions start over: a new leader gives every node 3 periods from now
  // (sessions.h), and a follower has none.
  sessions_.reset();
  writes_.clear();
  taskWrites_.clear();
  refreshing_ = false;
  ++writeGeneration_;
  if (!active_)
    endAllStreams(wire::ErrorCode::NotLeader,
                  "this manager's dispatcher is no longer active (its raftd does not lead): open a "
                  "session with the leader's");
  if (active_) {
    activeSince_ = daemon_.loop().now();
    spdlog::info("active: raftd leads (term {}); every node has {} heartbeat periods from now to "
                 "open a session", leadership_.term, kMissedPeriods);
  } else if (server_) {
    spdlog::info("not active: {}", why());
  }
  if (server_) daemon_.setStatusText("manager: " + why());
}

void Dispatcher::readRaftClusterId() {
  if (!store_) return;
  store_->status(5s, [this](Result<nlohmann::json> r) {
    if (!r || !r->is_object() || !r->contains("raft_cluster_id")) return;
    auto& v = (*r)["raft_cluster_id"];
    uint64_t id = 0;
    if (v.is_number_unsigned()) id = v.get<uint64_t>();
    else if (v.is_string()) id = std::strtoull(v.get<std::string>().c_str(), nullptr, 10);
    if (id) raftClusterId_ = id;
  });
}

void Dispatcher::onSnapshot(store::Snapshot snapshot) {
  nodes_.clear();
  std::vector<TaskEntry> tasks;
  std::vector<FileEntry> secrets, configs;
  for (auto& kind : snapshot.kinds)
    for (auto& object : kind.objects) {
      if (kind.kind == objects::ObjectKind::Node) putNode(object);
      if (kind.kind == objects::ObjectKind::Cluster) putCluster(object);
      if (kind.kind == objects::ObjectKind::Secret) keepFile(readSecret(object), secrets);
      if (kind.kind == objects::ObjectKind::Config) keepFile(readConfig(object), configs);
      if (kind.kind != objects::ObjectKind::Task) continue;
      auto task = readTask(object);
      if (!task)
        spdlog::warn("{}", task.error().message);
      else
        tasks.push_back(std::move(task).value());
    }
  // Before the tasks: the items they cause carry their secrets and configs.
  assignments_.replaceSecrets(std::move(secrets));
  assignments_.replaceConfigs(std::move(configs));
  assignments_.replaceAll(std::move(tasks));
  // Nodes deleted while the watch was away.
  std::vector<std::string> gone;
  for (auto& [id, e] : sessions_.all())
    if (!nodes_.byId(id)) gone.push_back(id);
  for (auto& id : gone) removeNode(id);
  if (!loaded_)
    spdlog::info("store view loaded: {} nodes, {} tasks, {}", nodes_.size(), assignments_.tasks(),
                 cluster_ ? "cluster " + cluster_->id : "no Cluster object yet");
  loaded_ = true;
  pushDue();
}

void Dispatcher::onEvents(std::vector<store::Change> events) {
  for (auto& e : events) {
    if (e.kind == objects::ObjectKind::Node) {
      if (e.operation == objects::Operation::Delete)
        removeNode(e.id);
      else
        putNode(e.object);
    } else if (e.kind == objects::ObjectKind::Cluster && e.operation != objects::Operation::Delete) {
      putCluster(e.object);
    } else if (e.kind == objects::ObjectKind::Task) {
      if (e.operation == objects::Operation::Delete)
        assignments_.erase(e.id);
      else
        putTask(e.object, e.version);
    } else if (e.kind == objects::ObjectKind::Secret || e.kind == objects::ObjectKind::Config) {
      putFile(e);
    }
  }
  // A whole transaction at a time, so that its tasks reach each node in one item.
  pushDue();
}

void Dispatcher::putTask(std::string_view bytes, uint64_t version) {
  auto task = readTask(bytes);
  if (!task) return spdlog::warn("{}", task.error().message);
  if (task->version == 0) task->version = version;
  assignments_.put(std::move(task).value());
}

void Dispatcher::keepFile(Result<FileEntry> file, std::vector<FileEntry>& into) {
  if (!file) return spdlog::warn("{}", file.error().message);
  into.push_back(std::move(file).value());
}

void Dispatcher::putFile(const store::Change& e) {
  bool secret = e.kind == objects::ObjectKind::Secret;
  if (e.operation == objects::Operation::Delete)
    return secret ? assignments_.eraseSecret(e.id) : assignments_.eraseConfig(e.id);
  auto file = secret ? readSecret(e.object) : readConfig(e.object);
  if (!file) return spdlog::warn("{}", file.error().message);
  if (file->version == 0) file->version = e.version;
  secret ? assignments_.putSecret(std::move(file).value())
         : assignments_.putConfig(std::move(file).value());
}

void Dispatcher::putNode(std::string_view bytes) {
  auto node = parseNode(bytes);
  if (!node) return spdlog::warn("{}; left out of the dispatcher's view", node.error().message);
  nodes_.put(std::move(node).value());
}

void Dispatcher::removeNode(const std::string& id) {
  nodes_.erase(id);
  if (sessions_.find(id)) spdlog::info("node {} was removed from the swarm; its session ends", id);
  sessions_.forget(id);
  endStreams(id, wire::ErrorCode::NotFound, "this node was removed from the swarm");
  writes_.drop(id);
}

void Dispatcher::putCluster(std::string_view bytes) {
  auto cluster = parseCluster(bytes);
  if (!cluster) return spdlog::warn("{}", cluster.error().message);
  int64_t before = heartbeatPeriodNs(cluster_ ? &*cluster_ : nullptr);
  bool had = cluster_.has_value();
  cluster_ = std::move(cluster).value();
  int64_t after = heartbeatPeriodNs(&*cluster_);
  if (had && before != after)
    spdlog::info("the heartbeat period is now {} ms (it was {} ms)", after / 1'000'000, before / 1'000'000);
}

void Dispatcher::refreshNodes() {
  if (!store_ || refreshing_) return;
  refreshing_ = true;
  uint64_t gen = writeGeneration_;
  store_->list(objects::ObjectKind::Node, {}, {}, [this, gen](Result<store::Objects> r) {
    if (gen != writeGeneration_) return;
    refreshing_ = false;
    if (!r) return spdlog::warn("re-reading the nodes after a conflict failed: {}", r.error().message);
    // Newer versions win (NodeTable::put). A node missing from the list is gone, unless it was
    // written after the list's index (a join answered meanwhile).
    std::set<std::string> listed;
    for (auto& o : r->objects) {
      auto node = parseNode(o);
      if (!node) continue;
      listed.insert(node->id);
      nodes_.put(std::move(node).value());
    }
    std::vector<std::string> gone;
    for (auto& [id, n] : nodes_.all())
      if (!listed.count(id) && n.version <= r->index) gone.push_back(id);
    for (auto& id : gone) removeNode(id);
  });
}

const identity::ClusterCA* Dispatcher::ca() {
  if (!cluster_) {
    caError_ = "the store has no Cluster object yet";
    return nullptr;
  }
  if (ca_ && caKey_ == cluster_->caKey) return &*ca_;
  ca_.reset();
  auto loaded = identity::ClusterCA::load(cluster_->caKey);
  if (!loaded) {
    caError_ = "the cluster's CA key in the store cannot be read: " + loaded.error().message;
    return nullptr;
  }
  if (!loaded->canSign()) {
    caError_ = "the store holds only the CA's public key (is the cluster locked?)";
    return nullptr;
  }
  ca_ = std::move(loaded).value();
  caKey_ = cluster_->caKey;
  caError_.clear();
  return &*ca_;
}

Clock::duration Dispatcher::period() const {
  return std::chrono::nanoseconds(heartbeatPeriodNs(cluster_ ? &*cluster_ : nullptr));
}

// --- the active dispatcher's work ----------------------------------------------------------

objects::NodeState Dispatcher::effectiveState(const NodeRecord& node) const {
  if (auto owed = writes_.owed(node.id); owed && owed->state) return *owed->state;
  return node.state;
}

void Dispatcher::tick() {
  if (!active_ || !loaded_) return;
  auto now = daemon_.loop().now();
  for (auto& [id, node] : nodes_.all())
    sessions_.observe(id, effectiveState(node) == objects::NodeState::Down, now, period());
  for (auto& id : sessions_.expire(now)) {
    auto* node = nodes_.byId(id);
    spdlog::info("node {}{}: no heartbeat for {} periods of {} ms: down", id,
                 node && !node->description.hostname.empty() ? " (" + node->description.hostname + ")" : "",
                 kMissedPeriods, msOf(period()));
    ++counters_.downs;
    endStreams(id, wire::ErrorCode::NotFound,
               "the session expired (no heartbeat for " + std::to_string(kMissedPeriods) +
                   " periods): open a new session");
    NodeUpdate down;
    down.state = objects::NodeState::Down;
    down.message = "heartbeat failure";
    writes_.add(id, down);
  }
  flush(now);
  flushTaskStatus(now);
}

void Dispatcher::flush(Clock::time_point now) {
  if (!store_ || refreshing_ || !writes_.due(now)) return;
  Batch batch = buildBatch(nodes_, writes_.take(now));
  if (batch.changes.empty()) return writes_.succeeded();
  uint64_t gen = writeGeneration_;
  store_->txn(std::move(batch.changes), {kWriteTimeout},
              [this, gen, written = std::move(batch.written)](Result<uint64_t> r) mutable {
                if (gen != writeGeneration_) return;
                if (r) {
                  ++counters_.writeTxns;
                  for (auto& n : written) {
                    n.version = *r;  // meta.version is the index of the change
                    nodes_.put(std::move(n));
                  }
                  return writes_.succeeded();
                }
                writes_.failed();
                if (store::codeOf(r.error()) == wire::ErrorCode::Conflict) {
                  ++counters_.writeConflicts;
                  spdlog::debug("node status batch: {}; re-reading the nodes", r.error().message);
                  return refreshNodes();
                }
                ++counters_.writeFailures;
                spdlog::warn("node status batch not written ({}); retrying", r.error().message);
              });
}

// --- requests --------------------------------------------------------------------------------

void Dispatcher::serveHello(bus::Call call) {
  auto* env = call.as<dispatch::Envelope>();
  if (!env || env->body_type() != dispatch::Body::HelloRequest)
    return call.fail(wire::ErrorCode::Unimplemented,
                     "the hello endpoint serves HelloRequest only; joins and sessions go to the "
                     "dispatcher's port (CURVE)");
  hello(call);
}

void Dispatcher::hello(bus::Call& call) {
  if (!config_) return call.fail(wire::ErrorCode::Unavailable, "this dispatcher is idle: " + idleReason_);
  std::vector<uint8_t> caPublic = config_->ca;
  if (caPublic.empty())
    if (auto* c = ca()) caPublic = c->savePublic();
  if (caPublic.empty() || config_->certificate.empty())
    return call.fail(wire::ErrorCode::Unavailable,
                     "this manager's node.json has no CA or certificate yet; try another manager");
  flatbuffers::FlatBufferBuilder fbb;
  auto body = dispatch::CreateHelloReply(fbb, fbb.CreateVector(caPublic), fbb.CreateVector(config_->certificate),
                                         fbb.CreateString(config_->dispatcherAddr()));
  call.reply(bus::message<dispatch::Envelope>(fbb, dispatch::Body::HelloReply, body.Union()));
}

void Dispatcher::serveDispatch(bus::Call call) {
  auto* env = call.as<dispatch::Envelope>();
  if (!env) return call.fail(wire::ErrorCode::UnknownProtocol, "dispatcherd serves the dispatch protocol here");
  // The verifier lets a union's body be absent: a request that names its kind without its table.
  if (env->body_type() != dispatch::Body::NONE && !env->body())
    return call.fail(wire::ErrorCode::BadMessage,
                     std::string("a ") + dispatch::EnumNameBody(env->body_type()) +
                         " without its body: send the request's table");
  switch (env->body_type()) {
    case dispatch::Body::HelloRequest:
      return hello(call);
    case dispatch::Body::JoinRequest:
      if (refuseUnlessActive(call)) return;
      return join(std::move(call), *env->body_as_JoinRequest());
    case dispatch::Body::OpenSessionRequest:
      if (refuseUnlessActive(call)) return;
      return openSession(call, *env->body_as_OpenSessionRequest());
    case dispatch::Body::HeartbeatRequest:
      if (refuseUnlessActive(call)) return;
      return heartbeat(call, *env->body_as_HeartbeatRequest());
    case dispatch::Body::RenewRequest:
      if (refuseUnlessActive(call)) return;
      return renew(call);
    case dispatch::Body::AssignmentsRequest:
      if (refuseTaskLinkUnlessActive(call)) return;
      return openAssignments(call, *env->body_as_AssignmentsRequest());
    case dispatch::Body::UpdateTaskStatusRequest:
      if (refuseTaskLinkUnlessActive(call)) return;
      return updateTaskStatus(call, *env->body_as_UpdateTaskStatusRequest());
    default:
      return call.fail(wire::ErrorCode::Unimplemented,
                       std::string("dispatch message ") + dispatch::EnumNameBody(env->body_type()) +
                           " is not a request dispatcherd serves (Hello, Join, OpenSession, "
                           "Heartbeat, Renew, Assignments, UpdateTaskStatus)");
  }
}

bool Dispatcher::refuseUnlessActive(bus::Call& call) {
  if (active_) {
    if (loaded_) return false;
    call.fail(wire::ErrorCode::Unavailable, "this dispatcher became active a moment ago and is "
                                            "still reading the store; retry shortly");
    return true;
  }
  if (!leadership_.known) {
    call.fail(wire::ErrorCode::Unavailable,
              "this manager's raftd is not answering, so it cannot tell who leads; try another "
              "manager");
    return true;
  }
  if (auto leader = leaderOf(nodes_, leadership_.leaderId, config_->port)) {
    ++counters_.redirects;
    flatbuffers::FlatBufferBuilder fbb;
    auto body = dispatch::CreateRedirect(fbb, buildManager(fbb, *leader));
    call.reply(bus::message<dispatch::Envelope>(fbb, dispatch::Body::Redirect, body.Union()));
    return true;
  }
  call.fail(wire::ErrorCode::NotLeader,
            leadership_.leaderId
                ? "this manager is not the leader, and the leader's node (raft id " +
                      std::to_string(leadership_.leaderId) + ") is not known here yet; retry shortly"
                : std::string("the managers are electing a leader; retry shortly"));
  return true;
}

// An error, never a Redirect: a client drops a plain reply to a stream's request, and an agent
// takes any reply to its status reports as their receipt. Sessions live on the leader only, so
// the agent hears of the new leader through its session.
bool Dispatcher::refuseTaskLinkUnlessActive(bus::Call& call) {
  if (active_ && loaded_) return false;
  call.fail(active_ ? wire::ErrorCode::Unavailable : wire::ErrorCode::NotLeader,
            "this dispatcher does not serve tasks now (" +
                (active_ ? std::string("it is still reading the store") : why()) +
                "); open a session with the leader's dispatcher and ask there");
  return true;
}

const NodeRecord* Dispatcher::knownNode(bus::Call& call) {
  if (auto* node = nodes_.byKey(call.peerKey())) {
    // A certificate that expired was not renewed in time (agentd renews between 50 % and 80 %
    // of its life): as in Swarm, the node must join again. NotFound, like a removed node, so
    // that agentd asks again only slowly.
    int64_t nowNs = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
    if (auto why = certificateRefusal(node->certificateExpiry, nowNs)) {
      call.fail(wire::ErrorCode::NotFound, *why);
      return nullptr;
    }
    return node;
  }
  call.fail(wire::ErrorCode::NotFound,
            "this node was removed from the swarm (its key is not one of the swarm's nodes); "
            "join again with a token: `shoal swarm leave`, then `shoal swarm join --token ...`");
  return nullptr;
}

void Dispatcher::refuseJoin(bus::Call& call, wire::ErrorCode code, const std::string& why) {
  ++counters_.joinsRefused;
  // Anyone may knock on P: a stream of bad joins must not flood the log.
  refusedJoins_.warn("join refused (key " + call.peerKey() + "): " + why);
  call.fail(code, why);
}

void Dispatcher::join(bus::Call call, const dispatch::JoinRequest& request) {
  const identity::ClusterCA* authority = ca();
  if (!authority) return refuseJoin(call, wire::ErrorCode::Unavailable, "cannot admit nodes: " + caError_);
  auto role = judgeToken(request.token() ? request.token()->string_view() : std::string_view(),
                         cluster_->tokens, *authority);
  if (!role) return refuseJoin(call, wire::ErrorCode::InvalidArgument, role.error().message);
  auto key = identity::curveKeyFromZ85(call.peerKey());
  if (!key) return refuseJoin(call, wire::ErrorCode::InvalidArgument, "the connection has no CURVE key: " + key.error().message);
  if (auto st = checkKeyFree(nodes_, call.peerKey()); !st)
    return refuseJoin(call, wire::ErrorCode::InvalidArgument, st.error().message);
  if (joining_.count(call.peerKey()))
    return refuseJoin(call, wire::ErrorCode::Unavailable, "a join with this node's key is being recorded; wait for its answer");
  auto description = descriptionFrom(request.description());
  if (!description) return refuseJoin(call, wire::ErrorCode::InvalidArgument, description.error().message);
  auto host = advertiseHost(str(request.addr()));
  if (!host) return refuseJoin(call, wire::ErrorCode::InvalidArgument, host.error().message);

  JoinPlan plan;
  plan.nodeId = newId();
  plan.role = *role;
  plan.key = *key;
  plan.description = std::move(description).value();
  plan.addr = *host;
  if (plan.role == identity::Role::Manager) {
    plan.raftId = pickRaftId(nodes_, random_);
    plan.raftAddr = node::joinHostPort(plan.addr, node::raftPort(config_->port));
  }
  int64_t expiryNs = certExpiryNs(&*cluster_);
  int64_t notBefore = unixSeconds() - kBackdateSeconds;
  uint64_t serial = 0;
  random_(std::span(reinterpret_cast<uint8_t*>(&serial), sizeof serial));
  auto cert = authority->issue(plan.nodeId, plan.role, plan.key, notBefore,
                               std::chrono::seconds(kBackdateSeconds + expiryNs / 1'000'000'000), serial);
  if (!cert) return refuseJoin(call, wire::ErrorCode::Internal, "cannot issue a certificate: " + cert.error().message);
  plan.certificate = std::move(cert).value();
  plan.certificateExpiryNs = (notBefore + kBackdateSeconds + expiryNs / 1'000'000'000) * 1'000'000'000;

  joining_.insert(call.peerKey());
  auto held = std::make_shared<bus::Call>(std::move(call));
  NodeRecord node = joinedNode(plan);
  store_->txn({{objects::ObjectKind::Node, objects::Operation::Create, plan.nodeId, 0, buildNode(node)}},
              {kWriteTimeout}, [this, held, plan, node](Result<uint64_t> r) mutable {
                joining_.erase(held->peerKey());
                if (!r) {
                  // Indeterminate: the Node may exist; the joiner's retry then finds its key
                  // registered and is told so.
                  return refuseJoin(*held, wire::ErrorCode::Unavailable,
                                    "the store did not record the join: " + r.error().message);
                }
                node.version = *r;
                nodes_.put(std::move(node));
                if (plan.role == identity::Role::Manager) return addManager(held, std::move(plan), *r);
                joined(held, std::move(plan), *r);
              });
}

void Dispatcher::addManager(std::shared_ptr<bus::Call> call, JoinPlan plan, uint64_t index) {
  store_->addMember(plan.raftId, plan.raftAddr, {kWriteTimeout},
                    [this, call, plan, index](Result<uint64_t> r) mutable {
                      if (r) return joined(call, std::move(plan), index);
                      // Without a raft member the Node would name a manager that can never
                      // catch up: undo it, so that the joiner may simply try again.
                      std::string why = "raftd did not add the new manager to the raft membership: " +
                                        r.error().message;
                      store_->txn({{objects::ObjectKind::Node, objects::Operation::Delete, plan.nodeId, index, {}}},
                                  {kWriteTimeout}, [this, id = plan.nodeId](Result<uint64_t> d) {
                                    if (d) return removeNode(id);
                                    spdlog::warn("cannot undo the Node {} of a failed manager join: {}; remove "
                                                 "it with `shoal node rm {}`", id, d.error().message, id);
                                  });
                      refuseJoin(*call, wire::ErrorCode::Unavailable, why + "; the join was undone, retry");
                    });
}

void Dispatcher::joined(std::shared_ptr<bus::Call> call, JoinPlan plan, uint64_t) {
  ++counters_.joinsAccepted;
  spdlog::info("node {} ({}) joined as a {} from {}", plan.nodeId, plan.description.hostname,
               identity::roleName(plan.role), plan.addr);
  auto managers = managersOf(nodes_, config_->port);
  flatbuffers::FlatBufferBuilder fbb;
  auto nodeId = fbb.CreateString(plan.nodeId);
  auto cert = fbb.CreateVector(plan.certificate);
  auto clusterId = fbb.CreateString(ca_ ? ca_->clusterId() : config_->clusterId);
  auto managersVec = buildManagers(fbb, managers);
  flatbuffers::Offset<dispatch::RaftJoin> raft;
  if (plan.role == identity::Role::Manager) raft = buildRaftJoin(fbb, plan.raftId, raftClusterId_, managers);
  auto body = dispatch::CreateJoinReply(fbb, nodeId, static_cast<objects::NodeRole>(plan.role), cert,
                                        clusterId, managersVec,
                                        std::chrono::duration_cast<std::chrono::nanoseconds>(period()).count(),
                                        raft);
  call->reply(bus::message<dispatch::Envelope>(fbb, dispatch::Body::JoinReply, body.Union()));
}

std::optional<objects::NodeRole> Dispatcher::certificateRole(const NodeRecord& node) {
  if (auto owed = writes_.owed(node.id); owed && owed->certificate) return owed->certificate->role;
  const identity::ClusterCA* authority = ca();
  if (!authority || node.certificate.empty()) return std::nullopt;
  // Its role, whatever its validity today: renewal is the node's business (RenewRequest),
  // a role change is ours. One second before its end it is valid if it is genuine.
  auto cert = authority->verify(node.certificate, node.certificateExpiry / 1'000'000'000 - 1);
  if (!cert) return std::nullopt;
  return static_cast<objects::NodeRole>(cert->role);
}

Result<NodeUpdate::Cert> Dispatcher::issueCertificate(const NodeRecord& node) {
  const identity::ClusterCA* authority = ca();
  if (!authority) return Error{"cannot issue a certificate: " + caError_};
  if (!node.curveKey) return Error{"node " + node.id + " has no key in the store"};
  int64_t expiryNs = certExpiryNs(&*cluster_);
  int64_t notBefore = unixSeconds() - kBackdateSeconds;
  uint64_t serial = 0;
  random_(std::span(reinterpret_cast<uint8_t*>(&serial), sizeof serial));
  int64_t validFor = kBackdateSeconds + expiryNs / 1'000'000'000;
  auto cert = authority->issue(node.id, static_cast<identity::Role>(node.role), *node.curveKey, notBefore,
                               std::chrono::seconds(validFor), serial);
  if (!cert) return Error{"cannot issue a certificate: " + cert.error().message};
  NodeUpdate::Cert out{std::move(cert).value(), (notBefore + validFor) * 1'000'000'000, node.role};
  NodeUpdate update;
  update.certificate = out;
  writes_.add(node.id, update);
  return out;
}

void Dispatcher::openSession(bus::Call& call, const dispatch::OpenSessionRequest& request) {
  const NodeRecord* node = knownNode(call);
  if (!node) return;
  auto description = descriptionFrom(request.description());
  if (!description) return call.fail(wire::ErrorCode::InvalidArgument, description.error().message);
  NodeUpdate update;
  if (request.addr() && request.addr()->size()) {
    auto host = advertiseHost(request.addr()->string_view());
    if (!host) return call.fail(wire::ErrorCode::InvalidArgument, host.error().message);
    if (*host != node->addr) update.addr = *host;
  }
  if (*description != node->description) update.description = *description;
  if (effectiveState(*node) != objects::NodeState::Ready || !node->message.empty()) {
    update.state = objects::NodeState::Ready;
    update.message.clear();
  }
  std::optional<NodeUpdate::Cert> cert;
  if (certificateRole(*node) != node->role) {
    auto issued = issueCertificate(*node);
    if (!issued) return call.fail(wire::ErrorCode::Internal, issued.error().message);
    cert = std::move(issued).value();
  }
  if (update.state || update.description || update.addr) writes_.add(node->id, update);
  std::string sessionId = newId();
  sessions_.open(node->id, sessionId, daemon_.loop().now(), period());
  endStreams(node->id, wire::ErrorCode::NotFound,
             "the session ended: the node opened a new one; ask for assignments in it", sessionId);
  ++counters_.sessionsOpened;
  spdlog::info("node {} ({}) opened session {} (was {})", node->id, description->hostname, sessionId,
               stateName(node->state));
  replySession(call, *node, sessionId, cert);
}

void Dispatcher::heartbeat(bus::Call& call, const dispatch::HeartbeatRequest& request) {
  const NodeRecord* node = knownNode(call);
  if (!node) return;
  std::string sessionId = str(request.session_id());
  if (!sessions_.heartbeat(node->id, sessionId, daemon_.loop().now(), period()))
    return call.fail(wire::ErrorCode::NotFound,
                     "no session " + sessionId.substr(0, 64) + " for node " + node->id +
                         " here (it expired, or another leader opened it): open a new session");
  ++counters_.heartbeats;
  std::optional<NodeUpdate::Cert> cert;
  if (certificateRole(*node) != node->role) {
    auto issued = issueCertificate(*node);
    if (!issued) return call.fail(wire::ErrorCode::Internal, issued.error().message);
    cert = std::move(issued).value();
  }
  replySession(call, *node, sessionId, cert);
}

void Dispatcher::renew(bus::Call& call) {
  const NodeRecord* node = knownNode(call);
  if (!node) return;
  auto cert = issueCertificate(*node);
  if (!cert) return call.fail(wire::ErrorCode::Internal, cert.error().message);
  spdlog::info("renewed node {}'s certificate ({})", node->id, objects::EnumNameNodeRole(node->role));
  flatbuffers::FlatBufferBuilder fbb;
  auto body = dispatch::CreateRenewReply(fbb, fbb.CreateVector(cert->bytes));
  call.reply(bus::message<dispatch::Envelope>(fbb, dispatch::Body::RenewReply, body.Union()));
}

void Dispatcher::replySession(bus::Call& call, const NodeRecord& node, const std::string& sessionId,
                              const std::optional<NodeUpdate::Cert>& cert) {
  auto managers = managersOf(nodes_, config_->port);
  flatbuffers::FlatBufferBuilder fbb;
  auto sid = fbb.CreateString(sessionId);
  auto nid = fbb.CreateString(node.id);
  auto managersVec = buildManagers(fbb, managers);
  flatbuffers::Offset<flatbuffers::Vector<uint8_t>> certVec;
  flatbuffers::Offset<dispatch::RaftJoin> raft;
  if (cert) {
    certVec = fbb.CreateVector(cert->bytes);
    // A new manager's certificate comes with what it needs to start raft.
    if (node.role == objects::NodeRole::Manager && node.managerStatus && node.managerStatus->raftId)
      raft = buildRaftJoin(fbb, node.managerStatus->raftId, raftClusterId_, managers);
  }
  auto body = dispatch::CreateSessionReply(
      fbb, sid, nid, std::chrono::duration_cast<std::chrono::nanoseconds>(period()).count(), managersVec,
      node.role, certVec, raft);
  call.reply(bus::message<dispatch::Envelope>(fbb, dispatch::Body::SessionReply, body.Union()));
}

bool Dispatcher::inSession(const std::string& nodeId, const std::string& sessionId) const {
  auto* e = sessions_.find(nodeId);
  return e && !e->expired && e->session && *e->session == sessionId;
}

// --- assignments ---------------------------------------------------------------------------

void Dispatcher::openAssignments(bus::Call& call, const dispatch::AssignmentsRequest& request) {
  const NodeRecord* node = knownNode(call);
  if (!node) return;
  std::string sessionId = str(request.session_id());
  if (!inSession(node->id, sessionId))
    return call.fail(wire::ErrorCode::NotFound,
                     "no session " + sessionId.substr(0, 64) + " for node " + node->id +
                         " here (it expired, or another leader opened it): open a new session, "
                         "then ask for assignments in it");
  auto stream = call.openStream();
  Assignments::StreamId id = nextStream_++;
  stream->onCredit([this, id] {
    pushAssignments(id);
    armAssignments();
  });
  stream->onClose([this, id] { onStreamClosed(id); });
  streams_[id] = AssignmentStream{stream, node->id, sessionId};
  assignments_.open(id, node->id);
  ++counters_.streamsOpened;
  auto assigned = assignments_.byNode().find(node->id);
  spdlog::info("node {} opened an assignments stream in session {} ({} tasks assigned)", node->id,
               sessionId, assigned == assignments_.byNode().end() ? 0 : assigned->second.size());
  pushAssignments(id);
  armAssignments();
}

void Dispatcher::pushAssignments(Assignments::StreamId id) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  auto stream = it->second.stream;  // alive through a send that ends it
  if (!stream->open() || stream->credits() == 0) return;
  for (auto& item : assignments_.take(id, daemon_.loop().now(), stream->credits())) {
    // A send that fails has ended the stream (the agent fell behind or is gone): the agent
    // opens a new one and gets a complete set.
    if (!stream->send(encodeAssignments(item))) return;
    ++counters_.assignmentItems;
  }
}

void Dispatcher::pushDue() {
  auto now = daemon_.loop().now();
  std::vector<Assignments::StreamId> due;  // a send may end a stream: not while iterating
  for (auto& [id, s] : streams_)
    if (assignments_.due(id, now)) due.push_back(id);
  for (auto id : due) pushAssignments(id);
  armAssignments();
}

// One timer for the soonest stream due that has credits (one without waits for onCredit).
void Dispatcher::armAssignments() {
  auto now = daemon_.loop().now();
  std::optional<Clock::time_point> next;
  for (auto& [id, s] : streams_) {
    if (s.stream->credits() == 0) continue;
    if (auto at = assignments_.dueAt(id, now); at && (!next || *at < *next)) next = at;
  }
  if (!next || (assignTimer_ && assignTimerAt_ <= *next)) return;
  if (assignTimer_) daemon_.loop().cancel(assignTimer_);
  assignTimerAt_ = *next;
  assignTimer_ = daemon_.loop().after(*next - now, [this] {
    assignTimer_ = 0;
    pushDue();
  });
}

void Dispatcher::onStreamClosed(Assignments::StreamId id) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  // The stream calls this from its own close(): it must outlive the call.
  daemon_.loop().post([keep = std::move(it->second.stream)] {});
  spdlog::debug("node {}'s assignments stream {} ended", it->second.nodeId, id);
  streams_.erase(it);
  assignments_.close(id);
}

void Dispatcher::endStreams(const std::string& nodeId, wire::ErrorCode code, const std::string& why,
                            const std::string& keep) {
  std::vector<std::shared_ptr<bus::ServerStream>> ending;
  for (auto& [id, s] : streams_)
    if (s.nodeId == nodeId && (keep.empty() || s.sessionId != keep)) ending.push_back(s.stream);
  for (auto& stream : ending) stream->end(code, why);
  if (logs_) logs_->nodeGone(nodeId, keep);
}

void Dispatcher::endAllStreams(wire::ErrorCode code, const std::string& why) {
  std::vector<std::shared_ptr<bus::ServerStream>> ending;
  for (auto& [id, s] : streams_) ending.push_back(s.stream);
  for (auto& stream : ending) stream->end(code, why);
  if (logs_) logs_->reset(why);
}

// --- task status -----------------------------------------------------------------------------

void Dispatcher::updateTaskStatus(bus::Call& call,
                                  const dispatch::UpdateTaskStatusRequest& request) {
  const NodeRecord* node = knownNode(call);
  if (!node) return;
  std::string sessionId = str(request.session_id());
  if (!inSession(node->id, sessionId))
    return call.fail(wire::ErrorCode::NotFound,
                     "no session " + sessionId.substr(0, 64) + " for node " + node->id +
                         " here (it expired, or another leader opened it): open a new session and "
                         "report the tasks' status in it");
  size_t count = request.updates() ? request.updates()->size() : 0;
  if (count > TaskStatusWrites::kMaxPending)
    return call.fail(wire::ErrorCode::InvalidArgument,
                     std::to_string(count) + " task status updates in one request; at most " +
                         std::to_string(TaskStatusWrites::kMaxPending) +
                         " are accepted: send fewer at a time");
  ++counters_.statusRequests;
  int64_t nowNs = unixNanos();
  for (size_t i = 0; i < count; ++i) {
    auto* u = request.updates()->Get(i);
    std::string taskId = str(u->task_id());
    auto status = reportedStatus(u->status(), node->id, nowNs);
    if (!status)
      badReports_.warn("node " + node->id + " reported task " + taskId.substr(0, 64) + ": " +
                       status.error().message + "; ignored");
    auto verdict = taskWrites_.report(node->id, taskId,
                                      status ? std::move(status).value() : nullptr, assignments_);
    if (verdict != Report::Accepted && verdict != Report::Unchanged)
      spdlog::debug("node {}'s status of task {} ignored: {}", node->id, taskId.substr(0, 64),
                    reportName(verdict));
  }
  flatbuffers::FlatBufferBuilder fbb;
  auto body = dispatch::CreateUpdateTaskStatusReply(fbb);
  call.reply(
      bus::message<dispatch::Envelope>(fbb, dispatch::Body::UpdateTaskStatusReply, body.Union()));
  flushTaskStatus(daemon_.loop().now());
}

void Dispatcher::flushTaskStatus(Clock::time_point now) {
  if (!store_ || !active_) return;
  if (!taskWrites_.due(now)) return armTaskStatus();
  for (auto& txn : taskWrites_.take(now, assignments_)) {
    uint64_t gen = writeGeneration_;
    store_->txn(std::move(txn.changes), {kWriteTimeout},
                [this, gen, id = txn.id, ids = std::move(txn.taskIds)](Result<uint64_t> r) {
                  if (gen != writeGeneration_) return;
                  if (r) {
                    ++counters_.taskTxns;
                    taskWrites_.succeeded(id, *r);
                    return armTaskStatus();
                  }
                  if (store::codeOf(r.error()) == wire::ErrorCode::Conflict) {
                    ++counters_.taskConflicts;
                    spdlog::debug("task status batch: {}; re-reading its {} tasks",
                                  r.error().message, ids.size());
                    return rereadTasks(id, ids);
                  }
                  ++counters_.taskFailures;
                  taskWriteWarning_.warn("task status batch of " + std::to_string(ids.size()) +
                                         " not written (" + r.error().message + "); retrying");
                  taskWrites_.failed(id);
                  armTaskStatus();
                });
  }
  armTaskStatus();
}

void Dispatcher::armTaskStatus() {
  if (statusTimer_ || !store_ || !active_) return;
  auto now = daemon_.loop().now();
  auto at = taskWrites_.dueAt(now);
  if (!at) return;
  statusTimer_ = daemon_.loop().after(*at - now, [this] {
    statusTimer_ = 0;
    flushTaskStatus(daemon_.loop().now());
  });
}

void Dispatcher::rereadTasks(uint64_t txn, const std::vector<std::string>& taskIds) {
  uint64_t gen = writeGeneration_;
  auto left = std::make_shared<size_t>(taskIds.size());
  for (auto& taskId : taskIds)
    store_->get(objects::ObjectKind::Task, taskId, {},
                [this, gen, txn, taskId, left](Result<store::Object> r) {
                  if (gen != writeGeneration_) return;
                  if (r) {
                    putTask(r->data, 0);
                  } else if (store::codeOf(r.error()) == wire::ErrorCode::NotFound) {
                    assignments_.erase(taskId);
                  }
                  // Another failure leaves the view as it was: the rebuilt write conflicts again,
                  // or the watch has brought the task meanwhile.
                  if (--*left > 0) return;
                  taskWrites_.failed(txn);
                  pushDue();
                  armTaskStatus();
                });
}

// --- Status --------------------------------------------------------------------------------

std::string Dispatcher::why() const {
  if (!config_) return idleReason_;
  if (!leadership_.known)
    return "raftd's leadership is not known (is raftd running on " + daemon_.runDir() + "/raftd.sock?)";
  if (!leadership_.isLeader)
    return leadership_.leaderId ? "raftd is a follower: agents are sent to the leader (raft id " +
                                      std::to_string(leadership_.leaderId) + ")"
                                : std::string("raftd is a follower and no leader is elected");
  return "raftd leads (term " + std::to_string(leadership_.term) + "): serving joins and sessions";
}

void Dispatcher::status(nlohmann::json& j) {
  auto now = daemon_.loop().now();
  nlohmann::json d;
  d["active"] = active_;
  d["state"] = active_ ? "active" : "idle";
  d["why"] = why();
  d["leadership"] = {{"known", leadership_.known}, {"is_leader", leadership_.isLeader},
                     {"leader_raft_id", leadership_.leaderId}, {"term", leadership_.term}};
  if (config_) {
    d["node_id"] = config_->nodeId;
    d["cluster_id"] = config_->clusterId;
    d["listen"] = server_ ? server_->endpoint() : "";
    d["hello"] = hello_ ? hello_->endpoint() : "";
    d["advertise"] = config_->dispatcherAddr();
    if (!leadership_.isLeader)
      if (auto leader = leaderOf(nodes_, leadership_.leaderId, config_->port))
        d["leader"] = {{"node_id", leader->nodeId}, {"addr", leader->dispatcherAddr}};
  }
  d["store_view"] = {{"loaded", loaded_}, {"nodes", nodes_.size()}, {"cluster", cluster_.has_value()}};
  if (!caError_.empty()) d["ca_error"] = caError_;
  d["heartbeat_period_ms"] = msOf(period());
  nlohmann::json nodes = nlohmann::json::array();
  for (auto& [id, e] : sessions_.all()) {
    nlohmann::json n = {{"node_id", id},
                        {"session", e.session.has_value()},
                        {"last_heartbeat_age_ms", msOf(now - e.lastSeen)},
                        {"expired", e.expired}};
    if (!e.expired) n["expires_in_ms"] = msOf(e.deadline - now);
    if (auto* node = nodes_.byId(id)) {
      n["hostname"] = node->description.hostname;
      n["state"] = stateName(effectiveState(*node));
    }
    nodes.push_back(std::move(n));
  }
  d["sessions"] = {{"count", sessions_.sessions()}, {"nodes", std::move(nodes)},
                   {"opened", counters_.sessionsOpened}, {"heartbeats", counters_.heartbeats},
                   {"down", counters_.downs}, {"redirects", counters_.redirects}};
  if (active_) d["active_for_ms"] = msOf(now - activeSince_);
  d["joins"] = {{"accepted", counters_.joinsAccepted}, {"refused", counters_.joinsRefused}};
  d["status_writes"] = {{"pending", writes_.pending()}, {"in_flight", writes_.inFlight()},
                        {"txns", counters_.writeTxns}, {"conflicts", counters_.writeConflicts},
                        {"failures", counters_.writeFailures}};
  nlohmann::json byNode = nlohmann::json::object();
  for (auto& [nodeId, ids] : assignments_.byNode()) byNode[nodeId] = ids.size();
  d["assignments"] = {{"streams", streams_.size()},
                      {"streams_opened", counters_.streamsOpened},
                      {"items_sent", counters_.assignmentItems},
                      {"tasks", assignments_.tasks()},
                      {"tasks_by_node", std::move(byNode)}};
  auto& tc = taskWrites_.counters();
  d["task_status"] = {{"requests", counters_.statusRequests},
                      {"received", tc.received},
                      {"accepted", tc.accepted},
                      {"written", tc.written},
                      {"ignored",
                       {{"unknown_task", tc.unknownTask},
                        {"other_node", tc.otherNode},
                        {"backwards", tc.backwards},
                        {"unchanged", tc.unchanged},
                        {"invalid", tc.invalid},
                        {"dropped", tc.dropped}}},
                      {"pending", taskWrites_.pending()},
                      {"in_flight", taskWrites_.inFlight()},
                      {"txns", counters_.taskTxns},
                      {"conflicts", counters_.taskConflicts},
                      {"failures", counters_.taskFailures}};
  auto busStats = [](const bus::Server& s) {
    auto& st = s.stats();
    return nlohmann::json{{"received", st.received}, {"sent", st.sent},
                          {"bad_messages", st.badMessages}, {"expired", st.expired}, {"dropped", st.dropped}};
  };
  if (logs_) logs_->status(d);
  if (server_) d["dispatch_bus"] = busStats(*server_);
  if (hello_) d["hello_bus"] = busStats(*hello_);
  if (zap_) d["zap"] = {{"admitted", zap_->admitted()}, {"refused", zap_->refused()}};
  j["dispatcher"] = std::move(d);
}

// --- logs (log_broker.h) ---------------------------------------------------------------------

std::unique_ptr<LogBroker> Dispatcher::makeLogBroker() {
  LogBroker::Hooks hooks;
  hooks.nodeOfKey = [this](const std::string& key) -> Result<std::string> {
    auto* node = nodes_.byKey(key);
    if (!node) return Error{"this node is not one of the swarm's nodes (removed?); join again"};
    if (auto why = certificateRefusal(node->certificateExpiry, unixNanos())) return Error{*why};
    return node->id;
  };
  hooks.inSession = [this](const std::string& node, const std::string& sid) { return inSession(node, sid); };
  hooks.isManager = [this](const std::string& id) {
    auto* node = nodes_.byId(id);
    return node && node->role == objects::NodeRole::Manager;
  };
  hooks.refusal = [this]() -> std::optional<std::string> {
    if (!active_) return why();
    if (!loaded_) return std::string("it is still reading the store");
    return std::nullopt;
  };
  hooks.resolve = [this](const logapi::LogSelector* selector) { return logTasks(selector); };
  return std::make_unique<LogBroker>(daemon_.loop(), std::move(hooks));
}

// Every assigned task of the selector's services and the named tasks, by node: ended ones too,
// as `docker service logs` shows them.
std::map<std::string, std::vector<std::string>> Dispatcher::logTasks(const logapi::LogSelector* selector) const {
  std::set<std::string> services, tasks;
  if (selector && selector->service_ids())
    for (auto* s : *selector->service_ids()) services.insert(s->str());
  if (selector && selector->task_ids())
    for (auto* t : *selector->task_ids()) tasks.insert(t->str());
  std::map<std::string, std::vector<std::string>> out;
  for (auto& [nodeId, ids] : assignments_.byNode())
    for (auto& id : ids) {
      const TaskEntry* entry = assignments_.task(id);
      if (!entry) continue;
      auto* task = flatbuffers::GetRoot<objects::Task>(entry->bytes.data());  // verified when read
      if (tasks.count(id) || (task->service_id() && services.count(task->service_id()->str())))
        out[nodeId].push_back(id);
    }
  return out;
}

}  // namespace shoal::dispatcherd
