#pragma once
// The Raft core's stable storage on LMDB (DESIGN.md §5): raftd's shell side of raft::Storage.
//
// The log, the hard state, the snapshot's meta, the applied index and this server's identity
// live in the LMDB environment raftd shares with its object tables, so the shell can persist a
// whole Ready, apply the committed entries and record the applied index in ONE write
// transaction (group commit; no double apply after a crash). Hence every writer takes the
// shell's lmdb::WriteTxn, and the in-memory view the core reads (first/last index, hard state,
// recent terms) changes only when that transaction commits (WriteTxn::onCommit): an aborted
// write leaves it as it was.
//
// Tables (prefixed "raft." so they cannot clash with the object store's):
//   raft.log   big-endian uint64 index -> [type:1][term:LEB128][data]
//   raft.meta  "format", "hardstate", "snapshot", "log.offset", "applied", "node.id",
//              "cluster.id" (every record always present once open() has run)
// The log holds the entries (offset, last]; offset is the compaction point, whose term
// answers term(firstIndex() - 1), exactly like MemoryStorage's dummy entry.
//
// Snapshots are files: <snapshotDir>/<index>-<term>.snap, a consistent copy of the
// environment (Environment::copy) whose meta is recorded in raft.meta; a snapshot of size 0
// (the bootstrap snapshot) has no file. A snapshot being received is written to
// <snapshotDir>/incoming-<index>-<term>.snap.
//
// Thread-compatible, not thread-safe: the thread that drives the core and the shell's writes
// is the only one to call it.

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/lmdb.h"
#include "common/result.h"
#include "services/raftd/core/storage.h"
#include "services/raftd/core/types.h"

namespace shoal::raftd {

// What raftd's Status shows about its Raft storage.
struct RaftStorageStatus {
  raft::Index firstIndex = 0;
  raft::Index lastIndex = 0;
  uint64_t entryCount = 0;
  raft::Index applied = 0;
  raft::HardState hardState;
  raft::SnapshotMeta snapshot;
  std::string snapshotPath;  // empty when the snapshot has no file (size 0)
  raft::NodeId nodeId = raft::kNoNode;
  std::string clusterId;
  uint64_t cachedTermRuns = 0;  // (index, term) runs held in memory for term()
};

// The checksum of a snapshot file carried in SnapshotMeta: the first 8 bytes of its
// BLAKE2b-256 (libsodium), big-endian; never 0 for a non-empty file.
Result<uint64_t> snapshotChecksum(const std::string& path);

class RaftStorage : public raft::Storage {
 public:
  // Opens the raft tables of env (creating them on a new store) and the snapshot directory
  // (created if missing), checks that they agree, rebuilds the in-memory view and removes
  // snapshot files left over by a crash. env must outlive the RaftStorage.
  static Result<std::unique_ptr<RaftStorage>> open(lmdb::Environment& env,
                                                    std::string snapshotDir);

  RaftStorage(const RaftStorage&) = delete;
  RaftStorage& operator=(const RaftStorage&) = delete;

  // raft::Storage: the same answers and error codes as raft::MemoryStorage.
  Result<raft::InitialState> initialState() const override;
  Result<std::vector<raft::Entry>> entries(raft::Index lo, raft::Index hi,
                                           uint64_t maxBytes) const override;
  Result<raft::Term> term(raft::Index i) const override;
  raft::Index firstIndex() const override { return state_.offset + 1; }
  raft::Index lastIndex() const override { return state_.last; }
  raft::SnapshotMeta snapshotMeta() const override { return state_.snapshot; }
  Result<std::string> snapshotChunk(raft::Index snapshotIndex, uint64_t offset,
                                    uint64_t maxBytes) const override;

  // Writers, inside the shell's update(). Each sees what earlier writers wrote in the same
  // transaction; the getters above and below see it once the transaction has committed.

  // Appends entries (consecutive indexes); an entry at index i replaces i and everything
  // after it. Entries at or below the compaction point are skipped; a gap after lastIndex()
  // is kErrUnavailable.
  Status append(lmdb::WriteTxn& txn, const std::vector<raft::Entry>& entries);
  Status setHardState(lmdb::WriteTxn& txn, const raft::HardState& hs);
  // The state machine has applied everything up to index (never goes back).
  Status setApplied(lmdb::WriteTxn& txn, raft::Index index);
  // This server's identity, set once (changing it is refused: the state belongs to one node).
  Status setNodeId(lmdb::WriteTxn& txn, raft::NodeId id);
  Status setClusterId(lmdb::WriteTxn& txn, std::string_view id);
  // Discards the entries up to and including index (index <= the snapshot's index), so
  // firstIndex() becomes index + 1. The caller keeps some entries below the snapshot for slow
  // followers (DESIGN §13: 500).
  Status compact(lmdb::WriteTxn& txn, raft::Index index);
  // A received snapshot (Ready::snapshot) replaces the log: after completeIncoming() and the
  // shell's replacing its object tables from the file, in the same transaction. Sets the
  // applied index to meta.index; older snapshot files are removed after the commit.
  Status installSnapshot(lmdb::WriteTxn& txn, const raft::SnapshotMeta& meta);
  // A new cluster's first servers (MemoryStorage::bootstrap's convention): on an empty
  // storage, a snapshot at index 1, term 1, size 0 naming these voters, hard state
  // {term 1, no vote, commit 1}, applied 1.
  Status bootstrap(lmdb::WriteTxn& txn, const std::vector<raft::NodeId>& voters);
  Status bootstrap(const std::vector<raft::NodeId>& voters);  // in its own transaction

  // Snapshot taken here: path is the data file of a consistent copy of the environment as of
  // the applied index `index` (best made under snapshotDir, so the move is a rename). Moves
  // it to its final name, records the meta durably (its own transaction: not inside
  // update()), then removes older snapshot files. The log is kept until compact().
  // checksum: the file's snapshotChecksum(), when the caller has it (it reads the whole
  // file: a shell computes it off its loop); 0 = compute it here.
  Status recordSnapshot(raft::Index index, raft::Term term, const raft::ConfState& conf,
                        std::string path, uint64_t checksum = 0);

  // Snapshot received (Ready::snapshotChunks): offset 0 starts a new incoming file; any
  // other chunk must start where the file ends. The last chunk (done) is synced.
  Status writeChunk(const raft::SnapshotChunk& chunk);
  // The incoming snapshot is complete: checks its size and (when the meta names one) its
  // checksum, so that a damaged transfer is never opened; moves it to its final name and
  // returns that path. Empty for a snapshot of size 0, whose state machine is empty. A
  // damaged file is removed (the transfer must start again).
  Result<std::string> completeIncoming(const raft::SnapshotMeta& meta);
  // Removes an incoming file the core decided not to install.
  Status discardIncoming();

  const raft::HardState& hardState() const { return state_.hardState; }
  raft::Index applied() const { return state_.applied; }
  raft::NodeId nodeId() const { return state_.nodeId; }
  const std::string& clusterId() const { return state_.clusterId; }
  // Where the snapshot's file lives (empty for size 0).
  std::string snapshotPath(const raft::SnapshotMeta& meta) const;
  const std::string& snapshotDir() const { return snapshotDir_; }
  RaftStorageStatus status() const;

  // Bound of the term cache, in runs of consecutive entries with the same term. A run is
  // 16 bytes, so the cache stays under 64 KiB however the log looks.
  static constexpr size_t kMaxTermRuns = 4096;

 private:
  // Everything raft.meta holds plus the log's last index, as committed.
  struct State {
    raft::HardState hardState;
    raft::SnapshotMeta snapshot;
    raft::Index offset = 0;  // compaction point: firstIndex() - 1
    raft::Term offsetTerm = 0;
    raft::Index last = 0;
    raft::Index applied = 0;
    raft::NodeId nodeId = raft::kNoNode;
    std::string clusterId;
  };

  RaftStorage(lmdb::Environment& env, std::string snapshotDir, lmdb::Table log,
              lmdb::Table meta)
      : env_(env), snapshotDir_(std::move(snapshotDir)), log_(log), meta_(meta) {}

  Result<State> loadState(const lmdb::Txn& txn) const;
  Status initialize();
  Status checkLog(const lmdb::Txn& txn, const State& st) const;
  Status rebuildTermCache(const lmdb::Txn& txn);
  Status checkSnapshotFile() const;
  Status putState(lmdb::WriteTxn& txn, const State& st);
  Result<raft::Term> storedTerm(const lmdb::Txn& txn, raft::Index i) const;

  std::string incomingPath(const raft::SnapshotMeta& meta) const;
  // Removes snapshot files: old ones (every one but `keep`, a file name) and/or incoming ones.
  void removeSnapshotFiles(const std::string& keep, bool old, bool incoming) const;

  lmdb::Environment& env_;
  std::string snapshotDir_;
  lmdb::Table log_;
  lmdb::Table meta_;
  State state_;
  // (first index, term) of runs of entries with one term, covering [runs_.front().first,
  // state_.last]; older terms are read from LMDB. Changed only on commit, in write order.
  std::deque<std::pair<raft::Index, raft::Term>> runs_;
};

}  // namespace shoal::raftd
