// raftd: Raft consensus and the replicated object store of a shoal manager.
#include "common/daemon.h"
#include "services/raftd/node.h"

int main(int argc, char** argv) {
  shoal::Daemon daemon("raftd", "Raft consensus and the replicated object store of a shoal manager");
  shoal::raftd::NodeOptions options;
  auto& f = daemon.flags();
  f.add_option("--listen-addr", options.listenAddr, "host:port for raft peers")->capture_default_str();
  f.add_option("--advertise-addr", options.advertiseAddr, "host:port peers reach this node at (default: --listen-addr)");
  f.add_flag("--bootstrap", options.bootstrap, "Start a new one-member cluster (ignored when state exists)");
  f.add_option("--join", options.join, "host:port of a member of the cluster to join");
  int64_t tickMs = options.tick.count();
  f.add_option("--tick-ms", tickMs, "Raft tick in milliseconds")->capture_default_str()->check(CLI::Range(1, 10000));
  f.add_option("--election-ticks", options.electionTicks, "Election timeout in ticks")->capture_default_str()->check(CLI::Range(2, 1000));
  f.add_option("--snapshot-interval", options.snapshotInterval, "Entries between snapshots")->capture_default_str()->check(CLI::Range(1, 100000000));
  f.add_option("--keep-entries", options.keepEntries, "Log entries kept below a snapshot for slow followers")->capture_default_str();
  if (auto rc = daemon.parse(argc, argv)) return *rc;
  options.tick = std::chrono::milliseconds(tickMs);

  std::unique_ptr<shoal::raftd::RaftNode> node;
  return daemon.run([&](shoal::Daemon& d) -> shoal::Status {
    auto started = shoal::raftd::RaftNode::start(d, options);
    if (!started) return started.error();
    node = std::move(started).value();
    return {};
  });
}
