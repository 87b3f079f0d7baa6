#include "services/agentd/worker.h"

#include <algorithm>
#include <cctype>
#include <set>

#include <spdlog/spdlog.h>

#include "common/protocols.h"

namespace shoal::agentd {
namespace {

using objects::TaskState;

std::string str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }

bool terminal(TaskState s) { return s >= TaskState::Complete; }

// The state at which what the executor was asked is done (or cannot go on).
TaskState goalOf(Pending p) {
  switch (p) {
    case Pending::Prepare: return TaskState::Ready;
    case Pending::Adopt:
    case Pending::Start: return TaskState::Running;
    case Pending::Stop:
    case Pending::None: return TaskState::Complete;
  }
  return TaskState::Complete;
}

// <service>.<slot> for replicated tasks, <service>.<node id> for global ones (Swarm's names).
std::string shortName(const objects::Task& t) {
  std::string service = t.service_annotations() ? str(t.service_annotations()->name()) : "";
  if (service.empty()) service = str(t.service_id());
  return service + "." + (t.slot() ? std::to_string(t.slot()) : str(t.node_id()));
}

std::string fullName(const objects::Task& t) {
  return t.annotations() ? str(t.annotations()->name()) : std::string();
}

Report storedReport(const objects::Task& t) {
  Report r;
  if (auto* s = t.status()) {
    r.state = std::max(s->state(), TaskState::Assigned);
    r.message = str(s->message());
    r.err = str(s->err());
    r.exitCode = s->container() ? s->container()->exit_code() : 0;
    r.timestamp = s->timestamp();
  }
  return r;
}

}  // namespace

std::string stateName(TaskState state) {
  std::string name = objects::EnumNameTaskState(state);
  if (name.empty()) return std::to_string(static_cast<int>(state));
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return name;
}

// ---- ReportQueue

void ReportQueue::put(const std::string& taskId, Report report) {
  Entry& e = entries_[taskId];
  if (e.inFlight) --inFlight_;
  e = Entry{std::move(report), nextGeneration_++, false};
}

std::vector<ReportQueue::Item> ReportQueue::take(size_t max) {
  std::vector<Item> batch;
  for (auto& [id, e] : entries_) {
    if (batch.size() >= max) break;
    if (e.inFlight) continue;
    e.inFlight = true;
    ++inFlight_;
    batch.push_back({id, e.report, e.generation});
  }
  return batch;
}

void ReportQueue::ack(const std::vector<Item>& batch) {
  for (const auto& item : batch) {
    auto it = entries_.find(item.taskId);
    if (it == entries_.end() || it->second.generation != item.generation) continue;
    if (it->second.inFlight) --inFlight_;
    entries_.erase(it);
  }
}

void ReportQueue::retryAll() {
  for (auto& [id, e] : entries_) e.inFlight = false;
  inFlight_ = 0;
}

// ---- AssignmentChain

AssignmentChain::Verdict AssignmentChain::take(bool full, uint64_t version, uint64_t previous) {
  if (full) {
    version_ = version;
    return Verdict::Apply;
  }
  if (!version_ || *version_ != previous) {
    version_.reset();
    return Verdict::Gap;
  }
  version_ = version;
  return Verdict::Apply;
}

// ---- the decision

Action nextAction(TaskState state, TaskState desired, bool known, Pending pending) {
  if (terminal(state)) return Action::None;
  if (desired >= TaskState::Shutdown) {
    if (pending == Pending::Stop) return Action::None;
    // Never started here: nothing to stop. Started before a restart: find it first.
    if (!known) return state < TaskState::Starting ? Action::ReportShutdown : Action::Adopt;
    return Action::Stop;
  }
  if (pending != Pending::None) return Action::None;
  if (!known) return state < TaskState::Starting ? Action::Prepare : Action::Adopt;
  bool run = desired == TaskState::Running || desired == TaskState::Complete;
  if (state == TaskState::Ready && run) return Action::Start;
  return Action::None;
}

// ---- AssignedTask

const objects::Task* AssignedTask::task() const {
  return flatbuffers::GetRoot<objects::Task>(bytes.data());
}

Result<AssignedTask> readAssignedTask(std::string_view bytes) {
  flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  if (bytes.empty() || !v.VerifyBuffer<objects::Task>(nullptr))
    return Error{"an assigned task does not verify as a Task (" + std::to_string(bytes.size()) +
                     " bytes)",
                 static_cast<int>(wire::ErrorCode::BadMessage)};
  AssignedTask t{std::string(bytes)};
  if (str(t.task()->id()).empty())
    return Error{"an assigned task has no id", static_cast<int>(wire::ErrorCode::BadMessage)};
  return t;
}

// ---- Worker

Worker::Worker(Executor& executor, Clock now) : executor_(executor), now_(std::move(now)) {
  executor_.onEvent([this](const TaskEvent& e) { onEvent(e); });
}

void Worker::replaceAll(std::vector<AssignedTask> tasks) {
  std::set<std::string> ids;
  for (const auto& t : tasks) ids.insert(str(t.task()->id()));
  std::vector<std::string> gone;
  for (const auto& [id, t] : tasks_)
    if (!ids.count(id)) gone.push_back(id);
  for (const auto& id : gone) forget(id);
  for (auto& t : tasks) put(std::move(t));
  executor_.reconcile(ids);
}

void Worker::update(std::vector<AssignedTask> tasks, const std::vector<std::string>& removed) {
  for (const auto& id : removed) forget(id);
  for (auto& t : tasks) put(std::move(t));
}

void Worker::clear() {
  std::vector<std::string> ids;
  for (const auto& [id, t] : tasks_) ids.push_back(id);
  for (const auto& id : ids) forget(id);
}

void Worker::put(AssignedTask assigned) {
  const objects::Task* fb = assigned.task();
  std::string id = str(fb->id());
  Report stored = storedReport(*fb);
  auto [it, added] = tasks_.try_emplace(id);
  Task& t = it->second;
  t.desired = fb->desired_state();
  if (added) {
    t.state = stored.state;
    t.last = stored;
  } else if (stored.state > t.state) {
    // Only this agent moves a task past ASSIGNED; a later stored state is an earlier session's
    // report that this process did not see (it restarted): taken, not reported again.
    t.state = stored.state;
    t.last = stored;
  }
  t.assigned = std::move(assigned);
  drive(id, t);
}

void Worker::forget(const std::string& id) {
  auto it = tasks_.find(id);
  if (it == tasks_.end()) return;
  if (it->second.known) executor_.remove(id);
  reports_.drop(id);
  tasks_.erase(it);
}

void Worker::drive(const std::string& id, Task& t) {
  switch (nextAction(t.state, t.desired, t.known, t.pending)) {
    case Action::None: return;
    case Action::Prepare:
      t.known = true;
      t.pending = Pending::Prepare;
      return executor_.prepare(*t.assigned.task());
    case Action::Adopt:
      t.known = true;
      t.pending = Pending::Adopt;
      return executor_.adopt(*t.assigned.task());
    case Action::Start:
      t.pending = Pending::Start;
      return executor_.start(id);
    case Action::Stop:
      t.pending = Pending::Stop;
      return executor_.stop(id);
    case Action::ReportShutdown:
      t.state = TaskState::Shutdown;
      return report(id, t, Report{TaskState::Shutdown, "shutdown", "", 0, 0});
  }
}

void Worker::onEvent(const TaskEvent& e) {
  auto it = tasks_.find(e.taskId);
  if (it == tasks_.end()) return;  // forgotten meanwhile
  Task& t = it->second;
  if (e.health != Health::None) t.health = e.health;
  if (e.state <= t.state) return;  // forward only (DESIGN.md §2)
  t.state = e.state;
  if (t.pending != Pending::None && (t.state >= goalOf(t.pending) || terminal(t.state)))
    t.pending = Pending::None;
  report(e.taskId, t, Report{e.state, e.message, e.err, e.exitCode, 0});
  drive(e.taskId, t);
}

void Worker::report(const std::string& id, Task& t, Report r) {
  r.timestamp = now_();
  t.last = r;
  bool wasIdle = reports_.waiting() == 0;
  reports_.put(id, std::move(r));
  if (wasIdle && onReport_) onReport_();
}

Result<std::string> Worker::find(std::string_view ref) const {
  if (ref.empty()) return Error{"no task named: give a task id, id prefix or name",
                                static_cast<int>(wire::ErrorCode::InvalidArgument)};
  if (tasks_.count(std::string(ref))) return std::string(ref);
  std::vector<std::string> matches;
  for (const auto& [id, t] : tasks_) {
    const objects::Task* fb = t.assigned.task();
    if (shortName(*fb) == ref || fullName(*fb) == ref || id.rfind(ref, 0) == 0)
      matches.push_back(id);
  }
  if (matches.size() == 1) return matches.front();
  // A slot's name also names its older tasks while the node still holds them: the one task
  // of the slot that is meant to run is the one a user means.
  std::vector<std::string> live;
  for (const auto& id : matches)
    if (tasks_.at(id).assigned.task()->desired_state() <= objects::TaskState::Running)
      live.push_back(id);
  if (live.size() == 1) return live.front();
  if (matches.empty())
    return Error{"no task '" + std::string(ref) + "' is assigned to this node",
                 static_cast<int>(wire::ErrorCode::NotFound)};
  return Error{"'" + std::string(ref) + "' names " + std::to_string(matches.size()) +
                   " tasks on this node (" + matches[0] + ", " + matches[1] +
                   (matches.size() > 2 ? ", ..." : "") + "); give more of the id",
               static_cast<int>(wire::ErrorCode::InvalidArgument)};
}

void Worker::appendJson(nlohmann::json& out) const {
  for (const auto& [id, t] : tasks_) {
    const objects::Task* fb = t.assigned.task();
    nlohmann::json j = {{"id", id},
                        {"name", shortName(*fb)},
                        {"service_id", str(fb->service_id())},
                        {"slot", fb->slot()},
                        {"desired_state", stateName(t.desired)},
                        {"state", stateName(t.state)},
                        {"message", t.last.message},
                        {"err", t.last.err},
                        {"exit_code", t.last.exitCode},
                        {"node_id", str(fb->node_id())}};
    if (t.health != Health::None) j["health"] = healthName(t.health);
    out.push_back(std::move(j));
  }
}

void Worker::countStates(std::map<std::string, size_t>& counts) const {
  for (const auto& [id, t] : tasks_) ++counts[stateName(t.state)];
}

}  // namespace shoal::agentd
