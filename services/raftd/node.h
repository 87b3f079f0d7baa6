#pragma once
// raftd's shell around the pure Raft core (DESIGN.md §5): it drives the core with ticks and
// peer messages, persists and applies each Ready in one LMDB transaction (group commit),
// sends the messages, and serves the store API to local daemons and to peers.
//
// Threading: everything runs on the daemon's loop thread.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/bus.h"
#include "common/daemon.h"
#include "common/lmdb.h"
#include "services/raftd/core/raft.h"
#include "services/raftd/raft_storage.h"
#include "services/raftd/store/store.h"

namespace shoal::raftd {

struct NodeOptions {
  std::string listenAddr = "0.0.0.0:2378";  // host:port for peers
  std::string advertiseAddr;                // host:port peers use; default listenAddr
  bool bootstrap = false;                   // start a new one-member cluster
  std::string join;                         // host:port of a member to join through
  std::chrono::milliseconds tick{100};
  int electionTicks = 10;
  int heartbeatTicks = 1;
  uint64_t snapshotInterval = 10000;
  uint64_t keepEntries = 500;  // log entries kept below a snapshot for slow followers
};

class RaftNode {
 public:
  static Result<std::unique_ptr<RaftNode>> start(Daemon& daemon, const NodeOptions& options);
  ~RaftNode();

  void status(nlohmann::json& j) const;

 private:
  struct Peer {
    std::string address;
    std::unique_ptr<bus::Client> raft;   // one-way Raft messages
    std::unique_ptr<bus::Client> store;  // forwarded store requests
  };
  struct Proposal {
    bus::Call call;
    raft::Index index = 0;
  };
  struct PendingRead {
    bus::Call call;
    std::optional<raft::Index> index;  // known once the ReadState arrived
  };
  struct Watcher {
    std::shared_ptr<bus::ServerStream> stream;
    store::WatchFilter filter;
    uint64_t lastIndex = 0;
  };
  struct LeadershipSub {
    std::shared_ptr<bus::ServerStream> stream;
    bool dirty = true;
  };

  RaftNode(Daemon& daemon, const NodeOptions& options);
  Status open();
  Status startTransport();
  Status createCore();

  // Driving the core.
  void onTick();
  void scheduleReady();
  void processReady();
  Status persistAndApply(const raft::Ready& rd);
  bool mustApplyNow(const raft::Ready* rd) const;
  // Applies the deferred entries, then `entries`, in txn, and records the applied index.
  Status applyCommitted(lmdb::WriteTxn& txn, const std::vector<raft::Entry>& entries,
                        std::vector<std::function<void()>>& after);
  // Bookkeeping once the deferred entries and `more` others are applied and committed.
  void appliedDeferred(size_t more);
  // Applies the deferred entries in a transaction of their own; false (and the daemon
  // stopping) if that fails.
  bool flushDeferred();
  // What may follow an apply: waiting reads answered, a snapshot taken, watchers fed.
  void afterApply();
  Status applyEntry(lmdb::WriteTxn& txn, const raft::Entry& e,
                    std::vector<std::function<void()>>& after);
  Status installSnapshot(const raft::SnapshotMeta& meta);
  void maybeSnapshot();
  void finishSnapshot(const Status& copied, const std::string& dir, raft::Index index,
                      raft::Term term, const raft::ConfState& conf);
  void send(const raft::Message& m);
  void onSoftState(const raft::SoftState& s);
  void promoteCaughtUpLearners();
  void tryJoin();

  // Peers.
  Peer& peer(raft::NodeId id);
  std::string addressOf(raft::NodeId id) const;
  Status loadMembers();

  // Serving.
  void servePeer(bus::Call call);
  void serveStore(bus::Call call);
  void handleTxn(bus::Call call);
  void handleRead(bus::Call call);
  void answerRead(bus::Call& call);
  void handleWatch(bus::Call call);
  void pumpWatchers();
  void pumpLeadership();
  void forwardToLeader(bus::Call call);
  void failPending(wire::ErrorCode code, const std::string& why);

  Daemon& daemon_;
  NodeOptions options_;
  std::unique_ptr<lmdb::Environment> env_;
  std::unique_ptr<RaftStorage> storage_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<raft::Raft> raft_;
  std::unique_ptr<bus::Server> peerServer_;
  lmdb::Table membersTable_;  // node id -> address, replicated (copied with snapshots)
  lmdb::Table clusterTable_;  // "id" -> cluster id, replicated
  uint64_t clusterId_ = 0;
  raft::NodeId id_ = 0;
  std::map<raft::NodeId, Peer> peers_;
  std::map<uint64_t, Proposal> proposals_;  // by sequence number
  std::map<uint64_t, PendingRead> reads_;   // by sequence number
  struct Forwarded {
    std::shared_ptr<bus::Call> call;
    raft::NodeId leader;
    uint64_t clientCall;
  };
  std::map<uint64_t, Forwarded> forwarded_;  // requests waiting on the leader, by sequence
  std::vector<Watcher> watchers_;
  std::vector<LeadershipSub> leadershipSubs_;
  uint64_t nextSeq_ = 1;
  bool readyScheduled_ = false;
  // Committed entries a follower has not applied yet (see persistAndApply), oldest first, and
  // the timer that applies them at the latest kApplyDelay after the first came.
  std::vector<raft::Entry> deferred_;
  Loop::TimerId deferredTimer_ = 0;
  raft::SoftState soft_;
  std::unique_ptr<bus::Client> joinClient_;
  std::string joinTarget_;
  bool joined_ = false;
  uint64_t leaderDisconnects_ = 0;
  uint64_t appliedEntries_ = 0;
  uint64_t readyBatches_ = 0;
  uint64_t snapshotsTaken_ = 0;
  std::thread snapshotThread_;  // copying the state machine (snapshot.h)
  uint64_t snapshotsInstalled_ = 0;
  std::mt19937_64 rng_;
};

}  // namespace shoal::raftd
