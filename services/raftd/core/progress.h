#pragma once
// The leader's view of one follower's log (etcd raft's Progress). Internal to the core; exposed
// read-only through NodeStatus.

#include <cstddef>
#include <cstdint>
#include <deque>

#include "services/raftd/core/types.h"

namespace shoal::raft {

enum class ProgressState : uint8_t {
  // The leader does not know where the follower's log matches: it sends one AppendEntries
  // at a time and waits for the answer (or a heartbeat response) before the next.
  Probe = 0,
  // The logs match up to `match`: AppendEntries are pipelined, next advancing optimistically,
  // up to maxInflight unacknowledged messages.
  Replicate = 1,
  // The follower needs entries the leader has compacted: a snapshot is being streamed.
  Snapshot = 2,
};

const char* progressStateName(ProgressState s);

struct Progress {
  Index match = 0;
  Index next = 1;
  ProgressState state = ProgressState::Probe;
  bool learner = false;
  // Heard from since the last check-quorum round (dissertation §6.2).
  bool recentActive = false;
  // Probe: an AppendEntries is outstanding.
  bool probeSent = false;
  // Replicate: last index of each unacknowledged AppendEntries, oldest first.
  std::deque<Index> inflights;
  size_t maxInflight = 256;
  // Snapshot: the snapshot being sent, the bytes acknowledged, whether a chunk is
  // outstanding and for how many ticks nothing has been acknowledged.
  Index pendingSnapshot = 0;
  Term pendingSnapshotTerm = 0;
  uint64_t snapshotOffset = 0;
  bool chunkInFlight = false;
  int snapshotIdleTicks = 0;

  void becomeProbe();
  void becomeReplicate();
  void becomeSnapshot(Index snapshotIndex, Term snapshotTerm);

  // An acknowledgement up to n; false if it was stale.
  bool maybeUpdate(Index n);
  // A rejection of the AppendEntries whose previous index was `rejected`; the follower's
  // last index is `hint`. False if the rejection was stale.
  bool maybeDecrTo(Index rejected, Index hint);
  // Records an AppendEntries ending at last in flight.
  void sentEntries(Index last, bool hadEntries);
  void freeInflightsTo(Index index);
  bool inflightFull() const { return inflights.size() >= maxInflight; }
  // No AppendEntries may be sent now.
  bool isPaused() const;
};

}  // namespace shoal::raft
