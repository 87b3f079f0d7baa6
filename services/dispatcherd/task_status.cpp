#include "services/dispatcherd/task_status.h"

#include <algorithm>

#include "common/object_codec.h"

namespace shoal::dispatcherd {
namespace {

// Cuts text to at most max bytes without splitting a UTF-8 character.
std::string bounded(std::string text, size_t max) {
  if (text.size() <= max) return text;
  size_t end = max;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  text.resize(end);
  return text;
}

bool agentState(objects::TaskState s) {
  if (s < objects::TaskState::Accepted || s > objects::TaskState::Rejected) return false;
  for (auto v : objects::EnumValuesTaskState())
    if (v == s) return true;
  return false;
}

std::string str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }

// Whether the stored task already says what the update says (the state and its texts).
bool sameAsStored(const TaskEntry& task, const objects::TaskStatusT& status) {
  auto* stored = flatbuffers::GetRoot<objects::Task>(task.bytes.data())->status();
  if (!stored || stored->state() != status.state) return false;
  int exitCode = stored->container() ? stored->container()->exit_code() : 0;
  int reported = status.container ? status.container->exit_code : 0;
  return str(stored->message()) == status.message && str(stored->err()) == status.err &&
         exitCode == reported;
}

}  // namespace

const char* reportName(Report r) {
  switch (r) {
    case Report::Accepted: return "accepted";
    case Report::UnknownTask: return "unknown task";
    case Report::OtherNode: return "task of another node";
    case Report::Backwards: return "state backwards";
    case Report::Unchanged: return "unchanged";
    case Report::Invalid: return "invalid";
  }
  return "?";
}

Result<std::unique_ptr<objects::TaskStatusT>> reportedStatus(const objects::TaskStatus* status,
                                                             const std::string& nodeId,
                                                             int64_t nowNs) {
  if (!status) return Error{"the update has no status"};
  if (!agentState(status->state()))
    return Error{"state " + std::to_string(static_cast<int>(status->state())) +
                 " is not one an agent reports (ACCEPTED to REJECTED)"};
  if (status->port_status() && status->port_status()->size() > kMaxPortStatus)
    return Error{"port_status has " + std::to_string(status->port_status()->size()) +
                 " entries; at most " + std::to_string(kMaxPortStatus) + " are accepted"};
  if (status->container() && status->container()->container_id() &&
      status->container()->container_id()->size() > kMaxContainerId)
    return Error{"container_id is longer than " + std::to_string(kMaxContainerId) + " bytes"};
  std::unique_ptr<objects::TaskStatusT> out(status->UnPack());
  out->message = bounded(std::move(out->message), kMaxStatusMessage);
  out->err = bounded(std::move(out->err), kMaxStatusErr);
  out->applied_by = nodeId;
  out->applied_at = nowNs;
  return out;
}

Result<store::ChangeSpec> statusChange(const TaskEntry& task, const objects::TaskStatusT& status) {
  auto unpacked = objects_codec::unpack<objects::Task>(task.bytes, "Task " + task.id);
  if (!unpacked) return unpacked.error();
  auto& t = **unpacked;
  t.status = std::make_unique<objects::TaskStatusT>(status);
  return store::ChangeSpec{objects::ObjectKind::Task, objects::Operation::Update, task.id,
                           task.version, objects_codec::pack<objects::Task>(t)};
}

// --- reports -----------------------------------------------------------------------------------

Report TaskStatusWrites::report(const std::string& nodeId, const std::string& taskId,
                                std::unique_ptr<objects::TaskStatusT> status,
                                const Assignments& view) {
  ++counters_.received;
  auto verdict = [this](Report r) {
    switch (r) {
      case Report::Accepted: ++counters_.accepted; break;
      case Report::UnknownTask: ++counters_.unknownTask; break;
      case Report::OtherNode: ++counters_.otherNode; break;
      case Report::Backwards: ++counters_.backwards; break;
      case Report::Unchanged: ++counters_.unchanged; break;
      case Report::Invalid: ++counters_.invalid; break;
    }
    return r;
  };
  if (!status || taskId.empty() || taskId.size() > kMaxTaskId) return verdict(Report::Invalid);
  const TaskEntry* task = view.task(taskId);
  if (!task) return verdict(Report::UnknownTask);
  if (task->nodeId != nodeId || !isAssigned(task->state)) return verdict(Report::OtherNode);
  if (status->state < task->state) return verdict(Report::Backwards);
  if (auto p = pending_.find(taskId);
      p != pending_.end() && status->state < p->second.status->state)
    return verdict(Report::Backwards);
  if (auto b = busy_.find(taskId); b != busy_.end() && status->state < b->second)
    return verdict(Report::Backwards);
  if (!pending_.count(taskId) && !busy_.count(taskId) && sameAsStored(*task, *status))
    return verdict(Report::Unchanged);
  pending_[taskId] = Pending{nodeId, std::move(status)};
  return verdict(Report::Accepted);
}

void TaskStatusWrites::merge(const std::string& taskId, Pending update) {
  auto it = pending_.find(taskId);
  // A report that came meanwhile is newer: it wins unless it is an earlier state.
  if (it != pending_.end() && it->second.status->state >= update.status->state) return;
  pending_.insert_or_assign(taskId, std::move(update));
}

// --- writes ------------------------------------------------------------------------------------

bool TaskStatusWrites::due(Clock::time_point now) const {
  if (pending_.empty() || inFlight_.size() >= kMaxInFlight) return false;
  if (pending_.size() >= kMaxPending) return true;
  return !lastWrite_ || now - *lastWrite_ >= kInterval;
}

std::optional<Clock::time_point> TaskStatusWrites::dueAt(Clock::time_point now) const {
  if (pending_.empty() || inFlight_.size() >= kMaxInFlight) return std::nullopt;
  if (pending_.size() >= kMaxPending || !lastWrite_) return now;
  return std::max(now, *lastWrite_ + kInterval);
}

bool TaskStatusWrites::waiting(const std::string& taskId, const TaskEntry& task) const {
  if (busy_.count(taskId)) return true;
  auto w = written_.find(taskId);
  return w != written_.end() && task.version < w->second;
}

std::vector<TaskStatusWrites::Txn> TaskStatusWrites::take(Clock::time_point now,
                                                          const Assignments& view) {
  lastWrite_ = now;
  // Writes the view has caught up with (or whose task is gone) no longer hold anything back.
  std::erase_if(written_, [&](const auto& w) {
    auto* t = view.task(w.first);
    return !t || t->version >= w.second;
  });
  std::vector<Txn> out;
  auto it = pending_.begin();
  while (it != pending_.end()) {
    const TaskEntry* task = view.task(it->first);
    if (task && waiting(it->first, *task)) {
      ++it;
      continue;
    }
    // Deleted, moved to another node, or further on than this report: nothing to write.
    if (!task || task->nodeId != it->second.nodeId || it->second.status->state < task->state) {
      ++counters_.dropped;
      it = pending_.erase(it);
      continue;
    }
    if (out.empty() || out.back().changes.size() == kMaxChanges) {
      if (inFlight_.size() >= kMaxInFlight) break;  // the rest goes when one is answered
      out.push_back(Txn{nextTxn_++, {}, {}});
      inFlight_[out.back().id];
    }
    auto change = statusChange(*task, *it->second.status);
    if (!change) {
      ++counters_.dropped;
      it = pending_.erase(it);
      continue;
    }
    out.back().changes.push_back(std::move(change).value());
    out.back().taskIds.push_back(it->first);
    busy_[it->first] = it->second.status->state;
    inFlight_[out.back().id].emplace(it->first, std::move(it->second));
    it = pending_.erase(it);
  }
  // A transaction opened for an update that then could not be built.
  if (!out.empty() && out.back().changes.empty()) {
    inFlight_.erase(out.back().id);
    out.pop_back();
  }
  return out;
}

void TaskStatusWrites::succeeded(uint64_t txn, uint64_t index) {
  auto it = inFlight_.find(txn);
  if (it == inFlight_.end()) return;
  for (auto& [taskId, update] : it->second) {
    busy_.erase(taskId);
    written_[taskId] = index;
    ++counters_.written;
  }
  inFlight_.erase(it);
}

void TaskStatusWrites::failed(uint64_t txn) {
  auto it = inFlight_.find(txn);
  if (it == inFlight_.end()) return;
  for (auto& [taskId, update] : it->second) {
    busy_.erase(taskId);
    merge(taskId, std::move(update));
  }
  inFlight_.erase(it);
}

void TaskStatusWrites::clear() {
  pending_.clear();
  inFlight_.clear();
  busy_.clear();
  written_.clear();
  lastWrite_.reset();
}

}  // namespace shoal::dispatcherd
