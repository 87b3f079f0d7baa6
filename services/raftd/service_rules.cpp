#include "services/raftd/service_rules.h"

#include <strings.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <set>

#include "common/constraints.h"
#include "common/ids.h"
#include "common/units.h"
#include "wire_generated.h"

namespace shoal::raftd::service_rules {
namespace {

using wire::ErrorCode;

Error invalid(std::string message) {
  return Error{std::move(message), static_cast<int>(ErrorCode::InvalidArgument)};
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string dur(int64_t ns) { return formatDuration(std::chrono::nanoseconds(ns)); }

// "1.5" for 1.5e9 nano CPUs, as --limit-cpu takes it.
std::string cpus(int64_t nano) {
  std::string whole = std::to_string(nano / kSecond);
  int64_t frac = nano % kSecond;
  if (frac == 0) return whole;
  std::string digits = std::to_string(frac);
  digits.insert(0, 9 - digits.size(), '0');
  while (digits.back() == '0') digits.pop_back();
  return whole + "." + digits;
}

// A CLI that parsed "-1" into an unsigned field sends a huge number: refused, not obeyed.
Status notNegative(uint64_t value, std::string_view flag) {
  if (value <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return {};
  return invalid("invalid " + std::string(flag) + " " + std::to_string(value) +
                 ": that is a negative number read as unsigned; give 0 or more");
}

Status durationOk(int64_t ns, std::string_view flag) {
  if (ns >= 0) return {};
  return invalid("invalid " + std::string(flag) + " " + dur(ns) +
                 ": a duration cannot be negative");
}

template <class E>
Status enumOk(E value, std::string_view what) {
  if (static_cast<int>(value) <= static_cast<int>(E::MAX)) return {};
  return invalid("invalid " + std::string(what) + " " + std::to_string(static_cast<int>(value)) +
                 ": this raftd knows no such value (is the CLI newer than the manager?)");
}

// Runs checks in order and stops at the first refusal.
Status firstOf(std::initializer_list<Status> checks) {
  for (const auto& st : checks)
    if (!st) return st;
  return {};
}

// --- name and mode ---------------------------------------------------------------------------

bool nameChar(char c, bool first) {
  if (std::isalnum(static_cast<unsigned char>(c))) return true;
  return !first && (c == '_' || c == '.' || c == '-');
}

Status checkName(const std::string& name, const std::vector<std::unique_ptr<objects::ServiceT>>& all,
                 const objects::ServiceT* self) {
  if (name.empty()) return invalid("a service needs a name: give --name");
  if (name.size() > kMaxNameLength)
    return invalid("invalid --name " + quoteInput(name) + ": a service name has at most " +
                   std::to_string(kMaxNameLength) + " characters");
  for (size_t i = 0; i < name.size(); ++i)
    if (!nameChar(name[i], i == 0))
      return invalid("invalid --name " + quoteInput(name) +
                     ": a name starts with a letter or digit, followed by letters, digits, "
                     "'_', '.' or '-'");
  if (self && nameOf(*self) != name)
    return invalid("invalid --name " + quoteInput(name) + ": service " + nameOf(*self) +
                   " cannot be renamed; create a new service under that name");
  for (const auto& s : all)
    if ((!self || s->id != self->id) && lower(nameOf(*s)) == lower(name))
      return Error{"a service named " + nameOf(*s) + " already exists",
                   static_cast<int>(ErrorCode::Conflict)};
  return {};
}

const char* modeName(objects::ServiceModeKind kind) {
  switch (kind) {
    case objects::ServiceModeKind::Replicated: return "replicated";
    case objects::ServiceModeKind::Global: return "global";
    case objects::ServiceModeKind::ReplicatedJob: return "replicated-job";
    case objects::ServiceModeKind::GlobalJob: return "global-job";
  }
  return "unknown";
}

Status checkMode(const objects::ServiceModeT& mode, const objects::ServiceT* self) {
  using K = objects::ServiceModeKind;
  if (auto st = firstOf({enumOk(mode.kind, "--mode"), notNegative(mode.replicas, "--replicas"),
                         notNegative(mode.max_concurrent, "--max-concurrent"),
                         notNegative(mode.total_completions, "--total-completions")});
      !st)
    return st;
  bool global = mode.kind == K::Global || mode.kind == K::GlobalJob;
  if (global && mode.replicas != 0)
    return invalid("invalid --replicas " + std::to_string(mode.replicas) + ": a " +
                   modeName(mode.kind) +
                   " service runs one task per node and takes no replica count");
  if (mode.kind != K::ReplicatedJob && (mode.max_concurrent != 0 || mode.total_completions != 0))
    return invalid(std::string(mode.max_concurrent ? "--max-concurrent " : "--total-completions ") +
                   std::to_string(mode.max_concurrent ? mode.max_concurrent
                                                      : mode.total_completions) +
                   " is for replicated jobs, not for a " + modeName(mode.kind) + " service");
  if (self && self->spec && self->spec->mode && self->spec->mode->kind != mode.kind)
    return invalid("invalid --mode " + std::string(modeName(mode.kind)) + ": service " +
                   nameOf(*self) + " is " + modeName(self->spec->mode->kind) +
                   " and its mode cannot change; remove it and create it again");
  return {};
}

// --- the task template -----------------------------------------------------------------------

Status checkHealth(const objects::HealthConfigT& h) {
  if (!h.test.empty()) {
    const std::string& form = h.test.front();
    std::string shown = quoteInput(form);
    if (form == "NONE" && h.test.size() != 1)
      return invalid("invalid health check: NONE takes no command (--no-healthcheck)");
    if (form == "CMD" && h.test.size() < 2)
      return invalid("invalid health check: CMD needs a command to run (--health-cmd)");
    if (form == "CMD-SHELL" && (h.test.size() != 2 || h.test[1].empty()))
      return invalid("invalid health check: CMD-SHELL takes one shell command (--health-cmd)");
    if (form != "NONE" && form != "CMD" && form != "CMD-SHELL")
      return invalid("invalid health check test " + shown +
                     ": it starts with NONE, CMD or CMD-SHELL");
  }
  if (h.retries < 0)
    return invalid("invalid --health-retries " + std::to_string(h.retries) +
                   ": it cannot be negative");
  const std::pair<int64_t, const char*> times[] = {{h.interval, "--health-interval"},
                                                   {h.timeout, "--health-timeout"},
                                                   {h.start_period, "--health-start-period"},
                                                   {h.start_interval, "--health-start-interval"}};
  constexpr int64_t kMilli = 1'000'000;
  for (auto [ns, flag] : times) {
    if (auto st = durationOk(ns, flag); !st) return st;
    if (ns != 0 && ns < kMilli)
      return invalid("invalid " + std::string(flag) + " " + dur(ns) +
                     ": the minimum is 1ms (or 0 for the image's own)");
  }
  return {};
}

Status checkMounts(const std::vector<std::unique_ptr<objects::MountT>>& mounts) {
  std::set<std::string> targets;
  for (const auto& m : mounts) {
    if (auto st = enumOk(m->type, "--mount type"); !st) return st;
    if (m->target.empty())
      return invalid("invalid --mount source=" + m->source + ": a mount needs a target (target=/path)");
    if (m->target.front() != '/')
      return invalid("invalid --mount target " + quoteInput(m->target) +
                     ": it must be an absolute path");
    if (m->type == objects::MountType::Bind && m->source.empty())
      return invalid("invalid --mount target=" + m->target +
                     ": a bind mount needs a source (source=/host/path)");
    if (m->type == objects::MountType::Tmpfs && !m->source.empty())
      return invalid("invalid --mount source " + quoteInput(m->source) +
                     ": a tmpfs mount takes no source");
    if (!targets.insert(m->target).second)
      return invalid("invalid --mount target " + quoteInput(m->target) +
                     ": two mounts have that target");
  }
  return {};
}

Status checkContainer(const objects::ContainerSpecT& c) {
  if (c.image.empty())
    return invalid("a service needs an image: `shoal service create [OPTIONS] IMAGE [COMMAND]`");
  if (auto st = durationOk(c.stop_grace_period, "--stop-grace-period"); !st) return st;
  if (c.healthcheck)
    if (auto st = checkHealth(*c.healthcheck); !st) return st;
  return checkMounts(c.mounts);
}

Status checkResources(const objects::ResourceRequirementsT& r) {
  const objects::ResourcesT none;
  const auto& lim = r.limits ? *r.limits : none;
  const auto& res = r.reservations ? *r.reservations : none;
  const std::pair<int64_t, const char*> values[] = {
      {lim.nano_cpus, "--limit-cpu"},     {lim.memory_bytes, "--limit-memory"},
      {lim.pids, "--limit-pids"},         {res.nano_cpus, "--reserve-cpu"},
      {res.memory_bytes, "--reserve-memory"}};
  for (auto [v, flag] : values)
    if (v < 0)
      return invalid("invalid " + std::string(flag) + " " + std::to_string(v) +
                     ": it cannot be negative");
  if (lim.memory_bytes != 0 && lim.memory_bytes < kMinMemoryLimit)
    return invalid("invalid --limit-memory " + formatBytes(lim.memory_bytes) +
                   ": the minimum is " + formatBytes(kMinMemoryLimit) +
                   " (a container cannot start in less)");
  if (lim.memory_bytes != 0 && res.memory_bytes > lim.memory_bytes)
    return invalid("invalid --reserve-memory " + formatBytes(res.memory_bytes) +
                   ": it is more than --limit-memory " + formatBytes(lim.memory_bytes));
  if (lim.nano_cpus != 0 && res.nano_cpus > lim.nano_cpus)
    return invalid("invalid --reserve-cpu " + cpus(res.nano_cpus) +
                   ": it is more than --limit-cpu " + cpus(lim.nano_cpus));
  return {};
}

Status checkRestart(const objects::RestartPolicyT& r) {
  return firstOf({enumOk(r.condition, "--restart-condition"),
                  durationOk(r.delay, "--restart-delay"),
                  durationOk(r.window, "--restart-window"),
                  notNegative(r.max_attempts, "--restart-max-attempts")});
}

// Swarm's constraint syntax (common/constraints.h, which the scheduler reads them with), and a
// role that is one.
Status checkConstraint(const std::string& text) {
  std::string shown = "invalid --constraint " + quoteInput(text) + ": ";
  auto c = constraints::parseConstraint(text);
  if (!c) return invalid(shown + c.error().message);
  if (c->key == constraints::Key::NodeRole && lower(c->value) != "manager" &&
      lower(c->value) != "worker")
    return invalid(shown + "node.role is manager or worker");
  return {};
}

Status checkPlacement(const objects::PlacementT& p) {
  if (auto st = notNegative(p.max_replicas, "--replicas-max-per-node"); !st) return st;
  for (const auto& c : p.constraints)
    if (auto st = checkConstraint(c); !st) return st;
  for (const auto& pref : p.preferences)
    if (auto d = constraints::parseSpreadDescriptor(pref->spread_descriptor); !d)
      return invalid("invalid --placement-pref " + quoteInput("spread=" + pref->spread_descriptor) +
                     ": " + d.error().message);
  return {};
}

// --- references to other objects -------------------------------------------------------------

// The object of `all` whose id or name (without case) is `ref`, or null.
template <class T>
const T* findByIdOrName(const std::vector<std::unique_ptr<T>>& all, std::string_view ref) {
  for (const auto& o : all)
    if (o->id == ref) return o.get();
  for (const auto& o : all)
    if (o->spec && o->spec->annotations && lower(o->spec->annotations->name) == lower(ref))
      return o.get();
  return nullptr;
}

template <class T>
std::string objectName(const T& o) {
  return o.spec && o.spec->annotations ? o.spec->annotations->name : o.id;
}

Status resolveNetworks(objects::TaskSpecT& task, const Objects& objects) {
  std::set<std::string> seen;
  for (auto& n : task.networks) {
    if (n->target.empty()) return invalid("invalid --network: give a network name or id");
    const auto* net = findByIdOrName(objects.networks, n->target);
    if (!net)
      return invalid("invalid --network " + quoteInput(n->target) +
                     ": no such network; `shoal network ls` lists them");
    if (net->spec && net->spec->ingress)
      return invalid("invalid --network " + quoteInput(n->target) +
                     ": the ingress network is attached by publishing ports, not by --network");
    if (net->pending_delete)
      return invalid("invalid --network " + quoteInput(n->target) + ": it is being removed");
    if (!seen.insert(net->id).second)
      return invalid("invalid --network " + quoteInput(n->target) + ": it is given twice");
    n->target = net->id;
  }
  return {};
}

// Secret and config references alike: `ref` names the object by id or name; both are set.
template <class T>
Status resolveReference(std::string& id, std::string& name, const std::vector<std::unique_ptr<T>>& all,
                        std::string_view flag, std::string_view kind) {
  std::string ref = !id.empty() ? id : name;
  if (ref.empty()) return invalid("invalid " + std::string(flag) + ": give a name or id");
  const T* found = findByIdOrName(all, ref);
  if (!found)
    return invalid("invalid " + std::string(flag) + " " + quoteInput(ref) + ": no such " +
                   std::string(kind) + "; `shoal " + std::string(kind) + " ls` lists them");
  id = found->id;
  name = objectName(*found);
  return {};
}

Status resolveFiles(objects::ContainerSpecT& c, const Objects& objects) {
  for (auto& s : c.secrets)
    if (auto st = resolveReference(s->secret_id, s->secret_name, objects.secrets, "--secret",
                                   "secret");
        !st)
      return st;
  for (auto& s : c.configs)
    if (auto st = resolveReference(s->config_id, s->config_name, objects.configs, "--config",
                                   "config");
        !st)
      return st;
  return {};
}

// --- ports -------------------------------------------------------------------------------------

const char* protocolName(objects::PortProtocol p) {
  switch (p) {
    case objects::PortProtocol::Tcp: return "tcp";
    case objects::PortProtocol::Udp: return "udp";
    case objects::PortProtocol::Sctp: return "sctp";
  }
  return "unknown";
}

std::string portText(const objects::PortConfigT& p) {
  return std::to_string(p.published_port) + "/" + protocolName(p.protocol);
}

Status checkPortValues(const objects::PortConfigT& p) {
  if (auto st = firstOf({enumOk(p.protocol, "--publish protocol"),
                         enumOk(p.publish_mode, "--publish mode")});
      !st)
    return st;
  if (p.target_port == 0 || p.target_port > 65535)
    return invalid("invalid --publish target=" + std::to_string(p.target_port) +
                   ": a target port is 1 to 65535");
  if (p.published_port > 65535)
    return invalid("invalid --publish published=" + std::to_string(p.published_port) +
                   ": a published port is 1 to 65535 (or none, for one from 30000-32767)");
  return {};
}

// The ingress ports another service holds: its spec's and those the allocator assigned.
void ingressPortsOf(const objects::ServiceT& s, std::map<std::string, std::string>& taken) {
  auto add = [&](const std::vector<std::unique_ptr<objects::PortConfigT>>& ports) {
    for (const auto& p : ports)
      if (p->publish_mode == objects::PublishMode::Ingress && p->published_port != 0)
        taken.emplace(portText(*p), nameOf(s));
  };
  if (s.spec && s.spec->endpoint) add(s.spec->endpoint->ports);
  if (s.endpoint) add(s.endpoint->ports);
}

Status checkEndpoint(const objects::EndpointSpecT& e, const Objects& objects,
                     const objects::ServiceT* self) {
  if (auto st = enumOk(e.mode, "--endpoint-mode"); !st) return st;
  std::map<std::string, std::string> taken;
  for (const auto& s : objects.services)
    if (!self || s->id != self->id) ingressPortsOf(*s, taken);
  std::set<std::string> mine;
  for (const auto& p : e.ports) {
    if (auto st = checkPortValues(*p); !st) return st;
    if (p->published_port == 0) continue;
    std::string text = portText(*p);
    if (!mine.insert(text).second)
      return invalid("invalid --publish " + text + ": the port is published twice");
    if (p->publish_mode != objects::PublishMode::Ingress) continue;
    if (e.mode == objects::ResolutionMode::Dnsrr)
      return invalid("invalid --publish " + text +
                     ": --endpoint-mode dnsrr has no virtual IP for ingress ports; publish "
                     "with mode=host, or use --endpoint-mode vip");
    if (auto it = taken.find(text); it != taken.end())
      return invalid("invalid --publish " + text + ": port " +
                     std::to_string(p->published_port) + " is already published by service " +
                     it->second);
  }
  return {};
}

Status checkUpdateConfig(const objects::UpdateConfigT& u, std::string_view prefix) {
  std::string f(prefix);
  if (std::isnan(u.max_failure_ratio) || u.max_failure_ratio < 0 || u.max_failure_ratio > 1)
    return invalid("invalid " + f + "-max-failure-ratio " + std::to_string(u.max_failure_ratio) +
                   ": a ratio is from 0 to 1");
  return firstOf({notNegative(u.parallelism, f + "-parallelism"),
                  durationOk(u.delay, f + "-delay"), durationOk(u.monitor, f + "-monitor"),
                  enumOk(u.failure_action, f + "-failure-action"),
                  enumOk(u.order, f + "-order")});
}

Status checkTask(objects::TaskSpecT& task, const Objects& objects) {
  if (!task.container) return checkContainer(objects::ContainerSpecT{});
  if (auto st = checkContainer(*task.container); !st) return st;
  if (task.resources)
    if (auto st = checkResources(*task.resources); !st) return st;
  if (task.restart)
    if (auto st = checkRestart(*task.restart); !st) return st;
  if (task.placement)
    if (auto st = checkPlacement(*task.placement); !st) return st;
  if (auto st = resolveNetworks(task, objects); !st) return st;
  return resolveFiles(*task.container, objects);
}

void fillUpdateConfig(std::unique_ptr<objects::UpdateConfigT>& u) {
  if (!u) {
    u = std::make_unique<objects::UpdateConfigT>();
    u->parallelism = 1;
    u->failure_action = objects::UpdateFailureAction::Pause;
  }
  if (u->monitor == 0) u->monitor = kDefaultMonitor;
}

}  // namespace

void fillDefaults(objects::ServiceSpecT& spec) {
  if (!spec.task) spec.task = std::make_unique<objects::TaskSpecT>();
  auto& task = *spec.task;
  if (!task.restart) task.restart = std::make_unique<objects::RestartPolicyT>();
  if (task.restart->delay == 0) task.restart->delay = kDefaultRestartDelay;
  if (task.container && task.container->stop_grace_period == 0)
    task.container->stop_grace_period = kDefaultStopGrace;
  fillUpdateConfig(spec.update);
  fillUpdateConfig(spec.rollback);
  if (!spec.mode) spec.mode = std::make_unique<objects::ServiceModeT>();
  if (!spec.endpoint) spec.endpoint = std::make_unique<objects::EndpointSpecT>();
}

Status validate(objects::ServiceSpecT& spec, const Objects& objects,
                const objects::ServiceT* self) {
  fillDefaults(spec);  // so that every table below is there
  std::string name = spec.annotations ? spec.annotations->name : "";
  if (auto st = checkName(name, objects.services, self); !st) return st;
  if (auto st = checkMode(*spec.mode, self); !st) return st;
  if (auto st = checkTask(*spec.task, objects); !st) return st;
  if (auto st = checkUpdateConfig(*spec.update, "--update"); !st) return st;
  if (auto st = checkUpdateConfig(*spec.rollback, "--rollback"); !st) return st;
  return checkEndpoint(*spec.endpoint, objects, self);
}

Result<const objects::ServiceT*> resolveService(
    std::string_view query, const std::vector<std::unique_ptr<objects::ServiceT>>& services) {
  if (query.empty()) return invalid("no service given: give a service name, ID or ID prefix");
  for (const auto& s : services)
    if (s->id == query) return s.get();
  for (const auto& s : services)
    if (lower(nameOf(*s)) == lower(query)) return s.get();
  std::vector<std::string_view> ids;
  for (const auto& s : services) ids.push_back(s->id);
  auto id = resolveIdPrefix(query, ids, "service");
  if (!id) {
    if (id.error().code == ENOENT)
      return Error{"no service " + quoteInput(query) +
                       ": no service has that name or an ID starting with it; `shoal service "
                       "ls` lists them",
                   static_cast<int>(ErrorCode::NotFound)};
    return invalid(id.error().message);
  }
  for (const auto& s : services)
    if (s->id == *id) return s.get();
  return Error{"no service " + quoteInput(query), static_cast<int>(ErrorCode::NotFound)};
}

std::string generatedName(const std::vector<std::unique_ptr<objects::ServiceT>>& services,
                          const std::function<uint32_t(uint32_t)>& pick) {
  static constexpr std::string_view kAdjectives[] = {
      "amber", "brave",  "calm",   "clever", "eager",  "gentle", "happy", "keen",
      "lucid", "merry",  "nimble", "proud",  "quiet",  "rapid",  "sharp", "steady",
      "swift", "tender", "vivid",  "wise",   "bold",   "bright", "cosy",  "jolly"};
  static constexpr std::string_view kSurnames[] = {
      "lovelace", "hopper",  "turing",   "noether", "curie",   "franklin", "meitner",
      "dijkstra", "lamport", "liskov",   "ritchie", "thompson", "knuth",   "hamilton",
      "goldberg", "shannon", "babbage",  "kepler",  "galois",  "euler",    "hypatia",
      "ramanujan", "tesla",  "volta"};
  auto taken = [&](const std::string& name) {
    return std::any_of(services.begin(), services.end(), [&](const auto& s) {
      return s && strcasecmp(nameOf(*s).c_str(), name.c_str()) == 0;
    });
  };
  auto draw = [&] {
    return std::string(kAdjectives[pick(std::size(kAdjectives))]) + "_" +
           std::string(kSurnames[pick(std::size(kSurnames))]);
  };
  std::string name;
  for (int i = 0; i < 20; ++i)
    if (!taken(name = draw())) return name;
  for (int n = 2;; ++n)
    if (!taken(name + std::to_string(n))) return name + std::to_string(n);
}

std::unique_ptr<objects::ServiceT> newService(std::string id,
                                              std::unique_ptr<objects::ServiceSpecT> spec) {
  auto s = std::make_unique<objects::ServiceT>();
  s->id = std::move(id);
  s->meta = std::make_unique<objects::Meta>();
  s->spec = std::move(spec);
  s->spec_version = 1;
  return s;
}

void applyUpdate(objects::ServiceT& service, std::unique_ptr<objects::ServiceSpecT> spec,
                 bool templateChanged, int64_t now) {
  service.previous_spec = std::move(service.spec);
  service.previous_spec_version = service.spec_version;
  service.spec = std::move(spec);
  service.spec_version += 1;
  if (!templateChanged) return;
  service.update_status = std::make_unique<objects::UpdateStatusT>();
  service.update_status->state = objects::UpdateState::Updating;
  service.update_status->started_at = now;
  service.update_status->spec_version = service.spec_version;
  service.update_status->message = "update in progress";
}

Status applyRollback(objects::ServiceT& service, int64_t now) {
  if (!service.previous_spec)
    return invalid("service " + nameOf(service) + " has no previous spec to roll back to");
  std::swap(service.spec, service.previous_spec);
  service.previous_spec_version = service.spec_version;
  service.spec_version += 1;
  service.update_status = std::make_unique<objects::UpdateStatusT>();
  service.update_status->state = objects::UpdateState::RollbackStarted;
  service.update_status->started_at = now;
  service.update_status->spec_version = service.spec_version;
  service.update_status->message = "manually requested rollback";
  return {};
}

std::string nameOf(const objects::ServiceT& service) {
  if (service.spec && service.spec->annotations && !service.spec->annotations->name.empty())
    return service.spec->annotations->name;
  return service.id;
}

// --- secrets and configs -----------------------------------------------------------------------

namespace {

Error conflict(std::string message) {
  return Error{std::move(message), static_cast<int>(ErrorCode::Conflict)};
}

std::string sizeText(size_t bytes) {
  return bytes % 1024 == 0 ? std::to_string(bytes / 1024) + " KiB" : std::to_string(bytes) + " bytes";
}

// `kind` is "secret" or "config": the CLI's word for it in every message.
Status checkObjectName(const std::string& name, std::string_view kind) {
  std::string k(kind);
  if (name.empty()) return invalid("a " + k + " needs a name: give NAME");
  if (name.size() > kMaxSecretNameLength)
    return invalid("invalid " + k + " name " + quoteInput(name) + ": a " + k + " name has at most " +
                   std::to_string(kMaxSecretNameLength) + " characters");
  for (size_t i = 0; i < name.size(); ++i)
    if (!nameChar(name[i], i == 0))
      return invalid("invalid " + k + " name " + quoteInput(name) +
                     ": a name starts with a letter or digit, followed by letters, digits, "
                     "'_', '.' or '-'");
  return {};
}

Status checkLabels(const objects::AnnotationsT& a, std::string_view kind) {
  std::set<std::string> seen;
  for (const auto& l : a.labels) {
    if (!l || l->key.empty())
      return invalid("invalid --label on " + std::string(kind) + " " + a.name +
                     ": a label needs a key (key=value)");
    if (!seen.insert(l->key).second)
      return invalid("invalid --label " + quoteInput(l->key) + ": the key is given twice");
  }
  return {};
}

// Drivers (external secret stores) and templating are Swarm features we do not have yet:
// a spec asking for them is refused, so that nobody believes they work.
Status checkUnsupported(const objects::DriverT* driver, std::string_view what,
                        std::string_view kind) {
  if (!driver || driver->name.empty()) return {};
  return invalid("invalid " + std::string(what) + " " + quoteInput(driver->name) + ": " +
                 std::string(kind) + " " + std::string(what) +
                 "s are not supported; create the " + std::string(kind) + " without it");
}

template <class T>
Status checkNewObject(const std::string& name, size_t size, size_t min, size_t max,
                      const std::vector<std::unique_ptr<T>>& all, std::string_view kind) {
  std::string k(kind);
  if (auto st = checkObjectName(name, kind); !st) return st;
  if (size < min)
    return invalid(k + " " + name + " has no data: give a file, or - for standard input, that "
                   "is not empty");
  if (size > max)
    return invalid(k + " " + name + " has " + std::to_string(size) + " bytes of data: a " + k +
                   " holds at most " + sizeText(max));
  for (const auto& o : all)
    if (lower(objectName(*o)) == lower(name))
      return conflict(k + " " + objectName(*o) + " already exists");
  return {};
}

template <class T>
Result<const T*> resolveObject(std::string_view query, const std::vector<std::unique_ptr<T>>& all,
                               std::string_view kind) {
  std::string k(kind);
  if (query.empty()) return invalid("no " + k + " given: give a " + k + " name, ID or ID prefix");
  if (const T* found = findByIdOrName(all, query)) return found;
  std::vector<std::string_view> ids;
  for (const auto& o : all) ids.push_back(o->id);
  auto id = resolveIdPrefix(query, ids, k);
  if (!id && id.error().code == ENOENT)
    return Error{"no " + k + " " + quoteInput(query) + ": no " + k +
                     " has that name or an ID starting with it; `shoal " + k + " ls` lists them",
                 static_cast<int>(ErrorCode::NotFound)};
  if (!id) return invalid(id.error().message);
  return findByIdOrName(all, *id);
}

// The names of the services whose spec refers to `id` through `refs` (secrets or configs).
template <class Refs>
Status checkUnused(const std::string& id, const std::string& name,
                   const std::vector<std::unique_ptr<objects::ServiceT>>& services, Refs refs,
                   std::string_view kind) {
  std::vector<std::string> users;
  for (const auto& s : services)
    if (s->spec && s->spec->task && s->spec->task->container && refs(*s->spec->task->container, id))
      users.push_back(nameOf(*s));
  if (users.empty()) return {};
  std::sort(users.begin(), users.end());
  std::string list;
  for (const auto& u : users) list += (list.empty() ? "" : ", ") + u;
  return conflict(std::string(kind) + " " + name + " is in use by service(s) " + list +
                  ": remove it from them first");
}

}  // namespace

Status validateSecret(const objects::SecretSpecT& spec,
                      const std::vector<std::unique_ptr<objects::SecretT>>& secrets) {
  std::string name = spec.annotations ? spec.annotations->name : "";
  if (auto st = checkNewObject(name, spec.data.size(), 1, kMaxSecretBytes, secrets, "secret"); !st)
    return st;
  return firstOf({checkLabels(*spec.annotations, "secret"),
                  checkUnsupported(spec.driver.get(), "driver", "secret"),
                  checkUnsupported(spec.templating.get(), "template driver", "secret")});
}

Status validateConfig(const objects::ConfigSpecT& spec,
                      const std::vector<std::unique_ptr<objects::ConfigT>>& configs) {
  std::string name = spec.annotations ? spec.annotations->name : "";
  if (auto st = checkNewObject(name, spec.data.size(), 0, kMaxConfigBytes, configs, "config"); !st)
    return st;
  return firstOf({checkLabels(*spec.annotations, "config"),
                  checkUnsupported(spec.templating.get(), "template driver", "config")});
}

Result<const objects::SecretT*> resolveSecret(
    std::string_view query, const std::vector<std::unique_ptr<objects::SecretT>>& secrets) {
  return resolveObject(query, secrets, "secret");
}

Result<const objects::ConfigT*> resolveConfig(
    std::string_view query, const std::vector<std::unique_ptr<objects::ConfigT>>& configs) {
  return resolveObject(query, configs, "config");
}

Status checkSecretUnused(const objects::SecretT& secret,
                         const std::vector<std::unique_ptr<objects::ServiceT>>& services) {
  auto refers = [](const objects::ContainerSpecT& c, const std::string& id) {
    return std::any_of(c.secrets.begin(), c.secrets.end(),
                       [&](const auto& r) { return r && r->secret_id == id; });
  };
  return checkUnused(secret.id, objectName(secret), services, refers, "secret");
}

Status checkConfigUnused(const objects::ConfigT& config,
                         const std::vector<std::unique_ptr<objects::ServiceT>>& services) {
  auto refers = [](const objects::ContainerSpecT& c, const std::string& id) {
    return std::any_of(c.configs.begin(), c.configs.end(),
                       [&](const auto& r) { return r && r->config_id == id; });
  };
  return checkUnused(config.id, objectName(config), services, refers, "config");
}

std::unique_ptr<objects::SecretT> newSecret(std::string id, const objects::SecretSpecT& spec) {
  auto s = std::make_unique<objects::SecretT>();
  s->id = std::move(id);
  s->meta = std::make_unique<objects::Meta>();
  s->spec = std::make_unique<objects::SecretSpecT>(spec);
  return s;
}

std::unique_ptr<objects::ConfigT> newConfig(std::string id, const objects::ConfigSpecT& spec) {
  auto c = std::make_unique<objects::ConfigT>();
  c->id = std::move(id);
  c->meta = std::make_unique<objects::Meta>();
  c->spec = std::make_unique<objects::ConfigSpecT>(spec);
  return c;
}

}  // namespace shoal::raftd::service_rules
