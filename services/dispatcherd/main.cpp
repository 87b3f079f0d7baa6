// dispatcherd: Agent sessions, assignments and certificates of a shoal manager (active on the leader).
#include "common/daemon.h"
#include "services/dispatcherd/dispatcher.h"

int main(int argc, char** argv) {
  shoal::Daemon daemon("dispatcherd", "Agent sessions, assignments and certificates of a shoal manager (active on the leader)");
  if (auto rc = daemon.parse(argc, argv)) return *rc;
  std::unique_ptr<shoal::dispatcherd::Dispatcher> dispatcher;
  return daemon.run([&](shoal::Daemon& d) -> shoal::Status {
    auto started = shoal::dispatcherd::Dispatcher::start(d);
    if (!started) return started.error();
    dispatcher = std::move(started).value();
    return {};
  });
}
