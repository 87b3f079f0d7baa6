#pragma once
// raftd's replicated object store (DESIGN.md §5): the objects of objects.fbs in LMDB tables,
// their secondary indexes, and the watch history.
//
// The store shares its lmdb::Environment with the Raft log, so its tables are named
// "obj", "idx.*" and "store.*". Changes arrive as StoreTxn batches, one per committed Raft
// entry, and are applied inside a write transaction the caller (the raft shell) owns, so
// that the entry's effect and the record that it was applied commit together.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/lmdb.h"
#include "common/result.h"
#include "services/raftd/store/history.h"
#include "services/raftd/store/objects.h"

namespace shoal::store {

struct StoreOptions {
  std::size_t historyEvents = 10000;
  std::size_t historyBytes = std::size_t{64} << 20;
};

class Store {
 public:
  // Swarm's limits per transaction; larger work is split into batches by the writer.
  static constexpr std::size_t kMaxChanges = 200;
  static constexpr std::size_t kMaxBytes = 1536 * 1024;

  // Opens (creating when missing) the store's tables. Call it again after the environment
  // was replaced by a snapshot: the watch history starts afresh.
  static Result<std::unique_ptr<Store>> open(lmdb::Environment& env,
                                             const StoreOptions& options = {});

  // Applies one batch at Raft index `index` (later than every index applied before) at time
  // `now` (Unix nanoseconds, from the entry, so every manager writes the same bytes).
  // Every change is checked before anything is written: the limits, ids, the FlatBuffers
  // verifier over each object, expected versions and unique names. The verdict:
  //   - an error Result: a storage failure; the caller must abort txn;
  //   - a failed Status: the batch was rejected and nothing written; its code is a
  //     wire::ErrorCode (Conflict, NotFound, InvalidArgument, ResourceExhausted) and its
  //     message names the first offending object. The caller may still commit txn;
  //   - an ok Status: applied. Watch events are published when txn commits.
  Result<Status> apply(lmdb::WriteTxn& txn, const objects::StoreTxn& batch,
                       std::uint64_t index, std::int64_t now);
  // The same for a serialized StoreTxn (a Raft entry's data), verified first.
  Result<Status> apply(lmdb::WriteTxn& txn, std::string_view batch, std::uint64_t index,
                       std::int64_t now);

  // Reads. Views point into the map: valid until txn ends (in a write transaction: until
  // its next write).
  Result<std::optional<std::string_view>> get(const lmdb::Txn& txn, ObjectKind kind,
                                              std::string_view id) const;
  Result<std::optional<std::string_view>> getByName(const lmdb::Txn& txn, ObjectKind kind,
                                                    std::string_view name) const;
  Result<std::vector<std::string_view>> list(const lmdb::Txn& txn, ObjectKind kind) const;
  Result<std::vector<std::string_view>> tasksOfService(const lmdb::Txn& txn,
                                                       std::string_view serviceId) const;
  Result<std::vector<std::string_view>> tasksOfNode(const lmdb::Txn& txn,
                                                    std::string_view nodeId) const;
  Result<std::vector<std::string_view>> tasksOfSlot(const lmdb::Txn& txn,
                                                    std::string_view serviceId,
                                                    std::uint64_t slot) const;
  Result<std::vector<std::string_view>> nodesWithRole(const lmdb::Txn& txn,
                                                      objects::NodeRole role) const;
  Result<std::uint64_t> count(const lmdb::Txn& txn, ObjectKind kind) const;
  // The index of the last batch that changed something (0 for an empty store).
  Result<std::uint64_t> lastChangeIndex(const lmdb::Txn& txn) const;

  // Watch: everything after `index` that matches, or resyncNeeded.
  WatchBatch changesSince(std::uint64_t index, const WatchFilter& filter,
                          std::size_t limit = SIZE_MAX) const {
    return history_.since(index, filter, limit);
  }
  const WatchHistory& history() const { return history_; }
  // Called (on the writer's thread, after the commit) with the index of each published batch.
  void setListener(std::function<void(std::uint64_t index)> listener) {
    listener_ = std::move(listener);
  }

 private:
  struct Tables {
    lmdb::Table objects;      // [kind][id] -> object
    lmdb::Table names;        // [kind][folded name] -> id
    lmdb::Table taskService;  // service id \0 task id
    lmdb::Table taskNode;     // node id \0 task id
    lmdb::Table taskSlot;     // service id \0 [slot, 8 bytes big-endian] task id
    lmdb::Table nodeRole;     // [role] node id
    lmdb::Table state;        // "last-change" -> index
  };
  struct IndexEntry {
    const lmdb::Table* table;
    std::string key;
    std::string value;
  };

  Store(const Tables& tables, const StoreOptions& options, std::uint64_t lastChange)
      : tables_(tables), history_(options.historyEvents, options.historyBytes, lastChange) {}

  std::vector<IndexEntry> indexEntries(ObjectKind kind, const ObjectFields& f) const;
  Result<std::vector<std::string_view>> objectsByIndex(const lmdb::Txn& txn,
                                                       const lmdb::Table& table,
                                                       const std::string& prefix,
                                                       ObjectKind kind) const;

  Tables tables_;
  WatchHistory history_;
  std::function<void(std::uint64_t)> listener_;
};

std::string objectKey(ObjectKind kind, std::string_view id);

}  // namespace shoal::store
