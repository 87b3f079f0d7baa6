// agentd: Runs this node's tasks as OCI containers, and holds the node's place in the swarm
// (services/agentd/swarm_agent.h).
#include "common/daemon.h"
#include "services/agentd/swarm_agent.h"

int main(int argc, char** argv) {
  shoal::Daemon daemon("agentd", "Runs this node's tasks as OCI containers");
  std::string hostname;
  daemon.flags().add_option("--hostname", hostname,
                            "The node's name in the swarm (default: this host's name)");
  if (auto rc = daemon.parse(argc, argv)) return *rc;

  std::unique_ptr<shoal::agentd::SwarmAgent> agent;
  return daemon.run([&](shoal::Daemon& d) -> shoal::Status {
    auto started = shoal::agentd::SwarmAgent::start(d, hostname);
    if (!started) return started.error();
    agent = std::move(started).value();
    return {};
  });
}
