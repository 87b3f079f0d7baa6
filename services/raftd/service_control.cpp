#include "services/raftd/service_control.h"

#include <sodium.h>

#include <spdlog/spdlog.h>

#include <chrono>
#include <optional>

#include "common/ids.h"
#include "common/object_codec.h"
#include "common/spec_digest.h"

namespace shoal::raftd {

namespace {

using objects::ObjectKind;
using objects::Operation;
using wire::ErrorCode;

// Service requests come from people (the CLI); more waiting than this is a loop gone wrong
// somewhere, refused rather than queued without bound.
constexpr size_t kMaxQueued = 64;
// Re-reads of an update or rm whose Service changed under it (schedulerd writes its endpoint
// and update status) before the Conflict is the caller's.
constexpr int kMaxAttempts = 3;

const char* const kChanged = "the service changed since it was read; run the command again";

std::string str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }

int64_t nowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

ErrorCode codeOf(const Error& e) {
  auto code = static_cast<ErrorCode>(e.code);
  return code == ErrorCode::None ? ErrorCode::Internal : code;
}

// Whether the tasks' template or endpoint differ (schedulerd's dirty check): an update then,
// not a scale.
bool templateChanged(const objects::ServiceT& current, const objects::ServiceSpecT& spec) {
  objects::ServiceT next;
  next.spec = std::make_unique<objects::ServiceSpecT>(spec);
  return taskSpecDigest(current) != taskSpecDigest(next);
}

// The service as an update to `spec` (or, when it is null, a rollback) makes it, checked
// against `objects`.
Result<std::unique_ptr<objects::ServiceT>> updated(const objects::ServiceT& current,
                                                   const objects::ServiceSpecT* spec,
                                                   const service_rules::Objects& objects) {
  auto service = std::make_unique<objects::ServiceT>(current);
  if (!spec) {
    if (auto st = service_rules::applyRollback(*service, nowNs()); !st) return st.error();
    if (auto st = service_rules::validate(*service->spec, objects, &current); !st)
      return Error{"the previous spec of service " + service_rules::nameOf(current) +
                       " cannot come back: " + st.error().message,
                   st.error().code};
    return service;
  }
  auto next = std::make_unique<objects::ServiceSpecT>(*spec);
  if (auto st = service_rules::validate(*next, objects, &current); !st) return st.error();
  bool changed = templateChanged(current, *next);
  service_rules::applyUpdate(*service, std::move(next), changed, nowNs());
  return service;
}

}  // namespace

// --- Setup and the queue ---------------------------------------------------------------------

Result<std::unique_ptr<ServiceControl>> ServiceControl::start(Daemon& daemon, RaftNode& node) {
  std::unique_ptr<ServiceControl> c(new ServiceControl(daemon, node));
  ServiceControl* self = c.get();
  daemon.server().serve(kServiceProtocol, [self](bus::Call call) { self->enqueue(std::move(call)); });
  daemon.addStatus([self](nlohmann::json& j) { self->status(j); });
  return c;
}

ServiceControl::ServiceControl(Daemon& daemon, RaftNode& node)
    : daemon_(daemon), store_(daemon.loop(), node) {}

ServiceControl::~ServiceControl() { *alive_ = false; }

void ServiceControl::status(nlohmann::json& j) const {
  j["service_api"] = {{"served", served_},
                      {"refused", refused_},
                      {"busy", busy_},
                      {"queued", queue_.size()},
                      {"last_error", lastError_}};
}

void ServiceControl::enqueue(bus::Call call) {
  if (queue_.size() >= kMaxQueued)
    return call.fail(ErrorCode::ResourceExhausted,
                     std::to_string(queue_.size()) + " service requests wait already; retry shortly");
  queue_.push_back(std::move(call));
  if (!busy_) next();
}

void ServiceControl::next() {
  while (!busy_ && !queue_.empty()) {
    auto r = std::make_shared<Request>(Request{std::move(queue_.front())});
    queue_.pop_front();
    if (r->call.expired()) {  // its caller gave up while it waited
      r->call.fail(ErrorCode::DeadlineExceeded, "the service request waited too long");
      continue;
    }
    busy_ = true;
    serve(std::move(r));
  }
}

void ServiceControl::done() {
  busy_ = false;
  std::weak_ptr<bool> alive = alive_;
  daemon_.loop().post([this, alive] {
    if (!alive.expired()) next();
  });
}

void ServiceControl::reply(const Req& r, const std::string& serviceId) {
  ++served_;
  flatbuffers::FlatBufferBuilder fbb;
  auto body = serviceapi::CreateServiceReplyDirect(fbb, serviceId.c_str());
  r->call.reply(bus::message<serviceapi::Envelope>(fbb, serviceapi::Body::ServiceReply, body.Union()));
  done();
}

void ServiceControl::replyObject(const Req& r, Result<std::string> id) {
  if (!id) return fail(r, id.error());
  ++served_;
  flatbuffers::FlatBufferBuilder fbb;
  auto body = serviceapi::CreateObjectReplyDirect(fbb, id->c_str());
  r->call.reply(bus::message<serviceapi::Envelope>(fbb, serviceapi::Body::ObjectReply, body.Union()));
  done();
}

void ServiceControl::fail(const Req& r, ErrorCode code, const std::string& message) {
  if (code == ErrorCode::None) code = ErrorCode::Internal;  // an error always says one
  ++refused_;
  lastError_ = message;
  spdlog::info("service api: refused {}: {}",
               serviceapi::EnumNameBody(r->call.as<serviceapi::Envelope>()->body_type()), message);
  r->call.fail(code, message);
  done();
}

// error.code is a wire::ErrorCode: errors here come from the store API or service_rules.h.
void ServiceControl::fail(const Req& r, const Error& error) { fail(r, codeOf(error), error.message); }

void ServiceControl::serve(Req r) {
  auto* env = r->call.as<serviceapi::Envelope>();
  if (!env->body())
    return fail(r, ErrorCode::BadMessage,
                std::string("service message ") + serviceapi::EnumNameBody(env->body_type()) +
                    " has no body");
  if (serveSecrets(r)) return;
  switch (env->body_type()) {
    case serviceapi::Body::CreateServiceRequest:
      return create(std::move(r));
    case serviceapi::Body::UpdateServiceRequest:
      return update(std::move(r));
    case serviceapi::Body::RemoveServiceRequest: {
      std::string query = str(env->body_as_RemoveServiceRequest()->service());
      return remove(std::move(r), std::move(query), 0);
    }
    default:
      return fail(r, ErrorCode::Unimplemented,
                  std::string("service message ") + serviceapi::EnumNameBody(env->body_type()) +
                      " is not a request raftd serves");
  }
}

bool ServiceControl::serveSecrets(const Req& r) {
  auto* env = r->call.as<serviceapi::Envelope>();
  auto then = [this, r](Result<std::string> id) { replyObject(r, std::move(id)); };
  switch (env->body_type()) {
    case serviceapi::Body::CreateSecretRequest: {
      auto* spec = env->body_as_CreateSecretRequest()->spec();
      if (!spec) fail(r, ErrorCode::InvalidArgument, "a secret create carries no spec");
      else secrets_.createSecret(std::shared_ptr<objects::SecretSpecT>(spec->UnPack()), then);
      return true;
    }
    case serviceapi::Body::CreateConfigRequest: {
      auto* spec = env->body_as_CreateConfigRequest()->spec();
      if (!spec) fail(r, ErrorCode::InvalidArgument, "a config create carries no spec");
      else secrets_.createConfig(std::shared_ptr<objects::ConfigSpecT>(spec->UnPack()), then);
      return true;
    }
    case serviceapi::Body::RemoveSecretRequest:
      secrets_.removeSecret(str(env->body_as_RemoveSecretRequest()->secret()), then);
      return true;
    case serviceapi::Body::RemoveConfigRequest:
      secrets_.removeConfig(str(env->body_as_RemoveConfigRequest()->config()), then);
      return true;
    default:
      return false;
  }
}

// --- Reading what the checks need ------------------------------------------------------------

template <class T>
void ServiceControl::listInto(ObjectKind kind, const char* what,
                              std::vector<std::unique_ptr<typename T::NativeTableType>>& out,
                              std::function<void(Status)> fn) {
  store_.list(kind, false, [&out, what, fn = std::move(fn)](Result<std::vector<std::string>> r) {
    if (!r) return fn(Error{"reading the " + std::string(what) + "s: " + r.error().message,
                            r.error().code});
    for (const auto& bytes : *r) {
      auto o = objects_codec::unpack<T>(bytes, what);
      if (!o) return fn(o.error());
      out.push_back(std::move(o).value());
    }
    fn(Status{});
  });
}

void ServiceControl::readObjects(Then<ObjectsPtr> fn) {
  // The four lists at once; the answer once all came back, the first error if one failed.
  struct Gather {
    ObjectsPtr objects = std::make_shared<service_rules::Objects>();
    int left = 4;
    std::optional<Error> error;
    Then<ObjectsPtr> fn;
  };
  auto g = std::make_shared<Gather>();
  g->fn = std::move(fn);
  auto one = [g](Status st) {
    if (!st && !g->error) g->error = st.error();
    if (--g->left > 0) return;
    if (g->error) return g->fn(*g->error);
    g->fn(g->objects);
  };
  listInto<objects::Service>(ObjectKind::Service, "service", g->objects->services, one);
  listInto<objects::Network>(ObjectKind::Network, "network", g->objects->networks, one);
  listInto<objects::Secret>(ObjectKind::Secret, "secret", g->objects->secrets, one);
  listInto<objects::Config>(ObjectKind::Config, "config", g->objects->configs, one);
}

// --- The operations --------------------------------------------------------------------------

void ServiceControl::create(Req r) {
  auto* req = r->call.as<serviceapi::Envelope>()->body_as_CreateServiceRequest();
  if (!req->spec())
    return fail(r, ErrorCode::InvalidArgument, "a service create carries no spec");
  std::shared_ptr<objects::ServiceSpecT> spec(req->spec()->UnPack());
  readObjects([this, r, spec](Result<ObjectsPtr> objects) {
    if (!objects) return fail(r, objects.error());
    if (!spec->annotations) spec->annotations = std::make_unique<objects::AnnotationsT>();
    if (spec->annotations->name.empty())  // docker names a service created without --name
      spec->annotations->name = service_rules::generatedName(
          (*objects)->services, [](uint32_t n) { return randombytes_uniform(n); });
    if (auto st = service_rules::validate(*spec, **objects, nullptr); !st)
      return fail(r, st.error());
    auto service = service_rules::newService(newId(), std::make_unique<objects::ServiceSpecT>(*spec));
    std::string id = service->id, name = service_rules::nameOf(*service);
    store_.commit(
        {{ObjectKind::Service, Operation::Create, id, 0, objects_codec::pack<objects::Service>(*service)}},
        [this, r, id, name](Result<uint64_t> index) {
          if (!index) {
            // The id is new: a Conflict is the store's unique name index (a create meanwhile).
            if (codeOf(index.error()) == ErrorCode::Conflict)
              return fail(r, ErrorCode::Conflict, "a service named " + name + " already exists");
            return fail(r, codeOf(index.error()),
                        "creating service " + name + ": " + index.error().message);
          }
          spdlog::info("service {} ({}) created", name, id);
          reply(r, id);
        });
  });
}

void ServiceControl::update(Req r) {
  auto* req = r->call.as<serviceapi::Envelope>()->body_as_UpdateServiceRequest();
  UpdateArgs args{str(req->service()), req->version(), nullptr};
  if (!req->rollback()) {
    if (!req->spec())
      return fail(r, ErrorCode::InvalidArgument,
                  "a service update carries no spec (a rollback sets rollback)");
    args.spec.reset(req->spec()->UnPack());
  }
  updateOnce(std::move(r), std::move(args), 0);
}

void ServiceControl::updateOnce(Req r, UpdateArgs args, int attempt) {
  readObjects([this, r, args, attempt](Result<ObjectsPtr> objects) {
    if (!objects) return fail(r, objects.error());
    auto found = service_rules::resolveService(args.query, (*objects)->services);
    if (!found) return fail(r, found.error());
    const objects::ServiceT& current = **found;
    uint64_t version = objects_codec::versionOf(current.meta);
    if (args.version != 0 && args.version != version) return fail(r, ErrorCode::Conflict, kChanged);
    auto service = updated(current, args.spec.get(), **objects);
    if (!service) return fail(r, service.error());
    std::string id = (*service)->id, name = service_rules::nameOf(**service);
    store_.commit(
        {{ObjectKind::Service, Operation::Update, id, version,
          objects_codec::pack<objects::Service>(**service)}},
        [this, r, args, attempt, id, name](Result<uint64_t> index) {
          if (index) {
            spdlog::info("service {} {}", name, args.spec ? "updated" : "rolled back");
            return reply(r, id);
          }
          auto code = codeOf(index.error());
          if (code == ErrorCode::Conflict && args.version == 0 && attempt + 1 < kMaxAttempts)
            return updateOnce(r, args, attempt + 1);
          if (code == ErrorCode::Conflict) return fail(r, code, kChanged);
          if (code == ErrorCode::NotFound)
            return fail(r, code, "service " + name + " was removed meanwhile");
          fail(r, code, "updating service " + name + ": " + index.error().message);
        });
  });
}

void ServiceControl::remove(Req r, std::string query, int attempt) {
  auto services = std::make_shared<std::vector<std::unique_ptr<objects::ServiceT>>>();
  listInto<objects::Service>(ObjectKind::Service, "service", *services,
                             [this, r, query, attempt, services](Status st) {
    if (!st) return fail(r, st.error());
    auto found = service_rules::resolveService(query, *services);
    if (!found) return fail(r, found.error());
    std::string id = (*found)->id, name = service_rules::nameOf(**found);
    uint64_t version = objects_codec::versionOf((*found)->meta);
    store_.commit({{ObjectKind::Service, Operation::Delete, id, version, {}}},
                  [this, r, query, attempt, id, name](Result<uint64_t> index) {
      if (index) {
        spdlog::info("service {} ({}) removed", name, id);
        return reply(r, id);
      }
      auto code = codeOf(index.error());
      // schedulerd writes the service's endpoint and update status: read it again.
      if (code == ErrorCode::Conflict && attempt + 1 < kMaxAttempts)
        return remove(r, query, attempt + 1);
      if (code == ErrorCode::NotFound)
        return fail(r, code, "service " + name + " was removed meanwhile");
      fail(r, code, "removing service " + name + ": " + index.error().message);
    });
  });
}

}  // namespace shoal::raftd
