// Deterministic simulation of a Raft cluster (DESIGN §5; the approach of FoundationDB's and
// LogCabin's tests): 3–5 servers over a network that loses, duplicates, delays and reorders
// messages, with partitions, crash-restarts (only persisted state survives), membership
// changes, leadership transfers and snapshots. An invariant checker runs after every step
// (LogCabin's invariants.checkAll()); a failing seed prints the command line that replays it.
//
// Two modes. The random mode draws every fault independently. Random faults almost never line
// up the interleaving of paper figure 8, so a core that commits an entry of an earlier term by
// counting replicas (breaking §5.4.2) passes thousands of random seeds. The adversarial mode
// aims at the windows where that matters: five servers, one entry per AppendEntries, and a
// nemesis that cuts off or crashes each new leader a few steps after it won (while it still
// holds uncommitted entries, of its own term or re-replicated from earlier ones), lets the
// server it cut off before rejoin and campaign at once with its diverging log, and delays old
// AppendEntries.
//
// Both modes drive the core as a shell that overlaps the leader's disk write with replication
// (dissertation §10.2.1) would, drawn per Ready: it sends the messages Ready::mayPrecedePersist
// allows first and persists after — or persists first — and it may hold a Ready unpersisted
// while the node steps further messages, or crash between sending and persisting (only what
// was persisted survives).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tests/raft/cluster.h"

namespace shoal::raft::test {
namespace {

class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed * 0x2545f4914f6cdd1dULL + 1) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  uint64_t below(uint64_t n) { return next() % n; }
  bool chance(double p) { return static_cast<double>(next() >> 11) * 0x1.0p-53 < p; }

 private:
  uint64_t s_;
};

struct Failure {
  std::string what;
};

// Messages delivered by type over all runs: shows the runs exercise every path.
uint64_t delivered[16];
uint64_t confChanges;
uint64_t sentEarly;        // messages sent before their Ready was persisted
uint64_t crashedUnpersisted;  // crashes between sending early and persisting

enum class Mode { Random, Adversarial };

const char* modeName(Mode m) { return m == Mode::Random ? "random" : "adversarial"; }

struct InFlight {
  uint64_t due;
  uint64_t seq;
  Message m;
};

class Sim {
 public:
  Sim(uint64_t seed, Mode mode, bool longRun)
      : seed_(seed), rng_(seed), mode_(mode), long_(longRun) {}

  std::optional<std::string> run();

 private:
  void check(bool ok, const std::string& what) {
    if (!ok)
      throw Failure{what};
  }
  void checkInvariants();
  void checkLogMatching();
  void checkAppliedPrefixes();
  void step();
  void handleReady(NodeId id);
  void crash(NodeId id, int downTicks = 30);
  void collectMessages();
  void deliverDue();
  void chaos(int tick);
  void adversary(int tick);
  void planCut(NodeId id, Term term);
  void executeCut();
  NodeId leader();

  uint64_t seed_;
  Rng rng_;
  Mode mode_;
  bool long_;
  Cluster cluster_;
  std::vector<InFlight> flight_;
  uint64_t now_ = 0;
  uint64_t seq_ = 0;
  double drop_ = 0, dup_ = 0, slow_ = 0;
  std::map<Term, NodeId> leaders_;
  std::map<Index, std::pair<Term, std::string>> committed_;  // everything any node applied
  std::map<Index, bool> normal_;  // committed_ index holds a normal entry
  std::map<NodeId, Term> lastTerm_;
  std::map<NodeId, int> downUntil_;
  NodeId joiner_ = 0;
  int proposals_ = 0;
  int tick_ = 0;
  bool faults_ = true;
  bool checkQuorum_ = true;
  uint64_t chunkBytes_ = 0;
  std::string config_;  // the drawn settings, printed with a failure
  // Per Ready: send the allowed messages before persisting; then crash before persisting;
  // or hold the Ready unpersisted until the node's next turn.
  double early_ = 0, crashEarly_ = 0, hold_ = 0;
  // The adversary's next move: cut off (or crash) `leader` of `term`, with `companion` on its
  // side of the partition when not kNoNode, at step `at`.
  struct Cut {
    uint64_t at = 0;
    NodeId leader = kNoNode;
    Term term = 0;
    bool crash = false;
    NodeId companion = kNoNode;
    // When ≥ 0: cut earlier, right after the leader has taken this many more acknowledgements.
    int acks = -1;
  };
  std::optional<Cut> cut_;
  std::vector<NodeId> cutOff_;  // the side the adversary partitioned away last
  NodeId trace_ = std::getenv("SIM_TRACE") ? std::strtoull(std::getenv("SIM_TRACE"), nullptr, 10) : 0;
};

NodeId Sim::leader() {
  NodeId best = kNoNode;
  Term bestTerm = 0;
  for (NodeId id : cluster_.ids()) {
    TestNode& n = cluster_.node(id);
    if (n.raft && n.raft->role() == Role::Leader && n.raft->term() >= bestTerm) {
      best = id;
      bestTerm = n.raft->term();
    }
  }
  return best;
}

void Sim::collectMessages() {
  for (Message& m : cluster_.pending()) {
    if (faults_ && rng_.chance(drop_))
      continue;
    uint64_t delay = rng_.below(6);
    if (faults_ && rng_.chance(slow_))
      delay += rng_.below(60);
    flight_.push_back(InFlight{now_ + delay, seq_++, m});
    if (faults_ && rng_.chance(dup_))
      flight_.push_back(InFlight{now_ + delay + rng_.below(20), seq_++, m});
  }
  cluster_.pending().clear();
}

void Sim::deliverDue() {
  std::vector<InFlight> due;
  std::vector<InFlight> rest;
  for (InFlight& f : flight_)
    (f.due <= now_ ? due : rest).push_back(std::move(f));
  flight_ = std::move(rest);
  std::sort(due.begin(), due.end(), [](const InFlight& a, const InFlight& b) {
    return a.due != b.due ? a.due < b.due : a.seq < b.seq;
  });
  for (InFlight& f : due) {
    const Message& m = f.m;
    if (!cluster_.linkUp(m.from, m.to))
      continue;
    TestNode& n = cluster_.node(m.to);
    if (!n.raft)
      continue;
    ++delivered[static_cast<size_t>(m.type)];
    if (trace_ && (m.from == trace_ || m.to == trace_))
      std::printf("t%d %s\n", tick_, describeMessage(m).c_str());
    auto st = n.raft->step(m);
    check(st.ok(), "step failed: " + (st.ok() ? std::string() : st.error().message));
    handleReady(m.to);
    collectMessages();
    checkInvariants();
    if (cut_ && cut_->acks >= 0 && m.to == cut_->leader && m.type == MessageType::AppResp &&
        !m.reject && m.term == cut_->term && --cut_->acks < 0) {
      executeCut();
      checkInvariants();
    }
  }
}

// A held Ready is finished on the node's next turn, so none is held for long.
void Sim::handleReady(NodeId id) {
  TestNode& n = cluster_.node(id);
  if (!n.raft)
    return;
  if (!n.held && n.raft->hasReady() && rng_.chance(early_)) {
    size_t before = cluster_.pending().size();
    cluster_.sendEarly(id);
    size_t sent = cluster_.pending().size() - before;
    sentEarly += sent;
    if (faults_ && sent > 0 && !n.held->entries.empty() && rng_.chance(crashEarly_)) {
      crash(id);
      return;
    }
    if (rng_.chance(hold_))
      return;
  }
  cluster_.processReady(id);
}

// Only persisted state survives; a held Ready whose messages went out early is lost.
void Sim::crash(NodeId id, int downTicks) {
  if (cluster_.node(id).held)
    ++crashedUnpersisted;
  cluster_.crash(id);
  downUntil_[id] = tick_ + 5 + static_cast<int>(rng_.below(static_cast<uint64_t>(downTicks)));
}

void Sim::step() {
  if (cut_ && now_ >= cut_->at)
    executeCut();
  for (NodeId id : cluster_.ids())
    handleReady(id);
  collectMessages();
  checkInvariants();
  deliverDue();
  ++now_;
}

void Sim::checkInvariants() {
  for (NodeId id : cluster_.ids()) {
    TestNode& n = cluster_.node(id);
    // Persisted term never goes back (paper figure 2: currentTerm increases monotonically).
    Term stored = n.storage->hardState().term;
    check(stored >= lastTerm_[id], "node " + std::to_string(id) + " persisted term went back from " +
                                       std::to_string(lastTerm_[id]) + " to " + std::to_string(stored));
    lastTerm_[id] = stored;
    if (!n.raft)
      continue;
    const Raft& r = *n.raft;
    // Election safety (paper §5.2): at most one leader per term.
    if (r.role() == Role::Leader) {
      auto [it, fresh] = leaders_.emplace(r.term(), id);
      check(it->second == id, "two leaders in term " + std::to_string(r.term()) + ": " +
                                  std::to_string(it->second) + " and " + std::to_string(id));
      (void)fresh;
    }
    const RaftLog& log = r.log();
    check(log.committed() <= log.lastIndex(), "node " + std::to_string(id) + " commit past its log");
    check(n.applied <= log.committed(), "node " + std::to_string(id) + " applied past commit");
    check(log.firstIndex() <= log.lastIndex() + 1, "node " + std::to_string(id) + " log bounds");
  }
}

void Sim::checkLogMatching() {
  auto ids = cluster_.ids();
  for (size_t a = 0; a < ids.size(); ++a) {
    TestNode& na = cluster_.node(ids[a]);
    if (!na.raft)
      continue;
    const RaftLog& la = na.raft->log();
    // Committed entries in a log are the committed ones (state machine safety, §5.4.3).
    for (Index i = la.firstIndex(); i <= la.committed(); ++i) {
      auto it = committed_.find(i);
      if (it != committed_.end())
        check(la.termOrZero(i) == it->second.first,
              "node " + std::to_string(ids[a]) + " holds committed index " + std::to_string(i) +
                  " with term " + std::to_string(la.termOrZero(i)) + ", committed term " +
                  std::to_string(it->second.first));
    }
    for (size_t b = a + 1; b < ids.size(); ++b) {
      TestNode& nb = cluster_.node(ids[b]);
      if (!nb.raft)
        continue;
      const RaftLog& lb = nb.raft->log();
      Index lo = std::max(la.firstIndex(), lb.firstIndex());
      Index hi = std::min(la.lastIndex(), lb.lastIndex());
      // Log matching (paper §5.3): same index and term means identical logs up to there.
      Index top = 0;
      for (Index i = hi; i >= lo && i > 0; --i)
        if (la.termOrZero(i) == lb.termOrZero(i)) {
          top = i;
          break;
        }
      if (top == 0)
        continue;
      auto ea = la.slice(lo, top + 1, UINT64_MAX);
      auto eb = lb.slice(lo, top + 1, UINT64_MAX);
      check(ea.ok() && eb.ok(), "reading logs failed");
      check(*ea == *eb, "log matching violated between " + std::to_string(ids[a]) + " and " +
                            std::to_string(ids[b]) + " below index " + std::to_string(top));
    }
  }
}

void Sim::checkAppliedPrefixes() {
  for (NodeId id : cluster_.ids()) {
    TestNode& n = cluster_.node(id);
    Index prev = 0;
    for (const AppliedEntry& e : n.state) {
      check(e.index > prev, "node " + std::to_string(id) + " state out of order");
      prev = e.index;
      auto it = committed_.find(e.index);
      check(it != committed_.end() && it->second.first == e.term && it->second.second == e.data,
            "node " + std::to_string(id) + " state holds index " + std::to_string(e.index) +
                " that differs from the committed sequence");
    }
    // Nothing committed with data is missing below the applied index.
    size_t have = 0;
    for (const auto& [idx, te] : committed_)
      if (idx <= n.applied && !te.second.empty() && normal_[idx])
        ++have;
    size_t mine = 0;
    for (const AppliedEntry& e : n.state)
      if (e.index <= n.applied)
        ++mine;
    check(have == mine, "node " + std::to_string(id) + " applied " + std::to_string(mine) +
                            " entries up to " + std::to_string(n.applied) + ", the sequence has " +
                            std::to_string(have));
  }
}

void Sim::chaos(int tick) {
  if (mode_ == Mode::Adversarial)
    return adversary(tick);
  auto ids = cluster_.ids();
  NodeId lead = leader();
  // Client traffic.
  if (lead && rng_.chance(0.3)) {
    auto r = cluster_.node(lead).raft->propose("p" + std::to_string(++proposals_));
    (void)r;
  }
  if (rng_.chance(0.02)) {
    NodeId id = ids[rng_.below(ids.size())];
    if (cluster_.node(id).raft)
      (void)cluster_.node(id).raft->readIndex("r" + std::to_string(tick));
  }
  if (!faults_)
    return;
  // Partitions come and go.
  if (rng_.chance(0.01)) {
    std::vector<std::vector<NodeId>> groups(2);
    for (NodeId id : ids)
      groups[rng_.below(2)].push_back(id);
    cluster_.partition(groups);
  } else if (rng_.chance(0.01)) {
    cluster_.isolate(ids[rng_.below(ids.size())]);
  } else if (rng_.chance(0.03)) {
    cluster_.heal();
  }
  // Crash and restart: only what a Ready said to persist survives.
  for (NodeId id : ids) {
    TestNode& n = cluster_.node(id);
    if (n.raft && rng_.chance(0.003)) {
      crash(id, 40);
    } else if (!n.raft && tick >= downUntil_[id]) {
      cluster_.restart(id);
    }
  }
  lead = leader();  // the leader may have crashed
  // Membership changes, one server at a time through a learner.
  if (lead && rng_.chance(0.02)) {
    Raft& r = *cluster_.node(lead).raft;
    const ConfState& cs = r.confState();
    ConfChange cc;
    if (!cs.learners.empty()) {
      NodeId l = cs.learners[0];
      if (r.learnerCaughtUp(l, 5)) {
        cc = ConfChange{ConfChangeType::Promote, l, {}};
      } else if (rng_.chance(0.2) && checkQuorum_) {
        cc = ConfChange{ConfChangeType::Remove, l, {}};
      }
    } else {
      std::vector<NodeId> outside;
      for (NodeId id : ids)
        if (std::find(cs.voters.begin(), cs.voters.end(), id) == cs.voters.end())
          outside.push_back(id);
      if (!outside.empty() && rng_.chance(0.6)) {
        cc = ConfChange{ConfChangeType::AddLearner, outside[rng_.below(outside.size())], {}};
      } else if (cs.voters.size() > 3 && checkQuorum_) {
        // Without check-quorum's leader lease a removed server that keeps campaigning can
        // disrupt the cluster forever (dissertation §4.2.3); raftd always runs with it.
        cc = ConfChange{ConfChangeType::Remove, cs.voters[rng_.below(cs.voters.size())], {}};
      }
    }
    if (cc.node != kNoNode)
      (void)r.proposeConfChange(cc);
  }
  // Leadership transfer.
  if (lead && rng_.chance(0.01)) {
    const ConfState& cs = cluster_.node(lead).raft->confState();
    NodeId t = cs.voters[rng_.below(cs.voters.size())];
    if (t != lead)
      (void)cluster_.node(lead).raft->transferLeadership(t);
  }
  // Snapshots and compaction.
  for (NodeId id : ids) {
    TestNode& n = cluster_.node(id);
    if (n.raft && n.applied > n.storage->snapshotMeta().index + 10 && rng_.chance(0.05))
      (void)cluster_.compact(id, rng_.below(4));
  }
}

void Sim::adversary(int tick) {
  auto ids = cluster_.ids();
  NodeId lead = leader();
  // Heavy client traffic, so that every leader holds entries of its own term when it is cut.
  if (lead && rng_.chance(0.5)) {
    for (uint64_t i = 0, n = 1 + rng_.below(3); i < n; ++i)
      (void)cluster_.node(lead).raft->propose("p" + std::to_string(++proposals_));
  }
  if (!faults_)
    return;
  // Now and then everything heals, so that some leaders commit and logs grow.
  if (rng_.chance(0.02)) {
    cluster_.heal();
    cutOff_.clear();
  }
  for (NodeId id : ids) {
    TestNode& n = cluster_.node(id);
    if (n.raft && rng_.chance(0.004)) {
      crash(id);
    } else if (!n.raft && tick >= downUntil_[id]) {
      cluster_.restart(id);
    }
  }
  for (NodeId id : ids) {
    TestNode& n = cluster_.node(id);
    if (n.raft && n.applied > n.storage->snapshotMeta().index + 10 && rng_.chance(0.02))
      (void)cluster_.compact(id, rng_.below(4));
  }
}

// A new leader is most fragile in its first steps: it holds its no-op and proposals
// uncommitted, and it is still copying entries of earlier terms to followers that lack them
// (the window of paper figure 8). Cut it off in that window.
void Sim::planCut(NodeId id, Term term) {
  if (!faults_ || !rng_.chance(0.85))
    return;
  Cut c;
  // Half the time before its no-op leaves (so its entries stay on its side, like S5's in
  // figure 8), else while followers catch up one entry per message; some cuts come right
  // after an acknowledgement instead, whatever the time.
  c.at = now_ + (rng_.chance(0.5) ? rng_.below(3) : rng_.below(50));
  if (rng_.chance(0.3))
    c.acks = static_cast<int>(rng_.below(10));
  c.leader = id;
  c.term = term;
  c.crash = rng_.chance(0.25);
  if (!c.crash && rng_.chance(0.3)) {
    auto ids = cluster_.ids();
    NodeId other = ids[rng_.below(ids.size())];
    if (other != id)
      c.companion = other;
  }
  cut_ = c;
}

void Sim::executeCut() {
  Cut c = *cut_;
  cut_.reset();
  TestNode& n = cluster_.node(c.leader);
  if (!faults_ || !n.raft || n.raft->role() != Role::Leader || n.raft->term() != c.term)
    return;
  // Proposals accepted just before the cut reach only the leader's side.
  if (rng_.chance(0.5)) {
    for (uint64_t i = 0, k = 1 + rng_.below(3); i < k; ++i)
      (void)n.raft->propose("p" + std::to_string(++proposals_));
    // A crashing leader may have sent them without persisting them (§10.2.1).
    if (c.crash && !n.held && rng_.chance(0.5) && cluster_.sendEarly(c.leader))
      crash(c.leader);
    else
      handleReady(c.leader);
  }
  std::vector<NodeId> previous = cutOff_;
  cluster_.heal();
  if (c.crash) {
    if (cluster_.node(c.leader).raft)
      crash(c.leader);
    cutOff_ = {c.leader};
  } else {
    cutOff_ = {c.leader};
    if (c.companion != kNoNode)
      cutOff_.push_back(c.companion);
    std::vector<NodeId> rest;
    for (NodeId id : cluster_.ids())
      if (std::count(cutOff_.begin(), cutOff_.end(), id) == 0)
        rest.push_back(id);
    cluster_.partition({cutOff_, rest});
  }
  // The servers cut off before rejoin now, and some campaign at once with whatever log they
  // kept: an election among diverging logs.
  for (NodeId id : previous) {
    TestNode& p = cluster_.node(id);
    if (p.raft && std::count(cutOff_.begin(), cutOff_.end(), id) == 0 && rng_.chance(0.5))
      (void)p.raft->campaign();
  }
}

std::optional<std::string> Sim::run() {
  try {
    bool adversarial = mode_ == Mode::Adversarial;
    // Now and then a single voter, which alone is a quorum (until its learner is promoted):
    // there a leader that counted an unpersisted entry of its own would commit it at once.
    size_t voters = adversarial ? 5 : rng_.chance(0.1) ? 1 : 3 + rng_.below(3);
    NodeOptions o;
    o.seed = seed_;
    o.preVote = rng_.chance(0.8);
    o.checkQuorum = rng_.chance(0.8);
    checkQuorum_ = o.checkQuorum;
    o.maxInflight = 1 + rng_.below(8);
    o.maxBytes = 8 + rng_.below(64);
    o.chunkBytes = rng_.chance(0.3) ? 8 + rng_.below(64) : 256 + rng_.below(1024);
    chunkBytes_ = o.chunkBytes;
    drop_ = rng_.chance(0.5) ? 0.02 + 0.1 * rng_.chance(0.3) : 0.0;
    dup_ = rng_.chance(0.5) ? 0.03 : 0.0;
    slow_ = rng_.chance(0.5) ? 0.05 : 0.0;
    if (adversarial) {
      // One entry per AppendEntries, so a follower can acknowledge an entry of an earlier
      // term before the new leader's own; AppendEntries from old leaders arrive late.
      o.maxInflight = 1 + rng_.below(4);
      o.maxBytes = rng_.chance(0.7) ? 1 : 8 + rng_.below(16);
      drop_ = rng_.chance(0.5) ? 0.02 : 0.0;
      dup_ = rng_.chance(0.3) ? 0.03 : 0.0;
      slow_ = rng_.chance(0.7) ? 0.1 : 0.0;
    }
    early_ = rng_.chance(0.8) ? 0.5 + 0.5 * rng_.chance(0.5) : 0.0;
    crashEarly_ = early_ > 0 ? 0.01 : 0.0;
    hold_ = early_ > 0 ? 0.3 : 0.0;
    config_ = std::to_string(voters) + " voters, early " + std::to_string(early_) +
              ", pre-vote " + (o.preVote ? "on" : "off") +
              ", check-quorum " + (o.checkQuorum ? "on" : "off") + ", max-inflight " +
              std::to_string(o.maxInflight) + ", max-bytes " + std::to_string(o.maxBytes) +
              ", chunk-bytes " + std::to_string(o.chunkBytes) + ", drop " + std::to_string(drop_) +
              ", dup " + std::to_string(dup_) + ", slow " + std::to_string(slow_);
    std::vector<NodeId> ids;
    for (NodeId i = 1; i <= voters; ++i)
      ids.push_back(i);
    cluster_.addVoters(ids, o);
    // The adversary keeps the membership fixed: it is after the commit rule.
    if (!adversarial) {
      joiner_ = voters + 1;
      cluster_.addJoiner(joiner_, o);
    }

    cluster_.onApply = [this](NodeId id, const Entry& e) {
      auto [it, fresh] = committed_.emplace(e.index, std::make_pair(e.term, e.data));
      normal_[e.index] = e.type == EntryType::Normal;
      if (fresh && e.type == EntryType::ConfChange)
        ++confChanges;
      check(fresh || (it->second.first == e.term && it->second.second == e.data),
            "node " + std::to_string(id) + " applied " + describeEntry(e) +
                " but index " + std::to_string(e.index) + " was committed as term " +
                std::to_string(it->second.first));
    };
    cluster_.onSoftState = [this](NodeId id, const SoftState& s) {
      if (s.role != Role::Leader)
        return;
      if (mode_ == Mode::Adversarial)
        planCut(id, cluster_.node(id).raft->term());
      // Leader completeness (paper §5.4.1): a new leader holds every committed entry.
      const RaftLog& log = cluster_.node(id).raft->log();
      for (const auto& [idx, te] : committed_) {
        if (idx < log.firstIndex())
          continue;
        check(idx <= log.lastIndex() && log.termOrZero(idx) == te.first,
              "leader " + std::to_string(id) + " of term " +
                  std::to_string(cluster_.node(id).raft->term()) + " lacks committed index " +
                  std::to_string(idx));
      }
    };

    int ticks = long_ ? 3000 : 300;
    constexpr int kSubsteps = 4;
    for (tick_ = 0; tick_ < ticks; ++tick_) {
      for (NodeId id : cluster_.ids())
        if (cluster_.node(id).raft)
          cluster_.node(id).raft->tick();
      chaos(tick_);
      for (int s = 0; s < kSubsteps; ++s)
        step();
      if (tick_ % 50 == 0)
        checkLogMatching();
    }

    // Heal everything; a proposal must then commit within a bounded number of ticks.
    faults_ = false;
    cluster_.heal();
    for (NodeId id : cluster_.ids())
      cluster_.restart(id);
    // Liveness: with the network whole again, a proposal commits within a bound, and every
    // member applies it soon after (a learner may first need a whole snapshot in chunks).
    // Snapshots go one chunk per round trip, so the bound grows with what must be streamed.
    uint64_t maxSnapshot = 0;
    for (NodeId id : cluster_.ids())
      maxSnapshot = std::max(maxSnapshot, cluster_.node(id).storage->snapshotMeta().size);
    const int transfer = static_cast<int>(3 * (maxSnapshot / chunkBytes_ + 1));
    const int kCommitTicks = 200 + transfer;
    const int kCatchUpTicks = 1000 + transfer;
    std::optional<Index> finalIndex;
    Term finalTerm = 0;
    NodeId finalLeader = kNoNode;
    bool committed = false;
    bool everywhere = false;
    for (int t = 0; t < kCommitTicks + kCatchUpTicks && !everywhere; ++t, ++tick_) {
      check(committed || t < kCommitTicks,
            "after healing, a proposal did not commit within " + std::to_string(kCommitTicks) +
                " ticks");
      for (NodeId id : cluster_.ids())
        cluster_.node(id).raft->tick();
      NodeId lead = leader();
      if (!committed && lead &&
          (!finalIndex || finalLeader != lead || cluster_.node(lead).raft->term() != finalTerm)) {
        auto r = cluster_.node(lead).raft->propose("final");
        if (r) {
          finalIndex = *r;
          finalLeader = lead;
          finalTerm = cluster_.node(lead).raft->term();
        }
      }
      for (int s = 0; s < kSubsteps; ++s)
        step();
      if (!finalIndex)
        continue;
      auto it = committed_.find(*finalIndex);
      if (it == committed_.end() || it->second.second != "final")
        continue;
      committed = true;
      NodeId l = leader();
      if (!l)
        continue;
      const ConfState& cs = cluster_.node(l).raft->confState();
      everywhere = true;
      for (NodeId id : cluster_.ids()) {
        bool member = std::count(cs.voters.begin(), cs.voters.end(), id) ||
                      std::count(cs.learners.begin(), cs.learners.end(), id);
        if (member && cluster_.node(id).applied < *finalIndex)
          everywhere = false;
      }
    }
    check(everywhere, "after healing, the final proposal committed but not every member applied "
                      "it within " + std::to_string(kCatchUpTicks) + " more ticks");
    checkLogMatching();
    checkAppliedPrefixes();
  } catch (const Failure& f) {
    std::string out =
        "tick " + std::to_string(tick_) + ": " + f.what + "\n    (" + config_ + ")";
    for (NodeId id : cluster_.ids()) {
      TestNode& n = cluster_.node(id);
      if (!n.raft) {
        out += "\n    node " + std::to_string(id) + " down";
        continue;
      }
      NodeStatus st = n.raft->status();
      out += "\n    node " + std::to_string(id) + " " + roleName(st.role) + " term " +
             std::to_string(st.term) + " leader " + std::to_string(st.leader) + " commit " +
             std::to_string(st.commit) + " applied " + std::to_string(n.applied) + " last " +
             std::to_string(st.lastIndex) + " first " + std::to_string(n.raft->log().firstIndex()) +
             " " + describeConfState(st.conf);
      for (const PeerStatus& p : st.peers)
        out += "\n      peer " + std::to_string(p.id) + " match " + std::to_string(p.match) +
               " next " + std::to_string(p.next) + " " + progressStateName(p.state) +
               (p.learner ? " learner" : "") + (p.recentActive ? " active" : "") +
               " snap " + std::to_string(p.pendingSnapshot) + "@" + std::to_string(p.snapshotOffset);
    }
    return out;
  }
  return std::nullopt;
}

}  // namespace
}  // namespace shoal::raft::test

int main(int argc, char** argv) {
  using shoal::raft::test::Mode;
  uint64_t seeds = 1000;
  uint64_t adversarialSeeds = 1000;
  uint64_t first = 1;
  bool one = false;
  bool longRun = false;
  std::string mode = "both";
  int maxFailures = 5;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--seeds" && i + 1 < argc) {
      seeds = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--adversarial-seeds" && i + 1 < argc) {
      adversarialSeeds = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--seed" && i + 1 < argc) {
      first = std::strtoull(argv[++i], nullptr, 10);
      one = true;
    } else if (a == "--first" && i + 1 < argc) {
      first = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--mode" && i + 1 < argc) {
      mode = argv[++i];
    } else if (a == "--max-failures" && i + 1 < argc) {
      maxFailures = std::atoi(argv[++i]);
    } else if (a == "--long") {
      longRun = true;
    } else {
      mode = "";
      break;
    }
  }
  if (mode != "both" && mode != "random" && mode != "adversarial") {
    std::fprintf(stderr,
                 "usage: %s [--mode both|random|adversarial] [--seeds N] [--adversarial-seeds M]\n"
                 "          [--first S] [--seed S] [--max-failures K] [--long]\n"
                 "  --mode M               which simulations to run (default both)\n"
                 "  --seeds N              random-fault seeds (default 1000)\n"
                 "  --adversarial-seeds M  adversarial seeds (default 1000)\n"
                 "  --first S              first seed of each mode (default 1)\n"
                 "  --seed S               replay seed S of the mode given by --mode\n"
                 "  --max-failures K       stop after K failed seeds (default 5)\n"
                 "  --long                 3000 ticks per seed instead of 300\n",
                 argv[0]);
    return 2;
  }
  if (one) {
    if (mode == "both") {
      std::fprintf(stderr,
                   "--seed replays one simulation: add --mode random or --mode adversarial\n");
      return 2;
    }
    seeds = adversarialSeeds = 1;
  }
  std::vector<std::pair<Mode, uint64_t>> runs;
  if (mode != "adversarial")
    runs.emplace_back(Mode::Random, seeds);
  if (mode != "random")
    runs.emplace_back(Mode::Adversarial, adversarialSeeds);

  auto start = std::chrono::steady_clock::now();
  uint64_t total = 0;
  uint64_t adversarialRun = 0;
  int failed = 0;
  for (auto [m, count] : runs) {
    for (uint64_t s = first; s < first + count && failed < maxFailures; ++s) {
      shoal::raft::test::Sim sim(s, m, longRun);
      ++total;
      if (m == Mode::Adversarial)
        ++adversarialRun;
      if (auto f = sim.run()) {
        ++failed;
        std::printf("%s seed %llu FAILED: %s\n  replay: %s --mode %s --seed %llu%s\n",
                    shoal::raft::test::modeName(m), static_cast<unsigned long long>(s),
                    f->c_str(), argv[0], shoal::raft::test::modeName(m),
                    static_cast<unsigned long long>(s), longRun ? " --long" : "");
      }
    }
  }
  using shoal::raft::MessageType;
  namespace t = shoal::raft::test;
  std::printf("delivered: %llu MsgVote, %llu MsgPreVote, %llu MsgApp, %llu MsgSnap, "
              "%llu MsgTimeoutNow, %llu MsgReadIndexResp; %llu conf changes committed\n",
              static_cast<unsigned long long>(t::delivered[size_t(MessageType::Vote)]),
              static_cast<unsigned long long>(t::delivered[size_t(MessageType::PreVote)]),
              static_cast<unsigned long long>(t::delivered[size_t(MessageType::App)]),
              static_cast<unsigned long long>(t::delivered[size_t(MessageType::Snap)]),
              static_cast<unsigned long long>(t::delivered[size_t(MessageType::TimeoutNow)]),
              static_cast<unsigned long long>(t::delivered[size_t(MessageType::ReadIndexResp)]),
              static_cast<unsigned long long>(t::confChanges));
  std::printf("sent before persisting: %llu messages; %llu crashes between sending and "
              "persisting\n",
              static_cast<unsigned long long>(t::sentEarly),
              static_cast<unsigned long long>(t::crashedUnpersisted));
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("raft-sim: %llu seeds, %d failed (adversarial %llu), %.1f s%s\n",
              static_cast<unsigned long long>(total), failed,
              static_cast<unsigned long long>(adversarialRun), secs,
              failed >= maxFailures ? " (stopped at the failure limit)" : "");
  return failed ? 1 : 0;
}
