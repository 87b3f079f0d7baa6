#include "services/raftd/node.h"

#include <sodium.h>

#include <algorithm>
#include <filesystem>

#include <spdlog/spdlog.h>

#include "common/curve.h"
#include "common/node_dir.h"
#include "common/proc.h"
#include "services/raftd/codec.h"
#include "services/raftd/manager_status.h"
#include "services/raftd/protocols.h"
#include "services/raftd/snapshot.h"

namespace shoal::raftd {
namespace {

using namespace std::chrono_literals;

// A Normal entry's data: format byte, proposer node id, the proposer's boot id, proposal
// sequence, time of proposal (Unix ns, so every manager writes the same meta), then the
// StoreTxn. Format 1 (no boot id) is still read: its entries are never matched to a caller,
// since every process since proposes format 2.
constexpr uint8_t kProposalFormatV1 = 1;
constexpr size_t kProposalHeaderV1 = 1 + 8 + 8 + 8;
constexpr uint8_t kProposalFormat = 2;
constexpr size_t kProposalHeader = 1 + 8 + 8 + 8 + 8;

// When a store would pass this share of its map, new writes are refused (bug: a full map
// used to stop raftd); reads go on.
constexpr double kStoreFullShare = 0.9;
// What the proposals waiting to commit may hold together (etcd's MaxUncommittedEntriesSize).
constexpr size_t kMaxProposalBytes = 64u << 20;
// Peer messages held while a snapshot installs; raft recovers from the ones dropped past it.
constexpr size_t kMaxHeldMessages = 4096;
// How often the leader compares the managers' Node objects with who leads and answers.
constexpr auto kManagerStatusPeriod = std::chrono::milliseconds(300);

const char* const kNotInSwarm =
    "this node is not in a swarm; run `shoal swarm init` or `shoal swarm join`";

void putU64(std::string& out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((v >> (i * 8)) & 0xff));
}
uint64_t getU64(std::string_view in, size_t at) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(in[at + i]);
  return v;
}
std::string beKey(uint64_t v) {
  std::string s;
  putU64(s, v);
  return s;
}

uint64_t randomU64() {
  uint64_t v = 0;
  while (v == 0) randombytes_buf(&v, sizeof v);
  return v;
}

bus::Buffer storeReply(flatbuffers::FlatBufferBuilder& fbb, storeapi::Body type,
                       flatbuffers::Offset<void> body) {
  return bus::message<storeapi::Envelope>(fbb, type, body);
}

// What a caller learns about a write whose fate this node cannot know any more.
const char* const kMaybeApplied =
    "it may or may not have been applied; read the object before retrying a write that is not "
    "idempotent";

}  // namespace

RaftNode::RaftNode(NodeHost& host, std::string stateDir, const NodeOptions& options)
    : host_(host), stateDir_(std::move(stateDir)), options_(options),
      rng_(options.seed ? options.seed : randomU64()) {
  while (bootId_ == 0) bootId_ = rng_();
}

RaftNode::~RaftNode() {
  stopped_ = true;
  host_.waitBackground();
  if (deferredTimer_) host_.cancel(deferredTimer_);
  if (tickTimer_) host_.cancel(tickTimer_);
  if (statusTimer_) host_.cancel(statusTimer_);
  for (auto& [seq, f] : forwarded_) host_.cancelPeerCall(f.address, f.peerCall);
}

Result<std::unique_ptr<RaftNode>> RaftNode::open(NodeHost& host, const std::string& stateDir,
                                                 const NodeOptions& options) {
  std::unique_ptr<RaftNode> node(new RaftNode(host, stateDir, options));
  if (auto st = node->openState(); !st) return st.error();
  auto self = node->loadSelf();
  if (!self) return self.error();
  if (!*self) {
    spdlog::info("{}: waiting idle", kNotInSwarm);
    host.setStatusText("not in a swarm");
    return node;
  }
  if (auto st = host.listenPeers(node->listenAddr_, node->advertiseAddr_); !st) return st.error();
  if (auto st = node->run(); !st) {
    host.closePeers();
    return st.error();
  }
  return node;
}

Status RaftNode::run() {
  if (auto st = loadMembers(); !st) return st;
  refreshPeerKeys();
  if (auto st = createCore(); !st) return st;
  onSoftState({raft_->leader(), raft_->role()});
  startTicking();
  statusTimer_ = host_.every(kManagerStatusPeriod, [this] { writeManagerStatus(); });
  spdlog::info("raft node {:x} of cluster {:x}: peers reach it at {}", id_, clusterId_, advertiseAddr_);
  return {};
}

Result<bool> RaftNode::loadSelf() {
  auto txn = env_->read();
  if (!txn) return txn.error();
  auto listen = txn->get(selfTable_, "listen");
  if (!listen) return listen.error();
  if (!*listen) return false;
  auto advertise = txn->get(selfTable_, "advertise");
  if (!advertise) return advertise.error();
  auto cluster = txn->get(selfTable_, "cluster");
  if (!cluster) return cluster.error();
  auto seeds = txn->get(selfTable_, "seeds");
  if (!seeds) return seeds.error();
  if (!*advertise || !*cluster || (*cluster)->size() != 8 || id_ == 0)
    return Error{"raftd's identity in " + stateDir_ + "/db (table raft.self) is incomplete; "
                 "this manager cannot rejoin its cluster: move the state dir away and join again"};
  listenAddr_ = std::string(**listen);
  advertiseAddr_ = std::string(**advertise);
  clusterId_ = getU64(**cluster, 0);
  seeds_.clear();
  if (*seeds) {
    auto j = nlohmann::json::parse(**seeds, nullptr, false);
    if (j.is_array())
      for (auto& p : j)
        if (p.is_object())
          seeds_.push_back({p.value("id", uint64_t{0}), p.value("addr", ""), p.value("key", "")});
  }
  return true;
}

Status RaftNode::saveSelf(lmdb::WriteTxn& txn) {
  nlohmann::json seeds = nlohmann::json::array();
  for (auto& p : seeds_) seeds.push_back({{"id", p.id}, {"addr", p.address}, {"key", p.publicKey}});
  if (auto s = txn.put(selfTable_, "listen", listenAddr_); !s) return s;
  if (auto s = txn.put(selfTable_, "advertise", advertiseAddr_); !s) return s;
  if (auto s = txn.put(selfTable_, "cluster", beKey(clusterId_)); !s) return s;
  return txn.put(selfTable_, "seeds", seeds.dump());
}

void RaftNode::startTicking() {
  // Ticks start at a random phase: members started together (by systemd at boot, by a
  // test) would otherwise tick in step, and two that lose their leader at the same moment
  // would campaign in the same instant and split the vote (seen: one failover in three
  // took an extra election timeout).
  auto phase = std::chrono::microseconds(rng_() % static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(options_.tick).count()));
  tickTimer_ = host_.after(phase, [this] {
    tickTimer_ = host_.every(options_.tick, [this] { onTick(); });
  });
}

void RaftNode::stop() {
  failProposals("raftd is stopping");
  failReads(wire::ErrorCode::Unavailable, "raftd is stopping; retry on another manager", false);
  for (auto& [seq, f] : forwarded_) {
    host_.cancelPeerCall(f.address, f.peerCall);
    if (!f.call->answered())
      f.call->fail(wire::ErrorCode::Indeterminate,
                   std::string("raftd stopped while this request was forwarded to the leader; ") +
                       kMaybeApplied);
  }
  forwarded_.clear();
}

void RaftNode::fatal(const std::string& why) {
  spdlog::critical("{}; stopping", why);
  stopped_ = true;
  host_.fatal(why);
}

raft::Index RaftNode::applied() const { return storage_->applied(); }

Status RaftNode::openState() {
  // What a leave() interrupted by a crash left behind (it renames before it removes).
  std::error_code ec;
  for (auto name : {"/db.leaving", "/snapshots.leaving"}) std::filesystem::remove_all(stateDir_ + name, ec);
  lmdb::Options lo;
  // The whole map at once: it only reserves address space, and growing it later would wait
  // for every read transaction of this process (the snapshot copier's among them).
  lo.mapSize = options_.maxStoreBytes;
  lo.maxMapSize = options_.maxStoreBytes;
  auto env = lmdb::Environment::open(stateDir_ + "/db", lo);
  if (!env) return env.error();
  env_ = std::move(env).value();
  auto storage = RaftStorage::open(*env_, stateDir_ + "/snapshots");
  if (!storage) return storage.error();
  storage_ = std::move(storage).value();
  auto store = store::Store::open(*env_);
  if (!store) return store.error();
  store_ = std::move(store).value();
  auto members = env_->table("member.peers");
  if (!members) return members.error();
  membersTable_ = *members;
  auto cluster = env_->table("member.cluster");
  if (!cluster) return cluster.error();
  clusterTable_ = *cluster;
  // "raft." tables are this server's own: never copied into a snapshot (snapshot.cpp).
  auto self = env_->table("raft.self");
  if (!self) return self.error();
  selfTable_ = *self;
  id_ = storage_->nodeId();
  return {};
}

Status RaftNode::loadMembers() {
  auto txn = env_->read();
  if (!txn) return txn.error();
  std::map<raft::NodeId, std::string> found;
  auto st = txn->scanPrefix(membersTable_, "", [&](std::string_view k, std::string_view v) {
    if (k.size() == 8) found[getU64(k, 0)] = std::string(v);
    return true;
  });
  if (!st) return st;
  auto cid = txn->get(clusterTable_, "id");
  if (!cid) return cid.error();
  if (*cid && (*cid)->size() == 8 && clusterId_ == 0) clusterId_ = getU64(**cid, 0);
  // joinRaft's peers stand in for the member table until the leader's snapshot fills it.
  for (auto& p : seeds_) found.emplace(p.id, p.address);
  for (auto it = peers_.begin(); it != peers_.end();) {
    auto now = found.find(it->first);
    if (now == found.end() || now->second != it->second) {
      host_.dropPeer(it->second);
      it = peers_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& [id, addr] : found) peers_.emplace(id, addr);
  return {};
}

Status RaftNode::createCore() {
  raft::Config cfg;
  cfg.id = id_;
  cfg.electionTicks = options_.electionTicks;
  cfg.heartbeatTicks = options_.heartbeatTicks;
  cfg.applied = storage_->applied();
  cfg.random = [this] { return static_cast<uint32_t>(rng_()); };
  auto core = raft::Raft::create(std::move(cfg), *storage_);
  if (!core) return core.error();
  raft_ = std::move(core).value();
  return {};
}

void RaftNode::peerDisconnected(const std::string& address) {
  if (!raft_ || installing_ || raft_->role() != raft::Role::Follower) return;
  raft::NodeId leader = raft_->leader();
  if (leader == 0 || addressOf(leader) != address) return;
  // The leader's process died or its host went away: the kernel closed the connection
  // long before an election timeout would tell us. Forget it and elect sooner.
  ++leaderDisconnects_;
  spdlog::info("connection to leader {:x} ({}) closed: electing a new leader early", leader, address);
  raft_->forgetLeader();
  scheduleReady();
}

std::string RaftNode::addressOf(raft::NodeId id) const {
  auto it = peers_.find(id);
  return it == peers_.end() ? std::string() : it->second;
}

// --- driving the core -----------------------------------------------------------------

void RaftNode::onTick() {
  if (stopped_ || !raft_) return;
  expireWaiting();
  if (installing_) return;  // the core reads the storage the install replaces
  raft_->tick();
  if (raft_->role() == raft::Role::Leader) promoteCaughtUpLearners();
  scheduleReady();
}

void RaftNode::scheduleReady() {
  if (readyScheduled_ || stopped_ || !raft_) return;
  readyScheduled_ = true;
  // Posted: runs after the host has delivered what arrived, so one Ready (and one LMDB
  // commit) covers many messages and proposals — group commit.
  host_.post([this] {
    readyScheduled_ = false;
    processReady();
  });
}

void RaftNode::processReady() {
  if (!raft_) return;  // the node left its cluster meanwhile
  while (!stopped_ && !installing_ && raft_->hasReady()) {
    raft::Ready rd = raft_->ready();
    ++readyBatches_;
    for (auto& chunk : rd.snapshotChunks) {
      if (auto st = storage_->writeChunk(chunk); !st) {
        // Its acknowledgement is in this Ready: never acknowledge what was not written.
        return fatal("cannot write a snapshot chunk: " + st.error().message);
      }
    }
    if (rd.snapshot) {
      // Entries this follower deferred precede the snapshot: apply them first, or they would
      // land on top of the newer state and move the applied index back.
      if (!deferred_.empty() && !flushDeferred()) return;
      return startInstall(std::move(rd));
    }
    if (!finishReady(rd)) return;
  }
  if (stopped_ || installing_) return;
  // A read or a watcher that arrived since, or leadership gained, wants the deferred entries.
  if (!deferred_.empty() && mustApplyNow(nullptr) && !flushDeferred()) return;
  afterApply();
}

bool RaftNode::finishReady(raft::Ready& rd) {
  // A leader's appends go out while its own copy is written (dissertation §10.2.1): the
  // core counts that copy only in advance(), once it is durable.
  for (auto& m : rd.messages)
    if (rd.mayPrecedePersist(m)) send(m);
  if (auto st = persistAndApply(rd); !st) {
    fatal("cannot persist raft state: " + st.error().message);
    return false;
  }
  for (auto& m : rd.messages)
    if (!rd.mayPrecedePersist(m)) send(m);
  for (auto& rs : rd.readStates) {
    // Only this incarnation's contexts: a late answer to a read asked before a restart must
    // not release a new read with the same sequence at an older index.
    if (rs.context.size() != 16 || getU64(rs.context, 0) != bootId_) continue;
    auto it = reads_.find(getU64(rs.context, 8));
    if (it != reads_.end()) it->second.index = rs.index;
  }
  if (rd.softState) onSoftState(*rd.softState);
  raft_->advance(rd);
  return true;
}

void RaftNode::afterApply() {
  if (nodesChanged_) {
    nodesChanged_ = false;
    refreshPeerKeys();
  }
  // Reads whose index has been applied can now be answered.
  raft::Index applied = storage_->applied();
  for (auto it = reads_.begin(); it != reads_.end();) {
    if (it->second.index && *it->second.index <= applied) {
      answerRead(it->second.call);
      it = reads_.erase(it);
    } else {
      ++it;
    }
  }
  maybeSnapshot();
  pumpWatchers();
}

// A follower applies committed entries in batches: up to kApplyBatch entries or kApplyDelay
// after the first. Applying is most of a follower's work (each object written is a random
// B-tree leaf copied and flushed, where log appends fill sequential pages), and a batch shares
// the branch pages, the transaction and its flushes. Under shoal-bench raft a follower with
// no apply at all used 45% less CPU; with 10 ms batches the cluster wrote about 15% more
// (50 ms did more still, but a follower's loop then stalls long enough on the batch to push
// p99 past 25 ms). Nothing waits on a follower's apply
// except its own readers, so a linearizable read, a watcher, a configuration change, a
// snapshot to install or leadership makes it apply at once; local reads may lag by up to kApplyDelay.
// Deferred entries are committed and in the durable log: a crash re-applies them from there.
namespace {
constexpr size_t kApplyBatch = 1024;
constexpr auto kApplyDelay = std::chrono::milliseconds(10);
}  // namespace

bool RaftNode::mustApplyNow(const raft::Ready* rd) const {
  if (raft_->role() == raft::Role::Leader || !reads_.empty() || !watchers_.empty()) return true;
  if (!rd) return false;
  if (deferred_.size() + rd->committedEntries.size() >= kApplyBatch) return true;
  for (auto& e : rd->committedEntries)
    if (e.type == raft::EntryType::ConfChange) return true;
  return false;
}

Status RaftNode::persistAndApply(const raft::Ready& rd) {
  bool applyNow = mustApplyNow(&rd);
  if (!applyNow) {
    if (deferred_.empty() && !rd.committedEntries.empty())
      deferredTimer_ = host_.after(kApplyDelay, [this] {
        deferredTimer_ = 0;
        if (!deferred_.empty() && !installing_ && flushDeferred()) afterApply();
      });
    deferred_.insert(deferred_.end(), rd.committedEntries.begin(), rd.committedEntries.end());
  }
  bool applies = applyNow && (!deferred_.empty() || !rd.committedEntries.empty());
  if (rd.entries.empty() && !rd.hardState && !applies) return {};
  std::vector<std::function<void()>> after;
  auto st = env_->update([&](lmdb::WriteTxn& txn) -> Status {
    after.clear();  // update() may run this again
    if (!rd.entries.empty())
      if (auto s = storage_->append(txn, rd.entries); !s) return s;
    if (rd.hardState)
      if (auto s = storage_->setHardState(txn, *rd.hardState); !s) return s;
    if (!applies) return {};
    return applyCommitted(txn, rd.committedEntries, after);
  });
  if (!st) return st;
  if (applies) appliedDeferred(rd.committedEntries.size());
  for (auto& fn : after) fn();
  return {};
}

Status RaftNode::applyCommitted(lmdb::WriteTxn& txn, const std::vector<raft::Entry>& entries,
                                std::vector<std::function<void()>>& after) {
  for (auto& e : deferred_)
    if (auto s = applyEntry(txn, e, after); !s) return s;
  for (auto& e : entries)
    if (auto s = applyEntry(txn, e, after); !s) return s;
  return storage_->setApplied(txn, entries.empty() ? deferred_.back().index : entries.back().index);
}

void RaftNode::appliedDeferred(size_t more) {
  appliedEntries_ += deferred_.size() + more;
  deferred_.clear();
  if (deferredTimer_) host_.cancel(deferredTimer_);
  deferredTimer_ = 0;
}

bool RaftNode::flushDeferred() {
  std::vector<std::function<void()>> after;
  auto st = env_->update([&](lmdb::WriteTxn& txn) -> Status {
    after.clear();  // update() may run this again
    return applyCommitted(txn, {}, after);
  });
  if (!st) {
    fatal("cannot apply committed entries " + std::to_string(deferred_.front().index) + ".." +
          std::to_string(deferred_.back().index) + ": " + st.error().message);
    return false;
  }
  appliedDeferred(0);
  for (auto& fn : after) fn();
  return true;
}

Status RaftNode::applyEntry(lmdb::WriteTxn& txn, const raft::Entry& e,
                            std::vector<std::function<void()>>& after) {
  if (e.type == raft::EntryType::ConfChange) {
    Status st;
    applyConfChange(txn, e, after, st);
    return st;
  }
  if (e.data.empty()) return {};  // a new leader's empty entry
  auto format = static_cast<uint8_t>(e.data[0]);
  size_t header = format == kProposalFormat ? kProposalHeader : kProposalHeaderV1;
  if ((format != kProposalFormat && format != kProposalFormatV1) || e.data.size() < header) {
    spdlog::error("committed entry {} has an unknown format; skipped", e.index);
    return {};
  }
  int64_t when = static_cast<int64_t>(getU64(e.data, header - 8));
  auto verdict = store_->apply(txn, std::string_view(e.data).substr(header), e.index, when);
  if (!verdict) return verdict.error();
  // Answered at once, before this LMDB transaction commits: the entry is committed in the
  // Raft log (durable on a quorum, the leader's copy included), and its verdict is a
  // function of that log, so a crash now re-applies it with the same verdict. Readers do not
  // see it early: linearizable reads wait for the applied index, which moves on commit.
  if (verdict->ok() && !nodesChanged_) {
    // Node objects decide which peer keys are admitted: refresh them once this applies.
    std::string_view batch = std::string_view(e.data).substr(header);
    flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(batch.data()), batch.size());
    if (objects::VerifyStoreTxnBuffer(v)) {
      auto* t = objects::GetStoreTxn(batch.data());
      if (t->changes())
        for (auto* c : *t->changes()) nodesChanged_ |= c->kind() == objects::ObjectKind::Node;
    }
  }
  if (format == kProposalFormat && getU64(e.data, 1) == id_ && getU64(e.data, 9) == bootId_)
    answerProposal(e, *verdict);
  return {};
}

void RaftNode::answerProposal(const raft::Entry& e, const Status& verdict) {
  auto p = proposals_.find(getU64(e.data, 17));
  if (p == proposals_.end()) return;
  if (!verdict.ok()) {
    p->second.call.fail(static_cast<wire::ErrorCode>(verdict.error().code), verdict.error().message);
  } else {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = storeapi::CreateTxnReply(fbb, e.index);
    p->second.call.reply(storeReply(fbb, storeapi::Body::TxnReply, body.Union()));
  }
  proposalBytes_ -= p->second.bytes;
  proposals_.erase(p);  // a retried transaction finds it answered
}

void RaftNode::applyConfChange(lmdb::WriteTxn& txn, const raft::Entry& e,
                               std::vector<std::function<void()>>& after, Status& st) {
  auto cc = raft::decodeConfChange(e.data);
  if (!cc) {
    spdlog::error("committed conf change at {} is unreadable: {}", e.index, cc.error().message);
    return;
  }
  if (cc->type == raft::ConfChangeType::AddLearner && !cc->context.empty()) {
    if (auto s = txn.put(membersTable_, beKey(cc->node), cc->context); !s) {
      st = s;
      return;
    }
  } else if (cc->type == raft::ConfChangeType::Remove) {
    if (auto s = txn.del(membersTable_, beKey(cc->node)); !s) {
      st = s.error();
      return;
    }
  }
  after.push_back([this, c = *cc, index = e.index] {
    static const char* names[] = {"added learner", "promoted", "removed"};
    spdlog::info("membership at {}: {} node {:x} {}", index, names[static_cast<int>(c.type)],
                 c.node, c.context);
    if (auto st = loadMembers(); !st) spdlog::error("{}", st.error().message);
    if (c.type == raft::ConfChangeType::Remove && c.node == id_)
      spdlog::warn("this node was removed from the cluster; it no longer takes part");
  });
  // Answer the member request that proposed it. Its data carries no sequence: match the
  // index and the term it was proposed at, so an entry of another leader that took that
  // index is not taken for it.
  for (auto it = proposals_.begin(); it != proposals_.end(); ++it) {
    if (it->second.index != e.index || it->second.term != e.term) continue;
    after.push_back([this, seq = it->first, node = cc->node, index = e.index] {
      auto p = proposals_.find(seq);
      if (p == proposals_.end()) return;
      flatbuffers::FlatBufferBuilder fbb;
      auto body = storeapi::CreateMemberReply(fbb, node, index);
      p->second.call.reply(storeReply(fbb, storeapi::Body::MemberReply, body.Union()));
      proposalBytes_ -= p->second.bytes;
      proposals_.erase(p);
    });
    break;
  }
}

void RaftNode::startInstall(raft::Ready rd) {
  const raft::SnapshotMeta meta = *rd.snapshot;
  installing_ = true;
  // Local reads would see the tables being replaced: refused until the install is done
  // (etcd does the same); waiting linearizable reads fail and are retried by their callers.
  failReads(wire::ErrorCode::Unavailable,
            "this manager is installing a snapshot from the leader; retry shortly", false);
  host_.background([this, meta] { return installSnapshot(meta); },
                   [this, rd = std::move(rd)](Status st) mutable { installed(std::move(rd), st); });
}

Status RaftNode::installSnapshot(const raft::SnapshotMeta& meta) {
  if (meta.size == 0) {
    // An empty snapshot carries only a configuration (a bootstrap's).
    return env_->update([&](lmdb::WriteTxn& txn) { return storage_->installSnapshot(txn, meta); });
  }
  auto path = storage_->completeIncoming(meta);
  if (!path) return path.error();
  lmdb::Options so;
  so.readOnly = true;
  so.flags = MDB_NOSUBDIR | MDB_NOLOCK;
  so.maxTables = 64;
  auto snap = lmdb::Environment::open(*path, so);
  if (!snap) return snap.error();

  // The snapshot holds the leader's state-machine tables (snapshot.h); replace ours by them.
  Result<std::vector<StateTable>> names = std::vector<StateTable>{};
  {
    // Tables are opened (below) with no transaction of this environment alive: a handle
    // opened meanwhile would not be valid in it.
    auto txn = (*snap)->read();
    if (!txn) return txn.error();
    names = stateTables(*txn);
    if (!names) return names.error();
  }
  std::vector<std::pair<lmdb::Table, lmdb::Table>> pairs;
  for (auto& t : *names) {
    auto from = (*snap)->table(t.name, t.flags);
    if (!from) return from.error();
    auto to = env_->table(t.name, t.flags);
    if (!to) return to.error();
    pairs.emplace_back(*from, *to);
  }
  auto src = (*snap)->read();
  if (!src) return src.error();
  return env_->update([&](lmdb::WriteTxn& txn) -> Status {
    if (auto s = copyTablesInto(txn, *src, pairs); !s) return s;
    return storage_->installSnapshot(txn, meta);
  });
}

void RaftNode::installed(raft::Ready rd, const Status& st) {
  installing_ = false;
  const raft::SnapshotMeta& meta = *rd.snapshot;
  // Nothing of this Ready may go out if its state is not durable: stop rather than
  // acknowledge what we do not have.
  if (!st) return fatal("cannot install snapshot " + std::to_string(meta.index) + ": " + st.error().message);
  if (meta.size > 0) {
    // The store's tables were replaced under it: reopen (its watch history starts afresh, so
    // watchers must resync).
    auto store = store::Store::open(*env_);
    if (!store) return fatal("cannot reopen the store after a snapshot: " + store.error().message);
    store_ = std::move(store).value();
    for (auto& w : watchers_) {
      flatbuffers::FlatBufferBuilder fbb;
      auto body = storeapi::CreateWatchEvents(fbb, true, meta.index);
      w.stream->send(storeReply(fbb, storeapi::Body::WatchEvents, body.Union()));
      w.stream->end();
    }
    watchers_.clear();
    ++snapshotsInstalled_;
    spdlog::info("installed snapshot at index {} term {} ({} bytes)", meta.index, meta.term, meta.size);
  }
  if (auto s = loadMembers(); !s) return fatal(s.error().message);
  nodesChanged_ = true;  // the store's Nodes came with the snapshot
  if (!finishReady(rd)) return;
  auto held = std::move(heldMessages_);
  heldMessages_.clear();
  for (auto& m : held) stepPeerMessage(m);
  scheduleReady();
}

void RaftNode::maybeSnapshot() {
  if (copying_ || installing_) return;  // one at a time
  raft::Index applied = storage_->applied();
  raft::SnapshotMeta held = storage_->snapshotMeta();
  // A bootstrap's snapshot is empty, but the member and cluster tables written at bootstrap
  // are not in the log: joining servers need a real snapshot, so take one as soon as anything
  // has been applied, here and now (before the first join can be handled; it is tiny).
  bool onlyBootstrap = held.size == 0 && held.index > 0 && applied > held.index;
  if (!onlyBootstrap && applied < held.index + options_.snapshotInterval) return;
  auto term = storage_->term(applied);
  if (!term) {
    spdlog::error("snapshot at {} failed: {}", applied, term.error().message);
    return;
  }
  Result<std::vector<StateTable>> names = std::vector<StateTable>{};
  if (auto listing = env_->read(); listing)
    names = stateTables(*listing);
  else
    names = listing.error();
  if (!names) {
    spdlog::error("snapshot at {} failed: {}", applied, names.error().message);
    return;
  }
  std::vector<std::pair<StateTable, lmdb::Table>> tables;
  for (auto& t : *names) {
    auto opened = env_->table(t.name, t.flags);
    if (!opened) {
      spdlog::error("snapshot at {} failed: {}", applied, opened.error().message);
      return;
    }
    tables.emplace_back(t, *opened);
  }
  // Everything is written on this thread, so this read transaction sees exactly the state
  // at `applied`; the copy from it runs off the loop.
  auto txn = env_->read();
  if (!txn) {
    spdlog::error("snapshot at {} failed: {}", applied, txn.error().message);
    return;
  }
  std::string dir = stateDir_ + "/snapshots/tmp";
  if (onlyBootstrap) {
    Status st = writeStateCopy(*txn, tables, dir);
    { auto done = std::move(*txn); }  // end the read before the snapshot is recorded
    finishSnapshot(st, dir, applied, *term, raft_->confState());
    return;
  }
  copying_ = true;
  auto reader = std::make_shared<lmdb::ReadTxn>(std::move(*txn));
  auto sum = std::make_shared<uint64_t>(0);
  host_.background(
      [reader, tables, dir, sum]() mutable -> Status {
        Status st = writeStateCopy(*reader, tables, dir);
        { auto done = std::move(*reader); }  // end the read before the loop records the snapshot
        if (!st) return st;
        auto checksum = snapshotChecksum(dir + "/data.mdb");
        if (!checksum) return checksum.error();
        *sum = *checksum;
        return {};
      },
      [this, dir, applied, term = *term, conf = raft_->confState(), sum](Status st) {
        copying_ = false;
        finishSnapshot(st, dir, applied, term, conf, *sum);
      });
}

void RaftNode::finishSnapshot(const Status& copied, const std::string& dir, raft::Index index,
                              raft::Term term, const raft::ConfState& conf, uint64_t checksum) {
  std::error_code ec;
  if (!copied) {
    spdlog::error("snapshot at {} failed: {}", index, copied.error().message);
    std::filesystem::remove_all(dir, ec);
    return;
  }
  // A snapshot received from the leader meanwhile may have overtaken this one (or be being
  // installed: the storage is not ours to touch until it is in).
  if (installing_) {
    std::filesystem::remove_all(dir, ec);
    return;
  }
  if (auto s = storage_->recordSnapshot(index, term, conf, dir + "/data.mdb", checksum); !s) {
    spdlog::warn("snapshot at {} not kept: {}", index, s.error().message);
    std::filesystem::remove_all(dir, ec);
    return;
  }
  std::filesystem::remove_all(dir, ec);
  raft::Index keepFrom = index > options_.keepEntries ? index - options_.keepEntries : 0;
  if (keepFrom > storage_->firstIndex()) {
    if (auto s = env_->update([&](lmdb::WriteTxn& txn) { return storage_->compact(txn, keepFrom); }); !s)
      spdlog::error("log compaction to {} failed: {}", keepFrom, s.error().message);
  }
  ++snapshotsTaken_;
  spdlog::info("snapshot taken at index {} term {} ({} bytes); log compacted to {}", index, term,
               storage_->snapshotMeta().size, keepFrom);
}

void RaftNode::send(const raft::Message& m) {
  std::string address = addressOf(m.to);
  if (address.empty()) {
    spdlog::debug("no address for node {:x}; message {} dropped", m.to, raft::messageTypeName(m.type));
    return;
  }
  host_.postToPeer(address, encodeMessage(m, clusterId_, advertiseAddr_));
}

void RaftNode::onSoftState(const raft::SoftState& s) {
  bool wasLeader = soft_.role == raft::Role::Leader;
  bool isLeader = s.role == raft::Role::Leader;
  if (s.leader != soft_.leader || wasLeader != isLeader) {
    if (isLeader) {
      spdlog::info("this node {:x} is the leader of term {}", id_, raft_->term());
      // A new leader writes the managers' status at once (itself Leader, the old one not).
      statusIndex_ = 0;
      host_.post([this] { writeManagerStatus(); });
    } else if (s.leader) {
      spdlog::info("node {:x} ({}) is the leader of term {}", s.leader, addressOf(s.leader), raft_->term());
    } else {
      spdlog::info("no leader in term {}", raft_->term());
    }
    for (auto& sub : leadershipSubs_) sub.dirty = true;
  }
  // The entries of waiting writes may still commit under the next leader, or be replaced:
  // their callers cannot be told which.
  if (wasLeader && !isLeader) failProposals("leadership was lost before the write was known to commit");
  if (s.leader != soft_.leader) {
    // A read not yet confirmed by the old leader never will be; one that was confirmed
    // only waits for this node to apply, which goes on.
    failReads(wire::ErrorCode::Unavailable,
              "the leader changed before it confirmed this read; retry", true);
    // Requests forwarded to the old leader would wait out their deadline: answer now so that
    // callers retry on the new one.
    for (auto& [seq, f] : forwarded_) {
      if (f.leader == s.leader) continue;
      host_.cancelPeerCall(f.address, f.peerCall);
      if (!f.call->answered())
        f.call->fail(wire::ErrorCode::Indeterminate,
                     std::string("the leader changed while this request was forwarded to it; ") +
                         kMaybeApplied);
    }
    std::erase_if(forwarded_, [&](auto& kv) { return kv.second.leader != s.leader; });
  }
  soft_ = s;
  host_.setStatusText(std::string(raft::roleName(s.role)) + ", term " + std::to_string(raft_->term()));
  pumpLeadership();
}

void RaftNode::promoteCaughtUpLearners() {
  auto st = raft_->status();
  for (raft::NodeId l : raft_->confState().learners) {
    // Only a learner that answers and holds the log can be counted on for a quorum.
    bool answering = false;
    for (auto& p : st.peers) answering |= p.id == l && p.recentActive && p.match > 0;
    if (answering && raft_->learnerCaughtUp(l, 50)) {
      auto r = raft_->proposeConfChange({raft::ConfChangeType::Promote, l, {}});
      if (r) spdlog::info("promoting learner {:x}: caught up", l);
      return;  // one change at a time
    }
  }
}

void RaftNode::failProposals(const std::string& why) {
  for (auto& [seq, p] : proposals_) p.call.fail(wire::ErrorCode::Indeterminate, why + "; " + kMaybeApplied);
  proposals_.clear();
  proposalBytes_ = 0;
}

void RaftNode::failReads(wire::ErrorCode code, const std::string& why, bool onlyUnconfirmed) {
  for (auto it = reads_.begin(); it != reads_.end();) {
    if (onlyUnconfirmed && it->second.index) {
      ++it;
      continue;
    }
    it->second.call.fail(code, why);
    it = reads_.erase(it);
  }
}

// Waiting requests end at their deadline (the caller's, or requestTimeout): a read whose
// ReadIndex answer was lost, or a write whose leader is cut off, must not wait for ever
// (and a waiting read keeps a follower from batching its applies).
void RaftNode::expireWaiting() {
  auto now = host_.now();
  for (auto it = reads_.begin(); it != reads_.end();) {
    if (it->second.deadline > now) {
      ++it;
      continue;
    }
    ++expiredReads_;
    it->second.call.fail(wire::ErrorCode::DeadlineExceeded,
                         "the read was not confirmed by a leader in time; retry");
    it = reads_.erase(it);
  }
  for (auto it = proposals_.begin(); it != proposals_.end();) {
    if (it->second.deadline > now) {
      ++it;
      continue;
    }
    it->second.call.fail(wire::ErrorCode::Indeterminate,
                         std::string("the write did not commit in time; ") + kMaybeApplied);
    proposalBytes_ -= it->second.bytes;
    it = proposals_.erase(it);
  }
}

// --- serving --------------------------------------------------------------------------

void RaftNode::stepPeerMessage(const raft::Message& m) {
  if (auto st = raft_->step(m); !st) spdlog::debug("step: {}", st.error().message);
}

void RaftNode::droppedPeerMessage(const std::string& why) {
  ++droppedPeerMessages_;
  peerWarning_.warn(why);
}

void RaftNode::servePeer(bus::Call call) {
  auto* env = call.as<raftpeer::Envelope>();
  if (!env) return serveForwarded(std::move(call));
  if (env->body_type() != raftpeer::Body::Message)
    return call.fail(wire::ErrorCode::Unimplemented, "raft peers send raft messages only");
  if (!raft_) return;  // not in a cluster: nobody should be talking to us
  auto* in = env->body_as_Message();
  if (in->cluster_id() != clusterId_)
    return droppedPeerMessage(fmt::format("dropped a raft message of cluster {:x} from {} (this is {:x})",
                                          in->cluster_id(), call.peerKey().empty() ? "?" : call.peerKey(),
                                          clusterId_));
  auto m = decodeMessage(*in);
  if (!m) return droppedPeerMessage("dropped a raft message: " + m.error().message);
  lastHeard_[m->from] = host_.now();
  if (in->from_address() && in->from_address()->size() && addressOf(m->from).empty()) {
    // A member the member table does not name yet (this node has not had the leader's
    // snapshot): answer it where it says it is, with the key it connected with.
    peers_[m->from] = in->from_address()->str();
    if (!call.peerKey().empty()) learnedKeys_[m->from] = call.peerKey();
  }
  if (installing_) {
    if (heldMessages_.size() < kMaxHeldMessages) heldMessages_.push_back(std::move(*m));
    return;
  }
  stepPeerMessage(*m);
  scheduleReady();
}

bool RaftNode::refuseIdle(bus::Call& call) {
  if (raft_) return false;
  call.fail(wire::ErrorCode::Unavailable, kNotInSwarm);
  return true;
}

void RaftNode::serveStore(bus::Call call) {
  auto* env = call.as<storeapi::Envelope>();
  if (!env) return call.fail(wire::ErrorCode::UnknownProtocol, "raftd serves the store protocol here");
  switch (env->body_type()) {
    case storeapi::Body::TxnRequest:
      if (refuseIdle(call)) return;
      return handleTxn(std::move(call));
    case storeapi::Body::GetRequest:
    case storeapi::Body::ListRequest:
      if (refuseIdle(call)) return;
      return handleRead(std::move(call));
    case storeapi::Body::WatchRequest:
      if (refuseIdle(call)) return;
      return handleWatch(std::move(call));
    case storeapi::Body::StatusRequest: {
      nlohmann::json j;
      status(j);
      host_.describe(j);
      flatbuffers::FlatBufferBuilder fbb;
      auto body = storeapi::CreateStatusReply(fbb, fbb.CreateString(j.dump()));
      return call.reply(storeReply(fbb, storeapi::Body::StatusReply, body.Union()));
    }
    case storeapi::Body::LeadershipRequest: {
      leadershipSubs_.push_back({call.openStream(), true});
      auto& sub = leadershipSubs_.back();
      sub.stream->onCredit([this] { pumpLeadership(); });
      pumpLeadership();
      return;
    }
    case storeapi::Body::AddMemberRequest:
    case storeapi::Body::RemoveMemberRequest:
    case storeapi::Body::TransferLeaderRequest:
      if (refuseIdle(call)) return;
      return handleMember(std::move(call));
    default:
      call.fail(wire::ErrorCode::Unimplemented,
                std::string("store message ") + storeapi::EnumNameBody(env->body_type()) +
                    " is not a request raftd serves");
  }
}

void RaftNode::serveForwarded(bus::Call call) {
  auto* env = call.as<storeapi::Envelope>();
  if (!env) return call.fail(wire::ErrorCode::UnknownProtocol, "raftd serves the store protocol here");
  switch (env->body_type()) {
    case storeapi::Body::TxnRequest:
    case storeapi::Body::AddMemberRequest:
    case storeapi::Body::RemoveMemberRequest:
    case storeapi::Body::TransferLeaderRequest:
      if (!raft_) return call.fail(wire::ErrorCode::Unavailable, "this raftd left its cluster");
      return serveStore(std::move(call));
    default:
      call.fail(wire::ErrorCode::Unimplemented,
                std::string("the raft peer port takes forwarded writes only, not ") +
                    storeapi::EnumNameBody(env->body_type()) + "; ask raftd.sock on a manager");
  }
}

void RaftNode::handleMember(bus::Call call) {
  if (raft_->role() != raft::Role::Leader) return forwardToLeader(std::move(call));
  auto* env = call.as<storeapi::Envelope>();
  if (auto* t = env->body_as_TransferLeaderRequest()) {
    auto st = raft_->transferLeadership(t->node_id());
    if (!st) return call.fail(wire::ErrorCode::InvalidArgument, st.error().message);
    scheduleReady();
    flatbuffers::FlatBufferBuilder fbb;
    auto body = storeapi::CreateMemberReply(fbb, t->node_id(), 0);
    return call.reply(storeReply(fbb, storeapi::Body::MemberReply, body.Union()));
  }
  raft::ConfChange cc;
  if (auto* a = env->body_as_AddMemberRequest()) {
    if (!a->address() || a->address()->size() == 0 || a->node_id() == 0)
      return call.fail(wire::ErrorCode::InvalidArgument, "AddMember needs a node id and an address host:port");
    cc = {raft::ConfChangeType::AddLearner, a->node_id(), a->address()->str()};
    peers_[a->node_id()] = a->address()->str();
  } else {
    auto* r = env->body_as_RemoveMemberRequest();
    auto& conf = raft_->confState();
    bool voter = std::count(conf.voters.begin(), conf.voters.end(), r->node_id());
    if (voter && conf.voters.size() <= 2 && r->node_id() != id_)
      spdlog::warn("removing voter {:x} leaves {} voter(s)", r->node_id(), conf.voters.size() - 1);
    cc = {raft::ConfChangeType::Remove, r->node_id(), {}};
  }
  if (refuseWrite(call, 0)) return;
  auto idx = raft_->proposeConfChange(cc);
  if (!idx) return call.fail(wire::ErrorCode::Unavailable, idx.error().message + "; retry");
  trackProposal(nextSeq_++, std::move(call), *idx, 0);
}

Loop::Clock::time_point RaftNode::deadlineOf(const bus::Call& call) const {
  auto ms = call.request().header().timeout_ms();
  return host_.now() + (ms ? bus::Millis(ms) : options_.requestTimeout);
}

bool RaftNode::refuseWrite(bus::Call& call, size_t bytes) {
  if (proposals_.size() >= options_.maxPendingProposals ||
      proposalBytes_ + bytes > kMaxProposalBytes) {
    ++refusedOverloaded_;
    call.fail(wire::ErrorCode::ResourceExhausted,
              "raftd is overloaded: " + std::to_string(proposals_.size()) + " writes (" +
                  std::to_string(proposalBytes_ >> 10) + " KiB) wait to commit; retry shortly");
    return true;
  }
  // A write costs about three times its bytes in the map before compaction: the log entry,
  // the object and its index entries. Counted with what already waits, so a burst between
  // ticks cannot fill the map (a full map stops the node: its Ready cannot be persisted).
  auto info = env_->info();
  if (info) {
    double after = static_cast<double>(info->usedBytes + 3 * (proposalBytes_ + bytes));
    storeNearlyFull_ = after > kStoreFullShare * static_cast<double>(info->mapSize);
  }
  if (storeNearlyFull_) {
    call.fail(wire::ErrorCode::ResourceExhausted,
              "the store is nearly full (" + std::to_string(info ? info->usedBytes >> 20 : 0) + " of " +
                  std::to_string(info ? info->mapSize >> 20 : 0) +
                  " MiB used); remove objects, or restart raftd with a larger --max-store-size; "
                  "reads still work");
    return true;
  }
  return false;
}

void RaftNode::trackProposal(uint64_t seq, bus::Call call, raft::Index index, size_t bytes) {
  auto deadline = deadlineOf(call);
  proposals_.emplace(seq, Proposal{std::move(call), index, raft_->term(), bytes, deadline});
  proposalBytes_ += bytes;
  scheduleReady();
}

void RaftNode::forwardToLeader(bus::Call call) {
  raft::NodeId leader = raft_->leader();
  std::string address = addressOf(leader);
  if (leader == 0 || leader == id_ || address.empty())
    return call.fail(wire::ErrorCode::Unavailable,
                     "no leader is known right now (an election may be under way); retry shortly");
  if (forwarded_.size() >= options_.maxPendingProposals) {
    ++refusedOverloaded_;
    return call.fail(wire::ErrorCode::ResourceExhausted,
                     "raftd is overloaded: " + std::to_string(forwarded_.size()) +
                         " requests wait on the leader; retry shortly");
  }
  // Re-send the caller's envelope as it is; the bus sets a fresh request id.
  std::string raw(call.request().bytes());
  auto held = std::make_shared<bus::Call>(std::move(call));
  auto timeout = held->request().header().timeout_ms() ? bus::Millis(held->request().header().timeout_ms())
                                                        : options_.requestTimeout;
  uint64_t seq = nextSeq_++;
  uint64_t id = host_.callPeer(address, kStoreProtocol, std::move(raw), timeout,
                               [this, held, seq](Result<bus::Frame> r) {
    forwarded_.erase(seq);
    if (held->answered()) return;
    if (r) return held->replyRaw(r->bytes());
    // A request that reached the leader may have been applied there before the answer was
    // lost; one that failed at the leader says so itself.
    auto code = static_cast<wire::ErrorCode>(r.error().code);
    if (code == wire::ErrorCode::DeadlineExceeded || code == wire::ErrorCode::Cancelled)
      return held->fail(wire::ErrorCode::Indeterminate,
                        "no answer from the leader: " + r.error().message + "; " + kMaybeApplied);
    held->fail(code, r.error().message);
  });
  forwarded_[seq] = {held, leader, address, id};
}

void RaftNode::handleTxn(bus::Call call) {
  if (raft_->role() != raft::Role::Leader) return forwardToLeader(std::move(call));
  auto* req = call.as<storeapi::Envelope>()->body_as_TxnRequest();
  if (!req->txn() || req->txn()->size() == 0)
    return call.fail(wire::ErrorCode::InvalidArgument, "a transaction needs at least one change");
  if (req->txn()->size() > store::Store::kMaxBytes)
    return call.fail(wire::ErrorCode::ResourceExhausted,
                     "a transaction may hold at most 1.5 MiB; split it into smaller batches");
  // Refuse what the store would refuse anyway before it costs a Raft entry; the store
  // checks everything again (objects, versions, names) when it applies the entry.
  flatbuffers::Verifier verifier(req->txn()->data(), req->txn()->size());
  if (!objects::VerifyStoreTxnBuffer(verifier))
    return call.fail(wire::ErrorCode::InvalidArgument,
                     "the transaction is not a readable StoreTxn (schemas/objects.fbs)");
  auto* txn = objects::GetStoreTxn(req->txn()->data());
  if (!txn->changes() || txn->changes()->size() == 0)
    return call.fail(wire::ErrorCode::InvalidArgument, "a transaction needs at least one change");
  if (txn->changes()->size() > store::Store::kMaxChanges)
    return call.fail(wire::ErrorCode::ResourceExhausted,
                     "a transaction may hold at most " + std::to_string(store::Store::kMaxChanges) +
                         " changes; split it into smaller batches");
  if (refuseWrite(call, req->txn()->size())) return;
  uint64_t seq = nextSeq_++;
  std::string data;
  data.reserve(kProposalHeader + req->txn()->size());
  data.push_back(static_cast<char>(kProposalFormat));
  putU64(data, id_);
  putU64(data, bootId_);
  putU64(data, seq);
  putU64(data, static_cast<uint64_t>(host_.unixNanos()));
  data.append(reinterpret_cast<const char*>(req->txn()->data()), req->txn()->size());
  auto idx = raft_->propose(std::move(data));
  if (!idx) return call.fail(wire::ErrorCode::NotLeader, idx.error().message + "; retry");
  trackProposal(seq, std::move(call), *idx, req->txn()->size());
}

void RaftNode::handleRead(bus::Call call) {
  auto* env = call.as<storeapi::Envelope>();
  bool local = env->body_type() == storeapi::Body::GetRequest ? env->body_as_GetRequest()->local()
                                                              : env->body_as_ListRequest()->local();
  if (installing_)
    return call.fail(wire::ErrorCode::Unavailable,
                     "this manager is installing a snapshot from the leader; retry shortly");
  if (local) return answerRead(call);
  if (reads_.size() >= options_.maxPendingReads) {
    ++refusedOverloaded_;
    return call.fail(wire::ErrorCode::ResourceExhausted,
                     "raftd is overloaded: " + std::to_string(reads_.size()) +
                         " reads wait for the leader; retry shortly");
  }
  // Linearizable (dissertation §6.4): note the commit index, confirm leadership, wait until
  // that index is applied here, then read the local copy. The context names this
  // incarnation, so an answer to a read of an earlier one is never taken for this one.
  uint64_t seq = nextSeq_++;
  if (auto st = raft_->readIndex(beKey(bootId_) + beKey(seq)); !st)
    return call.fail(wire::ErrorCode::Unavailable,
                     st.error().message + "; retry, or ask for a local read");
  auto deadline = deadlineOf(call);
  reads_.emplace(seq, PendingRead{std::move(call), std::nullopt, deadline});
  scheduleReady();
}

void RaftNode::answerRead(bus::Call& call) {
  auto* env = call.as<storeapi::Envelope>();
  auto txn = env_->read();
  if (!txn) return call.fail(wire::ErrorCode::Internal, txn.error().message);
  Result<std::vector<std::string_view>> found = std::vector<std::string_view>{};
  if (auto* g = env->body_as_GetRequest()) {
    auto kind = static_cast<store::ObjectKind>(g->kind());
    auto one = g->id() && g->id()->size() ? store_->get(*txn, kind, g->id()->string_view())
                                          : store_->getByName(*txn, kind, g->name() ? g->name()->string_view() : "");
    if (!one) return call.fail(wire::ErrorCode::Internal, one.error().message);
    if (!*one)
      return call.fail(wire::ErrorCode::NotFound,
                       std::string("no ") + objects::EnumNameObjectKind(g->kind()) + " " +
                           (g->id() && g->id()->size() ? g->id()->str() : (g->name() ? g->name()->str() : "")));
    found = std::vector<std::string_view>{**one};
  } else {
    auto* l = env->body_as_ListRequest();
    auto kind = static_cast<store::ObjectKind>(l->kind());
    if (l->service_id() && l->service_id()->size())
      found = l->slot() ? store_->tasksOfSlot(*txn, l->service_id()->string_view(), l->slot())
                        : store_->tasksOfService(*txn, l->service_id()->string_view());
    else if (l->node_id() && l->node_id()->size())
      found = store_->tasksOfNode(*txn, l->node_id()->string_view());
    else if (l->role() >= 0)
      found = store_->nodesWithRole(*txn, static_cast<objects::NodeRole>(l->role()));
    else
      found = store_->list(*txn, kind);
    if (!found) return call.fail(wire::ErrorCode::Internal, found.error().message);
  }
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<flatbuffers::Offset<storeapi::Object>> objs;
  for (auto sv : *found)
    objs.push_back(storeapi::CreateObject(fbb, fbb.CreateVector(reinterpret_cast<const uint8_t*>(sv.data()), sv.size())));
  auto body = storeapi::CreateObjectsReply(fbb, storage_->applied(), fbb.CreateVector(objs));
  call.reply(storeReply(fbb, storeapi::Body::ObjectsReply, body.Union()));
}

void RaftNode::handleWatch(bus::Call call) {
  if (installing_)
    return call.fail(wire::ErrorCode::Unavailable,
                     "this manager is installing a snapshot from the leader; retry shortly");
  auto* w = call.as<storeapi::Envelope>()->body_as_WatchRequest();
  Watcher watcher;
  if (w->kinds())
    for (auto k : *w->kinds()) watcher.filter.kinds.push_back(static_cast<store::ObjectKind>(k));
  if (w->service_id()) watcher.filter.serviceId = w->service_id()->str();
  if (w->node_id()) watcher.filter.nodeId = w->node_id()->str();
  watcher.lastIndex = w->from_index() ? w->from_index() : storage_->applied();
  watcher.stream = call.openStream();
  watcher.stream->onCredit([this] { pumpWatchers(); });
  watchers_.push_back(std::move(watcher));
  pumpWatchers();
}

void RaftNode::pumpWatchers() {
  if (installing_) return;
  for (auto& w : watchers_) {
    while (w.stream->open() && w.stream->credits() > 0) {
      auto batch = store_->changesSince(w.lastIndex, w.filter, 256);
      if (!batch.resyncNeeded && batch.events.empty()) {
        w.lastIndex = std::max(w.lastIndex, batch.lastIndex);
        break;
      }
      flatbuffers::FlatBufferBuilder fbb;
      std::vector<flatbuffers::Offset<storeapi::Event>> events;
      for (auto& e : batch.events)
        events.push_back(storeapi::CreateEvent(
            fbb, e->index, static_cast<objects::ObjectKind>(e->kind), static_cast<objects::Operation>(e->operation),
            fbb.CreateString(e->id), e->version,
            fbb.CreateVector(reinterpret_cast<const uint8_t*>(e->object.data()), e->object.size())));
      auto body = storeapi::CreateWatchEvents(fbb, batch.resyncNeeded, batch.lastIndex, fbb.CreateVector(events));
      w.stream->send(storeReply(fbb, storeapi::Body::WatchEvents, body.Union()));
      w.lastIndex = batch.lastIndex;
      if (batch.resyncNeeded) {
        w.stream->end();
        break;
      }
    }
  }
  std::erase_if(watchers_, [](const Watcher& w) { return !w.stream->open(); });
}

void RaftNode::pumpLeadership() {
  for (auto& sub : leadershipSubs_) {
    if (!sub.dirty || !sub.stream->open() || sub.stream->credits() == 0) continue;
    flatbuffers::FlatBufferBuilder fbb;
    auto body = storeapi::CreateLeadership(fbb, raft_ && soft_.role == raft::Role::Leader,
                                           raft_ ? soft_.leader : 0, raft_ ? raft_->term() : 0);
    if (sub.stream->send(storeReply(fbb, storeapi::Body::Leadership, body.Union()))) sub.dirty = false;
  }
  std::erase_if(leadershipSubs_, [](const LeadershipSub& s) { return !s.stream->open(); });
}

void RaftNode::status(nlohmann::json& j) const {
  j["in_swarm"] = raft_ != nullptr;
  // Decimal numbers: dispatcherd reads them to tell a joining manager (docs/cluster.md).
  j["raft_id"] = id_;
  j["raft_cluster_id"] = clusterId_;
  j["node_id"] = fmt::format("{:x}", id_);
  j["cluster_id"] = fmt::format("{:x}", clusterId_);
  j["address"] = advertiseAddr_;
  j["listen_address"] = listenAddr_;
  j["dropped_peer_messages"] = droppedPeerMessages_;
  j["manager_status_writes"] = statusWrites_;
  j["pending"] = {{"proposals", proposals_.size()}, {"proposal_bytes", proposalBytes_},
                  {"reads", reads_.size()}, {"forwarded", forwarded_.size()},
                  {"watchers", watchers_.size()}, {"deferred_apply", deferred_.size()},
                  {"held_messages", heldMessages_.size()}};
  j["refused_overloaded"] = refusedOverloaded_;
  j["expired_reads"] = expiredReads_;
  j["installing_snapshot"] = installing_;
  j["store_nearly_full"] = storeNearlyFull_;
  if (!raft_) {
    j["role"] = "";
    j["status"] = kNotInSwarm;
    return;
  }
  // The storage is being replaced off the loop: its figures are not ours to read now.
  if (installing_) return;
  auto st = raft_->status();
  j["role"] = raft::roleName(st.role);
  j["term"] = st.term;
  j["leader"] = st.leader ? fmt::format("{:x}", st.leader) : "";
  j["leader_address"] = addressOf(st.leader);
  j["commit"] = st.commit;
  j["applied"] = storage_->applied();
  j["last_index"] = st.lastIndex;
  j["first_index"] = storage_->firstIndex();
  nlohmann::json members = nlohmann::json::array();
  auto describe = [&](raft::NodeId id, bool learner) {
    nlohmann::json m{{"id", fmt::format("{:x}", id)}, {"raft_id", id}, {"address", addressOf(id)},
                     {"suffrage", learner ? "learner" : "voter"}, {"self", id == id_},
                     {"reachable", st.role == raft::Role::Leader ? heardRecently(id)
                                                                 : id == id_ || id == st.leader},
                     {"key_known", !keyOf(id).empty() || id == id_}};
    for (auto& p : st.peers) {
      if (p.id != id) continue;
      static const char* states[] = {"probe", "replicate", "snapshot"};
      m["match"] = p.match;
      m["next"] = p.next;
      m["state"] = states[static_cast<int>(p.state)];
      m["active"] = p.recentActive;
    }
    members.push_back(m);
  };
  for (auto id : st.conf.voters) describe(id, false);
  for (auto id : st.conf.learners) describe(id, true);
  j["members"] = members;
  auto snap = storage_->snapshotMeta();
  j["snapshot"] = {{"index", snap.index}, {"term", snap.term}, {"size", snap.size},
                   {"copying", copying_},
                   {"taken", snapshotsTaken_}, {"installed", snapshotsInstalled_}};
  if (auto info = env_->info())
    j["lmdb"] = {{"map_size", info->mapSize}, {"used_bytes", info->usedBytes}};
  j["leader_disconnects"] = leaderDisconnects_;
  j["applied_entries"] = appliedEntries_;
  j["ready_batches"] = readyBatches_;
}

// --- Cluster membership of this raftd (docs/cluster.md) -----------------------------------

bool RaftNode::inCluster() const { return raft_ != nullptr; }

Status RaftNode::checkCanStart(raft::NodeId id, uint64_t raftClusterId, const std::string& listenAddr,
                               const std::string& advertiseAddr) const {
  if (raft_)
    return Error{fmt::format("this raftd is already a member of raft cluster {:x} (raft id {:x}); "
                             "leave the swarm first (`shoal swarm leave`)", clusterId_, id_),
                 EEXIST};
  if (storage_->lastIndex() != 0 || storage_->snapshotMeta().index != 0)
    return Error{"this raftd holds raft state of an earlier cluster in " + stateDir_ +
                     "/db; leave the swarm first (`shoal swarm leave`)",
                 EEXIST};
  if (id == 0) return Error{"a raft id must be 1 or more", EINVAL};
  if (raftClusterId == 0) return Error{"a raft cluster id must be 1 or more", EINVAL};
  if (storage_->nodeId() != 0 && storage_->nodeId() != id)
    return Error{fmt::format("this raftd's state in {}/db belongs to raft id {:x}, not {:x}; "
                             "move the state dir away to start afresh",
                             stateDir_, storage_->nodeId(), id),
                 EINVAL};
  auto listen = node::parseAddr(listenAddr, 0, false);
  if (!listen || listen->port == 0)
    return Error{"the raft listen address '" + listenAddr + "' is not host:port" +
                     (listen ? "" : ": " + listen.error().message),
                 EINVAL};
  auto advertise = node::parseAddr(advertiseAddr, 0, false);
  if (!advertise || advertise->port == 0)
    return Error{"the raft advertise address '" + advertiseAddr + "' is not host:port" +
                     (advertise ? "" : ": " + advertise.error().message),
                 EINVAL};
  if (advertise->host == "0.0.0.0" || advertise->host == "::" || advertise->host.empty())
    return Error{"the raft advertise address '" + advertiseAddr +
                     "' is not an address peers can reach: give this host's address",
                 EINVAL};
  return {};
}

Status RaftNode::bootstrap(raft::NodeId id, uint64_t raftClusterId, const std::string& listenAddr,
                           const std::string& advertiseAddr) {
  if (auto st = checkCanStart(id, raftClusterId, listenAddr, advertiseAddr); !st) return st;
  if (auto st = host_.listenPeers(listenAddr, advertiseAddr); !st) return st;
  listenAddr_ = listenAddr;
  advertiseAddr_ = advertiseAddr;
  clusterId_ = raftClusterId;
  seeds_.clear();
  auto st = env_->update([&](lmdb::WriteTxn& txn) -> Status {
    if (storage_->nodeId() == 0)
      if (auto s = storage_->setNodeId(txn, id); !s) return s;
    if (auto s = saveSelf(txn); !s) return s;
    if (auto s = txn.put(membersTable_, beKey(id), advertiseAddr); !s) return s;
    if (auto s = txn.put(clusterTable_, "id", beKey(raftClusterId)); !s) return s;
    return storage_->bootstrap(txn, {id});
  });
  if (!st) {
    host_.closePeers();
    listenAddr_.clear();
    advertiseAddr_.clear();
    clusterId_ = 0;
    return Error{"cannot record the new cluster: " + st.error().message, st.error().code};
  }
  id_ = id;
  spdlog::info("bootstrapped raft cluster {:x} with this node {:x} at {}", clusterId_, id_, advertiseAddr_);
  if (auto r = run(); !r) return r;
  // A single voter wins at once: leader now, so the caller's first write needs no election.
  if (auto c = raft_->campaign(); !c) spdlog::warn("campaign after bootstrap: {}", c.error().message);
  processReady();
  return {};
}

Status RaftNode::joinRaft(raft::NodeId id, uint64_t raftClusterId, const std::string& listenAddr,
                          const std::string& advertiseAddr, std::vector<Peer> peers) {
  if (auto st = checkCanStart(id, raftClusterId, listenAddr, advertiseAddr); !st) return st;
  if (peers.empty())
    return Error{"joining a raft cluster needs at least one peer (a manager of the cluster)", EINVAL};
  for (auto& p : peers) {
    if (p.id == 0 || p.id == id)
      return Error{fmt::format("peer {} has raft id {:x}: a peer needs a raft id of 1 or more, other "
                               "than this node's", p.address, p.id),
                   EINVAL};
    auto addr = node::parseAddr(p.address, 0, false);
    if (!addr || addr->port == 0)
      return Error{"peer address '" + p.address + "' is not host:port", EINVAL};
    if (!curve::isValidKey(p.publicKey))
      return Error{"the key of peer " + p.address + " is not a Z85 Curve25519 key of 40 characters",
                   EINVAL};
  }
  if (auto st = host_.listenPeers(listenAddr, advertiseAddr); !st) return st;
  listenAddr_ = listenAddr;
  advertiseAddr_ = advertiseAddr;
  clusterId_ = raftClusterId;
  seeds_ = std::move(peers);
  auto st = env_->update([&](lmdb::WriteTxn& txn) -> Status {
    if (storage_->nodeId() == 0)
      if (auto s = storage_->setNodeId(txn, id); !s) return s;
    return saveSelf(txn);
  });
  if (!st) {
    host_.closePeers();
    listenAddr_.clear();
    advertiseAddr_.clear();
    clusterId_ = 0;
    seeds_.clear();
    return Error{"cannot record the raft identity: " + st.error().message, st.error().code};
  }
  id_ = id;
  spdlog::info("joining raft cluster {:x} as node {:x} at {}; waiting for the leader ({} peer(s) known)",
               clusterId_, id_, advertiseAddr_, seeds_.size());
  return run();
}

Status RaftNode::forceNewCluster() {
  if (!raft_) return Error{kNotInSwarm, ENOENT};
  if (installing_) return Error{"a snapshot from the leader is being installed; retry shortly", EAGAIN};
  if (!deferred_.empty() && !flushDeferred())
    return Error{"cannot apply the committed entries; raftd is stopping"};
  raft::ConfState conf = raft_->confState();
  bool voter = std::count(conf.voters.begin(), conf.voters.end(), id_) > 0;
  bool learner = std::count(conf.learners.begin(), conf.learners.end(), id_) > 0;
  if (!voter && !learner)
    return Error{"this manager is not in the cluster's configuration (it never caught up with its "
                 "leader): it has no state to restart the cluster from",
                 EINVAL};
  std::vector<raft::ConfChange> changes;
  if (learner) changes.push_back({raft::ConfChangeType::Promote, id_, {}});
  for (auto id : conf.voters)
    if (id != id_) changes.push_back({raft::ConfChangeType::Remove, id, {}});
  for (auto id : conf.learners)
    if (id != id_) changes.push_back({raft::ConfChangeType::Remove, id, {}});
  if (!changes.empty()) {
    // etcd's --force-new-cluster: the committed log stays, what never committed goes, and
    // configuration entries that leave this member alone are appended and committed here,
    // by this member alone.
    failProposals("the cluster is being restarted from this manager (--force-new-cluster)");
    failReads(wire::ErrorCode::Unavailable, "the cluster is being restarted from this manager; retry", false);
    host_.waitBackground();
    copying_ = false;
    raft::HardState hs = storage_->hardState();
    raft::Index applied = storage_->applied();
    std::vector<raft::Entry> entries;
    if (applied < hs.commit) {
      auto pending = storage_->entries(applied + 1, hs.commit + 1, UINT64_MAX);
      if (!pending) return Error{"cannot read the committed log: " + pending.error().message};
      entries = std::move(pending).value();
    }
    std::vector<raft::Entry> added;
    raft::Index next = hs.commit + 1;
    for (auto& cc : changes)
      added.push_back(raft::Entry{hs.term, next++, raft::EntryType::ConfChange, raft::encodeConfChange(cc)});
    entries.insert(entries.end(), added.begin(), added.end());
    std::vector<std::function<void()>> after;
    auto st = env_->update([&](lmdb::WriteTxn& txn) -> Status {
      after.clear();
      if (auto s = storage_->append(txn, added); !s) return s;
      if (auto s = storage_->setHardState(txn, {hs.term, hs.vote, added.back().index}); !s) return s;
      return applyCommitted(txn, entries, after);
    });
    if (!st) {
      fatal("cannot rewrite the configuration: " + st.error().message);
      return st;
    }
    appliedDeferred(entries.size());
    raft_.reset();
    for (auto& fn : after) fn();
    if (auto s = createCore(); !s) {
      fatal("cannot restart raft after rewriting the configuration: " + s.error().message);
      return s;
    }
    soft_ = {};
    onSoftState({raft_->leader(), raft_->role()});
    spdlog::warn("forced a new cluster: this node {:x} is now its only voter ({} member(s) removed)",
                 id_, changes.size() - (learner ? 1 : 0));
  }
  seeds_.clear();
  lastHeard_.clear();
  nodesChanged_ = true;
  if (raft_->role() != raft::Role::Leader)
    if (auto c = raft_->campaign(); !c) return Error{"cannot become leader: " + c.error().message};
  processReady();
  return {};
}

void RaftNode::stopRunning(const std::string& why) {
  for (auto* t : {&tickTimer_, &deferredTimer_, &statusTimer_}) {
    if (*t) host_.cancel(*t);
    *t = 0;
  }
  failProposals(why);
  failReads(wire::ErrorCode::Unavailable, why, false);
  for (auto& [seq, f] : forwarded_) {
    host_.cancelPeerCall(f.address, f.peerCall);
    if (!f.call->answered())
      f.call->fail(wire::ErrorCode::Indeterminate, why + "; " + kMaybeApplied);
  }
  forwarded_.clear();
  for (auto& w : watchers_) w.stream->end(wire::ErrorCode::Unavailable, why);
  watchers_.clear();
  host_.waitBackground();
  installing_ = copying_ = false;
  heldMessages_.clear();
  deferred_.clear();
  raft_.reset();
  soft_ = {};
  for (auto& sub : leadershipSubs_) sub.dirty = true;
  pumpLeadership();
  host_.closePeers();
  peers_.clear();
  storeKeys_.clear();
  managerKeys_.clear();
  learnedKeys_.clear();
  lastHeard_.clear();
  statusIndex_ = 0;
  host_.setStatusText("not in a swarm");
}

Status RaftNode::leave() {
  bool hasState = storage_->lastIndex() != 0 || storage_->snapshotMeta().index != 0 || id_ != 0;
  if (!raft_ && !hasState) return {};
  stopRunning("this manager left the swarm");
  store_.reset();
  storage_.reset();
  env_.reset();
  // Renamed first, removed after: a crash in between leaves only what openState() removes.
  std::error_code ec;
  for (auto name : {"/db", "/snapshots"}) {
    std::string from = stateDir_ + name;
    if (!std::filesystem::exists(from, ec)) continue;
    std::filesystem::rename(from, from + ".leaving", ec);
    if (ec) {
      fatal("cannot remove the raft state " + from + ": " + ec.message());
      return Error{"cannot remove the raft state " + from + ": " + ec.message() +
                   "; raftd stops: remove it by hand"};
    }
  }
  id_ = 0;
  clusterId_ = 0;
  listenAddr_.clear();
  advertiseAddr_.clear();
  seeds_.clear();
  if (auto st = openState(); !st) {
    fatal("cannot open a fresh raft state after leaving: " + st.error().message);
    return st;
  }
  spdlog::info("left the raft cluster: raft state removed; {}", kNotInSwarm);
  return {};
}

std::vector<RaftNode::MemberState> RaftNode::members() const {
  std::vector<MemberState> out;
  if (!raft_) return out;
  bool leading = raft_->role() == raft::Role::Leader;
  auto reachable = [&](raft::NodeId id) {
    return leading ? heardRecently(id) : id == id_ || id == raft_->leader();
  };
  for (auto id : raft_->confState().voters) out.push_back({id, true, reachable(id)});
  for (auto id : raft_->confState().learners) out.push_back({id, false, reachable(id)});
  return out;
}

bool RaftNode::heardRecently(raft::NodeId id) const {
  if (id == id_) return true;
  auto it = lastHeard_.find(id);
  return it != lastHeard_.end() && host_.now() - it->second <= 2 * options_.electionTicks * options_.tick;
}

// --- peer keys ----------------------------------------------------------------------------

void RaftNode::refreshPeerKeys() {
  auto txn = env_->read();
  if (!txn) return spdlog::error("cannot read the Node objects for the peer keys: {}", txn.error().message);
  auto nodes = store_->list(*txn, store::ObjectKind::Node);
  if (!nodes) return spdlog::error("cannot read the Node objects for the peer keys: {}", nodes.error().message);
  ManagerKeys keys = managerKeys(*nodes);
  if (keys.byRaftId == storeKeys_ && keys.managers == managerKeys_) return;
  storeKeys_ = std::move(keys.byRaftId);
  managerKeys_ = std::move(keys.managers);
  host_.peerKeysChanged();
}

std::string RaftNode::keyOf(raft::NodeId id) const {
  if (auto it = storeKeys_.find(id); it != storeKeys_.end()) return it->second;
  for (auto& p : seeds_)
    if (p.id == id) return p.publicKey;
  if (auto it = learnedKeys_.find(id); it != learnedKeys_.end()) return it->second;
  return {};
}

std::string RaftNode::peerKeyOf(const std::string& address) const {
  for (auto& [id, addr] : peers_)
    if (addr == address) return keyOf(id);
  for (auto& p : seeds_)
    if (p.address == address) return p.publicKey;
  return {};
}

bool RaftNode::admitsPeerKey(std::string_view z85) const {
  if (!raft_ || z85.empty()) return false;
  if (managerKeys_.count(std::string(z85))) return true;
  // A seed until the store names its raft id (then the store's key counts).
  for (auto& p : seeds_)
    if (p.publicKey == z85 && !storeKeys_.count(p.id)) return true;
  return false;
}

// --- manager status -----------------------------------------------------------------------

void RaftNode::writeManagerStatus() {
  if (!raft_ || stopped_ || installing_ || raft_->role() != raft::Role::Leader) return;
  // One write at a time: the next round starts from what it did.
  if (statusIndex_ && statusTerm_ == raft_->term() && storage_->applied() < statusIndex_) return;
  statusIndex_ = 0;
  ManagerTruth truth;
  truth.leader = id_;
  truth.reachable.insert(id_);
  for (auto& [id, when] : lastHeard_)
    if (heardRecently(id)) truth.reachable.insert(id);
  Result<std::optional<std::string>> batch = std::optional<std::string>();
  {
    auto txn = env_->read();
    if (!txn) return;
    auto nodes = store_->list(*txn, store::ObjectKind::Node);
    if (!nodes) return;
    batch = managerStatusTxn(*nodes, truth);
  }
  if (!batch) return peerWarning_.warn("cannot write the managers' status: " + batch.error().message);
  if (!*batch || proposals_.size() >= options_.maxPendingProposals) return;
  // A proposal of this node that no caller waits for: a Conflict (a Node changed meanwhile)
  // is simply computed again next round.
  std::string data;
  data.reserve(kProposalHeader + (*batch)->size());
  data.push_back(static_cast<char>(kProposalFormat));
  putU64(data, id_);
  putU64(data, bootId_);
  putU64(data, nextSeq_++);
  putU64(data, static_cast<uint64_t>(host_.unixNanos()));
  data.append(**batch);
  auto idx = raft_->propose(std::move(data));
  if (!idx) return;
  statusIndex_ = *idx;
  statusTerm_ = raft_->term();
  ++statusWrites_;
  scheduleReady();
}

}  // namespace shoal::raftd
