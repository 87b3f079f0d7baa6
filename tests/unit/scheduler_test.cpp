// schedulerd's placement: the constraint language (common/constraints.h), the allocator's
// published ports and the scheduler's filters, spread and pending reasons
// (services/schedulerd/allocator.h, scheduler.h), on Views built from packed objects as the
// store would hand them over.
#include "services/schedulerd/scheduler.h"

#include <doctest/doctest.h>

#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "common/constraints.h"
#include "common/object_codec.h"
#include "services/schedulerd/allocator.h"

namespace shoal::schedulerd {
namespace {

using objects::TaskState;
using Labels = std::vector<std::pair<std::string, std::string>>;

constexpr int64_t kCpu = 1'000'000'000;
constexpr int64_t kMiB = 1024 * 1024;

std::vector<std::unique_ptr<objects::KeyValueT>> labelsOf(const Labels& labels) {
  std::vector<std::unique_ptr<objects::KeyValueT>> out;
  for (auto& [k, v] : labels) {
    auto kv = std::make_unique<objects::KeyValueT>();
    kv->key = k;
    kv->value = v;
    out.push_back(std::move(kv));
  }
  return out;
}

struct NodeOpts {
  std::string id;
  Labels labels = {};
  objects::NodeState state = objects::NodeState::Ready;
  objects::NodeAvailability availability = objects::NodeAvailability::Active;
  objects::NodeRole role = objects::NodeRole::Worker;
  int64_t cpus = 4 * kCpu;
  int64_t memory = 8192 * kMiB;
  std::string os = "linux";
  std::string arch = "amd64";
  Labels engineLabels = {};
};

objects::NodeT makeNode(const NodeOpts& o) {
  objects::NodeT n;
  n.id = o.id;
  n.role = o.role;
  n.spec = std::make_unique<objects::NodeSpecT>();
  n.spec->availability = o.availability;
  n.spec->annotations = std::make_unique<objects::AnnotationsT>();
  n.spec->annotations->labels = labelsOf(o.labels);
  n.description = std::make_unique<objects::NodeDescriptionT>();
  n.description->hostname = "host-" + o.id;
  n.description->platform = std::make_unique<objects::PlatformT>();
  n.description->platform->os = o.os;
  n.description->platform->architecture = o.arch;
  n.description->resources = std::make_unique<objects::ResourcesT>();
  n.description->resources->nano_cpus = o.cpus;
  n.description->resources->memory_bytes = o.memory;
  n.description->engine = std::make_unique<objects::EngineDescriptionT>();
  n.description->engine->labels = labelsOf(o.engineLabels);
  n.status = std::make_unique<objects::NodeStatusT>();
  n.status->state = o.state;
  return n;
}

// A view as schedulerd's shell fills it, and passes on it at a time of the test's choosing.
struct Fixture {
  View view;
  Time now = 1'700'000'000 * kSecond;
  int lastId = 0;

  void node(const NodeOpts& o) {
    auto n = makeNode(o);
    REQUIRE(view.put(objects::ObjectKind::Node, objects_codec::pack<objects::Node>(n)));
  }

  // A replicated service; `shape` adjusts its task template.
  std::string service(const std::string& name,
                      std::function<void(objects::TaskSpecT&)> shape = {}) {
    objects::ServiceT s;
    s.id = "svc-" + name;
    s.spec = std::make_unique<objects::ServiceSpecT>();
    s.spec->annotations = std::make_unique<objects::AnnotationsT>();
    s.spec->annotations->name = name;
    s.spec->task = std::make_unique<objects::TaskSpecT>();
    s.spec->task->placement = std::make_unique<objects::PlacementT>();
    if (shape) shape(*s.spec->task);
    s.spec_version = 1;
    put(s);
    return s.id;
  }

  void put(objects::ServiceT& s) {
    REQUIRE(view.put(objects::ObjectKind::Service, objects_codec::pack<objects::Service>(s)));
  }
  void put(objects::TaskT& t) {
    REQUIRE(view.put(objects::ObjectKind::Task, objects_codec::pack<objects::Task>(t)));
  }

  // A task of the service in `state`, with the service's spec and endpoint, as the
  // orchestrator and allocator leave it.
  objects::TaskT task(const std::string& serviceId, uint64_t slot, TaskState state,
                      const std::string& nodeId = "") {
    const objects::ServiceT& s = *view.service(serviceId);
    objects::TaskT t;
    t.id = "task-" + std::to_string(++lastId);
    t.service_id = serviceId;
    t.slot = slot;
    t.node_id = nodeId;
    t.spec = std::make_unique<objects::TaskSpecT>(*s.spec->task);
    t.spec_version = s.spec_version;
    t.spec_digest = view.digestOf(serviceId);
    t.desired_state = TaskState::Running;
    t.status = std::make_unique<objects::TaskStatusT>();
    t.status->state = state;
    t.status->timestamp = now;
    if (s.endpoint) t.endpoint = std::make_unique<objects::EndpointT>(*s.endpoint);
    return t;
  }

  std::vector<std::string> pending(const std::string& serviceId, int count) {
    std::vector<std::string> ids;
    for (int slot = 1; slot <= count; ++slot) {
      auto t = task(serviceId, static_cast<uint64_t>(slot), TaskState::Pending);
      put(t);
      ids.push_back(t.id);
    }
    return ids;
  }

  std::string running(const std::string& serviceId, const std::string& nodeId) {
    auto t = task(serviceId, 100 + static_cast<uint64_t>(lastId), TaskState::Running, nodeId);
    put(t);
    return t.id;
  }

  // One scheduler pass; how many tasks it changed.
  size_t schedulePass() {
    Plan plan(view, now, [this] { return "new-" + std::to_string(++lastId); });
    schedule(plan);
    return plan.size();
  }
  size_t allocatePass() {
    Plan plan(view, now, [this] { return "new-" + std::to_string(++lastId); });
    allocate(plan);
    return plan.size();
  }

  // Live tasks of the service per node.
  std::map<std::string, int> spread(const std::string& serviceId) const {
    std::map<std::string, int> out;
    for (auto& id : view.tasksOf(serviceId)) {
      auto* t = view.task(id);
      if (t->status->state == TaskState::Assigned || t->status->state == TaskState::Running)
        ++out[t->node_id];
    }
    return out;
  }

  const objects::TaskT& get(const std::string& id) const { return *view.task(id); }
};

void constrain(objects::TaskSpecT& spec, std::vector<std::string> constraints) {
  spec.placement->constraints = std::move(constraints);
}

void reserve(objects::TaskSpecT& spec, int64_t cpus, int64_t memory) {
  spec.resources = std::make_unique<objects::ResourceRequirementsT>();
  spec.resources->reservations = std::make_unique<objects::ResourcesT>();
  spec.resources->reservations->nano_cpus = cpus;
  spec.resources->reservations->memory_bytes = memory;
}

void prefer(objects::TaskSpecT& spec, const std::string& descriptor) {
  auto p = std::make_unique<objects::PlacementPreferenceT>();
  p->spread_descriptor = descriptor;
  spec.placement->preferences.push_back(std::move(p));
}

std::unique_ptr<objects::PortConfigT> port(
    uint32_t target, uint32_t published,
    objects::PublishMode mode = objects::PublishMode::Ingress) {
  auto p = std::make_unique<objects::PortConfigT>();
  p->target_port = target;
  p->published_port = published;
  p->publish_mode = mode;
  return p;
}

objects::ServiceT publishing(const std::string& name,
                             std::vector<std::unique_ptr<objects::PortConfigT>> ports) {
  objects::ServiceT s;
  s.id = "svc-" + name;
  s.spec = std::make_unique<objects::ServiceSpecT>();
  s.spec->annotations = std::make_unique<objects::AnnotationsT>();
  s.spec->annotations->name = name;
  s.spec->task = std::make_unique<objects::TaskSpecT>();
  s.spec->endpoint = std::make_unique<objects::EndpointSpecT>();
  s.spec->endpoint->ports = std::move(ports);
  s.spec_version = 1;
  return s;
}

std::vector<std::unique_ptr<objects::PortConfigT>> ports(
    std::initializer_list<uint32_t> published) {
  std::vector<std::unique_ptr<objects::PortConfigT>> out;
  for (uint32_t p : published) out.push_back(port(80, p));
  return out;
}

// --- the constraint language ------------------------------------------------------------------

bool holds(const std::string& expr, const objects::NodeT& node) {
  auto c = constraints::parseConstraint(expr);
  REQUIRE_MESSAGE(c, expr);
  return constraints::matches(*c, node);
}

TEST_CASE("constraints: every key, == and !=, spaces, case as in Swarm") {
  auto n = makeNode({.id = "abc",
                     .labels = {{"zone", "b"}},
                     .role = objects::NodeRole::Manager,
                     .arch = "x86_64",
                     .engineLabels = {{"disk", "ssd"}}});
  CHECK(holds("node.id==abc", n));
  CHECK_FALSE(holds("node.id!=abc", n));
  CHECK(holds("node.hostname == host-abc", n));
  CHECK(holds("node.hostname!=other", n));
  CHECK(holds("node.role==manager", n));
  CHECK_FALSE(holds("node.role==worker", n));
  CHECK(holds("node.platform.os==linux", n));
  CHECK(holds("node.platform.arch==x86_64", n));
  CHECK(holds("node.labels.zone==b", n));
  CHECK_FALSE(holds("node.labels.zone==a", n));
  CHECK(holds("  node.labels.zone  !=  a ", n));
  CHECK(holds("engine.labels.disk==ssd", n));
  // Keys and values without regard to case; a label's name with it.
  CHECK(holds("NODE.ROLE==Manager", n));
  CHECK(holds("node.labels.zone==B", n));
  CHECK_FALSE(holds("node.labels.Zone==b", n));
  // A label the node lacks is "".
  CHECK(holds("node.labels.rack!=r1", n));
  CHECK_FALSE(holds("node.labels.rack==r1", n));
  auto parsed = constraints::parseConstraint(" node.labels.zone == b ");
  REQUIRE(parsed);
  CHECK(parsed->text == "node.labels.zone == b");
  CHECK(parsed->key == constraints::Key::NodeLabel);
  CHECK(parsed->label == "zone");
  CHECK(parsed->value == "b");
}

TEST_CASE("constraints: node.ip, an address or a network, as Swarm's") {
  auto n = makeNode({.id = "v4"});
  n.status->addr = "198.18.0.7";
  CHECK(holds("node.ip==198.18.0.7", n));
  CHECK_FALSE(holds("node.ip!=198.18.0.7", n));
  CHECK(holds("node.ip == 198.18.0.0/24", n));
  CHECK(holds("node.ip==198.18.0.0/15", n));
  CHECK(holds("node.ip==0.0.0.0/0", n));
  CHECK_FALSE(holds("node.ip==198.18.1.0/24", n));
  CHECK(holds("node.ip!=10.0.0.0/8", n));
  CHECK_FALSE(holds("node.ip==2001:db8::/32", n));
  n.status->addr = "[2001:db8::2]:2377";
  CHECK(holds("node.ip==2001:db8::/32", n));
  CHECK(holds("node.ip==2001:db8::2", n));
  CHECK_FALSE(holds("node.ip==2001:db9::/32", n));
  n.status->addr = "";
  CHECK_FALSE(holds("node.ip==0.0.0.0/0", n));
  for (auto bad : {"node.ip==10.0.0.300", "node.ip==10.0.0.0/33", "node.ip==host-1",
                   "node.ip==10.0.0.0/", "node.ip==::1/129"}) {
    auto c = constraints::parseConstraint(bad);
    REQUIRE_FALSE_MESSAGE(c, bad);
    CHECK(c.error().message.find("neither an IP address nor a CIDR network") != std::string::npos);
  }
}

TEST_CASE("constraints: bad expressions name the text and the valid forms") {
  auto noOperator = constraints::parseConstraint("node.labels.zone=b");
  REQUIRE_FALSE(noOperator);
  CHECK(noOperator.error().message.find("\"node.labels.zone=b\" has no == or != operator") !=
        std::string::npos);
  CHECK(noOperator.error().message.find("valid forms: node.id") != std::string::npos);
  auto unknown = constraints::parseConstraint("node.colour==red");
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error().message.find("unknown key \"node.colour\"") != std::string::npos);
  auto empty = constraints::parseConstraint("node.role==");
  REQUIRE_FALSE(empty);
  CHECK(empty.error().message.find("has no value") != std::string::npos);
  CHECK_FALSE(constraints::parseConstraint("node.labels.==x"));
  CHECK_FALSE(constraints::parseConstraint("node.role==a;b"));
  auto many = constraints::parseConstraints({"node.role==worker", "bad"});
  REQUIRE_FALSE(many);
  CHECK(many.error().message.find("\"bad\"") != std::string::npos);
}

TEST_CASE("constraints: spread preferences and platforms") {
  auto pref = constraints::parsePreference("spread=node.labels.zone");
  REQUIRE(pref);
  CHECK(pref->text == "node.labels.zone");
  CHECK_FALSE(pref->engine);
  auto stored = constraints::parseSpreadDescriptor("engine.labels.disk");
  REQUIRE(stored);
  CHECK(stored->engine);
  auto other = constraints::parsePreference("pack=node.labels.zone");
  REQUIRE_FALSE(other);
  CHECK(other.error().message.find("spread=<descriptor>") != std::string::npos);
  auto unsupported = constraints::parsePreference("spread=node.hostname");
  REQUIRE_FALSE(unsupported);
  CHECK(unsupported.error().message.find("node.labels.<label>") != std::string::npos);

  auto n = makeNode({.id = "n", .labels = {{"zone", "a"}}, .arch = "aarch64"});
  CHECK(constraints::spreadValue(*pref, n) == "a");
  CHECK(constraints::spreadValue(*stored, n) == "");
  std::vector<std::unique_ptr<objects::PlatformT>> platforms;
  CHECK(constraints::platformMatches(platforms, n));
  platforms.push_back(std::make_unique<objects::PlatformT>());
  platforms.back()->architecture = "amd64";
  platforms.back()->os = "linux";
  CHECK_FALSE(constraints::platformMatches(platforms, n));
  platforms.push_back(std::make_unique<objects::PlatformT>());
  platforms.back()->architecture = "arm64";
  CHECK(constraints::platformMatches(platforms, n));
}

// --- the scheduler ------------------------------------------------------------------------------

TEST_CASE("scheduler: spread evens out the service's tasks, then all tasks") {
  Fixture f;
  for (int i = 1; i <= 5; ++i) f.node({.id = "n" + std::to_string(i)});
  auto other = f.service("other");
  f.running(other, "n1");
  auto web = f.service("web");
  auto ids = f.pending(web, 10);
  CHECK(f.schedulePass() == 10);
  auto spread = f.spread(web);
  CHECK(spread.size() == 5);
  for (auto& [node, count] : spread) CHECK_MESSAGE(count == 2, node);
  auto& t = f.get(ids[0]);
  CHECK(t.status->state == TaskState::Assigned);
  CHECK(t.status->message == "scheduler assigned task to node");
  CHECK(t.status->timestamp == f.now);
  // The first task avoids n1, which runs another service's task.
  CHECK(t.node_id == "n2");
  CHECK(f.schedulePass() == 0);
}

TEST_CASE("scheduler: constraints on every kind of key") {
  Fixture f;
  f.node({.id = "n1", .labels = {{"zone", "a"}}});
  f.node({.id = "n2", .labels = {{"zone", "b"}}, .role = objects::NodeRole::Manager});
  f.node({.id = "n3", .labels = {{"zone", "b"}}, .arch = "arm64"});
  f.node({.id = "n4", .labels = {{"zone", "c"}}, .engineLabels = {{"disk", "ssd"}}});
  struct Case {
    std::vector<std::string> constraints;
    std::map<std::string, int> expected;
  };
  std::vector<Case> cases = {
      {{"node.labels.zone==b"}, {{"n2", 2}, {"n3", 2}}},
      {{"node.labels.zone!=b"}, {{"n1", 2}, {"n4", 2}}},
      {{"node.role==manager"}, {{"n2", 4}}},
      {{"node.id==n4"}, {{"n4", 4}}},
      {{"node.hostname!=host-n1", "node.platform.arch==amd64"}, {{"n2", 2}, {"n4", 2}}},
      {{"node.platform.os==linux", "node.labels.zone==b", "node.platform.arch!=amd64"},
       {{"n3", 4}}},
      {{"engine.labels.disk==ssd"}, {{"n4", 4}}},
  };
  int i = 0;
  for (auto& c : cases) {
    auto s =
        f.service("s" + std::to_string(++i), [&](auto& spec) { constrain(spec, c.constraints); });
    f.pending(s, 4);
    f.schedulePass();
    CHECK_MESSAGE(f.spread(s) == c.expected, c.constraints[0]);
  }
}

TEST_CASE("scheduler: a preference spreads over zones first, whatever their sizes") {
  Fixture f;
  f.node({.id = "a1", .labels = {{"zone", "a"}}});
  for (auto id : {"b1", "b2"}) f.node({.id = id, .labels = {{"zone", "b"}}});
  for (auto id : {"c1", "c2", "c3"}) f.node({.id = id, .labels = {{"zone", "c"}}});
  auto s = f.service("web", [](auto& spec) { prefer(spec, "node.labels.zone"); });
  f.pending(s, 9);
  CHECK(f.schedulePass() == 9);
  auto spread = f.spread(s);
  CHECK(spread["a1"] == 3);
  CHECK(spread["b1"] + spread["b2"] == 3);
  CHECK(spread["c1"] + spread["c2"] + spread["c3"] == 3);
  CHECK(spread["c1"] == 1);

  // Zones that already hold tasks of the service are evened out: 3 more go where fewest run.
  auto more = f.service("more", [](auto& spec) { prefer(spec, "node.labels.zone"); });
  f.running(more, "a1");
  f.running(more, "a1");
  f.running(more, "b1");
  f.pending(more, 3);
  f.schedulePass();
  auto after = f.spread(more);
  CHECK(after["a1"] == 2);
  CHECK(after["b1"] + after["b2"] == 2);
  CHECK(after["c1"] + after["c2"] + after["c3"] == 2);
}

TEST_CASE("scheduler: max replicas per node") {
  Fixture f;
  for (auto id : {"n1", "n2", "n3"}) f.node({.id = id});
  auto s = f.service("web", [](auto& spec) { spec.placement->max_replicas = 1; });
  auto ids = f.pending(s, 5);
  CHECK(f.schedulePass() == 5);
  CHECK(f.spread(s) == std::map<std::string, int>{{"n1", 1}, {"n2", 1}, {"n3", 1}});
  for (int i = 3; i < 5; ++i) {
    auto& t = f.get(ids[i]);
    CHECK(t.status->state == TaskState::Pending);
    CHECK(t.status->err == "no suitable node (3 nodes already run the max 1 replica per node)");
  }
  // The reason is written once: a second pass finds it unchanged.
  CHECK(f.schedulePass() == 0);
}

TEST_CASE("scheduler: CPU and memory reservations, with the free amounts in the reason") {
  Fixture f;
  f.node({.id = "n1", .cpus = 2 * kCpu});
  f.node({.id = "n2", .cpus = 2 * kCpu});
  auto cpu = f.service("cpu", [](auto& spec) { reserve(spec, 3 * kCpu / 2, 0); });
  auto ids = f.pending(cpu, 3);
  f.schedulePass();
  CHECK(f.spread(cpu) == std::map<std::string, int>{{"n1", 1}, {"n2", 1}});
  CHECK(f.get(ids[2]).status->err == "no suitable node (2 nodes lack 1.5 CPUs, 0.5 free)");

  Fixture g;
  g.node({.id = "n1", .memory = 768 * kMiB});
  auto mem = g.service("mem", [](auto& spec) { reserve(spec, kCpu, 512 * kMiB); });
  auto mids = g.pending(mem, 2);
  g.schedulePass();
  CHECK(g.get(mids[0]).node_id == "n1");
  CHECK(g.get(mids[1]).status->err ==
        "no suitable node (1 node lacks 512MiB of memory, 256MiB free)");

  // Tasks already running on a node hold their reservations; nodes that differ show the most.
  Fixture h;
  h.node({.id = "n1", .cpus = 2 * kCpu});
  h.node({.id = "n2", .cpus = kCpu});
  auto big = h.service("big", [](auto& spec) { reserve(spec, kCpu, 0); });
  h.running(big, "n1");
  h.running(big, "n1");
  auto want = h.service("want", [](auto& spec) { reserve(spec, 2 * kCpu, 0); });
  auto wids = h.pending(want, 1);
  h.schedulePass();
  CHECK(h.get(wids[0]).status->err == "no suitable node (2 nodes lack 2 CPUs, at most 1 free)");
}

TEST_CASE("scheduler: down, drained and paused nodes take no new tasks") {
  Fixture f;
  f.node({.id = "down", .state = objects::NodeState::Down});
  f.node({.id = "drained", .availability = objects::NodeAvailability::Drain});
  f.node({.id = "paused", .availability = objects::NodeAvailability::Pause});
  auto s = f.service("web");
  auto ids = f.pending(s, 2);
  CHECK(f.schedulePass() == 2);
  CHECK(f.get(ids[0]).status->err ==
        "no suitable node (1 node is not ready; 1 node is drained; 1 node is paused)");
  CHECK(f.get(ids[0]).status->state == TaskState::Pending);
  f.node({.id = "ready"});
  CHECK(f.schedulePass() == 2);
  CHECK(f.spread(s) == std::map<std::string, int>{{"ready", 2}});
  CHECK(f.get(ids[0]).status->err.empty());
}

TEST_CASE("scheduler: nodes where the service failed in the last 5 minutes go last") {
  Fixture f;
  for (auto id : {"n1", "n2", "n3"}) f.node({.id = id});
  auto s = f.service("web", [](auto& spec) { spec.placement->max_replicas = 1; });
  auto failed = f.task(s, 1, TaskState::Failed, "n1");
  failed.status->timestamp = f.now - 60 * kSecond;
  f.put(failed);
  auto ids = f.pending(s, 2);
  f.schedulePass();
  CHECK(f.get(ids[0]).node_id == "n2");
  CHECK(f.get(ids[1]).node_id == "n3");
  // Still used when nothing else fits: n2 and n3 hold their one replica each.
  auto third = f.pending(s, 1);
  f.schedulePass();
  CHECK(f.get(third[0]).node_id == "n1");

  Fixture g;
  for (auto id : {"n1", "n2"}) g.node({.id = id});
  auto old = g.service("web");
  g.running(old, "n2");
  auto longAgo = g.task(old, 1, TaskState::Rejected, "n1");
  longAgo.status->timestamp = g.now - 6 * 60 * kSecond;
  g.put(longAgo);
  auto gids = g.pending(old, 1);
  g.schedulePass();
  CHECK(g.get(gids[0]).node_id == "n1");
}

TEST_CASE("scheduler: the reason text of every kind") {
  Fixture f;
  f.node({.id = "n1", .labels = {{"zone", "a"}}});
  f.node({.id = "n2", .labels = {{"zone", "a"}}, .arch = "arm64"});
  f.node({.id = "n3", .labels = {{"zone", "b"}}, .cpus = kCpu / 2});
  f.node({.id = "n4", .labels = {{"zone", "b"}}, .memory = 100 * kMiB});
  f.node({.id = "n5", .labels = {{"zone", "b"}}});
  f.node({.id = "n6", .labels = {{"zone", "b"}}});
  f.node({.id = "n7", .state = objects::NodeState::Disconnected});
  // n5 runs another service on the host port; n6 runs this service up to its max.
  auto other = f.service("other", [](auto&) {});
  auto o = f.task(other, 1, TaskState::Running, "n5");
  o.endpoint = std::make_unique<objects::EndpointT>();
  o.endpoint->ports.push_back(port(80, 8080, objects::PublishMode::Host));
  f.put(o);
  auto s = f.service("web", [](auto& spec) {
    constrain(spec, {"node.labels.zone!=a"});
    reserve(spec, kCpu, 200 * kMiB);
    spec.placement->max_replicas = 1;
  });
  f.running(s, "n6");
  auto t = f.task(s, 1, TaskState::Pending);
  t.endpoint = std::make_unique<objects::EndpointT>();
  t.endpoint->ports.push_back(port(80, 8080, objects::PublishMode::Host));
  f.put(t);
  f.schedulePass();
  CHECK(
      f.get(t.id).status->err ==
      "no suitable node (1 node is not ready; 1 node lacks 1 CPU, 0.5 free; 1 node lacks 200MiB of "
      "memory, 100MiB free; 2 nodes fail constraint node.labels.zone!=a; port 8080/tcp is taken on "
      "1 node; 1 node already runs the max 1 replica per node)");

  Fixture p;
  p.node({.id = "n1"});
  auto arm = p.service("arm", [](auto& spec) {
    spec.placement->platforms.push_back(std::make_unique<objects::PlatformT>());
    spec.placement->platforms.back()->os = "linux";
    spec.placement->platforms.back()->architecture = "arm64";
  });
  auto ids = p.pending(arm, 1);
  p.schedulePass();
  CHECK(p.get(ids[0]).status->err ==
        "no suitable node (1 node does not match platform linux/arm64)");

  Fixture none;
  auto lonely = none.service("lonely");
  auto lids = none.pending(lonely, 1);
  none.schedulePass();
  CHECK(none.get(lids[0]).status->err == "no suitable node (the cluster has no nodes)");
}

TEST_CASE("scheduler: host ports of one service do not meet on a node") {
  Fixture f;
  for (auto id : {"n1", "n2"}) f.node({.id = id});
  auto s = f.service("web");
  std::vector<std::string> ids;
  for (int slot = 1; slot <= 3; ++slot) {
    auto t = f.task(s, static_cast<uint64_t>(slot), TaskState::Pending);
    t.endpoint = std::make_unique<objects::EndpointT>();
    t.endpoint->ports.push_back(port(80, 8080, objects::PublishMode::Host));
    f.put(t);
    ids.push_back(t.id);
  }
  f.schedulePass();
  CHECK(f.spread(s) == std::map<std::string, int>{{"n1", 1}, {"n2", 1}});
  CHECK(f.get(ids[2]).status->err == "no suitable node (port 8080/tcp is taken on 2 nodes)");
}

TEST_CASE("scheduler: a global task goes to its own node only when it passes the filters") {
  Fixture f;
  f.node({.id = "n1"});
  f.node({.id = "n2", .availability = objects::NodeAvailability::Drain});
  auto s = f.service("agent");
  auto ok = f.task(s, 0, TaskState::Pending, "n1");
  auto drained = f.task(s, 0, TaskState::Pending, "n2");
  auto gone = f.task(s, 0, TaskState::Pending, "n9");
  for (auto* t : {&ok, &drained, &gone}) f.put(*t);
  f.schedulePass();
  CHECK(f.get(ok.id).status->state == TaskState::Assigned);
  CHECK(f.get(ok.id).node_id == "n1");
  CHECK(f.get(drained.id).status->err == "no suitable node (1 node is drained)");
  CHECK(f.get(gone.id).status->err == "no suitable node (its node n9 is not in the cluster)");
}

TEST_CASE("scheduler: only PENDING tasks desired READY or RUNNING are placed") {
  Fixture f;
  f.node({.id = "n1"});
  auto s = f.service("web");
  auto fresh = f.task(s, 1, TaskState::New);
  auto stopping = f.task(s, 2, TaskState::Pending);
  stopping.desired_state = TaskState::Shutdown;
  auto delayed = f.task(s, 3, TaskState::Pending);
  delayed.desired_state = TaskState::Ready;
  delayed.not_before = f.now + 10 * kSecond;
  for (auto* t : {&fresh, &stopping, &delayed}) f.put(*t);
  CHECK(f.schedulePass() == 1);
  CHECK(f.get(delayed.id).status->state == TaskState::Assigned);
  CHECK(f.get(fresh.id).status->state == TaskState::New);
  CHECK(f.get(stopping.id).status->state == TaskState::Pending);
}

// An independent statement of the filters, for the random clusters below.
struct Fit {
  const objects::NodeT* node;
  int64_t cpu, memory;
  std::map<std::string, uint64_t> perService;
};

bool fits(const Fit& n, const objects::TaskT& t) {
  if (n.node->status->state != objects::NodeState::Ready ||
      n.node->spec->availability != objects::NodeAvailability::Active)
    return false;
  auto& r = *t.spec->resources->reservations;
  if (n.cpu < r.nano_cpus || n.memory < r.memory_bytes) return false;
  auto parsed = constraints::parseConstraints(t.spec->placement->constraints);
  REQUIRE(parsed);
  if (!constraints::matchesAll(*parsed, *n.node)) return false;
  auto max = t.spec->placement->max_replicas;
  auto it = n.perService.find(t.service_id);
  return max == 0 || it == n.perService.end() || it->second < max;
}

TEST_CASE("scheduler: random clusters keep every filter's promise; a second pass changes nothing") {
  const std::vector<std::string> kConstraints = {"node.labels.zone==a", "node.labels.zone!=b",
                                                 "node.role==manager", "node.labels.disk==ssd"};
  for (uint32_t seed = 1; seed <= 40; ++seed) {
    CAPTURE(seed);
    std::mt19937 rng(seed);
    auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint32_t>(n)); };
    Fixture f;
    int nodeCount = 1 + pick(12);
    for (int i = 0; i < nodeCount; ++i) {
      NodeOpts o{.id = "n" + std::to_string(i),
                 .labels = {{"zone", std::string(1, static_cast<char>('a' + pick(3)))}}};
      if (pick(2)) o.labels.push_back({"disk", "ssd"});
      o.state = pick(6) ? objects::NodeState::Ready : objects::NodeState::Down;
      o.availability = static_cast<objects::NodeAvailability>(pick(5) < 3 ? 0 : pick(3));
      o.role = static_cast<objects::NodeRole>(pick(2));
      o.cpus = (1 + pick(8)) * kCpu / 2;
      o.memory = (1 + pick(8)) * 256 * kMiB;
      f.node(o);
    }
    int services = 1 + pick(4);
    for (int i = 0; i < services; ++i) {
      auto s = f.service("s" + std::to_string(i), [&](objects::TaskSpecT& spec) {
        if (pick(2)) constrain(spec, {kConstraints[static_cast<size_t>(pick(4))]});
        reserve(spec, pick(4) * kCpu / 2, pick(4) * 256 * kMiB);
        spec.placement->max_replicas = static_cast<uint64_t>(pick(3));
        if (pick(2)) prefer(spec, "node.labels.zone");
      });
      f.pending(s, 1 + pick(10));
    }
    f.schedulePass();

    std::map<std::string, Fit> free;
    for (auto& [id, n] : f.view.nodes())
      free[id] = Fit{n.get(),
                     n->description->resources->nano_cpus,
                     n->description->resources->memory_bytes,
                     {}};
    for (auto& [id, t] : f.view.tasks()) {
      if (t->status->state != TaskState::Assigned) continue;
      Fit& n = free.at(t->node_id);
      // Every placed task passed the filters on what its node had left.
      CHECK(fits(n, *t));
      n.cpu -= t->spec->resources->reservations->nano_cpus;
      n.memory -= t->spec->resources->reservations->memory_bytes;
      ++n.perService[t->service_id];
    }
    for (auto& [id, t] : f.view.tasks()) {
      if (t->status->state != TaskState::Pending) continue;
      // A task left pending says why, and truly fits nowhere.
      CHECK(t->status->err.starts_with("no suitable node"));
      for (auto& [nodeId, n] : free)
        CHECK_MESSAGE(!fits(n, *t), std::string(t->id + " fits on " + nodeId));
    }
    CHECK(f.schedulePass() == 0);
  }
}

TEST_CASE("scheduler and allocator: objects with fields left out do not trouble them") {
  Fixture f;
  objects::NodeT bare;
  bare.id = "bare";
  REQUIRE(f.view.put(objects::ObjectKind::Node, objects_codec::pack<objects::Node>(bare)));
  f.node({.id = "n1"});
  objects::ServiceT s;
  s.id = "svc-nospec";
  f.put(s);
  objects::TaskT t;
  t.id = "t-nospec";
  t.service_id = s.id;
  t.desired_state = TaskState::Running;
  f.put(t);
  CHECK(f.allocatePass() == 1);
  CHECK(f.get(t.id).status->state == TaskState::Pending);
  CHECK(f.schedulePass() == 1);
  CHECK(f.get(t.id).node_id == "n1");
  CHECK(f.allocatePass() == 0);
  CHECK(f.schedulePass() == 0);
}

// --- the allocator ------------------------------------------------------------------------------

TEST_CASE("allocator: published ports, dynamic ones from 30000, unique across services") {
  Fixture f;
  auto a = publishing("a", ports({30000, 0}));
  auto b = publishing("b", ports({0}));
  f.put(a);
  f.put(b);
  auto t = f.task(a.id, 1, TaskState::New);
  f.put(t);
  CHECK(f.allocatePass() == 3);
  auto* ea = f.view.service(a.id)->endpoint.get();
  REQUIRE(ea);
  REQUIRE(ea->ports.size() == 2);
  CHECK(ea->ports[0]->published_port == 30000);
  CHECK(ea->ports[1]->published_port == 30001);
  REQUIRE(ea->spec);
  CHECK(ea->spec->ports[1]->published_port == 0);
  CHECK(f.view.service(b.id)->endpoint->ports[0]->published_port == 30002);
  auto& task = f.get(t.id);
  CHECK(task.status->state == TaskState::Pending);
  CHECK(task.status->message == "pending task scheduling");
  REQUIRE(task.endpoint);
  CHECK(task.endpoint->ports[1]->published_port == 30001);
  // Nothing changes on a second pass, and a dynamic port stays with its service.
  CHECK(f.allocatePass() == 0);
  auto c = publishing("0-first", ports({0}));
  f.put(c);
  CHECK(f.allocatePass() == 1);
  CHECK(f.view.service(c.id)->endpoint->ports[0]->published_port == 30003);
  CHECK(f.view.service(a.id)->endpoint->ports[1]->published_port == 30001);
}

TEST_CASE("allocator: a port held by one service is refused to another, whose tasks wait") {
  Fixture f;
  auto holder = publishing("z-holder", ports({8080}));
  f.put(holder);
  CHECK(f.allocatePass() == 1);
  auto late = publishing("a-late", ports({8080}));
  f.put(late);
  auto t = f.task(late.id, 1, TaskState::New);
  f.put(t);
  CHECK(f.allocatePass() == 1);
  CHECK(f.view.service(late.id)->endpoint == nullptr);
  CHECK(f.get(t.id).status->state == TaskState::New);
  CHECK(f.get(t.id).status->err ==
        "published port 8080/tcp is already used by service z-holder; publish another port, or "
        "remove it from that service");
  CHECK(f.allocatePass() == 0);
  // Host-mode ports are the node's, not the cluster's: no conflict here.
  auto host = publishing("host", {});
  host.spec->endpoint->ports.push_back(port(80, 8080, objects::PublishMode::Host));
  f.put(host);
  CHECK(f.allocatePass() == 1);
  CHECK(f.view.service(host.id)->endpoint->ports[0]->published_port == 8080);
}

TEST_CASE(
    "allocate then schedule: new tasks reach ASSIGNED in one pass; a second changes nothing") {
  Fixture f;
  for (auto id : {"n1", "n2"}) f.node({.id = id});
  auto s = publishing("web", ports({0}));
  f.put(s);
  std::vector<std::string> ids;
  for (int slot = 1; slot <= 4; ++slot) {
    auto t = f.task(s.id, static_cast<uint64_t>(slot), TaskState::New);
    f.put(t);
    ids.push_back(t.id);
  }
  Plan plan(f.view, f.now, [] { return std::string("unused"); });
  allocate(plan);
  schedule(plan);
  CHECK(plan.counts().updates == 5);
  for (auto& id : ids) {
    CHECK(f.get(id).status->state == TaskState::Assigned);
    CHECK(f.get(id).endpoint->ports[0]->published_port == 30000);
  }
  CHECK(f.spread(s.id) == std::map<std::string, int>{{"n1", 2}, {"n2", 2}});
  Plan again(f.view, f.now, [] { return std::string("unused"); });
  allocate(again);
  schedule(again);
  CHECK(again.empty());
}

}  // namespace
}  // namespace shoal::schedulerd
