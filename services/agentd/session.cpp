#include "services/agentd/session.h"

#include <ctime>

#include <spdlog/spdlog.h>

#include "common/protocols.h"
#include "services/agentd/manager_replies.h"

namespace shoal::agentd {
namespace {

using SystemClock = std::chrono::system_clock;

// Redirects followed at once before the backoff applies again: two followers that name each
// other (an election under way) must not make the node spin.
constexpr int kImmediateRedirects = 3;

bool isCode(const Error& e, wire::ErrorCode code) { return e.code == static_cast<int>(code); }

// Whether an error says this manager cannot hold the session, so that the next one is tried:
// it did not answer, is not the leader, or is not serving.
bool managerUnfit(const Error& e) {
  return isCode(e, wire::ErrorCode::DeadlineExceeded) || isCode(e, wire::ErrorCode::NotLeader) ||
         isCode(e, wire::ErrorCode::Unavailable);
}

}  // namespace

const char* sessionStateName(SessionState state) {
  switch (state) {
    case SessionState::Stopped: return "stopped";
    case SessionState::Connecting: return "connecting";
    case SessionState::Active: return "active";
    case SessionState::Refused: return "refused";
  }
  return "unknown";
}

std::string rfc3339(int64_t unixSeconds) {
  std::time_t t = static_cast<std::time_t>(unixSeconds);
  std::tm tm{};
  if (!::gmtime_r(&t, &tm)) return std::to_string(unixSeconds);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string rfc3339(SystemClock::time_point t) {
  return rfc3339(std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count());
}

Session::Session(Loop& loop, zmq::context_t& ctx, curve::KeyPair nodeKey,
                 NodeDescription description, Hooks hooks)
    : loop_(loop), ctx_(ctx), nodeKey_(std::move(nodeKey)), description_(std::move(description)),
      hooks_(std::move(hooks)), random_(std::random_device{}()) {}

Session::~Session() {
  cancelTimers();
  if (reopenTimer_) loop_.cancel(reopenTimer_);
  if (reportTimer_) loop_.cancel(reportTimer_);
}

void Session::cancelTimers() {
  if (retryTimer_) loop_.cancel(retryTimer_);
  if (heartbeatTimer_) loop_.cancel(heartbeatTimer_);
  retryTimer_ = heartbeatTimer_ = 0;
}

void Session::start(std::vector<node::Manager> managers, std::string addr, Nanos period) {
  stop();
  rotation_ = ManagerRotation(std::move(managers));
  addr_ = std::move(addr);
  period_ = period;
  backoff_.reset();
  state_ = SessionState::Connecting;
  since_ = SystemClock::now();
  // From a timer: the caller may be inside a callback of the client the attempt replaces.
  retryTimer_ = loop_.after(Millis(0), [this] {
    retryTimer_ = 0;
    attempt();
  });
}

void Session::stop() {
  cancelTimers();
  resetTaskLink();
  if (state_ == SessionState::Active)
    spdlog::info("session {} at {}: closed", sessionId_, manager_);
  state_ = SessionState::Stopped;
  // Not destroyed here: stop() may be called from inside one of its callbacks. Nothing it
  // sends back is taken (every callback checks its client is the current one).
  retired_ = std::move(client_);
  rotation_ = ManagerRotation();
  sessionId_.clear();
  refusal_.clear();
  lastError_.clear();
  redirectsInARow_ = 0;
  since_.reset();
  lastHeartbeat_.reset();
}

void Session::changed() {
  if (hooks_.stateChanged) hooks_.stateChanged();
}

void Session::attempt() {
  resetTaskLink();
  retired_.reset();
  const node::Manager* m = rotation_.current();
  if (!m) {
    lost("no manager is known (node.json lists none); `shoal swarm leave` and join again");
    return;
  }
  manager_ = m->addr;
  client_ = std::make_unique<bus::Client>(loop_, ctx_, kDispatchProtocol);
  client_->setCurve({m->publicKey, nodeKey_.publicKey, nodeKey_.secretKey});
  if (auto st = client_->connect("tcp://" + m->addr); !st) {
    lost(st.error().message);
    return;
  }
  const bus::Client* c = client_.get();
  client_->onDisconnect([this, c] {
    if (c == client_.get() && state_ == SessionState::Active)
      lost("the connection to " + manager_ + " closed");
  });
  flatbuffers::FlatBufferBuilder fbb;
  auto description = buildDescription(fbb, description_);
  auto body = dispatch::CreateOpenSessionRequest(fbb, description, fbb.CreateString(addr_));
  spdlog::debug("session: opening at {} (manager {})", m->addr, m->nodeId);
  client_->call(
      bus::message<dispatch::Envelope>(fbb, dispatch::Body::OpenSessionRequest, body.Union()),
      std::min(kOpenTimeout, heartbeatTimeout(period_)),
      [this, c](Result<bus::Frame> r) { onOpen(c, std::move(r)); });
}

void Session::onOpen(const bus::Client* c, Result<bus::Frame> r) {
  if (c != client_.get() || state_ == SessionState::Stopped) return;
  if (!r) {
    // A dispatcher that knows no Node with this key (docs/cluster.md "Authorization"): the
    // node was removed, and trying faster will not change that.
    if (isCode(r.error(), wire::ErrorCode::NotFound))
      return refused(manager_ + " refused the session: " + r.error().message);
    return lost("cannot open a session at " + manager_ + ": " + r.error().message,
                managerUnfit(r.error()));
  }
  auto* env = r->as<dispatch::Envelope>();
  if (followRedirect(env)) return;
  if (!accept(env, manager_))
    return lost(manager_ + " answered OpenSession with " +
                std::string(dispatch::EnumNameBody(env->body_type())));
  if (state_ == SessionState::Refused)
    spdlog::info("session: {} accepts this node again", manager_);
  state_ = SessionState::Active;
  changed();
  since_ = lastHeartbeat_ = SystemClock::now();
  backoff_.reset();
  lastBackoff_ = Millis(0);
  redirectsInARow_ = 0;
  refusal_.clear();
  lastError_.clear();
  spdlog::info("session {} open at {} (heartbeat every {} ms)", sessionId_, manager_,
               std::chrono::duration_cast<Millis>(period_).count());
  scheduleHeartbeat();
  if (hooks_.reply) hooks_.reply(*env->body_as_SessionReply());
  if (state_ != SessionState::Active) return;
  openAssignments();
  scheduleReports();
  if (hooks_.opened && client_) {
    openedHookCalled_ = true;
    hooks_.opened(*client_, sessionId_);
  }
}

bool Session::accept(const dispatch::Envelope* env, const std::string& manager) {
  auto* reply = env->body_as_SessionReply();
  if (!reply) return false;
  if (!reply->session_id() || reply->session_id()->size() == 0) return false;
  sessionId_ = reply->session_id()->str();
  period_ = sanePeriod(reply->heartbeat_period());
  auto managers = managersFrom(reply->managers());
  if (!managers) {
    spdlog::warn("session: {} sent a managers list this node cannot use ({}); keeping the one "
                 "it has", manager, managers.error().message);
  } else if (!managers->empty() && rotation_.replace(std::move(managers).value())) {
    spdlog::info("session: the managers are now {}", [&] {
      std::string list;
      for (const auto& m : rotation_.managers()) list += (list.empty() ? "" : ", ") + m.addr;
      return list;
    }());
    if (hooks_.managersChanged) hooks_.managersChanged(rotation_.managers());
  }
  return true;
}

bool Session::followRedirect(const dispatch::Envelope* env) {
  auto* redirect = env->body_as_Redirect();
  if (!redirect) return false;
  auto leader = managerFrom(redirect->leader());
  if (!leader) {
    lost(manager_ + " redirected to a manager this node cannot use: " + leader.error().message);
    return true;
  }
  if (leader->addr == manager_) {
    lost(manager_ + " redirected this node to itself");
    return true;
  }
  spdlog::info("session: {} is not the leader; going to {}", manager_, leader->addr);
  resetTaskLink();
  rotation_.redirectTo(*leader);
  if (++redirectsInARow_ > kImmediateRedirects) {
    lost("redirected " + std::to_string(redirectsInARow_) + " times in a row, last to " +
             leader->addr,
         false);
    return true;
  }
  cancelTimers();
  if (state_ != SessionState::Refused) state_ = SessionState::Connecting;
  retryTimer_ = loop_.after(Millis(0), [this] {
    retryTimer_ = 0;
    attempt();
  });
  return true;
}

void Session::scheduleHeartbeat() {
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  heartbeatTimer_ = loop_.after(heartbeatDelay(period_, unit(random_)), [this] {
    heartbeatTimer_ = 0;
    heartbeat();
  });
}

void Session::heartbeat() {
  if (state_ != SessionState::Active || !client_) return;
  flatbuffers::FlatBufferBuilder fbb;
  auto body = dispatch::CreateHeartbeatRequest(fbb, fbb.CreateString(sessionId_));
  const bus::Client* c = client_.get();
  client_->call(
      bus::message<dispatch::Envelope>(fbb, dispatch::Body::HeartbeatRequest, body.Union()),
      heartbeatTimeout(period_), [this, c](Result<bus::Frame> r) { onHeartbeat(c, std::move(r)); });
}

void Session::onHeartbeat(const bus::Client* c, Result<bus::Frame> r) {
  if (c != client_.get() || state_ != SessionState::Active) return;
  if (!r)
    return lost("heartbeat to " + manager_ + " failed: " + r.error().message,
                managerUnfit(r.error()));
  auto* env = r->as<dispatch::Envelope>();
  if (followRedirect(env)) return;
  if (!accept(env, manager_))
    return lost(manager_ + " answered a heartbeat with " +
                std::string(dispatch::EnumNameBody(env->body_type())));
  lastHeartbeat_ = SystemClock::now();
  scheduleHeartbeat();
  if (hooks_.reply) hooks_.reply(*env->body_as_SessionReply());
}

void Session::lost(const std::string& why, bool advance) {
  if (state_ == SessionState::Stopped) return;
  cancelTimers();
  resetTaskLink();
  if (state_ == SessionState::Active) {
    spdlog::warn("session {} at {} lost: {}", sessionId_, manager_, why);
    since_ = SystemClock::now();
    state_ = SessionState::Connecting;
    changed();
  } else {
    spdlog::info("session: {}", why);
  }
  lastError_ = why;
  sessionId_.clear();
  if (state_ != SessionState::Refused) state_ = SessionState::Connecting;
  if (advance) rotation_.advance();
  std::optional<Nanos> sinceHeartbeat;
  if (lastHeartbeat_) sinceHeartbeat = SystemClock::now() - *lastHeartbeat_;
  lastBackoff_ = failoverWait(backoff_.next(), period_, sinceHeartbeat);
  retryTimer_ = loop_.after(lastBackoff_, [this] {
    retryTimer_ = 0;
    attempt();
  });
}

void Session::refused(const std::string& why) {
  cancelTimers();
  resetTaskLink();
  if (state_ != SessionState::Refused)
    spdlog::error("{}. The managers no longer know this node: was it removed (`shoal node rm`)? "
                  "`shoal swarm leave` here, then join again with a token; asking again every "
                  "{} s meanwhile",
                  why, Backoff::kMax.count() / 1000);
  bool wasRefused = state_ == SessionState::Refused;
  state_ = SessionState::Refused;
  if (!wasRefused) changed();
  since_ = SystemClock::now();
  refusal_ = why;
  lastError_ = why;
  sessionId_.clear();
  backoff_.holdAtMax();
  rotation_.advance();
  lastBackoff_ = backoff_.next();
  retryTimer_ = loop_.after(lastBackoff_, [this] {
    retryTimer_ = 0;
    attempt();
  });
}

void Session::renew(RenewFn done) {
  if (state_ != SessionState::Active || !client_)
    return done(Error{"no session is open", static_cast<int>(wire::ErrorCode::Unavailable)});
  flatbuffers::FlatBufferBuilder fbb;
  auto body = dispatch::CreateRenewRequest(fbb);
  std::string manager = manager_;
  client_->call(
      bus::message<dispatch::Envelope>(fbb, dispatch::Body::RenewRequest, body.Union()),
      heartbeatTimeout(period_),
      [manager, done = std::move(done)](Result<bus::Frame> r) {
        if (!r) return done(Error{manager + " did not renew the certificate: " + r.error().message,
                                  r.error().code});
        auto* reply = r->as<dispatch::Envelope>()->body_as_RenewReply();
        if (!reply || !reply->certificate() || reply->certificate()->size() == 0)
          return done(Error{manager + " answered the renewal without a certificate"});
        done(std::vector<uint8_t>(reply->certificate()->begin(), reply->certificate()->end()));
      });
}

nlohmann::json Session::json() const {
  nlohmann::json j;
  j["state"] = sessionStateName(state_);
  j["manager"] = state_ == SessionState::Stopped ? "" : manager_;
  j["since"] = since_ ? rfc3339(*since_) : "";
  j["last_heartbeat"] = lastHeartbeat_ ? rfc3339(*lastHeartbeat_) : "";
  j["session_id"] = sessionId_;
  j["heartbeat_period_ns"] = period_.count();
  j["backoff_ms"] = state_ == SessionState::Active ? 0 : lastBackoff_.count();
  j["last_error"] = lastError_;
  if (state_ == SessionState::Refused) j["refused"] = refusal_;
  if (!worker_) return j;
  j["assignments"] = {{"version", chain_.version().value_or(0)},
                      {"stream_open", assignmentsStream_ != 0},
                      {"items", assignmentItems_},
                      {"gaps", gaps_},
                      {"last_error", taskLinkError_}};
  const ReportQueue& q = worker_->reports();
  j["reports"] = {{"waiting", q.waiting()}, {"in_flight", q.size() - q.waiting()},
                  {"sent", reportsSent_}};
  return j;
}

// ---- the node's tasks (docs/services.md "Assignments")

void Session::attach(Worker* worker) {
  worker_ = worker;
  if (worker_) worker_->onReport([this] { scheduleReports(); });
}

void Session::openAssignments() {
  if (!worker_ || !client_ || state_ != SessionState::Active || assignmentsStream_) return;
  chain_.reset();
  flatbuffers::FlatBufferBuilder fbb;
  auto body = dispatch::CreateAssignmentsRequest(fbb, fbb.CreateString(sessionId_));
  const bus::Client* c = client_.get();
  assignmentsStream_ = client_->openStream(
      bus::message<dispatch::Envelope>(fbb, dispatch::Body::AssignmentsRequest, body.Union()),
      kAssignmentsWindow, [this, c](const bus::Frame& f) { onAssignments(c, f); },
      [this, c](Status st) { onAssignmentsEnd(c, st); });
  spdlog::debug("session {}: assignments stream opened", sessionId_);
}

void Session::onAssignments(const bus::Client* c, const bus::Frame& frame) {
  if (c != client_.get() || state_ != SessionState::Active || !worker_) return;
  auto* a = frame.as<dispatch::Envelope>()->body_as_Assignments();
  if (!a) {
    taskLinkError_ = manager_ + " sent an assignments item that is not Assignments";
    spdlog::warn("session {}: {}; asking for a complete set", sessionId_, taskLinkError_);
    return reopenAssignments(Millis(0));
  }
  ++assignmentItems_;
  auto held = chain_.version();
  if (chain_.take(a->full(), a->version(), a->previous()) == AssignmentChain::Verdict::Gap) {
    ++gaps_;
    spdlog::info("session {}: assignments {} follow {}, but this node holds {}: asking for a "
                 "complete set", sessionId_, a->version(), a->previous(),
                 held ? std::to_string(*held) : std::string("none"));
    return reopenAssignments(Millis(0));
  }
  streamBackoff_.reset();
  // Before the tasks: preparing one reads the secrets it refers to.
  if (secrets_) secrets_->take(a->secrets(), a->configs(), a->full());
  std::vector<AssignedTask> tasks;
  if (a->updated()) {
    for (const auto* t : *a->updated()) {
      if (!t->task()) continue;
      auto read = readAssignedTask({reinterpret_cast<const char*>(t->task()->data()),
                                    t->task()->size()});
      if (!read) {
        taskLinkError_ = read.error().message;
        spdlog::warn("session {}: {} from {}; skipped", sessionId_, read.error().message, manager_);
        continue;
      }
      tasks.push_back(std::move(read).value());
    }
  }
  std::vector<std::string> removed;
  if (a->removed())
    for (const auto* id : *a->removed()) removed.push_back(id->str());
  spdlog::debug("session {}: assignments {} ({}): {} tasks, {} removed", sessionId_, a->version(),
                a->full() ? "complete" : "increment", tasks.size(), removed.size());
  if (a->full())
    worker_->replaceAll(std::move(tasks));
  else
    worker_->update(std::move(tasks), removed);
}

void Session::onAssignmentsEnd(const bus::Client* c, const Status& st) {
  if (c != client_.get() || state_ != SessionState::Active) return;
  assignmentsStream_ = 0;
  taskLinkError_ = st ? manager_ + " ended the assignments stream"
                      : manager_ + " ended the assignments stream: " + st.error().message;
  Millis wait = streamBackoff_.next();
  spdlog::info("session {}: {}; opening it again in {} ms", sessionId_, taskLinkError_,
               wait.count());
  reopenAssignments(wait);
}

// Cancels the stream (if any) and opens a new one from a timer: this may run inside the
// stream's own callback.
void Session::reopenAssignments(Millis after) {
  if (assignmentsStream_ && client_) client_->cancel(assignmentsStream_);
  assignmentsStream_ = 0;
  chain_.reset();
  if (reopenTimer_) loop_.cancel(reopenTimer_);
  reopenTimer_ = loop_.after(after, [this] {
    reopenTimer_ = 0;
    openAssignments();
  });
}

void Session::resetTaskLink() {
  if (openedHookCalled_) {
    openedHookCalled_ = false;
    if (hooks_.closed) hooks_.closed();
  }
  if (assignmentsStream_ && client_) client_->cancel(assignmentsStream_);
  assignmentsStream_ = 0;
  chain_.reset();
  if (reopenTimer_) loop_.cancel(reopenTimer_);
  if (reportTimer_) loop_.cancel(reportTimer_);
  reopenTimer_ = reportTimer_ = 0;
  reportInFlight_ = false;
  if (worker_) worker_->reports().retryAll();
}

void Session::scheduleReports() {
  if (!worker_ || reportTimer_ || reportInFlight_ || state_ != SessionState::Active) return;
  if (worker_->reports().waiting() == 0) return;
  reportTimer_ = loop_.after(kReportBatch, [this] {
    reportTimer_ = 0;
    sendReports();
  });
}

void Session::sendReports() {
  if (!worker_ || !client_ || reportInFlight_ || state_ != SessionState::Active) return;
  auto batch = worker_->reports().take(kMaxReportsPerMessage);
  if (batch.empty()) return;
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<flatbuffers::Offset<dispatch::TaskStatusUpdate>> updates;
  updates.reserve(batch.size());
  for (const auto& item : batch) {
    const Report& r = item.report;
    auto container = objects::CreateContainerStatus(fbb, 0, 0, r.exitCode);
    auto status = objects::CreateTaskStatus(fbb, r.timestamp, r.state,
                                            fbb.CreateString(r.message), fbb.CreateString(r.err),
                                            container);
    updates.push_back(dispatch::CreateTaskStatusUpdate(fbb, fbb.CreateString(item.taskId), status));
  }
  auto body = dispatch::CreateUpdateTaskStatusRequest(fbb, fbb.CreateString(sessionId_),
                                                      fbb.CreateVector(updates));
  reportInFlight_ = true;
  const bus::Client* c = client_.get();
  client_->call(
      bus::message<dispatch::Envelope>(fbb, dispatch::Body::UpdateTaskStatusRequest, body.Union()),
      heartbeatTimeout(period_),
      [this, c, batch = std::move(batch)](Result<bus::Frame> r) { onReportsReply(c, r, batch); });
}

void Session::onReportsReply(const bus::Client* c, const Result<bus::Frame>& r,
                             const std::vector<ReportQueue::Item>& batch) {
  if (c != client_.get() || !worker_) return;  // that session is gone: resetTaskLink retried
  reportInFlight_ = false;
  ReportQueue& q = worker_->reports();
  // A refusal of the content would be refused again: dropped, said loudly. Anything else (no
  // answer, not the leader) is sent again, on this session in a second or on the next one.
  bool refused = !r && (isCode(r.error(), wire::ErrorCode::InvalidArgument) ||
                        isCode(r.error(), wire::ErrorCode::BadMessage));
  if (r || refused) {
    q.ack(batch);
    reportsSent_ += batch.size();
    if (refused) {
      taskLinkError_ = manager_ + " refused " + std::to_string(batch.size()) +
                       " task status reports: " + r.error().message;
      spdlog::error("session {}: {}; they are dropped", sessionId_, taskLinkError_);
    }
    if (q.waiting() >= kMaxReportsPerMessage) return sendReports();
    return scheduleReports();
  }
  taskLinkError_ = "task status reports to " + manager_ + " failed: " + r.error().message;
  spdlog::warn("session {}: {}; sending them again", sessionId_, taskLinkError_);
  q.retryAll();
  reportTimer_ = loop_.after(std::chrono::seconds(1), [this] {
    reportTimer_ = 0;
    sendReports();
  });
}

}  // namespace shoal::agentd
