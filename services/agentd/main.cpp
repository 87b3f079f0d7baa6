// agentd: Runs this node's tasks as OCI containers.
#include "common/daemon.h"

int main(int argc, char** argv) {
  shoal::Daemon daemon("agentd", "Runs this node's tasks as OCI containers");
  if (auto rc = daemon.parse(argc, argv)) return *rc;
  return daemon.run([](shoal::Daemon&) -> shoal::Status { return {}; });
}
