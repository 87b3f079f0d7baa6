#pragma once
// What `shoal service ls|ps|inspect` and `shoal node ps` print, from Service, Task and Node
// objects (schemas/objects.fbs, flatc's object API), in docker's shapes (github.com/docker/cli
// cli/command/service/formatter.go, cli/command/task/print.go and formatter.go; moby's
// api/types/swarm/service.go), so that Swarm users' habits and scripts carry over. Pure: the
// commands in service.cpp read the objects and print what these return.
//
// Where shoal says more than docker (issue 9 "better than Swarm"): the ERROR column is not cut
// to 30 characters (the reason a task is not running is the point of it), a task waiting for
// its restart delay says how long is left, the failed tasks of a paused update show the
// update's message, and inspect adds ServiceStatus and NotRunning (every live task that is not
// running, and why).

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "objects_generated.h"
#include "tools/shoal/format.h"

namespace shoal::cli {

// Docker's task state strings ("new" ... "running", "complete", "shutdown", "failed",
// "rejected", "remove", "orphaned") and update states ("updating", "paused", "completed",
// "rollback_started", "rollback_paused", "rollback_completed").
std::string_view dockerTaskState(objects::TaskState state);
std::string_view dockerUpdateState(objects::UpdateState state);

// docker/go-units HumanDuration: "Less than a second", "1 second", "5 seconds", "About a
// minute", "3 minutes", "About an hour", "5 hours", "3 days", "2 weeks", "3 months", "2 years".
std::string humanDuration(int64_t nanos);

// Docker's stringid.TruncateID: the first 12 characters.
std::string truncateId(std::string_view id);

// The image as docker lists it: without its @digest.
std::string imageWithoutDigest(std::string_view image);

// Published ports as docker lists them: "*:8080->80/tcp, *:53->53/udp".
std::string portsText(const std::vector<std::unique_ptr<objects::PortConfigT>>& ports);

// A service's tasks counted as moby's ServiceStatus: running, desired (replicas; for global
// services the live tasks), completed (jobs).
struct ServiceCounts {
  uint64_t running = 0, desired = 0, completed = 0;
};
ServiceCounts countTasks(const objects::ServiceT& service,
                         const std::vector<const objects::TaskT*>& tasks);

// `service ls`: docker's default table and its columns. Row fields: ID (12 characters), Name,
// Mode ("replicated", "global", "replicated job", "global job"), Replicas ("2/3", "2/3 (max 1
// per node)", "2/3 (5/10 completed)"), Image, Ports.
inline constexpr std::string_view kServiceTable =
    "table {{.ID}}\t{{.Name}}\t{{.Mode}}\t{{.Replicas}}\t{{.Image}}\t{{.Ports}}";
const Headers& serviceHeaders();
nlohmann::json serviceRow(const objects::ServiceT& service, const ServiceCounts& counts);

// `service ls --filter`: docker's keys id (prefix), name (prefix), mode (replicated, global,
// replicated-job, global-job) and label (key or key=value); values of one key OR-ed, keys
// AND-ed. A usage error otherwise.
struct ServiceFilter {
  std::vector<std::string> ids, names, modes;
  std::vector<std::pair<std::string, std::optional<std::string>>> labels;
};
Result<ServiceFilter> parseServiceFilters(const std::vector<std::string>& flags);
bool matches(const ServiceFilter& filter, const objects::ServiceT& service);

// `service ps` and `node ps`: docker's default table and columns.
inline constexpr std::string_view kTaskTable =
    "table {{.ID}}\t{{.Name}}\t{{.Image}}\t{{.Node}}\t{{.DesiredState}}\t{{.CurrentState}}\t"
    "{{.Error}}\t{{.Ports}}";
const Headers& taskHeaders();

// Why a task is not running, for ERROR and inspect's NotRunning: "waiting for restart delay
// (3s left)" from not_before; the update's message for a failed task of a paused update;
// else status.err. now: ns since the epoch.
std::string taskReason(const objects::TaskT& task, const objects::ServiceT* service, int64_t now);

// <service>.<slot>, or <service>.<node id> for a global task (docker's generateTaskNames).
std::string taskDisplayName(const objects::TaskT& task, const objects::ServiceT* service);

// What a task listing needs besides the tasks.
struct TaskContext {
  std::map<std::string, const objects::ServiceT*> services;  // by id
  std::map<std::string, std::string> hostnames;              // node id → hostname
  int64_t now = 0;
  bool noTrunc = false;
  bool table = true;  // docker indents older tasks of a slot (" \_ web.1") in tables only
};

// The rows, in docker's order: by name (slots in number order), the newest first within a
// slot. Fields: ID, Name, Image, Node, DesiredState ("Running"), CurrentState ("Running 5
// seconds ago"), Error (quoted), Ports.
std::vector<nlohmann::json> taskRows(std::vector<const objects::TaskT*> tasks,
                                     const TaskContext& context);

// `service ps --filter`: docker's keys id, name, node, desired-state (running, shutdown,
// accepted), each key=value; values of one key OR-ed, keys AND-ed. A usage error otherwise.
struct TaskFilter {
  std::vector<std::string> ids, names, nodes;
  std::vector<std::string> desiredStates;
};
Result<TaskFilter> parseTaskFilters(const std::vector<std::string>& flags);
bool matches(const TaskFilter& filter, const objects::TaskT& task, const TaskContext& context);

// `service inspect`: docker's swarm.Service (empty fields left out, as docker's omitempty),
// with shoal's ServiceStatus and NotRunning.
nlohmann::json serviceInspect(const objects::ServiceT& service,
                              const std::vector<const objects::TaskT*>& tasks, int64_t now);
// `service inspect --pretty`: docker's human text, with the tasks' counts and reasons.
std::string servicePretty(const objects::ServiceT& service,
                          const std::vector<const objects::TaskT*>& tasks, int64_t now);

// A SERVICE argument as docker's daemon finds it: a full id, else an exact name, else a unique
// id prefix. Errors: "service X not found", "service X is ambiguous (N matches found)".
Result<const objects::ServiceT*> resolveService(
    const std::vector<const objects::ServiceT*>& services, std::string_view ref);

std::string serviceName(const objects::ServiceT& service);

}  // namespace shoal::cli
