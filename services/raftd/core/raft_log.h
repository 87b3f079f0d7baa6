#pragma once
// The log as the core sees it (etcd raft's raftLog): the stable part read from Storage, and
// the unstable part — entries and possibly a received snapshot — that a Ready has not yet
// persisted. Internal to the core.

#include <optional>
#include <vector>

#include "common/result.h"
#include "services/raftd/core/storage.h"
#include "services/raftd/core/types.h"

namespace shoal::raft {

class RaftLog {
 public:
  explicit RaftLog(const Storage& storage) : storage_(storage) {}
  Status init();

  Index firstIndex() const;
  Index lastIndex() const;
  Term lastTerm() const;
  // Error kErrCompacted / kErrUnavailable as Storage::term.
  Result<Term> term(Index i) const;
  // term(i), or 0 when i is outside the log.
  Term termOrZero(Index i) const;
  bool matchTerm(Index i, Term t) const;
  // Paper §5.4.1: a log whose last entry is (lastTerm, lastIndex) is at least as up-to-date.
  bool isUpToDate(Index lastIdx, Term lastTrm) const;

  // Follower side of AppendEntries: if the entry at `index` has `logTerm`, append ents
  // (dropping a conflicting suffix), commit up to min(commit, last new entry) and return the
  // last new index. nullopt when the logs do not match at index.
  std::optional<Index> maybeAppend(Index index, Term logTerm, Index commit,
                                   const std::vector<Entry>& ents);
  // Leader side: append after lastIndex (or truncate and append).
  Index append(const std::vector<Entry>& ents);
  // Entries in [lo, hi), at most maxBytes (at least one).
  Result<std::vector<Entry>> slice(Index lo, Index hi, uint64_t maxBytes) const;

  void commitTo(Index i);
  // Committed entries not yet handed to the shell, and marking them handed out.
  bool hasNextCommitted() const;
  std::vector<Entry> takeNextCommitted();
  void appliedTo(Index i);

  // Install a received snapshot: the log becomes empty after it.
  void restore(const SnapshotMeta& meta);

  const std::vector<Entry>& unstableEntries() const { return unstable_; }
  const std::optional<SnapshotMeta>& unstableSnapshot() const { return unstableSnapshot_; }
  // Last index up to which this log is durable: the entries there are in Storage and not
  // replaced by unstable ones. 0 while a received snapshot is not installed yet.
  Index stableLastIndex() const;
  // The shell has persisted entries up to (i, t) / installed the snapshot at i.
  void stableTo(Index i, Term t);
  void stableSnapTo(Index i);

  Index committed() const { return committed_; }
  Index applied() const { return applied_; }
  Index applying() const { return applying_; }
  const Storage& storage() const { return storage_; }

 private:
  void truncateAndAppend(const std::vector<Entry>& ents);
  // First index at which ents conflict with the log (0 if none).
  Index findConflict(const std::vector<Entry>& ents) const;

  const Storage& storage_;
  std::optional<SnapshotMeta> unstableSnapshot_;
  std::vector<Entry> unstable_;
  Index offset_ = 1;  // index of unstable_[0]
  Index committed_ = 0;
  Index applied_ = 0;
  Index applying_ = 0;  // last committed index handed out in a Ready
};

}  // namespace shoal::raft
