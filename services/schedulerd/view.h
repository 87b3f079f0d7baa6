#pragma once
// What schedulerd knows of the store (DESIGN.md §6, docs/services.md): the Cluster, Nodes,
// Services, Tasks and Networks, decoded into flatc's object API, with the index the cores need
// most (tasks by service). Pure: the shell fills it from a store watch (put/remove), the cores
// read it and change it only through a Plan (plan.h).
//
// Times are int64 nanoseconds since the Unix epoch (`Time`), like the objects' timestamps: the
// cores take `now` from the Plan and never read a clock.

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>

#include "common/result.h"
#include "common/spec_digest.h"
#include "objects_generated.h"

namespace shoal::schedulerd {

using Time = int64_t;
inline constexpr Time kSecond = 1'000'000'000;
inline constexpr Time kMillisecond = 1'000'000;

template <class T>
using Table = std::map<std::string, std::unique_ptr<T>>;

// common/spec_digest.h: what tasks of a service run; a task with another digest is dirty.
using shoal::taskSpecDigest;

// Names of tasks, Swarm's: <service>.<slot> for replicated tasks, <service>.<node id> for
// global ones (the id is appended by `service ps` as Swarm does: <name>.<task id>).
std::string taskName(const objects::ServiceT& service, const objects::TaskT& task);

class View {
 public:
  // An object from the store (a FlatBuffer of `kind`), new or a newer version. Kinds other
  // than Cluster, Node, Service, Task and Network are ignored. A buffer that does not verify is
  // an error and changes nothing.
  Status put(objects::ObjectKind kind, std::string_view bytes);
  void remove(objects::ObjectKind kind, const std::string& id);
  void clear();

  // The store index the view reflects (the shell sets it as events arrive).
  uint64_t index = 0;

  const objects::ClusterT* cluster() const { return cluster_.get(); }
  const Table<objects::NodeT>& nodes() const { return nodes_; }
  const Table<objects::ServiceT>& services() const { return services_; }
  const Table<objects::TaskT>& tasks() const { return tasks_; }
  const Table<objects::NetworkT>& networks() const { return networks_; }

  const objects::NodeT* node(const std::string& id) const;
  const objects::ServiceT* service(const std::string& id) const;
  const objects::TaskT* task(const std::string& id) const;
  // The ids of the tasks whose service_id is `serviceId` (also after the service is gone).
  const std::set<std::string>& tasksOf(const std::string& serviceId) const;
  // taskSpecDigest of the service as the view holds it (kept with the service).
  uint64_t digestOf(const std::string& serviceId) const;
  // Every service id that has tasks or a Service object, for passes over "all services".
  std::set<std::string> serviceIds() const;

 private:
  friend class Plan;
  objects::TaskT* mutableTask(const std::string& id);
  objects::ServiceT* mutableService(const std::string& id);
  void putTask(std::unique_ptr<objects::TaskT> task);
  void putService(std::unique_ptr<objects::ServiceT> service);
  void eraseTask(const std::string& id);
  void eraseService(const std::string& id);

  std::unique_ptr<objects::ClusterT> cluster_;
  Table<objects::NodeT> nodes_;
  Table<objects::ServiceT> services_;
  Table<objects::TaskT> tasks_;
  Table<objects::NetworkT> networks_;
  std::map<std::string, std::set<std::string>> tasksByService_;
  std::map<std::string, uint64_t> digests_;
};

}  // namespace shoal::schedulerd
