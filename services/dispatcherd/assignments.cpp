#include "services/dispatcherd/assignments.h"

#include <flatbuffers/flatbuffers.h>

#include "common/protocols.h"
#include "wire_generated.h"

namespace shoal::dispatcherd {

Result<TaskEntry> readTask(std::string_view bytes) {
  flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  if (!v.VerifyBuffer<objects::Task>(nullptr))
    return Error{"a stored Task does not verify (" + std::to_string(bytes.size()) +
                     " bytes): the store is damaged; left out of the dispatcher's view",
                 static_cast<int>(wire::ErrorCode::Internal)};
  auto* t = flatbuffers::GetRoot<objects::Task>(bytes.data());
  if (!t->id() || t->id()->size() == 0)
    return Error{"a stored Task has no id; left out of the dispatcher's view",
                 static_cast<int>(wire::ErrorCode::Internal)};
  TaskEntry out;
  out.id = t->id()->str();
  out.version = t->meta() ? t->meta()->version() : 0;
  if (t->node_id()) out.nodeId = t->node_id()->str();
  if (t->status()) out.state = t->status()->state();
  out.bytes.assign(bytes);
  return out;
}

bus::Buffer encodeAssignments(const AssignmentItem& item) {
  size_t size = 256;
  for (auto& b : item.updated) size += b.size() + 32;
  for (auto& id : item.removed) size += id.size() + 8;
  flatbuffers::FlatBufferBuilder fbb(size);
  std::vector<flatbuffers::Offset<dispatch::AssignedTask>> updated;
  updated.reserve(item.updated.size());
  for (auto& b : item.updated) {
    // Aligned as a buffer of its own, so that the agent may read it in place.
    fbb.ForceVectorAlignment(b.size(), sizeof(uint8_t), 16);
    auto bytes = fbb.CreateVector(reinterpret_cast<const uint8_t*>(b.data()), b.size());
    updated.push_back(dispatch::CreateAssignedTask(fbb, bytes));
  }
  auto updatedVec = fbb.CreateVector(updated);
  auto removedVec = fbb.CreateVectorOfStrings(item.removed);
  auto body = dispatch::CreateAssignments(fbb, item.full, item.version, item.previous, updatedVec,
                                          removedVec);
  return bus::message<dispatch::Envelope>(fbb, dispatch::Body::Assignments, body.Union());
}

// --- the Task view ---------------------------------------------------------------------------

void Assignments::index(const TaskEntry& task) {
  if (isAssigned(task.state) && !task.nodeId.empty()) byNode_[task.nodeId].insert(task.id);
}

void Assignments::unindex(const TaskEntry& task) {
  auto it = byNode_.find(task.nodeId);
  if (it == byNode_.end()) return;
  it->second.erase(task.id);
  if (it->second.empty()) byNode_.erase(it);
}

void Assignments::touch(const std::string& taskId, const std::string& nodeId) {
  if (nodeId.empty()) return;
  auto ids = streamsByNode_.find(nodeId);
  if (ids == streamsByNode_.end()) return;
  auto t = tasks_.find(taskId);
  bool assignedHere =
      t != tasks_.end() && t->second.nodeId == nodeId && isAssigned(t->second.state);
  for (StreamId id : ids->second) {
    Stream& s = streams_.at(id);
    // Only what changes the agent's set: a task of its set now, or one it holds.
    if (assignedHere || s.held.count(taskId)) s.dirty.insert(taskId);
  }
}

bool Assignments::put(TaskEntry task) {
  std::string oldNode;
  auto it = tasks_.find(task.id);
  if (it != tasks_.end()) {
    if (task.version <= it->second.version) return false;
    oldNode = it->second.nodeId;
    unindex(it->second);
    it->second = std::move(task);
  } else {
    it = tasks_.emplace(task.id, std::move(task)).first;
  }
  index(it->second);
  if (oldNode != it->second.nodeId) touch(it->first, oldNode);
  touch(it->first, it->second.nodeId);
  return true;
}

void Assignments::erase(const std::string& id) {
  auto it = tasks_.find(id);
  if (it == tasks_.end()) return;
  std::string node = it->second.nodeId;
  unindex(it->second);
  tasks_.erase(it);
  touch(id, node);
}

void Assignments::replaceAll(std::vector<TaskEntry> tasks) {
  // What every agent holds is compared again with the new view: the difference goes out.
  for (auto& [id, s] : streams_)
    for (auto& [taskId, version] : s.held) s.dirty.insert(taskId);
  tasks_.clear();
  byNode_.clear();
  for (auto& t : tasks) {
    auto it = tasks_.find(t.id);
    if (it != tasks_.end() && it->second.version >= t.version) continue;
    if (it != tasks_.end()) unindex(it->second);
    std::string id = t.id;
    tasks_.insert_or_assign(id, std::move(t));
    index(tasks_.at(id));
  }
  for (auto& [id, s] : streams_)
    if (auto n = byNode_.find(s.nodeId); n != byNode_.end())
      s.dirty.insert(n->second.begin(), n->second.end());
}

const TaskEntry* Assignments::task(const std::string& id) const {
  auto it = tasks_.find(id);
  return it == tasks_.end() ? nullptr : &it->second;
}

// --- streams -----------------------------------------------------------------------------------

void Assignments::open(StreamId id, const std::string& nodeId) {
  close(id);
  streams_[id].nodeId = nodeId;
  streamsByNode_[nodeId].insert(id);
}

void Assignments::close(StreamId id) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  auto ids = streamsByNode_.find(it->second.nodeId);
  ids->second.erase(id);
  if (ids->second.empty()) streamsByNode_.erase(ids);
  streams_.erase(it);
}

std::vector<Assignments::StreamId> Assignments::streamsOf(const std::string& nodeId) const {
  auto it = streamsByNode_.find(nodeId);
  if (it == streamsByNode_.end()) return {};
  return {it->second.begin(), it->second.end()};
}

std::vector<Assignments::StreamId> Assignments::streams() const {
  std::vector<StreamId> out;
  for (auto& [id, s] : streams_) out.push_back(id);
  return out;
}

std::optional<Clock::time_point> Assignments::readyAt(const Stream& s,
                                                      Clock::time_point now) const {
  if (!hasWork(s)) return std::nullopt;
  if (!s.started || s.continuing || !s.lastSent) return now;
  return std::max(now, *s.lastSent + kInterval);
}

std::optional<Clock::time_point> Assignments::dueAt(StreamId id, Clock::time_point now) const {
  auto it = streams_.find(id);
  if (it == streams_.end()) return std::nullopt;
  return readyAt(it->second, now);
}

bool Assignments::due(StreamId id, Clock::time_point now) const {
  auto it = streams_.find(id);
  if (it == streams_.end()) return false;
  auto at = readyAt(it->second, now);
  return at && *at <= now;
}

std::optional<Clock::time_point> Assignments::nextDue(Clock::time_point now) const {
  std::optional<Clock::time_point> out;
  for (auto& [id, s] : streams_)
    if (auto at = readyAt(s, now); at && (!out || *at < *out)) out = at;
  return out;
}

uint64_t Assignments::versionOf(StreamId id) const {
  auto it = streams_.find(id);
  return it == streams_.end() ? 0 : it->second.version;
}

std::vector<AssignmentItem> Assignments::take(StreamId id, Clock::time_point now,
                                              uint32_t credits) {
  std::vector<AssignmentItem> out;
  while (out.size() < credits && due(id, now)) {
    Stream& s = streams_.at(id);
    AssignmentItem item = s.started ? increment(s) : fullItem(s);
    // Only tasks that came back to what the agent holds: nothing to say.
    if (!item.full && item.updated.empty() && item.removed.empty()) break;
    s.version = item.version;
    s.lastSent = now;
    out.push_back(std::move(item));
  }
  return out;
}

AssignmentItem Assignments::fullItem(Stream& s) {
  AssignmentItem item;
  item.full = true;
  item.version = nextVersion_++;
  s.started = true;
  s.held.clear();
  s.dirty.clear();
  size_t bytes = 0;
  if (auto n = byNode_.find(s.nodeId); n != byNode_.end())
    for (auto& taskId : n->second) {
      const TaskEntry& t = tasks_.at(taskId);
      // The rest of a set too large for one item follows as increments.
      if (bytes > 0 && bytes + t.bytes.size() > kMaxItemBytes) {
        s.dirty.insert(taskId);
        continue;
      }
      item.updated.push_back(t.bytes);
      bytes += t.bytes.size();
      s.held[taskId] = t.version;
    }
  s.continuing = !s.dirty.empty();
  return item;
}

AssignmentItem Assignments::increment(Stream& s) {
  AssignmentItem item;
  item.version = nextVersion_++;
  item.previous = s.version;
  size_t bytes = 0;
  auto it = s.dirty.begin();
  while (it != s.dirty.end()) {
    auto t = tasks_.find(*it);
    auto held = s.held.find(*it);
    bool assignedHere =
        t != tasks_.end() && t->second.nodeId == s.nodeId && isAssigned(t->second.state);
    if (assignedHere && !(held != s.held.end() && held->second == t->second.version)) {
      if (bytes > 0 && bytes + t->second.bytes.size() > kMaxItemBytes) break;
      item.updated.push_back(t->second.bytes);
      bytes += t->second.bytes.size();
      s.held[*it] = t->second.version;
    } else if (!assignedHere && held != s.held.end()) {
      if (bytes > 0 && bytes + it->size() > kMaxItemBytes) break;
      item.removed.push_back(*it);
      bytes += it->size();
      s.held.erase(held);
    }
    it = s.dirty.erase(it);
  }
  s.continuing = !s.dirty.empty();
  return item;
}

}  // namespace shoal::dispatcherd
