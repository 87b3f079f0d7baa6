// overlayd: The kernel data plane of this node: overlay networks and load balancing. For now
// the tasks' network sandboxes (sandboxes.h).
#include "common/daemon.h"
#include "services/overlayd/sandboxes.h"

int main(int argc, char** argv) {
  shoal::Daemon daemon("overlayd", "The kernel data plane of this node: overlay networks and load balancing");
  if (auto rc = daemon.parse(argc, argv)) return *rc;
  std::unique_ptr<shoal::overlayd::Sandboxes> sandboxes;
  return daemon.run([&](shoal::Daemon& d) -> shoal::Status {
    auto opened = shoal::overlayd::Sandboxes::open(d.stateDir(), d.runDir());
    if (!opened) return opened.error();
    sandboxes = std::move(opened).value();
    shoal::overlayd::serveSandboxes(d, *sandboxes);
    return {};
  });
}
