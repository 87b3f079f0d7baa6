#include "services/schedulerd/allocator.h"

#include <map>
#include <set>
#include <vector>

#include <flatbuffers/flatbuffers.h>

namespace shoal::schedulerd {

namespace {

using objects::TaskState;
using PortKey = std::pair<objects::PortProtocol, uint32_t>;  // ingress ports are per protocol

constexpr std::string_view kPendingMessage = "pending task scheduling";

const char* protocolName(objects::PortProtocol p) {
  switch (p) {
    case objects::PortProtocol::Udp: return "udp";
    case objects::PortProtocol::Sctp: return "sctp";
    default: return "tcp";
  }
}

std::string portText(const objects::PortConfigT& p) {
  return std::to_string(p.published_port) + "/" + protocolName(p.protocol);
}

bool isIngress(const objects::PortConfigT& p) {
  return p.publish_mode == objects::PublishMode::Ingress;
}

const std::vector<std::unique_ptr<objects::PortConfigT>>* specPorts(const objects::ServiceT& s) {
  return s.spec && s.spec->endpoint ? &s.spec->endpoint->ports : nullptr;
}

// The same port asked for: a dynamic port keeps the number it was given while the spec still
// asks for it (same name, protocol, target and mode).
bool samePortSpec(const objects::PortConfigT& spec, const objects::PortConfigT& given) {
  return spec.name == given.name && spec.protocol == given.protocol &&
         spec.target_port == given.target_port && spec.publish_mode == given.publish_mode;
}

// Ports with the same fields as the spec's; published_port 0 (ingress) still to allocate.
std::vector<std::unique_ptr<objects::PortConfigT>> portsWanted(const objects::ServiceT& s) {
  std::vector<std::unique_ptr<objects::PortConfigT>> out;
  auto* spec = specPorts(s);
  if (!spec) return out;
  const objects::EndpointT* had = s.endpoint.get();
  // A port the spec asks for by number is not there to be reused as a dynamic one.
  std::set<const objects::PortConfigT*> reused;
  if (had)
    for (auto& g : had->ports)
      for (auto& p : *spec)
        if (g && p && p->published_port != 0 && p->published_port == g->published_port &&
            p->protocol == g->protocol)
          reused.insert(g.get());
  for (auto& p : *spec) {
    if (!p) continue;
    auto port = std::make_unique<objects::PortConfigT>(*p);
    if (port->published_port == 0 && isIngress(*port) && had) {
      for (auto& g : had->ports) {
        if (g && g->published_port != 0 && samePortSpec(*p, *g) && reused.insert(g.get()).second) {
          port->published_port = g->published_port;
          break;
        }
      }
    }
    out.push_back(std::move(port));
  }
  return out;
}

template <class T>
std::string packed(const typename T::NativeTableType* object) {
  if (!object) return {};
  flatbuffers::FlatBufferBuilder fbb(256);
  fbb.Finish(T::Pack(fbb, object));
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

// The cluster-wide ingress ports (DESIGN.md §9's routing mesh opens them on every node), as one
// pass of the allocator sees and hands them out.
class PortAllocator {
 public:
  explicit PortAllocator(Plan& plan) : plan_(plan), view_(plan.view()) {}
  void run();

 private:
  void claimWanted();
  void allocateService(const objects::ServiceT& s);
  Status fill(const objects::ServiceT& s,
              std::vector<std::unique_ptr<objects::PortConfigT>>& ports);
  uint32_t freePort(objects::PortProtocol protocol);
  void record(const objects::ServiceT& s, std::vector<std::unique_ptr<objects::PortConfigT>> ports);
  void refuseTasks(const objects::ServiceT& s, const std::string& why);

  Plan& plan_;
  const View& view_;
  std::map<std::string, std::vector<std::unique_ptr<objects::PortConfigT>>> wanted_;
  std::map<PortKey, const std::string*> owner_;  // port → the service id holding it
  uint32_t nextFree_[3] = {kFirstDynamicPort, kFirstDynamicPort, kFirstDynamicPort};

 public:
  // Services whose ports could not be allocated: their tasks wait in NEW with this reason.
  std::map<std::string, std::string> refused;
};

bool holds(const objects::ServiceT& s, const objects::PortConfigT& p) {
  if (!s.endpoint) return false;
  for (auto& g : s.endpoint->ports)
    if (g && isIngress(*g) && g->protocol == p.protocol && g->published_port == p.published_port)
      return true;
  return false;
}

// First every port a service still wants and already holds, then every port asked for by
// number. A number asked for by two services goes to the one holding it, else to the first by
// id (raftd refuses a port in use, so this is only a race between two writes).
void PortAllocator::claimWanted() {
  for (auto& [id, service] : view_.services()) wanted_.emplace(id, portsWanted(*service));
  for (bool held : {true, false}) {
    for (auto& [id, ports] : wanted_) {
      const objects::ServiceT& s = *view_.service(id);
      for (auto& p : ports)
        if (isIngress(*p) && p->published_port != 0 && holds(s, *p) == held)
          owner_.emplace(PortKey{p->protocol, p->published_port}, &s.id);
    }
  }
}

uint32_t PortAllocator::freePort(objects::PortProtocol protocol) {
  uint32_t& next = nextFree_[static_cast<size_t>(protocol) % 3];
  for (; next <= kLastDynamicPort; ++next)
    if (!owner_.count({protocol, next})) return next++;
  return 0;
}

Status PortAllocator::fill(const objects::ServiceT& s,
                           std::vector<std::unique_ptr<objects::PortConfigT>>& ports) {
  for (auto& p : ports) {
    if (!isIngress(*p)) continue;
    if (p->published_port == 0) {
      p->published_port = freePort(p->protocol);
      if (p->published_port == 0)
        return Error{"no free published port is left in " + std::to_string(kFirstDynamicPort) +
                     "-" + std::to_string(kLastDynamicPort) + " for " + protocolName(p->protocol) +
                     "; remove a service that publishes one, or publish this one by number"};
      owner_.emplace(PortKey{p->protocol, p->published_port}, &s.id);
      continue;
    }
    const std::string* holder = owner_.at({p->protocol, p->published_port});
    if (*holder != s.id) {
      const objects::ServiceT* other = view_.service(*holder);
      std::string name = other && other->spec && other->spec->annotations
                             ? other->spec->annotations->name : *holder;
      return Error{"published port " + portText(*p) + " is already used by service " + name +
                   "; publish another port, or remove it from that service"};
    }
  }
  return {};
}

void PortAllocator::record(const objects::ServiceT& s,
                           std::vector<std::unique_ptr<objects::PortConfigT>> ports) {
  if (!s.spec->endpoint && !s.endpoint) return;
  objects::EndpointT endpoint;
  if (s.spec->endpoint) endpoint.spec = std::make_unique<objects::EndpointSpecT>(*s.spec->endpoint);
  endpoint.ports = std::move(ports);
  if (s.endpoint)
    for (auto& vip : s.endpoint->virtual_ips) endpoint.virtual_ips.push_back(
        std::make_unique<objects::VirtualIpT>(*vip));
  if (packed<objects::Endpoint>(&endpoint) == packed<objects::Endpoint>(s.endpoint.get())) return;
  plan_.editService(s.id).endpoint = std::make_unique<objects::EndpointT>(std::move(endpoint));
}

void PortAllocator::allocateService(const objects::ServiceT& s) {
  if (!s.spec) return;
  auto& ports = wanted_.at(s.id);
  Status ok = fill(s, ports);
  if (!ok) {
    refused.emplace(s.id, ok.error().message);
    return;
  }
  record(s, std::move(ports));
}

void PortAllocator::run() {
  claimWanted();
  for (auto& [id, service] : view_.services()) allocateService(*service);
}

// A NEW task of a live service goes PENDING with its service's endpoint, or waits in NEW with the
// reason its service's ports could not be had (written only when it changes).
void advanceTask(Plan& plan, const objects::TaskT& task, const objects::ServiceT& service,
                 const std::map<std::string, std::string>& refused) {
  auto r = refused.find(service.id);
  if (r != refused.end()) {
    if (task.status && task.status->err == r->second) return;
    objects::TaskT& t = plan.editTask(task.id);
    if (!t.status) t.status = std::make_unique<objects::TaskStatusT>();
    t.status->err = r->second;
    return;
  }
  objects::TaskT& t = plan.editTask(task.id);
  auto status = std::make_unique<objects::TaskStatusT>();
  status->state = TaskState::Pending;
  status->timestamp = plan.now();
  status->message = kPendingMessage;
  t.status = std::move(status);
  t.endpoint = service.endpoint ? std::make_unique<objects::EndpointT>(*service.endpoint) : nullptr;
}

void advanceNewTasks(Plan& plan, const std::map<std::string, std::string>& refused) {
  const View& view = plan.view();
  for (auto& [id, task] : view.tasks()) {
    TaskState state = task->status ? task->status->state : TaskState::New;
    if (state != TaskState::New || task->desired_state > TaskState::Running) continue;
    // A task without its service is the orchestrator's to remove, not to run.
    if (const objects::ServiceT* service = view.service(task->service_id))
      advanceTask(plan, *task, *service, refused);
  }
}

// Networks: per-network IPAM, a VIP per service and network, an address per task attachment.
// The networking issue fills this in; until then a task needs nothing from it.
void allocateNetworks(Plan&) {}

}  // namespace

void allocate(Plan& plan) {
  allocateNetworks(plan);
  PortAllocator ports(plan);
  ports.run();
  advanceNewTasks(plan, ports.refused);
}

}  // namespace shoal::schedulerd
