// shoal-bench: measures shoal's daemons on this machine. JSON lines on stdout (the last one
// the summary), progress and errors on stderr.
#include <iostream>

#include <CLI/CLI.hpp>

#include "tools/bench/cluster.h"
#include "tools/bench/converge.h"
#include "tools/bench/failover.h"
#include "tools/bench/raft_bench.h"
#include "tools/bench/scheduler_bench.h"

int main(int argc, char** argv) {
  CLI::App app("shoal-bench: benchmarks of shoal's daemons on this machine", "shoal-bench");
  app.set_version_flag("--version", std::string("shoal-bench ") + SHOAL_VERSION);
  app.require_subcommand(1);

  shoal::bench::RaftBenchOptions o;
  o.cluster.raftd = shoal::bench::defaultRaftdPath();
  bool failover = false;
  auto* raft = app.add_subcommand(
      "raft", "Write throughput and latency of a loopback raftd cluster, or with --failover the "
              "time to commit again after the leader is killed");
  raft->add_option("--nodes", o.cluster.nodes, "raftd members")->capture_default_str()->check(CLI::Range(1, 9));
  raft->add_option("--clients", o.clients, "Concurrent writers, one request in flight each")
      ->capture_default_str()->check(CLI::Range(1, 10000));
  raft->add_option("--threads", o.threads, "Event-loop threads the writers share")
      ->capture_default_str()->check(CLI::Range(1, 64));
  raft->add_option("--seconds", o.seconds, "How long to write")->capture_default_str()->check(CLI::Range(1, 3600));
  raft->add_option("--value-bytes", o.valueBytes, "Bytes of data in each created Config")
      ->capture_default_str()->check(CLI::Range(0, 1 << 20));
  raft->add_option("--raftd", o.cluster.raftd, "The raftd executable")->capture_default_str();
  raft->add_flag("--keep", o.cluster.keep, "Keep the members' state dirs and logs (the path is printed)");
  raft->add_option("--work-dir", o.cluster.parentDir,
                   "Where the members' temp dir is made; on a tmpfs (/dev/shm) fsync costs "
                   "nothing, which tells disk-bound from CPU-bound")
      ->capture_default_str();
  raft->add_option("--raftd-log-level", o.cluster.logLevel, "raftd's --log-level")->capture_default_str();
  raft->add_option("--raftd-arg", o.cluster.extraArgs,
                   "An argument added to every raftd's command line (repeat it), e.g. "
                   "--raftd-arg=--snapshot-interval=100000");
  raft->add_flag("--failover", failover,
                 "Measure failover instead: per run a fresh 3-member cluster with the default "
                 "tick, SIGKILL its leader, time until a write commits on a new leader");
  raft->add_option("--runs", o.runs, "Failover runs")->capture_default_str()->check(CLI::Range(1, 1000));
  raft->add_flag("--freeze", o.freeze,
                 "Failover: SIGSTOP the leader instead of SIGKILL, so its connections stay open "
                 "and only the election timeout reveals it (a hung or partitioned leader)");
  raft->add_option("--attempt-timeout-ms", o.attemptTimeoutMs,
                   "Failover: a write attempt is abandoned and retried after this")
      ->capture_default_str()->check(CLI::Range(1, 60000));

  shoal::bench::LabFailoverOptions fo;
  fo.shoalLab = shoal::bench::defaultShoalLabPath();
  fo.binDir = shoal::bench::defaultBinDir();
  auto* labFailover = app.add_subcommand(
      "failover", "On a shoal-lab of 3 managers and 2 workers (needs root): SIGKILL every daemon of the "
                  "leader's node, time until a survivor's `shoal node ls` shows a new Leader");
  labFailover->add_option("--runs", fo.runs, "Failover runs (one lab; the killed node rejoins between runs)")
      ->capture_default_str()->check(CLI::Range(1, 1000));
  labFailover->add_option("--lab-name", fo.labName, "The lab's name")->capture_default_str();
  labFailover->add_option("--shoal-lab", fo.shoalLab, "The shoal-lab executable")->capture_default_str();
  labFailover->add_option("--bin-dir", fo.binDir, "shoal-lab up --bin-dir: where the daemons and shoal are")
      ->capture_default_str();
  labFailover->add_option("--poll-ms", fo.pollMs, "How often each survivor's node ls is asked")
      ->capture_default_str()->check(CLI::Range(5, 1000));
  labFailover->add_flag("--keep", fo.keep, "Leave the lab up at the end");

  int code = 0;
  shoal::bench::ConvergeOptions co;
  co.shoalLab = shoal::bench::defaultShoalLabPath();
  co.binDir = shoal::bench::defaultBinDir();
  co.makeImage = shoal::bench::defaultMakeImagePath();
  auto* converge = app.add_subcommand(
      "converge", "On a shoal-lab of 3 managers and 2 workers (needs root): time from `service create -d` of N "
                  "replicas to N RUNNING, and from `service rm` to no task (and with runc no container) left");
  converge->add_option("--executor", co.executor,
                       "agentd's executor: fake, or runc (busybox containers from the lab's registry, pulled "
                       "onto every node before the measure)")
      ->capture_default_str();
  converge->add_option("--make-image", co.makeImage, "With runc: tools/images/make-busybox-image")
      ->capture_default_str();
  converge->add_option("--replicas", co.replicas, "Replicas of the service")
      ->capture_default_str()->check(CLI::Range(1, 1000000));
  converge->add_option("--fake-nodes", co.fakeNodes, "One more agentd posing as this many nodes")
      ->capture_default_str()->check(CLI::Range(0, 100000));
  converge->add_option("--fake-delay", co.fakeDelay, "agentd --fake-delay: between a fake task's steps, e.g. 10ms");
  converge->add_option("--lab-name", co.labName, "The lab's name")->capture_default_str();
  converge->add_option("--shoal-lab", co.shoalLab, "The shoal-lab executable")->capture_default_str();
  converge->add_option("--bin-dir", co.binDir, "shoal-lab up --bin-dir: where the daemons and shoal are")
      ->capture_default_str();
  converge->add_option("--poll-ms", co.pollMs, "How often the tasks are counted")
      ->capture_default_str()->check(CLI::Range(5, 5000));
  converge->add_option("--timeout", co.timeoutS, "Seconds each phase may take")
      ->capture_default_str()->check(CLI::Range(1, 3600));
  converge->add_flag("--keep", co.keep, "Leave the lab up at the end");
  converge->callback([&] {
    shoal::bench::installInterruptHandlers();
    code = shoal::bench::runConverge(co);
  });

  shoal::bench::SchedulerBenchOptions so;
  auto* scheduler = app.add_subcommand(
      "scheduler", "schedulerd's allocator and scheduler cores alone, on a prepared view: the time "
                   "to take every task from NEW to ASSIGNED");
  scheduler->add_option("--nodes", so.nodes, "Ready nodes, in 3 zones")
      ->capture_default_str()->check(CLI::Range(1, 1000000));
  scheduler->add_option("--tasks", so.tasks, "Tasks to place, shared by the services")
      ->capture_default_str()->check(CLI::Range(1, 10000000));
  scheduler->add_option("--services", so.services, "Services (the first spreads over zones)")
      ->capture_default_str()->check(CLI::Range(1, 10000));
  scheduler->callback([&] { code = shoal::bench::runSchedulerBench(so); });

  labFailover->callback([&] {
    shoal::bench::installInterruptHandlers();
    code = shoal::bench::runLabFailover(fo);
  });
  raft->callback([&] {
    shoal::bench::installInterruptHandlers();
    code = failover ? shoal::bench::runRaftFailover(o) : shoal::bench::runRaftThroughput(o);
  });
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return code;
}
