#pragma once
// `shoal-bench failover`: how long a swarm on a shoal-lab (3 managers + 2 workers, one
// network namespace per node) takes from a SIGKILL of every daemon of the leader's node to a
// new Leader in a survivor's `shoal node ls` (issue 8; Docker Swarm took a median of 15.1 s
// on this machine). One lab for all runs: the killed node is started again between runs and
// the next run waits until the swarm is whole (every node Ready, one Leader).
//
// Output: one JSON object per run on stdout and a summary line
// {"bench":"lab-failover","runs":N,"failover_ms_median":...,"failover_ms_max":...,"peak_rss_kb":...};
// progress and errors on stderr. Needs root (shoal-lab does).

#include <string>

namespace shoal::bench {

struct LabFailoverOptions {
  int runs = 5;
  std::string labName = "bench-failover";
  std::string shoalLab;  // the shoal-lab executable
  std::string binDir;    // shoal-lab up --bin-dir; empty: shoal-lab's own default
  int pollMs = 25;       // how often each survivor is asked
  bool keep = false;     // leave the lab up at the end (shoal-lab down --name ... removes it)
};

// shoal-lab beside this executable in a build tree, else the installed one.
std::string defaultShoalLabPath();
// The build dir this executable is in (for --bin-dir), else "".
std::string defaultBinDir();

// Exit code: 0 every run measured, 1 the lab could not be made or a run failed, 130 interrupted.
int runLabFailover(const LabFailoverOptions& options);

}  // namespace shoal::bench
