#include "services/schedulerd/view.h"

#include "common/object_codec.h"

namespace shoal::schedulerd {

namespace {

template <class T>
std::unique_ptr<typename T::NativeTableType> decode(std::string_view bytes) {
  auto r = objects_codec::unpack<T>(bytes, "object");
  return r ? std::move(r).value() : nullptr;
}

const std::set<std::string> kNoTasks;

}  // namespace

std::string taskName(const objects::ServiceT& service, const objects::TaskT& task) {
  std::string name = service.spec && service.spec->annotations ? service.spec->annotations->name : service.id;
  if (task.slot > 0) return name + "." + std::to_string(task.slot);
  return name + "." + task.node_id;
}

Status View::put(objects::ObjectKind kind, std::string_view bytes) {
  auto bad = [&](const char* what) {
    return Error{std::string("schedulerd: a stored ") + what + " does not verify; it is left out",
                 static_cast<int>(wire::ErrorCode::Internal)};
  };
  switch (kind) {
    case objects::ObjectKind::Cluster: {
      auto c = decode<objects::Cluster>(bytes);
      if (!c) return bad("cluster");
      cluster_ = std::move(c);
      return {};
    }
    case objects::ObjectKind::Node: {
      auto n = decode<objects::Node>(bytes);
      if (!n) return bad("node");
      auto id = n->id;
      nodes_[id] = std::move(n);
      return {};
    }
    case objects::ObjectKind::Service: {
      auto s = decode<objects::Service>(bytes);
      if (!s) return bad("service");
      putService(std::move(s));
      return {};
    }
    case objects::ObjectKind::Task: {
      auto t = decode<objects::Task>(bytes);
      if (!t) return bad("task");
      putTask(std::move(t));
      return {};
    }
    case objects::ObjectKind::Network: {
      auto n = decode<objects::Network>(bytes);
      if (!n) return bad("network");
      auto id = n->id;
      networks_[id] = std::move(n);
      return {};
    }
    default:
      return {};
  }
}

void View::remove(objects::ObjectKind kind, const std::string& id) {
  switch (kind) {
    case objects::ObjectKind::Cluster:
      if (cluster_ && cluster_->id == id) cluster_.reset();
      break;
    case objects::ObjectKind::Node: nodes_.erase(id); break;
    case objects::ObjectKind::Service: eraseService(id); break;
    case objects::ObjectKind::Task: eraseTask(id); break;
    case objects::ObjectKind::Network: networks_.erase(id); break;
    default: break;
  }
}

void View::clear() {
  cluster_.reset();
  nodes_.clear();
  services_.clear();
  tasks_.clear();
  networks_.clear();
  tasksByService_.clear();
  digests_.clear();
  index = 0;
}

const objects::NodeT* View::node(const std::string& id) const {
  auto it = nodes_.find(id);
  return it == nodes_.end() ? nullptr : it->second.get();
}
const objects::ServiceT* View::service(const std::string& id) const {
  auto it = services_.find(id);
  return it == services_.end() ? nullptr : it->second.get();
}
const objects::TaskT* View::task(const std::string& id) const {
  auto it = tasks_.find(id);
  return it == tasks_.end() ? nullptr : it->second.get();
}

const std::set<std::string>& View::tasksOf(const std::string& serviceId) const {
  auto it = tasksByService_.find(serviceId);
  return it == tasksByService_.end() ? kNoTasks : it->second;
}

uint64_t View::digestOf(const std::string& serviceId) const {
  auto it = digests_.find(serviceId);
  return it == digests_.end() ? 0 : it->second;
}

std::set<std::string> View::serviceIds() const {
  std::set<std::string> ids;
  for (auto& [id, s] : services_) ids.insert(id);
  for (auto& [id, tasks] : tasksByService_)
    if (!tasks.empty()) ids.insert(id);
  return ids;
}

objects::TaskT* View::mutableTask(const std::string& id) {
  auto it = tasks_.find(id);
  return it == tasks_.end() ? nullptr : it->second.get();
}

objects::ServiceT* View::mutableService(const std::string& id) {
  auto it = services_.find(id);
  return it == services_.end() ? nullptr : it->second.get();
}

void View::putTask(std::unique_ptr<objects::TaskT> task) {
  auto& slot = tasks_[task->id];
  if (slot && slot->service_id != task->service_id) tasksByService_[slot->service_id].erase(task->id);
  tasksByService_[task->service_id].insert(task->id);
  slot = std::move(task);
}

void View::putService(std::unique_ptr<objects::ServiceT> service) {
  digests_[service->id] = taskSpecDigest(*service);
  auto id = service->id;
  services_[id] = std::move(service);
}

void View::eraseTask(const std::string& id) {
  auto it = tasks_.find(id);
  if (it == tasks_.end()) return;
  auto byService = tasksByService_.find(it->second->service_id);
  if (byService != tasksByService_.end()) {
    byService->second.erase(id);
    if (byService->second.empty()) tasksByService_.erase(byService);
  }
  tasks_.erase(it);
}

void View::eraseService(const std::string& id) {
  services_.erase(id);
  digests_.erase(id);
}

}  // namespace shoal::schedulerd
