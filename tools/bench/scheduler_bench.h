#pragma once
// shoal-bench scheduler: schedulerd's allocator and scheduler cores alone, on a prepared View
// (no daemons, no store): N nodes in 3 zones, 10 services sharing the tasks, one of them spread
// over the zones by preference, one publishing a port. It times one allocate() + schedule()
// that takes every task from NEW to ASSIGNED (issue 9's goal: 100,000 tasks on 10,000 nodes in
// ≤ 1 s; SwarmKit's published figure is 22.6 s for 100k tasks on 1k nodes).
//
// Output: one JSON line on stdout,
//   {"bench":"scheduler","nodes":..,"tasks":..,"seconds":..,"placements_per_s":..,"peak_rss_mb":..}
// with the two cores' own times beside it.

namespace shoal::bench {

struct SchedulerBenchOptions {
  int nodes = 10000;
  int tasks = 100000;
  int services = 10;
};

// Exit code: 0 ok, 1 when a task was left unplaced (a bug: every task fits by construction).
int runSchedulerBench(const SchedulerBenchOptions& options);

}  // namespace shoal::bench
