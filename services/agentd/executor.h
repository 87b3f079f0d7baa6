#pragma once
// How agentd runs a task (DESIGN.md §8): the interface between the worker (worker.h), which
// decides what each assigned task should be doing, and whatever runs it: the fake executor
// (fake_executor.h, `--executor fake`) or runc (runc_executor.h, the default).
//
// Every call is asynchronous and returns at once; what happens is told by events, one per
// state the task reaches (ACCEPTED, PREPARING, READY, STARTING, RUNNING, then COMPLETE,
// FAILED, REJECTED or SHUTDOWN), in order. An executor never emits an event from inside one
// of its own calls (the worker is in the middle of a decision then): from a timer, a child's
// exit, a socket. This is SwarmKit's controller (Prepare, Start, Wait, Shutdown, Remove),
// with Wait's outcome as events.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <set>
#include <string_view>

#include "common/loop.h"
#include "common/result.h"
#include "objects_generated.h"

namespace shoal::agentd {

// What a health check says of a running task (ContainerSpec.healthcheck). A task without a
// health check stays None. Unhealthy comes with the FAILED event that ends the task, as in
// Swarm ("task: non-zero exit (1): unhealthy container").
enum class Health { None, Starting, Healthy, Unhealthy };
const char* healthName(Health health);

struct TaskEvent {
  TaskEvent() = default;
  TaskEvent(std::string id, objects::TaskState s, std::string msg = {}, std::string error = {},
            int code = 0, Health h = Health::None)
      : taskId(std::move(id)), state(s), message(std::move(msg)), err(std::move(error)),
        exitCode(code), health(h) {}

  std::string taskId;
  objects::TaskState state = objects::TaskState::Accepted;
  std::string message;  // a short summary of the state, Swarm's words ("started", ...)
  std::string err;      // why it failed or was rejected
  int exitCode = 0;     // COMPLETE and FAILED after the task ran
  Health health = Health::None;
};

class Executor {
 public:
  using EventFn = std::function<void(const TaskEvent&)>;

  virtual ~Executor() = default;
  virtual std::string_view name() const = 0;

  // Where events go (the worker); set once, before any call.
  void onEvent(EventFn fn) { events_ = std::move(fn); }

  // Makes the task ready to start (image, bundle, network sandbox): ACCEPTED, PREPARING,
  // READY, or REJECTED with the reason. Calling it again for a task that is prepared or being
  // prepared only reports where it stands (after an agentd restart the worker asks again).
  virtual void prepare(const objects::Task& task) = 0;
  // Starts a prepared task: STARTING, RUNNING, and later COMPLETE or FAILED with its exit
  // code (or FAILED unhealthy).
  virtual void start(const std::string& taskId) = 0;
  // Stops the task (stop signal, grace period, then kill): SHUTDOWN. Also cancels a prepare
  // or a start under way.
  virtual void stop(const std::string& taskId) = 0;
  // Forgets the task (stopping it first if it runs) and frees what it held; no event follows.
  virtual void remove(const std::string& taskId) = 0;
  // A task that was STARTING or RUNNING before agentd restarted: find it and report where it
  // stands (RUNNING, or COMPLETE/FAILED if it ended meanwhile, or FAILED if it is gone).
  virtual void adopt(const objects::Task& task) = 0;
  // After a complete set of assignments: `assigned` are every task the node holds now. An
  // executor that keeps tasks across restarts (runc) removes what it kept of the others.
  virtual void reconcile(const std::set<std::string>& assigned) { (void)assigned; }

 protected:
  void emit(const TaskEvent& event) const {
    if (events_) events_(event);
  }

 private:
  EventFn events_;
};

// The executors agentd offers (`--executor`).
enum class ExecutorKind { Runc, Fake };
Result<ExecutorKind> parseExecutorKind(std::string_view text);

}  // namespace shoal::agentd
