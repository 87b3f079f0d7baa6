// raftd: Raft consensus and the replicated object store of a shoal manager.
#include "common/daemon.h"

int main(int argc, char** argv) {
  shoal::Daemon daemon("raftd", "Raft consensus and the replicated object store of a shoal manager");
  if (auto rc = daemon.parse(argc, argv)) return *rc;
  return daemon.run([](shoal::Daemon&) -> shoal::Status { return {}; });
}
