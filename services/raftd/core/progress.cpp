#include "services/raftd/core/progress.h"

#include <algorithm>

namespace shoal::raft {

const char* progressStateName(ProgressState s) {
  switch (s) {
    case ProgressState::Probe: return "Probe";
    case ProgressState::Replicate: return "Replicate";
    case ProgressState::Snapshot: return "Snapshot";
  }
  return "Unknown";
}

void Progress::becomeProbe() {
  // After a snapshot the follower holds at least the snapshot's index.
  if (state == ProgressState::Snapshot)
    next = std::max(match + 1, pendingSnapshot + 1);
  else
    next = match + 1;
  state = ProgressState::Probe;
  probeSent = false;
  inflights.clear();
  pendingSnapshot = 0;
  pendingSnapshotTerm = 0;
  snapshotOffset = 0;
  chunkInFlight = false;
  snapshotIdleTicks = 0;
}

void Progress::becomeReplicate() {
  state = ProgressState::Replicate;
  next = match + 1;
  probeSent = false;
  inflights.clear();
  pendingSnapshot = 0;
}

void Progress::becomeSnapshot(Index snapshotIndex, Term snapshotTerm) {
  state = ProgressState::Snapshot;
  probeSent = false;
  inflights.clear();
  pendingSnapshot = snapshotIndex;
  pendingSnapshotTerm = snapshotTerm;
  snapshotOffset = 0;
  chunkInFlight = false;
  snapshotIdleTicks = 0;
}

bool Progress::maybeUpdate(Index n) {
  bool updated = false;
  if (match < n) {
    match = n;
    updated = true;
    probeSent = false;
  }
  next = std::max(next, n + 1);
  return updated;
}

bool Progress::maybeDecrTo(Index rejected, Index hint) {
  if (state == ProgressState::Replicate) {
    // Rejections of appends below what is already matched are duplicates or reordered.
    if (rejected <= match)
      return false;
    next = match + 1;
    return true;
  }
  // Probe (or Snapshot): only the answer to the outstanding probe counts.
  if (next - 1 != rejected)
    return false;
  next = std::max<Index>(std::min(rejected, hint + 1), match + 1);
  probeSent = false;
  return true;
}

void Progress::sentEntries(Index last, bool hadEntries) {
  if (state == ProgressState::Replicate) {
    if (hadEntries) {
      next = last + 1;
      inflights.push_back(last);
    }
  } else if (state == ProgressState::Probe) {
    probeSent = true;
  }
}

void Progress::freeInflightsTo(Index index) {
  while (!inflights.empty() && inflights.front() <= index)
    inflights.pop_front();
}

bool Progress::isPaused() const {
  switch (state) {
    case ProgressState::Probe: return probeSent;
    case ProgressState::Replicate: return inflightFull();
    case ProgressState::Snapshot: return true;
  }
  return true;
}

}  // namespace shoal::raft
