#pragma once
// The Raft consensus core: a pure, deterministic state machine in the style of etcd's raft
// package. It owns no clock, thread, socket, file or randomness. The shell feeds it ticks,
// received messages and proposals, and drains Ready batches (types.h says in which order to
// handle one). The same inputs always give the same outputs, so every failure replays.
//
// Implemented: randomized election timeouts, pre-vote and check-quorum (dissertation §9.6),
// log replication with batching, pipelining and a bound on in-flight messages, the
// current-term commit rule (paper §5.4.2), snapshots streamed in chunks (paper §7), membership
// change one server at a time with learners (dissertation §4.1–4.2), leadership transfer
// (dissertation §3.10) and ReadIndex (dissertation §6.4).

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "services/raftd/core/progress.h"
#include "services/raftd/core/raft_log.h"
#include "services/raftd/core/storage.h"
#include "services/raftd/core/types.h"

namespace shoal::raft {

struct Config {
  NodeId id = kNoNode;
  int heartbeatTicks = 1;
  // A follower campaigns after a random timeout in [electionTicks, 2 * electionTicks).
  int electionTicks = 10;
  bool preVote = true;
  bool checkQuorum = true;
  // At most this many AppendEntries in flight to one follower in replicate state.
  size_t maxInflightMessages = 256;
  uint64_t maxAppendBytes = 1 << 20;
  uint64_t snapshotChunkBytes = 1 << 20;
  // The state machine's applied index at start; committed entries after it are re-delivered.
  Index applied = 0;
  // Source of randomness for election timeouts (required). The shell passes its own seeded
  // generator; tests pass a deterministic one.
  std::function<uint32_t()> random;
};

struct PeerStatus {
  NodeId id = kNoNode;
  Index match = 0;
  Index next = 0;
  ProgressState state = ProgressState::Probe;
  bool learner = false;
  bool recentActive = false;
  Index pendingSnapshot = 0;  // snapshot index being sent (state Snapshot)
  uint64_t snapshotOffset = 0;  // bytes of it acknowledged
};

// For the operator (raftd's Status) and for deciding when to promote a learner.
struct NodeStatus {
  NodeId id = kNoNode;
  Role role = Role::Follower;
  Term term = 0;
  NodeId vote = kNoNode;
  NodeId leader = kNoNode;
  Index commit = 0;
  Index applied = 0;
  Index lastIndex = 0;
  NodeId leadTransferee = kNoNode;
  ConfState conf;
  std::vector<PeerStatus> peers;  // filled on the leader only
};

class Raft {
 public:
  // Reads the initial state from storage. Fails when the config or storage is unusable.
  static Result<std::unique_ptr<Raft>> create(Config config, const Storage& storage);

  Raft(const Raft&) = delete;
  Raft& operator=(const Raft&) = delete;

  // One unit of logical time (DESIGN §13: 100 ms in raftd).
  void tick();
  // A message from a peer. Messages for another node are refused.
  Status step(const Message& m);

  // Appends data to the log when this node is the leader and no leadership transfer is under
  // way. Returns the index the entry will have; it is committed when it comes back in
  // Ready::committedEntries at that index with the same term.
  Result<Index> propose(std::string data);
  // Refused unless leader, no transfer, and the previous change has been applied (one at a
  // time, dissertation §4.1).
  //
  // A configuration takes effect when its entry is applied — handed out in
  // Ready::committedEntries — not when appended (the dissertation's choice). We pick apply,
  // as etcd does, because then the configuration is a function of the applied prefix, which
  // the shell persists atomically with its state: a restarted server rebuilds it from the
  // snapshot's ConfState plus the ConfChange entries up to Config::applied, and nothing has to
  // be rolled back when a follower's uncommitted suffix is truncated. It is safe one server
  // at a time because any majority of the old and of the new voter set intersect, and a new
  // leader may not propose a change until it has applied an entry of its own term.
  Result<Index> proposeConfChange(const ConfChange& cc);
  // Linearizable read (dissertation §6.4): the answer arrives as a ReadState with the same
  // context. A follower forwards it to the leader; fails when no leader is known.
  Status readIndex(std::string context);
  // Leader only: hand leadership to a voter once its log has caught up.
  Status transferLeadership(NodeId target);
  // Start an election now (tests, and the shell's "campaign" debug command).
  Status campaign();
  // The shell learned that the leader is gone — its connection closed, as when its process
  // died (etcd's ForgetLeader). A follower forgets it, so it no longer honours the leader
  // lease against (pre-)votes, and campaigns after a short random delay instead of a whole
  // election timeout. Safe against a wrong guess: an election still needs a majority, and
  // followers that still hear the leader ignore the (pre-)votes (dissertation §4.2.3).
  void forgetLeader();

  bool hasReady() const;
  Ready ready();
  // The shell has handled rd (see types.h). Must be the last Ready returned by ready().
  void advance(const Ready& rd);

  NodeStatus status() const;
  // True when this node leads and learner `id` is within maxLag entries of the leader's log.
  bool learnerCaughtUp(NodeId id, Index maxLag) const;

  NodeId id() const { return id_; }
  Role role() const { return role_; }
  Term term() const { return term_; }
  NodeId leader() const { return lead_; }
  const ConfState& confState() const { return conf_; }
  const RaftLog& log() const { return log_; }

 private:
  Raft(Config config, const Storage& storage);
  Status init();

  // Role changes.
  void becomeFollower(Term term, NodeId lead);
  void becomePreCandidate();
  void becomeCandidate();
  void becomeLeader();
  void reset(Term term);
  void resetRandomizedElectionTimeout();
  void startElection(bool preVote, bool transfer);
  bool promotable() const;
  bool isVoter(NodeId id) const;
  bool isLearner(NodeId id) const;
  size_t quorum() const;

  // Message handling.
  void stepLeader(const Message& m);
  void stepCandidate(const Message& m);
  void stepFollower(const Message& m);
  void handleVoteRequest(const Message& m);
  void handleAppend(const Message& m);
  void handleHeartbeat(const Message& m);
  void handleSnapshotChunk(const Message& m);
  void handleReadIndexRequest(const Message& m);
  void handleAppendResponse(const Message& m, Progress& pr);
  void handleSnapshotResponse(const Message& m, Progress& pr);
  void handleHeartbeatResponse(const Message& m, Progress& pr);
  int poll(NodeId from, bool granted);

  // Leader replication.
  void send(Message m);
  void bcastAppend();
  void bcastHeartbeat(const std::string& context);
  bool sendAppend(NodeId to, bool sendIfEmpty);
  void sendHeartbeat(NodeId to, const std::string& context);
  void sendSnapshotChunk(NodeId to, Progress& pr);
  void appendEntries(std::vector<Entry> ents);
  bool maybeCommit();
  bool checkQuorumActive();
  void abortLeaderTransfer() { leadTransferee_ = kNoNode; }

  // Commit and configuration.
  void commitTo(Index commit);
  void applyConfChange(const ConfChange& cc);
  void applyConfState(const ConfState& cs);
  void resetProgress();
  void releasePendingReads();

  Config config_;
  const Storage& storage_;
  NodeId id_;
  Term term_ = 0;
  NodeId vote_ = kNoNode;
  NodeId lead_ = kNoNode;
  Role role_ = Role::Follower;
  RaftLog log_;

  ConfState conf_;
  // Index of the ConfChange entry the configuration was last changed by (or the snapshot's).
  Index confIndex_ = 0;
  // Leader: index of the last ConfChange proposed (or the leader's first entry, so no change
  // is proposed before the new leader has committed in its term — the single-server change
  // bug Ongaro reported in 2015).
  Index pendingConfIndex_ = 0;
  std::map<NodeId, Progress> progress_;
  std::map<NodeId, bool> votes_;

  int electionElapsed_ = 0;
  int heartbeatElapsed_ = 0;
  int randomizedElectionTimeout_ = 0;
  NodeId leadTransferee_ = kNoNode;

  // ReadIndex on the leader: requests confirmed by a heartbeat round, in order.
  struct PendingRead {
    std::string context;
    NodeId from = kNoNode;  // who asked (the leader itself or a follower)
    Index index = 0;
    std::map<NodeId, bool> acks;
  };
  std::vector<PendingRead> pendingReads_;
  // Reads received before this leader committed an entry of its term (dissertation §6.4
  // step 1): answered once it has.
  std::vector<PendingRead> waitingReads_;
  void answerRead(PendingRead r);

  // Follower: the snapshot being received in chunks, and the next offset expected.
  std::optional<SnapshotMeta> incomingSnapshot_;
  NodeId incomingFrom_ = kNoNode;
  Term incomingTerm_ = 0;
  uint64_t incomingOffset_ = 0;

  // Output not yet handed out in a Ready.
  std::vector<Message> msgs_;
  std::vector<ReadState> readStates_;
  std::vector<SnapshotChunk> chunks_;
  SoftState prevSoft_;
  HardState prevHard_;
};

}  // namespace shoal::raft
