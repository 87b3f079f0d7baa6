#include "tools/bench/scheduler_bench.h"

#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <ctime>
#include <iostream>

#include <nlohmann/json.hpp>

#include "common/object_codec.h"
#include "services/schedulerd/allocator.h"
#include "services/schedulerd/scheduler.h"

namespace shoal::bench {

namespace {

using schedulerd::Time;
using schedulerd::View;
using Clock = std::chrono::steady_clock;

constexpr Time kNow = 1'700'000'000 * schedulerd::kSecond;
constexpr int64_t kCpu = 1'000'000'000;
constexpr int64_t kMiB = 1024 * 1024;

std::unique_ptr<objects::KeyValueT> label(const std::string& key, const std::string& value) {
  auto kv = std::make_unique<objects::KeyValueT>();
  kv->key = key;
  kv->value = value;
  return kv;
}

// A ready, active worker of 64 CPUs and 256 GiB in zone z0, z1 or z2: every task fits.
objects::NodeT makeNode(int i) {
  objects::NodeT n;
  n.id = "node" + std::to_string(1000000 + i);
  n.spec = std::make_unique<objects::NodeSpecT>();
  n.spec->annotations = std::make_unique<objects::AnnotationsT>();
  n.spec->annotations->labels.push_back(label("zone", "z" + std::to_string(i % 3)));
  n.description = std::make_unique<objects::NodeDescriptionT>();
  n.description->hostname = "host-" + std::to_string(i);
  n.description->platform = std::make_unique<objects::PlatformT>();
  n.description->platform->os = "linux";
  n.description->platform->architecture = "amd64";
  n.description->resources = std::make_unique<objects::ResourcesT>();
  n.description->resources->nano_cpus = 64 * kCpu;
  n.description->resources->memory_bytes = 256 * 1024 * kMiB;
  n.status = std::make_unique<objects::NodeStatusT>();
  n.status->state = objects::NodeState::Ready;
  return n;
}

// Service 0 spreads over the zones, service 1 publishes a port, service 2 keeps off zone z2;
// all reserve a little CPU and memory, so that the resource filter has work to do.
objects::ServiceT makeService(int i, uint64_t replicas) {
  objects::ServiceT s;
  s.id = "service" + std::to_string(1000 + i);
  s.spec = std::make_unique<objects::ServiceSpecT>();
  s.spec->annotations = std::make_unique<objects::AnnotationsT>();
  s.spec->annotations->name = "bench" + std::to_string(i);
  s.spec->mode = std::make_unique<objects::ServiceModeT>();
  s.spec->mode->replicas = replicas;
  auto& task = s.spec->task = std::make_unique<objects::TaskSpecT>();
  task->container = std::make_unique<objects::ContainerSpecT>();
  task->container->image = "busybox:latest";
  task->resources = std::make_unique<objects::ResourceRequirementsT>();
  task->resources->reservations = std::make_unique<objects::ResourcesT>();
  task->resources->reservations->nano_cpus = kCpu / 10;
  task->resources->reservations->memory_bytes = 64 * kMiB;
  task->placement = std::make_unique<objects::PlacementT>();
  if (i == 0) {
    task->placement->preferences.push_back(std::make_unique<objects::PlacementPreferenceT>());
    task->placement->preferences.back()->spread_descriptor = "node.labels.zone";
  }
  if (i == 1) {
    s.spec->endpoint = std::make_unique<objects::EndpointSpecT>();
    s.spec->endpoint->ports.push_back(std::make_unique<objects::PortConfigT>());
    s.spec->endpoint->ports.back()->target_port = 80;
  }
  if (i == 2) task->placement->constraints.push_back("node.labels.zone!=z2");
  s.spec_version = 1;
  return s;
}

// A task as the orchestrator creates it: NEW, desired RUNNING, with its service's spec.
objects::TaskT makeTask(const objects::ServiceT& s, uint64_t digest, uint64_t slot, int n) {
  objects::TaskT t;
  t.id = "task" + std::to_string(10000000 + n);
  t.service_id = s.id;
  t.slot = slot;
  t.spec = std::make_unique<objects::TaskSpecT>(*s.spec->task);
  t.spec_version = s.spec_version;
  t.spec_digest = digest;
  t.desired_state = objects::TaskState::Running;
  t.status = std::make_unique<objects::TaskStatusT>();
  t.status->state = objects::TaskState::New;
  t.status->timestamp = kNow;
  return t;
}

// The view as schedulerd's shell fills it: from packed objects, through the verifier.
Status prepare(View& view, const SchedulerBenchOptions& o) {
  for (int i = 0; i < o.nodes; ++i) {
    auto n = makeNode(i);
    if (auto st = view.put(objects::ObjectKind::Node, objects_codec::pack<objects::Node>(n)); !st)
      return st;
  }
  int made = 0;
  for (int i = 0; i < o.services; ++i) {
    uint64_t replicas = static_cast<uint64_t>(o.tasks / o.services + (i < o.tasks % o.services));
    auto s = makeService(i, replicas);
    auto packed = objects_codec::pack<objects::Service>(s);
    if (auto st = view.put(objects::ObjectKind::Service, packed); !st) return st;
    uint64_t digest = view.digestOf(s.id);
    for (uint64_t slot = 1; slot <= replicas; ++slot) {
      auto t = makeTask(s, digest, slot, made++);
      if (auto st = view.put(objects::ObjectKind::Task, objects_codec::pack<objects::Task>(t)); !st)
        return st;
    }
  }
  return {};
}

size_t countAssigned(const View& view) {
  size_t n = 0;
  for (auto& [id, t] : view.tasks())
    if (t->status && t->status->state == objects::TaskState::Assigned && !t->node_id.empty()) ++n;
  return n;
}

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
double round3(double x) { return std::round(x * 1000) / 1000; }

double peakRssMb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return std::round(static_cast<double>(u.ru_maxrss) / 1024 * 10) / 10;  // ru_maxrss is KiB
}

}  // namespace

int runSchedulerBench(const SchedulerBenchOptions& o) {
  View view;
  std::cerr << "shoal-bench: preparing " << o.nodes << " nodes and " << o.tasks << " tasks\n";
  if (auto st = prepare(view, o); !st) {
    std::cerr << "shoal-bench: " << st.error().message << "\n";
    return 1;
  }
  int ids = 0;
  schedulerd::Plan plan(view, kNow, [&ids] { return "bench-" + std::to_string(++ids); });
  auto start = Clock::now();
  std::clock_t cpuStart = std::clock();
  schedulerd::allocate(plan);
  auto allocated = Clock::now();
  schedulerd::schedule(plan);
  auto scheduled = Clock::now();
  // On a shared machine the wall time includes waiting for a core; the CPU time does not.
  double cpu = static_cast<double>(std::clock() - cpuStart) / CLOCKS_PER_SEC;
  size_t placed = countAssigned(view);
  double total = seconds(scheduled - start);
  nlohmann::ordered_json line = {
      {"bench", "scheduler"},
      {"nodes", o.nodes},
      {"tasks", o.tasks},
      {"seconds", round3(total)},
      {"placements_per_s", total > 0 ? std::llround(static_cast<double>(placed) / total) : 0},
      {"peak_rss_mb", peakRssMb()},
      {"allocate_seconds", round3(seconds(allocated - start))},
      {"schedule_seconds", round3(seconds(scheduled - allocated))},
      {"cpu_seconds", round3(cpu)},
      {"placed", placed},
      {"changes", plan.size()},
      {"goal_seconds", 1}};
  std::cout << line.dump() << std::endl;
  if (placed != static_cast<size_t>(o.tasks)) {
    std::cerr << "shoal-bench: " << o.tasks - placed
              << " tasks were left unplaced, though every node fits them: a scheduler bug\n";
    return 1;
  }
  return 0;
}

}  // namespace shoal::bench
