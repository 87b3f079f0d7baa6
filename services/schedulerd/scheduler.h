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
//
// Decisions where Swarm leaves room (docs/services.md is the contract):
// - the spread tree holds the nodes that pass every filter when the group's turn comes, so a
//   drained or full zone takes no share; within a leaf a heap orders the nodes (failed
//   recently, tasks of the service, tasks, node id), and a node that cannot take the next task
//   of the group leaves the heap (the group's tasks are alike);
// - "failed recently": a task of the service ended FAILED or REJECTED on the node within the
//   last 5 minutes (SwarmKit counts failures of the service per node over 5 minutes);
// - a task that already names its node (a global task) is placed there or nowhere;
// - a reason is given once the pass has placed all it could, against the nodes as the pass
//   leaves them, so that the next pass finds the same reason and writes nothing; it counts
//   every node once, by its first refusing filter; amounts are the free
//   capacity of the refused nodes, "at most N free" when they differ; a spec whose placement
//   does not parse (raftd refuses one) leaves its tasks pending with the parser's message;
// - groups are placed in the order of (service id, spec digest), tasks by slot.

#include "services/schedulerd/plan.h"

namespace shoal::schedulerd {

void schedule(Plan& plan);

}  // namespace shoal::schedulerd
