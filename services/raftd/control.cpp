#include "services/raftd/control.h"

#include <spdlog/spdlog.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <fstream>
#include <sstream>

#include "common/identity.h"
#include "common/ids.h"
#include "services/raftd/protocols.h"

namespace shoal::raftd {

namespace {

using namespace std::chrono_literals;
using objects::ObjectKind;
using objects::Operation;
using wire::ErrorCode;

// Control requests are few (a person or a daemon of this node asks); more waiting than this
// is a loop gone wrong somewhere, refused rather than queued without bound.
constexpr size_t kMaxQueued = 64;
// How long this raftd may take to lead after it bootstrapped or forced a new cluster: it
// is the only voter, so one election timeout, with room for a slow disk.
constexpr auto kLeadLimit = 10s;
constexpr auto kTransferLimit = 5s;
// agentd waits 5 s for raftd (services/agentd/local_daemons.h): a leave whose cluster does not
// answer must be decided within that.
constexpr auto kLeaveReadBudget = 2500ms;

const char* const kAlreadyInSwarm =
    "this node is already part of a swarm; use `shoal swarm leave` to leave it, or `shoal "
    "swarm init --force-new-cluster` to restart the cluster from this manager's state";
const char* const kNotInSwarm =
    "this node is not part of a swarm: `shoal swarm init` starts one, `shoal swarm join` "
    "joins one";

std::string str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }

int64_t unixSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

uint64_t randomNonZero() {
  auto random = identity::systemRandom();
  uint64_t v = 0;
  while (v == 0) random(std::span(reinterpret_cast<uint8_t*>(&v), sizeof v));
  return v;
}

// A raft id no member has: raft ids name members for the life of the cluster.
uint64_t newRaftId(const std::vector<control::ManagerView>& taken) {
  for (;;) {
    uint64_t id = randomNonZero();
    if (std::none_of(taken.begin(), taken.end(), [&](auto& m) { return m.raftId == id; }))
      return id;
  }
}

template <class T>
Result<std::unique_ptr<typename T::NativeTableType>> unpack(const std::string& bytes,
                                                            std::string_view what) {
  flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  if (!v.VerifyBuffer<T>(nullptr))
    return Error{"a stored " + std::string(what) + " does not verify: the store is damaged",
                 static_cast<int>(ErrorCode::Internal)};
  return std::unique_ptr<typename T::NativeTableType>(
      flatbuffers::GetRoot<T>(bytes.data())->UnPack());
}

// Writers put a zero Meta in what they write; the store fills it in (objects.fbs).
template <class T>
std::string pack(typename T::NativeTableType& object) {
  object.meta = std::make_unique<objects::Meta>();
  flatbuffers::FlatBufferBuilder fbb;
  fbb.Finish(T::Pack(fbb, &object));
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

uint64_t versionOf(const std::unique_ptr<objects::Meta>& meta) {
  return meta ? meta->version() : 0;
}

bus::Buffer swarmReply(flatbuffers::FlatBufferBuilder& fbb, swarmapi::Body type,
                       flatbuffers::Offset<void> body) {
  return bus::message<swarmapi::Envelope>(fbb, type, body);
}

struct InitAnswer {
  std::string nodeId, clusterId, workerToken, managerToken, advertiseAddr;
};

bus::Buffer initReply(const InitAnswer& a) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = swarmapi::CreateInitReplyDirect(fbb, a.nodeId.c_str(), a.clusterId.c_str(),
                                              a.workerToken.c_str(), a.managerToken.c_str(),
                                              a.advertiseAddr.c_str());
  return swarmReply(fbb, swarmapi::Body::InitReply, body.Union());
}

bus::Buffer nodeReply(const std::string& nodeId) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = swarmapi::CreateNodeReply(fbb, fbb.CreateString(nodeId));
  return swarmReply(fbb, swarmapi::Body::NodeReply, body.Union());
}

// The advertise host when none is given: the first IPv4 address of the interface of the
// default route, as `docker swarm init` picks it.
Result<std::string> defaultAdvertiseHost() {
  std::ifstream in("/proc/net/route");
  std::stringstream text;
  text << in.rdbuf();
  auto iface = control::defaultRouteInterface(text.str());
  if (!iface)
    return Error{
        "this host has no IPv4 default route, so raftd cannot tell which address to "
        "advertise: give --advertise-addr (an address or an interface)",
        EINVAL};
  auto hp = node::parseAddr(*iface);
  if (!hp)
    return Error{"the default route's interface " + *iface + ": " + hp.error().message +
                     "; give --advertise-addr",
                 EINVAL};
  return hp->host;
}

std::string architecture() {
  utsname u{};
  if (::uname(&u) != 0) return "unknown";
  std::string m = u.machine;
  if (m == "x86_64") return "amd64";
  if (m == "aarch64") return "arm64";
  if (m.starts_with("armv7")) return "arm";
  if (m == "i686" || m == "i386") return "386";
  return m;
}

// This node's description until its agentd opens a session and sends its own.
std::unique_ptr<objects::NodeDescriptionT> localDescription() {
  auto d = std::make_unique<objects::NodeDescriptionT>();
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) == 0) d->hostname = host;
  d->platform = std::make_unique<objects::PlatformT>();
  d->platform->os = "linux";
  d->platform->architecture = architecture();
  d->resources = std::make_unique<objects::ResourcesT>();
  long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  long pages = ::sysconf(_SC_PHYS_PAGES);
  long pageSize = ::sysconf(_SC_PAGESIZE);
  d->resources->nano_cpus = cpus > 0 ? cpus * 1'000'000'000LL : 0;
  d->resources->memory_bytes = pages > 0 && pageSize > 0 ? int64_t(pages) * pageSize : 0;
  d->engine = std::make_unique<objects::EngineDescriptionT>();
  d->engine->engine_version = SHOAL_VERSION;
  return d;
}

bool isManager(const objects::NodeT& n) {
  return n.role == objects::NodeRole::Manager ||
         (n.spec && n.spec->desired_role == objects::NodeRole::Manager);
}

uint64_t raftIdOf(const objects::NodeT& n) {
  return n.manager_status ? n.manager_status->raft_id : 0;
}

std::string hostOf(std::string_view hostPort) {
  auto hp = node::parseAddr(hostPort, node::kDefaultPort, false);
  return hp ? hp->host : std::string(hostPort);
}

// The Cluster object of a new swarm (objects.fbs; defaults are Swarm's).
std::unique_ptr<objects::ClusterT> newCluster(const std::string& clusterId,
                                              const control::InitSettings& s,
                                              const identity::ClusterCA& ca,
                                              const identity::JoinTokens& tokens,
                                              const NodeOptions& options) {
  auto cluster = std::make_unique<objects::ClusterT>();
  cluster->id = clusterId;
  cluster->spec = std::make_unique<objects::ClusterSpecT>();
  auto& spec = *cluster->spec;
  spec.annotations = std::make_unique<objects::AnnotationsT>();
  spec.annotations->name = "default";
  spec.orchestration = std::make_unique<objects::OrchestrationConfigT>();
  spec.orchestration->task_history_retention_limit = 5;
  spec.raft = std::make_unique<objects::RaftConfigT>();
  spec.raft->snapshot_interval = options.snapshotInterval;
  spec.raft->log_entries_for_slow_followers = options.keepEntries;
  spec.raft->heartbeat_tick = static_cast<uint32_t>(options.heartbeatTicks);
  spec.raft->election_tick = static_cast<uint32_t>(options.electionTicks);
  spec.raft->tick_ms = static_cast<uint32_t>(options.tick.count());
  spec.dispatcher = std::make_unique<objects::DispatcherConfigT>();
  spec.dispatcher->heartbeat_period = s.heartbeat.count();
  spec.ca_config = std::make_unique<objects::CaConfigT>();
  spec.ca_config->node_cert_expiry = s.certExpiry.count();
  cluster->root_ca = std::make_unique<objects::RootCaT>();
  cluster->root_ca->ca_key = ca.saveWithSecret();
  cluster->root_ca->ca_public_key = ca.savePublic();
  // The digest as join tokens write it: SWMTKN-1-<50 base36 digits>-<secret>.
  cluster->root_ca->ca_digest = tokens.worker.substr(9, identity::kTokenDigestLength);
  cluster->root_ca->join_tokens = std::make_unique<objects::JoinTokensT>();
  cluster->root_ca->join_tokens->worker = tokens.worker;
  cluster->root_ca->join_tokens->manager = tokens.manager;
  cluster->default_address_pool = s.addressPools;
  cluster->subnet_size = s.subnetSize;
  cluster->vxlan_udp_port = control::kVxlanPort;
  return cluster;
}

// The Node of the manager that makes a new swarm: Ready, Active, the leader.
std::unique_ptr<objects::NodeT> newManagerNode(const std::string& nodeId,
                                               const control::InitSettings& s, uint64_t raftId,
                                               const std::string& raftAdvertise,
                                               const identity::CurvePublicKey& key,
                                               const std::vector<uint8_t>& cert, int64_t notAfter) {
  auto self = std::make_unique<objects::NodeT>();
  self->id = nodeId;
  self->spec = std::make_unique<objects::NodeSpecT>();
  self->spec->annotations = std::make_unique<objects::AnnotationsT>();
  self->spec->desired_role = objects::NodeRole::Manager;
  self->spec->membership = objects::NodeMembership::Accepted;
  self->spec->availability = objects::NodeAvailability::Active;
  self->description = localDescription();
  self->status = std::make_unique<objects::NodeStatusT>();
  self->status->state = objects::NodeState::Ready;
  self->status->addr = s.advertiseHost;
  self->manager_status = std::make_unique<objects::ManagerStatusT>();
  self->manager_status->raft_id = raftId;
  self->manager_status->addr = raftAdvertise;
  self->manager_status->leader = true;
  self->manager_status->reachability = objects::Reachability::Reachable;
  self->role = objects::NodeRole::Manager;
  self->curve_public_key.assign(key.begin(), key.end());
  self->certificate = cert;
  self->certificate_expiry = notAfter * 1'000'000'000LL;
  return self;
}

}  // namespace

// --- Setup ---------------------------------------------------------------------------------

Result<std::unique_ptr<Control>> Control::start(Daemon& daemon, RaftNode& node,
                                                const NodeOptions& options) {
  auto dir = node::NodeDir::open(daemon.nodeDir());
  if (!dir) return dir.error();
  std::unique_ptr<Control> c(new Control(daemon, node, std::move(dir).value(), options));
  Control* self = c.get();
  daemon.server().serve(kSwarmProtocol, [self](bus::Call call) { self->enqueue(std::move(call)); });
  daemon.addStatus([self](nlohmann::json& j) { self->status(j); });
  return c;
}

Control::Control(Daemon& daemon, RaftNode& node, node::NodeDir dir, const NodeOptions& options)
    : daemon_(daemon),
      node_(node),
      dir_(std::move(dir)),
      options_(options),
      store_(daemon.loop(), node) {}

Control::~Control() { *alive_ = false; }

void Control::status(nlohmann::json& j) const {
  j["control"] = {{"served", served_},
                  {"refused", refused_},
                  {"busy", busy_},
                  {"queued", queue_.size()},
                  {"last_error", lastError_}};
}

Result<node::NodeConfig> Control::swarmConfig() const {
  auto c = dir_.load();
  if (!c) return Error{c.error().message, static_cast<int>(ErrorCode::Internal)};
  if (!c->has_value()) return Error{kNotInSwarm, static_cast<int>(ErrorCode::Unavailable)};
  return std::move(**c);
}

// --- The queue -----------------------------------------------------------------------------

void Control::enqueue(bus::Call call) {
  if (auto* env = call.as<swarmapi::Envelope>();
      env && env->body_type() == swarmapi::Body::InfoRequest && env->body())
    return info(std::make_shared<Request>(Request{std::move(call), false}));
  if (queue_.size() >= kMaxQueued)
    return call.fail(
        ErrorCode::ResourceExhausted,
        std::to_string(queue_.size()) + " control requests wait already; retry shortly");
  queue_.push_back(std::move(call));
  if (!busy_) next();
}

void Control::next() {
  while (!busy_ && !queue_.empty()) {
    auto r = std::make_shared<Request>(Request{std::move(queue_.front()), true});
    queue_.pop_front();
    if (r->call.expired()) {  // its caller gave up while it waited
      r->call.fail(ErrorCode::DeadlineExceeded, "the control request waited too long");
      continue;
    }
    busy_ = true;
    serve(std::move(r));
  }
}

void Control::reply(const Req& r, bus::Buffer buf) {
  ++served_;
  r->call.reply(std::move(buf));
  done(r);
}

void Control::done(const Req& r) {
  if (!r->queued) return;
  busy_ = false;
  std::weak_ptr<bool> alive = alive_;
  daemon_.loop().post([this, alive] {
    if (!alive.expired()) next();
  });
}

void Control::ok(const Req& r) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = swarmapi::CreateOkReply(fbb);
  reply(r, swarmReply(fbb, swarmapi::Body::OkReply, body.Union()));
}

void Control::fail(const Req& r, ErrorCode code, const std::string& message) {
  if (code == ErrorCode::None) code = ErrorCode::Internal;  // an error always says one
  ++refused_;
  lastError_ = message;
  spdlog::info("control: refused {}: {}",
               swarmapi::EnumNameBody(r->call.as<swarmapi::Envelope>()->body_type()), message);
  r->call.fail(code, message);
  done(r);
}

// error.code is a wire::ErrorCode: every error that reaches here comes from the store API or
// was made here with one.
void Control::fail(const Req& r, const Error& error) {
  fail(r, store::codeOf(error), error.message);
}

void Control::serve(Req r) {
  auto* env = r->call.as<swarmapi::Envelope>();
  if (!env->body())
    return fail(
        r, ErrorCode::BadMessage,
        std::string("swarm message ") + swarmapi::EnumNameBody(env->body_type()) + " has no body");
  switch (env->body_type()) {
    case swarmapi::Body::InitRequest:
      return init(std::move(r));
    case swarmapi::Body::JoinRaftRequest:
      return joinRaft(std::move(r));
    case swarmapi::Body::JoinTokenRequest:
      return joinToken(std::move(r));
    case swarmapi::Body::UpdateRequest:
      return update(std::move(r));
    case swarmapi::Body::InfoRequest:
      return info(std::move(r));
    case swarmapi::Body::NodeUpdateRequest:
      return nodeUpdate(std::move(r));
    case swarmapi::Body::NodeRemoveRequest:
      return nodeRemove(std::move(r));
    case swarmapi::Body::LeaveRequest:
      return leave(std::move(r));
    default:
      return fail(r, ErrorCode::Unimplemented,
                  std::string("swarm message ") + swarmapi::EnumNameBody(env->body_type()) +
                      " is not a request raftd serves");
  }
}

// --- The store -----------------------------------------------------------------------------

void Control::storeCall(bus::Buffer request, Then<bus::Frame> fn, Millis budget) {
  store_.call(std::move(request), std::move(fn), budget);
}

void Control::get(ObjectKind kind, const std::string& id, Then<std::string> fn) {
  store_.get(kind, id, std::move(fn));
}

void Control::list(ObjectKind kind, bool local, Then<std::vector<std::string>> fn, Millis budget) {
  store_.list(kind, local, std::move(fn), budget);
}

void Control::listNodes(Then<std::vector<std::unique_ptr<objects::NodeT>>> fn, Millis budget) {
  list(
      ObjectKind::Node, false,
      [fn = std::move(fn)](Result<std::vector<std::string>> r) {
        if (!r) return fn(r.error());
        std::vector<std::unique_ptr<objects::NodeT>> nodes;
        for (const auto& bytes : *r) {
          auto n = unpack<objects::Node>(bytes, "node");
          if (!n) return fn(n.error());
          nodes.push_back(std::move(n).value());
        }
        fn(std::move(nodes));
      },
      budget);
}

void Control::getCluster(Then<std::unique_ptr<objects::ClusterT>> fn) {
  auto config = swarmConfig();
  if (!config) return fn(config.error());
  get(ObjectKind::Cluster, config->clusterId, [fn = std::move(fn)](Result<std::string> r) {
    if (!r) {
      if (store::codeOf(r.error()) == ErrorCode::NotFound)
        return fn(
            Error{"the store has no Cluster object for this node's cluster: this manager's "
                  "store and node.json disagree",
                  static_cast<int>(ErrorCode::Internal)});
      return fn(r.error());
    }
    fn(unpack<objects::Cluster>(*r, "cluster"));
  });
}

void Control::commit(std::vector<store::ChangeSpec> changes, Then<uint64_t> fn) {
  store_.commit(std::move(changes), std::move(fn));
}

void Control::member(bus::Buffer request, std::function<void(Status)> fn) {
  storeCall(std::move(request), [fn = std::move(fn)](Result<bus::Frame> r) {
    if (!r) return fn(r.error());
    fn(Status{});
  });
}

void Control::waitUntil(std::function<bool()> done, Millis limit, std::function<void(bool)> fn) {
  auto end = daemon_.loop().now() + limit;
  auto poll = std::make_shared<std::function<void()>>();
  std::weak_ptr<bool> alive = alive_;
  std::weak_ptr<std::function<void()>> weakPoll = poll;
  *poll = [this, done, end, fn, alive, weakPoll] {
    if (alive.expired()) return;
    if (done()) return fn(true);
    if (daemon_.loop().now() >= end) return fn(false);
    auto again = weakPoll.lock();
    if (!again) return;
    daemon_.loop().after(20ms, [again] { (*again)(); });
  };
  (*poll)();
}

void Control::waitUntilLeader(Millis limit, std::function<void(bool)> fn) {
  waitUntil([this] { return node_.inCluster() && node_.role() == raft::Role::Leader; }, limit,
            std::move(fn));
}

void Control::waitLeaderOtherThan(uint64_t raftId, Millis limit, std::function<void(bool)> fn) {
  waitUntil([this, raftId] { return node_.leader() != 0 && node_.leader() != raftId; }, limit,
            std::move(fn));
}

// --- swarm init ----------------------------------------------------------------------------

void Control::init(Req r) {
  auto* req = r->call.as<swarmapi::Envelope>()->body_as_InitRequest();
  auto config = dir_.load();
  if (!config) return fail(r, ErrorCode::Internal, config.error().message);
  bool part = config->has_value() || node_.inCluster();
  if (part && !req->force_new_cluster()) return fail(r, ErrorCode::Conflict, kAlreadyInSwarm);
  if (part) {
    if (!config->has_value() || !(*config)->manager || !(*config)->raft || !node_.inCluster())
      return fail(r, ErrorCode::InvalidArgument,
                  "--force-new-cluster restarts a cluster from a manager's raft state, and this "
                  "node has none (it is a worker, or its raft state is gone): use `shoal swarm "
                  "leave --force`, then `shoal swarm init`");
    bool settings = (req->default_addr_pool() && req->default_addr_pool()->size() > 0) ||
                    req->subnet_size() || req->heartbeat_period() || req->cert_expiry();
    if (settings)
      return fail(r, ErrorCode::InvalidArgument,
                  "--force-new-cluster keeps the cluster's settings: leave out the address "
                  "pool, heartbeat and certificate expiry, and change them afterwards with "
                  "`shoal swarm update`");
    for (auto* addr : {req->advertise_addr(), req->listen_addr()}) {
      if (!addr || addr->size() == 0) continue;
      auto hp = node::parseAddr(addr->str(), (*config)->port);
      if (!hp || hp->port != (*config)->port ||
          (hp->host != (*config)->advertiseHost && hp->host != (*config)->listenHost))
        return fail(r, ErrorCode::InvalidArgument,
                    "--force-new-cluster keeps this manager's addresses (" +
                        (*config)->dispatcherAddr() +
                        "): leave out --advertise-addr and "
                        "--listen-addr, or give those");
    }
    return forceNewCluster(std::move(r), std::move(**config));
  }
  control::InitInput in;
  in.advertiseAddr = str(req->advertise_addr());
  in.listenAddr = str(req->listen_addr());
  if (req->default_addr_pool())
    for (auto* p : *req->default_addr_pool()) in.addressPools.push_back(p->str());
  in.subnetSize = req->subnet_size();
  in.heartbeatNs = req->heartbeat_period();
  in.certExpiryNs = req->cert_expiry();
  auto settings = control::validateInit(in, defaultAdvertiseHost);
  if (!settings) return fail(r, ErrorCode::InvalidArgument, settings.error().message);
  initNew(std::move(r), std::move(settings).value());
}

void Control::initNew(Req r, control::InitSettings s) {
  std::string clusterId = newId(), nodeId = newId();
  auto ca = identity::ClusterCA::create(clusterId);
  if (!ca) return fail(r, ErrorCode::Internal, "cannot make the cluster CA: " + ca.error().message);
  auto random = identity::systemRandom();
  auto tokens = identity::JoinTokens::make(*ca, random);
  // The key may have changed since start: a leave makes a new one (node_dir.h).
  auto reopened = node::NodeDir::open(dir_.path());
  if (!reopened) return fail(r, ErrorCode::Internal, reopened.error().message);
  dir_ = std::move(reopened).value();
  auto key = identity::curveKeyFromZ85(dir_.key().publicKey);
  if (!key) return fail(r, ErrorCode::Internal, dir_.path() + "/node.key: " + key.error().message);
  int64_t now = unixSeconds();
  auto validFor = std::chrono::duration_cast<std::chrono::seconds>(s.certExpiry) + 1h;
  auto cert =
      ca->issue(nodeId, identity::Role::Manager, *key, now - 3600, validFor, randomNonZero());
  if (!cert)
    return fail(r, ErrorCode::Internal,
                "cannot issue this node's certificate: " + cert.error().message);
  int64_t notAfter = now - 3600 + validFor.count();
  uint64_t raftId = randomNonZero(), raftClusterId = randomNonZero();

  node::NodeConfig config{.nodeId = nodeId,
                          .clusterId = clusterId,
                          .manager = true,
                          .certificate = *cert,
                          .ca = ca->savePublic(),
                          .advertiseHost = s.advertiseHost,
                          .listenHost = s.listenHost,
                          .port = s.port,
                          .managers = {},
                          .raft = node::RaftIdentity{raftId, raftClusterId}};
  config.managers = {{nodeId, config.dispatcherAddr(), dir_.key().publicKey}};
  if (auto st = dir_.save(config); !st)
    return fail(r, ErrorCode::Internal, "cannot write node.json: " + st.error().message);

  // From here on a failure undoes what was done, and says what is left.
  auto undo = [this](const std::string& why) -> std::string {
    std::string left;
    if (node_.inCluster())
      if (auto st = node_.leave(); !st)
        left += "; raftd could not forget its raft state (" + st.error().message + ")";
    if (auto st = dir_.clear(); !st) left += "; " + st.error().message;
    if (left.empty()) return "swarm init failed: " + why + "; nothing is left of it, retry";
    return "swarm init failed: " + why + left + "; run `shoal swarm leave --force` before retrying";
  };
  std::string raftListen = node::joinHostPort(s.listenHost, node::raftPort(s.port));
  std::string raftAdvertise = config.raftAddr();
  if (auto st = node_.bootstrap(raftId, raftClusterId, raftListen, raftAdvertise); !st)
    return fail(r, ErrorCode::Unavailable, undo("raft did not start: " + st.error().message));
  spdlog::info("swarm init: cluster {}, this node {} (raft {:x}), advertised at {}", clusterId,
               nodeId, raftId, config.dispatcherAddr());

  std::shared_ptr<objects::ClusterT> cluster = newCluster(clusterId, s, *ca, tokens, options_);
  std::shared_ptr<objects::NodeT> self =
      newManagerNode(nodeId, s, raftId, raftAdvertise, *key, *cert, notAfter);

  InitAnswer answer{nodeId, clusterId, tokens.worker, tokens.manager, config.dispatcherAddr()};
  waitUntilLeader(kLeadLimit, [this, r, undo, cluster, self, answer](bool leads) {
    if (!leads)
      return fail(r, ErrorCode::Unavailable,
                  undo("this raftd did not become leader of its new cluster"));
    std::vector<store::ChangeSpec> changes{
        {ObjectKind::Cluster, Operation::Create, cluster->id, 0, pack<objects::Cluster>(*cluster)},
        {ObjectKind::Node, Operation::Create, self->id, 0, pack<objects::Node>(*self)}};
    commit(std::move(changes), [this, r, undo, answer](Result<uint64_t> index) {
      if (!index)
        return fail(r, ErrorCode::Unavailable,
                    undo("the cluster's first transaction failed: " + index.error().message));
      reply(r, initReply(answer));
    });
  });
}

void Control::forceNewCluster(Req r, node::NodeConfig config) {
  if (auto st = node_.forceNewCluster(); !st)
    return fail(r, ErrorCode::Unavailable, "--force-new-cluster: " + st.error().message);
  spdlog::warn("swarm init --force-new-cluster: this manager ({}) is now the only member of raft",
               config.nodeId);
  auto cfg = std::make_shared<node::NodeConfig>(std::move(config));
  waitUntilLeader(kLeadLimit, [this, r, cfg](bool leads) {
    if (!leads)
      return fail(r, ErrorCode::Unavailable,
                  "--force-new-cluster: raft restarted as a one-member cluster but this raftd "
                  "did not become leader; see raftd's log, then retry");
    listNodes([this, r, cfg](Result<std::vector<std::unique_ptr<objects::NodeT>>> nodes) {
      if (!nodes)
        return fail(r, ErrorCode::Unavailable,
                    "--force-new-cluster: reading the nodes: " + nodes.error().message);
      std::vector<store::ChangeSpec> changes;
      std::vector<std::string> demoted;
      for (auto& n : *nodes) {
        uint64_t version = versionOf(n->meta);
        if (n->id == cfg->nodeId) {
          if (!n->manager_status) n->manager_status = std::make_unique<objects::ManagerStatusT>();
          n->manager_status->raft_id = cfg->raft->id;
          n->manager_status->addr = cfg->raftAddr();
          n->manager_status->leader = true;
          n->manager_status->reachability = objects::Reachability::Reachable;
        } else if (isManager(*n)) {
          // Demoted and marked, for the operator to remove (docs/cluster.md).
          demoted.push_back(control::nodeLabel(*n));
          n->role = objects::NodeRole::Worker;
          if (n->spec) n->spec->desired_role = objects::NodeRole::Worker;
          n->manager_status.reset();
          if (!n->status) n->status = std::make_unique<objects::NodeStatusT>();
          n->status->state = objects::NodeState::Down;
          n->status->message = "demoted by swarm init --force-new-cluster on " + cfg->nodeId +
                               ": no longer a manager; remove it with `shoal node rm --force`";
        } else {
          continue;
        }
        changes.push_back(
            {ObjectKind::Node, Operation::Update, n->id, version, pack<objects::Node>(*n)});
      }
      if (!demoted.empty()) {
        std::string list;
        for (auto& d : demoted) list += (list.empty() ? "" : ", ") + d;
        spdlog::warn(
            "--force-new-cluster: the other managers ({}) were demoted; remove them with "
            "`shoal node rm --force`, then join managers again with the manager token",
            list);
      }
      auto answer = [this, r, cfg] {
        getCluster([this, r, cfg](Result<std::unique_ptr<objects::ClusterT>> cluster) {
          if (!cluster) return fail(r, cluster.error());
          std::string worker, manager;
          if ((*cluster)->root_ca && (*cluster)->root_ca->join_tokens) {
            worker = (*cluster)->root_ca->join_tokens->worker;
            manager = (*cluster)->root_ca->join_tokens->manager;
          }
          reply(r,
                initReply({cfg->nodeId, cfg->clusterId, worker, manager, cfg->dispatcherAddr()}));
        });
      };
      if (changes.empty()) return answer();
      commit(std::move(changes), [this, r, answer](Result<uint64_t> index) {
        if (!index)
          return fail(r, ErrorCode::Unavailable,
                      "--force-new-cluster: raft now has this manager alone, but writing the "
                      "managers' new state failed: " +
                          index.error().message + "; retry");
        answer();
      });
    });
  });
}

// --- JoinRaft (from the local agentd) ------------------------------------------------------

void Control::joinRaft(Req r) {
  auto* req = r->call.as<swarmapi::Envelope>()->body_as_JoinRaftRequest();
  control::JoinRaftInput in;
  in.raftId = req->raft_id();
  in.raftClusterId = req->raft_cluster_id();
  in.listenAddr = str(req->listen_addr());
  in.advertiseAddr = str(req->advertise_addr());
  if (req->peers())
    for (auto* p : *req->peers())
      in.peers.push_back({p->raft_id(), str(p->addr()), str(p->curve_public_key())});
  if (auto st = control::validateJoinRaft(in); !st)
    return fail(r, ErrorCode::InvalidArgument, st.error().message);
  auto config = swarmConfig();
  if (!config)
    return fail(
        r, ErrorCode::Unavailable,
        "JoinRaft: " + config.error().message + " (agentd writes node.json before it asks)");
  if (!config->manager || !config->raft || config->raft->id != in.raftId ||
      config->raft->clusterId != in.raftClusterId)
    return fail(r, ErrorCode::InvalidArgument,
                "JoinRaft: node.json does not name this node a manager with raft id " +
                    fmt::format("{:x}", in.raftId) +
                    " in that raft cluster; agentd writes it first");
  if (node_.inCluster()) {
    if (node_.id() == in.raftId) return ok(r);  // joined already (agentd asked again)
    return fail(
        r, ErrorCode::Conflict,
        fmt::format("this raftd is already a raft member (raft id {:x}): `shoal swarm leave` first",
                    node_.id()));
  }
  std::vector<RaftNode::Peer> peers;
  for (auto& p : in.peers) peers.push_back({p.raftId, p.addr, p.publicKey});
  if (auto st = node_.joinRaft(in.raftId, in.raftClusterId, in.listenAddr, in.advertiseAddr,
                               std::move(peers));
      !st)
    return fail(r, ErrorCode::Unavailable, "JoinRaft: " + st.error().message);
  spdlog::info("joined raft as {:x} (a learner until the leader promotes it), peers at {}",
               in.raftId, in.advertiseAddr);
  ok(r);
}

// --- join-token, update, info --------------------------------------------------------------

Result<node::NodeConfig> Control::managerConfig(std::string_view what) const {
  auto config = swarmConfig();
  if (!config) return config.error();
  if (!config->manager)
    return Error{std::string(what) + ": this node is a worker; run it on a manager",
                 static_cast<int>(ErrorCode::InvalidArgument)};
  return config;
}

void Control::joinToken(Req r) {
  auto* req = r->call.as<swarmapi::Envelope>()->body_as_JoinTokenRequest();
  if (req->role() > objects::NodeRole::MAX)
    return fail(r, ErrorCode::InvalidArgument,
                "join-token: role " + std::to_string(static_cast<int>(req->role())) +
                    " is neither worker nor manager");
  auto config = managerConfig("join-token");
  if (!config) return fail(r, config.error());
  auto role = static_cast<identity::Role>(req->role());
  bool rotate = req->rotate();
  std::string addr = config->dispatcherAddr();
  getCluster([this, r, role, rotate, addr](Result<std::unique_ptr<objects::ClusterT>> got) {
    if (!got) return fail(r, got.error());
    std::shared_ptr<objects::ClusterT> cluster = std::move(got).value();
    if (!cluster->root_ca || !cluster->root_ca->join_tokens)
      return fail(r, ErrorCode::Internal,
                  "the Cluster object has no join tokens: the store is damaged");
    auto& stored = *cluster->root_ca->join_tokens;
    auto answer = [this, r, addr](const std::string& token) {
      flatbuffers::FlatBufferBuilder fbb;
      auto body = swarmapi::CreateJoinTokenReplyDirect(fbb, token.c_str(), addr.c_str());
      reply(r, swarmReply(fbb, swarmapi::Body::JoinTokenReply, body.Union()));
    };
    if (!rotate) return answer(role == identity::Role::Manager ? stored.manager : stored.worker);
    auto ca = identity::ClusterCA::load(cluster->root_ca->ca_key);
    if (!ca)
      return fail(r, ErrorCode::Internal, "the cluster's CA does not load: " + ca.error().message);
    identity::JoinTokens tokens{stored.worker, stored.manager};
    tokens.rotate(role, *ca, identity::systemRandom());
    stored.worker = tokens.worker;
    stored.manager = tokens.manager;
    std::string token = role == identity::Role::Manager ? tokens.manager : tokens.worker;
    uint64_t version = versionOf(cluster->meta);
    commit({{ObjectKind::Cluster, Operation::Update, cluster->id, version,
             pack<objects::Cluster>(*cluster)}},
           [this, r, role, token, answer](Result<uint64_t> index) {
             if (!index) {
               if (store::codeOf(index.error()) == ErrorCode::Conflict)
                 return fail(
                     r, ErrorCode::Conflict,
                     "the cluster changed while the token was rotated; nothing was changed, retry");
               return fail(r, index.error());
             }
             spdlog::info("rotated the {} join token: the old one no longer admits",
                          identity::roleName(role));
             answer(token);
           });
  });
}

void Control::update(Req r) {
  auto* req = r->call.as<swarmapi::Envelope>()->body_as_UpdateRequest();
  int64_t heartbeat = req->heartbeat_period(), expiry = req->cert_expiry();
  if (heartbeat == 0 && expiry == 0)
    return fail(r, ErrorCode::InvalidArgument,
                "swarm update: nothing to change; give --dispatcher-heartbeat or --cert-expiry");
  if (heartbeat != 0)
    if (auto h = control::checkHeartbeat(heartbeat); !h)
      return fail(r, ErrorCode::InvalidArgument, h.error().message);
  if (expiry != 0)
    if (auto e = control::checkCertExpiry(expiry); !e)
      return fail(r, ErrorCode::InvalidArgument, e.error().message);
  if (auto config = managerConfig("swarm update"); !config) return fail(r, config.error());
  getCluster([this, r, heartbeat, expiry](Result<std::unique_ptr<objects::ClusterT>> got) {
    if (!got) return fail(r, got.error());
    auto& cluster = **got;
    if (!cluster.spec) cluster.spec = std::make_unique<objects::ClusterSpecT>();
    if (heartbeat != 0) {
      if (!cluster.spec->dispatcher)
        cluster.spec->dispatcher = std::make_unique<objects::DispatcherConfigT>();
      cluster.spec->dispatcher->heartbeat_period = heartbeat;
    }
    if (expiry != 0) {
      if (!cluster.spec->ca_config)
        cluster.spec->ca_config = std::make_unique<objects::CaConfigT>();
      cluster.spec->ca_config->node_cert_expiry = expiry;
    }
    uint64_t version = versionOf(cluster.meta);
    commit({{ObjectKind::Cluster, Operation::Update, cluster.id, version,
             pack<objects::Cluster>(cluster)}},
           [this, r](Result<uint64_t> index) {
             if (!index) {
               if (store::codeOf(index.error()) == ErrorCode::Conflict)
                 return fail(r, ErrorCode::Conflict,
                             "the cluster changed meanwhile; nothing was changed, retry");
               return fail(r, index.error());
             }
             spdlog::info("swarm update: the cluster's settings changed");
             ok(r);
           });
  });
}

// docs/cluster.md "`shoal info`'s fields": docker's swarm.Info names; what raftd does not
// know is left out.
void Control::info(Req r) {
  auto answer = [this, r](const nlohmann::json& j) {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = swarmapi::CreateInfoReplyDirect(fbb, j.dump().c_str());
    reply(r, swarmReply(fbb, swarmapi::Body::InfoReply, body.Union()));
  };
  nlohmann::json j;
  auto loaded = dir_.load();
  if (!loaded) {
    j["LocalNodeState"] = "error";
    j["Error"] = loaded.error().message;
    return answer(j);
  }
  if (loaded->has_value()) {
    j["NodeID"] = (*loaded)->nodeId;
    j["ClusterID"] = (*loaded)->clusterId;
  }
  if (!node_.inCluster()) {
    // A worker's raftd is idle: agentd speaks for the node.
    if (!loaded->has_value()) j["LocalNodeState"] = "inactive";
    return answer(j);
  }
  nlohmann::json status;
  node_.status(status);
  j["LocalNodeState"] = "active";
  j["RaftID"] = node_.id();
  j["Term"] = status.value("term", uint64_t{0});
  j["Error"] = "";
  uint64_t leader = node_.leader();
  auto shared = std::make_shared<nlohmann::json>(std::move(j));
  // The leader's node id from this manager's own copy: info answers without quorum too.
  list(ObjectKind::Node, true, [shared, leader, answer](Result<std::vector<std::string>> nodes) {
    auto& j = *shared;
    j["Leader"] = "";
    if (!nodes) {
      j["Error"] = "cannot read the nodes: " + nodes.error().message;
      return answer(j);
    }
    for (const auto& bytes : *nodes) {
      auto n = unpack<objects::Node>(bytes, "node");
      if (n && leader != 0 && raftIdOf(**n) == leader) j["Leader"] = (*n)->id;
    }
    answer(j);
  });
}

// --- nodes ---------------------------------------------------------------------------------

std::vector<control::ManagerView> Control::managerViews(
    const std::vector<std::unique_ptr<objects::NodeT>>& nodes) const {
  std::vector<control::StoredManager> stored;
  for (const auto& n : nodes)
    if (isManager(*n) && raftIdOf(*n) != 0)
      stored.push_back({control::nodeLabel(*n), raftIdOf(*n),
                        n->manager_status->reachability == objects::Reachability::Reachable});
  control::RaftView view;
  if (node_.inCluster()) {
    view.self = node_.id();
    view.leader = node_.leader();
    view.leads = node_.role() == raft::Role::Leader;
    for (const auto& m : node_.members()) view.members.push_back({m.id, m.voter, m.reachable});
  }
  return control::managerViews(stored, view);
}

bool Control::inRaftConfig(uint64_t raftId) const {
  if (!node_.inCluster()) return false;
  auto members = node_.members();
  if (members.empty()) return true;  // not known here: let raft say
  return std::any_of(members.begin(), members.end(), [&](auto& m) { return m.id == raftId; });
}

void Control::moveLeadershipOff(uint64_t raftId, const std::vector<control::ManagerView>& managers,
                                std::function<void(Status)> fn) {
  if (node_.leader() != raftId) return fn(Status{});
  auto to = std::find_if(managers.begin(), managers.end(),
                         [&](auto& m) { return m.voter && m.reachable && m.raftId != raftId; });
  if (to == managers.end())
    return fn(Error{"no other reachable manager can take over the leadership",
                    static_cast<int>(ErrorCode::Unavailable)});
  std::string name = to->name;
  spdlog::info("moving the leadership from {:x} to {}", raftId, name);
  member(store::transferLeaderRequest(to->raftId), [this, raftId, name, fn](Status st) {
    if (!st)
      return fn(
          Error{"moving the leadership to " + name + ": " + st.error().message, st.error().code});
    waitLeaderOtherThan(raftId, kTransferLimit, [fn, name](bool moved) {
      if (moved) return fn(Status{});
      fn(Error{"the leadership did not move to " + name + " within 5s; retry",
               static_cast<int>(ErrorCode::Unavailable)});
    });
  });
}

void Control::writeNode(Req r, std::string id, Mutation mutate, Undo undo, int attempt) {
  get(ObjectKind::Node, id, [this, r, id, mutate, undo, attempt](Result<std::string> bytes) {
    auto failed = [this, r, undo](ErrorCode code, std::string why) {
      if (!undo) return fail(r, code, why);
      undo([this, r, code, why](Status st) {
        fail(r, code,
             st ? why + "; its raft membership change was undone"
                : why + "; undoing its raft membership change failed too (" + st.error().message +
                      "): run the command again");
      });
    };
    if (!bytes) {
      if (store::codeOf(bytes.error()) == ErrorCode::NotFound)
        return failed(ErrorCode::NotFound, "node " + id + " was removed meanwhile");
      return failed(store::codeOf(bytes.error()),
                    "reading node " + id + ": " + bytes.error().message);
    }
    auto node = unpack<objects::Node>(*bytes, "node");
    if (!node) return failed(ErrorCode::Internal, node.error().message);
    auto& n = **node;
    uint64_t version = versionOf(n.meta);
    std::string name = control::nodeLabel(n);
    if (auto st = mutate(n); !st) return failed(ErrorCode::InvalidArgument, st.error().message);
    commit({{ObjectKind::Node, Operation::Update, id, version, pack<objects::Node>(n)}},
           [this, r, id, mutate, undo, attempt, name, failed](Result<uint64_t> index) {
             if (index) {
               spdlog::info("node {} updated", name);
               return reply(r, nodeReply(id));
             }
             // The node's status changes under us (sessions, the leader's manager status):
             // read it again and apply the same change.
             bool conflict = store::codeOf(index.error()) == ErrorCode::Conflict;
             if (conflict && attempt < 3) return writeNode(r, id, mutate, undo, attempt + 1);
             failed(store::codeOf(index.error()), "updating node " + name + ": " +
                                                      index.error().message +
                                                      (conflict ? "; retry" : ""));
           });
  });
}

namespace {

// What the refusal of a demotion or a leave suggests.
std::string quorumAdvice(const std::vector<control::ManagerView>& managers, bool leave) {
  bool unreachable = std::any_of(managers.begin(), managers.end(),
                                 [](auto& m) { return m.voter && !m.reachable; });
  std::string first = unreachable
                          ? "bring the unreachable managers back, or promote another node, first"
                          : "promote another node first";
  if (leave)
    return first +
           "; `shoal swarm leave --force` leaves anyway (the swarm may then need "
           "`shoal swarm init --force-new-cluster`)";
  return first;
}

}  // namespace

void Control::withNode(std::string query, Then<NodeContext> fn) {
  listNodes([query,
             fn = std::move(fn)](Result<std::vector<std::unique_ptr<objects::NodeT>>> nodes) {
    if (!nodes) return fn(nodes.error());
    std::vector<control::NodeName> names;
    for (const auto& n : *nodes)
      names.push_back({n->id, n->description ? n->description->hostname : ""});
    auto id = control::resolveNode(query, names);
    if (!id)
      return fn(Error{id.error().message,
                      static_cast<int>(id.error().code == ENOENT ? ErrorCode::NotFound
                                                                 : ErrorCode::InvalidArgument)});
    NodeContext ctx;
    for (auto& n : *nodes)
      if (n->id == *id) ctx.target = std::make_shared<objects::NodeT>(*n);
    ctx.nodes = std::move(nodes).value();
    fn(std::move(ctx));
  });
}

void Control::nodeUpdate(Req r) {
  auto* req = r->call.as<swarmapi::Envelope>()->body_as_NodeUpdateRequest();
  if (auto config = managerConfig("node update"); !config) return fail(r, config.error());
  control::NodeChanges changes;
  int role = req->role(), availability = req->availability();
  if (role < -1 || role > static_cast<int>(objects::NodeRole::MAX))
    return fail(r, ErrorCode::InvalidArgument,
                "node update: role " + std::to_string(role) + " is neither worker nor manager");
  if (availability < -1 || availability > static_cast<int>(objects::NodeAvailability::MAX))
    return fail(r, ErrorCode::InvalidArgument,
                "node update: availability " + std::to_string(availability) +
                    " is not active, pause or drain");
  if (availability >= 0)
    changes.availability = static_cast<objects::NodeAvailability>(availability);
  if (req->label_add())
    for (auto* kv : *req->label_add()) {
      if (auto st = control::checkLabelKey(str(kv->key())); !st)
        return fail(r, ErrorCode::InvalidArgument, "--label-add: " + st.error().message);
      changes.labelAdd.emplace_back(str(kv->key()), str(kv->value()));
    }
  if (req->label_rm())
    for (auto* k : *req->label_rm()) changes.labelRm.push_back(k->str());
  withNode(str(req->node()), [this, r, changes, role](Result<NodeContext> ctx) {
    if (!ctx) return fail(r, ctx.error());
    auto& target = *ctx->target;
    // Judged on the node as read now, so that nothing changes when it is refused.
    objects::NodeT trial(target);
    if (auto st = control::applyNodeChanges(trial, changes); !st)
      return fail(r, ErrorCode::InvalidArgument, st.error().message);
    Mutation apply = [changes](objects::NodeT& n) { return control::applyNodeChanges(n, changes); };
    if (role == static_cast<int>(objects::NodeRole::Manager) &&
        target.role != objects::NodeRole::Manager)
      return promote(r, ctx->target, apply, managerViews(ctx->nodes));
    if (role == static_cast<int>(objects::NodeRole::Worker) && isManager(target))
      return demote(r, ctx->target, apply, managerViews(ctx->nodes));
    writeNode(r, target.id, apply, nullptr);
  });
}

void Control::promote(Req r, std::shared_ptr<objects::NodeT> target, Mutation apply,
                      std::vector<control::ManagerView> managers) {
  auto config = managerConfig("node promote");
  if (!config) return fail(r, config.error());
  std::string name = control::nodeLabel(*target);
  if (!target->status || target->status->addr.empty())
    return fail(r, ErrorCode::Conflict,
                "node " + name +
                    " has no address yet (its agent never opened a session): "
                    "promote it once `shoal node ls` shows it Ready");
  // Managers of one cluster use one dispatcher port (the join command names it), so the
  // node's raft port is this cluster's P+1.
  uint64_t raftId = newRaftId(managers);
  std::string raftAddr =
      node::joinHostPort(hostOf(target->status->addr), node::raftPort(config->port));
  Mutation promoteIt = [apply, raftId, raftAddr](objects::NodeT& n) -> Status {
    if (auto st = apply(n); !st) return st;
    n.role = objects::NodeRole::Manager;
    if (!n.spec) n.spec = std::make_unique<objects::NodeSpecT>();
    n.spec->desired_role = objects::NodeRole::Manager;
    n.manager_status = std::make_unique<objects::ManagerStatusT>();
    n.manager_status->raft_id = raftId;
    n.manager_status->addr = raftAddr;
    n.manager_status->reachability = objects::Reachability::Unknown;
    return {};
  };
  // Raft first: when the node learns it is a manager (its Node changes), its raftd is already
  // a learner that the leader will catch up.
  member(store::addMemberRequest(raftId, raftAddr),
         [this, r, target, name, raftId, raftAddr, promoteIt](Status st) {
           if (!st)
             return fail(r, store::codeOf(st.error()),
                         "promoting " + name + ": adding it to raft: " + st.error().message);
           spdlog::info("promoting {}: raft member {:x} at {} (a learner until caught up)", name,
                        raftId, raftAddr);
           Undo undo = [this, raftId](std::function<void(Status)> done) {
             member(store::removeMemberRequest(raftId), std::move(done));
           };
           writeNode(r, target->id, promoteIt, undo);
         });
}

void Control::demote(Req r, std::shared_ptr<objects::NodeT> target, Mutation apply,
                     std::vector<control::ManagerView> managers) {
  std::string name = control::nodeLabel(*target);
  uint64_t raftId = raftIdOf(*target);
  if (raftId != 0)
    if (auto st = control::keepsQuorum(managers, raftId, "demoting " + name,
                                       quorumAdvice(managers, false));
        !st)
      return fail(r, ErrorCode::Conflict, st.error().message);
  Mutation demoteIt = [apply](objects::NodeT& n) -> Status {
    if (auto st = apply(n); !st) return st;
    n.role = objects::NodeRole::Worker;
    if (!n.spec) n.spec = std::make_unique<objects::NodeSpecT>();
    n.spec->desired_role = objects::NodeRole::Worker;
    n.manager_status.reset();
    return {};
  };
  if (raftId == 0 || !inRaftConfig(raftId)) return writeNode(r, target->id, demoteIt, nullptr);
  moveLeadershipOff(raftId, managers, [this, r, target, name, raftId, demoteIt](Status st) {
    if (!st)
      return fail(r, store::codeOf(st.error()), "demoting " + name + ": " + st.error().message);
    member(store::removeMemberRequest(raftId),
           [this, r, target, name, raftId, demoteIt](Status st) {
             if (!st)
               return fail(r, store::codeOf(st.error()),
                           "demoting " + name + ": removing it from raft: " + st.error().message);
             spdlog::info("demoting {}: raft member {:x} removed", name, raftId);
             writeNode(r, target->id, demoteIt, nullptr);
           });
  });
}

void Control::nodeRemove(Req r) {
  auto* req = r->call.as<swarmapi::Envelope>()->body_as_NodeRemoveRequest();
  if (auto config = managerConfig("node rm"); !config) return fail(r, config.error());
  bool force = req->force();
  withNode(str(req->node()), [this, r, force](Result<NodeContext> ctx) {
    if (!ctx) return fail(r, ctx.error());
    auto& n = *ctx->target;
    std::string name = control::nodeLabel(n);
    // Swarm's rule: a manager leaves raft by its demotion, not by a removal.
    if (isManager(n))
      return fail(r, ErrorCode::Conflict,
                  "node " + name + " is a manager: demote it first (`shoal node demote " +
                      n.id.substr(0, 12) + "`), then remove it");
    auto state = n.status ? n.status->state : objects::NodeState::Unknown;
    if (!force && state != objects::NodeState::Down) {
      std::string text = objects::EnumNameNodeState(state);
      std::transform(text.begin(), text.end(), text.begin(),
                     [](unsigned char c) { return std::tolower(c); });
      return fail(r, ErrorCode::Conflict,
                  "node " + name + " is not down (it is " + text +
                      "): stop its agentd first, or remove it anyway with `shoal node rm --force`");
    }
    std::string id = n.id;
    commit({{ObjectKind::Node, Operation::Delete, id, versionOf(n.meta), {}}},
           [this, r, id, name](Result<uint64_t> index) {
             if (!index) {
               if (store::codeOf(index.error()) == ErrorCode::Conflict)
                 return fail(r, ErrorCode::Conflict,
                             "node " + name +
                                 " changed while it was being removed; nothing was removed, retry");
               return fail(r, index.error());
             }
             spdlog::info("node {} removed: its key is no longer admitted", name);
             reply(r, nodeReply(id));
           });
  });
}

// --- leave (from the local agentd) ---------------------------------------------------------

void Control::leave(Req r) {
  bool force = r->call.as<swarmapi::Envelope>()->body_as_LeaveRequest()->force();
  if (!node_.inCluster()) return ok(r);  // no raft state: nothing to leave here
  auto forget = [this, r](const std::string& how) {
    if (auto st = node_.leave(); !st)
      return fail(r, ErrorCode::Internal, "leaving raft: " + st.error().message);
    spdlog::info("left raft {}; this raftd is idle", how);
    ok(r);
  };
  // A demoted manager's agentd asks after the leader removed it: nothing to check then.
  if (!inRaftConfig(node_.id())) return forget("after the cluster removed this member");
  listNodes(
      [this, r, force, forget](Result<std::vector<std::unique_ptr<objects::NodeT>>> nodes) {
        if (!nodes) {
          if (!force)
            return fail(r, ErrorCode::Unavailable,
                        "cannot read the managers to check quorum (" + nodes.error().message +
                            "); `shoal swarm leave --force` leaves anyway");
          return forget("without telling the cluster (it did not answer)");
        }
        auto managers = managerViews(*nodes);
        uint64_t self = node_.id();
        if (auto st = control::keepsQuorum(managers, self, "leaving the swarm",
                                           quorumAdvice(managers, true));
            !st) {
          if (!force) return fail(r, ErrorCode::Conflict, st.error().message);
          return forget("without removing this member (the others could not commit it)");
        }
        moveLeadershipOff(self, managers, [this, r, force, forget, self](Status st) {
          if (!st) {
            if (!force)
              return fail(r, store::codeOf(st.error()), "leaving the swarm: " + st.error().message);
            return forget("without removing this member (" + st.error().message + ")");
          }
          member(store::removeMemberRequest(self), [this, r, force, forget](Status st) {
            if (!st && !force)
              return fail(r, store::codeOf(st.error()),
                          "leaving the swarm: removing this member from raft: " +
                              st.error().message + "; retry, or leave with --force");
            forget(st ? "after the cluster removed this member"
                      : "without removing this member (" + st.error().message + ")");
          });
        });
      },
      kLeaveReadBudget);
}

}  // namespace shoal::raftd
