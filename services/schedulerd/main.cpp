// schedulerd: Orchestrators, allocator and scheduler of a shoal manager (active on the leader).
#include "common/daemon.h"
#include "services/schedulerd/schedulerd.h"

int main(int argc, char** argv) {
  shoal::Daemon daemon("schedulerd", "Orchestrators, allocator and scheduler of a shoal manager (active on the leader)");
  if (auto rc = daemon.parse(argc, argv)) return *rc;
  std::unique_ptr<shoal::schedulerd::Scheduler> scheduler;
  return daemon.run([&](shoal::Daemon& d) -> shoal::Status {
    auto started = shoal::schedulerd::Scheduler::start(d);
    if (!started) return started.error();
    scheduler = std::move(started).value();
    return {};
  });
}
