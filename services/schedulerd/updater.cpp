#include "services/schedulerd/updater.h"

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "services/schedulerd/orchestrator.h"

// How an update proceeds, from the store alone (docs/services.md "Updates"), pass by pass:
//  1. failures: new tasks (clean, created since the update started) that ended FAILED,
//     REJECTED or COMPLETE while the update runs; too many → the failure action;
//  2. slots in flight: a clean task not up yet, or start-first's overlap; start-first shuts
//     the old task down once the new one is up; stop-first's new task waits in READY until
//     the old one stopped (the orchestrator starts it);
//  3. nothing in flight: the batch is done (batch_done_at = now); the next batch of
//     `parallelism` dirty slots starts `delay` later;
//  4. no dirty slot, nothing in flight and `monitor` past the last batch: completed.
// A new leader derives the same from the same objects: a slot with a clean live task is never
// given another. Failures / slots is compared with max_failure_ratio over the slots the update
// covers; a global service's tasks on paused nodes are left as they are (a paused node takes
// no new task), as are jobs (a job's new template runs as a new iteration: orchestrator.cpp).

namespace shoal::schedulerd {

using objects::TaskState;
using objects::UpdateState;

namespace {

constexpr Time kDefaultMonitor = 5 * kSecond;

TaskState stateOf(const objects::TaskT& t) {
  return t.status ? t.status->state : TaskState::New;
}
bool ended(const objects::TaskT& t) { return stateOf(t) > TaskState::Running; }

// "Up": the point from which a new task counts as done for its batch. RUNNING for now; once
// agents report health this is where a task with a healthcheck must also be healthy.
bool isUp(const objects::TaskT& t) { return stateOf(t) == TaskState::Running; }

struct Config {
  uint64_t parallelism = 1;
  Time delay = 0;
  objects::UpdateFailureAction failureAction = objects::UpdateFailureAction::Pause;
  Time monitor = kDefaultMonitor;
  float maxFailureRatio = 0;
  objects::UpdateOrder order = objects::UpdateOrder::StopFirst;
};

bool rollingBack(const objects::ServiceT& s) {
  return s.update_status && (s.update_status->state == UpdateState::RollbackStarted);
}

Config configOf(const objects::ServiceT& s) {
  auto& c = rollingBack(s) ? s.spec->rollback : s.spec->update;
  Config out;
  if (!c) return out;
  out = {c->parallelism, c->delay, c->failure_action, c->monitor, c->max_failure_ratio, c->order};
  return out;
}

bool isGlobalService(const objects::ServiceT& s) {
  auto k = s.spec->mode ? s.spec->mode->kind : objects::ServiceModeKind::Replicated;
  return k == objects::ServiceModeKind::Global;
}
bool isUpdatable(const objects::ServiceT& s) {
  auto k = s.spec->mode ? s.spec->mode->kind : objects::ServiceModeKind::Replicated;
  return k == objects::ServiceModeKind::Replicated || k == objects::ServiceModeKind::Global;
}

// ---- the slots as the updater sees them

struct Slot {
  std::string key;                          // "3" or a node id, for ordering and names
  std::vector<const objects::TaskT*> clean;  // live tasks running the current spec
  std::vector<const objects::TaskT*> dirty;  // live tasks running an older one
  std::vector<const objects::TaskT*> dead;   // the slot's other tasks (shut down, ended)
};

// Slots of the service that the update covers: replicated slots with a live task; global
// nodes that may run the service and are not paused (the orchestrator empties the others).
std::map<std::string, Slot> slotsOf(const Plan& plan, const objects::ServiceT& s, uint64_t digest) {
  std::map<std::string, Slot> slots;
  bool global = isGlobalService(s);
  for (auto& id : plan.view().tasksOf(s.id)) {
    auto* t = plan.view().task(id);
    if (!t) continue;
    std::string key = global ? t->node_id : std::to_string(1000000000 + t->slot);
    auto& slot = slots[key];
    slot.key = global ? t->node_id : std::to_string(t->slot);
    if (!isLive(*t))
      slot.dead.push_back(t);
    else
      (t->spec_digest == digest ? slot.clean : slot.dirty).push_back(t);
  }
  std::erase_if(slots, [&](auto& kv) {
    if (kv.second.clean.empty() && kv.second.dirty.empty()) return true;
    if (!global) return false;
    auto* n = plan.view().node(kv.first);
    return !n || !nodeEligible(*n, s) ||
           (n->spec && n->spec->availability == objects::NodeAvailability::Pause);
  });
  return slots;
}

bool inFlight(const Slot& slot) {
  for (auto* t : slot.clean)
    if (!isUp(*t) && !ended(*t)) return true;
  return false;
}

// Start-first: once a new task is up (or ended: the slot's outcome is known), the old one
// goes. (Stop-first's new task waits in READY; the orchestrator starts it once the old one
// stopped, also while the update is paused.)
void advanceSlot(Plan& plan, const Slot& slot) {
  bool newSettled = std::any_of(slot.clean.begin(), slot.clean.end(),
                                [](auto* t) { return isUp(*t) || ended(*t); });
  if (newSettled)
    for (auto* t : slot.dirty) plan.editTask(t->id).desired_state = TaskState::Shutdown;
}

// ---- failures

bool isFailure(const objects::TaskT& t) {
  auto st = stateOf(t);
  return st == TaskState::Failed || st == TaskState::Rejected || st == TaskState::Complete;
}

std::string failureText(const objects::ServiceT& s, const objects::TaskT& t) {
  std::string what = "task " + taskName(s, t);
  auto* st = t.status.get();
  int code = st && st->container ? st->container->exit_code : 0;
  std::string err = st ? st->err : "";
  if (stateOf(t) == TaskState::Rejected)
    what += " was rejected" + (err.empty() ? "" : " (" + err + ")");
  else if (stateOf(t) == TaskState::Complete)
    what += " exited (exit " + std::to_string(code) + ")";
  else if (code != 0)
    what += " failed (exit " + std::to_string(code) + ")";
  else
    what += " failed" + (err.empty() ? "" : " (" + err + ")");
  return what + " within the monitor window";
}

// A task created for this update (or rollback): it runs the spec the update brings in, in
// that spec version or a later one (a scale during the update). Tasks that ran the same spec
// before, e.g. the old ones a rollback returns to, have an older version.
bool ofThisUpdate(const objects::ServiceT& s, const objects::TaskT& t, uint64_t digest) {
  return t.spec_digest == digest && t.spec_version >= s.update_status->spec_version;
}

// The new tasks of this update that failed; the latest first.
std::vector<const objects::TaskT*> failuresOf(const Plan& plan, const objects::ServiceT& s,
                                              uint64_t digest) {
  std::vector<const objects::TaskT*> out;
  for (auto& id : plan.view().tasksOf(s.id)) {
    auto* t = plan.view().task(id);
    if (t && isFailure(*t) && ofThisUpdate(s, *t, digest)) out.push_back(t);
  }
  std::sort(out.begin(), out.end(), [](auto* a, auto* b) {
    return std::make_pair(a->status->timestamp, a->id) > std::make_pair(b->status->timestamp, b->id);
  });
  return out;
}

void setStatus(Plan& plan, const objects::ServiceT& s, UpdateState state, std::string message) {
  auto& e = plan.editService(s.id);
  if (!e.update_status) e.update_status = std::make_unique<objects::UpdateStatusT>();
  e.update_status->state = state;
  e.update_status->message = std::move(message);
  if (state == UpdateState::Completed || state == UpdateState::RollbackCompleted)
    e.update_status->completed_at = plan.now();
}

// Automatic rollback: the previous spec comes back as a new spec version, and the rollback
// runs with its own config like an update.
void startRollback(Plan& plan, const objects::ServiceT& s, const std::string& why) {
  auto& e = plan.editService(s.id);
  std::swap(e.spec, e.previous_spec);
  e.spec_version += 1;
  auto& us = *e.update_status;
  us = objects::UpdateStatusT();
  us.state = UpdateState::RollbackStarted;
  us.started_at = plan.now();
  us.spec_version = e.spec_version;
  us.message = "update rolled back: " + why;
}

// Applies the failure action when the failures exceed the ratio. Returns whether the update
// stops here for this pass.
bool handleFailures(Plan& plan, const objects::ServiceT& s, const Config& c, size_t slots,
                    uint64_t digest) {
  auto failed = failuresOf(plan, s, digest);
  if (failed.size() != s.update_status->failures)
    plan.editService(s.id).update_status->failures = failed.size();
  if (failed.empty() || slots == 0) return false;
  if (static_cast<float>(failed.size()) / static_cast<float>(slots) <= c.maxFailureRatio) return false;
  if (c.failureAction == objects::UpdateFailureAction::Continue) return false;
  std::string why = failureText(s, *failed.front());
  if (c.failureAction == objects::UpdateFailureAction::Rollback && !rollingBack(s)) {
    if (s.previous_spec) {
      startRollback(plan, s, why);
      return true;
    }
    why += " (no previous spec to roll back to)";
  }
  if (rollingBack(s))
    setStatus(plan, s, UpdateState::RollbackPaused, "rollback paused: " + why);
  else
    setStatus(plan, s, UpdateState::Paused, "update paused: " + why);
  return true;
}

// ---- batches

void replaceSlot(Plan& plan, const objects::ServiceT& s, const Slot& slot, const Config& c,
                 uint64_t digest) {
  bool global = isGlobalService(s);
  auto* old = slot.dirty.front();
  auto& t = createServiceTask(plan, s, global ? 0 : old->slot, global ? old->node_id : "", digest);
  if (c.order == objects::UpdateOrder::StartFirst) return;
  t.desired_state = TaskState::Ready;  // advanceSlot starts it once the old task stopped
  bool oldRan = false;
  for (auto* d : slot.dirty) {
    oldRan = oldRan || stateOf(*d) >= TaskState::Assigned;
    if (stateOf(*d) < TaskState::Assigned)
      plan.deleteTask(d->id);
    else
      plan.editTask(d->id).desired_state = TaskState::Shutdown;
  }
  if (!oldRan) t.desired_state = TaskState::Running;
}

void startBatch(Plan& plan, const objects::ServiceT& s, const std::map<std::string, Slot>& slots,
                const Config& c, uint64_t digest) {
  size_t started = 0;
  std::vector<const Slot*> dirty;
  for (auto& [key, slot] : slots)
    if (slot.clean.empty() && !slot.dirty.empty()) dirty.push_back(&slot);
  for (auto* slot : dirty) {
    if (c.parallelism != 0 && started >= c.parallelism) break;
    replaceSlot(plan, s, *slot, c, digest);
    ++started;
  }
  if (started > 0 && s.update_status->batch_done_at != 0)
    plan.editService(s.id).update_status->batch_done_at = 0;
}

bool batchStarted(const Plan& plan, const objects::ServiceT& s, uint64_t digest) {
  for (auto& id : plan.view().tasksOf(s.id)) {
    auto* t = plan.view().task(id);
    if (t && ofThisUpdate(s, *t, digest)) return true;
  }
  return false;
}

void complete(Plan& plan, const objects::ServiceT& s) {
  if (!rollingBack(s)) return setStatus(plan, s, UpdateState::Completed, "update completed");
  auto msg = s.update_status->message;
  setStatus(plan, s, UpdateState::RollbackCompleted,
            msg.starts_with("update rolled back:") ? msg : "rollback completed");
}

// One step of the update of `s`, whose update_status is Updating or RollbackStarted.
void advance(Plan& plan, const objects::ServiceT& s) {
  uint64_t digest = plan.view().digestOf(s.id);
  Config c = configOf(s);
  auto slots = slotsOf(plan, s, digest);
  if (handleFailures(plan, s, c, slots.size(), digest)) return;
  bool busy = false;
  bool dirty = false;
  for (auto& [key, slot] : slots) {
    advanceSlot(plan, slot);
    busy = busy || inFlight(slot) || (!slot.clean.empty() && !slot.dirty.empty());
    dirty = dirty || slot.clean.empty();
  }
  if (busy) return;
  // The batch in flight is all up now: recorded only when something waits for it (the delay,
  // the last monitor window), since the next batch would clear it at once.
  Time doneAt = s.update_status->batch_done_at;
  bool justDone = doneAt == 0 && batchStarted(plan, s, digest);
  if (justDone) doneAt = plan.now();
  Time next = doneAt == 0 ? plan.now() : later(doneAt, dirty ? c.delay : c.monitor);
  if (justDone && (next > plan.now() || !dirty))
    plan.editService(s.id).update_status->batch_done_at = doneAt;
  if (next > plan.now()) return wakeAtUnlessNever(plan, next);
  if (dirty)
    startBatch(plan, s, slots, c, digest);
  else
    complete(plan, s);
}

// An update is under way when the store says so; dirty tasks without one (a spec changed by
// an older raftd, or a status lost) start one, as SwarmKit's updater runs on dirty tasks.
bool underWay(Plan& plan, const objects::ServiceT& s) {
  auto state = s.update_status ? s.update_status->state : UpdateState::Unknown;
  if (state == UpdateState::Updating || state == UpdateState::RollbackStarted) return true;
  if (state == UpdateState::Paused || state == UpdateState::RollbackPaused) return false;
  uint64_t digest = plan.view().digestOf(s.id);
  for (auto& [key, slot] : slotsOf(plan, s, digest)) {
    if (!slot.clean.empty() || slot.dirty.empty()) continue;
    auto& e = plan.editService(s.id);
    e.update_status = std::make_unique<objects::UpdateStatusT>();
    e.update_status->state = UpdateState::Updating;
    e.update_status->started_at = plan.now();
    e.update_status->spec_version = e.spec_version;
    e.update_status->message = "update in progress";
    return true;
  }
  return false;
}

}  // namespace

void updateServices(Plan& plan) {
  for (auto& [id, s] : plan.view().services()) {
    if (!s->spec || !isUpdatable(*s)) continue;
    if (underWay(plan, *s)) advance(plan, *s);
  }
}

}  // namespace shoal::schedulerd
