#pragma once
// The updater (DESIGN.md §6, docs/services.md "Updates"; SwarmKit's manager/orchestrator/
// update): replaces the dirty tasks of a service (Task.spec_digest != the service's digest)
// slot by slot with the update config — parallelism, delay, monitor, failure action
// pause|continue|rollback, max failure ratio, order stop-first|start-first — and does a
// rollback the same way with the rollback config. Its progress lives in the Service's
// UpdateStatus (state, started_at, batch_done_at, failures, spec_version, message), so a new
// leader's schedulerd goes on where the old one stood, and it never leaves two live tasks in a
// slot except for start-first's overlap. Pure.

#include "services/schedulerd/plan.h"

namespace shoal::schedulerd {

void updateServices(Plan& plan);

}  // namespace shoal::schedulerd
