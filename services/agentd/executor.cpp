#include "services/agentd/executor.h"

#include <memory>

namespace shoal::agentd {

const char* healthName(Health health) {
  switch (health) {
    case Health::None: return "";
    case Health::Starting: return "starting";
    case Health::Healthy: return "healthy";
    case Health::Unhealthy: return "unhealthy";
  }
  return "";
}

Result<ExecutorKind> parseExecutorKind(std::string_view text) {
  if (text == "runc") return ExecutorKind::Runc;
  if (text == "fake") return ExecutorKind::Fake;
  return Error{"--executor: '" + std::string(text) + "' is not an executor; use runc or fake"};
}

UnavailableRuncExecutor::~UnavailableRuncExecutor() {
  for (auto id : timers_) loop_.cancel(id);
}

void UnavailableRuncExecutor::prepare(const objects::Task& task) {
  later(task.id() ? task.id()->str() : std::string(), objects::TaskState::Rejected);
}

void UnavailableRuncExecutor::adopt(const objects::Task& task) {
  later(task.id() ? task.id()->str() : std::string(), objects::TaskState::Rejected);
}

// From a timer: an executor never emits inside its own call (executor.h).
void UnavailableRuncExecutor::later(const std::string& taskId, objects::TaskState state) {
  auto id = std::make_shared<Loop::TimerId>(0);
  *id = loop_.after(std::chrono::milliseconds(0), [this, id, taskId, state] {
    timers_.erase(*id);
    TaskEvent e{taskId, state};
    if (state == objects::TaskState::Rejected) {
      e.message = "preparing";
      e.err = kMessage;
    } else {
      e.message = "shutdown";
    }
    emit(e);
  });
  timers_.insert(*id);
}

}  // namespace shoal::agentd
