// shoal service create|update|scale|rollback|rm|ls|ps|inspect and shoal node ps
// (docs/services.md): writes through raftd's service API (schemas/service.fbs), reads through
// the store client, docker's flags (service_flags.h), output (services.h) and convergence
// display (progress.h).
#include <unistd.h>

#include <chrono>
#include <functional>
#include <iostream>
#include <optional>
#include <set>
#include <thread>

#include "common/image_ref.h"
#include "common/object_codec.h"
#include "common/units.h"
#include "services/agentd/image_store.h"
#include "tools/shoal/credentials.h"
#include "tools/shoal/daemons.h"
#include "tools/shoal/nodes.h"
#include "tools/shoal/progress.h"
#include "tools/shoal/service_flags.h"
#include "tools/shoal/services.h"

namespace shoal::cli {
namespace {

constexpr Millis kCall{10'000};
constexpr Millis kPoll{100};

int64_t nowNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ---- reading the store

store::ListFilter tasksOfService(const std::string& id) {
  store::ListFilter f;
  f.serviceId = id;
  return f;
}

store::ListFilter tasksOnNode(const std::string& id) {
  store::ListFilter f;
  f.nodeId = id;
  return f;
}

ProgressTarget targetOf(uint64_t specVersion, int64_t startedAt, bool rollback = false) {
  ProgressTarget t;
  t.specVersion = specVersion;
  t.startedAt = startedAt;
  t.rollback = rollback;
  return t;
}

template <class T>
using Owned = std::vector<std::unique_ptr<T>>;

template <class T>
std::vector<const T*> pointers(const Owned<T>& owned) {
  std::vector<const T*> out;
  for (const auto& o : owned) out.push_back(o.get());
  return out;
}

// One connection to this node's raftd for a command's reads (and the progress polls).
class StoreReader {
 public:
  Status connect(const Globals& g, CallError& why) {
    if (auto m = requireManager(g, &why); !m) return m;
    if (auto c = client_.connect(store::endpointIn(g.runDir)); !c) {
      why = {CallError::Kind::Unreachable,
             "cannot connect to raftd at " + socketOf(g, "raftd") + ": " + c.error().message};
      return Error{why.message};
    }
    return {};
  }

  Result<Owned<objects::ServiceT>> services(CallError& why) {
    return list<objects::Service>(objects::ObjectKind::Service, {}, "Service", why);
  }
  Result<Owned<objects::TaskT>> tasks(const store::ListFilter& filter, CallError& why) {
    return list<objects::Task>(objects::ObjectKind::Task, filter, "Task", why);
  }
  Result<Owned<objects::NodeT>> nodes(CallError& why) {
    return list<objects::Node>(objects::ObjectKind::Node, {}, "Node", why);
  }
  // The service, or nullptr when it is gone.
  Result<std::unique_ptr<objects::ServiceT>> service(const std::string& id, CallError& why) {
    auto got = client_.get(objects::ObjectKind::Service, id);
    if (!got && store::codeOf(got.error()) == wire::ErrorCode::NotFound)
      return std::unique_ptr<objects::ServiceT>();
    if (!got) return fail(why, got.error().message);
    auto s = objects_codec::unpack<objects::Service>(got->data, "Service");
    if (!s) return fail(why, s.error().message);
    return std::move(*s);
  }

 private:
  static Error fail(CallError& why, std::string message) {
    why = {CallError::Kind::Daemon, message};
    return Error{std::move(message)};
  }

  template <class T>
  Result<Owned<typename T::NativeTableType>> list(objects::ObjectKind kind,
                                                  const store::ListFilter& filter, const char* what,
                                                  CallError& why) {
    auto l = client_.list(kind, filter);
    if (!l) return fail(why, l.error().message);
    Owned<typename T::NativeTableType> out;
    for (const auto& b : l->objects) {
      auto o = objects_codec::unpack<T>(b, what);
      if (!o)
        return fail(why, o.error().message + "; check raftd's log and `shoal debug status raftd`");
      out.push_back(std::move(*o));
    }
    return out;
  }

  store::SyncClient client_;
};

std::map<std::string, std::string> hostnamesOf(const Owned<objects::NodeT>& nodes) {
  std::map<std::string, std::string> out;
  for (const auto& n : nodes)
    out[n->id] =
        n->description && !n->description->hostname.empty() ? n->description->hostname : n->id;
  return out;
}

// ---- writing through raftd's service API

struct Sent {
  std::string serviceId;
  std::vector<std::string> warnings;
};

// One request to raftd's service API. Unlike callDaemon, a refusal keeps raftd's code, so
// that update and scale can tell a Conflict (the service changed since it was read).
Result<Sent> send(const Globals& g, flatbuffers::FlatBufferBuilder& fbb, serviceapi::Body type,
                  flatbuffers::Offset<void> body, CallError& why) {
  std::string path = socketOf(g, "raftd");
  if (!socketExists(path)) {
    why = {CallError::Kind::Unreachable, unreachable(g, "raftd")};
    return Error{why.message};
  }
  bus::SyncClient client(kServiceProtocol);
  if (auto c = client.connect("ipc://" + path); !c) {
    why = {CallError::Kind::Unreachable,
           "cannot connect to raftd at " + path + ": " + c.error().message};
    return Error{why.message};
  }
  auto reply = client.call(bus::message<serviceapi::Envelope>(fbb, type, body), kCall);
  if (!reply && reply.error().code == static_cast<int>(wire::ErrorCode::DeadlineExceeded)) {
    why = {CallError::Kind::Timeout,
           "raftd did not answer on " + path + " within " + std::to_string(kCall.count() / 1000) +
               "s: it may be busy or hung; check `systemctl status shoal-raftd` and its log"};
    return Error{why.message, reply.error().code};
  }
  if (!reply) {
    why = {CallError::Kind::Daemon, reply.error().message};
    return reply.error();
  }
  if (const auto* e = reply->error(); e && e->code() != wire::ErrorCode::None) {
    auto error = bus::errorFrom(*reply);
    why = {CallError::Kind::Daemon, error.message};
    return error;
  }
  const auto* env = reply->as<serviceapi::Envelope>();
  const auto* r = env ? env->body_as_ServiceReply() : nullptr;
  Sent sent;
  if (r && r->service_id()) sent.serviceId = r->service_id()->str();
  if (r && r->warnings())
    for (const auto* w : *r->warnings()) sent.warnings.push_back(w->str());
  return sent;
}

Result<Sent> sendUpdate(const Globals& g, const std::string& service, uint64_t version,
                        const objects::ServiceSpecT* spec, bool rollback, CallError& why) {
  flatbuffers::FlatBufferBuilder fbb;
  auto specOffset = spec ? objects::ServiceSpec::Pack(fbb, spec) : 0;
  auto body = serviceapi::CreateUpdateServiceRequest(fbb, fbb.CreateString(service), version,
                                                     specOffset, rollback);
  return send(g, fbb, serviceapi::Body::UpdateServiceRequest, body.Union(), why);
}

void printWarnings(const Sent& sent) {
  for (const auto& w : sent.warnings) std::cerr << "warning: " << w << "\n";
}

// ---- waiting for convergence

struct WaitOptions {
  bool detach = false;
  bool quiet = false;
  std::string timeout;  // "" waits as long as it takes, as docker does
};

// Polls the service and its tasks every 100 ms and shows docker's progress until it
// converges (0), or an update pauses or rolls back, the service goes, or --timeout (1).
int waitConverged(const Globals& g, const std::string& id, ProgressTarget target,
                  const WaitOptions& o) {
  std::optional<int64_t> deadline;
  if (!o.timeout.empty())
    deadline = nowNanos() + parseDuration(o.timeout)->count();  // checked at parse
  StoreReader reader;
  CallError why;
  if (auto c = reader.connect(g, why); !c) return printCallError(why);
  Display display(!o.quiet && ::isatty(STDOUT_FILENO));
  std::set<std::string> notesShown;
  std::optional<Verifier> verifier;
  for (;;) {  // no deadline unless --timeout; Ctrl-C ends it (the service goes on converging)
    auto service = reader.service(id, why);
    if (!service) return printCallError(why);
    if (!*service) {
      std::cerr << "error: service " << id << " was removed while waiting for it to converge\n";
      return 1;
    }
    if (target.specVersion == 0) target.specVersion = (*service)->spec_version;
    auto tasks = reader.tasks(tasksOfService(id), why);
    if (!tasks) return printCallError(why);
    std::map<std::string, std::string> hostnames;
    if ((*service)->spec && (*service)->spec->mode &&
        (*service)->spec->mode->kind == objects::ServiceModeKind::Global)
      if (auto nodes = reader.nodes(why)) hostnames = hostnamesOf(*nodes);
    int64_t now = nowNanos();
    auto f = progressOf(**service, pointers(*tasks), hostnames, target, now);
    if (!verifier) verifier.emplace(verifyPeriod(**service, target.rollback));
    std::string verifying;
    bool done = !f.failure && verifier->done(f.converged, now, &verifying);
    if (!verifying.empty()) f.lines.push_back(verifying);
    if (!o.quiet) {
      for (const auto& n : f.notes)
        if (notesShown.insert(n).second) std::cout << display.note(n);
      std::cout << display.frame(f.lines) << std::flush;
    }
    if (f.failure) {
      std::cerr << "error: " << *f.failure << "\n";
      return 1;
    }
    if (done) {
      if (!o.quiet) std::cout << "verify: Service converged\n";
      return 0;
    }
    if (deadline && now > *deadline) {
      std::cerr << "error: service " << serviceName(**service) << " did not converge within "
                << o.timeout << "; it goes on converging: watch it with `shoal service ps "
                << serviceName(**service) << "`\n";
      return 1;
    }
    std::this_thread::sleep_for(kPoll);
  }
}

// Converts CLI11's results into FlagValues: every flag of `infos` that was given.
FlagValues collect(const CLI::App& sub, const std::vector<FlagInfo>& infos) {
  FlagValues out;
  for (const auto& f : infos) {
    const auto* opt = sub.get_option_no_throw("--" + f.name);
    if (!opt || opt->count() == 0) continue;
    if (f.boolean)
      out[f.name] = {opt->as<bool>() ? "true" : "false"};
    else
      out[f.name] = opt->results();
  }
  return out;
}

void addFlags(CLI::App& sub, const std::vector<FlagInfo>& infos) {
  for (const auto& f : infos) {
    std::string names = "--" + f.name + (f.shortName.empty() ? "" : ",-" + f.shortName);
    if (f.boolean)
      sub.add_flag(names, f.help);
    else
      sub.add_option(names, f.help)
          ->expected(1)
          ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  }
}

void addWaitFlags(CLI::App& sub, WaitOptions& o) {
  sub.add_flag("-d,--detach", o.detach,
               "Exit immediately instead of waiting for the service to converge");
  sub.add_flag("-q,--quiet", o.quiet, "Suppress progress output");
  sub.add_option("--timeout", o.timeout,
                 "Stop waiting for convergence after this long (default: wait until it converges)")
      ->check(CLI::Validator(
          [](std::string& t) -> std::string {
            auto d = parseDuration(t);
            return d && d->count() > 0 ? "" : "a duration more than 0, e.g. 2m";
          },
          "DURATION"));
}

// ---- --with-registry-auth

// Docker's --with-registry-auth: the user's stored credentials (`shoal login`) for the registry
// of the service's image go into its spec, for the nodes that pull it.
Status addRegistryAuth(const FlagValues& flags, objects::ServiceSpecT& spec) {
  auto it = flags.find("with-registry-auth");
  if (it == flags.end() || it->second.empty() || it->second.back() != "true") return {};
  if (!spec.task || !spec.task->container) return Error{"--with-registry-auth: the service has no image"};
  auto& container = *spec.task->container;
  auto ref = image::parse(container.image);
  if (!ref) return Error{"--with-registry-auth: " + ref.error().message};
  auto creds = storedCredentials(ref->registry);
  if (!creds) return Error{"--with-registry-auth: " + creds.error().message};
  auto key = loginKey(ref->registry);
  std::string server = key ? *key : ref->registry;
  std::string login = "shoal login" + (ref->registry == image::kDockerHub ? "" : " " + ref->registry);
  if (!*creds)
    return Error{"--with-registry-auth: no credentials for " + ref->registry +
                 " are stored; run `" + login +
                 "` first, or leave out --with-registry-auth for a registry that needs none"};
  container.registry_auth = agentd::encodeRegistryAuth(
      {(*creds)->username, (*creds)->password, (*creds)->identityToken, server});
  return {};
}

// ---- create

int create(const Globals& g, const CLI::App& sub, const WaitOptions& wait) {
  auto rest = sub.remaining();
  if (rest.empty()) {
    std::cerr << "error: \"shoal service create\" requires at least 1 argument: IMAGE [COMMAND] "
                 "[ARG...]\n";
    return 2;
  }
  std::vector<std::string> args(rest.begin() + 1, rest.end());
  auto flags = collect(sub, createFlags());
  auto spec = specFromCreateFlags(flags, rest.front(), args);
  if (!spec) {
    std::cerr << "error: " << spec.error().message << "\n";
    return 1;
  }
  if (auto st = addRegistryAuth(flags, *spec); !st) {
    std::cerr << "error: " << st.error().message << "\n";
    return 1;
  }
  int64_t started = nowNanos();
  flatbuffers::FlatBufferBuilder fbb;
  auto body = serviceapi::CreateCreateServiceRequest(fbb, objects::ServiceSpec::Pack(fbb, &*spec));
  CallError why;
  auto sent = send(g, fbb, serviceapi::Body::CreateServiceRequest, body.Union(), why);
  if (!sent) return printCallError(why);
  printWarnings(*sent);
  std::cout << sent->serviceId << "\n";
  if (wait.detach) return 0;
  return waitConverged(g, sent->serviceId, targetOf(0, started), wait);
}

// ---- update, scale, rollback: read, change, write with the version read

Result<std::unique_ptr<objects::ServiceT>> findService(StoreReader& reader, const std::string& ref,
                                                       CallError& why) {
  auto all = reader.services(why);
  if (!all) return all.error();
  auto found = resolveService(pointers(*all), ref);
  if (!found) {
    why = {CallError::Kind::Daemon, found.error().message};
    return found.error();
  }
  for (auto& s : *all)
    if (s.get() == *found) return std::move(s);
  return Error{"unreachable"};
}

// The read-modify-write of update and scale: read the service, change its spec, send it with
// the version read. schedulerd writes the Service too (endpoint, update status), so a Conflict
// is read and changed again, a few times, before it is the user's to retry.
constexpr int kWriteAttempts = 3;

using SpecChange = std::function<Status(objects::ServiceSpecT&)>;

int readModifyWrite(const Globals& g, const std::string& ref, const SpecChange& change,
                    const WaitOptions& wait, const std::string& shown) {
  StoreReader reader;
  CallError why;
  if (auto c = reader.connect(g, why); !c) return printCallError(why);
  for (int attempt = 1;; ++attempt) {
    auto service = findService(reader, ref, why);
    if (!service) return printCallError(why);
    auto& s = **service;
    if (!s.spec) s.spec = std::make_unique<objects::ServiceSpecT>();
    if (auto changed = change(*s.spec); !changed) {
      std::cerr << "error: " << changed.error().message << "\n";
      return 1;
    }
    int64_t started = nowNanos();
    auto sent = sendUpdate(g, s.id, objects_codec::versionOf(s.meta), s.spec.get(), false, why);
    if (!sent && store::codeOf(sent.error()) == wire::ErrorCode::Conflict &&
        attempt < kWriteAttempts)
      continue;
    if (!sent) return printCallError(why);
    printWarnings(*sent);
    std::cout << shown << "\n";
    if (wait.detach) return 0;
    return waitConverged(g, s.id, targetOf(s.spec_version + 1, started), wait);
  }
}

int rollback(const Globals& g, const std::string& ref, const WaitOptions& wait) {
  StoreReader reader;
  CallError why;
  if (auto c = reader.connect(g, why); !c) return printCallError(why);
  auto service = findService(reader, ref, why);
  if (!service) return printCallError(why);
  int64_t started = nowNanos();
  auto sent = sendUpdate(g, (*service)->id, 0, nullptr, true, why);
  if (!sent) return printCallError(why);
  printWarnings(*sent);
  std::cout << ref << "\n";
  if (wait.detach) return 0;
  return waitConverged(g, (*service)->id, targetOf((*service)->spec_version + 1, started, true),
                       wait);
}

int update(const Globals& g, const CLI::App& sub, const std::string& ref, bool rollbackFlag,
           const WaitOptions& wait) {
  auto flags = collect(sub, updateFlags());
  if (rollbackFlag) {
    if (!flags.empty()) {
      std::cerr << "error: --rollback cannot be given with other update flags: roll back first, "
                   "then update\n";
      return 1;
    }
    return rollback(g, ref, wait);
  }
  return readModifyWrite(
      g, ref,
      [&flags](objects::ServiceSpecT& spec) {
        if (auto st = applyUpdateFlags(flags, spec); !st) return st;
        return addRegistryAuth(flags, spec);  // after --image: the new image's registry
      },
      wait, ref);
}

int scale(const Globals& g, const std::vector<std::string>& specs, const WaitOptions& wait) {
  std::vector<ScaleArg> wanted;
  for (const auto& text : specs) {
    auto a = parseScaleArg(text);
    if (!a) {
      std::cerr << "error: " << a.error().message << "\n";
      return 1;
    }
    wanted.push_back(*a);
  }
  int code = 0;
  for (const auto& w : wanted) {
    auto change = [&w](objects::ServiceSpecT& spec) -> Status {
      auto kind = spec.mode ? spec.mode->kind : objects::ServiceModeKind::Replicated;
      if (kind != objects::ServiceModeKind::Replicated &&
          kind != objects::ServiceModeKind::ReplicatedJob)
        return Error{w.service + ": scale can only be used with replicated or replicated-job mode"};
      return applyUpdateFlags({{"replicas", {std::to_string(w.replicas)}}}, spec);
    };
    if (readModifyWrite(g, w.service, change, wait,
                        w.service + " scaled to " + std::to_string(w.replicas)) != 0)
      code = 1;
  }
  return code;
}

int remove(const Globals& g, const std::vector<std::string>& refs) {
  int code = 0;
  for (const auto& ref : refs) {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = serviceapi::CreateRemoveServiceRequestDirect(fbb, ref.c_str());
    CallError why;
    if (auto r = send(g, fbb, serviceapi::Body::RemoveServiceRequest, body.Union(), why); !r) {
      code = printCallError(why);
      if (why.kind != CallError::Kind::Daemon) return code;
      continue;
    }
    std::cout << ref << "\n";
  }
  return code;
}

// ---- ls, ps, inspect, node ps

int printListing(const std::string& formatFlag, bool quiet, std::string_view table,
                 std::string_view quietTemplate, const Headers& headers,
                 const std::function<std::vector<nlohmann::json>(bool isTable)>& rows) {
  bool quietFormat = quiet && (formatFlag.empty() || formatFlag == "table");
  auto format =
      ListingFormat::parse(quietFormat ? quietTemplate : std::string_view(formatFlag), table);
  if (!format) {
    std::cerr << "error: --format: " << format.error().message << "\n";
    return 2;
  }
  auto text = format->render(rows(format->kind() == ListingFormat::Kind::Table), headers);
  if (!text) {
    std::cerr << "error: --format: " << text.error().message << "\n";
    return 1;
  }
  std::cout << *text;
  return 0;
}

struct LsOptions {
  bool quiet = false;
  std::vector<std::string> filters;
  std::string format;
};

int ls(const Globals& g, const LsOptions& o) {
  auto filter = parseServiceFilters(o.filters);
  if (!filter) {
    std::cerr << "error: " << filter.error().message << "\n";
    return 2;
  }
  StoreReader reader;
  CallError why;
  if (auto c = reader.connect(g, why); !c) return printCallError(why);
  auto services = reader.services(why);
  if (!services) return printCallError(why);
  auto tasks = reader.tasks({}, why);
  if (!tasks) return printCallError(why);
  std::map<std::string, std::vector<const objects::TaskT*>> byService;
  for (const auto& t : *tasks) byService[t->service_id].push_back(t.get());
  auto sorted = pointers(*services);
  std::sort(sorted.begin(), sorted.end(),
            [](auto* a, auto* b) { return naturalLess(serviceName(*a), serviceName(*b)); });
  return printListing(o.format, o.quiet, kServiceTable, "{{.ID}}", serviceHeaders(), [&](bool) {
    std::vector<nlohmann::json> rows;
    for (const auto* s : sorted)
      if (matches(*filter, *s)) rows.push_back(serviceRow(*s, countTasks(*s, byService[s->id])));
    return rows;
  });
}

struct PsOptions {
  std::vector<std::string> refs, filters;
  bool quiet = false, noTrunc = false;
  std::string format;
};

// The rows of service ps and node ps: the tasks through the filters, in docker's order.
int printTasks(const PsOptions& o, const Owned<objects::TaskT>& tasks,
               const Owned<objects::ServiceT>& services, const Owned<objects::NodeT>& nodes) {
  auto filter = parseTaskFilters(o.filters);
  if (!filter) {
    std::cerr << "error: " << filter.error().message << "\n";
    return 2;
  }
  TaskContext ctx;
  for (const auto& s : services) ctx.services[s->id] = s.get();
  ctx.hostnames = hostnamesOf(nodes);
  ctx.now = nowNanos();
  ctx.noTrunc = o.noTrunc;
  std::vector<const objects::TaskT*> shown;
  for (const auto& t : tasks)
    if (matches(*filter, *t, ctx)) shown.push_back(t.get());
  return printListing(o.format, o.quiet, kTaskTable, "{{.ID}}", taskHeaders(), [&](bool isTable) {
    ctx.table = isTable;
    return taskRows(shown, ctx);
  });
}

int ps(const Globals& g, const PsOptions& o) {
  StoreReader reader;
  CallError why;
  if (auto c = reader.connect(g, why); !c) return printCallError(why);
  auto services = reader.services(why);
  if (!services) return printCallError(why);
  Owned<objects::TaskT> tasks;
  std::vector<std::string> missing;
  for (const auto& ref : o.refs) {
    auto s = resolveService(pointers(*services), ref);
    if (!s) {
      missing.push_back(ref);
      continue;
    }
    auto some = reader.tasks(tasksOfService((*s)->id), why);
    if (!some) return printCallError(why);
    for (auto& t : *some) tasks.push_back(std::move(t));
  }
  if (!missing.empty()) {
    for (const auto& m : missing) std::cerr << "error: no such service: " << m << "\n";
    return 1;
  }
  auto nodes = reader.nodes(why);
  if (!nodes) return printCallError(why);
  return printTasks(o, tasks, *services, *nodes);
}

int nodePs(const Globals& g, PsOptions o) {
  StoreReader reader;
  CallError why;
  if (auto c = reader.connect(g, why); !c) return printCallError(why);
  auto nodes = reader.nodes(why);
  if (!nodes) return printCallError(why);
  if (o.refs.empty()) o.refs.push_back("self");
  std::string self = selfNodeId(g);
  auto all = pointers(*nodes);
  Owned<objects::TaskT> tasks;
  for (const auto& ref : o.refs) {
    // nodes.h resolves Node tables; the object API's copies are matched the same way here.
    std::string id = ref == "self" ? self : ref;
    const objects::NodeT* found = nullptr;
    for (const auto* n : all)
      if (n->id == id || (n->description && n->description->hostname == id)) found = n;
    if (!found) {
      std::vector<const objects::NodeT*> prefixed;
      for (const auto* n : all)
        if (!id.empty() && n->id.rfind(id, 0) == 0) prefixed.push_back(n);
      if (prefixed.size() == 1) found = prefixed.front();
    }
    if (!found) {
      std::cerr << "Error response from daemon: node " << ref
                << (ref == "self" && self.empty()
                        ? " not known: is this node in a swarm (shoal info)?"
                        : " not found")
                << "\n";
      return 1;
    }
    auto some = reader.tasks(tasksOnNode(found->id), why);
    if (!some) return printCallError(why);
    for (auto& t : *some) tasks.push_back(std::move(t));
  }
  auto services = reader.services(why);
  if (!services) return printCallError(why);
  return printTasks(o, tasks, *services, *nodes);
}

int inspect(const Globals& g, const std::vector<std::string>& refs, const std::string& formatFlag,
            bool pretty) {
  auto format = InspectFormat::parse(pretty ? "" : formatFlag);
  if (!format) {
    std::cerr << "error: --format: " << format.error().message << "\n";
    return 2;
  }
  StoreReader reader;
  CallError why;
  if (auto c = reader.connect(g, why); !c) return printCallError(why);
  auto services = reader.services(why);
  if (!services) return printCallError(why);
  int64_t now = nowNanos();
  std::vector<nlohmann::json> objects;
  std::vector<std::string> errors;
  for (const auto& ref : refs) {
    auto s = resolveService(pointers(*services), ref);
    if (!s) {
      errors.push_back(s.error().message);
      continue;
    }
    auto tasks = reader.tasks(tasksOfService((*s)->id), why);
    if (!tasks) return printCallError(why);
    if (pretty)
      std::cout << servicePretty(**s, pointers(*tasks), now);
    else
      objects.push_back(serviceInspect(**s, pointers(*tasks), now));
  }
  if (!pretty && (!objects.empty() || format->kind() != InspectFormat::Kind::Template)) {
    auto text = format->render(objects);
    if (!text) {
      std::cerr << "error: --format: " << text.error().message << "\n";
      return 1;
    }
    std::cout << *text;
  }
  for (const auto& e : errors) std::cerr << "Error response from daemon: " << e << "\n";
  return errors.empty() ? 0 : 1;
}

void addPsFlags(CLI::App& sub, PsOptions& o) {
  sub.add_option("-f,--filter", o.filters,
                 "Filter output based on conditions provided (id=, name=, node=, desired-state=)");
  sub.add_flag("--no-trunc", o.noTrunc, "Do not truncate output");
  sub.add_flag("-q,--quiet", o.quiet, "Only display task IDs");
  sub.add_option("--format", o.format,
                 "Format output: 'table', 'table TEMPLATE', 'json' or a Go template");
}

}  // namespace

void addServiceCommands(CLI::App& app, Globals& g, Outcome& outcome) {
  auto* service = app.add_subcommand("service", "Manage swarm services");
  service->require_subcommand(1);

  static WaitOptions createWait;
  auto* c = service->add_subcommand("create", "Create a new service");
  addFlags(*c, createFlags());
  addWaitFlags(*c, createWait);
  c->prefix_command();  // IMAGE and what follows are the task's, not shoal's (docker's
                        // SetInterspersed(false))
  c->callback([&g, &outcome, c] { outcome.code = create(g, *c, createWait); });

  static WaitOptions updateWait;
  static std::string updateRef;
  static bool updateRollback = false;
  auto* u = service->add_subcommand("update", "Update a service");
  addFlags(*u, updateFlags());
  addWaitFlags(*u, updateWait);
  u->add_flag("--rollback", updateRollback, "Rollback to previous specification");
  u->add_option("SERVICE", updateRef, "Service name, id or id prefix")->required();
  u->callback(
      [&g, &outcome, u] { outcome.code = update(g, *u, updateRef, updateRollback, updateWait); });

  static WaitOptions scaleWait;
  static std::vector<std::string> scaleSpecs;
  auto* sc = service->add_subcommand("scale", "Scale one or multiple replicated services");
  addWaitFlags(*sc, scaleWait);
  sc->add_option("SERVICE=REPLICAS", scaleSpecs, "e.g. web=3")->required();
  sc->callback([&g, &outcome] { outcome.code = scale(g, scaleSpecs, scaleWait); });

  static WaitOptions rollbackWait;
  static std::string rollbackRef;
  auto* rb = service->add_subcommand("rollback", "Revert changes to a service's configuration");
  addWaitFlags(*rb, rollbackWait);
  rb->add_option("SERVICE", rollbackRef, "Service name, id or id prefix")->required();
  rb->callback([&g, &outcome] { outcome.code = rollback(g, rollbackRef, rollbackWait); });

  static std::vector<std::string> rmRefs;
  auto* rm = service->add_subcommand("rm", "Remove one or more services");
  rm->alias("remove");
  rm->add_option("SERVICE", rmRefs, "Service name, id or id prefix")->required();
  rm->callback([&g, &outcome] { outcome.code = remove(g, rmRefs); });

  static LsOptions lsOptions;
  auto* l = service->add_subcommand("ls", "List services");
  l->alias("list");
  l->add_flag("-q,--quiet", lsOptions.quiet, "Only display IDs");
  l->add_option("-f,--filter", lsOptions.filters,
                "Filter output based on conditions provided (id=, name=, mode=, label=)");
  l->add_option("--format", lsOptions.format,
                "Format output: 'table', 'table TEMPLATE', 'json' or a Go template");
  l->callback([&g, &outcome] { outcome.code = ls(g, lsOptions); });

  static PsOptions psOptions;
  auto* p = service->add_subcommand("ps", "List the tasks of one or more services");
  addPsFlags(*p, psOptions);
  p->add_option("SERVICE", psOptions.refs, "Service name, id or id prefix")->required();
  p->callback([&g, &outcome] { outcome.code = ps(g, psOptions); });

  static std::vector<std::string> inspectRefs;
  static std::string inspectFormat;
  static bool pretty = false;
  auto* in =
      service->add_subcommand("inspect", "Display detailed information on one or more services");
  in->add_flag("--pretty", pretty, "Print the information in a human friendly format");
  in->add_option("-f,--format", inspectFormat, "Format output: 'json' or a Go template");
  in->add_option("SERVICE", inspectRefs, "Service name, id or id prefix")->required();
  in->callback([&g, &outcome] { outcome.code = inspect(g, inspectRefs, inspectFormat, pretty); });
}

void addNodePsCommand(CLI::App& node, Globals& g, Outcome& outcome) {
  static PsOptions nodePsOptions;
  auto* p = node.add_subcommand(
      "ps", "List tasks running on one or more nodes, defaults to current node");
  addPsFlags(*p, nodePsOptions);
  p->add_option("NODE", nodePsOptions.refs, "Node id, id prefix, hostname or self (the default)");
  p->callback([&g, &outcome] { outcome.code = nodePs(g, nodePsOptions); });
}

}  // namespace shoal::cli
