#pragma once
// A shell for the Raft core in memory, shared by the transcript tests and the simulation:
// nodes with MemoryStorage, a state machine that records what it applied, and a network of
// pending messages the test delivers, drops, duplicates or reorders.

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "services/raftd/core/raft.h"

namespace shoal::raft::test {

struct AppliedEntry {
  Index index = 0;
  Term term = 0;
  std::string data;
  bool operator==(const AppliedEntry&) const = default;
};

struct NodeOptions {
  int election = 10;
  int heartbeat = 1;
  bool preVote = true;
  bool checkQuorum = true;
  size_t maxInflight = 256;
  uint64_t maxBytes = 1 << 20;
  uint64_t chunkBytes = 1 << 20;
  uint64_t seed = 0;  // election timeout randomness, mixed with the node id
};

struct TestNode {
  NodeId id = kNoNode;
  NodeOptions options;
  std::unique_ptr<MemoryStorage> storage;
  std::unique_ptr<Raft> raft;  // null while crashed
  uint64_t rngState = 0;
  // The state machine: applied normal entries with data (snapshots carry them too).
  std::vector<AppliedEntry> state;
  Index applied = 0;
  std::string incomingSnapshot;  // chunks written so far
  // A Ready whose early messages went out (Cluster::sendEarly) but which is not persisted yet.
  std::optional<Ready> held;
};

class Cluster {
 public:
  using Printer = std::function<void(const std::string&)>;

  explicit Cluster(Printer print = {}) : print_(std::move(print)) {}

  // Bootstraps a cluster of voters (all created now) or adds empty joiners.
  void addVoters(const std::vector<NodeId>& ids, const NodeOptions& o);
  void addJoiner(NodeId id, const NodeOptions& o);
  TestNode& node(NodeId id) { return nodes_.at(id); }
  bool has(NodeId id) const { return nodes_.count(id) != 0; }
  std::vector<NodeId> ids() const;

  // Handles the Ready of one node (persist, send, apply, advance), or finishes the one
  // sendEarly() took. True if there was one.
  bool processReady(NodeId id);
  // Takes the node's Ready and sends only the messages Ready::mayPrecedePersist allows, as a
  // shell that overlaps the leader's disk write with replication does (dissertation §10.2.1);
  // the Ready stays held, unpersisted, until processReady() (a crash loses it). The node may
  // step messages meanwhile. False if there was no Ready or one is already held.
  bool sendEarly(NodeId id);
  bool processAllReady();
  // Delivers the messages pending for `to` (all nodes when kNoNode) that were queued before
  // the call. Returns how many were delivered.
  size_t deliver(NodeId to = kNoNode);
  // Ready and deliver until quiet (bounded).
  void stabilize(int maxRounds = 1000);

  // Crash keeps only the storage (a held Ready is lost); restart builds a new core from it.
  void crash(NodeId id);
  void restart(NodeId id);

  // Links cut in both directions by partition(); messages over them are dropped on send.
  void partition(const std::vector<std::vector<NodeId>>& groups);
  void isolate(NodeId id);
  void heal() { cut_.clear(); }
  bool linkUp(NodeId a, NodeId b) const { return !cut_.count({a, b}); }

  std::deque<Message>& pending() { return pending_; }
  // Snapshot of the state machine at the node's applied index, then compaction of the log up
  // to keep entries below it.
  Status compact(NodeId id, Index keep);

  // Called for every committed entry a node applies (the sim's safety checks).
  std::function<void(NodeId, const Entry&)> onApply;
  std::function<void(NodeId, const SoftState&)> onSoftState;

  static std::string encodeState(const std::vector<AppliedEntry>& s);
  static std::vector<AppliedEntry> decodeState(const std::string& data);

 private:
  void createRaft(TestNode& n);
  void print(const std::string& s) {
    if (print_)
      print_(s);
  }

  Printer print_;
  std::map<NodeId, TestNode> nodes_;
  std::deque<Message> pending_;
  std::set<std::pair<NodeId, NodeId>> cut_;
};

}  // namespace shoal::raft::test
