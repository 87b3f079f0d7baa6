#include "services/agentd/fake_executor.h"

#include "common/protocols.h"
#include "services/agentd/worker.h"

namespace shoal::agentd {
namespace {

using objects::TaskState;
using std::chrono::milliseconds;

// Swarm's messages for each state the agent reports.
const char* messageOf(TaskState s) {
  switch (s) {
    case TaskState::Accepted: return "accepted";
    case TaskState::Preparing: return "preparing";
    case TaskState::Ready: return "prepared";
    case TaskState::Starting: return "starting";
    case TaskState::Running: return "started";
    case TaskState::Complete: return "finished";
    case TaskState::Shutdown: return "shutdown";
    default: return "";
  }
}

// The walk's next state: ACCEPTED, PREPARING, READY, STARTING, RUNNING.
TaskState nextOf(TaskState s) {
  switch (s) {
    case TaskState::Accepted: return TaskState::Preparing;
    case TaskState::Preparing: return TaskState::Ready;
    case TaskState::Ready: return TaskState::Starting;
    case TaskState::Starting: return TaskState::Running;
    default: return s < TaskState::Accepted ? TaskState::Accepted : s;
  }
}

// Whether the task has a health check ("NONE" switches the image's off, DESIGN.md §8).
bool hasHealthcheck(const objects::Task& t) {
  auto* c = t.spec() && t.spec()->container() ? t.spec()->container()->healthcheck() : nullptr;
  if (!c || !c->test() || c->test()->size() == 0) return false;
  return c->test()->Get(0)->str() != "NONE";
}

Error failure(wire::ErrorCode code, std::string message) {
  return Error{std::move(message), static_cast<int>(code)};
}

std::string idOf(const objects::Task& t) { return t.id() ? t.id()->str() : std::string(); }

}  // namespace

FakeExecutor::~FakeExecutor() {
  for (auto& [id, f] : tasks_) cancel(f);
}

void FakeExecutor::cancel(Fake& f) {
  if (f.timer) loop_.cancel(f.timer);
  f.timer = 0;
}

void FakeExecutor::prepare(const objects::Task& task) {
  std::string id = idOf(task);
  auto [it, added] = tasks_.try_emplace(id);
  Fake& f = it->second;
  if (!added) return;  // prepared or being prepared: its events come
  f.healthcheck = hasHealthcheck(task);
  f.target = TaskState::Ready;
  walk(id, f, milliseconds(0));
}

void FakeExecutor::start(const std::string& taskId) {
  auto it = tasks_.find(taskId);
  if (it == tasks_.end() || it->second.state >= TaskState::Starting) return;
  it->second.target = TaskState::Running;
  if (it->second.state == TaskState::Ready) walk(taskId, it->second, delay_);
}

void FakeExecutor::stop(const std::string& taskId) {
  Fake& f = tasks_[taskId];
  if (f.state >= TaskState::Complete) return;
  cancel(f);
  f.target = TaskState::Shutdown;
  f.timer = loop_.after(delay_, [this, taskId] {
    auto it = tasks_.find(taskId);
    if (it == tasks_.end()) return;
    it->second.timer = 0;
    end(taskId, it->second, TaskEvent{taskId, TaskState::Shutdown, "shutdown"});
  });
}

void FakeExecutor::remove(const std::string& taskId) {
  auto it = tasks_.find(taskId);
  if (it == tasks_.end()) return;
  cancel(it->second);
  tasks_.erase(it);
}

void FakeExecutor::adopt(const objects::Task& task) {
  std::string id = idOf(task);
  Fake& f = tasks_[id];
  cancel(f);
  f.healthcheck = hasHealthcheck(task);
  f.state = TaskState::Starting;
  f.target = TaskState::Running;
  walk(id, f, milliseconds(0));
}

void FakeExecutor::walk(const std::string& taskId, Fake& f, milliseconds after) {
  f.timer = loop_.after(after, [this, taskId] { step(taskId); });
}

void FakeExecutor::step(const std::string& taskId) {
  auto it = tasks_.find(taskId);
  if (it == tasks_.end()) return;
  Fake& f = it->second;
  f.timer = 0;
  if (f.state >= f.target) return;
  f.state = nextOf(f.state);
  TaskEvent e{taskId, f.state, messageOf(f.state)};
  if (f.state == TaskState::Running && f.healthcheck) e.health = Health::Healthy;
  if (f.state < f.target) walk(taskId, f, delay_);
  emit(e);  // last: the worker may call back into this executor
}

void FakeExecutor::end(const std::string& taskId, Fake& f, TaskEvent e) {
  cancel(f);
  f.state = e.state;
  f.target = e.state;
  e.taskId = taskId;
  emit(e);
}

Status FakeExecutor::act(const std::string& taskId, agentapi::FakeAction action, int exitCode,
                         const std::string& message) {
  auto it = tasks_.find(taskId);
  if (it == tasks_.end())
    return failure(wire::ErrorCode::NotFound,
                   "task " + taskId + " is not in the fake executor (not prepared yet, or removed)");
  Fake& f = it->second;
  if (f.state >= TaskState::Complete)
    return failure(wire::ErrorCode::Conflict, "task " + taskId + " already ended (" +
                                                  stateName(f.state) + "); nothing to do");
  if (action == agentapi::FakeAction::Reject) {
    end(taskId, f, {taskId, TaskState::Rejected, "preparing",
                    message.empty() ? "rejected by a test (fake executor)" : message});
    return {};
  }
  if (f.state != TaskState::Running)
    return failure(wire::ErrorCode::Conflict,
                   "task " + taskId + " is " + stateName(f.state) + ", not running: " +
                       agentapi::EnumNameFakeAction(action) + " acts on a running task");
  std::string exit = "task: non-zero exit (" + std::to_string(exitCode) + ")";
  switch (action) {
    case agentapi::FakeAction::Fail:
      end(taskId, f, {taskId, TaskState::Failed, "started", message.empty() ? exit : message,
                      exitCode});
      break;
    case agentapi::FakeAction::Exit:
      if (exitCode == 0)
        end(taskId, f, {taskId, TaskState::Complete, "finished", "", 0});
      else
        end(taskId, f, {taskId, TaskState::Failed, "started", message.empty() ? exit : message,
                        exitCode});
      break;
    case agentapi::FakeAction::Unhealthy:
      end(taskId, f, {taskId, TaskState::Failed, "started",
                      "task: non-zero exit (1): unhealthy container", 1, Health::Unhealthy});
      break;
    default:
      return failure(wire::ErrorCode::InvalidArgument,
                     "fake action " + std::to_string(static_cast<int>(action)) +
                         " is not one of Fail, Exit, Unhealthy, Reject");
  }
  return {};
}

Status actOnTask(const std::vector<FakeTarget>& nodes, const agentapi::FakeTaskRequest& req) {
  std::string ref = req.task() ? req.task()->str() : std::string();
  std::vector<std::pair<const FakeTarget*, std::string>> found;
  for (const auto& n : nodes) {
    auto id = n.worker->find(ref);
    if (id) {
      found.emplace_back(&n, *id);
    } else if (id.error().code != static_cast<int>(wire::ErrorCode::NotFound)) {
      return id.error();
    }
  }
  if (found.empty())
    return failure(wire::ErrorCode::NotFound, "no task '" + ref + "' is assigned here");
  if (found.size() > 1)
    return failure(wire::ErrorCode::InvalidArgument,
                   "'" + ref + "' names tasks on " + std::to_string(found.size()) +
                       " nodes; give more of the id");
  std::string message = req.message() ? req.message()->str() : std::string();
  return found[0].first->executor->act(found[0].second, req.action(), req.exit_code(), message);
}

}  // namespace shoal::agentd
