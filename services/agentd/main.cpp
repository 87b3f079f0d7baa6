// agentd: Runs this node's tasks as OCI containers, and holds the node's place in the swarm
// (services/agentd/swarm_agent.h). `--fake-nodes N` makes it pose as N nodes instead
// (services/agentd/fake_nodes.h).
#include <cstdio>

#include "common/daemon.h"
#include "common/units.h"
#include "services/agentd/fake_nodes.h"
#include "services/agentd/swarm_agent.h"

int main(int argc, char** argv) {
  shoal::Daemon daemon("agentd", "Runs this node's tasks as OCI containers");
  std::string hostname, executor = "runc", fakeDelay = "10ms";
  daemon.flags().add_option("--hostname", hostname,
                            "The node's name in the swarm (default: this host's name)");
  daemon.flags()
      .add_option("--executor", executor,
                  "How tasks run: runc (OCI containers of images pulled from registries), or "
                  "fake (no containers: tasks walk to RUNNING on timers, for tests and "
                  "benchmarks)")
      ->capture_default_str();
  shoal::agentd::TaskOptions tasks;
  daemon.flags()
      .add_option("--runtime", tasks.runtimePath,
                  "With --executor runc: the OCI runtime binary (a path, or a name on $PATH)")
      ->capture_default_str();
  daemon.flags().add_option(
      "--runc-root", tasks.runcRoot,
      "With --executor runc: the runtime's state dir (runc --root), one per node "
      "(default: <run dir>/runc)");
  std::vector<std::string> insecure;
  daemon.flags().add_option(
      "--insecure-registry", insecure,
      "A registry (HOST:PORT) spoken to over plain HTTP, as dockerd's flag; repeatable. "
      "localhost and 127.0.0.0/8 always are");
  daemon.flags()
      .add_option("--registry-ca", tasks.registryCa,
                  "A PEM CA bundle trusted for HTTPS registries, besides the system's")
      ->check(CLI::ExistingFile);
  daemon.flags()
      .add_option("--fake-delay", fakeDelay,
                  "With --executor fake: the time between a task's steps (ACCEPTED, PREPARING, "
                  "READY, STARTING, RUNNING), e.g. 10ms, 1s")
      ->capture_default_str();
  size_t fakeNodes = 0;
  daemon.flags().add_option(
      "--fake-nodes", fakeNodes,
      "With --executor fake: pose as this many worker nodes (<hostname>-1 .. -N), each joining "
      "on `shoal swarm join` and keeping its own session; for the scale benchmark");
  if (auto rc = daemon.parse(argc, argv)) return *rc;

  auto kind = shoal::agentd::parseExecutorKind(executor);
  auto delay = shoal::parseDuration(fakeDelay);
  std::string bad = !kind    ? kind.error().message
                    : !delay ? "--fake-delay: " + delay.error().message
                    : *delay > std::chrono::hours(1)
                        ? "--fake-delay: " + fakeDelay + " is longer than the 1h allowed"
                    : fakeNodes > 0 && *kind != shoal::agentd::ExecutorKind::Fake
                        ? "--fake-nodes needs --executor fake"
                    : fakeNodes > shoal::agentd::FakeNodes::kMaxNodes
                        ? "--fake-nodes: at most " +
                              std::to_string(shoal::agentd::FakeNodes::kMaxNodes)
                        : "";
  if (!bad.empty()) {
    std::fprintf(stderr, "agentd: %s\n", bad.c_str());
    return 2;
  }
  for (const auto& registry : insecure) {
    if (registry.empty() || registry.find('/') != std::string::npos) {
      std::fprintf(stderr, "agentd: --insecure-registry: '%s' is not HOST[:PORT]\n",
                   registry.c_str());
      return 2;
    }
    tasks.insecureRegistries.insert(registry);
  }
  tasks.executor = *kind;
  tasks.fakeDelay = std::chrono::duration_cast<std::chrono::milliseconds>(*delay);

  std::unique_ptr<shoal::agentd::SwarmAgent> agent;
  std::unique_ptr<shoal::agentd::FakeNodes> fake;
  return daemon.run([&](shoal::Daemon& d) -> shoal::Status {
    if (fakeNodes > 0) {
      auto started = shoal::agentd::FakeNodes::start(d, hostname, fakeNodes, tasks.fakeDelay);
      if (!started) return started.error();
      fake = std::move(started).value();
      return {};
    }
    auto started = shoal::agentd::SwarmAgent::start(d, hostname, tasks);
    if (!started) return started.error();
    agent = std::move(started).value();
    return {};
  });
}
