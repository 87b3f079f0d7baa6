#pragma once
// Plain data of the Raft core: log entries, persistent state, configurations, messages and the
// Ready batch. Everything here is a value type with public fields so the shell can turn it into
// FlatBuffers (schemas/) and back without knowing the algorithm.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace shoal::raft {

using NodeId = uint64_t;
using Term = uint64_t;
using Index = uint64_t;

// Node ids start at 1; 0 means "nobody" (no vote cast, no leader known).
constexpr NodeId kNoNode = 0;

enum class EntryType : uint8_t {
  Normal = 0,
  ConfChange = 1,  // data is an encoded ConfChange (encodeConfChange)
};

struct Entry {
  Term term = 0;
  Index index = 0;
  EntryType type = EntryType::Normal;
  std::string data;

  bool operator==(const Entry&) const = default;
};

// What must survive a crash besides the log (Raft paper figure 2, "persistent state").
// commit is persisted too, as etcd does, so a restarted server can apply without waiting.
struct HardState {
  Term term = 0;
  NodeId vote = kNoNode;
  Index commit = 0;

  bool operator==(const HardState&) const = default;
};

// Membership: voters count toward quorums; learners receive the log but do not vote.
struct ConfState {
  std::vector<NodeId> voters;
  std::vector<NodeId> learners;

  bool operator==(const ConfState&) const = default;
};

// Describes a snapshot: it replaces every entry up to and including index.
struct SnapshotMeta {
  Index index = 0;
  Term term = 0;
  ConfState conf;     // configuration as of index
  uint64_t size = 0;  // bytes of snapshot data, streamed in chunks

  bool operator==(const SnapshotMeta&) const = default;
};

// Membership change one server at a time (Raft dissertation §4.1, §4.2.1): a new server is
// first added as a learner, promoted once it has caught up, and removed by Remove.
enum class ConfChangeType : uint8_t {
  AddLearner = 0,
  Promote = 1,
  Remove = 2,
};

struct ConfChange {
  ConfChangeType type = ConfChangeType::AddLearner;
  NodeId node = kNoNode;
  std::string context;  // opaque to the core (the shell puts the peer's address here)

  bool operator==(const ConfChange&) const = default;
};

// ConfChange entries carry this encoding in Entry::data.
std::string encodeConfChange(const ConfChange& cc);
Result<ConfChange> decodeConfChange(std::string_view data);

enum class MessageType : uint8_t {
  App = 0,          // AppendEntries (also a probe when entries is empty)
  AppResp = 1,
  Vote = 2,         // RequestVote
  VoteResp = 3,
  PreVote = 4,      // dissertation §9.6: would you vote for me at term `term`?
  PreVoteResp = 5,
  Heartbeat = 6,    // carries commit (bounded by the follower's match) and a ReadIndex context
  HeartbeatResp = 7,
  Snap = 8,         // one InstallSnapshot chunk
  SnapResp = 9,
  TimeoutNow = 10,  // leadership transfer: start an election now (dissertation §3.10)
  ReadIndex = 11,   // follower forwards a linearizable read to the leader (dissertation §6.4)
  ReadIndexResp = 12,
};

const char* messageTypeName(MessageType t);

struct Message {
  MessageType type = MessageType::App;
  NodeId from = kNoNode;
  NodeId to = kNoNode;
  Term term = 0;
  // App: term and index of the entry preceding `entries`. Vote/PreVote: candidate's last
  // log term and index. AppResp: the index acknowledged (or rejected). ReadIndexResp: the
  // read index.
  Term logTerm = 0;
  Index index = 0;
  std::vector<Entry> entries;
  Index commit = 0;
  bool reject = false;
  Index rejectHint = 0;  // AppResp reject: the follower's last index; SnapResp: next offset
  // Snap / SnapResp: which snapshot, where this chunk starts, its bytes, and whether it is
  // the last one.
  SnapshotMeta snapshot;
  uint64_t chunkOffset = 0;
  std::string chunkData;
  bool chunkDone = false;
  // ReadIndex / Heartbeat / ReadIndexResp: the read request's context. Vote/PreVote:
  // kCampaignTransfer when the election was started by TimeoutNow.
  std::string context;

  bool operator==(const Message&) const = default;
};

// Context of a Vote that follows TimeoutNow: voters then ignore their leader lease
// (dissertation §4.2.3 exception for leadership transfer).
inline constexpr std::string_view kCampaignTransfer = "CampaignTransfer";

enum class Role : uint8_t {
  Follower = 0,
  PreCandidate = 1,
  Candidate = 2,
  Leader = 3,
};

const char* roleName(Role r);

// Volatile state the shell reports to local daemons (leadership gained or lost).
struct SoftState {
  NodeId leader = kNoNode;
  Role role = Role::Follower;

  bool operator==(const SoftState&) const = default;
};

// A ReadIndex result: once the state machine has applied `index`, a read issued with
// `context` is linearizable.
struct ReadState {
  Index index = 0;
  std::string context;

  bool operator==(const ReadState&) const = default;
};

// A received InstallSnapshot chunk for the shell to write at `offset` of the snapshot file
// named by meta (index, term). A chunk at offset 0 starts a new file.
struct SnapshotChunk {
  SnapshotMeta meta;
  uint64_t offset = 0;
  std::string data;
  bool done = false;
};

// One batch of work for the shell, handled in this order:
//   1. write snapshotChunks; if snapshot is set, install it (the chunks are then complete):
//      replace the state machine with the snapshot data and discard the log up to its index;
//   2. append entries to the log (an entry at index i replaces i and everything after it);
//   3. persist hardState if set — steps 1–3 durable before anything else;
//   4. send messages;
//   5. apply committedEntries in order (ConfChange entries too: the core has already applied
//      them to its configuration; the shell updates its peer table);
//   6. serve readStates once applied >= index;
//   7. call advance(ready).
struct Ready {
  std::optional<SoftState> softState;
  std::optional<HardState> hardState;
  std::vector<Entry> entries;
  std::vector<SnapshotChunk> snapshotChunks;
  std::optional<SnapshotMeta> snapshot;
  std::vector<Message> messages;
  std::vector<Entry> committedEntries;
  std::vector<ReadState> readStates;

  // True when entries, hardState or snapshot must be synced before messages go out.
  bool mustSync() const { return hardState.has_value() || !entries.empty() || snapshot.has_value(); }
};

// Human-readable forms for logs and transcript tests, e.g. "1->2 MsgVote Term:1 Log:1/2".
std::string describeMessage(const Message& m);
std::string describeEntry(const Entry& e);
std::string describeConfState(const ConfState& c);

}  // namespace shoal::raft
