#include "services/agentd/swarm_agent.h"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "common/protocols.h"

namespace shoal::agentd {
namespace {

using namespace std::chrono_literals;

std::string str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }

// The wire code of an error from the bus (or set here), `otherwise` for one without. Errors
// with an errno are given an explicit code before they get here: the ranges overlap.
wire::ErrorCode wireCode(const Error& e, wire::ErrorCode otherwise) {
  if (e.code > 0 && e.code <= static_cast<int>(wire::ErrorCode::MAX))
    return static_cast<wire::ErrorCode>(e.code);
  return otherwise;
}

const char* roleText(bool manager) { return manager ? "manager" : "worker"; }

std::string busyMessage(bool joining) {
  return joining ? "a join is under way on this node; wait for its answer"
                 : "a leave is under way on this node; wait for its answer";
}

}  // namespace

const char* swarmStateName(SwarmState state) {
  switch (state) {
    case SwarmState::Inactive: return "inactive";
    case SwarmState::Pending: return "pending";
    case SwarmState::Active: return "active";
    case SwarmState::Error: return "error";
  }
  return "error";
}

SwarmState swarmState(bool inSwarm, bool configBroken, bool joining, SessionState session) {
  if (configBroken) return SwarmState::Error;
  if (joining) return SwarmState::Pending;
  if (!inSwarm) return SwarmState::Inactive;
  switch (session) {
    case SessionState::Active: return SwarmState::Active;
    case SessionState::Refused: return SwarmState::Error;
    case SessionState::Stopped:
    case SessionState::Connecting: return SwarmState::Pending;
  }
  return SwarmState::Error;
}

Result<ExecutorParts> makeExecutor(Daemon& daemon, const TaskOptions& options) {
  ExecutorParts parts;
  if (options.executor == ExecutorKind::Fake) {
    parts.executor = std::make_unique<FakeExecutor>(daemon.loop(), options.fakeDelay);
    return parts;
  }
  ImageStore::Options io;
  io.insecureRegistries = options.insecureRegistries;
  io.caFile = options.registryCa;
  auto images = ImageStore::open(daemon.loop(), daemon.stateDir() + "/images", std::move(io));
  if (!images) return Error{"the image store: " + images.error().message};
  RuntimeOptions ro;
  ro.runcPath = options.runtimePath;
  ro.root = options.runcRoot.empty() ? daemon.runDir() + "/runc" : options.runcRoot;
  auto runtime = Runtime::open(daemon.loop(), std::move(ro));
  if (!runtime) return Error{"the runtime: " + runtime.error().message};
  parts.images = std::move(images).value();
  parts.runtime = std::move(runtime).value();
  parts.sandboxes = std::make_unique<SandboxClient>(daemon.loop(), daemon.zmq(), daemon.runDir());
  RuncExecutorOptions eo;
  eo.stateDir = daemon.stateDir();
  auto runc = RuncExecutor::open(daemon.loop(), std::move(eo), *parts.images, *parts.runtime,
                                 *parts.sandboxes, *parts.secrets);
  if (!runc) return Error{"the runc executor: " + runc.error().message};
  parts.runc = runc->get();
  parts.executor = std::move(runc).value();
  return parts;
}

bus::Buffer tasksReply(const nlohmann::json& tasks) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = agentapi::CreateTasksReply(fbb, fbb.CreateString(tasks.dump()));
  return bus::message<agentapi::Envelope>(fbb, agentapi::Body::TasksReply, body.Union());
}

bus::Buffer fakeTaskReply() {
  flatbuffers::FlatBufferBuilder fbb;
  return bus::message<agentapi::Envelope>(fbb, agentapi::Body::FakeTaskReply,
                                          agentapi::CreateFakeTaskReply(fbb).Union());
}

int64_t wallClockNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Result<std::unique_ptr<SwarmAgent>> SwarmAgent::start(Daemon& daemon, const std::string& hostname,
                                                      const TaskOptions& tasks) {
  auto facts = probeHost(hostname);
  if (!facts) return Error{"--hostname: " + facts.error().message};
  auto dir = node::NodeDir::open(daemon.nodeDir());
  if (!dir) return dir.error();
  auto parts = makeExecutor(daemon, tasks);
  if (!parts) return parts.error();
  std::unique_ptr<SwarmAgent> agent(new SwarmAgent(daemon, std::move(dir).value(),
                                                   describeNode(*facts, SHOAL_VERSION),
                                                   std::move(parts).value()));
  SwarmAgent* a = agent.get();
  daemon.server().serve(kAgentProtocol, [a](bus::Call call) { a->serve(std::move(call)); });
  daemon.server().serve(kLogProtocol, [a](bus::Call call) { a->logs_->serve(std::move(call)); });
  daemon.addStatus([a](nlohmann::json& j) { a->logs_->status(j); });
  daemon.server().serve(kContainerProtocol,
                        [a](bus::Call call) { a->containerApi_->serve(std::move(call)); });
  if (a->parts_.runc) {
    a->imageApi_ = std::make_unique<ImageApi>(daemon.server(), daemon.loop(), *a->parts_.images,
                                              [a] { return a->parts_.runc->imagesInUse(); });
    daemon.addStatus([a](nlohmann::json& j) { j["image_api"] = a->imageApi_->status(); });
  }
  daemon.onReload([a] { return a->reload(); });
  daemon.addStatus([a](nlohmann::json& j) { a->status(j); });
  daemon.onStop([a] { a->session_.stop(); });
  const auto& d = a->description_;
  spdlog::info("node {}: {}/{}, {} CPUs, {} MiB; node dir {}; {} executor", d.hostname, d.os,
               d.architecture, d.nanoCpus / 1'000'000'000, d.memoryBytes >> 20, a->dir_.path(),
               a->executor_->name());
  // A node.json that cannot be read is shown in Status and Info, not fatal: the operator
  // needs agentd running to `shoal swarm leave --force`.
  if (auto st = a->reload(); !st) spdlog::error("{}", st.error().message);
  a->updateStatusText();
  return agent;
}

SwarmAgent::SwarmAgent(Daemon& daemon, node::NodeDir dir, NodeDescription description,
                       ExecutorParts parts)
    : daemon_(daemon),
      dir_(std::move(dir)),
      description_(std::move(description)),
      local_(daemon.loop(), daemon.zmq(), daemon.runDir()),
      parts_(std::move(parts)),
      executor_(std::move(parts_.executor)),
      containerApi_(std::make_unique<ContainerApi>(parts_.runc)),
      worker_(*executor_, wallClockNs),
      logs_(std::make_unique<LogAgent>(
          daemon.loop(), daemon.zmq(), daemon.stateDir() + "/logs",
          [this](std::string_view ref) { return worker_.find(ref); },
          [this] { return config_ ? config_->nodeId : std::string(); })),
      session_(daemon.loop(), daemon.zmq(), dir_.key(), description_,
               {[this](const std::vector<node::Manager>& m) { onManagersChanged(m); },
                [this](const dispatch::SessionReply& r) { onSessionReply(r); },
                [this] { updateStatusText(); },
                [this](bus::Client&, const std::string& sessionId) { openLogs(sessionId); },
                [this] { logs_->closed(); }}) {
  session_.attach(&worker_);
  session_.attachSecrets(parts_.secrets.get());
}

SwarmAgent::~SwarmAgent() {
  cancelRenewal();
  if (joinCleanup_) daemon_.loop().cancel(joinCleanup_);
}

// ---- agent.fbs

void SwarmAgent::serve(bus::Call call) {
  auto* env = call.as<agentapi::Envelope>();
  switch (env->body_type()) {
    case agentapi::Body::JoinRequest: return join(std::move(call));
    case agentapi::Body::LeaveRequest: return leave(std::move(call));
    case agentapi::Body::InfoRequest: return info(std::move(call));
    case agentapi::Body::TasksRequest: return tasks(std::move(call));
    case agentapi::Body::FakeTaskRequest: return fakeTask(std::move(call));
    default:
      call.fail(wire::ErrorCode::Unimplemented,
                std::string("agent message ") + agentapi::EnumNameBody(env->body_type()) +
                    " is not a request agentd serves");
  }
}

void SwarmAgent::replyToPending(Status st,
                                std::function<bus::Buffer(flatbuffers::FlatBufferBuilder&)> ok) {
  if (!pending_) return;
  bus::Call call = std::move(*pending_);
  pending_.reset();
  busy_ = Busy::None;
  updateStatusText();
  if (!st) return call.fail(wireCode(st.error(), wire::ErrorCode::Unavailable), st.error().message);
  flatbuffers::FlatBufferBuilder fbb;
  call.reply(ok(fbb));
}

void SwarmAgent::join(bus::Call call) {
  auto* req = call.as<agentapi::Envelope>()->body_as_JoinRequest();
  if (busy_ != Busy::None)
    return call.fail(wire::ErrorCode::Unavailable, busyMessage(busy_ == Busy::Joining));
  auto loaded = dir_.load();
  if (!loaded) return call.fail(wire::ErrorCode::Conflict, loaded.error().message);
  if (*loaded)
    return call.fail(wire::ErrorCode::Conflict,
                     "this node is already part of a swarm; use `shoal swarm leave` first");
  JoinFields fields{str(req->token()), str(req->remote_addr()), str(req->advertise_addr()),
                    str(req->listen_addr())};
  auto plan = planJoin(fields, sourceAddressTowards);
  if (!plan) return call.fail(wire::ErrorCode::InvalidArgument, plan.error().message);

  // The answer must reach the CLI before its own deadline gives up on it.
  auto budget = kJoinBudget;
  if (uint32_t ms = call.request().header().timeout_ms(); ms > 0)
    budget = std::clamp(std::chrono::milliseconds(ms) - 1500ms, 1000ms, kJoinBudget);
  spdlog::info("join: to {} as {} (advertised as {})",
               node::joinHostPort(plan->manager.host, plan->manager.port), description_.hostname,
               plan->advertiseHost);
  busy_ = Busy::Joining;
  pending_.emplace(std::move(call));
  updateStatusText();
  join_ = std::make_unique<JoinFlow>(daemon_.loop(), daemon_.zmq(), dir_.key(),
                                     std::move(plan).value(), description_, budget,
                                     [this](Result<JoinOutcome> r) { onJoined(std::move(r)); });
  join_->start();
}

void SwarmAgent::onJoined(Result<JoinOutcome> result) {
  // The flow ends inside one of its clients' callbacks: it goes once that has returned (a new
  // join may have begun by then, in join_).
  finishedJoin_ = std::move(join_);
  if (joinCleanup_) daemon_.loop().cancel(joinCleanup_);
  joinCleanup_ = daemon_.loop().after(0ms, [this] {
    joinCleanup_ = 0;
    finishedJoin_.reset();
  });
  if (!result) {
    spdlog::warn("join failed: {}", result.error().message);
    return replyToPending(result.error(), {});
  }
  joined_ = std::move(result).value();
  const node::NodeConfig& c = joined_->config;
  if (auto st = dir_.save(c); !st) {
    auto message = "the managers admitted this node as " + std::string(roleText(c.manager)) +
                   " node " + c.nodeId + ", but " + st.error().message +
                   "; fix the node dir, remove the node on a manager (`shoal node rm " +
                   c.nodeId + "`) and join again";
    spdlog::error("{}", message);
    joined_.reset();
    return replyToPending(Error{message, static_cast<int>(wire::ErrorCode::Internal)}, {});
  }
  spdlog::info("joined cluster {} as {} node {}", c.clusterId, roleText(c.manager), c.nodeId);
  if (!joined_->raft) return finishJoin("");
  RaftStart start{*joined_->raft, node::joinHostPort(c.listenHost, node::raftPort(c.port)),
                  node::joinHostPort(c.advertiseHost, node::raftPort(c.port))};
  local_.joinRaft(start, [this](Status st) {
    std::string problem = st ? "" : "the local raftd did not start raft: " + st.error().message;
    local_.reloadDispatcher([this, problem](Status reloaded) {
      std::string all = problem;
      if (!reloaded)
        all += (all.empty() ? "" : "; ") +
               ("the local dispatcherd did not reload: " + reloaded.error().message);
      finishJoin(all);
    });
  });
}

void SwarmAgent::finishJoin(const std::string& localError) {
  JoinOutcome outcome = std::move(*joined_);
  joined_.reset();
  std::string nodeId = outcome.config.nodeId;
  bool manager = outcome.config.manager;
  busy_ = Busy::None;
  adopt(std::move(outcome.config), outcome.heartbeatPeriod);
  if (!localError.empty()) {
    std::string message = "this node joined the swarm as manager node " + nodeId + ", but " +
                          localError +
                          "; once raftd and dispatcherd run, `shoal swarm leave --force` and "
                          "join again";
    spdlog::error("{}", message);
    return replyToPending(Error{message, static_cast<int>(wire::ErrorCode::Internal)}, {});
  }
  replyToPending({}, [&](flatbuffers::FlatBufferBuilder& fbb) {
    auto body = agentapi::CreateJoinReply(
        fbb, fbb.CreateString(nodeId),
        manager ? objects::NodeRole::Manager : objects::NodeRole::Worker);
    return bus::message<agentapi::Envelope>(fbb, agentapi::Body::JoinReply, body.Union());
  });
}

void SwarmAgent::leave(bus::Call call) {
  bool force = call.as<agentapi::Envelope>()->body_as_LeaveRequest()->force();
  if (busy_ != Busy::None)
    return call.fail(wire::ErrorCode::Unavailable, busyMessage(busy_ == Busy::Joining));
  auto loaded = dir_.load();
  bool manager = false;
  if (!loaded) {
    if (!force) return call.fail(wire::ErrorCode::Conflict, loaded.error().message);
    // Which role a damaged node.json held is unknown: raftd is told too, and its answer
    // (nothing to leave) does not stop the leave.
    spdlog::warn("leave --force: forgetting a damaged node.json ({})", loaded.error().message);
    manager = true;
  } else if (!*loaded) {
    return call.fail(wire::ErrorCode::NotFound, "this node is not part of a swarm");
  } else {
    manager = (*loaded)->manager;
  }
  busy_ = Busy::Leaving;
  pending_.emplace(std::move(call));
  updateStatusText();
  if (!manager) return finishLeave(false);
  // raftd decides whether this manager may go (quorum); its refusal is the answer as it is.
  local_.leaveRaft(force, [this, force](Status st) {
    if (!st && !force) {
      spdlog::info("leave refused: {}", st.error().message);
      std::string message = st.error().message;
      if (st.error().code == static_cast<int>(wire::ErrorCode::DeadlineExceeded))
        message += "; `shoal swarm leave --force` leaves without it";
      return replyToPending(Error{message, st.error().code}, {});
    }
    if (!st) spdlog::warn("leave --force: raftd: {}; leaving anyway", st.error().message);
    finishLeave(true);
  });
}

void SwarmAgent::finishLeave(bool wasManager) {
  session_.stop();
  worker_.clear();  // a node out of the swarm runs nothing (Swarm stops its tasks too)
  if (auto st = dir_.clear(); !st)  // an errno: not a wire code
    return replyToPending(Error{st.error().message, static_cast<int>(wire::ErrorCode::Internal)},
                          {});
  std::string nodeId = config_ ? config_->nodeId : std::string("?");
  forget();
  // A node that joins again is a new node, with a new key (node_dir.h).
  if (auto fresh = node::NodeDir::open(dir_.path())) {
    dir_ = std::move(fresh).value();
    session_.setNodeKey(dir_.key());
  } else {
    spdlog::warn("after the leave: {}", fresh.error().message);
  }
  spdlog::info("left the swarm (this was {} node {})", roleText(wasManager), nodeId);
  auto done = [this] {
    replyToPending({}, [](flatbuffers::FlatBufferBuilder& fbb) {
      return bus::message<agentapi::Envelope>(fbb, agentapi::Body::LeaveReply,
                                              agentapi::CreateLeaveReply(fbb).Union());
    });
  };
  if (!wasManager) return done();
  local_.reloadDispatcher([done](Status st) {
    if (!st) spdlog::warn("after the leave: {}", st.error().message);
    done();
  });
}

void SwarmAgent::info(bus::Call call) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = agentapi::CreateInfoReply(fbb, fbb.CreateString(infoJson().dump()));
  call.reply(bus::message<agentapi::Envelope>(fbb, agentapi::Body::InfoReply, body.Union()));
}

void SwarmAgent::tasks(bus::Call call) {
  auto list = nlohmann::json::array();
  worker_.appendJson(list);
  call.reply(tasksReply(list));
}

void SwarmAgent::fakeTask(bus::Call call) {
  auto* fake = dynamic_cast<FakeExecutor*>(executor_.get());
  if (!fake)
    return call.fail(wire::ErrorCode::Unimplemented,
                     "this agentd runs the " + std::string(executor_->name()) +
                         " executor, which takes no FakeTaskRequest; start agentd with "
                         "--executor fake");
  auto st = actOnTask({{&worker_, fake}},
                      *call.as<agentapi::Envelope>()->body_as_FakeTaskRequest());
  if (!st) return call.fail(wireCode(st.error(), wire::ErrorCode::Internal), st.error().message);
  call.reply(fakeTaskReply());
}

// ---- node.json

Status SwarmAgent::reload() {
  // A join or leave under way sets node.json and the session itself when it ends.
  if (busy_ != Busy::None) return {};
  auto loaded = dir_.load();
  if (!loaded) {
    forget();
    configError_ = loaded.error().message;
    updateStatusText();
    return loaded.error();
  }
  if (!*loaded) {
    if (config_ || !configError_.empty()) {
      spdlog::info("node.json is gone: this node is not in a swarm");
      forget();
    }
    return {};
  }
  node::NodeConfig& c = **loaded;
  if (config_ && session_.state() != SessionState::Stopped && config_->nodeId == c.nodeId &&
      config_->clusterId == c.clusterId && config_->certificate == c.certificate) {
    config_->managers = c.managers;  // the session's list is the newer; kept until it changes
    return {};
  }
  spdlog::info("node.json: {} node {} of cluster {}; opening its session", roleText(c.manager),
               c.nodeId, c.clusterId);
  adopt(std::move(c), std::chrono::seconds(5));
  if (!configError_.empty()) return Error{configError_};
  return {};
}

void SwarmAgent::adopt(node::NodeConfig config, std::chrono::nanoseconds period) {
  forget();
  auto ca = identity::ClusterCA::load(config.ca);
  if (!ca) {
    configError_ = dir_.path() + "/node.json: its CA cannot be read (" + ca.error().message +
                   "); `shoal swarm leave --force` and join again";
    spdlog::error("{}", configError_);
    updateStatusText();
    return;
  }
  auto cert = ca->verify(config.certificate, unixNow());
  if (cert) {
    cert_ = *cert;
  } else if (cert.error().code == identity::kCertExpired ||
             cert.error().code == identity::kCertNotYetValid) {
    // The managers decide whether they take it; a session opened renews it.
    spdlog::warn("the certificate in node.json is not valid now ({}); trying the session anyway",
                 cert.error().message);
  } else {
    configError_ = dir_.path() + "/node.json: its certificate is not the CA's (" +
                   cert.error().message + "); `shoal swarm leave --force` and join again";
    spdlog::error("{}", configError_);
    updateStatusText();
    return;
  }
  config_ = std::move(config);
  session_.start(config_->managers, config_->advertiseHost, period);
  scheduleRenewal();
  updateStatusText();
}

void SwarmAgent::forget() {
  session_.stop();
  cancelRenewal();
  config_.reset();
  cert_.reset();
  configError_.clear();
  updateStatusText();
}

Status SwarmAgent::save() {
  auto st = dir_.save(*config_);
  if (!st) spdlog::error("cannot keep the swarm's changes: {}", st.error().message);
  return st;
}

// ---- what the managers send

void SwarmAgent::onManagersChanged(const std::vector<node::Manager>& managers) {
  if (!config_ || busy_ != Busy::None) return;
  config_->managers = managers;
  (void)save();
}

void SwarmAgent::onSessionReply(const dispatch::SessionReply& reply) {
  if (!config_ || busy_ != Busy::None) return;
  if (reply.node_id() && reply.node_id()->size() > 0 && reply.node_id()->str() != config_->nodeId)
    spdlog::warn("the session reply names node {}, but this is node {}", reply.node_id()->str(),
                 config_->nodeId);
  auto cert = bytesOf(reply.certificate());
  if (!cert.empty() && !std::equal(cert.begin(), cert.end(), config_->certificate.begin(),
                                   config_->certificate.end()))
    takeCertificate(cert, reply.raft());
}

void SwarmAgent::takeCertificate(std::span<const uint8_t> bytes, const dispatch::RaftJoin* raft) {
  auto ca = identity::ClusterCA::load(config_->ca);
  if (!ca) return spdlog::error("node.json's CA cannot be read: {}", ca.error().message);
  auto cert = acceptCertificate(*ca, bytes, dir_.key(), config_->nodeId, unixNow());
  if (!cert)
    return spdlog::warn("the managers sent a certificate this node cannot accept ({}); keeping "
                        "the one it has",
                        cert.error().message);
  bool wasManager = config_->manager;
  bool manager = cert->role == identity::Role::Manager;
  std::optional<RaftJoinInfo> membership;
  if (manager && !wasManager) {
    auto m = raftJoinFrom(raft);
    if (!m)
      return spdlog::error("promoted to manager, but the raft membership sent with it cannot be "
                           "used ({}); staying a worker until a reply brings a good one",
                           m.error().message);
    membership = std::move(m).value();
  }
  config_->certificate.assign(bytes.begin(), bytes.end());
  config_->manager = manager;
  cert_ = *cert;
  if (membership) {
    config_->raft = node::RaftIdentity{membership->raftId, membership->raftClusterId};
    spdlog::info("promoted to manager (raft id {})", membership->raftId);
  } else if (wasManager && !manager) {
    config_->raft.reset();
    spdlog::info("demoted to worker");
  } else {
    spdlog::info("new certificate, valid until {}", rfc3339(cert->notAfter));
  }
  (void)save();
  if (membership) becameManager(*membership);
  if (wasManager && !manager) becameWorker();
  scheduleRenewal();
  updateStatusText();
}

void SwarmAgent::becameManager(const RaftJoinInfo& raft) {
  RaftStart start{raft, node::joinHostPort(config_->listenHost, node::raftPort(config_->port)),
                  node::joinHostPort(config_->advertiseHost, node::raftPort(config_->port))};
  local_.joinRaft(start, [this](Status st) {
    if (!st)
      spdlog::error("promoted, but the local raftd did not start raft: {}", st.error().message);
    local_.reloadDispatcher([](Status reloaded) {
      if (!reloaded) spdlog::error("promoted: {}", reloaded.error().message);
    });
  });
}

void SwarmAgent::becameWorker() {
  local_.leaveRaft(true, [this](Status st) {
    if (!st)
      spdlog::error("demoted, but the local raftd did not stop raft: {}", st.error().message);
    local_.reloadDispatcher([](Status reloaded) {
      if (!reloaded) spdlog::error("demoted: {}", reloaded.error().message);
    });
  });
}

// ---- certificate renewal (DESIGN.md §4: at a random point between 50 % and 80 % of its life)

void SwarmAgent::cancelRenewal() {
  if (renewTimer_) daemon_.loop().cancel(renewTimer_);
  renewTimer_ = 0;
}

void SwarmAgent::scheduleRenewal() {
  cancelRenewal();
  renewAt_ = cert_ ? identity::renewAt(*cert_, identity::systemRandom()) : unixNow();
  armRenewal();
}

void SwarmAgent::armRenewal() {
  // Waits of a day at most: the steady clock may drift from the wall clock over months.
  int64_t wait = std::clamp<int64_t>(renewAt_ - unixNow(), 0, 86400);
  renewTimer_ = daemon_.loop().after(std::chrono::seconds(wait), [this] {
    renewTimer_ = 0;
    if (unixNow() < renewAt_) return armRenewal();
    renew();
  });
}

void SwarmAgent::renew() {
  if (!config_) return;
  constexpr auto kRetry = 60s;
  // The next try, unless the answer comes first (it reschedules).
  renewTimer_ = daemon_.loop().after(kRetry, [this] {
    renewTimer_ = 0;
    renew();
  });
  if (session_.state() != SessionState::Active) return;
  spdlog::info("renewing the certificate (valid until {})",
               cert_ ? rfc3339(cert_->notAfter) : std::string("?"));
  session_.renew([this](Result<std::vector<uint8_t>> r) {
    if (!config_) return;
    if (!r) return spdlog::warn("certificate renewal: {}; trying again in 60 s", r.error().message);
    takeCertificate(*r, nullptr);
  });
}

// ---- what the operator sees

SwarmState SwarmAgent::state() const {
  return swarmState(config_.has_value(), !configError_.empty(), busy_ == Busy::Joining,
                    session_.state());
}

void SwarmAgent::updateStatusText() {
  std::string text;
  switch (state()) {
    case SwarmState::Inactive: text = "not in a swarm"; break;
    case SwarmState::Pending:
      text = config_ ? std::string(roleText(config_->manager)) + " node " + config_->nodeId +
                           ": looking for a manager"
                     : "joining a swarm";
      break;
    case SwarmState::Active:
      text = std::string(roleText(config_->manager)) + " node " + config_->nodeId +
             ": session open";
      break;
    case SwarmState::Error:
      text = config_ ? "node " + config_->nodeId + ": refused by the managers"
                     : "node.json cannot be used";
      break;
  }
  daemon_.setStatusText(text);
}

// docs/cluster.md "`shoal info`'s fields": docker's swarm.Info names, which the CLI merges into
// its Info.Swarm. The session and certificate details are in Status.
nlohmann::json SwarmAgent::infoJson() const {
  // A key this node does not know is left out (docs/cluster.md), never filled with "".
  nlohmann::json j;
  j["LocalNodeState"] = swarmStateName(state());
  j["ControlAvailable"] = config_ && config_->manager;
  std::string error = configError_;
  if (error.empty() && session_.state() == SessionState::Refused) error = session_.refusal();
  j["Error"] = error;
  if (!config_) return j;
  j["NodeID"] = config_->nodeId;
  j["NodeAddr"] = config_->advertiseHost;
  j["ClusterID"] = config_->clusterId;
  auto managers = nlohmann::json::array();
  for (const auto& m : session_.state() == SessionState::Stopped ? config_->managers
                                                                  : session_.managers())
    managers.push_back({{"NodeID", m.nodeId}, {"Addr", m.addr}});
  j["RemoteManagers"] = managers;
  return j;
}

void SwarmAgent::status(nlohmann::json& j) const {
  nlohmann::json s;
  s["state"] = swarmStateName(state());
  s["node_id"] = config_ ? config_->nodeId : "";
  s["role"] = config_ ? roleText(config_->manager) : "";
  s["cluster_id"] = config_ ? config_->clusterId : "";
  s["session"] = session_.json();
  auto managers = nlohmann::json::array();
  for (const auto& m : session_.managers())
    managers.push_back({{"node_id", m.nodeId}, {"addr", m.addr}});
  s["managers"] = managers;
  s["certificate"] = {{"expires_at", cert_ ? rfc3339(cert_->notAfter) : ""},
                      {"renew_at", cert_ ? rfc3339(renewAt_) : ""}};
  s["busy"] = busy_ == Busy::Joining ? "joining" : busy_ == Busy::Leaving ? "leaving" : "";
  s["error"] = configError_;
  s["hostname"] = description_.hostname;
  j["swarm"] = s;
  std::map<std::string, size_t> states;
  worker_.countStates(states);
  j["tasks"] = {{"executor", executor_->name()}, {"assigned", worker_.size()},
                {"by_state", states}};
  if (parts_.runc) j["executor"] = parts_.runc->status();
}

// ---- logs

void SwarmAgent::openLogs(const std::string& sessionId) {
  auto manager = session_.activeManager();
  if (!manager) return spdlog::warn("logs: the session's manager is not in its list; service logs "
                                    "will not reach this node until the next session");
  auto key = dir_.key();
  logs_->opened({"tcp://" + manager->addr, {manager->publicKey, key.publicKey, key.secretKey}, sessionId});
}

}  // namespace shoal::agentd
