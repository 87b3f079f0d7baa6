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
  if (const auto* c = t->spec() ? t->spec()->container() : nullptr) {
    if (c->secrets())
      for (const auto* r : *c->secrets())
        if (r->secret_id()) out.secretIds.push_back(r->secret_id()->str());
    if (c->configs())
      for (const auto* r : *c->configs())
        if (r->config_id()) out.configIds.push_back(r->config_id()->str());
  }
  out.bytes.assign(bytes);
  return out;
}

namespace {

template <class T>
Result<FileEntry> readFile(std::string_view bytes, const char* what) {
  flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  if (!v.VerifyBuffer<T>(nullptr))
    return Error{std::string("a stored ") + what + " does not verify (" + std::to_string(bytes.size()) +
                     " bytes): the store is damaged; left out of the dispatcher's view",
                 static_cast<int>(wire::ErrorCode::Internal)};
  auto* o = flatbuffers::GetRoot<T>(bytes.data());
  if (!o->id() || o->id()->size() == 0)
    return Error{std::string("a stored ") + what + " has no id; left out of the dispatcher's view",
                 static_cast<int>(wire::ErrorCode::Internal)};
  return FileEntry{o->id()->str(), o->meta() ? o->meta()->version() : 0, std::string(bytes)};
}

// A newer version wins; an older or equal one is a watch event behind a re-read.
void putNewer(std::map<std::string, FileEntry>& into, FileEntry e) {
  auto it = into.find(e.id);
  if (it != into.end() && e.version <= it->second.version && e.version != 0) return;
  std::string id = e.id;
  into.insert_or_assign(id, std::move(e));
}

// The stored object copied into `fbb` through the object API (it was verified when read).
template <class T>
flatbuffers::Offset<T> copyInto(flatbuffers::FlatBufferBuilder& fbb, const std::string& bytes) {
  std::unique_ptr<typename T::NativeTableType> o(flatbuffers::GetRoot<T>(bytes.data())->UnPack());
  return T::Pack(fbb, o.get());
}

}  // namespace

Result<FileEntry> readSecret(std::string_view bytes) { return readFile<objects::Secret>(bytes, "Secret"); }
Result<FileEntry> readConfig(std::string_view bytes) { return readFile<objects::Config>(bytes, "Config"); }

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
  std::vector<flatbuffers::Offset<objects::Secret>> secrets;
  for (auto& b : item.secrets) secrets.push_back(copyInto<objects::Secret>(fbb, b));
  std::vector<flatbuffers::Offset<objects::Config>> configs;
  for (auto& b : item.configs) configs.push_back(copyInto<objects::Config>(fbb, b));
  auto body = dispatch::CreateAssignments(fbb, item.full, item.version, item.previous, updatedVec,
                                          removedVec, fbb.CreateVector(secrets),
                                          fbb.CreateVector(configs));
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

void Assignments::putSecret(FileEntry secret) { putNewer(secrets_, std::move(secret)); }
void Assignments::eraseSecret(const std::string& id) { secrets_.erase(id); }
void Assignments::replaceSecrets(std::vector<FileEntry> secrets) {
  secrets_.clear();
  for (auto& e : secrets) putNewer(secrets_, std::move(e));
}

void Assignments::putConfig(FileEntry config) { putNewer(configs_, std::move(config)); }
void Assignments::eraseConfig(const std::string& id) { configs_.erase(id); }
void Assignments::replaceConfigs(std::vector<FileEntry> configs) {
  configs_.clear();
  for (auto& e : configs) putNewer(configs_, std::move(e));
}

void Assignments::attachFiles(AssignmentItem& item, const std::vector<std::string>& taskIds) const {
  std::set<std::string> secretIds, configIds;
  for (const auto& id : taskIds) {
    const TaskEntry& t = tasks_.at(id);
    secretIds.insert(t.secretIds.begin(), t.secretIds.end());
    configIds.insert(t.configIds.begin(), t.configIds.end());
  }
  for (const auto& id : secretIds)
    if (auto it = secrets_.find(id); it != secrets_.end()) item.secrets.push_back(it->second.bytes);
  for (const auto& id : configIds)
    if (auto it = configs_.find(id); it != configs_.end()) item.configs.push_back(it->second.bytes);
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
  std::vector<std::string> sent;
  if (auto n = byNode_.find(s.nodeId); n != byNode_.end())
    for (auto& taskId : n->second) {
      const TaskEntry& t = tasks_.at(taskId);
      // The rest of a set too large for one item follows as increments.
      if (bytes > 0 && bytes + t.bytes.size() > kMaxItemBytes) {
        s.dirty.insert(taskId);
        continue;
      }
      item.updated.push_back(t.bytes);
      sent.push_back(taskId);
      bytes += t.bytes.size();
      s.held[taskId] = t.version;
    }
  attachFiles(item, sent);
  s.continuing = !s.dirty.empty();
  return item;
}

AssignmentItem Assignments::increment(Stream& s) {
  AssignmentItem item;
  item.version = nextVersion_++;
  item.previous = s.version;
  size_t bytes = 0;
  std::vector<std::string> sent;
  auto it = s.dirty.begin();
  while (it != s.dirty.end()) {
    auto t = tasks_.find(*it);
    auto held = s.held.find(*it);
    bool assignedHere =
        t != tasks_.end() && t->second.nodeId == s.nodeId && isAssigned(t->second.state);
    if (assignedHere && !(held != s.held.end() && held->second == t->second.version)) {
      if (bytes > 0 && bytes + t->second.bytes.size() > kMaxItemBytes) break;
      item.updated.push_back(t->second.bytes);
      sent.push_back(*it);
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
  attachFiles(item, sent);
  s.continuing = !s.dirty.empty();
  return item;
}

}  // namespace shoal::dispatcherd
