#pragma once
// The orchestrators (DESIGN.md §6, docs/services.md "Orchestration"; SwarmKit's
// manager/orchestrator): they decide which tasks should exist. Pure: a Plan in, changes out.
//
// - replicated: slots 1..replicas, one live task per slot (live = desired_state <= RUNNING);
//   a scale down shuts the highest slots down (desired SHUTDOWN), preferring tasks that are not
//   running and nodes that run the most tasks of the service;
// - global: one live task per eligible node (ready, not drained, constraints and platform
//   met); following nodes that join, leave, are drained or change labels;
// - replicated-job / global-job: tasks run to completion (restart condition on-failure);
//   replicated-job runs total_completions tasks, at most max_concurrent at once;
// - restarts: a task that ended (COMPLETE, FAILED, REJECTED, or SHUTDOWN not asked for), or
//   whose node is DOWN, is replaced in its slot when the restart policy allows (condition,
//   max attempts within window), the replacement waiting `delay` (desired READY with
//   Task.not_before until then); the old one gets desired SHUTDOWN;
// - tasks of a service that is gone get desired REMOVE, and are deleted once they stopped
//   (or never reached a node);
// - the reaper keeps the newest `task_history_retention_limit` (default 5) tasks per slot.
// New tasks are created in NEW with the service's current spec, spec_version and
// spec_digest; the allocator and scheduler take them on in the same pass.

#include <cstdint>

#include "services/schedulerd/plan.h"

namespace shoal::schedulerd {

void orchestrate(Plan& plan);

// Shared with the updater, which also creates tasks and must agree on what "live" means.
// A live task is one the cluster wants running (desired_state <= RUNNING).
bool isLive(const objects::TaskT& task);
// A new task of the service in NEW: a copy of its TaskSpec, spec_version, `digest`, slot (or
// node for global services), name, desired RUNNING. It joins the plan.
objects::TaskT& createServiceTask(Plan& plan, const objects::ServiceT& service, uint64_t slot,
                                  const std::string& nodeId, uint64_t digest);
// t + d for durations from specs, which are not trusted to be sane: saturates instead of
// overflowing, and a negative duration counts as none.
inline Time later(Time t, Time d) {
  if (d <= 0) return t;
  return t > INT64_MAX - d ? INT64_MAX : t + d;
}
// Plan::wakeAt for a time that may be "never" (a saturated INT64_MAX): no timer for that.
inline void wakeAtUnlessNever(Plan& plan, Time when) {
  if (when != INT64_MAX) plan.wakeAt(when);
}
// Whether the node may run tasks of the service: not down, not drained, constraints and
// platforms met (a paused node keeps its tasks but takes no new ones: see Plan's callers).
bool nodeEligible(const objects::NodeT& node, const objects::ServiceT& service);

}  // namespace shoal::schedulerd
