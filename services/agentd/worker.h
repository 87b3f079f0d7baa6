#pragma once
// The node's tasks (DESIGN.md §2 step 4, §8; docs/services.md "Assignments"): the set the
// dispatcher assigned, and for each task what it should be doing. The worker drives an
// executor (executor.h) toward each task's desired state and keeps the status reports that
// go back through the session. Pure but for the executor it is given: time comes from a
// clock function, and the session (session.h) feeds it assignments and takes its reports.
//
// The rules, SwarmKit's agent's:
// - desired RUNNING (or COMPLETE, a job): prepare, then start once READY;
// - desired READY (a restart waiting for its delay, docs/services.md "Restarts"): prepare
//   only, and start when the desired state becomes RUNNING;
// - desired SHUTDOWN or later: stop it (a task never started is reported SHUTDOWN at once);
// - gone from the set: stopped and forgotten, and its unsent reports with it (the store
//   deleted it: nobody would take them);
// - a task at a terminal state (COMPLETE and later) is never started again here: replacing
//   it is the orchestrator's decision;
// - a task only moves forward: a report is never of a state earlier than (or the same as)
//   the last one.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "objects_generated.h"
#include "services/agentd/executor.h"

namespace shoal::agentd {

// Lower case, as `service ps` shows them: "running", "shutdown", ...
std::string stateName(objects::TaskState state);

// A task's status as the agent reports it (objects.fbs TaskStatus's agent fields).
struct Report {
  objects::TaskState state = objects::TaskState::Assigned;
  std::string message;
  std::string err;
  int exitCode = 0;
  int64_t timestamp = 0;  // ns since the epoch
};

// The reports not yet acknowledged by a dispatcher: the latest per task only (a later state
// replaces an earlier one that did not go yet). A batch taken is in flight until ack() (the
// dispatcher took it) or retry() (it did not); a report put meanwhile replaces it.
class ReportQueue {
 public:
  struct Item {
    std::string taskId;
    Report report;
    uint64_t generation;
  };

  void put(const std::string& taskId, Report report);
  // Up to `max` reports not in flight, which become in flight.
  std::vector<Item> take(size_t max);
  // The dispatcher took these: they are dropped unless a newer report replaced them.
  void ack(const std::vector<Item>& batch);
  // Every report in flight is to be sent again (the session that took them is gone).
  void retryAll();
  void drop(const std::string& taskId) { entries_.erase(taskId); }
  size_t size() const { return entries_.size(); }
  // Reports waiting to go (not in flight).
  size_t waiting() const { return entries_.size() - inFlight_; }

 private:
  struct Entry {
    Report report;
    uint64_t generation = 0;
    bool inFlight = false;
  };
  std::map<std::string, Entry> entries_;
  size_t inFlight_ = 0;
  uint64_t nextGeneration_ = 1;
};

// The version chain of an assignments stream (dispatch.fbs Assignments): a complete set
// starts it; an increment must follow the version held. Anything else is a gap, after which
// the agent reopens the stream and waits for a complete set.
class AssignmentChain {
 public:
  enum class Verdict { Apply, Gap };
  Verdict take(bool full, uint64_t version, uint64_t previous);
  // A new stream: nothing is held until its complete set.
  void reset() { version_.reset(); }
  std::optional<uint64_t> version() const { return version_; }

 private:
  std::optional<uint64_t> version_;
};

// What the worker asks of the executor for one task next.
enum class Action { None, Prepare, Adopt, Start, Stop, ReportShutdown };
// What the executor was asked and has not finished.
enum class Pending { None, Prepare, Adopt, Start, Stop };
// The decision for a task: its state, desired state, whether the executor holds it, and what
// is under way. Pure, so that the rules above are tested one by one.
Action nextAction(objects::TaskState state, objects::TaskState desired, bool known,
                  Pending pending);

// An assigned task as the dispatcher sent it, verified.
struct AssignedTask {
  std::string bytes;  // the Task FlatBuffer as stored
  const objects::Task* task() const;
};
// Checks a Task buffer from an assignment: it verifies, and has an id. Errors say why.
Result<AssignedTask> readAssignedTask(std::string_view bytes);

class Worker {
 public:
  using Clock = std::function<int64_t()>;  // ns since the epoch

  Worker(Executor& executor, Clock now);
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // A complete set: tasks not in it are stopped and forgotten.
  void replaceAll(std::vector<AssignedTask> tasks);
  // An increment: new or changed tasks, and the ids no longer assigned.
  void update(std::vector<AssignedTask> tasks, const std::vector<std::string>& removed);
  // Everything is forgotten (the node left the swarm): every task is removed from the executor.
  void clear();

  // The executor's events come here (the constructor wires them).
  void onEvent(const TaskEvent& event);

  ReportQueue& reports() { return reports_; }
  // Called when a report is put and none was waiting (the session schedules a send).
  void onReport(std::function<void()> fn) { onReport_ = std::move(fn); }

  // A task by id, unique id prefix or name (<service>.<slot>, <service>.<node id>, or the
  // full <service>.<slot>.<id>). NotFound / InvalidArgument (ambiguous) otherwise.
  Result<std::string> find(std::string_view ref) const;
  size_t size() const { return tasks_.size(); }
  // agent.fbs TasksReply's objects, appended to `out`.
  void appendJson(nlohmann::json& out) const;
  // Tasks by state name, for Status.
  void countStates(std::map<std::string, size_t>& counts) const;

 private:
  struct Task {
    AssignedTask assigned;
    objects::TaskState desired = objects::TaskState::Running;
    objects::TaskState state = objects::TaskState::Assigned;  // the latest known
    Report last;     // the last report (or the stored status)
    Health health = Health::None;
    bool known = false;  // the executor holds it
    Pending pending = Pending::None;
  };

  void put(AssignedTask assigned);
  void forget(const std::string& id);
  void drive(const std::string& id, Task& t);
  void report(const std::string& id, Task& t, Report r);

  Executor& executor_;
  Clock now_;
  std::map<std::string, Task> tasks_;
  ReportQueue reports_;
  std::function<void()> onReport_;
};

}  // namespace shoal::agentd
