// The rules of raftd's service API (services/raftd/service_rules.h): Swarm's defaults, every
// refusal with its exact message, name resolution, and the changes of update and rollback.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <string>

#include "services/raftd/service_rules.h"
#include "wire_generated.h"

namespace shoal::raftd::service_rules {
namespace {

using objects::ObjectKind;
constexpr int kInvalid = static_cast<int>(wire::ErrorCode::InvalidArgument);

// A replicated service "web" of busybox, as the CLI sends it (defaults not filled).
std::unique_ptr<objects::ServiceSpecT> webSpec(const std::string& name = "web") {
  auto spec = std::make_unique<objects::ServiceSpecT>();
  spec->annotations = std::make_unique<objects::AnnotationsT>();
  spec->annotations->name = name;
  spec->task = std::make_unique<objects::TaskSpecT>();
  spec->task->container = std::make_unique<objects::ContainerSpecT>();
  spec->task->container->image = "busybox";
  spec->mode = std::make_unique<objects::ServiceModeT>();
  spec->mode->replicas = 2;
  return spec;
}

std::unique_ptr<objects::PortConfigT> port(uint32_t published, uint32_t target = 80,
                                           objects::PublishMode mode = objects::PublishMode::Ingress) {
  auto p = std::make_unique<objects::PortConfigT>();
  p->published_port = published;
  p->target_port = target;
  p->publish_mode = mode;
  return p;
}

// The store of these tests: service "db" (id db0...) publishing 5432, network "front",
// the ingress network, secret "pw", config "conf".
Objects store() {
  Objects o;
  auto db = newService("dbid000000000000000000000", webSpec("db"));
  db->spec->endpoint = std::make_unique<objects::EndpointSpecT>();
  db->spec->endpoint->ports.push_back(port(5432, 5432));
  o.services.push_back(std::move(db));
  auto net = [](const std::string& id, const std::string& name, bool ingress) {
    auto n = std::make_unique<objects::NetworkT>();
    n->id = id;
    n->spec = std::make_unique<objects::NetworkSpecT>();
    n->spec->annotations = std::make_unique<objects::AnnotationsT>();
    n->spec->annotations->name = name;
    n->spec->ingress = ingress;
    return n;
  };
  o.networks.push_back(net("frontid000000000000000000", "front", false));
  o.networks.push_back(net("ingressid0000000000000000", "ingress", true));
  auto secret = std::make_unique<objects::SecretT>();
  secret->id = "pwid000000000000000000000";
  secret->spec = std::make_unique<objects::SecretSpecT>();
  secret->spec->annotations = std::make_unique<objects::AnnotationsT>();
  secret->spec->annotations->name = "pw";
  o.secrets.push_back(std::move(secret));
  auto config = std::make_unique<objects::ConfigT>();
  config->id = "confid0000000000000000000";
  config->spec = std::make_unique<objects::ConfigSpecT>();
  config->spec->annotations = std::make_unique<objects::AnnotationsT>();
  config->spec->annotations->name = "conf";
  o.configs.push_back(std::move(config));
  return o;
}

// The message of validating webSpec() changed by `change`; fails when it was accepted.
std::string refusal(const std::function<void(objects::ServiceSpecT&)>& change,
                    const objects::ServiceT* self = nullptr, int code = kInvalid) {
  auto spec = webSpec();
  change(*spec);
  auto objects = store();
  auto st = validate(*spec, objects, self);
  REQUIRE_MESSAGE(!st.ok(), "the spec was accepted");
  CHECK(st.error().code == code);
  return st.error().message;
}

TEST_CASE("defaults are Swarm's, and a good spec passes") {
  auto spec = webSpec();
  auto objects = store();
  REQUIRE(validate(*spec, objects, nullptr).ok());
  CHECK(spec->task->restart->condition == objects::RestartCondition::Any);
  CHECK(spec->task->restart->delay == 5 * kSecond);
  CHECK(spec->task->container->stop_grace_period == 10 * kSecond);
  for (auto* u : {spec->update.get(), spec->rollback.get()}) {
    REQUIRE(u);
    CHECK(u->parallelism == 1);
    CHECK(u->monitor == 5 * kSecond);
    CHECK(u->failure_action == objects::UpdateFailureAction::Pause);
  }
  CHECK(spec->mode->replicas == 2);

  SUBCASE("what the CLI gave is kept") {
    auto s = webSpec();
    s->update = std::make_unique<objects::UpdateConfigT>();
    s->update->parallelism = 0;  // all at once
    s->update->monitor = 2 * kSecond;
    s->task->restart = std::make_unique<objects::RestartPolicyT>();
    s->task->restart->condition = objects::RestartCondition::None;
    s->task->restart->delay = kSecond;
    REQUIRE(validate(*s, objects, nullptr).ok());
    CHECK(s->update->parallelism == 0);
    CHECK(s->update->monitor == 2 * kSecond);
    CHECK(s->task->restart->condition == objects::RestartCondition::None);
    CHECK(s->task->restart->delay == kSecond);
  }
}

TEST_CASE("names") {
  CHECK(refusal([](auto& s) { s.annotations->name = ""; }) == "a service needs a name: give --name");
  CHECK(refusal([](auto& s) { s.annotations->name = "-web"; }) ==
        "invalid --name \"-web\": a name starts with a letter or digit, followed by letters, "
        "digits, '_', '.' or '-'");
  CHECK(refusal([](auto& s) { s.annotations->name = "we b"; }).starts_with("invalid --name \"we b\""));
  CHECK(refusal([](auto& s) { s.annotations->name = std::string(64, 'a'); }) ==
        "invalid --name \"" + std::string(64, 'a') + "\": a service name has at most 63 characters");
  CHECK(refusal([](auto& s) { s.annotations->name = "DB"; }, nullptr,
                static_cast<int>(wire::ErrorCode::Conflict)) == "a service named db already exists");
  auto objects = store();
  auto ok = webSpec("a.b_c-9");
  CHECK(validate(*ok, objects, nullptr).ok());
}

TEST_CASE("a service created without a name gets docker's kind of name, never a taken one") {
  auto objects = store();
  uint32_t next = 0;
  auto counter = [&next](uint32_t n) { return next++ % n; };
  std::string name = generatedName(objects.services, counter);
  CHECK(name.find('_') != std::string::npos);
  auto spec = webSpec();
  spec->annotations->name = name;
  CHECK(validate(*spec, objects, nullptr).ok());  // a valid service name
  // Every draw the same name, and that name taken: a number makes it free.
  auto always0 = [](uint32_t) { return uint32_t(0); };
  std::string first = generatedName(objects.services, always0);
  auto taken = std::make_unique<objects::ServiceT>();
  taken->id = "takenid000000000000000000";
  taken->spec = std::make_unique<objects::ServiceSpecT>();
  taken->spec->annotations = std::make_unique<objects::AnnotationsT>();
  taken->spec->annotations->name = first;
  objects.services.push_back(std::move(taken));
  CHECK(generatedName(objects.services, always0) == first + "2");
}

TEST_CASE("image and mode") {
  CHECK(refusal([](auto& s) { s.task->container->image = ""; }) ==
        "a service needs an image: `shoal service create [OPTIONS] IMAGE [COMMAND]`");
  CHECK(refusal([](auto& s) { s.task->container.reset(); }).starts_with("a service needs an image"));
  CHECK(refusal([](auto& s) { s.mode->kind = objects::ServiceModeKind::Global; }) ==
        "invalid --replicas 2: a global service runs one task per node and takes no replica count");
  CHECK(refusal([](auto& s) { s.mode->replicas = uint64_t(-1); }) ==
        "invalid --replicas 18446744073709551615: that is a negative number read as unsigned; "
        "give 0 or more");
  CHECK(refusal([](auto& s) { s.mode->max_concurrent = 2; }) ==
        "--max-concurrent 2 is for replicated jobs, not for a replicated service");
  CHECK(refusal([](auto& s) {
          s.mode->replicas = 0;
          s.mode->total_completions = 3;
        }) == "--total-completions 3 is for replicated jobs, not for a replicated service");
  CHECK(refusal([](auto& s) {
          s.task->placement = std::make_unique<objects::PlacementT>();
          s.task->placement->max_replicas = uint64_t(-2);
        }).starts_with("invalid --replicas-max-per-node 18446744073709551614: that is a negative"));
  auto objects = store();
  auto global = webSpec();
  global->mode->kind = objects::ServiceModeKind::Global;
  global->mode->replicas = 0;
  CHECK(validate(*global, objects, nullptr).ok());
  auto job = webSpec();
  job->mode->kind = objects::ServiceModeKind::ReplicatedJob;
  job->mode->max_concurrent = 2;
  job->mode->total_completions = 10;
  CHECK(validate(*job, objects, nullptr).ok());
  CHECK(refusal([](auto& s) { s.mode->kind = static_cast<objects::ServiceModeKind>(9); }) ==
        "invalid --mode 9: this raftd knows no such value (is the CLI newer than the manager?)");
}

TEST_CASE("update: the name and the mode kind stay") {
  auto web = newService("webid00000000000000000000", webSpec());
  CHECK(refusal([](auto& s) { s.annotations->name = "web2"; }, web.get()) ==
        "invalid --name \"web2\": service web cannot be renamed; create a new service under that "
        "name");
  CHECK(refusal([](auto& s) {
          s.mode->kind = objects::ServiceModeKind::Global;
          s.mode->replicas = 0;
        }, web.get()) ==
        "invalid --mode global: service web is replicated and its mode cannot change; remove it "
        "and create it again");
  // Its own name and ports are no clash.
  auto objects = store();
  auto spec = webSpec();
  CHECK(validate(*spec, objects, web.get()).ok());
  auto* db = objects.services.front().get();
  auto dbSpec = webSpec("db");
  dbSpec->endpoint = std::make_unique<objects::EndpointSpecT>();
  dbSpec->endpoint->ports.push_back(port(5432, 5432));
  CHECK(validate(*dbSpec, objects, db).ok());
}

TEST_CASE("restart, update and resources out of range") {
  CHECK(refusal([](auto& s) {
          s.update = std::make_unique<objects::UpdateConfigT>();
          s.update->max_failure_ratio = 1.5f;
        }) == "invalid --update-max-failure-ratio 1.500000: a ratio is from 0 to 1");
  CHECK(refusal([](auto& s) {
          s.rollback = std::make_unique<objects::UpdateConfigT>();
          s.rollback->max_failure_ratio = std::nanf("");
        }).starts_with("invalid --rollback-max-failure-ratio"));
  CHECK(refusal([](auto& s) {
          s.update = std::make_unique<objects::UpdateConfigT>();
          s.update->delay = -kSecond;
        }) == "invalid --update-delay -1s: a duration cannot be negative");
  CHECK(refusal([](auto& s) {
          s.update = std::make_unique<objects::UpdateConfigT>();
          s.update->parallelism = uint64_t(-3);
        }).starts_with("invalid --update-parallelism 18446744073709551613: that is a negative"));
  CHECK(refusal([](auto& s) {
          s.task->restart = std::make_unique<objects::RestartPolicyT>();
          s.task->restart->window = -2 * kSecond;
        }) == "invalid --restart-window -2s: a duration cannot be negative");
  CHECK(refusal([](auto& s) {
          s.task->restart = std::make_unique<objects::RestartPolicyT>();
          s.task->restart->max_attempts = uint64_t(-1);
        }).starts_with("invalid --restart-max-attempts 18446744073709551615"));
  CHECK(refusal([](auto& s) { s.task->container->stop_grace_period = -kSecond; }) ==
        "invalid --stop-grace-period -1s: a duration cannot be negative");

  auto resources = [](int64_t limitMem, int64_t reserveMem, int64_t limitCpu, int64_t reserveCpu) {
    return [=](objects::ServiceSpecT& s) {
      s.task->resources = std::make_unique<objects::ResourceRequirementsT>();
      s.task->resources->limits = std::make_unique<objects::ResourcesT>();
      s.task->resources->reservations = std::make_unique<objects::ResourcesT>();
      s.task->resources->limits->memory_bytes = limitMem;
      s.task->resources->reservations->memory_bytes = reserveMem;
      s.task->resources->limits->nano_cpus = limitCpu;
      s.task->resources->reservations->nano_cpus = reserveCpu;
    };
  };
  CHECK(refusal(resources(1 << 20, 0, 0, 0)) ==
        "invalid --limit-memory 1M: the minimum is 4M (a container cannot start in less)");
  CHECK(refusal(resources(512 << 20, 1 << 30, 0, 0)) ==
        "invalid --reserve-memory 1G: it is more than --limit-memory 512M");
  CHECK(refusal(resources(0, 0, kSecond, 1'500'000'000)) ==
        "invalid --reserve-cpu 1.5: it is more than --limit-cpu 1");
  CHECK(refusal(resources(0, -1, 0, 0)) == "invalid --reserve-memory -1: it cannot be negative");
  auto objects = store();
  auto fine = webSpec();
  resources(4 << 20, 0, 0, 2 * kSecond)(*fine);  // a reservation without a limit is fine
  CHECK(validate(*fine, objects, nullptr).ok());
}

TEST_CASE("constraints and preferences") {
  auto constraint = [](std::string c) {
    return [c](objects::ServiceSpecT& s) {
      s.task->placement = std::make_unique<objects::PlacementT>();
      s.task->placement->constraints.push_back(c);
    };
  };
  CHECK(refusal(constraint("node.labels.zone=b")) ==
        "invalid --constraint \"node.labels.zone=b\": constraint \"node.labels.zone=b\" has no "
        "== or != operator; valid forms: node.id, node.hostname, node.role, node.platform.os, "
        "node.platform.arch, node.labels.<label> or engine.labels.<label>, then == or !=, then a "
        "value; e.g. node.labels.zone==b");
  CHECK(refusal(constraint("nodes.role==manager")) ==
        "invalid --constraint \"nodes.role==manager\": constraint \"nodes.role==manager\" names "
        "an unknown key \"nodes.role\"; valid forms: node.id, node.hostname, node.role, node.platform.os, "
        "node.platform.arch, node.labels.<label> or engine.labels.<label>, then == or !=, then a "
        "value; e.g. node.labels.zone==b");
  CHECK(refusal(constraint("node.labels.zone==")) ==
        "invalid --constraint \"node.labels.zone==\": constraint \"node.labels.zone==\" has no "
        "value; valid forms: node.id, node.hostname, node.role, node.platform.os, "
        "node.platform.arch, node.labels.<label> or engine.labels.<label>, then == or !=, then a "
        "value; e.g. node.labels.zone==b");
  CHECK(refusal(constraint("node.role==boss")) ==
        "invalid --constraint \"node.role==boss\": node.role is manager or worker");
  CHECK(refusal([](auto& s) {
          s.task->placement = std::make_unique<objects::PlacementT>();
          auto p = std::make_unique<objects::PlacementPreferenceT>();
          p->spread_descriptor = "zone";
          s.task->placement->preferences.push_back(std::move(p));
        }) ==
        "invalid --placement-pref \"spread=zone\": placement preference spread descriptor "
        "\"zone\" is not supported; a spread descriptor is node.labels.<label> or "
        "engine.labels.<label>, e.g. node.labels.zone");
  auto objects = store();
  auto fine = webSpec();
  constraint(" node.labels.zone != b ")(*fine);
  fine->task->placement->constraints.push_back("node.role==Manager");
  fine->task->placement->preferences.push_back(std::make_unique<objects::PlacementPreferenceT>());
  fine->task->placement->preferences.back()->spread_descriptor = "node.labels.zone";
  CHECK(validate(*fine, objects, nullptr).ok());
}

TEST_CASE("networks, secrets and configs resolve to ids") {
  auto objects = store();
  auto spec = webSpec();
  auto attach = std::make_unique<objects::NetworkAttachmentConfigT>();
  attach->target = "front";
  spec->task->networks.push_back(std::move(attach));
  auto secret = std::make_unique<objects::SecretReferenceT>();
  secret->secret_name = "pw";
  spec->task->container->secrets.push_back(std::move(secret));
  auto config = std::make_unique<objects::ConfigReferenceT>();
  config->config_id = "confid0000000000000000000";
  spec->task->container->configs.push_back(std::move(config));
  REQUIRE(validate(*spec, objects, nullptr).ok());
  CHECK(spec->task->networks[0]->target == "frontid000000000000000000");
  CHECK(spec->task->container->secrets[0]->secret_id == "pwid000000000000000000000");
  CHECK(spec->task->container->configs[0]->config_name == "conf");

  auto network = [](std::string target) {
    return [target](objects::ServiceSpecT& s) {
      auto a = std::make_unique<objects::NetworkAttachmentConfigT>();
      a->target = target;
      s.task->networks.push_back(std::move(a));
    };
  };
  CHECK(refusal(network("back")) ==
        "invalid --network \"back\": no such network; `shoal network ls` lists them");
  CHECK(refusal(network("ingress")) ==
        "invalid --network \"ingress\": the ingress network is attached by publishing ports, not "
        "by --network");
  CHECK(refusal([&](auto& s) {
          network("front")(s);
          network("frontid000000000000000000")(s);
        }) == "invalid --network \"frontid000000000000000000\": it is given twice");
  CHECK(refusal([](auto& s) {
          auto r = std::make_unique<objects::SecretReferenceT>();
          r->secret_name = "nope";
          s.task->container->secrets.push_back(std::move(r));
        }) == "invalid --secret \"nope\": no such secret; `shoal secret ls` lists them");
  CHECK(refusal([](auto& s) {
          auto r = std::make_unique<objects::ConfigReferenceT>();
          r->config_name = "nope";
          s.task->container->configs.push_back(std::move(r));
        }) == "invalid --config \"nope\": no such config; `shoal config ls` lists them");
}

TEST_CASE("ports") {
  auto publish = [](std::vector<uint32_t> ports, objects::ResolutionMode mode = objects::ResolutionMode::Vip,
                    objects::PublishMode pm = objects::PublishMode::Ingress) {
    return [=](objects::ServiceSpecT& s) {
      s.endpoint = std::make_unique<objects::EndpointSpecT>();
      s.endpoint->mode = mode;
      for (auto p : ports) s.endpoint->ports.push_back(port(p, 80, pm));
    };
  };
  CHECK(refusal(publish({5432})) ==
        "invalid --publish 5432/tcp: port 5432 is already published by service db");
  CHECK(refusal(publish({8080, 8080})) == "invalid --publish 8080/tcp: the port is published twice");
  CHECK(refusal(publish({8080}, objects::ResolutionMode::Dnsrr)) ==
        "invalid --publish 8080/tcp: --endpoint-mode dnsrr has no virtual IP for ingress ports; "
        "publish with mode=host, or use --endpoint-mode vip");
  CHECK(refusal([](auto& s) {
          s.endpoint = std::make_unique<objects::EndpointSpecT>();
          s.endpoint->ports.push_back(port(8080));
          s.endpoint->ports.back()->protocol = static_cast<objects::PortProtocol>(7);
        }) ==
        "invalid --publish protocol 7: this raftd knows no such value (is the CLI newer than the "
        "manager?)");
  CHECK(refusal(publish({70000})) ==
        "invalid --publish published=70000: a published port is 1 to 65535 (or none, for one "
        "from 30000-32767)");
  CHECK(refusal([](auto& s) {
          s.endpoint = std::make_unique<objects::EndpointSpecT>();
          s.endpoint->ports.push_back(port(8080, 0));
        }) == "invalid --publish target=0: a target port is 1 to 65535");
  auto objects = store();
  for (auto ok : {publish({5432}, objects::ResolutionMode::Dnsrr, objects::PublishMode::Host),
                  publish({0, 0}), publish({8080})}) {
    auto spec = webSpec();
    ok(*spec);
    CHECK(validate(*spec, objects, nullptr).ok());
  }
  // Another protocol is another port.
  auto udp = webSpec();
  publish({5432})(*udp);
  udp->endpoint->ports[0]->protocol = objects::PortProtocol::Udp;
  CHECK(validate(*udp, objects, nullptr).ok());
}

TEST_CASE("mounts and health checks") {
  auto mount = [](objects::MountType type, std::string source, std::string target) {
    return [=](objects::ServiceSpecT& s) {
      auto m = std::make_unique<objects::MountT>();
      m->type = type;
      m->source = source;
      m->target = target;
      s.task->container->mounts.push_back(std::move(m));
    };
  };
  using MT = objects::MountType;
  CHECK(refusal(mount(MT::Volume, "data", "")) ==
        "invalid --mount source=data: a mount needs a target (target=/path)");
  CHECK(refusal(mount(MT::Volume, "data", "data")) ==
        "invalid --mount target \"data\": it must be an absolute path");
  CHECK(refusal(mount(MT::Bind, "", "/data")) ==
        "invalid --mount target=/data: a bind mount needs a source (source=/host/path)");
  CHECK(refusal(mount(MT::Tmpfs, "x", "/tmp")) ==
        "invalid --mount source \"x\": a tmpfs mount takes no source");
  CHECK(refusal([&](auto& s) {
          mount(MT::Volume, "a", "/d")(s);
          mount(MT::Volume, "b", "/d")(s);
        }) == "invalid --mount target \"/d\": two mounts have that target");

  auto health = [](std::vector<std::string> test, int64_t interval = 0, int retries = 0) {
    return [=](objects::ServiceSpecT& s) {
      s.task->container->healthcheck = std::make_unique<objects::HealthConfigT>();
      s.task->container->healthcheck->test = test;
      s.task->container->healthcheck->interval = interval;
      s.task->container->healthcheck->retries = retries;
    };
  };
  CHECK(refusal(health({"NONE", "x"})) ==
        "invalid health check: NONE takes no command (--no-healthcheck)");
  CHECK(refusal(health({"CMD"})) == "invalid health check: CMD needs a command to run (--health-cmd)");
  CHECK(refusal(health({"CMD-SHELL", "a", "b"})) ==
        "invalid health check: CMD-SHELL takes one shell command (--health-cmd)");
  CHECK(refusal(health({"RUN", "x"})) ==
        "invalid health check test \"RUN\": it starts with NONE, CMD or CMD-SHELL");
  CHECK(refusal(health({"CMD", "true"}, 1000)) ==
        "invalid --health-interval 1µs: the minimum is 1ms (or 0 for the image's own)");
  CHECK(refusal(health({"CMD", "true"}, -kSecond)) ==
        "invalid --health-interval -1s: a duration cannot be negative");
  CHECK(refusal(health({"CMD", "true"}, 0, -1)) ==
        "invalid --health-retries -1: it cannot be negative");
  auto objects = store();
  auto fine = webSpec();
  health({"CMD-SHELL", "curl -f localhost"}, kSecond, 3)(*fine);
  mount(MT::Tmpfs, "", "/tmp")(*fine);
  CHECK(validate(*fine, objects, nullptr).ok());
}

TEST_CASE("resolving a service: id, name, id prefix") {
  auto objects = store();
  objects.services.push_back(newService("dbxd00000000000000000000", webSpec("dbx")));
  auto byId = resolveService("dbid000000000000000000000", objects.services);
  REQUIRE(byId.ok());
  CHECK(nameOf(**byId) == "db");
  auto byName = resolveService("DBX", objects.services);
  REQUIRE(byName.ok());
  CHECK((*byName)->id == "dbxd00000000000000000000");
  CHECK(resolveService("dbi", objects.services).ok());
  auto ambiguous = resolveService("d", objects.services);
  REQUIRE(!ambiguous.ok());
  CHECK(ambiguous.error().code == kInvalid);
  auto none = resolveService("web", objects.services);
  REQUIRE(!none.ok());
  CHECK(none.error().code == static_cast<int>(wire::ErrorCode::NotFound));
  CHECK(none.error().message ==
        "no service \"web\": no service has that name or an ID starting with it; `shoal service "
        "ls` lists them");
}

TEST_CASE("update and rollback") {
  auto web = newService("webid00000000000000000000", webSpec());
  CHECK(web->spec_version == 1);
  auto status = applyRollback(*web, 5);
  REQUIRE(!status.ok());
  CHECK(status.error().message == "service web has no previous spec to roll back to");

  // A scale: no update status.
  auto scaled = webSpec();
  scaled->mode->replicas = 5;
  applyUpdate(*web, std::move(scaled), false, 10);
  CHECK(web->spec_version == 2);
  CHECK(web->previous_spec_version == 1);
  CHECK(web->previous_spec->mode->replicas == 2);
  CHECK(web->spec->mode->replicas == 5);
  CHECK(!web->update_status);

  auto image = webSpec();
  image->task->container->image = "nginx";
  applyUpdate(*web, std::move(image), true, 20);
  CHECK(web->spec_version == 3);
  REQUIRE(web->update_status);
  CHECK(web->update_status->state == objects::UpdateState::Updating);
  CHECK(web->update_status->started_at == 20);
  CHECK(web->update_status->spec_version == 3);
  CHECK(web->update_status->message == "update in progress");

  REQUIRE(applyRollback(*web, 30).ok());
  CHECK(web->spec->task->container->image == "busybox");
  CHECK(web->previous_spec->task->container->image == "nginx");
  CHECK(web->spec_version == 4);
  CHECK(web->previous_spec_version == 3);
  CHECK(web->update_status->state == objects::UpdateState::RollbackStarted);
  CHECK(web->update_status->message == "manually requested rollback");
  CHECK(web->update_status->started_at == 30);
}

}  // namespace
}  // namespace shoal::raftd::service_rules

// --- secrets and configs (`shoal secret|config create|rm`) ---------------------------------------

namespace shoal::raftd::service_rules {
namespace {

constexpr int kConflict = static_cast<int>(wire::ErrorCode::Conflict);

objects::SecretSpecT secretSpec(const std::string& name, size_t bytes) {
  objects::SecretSpecT s;
  s.annotations = std::make_unique<objects::AnnotationsT>();
  s.annotations->name = name;
  s.data.assign(bytes, 'x');
  return s;
}

objects::ConfigSpecT configSpec(const std::string& name, size_t bytes) {
  objects::ConfigSpecT c;
  c.annotations = std::make_unique<objects::AnnotationsT>();
  c.annotations->name = name;
  c.data.assign(bytes, 'x');
  return c;
}

// A service named `name` whose container refers to the secret and config ids given.
std::unique_ptr<objects::ServiceT> userOf(const std::string& name, const std::string& secretId,
                                          const std::string& configId) {
  auto s = newService(name + "id", webSpec(name));
  if (!secretId.empty()) {
    auto r = std::make_unique<objects::SecretReferenceT>();
    r->secret_id = secretId;
    s->spec->task->container->secrets.push_back(std::move(r));
  }
  if (!configId.empty()) {
    auto r = std::make_unique<objects::ConfigReferenceT>();
    r->config_id = configId;
    s->spec->task->container->configs.push_back(std::move(r));
  }
  return s;
}

}  // namespace

TEST_CASE("a secret's name follows docker's rule and its data is 1 byte to 500 KiB") {
  std::vector<std::unique_ptr<objects::SecretT>> none;
  CHECK(validateSecret(secretSpec("db.password_2-x", 1), none).ok());
  CHECK(validateSecret(secretSpec(std::string(64, 'a'), kMaxSecretBytes), none).ok());
  auto longName = validateSecret(secretSpec(std::string(65, 'a'), 1), none);
  REQUIRE_FALSE(longName.ok());
  CHECK(longName.error().code == kInvalid);
  CHECK(longName.error().message.find("at most 64 characters") != std::string::npos);
  auto badFirst = validateSecret(secretSpec("-pw", 1), none);
  REQUIRE_FALSE(badFirst.ok());
  CHECK(badFirst.error().message.find("starts with a letter or digit") != std::string::npos);
  CHECK_FALSE(validateSecret(secretSpec("p/w", 1), none).ok());
  CHECK_FALSE(validateSecret(secretSpec("", 1), none).ok());
  auto empty = validateSecret(secretSpec("pw", 0), none);
  REQUIRE_FALSE(empty.ok());
  CHECK(empty.error().message == "secret pw has no data: give a file, or - for standard input, that is not empty");
  auto big = validateSecret(secretSpec("pw", kMaxSecretBytes + 1), none);
  REQUIRE_FALSE(big.ok());
  CHECK(big.error().message == "secret pw has 512001 bytes of data: a secret holds at most 500 KiB");
}

TEST_CASE("a config may be empty and holds up to 1000 KiB; drivers and templating are refused") {
  std::vector<std::unique_ptr<objects::ConfigT>> none;
  CHECK(validateConfig(configSpec("conf", 0), none).ok());
  CHECK(validateConfig(configSpec("conf", kMaxConfigBytes), none).ok());
  CHECK_FALSE(validateConfig(configSpec("conf", kMaxConfigBytes + 1), none).ok());
  auto templated = configSpec("conf", 1);
  templated.templating = std::make_unique<objects::DriverT>();
  templated.templating->name = "golang";
  auto t = validateConfig(templated, none);
  REQUIRE_FALSE(t.ok());
  CHECK(t.error().message.find("not supported") != std::string::npos);
  std::vector<std::unique_ptr<objects::SecretT>> noSecrets;
  auto driven = secretSpec("pw", 1);
  driven.driver = std::make_unique<objects::DriverT>();
  driven.driver->name = "vault";
  CHECK_FALSE(validateSecret(driven, noSecrets).ok());
  auto labelled = secretSpec("pw", 1);
  labelled.annotations->labels.push_back(std::make_unique<objects::KeyValueT>());
  auto l = validateSecret(labelled, noSecrets);
  REQUIRE_FALSE(l.ok());
  CHECK(l.error().message.find("a label needs a key") != std::string::npos);
}

TEST_CASE("a taken name (without case) is a Conflict naming the secret") {
  Objects o = store();
  auto dup = validateSecret(secretSpec("PW", 3), o.secrets);
  REQUIRE_FALSE(dup.ok());
  CHECK(dup.error().code == kConflict);
  CHECK(dup.error().message == "secret pw already exists");
  auto dupConfig = validateConfig(configSpec("conf", 3), o.configs);
  REQUIRE_FALSE(dupConfig.ok());
  CHECK(dupConfig.error().message == "config conf already exists");
  // A secret and a config may share a name: they are different kinds.
  CHECK(validateConfig(configSpec("pw", 3), o.configs).ok());
}

TEST_CASE("a secret or config is found by id, name or unique id prefix") {
  Objects o = store();
  auto byName = resolveSecret("pw", o.secrets);
  REQUIRE(byName.ok());
  CHECK((*byName)->id == "pwid000000000000000000000");
  auto byPrefix = resolveSecret("pwid0", o.secrets);
  REQUIRE(byPrefix.ok());
  CHECK((*byPrefix)->id == "pwid000000000000000000000");
  auto missing = resolveSecret("nope", o.secrets);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == static_cast<int>(wire::ErrorCode::NotFound));
  CHECK(missing.error().message.find("`shoal secret ls` lists them") != std::string::npos);
  auto config = resolveConfig("conf", o.configs);
  REQUIRE(config.ok());
  CHECK_FALSE(resolveConfig("", o.configs).ok());
}

TEST_CASE("a secret or config a service refers to cannot be removed; the error names the services") {
  Objects o = store();
  const auto& pw = *o.secrets.front();
  const auto& conf = *o.configs.front();
  std::vector<std::unique_ptr<objects::ServiceT>> services;
  services.push_back(userOf("web", pw.id, ""));
  services.push_back(userOf("other", "", ""));
  services.push_back(userOf("db", pw.id, conf.id));
  auto used = checkSecretUnused(pw, services);
  REQUIRE_FALSE(used.ok());
  CHECK(used.error().code == kConflict);
  CHECK(used.error().message == "secret pw is in use by service(s) db, web: remove it from them first");
  auto usedConfig = checkConfigUnused(conf, services);
  REQUIRE_FALSE(usedConfig.ok());
  CHECK(usedConfig.error().message == "config conf is in use by service(s) db: remove it from them first");
  services.erase(services.begin());
  services.pop_back();
  CHECK(checkSecretUnused(pw, services).ok());
  CHECK(checkConfigUnused(conf, services).ok());
}

TEST_CASE("a new secret keeps its spec and has a zero meta for the store to fill") {
  auto s = newSecret("sid", secretSpec("pw", 4));
  CHECK(s->id == "sid");
  REQUIRE(s->meta);
  CHECK(s->meta->version() == 0);
  CHECK(s->spec->data.size() == 4);
  auto c = newConfig("cid", configSpec("conf", 2));
  CHECK(c->spec->annotations->name == "conf");
}

}  // namespace shoal::raftd::service_rules
