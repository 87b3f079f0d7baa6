#pragma once
// The stable log as the core reads it (etcd raft's Storage). The shell implements it (on LMDB
// in raftd) and is the only writer: it appends what a Ready says to persist, installs received
// snapshots, and compacts the log after taking a snapshot of its state machine. The core only
// reads, from the same thread that drives it.
//
// Bootstrap convention: a new cluster's storage starts with a snapshot at index 1, term 1,
// size 0, whose ConfState names the first voters (MemoryStorage::bootstrap). A server that
// joins an existing cluster starts empty (snapshot index 0, no configuration) and receives its
// first configuration in a snapshot from the leader, because the leader's log never holds
// index 1.

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "services/raftd/core/types.h"

namespace shoal::raft {

// Error codes a Storage returns in Error::code.
enum StorageError : int {
  kErrCompacted = 1,            // the index is below firstIndex(): read the snapshot instead
  kErrUnavailable = 2,          // the index is above lastIndex()
  kErrSnapshotOutOfDate = 3,    // the requested snapshot was replaced by a newer one
  kErrIo = 4,                   // the medium failed; the message says how
};

struct InitialState {
  HardState hardState;
  // Configuration as of snapshotMeta().index; the core replays ConfChange entries after it
  // up to hardState.commit.
  ConfState confState;
};

class Storage {
 public:
  virtual ~Storage() = default;

  virtual Result<InitialState> initialState() const = 0;

  // Entries with indexes in [lo, hi), at most maxBytes of data in total but always at least
  // one entry when lo < hi. Error kErrCompacted if lo < firstIndex(), kErrUnavailable if
  // hi > lastIndex() + 1.
  virtual Result<std::vector<Entry>> entries(Index lo, Index hi, uint64_t maxBytes) const = 0;

  // Term of entry i, for firstIndex() - 1 <= i <= lastIndex() (firstIndex() - 1 is the
  // snapshot's index and answers the snapshot's term).
  virtual Result<Term> term(Index i) const = 0;

  // Index of the first entry still in the log (snapshot index + 1).
  virtual Index firstIndex() const = 0;
  virtual Index lastIndex() const = 0;

  // The latest snapshot (index 0 if none).
  virtual SnapshotMeta snapshotMeta() const = 0;

  // Up to maxBytes of the snapshot at snapshotIndex starting at offset. Error
  // kErrSnapshotOutOfDate when that snapshot is no longer the latest one.
  virtual Result<std::string> snapshotChunk(Index snapshotIndex, uint64_t offset,
                                            uint64_t maxBytes) const = 0;
};

// Storage in memory, for tests and the simulation. It keeps exactly what it was told to keep,
// so a simulated crash (dropping the core, keeping the MemoryStorage) loses only what a Ready
// had not yet said to persist.
class MemoryStorage : public Storage {
 public:
  MemoryStorage() = default;

  // A new cluster's first servers: snapshot at index 1, term 1 with these voters.
  static MemoryStorage bootstrap(const std::vector<NodeId>& voters);

  Result<InitialState> initialState() const override;
  Result<std::vector<Entry>> entries(Index lo, Index hi, uint64_t maxBytes) const override;
  Result<Term> term(Index i) const override;
  Index firstIndex() const override;
  Index lastIndex() const override;
  SnapshotMeta snapshotMeta() const override;
  Result<std::string> snapshotChunk(Index snapshotIndex, uint64_t offset,
                                    uint64_t maxBytes) const override;

  // Writers, called by the shell while handling a Ready.
  void setHardState(const HardState& hs) { hardState_ = hs; }
  // Appends entries; the first one may overwrite an existing suffix (conflict resolution).
  Status append(const std::vector<Entry>& entries);
  // Replaces the log by a received snapshot (Ready::snapshot) with its data.
  Status applySnapshot(const SnapshotMeta& meta, std::string data);
  // Records a snapshot of the state machine as of index (an applied index still in the log);
  // the log is kept until compact() is called.
  Status createSnapshot(Index index, const ConfState& conf, std::string data);
  // Discards the entries up to and including index (index <= the snapshot's index), so
  // firstIndex() becomes index + 1. Keeping some entries below the snapshot lets slow
  // followers catch up without a snapshot (DESIGN §13: 500 entries).
  Status compact(Index index);

  const HardState& hardState() const { return hardState_; }
  const std::string& snapshotData() const { return snapshotData_; }

 private:
  HardState hardState_;
  SnapshotMeta snapshot_;
  std::string snapshotData_;
  // ents_[0] is a dummy holding the snapshot's (or compaction point's) index and term.
  std::vector<Entry> ents_{Entry{}};
};

}  // namespace shoal::raft
