#include "services/dispatcherd/sessions.h"

namespace shoal::dispatcherd {

void SessionTable::observe(const std::string& nodeId, bool storedDown, Clock::time_point now,
                           Clock::duration period) {
  if (entries_.count(nodeId)) return;
  Entry e;
  e.lastSeen = now;
  e.deadline = now + kMissedPeriods * period;
  e.expired = storedDown;
  entries_.emplace(nodeId, std::move(e));
}

void SessionTable::open(const std::string& nodeId, const std::string& sessionId,
                        Clock::time_point now, Clock::duration period) {
  Entry& e = entries_[nodeId];
  e.session = sessionId;
  e.lastSeen = now;
  e.deadline = now + kMissedPeriods * period;
  e.expired = false;
}

bool SessionTable::heartbeat(const std::string& nodeId, const std::string& sessionId,
                             Clock::time_point now, Clock::duration period) {
  auto it = entries_.find(nodeId);
  if (it == entries_.end() || it->second.expired || it->second.session != sessionId) return false;
  it->second.lastSeen = now;
  it->second.deadline = now + kMissedPeriods * period;
  return true;
}

std::vector<std::string> SessionTable::expire(Clock::time_point now) {
  std::vector<std::string> out;
  for (auto& [id, e] : entries_) {
    if (e.expired || e.deadline > now) continue;
    e.expired = true;
    e.session.reset();
    out.push_back(id);
  }
  return out;
}

const SessionTable::Entry* SessionTable::find(const std::string& nodeId) const {
  auto it = entries_.find(nodeId);
  return it == entries_.end() ? nullptr : &it->second;
}

size_t SessionTable::sessions() const {
  size_t n = 0;
  for (auto& [id, e] : entries_) n += e.session.has_value();
  return n;
}

std::optional<Clock::time_point> SessionTable::nextDeadline() const {
  std::optional<Clock::time_point> out;
  for (auto& [id, e] : entries_)
    if (!e.expired && (!out || e.deadline < *out)) out = e.deadline;
  return out;
}

}  // namespace shoal::dispatcherd
