#pragma once
// Task status reported by the agents, batched into store writes (docs/services.md "Who writes
// what" and "Assignments", DESIGN.md §2 step 4). Pure: the shell hands it each update of an
// UpdateTaskStatusRequest, asks when a write is due, takes transactions, and says how each went.
//
// An update counts only when its task is in the view, is on the reporting node, and its state
// moves forward (or stays, saying something new); anything else is ignored and counted. Pending
// updates are merged per task, the later state winning. A write is due 100 ms after the last
// one, or at once at 10,000 pending; it goes as transactions of at most 200 Task Updates, each
// the task as the view holds it with only its status replaced, expecting the view's version.
// Several transactions may be in flight; a task is in at most one of them, and after a write
// its next one waits until the view has caught up with it (so that it does not conflict with
// our own write). A transaction that failed goes back under what came meanwhile (the later
// state wins), so no reported status is lost and no state moves backwards; after a Conflict the
// shell re-reads the tasks into the view first.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/store_client.h"
#include "dispatch_generated.h"
#include "objects_generated.h"
#include "services/dispatcherd/assignments.h"
#include "services/dispatcherd/sessions.h"

namespace shoal::dispatcherd {

// What became of one reported update.
enum class Report { Accepted, UnknownTask, OtherNode, Backwards, Unchanged, Invalid };
const char* reportName(Report r);

// Bounds on what an agent may report (longer texts are cut, at a character boundary).
inline constexpr size_t kMaxStatusMessage = 1024;
inline constexpr size_t kMaxStatusErr = 4096;
inline constexpr size_t kMaxPortStatus = 64;
inline constexpr size_t kMaxContainerId = 128;
inline constexpr size_t kMaxTaskId = 64;

// The reported status as it will be stored: checked (a state an agent may report: ACCEPTED to
// REJECTED), texts bounded, applied_by = the node, applied_at = nowNs. Errors say what is wrong.
Result<std::unique_ptr<objects::TaskStatusT>> reportedStatus(const objects::TaskStatus* status,
                                                             const std::string& nodeId,
                                                             int64_t nowNs);

// The Update that puts `status` on the task as the view holds it.
Result<store::ChangeSpec> statusChange(const TaskEntry& task, const objects::TaskStatusT& status);

class TaskStatusWrites {
 public:
  static constexpr Clock::duration kInterval = std::chrono::milliseconds(100);
  static constexpr size_t kMaxPending = 10'000;
  static constexpr size_t kMaxChanges = 200;
  static constexpr size_t kMaxInFlight = 8;  // transactions

  struct Txn {
    uint64_t id = 0;
    std::vector<store::ChangeSpec> changes;
    std::vector<std::string> taskIds;
  };

  struct Counters {
    uint64_t received = 0;
    uint64_t accepted = 0;
    uint64_t unknownTask = 0;
    uint64_t otherNode = 0;
    uint64_t backwards = 0;
    uint64_t unchanged = 0;
    uint64_t invalid = 0;
    uint64_t dropped = 0;  // pending, then the task was deleted, moved or went further
    uint64_t written = 0;  // task statuses in applied transactions
  };

  // One update from `nodeId`'s session, judged against the view.
  Report report(const std::string& nodeId, const std::string& taskId,
                std::unique_ptr<objects::TaskStatusT> status, const Assignments& view);

  // Whether transactions may go now.
  bool due(Clock::time_point now) const;
  // When they may go: now, or 100 ms after the last; none while nothing is pending or as many
  // transactions as allowed are in flight (an answer frees one).
  std::optional<Clock::time_point> dueAt(Clock::time_point now) const;
  // Moves pending updates in flight, as transactions (each at most kMaxChanges).
  std::vector<Txn> take(Clock::time_point now, const Assignments& view);
  // The transaction was applied at `index` (the written tasks' new version).
  void succeeded(uint64_t txn, uint64_t index);
  // It was not applied (or may not have been): its updates are pending again.
  void failed(uint64_t txn);
  void clear();

  size_t pending() const { return pending_.size(); }
  size_t inFlight() const { return inFlight_.size(); }
  const Counters& counters() const { return counters_; }

 private:
  struct Pending {
    std::string nodeId;
    std::unique_ptr<objects::TaskStatusT> status;
  };
  // A pending update the next take skips: in flight, or written and not yet in the view.
  bool waiting(const std::string& taskId, const TaskEntry& task) const;
  // Keeps `update` for the task unless what is pending is later.
  void merge(const std::string& taskId, Pending update);

  std::map<std::string, Pending> pending_;
  std::map<uint64_t, std::map<std::string, Pending>> inFlight_;
  std::map<std::string, objects::TaskState> busy_;  // in flight: task id -> its state there
  std::map<std::string, uint64_t> written_;         // task id -> version our write gave it
  uint64_t nextTxn_ = 1;
  std::optional<Clock::time_point> lastWrite_;
  Counters counters_;
};

}  // namespace shoal::dispatcherd
