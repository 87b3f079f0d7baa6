// overlayd: The kernel data plane of this node: overlay networks and load balancing.
#include "common/daemon.h"

int main(int argc, char** argv) {
  shoal::Daemon daemon("overlayd", "The kernel data plane of this node: overlay networks and load balancing");
  if (auto rc = daemon.parse(argc, argv)) return *rc;
  return daemon.run([](shoal::Daemon&) -> shoal::Status { return {}; });
}
