#pragma once
// `shoal-bench converge` (issues 9 and 10): how long a swarm on a shoal-lab of 3 managers and
// 2 workers takes from `shoal service create -d` of N replicas to N tasks RUNNING, and from
// `shoal service rm` to no task left (and, with runc, no container left on any node).
//
// --executor fake: agentd's fake executor, tasks walk to RUNNING on timers. --executor runc:
// real containers; the lab gets its registry (shoal-lab up --registry), a busybox image is
// built (tools/images/make-busybox-image) and pushed to it, and a global warm-up service pulls
// it onto every node (then is removed) before anything is timed, so the figures are about
// containers, not downloads. With
// --fake-nodes M the lab has one more worker whose agentd poses as M nodes (agentd
// --fake-nodes), so that the managers handle a swarm of M + 5 nodes.
//
// The tasks are counted through the store client on m1's raftd.sock (a List of the service's
// tasks), which costs the managers far less than `service ps` would. The lab is made for the
// run and taken down at its end, also when it fails (unless --keep).
//
// Output, one JSON line on stdout:
// {"bench":"converge","executor":"fake","replicas":1000,"fake_nodes":0,
//  "create_to_running_s":..,"remove_s":..,"stages_s":{"assigned":..,...,"running":..},
//  "leader_cpu_s":..,"manager_rss_mb":{...},"agentd_rss_mb":{"m1":..,...}};
// stages_s: when every task had reached that state (polled), which tells where the time goes.
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
  std::string makeImage;      // --executor runc: tools/images/make-busybox-image
};

// tools/images/make-busybox-image of the source tree shoal-bench was built in, or "".
std::string defaultMakeImagePath();

// Exit code: 0 measured, 1 the lab could not be made or a phase did not finish, 130 interrupted.
int runConverge(const ConvergeOptions& options);

}  // namespace shoal::bench
