#pragma once
// The fake executor (`agentd --executor fake`, docs/services.md "The fake executor"): runs no
// container and pulls no image. Each task walks ACCEPTED -> PREPARING -> READY -> STARTING ->
// RUNNING on Loop timers, `delay` between steps, and a stop reaches SHUTDOWN one delay later.
// A running "container" runs until a test ends it through agentd.sock (agent.fbs
// FakeTaskRequest): fail, exit with a code, turn unhealthy, or be rejected. It is what the
// scheduler and scale tests run on, and what one agentd posing as many nodes uses
// (fake_nodes.h), so it keeps little per task.

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "agent_generated.h"
#include "common/loop.h"
#include "common/result.h"
#include "services/agentd/executor.h"

namespace shoal::agentd {

class FakeExecutor : public Executor {
 public:
  static constexpr std::chrono::milliseconds kDefaultDelay{10};

  FakeExecutor(Loop& loop, std::chrono::milliseconds delay) : loop_(loop), delay_(delay) {}
  ~FakeExecutor() override;

  std::string_view name() const override { return "fake"; }
  void prepare(const objects::Task& task) override;
  void start(const std::string& taskId) override;
  void stop(const std::string& taskId) override;
  void remove(const std::string& taskId) override;
  // The fake's "containers" do not outlive agentd; a task it is asked to adopt is taken as
  // still running, as runc's would be (DESIGN.md §1: a daemon restart never stops a task).
  void adopt(const objects::Task& task) override;

  // What a test makes a task do (agent.fbs FakeAction). Fail, Exit and Unhealthy need a
  // running task, Reject any task not ended yet. Errors carry wire codes (NotFound, Conflict).
  Status act(const std::string& taskId, agentapi::FakeAction action, int exitCode,
             const std::string& message);

  size_t size() const { return tasks_.size(); }

 private:
  struct Fake {
    objects::TaskState state = objects::TaskState::Assigned;  // the last event's
    objects::TaskState target = objects::TaskState::Ready;    // where the walk goes
    bool healthcheck = false;
    Loop::TimerId timer = 0;
  };

  void walk(const std::string& taskId, Fake& f, std::chrono::milliseconds after);
  void step(const std::string& taskId);
  void end(const std::string& taskId, Fake& f, TaskEvent e);
  void cancel(Fake& f);

  Loop& loop_;
  std::chrono::milliseconds delay_;
  std::map<std::string, Fake> tasks_;
};

class Worker;

// A node's tasks and the fake executor that runs them: where a FakeTaskRequest looks.
struct FakeTarget {
  Worker* worker;
  FakeExecutor* executor;
};
// Finds the task the request names among the nodes' (agent.fbs FakeTaskRequest: an id, a
// unique id prefix or a name) and does what it asks. Errors carry wire codes.
Status actOnTask(const std::vector<FakeTarget>& nodes, const agentapi::FakeTaskRequest& req);

}  // namespace shoal::agentd
