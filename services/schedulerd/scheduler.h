#pragma once
// The scheduler (DESIGN.md §6, docs/services.md "Scheduling"; SwarmKit's manager/scheduler):
// takes PENDING tasks whose desired state is READY or RUNNING to ASSIGNED with a node.
// Filters in order: node ready and active; resources (reservations against the node's
// capacity minus what its tasks reserve); constraints; platform; host-mode ports; max replicas
// per node. Then spread: placement preferences split the nodes into a tree and even out the
// counts level by level; within a leaf the node with the fewest tasks of the service, then the
// fewest tasks; nodes where the service failed recently go last. Tasks of one service and spec
// are placed together.
//
// A task that fits nowhere stays PENDING with the reason in status.err, e.g.
//   "no suitable node (3 nodes fail constraint node.labels.zone==b; 2 nodes lack 2 CPUs, 1.5 free)"
// (written only when it changes). Pure; built for 100,000 tasks on 10,000 nodes in well under
// a second (shoal-bench scheduler).

#include "services/schedulerd/plan.h"

namespace shoal::schedulerd {

void schedule(Plan& plan);

}  // namespace shoal::schedulerd
