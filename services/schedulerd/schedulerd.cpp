#include "services/schedulerd/schedulerd.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <map>

#include "common/ids.h"
#include "common/node_dir.h"
#include "services/schedulerd/pass.h"

namespace shoal::schedulerd {
namespace {

using namespace std::chrono_literals;
using objects::ObjectKind;

constexpr store::Millis kWriteTimeout = 5s;
// A wake asked for now or in the past still waits this long, so that a core that keeps asking
// for "now" costs a pass per 10 ms at worst instead of spinning the loop.
constexpr auto kMinWake = 10ms;
// Longer waits are cut to this; the pass that then runs asks again.
constexpr auto kMaxWake = std::chrono::hours(24);

// What the cores read. A resync lists the kinds one after another, in this order: Services
// before Tasks, so that a service created between the two lists has no tasks yet (schedulerd
// makes them, and it is not running passes meanwhile), and a service removed between them only
// leaves tasks that the orchestrator takes down anyway.
const std::vector<ObjectKind> kWatched = {ObjectKind::Cluster, ObjectKind::Node, ObjectKind::Network,
                                          ObjectKind::Service, ObjectKind::Task};

// The cores' clock: nanoseconds since the epoch, as Task.not_before and UpdateStatus record.
Time systemNow() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double msBetween(Loop::Clock::time_point a, Loop::Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

// --- start, node dir, leadership -------------------------------------------------------------

Result<std::unique_ptr<Scheduler>> Scheduler::start(Daemon& daemon) {
  std::unique_ptr<Scheduler> s(new Scheduler(daemon));
  Scheduler* self = s.get();
  daemon.addStatus([self](nlohmann::json& j) { self->status(j); });
  daemon.onReload([self] { return self->reload(); });
  daemon.onStop([self] { self->stop(); });
  if (auto st = self->reload(); !st) spdlog::warn("{}", st.error().message);
  std::string endpoint = store::endpointIn(daemon.runDir());
  self->store_ = std::make_unique<store::Client>(daemon.loop(), daemon.zmq());
  if (auto st = self->store_->connect(endpoint); !st)
    return Error{"cannot connect to raftd at " + endpoint + ": " + st.error().message +
                 "; check --run-dir"};
  self->store_->leadership([self](const store::Leadership& l) { self->onLeadership(l); });
  spdlog::info("following the leadership of raftd at {}", endpoint);
  self->showStatusText();
  return s;
}

Scheduler::~Scheduler() { stop(); }

void Scheduler::stop() {
  if (active_) deactivate("schedulerd is stopping");
  // No callback of the client runs after this: in-flight writes are left to raftd.
  store_.reset();
}

Status Scheduler::reload() {
  auto dir = node::NodeDir::open(daemon_.nodeDir());
  if (!dir) {
    nodeDirReason_ = "the node dir cannot be opened: " + dir.error().message;
    showStatusText();
    return Error{dir.error().message + "; check --node-dir"};
  }
  auto config = dir->load();
  if (!config)
    nodeDirReason_ = "node.json cannot be read: " + config.error().message;
  else if (!*config)
    nodeDirReason_ = "this node is not in a swarm (no node.json in " + dir->path() +
                     "); `shoal swarm init` or `shoal swarm join` makes it one";
  else if (!(*config)->manager)
    nodeDirReason_ = "this node is a worker: schedulerd schedules on the leader's node, a manager";
  else
    nodeDirReason_.clear();
  showStatusText();
  if (!config) return config.error();
  return {};
}

void Scheduler::onLeadership(const store::Leadership& l) {
  bool changed = l.known != leadership_.known || l.isLeader != leadership_.isLeader ||
                 l.term != leadership_.term || l.leaderId != leadership_.leaderId;
  bool newTerm = l.term != leadership_.term;
  leadership_ = l;
  // A change of role comes with a new node.json; read it for the idle reason.
  if (changed) (void)reload();
  bool lead = l.known && l.isLeader;
  if (active_ && (!lead || newTerm)) deactivate(lead ? "a new term began" : why());
  if (lead && !active_) activate();
  showStatusText();
}

void Scheduler::activate() {
  active_ = true;
  ++generation_;
  view_.clear();
  pacing_.reset();
  loaded_ = false;
  spdlog::info("active: raftd leads (term {}); reading the store", leadership_.term);
  watchStore();
}

// Stops everything at once: the watch, the timers, and the view; writes still in flight are
// answered to an old generation and ignored.
void Scheduler::deactivate(const std::string& why) {
  active_ = false;
  ++generation_;
  if (watch_ && store_) store_->cancel(watch_);
  watch_ = 0;
  for (auto* timer : {&passTimer_, &wakeTimer_}) {
    if (*timer) daemon_.loop().cancel(*timer);
    *timer = 0;
  }
  nextWake_ = 0;
  view_.clear();
  pacing_.reset();
  loaded_ = false;
  spdlog::info("not active: {}; the view is dropped", why);
}

void Scheduler::showStatusText() {
  daemon_.setStatusText((active_ ? "active: " : "idle: ") + why());
}

// --- the view ----------------------------------------------------------------------------------

void Scheduler::watchStore() {
  watch_ = store_->watchWithResync(
      kWatched, {}, [this](store::Snapshot s) { onSnapshot(std::move(s)); },
      [this](uint64_t last, std::vector<store::Change> events) { onEvents(last, std::move(events)); });
}

// A fresh snapshot replaces the view: after a failed write the view holds decisions the store
// does not (the cores change it in place), and only the store's own state can undo them.
void Scheduler::resync(const std::string& why) {
  if (!active_ || !loaded_) return;  // the lists under way come after the failure already
  ++counters_.resyncs;
  spdlog::info("listing the store again: {}", why);
  loaded_ = false;  // no pass until the new snapshot
  showStatusText();
  // This may run inside one of the store client's callbacks (a watch's events, a write's
  // answer), where the watch must not be cancelled: replace it from the loop instead.
  daemon_.loop().post([this, generation = generation_] {
    if (generation != generation_ || !store_) return;
    store_->cancel(watch_);
    loaded_ = false;
    watchStore();
  });
}

void Scheduler::onSnapshot(store::Snapshot snapshot) {
  view_.clear();
  uint64_t index = 0;
  for (auto& kind : snapshot.kinds) {
    index = std::max(index, kind.index);
    for (auto& object : kind.objects) put(kind.kind, object);
  }
  // Each kind was listed at its own index; the watch then brings each kind from its own. The
  // latest list's index is what the view has caught up with once those events are in.
  view_.index = index;
  loaded_ = true;
  spdlog::info("store view loaded at index {}: {} nodes, {} services, {} tasks", index,
               view_.nodes().size(), view_.services().size(), view_.tasks().size());
  showStatusText();
  pacing_.changed(daemon_.loop().now());
  pump();
}

void Scheduler::onEvents(uint64_t lastIndex, std::vector<store::Change> events) {
  for (auto& e : events) {
    if (e.operation == objects::Operation::Delete)
      view_.remove(e.kind, e.id);
    else
      put(e.kind, e.object);
  }
  view_.index = std::max(view_.index, lastIndex);
  pacing_.changed(daemon_.loop().now());
  pump();
}

void Scheduler::put(ObjectKind kind, std::string_view bytes) {
  if (auto st = view_.put(kind, bytes); !st) {
    ++counters_.badObjects;
    badObjectWarning_.warn(st.error().message);
  }
}

// --- passes and their writes -------------------------------------------------------------------

// Runs a pass when one is due and nothing holds it back; otherwise arms the timer for when it
// is due. Called after everything that may change that: events, answers, timers.
void Scheduler::pump() {
  if (!active_ || !loaded_ || pacing_.heldBack(view_.index)) return;
  auto due = pacing_.due();
  if (!due) return;
  auto now = daemon_.loop().now();
  if (*due > now) return armPassTimer(*due);
  runPass();
}

void Scheduler::armPassTimer(Pacing::TimePoint at) {
  if (passTimer_ && passTimerAt_ == at) return;
  if (passTimer_) daemon_.loop().cancel(passTimer_);
  passTimerAt_ = at;
  passTimer_ = daemon_.loop().after(at - daemon_.loop().now(), [this] {
    passTimer_ = 0;
    pump();
  });
}

void Scheduler::runPass() {
  if (passTimer_) daemon_.loop().cancel(passTimer_);
  passTimer_ = 0;
  auto started = daemon_.loop().now();
  PassResult result;
  try {
    result = schedulerd::runPass(view_, systemNow(), [] { return newId(); });
  } catch (const std::exception& e) {
    // A core's bug, not the store's: the view is half changed, so it is read again, and the
    // next pass waits (pacing.h) in case the same state makes it fail again.
    ++counters_.passErrors;
    lastError_ = std::string("a pass failed: ") + e.what();
    spdlog::error("{}; nothing of it is written, the store is listed again", lastError_);
    pacing_.ran(daemon_.loop().now(), true);
    return resync("a pass failed");
  }
  auto now = daemon_.loop().now();
  pacing_.ran(now, false);
  ++counters_.passes;
  auto& c = result.counts;
  lastPass_ = {msBetween(started, now), c.creates, c.updates, c.deletes, result.batches.size()};
  if (c.creates || c.updates || c.deletes)
    spdlog::info("pass: {} created, {} updated, {} deleted in {} ms", c.creates, c.updates, c.deletes,
                 std::lround(lastPass_.ms));
  armWake(result.nextWake);
  commit(std::move(result.batches));
}

// Every batch goes at once; each is one transaction, all or nothing. They are counted in flight
// before any is sent, so that an answer that comes at once cannot start a pass among them.
void Scheduler::commit(std::vector<std::vector<store::ChangeSpec>> batches) {
  for (size_t i = 0; i < batches.size(); ++i) pacing_.sent();
  uint64_t gen = generation_;
  for (auto& batch : batches) {
    size_t n = batch.size();
    store_->txn(std::move(batch), {kWriteTimeout},
                [this, gen, n](Result<uint64_t> r) { committed(gen, n, std::move(r)); });
  }
}

void Scheduler::committed(uint64_t generation, size_t changes, Result<uint64_t> r) {
  if (generation != generation_) return;
  if (r) {
    ++counters_.txns;
    pacing_.written(*r);
    return pump();
  }
  pacing_.notWritten();
  std::string why = r.error().message;
  if (store::codeOf(r.error()) == wire::ErrorCode::Conflict) {
    ++counters_.conflicts;
    spdlog::info("a batch of {} changes conflicted, so the view was behind the store: {}", changes, why);
  } else {
    ++counters_.failures;
    spdlog::info("a batch of {} changes was not written (or may not have been): {}", changes, why);
  }
  lastError_ = "a batch of " + std::to_string(changes) + " changes: " + why;
  resync("a batch was not written");
  pump();
}

void Scheduler::armWake(Time when) {
  if (wakeTimer_) daemon_.loop().cancel(wakeTimer_);
  wakeTimer_ = 0;
  nextWake_ = when;
  if (when <= 0) return;
  Loop::Clock::duration delay = std::chrono::nanoseconds(when - systemNow());
  delay = std::clamp<Loop::Clock::duration>(delay, kMinWake, kMaxWake);
  wakeTimer_ = daemon_.loop().after(delay, [this] {
    wakeTimer_ = 0;
    pacing_.wake(daemon_.loop().now());
    pump();
  });
}

// --- Status --------------------------------------------------------------------------------------

std::string Scheduler::why() const {
  bool leads = leadership_.known && leadership_.isLeader;
  if (!leads && !nodeDirReason_.empty()) return nodeDirReason_;
  if (!leadership_.known)
    return "raftd's leadership is not known (is raftd running on " + daemon_.runDir() + "/raftd.sock?)";
  if (!leads)
    return leadership_.leaderId ? "raftd is a follower: the leader's schedulerd schedules (leader raft id " +
                                      std::to_string(leadership_.leaderId) + ")"
                                : std::string("raftd is a follower and no leader is elected");
  std::string term = "raftd leads (term " + std::to_string(leadership_.term) + ")";
  return term + (loaded_ ? ": scheduling" : ": reading the store");
}

nlohmann::json Scheduler::viewCounts() const {
  std::map<std::string, size_t> byState, byDesired;
  for (auto& [id, t] : view_.tasks()) {
    auto state = t->status ? t->status->state : objects::TaskState::New;
    ++byState[objects::EnumNameTaskState(state)];
    ++byDesired[objects::EnumNameTaskState(t->desired_state)];
  }
  return {{"loaded", loaded_},
          {"index", view_.index},
          {"nodes", view_.nodes().size()},
          {"services", view_.services().size()},
          {"networks", view_.networks().size()},
          {"tasks", {{"total", view_.tasks().size()}, {"by_state", byState}, {"by_desired_state", byDesired}}}};
}

void Scheduler::status(nlohmann::json& j) const {
  nlohmann::json s;
  s["active"] = active_;
  s["state"] = active_ ? (loaded_ ? "active" : "loading") : "idle";
  s["why"] = why();
  s["leadership"] = {{"known", leadership_.known}, {"is_leader", leadership_.isLeader},
                     {"leader_raft_id", leadership_.leaderId}, {"term", leadership_.term}};
  s["view"] = viewCounts();
  s["passes"] = counters_.passes;
  s["pass_errors"] = counters_.passErrors;
  s["last_pass"] = {{"ms", lastPass_.ms}, {"creates", lastPass_.creates}, {"updates", lastPass_.updates},
                    {"deletes", lastPass_.deletes}, {"txns", lastPass_.txns}};
  s["txns"] = counters_.txns;
  s["conflicts"] = counters_.conflicts;
  s["failures"] = counters_.failures;
  s["resyncs"] = counters_.resyncs;
  s["bad_objects"] = counters_.badObjects;
  s["in_flight"] = pacing_.inFlight();
  s["highest_written"] = pacing_.highestWritten();
  s["next_wake"] = nextWake_;
  if (nextWake_) s["next_wake_in_ms"] = (nextWake_ - systemNow()) / kMillisecond;
  if (!lastError_.empty()) s["last_error"] = lastError_;
  j["scheduler"] = std::move(s);
}

}  // namespace shoal::schedulerd
