#include "services/schedulerd/scheduler.h"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <map>
#include <unordered_map>
#include <vector>

#include "common/constraints.h"
#include "common/units.h"

namespace shoal::schedulerd {

namespace {

using objects::TaskState;

// A node where the service had a task fail this recently goes last (SwarmKit's scheduler
// remembers failures for 5 minutes, so a node that cannot run the image does not take every
// restart of it).
constexpr Time kFailureMemory = 5 * 60 * kSecond;
constexpr std::string_view kAssignedMessage = "scheduler assigned task to node";

TaskState stateOf(const objects::TaskT& t) {
  return t.status ? t.status->state : TaskState::New;
}

// A task that holds its node's resources and counts on it: from ASSIGNED until it stops
// running (SwarmKit's scheduler drops a task from its node once its state passes RUNNING).
bool isLive(const objects::TaskT& t) {
  auto s = stateOf(t);
  return !t.node_id.empty() && s >= TaskState::Assigned && s <= TaskState::Running;
}

bool wantsPlacement(const objects::TaskT& t) {
  return stateOf(t) == TaskState::Pending &&
         (t.desired_state == TaskState::Ready || t.desired_state == TaskState::Running);
}

struct HostPort {
  uint32_t port;
  objects::PortProtocol protocol;
  bool operator==(const HostPort&) const = default;
};

// The host-mode ports with a number that the task publishes on its node (a host port without a
// number is picked by the node, so it cannot conflict).
void hostPortsOf(const objects::TaskT& t, std::vector<HostPort>& out) {
  if (!t.endpoint) return;
  for (auto& p : t.endpoint->ports)
    if (p && p->publish_mode == objects::PublishMode::Host && p->published_port != 0)
      out.push_back({p->published_port, p->protocol});
}

const objects::ResourcesT* reservationsOf(const objects::TaskT& t) {
  return t.spec && t.spec->resources ? t.spec->resources->reservations.get() : nullptr;
}

// What a node offers and carries, tracked through the pass as tasks are placed.
struct NodeSlot {
  const objects::NodeT* node = nullptr;
  int64_t freeCpu = 0;     // capacity minus the reservations of its live tasks
  int64_t freeMemory = 0;
  uint32_t tasks = 0;      // live tasks
  std::vector<HostPort> hostPorts;
};

// What every task of a group (one service, one spec digest) asks of a node.
struct Demand {
  int64_t cpu = 0;
  int64_t memory = 0;
  uint64_t maxReplicas = 0;
  std::vector<constraints::Constraint> constraints;
  std::vector<constraints::SpreadDescriptor> spread;
  const std::vector<std::unique_ptr<objects::PlatformT>>* platforms = nullptr;
  std::vector<HostPort> hostPorts;
  std::string invalid;  // a spec the scheduler cannot read: why (raftd should have refused it)
};

Demand demandOf(const objects::TaskT& t) {
  Demand d;
  // A negative reservation (raftd refuses one) would hand a node capacity it does not have.
  if (auto* r = reservationsOf(t)) {
    d.cpu = std::max<int64_t>(r->nano_cpus, 0);
    d.memory = std::max<int64_t>(r->memory_bytes, 0);
  }
  hostPortsOf(t, d.hostPorts);
  const objects::PlacementT* p = t.spec ? t.spec->placement.get() : nullptr;
  if (!p) return d;
  d.maxReplicas = p->max_replicas;
  d.platforms = &p->platforms;
  auto parsed = constraints::parseConstraints(p->constraints);
  if (!parsed) d.invalid = "the task's placement cannot be used: " + parsed.error().message;
  else d.constraints = std::move(parsed).value();
  for (auto& pref : p->preferences) {
    if (!pref) continue;
    auto s = constraints::parseSpreadDescriptor(pref->spread_descriptor);
    if (!s) d.invalid = "the task's placement cannot be used: " + s.error().message;
    else d.spread.push_back(std::move(s).value());
  }
  return d;
}

// Why a node refuses a task: the first filter that says no, in DESIGN.md §6's order.
enum class Refusal : uint8_t {
  None, NotReady, Drained, Paused, Cpu, Memory, Constraint, Platform, Port, MaxReplicas,
};
struct Verdict {
  Refusal why = Refusal::None;
  uint32_t which = 0;  // Constraint, Port: the index in the Demand
};

// Nodes refused, counted by their first refusal, for the pending task's reason.
struct Tally {
  uint32_t notReady = 0, drained = 0, paused = 0, cpu = 0, memory = 0, platform = 0, maxed = 0;
  int64_t cpuFreeMin = std::numeric_limits<int64_t>::max(), cpuFreeMax = 0;
  int64_t memoryFreeMin = std::numeric_limits<int64_t>::max(), memoryFreeMax = 0;
  std::vector<uint32_t> constraint, port;
};

std::string nodes(uint32_t n) { return n == 1 ? "1 node" : std::to_string(n) + " nodes"; }
const char* verb(uint32_t n, const char* one, const char* many) { return n == 1 ? one : many; }

// 1.5, 2, 0.25: CPUs as docker's --reserve-cpu takes them.
std::string formatCpus(int64_t nano) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", static_cast<double>(std::max<int64_t>(nano, 0)) / 1e9);
  std::string s = buf;
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

// "1.5 free" when the refused nodes have the same, "at most 1.5 free" otherwise.
std::string freeText(int64_t min, int64_t max, std::string (*format)(int64_t)) {
  return (min == max ? "" : "at most ") + format(max) + " free";
}

std::string formatMemory(int64_t bytes) {
  return humanBytes(static_cast<uint64_t>(std::max<int64_t>(bytes, 0)));
}

const char* protocolName(objects::PortProtocol p) {
  switch (p) {
    case objects::PortProtocol::Udp: return "udp";
    case objects::PortProtocol::Sctp: return "sctp";
    default: return "tcp";
  }
}

std::string platformsText(const Demand& d) {
  std::string out;
  for (auto& p : *d.platforms) {
    if (!p) continue;
    if (!out.empty()) out += ", ";
    out += (p->os.empty() ? "*" : p->os) + "/" + (p->architecture.empty() ? "*" : p->architecture);
  }
  return out;
}

void resourceParts(const Tally& t, const Demand& d, std::vector<std::string>& parts) {
  if (t.cpu)
    parts.push_back(nodes(t.cpu) + " " + verb(t.cpu, "lacks ", "lack ") + formatCpus(d.cpu) +
                    (d.cpu == 1'000'000'000 ? " CPU, " : " CPUs, ") +
                    freeText(t.cpuFreeMin, t.cpuFreeMax, formatCpus));
  if (t.memory)
    parts.push_back(nodes(t.memory) + " " + verb(t.memory, "lacks ", "lack ") +
                    formatMemory(d.memory) + " of memory, " +
                    freeText(t.memoryFreeMin, t.memoryFreeMax, formatMemory));
}

// docs/services.md "Scheduling reasons":
//   no suitable node (3 nodes fail constraint node.labels.zone==b; 1 node is drained)
std::string explain(const Tally& t, const Demand& d, size_t candidates) {
  std::vector<std::string> parts;
  if (t.notReady)
    parts.push_back(nodes(t.notReady) + verb(t.notReady, " is", " are") + " not ready");
  if (t.drained) parts.push_back(nodes(t.drained) + verb(t.drained, " is", " are") + " drained");
  if (t.paused) parts.push_back(nodes(t.paused) + verb(t.paused, " is", " are") + " paused");
  resourceParts(t, d, parts);
  for (size_t i = 0; i < t.constraint.size(); ++i)
    if (t.constraint[i])
      parts.push_back(nodes(t.constraint[i]) + verb(t.constraint[i], " fails", " fail") +
                      " constraint " + d.constraints[i].text);
  if (t.platform)
    parts.push_back(nodes(t.platform) + verb(t.platform, " does not", " do not") +
                    " match platform " + platformsText(d));
  for (size_t i = 0; i < t.port.size(); ++i)
    if (t.port[i])
      parts.push_back("port " + std::to_string(d.hostPorts[i].port) + "/" +
                      protocolName(d.hostPorts[i].protocol) + " is taken on " + nodes(t.port[i]));
  if (t.maxed)
    parts.push_back(nodes(t.maxed) + verb(t.maxed, " already runs", " already run") + " the max " +
                    std::to_string(d.maxReplicas) + verb(d.maxReplicas, " replica", " replicas") +
                    " per node");
  if (parts.empty())
    return candidates == 0 ? "no suitable node (the cluster has no nodes)" : "no suitable node";
  std::string out = "no suitable node (";
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? "; " : "") + parts[i];
  return out + ")";
}

// The spread tree of one group (SwarmKit's decisionTree): a level per preference, a branch per
// value of it; the leaves hold the nodes as a heap, best node on top.
struct Branch {
  std::string_view value;
  int64_t tasks = 0;  // the service's live tasks on the branch's nodes
  std::vector<Branch> children;
  std::vector<uint32_t> heap;
};

class Scheduler {
 public:
  explicit Scheduler(Plan& plan) : plan_(plan), view_(plan.view()) {}
  void run();

 private:
  struct Group {
    const std::string* serviceId;
    std::vector<objects::TaskT*> pinned;  // global tasks: their node is chosen already
    std::vector<objects::TaskT*> free;
  };

  void indexNodes();
  void countLiveTasks();
  std::map<std::pair<std::string_view, uint64_t>, Group> pendingGroups();
  void placeGroup(Group& g);
  void countService(const std::string& serviceId);

  Verdict readiness(uint32_t n) const;
  Verdict resources(uint32_t n, const Demand& d) const;
  Verdict placement(uint32_t n, const Demand& d) const;
  Verdict conflicts(uint32_t n, const Demand& d) const;
  Verdict check(uint32_t n, const Demand& d) const;
  void tally(Tally& t, uint32_t n, const Demand& d, Verdict v) const;
  std::string reason(const Demand& d, const std::vector<uint32_t>& candidates) const;

  bool better(uint32_t a, uint32_t b) const;
  void build(Branch& b, std::vector<uint32_t> nodes, size_t level, const Demand& d);
  size_t place(Branch& b, size_t n, const Demand& d);
  size_t placeOnLeaf(Branch& b, size_t n, const Demand& d);
  // A group's tasks that found no node, explained once the pass placed everything it could.
  struct Leftover {
    const std::string* serviceId;
    Demand demand;
    std::vector<objects::TaskT*> free, pinned;
  };
  void placePinned(Group& g, const Demand& d, Leftover& left);
  void explainLeftovers();
  void assign(objects::TaskT& task, uint32_t n, const Demand& d);
  void leavePending(objects::TaskT& task, const std::string& why);

  Plan& plan_;
  const View& view_;
  std::vector<NodeSlot> nodes_;
  std::unordered_map<std::string_view, uint32_t> nodeIndex_;
  // Of the group being placed, per node: its service's live tasks, and whether the service
  // failed there recently.
  std::vector<uint32_t> serviceTasks_;
  std::vector<uint8_t> failedHere_;
  // The group's tasks not placed yet, in order, and the next one to place.
  std::vector<objects::TaskT*>* queue_ = nullptr;
  size_t next_ = 0;
  std::vector<Leftover> leftovers_;
};

void Scheduler::indexNodes() {
  nodes_.reserve(view_.nodes().size());
  for (auto& [id, node] : view_.nodes()) {
    NodeSlot s;
    s.node = node.get();
    if (node->description && node->description->resources) {
      s.freeCpu = node->description->resources->nano_cpus;
      s.freeMemory = node->description->resources->memory_bytes;
    }
    nodeIndex_.emplace(std::string_view(node->id), static_cast<uint32_t>(nodes_.size()));
    nodes_.push_back(std::move(s));
  }
  serviceTasks_.assign(nodes_.size(), 0);
  failedHere_.assign(nodes_.size(), 0);
}

void Scheduler::countLiveTasks() {
  for (auto& [id, task] : view_.tasks()) {
    if (!isLive(*task)) continue;
    auto it = nodeIndex_.find(task->node_id);
    if (it == nodeIndex_.end()) continue;
    NodeSlot& s = nodes_[it->second];
    ++s.tasks;
    if (auto* r = reservationsOf(*task)) {
      s.freeCpu -= std::max<int64_t>(r->nano_cpus, 0);
      s.freeMemory -= std::max<int64_t>(r->memory_bytes, 0);
    }
    hostPortsOf(*task, s.hostPorts);
  }
}

std::map<std::pair<std::string_view, uint64_t>, Scheduler::Group> Scheduler::pendingGroups() {
  std::map<std::pair<std::string_view, uint64_t>, Group> groups;
  for (auto& [id, task] : view_.tasks()) {
    if (!wantsPlacement(*task)) continue;
    // Changed through the plan only, and only for the tasks placed or explained.
    objects::TaskT* t = task.get();
    Group& g = groups[{std::string_view(t->service_id), t->spec_digest}];
    g.serviceId = &t->service_id;
    (t->node_id.empty() ? g.free : g.pinned).push_back(t);
  }
  // Replicated tasks in slot order, so that slot 1 is placed first, as a user reads them.
  for (auto& [key, g] : groups)
    std::stable_sort(g.free.begin(), g.free.end(),
                     [](auto* a, auto* b) { return a->slot < b->slot; });
  return groups;
}

void Scheduler::countService(const std::string& serviceId) {
  std::fill(serviceTasks_.begin(), serviceTasks_.end(), 0);
  std::fill(failedHere_.begin(), failedHere_.end(), 0);
  for (auto& id : view_.tasksOf(serviceId)) {
    const objects::TaskT* t = view_.task(id);
    if (!t || t->node_id.empty()) continue;
    auto it = nodeIndex_.find(t->node_id);
    if (it == nodeIndex_.end()) continue;
    if (isLive(*t)) ++serviceTasks_[it->second];
    auto s = stateOf(*t);
    bool failed = s == TaskState::Failed || s == TaskState::Rejected;
    if (failed && t->status->timestamp > plan_.now() - kFailureMemory) failedHere_[it->second] = 1;
  }
}

Verdict Scheduler::readiness(uint32_t n) const {
  const objects::NodeT& node = *nodes_[n].node;
  if (!node.status || node.status->state != objects::NodeState::Ready) return {Refusal::NotReady};
  auto availability = node.spec ? node.spec->availability : objects::NodeAvailability::Active;
  if (availability == objects::NodeAvailability::Drain) return {Refusal::Drained};
  if (availability == objects::NodeAvailability::Pause) return {Refusal::Paused};
  return {};
}

Verdict Scheduler::resources(uint32_t n, const Demand& d) const {
  if (d.cpu > 0 && nodes_[n].freeCpu < d.cpu) return {Refusal::Cpu};
  if (d.memory > 0 && nodes_[n].freeMemory < d.memory) return {Refusal::Memory};
  return {};
}

Verdict Scheduler::placement(uint32_t n, const Demand& d) const {
  const objects::NodeT& node = *nodes_[n].node;
  for (size_t i = 0; i < d.constraints.size(); ++i)
    if (!constraints::matches(d.constraints[i], node))
      return {Refusal::Constraint, static_cast<uint32_t>(i)};
  if (d.platforms && !constraints::platformMatches(*d.platforms, node)) return {Refusal::Platform};
  return {};
}

Verdict Scheduler::conflicts(uint32_t n, const Demand& d) const {
  auto& used = nodes_[n].hostPorts;
  for (size_t i = 0; i < d.hostPorts.size(); ++i)
    if (std::find(used.begin(), used.end(), d.hostPorts[i]) != used.end())
      return {Refusal::Port, static_cast<uint32_t>(i)};
  if (d.maxReplicas > 0 && serviceTasks_[n] >= d.maxReplicas) return {Refusal::MaxReplicas};
  return {};
}

Verdict Scheduler::check(uint32_t n, const Demand& d) const {
  Verdict v = readiness(n);
  if (v.why == Refusal::None) v = resources(n, d);
  if (v.why == Refusal::None) v = placement(n, d);
  if (v.why == Refusal::None) v = conflicts(n, d);
  return v;
}

void Scheduler::tally(Tally& t, uint32_t n, const Demand& d, Verdict v) const {
  const NodeSlot& s = nodes_[n];
  switch (v.why) {
    case Refusal::None: break;
    case Refusal::NotReady: ++t.notReady; break;
    case Refusal::Drained: ++t.drained; break;
    case Refusal::Paused: ++t.paused; break;
    case Refusal::Cpu:
      ++t.cpu;
      t.cpuFreeMin = std::min(t.cpuFreeMin, std::max<int64_t>(s.freeCpu, 0));
      t.cpuFreeMax = std::max(t.cpuFreeMax, s.freeCpu);
      break;
    case Refusal::Memory:
      ++t.memory;
      t.memoryFreeMin = std::min(t.memoryFreeMin, std::max<int64_t>(s.freeMemory, 0));
      t.memoryFreeMax = std::max(t.memoryFreeMax, s.freeMemory);
      break;
    case Refusal::Constraint:
      t.constraint.resize(d.constraints.size());
      ++t.constraint[v.which];
      break;
    case Refusal::Platform: ++t.platform; break;
    case Refusal::Port: t.port.resize(d.hostPorts.size()); ++t.port[v.which]; break;
    case Refusal::MaxReplicas: ++t.maxed; break;
  }
}

std::string Scheduler::reason(const Demand& d, const std::vector<uint32_t>& candidates) const {
  if (!d.invalid.empty()) return d.invalid;
  Tally t;
  for (uint32_t n : candidates) tally(t, n, d, check(n, d));
  return explain(t, d, candidates.size());
}

// The spread order within a leaf: nodes where the service failed recently last, then the fewest
// tasks of the service, then the fewest tasks; the node order (by id) breaks ties, so that a
// pass is deterministic.
bool Scheduler::better(uint32_t a, uint32_t b) const {
  if (failedHere_[a] != failedHere_[b]) return failedHere_[a] < failedHere_[b];
  if (serviceTasks_[a] != serviceTasks_[b]) return serviceTasks_[a] < serviceTasks_[b];
  if (nodes_[a].tasks != nodes_[b].tasks) return nodes_[a].tasks < nodes_[b].tasks;
  return a < b;
}

void Scheduler::build(Branch& b, std::vector<uint32_t> nodes, size_t level, const Demand& d) {
  for (uint32_t n : nodes) b.tasks += serviceTasks_[n];
  if (level == d.spread.size()) {
    b.heap = std::move(nodes);
    std::make_heap(b.heap.begin(), b.heap.end(),
                   [this](uint32_t x, uint32_t y) { return better(y, x); });
    return;
  }
  auto valueOf = [&](uint32_t n) {
    return constraints::spreadValue(d.spread[level], *nodes_[n].node);
  };
  std::stable_sort(nodes.begin(), nodes.end(),
                   [&](uint32_t x, uint32_t y) { return valueOf(x) < valueOf(y); });
  for (size_t i = 0; i < nodes.size();) {
    size_t j = i;
    while (j < nodes.size() && valueOf(nodes[j]) == valueOf(nodes[i])) ++j;
    Branch& child = b.children.emplace_back();
    child.value = valueOf(nodes[i]);
    build(child, std::vector<uint32_t>(nodes.begin() + i, nodes.begin() + j), level + 1, d);
    i = j;
  }
}

// SwarmKit's scheduleNTasksOnSubtree: even out the branches' task counts level by level; a
// branch that takes fewer than asked is full and leaves the rest to the others.
size_t Scheduler::place(Branch& b, size_t n, const Demand& d) {
  if (b.children.empty()) return placeOnLeaf(b, n, d);
  size_t placed = 0, usable = b.children.size();
  int64_t usableTasks = b.tasks;
  std::vector<uint8_t> full(b.children.size(), 0);
  // Each round places a task or fills a branch (some branch is always below the even share).
  for (size_t round = 0; placed < n && usable > 0 && round <= n + b.children.size(); ++round) {
    int64_t total = usableTasks + static_cast<int64_t>(n - placed);
    int64_t share = total / static_cast<int64_t>(usable);
    int64_t remainder = total % static_cast<int64_t>(usable);
    for (size_t i = 0; i < b.children.size() && placed < n; ++i) {
      Branch& c = b.children[i];
      if (full[i] || c.tasks > share || (c.tasks == share && remainder == 0)) continue;
      size_t want = static_cast<size_t>(share - c.tasks + (remainder > 0 ? 1 : 0));
      want = std::min(want, n - placed);
      size_t got = place(c, want, d);
      placed += got;
      usableTasks += static_cast<int64_t>(got);
      if (got < want) {
        full[i] = 1;
        --usable;
        usableTasks -= c.tasks;
      } else if (remainder > 0) {
        --remainder;
      }
    }
  }
  return placed;
}

size_t Scheduler::placeOnLeaf(Branch& b, size_t n, const Demand& d) {
  auto worse = [this](uint32_t x, uint32_t y) { return better(y, x); };
  size_t placed = 0;
  while (placed < n && !b.heap.empty() && next_ < queue_->size()) {
    std::pop_heap(b.heap.begin(), b.heap.end(), worse);
    uint32_t node = b.heap.back();
    // The group's tasks are alike: a node that cannot take one now takes none of them.
    if (resources(node, d).why != Refusal::None || conflicts(node, d).why != Refusal::None) {
      b.heap.pop_back();
      continue;
    }
    assign(*(*queue_)[next_++], node, d);
    std::push_heap(b.heap.begin(), b.heap.end(), worse);
    ++placed;
  }
  b.tasks += static_cast<int64_t>(placed);
  return placed;
}

void Scheduler::assign(objects::TaskT& task, uint32_t n, const Demand& d) {
  NodeSlot& s = nodes_[n];
  objects::TaskT& t = plan_.editTask(task.id);
  t.node_id = s.node->id;
  auto status = std::make_unique<objects::TaskStatusT>();
  status->state = TaskState::Assigned;
  status->timestamp = plan_.now();
  status->message = kAssignedMessage;
  t.status = std::move(status);
  s.freeCpu -= d.cpu;
  s.freeMemory -= d.memory;
  ++s.tasks;
  s.hostPorts.insert(s.hostPorts.end(), d.hostPorts.begin(), d.hostPorts.end());
  ++serviceTasks_[n];
}

void Scheduler::leavePending(objects::TaskT& task, const std::string& why) {
  if (task.status && task.status->err == why) return;
  objects::TaskT& t = plan_.editTask(task.id);
  if (!t.status) {
    t.status = std::make_unique<objects::TaskStatusT>();
    t.status->state = TaskState::Pending;
    t.status->timestamp = plan_.now();
  }
  t.status->err = why;
}

// A global task names its node already: it goes there when the node passes every filter.
void Scheduler::placePinned(Group& g, const Demand& d, Leftover& left) {
  for (objects::TaskT* t : g.pinned) {
    auto it = nodeIndex_.find(t->node_id);
    if (it == nodeIndex_.end())
      leavePending(*t, "no suitable node (its node " + t->node_id + " is not in the cluster)");
    else if (!d.invalid.empty() || check(it->second, d).why != Refusal::None)
      left.pinned.push_back(t);
    else
      assign(*t, it->second, d);
  }
}

void Scheduler::placeGroup(Group& g) {
  const objects::TaskT& first = g.free.empty() ? *g.pinned.front() : *g.free.front();
  Leftover left{g.serviceId, demandOf(first), {}, {}};
  const Demand& d = left.demand;
  countService(*g.serviceId);
  placePinned(g, d, left);
  if (!g.free.empty()) {
    std::vector<uint32_t> candidates;
    for (uint32_t n = 0; n < nodes_.size(); ++n)
      if (d.invalid.empty() && check(n, d).why == Refusal::None) candidates.push_back(n);
    Branch root;
    build(root, std::move(candidates), 0, d);
    queue_ = &g.free;
    next_ = 0;
    place(root, g.free.size(), d);
    left.free.assign(g.free.begin() + static_cast<ptrdiff_t>(next_), g.free.end());
  }
  if (!left.free.empty() || !left.pinned.empty()) leftovers_.push_back(std::move(left));
}

// The reasons are given against the nodes as the whole pass leaves them (placing a group only
// takes from the nodes, so a node that refused a task still refuses it): the next pass, seeing
// the same nodes, finds the same reasons and writes nothing.
void Scheduler::explainLeftovers() {
  std::vector<uint32_t> all(nodes_.size());
  for (uint32_t n = 0; n < all.size(); ++n) all[n] = n;
  for (Leftover& left : leftovers_) {
    countService(*left.serviceId);
    if (!left.free.empty()) {
      std::string why = reason(left.demand, all);
      for (objects::TaskT* t : left.free) leavePending(*t, why);
    }
    for (objects::TaskT* t : left.pinned)
      leavePending(*t, reason(left.demand, {nodeIndex_.at(t->node_id)}));
  }
}

void Scheduler::run() {
  auto groups = pendingGroups();
  if (groups.empty()) return;
  indexNodes();
  countLiveTasks();
  for (auto& [key, g] : groups) placeGroup(g);
  explainLeftovers();
}

}  // namespace

void schedule(Plan& plan) { Scheduler(plan).run(); }

}  // namespace shoal::schedulerd
