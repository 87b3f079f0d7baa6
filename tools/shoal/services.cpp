// service ls / ps / inspect and node ps in docker's shapes (see services.h).
#include "tools/shoal/services.h"

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "common/units.h"
#include "tools/shoal/nodes.h"

namespace shoal::cli {
namespace {

using nlohmann::json;
constexpr int64_t kSecond = 1'000'000'000;

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool hasPrefix(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

const objects::ContainerSpecT* containerOf(const objects::ServiceSpecT* spec) {
  return spec && spec->task ? spec->task->container.get() : nullptr;
}

std::string_view protocolName(objects::PortProtocol p) {
  switch (p) {
    case objects::PortProtocol::Tcp:
      return "tcp";
    case objects::PortProtocol::Udp:
      return "udp";
    case objects::PortProtocol::Sctp:
      return "sctp";
  }
  return "tcp";
}

// Docker's mode names in `service ls`.
std::string_view modeName(objects::ServiceModeKind kind) {
  switch (kind) {
    case objects::ServiceModeKind::Replicated:
      return "replicated";
    case objects::ServiceModeKind::Global:
      return "global";
    case objects::ServiceModeKind::ReplicatedJob:
      return "replicated job";
    case objects::ServiceModeKind::GlobalJob:
      return "global job";
  }
  return "replicated";
}

objects::ServiceModeKind kindOf(const objects::ServiceT& s) {
  return s.spec && s.spec->mode ? s.spec->mode->kind : objects::ServiceModeKind::Replicated;
}

bool isJob(objects::ServiceModeKind k) {
  return k == objects::ServiceModeKind::ReplicatedJob || k == objects::ServiceModeKind::GlobalJob;
}

bool live(const objects::TaskT& t) { return t.desired_state <= objects::TaskState::Running; }

json labelMap(const std::vector<std::unique_ptr<objects::KeyValueT>>& labels) {
  json out = json::object();
  for (const auto& kv : labels)
    if (kv) out[kv->key] = kv->value;
  return out;
}

// Sets j[key] unless the value is empty, as Go's omitempty leaves it out.
template <class T>
void put(json& j, const char* key, const T& value) {
  json v = value;
  bool empty = v.is_null() || (v.is_string() && v.get<std::string>().empty()) ||
               (v.is_number() && v == 0) || (v.is_boolean() && !v.get<bool>()) ||
               ((v.is_array() || v.is_object()) && v.empty());
  if (!empty) j[key] = std::move(v);
}

std::string rfcOrEmpty(int64_t t) { return t ? rfc3339Nano(t) : ""; }

}  // namespace

std::string_view dockerTaskState(objects::TaskState state) {
  switch (state) {
    case objects::TaskState::New:
      return "new";
    case objects::TaskState::Pending:
      return "pending";
    case objects::TaskState::Assigned:
      return "assigned";
    case objects::TaskState::Accepted:
      return "accepted";
    case objects::TaskState::Preparing:
      return "preparing";
    case objects::TaskState::Ready:
      return "ready";
    case objects::TaskState::Starting:
      return "starting";
    case objects::TaskState::Running:
      return "running";
    case objects::TaskState::Complete:
      return "complete";
    case objects::TaskState::Shutdown:
      return "shutdown";
    case objects::TaskState::Failed:
      return "failed";
    case objects::TaskState::Rejected:
      return "rejected";
    case objects::TaskState::Remove:
      return "remove";
    case objects::TaskState::Orphaned:
      return "orphaned";
  }
  return "unknown";
}

std::string_view dockerUpdateState(objects::UpdateState state) {
  switch (state) {
    case objects::UpdateState::Unknown:
      return "";
    case objects::UpdateState::Updating:
      return "updating";
    case objects::UpdateState::Paused:
      return "paused";
    case objects::UpdateState::Completed:
      return "completed";
    case objects::UpdateState::RollbackStarted:
      return "rollback_started";
    case objects::UpdateState::RollbackPaused:
      return "rollback_paused";
    case objects::UpdateState::RollbackCompleted:
      return "rollback_completed";
  }
  return "";
}

std::string humanDuration(int64_t nanos) {
  int64_t seconds = nanos / kSecond;
  if (seconds < 1) return "Less than a second";
  if (seconds == 1) return "1 second";
  if (seconds < 60) return std::to_string(seconds) + " seconds";
  int64_t minutes = seconds / 60;
  if (minutes == 1) return "About a minute";
  if (minutes < 60) return std::to_string(minutes) + " minutes";
  int64_t hours = (nanos + 1800 * kSecond) / (3600 * kSecond);  // Go's d.Round(time.Hour)
  if (hours == 1) return "About an hour";
  if (hours < 48) return std::to_string(hours) + " hours";
  if (hours < 24 * 7 * 2) return std::to_string(hours / 24) + " days";
  if (hours < 24 * 30 * 2) return std::to_string(hours / 24 / 7) + " weeks";
  if (hours < 24 * 365 * 2) return std::to_string(hours / 24 / 30) + " months";
  return std::to_string(seconds / 3600 / 24 / 365) + " years";
}

std::string truncateId(std::string_view id) { return std::string(id.substr(0, 12)); }

std::string imageWithoutDigest(std::string_view image) {
  return std::string(image.substr(0, image.find('@')));
}

std::string portsText(const std::vector<std::unique_ptr<objects::PortConfigT>>& ports) {
  std::string out;
  for (const auto& p : ports) {
    if (!p || p->publish_mode != objects::PublishMode::Ingress) continue;
    if (!out.empty()) out += ", ";
    out += "*:" + std::to_string(p->published_port) + "->" + std::to_string(p->target_port) + "/" +
           std::string(protocolName(p->protocol));
  }
  return out;
}

std::string serviceName(const objects::ServiceT& s) {
  return s.spec && s.spec->annotations ? s.spec->annotations->name : "";
}

ServiceCounts countTasks(const objects::ServiceT& service,
                         const std::vector<const objects::TaskT*>& tasks) {
  ServiceCounts c;
  uint64_t liveTasks = 0, activeJobTasks = 0;
  for (const auto* t : tasks) {
    if (!t) continue;
    auto state = t->status ? t->status->state : objects::TaskState::New;
    if (state == objects::TaskState::Running && live(*t)) ++c.running;
    if (state == objects::TaskState::Complete) ++c.completed;
    if (live(*t)) ++liveTasks;
    if (t->desired_state <= objects::TaskState::Complete && state < objects::TaskState::Complete)
      ++activeJobTasks;
  }
  const auto* mode = service.spec ? service.spec->mode.get() : nullptr;
  switch (kindOf(service)) {
    case objects::ServiceModeKind::Replicated:
      c.desired = mode ? mode->replicas : 0;
      break;
    case objects::ServiceModeKind::Global:
      c.desired = liveTasks;
      break;
    case objects::ServiceModeKind::ReplicatedJob: {
      uint64_t total = mode ? mode->total_completions : 0,
               left = total > c.completed ? total - c.completed : 0;
      c.desired = std::min(mode ? mode->max_concurrent : 0, left);
      break;
    }
    case objects::ServiceModeKind::GlobalJob:
      c.desired = activeJobTasks;
      break;
  }
  return c;
}

const Headers& serviceHeaders() {
  static const Headers headers = {{"ID", "ID"},       {"Name", "NAME"},
                                  {"Mode", "MODE"},   {"Replicas", "REPLICAS"},
                                  {"Image", "IMAGE"}, {"Ports", "PORTS"}};
  return headers;
}

json serviceRow(const objects::ServiceT& service, const ServiceCounts& c) {
  const auto* spec = service.spec.get();
  const auto* mode = spec ? spec->mode.get() : nullptr;
  std::string replicas = std::to_string(c.running) + "/" + std::to_string(c.desired);
  auto kind = kindOf(service);
  // Docker's formatter: jobs show their progress, replicated services their per-node limit.
  if (kind == objects::ServiceModeKind::ReplicatedJob)
    replicas += " (" + std::to_string(c.completed) + "/" +
                std::to_string(mode ? mode->total_completions : 0) + " completed)";
  else if (kind == objects::ServiceModeKind::GlobalJob)
    replicas += " (" + std::to_string(c.completed) + "/" + std::to_string(c.desired + c.completed) +
                " completed)";
  else if (kind == objects::ServiceModeKind::Replicated && spec && spec->task &&
           spec->task->placement && spec->task->placement->max_replicas)
    replicas += " (max " + std::to_string(spec->task->placement->max_replicas) + " per node)";
  // The allocated ports once the allocator ran; the spec's numbered ones before.
  std::string ports;
  if (service.endpoint && !service.endpoint->ports.empty())
    ports = portsText(service.endpoint->ports);
  else if (spec && spec->endpoint) {
    std::vector<std::unique_ptr<objects::PortConfigT>> numbered;
    for (const auto& p : spec->endpoint->ports)
      if (p && p->published_port) numbered.push_back(std::make_unique<objects::PortConfigT>(*p));
    ports = portsText(numbered);
  }
  const auto* container = containerOf(spec);
  return {{"ID", truncateId(service.id)},
          {"Name", serviceName(service)},
          {"Mode", modeName(kind)},
          {"Replicas", replicas},
          {"Image", imageWithoutDigest(container ? container->image : "")},
          {"Ports", ports}};
}

const Headers& taskHeaders() {
  static const Headers headers = {{"ID", "ID"},
                                  {"Name", "NAME"},
                                  {"Image", "IMAGE"},
                                  {"Node", "NODE"},
                                  {"DesiredState", "DESIRED STATE"},
                                  {"CurrentState", "CURRENT STATE"},
                                  {"Error", "ERROR"},
                                  {"Ports", "PORTS"}};
  return headers;
}

namespace {

// Why an ended task was not replaced. The orchestrator gives a replaced task desired SHUTDOWN
// and leaves desired RUNNING on one whose restart the policy refuses (docs/services.md
// "Restarts"), so an ended task still desired RUNNING is one that stays down, and Swarm never
// says why.
std::string noRestartReason(const objects::TaskT& task, const objects::ServiceT* service) {
  auto state = task.status ? task.status->state : objects::TaskState::New;
  bool ended = state == objects::TaskState::Complete || state == objects::TaskState::Failed ||
               state == objects::TaskState::Rejected;
  if (!ended || task.desired_state != objects::TaskState::Running) return "";
  const objects::RestartPolicyT* policy = nullptr;
  if (service && service->spec && service->spec->task) policy = service->spec->task->restart.get();
  if (!policy && task.spec) policy = task.spec->restart.get();
  if (!policy) return "";
  if (policy->condition == objects::RestartCondition::None)
    return "not restarted: restart condition none";
  if (policy->condition == objects::RestartCondition::OnFailure &&
      state == objects::TaskState::Complete)
    return "not restarted: it completed and the restart condition is on-failure";
  if (policy->max_attempts > 0 && task.restart_attempt >= policy->max_attempts) {
    std::string used = std::to_string(policy->max_attempts);
    std::string text = "not restarted: " + used + " of " + used + " restart attempts used";
    if (policy->window > 0)
      text += " within " + formatDuration(std::chrono::nanoseconds(policy->window));
    return text;
  }
  return "";
}

}  // namespace

std::string taskReason(const objects::TaskT& task, const objects::ServiceT* service, int64_t now) {
  auto state = task.status ? task.status->state : objects::TaskState::New;
  if (task.not_before > now && task.desired_state == objects::TaskState::Ready &&
      state <= objects::TaskState::Ready) {
    int64_t left = (task.not_before - now + kSecond - 1) / kSecond;  // rounded up: never "0s left"
    return "waiting for restart delay (" + formatDuration(std::chrono::seconds(left)) + " left)";
  }
  const auto* us = service ? service->update_status.get() : nullptr;
  bool failed = state == objects::TaskState::Failed || state == objects::TaskState::Rejected;
  if (failed && us && us->state == objects::UpdateState::Paused && !us->message.empty() &&
      (!us->spec_version || task.spec_version == us->spec_version))
    return us->message;
  std::string err = task.status ? task.status->err : "";
  std::string noRestart = noRestartReason(task, service);
  if (noRestart.empty()) return err;
  return err.empty() ? noRestart : err + "; " + noRestart;
}

std::string taskDisplayName(const objects::TaskT& task, const objects::ServiceT* service) {
  std::string name = service ? serviceName(*service) : "";
  if (name.empty() && task.service_annotations) name = task.service_annotations->name;
  if (name.empty()) name = task.service_id;
  return name + "." + (task.slot ? std::to_string(task.slot) : task.node_id);
}

namespace {

const objects::ServiceT* serviceOf(const objects::TaskT& t, const TaskContext& ctx) {
  auto it = ctx.services.find(t.service_id);
  return it == ctx.services.end() ? nullptr : it->second;
}

std::string taskPorts(const objects::TaskT& t) {
  if (!t.status || t.status->port_status.empty()) return "";
  std::string out;
  for (const auto& p : t.status->port_status) {
    if (!p) continue;
    if (!out.empty()) out += ", ";
    out += "*:" + std::to_string(p->published_port) + "->" + std::to_string(p->target_port) + "/" +
           std::string(protocolName(p->protocol));
  }
  return out;
}

json taskRow(const objects::TaskT& t, const std::string& name, const TaskContext& ctx) {
  const auto* service = serviceOf(t, ctx);
  auto state = t.status ? t.status->state : objects::TaskState::New;
  int64_t since = t.status && t.status->timestamp ? t.status->timestamp
                                                  : (t.meta ? t.meta->created_at() : ctx.now);
  std::string ago = lower(humanDuration(std::max<int64_t>(0, ctx.now - since)));
  std::string error = taskReason(t, service, ctx.now);
  auto node = ctx.hostnames.find(t.node_id);
  const auto* container = t.spec ? t.spec->container.get() : nullptr;
  std::string image = container ? container->image : "";
  return {{"ID", ctx.noTrunc ? t.id : truncateId(t.id)},
          {"Name", name},
          {"Image", ctx.noTrunc ? image : imageWithoutDigest(image)},
          {"Node", node != ctx.hostnames.end() ? node->second : t.node_id},
          {"DesiredState", capitalizeFirst(dockerTaskState(t.desired_state))},
          {"CurrentState", capitalizeFirst(dockerTaskState(state)) + " " + ago + " ago"},
          {"Error", error.empty() ? "" : "\"" + error + "\""},
          {"Ports", taskPorts(t)}};
}

}  // namespace

std::vector<json> taskRows(std::vector<const objects::TaskT*> tasks, const TaskContext& ctx) {
  std::vector<std::pair<std::string, const objects::TaskT*>> named;
  for (const auto* t : tasks)
    if (t) named.emplace_back(taskDisplayName(*t, serviceOf(*t, ctx)), t);
  // Docker's tasksSortable: by name, the newest first; names in natural order so that web.10
  // comes after web.9.
  std::stable_sort(named.begin(), named.end(), [](auto& a, auto& b) {
    if (a.first != b.first) return naturalLess(a.first, b.first);
    int64_t ca = a.second->meta ? a.second->meta->created_at() : 0,
            cb = b.second->meta ? b.second->meta->created_at() : 0;
    return ca > cb;
  });
  std::vector<json> rows;
  std::string previous;
  for (const auto& [name, t] : named) {
    bool older = !rows.empty() && name == previous;
    rows.push_back(taskRow(*t, older && ctx.table ? " \\_ " + name : name, ctx));
    previous = name;
  }
  return rows;
}

Result<TaskFilter> parseTaskFilters(const std::vector<std::string>& flags) {
  TaskFilter f;
  for (const auto& flag : flags) {
    auto eq = flag.find('=');
    if (eq == std::string::npos)
      return Error{"bad format of filter " + quoteInput(flag) +
                   " (expected name=value): use id=, name=, node= or desired-state="};
    std::string key = lower(flag.substr(0, eq)), value = flag.substr(eq + 1);
    if (key == "id")
      f.ids.push_back(value);
    else if (key == "name")
      f.names.push_back(value);
    else if (key == "node")
      f.nodes.push_back(value);
    else if (key == "desired-state") {
      std::string v = lower(value);
      if (v != "running" && v != "shutdown" && v != "accepted")
        return Error{"invalid desired-state filter value " + quoteInput(value) +
                     ": use running, shutdown or accepted"};
      f.desiredStates.push_back(v);
    } else {
      return Error{"invalid filter " + quoteInput(key) +
                   ": service ps filters on id, name, node and desired-state"};
    }
  }
  return f;
}

bool matches(const TaskFilter& f, const objects::TaskT& t, const TaskContext& ctx) {
  auto any = [](const std::vector<std::string>& wanted, auto pred) {
    return wanted.empty() || std::any_of(wanted.begin(), wanted.end(), pred);
  };
  std::string name = taskDisplayName(t, serviceOf(t, ctx));
  auto host = ctx.hostnames.find(t.node_id);
  std::string hostname = host == ctx.hostnames.end() ? "" : host->second;
  // Swarm's desired-state filter: "running" is any desired state up to running, "accepted"
  // is accepted itself (a task waiting for its restart delay is desired READY).
  auto desired = [&](const std::string& v) {
    if (v == "running") return t.desired_state <= objects::TaskState::Running;
    if (v == "shutdown") return t.desired_state >= objects::TaskState::Complete;
    return t.desired_state == objects::TaskState::Accepted;
  };
  return any(f.ids, [&](auto& p) { return hasPrefix(t.id, p); }) &&
         any(f.names, [&](auto& p) { return hasPrefix(name, p); }) &&
         any(f.nodes,
             [&](auto& n) {
               return !t.node_id.empty() &&
                      (t.node_id == n || hostname == n || hasPrefix(t.node_id, n));
             }) &&
         any(f.desiredStates, desired);
}

Result<ServiceFilter> parseServiceFilters(const std::vector<std::string>& flags) {
  ServiceFilter f;
  for (const auto& flag : flags) {
    auto eq = flag.find('=');
    if (eq == std::string::npos)
      return Error{"bad format of filter " + quoteInput(flag) +
                   " (expected name=value): use id=, name=, mode= or label="};
    std::string key = lower(flag.substr(0, eq)), value = flag.substr(eq + 1);
    if (key == "id") {
      f.ids.push_back(value);
    } else if (key == "name") {
      f.names.push_back(value);
    } else if (key == "mode") {
      if (value != "replicated" && value != "global" && value != "replicated-job" &&
          value != "global-job")
        return Error{"invalid mode filter value " + quoteInput(value) +
                     ": use replicated, global, replicated-job or global-job"};
      f.modes.push_back(value);
    } else if (key == "label") {
      auto at = value.find('=');
      if (at == std::string::npos)
        f.labels.emplace_back(value, std::nullopt);
      else
        f.labels.emplace_back(value.substr(0, at), value.substr(at + 1));
    } else {
      return Error{"invalid filter " + quoteInput(key) +
                   ": service ls filters on id, name, mode and label"};
    }
  }
  return f;
}

bool matches(const ServiceFilter& f, const objects::ServiceT& s) {
  auto any = [](const std::vector<std::string>& wanted, auto pred) {
    return wanted.empty() || std::any_of(wanted.begin(), wanted.end(), pred);
  };
  std::string mode(modeName(kindOf(s)));
  std::replace(mode.begin(), mode.end(), ' ', '-');
  const auto* ann = s.spec ? s.spec->annotations.get() : nullptr;
  for (const auto& [key, value] : f.labels) {
    bool found = ann && std::any_of(ann->labels.begin(), ann->labels.end(), [&](auto& kv) {
                   return kv && kv->key == key && (!value || kv->value == *value);
                 });
    if (!found) return false;
  }
  return any(f.ids, [&](auto& p) { return hasPrefix(s.id, p); }) &&
         any(f.names, [&](auto& p) { return hasPrefix(serviceName(s), p); }) &&
         any(f.modes, [&](auto& m) { return m == mode; });
}

// ---- inspect

namespace {

json resourcesJson(const objects::ResourcesT* r) {
  json j = json::object();
  if (!r) return j;
  put(j, "NanoCPUs", r->nano_cpus);
  put(j, "MemoryBytes", r->memory_bytes);
  put(j, "Pids", r->pids);
  return j;
}

std::string_view mountTypeName(objects::MountType t) {
  switch (t) {
    case objects::MountType::Bind:
      return "bind";
    case objects::MountType::Volume:
      return "volume";
    case objects::MountType::Tmpfs:
      return "tmpfs";
  }
  return "volume";
}

json fileJson(const objects::FileTargetT* f) {
  if (!f) return json::object();
  return {{"Name", f->name}, {"UID", f->uid}, {"GID", f->gid}, {"Mode", f->mode}};
}

json containerJson(const objects::ContainerSpecT& c) {
  json j = json::object();
  j["Image"] = c.image;
  put(j, "Labels", labelMap(c.labels));
  put(j, "Command", c.command);
  put(j, "Args", c.args);
  put(j, "Hostname", c.hostname);
  put(j, "Env", c.env);
  put(j, "Dir", c.dir);
  put(j, "User", c.user);
  put(j, "Groups", c.groups);
  put(j, "ReadOnly", c.read_only);
  json mounts = json::array();
  for (const auto& m : c.mounts)
    if (m) {
      json mj = {{"Type", mountTypeName(m->type)}, {"Target", m->target}};
      put(mj, "Source", m->source);
      put(mj, "ReadOnly", m->read_only);
      mounts.push_back(mj);
    }
  put(j, "Mounts", mounts);
  put(j, "StopSignal", c.stop_signal);
  put(j, "StopGracePeriod", c.stop_grace_period);
  if (c.healthcheck) {
    json h = json::object();
    put(h, "Test", c.healthcheck->test);
    put(h, "Interval", c.healthcheck->interval);
    put(h, "Timeout", c.healthcheck->timeout);
    put(h, "StartPeriod", c.healthcheck->start_period);
    put(h, "Retries", c.healthcheck->retries);
    j["Healthcheck"] = h;
  }
  json secrets = json::array(), configs = json::array();
  for (const auto& s : c.secrets)
    if (s)
      secrets.push_back({{"File", fileJson(s->file.get())},
                         {"SecretID", s->secret_id},
                         {"SecretName", s->secret_name}});
  for (const auto& s : c.configs)
    if (s)
      configs.push_back({{"File", fileJson(s->file.get())},
                         {"ConfigID", s->config_id},
                         {"ConfigName", s->config_name}});
  put(j, "Secrets", secrets);
  put(j, "Configs", configs);
  j["Init"] = c.init;
  put(j, "CapabilityAdd", c.capability_add);
  put(j, "CapabilityDrop", c.capability_drop);
  // --with-registry-auth's credentials are the user's password: never printed.
  if (!c.registry_auth.empty()) j["RegistryAuth"] = "<redacted>";
  return j;
}

std::string_view conditionName(objects::RestartCondition c) {
  switch (c) {
    case objects::RestartCondition::None:
      return "none";
    case objects::RestartCondition::OnFailure:
      return "on-failure";
    case objects::RestartCondition::Any:
      return "any";
  }
  return "any";
}

json taskTemplateJson(const objects::TaskSpecT& t) {
  json j = json::object();
  j["ContainerSpec"] = t.container ? containerJson(*t.container) : json::object();
  json resources = json::object();
  if (t.resources) {
    resources["Limits"] = resourcesJson(t.resources->limits.get());
    resources["Reservations"] = resourcesJson(t.resources->reservations.get());
  }
  j["Resources"] = resources;
  if (t.restart) {
    json r = {{"Condition", conditionName(t.restart->condition)},
              {"Delay", t.restart->delay},
              {"MaxAttempts", t.restart->max_attempts}};
    put(r, "Window", t.restart->window);
    j["RestartPolicy"] = r;
  }
  json placement = json::object();
  if (t.placement) {
    put(placement, "Constraints", t.placement->constraints);
    json prefs = json::array();
    for (const auto& p : t.placement->preferences)
      if (p) prefs.push_back({{"Spread", {{"SpreadDescriptor", p->spread_descriptor}}}});
    put(placement, "Preferences", prefs);
    put(placement, "MaxReplicas", t.placement->max_replicas);
  }
  j["Placement"] = placement;
  json networks = json::array();
  for (const auto& n : t.networks)
    if (n) {
      json nj = {{"Target", n->target}};
      put(nj, "Aliases", n->aliases);
      networks.push_back(nj);
    }
  put(j, "Networks", networks);
  j["ForceUpdate"] = t.force_update;
  j["Runtime"] = "container";
  return j;
}

json modeJson(const objects::ServiceModeT* m) {
  auto kind = m ? m->kind : objects::ServiceModeKind::Replicated;
  switch (kind) {
    case objects::ServiceModeKind::Replicated:
      return {{"Replicated", {{"Replicas", m ? m->replicas : 0}}}};
    case objects::ServiceModeKind::Global:
      return {{"Global", json::object()}};
    case objects::ServiceModeKind::ReplicatedJob:
      return {{"ReplicatedJob",
               {{"MaxConcurrent", m->max_concurrent}, {"TotalCompletions", m->total_completions}}}};
    case objects::ServiceModeKind::GlobalJob:
      return {{"GlobalJob", json::object()}};
  }
  return json::object();
}

std::string_view failureActionName(objects::UpdateFailureAction a) {
  switch (a) {
    case objects::UpdateFailureAction::Pause:
      return "pause";
    case objects::UpdateFailureAction::Continue:
      return "continue";
    case objects::UpdateFailureAction::Rollback:
      return "rollback";
  }
  return "pause";
}

std::string_view orderName(objects::UpdateOrder o) {
  return o == objects::UpdateOrder::StartFirst ? "start-first" : "stop-first";
}

json updateConfigJson(const objects::UpdateConfigT& u) {
  json j = {{"Parallelism", u.parallelism},
            {"FailureAction", failureActionName(u.failure_action)},
            {"MaxFailureRatio", u.max_failure_ratio},
            {"Order", orderName(u.order)}};
  put(j, "Delay", u.delay);
  put(j, "Monitor", u.monitor);
  return j;
}

json portJson(const objects::PortConfigT& p) {
  json j = {{"Protocol", protocolName(p.protocol)},
            {"TargetPort", p.target_port},
            {"PublishMode", p.publish_mode == objects::PublishMode::Host ? "host" : "ingress"}};
  put(j, "Name", p.name);
  put(j, "PublishedPort", p.published_port);
  return j;
}

json endpointSpecJson(const objects::EndpointSpecT* e) {
  json j = {{"Mode", e && e->mode == objects::ResolutionMode::Dnsrr ? "dnsrr" : "vip"}};
  json ports = json::array();
  if (e)
    for (const auto& p : e->ports)
      if (p) ports.push_back(portJson(*p));
  put(j, "Ports", ports);
  return j;
}

json specJson(const objects::ServiceSpecT& s) {
  json j = json::object();
  j["Name"] = s.annotations ? s.annotations->name : "";
  j["Labels"] = s.annotations ? labelMap(s.annotations->labels) : json::object();
  j["TaskTemplate"] = s.task ? taskTemplateJson(*s.task) : json::object();
  j["Mode"] = modeJson(s.mode.get());
  if (s.update) j["UpdateConfig"] = updateConfigJson(*s.update);
  if (s.rollback) j["RollbackConfig"] = updateConfigJson(*s.rollback);
  j["EndpointSpec"] = endpointSpecJson(s.endpoint.get());
  return j;
}

json endpointJson(const objects::EndpointT& e) {
  json j = {{"Spec", endpointSpecJson(e.spec.get())}};
  json ports = json::array(), vips = json::array();
  for (const auto& p : e.ports)
    if (p) ports.push_back(portJson(*p));
  for (const auto& v : e.virtual_ips)
    if (v) vips.push_back({{"NetworkID", v->network_id}, {"Addr", v->addr}});
  put(j, "Ports", ports);
  put(j, "VirtualIPs", vips);
  return j;
}

// Every live task that is not running, and why: the question Swarm leaves open (moby#35849).
json notRunningJson(const objects::ServiceT& s, const std::vector<const objects::TaskT*>& tasks,
                    int64_t now) {
  json out = json::array();
  std::vector<const objects::TaskT*> sorted(tasks.begin(), tasks.end());
  std::sort(sorted.begin(), sorted.end(), [&](auto* a, auto* b) {
    return naturalLess(taskDisplayName(*a, &s), taskDisplayName(*b, &s));
  });
  for (const auto* t : sorted) {
    auto state = t->status ? t->status->state : objects::TaskState::New;
    if (!live(*t) || state == objects::TaskState::Running) continue;
    std::string reason = taskReason(*t, &s, now);
    if (reason.empty() && t->status) reason = t->status->message;
    out.push_back(
        {{"Task", taskDisplayName(*t, &s)}, {"State", dockerTaskState(state)}, {"Reason", reason}});
  }
  return out;
}

}  // namespace

json serviceInspect(const objects::ServiceT& s, const std::vector<const objects::TaskT*>& tasks,
                    int64_t now) {
  const auto* meta = s.meta.get();
  json j = {{"ID", s.id},
            {"Version", {{"Index", meta ? meta->version() : 0}}},
            {"CreatedAt", rfc3339Nano(meta ? meta->created_at() : 0)},
            {"UpdatedAt", rfc3339Nano(meta ? meta->updated_at() : 0)},
            {"Spec", s.spec ? specJson(*s.spec) : json::object()}};
  if (s.previous_spec) j["PreviousSpec"] = specJson(*s.previous_spec);
  if (s.endpoint) j["Endpoint"] = endpointJson(*s.endpoint);
  if (const auto* us = s.update_status.get(); us && us->state != objects::UpdateState::Unknown) {
    json u = {{"State", dockerUpdateState(us->state)}};
    put(u, "StartedAt", rfcOrEmpty(us->started_at));
    put(u, "CompletedAt", rfcOrEmpty(us->completed_at));
    put(u, "Message", us->message);
    j["UpdateStatus"] = u;
  }
  auto counts = countTasks(s, tasks);
  j["ServiceStatus"] = {{"RunningTasks", counts.running},
                        {"DesiredTasks", counts.desired},
                        {"CompletedTasks", counts.completed}};
  j["NotRunning"] = notRunningJson(s, tasks, now);
  return j;
}

namespace {

std::string dur(int64_t nanos) { return formatDuration(std::chrono::nanoseconds(nanos)); }

void prettyUpdateConfig(std::string& out, const char* title, const char* orderTitle,
                        const objects::UpdateConfigT* u) {
  if (!u) return;
  out += std::string(title) + ":\n";
  out += " Parallelism:\t" + std::to_string(u->parallelism) + "\n";
  if (u->delay) out += " Delay:\t\t" + dur(u->delay) + "\n";
  out += " On failure:\t" + std::string(failureActionName(u->failure_action)) + "\n";
  out += " Monitoring Period: " + dur(u->monitor) + "\n";
  char ratio[32];
  std::snprintf(ratio, sizeof ratio, "%g", static_cast<double>(u->max_failure_ratio));
  out += " Max failure ratio: " + std::string(ratio) + "\n";
  out += " " + std::string(orderTitle) + ":      " + std::string(orderName(u->order)) + "\n";
}

void prettyContainer(std::string& out, const objects::ContainerSpecT* c) {
  out += "ContainerSpec:\n";
  if (!c) return;
  out += " Image:\t\t" + c->image + "\n";
  auto words = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& w : v) s += (s.empty() ? "" : " ") + w;
    return s;
  };
  if (!c->command.empty()) out += " Command:\t" + words(c->command) + "\n";
  if (!c->args.empty()) out += " Args:\t\t" + words(c->args) + "\n";
  if (!c->env.empty()) {
    out += " Env:\t\t";
    for (size_t i = 0; i < c->env.size(); ++i) out += (i ? "\t\t" : "") + c->env[i] + "\n";
  }
  if (!c->dir.empty()) out += " Dir:\t\t" + c->dir + "\n";
  if (!c->user.empty()) out += " User: " + c->user + "\n";
  if (c->read_only) out += " Read Only:\ttrue\n";
  if (!c->mounts.empty()) {
    out += "Mounts:\n";
    for (const auto& m : c->mounts)
      if (m)
        out += " Target:\t" + m->target + "\n  Source:\t" + m->source + "\n  ReadOnly:\t" +
               (m->read_only ? "true" : "false") + "\n  Type:\t\t" +
               std::string(mountTypeName(m->type)) + "\n";
  }
}

void prettyTasks(std::string& out, const objects::ServiceT& s,
                 const std::vector<const objects::TaskT*>& tasks, int64_t now) {
  auto counts = countTasks(s, tasks);
  out += "Tasks:\t\t" + std::to_string(counts.running) + " running, " +
         std::to_string(counts.desired) + " desired";
  if (isJob(kindOf(s))) out += ", " + std::to_string(counts.completed) + " completed";
  out += "\n";
  for (const auto& n : notRunningJson(s, tasks, now))
    out += " " + n["Task"].get<std::string>() + ":\t" + n["State"].get<std::string>() +
           (n["Reason"].get<std::string>().empty() ? "" : ": " + n["Reason"].get<std::string>()) +
           "\n";
}

}  // namespace

std::string servicePretty(const objects::ServiceT& s,
                          const std::vector<const objects::TaskT*>& tasks, int64_t now) {
  // docker's serviceInspectPrettyTemplate, in its order, then shoal's task counts and reasons.
  const auto* spec = s.spec.get();
  std::string out = "\nID:\t\t" + s.id + "\nName:\t\t" + serviceName(s) + "\n";
  if (spec && spec->annotations && !spec->annotations->labels.empty()) {
    out += "Labels:\n";
    for (const auto& kv : spec->annotations->labels)
      if (kv) out += " " + kv->key + "=" + kv->value + "\n";
  }
  auto kind = kindOf(s);
  out += "Service Mode:\t" + capitalizeFirst(modeName(kind)) + "\n";
  const auto* mode = spec ? spec->mode.get() : nullptr;
  if (mode && kind == objects::ServiceModeKind::Replicated)
    out += " Replicas:\t" + std::to_string(mode->replicas) + "\n";
  if (mode && kind == objects::ServiceModeKind::ReplicatedJob)
    out += " Max Concurrent:\t" + std::to_string(mode->max_concurrent) + "\n Total Completions:\t" +
           std::to_string(mode->total_completions) + "\n";
  if (const auto* us = s.update_status.get(); us && us->state != objects::UpdateState::Unknown) {
    out += "UpdateStatus:\n State:\t\t" + std::string(dockerUpdateState(us->state)) + "\n";
    if (us->started_at)
      out += " Started:\t" + lower(humanDuration(now - us->started_at)) + " ago\n";
    if (us->completed_at)
      out += " Completed:\t" + lower(humanDuration(now - us->completed_at)) + " ago\n";
    out += " Message:\t" + us->message + "\n";
  }
  prettyTasks(out, s, tasks, now);
  const auto* task = spec ? spec->task.get() : nullptr;
  out += "Placement:\n";
  if (task && task->placement) {
    if (!task->placement->constraints.empty()) {
      out += " Constraints:\t[";
      for (size_t i = 0; i < task->placement->constraints.size(); ++i)
        out += (i ? " " : "") + task->placement->constraints[i];
      out += "]\n";
    }
    for (const auto& p : task->placement->preferences)
      if (p) out += " Preferences:\tspread=" + p->spread_descriptor + "\n";
    if (task->placement->max_replicas)
      out += " Max Replicas Per Node:  " + std::to_string(task->placement->max_replicas) + "\n";
  }
  prettyUpdateConfig(out, "UpdateConfig", "Update order", spec ? spec->update.get() : nullptr);
  prettyUpdateConfig(out, "RollbackConfig", "Rollback order",
                     spec ? spec->rollback.get() : nullptr);
  prettyContainer(out, task ? task->container.get() : nullptr);
  out += "Resources:\n";
  if (task && task->resources) {
    auto res = [&out](const char* title, const objects::ResourcesT* r) {
      if (!r || (!r->nano_cpus && !r->memory_bytes && !r->pids)) return;
      out += std::string(" ") + title + ":\n";
      if (r->nano_cpus) {
        char cpus[32];
        std::snprintf(cpus, sizeof cpus, "%g", static_cast<double>(r->nano_cpus) / 1e9);
        out += "  CPU:\t\t" + std::string(cpus) + "\n";
      }
      if (r->memory_bytes)
        out += "  Memory:\t" + bytesSize(static_cast<double>(r->memory_bytes)) + "\n";
      if (r->pids) out += "  PIDs:\t\t" + std::to_string(r->pids) + "\n";
    };
    res("Reservations", task->resources->reservations.get());
    res("Limits", task->resources->limits.get());
  }
  if (task && !task->networks.empty()) {
    out += "Networks:";
    for (const auto& n : task->networks)
      if (n) out += " " + n->target;
    out += "\n";
  }
  const auto* ep = spec ? spec->endpoint.get() : nullptr;
  out += "Endpoint Mode:\t" +
         std::string(ep && ep->mode == objects::ResolutionMode::Dnsrr ? "dnsrr" : "vip") + "\n";
  // The allocated ports once the allocator ran, else the spec's.
  const auto* ports = s.endpoint && !s.endpoint->ports.empty() ? &s.endpoint->ports
                      : ep                                     ? &ep->ports
                                                               : nullptr;
  if (ports && !ports->empty()) {
    out += "Ports:\n";
    for (const auto& p : *ports)
      if (p)
        out += " PublishedPort = " + std::to_string(p->published_port) +
               "\n  Protocol = " + std::string(protocolName(p->protocol)) +
               "\n  TargetPort = " + std::to_string(p->target_port) + "\n  PublishMode = " +
               (p->publish_mode == objects::PublishMode::Host ? "host" : "ingress") + "\n";
  }
  out += "\n";
  return out;
}

Result<const objects::ServiceT*> resolveService(
    const std::vector<const objects::ServiceT*>& services, std::string_view ref) {
  if (ref.empty()) return Error{"service \"\" not found: give a service's name, id or id prefix"};
  for (const auto* s : services)
    if (s->id == ref) return s;
  for (const auto* s : services)
    if (serviceName(*s) == ref) return s;
  std::vector<const objects::ServiceT*> found;
  for (const auto* s : services)
    if (hasPrefix(s->id, ref)) found.push_back(s);
  if (found.empty()) return Error{"service " + std::string(ref) + " not found"};
  if (found.size() > 1)
    return Error{"service " + std::string(ref) + " is ambiguous (" + std::to_string(found.size()) +
                 " matches found)"};
  return found.front();
}

}  // namespace shoal::cli
