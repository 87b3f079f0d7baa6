#include "services/dispatcherd/status_writes.h"

namespace shoal::dispatcherd {

void NodeUpdate::merge(const NodeUpdate& newer) {
  if (newer.state) {
    state = newer.state;
    message = newer.message;
  }
  if (newer.description) description = newer.description;
  if (newer.addr) addr = newer.addr;
  if (newer.certificate) certificate = newer.certificate;
}

std::optional<NodeRecord> applyUpdate(const NodeRecord& node, const NodeUpdate& update) {
  NodeRecord out = node;
  bool changed = false;
  auto set = [&changed](auto& field, const auto& value) {
    if (field == value) return;
    field = value;
    changed = true;
  };
  if (update.state) {
    set(out.state, *update.state);
    set(out.message, update.message);
  }
  if (update.description) set(out.description, *update.description);
  if (update.addr && !update.addr->empty()) set(out.addr, *update.addr);
  // A certificate for a role the node no longer has would be stale on arrival.
  if (update.certificate && update.certificate->role == node.role) {
    set(out.certificate, update.certificate->bytes);
    set(out.certificateExpiry, update.certificate->expiryNs);
  }
  if (!changed) return std::nullopt;
  return out;
}

Batch buildBatch(const NodeTable& nodes, const std::vector<std::pair<std::string, NodeUpdate>>& updates) {
  Batch out;
  for (auto& [id, update] : updates) {
    auto* node = nodes.byId(id);
    if (!node) continue;
    auto updated = applyUpdate(*node, update);
    if (!updated) continue;
    out.changes.push_back({objects::ObjectKind::Node, objects::Operation::Update, id, node->version,
                           buildNode(*updated)});
    out.written.push_back(std::move(*updated));
  }
  return out;
}

void StatusWrites::add(const std::string& nodeId, const NodeUpdate& update) {
  pending_[nodeId].merge(update);
}

bool StatusWrites::due(Clock::time_point now) const {
  if (pending_.empty() || busy_) return false;
  return !lastWrite_ || now - *lastWrite_ >= kMinInterval;
}

std::vector<std::pair<std::string, NodeUpdate>> StatusWrites::take(Clock::time_point now) {
  std::vector<std::pair<std::string, NodeUpdate>> out;
  auto it = pending_.begin();
  while (it != pending_.end() && out.size() < kMaxChanges) {
    out.emplace_back(it->first, it->second);
    inFlight_.insert_or_assign(it->first, std::move(it->second));
    it = pending_.erase(it);
  }
  busy_ = true;
  lastWrite_ = now;
  return out;
}

void StatusWrites::succeeded() {
  inFlight_.clear();
  busy_ = false;
}

void StatusWrites::failed() {
  for (auto& [id, update] : inFlight_) {
    NodeUpdate merged = std::move(update);
    if (auto p = pending_.find(id); p != pending_.end()) merged.merge(p->second);
    pending_[id] = std::move(merged);
  }
  inFlight_.clear();
  busy_ = false;
}

void StatusWrites::drop(const std::string& nodeId) {
  pending_.erase(nodeId);
  inFlight_.erase(nodeId);
}

void StatusWrites::clear() {
  pending_.clear();
  inFlight_.clear();
  busy_ = false;
}

std::optional<NodeUpdate> StatusWrites::owed(const std::string& nodeId) const {
  std::optional<NodeUpdate> out;
  if (auto f = inFlight_.find(nodeId); f != inFlight_.end()) out = f->second;
  if (auto p = pending_.find(nodeId); p != pending_.end()) {
    if (!out) out = NodeUpdate{};
    out->merge(p->second);
  }
  return out;
}

}  // namespace shoal::dispatcherd
