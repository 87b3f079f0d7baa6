#pragma once
// The raft benchmarks of shoal-bench: write throughput and latency of a loopback cluster, and
// the time a cluster takes to commit again after its leader dies (DESIGN.md §5: "ours must
// take about one second").
//
// Output: one JSON object per line on stdout, the last one the summary; progress and errors
// on stderr. Write errors are counted, never fatal.

#include <string>

#include "tools/bench/cluster.h"

namespace shoal::bench {

struct RaftBenchOptions {
  ClusterOptions cluster;
  int clients = 64;       // concurrent writers, one request in flight each
  int threads = 2;        // event-loop threads the writers share
  int seconds = 10;
  int valueBytes = 256;   // the Config's data
  // --failover
  int runs = 5;
  int attemptTimeoutMs = 100;  // a write attempt during failover is given up after this
  bool freeze = false;         // SIGSTOP the leader instead of SIGKILL
};

// Exit code: 0 ok, 1 the cluster could not be started or measured, 130 interrupted.
int runRaftThroughput(const RaftBenchOptions& options);
int runRaftFailover(const RaftBenchOptions& options);

}  // namespace shoal::bench
