#pragma once
// The watch history: a bounded in-memory record of recent store changes, from which a
// subscriber reads everything after a Raft index, or learns that it must resync (list the
// current state and watch from there) because the history no longer reaches back that far
// (DESIGN.md §5).

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "services/raftd/store/objects.h"

namespace shoal::store {

// One applied change. For Delete, `object` is the object as it was before the delete.
struct Event {
  std::uint64_t index = 0;  // the Raft index of the transaction
  ObjectKind kind = ObjectKind::Unknown;
  Operation operation = Operation::Create;
  std::string id;
  std::uint64_t version = 0;  // = index for Create and Update; the deleted version for Delete
  std::string object;
  std::string serviceId;      // tasks only, for filters
  std::string nodeId;         // tasks only, for filters
};

using EventPtr = std::shared_ptr<const Event>;

struct WatchFilter {
  std::vector<ObjectKind> kinds;  // empty: every kind
  std::string serviceId;          // if set: only tasks of this service (other kinds pass)
  std::string nodeId;             // if set: only tasks on this node (other kinds pass)

  bool matches(const Event& e) const;
};

struct WatchBatch {
  bool resyncNeeded = false;
  // The subscriber has now seen everything up to this index; pass it to the next call.
  std::uint64_t lastIndex = 0;
  std::vector<EventPtr> events;
};

class WatchHistory {
 public:
  // startIndex: changes up to this index are not in the history (e.g. made before the
  // process started); a subscriber that starts from an older index must resync.
  WatchHistory(std::size_t maxEvents, std::size_t maxBytes, std::uint64_t startIndex);

  // The events of one transaction, all with the same index, later than any before.
  void append(std::vector<EventPtr> events);

  // The events after `index` that match the filter, whole transactions at a time, at least
  // one transaction's worth and otherwise stopping after about `limit` events.
  WatchBatch since(std::uint64_t index, const WatchFilter& filter,
                   std::size_t limit = SIZE_MAX) const;

  std::uint64_t lastIndex() const;
  // Subscribers starting before this index must resync.
  std::uint64_t oldestIndex() const;
  std::size_t size() const;

 private:
  void trim();

  const std::size_t maxEvents_;
  const std::size_t maxBytes_;
  mutable std::mutex mutex_;
  std::deque<EventPtr> events_;  // by index, oldest first
  std::size_t bytes_ = 0;
  std::uint64_t trimmedThrough_;  // every change after this index is in events_
  std::uint64_t last_;
};

}  // namespace shoal::store
