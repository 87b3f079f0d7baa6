#include "services/raftd/core/raft.h"

#include <algorithm>
#include <cassert>

namespace shoal::raft {

namespace {

enum class VoteResult { Pending, Won, Lost };

bool contains(const std::vector<NodeId>& v, NodeId id) {
  return std::find(v.begin(), v.end(), id) != v.end();
}

void erase(std::vector<NodeId>& v, NodeId id) {
  v.erase(std::remove(v.begin(), v.end(), id), v.end());
}

}  // namespace

Result<std::unique_ptr<Raft>> Raft::create(Config config, const Storage& storage) {
  if (config.id == kNoNode)
    return Error{"raft config: id must be a non-zero node id"};
  if (config.heartbeatTicks <= 0)
    return Error{"raft config: heartbeat ticks must be at least 1"};
  if (config.electionTicks <= config.heartbeatTicks)
    return Error{"raft config: election ticks (" + std::to_string(config.electionTicks) +
                 ") must be greater than heartbeat ticks (" +
                 std::to_string(config.heartbeatTicks) + ")"};
  if (config.maxInflightMessages == 0)
    return Error{"raft config: max inflight messages must be at least 1"};
  if (config.maxAppendBytes == 0 || config.snapshotChunkBytes == 0)
    return Error{"raft config: max append bytes and snapshot chunk bytes must be positive"};
  if (!config.random)
    return Error{"raft config: a random source for election timeouts is required"};
  std::unique_ptr<Raft> r(new Raft(std::move(config), storage));
  if (auto st = r->init(); !st)
    return st.error();
  return r;
}

Raft::Raft(Config config, const Storage& storage)
    : config_(std::move(config)), storage_(storage), id_(config_.id), log_(storage) {}

Status Raft::init() {
  if (auto st = log_.init(); !st)
    return st;
  auto is = storage_.initialState();
  if (!is)
    return is.error();
  const HardState& hs = is->hardState;
  SnapshotMeta snap = storage_.snapshotMeta();
  if (hs.commit > log_.lastIndex())
    return Error{"raft storage: commit index " + std::to_string(hs.commit) +
                 " is past the last log index " + std::to_string(log_.lastIndex()) +
                 ": the log was truncated or the hard state is corrupt"};
  term_ = hs.term;
  vote_ = hs.vote;
  log_.commitTo(hs.commit);

  conf_ = is->confState;
  confIndex_ = snap.index;
  Index applied = std::max(config_.applied, snap.index);
  if (applied > log_.committed())
    return Error{"raft: applied index " + std::to_string(applied) +
                 " is past the commit index " + std::to_string(log_.committed()) +
                 ": the state machine and the log disagree"};
  // The configuration takes effect on apply, so it is the snapshot's plus the ConfChange
  // entries applied since.
  if (applied > snap.index) {
    auto ents = log_.slice(snap.index + 1, applied + 1, UINT64_MAX);
    if (!ents)
      return ents.error();
    for (const Entry& e : *ents) {
      if (e.type != EntryType::ConfChange)
        continue;
      auto cc = decodeConfChange(e.data);
      if (!cc)
        return cc.error();
      applyConfChange(*cc);
      confIndex_ = e.index;
    }
  }
  log_.appliedTo(applied);
  becomeFollower(term_, kNoNode);
  prevHard_ = HardState{term_, vote_, log_.committed()};
  prevSoft_ = SoftState{lead_, role_};
  return {};
}

// ---- roles ----------------------------------------------------------------------------------

void Raft::reset(Term term) {
  if (term != term_) {
    term_ = term;
    vote_ = kNoNode;
  }
  lead_ = kNoNode;
  electionElapsed_ = 0;
  heartbeatElapsed_ = 0;
  resetRandomizedElectionTimeout();
  abortLeaderTransfer();
  votes_.clear();
  pendingConfIndex_ = 0;
  pendingReads_.clear();
  waitingReads_.clear();
  resetProgress();
}

void Raft::resetRandomizedElectionTimeout() {
  randomizedElectionTimeout_ =
      config_.electionTicks + static_cast<int>(config_.random() % static_cast<uint32_t>(config_.electionTicks));
}

// A follower does not initiate RPCs; it campaigns when an election timeout elapses without
// hearing from a leader (paper §5.2).
void Raft::becomeFollower(Term term, NodeId lead) {
  reset(term);
  lead_ = lead;
  role_ = Role::Follower;
}

// Pre-vote (dissertation §9.6): ask whether we could win before disturbing anyone's term, so
// a partitioned server that rejoins does not depose a working leader.
void Raft::becomePreCandidate() {
  votes_.clear();
  lead_ = kNoNode;
  role_ = Role::PreCandidate;
}

void Raft::becomeCandidate() {
  reset(term_ + 1);
  vote_ = id_;
  role_ = Role::Candidate;
}

void Raft::becomeLeader() {
  reset(term_);
  lead_ = id_;
  role_ = Role::Leader;
  Progress& self = progress_[id_];
  self.becomeReplicate();
  self.recentActive = true;
  // No configuration change until an entry of this term has been applied (the bug in
  // single-server changes Ongaro reported on raft-dev in 2015).
  pendingConfIndex_ = log_.lastIndex();
  // An empty entry of the new term lets earlier entries commit (paper §5.4.2) and lets
  // ReadIndex start (dissertation §6.4).
  appendEntries({Entry{0, 0, EntryType::Normal, {}}});
}

bool Raft::isVoter(NodeId id) const { return contains(conf_.voters, id); }
bool Raft::isLearner(NodeId id) const { return contains(conf_.learners, id); }
size_t Raft::quorum() const { return conf_.voters.size() / 2 + 1; }

bool Raft::promotable() const { return isVoter(id_) && !log_.unstableSnapshot(); }

void Raft::startElection(bool preVote, bool transfer) {
  MessageType type;
  Term term;
  if (preVote) {
    becomePreCandidate();
    type = MessageType::PreVote;
    term = term_ + 1;  // the term we would campaign in; our own term is unchanged
  } else {
    becomeCandidate();
    type = MessageType::Vote;
    term = term_;
  }
  if (poll(id_, true) == static_cast<int>(VoteResult::Won)) {
    // A single voter wins at once.
    if (preVote) {
      startElection(false, transfer);
    } else {
      becomeLeader();
      bcastAppend();  // learners, if any
    }
    return;
  }
  for (NodeId id : conf_.voters) {
    if (id == id_)
      continue;
    Message m;
    m.type = type;
    m.to = id;
    m.term = term;
    m.index = log_.lastIndex();
    m.logTerm = log_.lastTerm();
    if (transfer)
      m.context = std::string(kCampaignTransfer);
    send(std::move(m));
  }
}

int Raft::poll(NodeId from, bool granted) {
  votes_.emplace(from, granted);
  size_t yes = 0, no = 0;
  for (NodeId id : conf_.voters) {
    auto it = votes_.find(id);
    if (it == votes_.end())
      continue;
    (it->second ? yes : no)++;
  }
  if (yes >= quorum())
    return static_cast<int>(VoteResult::Won);
  if (no > conf_.voters.size() - quorum())
    return static_cast<int>(VoteResult::Lost);
  return static_cast<int>(VoteResult::Pending);
}

// ---- inputs ---------------------------------------------------------------------------------

void Raft::forgetLeader() {
  if (role_ != Role::Follower || lead_ == kNoNode) return;
  lead_ = kNoNode;
  int soon = 1 + static_cast<int>(config_.random() % static_cast<uint32_t>(std::max(1, config_.electionTicks / 2)));
  electionElapsed_ = std::max(electionElapsed_, randomizedElectionTimeout_ - soon);
}

void Raft::tick() {
  if (role_ != Role::Leader) {
    ++electionElapsed_;
    if (promotable() && electionElapsed_ >= randomizedElectionTimeout_) {
      electionElapsed_ = 0;
      startElection(config_.preVote, false);
    }
    return;
  }

  ++heartbeatElapsed_;
  ++electionElapsed_;
  if (electionElapsed_ >= config_.electionTicks) {
    electionElapsed_ = 0;
    // Check-quorum (dissertation §6.2): a leader that has not heard from a majority within
    // an election timeout steps down, so clients can find the real leader.
    if (config_.checkQuorum && !checkQuorumActive()) {
      becomeFollower(term_, kNoNode);
      return;
    }
    // Dissertation §3.10: abort a transfer that has not finished within an election timeout
    // so the cluster is not left without a leader accepting proposals.
    abortLeaderTransfer();
  }

  // A lost snapshot chunk is sent again when nothing was acknowledged for half an election
  // timeout (and the follower still answers heartbeats).
  int retryTicks = std::max(1, config_.electionTicks / 2);
  for (auto& [id, pr] : progress_) {
    if (id == id_ || pr.state != ProgressState::Snapshot)
      continue;
    if (++pr.snapshotIdleTicks >= retryTicks && pr.recentActive)
      sendSnapshotChunk(id, pr);
  }

  if (heartbeatElapsed_ >= config_.heartbeatTicks) {
    heartbeatElapsed_ = 0;
    bcastHeartbeat({});
  }
}

bool Raft::checkQuorumActive() {
  size_t active = 0;
  for (auto& [id, pr] : progress_) {
    if (id == id_) {
      if (!pr.learner)
        ++active;
      continue;
    }
    if (pr.recentActive && !pr.learner)
      ++active;
    pr.recentActive = false;
  }
  return active >= quorum();
}

Status Raft::campaign() {
  if (role_ == Role::Leader)
    return Error{"node " + std::to_string(id_) + " is already the leader of term " +
                 std::to_string(term_)};
  if (!promotable())
    return Error{"node " + std::to_string(id_) +
                 " cannot campaign: it is not a voter in the current configuration"};
  startElection(config_.preVote, false);
  return {};
}

Result<Index> Raft::propose(std::string data) {
  if (role_ != Role::Leader)
    return Error{"node " + std::to_string(id_) + " is not the leader (leader is " +
                 std::to_string(lead_) + "): send the proposal to the leader"};
  if (leadTransferee_ != kNoNode)
    return Error{"leadership is being transferred to " + std::to_string(leadTransferee_) +
                 ": retry on the new leader"};
  appendEntries({Entry{0, 0, EntryType::Normal, std::move(data)}});
  bcastAppend();
  return log_.lastIndex();
}

Result<Index> Raft::proposeConfChange(const ConfChange& cc) {
  if (role_ != Role::Leader)
    return Error{"node " + std::to_string(id_) + " is not the leader (leader is " +
                 std::to_string(lead_) + "): send the configuration change to the leader"};
  if (leadTransferee_ != kNoNode)
    return Error{"leadership is being transferred to " + std::to_string(leadTransferee_) +
                 ": retry on the new leader"};
  if (pendingConfIndex_ > log_.applying())
    return Error{"a configuration change (or the new leader's first entry) at index " +
                 std::to_string(pendingConfIndex_) +
                 " is not applied yet: one change at a time, retry when it is"};
  if (cc.node == kNoNode)
    return Error{"configuration change names node 0: give a non-zero node id"};
  switch (cc.type) {
    case ConfChangeType::AddLearner:
      if (isVoter(cc.node) || isLearner(cc.node))
        return Error{"node " + std::to_string(cc.node) + " is already a member"};
      break;
    case ConfChangeType::Promote:
      if (!isLearner(cc.node))
        return Error{"node " + std::to_string(cc.node) +
                     " is not a learner: add it as a learner first"};
      break;
    case ConfChangeType::Remove:
      if (!isVoter(cc.node) && !isLearner(cc.node))
        return Error{"node " + std::to_string(cc.node) + " is not a member"};
      if (isVoter(cc.node) && conf_.voters.size() == 1)
        return Error{"node " + std::to_string(cc.node) +
                     " is the last voter: removing it would leave no quorum"};
      break;
  }
  appendEntries({Entry{0, 0, EntryType::ConfChange, encodeConfChange(cc)}});
  pendingConfIndex_ = log_.lastIndex();
  bcastAppend();
  return log_.lastIndex();
}

Status Raft::readIndex(std::string context) {
  if (context.empty())
    return Error{"read index needs a non-empty context to match its answer"};
  if (role_ == Role::Leader) {
    Message m;
    m.type = MessageType::ReadIndex;
    m.from = id_;
    m.to = id_;
    m.term = term_;
    m.context = std::move(context);
    handleReadIndexRequest(m);
    return {};
  }
  if (lead_ == kNoNode)
    return Error{"no leader is known (election under way): retry the read shortly"};
  Message m;
  m.type = MessageType::ReadIndex;
  m.to = lead_;
  m.context = std::move(context);
  send(std::move(m));
  return {};
}

Status Raft::transferLeadership(NodeId target) {
  if (role_ != Role::Leader)
    return Error{"node " + std::to_string(id_) + " is not the leader (leader is " +
                 std::to_string(lead_) + "): ask the leader to transfer"};
  if (target == id_)
    return Error{"node " + std::to_string(id_) + " is already the leader"};
  if (!isVoter(target))
    return Error{"node " + std::to_string(target) +
                 " is not a voter: only voters can become leader"};
  if (leadTransferee_ == target)
    return {};
  // Dissertation §3.10: stop accepting proposals, bring the target up to date, then tell it
  // to campaign at once. The transfer is aborted after an election timeout.
  leadTransferee_ = target;
  electionElapsed_ = 0;
  Progress& pr = progress_[target];
  if (pr.match == log_.lastIndex()) {
    Message m;
    m.type = MessageType::TimeoutNow;
    m.to = target;
    send(std::move(m));
  } else {
    sendAppend(target, true);
  }
  return {};
}

Status Raft::step(const Message& m) {
  if (m.to != id_)
    return Error{"message for node " + std::to_string(m.to) + " delivered to node " +
                 std::to_string(id_) + ": check the peer address table"};
  if (m.from == kNoNode || m.from == id_)
    return Error{"message from node " + std::to_string(m.from) + " to node " +
                 std::to_string(id_) + " has an invalid sender"};

  if (m.term > term_) {
    if (m.type == MessageType::Vote || m.type == MessageType::PreVote) {
      // Leader lease (dissertation §4.2.3): while we hear from a leader, a vote request is
      // from a server that was cut off; ignoring it keeps it from deposing a working leader.
      // A transfer-initiated election is the exception.
      bool force = m.context == kCampaignTransfer;
      bool inLease = config_.checkQuorum && lead_ != kNoNode &&
                     electionElapsed_ < config_.electionTicks;
      if (!force && inLease)
        return {};
    }
    if (m.type == MessageType::PreVote) {
      // A pre-vote does not change our term.
    } else if (m.type == MessageType::PreVoteResp && !m.reject) {
      // Granted pre-votes carry the term we would campaign in.
    } else if (m.type == MessageType::App || m.type == MessageType::Heartbeat ||
               m.type == MessageType::Snap) {
      becomeFollower(m.term, m.from);
    } else {
      becomeFollower(m.term, kNoNode);
    }
  } else if (m.term < term_) {
    if ((config_.checkQuorum || config_.preVote) &&
        (m.type == MessageType::App || m.type == MessageType::Heartbeat)) {
      // A leader cut off by a partition may not see a higher term otherwise: with check-quorum
      // and pre-vote nobody campaigns against it. Tell it ours so it steps down.
      Message r;
      r.type = MessageType::AppResp;
      r.to = m.from;
      send(std::move(r));
    } else if (m.type == MessageType::PreVote) {
      Message r;
      r.type = MessageType::PreVoteResp;
      r.to = m.from;
      r.term = term_;
      r.reject = true;
      send(std::move(r));
    }
    return {};
  }

  if (m.type == MessageType::Vote || m.type == MessageType::PreVote) {
    handleVoteRequest(m);
    return {};
  }
  switch (role_) {
    case Role::Leader: stepLeader(m); break;
    case Role::PreCandidate:
    case Role::Candidate: stepCandidate(m); break;
    case Role::Follower: stepFollower(m); break;
  }
  return {};
}

void Raft::handleVoteRequest(const Message& m) {
  bool canVote = vote_ == m.from || (vote_ == kNoNode && lead_ == kNoNode) ||
                 (m.type == MessageType::PreVote && m.term > term_);
  Message r;
  r.type = m.type == MessageType::Vote ? MessageType::VoteResp : MessageType::PreVoteResp;
  r.to = m.from;
  // Paper §5.4.1: vote only for a candidate whose log is at least as up-to-date as ours.
  if (canVote && log_.isUpToDate(m.index, m.logTerm)) {
    r.term = m.term;
    send(std::move(r));
    if (m.type == MessageType::Vote) {
      electionElapsed_ = 0;
      vote_ = m.from;
    }
  } else {
    r.term = term_;
    r.reject = true;
    send(std::move(r));
  }
}

void Raft::stepCandidate(const Message& m) {
  switch (m.type) {
    case MessageType::App:
      becomeFollower(m.term, m.from);
      handleAppend(m);
      return;
    case MessageType::Heartbeat:
      becomeFollower(m.term, m.from);
      handleHeartbeat(m);
      return;
    case MessageType::Snap:
      becomeFollower(m.term, m.from);
      handleSnapshotChunk(m);
      return;
    case MessageType::PreVoteResp:
    case MessageType::VoteResp: {
      bool mine = (role_ == Role::PreCandidate && m.type == MessageType::PreVoteResp) ||
                  (role_ == Role::Candidate && m.type == MessageType::VoteResp);
      if (!mine)
        return;
      // A grant from an earlier pre-vote round is for another term.
      if (m.type == MessageType::PreVoteResp && !m.reject && m.term != term_ + 1)
        return;
      auto res = static_cast<VoteResult>(poll(m.from, !m.reject));
      if (res == VoteResult::Won) {
        if (role_ == Role::PreCandidate) {
          startElection(false, false);
        } else {
          becomeLeader();
          bcastAppend();
        }
      } else if (res == VoteResult::Lost) {
        becomeFollower(term_, kNoNode);
      }
      return;
    }
    default:
      return;
  }
}

void Raft::stepFollower(const Message& m) {
  switch (m.type) {
    case MessageType::App:
      electionElapsed_ = 0;
      lead_ = m.from;
      handleAppend(m);
      return;
    case MessageType::Heartbeat:
      electionElapsed_ = 0;
      lead_ = m.from;
      handleHeartbeat(m);
      return;
    case MessageType::Snap:
      electionElapsed_ = 0;
      lead_ = m.from;
      handleSnapshotChunk(m);
      return;
    case MessageType::TimeoutNow:
      // Leadership transfer: campaign at once, skipping pre-vote (dissertation §3.10).
      if (promotable())
        startElection(false, true);
      return;
    case MessageType::ReadIndexResp:
      readStates_.push_back(ReadState{m.index, m.context});
      return;
    default:
      return;
  }
}

void Raft::stepLeader(const Message& m) {
  if (m.type == MessageType::ReadIndex) {
    handleReadIndexRequest(m);
    return;
  }
  auto it = progress_.find(m.from);
  if (it == progress_.end())
    return;  // not (or no longer) a member
  Progress& pr = it->second;
  switch (m.type) {
    case MessageType::AppResp:
      handleAppendResponse(m, pr);
      return;
    case MessageType::HeartbeatResp:
      handleHeartbeatResponse(m, pr);
      return;
    case MessageType::SnapResp:
      handleSnapshotResponse(m, pr);
      return;
    default:
      return;
  }
}

// ---- follower side --------------------------------------------------------------------------

void Raft::handleAppend(const Message& m) {
  Message r;
  r.type = MessageType::AppResp;
  r.to = m.from;
  if (m.index < log_.committed()) {
    // Everything up to commit is known to match; say so, so the leader skips ahead.
    r.index = log_.committed();
    send(std::move(r));
    return;
  }
  if (auto last = log_.maybeAppend(m.index, m.logTerm, m.commit, m.entries)) {
    r.index = *last;
  } else {
    // Paper §5.3: the consistency check failed; the leader retries from an earlier index.
    r.index = m.index;
    r.reject = true;
    r.rejectHint = log_.lastIndex();
  }
  send(std::move(r));
}

void Raft::handleHeartbeat(const Message& m) {
  // The leader sends min(match, commit), so our log holds that entry and it matches.
  log_.commitTo(std::min(m.commit, log_.lastIndex()));
  Message r;
  r.type = MessageType::HeartbeatResp;
  r.to = m.from;
  r.context = m.context;
  send(std::move(r));
}

void Raft::handleSnapshotChunk(const Message& m) {
  const SnapshotMeta& meta = m.snapshot;
  if (meta.index <= log_.committed()) {
    // We already hold everything the snapshot covers (the "done" acknowledgement was lost,
    // or entries reached us first).
    incomingSnapshot_.reset();
    Message r;
    r.type = MessageType::AppResp;
    r.to = m.from;
    r.index = log_.committed();
    send(std::move(r));
    return;
  }
  // A transfer is identified by sender, term and snapshot: two servers' snapshots of the same
  // index hold the same state but need not be the same bytes.
  bool same = incomingSnapshot_ && incomingFrom_ == m.from && incomingTerm_ == m.term &&
              incomingSnapshot_->index == meta.index && incomingSnapshot_->term == meta.term;
  if (!same && m.chunkOffset == 0) {
    incomingSnapshot_ = meta;
    incomingFrom_ = m.from;
    incomingTerm_ = m.term;
    incomingOffset_ = 0;
    same = true;
  }
  Message r;
  r.type = MessageType::SnapResp;
  r.to = m.from;
  r.snapshot = meta;
  r.snapshot.conf = {};
  if (!same || m.chunkOffset != incomingOffset_) {
    // Out of order (a chunk was lost or duplicated): tell the leader where we are.
    r.reject = true;
    r.chunkOffset = same ? incomingOffset_ : 0;
    r.rejectHint = r.chunkOffset;
    send(std::move(r));
    return;
  }
  chunks_.push_back(SnapshotChunk{meta, m.chunkOffset, m.chunkData, m.chunkDone});
  incomingOffset_ += m.chunkData.size();
  if (!m.chunkDone) {
    r.chunkOffset = incomingOffset_;
    send(std::move(r));
    return;
  }
  incomingSnapshot_.reset();
  Message done;
  done.type = MessageType::AppResp;
  done.to = m.from;
  if (log_.matchTerm(meta.index, meta.term)) {
    // Our log already has the snapshot's last entry: keep the log, just commit (etcd does
    // the same); the shell discards the chunks since no snapshot is installed.
    log_.commitTo(meta.index);
  } else {
    log_.restore(meta);
    applyConfState(meta.conf);
    confIndex_ = meta.index;
  }
  done.index = meta.index;
  send(std::move(done));
}

// ---- leader side ----------------------------------------------------------------------------

void Raft::send(Message m) {
  m.from = id_;
  if (m.type != MessageType::Vote && m.type != MessageType::PreVote &&
      m.type != MessageType::VoteResp && m.type != MessageType::PreVoteResp)
    m.term = term_;
  msgs_.push_back(std::move(m));
}

void Raft::appendEntries(std::vector<Entry> ents) {
  Index li = log_.lastIndex();
  for (size_t i = 0; i < ents.size(); ++i) {
    ents[i].term = term_;
    ents[i].index = li + 1 + i;
  }
  log_.append(ents);
  // The leader's own copy counts toward a quorum only once the shell reports it durable, in
  // advance(): the shell may send these entries before writing them (dissertation §10.2.1),
  // and a copy a crash can still lose must not help commit anything.
}

bool Raft::maybeCommit() {
  std::vector<Index> matches;
  for (NodeId id : conf_.voters) {
    auto it = progress_.find(id);
    matches.push_back(it == progress_.end() ? 0 : it->second.match);
  }
  if (matches.empty())
    return false;
  std::sort(matches.begin(), matches.end(), std::greater<Index>());
  Index mci = matches[quorum() - 1];
  // Paper §5.4.2 (figure 8): only an entry of the current term is committed by counting
  // replicas; earlier ones are committed indirectly with it.
  if (mci > log_.committed() && log_.termOrZero(mci) == term_) {
    bool firstInTerm = log_.termOrZero(log_.committed()) != term_;
    log_.commitTo(mci);
    if (firstInTerm)
      releasePendingReads();
    return true;
  }
  return false;
}

void Raft::bcastAppend() {
  for (auto& [id, pr] : progress_)
    if (id != id_)
      sendAppend(id, true);
}

void Raft::bcastHeartbeat(const std::string& context) {
  for (auto& [id, pr] : progress_)
    if (id != id_)
      sendHeartbeat(id, context);
}

void Raft::sendHeartbeat(NodeId to, const std::string& context) {
  const Progress& pr = progress_[to];
  Message m;
  m.type = MessageType::Heartbeat;
  m.to = to;
  // The follower may not have the entries up to our commit yet (paper §5.3).
  m.commit = std::min(pr.match, log_.committed());
  m.context = context;
  send(std::move(m));
}

bool Raft::sendAppend(NodeId to, bool sendIfEmpty) {
  Progress& pr = progress_[to];
  if (pr.isPaused())
    return false;
  Index prev = pr.next - 1;
  auto prevTerm = log_.term(prev);
  Result<std::vector<Entry>> ents = std::vector<Entry>{};
  if (prevTerm)
    ents = log_.slice(pr.next, log_.lastIndex() + 1, config_.maxAppendBytes);
  if (!prevTerm || !ents) {
    // Paper §7: the entries the follower needs are compacted; send the snapshot instead.
    SnapshotMeta meta = storage_.snapshotMeta();
    if (meta.index == 0 || meta.index < prev)
      return false;  // nothing newer to send (the shell has not persisted it yet)
    pr.becomeSnapshot(meta.index, meta.term);
    sendSnapshotChunk(to, pr);
    return true;
  }
  if (ents->empty() && !sendIfEmpty)
    return false;
  Message m;
  m.type = MessageType::App;
  m.to = to;
  m.index = prev;
  m.logTerm = *prevTerm;
  m.commit = log_.committed();
  bool had = !ents->empty();
  Index last = had ? ents->back().index : prev;
  m.entries = std::move(*ents);
  send(std::move(m));
  pr.sentEntries(last, had);
  return true;
}

void Raft::sendSnapshotChunk(NodeId to, Progress& pr) {
  auto data = storage_.snapshotChunk(pr.pendingSnapshot, pr.snapshotOffset,
                                     config_.snapshotChunkBytes);
  if (!data && data.error().code == kErrSnapshotOutOfDate) {
    // The shell took a newer snapshot: start over with it.
    SnapshotMeta meta = storage_.snapshotMeta();
    pr.becomeSnapshot(meta.index, meta.term);
    data = storage_.snapshotChunk(pr.pendingSnapshot, 0, config_.snapshotChunkBytes);
  }
  if (!data)
    return;  // retried on the next timer
  SnapshotMeta meta = storage_.snapshotMeta();
  Message m;
  m.type = MessageType::Snap;
  m.to = to;
  m.snapshot = meta;
  m.chunkOffset = pr.snapshotOffset;
  m.chunkDone = pr.snapshotOffset + data->size() >= meta.size;
  m.chunkData = std::move(*data);
  send(std::move(m));
  pr.chunkInFlight = true;
  pr.snapshotIdleTicks = 0;
}

void Raft::handleAppendResponse(const Message& m, Progress& pr) {
  pr.recentActive = true;
  if (m.reject) {
    if (pr.maybeDecrTo(m.index, m.rejectHint)) {
      if (pr.state == ProgressState::Replicate)
        pr.becomeProbe();
      sendAppend(m.from, true);
    }
    return;
  }
  bool wasPaused = pr.isPaused();
  if (!pr.maybeUpdate(m.index)) {
    if (pr.state == ProgressState::Replicate)
      pr.freeInflightsTo(m.index);
    return;
  }
  switch (pr.state) {
    case ProgressState::Probe:
      pr.becomeReplicate();
      break;
    case ProgressState::Snapshot:
      if (pr.match >= pr.pendingSnapshot) {
        pr.becomeProbe();
        pr.becomeReplicate();
      }
      break;
    case ProgressState::Replicate:
      pr.freeInflightsTo(m.index);
      break;
  }
  if (maybeCommit()) {
    bcastAppend();
  } else if (wasPaused) {
    sendAppend(m.from, false);
  }
  // Pipelining: keep sending while the window has room.
  while (sendAppend(m.from, false)) {
  }
  if (m.from == leadTransferee_ && pr.match == log_.lastIndex()) {
    Message t;
    t.type = MessageType::TimeoutNow;
    t.to = m.from;
    send(std::move(t));
  }
}

void Raft::handleSnapshotResponse(const Message& m, Progress& pr) {
  pr.recentActive = true;
  if (pr.state != ProgressState::Snapshot || m.snapshot.index != pr.pendingSnapshot)
    return;
  if (m.reject) {
    // The chunk at that offset is already on its way; the retry timer covers its loss.
    if (m.chunkOffset == pr.snapshotOffset && pr.chunkInFlight)
      return;
    pr.snapshotOffset = std::min(m.chunkOffset, storage_.snapshotMeta().size);
    sendSnapshotChunk(m.from, pr);
    return;
  }
  if (m.chunkOffset <= pr.snapshotOffset)
    return;  // duplicate or reordered acknowledgement
  pr.snapshotOffset = m.chunkOffset;
  pr.chunkInFlight = false;
  sendSnapshotChunk(m.from, pr);
}

void Raft::handleHeartbeatResponse(const Message& m, Progress& pr) {
  pr.recentActive = true;
  pr.probeSent = false;
  // A lost AppendEntries would otherwise stall a full window forever.
  if (pr.state == ProgressState::Replicate && pr.inflightFull() && !pr.inflights.empty())
    pr.inflights.pop_front();
  if (pr.match < log_.lastIndex())
    sendAppend(m.from, true);

  if (m.context.empty() || !isVoter(m.from))
    return;
  auto it = std::find_if(pendingReads_.begin(), pendingReads_.end(),
                         [&](const PendingRead& r) { return r.context == m.context; });
  if (it == pendingReads_.end())
    return;
  it->acks[m.from] = true;
  size_t acks = 0;
  for (NodeId id : conf_.voters)
    if (it->acks.count(id))
      ++acks;
  if (acks < quorum())
    return;
  // A quorum confirmed our leadership after this read arrived, so also after every earlier
  // one: answer them all (dissertation §6.4 step 3).
  auto end = it + 1;
  std::vector<PendingRead> done(std::make_move_iterator(pendingReads_.begin()),
                                std::make_move_iterator(end));
  pendingReads_.erase(pendingReads_.begin(), end);
  for (PendingRead& r : done)
    answerRead(std::move(r));
}

// The read is confirmed at r.index: hand it to our shell, or to the follower that asked.
void Raft::answerRead(PendingRead r) {
  if (r.from == id_) {
    readStates_.push_back(ReadState{r.index, std::move(r.context)});
    return;
  }
  Message resp;
  resp.type = MessageType::ReadIndexResp;
  resp.to = r.from;
  resp.index = r.index;
  resp.context = std::move(r.context);
  send(std::move(resp));
}

void Raft::handleReadIndexRequest(const Message& m) {
  PendingRead r;
  r.context = m.context;
  r.from = m.from;
  // Dissertation §6.4 step 1: the leader's commit index is only known to be current once it
  // has committed an entry of its own term.
  if (log_.termOrZero(log_.committed()) != term_) {
    waitingReads_.push_back(std::move(r));
    return;
  }
  r.index = log_.committed();
  if (quorum() == 1 && isVoter(id_)) {
    answerRead(std::move(r));
    return;
  }
  r.acks[id_] = true;
  std::string ctx = r.context;
  pendingReads_.push_back(std::move(r));
  bcastHeartbeat(ctx);
}

void Raft::releasePendingReads() {
  std::vector<PendingRead> waiting = std::move(waitingReads_);
  waitingReads_.clear();
  for (PendingRead& r : waiting) {
    Message m;
    m.type = MessageType::ReadIndex;
    m.from = r.from;
    m.context = std::move(r.context);
    handleReadIndexRequest(m);
  }
}

// ---- configuration --------------------------------------------------------------------------

void Raft::applyConfChange(const ConfChange& cc) {
  NodeId n = cc.node;
  switch (cc.type) {
    case ConfChangeType::AddLearner:
      if (isVoter(n) || isLearner(n))
        return;
      conf_.learners.push_back(n);
      std::sort(conf_.learners.begin(), conf_.learners.end());
      {
        Progress pr;
        pr.next = log_.lastIndex() + 1;
        pr.learner = true;
        pr.maxInflight = config_.maxInflightMessages;
        pr.recentActive = true;
        progress_[n] = pr;
      }
      break;
    case ConfChangeType::Promote:
      if (!isLearner(n))
        return;
      erase(conf_.learners, n);
      conf_.voters.push_back(n);
      std::sort(conf_.voters.begin(), conf_.voters.end());
      progress_[n].learner = false;
      // A new voter counts as active until the next check-quorum round.
      progress_[n].recentActive = true;
      break;
    case ConfChangeType::Remove:
      erase(conf_.voters, n);
      erase(conf_.learners, n);
      if (n != id_)
        progress_.erase(n);
      votes_.erase(n);
      if (leadTransferee_ == n)
        abortLeaderTransfer();
      break;
  }
  if (role_ != Role::Leader)
    return;
  if (!isVoter(id_)) {
    // A leader removed from (or never in) the configuration steps down; the others elect a
    // new leader after their election timeout.
    becomeFollower(term_, kNoNode);
    return;
  }
  // The quorum may have shrunk.
  if (maybeCommit())
    bcastAppend();
  else if (cc.type == ConfChangeType::AddLearner)
    sendAppend(n, true);
}

void Raft::applyConfState(const ConfState& cs) {
  conf_ = cs;
  resetProgress();
}

// Fresh progress for every member of conf_: next after our last entry, nothing matched but
// the durable part of our own log (etcd's reset; entries still unstable count from advance()).
void Raft::resetProgress() {
  std::map<NodeId, Progress> prs;
  auto add = [&](NodeId id, bool learner) {
    Progress pr;
    pr.next = log_.lastIndex() + 1;
    pr.learner = learner;
    pr.maxInflight = config_.maxInflightMessages;
    if (id == id_)
      pr.match = log_.stableLastIndex();
    prs[id] = pr;
  };
  for (NodeId id : conf_.voters)
    add(id, false);
  for (NodeId id : conf_.learners)
    add(id, true);
  progress_ = std::move(prs);
}

// ---- output ---------------------------------------------------------------------------------

bool Raft::hasReady() const {
  return log_.hasNextCommitted() || SoftState{lead_, role_} != prevSoft_ ||
         HardState{term_, vote_, log_.committed()} != prevHard_ ||
         !log_.unstableEntries().empty() || log_.unstableSnapshot() || !msgs_.empty() ||
         !readStates_.empty() || !chunks_.empty();
}

Ready Raft::ready() {
  Ready rd;
  if (log_.hasNextCommitted()) {
    rd.committedEntries = log_.takeNextCommitted();
    for (const Entry& e : rd.committedEntries) {
      if (e.type != EntryType::ConfChange)
        continue;
      auto cc = decodeConfChange(e.data);
      // A corrupt entry is committed on every server alike; skipping it keeps them agreeing.
      if (!cc)
        continue;
      applyConfChange(*cc);
      confIndex_ = e.index;
    }
  }
  SoftState soft{lead_, role_};
  if (soft != prevSoft_)
    rd.softState = soft;
  HardState hard{term_, vote_, log_.committed()};
  if (hard != prevHard_)
    rd.hardState = hard;
  rd.entries = log_.unstableEntries();
  rd.snapshot = log_.unstableSnapshot();
  rd.snapshotChunks = std::move(chunks_);
  chunks_.clear();
  rd.messages = std::move(msgs_);
  msgs_.clear();
  rd.readStates = std::move(readStates_);
  readStates_.clear();
  rd.newTermOrVote = hard.term != prevHard_.term || hard.vote != prevHard_.vote;
  prevSoft_ = soft;
  prevHard_ = hard;
  return rd;
}

void Raft::advance(const Ready& rd) {
  if (rd.snapshot) {
    log_.stableSnapTo(rd.snapshot->index);
    log_.appliedTo(rd.snapshot->index);
  }
  if (!rd.entries.empty())
    log_.stableTo(rd.entries.back().index, rd.entries.back().term);
  if (!rd.committedEntries.empty())
    log_.appliedTo(rd.committedEntries.back().index);
  // Dissertation §10.2.1: the leader's own entries count toward a quorum from here, where
  // they are durable. The stable prefix is read from the log rather than from rd, so a Ready
  // taken in an earlier term (or whose entries were replaced since) counts only what is both
  // durable and still in our log.
  if (role_ == Role::Leader) {
    auto self = progress_.find(id_);
    if (self != progress_.end() && self->second.maybeUpdate(log_.stableLastIndex()) &&
        maybeCommit())
      bcastAppend();  // tell the followers the new commit index now, not at the next heartbeat
  }
}

NodeStatus Raft::status() const {
  NodeStatus s;
  s.id = id_;
  s.role = role_;
  s.term = term_;
  s.vote = vote_;
  s.leader = lead_;
  s.commit = log_.committed();
  s.applied = log_.applied();
  s.lastIndex = log_.lastIndex();
  s.leadTransferee = leadTransferee_;
  s.conf = conf_;
  if (role_ == Role::Leader) {
    for (const auto& [id, pr] : progress_) {
      PeerStatus p;
      p.id = id;
      p.match = pr.match;
      p.next = pr.next;
      p.state = pr.state;
      p.learner = pr.learner;
      p.recentActive = id == id_ || pr.recentActive;
      p.pendingSnapshot = pr.pendingSnapshot;
      p.snapshotOffset = pr.snapshotOffset;
      s.peers.push_back(p);
    }
  }
  return s;
}

bool Raft::learnerCaughtUp(NodeId id, Index maxLag) const {
  if (role_ != Role::Leader || !isLearner(id))
    return false;
  auto it = progress_.find(id);
  return it != progress_.end() && it->second.match + maxLag >= log_.lastIndex();
}

}  // namespace shoal::raft
