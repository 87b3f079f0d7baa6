// raftd: Raft consensus and the replicated object store of a shoal manager.
#include "common/daemon.h"
#include "services/raftd/control.h"
#include "services/raftd/daemon_host.h"
#include "services/raftd/service_control.h"

int main(int argc, char** argv) {
  shoal::Daemon daemon("raftd", "Raft consensus and the replicated object store of a shoal manager");
  shoal::raftd::NodeOptions options;
  auto& f = daemon.flags();
  int64_t tickMs = options.tick.count();
  f.add_option("--tick-ms", tickMs, "Raft tick in milliseconds")->capture_default_str()->check(CLI::Range(1, 10000));
  f.add_option("--election-ticks", options.electionTicks, "Election timeout in ticks")->capture_default_str()->check(CLI::Range(2, 1000));
  f.add_option("--snapshot-interval", options.snapshotInterval, "Entries between snapshots")->capture_default_str()->check(CLI::Range(1, 100000000));
  int64_t requestTimeoutMs = options.requestTimeout.count();
  f.add_option("--request-timeout-ms", requestTimeoutMs, "How long a read or a write may wait for the leader when its caller set no deadline")->capture_default_str()->check(CLI::Range(100, 600000));
  size_t maxStoreMiB = options.maxStoreBytes >> 20;
  f.add_option("--max-store-size", maxStoreMiB, "The most the store may hold, in MiB (address space reserved at start; writes are refused past 90 %)")->capture_default_str()->check(CLI::Range(size_t{16}, size_t{1} << 24));
  f.add_option("--keep-entries", options.keepEntries, "Log entries kept below a snapshot for slow followers")->capture_default_str();
  if (auto rc = daemon.parse(argc, argv)) return *rc;
  options.tick = std::chrono::milliseconds(tickMs);
  options.maxStoreBytes = maxStoreMiB << 20;
  options.requestTimeout = std::chrono::milliseconds(requestTimeoutMs);

  std::unique_ptr<shoal::raftd::DaemonHost> raftd;
  std::unique_ptr<shoal::raftd::Control> control;
  std::unique_ptr<shoal::raftd::ServiceControl> services;
  return daemon.run([&](shoal::Daemon& d) -> shoal::Status {
    auto started = shoal::raftd::DaemonHost::start(d, options);
    if (!started) return started.error();
    raftd = std::move(started).value();
    auto served = shoal::raftd::Control::start(d, raftd->node(), options);
    if (!served) return served.error();
    control = std::move(served).value();
    auto servedServices = shoal::raftd::ServiceControl::start(d, raftd->node());
    if (!servedServices) return servedServices.error();
    services = std::move(servedServices).value();
    return {};
  });
}
