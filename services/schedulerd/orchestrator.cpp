#include "services/schedulerd/orchestrator.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/constraints.h"

// Decisions taken here, beyond what SwarmKit's orchestrators do (docs/services.md):
// - A node in state Unknown or Disconnected keeps its tasks: only Down (dispatcherd's verdict
//   after 3 missed heartbeats) or a removed Node moves tasks. New tasks of a global service go
//   only to Ready and active nodes (the scheduler's first filter); a paused node keeps its
//   tasks, and a global task that ends there is not restarted until the node is active.
// - A task whose node went Down or was drained is shut down and its slot filled again at once,
//   without the restart delay and without counting a restart attempt: the task did not fail.
// - A task that ended and may not be restarted (condition none, on-failure after COMPLETE, max
//   attempts) keeps desired RUNNING, so that the slot stays occupied and a new leader does not
//   restart it either. With a restart window, max attempts limits restarts within any window:
//   once the oldest counted attempt leaves the window, the slot is restarted again.
// - Restarts are counted per spec version (as Swarm does): a new spec starts from zero.
// - Tasks that never reached a node (state < ASSIGNED) are deleted instead of shut down.
// - Scale down keeps slots 1..replicas and shuts the higher ones down.
// - Replicated jobs: max_concurrent 0 means total_completions; total_completions 0 means
//   max_concurrent (at least 1). A COMPLETE task ends its slot for the job's iteration.

namespace shoal::schedulerd {

using objects::TaskState;

namespace {

constexpr int64_t kDefaultHistory = 5;
constexpr Time kDefaultRestartDelay = 5 * kSecond;

TaskState stateOf(const objects::TaskT& t) {
  return t.status ? t.status->state : TaskState::New;
}
bool ended(const objects::TaskT& t) { return stateOf(t) > TaskState::Running; }
bool reachedNode(const objects::TaskT& t) { return stateOf(t) >= TaskState::Assigned; }
Time endedAt(const objects::TaskT& t) { return t.status ? t.status->timestamp : 0; }

objects::ServiceModeKind modeOf(const objects::ServiceT& s) {
  return s.spec->mode ? s.spec->mode->kind : objects::ServiceModeKind::Replicated;
}
bool isGlobal(const objects::ServiceT& s) {
  auto k = modeOf(s);
  return k == objects::ServiceModeKind::Global || k == objects::ServiceModeKind::GlobalJob;
}
bool isJob(const objects::ServiceT& s) {
  auto k = modeOf(s);
  return k == objects::ServiceModeKind::ReplicatedJob || k == objects::ServiceModeKind::GlobalJob;
}
uint64_t jobIteration(const objects::ServiceT& s) {
  return s.job_status ? s.job_status->job_iteration : 0;
}

bool nodeDown(const objects::NodeT* n) {
  return !n || (n->status && n->status->state == objects::NodeState::Down);
}
objects::NodeAvailability availabilityOf(const objects::NodeT& n) {
  return n.spec ? n.spec->availability : objects::NodeAvailability::Active;
}

// Who may run a service's tasks: a node not down, not drained, meeting the constraints and
// platforms (common/constraints.h, the scheduler's own matchers). Parsed once per service; a
// constraint that does not parse (the service API refuses those) is met by no node.
class Eligibility {
 public:
  explicit Eligibility(const objects::ServiceT& s) {
    placement_ = s.spec && s.spec->task ? s.spec->task->placement.get() : nullptr;
    if (!placement_) return;
    auto parsed = constraints::parseConstraints(placement_->constraints);
    valid_ = parsed.ok();
    if (valid_) constraints_ = std::move(parsed).value();
  }
  bool operator()(const objects::NodeT& n) const {
    if (nodeDown(&n) || availabilityOf(n) == objects::NodeAvailability::Drain || !valid_) return false;
    if (!placement_) return true;
    return constraints::matchesAll(constraints_, n) &&
           constraints::platformMatches(placement_->platforms, n);
  }

 private:
  const objects::PlacementT* placement_ = nullptr;
  std::vector<constraints::Constraint> constraints_;
  bool valid_ = true;
};

bool takesNewTasks(const objects::NodeT& n, const Eligibility& eligible) {
  return eligible(n) && n.status && n.status->state == objects::NodeState::Ready &&
         availabilityOf(n) == objects::NodeAvailability::Active;
}

// ---- the restart policy (docs/services.md "Restarts")

struct RestartPolicy {
  objects::RestartCondition condition = objects::RestartCondition::Any;
  Time delay = kDefaultRestartDelay;
  uint64_t maxAttempts = 0;
  Time window = 0;
};

RestartPolicy policyOf(const objects::ServiceT& s) {
  RestartPolicy p;
  if (s.spec->task && s.spec->task->restart) {
    auto& r = *s.spec->task->restart;
    p = {r.condition, r.delay, r.max_attempts, r.window};
  }
  return p;
}

// Whether the ending of `t` calls for a new task under the policy's condition. A job's task
// that completed is done, whatever the condition says.
bool conditionAllows(const objects::ServiceT& s, const objects::TaskT& t) {
  auto p = policyOf(s);
  if (p.condition == objects::RestartCondition::None) return false;
  bool completed = stateOf(t) == TaskState::Complete;
  if (completed && (isJob(s) || p.condition == objects::RestartCondition::OnFailure)) return false;
  return true;
}

// When the slot may be restarted again: now when max attempts allow it, later when the window
// will let the oldest counted attempt go, never (0) when the attempts are spent for good.
Time restartAllowedAt(const Plan& plan, const objects::ServiceT& s, const objects::TaskT& old,
                      const std::vector<std::string>& slotTasks) {
  auto p = policyOf(s);
  if (p.maxAttempts == 0) return plan.now();
  if (p.window <= 0) {
    uint64_t done = old.spec_version == s.spec_version ? old.restart_attempt : 0;
    return done < p.maxAttempts ? plan.now() : 0;
  }
  std::vector<Time> recent;
  for (auto& id : slotTasks) {
    auto* t = plan.view().task(id);
    if (t && t->spec_version == s.spec_version && t->restart_attempt > 0 &&
        later(t->not_before, p.window) > plan.now())
      recent.push_back(t->not_before);
  }
  if (recent.size() < p.maxAttempts) return plan.now();
  std::sort(recent.begin(), recent.end());
  return later(recent[recent.size() - p.maxAttempts], p.window);
}

// ---- slots

using SlotKey = std::pair<uint64_t, std::string>;  // (slot, "") or (0, node id)
using Slots = std::map<SlotKey, std::vector<std::string>>;

SlotKey slotOf(const objects::ServiceT& s, const objects::TaskT& t) {
  return isGlobal(s) ? SlotKey{0, t.node_id} : SlotKey{t.slot, ""};
}

Slots slotsOf(const Plan& plan, const objects::ServiceT& s) {
  Slots slots;
  for (auto& id : plan.view().tasksOf(s.id)) {
    auto* t = plan.view().task(id);
    if (t) slots[slotOf(s, *t)].push_back(id);
  }
  return slots;
}

std::vector<const objects::TaskT*> liveIn(const Plan& plan, const std::vector<std::string>& ids) {
  std::vector<const objects::TaskT*> out;
  for (auto& id : ids) {
    auto* t = plan.view().task(id);
    if (t && isLive(*t)) out.push_back(t);
  }
  return out;
}

// Takes a task down: a task that never reached a node has nothing to stop and goes at once.
void stopTask(Plan& plan, const objects::TaskT& t, TaskState desired) {
  if (!reachedNode(t)) {
    plan.deleteTask(t.id);
    return;
  }
  if (t.desired_state < desired) plan.editTask(t.id).desired_state = desired;
}

// ---- supervision of live tasks: restart delays, restarts, lost and drained nodes

void restartTask(Plan& plan, const objects::ServiceT& s, const objects::TaskT& old,
                 const std::vector<std::string>& slotTasks) {
  Time allowedAt = restartAllowedAt(plan, s, old, slotTasks);
  if (allowedAt != plan.now()) {
    wakeAtUnlessNever(plan, allowedAt);  // 0 (never) is ignored too
    return;
  }
  uint64_t attempt = old.spec_version == s.spec_version ? old.restart_attempt + 1 : 1;
  Time notBefore = later(std::max(endedAt(old), Time{0}), policyOf(s).delay);
  std::string node = isGlobal(s) ? old.node_id : std::string();
  uint64_t slot = old.slot;
  plan.editTask(old.id).desired_state = TaskState::Shutdown;
  auto& t = createServiceTask(plan, s, slot, node, plan.view().digestOf(s.id));
  t.restart_attempt = attempt;
  t.not_before = notBefore;
  if (notBefore > plan.now()) {
    t.desired_state = TaskState::Ready;
    wakeAtUnlessNever(plan, notBefore);
  }
}

// Whether the slot's other tasks that were asked to stop have stopped (or their node is down
// and will not run them). Until then a READY task waits, as SwarmKit's restart supervisor
// waits for the old task: a stop-first update means stop, then start.
bool othersStopped(const Plan& plan, const objects::TaskT& self,
                   const std::vector<std::string>& slotTasks) {
  for (auto& id : slotTasks) {
    auto* o = plan.view().task(id);
    if (!o || o->id == self.id || isLive(*o) || !reachedNode(*o) || ended(*o)) continue;
    if (!nodeDown(plan.view().node(o->node_id))) return false;
  }
  return true;
}

// A task waiting in READY (a restart's delay, a stop-first update's replacement) is started
// once its not_before has passed and the slot's old task has stopped.
void startWhenDue(Plan& plan, const objects::TaskT& t, const std::vector<std::string>& slotTasks) {
  if (t.desired_state != TaskState::Ready) return;
  if (t.not_before > plan.now()) return wakeAtUnlessNever(plan, t.not_before);
  if (othersStopped(plan, t, slotTasks)) plan.editTask(t.id).desired_state = TaskState::Running;
}

// A task that ended while wanted running: done (a job), restarted, or left as the slot's
// record when the policy says no more.
void superviseEnded(Plan& plan, const objects::ServiceT& s, const objects::TaskT& t,
                    const std::vector<std::string>& slotTasks) {
  if (isJob(s) && stateOf(t) == TaskState::Complete) {
    plan.editTask(t.id).desired_state = TaskState::Complete;
    return;
  }
  if (!conditionAllows(s, t)) return;
  if (isGlobal(s)) {  // a global task restarts only where a new one may go
    auto* node = plan.view().node(t.node_id);
    if (!node || !takesNewTasks(*node, Eligibility(s))) return;
  }
  restartTask(plan, s, t, slotTasks);
}

void superviseLive(Plan& plan, const objects::ServiceT& s, const objects::TaskT& t,
                   const std::vector<std::string>& slotTasks) {
  if (ended(t)) return superviseEnded(plan, s, t, slotTasks);
  startWhenDue(plan, t, slotTasks);
  if (!reachedNode(t) || isGlobal(s)) return;  // global: the node's eligibility decides
  auto* node = plan.view().node(t.node_id);
  if (nodeDown(node) || availabilityOf(*node) == objects::NodeAvailability::Drain)
    stopTask(plan, t, TaskState::Shutdown);  // the slot is filled again below
}

void supervise(Plan& plan, const objects::ServiceT& s, const Slots& slots) {
  for (auto& [key, ids] : slots)
    for (auto* t : liveIn(plan, ids))
      if (!isJob(s) || t->job_iteration == jobIteration(s)) superviseLive(plan, s, *t, ids);
}

// ---- the modes

void reconcileReplicated(Plan& plan, const objects::ServiceT& s) {
  uint64_t replicas = s.spec->mode ? s.spec->mode->replicas : 1;
  auto slots = slotsOf(plan, s);
  std::set<uint64_t> occupied;
  for (auto& [key, ids] : slots) {
    auto live = liveIn(plan, ids);
    if (live.empty()) continue;
    if (key.first == 0 || key.first > replicas) {
      for (auto* t : live) stopTask(plan, *t, TaskState::Shutdown);
      continue;
    }
    occupied.insert(key.first);
  }
  for (uint64_t slot = 1; slot <= replicas; ++slot)
    if (!occupied.count(slot)) createServiceTask(plan, s, slot, "", plan.view().digestOf(s.id));
}

// Global and global-job: one task per eligible node; for a job, one that completed counts.
void reconcileGlobal(Plan& plan, const objects::ServiceT& s) {
  auto slots = slotsOf(plan, s);
  Eligibility eligible(s);
  for (auto& [key, ids] : slots) {
    auto* node = plan.view().node(key.second);
    if (node && eligible(*node)) continue;
    for (auto* t : liveIn(plan, ids)) stopTask(plan, *t, TaskState::Shutdown);
  }
  for (auto& [id, node] : plan.view().nodes()) {
    if (!takesNewTasks(*node, eligible)) continue;
    bool covered = false;
    for (auto& tid : slots[SlotKey{0, id}]) {
      auto* t = plan.view().task(tid);
      if (!t || (isJob(s) && t->job_iteration != jobIteration(s))) continue;
      covered = covered || isLive(*t) || (isJob(s) && stateOf(*t) == TaskState::Complete);
    }
    if (!covered) createServiceTask(plan, s, 0, id, plan.view().digestOf(s.id));
  }
}

// Replicated job: slots 1..total_completions, at most max_concurrent live at once, a slot
// done once a task of this iteration completed in it.
void reconcileReplicatedJob(Plan& plan, const objects::ServiceT& s) {
  uint64_t total = s.spec->mode ? s.spec->mode->total_completions : 0;
  uint64_t concurrent = s.spec->mode ? s.spec->mode->max_concurrent : 0;
  if (concurrent == 0) concurrent = std::max<uint64_t>(total, 1);
  if (total == 0) total = concurrent;
  std::set<uint64_t> busy;
  uint64_t live = 0;
  for (auto& [key, ids] : slotsOf(plan, s)) {
    for (auto& id : ids) {
      auto* t = plan.view().task(id);
      if (!t || t->job_iteration != jobIteration(s)) continue;
      if (isLive(*t)) ++live;
      if (isLive(*t) || stateOf(*t) == TaskState::Complete) busy.insert(key.first);
    }
  }
  for (uint64_t slot = 1; slot <= total && live < concurrent; ++slot) {
    if (busy.count(slot)) continue;
    createServiceTask(plan, s, slot, "", plan.view().digestOf(s.id));
    ++live;
  }
}

// A job's tasks of an earlier iteration (the job was run again) are taken down.
void stopOldIterations(Plan& plan, const objects::ServiceT& s) {
  std::vector<std::string> ids(plan.view().tasksOf(s.id).begin(), plan.view().tasksOf(s.id).end());
  for (auto& id : ids) {
    auto* t = plan.view().task(id);
    if (t && isLive(*t) && t->job_iteration != jobIteration(s)) stopTask(plan, *t, TaskState::Shutdown);
  }
}

// A job gets its JobStatus on its first pass. A job whose task template changed runs again,
// as in Swarm (a new job iteration): the service API marks the change as an update (or a
// rollback), which here becomes the next iteration and is thereby done.
void ensureJobStatus(Plan& plan, const objects::ServiceT& s) {
  auto state = s.update_status ? s.update_status->state : objects::UpdateState::Unknown;
  bool rerun = state == objects::UpdateState::Updating || state == objects::UpdateState::RollbackStarted;
  if (s.job_status && !rerun) return;
  auto& edit = plan.editService(s.id);
  if (!edit.job_status)
    edit.job_status = std::make_unique<objects::JobStatusT>();
  else
    ++edit.job_status->job_iteration;
  edit.job_status->last_execution = plan.now();
  if (!rerun) return;
  bool rollback = state == objects::UpdateState::RollbackStarted;
  edit.update_status->state = rollback ? objects::UpdateState::RollbackCompleted : objects::UpdateState::Completed;
  edit.update_status->completed_at = plan.now();
  edit.update_status->message = "the job runs again as iteration " + std::to_string(edit.job_status->job_iteration);
}

// ---- removal of a deleted service's tasks, and the reaper

void removeTasks(Plan& plan, const std::string& serviceId) {
  std::vector<std::string> ids(plan.view().tasksOf(serviceId).begin(),
                               plan.view().tasksOf(serviceId).end());
  for (auto& id : ids) {
    auto* t = plan.view().task(id);
    if (!t) continue;
    if (stateOf(*t) >= TaskState::Complete || !reachedNode(*t))
      plan.deleteTask(id);
    else if (t->desired_state < TaskState::Remove)
      plan.editTask(id).desired_state = TaskState::Remove;
  }
}

int64_t historyLimit(const View& view) {
  auto* c = view.cluster();
  if (!c || !c->spec || !c->spec->orchestration) return kDefaultHistory;
  return c->spec->orchestration->task_history_retention_limit;
}

// Keeps the newest `limit` dead tasks of each slot (negative: all). A job's completed task of
// the current iteration is kept whatever the limit: it is what says the slot is done.
void reap(Plan& plan, const objects::ServiceT& s, int64_t limit) {
  if (limit < 0) return;
  for (auto& [key, ids] : slotsOf(plan, s)) {
    std::vector<const objects::TaskT*> dead;
    for (auto& id : ids) {
      auto* t = plan.view().task(id);
      if (!t || isLive(*t) || (reachedNode(*t) && !ended(*t))) continue;
      if (isJob(s) && stateOf(*t) == TaskState::Complete && t->job_iteration == jobIteration(s))
        continue;
      dead.push_back(t);
    }
    if (dead.size() <= static_cast<size_t>(limit)) continue;
    std::sort(dead.begin(), dead.end(), [](auto* a, auto* b) {
      return std::make_pair(endedAt(*a), a->id) > std::make_pair(endedAt(*b), b->id);
    });
    std::vector<std::string> gone;
    for (size_t i = static_cast<size_t>(limit); i < dead.size(); ++i) gone.push_back(dead[i]->id);
    for (auto& id : gone) plan.deleteTask(id);
  }
}

void orchestrateService(Plan& plan, const objects::ServiceT& s) {
  if (isJob(s)) {
    ensureJobStatus(plan, s);
    stopOldIterations(plan, s);
  }
  supervise(plan, s, slotsOf(plan, s));
  switch (modeOf(s)) {
    case objects::ServiceModeKind::Replicated: reconcileReplicated(plan, s); break;
    case objects::ServiceModeKind::ReplicatedJob: reconcileReplicatedJob(plan, s); break;
    case objects::ServiceModeKind::Global:
    case objects::ServiceModeKind::GlobalJob: reconcileGlobal(plan, s); break;
  }
}

}  // namespace

bool isLive(const objects::TaskT& task) { return task.desired_state <= TaskState::Running; }

bool nodeEligible(const objects::NodeT& node, const objects::ServiceT& service) {
  return Eligibility(service)(node);
}

objects::TaskT& createServiceTask(Plan& plan, const objects::ServiceT& s, uint64_t slot,
                                  const std::string& nodeId, uint64_t digest) {
  auto t = std::make_unique<objects::TaskT>();
  t->id = plan.newId();
  t->spec = s.spec->task ? std::make_unique<objects::TaskSpecT>(*s.spec->task)
                         : std::make_unique<objects::TaskSpecT>();
  if (t->spec->log_driver) t->log_driver = std::make_unique<objects::DriverT>(*t->spec->log_driver);
  t->spec_version = s.spec_version;
  t->spec_digest = digest;
  t->service_id = s.id;
  t->slot = slot;
  t->node_id = nodeId;
  t->job_iteration = jobIteration(s);
  t->annotations = std::make_unique<objects::AnnotationsT>();
  t->annotations->name = taskName(s, *t);
  if (s.spec->annotations)
    t->service_annotations = std::make_unique<objects::AnnotationsT>(*s.spec->annotations);
  t->desired_state = TaskState::Running;
  t->status = std::make_unique<objects::TaskStatusT>();
  t->status->state = TaskState::New;
  t->status->timestamp = plan.now();
  t->status->message = "created";
  return plan.createTask(std::move(t));
}

void orchestrate(Plan& plan) {
  int64_t limit = historyLimit(plan.view());
  for (auto& id : plan.view().serviceIds()) {
    auto* s = plan.view().service(id);
    if (!s || !s->spec) {
      removeTasks(plan, id);
      continue;
    }
    orchestrateService(plan, *s);
    reap(plan, *s, limit);
  }
}

}  // namespace shoal::schedulerd
