// The convergence display (see progress.h).
#include "tools/shoal/progress.h"

#include <algorithm>

#include "common/spec_digest.h"
#include "tools/shoal/services.h"

namespace shoal::cli {
namespace {

// Docker's numberedStates: the steps a task takes to running, of 9 (shoal has no "allocated").
int stepOf(objects::TaskState state) {
  switch (state) {
    case objects::TaskState::New:
      return 1;
    case objects::TaskState::Pending:
      return 3;
    case objects::TaskState::Assigned:
      return 4;
    case objects::TaskState::Accepted:
      return 5;
    case objects::TaskState::Preparing:
      return 6;
    case objects::TaskState::Ready:
      return 7;
    case objects::TaskState::Starting:
      return 8;
    default:
      return 9;
  }
}

constexpr int kSteps = 9;
constexpr size_t kLongestState = 9;  // "preparing", as docker pads the state column

objects::TaskState stateOf(const objects::TaskT& t) {
  return t.status ? t.status->state : objects::TaskState::New;
}

int64_t createdAt(const objects::TaskT& t) { return t.meta ? t.meta->created_at() : 0; }

bool live(const objects::TaskT& t) { return t.desired_state <= objects::TaskState::Running; }

// The task a slot (or node) shows: its newest live task, else its newest task.
const objects::TaskT* shownTask(const std::vector<const objects::TaskT*>& tasks) {
  const objects::TaskT* best = nullptr;
  for (const auto* t : tasks) {
    if (!best || (live(*t) && !live(*best)) ||
        (live(*t) == live(*best) && createdAt(*t) > createdAt(*best)))
      best = t;
  }
  return best;
}

// A task that counts as up: running, meant to run, and running the service's current task
// spec. The digest decides, as schedulerd's updater does: a scale bumps spec_version and
// keeps the tasks, whose digest still matches.
bool upToDate(const objects::TaskT& t, const objects::ServiceT& s, uint64_t digest) {
  if (stateOf(t) != objects::TaskState::Running || t.desired_state != objects::TaskState::Running)
    return false;
  if (t.spec_digest) return t.spec_digest == digest;
  return !t.spec_version || !s.spec_version || t.spec_version == s.spec_version;
}

// "1/3: running   [=====>    ]", or the reason in place of the state and bar (docker shows
// a task's error there).
std::string taskLine(const std::string& id, const objects::TaskT* t, const objects::ServiceT& s,
                     int64_t now) {
  // Only ended tasks (the scheduler has not made the slot's next one yet): docker shows no
  // progress for them either.
  if (!t || !live(*t)) return id + ": waiting for a task";
  std::string reason = stateOf(*t) == objects::TaskState::Running ? "" : taskReason(*t, &s, now);
  if (!reason.empty()) return id + ": " + reason.substr(0, reason.find('\n'));
  std::string state(dockerTaskState(stateOf(*t)));
  state.resize(std::max(state.size(), kLongestState), ' ');
  return id + ": " + state + " " + progressBar(stateOf(*t));
}

std::map<uint64_t, std::vector<const objects::TaskT*>> bySlot(
    const std::vector<const objects::TaskT*>& tasks) {
  std::map<uint64_t, std::vector<const objects::TaskT*>> out;
  for (const auto* t : tasks)
    if (t) out[t->slot].push_back(t);
  return out;
}

void replicatedFrame(ProgressFrame& f, const objects::ServiceT& s,
                     const std::vector<const objects::TaskT*>& tasks, int64_t now) {
  uint64_t replicas = s.spec && s.spec->mode ? s.spec->mode->replicas : 0;
  auto slots = bySlot(tasks);
  uint64_t digest = taskSpecDigest(s), running = 0;
  std::vector<std::string> lines;
  for (uint64_t slot = 1; slot <= replicas; ++slot) {
    auto it = slots.find(slot);
    const auto* t = it == slots.end() ? nullptr : shownTask(it->second);
    if (t && upToDate(*t, s, digest)) ++running;
    if (replicas <= kMaxProgressBars)
      lines.push_back(taskLine(std::to_string(slot) + "/" + std::to_string(replicas), t, s, now));
  }
  f.lines.push_back("overall progress: " + std::to_string(running) + " out of " +
                    std::to_string(replicas) + " tasks");
  f.lines.insert(f.lines.end(), lines.begin(), lines.end());
  f.converged = running == replicas;
}

void globalFrame(ProgressFrame& f, const objects::ServiceT& s,
                 const std::vector<const objects::TaskT*>& tasks,
                 const std::map<std::string, std::string>& hostnames, int64_t now) {
  std::map<std::string, std::vector<const objects::TaskT*>> byNode;
  for (const auto* t : tasks)
    if (t && live(*t) && !t->node_id.empty()) byNode[t->node_id].push_back(t);
  uint64_t digest = taskSpecDigest(s), running = 0;
  std::vector<std::string> lines;
  for (const auto& [node, nodeTasks] : byNode) {
    const auto* t = shownTask(nodeTasks);
    if (upToDate(*t, s, digest)) ++running;
    auto host = hostnames.find(node);
    if (byNode.size() <= kMaxProgressBars)
      lines.push_back(
          taskLine(host == hostnames.end() ? truncateId(node) : host->second, t, s, now));
  }
  // Tasks not placed yet have no node: they are counted, and their reason shown.
  for (const auto* t : tasks)
    if (t && live(*t) && t->node_id.empty()) {
      byNode[""].push_back(t);
      lines.push_back(taskLine(taskDisplayName(*t, &s), t, s, now));
    }
  uint64_t total = 0;
  for (const auto& [node, nodeTasks] : byNode) total += node.empty() ? nodeTasks.size() : 1;
  f.lines.push_back("overall progress: " + std::to_string(running) + " out of " +
                    std::to_string(total) + " tasks");
  f.lines.insert(f.lines.end(), lines.begin(), lines.end());
  f.converged = total > 0 && running == total;
}

void jobFrame(ProgressFrame& f, const objects::ServiceT& s,
              const std::vector<const objects::TaskT*>& tasks) {
  uint64_t completed = 0, active = 0, all = 0;
  for (const auto* t : tasks) {
    if (!t || (s.spec_version && t->spec_version && t->spec_version != s.spec_version)) continue;
    ++all;
    if (stateOf(*t) == objects::TaskState::Complete)
      ++completed;
    else if (t->desired_state <= objects::TaskState::Complete &&
             stateOf(*t) < objects::TaskState::Complete)
      ++active;
  }
  const auto* mode = s.spec ? s.spec->mode.get() : nullptr;
  bool replicated = mode && mode->kind == objects::ServiceModeKind::ReplicatedJob;
  uint64_t total = replicated ? mode->total_completions : completed + active;
  f.lines.push_back("job progress: " + std::to_string(completed) + " out of " +
                    std::to_string(total) + " complete");
  f.lines.push_back("active tasks: " + std::to_string(active) + " tasks");
  f.converged = replicated ? completed >= total : all > 0 && active == 0;
}

// The service's update status, when it is about this command's write (an older one, e.g. an
// update that paused before a scale, says nothing about it).
const objects::UpdateStatusT* relevantStatus(const objects::ServiceT& s,
                                             const ProgressTarget& target) {
  const auto* us = s.update_status.get();
  if (!us || us->state == objects::UpdateState::Unknown) return nullptr;
  bool ours = us->spec_version ? us->spec_version >= target.specVersion
                               : us->started_at >= target.startedAt;
  return ours ? us : nullptr;
}

std::string prefixed(const std::string& prefix, const std::string& message) {
  return message.rfind(prefix, 0) == 0 ? message : prefix + ": " + message;
}

// Docker's reading of UpdateStatus in ServiceProgress: paused ends the wait with an error, a
// rollback the command did not ask for is shown and ends it once done.
void applyUpdateStatus(ProgressFrame& f, const objects::ServiceT& s, const ProgressTarget& target) {
  const auto* us = relevantStatus(s, target);
  if (!us) return;
  switch (us->state) {
    case objects::UpdateState::Updating:
      f.converged = false;
      break;
    case objects::UpdateState::Paused:
      f.failure = prefixed("update paused", us->message);
      break;
    case objects::UpdateState::RollbackStarted:
      f.converged = false;
      if (!target.rollback && !us->message.empty()) f.notes.push_back("rollback: " + us->message);
      break;
    case objects::UpdateState::RollbackPaused:
      f.failure = prefixed("rollback paused", us->message);
      break;
    case objects::UpdateState::RollbackCompleted:
      // schedulerd's message already says "update rolled back: ..." for a failure action.
      if (!target.rollback)
        f.failure = us->message.rfind("update rolled back", 0) == 0
                        ? us->message
                        : prefixed("service rolled back", us->message);
      break;
    default:
      break;
  }
}

}  // namespace

std::string progressBar(objects::TaskState state) {
  int filled = std::min(50, stepOf(state) * 100 / kSteps / 2);
  return "[" + std::string(static_cast<size_t>(filled), '=') + ">" +
         std::string(static_cast<size_t>(50 - filled), ' ') + "]";
}

ProgressFrame progressOf(const objects::ServiceT& service,
                         const std::vector<const objects::TaskT*>& tasks,
                         const std::map<std::string, std::string>& hostnames,
                         const ProgressTarget& target, int64_t now) {
  ProgressFrame f;
  auto kind = service.spec && service.spec->mode ? service.spec->mode->kind
                                                 : objects::ServiceModeKind::Replicated;
  if (kind == objects::ServiceModeKind::Replicated)
    replicatedFrame(f, service, tasks, now);
  else if (kind == objects::ServiceModeKind::Global)
    globalFrame(f, service, tasks, hostnames, now);
  else
    jobFrame(f, service, tasks);
  applyUpdateStatus(f, service, target);
  if (f.failure) f.converged = false;
  return f;
}

bool Verifier::done(bool converged, int64_t now, std::string* line) {
  if (!converged) {
    since_.reset();
    return false;
  }
  if (!since_) since_ = now;
  if (now - *since_ >= monitor_) return true;
  int64_t seconds = (monitor_ + 999'999'999) / 1'000'000'000;
  if (line)
    *line = "verify: Waiting " + std::to_string(seconds) +
            " seconds to verify that tasks are stable...";
  return false;
}

int64_t verifyPeriod(const objects::ServiceT& service, bool rollback) {
  const auto* spec = service.spec.get();
  if (!spec) return 0;
  auto kind = spec->mode ? spec->mode->kind : objects::ServiceModeKind::Replicated;
  if (kind == objects::ServiceModeKind::ReplicatedJob ||
      kind == objects::ServiceModeKind::GlobalJob)
    return 0;
  const auto* config = rollback ? spec->rollback.get() : spec->update.get();
  return config ? config->monitor : 0;
}

std::string Display::frame(const std::vector<std::string>& lines) {
  std::string out;
  if (lines == shown_) return "";  // redrawn only when something changed
  if (terminal_) {
    // Back to the top of the last frame, then every line rewritten and cleared to its end;
    // lines the new frame no longer has are cleared too.
    if (!shown_.empty()) out += "\x1b[" + std::to_string(shown_.size()) + "A";
    for (const auto& l : lines) out += "\r\x1b[2K" + l + "\n";
    for (size_t i = lines.size(); i < shown_.size(); ++i) out += "\r\x1b[2K\n";
    if (shown_.size() > lines.size())
      out += "\x1b[" + std::to_string(shown_.size() - lines.size()) + "A";
  } else {
    for (size_t i = 0; i < lines.size(); ++i)
      if (i >= shown_.size() || shown_[i] != lines[i]) out += lines[i] + "\n";
  }
  shown_ = lines;
  return out;
}

std::string Display::note(const std::string& line) {
  if (!terminal_) return line + "\n";
  // Above the frame: clear the frame, print the note, and let the next frame draw anew.
  std::string out;
  if (!shown_.empty()) out += "\x1b[" + std::to_string(shown_.size()) + "A";
  out += "\r\x1b[2K" + line + "\n";
  for (size_t i = 1; i < shown_.size(); ++i) out += "\r\x1b[2K\n";
  if (shown_.size() > 1) out += "\x1b[" + std::to_string(shown_.size() - 1) + "A";
  shown_.clear();
  return out;
}

}  // namespace shoal::cli
