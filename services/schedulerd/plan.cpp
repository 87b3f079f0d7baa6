#include "services/schedulerd/plan.h"

#include <stdexcept>

#include "common/object_codec.h"

namespace shoal::schedulerd {

Plan::Plan(View& view, Time now, IdSource ids) : view_(view), now_(now), ids_(std::move(ids)) {}

Plan::Entry& Plan::record(objects::ObjectKind kind, const std::string& id, objects::Operation op,
                          uint64_t version) {
  auto key = std::make_pair(kind, id);
  auto it = entries_.find(key);
  if (it != entries_.end()) {
    // A Create stays a Create; anything deleted stays deleted.
    if (op == objects::Operation::Delete) {
      if (it->second.operation == objects::Operation::Create) {
        entries_.erase(it);
        std::erase(order_, key);
        static Entry none{};
        return none;
      }
      it->second.operation = op;
    }
    return it->second;
  }
  order_.push_back(key);
  return entries_.emplace(key, Entry{kind, op, version}).first->second;
}

objects::TaskT& Plan::createTask(std::unique_ptr<objects::TaskT> task) {
  if (task->id.empty() || view_.task(task->id))
    throw std::logic_error("Plan::createTask: a task needs a new id");
  auto id = task->id;
  task->meta.reset();
  view_.putTask(std::move(task));
  record(objects::ObjectKind::Task, id, objects::Operation::Create, 0);
  return *view_.mutableTask(id);
}

objects::TaskT& Plan::editTask(const std::string& id) {
  auto* t = view_.mutableTask(id);
  if (!t) throw std::logic_error("Plan::editTask: no task " + id);
  record(objects::ObjectKind::Task, id, objects::Operation::Update, objects_codec::versionOf(t->meta));
  return *t;
}

void Plan::deleteTask(const std::string& id) {
  auto* t = view_.mutableTask(id);
  if (!t) return;
  record(objects::ObjectKind::Task, id, objects::Operation::Delete, objects_codec::versionOf(t->meta));
  view_.eraseTask(id);
}

objects::ServiceT& Plan::editService(const std::string& id) {
  auto* s = view_.mutableService(id);
  if (!s) throw std::logic_error("Plan::editService: no service " + id);
  record(objects::ObjectKind::Service, id, objects::Operation::Update, objects_codec::versionOf(s->meta));
  return *s;
}

void Plan::wakeAt(Time when) {
  if (when <= 0) return;
  if (nextWake_ == 0 || when < nextWake_) nextWake_ = when;
}

Plan::Counts Plan::counts() const {
  Counts c;
  for (auto& key : order_) {
    switch (entries_.at(key).operation) {
      case objects::Operation::Create: ++c.creates; break;
      case objects::Operation::Update: ++c.updates; break;
      case objects::Operation::Delete: ++c.deletes; break;
    }
  }
  return c;
}

bool Plan::touched(const std::string& taskId) const {
  return entries_.count({objects::ObjectKind::Task, taskId}) > 0;
}

std::vector<std::vector<store::ChangeSpec>> Plan::batches() const {
  std::vector<std::vector<store::ChangeSpec>> out;
  size_t bytes = 0;
  for (auto& key : order_) {
    const Entry& e = entries_.at(key);
    store::ChangeSpec c{e.kind, e.operation, key.second, e.expectedVersion, {}};
    if (e.operation != objects::Operation::Delete) {
      if (e.kind == objects::ObjectKind::Task) {
        auto* t = view_.mutableTask(key.second);
        if (!t) continue;
        c.object = objects_codec::pack<objects::Task>(*t);
      } else if (e.kind == objects::ObjectKind::Service) {
        auto* s = view_.mutableService(key.second);
        if (!s) continue;
        c.object = objects_codec::pack<objects::Service>(*s);
      }
    }
    if (out.empty() || out.back().size() >= kMaxChanges || bytes + c.object.size() > kMaxBytes) {
      out.emplace_back();
      bytes = 0;
    }
    bytes += c.object.size();
    out.back().push_back(std::move(c));
  }
  return out;
}

}  // namespace shoal::schedulerd
