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
  // Of the data (the shell's: raftd's is the first 8 bytes of its BLAKE2b-256), so that a
  // receiver can check a transfer before it opens the file; 0 = not given.
  uint64_t checksum = 0;

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
//   3. persist hardState if set;
//   4. send messages: those for which mayPrecedePersist() is true at any time from the
//      moment the Ready is taken, so in parallel with steps 1–3; all others only once steps
//      1–3 are durable;
//   5. apply committedEntries in order (ConfChange entries too: the core has already applied
//      them to its configuration; the shell updates its peer table);
//   6. serve readStates once applied >= index;
//   7. call advance(ready), only once steps 1–3 are durable: advance() is how the leader
//      learns that its own entries are durable, and only then counts them toward a quorum.
// The shell may step() messages, tick() and propose() between taking a Ready and advance();
// it must not take the next Ready before advance().
//
// Sending early (Raft dissertation §10.2.1): a leader may replicate entries before its own
// write of them is durable, because it counts its own copy toward the commit index only in
// advance(). mayPrecedePersist() allows exactly the leader's outgoing replication messages —
// App, Heartbeat, Snap and TimeoutNow — and only when this Ready changes neither the term
// nor the vote:
//   - They acknowledge and promise nothing. What they carry that may not be durable yet is
//     the leader's new entries; every commit index they carry (App commit, Heartbeat commit)
//     stands on a quorum of durable copies, since the leader's own copy counts only after
//     advance(). If the leader crashes before its write, the copies it sent are uncommitted
//     entries of a deposed leader, which the next leader commits or overwrites by the usual
//     rules (paper §5.3, §5.4). Snap carries a snapshot the shell already stored; TimeoutNow
//     makes a follower whose log has caught up campaign in a higher term.
//   - Their term must be durable: a single voter becomes candidate and leader in one Ready,
//     and if it could send App of that term and then lose the term in a crash, it could lead
//     the same term again with different entries at the same indexes, breaking log matching
//     (paper §5.3) on the learners that got the first ones. newTermOrVote marks such Readies.
//   - Everything else waits for steps 1–3. A candidate's Vote (and PreVote) requests: its
//     term and its vote for itself must be durable before it asks, or after a crash it could
//     vote again in the same term (paper §5.2: at most one leader per term). Responses
//     (AppResp, VoteResp, PreVoteResp, HeartbeatResp, SnapResp) acknowledge or promise
//     durable state: an AppResp counts the follower's entries toward a commit, a VoteResp
//     binds its vote. ReadIndex and ReadIndexResp gain nothing from going early.
struct Ready {
  std::optional<SoftState> softState;
  std::optional<HardState> hardState;
  std::vector<Entry> entries;
  std::vector<SnapshotChunk> snapshotChunks;
  std::optional<SnapshotMeta> snapshot;
  std::vector<Message> messages;
  std::vector<Entry> committedEntries;
  std::vector<ReadState> readStates;
  // Set by the core: hardState carries a term or vote that was not durable before this Ready.
  bool newTermOrVote = false;

  // True when entries, hardState or snapshot must be synced before advance() and before any
  // message mayPrecedePersist() does not allow.
  bool mustSync() const { return hardState.has_value() || !entries.empty() || snapshot.has_value(); }

  // True when the shell may send m (one of this Ready's messages) before steps 1–3 are
  // durable; see above for why.
  bool mayPrecedePersist(const Message& m) const {
    if (newTermOrVote || snapshot.has_value())
      return false;
    switch (m.type) {
      case MessageType::App:
      case MessageType::Heartbeat:
      case MessageType::Snap:
      case MessageType::TimeoutNow:
        return true;
      default:
        return false;
    }
  }
};

// Human-readable forms for logs and transcript tests, e.g. "1->2 MsgVote Term:1 Log:1/2".
std::string describeMessage(const Message& m);
std::string describeEntry(const Entry& e);
std::string describeConfState(const ConfState& c);

}  // namespace shoal::raft
