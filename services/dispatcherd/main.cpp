// dispatcherd: Agent sessions, assignments and certificates of a shoal manager (active on the leader).
#include "common/daemon.h"

int main(int argc, char** argv) {
  shoal::Daemon daemon("dispatcherd", "Agent sessions, assignments and certificates of a shoal manager (active on the leader)");
  if (auto rc = daemon.parse(argc, argv)) return *rc;
  return daemon.run([](shoal::Daemon&) -> shoal::Status { return {}; });
}
