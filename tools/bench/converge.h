#pragma once
// `shoal-bench converge` (issue 9): how long a swarm on a shoal-lab of 3 managers and 2
// workers, whose agentd run the fake executor, takes from `shoal service create -d` of N
// replicas to N tasks RUNNING, and from `shoal service rm` to no task left. With
// --fake-nodes M the lab has one more worker whose agentd poses as M nodes (agentd
// --fake-nodes), so that the managers handle a swarm of M + 5 nodes.
//
// The tasks are counted through the store client on m1's raftd.sock (a List of the service's
// tasks), which costs the managers far less than `service ps` would. The lab is made for the
// run and taken down at its end, also when it fails (unless --keep).
//
// Output, one JSON line on stdout:
// {"bench":"converge","executor":"fake","replicas":1000,"fake_nodes":0,
//  "create_to_running_s":..,"remove_s":..,"leader_cpu_s":..,"manager_rss_mb":{...}};
// progress and errors on stderr. Needs root (shoal-lab does).

#include <string>

namespace shoal::bench {

struct ConvergeOptions {
  std::string executor = "fake";
  int replicas = 1000;
  int fakeNodes = 0;          // > 0: one more agentd posing as this many nodes
  std::string fakeDelay;      // agentd --fake-delay; empty: agentd's default
  std::string labName = "bench-converge";
  std::string shoalLab;       // the shoal-lab executable
  std::string binDir;         // shoal-lab up --bin-dir; empty: shoal-lab's own default
  int pollMs = 100;           // how often the tasks are counted
  int timeoutS = 600;         // for each of the two phases
  bool keep = false;          // leave the lab up at the end
};

// Exit code: 0 measured, 1 the lab could not be made or a phase did not finish, 130 interrupted.
int runConverge(const ConvergeOptions& options);

}  // namespace shoal::bench
