#include "services/raftd/node.h"

#include <sodium.h>

#include <filesystem>

#include <spdlog/spdlog.h>

#include "common/proc.h"
#include "services/raftd/codec.h"
#include "services/raftd/protocols.h"
#include "services/raftd/snapshot.h"

namespace shoal::raftd {
namespace {

using namespace std::chrono_literals;

// A Normal entry's data: format byte, proposer node id, proposal sequence, time of proposal
// (Unix ns, so every manager writes the same meta), then the StoreTxn.
constexpr uint8_t kProposalFormat = 1;
constexpr size_t kProposalHeader = 1 + 8 + 8 + 8;

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

int64_t unixNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
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


}  // namespace

RaftNode::RaftNode(Daemon& daemon, const NodeOptions& options)
    : daemon_(daemon), options_(options), rng_(randomU64()) {
  if (options_.advertiseAddr.empty()) options_.advertiseAddr = options_.listenAddr;
}

RaftNode::~RaftNode() {
  if (deferredTimer_) daemon_.loop().cancel(deferredTimer_);
  if (snapshotThread_.joinable()) snapshotThread_.join();
}

Result<std::unique_ptr<RaftNode>> RaftNode::start(Daemon& daemon, const NodeOptions& options) {
  if (options.bootstrap && !options.join.empty())
    return Error{"--bootstrap and --join exclude each other: bootstrap starts a new cluster, "
                 "join enters an existing one"};
  // Peers learn a member's address from its bootstrap or join; a raftd that waits to be
  // added by address needs none yet.
  bool announces = options.bootstrap || !options.join.empty();
  if (announces && options.advertiseAddr.empty() && options.listenAddr.starts_with("0.0.0.0"))
    return Error{"--listen-addr " + options.listenAddr +
                 " is not an address peers can reach: give --advertise-addr HOST:PORT"};
  std::unique_ptr<RaftNode> node(new RaftNode(daemon, options));
  if (auto st = node->open(); !st) return st.error();
  if (auto st = node->createCore(); !st) return st.error();
  if (auto st = node->startTransport(); !st) return st.error();
  daemon.addStatus([n = node.get()](nlohmann::json& j) { n->status(j); });
  daemon.server().serve(kStoreProtocol, [n = node.get()](bus::Call call) { n->serveStore(std::move(call)); });
  daemon.onStop([n = node.get()] {
    n->failPending(wire::ErrorCode::Unavailable, "raftd is stopping; retry on another manager");
  });
  node->onSoftState({node->raft_->leader(), node->raft_->role()});
  // Ticks start at a random phase: members started together (by systemd at boot, by a
  // test) would otherwise tick in step, and two that lose their leader at the same moment
  // would campaign in the same instant and split the vote (seen: one failover in three
  // took an extra election timeout).
  auto phase = std::chrono::microseconds(node->rng_() % static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(options.tick).count()));
  daemon.loop().after(phase, [n = node.get(), &loop = daemon.loop(), tick = options.tick] {
    loop.every(tick, [n] { n->onTick(); });
  });
  if (!options.join.empty() && node->raft_->confState().voters.empty()) node->tryJoin();
  return node;
}

Status RaftNode::open() {
  lmdb::Options lo;
  lo.mapSize = 64u << 20;
  auto env = lmdb::Environment::open(daemon_.stateDir() + "/db", lo);
  if (!env) return env.error();
  env_ = std::move(env).value();
  auto storage = RaftStorage::open(*env_, daemon_.stateDir() + "/snapshots");
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

  id_ = storage_->nodeId();
  if (id_ == 0) {
    id_ = randomU64();
    if (auto st = env_->update([&](lmdb::WriteTxn& txn) { return storage_->setNodeId(txn, id_); }); !st)
      return st;
    spdlog::info("new raft identity: node {:x}", id_);
  }
  if (options_.bootstrap && storage_->lastIndex() == 0 && storage_->snapshotMeta().index == 0) {
    clusterId_ = randomU64();
    auto st = env_->update([&](lmdb::WriteTxn& txn) -> Status {
      if (auto s = txn.put(membersTable_, beKey(id_), options_.advertiseAddr); !s) return s;
      if (auto s = txn.put(clusterTable_, "id", beKey(clusterId_)); !s) return s;
      return {};
    });
    if (!st) return st;
    if (auto s = storage_->bootstrap({id_}); !s) return s;
    spdlog::info("bootstrapped a new cluster {:x} with this node {:x} at {}", clusterId_, id_,
                 options_.advertiseAddr);
  } else if (options_.bootstrap) {
    spdlog::info("--bootstrap ignored: this node already has raft state");
  }
  return loadMembers();
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
  if (*cid && (*cid)->size() == 8) clusterId_ = getU64(**cid, 0);
  for (auto it = peers_.begin(); it != peers_.end();) {
    if (!found.count(it->first) || found[it->first] != it->second.address)
      it = peers_.erase(it);
    else
      ++it;
  }
  for (auto& [id, addr] : found)
    if (!peers_.count(id)) peers_[id].address = addr;
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

Status RaftNode::startTransport() {
  peerServer_ = std::make_unique<bus::Server>(daemon_.loop(), daemon_.zmq());
  peerServer_->serve(kRaftProtocol, [this](bus::Call call) { servePeer(std::move(call)); });
  peerServer_->serve(kStoreProtocol, [this](bus::Call call) { serveStore(std::move(call)); });
  if (auto st = peerServer_->bind("tcp://" + options_.listenAddr); !st)
    return Error{st.error().message + "; choose another --listen-addr"};
  spdlog::info("raft peers: listening on {} (advertised as {})", options_.listenAddr,
               options_.advertiseAddr);
  return {};
}

RaftNode::Peer& RaftNode::peer(raft::NodeId id) {
  Peer& p = peers_[id];
  if (!p.raft && !p.address.empty()) {
    p.raft = std::make_unique<bus::Client>(daemon_.loop(), daemon_.zmq(), kRaftProtocol);
    p.store = std::make_unique<bus::Client>(daemon_.loop(), daemon_.zmq(), kStoreProtocol);
    if (auto st = p.raft->connect("tcp://" + p.address); !st) spdlog::warn("{}", st.error().message);
    p.raft->onDisconnect([this, id] {
      // The leader's process died or its host went away: the kernel closed the connection
      // long before an election timeout would tell us. Forget it and elect sooner.
      if (raft_->role() != raft::Role::Follower || raft_->leader() != id) return;
      ++leaderDisconnects_;
      spdlog::info("connection to leader {:x} ({}) closed: electing a new leader early", id, addressOf(id));
      raft_->forgetLeader();
      scheduleReady();
    });
    if (auto st = p.store->connect("tcp://" + p.address); !st) spdlog::warn("{}", st.error().message);
  }
  return p;
}

std::string RaftNode::addressOf(raft::NodeId id) const {
  auto it = peers_.find(id);
  return it == peers_.end() ? std::string() : it->second.address;
}

// --- driving the core -----------------------------------------------------------------

void RaftNode::onTick() {
  raft_->tick();
  if (raft_->role() == raft::Role::Leader) promoteCaughtUpLearners();
  scheduleReady();
}

void RaftNode::scheduleReady() {
  if (readyScheduled_) return;
  readyScheduled_ = true;
  // Posted: runs after the loop has drained what arrived, so one Ready (and one LMDB
  // commit) covers many messages and proposals — group commit.
  daemon_.loop().post([this] {
    readyScheduled_ = false;
    processReady();
  });
}

void RaftNode::processReady() {
  while (raft_->hasReady()) {
    raft::Ready rd = raft_->ready();
    ++readyBatches_;
    for (auto& chunk : rd.snapshotChunks) {
      if (auto st = storage_->writeChunk(chunk); !st) {
        // Its acknowledgement is in this Ready: never acknowledge what was not written.
        spdlog::critical("cannot write a snapshot chunk: {}; stopping", st.error().message);
        daemon_.requestStop();
        return;
      }
    }
    if (rd.snapshot) {
      // Entries this follower deferred precede the snapshot: apply them first, or they would
      // land on top of the newer state and move the applied index back.
      if (!deferred_.empty() && !flushDeferred()) return;
      if (auto st = installSnapshot(*rd.snapshot); !st) {
        // Nothing of this Ready may go out if its state is not durable: stop the daemon
        // rather than acknowledge what we do not have.
        spdlog::critical("cannot install snapshot {}: {}; stopping", rd.snapshot->index,
                         st.error().message);
        daemon_.requestStop();
        return;
      }
    }
    // A leader's appends go out while its own copy is written (dissertation §10.2.1): the
    // core counts that copy only in advance(), once it is durable.
    for (auto& m : rd.messages)
      if (rd.mayPrecedePersist(m)) send(m);
    if (auto st = persistAndApply(rd); !st) {
      spdlog::critical("cannot persist raft state: {}; stopping", st.error().message);
      daemon_.requestStop();
      return;
    }
    for (auto& m : rd.messages)
      if (!rd.mayPrecedePersist(m)) send(m);
    for (auto& rs : rd.readStates) {
      if (rs.context.size() != 8) continue;
      auto it = reads_.find(getU64(rs.context, 0));
      if (it != reads_.end()) it->second.index = rs.index;
    }
    if (rd.softState) onSoftState(*rd.softState);
    raft_->advance(rd);
  }
  // A read or a watcher that arrived since, or leadership gained, wants the deferred entries.
  if (!deferred_.empty() && mustApplyNow(nullptr) && !flushDeferred()) return;
  afterApply();
}

void RaftNode::afterApply() {
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
      deferredTimer_ = daemon_.loop().after(kApplyDelay, [this] {
        deferredTimer_ = 0;
        if (!deferred_.empty() && flushDeferred()) afterApply();
      });
    deferred_.insert(deferred_.end(), rd.committedEntries.begin(), rd.committedEntries.end());
  }
  bool applies = applyNow && (!deferred_.empty() || !rd.committedEntries.empty());
  if (rd.entries.empty() && !rd.hardState && !applies) return {};
  std::vector<std::function<void()>> after;
  auto st = env_->update([&](lmdb::WriteTxn& txn) -> Status {
    after.clear();  // update() may run this again after growing the map
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
  if (deferredTimer_) daemon_.loop().cancel(deferredTimer_);
  deferredTimer_ = 0;
}

bool RaftNode::flushDeferred() {
  std::vector<std::function<void()>> after;
  auto st = env_->update([&](lmdb::WriteTxn& txn) -> Status {
    after.clear();  // update() may run this again after growing the map
    return applyCommitted(txn, {}, after);
  });
  if (!st) {
    spdlog::critical("cannot apply committed entries {}..{}: {}; stopping", deferred_.front().index,
                     deferred_.back().index, st.error().message);
    daemon_.requestStop();
    return false;
  }
  appliedDeferred(0);
  for (auto& fn : after) fn();
  return true;
}

Status RaftNode::applyEntry(lmdb::WriteTxn& txn, const raft::Entry& e,
                            std::vector<std::function<void()>>& after) {
  if (e.type == raft::EntryType::ConfChange) {
    auto cc = raft::decodeConfChange(e.data);
    if (!cc) {
      spdlog::error("committed conf change at {} is unreadable: {}", e.index, cc.error().message);
      return {};
    }
    if (cc->type == raft::ConfChangeType::AddLearner && !cc->context.empty()) {
      if (auto s = txn.put(membersTable_, beKey(cc->node), cc->context); !s) return s;
    } else if (cc->type == raft::ConfChangeType::Remove) {
      if (auto s = txn.del(membersTable_, beKey(cc->node)); !s) return s.error();
    }
    after.push_back([this, c = *cc, index = e.index] {
      static const char* names[] = {"added learner", "promoted", "removed"};
      spdlog::info("membership at {}: {} node {:x} {}", index, names[static_cast<int>(c.type)],
                   c.node, c.context);
      if (auto st = loadMembers(); !st) spdlog::error("{}", st.error().message);
      if (c.type == raft::ConfChangeType::Remove && c.node == id_)
        spdlog::warn("this node was removed from the cluster; it no longer takes part");
    });
    // Answer the member request that proposed it (its context carries no sequence; match by
    // index instead).
    for (auto it = proposals_.begin(); it != proposals_.end(); ++it) {
      if (it->second.index == e.index) {
        uint64_t seq = it->first;
        after.push_back([this, seq, node = cc->node, index = e.index] {
          auto p = proposals_.find(seq);
          if (p == proposals_.end()) return;
          flatbuffers::FlatBufferBuilder fbb;
          auto body = storeapi::CreateMemberReply(fbb, node, index);
          if (p->second.call.request().protocol().name == kRaftProtocol.name) {
            flatbuffers::FlatBufferBuilder f2;
            auto jr = raftpeer::CreateJoinReply(f2, clusterId_, id_, f2.CreateString(options_.advertiseAddr));
            p->second.call.reply(bus::message<raftpeer::Envelope>(f2, raftpeer::Body::JoinReply, jr.Union()));
          } else {
            p->second.call.reply(storeReply(fbb, storeapi::Body::MemberReply, body.Union()));
          }
          proposals_.erase(p);
        });
        break;
      }
    }
    return {};
  }
  if (e.data.empty()) return {};  // a new leader's empty entry
  if (e.data.size() < kProposalHeader || static_cast<uint8_t>(e.data[0]) != kProposalFormat) {
    spdlog::error("committed entry {} has an unknown format; skipped", e.index);
    return {};
  }
  raft::NodeId proposer = getU64(e.data, 1);
  uint64_t seq = getU64(e.data, 9);
  int64_t when = static_cast<int64_t>(getU64(e.data, 17));
  auto verdict = store_->apply(txn, std::string_view(e.data).substr(kProposalHeader), e.index, when);
  if (!verdict) return verdict.error();
  if (proposer == id_) {
    // Answered at once, before this LMDB transaction commits: the entry is committed in
    // the Raft log (durable on a quorum, the leader's copy included), and its verdict is a
    // function of that log, so a crash now re-applies it with the same verdict. Readers do
    // not see it early: linearizable reads wait for the applied index, which moves on commit.
    auto p = proposals_.find(seq);
    if (p != proposals_.end()) {
      if (!verdict->ok()) {
        p->second.call.fail(static_cast<wire::ErrorCode>(verdict->error().code), verdict->error().message);
      } else {
        flatbuffers::FlatBufferBuilder fbb;
        auto body = storeapi::CreateTxnReply(fbb, e.index);
        p->second.call.reply(storeReply(fbb, storeapi::Body::TxnReply, body.Union()));
      }
      proposals_.erase(p);  // a retried transaction (map growth) finds it answered
    }
  }
  return {};
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
  {
    for (auto& t : *names) {
      auto from = (*snap)->table(t.name, t.flags);
      if (!from) return from.error();
      auto to = env_->table(t.name, t.flags);
      if (!to) return to.error();
      pairs.emplace_back(*from, *to);
    }
  }
  auto src = (*snap)->read();
  if (!src) return src.error();
  auto st = env_->update([&](lmdb::WriteTxn& txn) -> Status {
    if (auto s = copyTablesInto(txn, *src, pairs); !s) return s;
    return storage_->installSnapshot(txn, meta);
  });
  if (!st) return st;
  // The store's tables were replaced under it: reopen (its watch history starts afresh, so
  // watchers must resync).
  auto store = store::Store::open(*env_);
  if (!store) return store.error();
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
  return loadMembers();
}

void RaftNode::maybeSnapshot() {
  if (snapshotThread_.joinable()) return;  // one at a time
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
  // at `applied`; the copy from it runs on a thread of its own.
  auto txn = env_->read();
  if (!txn) {
    spdlog::error("snapshot at {} failed: {}", applied, txn.error().message);
    return;
  }
  std::string dir = daemon_.stateDir() + "/snapshots/tmp";
  if (onlyBootstrap) {
    Status st = writeStateCopy(*txn, tables, dir);
    { auto done = std::move(*txn); }  // end the read before the snapshot is recorded
    finishSnapshot(st, dir, applied, *term, raft_->confState());
    return;
  }
  snapshotThread_ = std::thread([this, txn = std::move(*txn), tables, dir, applied, term = *term,
                                 conf = raft_->confState()]() mutable {
    Status st = writeStateCopy(txn, tables, dir);
    { auto done = std::move(txn); }  // end the read before the loop records the snapshot
    daemon_.loop().post([this, st, dir, applied, term, conf] { finishSnapshot(st, dir, applied, term, conf); });
  });
}

void RaftNode::finishSnapshot(const Status& copied, const std::string& dir, raft::Index index,
                              raft::Term term, const raft::ConfState& conf) {
  if (snapshotThread_.joinable()) snapshotThread_.join();
  std::error_code ec;
  if (!copied) {
    spdlog::error("snapshot at {} failed: {}", index, copied.error().message);
    std::filesystem::remove_all(dir, ec);
    return;
  }
  // A snapshot received from the leader meanwhile may have overtaken this one.
  if (auto s = storage_->recordSnapshot(index, term, conf, dir + "/data.mdb"); !s) {
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
  Peer& p = peer(m.to);
  if (!p.raft) {
    spdlog::debug("no address for node {:x}; message {} dropped", m.to, raft::messageTypeName(m.type));
    return;
  }
  p.raft->post(encodeMessage(m, clusterId_, options_.advertiseAddr));
}

void RaftNode::onSoftState(const raft::SoftState& s) {
  bool wasLeader = soft_.role == raft::Role::Leader;
  bool isLeader = s.role == raft::Role::Leader;
  if (s.leader != soft_.leader || wasLeader != isLeader) {
    if (isLeader)
      spdlog::info("this node {:x} is the leader of term {}", id_, raft_->term());
    else if (s.leader)
      spdlog::info("node {:x} ({}) is the leader of term {}", s.leader, addressOf(s.leader), raft_->term());
    else
      spdlog::info("no leader in term {}", raft_->term());
    for (auto& sub : leadershipSubs_) sub.dirty = true;
  }
  if (wasLeader && !isLeader)
    failPending(wire::ErrorCode::NotLeader, "leadership was lost before the write committed; retry");
  if (s.leader != soft_.leader) {
    // Requests forwarded to the old leader would wait out their deadline: answer now so that
    // callers retry on the new one.
    for (auto& [seq, f] : forwarded_) {
      if (f.leader == s.leader) continue;
      if (auto it = peers_.find(f.leader); it != peers_.end() && it->second.store)
        it->second.store->cancel(f.clientCall);
      if (!f.call->answered())
        f.call->fail(wire::ErrorCode::Unavailable,
                     "the leader changed while this request was forwarded to it; it may or may "
                     "not have been applied; retry");
    }
    std::erase_if(forwarded_, [&](auto& kv) { return kv.second.leader != s.leader; });
  }
  soft_ = s;
  daemon_.setStatusText(std::string(raft::roleName(s.role)) + ", term " + std::to_string(raft_->term()));
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

void RaftNode::tryJoin() {
  if (joined_) return;
  if (joinTarget_.empty()) joinTarget_ = options_.join;
  joinClient_ = std::make_unique<bus::Client>(daemon_.loop(), daemon_.zmq(), kRaftProtocol);
  if (auto st = joinClient_->connect("tcp://" + joinTarget_); !st) {
    spdlog::error("cannot join through {}: {}", joinTarget_, st.error().message);
    return;
  }
  flatbuffers::FlatBufferBuilder fbb;
  auto body = raftpeer::CreateJoinRequest(fbb, id_, fbb.CreateString(options_.advertiseAddr));
  spdlog::info("asking {} to let this node {:x} join", joinTarget_, id_);
  joinClient_->call(
      bus::message<raftpeer::Envelope>(fbb, raftpeer::Body::JoinRequest, body.Union()), 5s,
      [this](Result<bus::Frame> r) {
        auto retry = [this] { daemon_.loop().after(500ms, [this] { tryJoin(); }); };
        if (!r) {
          spdlog::warn("join through {} failed: {}; retrying", joinTarget_, r.error().message);
          joinTarget_ = options_.join;
          return retry();
        }
        auto* jr = r->as<raftpeer::Envelope>()->body_as_JoinReply();
        if (!jr) return retry();
        if (jr->cluster_id() == 0) {
          if (jr->leader_address() && jr->leader_address()->size())
            joinTarget_ = jr->leader_address()->str();
          return retry();
        }
        joined_ = true;
        spdlog::info("joined cluster {:x} as a learner; the leader promotes this node once it has caught up",
                     jr->cluster_id());
      });
}

void RaftNode::failPending(wire::ErrorCode code, const std::string& why) {
  for (auto& [seq, p] : proposals_) p.call.fail(code, why);
  proposals_.clear();
  for (auto& [seq, r] : reads_) r.call.fail(code, why);
  reads_.clear();
}

// --- serving --------------------------------------------------------------------------

void RaftNode::servePeer(bus::Call call) {
  auto* env = call.as<raftpeer::Envelope>();
  switch (env->body_type()) {
    case raftpeer::Body::Message: {
      auto* in = env->body_as_Message();
      if (clusterId_ != 0 && in->cluster_id() != 0 && in->cluster_id() != clusterId_) {
        spdlog::warn("dropped a raft message of cluster {:x} (this is {:x})", in->cluster_id(), clusterId_);
        return;
      }
      auto m = decodeMessage(*in);
      if (!m) {
        spdlog::warn("dropped a raft message: {}", m.error().message);
        return;
      }
      if (in->from_address() && in->from_address()->size() && addressOf(m->from).empty())
        peers_[m->from].address = in->from_address()->str();  // until the member table says
      if (clusterId_ == 0 && in->cluster_id() != 0 && m->type == raft::MessageType::Snap) {
        // A joining node learns its cluster from the leader's first snapshot.
        clusterId_ = in->cluster_id();
      }
      if (auto st = raft_->step(*m); !st) spdlog::debug("step: {}", st.error().message);
      scheduleReady();
      return;
    }
    case raftpeer::Body::JoinRequest: {
      auto* jr = env->body_as_JoinRequest();
      if (raft_->role() != raft::Role::Leader) {
        flatbuffers::FlatBufferBuilder fbb;
        auto body = raftpeer::CreateJoinReply(fbb, 0, raft_->leader(), fbb.CreateString(addressOf(raft_->leader())));
        return call.reply(bus::message<raftpeer::Envelope>(fbb, raftpeer::Body::JoinReply, body.Union()));
      }
      std::string addr = jr->address() ? jr->address()->str() : "";
      if (jr->node_id() == 0 || addr.empty())
        return call.fail(wire::ErrorCode::InvalidArgument, "a join request needs a node id and an address");
      auto& conf = raft_->confState();
      bool member = std::count(conf.voters.begin(), conf.voters.end(), jr->node_id()) ||
                    std::count(conf.learners.begin(), conf.learners.end(), jr->node_id());
      if (member) {
        flatbuffers::FlatBufferBuilder fbb;
        auto body = raftpeer::CreateJoinReply(fbb, clusterId_, id_, fbb.CreateString(options_.advertiseAddr));
        return call.reply(bus::message<raftpeer::Envelope>(fbb, raftpeer::Body::JoinReply, body.Union()));
      }
      auto idx = raft_->proposeConfChange({raft::ConfChangeType::AddLearner, jr->node_id(), addr});
      if (!idx) return call.fail(wire::ErrorCode::Unavailable, idx.error().message + "; retry");
      peers_[jr->node_id()].address = addr;  // reachable before the change applies
      proposals_.emplace(nextSeq_++, Proposal{std::move(call), *idx});
      scheduleReady();
      return;
    }
    default:
      call.fail(wire::ErrorCode::Unimplemented, "raft peers send Message and JoinRequest only");
  }
}

void RaftNode::serveStore(bus::Call call) {
  auto* env = call.as<storeapi::Envelope>();
  switch (env->body_type()) {
    case storeapi::Body::TxnRequest:
      return handleTxn(std::move(call));
    case storeapi::Body::GetRequest:
    case storeapi::Body::ListRequest:
      return handleRead(std::move(call));
    case storeapi::Body::WatchRequest:
      return handleWatch(std::move(call));
    case storeapi::Body::StatusRequest: {
      nlohmann::json j = daemon_.status();
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
    case storeapi::Body::TransferLeaderRequest: {
      if (raft_->role() != raft::Role::Leader) return forwardToLeader(std::move(call));
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
        peers_[a->node_id()].address = a->address()->str();
      } else {
        auto* r = env->body_as_RemoveMemberRequest();
        auto& conf = raft_->confState();
        bool voter = std::count(conf.voters.begin(), conf.voters.end(), r->node_id());
        if (voter && conf.voters.size() <= 2 && r->node_id() != id_)
          spdlog::warn("removing voter {:x} leaves {} voter(s)", r->node_id(), conf.voters.size() - 1);
        cc = {raft::ConfChangeType::Remove, r->node_id(), {}};
      }
      auto idx = raft_->proposeConfChange(cc);
      if (!idx) return call.fail(wire::ErrorCode::Unavailable, idx.error().message + "; retry");
      proposals_.emplace(nextSeq_++, Proposal{std::move(call), *idx});
      scheduleReady();
      return;
    }
    default:
      call.fail(wire::ErrorCode::Unimplemented,
                std::string("store message ") + storeapi::EnumNameBody(env->body_type()) +
                    " is not a request raftd serves");
  }
}

void RaftNode::forwardToLeader(bus::Call call) {
  raft::NodeId leader = raft_->leader();
  if (leader == 0 || leader == id_ || addressOf(leader).empty())
    return call.fail(wire::ErrorCode::Unavailable,
                     "no leader is known right now (an election may be under way); retry shortly");
  Peer& p = peer(leader);
  // Re-send the caller's envelope as it is; the bus sets a fresh request id.
  std::string raw(call.request().bytes());
  auto held = std::make_shared<bus::Call>(std::move(call));
  auto timeout = held->request().header().timeout_ms() ? bus::Millis(held->request().header().timeout_ms())
                                                        : bus::Millis(5000);
  uint64_t seq = nextSeq_++;
  uint64_t id = p.store->callRaw(std::move(raw), timeout, [this, held, seq](Result<bus::Frame> r) {
    forwarded_.erase(seq);
    if (held->answered()) return;
    if (!r) return held->fail(static_cast<wire::ErrorCode>(r.error().code), r.error().message);
    held->replyRaw(r->bytes());
  });
  forwarded_[seq] = {held, leader, id};
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
  uint64_t seq = nextSeq_++;
  std::string data;
  data.reserve(kProposalHeader + req->txn()->size());
  data.push_back(static_cast<char>(kProposalFormat));
  putU64(data, id_);
  putU64(data, seq);
  putU64(data, static_cast<uint64_t>(unixNanos()));
  data.append(reinterpret_cast<const char*>(req->txn()->data()), req->txn()->size());
  auto idx = raft_->propose(std::move(data));
  if (!idx) return call.fail(wire::ErrorCode::NotLeader, idx.error().message + "; retry");
  proposals_.emplace(seq, Proposal{std::move(call), *idx});
  scheduleReady();
}

void RaftNode::handleRead(bus::Call call) {
  auto* env = call.as<storeapi::Envelope>();
  bool local = env->body_type() == storeapi::Body::GetRequest ? env->body_as_GetRequest()->local()
                                                              : env->body_as_ListRequest()->local();
  if (local) return answerRead(call);
  // Linearizable (dissertation §6.4): note the commit index, confirm leadership, wait until
  // that index is applied here, then read the local copy.
  uint64_t seq = nextSeq_++;
  if (auto st = raft_->readIndex(beKey(seq)); !st)
    return call.fail(wire::ErrorCode::Unavailable,
                     st.error().message + "; retry, or ask for a local read");
  reads_.emplace(seq, PendingRead{std::move(call), std::nullopt});
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
    auto body = storeapi::CreateLeadership(fbb, soft_.role == raft::Role::Leader, soft_.leader, raft_->term());
    if (sub.stream->send(storeReply(fbb, storeapi::Body::Leadership, body.Union()))) sub.dirty = false;
  }
  std::erase_if(leadershipSubs_, [](const LeadershipSub& s) { return !s.stream->open(); });
}

void RaftNode::status(nlohmann::json& j) const {
  auto st = raft_->status();
  j["node_id"] = fmt::format("{:x}", id_);
  j["cluster_id"] = fmt::format("{:x}", clusterId_);
  j["address"] = options_.advertiseAddr;
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
    nlohmann::json m{{"id", fmt::format("{:x}", id)}, {"address", addressOf(id)},
                     {"suffrage", learner ? "learner" : "voter"}, {"self", id == id_}};
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
                   {"copying", snapshotThread_.joinable()},
                   {"taken", snapshotsTaken_}, {"installed", snapshotsInstalled_}};
  if (auto info = env_->info())
    j["lmdb"] = {{"map_size", info->mapSize}, {"used_bytes", info->usedBytes}};
  j["pending"] = {{"proposals", proposals_.size()}, {"reads", reads_.size()},
                  {"forwarded", forwarded_.size()}, {"watchers", watchers_.size()},
                  {"deferred_apply", deferred_.size()}};
  j["leader_disconnects"] = leaderDisconnects_;
  j["applied_entries"] = appliedEntries_;
  j["ready_batches"] = readyBatches_;
  if (peerServer_) {
    auto& s = peerServer_->stats();
    j["peer_bus"] = {{"received", s.received}, {"sent", s.sent}, {"bad_messages", s.badMessages}};
  }
}

}  // namespace shoal::raftd
