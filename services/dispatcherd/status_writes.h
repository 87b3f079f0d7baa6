#pragma once
// Node changes the dispatcher owes the store, written in batches (DESIGN.md §2 step 4, §7):
// at most one transaction per 100 ms, at most 200 changes each (the store's limit), every
// change an Update with the version it was computed from. Pure: the shell asks when a write
// is due, takes the batch, and says how it went.
//
// A batch that fails goes back under whatever came for the same nodes meanwhile (the newer
// wins field by field), so a retry never undoes a later change. A Conflict means the view was
// behind: the shell re-reads the nodes and the batch is built again from the fresh versions.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/store_client.h"
#include "services/dispatcherd/records.h"
#include "services/dispatcherd/sessions.h"

namespace shoal::dispatcherd {

// What changes in one Node; an unset field stays as it is.
struct NodeUpdate {
  std::optional<objects::NodeState> state;
  std::string message;  // with state
  std::optional<Description> description;
  std::optional<std::string> addr;
  struct Cert {
    std::vector<uint8_t> bytes;
    int64_t expiryNs = 0;
    objects::NodeRole role = objects::NodeRole::Worker;
  };
  std::optional<Cert> certificate;

  // Takes the fields `newer` sets.
  void merge(const NodeUpdate& newer);
};

// The node with the update applied, or nothing when the update changes nothing in it.
std::optional<NodeRecord> applyUpdate(const NodeRecord& node, const NodeUpdate& update);

// One transaction's changes for a batch: an Update per node that the update changes, expecting
// the version the view holds; nodes no longer in the view and updates that change nothing are
// left out. `written` holds the new records, for the view once the write is applied.
struct Batch {
  std::vector<store::ChangeSpec> changes;
  std::vector<NodeRecord> written;
};
Batch buildBatch(const NodeTable& nodes, const std::vector<std::pair<std::string, NodeUpdate>>& updates);

class StatusWrites {
 public:
  static constexpr Clock::duration kMinInterval = std::chrono::milliseconds(100);
  static constexpr size_t kMaxChanges = 200;

  void add(const std::string& nodeId, const NodeUpdate& update);
  // Whether a batch may go now: something pending, no batch in flight, and 100 ms since the
  // last one went.
  bool due(Clock::time_point now) const;
  // Moves up to kMaxChanges pending updates (in node id order) in flight.
  std::vector<std::pair<std::string, NodeUpdate>> take(Clock::time_point now);
  // The batch in flight was applied.
  void succeeded();
  // The batch in flight was not applied (or may not have been): it is pending again.
  void failed();
  // The node was deleted: nothing more is owed for it.
  void drop(const std::string& nodeId);
  void clear();

  // What this dispatcher will have written for the node once all is done (in flight, then
  // pending on top), for answering before the store has it.
  std::optional<NodeUpdate> owed(const std::string& nodeId) const;
  size_t pending() const { return pending_.size(); }
  size_t inFlight() const { return inFlight_.size(); }
  bool busy() const { return busy_; }

 private:
  std::map<std::string, NodeUpdate> pending_;
  std::map<std::string, NodeUpdate> inFlight_;
  bool busy_ = false;
  std::optional<Clock::time_point> lastWrite_;
};

}  // namespace shoal::dispatcherd
