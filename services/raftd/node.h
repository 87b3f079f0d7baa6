#pragma once
// raftd's shell around the pure Raft core (DESIGN.md §5): it drives the core with ticks and
// peer messages, persists and applies each Ready in one LMDB transaction (group commit),
// sends the messages, and serves the store API to local daemons and to peers.
//
// It takes time, timers, background work and the peers from a NodeHost (host.h): the daemon
// gives it one built on its loop and sockets (daemon_host.h), the shell's simulation
// (tests/raft/shell_sim.cpp) a virtual clock and network.
//
// Threading: everything runs on the host's thread.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/bus.h"
#include "common/lmdb.h"
#include "services/raftd/core/raft.h"
#include "services/raftd/host.h"
#include "services/raftd/raft_storage.h"
#include "services/raftd/store/store.h"

namespace shoal::raftd {

struct NodeOptions {
  std::chrono::milliseconds tick{100};
  int electionTicks = 10;
  int heartbeatTicks = 1;
  uint64_t snapshotInterval = 10000;
  uint64_t keepEntries = 500;  // log entries kept below a snapshot for slow followers
  // Upper bounds on what waits in memory (etcd's MaxUncommittedEntriesSize): past them,
  // callers get ResourceExhausted ("overloaded; retry") instead of memory growing.
  size_t maxPendingProposals = 8192;
  size_t maxPendingReads = 8192;
  // How long a read or a forwarded request may wait for the leader when the caller set no
  // deadline.
  std::chrono::milliseconds requestTimeout{5000};
  // The LMDB map: address space reserved at once, the most the store may hold.
  size_t maxStoreBytes = size_t{16} << 30;
  // Seeds the node's randomness (node id for a new state, election timeouts, boot id);
  // 0: from the system's random source.
  uint64_t seed = 0;
};

class RaftNode {
 public:
  // Opens (or creates) the node's state in stateDir. A node in a cluster (one that
  // bootstrapped or joined before) binds its peer port (host's listenPeers) and starts
  // ticking at once; one without raft state idles until bootstrap() or joinRaft().
  static Result<std::unique_ptr<RaftNode>> open(NodeHost& host, const std::string& stateDir,
                                                const NodeOptions& options);
  ~RaftNode();

  // Requests of the store protocol (raftd.sock, and forwarded by peers) and of the raft peer
  // protocol (the peer port).
  void serveStore(bus::Call call);
  void servePeer(bus::Call call);
  // The store protocol on the peer port: only what followers forward to a leader (writes
  // and member changes); reads, watches and Status are for raftd.sock.
  void serveForwarded(bus::Call call);
  // The host's connection to the peer at address closed (its process died).
  void peerDisconnected(const std::string& address);
  // Fails what waits (the daemon is stopping).
  void stop();

  // --- Cluster membership of this raftd (docs/cluster.md), for the control API (control.h).
  // The control API reads and writes objects through serveStore (bus::Call::local); these
  // are what the store API cannot do.
  struct Peer {
    raft::NodeId id = 0;
    std::string address;    // host:port of its peer port
    std::string publicKey;  // Z85 Curve25519 key
  };
  // Whether this raftd has raft state (it bootstrapped or joined): false while the node waits
  // for `swarm init` or a join, and after leave(). bootstrap() and joinRaft() persist the raft
  // id, the raft cluster id and both addresses, so a restart binds and runs at once.
  bool inCluster() const;
  // swarm init: a new one-member cluster; binds the peer port (host's listenPeers) and becomes
  // leader at once. Refused when inCluster().
  Status bootstrap(raft::NodeId id, uint64_t raftClusterId, const std::string& listenAddr,
                   const std::string& advertiseAddr);
  // A manager join or promotion: starts as a member that the leader (one of peers) has added
  // as a learner; binds the peer port and waits to be contacted. peers' keys are admitted on
  // the peer port until the store names the managers.
  Status joinRaft(raft::NodeId id, uint64_t raftClusterId, const std::string& listenAddr,
                  const std::string& advertiseAddr, std::vector<Peer> peers);
  // swarm init --force-new-cluster: this member alone becomes the configuration (a local
  // configuration entry) and leader; the store keeps everything.
  Status forceNewCluster();
  // swarm leave / after a demotion: forgets the raft state (log, snapshots, store), unbinds
  // the peer port and idles. The caller has removed it from the membership when it could.
  Status leave();
  // Voters and learners of the current configuration, and whether the leader heard from each
  // recently (on a follower: only the leader is known reachable).
  struct MemberState {
    raft::NodeId id = 0;
    bool voter = false;
    bool reachable = false;
  };
  std::vector<MemberState> members() const;

  // --- For the host's peer port (DaemonHost): who may connect, and the key a peer's server
  // has. A key is admitted when a Node in the store whose role or desired role is Manager has
  // it, or when it is a seed peer of joinRaft the store does not name yet.
  bool admitsPeerKey(std::string_view z85) const;
  // The Z85 server key of the peer at address ("" when unknown: no connection can be made).
  std::string peerKeyOf(const std::string& address) const;
  // A peer message was dropped by the host (a key not admitted): counted in Status.
  void droppedPeerMessage(const std::string& why);

  void status(nlohmann::json& j) const;
  raft::NodeId id() const { return id_; }
  uint64_t raftClusterId() const { return clusterId_; }
  raft::Role role() const { return soft_.role; }
  raft::NodeId leader() const { return soft_.leader; }
  raft::Index applied() const;
  const std::string& address() const { return advertiseAddr_; }
  const std::string& listenAddress() const { return listenAddr_; }

 private:
  struct Proposal {
    bus::Call call;
    raft::Index index = 0;
    raft::Term term = 0;  // the leader's term when proposed: the entry's term
    size_t bytes = 0;
    Loop::Clock::time_point deadline;
  };
  struct PendingRead {
    bus::Call call;
    std::optional<raft::Index> index;  // known once the ReadState arrived
    Loop::Clock::time_point deadline;
  };
  struct Forwarded {
    std::shared_ptr<bus::Call> call;
    raft::NodeId leader;
    std::string address;
    uint64_t peerCall;
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

  RaftNode(NodeHost& host, std::string stateDir, const NodeOptions& options);
  Status openState();
  // The persisted identity (raft.self): whether there is one.
  Result<bool> loadSelf();
  Status saveSelf(lmdb::WriteTxn& txn);
  // Runs the node from its persisted state: binds the peer port, creates the core, ticks.
  Status run();
  Status createCore();
  void startTicking();
  // Stops everything run() started and answers what waits with `why` (leave()).
  void stopRunning(const std::string& why);
  // Refuses bootstrap/joinRaft on a node in a cluster or with raft state, and bad arguments.
  Status checkCanStart(raft::NodeId id, uint64_t raftClusterId, const std::string& listenAddr,
                       const std::string& advertiseAddr) const;
  // Refuses a store request while the node is not in a swarm; true if call was answered.
  bool refuseIdle(bus::Call& call);

  // Driving the core.
  void onTick();
  void scheduleReady();
  void processReady();
  // The part of a Ready after its snapshot (if any) is installed; false if the node stops.
  bool finishReady(raft::Ready& rd);
  Status persistAndApply(const raft::Ready& rd);
  bool mustApplyNow(const raft::Ready* rd) const;
  // Applies the deferred entries, then `entries`, in txn, and records the applied index.
  Status applyCommitted(lmdb::WriteTxn& txn, const std::vector<raft::Entry>& entries,
                        std::vector<std::function<void()>>& after);
  // Bookkeeping once the deferred entries and `more` others are applied and committed.
  void appliedDeferred(size_t more);
  // Applies the deferred entries in a transaction of their own; false (and the node
  // stopping) if that fails.
  bool flushDeferred();
  // What may follow an apply: waiting reads answered, a snapshot taken, watchers fed.
  void afterApply();
  Status applyEntry(lmdb::WriteTxn& txn, const raft::Entry& e,
                    std::vector<std::function<void()>>& after);
  void applyConfChange(lmdb::WriteTxn& txn, const raft::Entry& e,
                       std::vector<std::function<void()>>& after, Status& st);
  void answerProposal(const raft::Entry& e, const Status& verdict);
  // Installs a received snapshot off the loop (host background work); the Ready goes on
  // in finishReady once it is in.
  void startInstall(raft::Ready rd);
  Status installSnapshot(const raft::SnapshotMeta& meta);
  void installed(raft::Ready rd, const Status& st);
  void maybeSnapshot();
  // checksum: the copy's snapshotChecksum(), 0 = let the storage compute it.
  void finishSnapshot(const Status& copied, const std::string& dir, raft::Index index,
                      raft::Term term, const raft::ConfState& conf, uint64_t checksum = 0);
  void send(const raft::Message& m);
  void onSoftState(const raft::SoftState& s);
  void promoteCaughtUpLearners();
  void stepPeerMessage(const raft::Message& m);

  // Peers.
  std::string addressOf(raft::NodeId id) const;
  Status loadMembers();
  // The peer keys from the store's Node objects (after Node changes are applied).
  void refreshPeerKeys();
  std::string keyOf(raft::NodeId id) const;
  // Whether the leader heard from id within two election timeouts (itself: always).
  bool heardRecently(raft::NodeId id) const;
  // Manager status writer (docs/cluster.md "Manager status"): on the leader, one round.
  void writeManagerStatus();

  // Serving.
  void handleTxn(bus::Call call);
  void handleMember(bus::Call call);
  void handleRead(bus::Call call);
  void answerRead(bus::Call& call);
  void handleWatch(bus::Call call);
  void pumpWatchers();
  void pumpLeadership();
  void forwardToLeader(bus::Call call);
  // Refuses a new write when too much waits already or the store is nearly full; true if
  // call was answered.
  bool refuseWrite(bus::Call& call, size_t bytes);
  Loop::Clock::time_point deadlineOf(const bus::Call& call) const;
  // seq: the proposal's sequence, in its entry's data for a store write.
  void trackProposal(uint64_t seq, bus::Call call, raft::Index index, size_t bytes);
  // Waiting writes end "may or may not have been applied"; waiting reads, "retry".
  void failProposals(const std::string& why);
  void failReads(wire::ErrorCode code, const std::string& why, bool onlyUnconfirmed);
  void expireWaiting();
  void fatal(const std::string& why);

  NodeHost& host_;
  std::string stateDir_;
  NodeOptions options_;
  std::mt19937_64 rng_;
  // This process's incarnation: in every proposal and ReadIndex context, so that after a
  // restart nothing proposed or asked by an earlier incarnation is taken for a request of
  // this one (sequences start at 1 again).
  uint64_t bootId_ = 0;
  std::unique_ptr<lmdb::Environment> env_;
  std::unique_ptr<RaftStorage> storage_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<raft::Raft> raft_;
  lmdb::Table membersTable_;  // node id -> address, replicated (copied with snapshots)
  lmdb::Table clusterTable_;  // "id" -> cluster id, replicated
  lmdb::Table selfTable_;     // raft.self: this server's identity and addresses, local
  uint64_t clusterId_ = 0;
  raft::NodeId id_ = 0;
  std::string listenAddr_;
  std::string advertiseAddr_;
  std::vector<Peer> seeds_;                    // joinRaft's peers, persisted
  std::map<raft::NodeId, std::string> peers_;  // addresses
  // Keys: of the store's manager Nodes, by raft id, and the set of them; learned from
  // admitted connections (a peer not named yet), by raft id.
  std::map<raft::NodeId, std::string> storeKeys_;
  std::set<std::string> managerKeys_;
  std::map<raft::NodeId, std::string> learnedKeys_;
  bool nodesChanged_ = false;  // Node objects were applied: refresh the keys
  // When a message from each peer last arrived (reachability of manager status).
  std::map<raft::NodeId, Loop::Clock::time_point> lastHeard_;
  Loop::TimerId statusTimer_ = 0;
  raft::Index statusIndex_ = 0;  // the manager status write in flight, until applied
  raft::Term statusTerm_ = 0;
  uint64_t statusWrites_ = 0;
  uint64_t droppedPeerMessages_ = 0;
  bus::RateLimitedWarning peerWarning_;
  std::map<uint64_t, Proposal> proposals_;     // by sequence number
  size_t proposalBytes_ = 0;
  std::map<uint64_t, PendingRead> reads_;      // by sequence number
  std::map<uint64_t, Forwarded> forwarded_;    // requests waiting on the leader, by sequence
  std::vector<Watcher> watchers_;
  std::vector<LeadershipSub> leadershipSubs_;
  uint64_t nextSeq_ = 1;
  bool readyScheduled_ = false;
  bool stopped_ = false;
  // Committed entries a follower has not applied yet (see persistAndApply), oldest first, and
  // the timer that applies them at the latest kApplyDelay after the first came.
  std::vector<raft::Entry> deferred_;
  Loop::TimerId deferredTimer_ = 0;
  Loop::TimerId tickTimer_ = 0;
  raft::SoftState soft_;
  // A received snapshot being installed off the loop: the core is not stepped meanwhile
  // (it reads the storage the install replaces); peer messages wait here.
  bool installing_ = false;
  std::vector<raft::Message> heldMessages_;
  bool copying_ = false;  // a snapshot of our own being copied off the loop
  bool storeNearlyFull_ = false;
  uint64_t leaderDisconnects_ = 0;
  uint64_t appliedEntries_ = 0;
  uint64_t readyBatches_ = 0;
  uint64_t snapshotsTaken_ = 0;
  uint64_t snapshotsInstalled_ = 0;
  uint64_t refusedOverloaded_ = 0;
  uint64_t expiredReads_ = 0;
};

}  // namespace shoal::raftd
