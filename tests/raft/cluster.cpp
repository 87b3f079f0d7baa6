#include "tests/raft/cluster.h"

#include <algorithm>
#include <cassert>
#include <cstdio>
#include <cstdlib>

namespace shoal::raft::test {

static uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

[[noreturn]] static void fail(const std::string& what) {
  std::fprintf(stderr, "cluster: %s\n", what.c_str());
  std::abort();
}

std::string Cluster::encodeState(const std::vector<AppliedEntry>& s) {
  std::string out;
  for (const AppliedEntry& e : s)
    out += std::to_string(e.index) + " " + std::to_string(e.term) + " " + e.data + "\n";
  return out;
}

std::vector<AppliedEntry> Cluster::decodeState(const std::string& data) {
  std::vector<AppliedEntry> out;
  size_t pos = 0;
  while (pos < data.size()) {
    size_t nl = data.find('\n', pos);
    std::string line = data.substr(pos, nl - pos);
    pos = nl + 1;
    AppliedEntry e;
    size_t a = line.find(' ');
    size_t b = line.find(' ', a + 1);
    e.index = std::stoull(line.substr(0, a));
    e.term = std::stoull(line.substr(a + 1, b - a - 1));
    e.data = line.substr(b + 1);
    out.push_back(e);
  }
  return out;
}

void Cluster::createRaft(TestNode& n) {
  Config c;
  c.id = n.id;
  c.electionTicks = n.options.election;
  c.heartbeatTicks = n.options.heartbeat;
  c.preVote = n.options.preVote;
  c.checkQuorum = n.options.checkQuorum;
  c.maxInflightMessages = n.options.maxInflight;
  c.maxAppendBytes = n.options.maxBytes;
  c.snapshotChunkBytes = n.options.chunkBytes;
  c.applied = n.applied;
  TestNode* np = &n;
  c.random = [np] { return static_cast<uint32_t>(splitmix(np->rngState) >> 32); };
  auto r = Raft::create(std::move(c), *n.storage);
  if (!r)
    fail("creating node " + std::to_string(n.id) + ": " + r.error().message);
  n.raft = std::move(*r);
}

void Cluster::addVoters(const std::vector<NodeId>& ids, const NodeOptions& o) {
  for (NodeId id : ids) {
    TestNode& n = nodes_[id];
    n.id = id;
    n.options = o;
    n.rngState = o.seed * 1000003 + id;
    n.storage = std::make_unique<MemoryStorage>(MemoryStorage::bootstrap(ids));
    n.applied = 1;
    createRaft(n);
  }
}

void Cluster::addJoiner(NodeId id, const NodeOptions& o) {
  TestNode& n = nodes_[id];
  n.id = id;
  n.options = o;
  n.rngState = o.seed * 1000003 + id;
  n.storage = std::make_unique<MemoryStorage>();
  createRaft(n);
}

std::vector<NodeId> Cluster::ids() const {
  std::vector<NodeId> out;
  for (const auto& [id, n] : nodes_)
    out.push_back(id);
  return out;
}

bool Cluster::sendEarly(NodeId id) {
  TestNode& n = nodes_.at(id);
  if (!n.raft || n.held || !n.raft->hasReady())
    return false;
  Ready rd = n.raft->ready();
  print("> " + std::to_string(id) + " sending before persisting");
  std::vector<Message> later;
  bool any = false;
  for (Message& m : rd.messages) {
    if (!rd.mayPrecedePersist(m)) {
      later.push_back(std::move(m));
      continue;
    }
    if (!any)
      print("  Messages:");
    any = true;
    print("  " + describeMessage(m));
    if (linkUp(m.from, m.to) && nodes_.count(m.to))
      pending_.push_back(std::move(m));
  }
  if (!any)
    print("  (no message may precede the persist)");
  rd.messages = std::move(later);
  n.held = std::move(rd);
  return true;
}

bool Cluster::processReady(NodeId id) {
  TestNode& n = nodes_.at(id);
  if (!n.raft || (!n.held && !n.raft->hasReady()))
    return false;
  bool wasHeld = n.held.has_value();
  Ready rd = wasHeld ? std::move(*n.held) : n.raft->ready();
  n.held.reset();
  print("> " + std::to_string(id) + (wasHeld ? " persisting the held Ready" : " handling Ready"));
  if (rd.softState)
    print("  Lead:" + std::to_string(rd.softState->leader) + " State:" +
          roleName(rd.softState->role));
  if (rd.hardState)
    print("  HardState Term:" + std::to_string(rd.hardState->term) +
          " Vote:" + std::to_string(rd.hardState->vote) +
          " Commit:" + std::to_string(rd.hardState->commit));
  for (const SnapshotChunk& c : rd.snapshotChunks) {
    print("  SnapshotChunk " + std::to_string(c.meta.term) + "/" + std::to_string(c.meta.index) +
          " Offset:" + std::to_string(c.offset) + " Len:" + std::to_string(c.data.size()) +
          (c.done ? " Done" : ""));
    if (c.offset == 0)
      n.incomingSnapshot.clear();
    if (c.offset != n.incomingSnapshot.size())
      fail("node " + std::to_string(id) + " got a chunk at " + std::to_string(c.offset) +
           " after " + std::to_string(n.incomingSnapshot.size()) + " bytes");
    n.incomingSnapshot += c.data;
  }
  if (rd.snapshot) {
    print("  InstallSnapshot " + std::to_string(rd.snapshot->term) + "/" +
          std::to_string(rd.snapshot->index) + " " + describeConfState(rd.snapshot->conf));
    if (n.incomingSnapshot.size() != rd.snapshot->size)
      fail("node " + std::to_string(id) + " installs a snapshot of " +
           std::to_string(rd.snapshot->size) + " bytes but received " +
           std::to_string(n.incomingSnapshot.size()));
    if (auto st = n.storage->applySnapshot(*rd.snapshot, n.incomingSnapshot); !st)
      fail(st.error().message);
    n.state = decodeState(n.incomingSnapshot);
    n.applied = rd.snapshot->index;
    n.incomingSnapshot.clear();
  }
  if (!rd.entries.empty()) {
    print("  Entries:");
    for (const Entry& e : rd.entries)
      print("  " + describeEntry(e));
    if (auto st = n.storage->append(rd.entries); !st)
      fail(st.error().message);
  }
  if (rd.hardState)
    n.storage->setHardState(*rd.hardState);
  if (!rd.messages.empty()) {
    print("  Messages:");
    for (const Message& m : rd.messages) {
      print("  " + describeMessage(m));
      if (!linkUp(m.from, m.to) || !nodes_.count(m.to))
        continue;
      pending_.push_back(m);
    }
  }
  if (!rd.committedEntries.empty()) {
    print("  CommittedEntries:");
    for (const Entry& e : rd.committedEntries) {
      print("  " + describeEntry(e));
      if (e.index != n.applied + 1)
        fail("node " + std::to_string(id) + " applies " + std::to_string(e.index) +
             " after " + std::to_string(n.applied));
      n.applied = e.index;
      if (e.type == EntryType::Normal && !e.data.empty())
        n.state.push_back(AppliedEntry{e.index, e.term, e.data});
      if (onApply)
        onApply(id, e);
    }
  }
  for (const ReadState& r : rd.readStates)
    print("  ReadState Index:" + std::to_string(r.index) + " Context:" + r.context);
  if (rd.softState && onSoftState)
    onSoftState(id, *rd.softState);
  n.raft->advance(rd);
  return true;
}

bool Cluster::processAllReady() {
  bool any = false;
  for (auto& [id, n] : nodes_)
    any |= processReady(id);
  return any;
}

size_t Cluster::deliver(NodeId to) {
  std::deque<Message> now;
  std::deque<Message> later;
  for (Message& m : pending_)
    (to == kNoNode || m.to == to ? now : later).push_back(std::move(m));
  pending_ = std::move(later);
  for (const Message& m : now) {
    TestNode& n = nodes_.at(m.to);
    if (!n.raft || !linkUp(m.from, m.to))
      continue;
    print(describeMessage(m));
    if (auto st = n.raft->step(m); !st)
      fail(st.error().message);
  }
  return now.size();
}

void Cluster::stabilize(int maxRounds) {
  for (int i = 0; i < maxRounds; ++i) {
    bool any = processAllReady();
    if (!pending_.empty()) {
      deliver();
      any = true;
    }
    if (!any)
      return;
  }
  fail("stabilize did not settle in " + std::to_string(maxRounds) + " rounds");
}

void Cluster::crash(NodeId id) {
  TestNode& n = nodes_.at(id);
  n.raft.reset();
  n.held.reset();
  // The state machine is volatile: it restarts from the stored snapshot.
  n.state = decodeState(n.storage->snapshotData());
  n.applied = n.storage->snapshotMeta().index;
  n.incomingSnapshot.clear();
  std::erase_if(pending_, [id](const Message& m) { return m.to == id; });
}

void Cluster::restart(NodeId id) {
  TestNode& n = nodes_.at(id);
  if (!n.raft)
    createRaft(n);
}

void Cluster::partition(const std::vector<std::vector<NodeId>>& groups) {
  cut_.clear();
  for (size_t i = 0; i < groups.size(); ++i)
    for (size_t j = 0; j < groups.size(); ++j)
      if (i != j)
        for (NodeId a : groups[i])
          for (NodeId b : groups[j])
            cut_.insert({a, b});
  std::erase_if(pending_, [this](const Message& m) { return !linkUp(m.from, m.to); });
}

void Cluster::isolate(NodeId id) {
  for (const auto& [other, n] : nodes_) {
    if (other == id)
      continue;
    cut_.insert({id, other});
    cut_.insert({other, id});
  }
  std::erase_if(pending_, [this](const Message& m) { return !linkUp(m.from, m.to); });
}

Status Cluster::compact(NodeId id, Index keep) {
  TestNode& n = nodes_.at(id);
  if (!n.raft)
    return Error{"node is down"};
  Index index = n.applied;
  if (index <= n.storage->snapshotMeta().index)
    return {};
  // The harness applies every Ready at once, so the core's configuration is the one as of
  // the applied index.
  if (auto st = n.storage->createSnapshot(index, n.raft->confState(), encodeState(n.state)); !st)
    return st;
  Index upTo = index > keep ? index - keep : 0;
  return n.storage->compact(upTo);
}

}  // namespace shoal::raft::test
