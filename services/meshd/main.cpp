// meshd: Gossip among nodes and the embedded DNS server.
#include "common/daemon.h"

int main(int argc, char** argv) {
  shoal::Daemon daemon("meshd", "Gossip among nodes and the embedded DNS server");
  if (auto rc = daemon.parse(argc, argv)) return *rc;
  return daemon.run([](shoal::Daemon&) -> shoal::Status { return {}; });
}
