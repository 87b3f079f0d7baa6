#pragma once
// One pass's decisions (DESIGN.md §2 step 2, §6): the cores (orchestrator, updater, allocator,
// scheduler) change the View only through a Plan, which records each change as a store change
// with the version it was computed from. The shell commits plan.batches() — each one store
// transaction, all or nothing — and the store's watch then brings the written versions back
// into the view. A Conflict means the view was behind: the shell lists again and runs a new
// pass, so a decision is never written twice.
//
// A later core sees what an earlier one decided in the same pass (a task created by the
// orchestrator is allocated and scheduled before anything is written), so a new task usually
// reaches the store already ASSIGNED, in one write.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/store_client.h"
#include "services/schedulerd/view.h"

namespace shoal::schedulerd {

using IdSource = std::function<std::string()>;

class Plan {
 public:
  // The store's limits per transaction (DESIGN.md §5).
  static constexpr size_t kMaxChanges = 200;
  static constexpr size_t kMaxBytes = 1536 * 1024;

  Plan(View& view, Time now, IdSource ids);

  Time now() const { return now_; }
  const View& view() const { return view_; }
  std::string newId() { return ids_(); }

  // A new task; its id must be set and unique. It joins the view at once.
  objects::TaskT& createTask(std::unique_ptr<objects::TaskT> task);
  // The task, to change in place: the change is recorded (once per pass).
  objects::TaskT& editTask(const std::string& id);
  void deleteTask(const std::string& id);
  objects::ServiceT& editService(const std::string& id);

  // Asks for another pass at `when` (a restart delay, an update's delay or monitor window, a
  // pending reason's countdown). The earliest asked for wins.
  void wakeAt(Time when);
  // 0 when no pass is asked for.
  Time nextWake() const { return nextWake_; }

  bool empty() const { return order_.empty(); }
  size_t size() const { return order_.size(); }
  struct Counts {
    size_t creates = 0, updates = 0, deletes = 0;
  };
  Counts counts() const;
  // Whether this pass created, changed or deleted the task.
  bool touched(const std::string& taskId) const;

  // The changes packed into transactions of at most kMaxChanges changes and kMaxBytes, in the
  // order they were made.
  std::vector<std::vector<store::ChangeSpec>> batches() const;

 private:
  struct Entry {
    objects::ObjectKind kind;
    objects::Operation operation;
    uint64_t expectedVersion;
  };
  Entry& record(objects::ObjectKind kind, const std::string& id, objects::Operation op,
                uint64_t version);

  View& view_;
  Time now_;
  IdSource ids_;
  Time nextWake_ = 0;
  std::map<std::pair<objects::ObjectKind, std::string>, Entry> entries_;
  std::vector<std::pair<objects::ObjectKind, std::string>> order_;
};

}  // namespace shoal::schedulerd
