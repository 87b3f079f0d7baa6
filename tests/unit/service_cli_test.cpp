// The service commands' pure parts against docker's behaviour (docker/cli
// cli/command/service/opts.go, update.go, formatter.go, progress/progress.go,
// cli/command/task/print.go): flags → ServiceSpec, update's add/rm pairs, the listings, inspect
// and the convergence display, from objects built here.
#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "common/spec_digest.h"
#include "tools/shoal/progress.h"
#include "tools/shoal/service_flags.h"
#include "tools/shoal/services.h"

using nlohmann::json;
using namespace shoal::cli;
namespace objects = shoal::objects;

namespace {

constexpr int64_t kSecond = 1'000'000'000;
constexpr int64_t kNow = 1'700'000'000 * kSecond;

objects::ServiceSpecT create(const FlagValues& flags, const std::vector<std::string>& args = {}) {
  auto spec = specFromCreateFlags(flags, "nginx:alpine", args);
  REQUIRE_MESSAGE(spec, (spec ? "" : spec.error().message));
  return std::move(*spec);
}

std::string createError(const FlagValues& flags) {
  auto spec = specFromCreateFlags(flags, "nginx", {});
  REQUIRE_FALSE(spec);
  return spec.error().message;
}

std::unique_ptr<objects::ServiceT> service(const std::string& id, const std::string& name,
                                           const FlagValues& flags) {
  auto s = std::make_unique<objects::ServiceT>();
  s->id = id;
  s->spec = std::make_unique<objects::ServiceSpecT>(create(flags));
  s->spec->annotations->name = name;
  s->spec_version = 1;
  s->meta = std::make_unique<objects::Meta>(12, kNow - 60 * kSecond, kNow - 30 * kSecond);
  return s;
}

std::unique_ptr<objects::TaskT> task(const objects::ServiceT& s, const std::string& id,
                                     uint64_t slot, objects::TaskState state,
                                     objects::TaskState desired, int64_t createdAgo) {
  auto t = std::make_unique<objects::TaskT>();
  t->id = id;
  t->service_id = s.id;
  t->slot = slot;
  t->node_id = "node1id";
  t->spec = std::make_unique<objects::TaskSpecT>(*s.spec->task);
  t->spec_version = s.spec_version;
  t->spec_digest = shoal::taskSpecDigest(s);
  t->desired_state = desired;
  t->status = std::make_unique<objects::TaskStatusT>();
  t->status->state = state;
  t->status->timestamp = kNow - createdAgo;
  t->meta = std::make_unique<objects::Meta>(20, kNow - createdAgo, kNow - createdAgo);
  return t;
}

template <class T>
std::vector<const T*> ptrs(const std::vector<std::unique_ptr<T>>& v) {
  std::vector<const T*> out;
  for (const auto& x : v) out.push_back(x.get());
  return out;
}

}  // namespace

TEST_CASE(
    "create: the flags' values land in docker's fields; what no flag set stays zero for raftd") {
  auto s = create({}, {"sh", "-c", "sleep 1"});
  CHECK(s.task->container->image == "nginx:alpine");
  CHECK(s.task->container->args == std::vector<std::string>{"sh", "-c", "sleep 1"});
  CHECK(s.task->container->command.empty());
  CHECK(s.mode->kind == objects::ServiceModeKind::Replicated);
  CHECK(s.mode->replicas == 1);  // always sent for a replicated service
  CHECK_FALSE(s.task->restart);
  CHECK_FALSE(s.update);
  CHECK_FALSE(s.rollback);
  CHECK_FALSE(s.task->resources);
  CHECK_FALSE(s.task->container->healthcheck);
  CHECK(s.task->container->stop_grace_period == 0);
  CHECK_FALSE(s.endpoint);
}

TEST_CASE("create: every flag") {
  auto s = create({
      {"name", {"web"}},
      {"replicas", {"3"}},
      {"env", {"A=1", "B=2", "A=3"}},
      {"label", {"z=1", "a=2"}},
      {"container-label", {"c=d"}},
      {"constraint", {"node.role==manager", "node.labels.zone!=b"}},
      {"placement-pref", {"spread=node.labels.zone"}},
      {"replicas-max-per-node", {"2"}},
      {"limit-cpu", {"1.5"}},
      {"limit-memory", {"512M"}},
      {"limit-pids", {"100"}},
      {"reserve-cpu", {"0.25"}},
      {"reserve-memory", {"64k"}},
      {"restart-condition", {"on-failure"}},
      {"restart-delay", {"3s"}},
      {"restart-max-attempts", {"4"}},
      {"restart-window", {"1m"}},
      {"update-parallelism", {"2"}},
      {"update-delay", {"10s"}},
      {"update-failure-action", {"rollback"}},
      {"update-monitor", {"2s"}},
      {"update-max-failure-ratio", {"0.5"}},
      {"update-order", {"start-first"}},
      {"rollback-parallelism", {"0"}},
      {"rollback-delay", {"1s"}},
      {"rollback-failure-action", {"continue"}},
      {"rollback-monitor", {"3s"}},
      {"rollback-max-failure-ratio", {"0.1"}},
      {"rollback-order", {"stop-first"}},
      {"stop-grace-period", {"20s"}},
      {"stop-signal", {"SIGINT"}},
      {"health-cmd", {"curl -f localhost"}},
      {"health-interval", {"5s"}},
      {"health-timeout", {"1s"}},
      {"health-retries", {"3"}},
      {"health-start-period", {"30s"}},
      {"user", {"1000:1000"}},
      {"workdir", {"/app"}},
      {"hostname", {"h1"}},
      {"read-only", {"true"}},
      {"cap-add", {"net_admin"}},
      {"cap-drop", {"CAP_CHOWN"}},
      {"mount", {"type=bind,source=/srv,target=/data,readonly"}},
      {"secret", {"db_pass", "source=tls,target=cert.pem,uid=10,gid=20,mode=0400"}},
      {"config", {"app.conf"}},
      {"network", {"front", "name=back,alias=api"}},
      {"publish", {"8080:80", "published=53,target=53,protocol=udp,mode=host"}},
      {"endpoint-mode", {"vip"}},
      {"entrypoint", {"/bin/run --fast"}},
      {"init", {"true"}},
  });
  CHECK(s.annotations->name == "web");
  REQUIRE(s.annotations->labels.size() == 2);
  CHECK(s.annotations->labels[0]->key == "a");  // sorted by key, as objects.fbs keeps labels
  CHECK(s.mode->replicas == 3);
  const auto& c = *s.task->container;
  CHECK(c.env == std::vector<std::string>{"A=3", "B=2"});  // a later value of a name replaces it
  CHECK(c.labels.size() == 1);
  CHECK(s.task->placement->constraints ==
        std::vector<std::string>{"node.role==manager", "node.labels.zone!=b"});
  CHECK(s.task->placement->preferences.at(0)->spread_descriptor == "node.labels.zone");
  CHECK(s.task->placement->max_replicas == 2);
  CHECK(s.task->resources->limits->nano_cpus == 1'500'000'000);
  CHECK(s.task->resources->limits->memory_bytes == 512ll << 20);
  CHECK(s.task->resources->limits->pids == 100);
  CHECK(s.task->resources->reservations->nano_cpus == 250'000'000);
  CHECK(s.task->resources->reservations->memory_bytes == 64 << 10);
  CHECK(s.task->restart->condition == objects::RestartCondition::OnFailure);
  CHECK(s.task->restart->delay == 3 * kSecond);
  CHECK(s.task->restart->max_attempts == 4);
  CHECK(s.task->restart->window == 60 * kSecond);
  CHECK(s.update->parallelism == 2);
  CHECK(s.update->delay == 10 * kSecond);
  CHECK(s.update->failure_action == objects::UpdateFailureAction::Rollback);
  CHECK(s.update->monitor == 2 * kSecond);
  CHECK(s.update->max_failure_ratio == doctest::Approx(0.5));
  CHECK(s.update->order == objects::UpdateOrder::StartFirst);
  CHECK(s.rollback->parallelism == 0);
  CHECK(s.rollback->failure_action == objects::UpdateFailureAction::Continue);
  CHECK(s.rollback->monitor == 3 * kSecond);
  CHECK(c.stop_grace_period == 20 * kSecond);
  CHECK(c.stop_signal == "SIGINT");
  CHECK(c.healthcheck->test == std::vector<std::string>{"CMD-SHELL", "curl -f localhost"});
  CHECK(c.healthcheck->interval == 5 * kSecond);
  CHECK(c.healthcheck->retries == 3);
  CHECK(c.healthcheck->start_period == 30 * kSecond);
  CHECK(c.user == "1000:1000");
  CHECK(c.dir == "/app");
  CHECK(c.hostname == "h1");
  CHECK(c.read_only);
  CHECK(c.init);
  CHECK(c.command == std::vector<std::string>{"/bin/run", "--fast"});
  CHECK(c.capability_add == std::vector<std::string>{"CAP_NET_ADMIN"});
  CHECK(c.capability_drop == std::vector<std::string>{"CAP_CHOWN"});
  REQUIRE(c.mounts.size() == 1);
  CHECK(c.mounts[0]->type == objects::MountType::Bind);
  CHECK(c.mounts[0]->read_only);
  REQUIRE(c.secrets.size() == 2);
  CHECK(c.secrets[0]->secret_name == "db_pass");
  CHECK(c.secrets[0]->file->name == "db_pass");
  CHECK(c.secrets[0]->file->mode == 0444);
  CHECK(c.secrets[1]->file->name == "cert.pem");
  CHECK(c.secrets[1]->file->uid == "10");
  CHECK(c.secrets[1]->file->mode == 0400);
  CHECK(c.configs.at(0)->config_name == "app.conf");
  REQUIRE(s.task->networks.size() == 2);
  CHECK(s.task->networks[1]->target == "back");
  CHECK(s.task->networks[1]->aliases == std::vector<std::string>{"api"});
  REQUIRE(s.endpoint->ports.size() == 2);
  CHECK(s.endpoint->ports[0]->published_port == 8080);
  CHECK(s.endpoint->ports[0]->target_port == 80);
  CHECK(s.endpoint->ports[1]->protocol == objects::PortProtocol::Udp);
  CHECK(s.endpoint->ports[1]->publish_mode == objects::PublishMode::Host);
}

TEST_CASE("create: modes and their replicas") {
  auto global = create({{"mode", {"global"}}});
  CHECK(global.mode->kind == objects::ServiceModeKind::Global);
  CHECK(global.mode->replicas == 0);
  auto job =
      create({{"mode", {"replicated-job"}}, {"replicas", {"10"}}, {"max-concurrent", {"2"}}});
  CHECK(job.mode->total_completions == 10);
  CHECK(job.mode->max_concurrent == 2);
  auto job2 = create({{"mode", {"replicated-job"}}, {"replicas", {"4"}}});
  CHECK(job2.mode->max_concurrent == 4);  // docker: defaults to --replicas
  CHECK(create({{"replicas", {"0"}}}).mode->replicas == 0);
  auto off = create({{"no-healthcheck", {"true"}}});
  CHECK(off.task->container->healthcheck->test == std::vector<std::string>{"NONE"});
}

TEST_CASE("create: bad values are refused before anything is sent, naming the flag and the value") {
  CHECK(createError({{"replicas", {"-1"}}}).find("\"-1\" for \"--replicas\"") != std::string::npos);
  CHECK(createError({{"replicas", {"three"}}}).find("--replicas") != std::string::npos);
  CHECK(createError({{"mode", {"daemonset"}}})
            .find("replicated, global, replicated-job or global-job") != std::string::npos);
  CHECK(createError({{"mode", {"global"}}, {"replicas", {"2"}}})
            .find("--replicas can only be used") != std::string::npos);
  CHECK(createError({{"mode", {"global"}}, {"replicas-max-per-node", {"2"}}}).find("replicated") !=
        std::string::npos);
  CHECK(createError({{"restart-delay", {"5"}}}).find("--restart-delay") != std::string::npos);
  CHECK(createError({{"restart-delay", {"-5s"}}}).find("negative") != std::string::npos);
  CHECK(createError({{"restart-condition", {"always"}}}).find("none, on-failure or any") !=
        std::string::npos);
  CHECK(createError({{"update-failure-action", {"explode"}}}).find("pause, continue or rollback") !=
        std::string::npos);
  CHECK(createError({{"rollback-failure-action", {"rollback"}}}).find("pause or continue") !=
        std::string::npos);
  CHECK(createError({{"update-order", {"first"}}}).find("stop-first or start-first") !=
        std::string::npos);
  CHECK(createError({{"update-max-failure-ratio", {"1.5"}}}).find("from 0 to 1") !=
        std::string::npos);
  CHECK(createError({{"limit-cpu", {"abc"}}}).find("--limit-cpu") != std::string::npos);
  CHECK(createError({{"limit-cpu", {"0.0000000001"}}}).find("too precise") != std::string::npos);
  CHECK(createError({{"limit-memory", {"lots"}}}).find("--limit-memory") != std::string::npos);
  CHECK(createError({{"constraint", {"node.labels.zone=b"}}}).find("--constraint") !=
        std::string::npos);
  CHECK(createError({{"placement-pref", {"pack=node.labels.zone"}}}).find("--placement-pref") !=
        std::string::npos);
  CHECK(createError({{"env", {"=x"}}}).find("--env") != std::string::npos);
  CHECK(createError({{"no-healthcheck", {"true"}}, {"health-cmd", {"true"}}}).find("conflicts") !=
        std::string::npos);
  CHECK(createError({{"endpoint-mode", {"rr"}}}).find("vip or dnsrr") != std::string::npos);
  CHECK(createError({{"mount", {"type=bind,target=/x"}}}).find("source") != std::string::npos);
  CHECK(createError({{"publish", {"1.2.3.4:80:80"}}}).find("host IP") != std::string::npos);
  CHECK(createError({{"publish", {"70000:80"}}}).find("--publish") != std::string::npos);
  CHECK(createError({{"secret", {"target=x"}}}).find("source= is required") != std::string::npos);
  CHECK_FALSE(specFromCreateFlags({}, "", {}));
}

TEST_CASE("--mount, --publish, --secret and --network forms") {
  auto v = parseMount("type=volume,src=data,dst=/data,volume-nocopy=true,volume-label=a=b");
  REQUIRE(v);
  CHECK(v->type == objects::MountType::Volume);
  CHECK(v->source == "data");
  CHECK(v->volume_options->no_copy);
  auto t = parseMount("type=tmpfs,target=/tmp,tmpfs-size=64M,tmpfs-mode=1777");
  REQUIRE(t);
  CHECK(t->tmpfs_options->size_bytes == 64 << 20);
  CHECK(t->tmpfs_options->mode == 01777);
  CHECK_FALSE(parseMount("type=tmpfs,source=x,target=/tmp"));
  CHECK_FALSE(parseMount("source=x"));
  CHECK_FALSE(parseMount("type=volume,target=/x,tmpfs-size=1M"));
  CHECK_FALSE(parseMount("type=volume,target=/x,colour=red"));

  auto range = parsePublish("8080-8081:80-81/udp");
  REQUIRE(range);
  REQUIRE(range->size() == 2);
  CHECK((*range)[1].published_port == 8081);
  CHECK((*range)[1].target_port == 81);
  CHECK((*range)[1].protocol == objects::PortProtocol::Udp);
  auto bare = parsePublish("80");
  REQUIRE(bare);
  CHECK((*bare)[0].published_port == 0);  // allocated from 30000-32767 by raftd's allocator
  CHECK_FALSE(parsePublish("8080-8082:80-81"));
  CHECK_FALSE(parsePublish("published=8080"));
  CHECK_FALSE(parsePublish("80/icmp"));

  CHECK_FALSE(parseSecret("secret", "source=a,mode=999"));
  auto n = parseNetwork("name=x,alias=a,alias=b,driver-opt=k=v");
  REQUIRE(n);
  CHECK(n->aliases.size() == 2);
  CHECK(n->driver_attachment_opts.at(0)->value == "v");
  CHECK_FALSE(parseNetwork("alias=a"));
}

TEST_CASE("update: removals first, then additions that replace entries with the same key") {
  auto s = create({{"env", {"A=1", "B=2"}},
                   {"label", {"x=1"}},
                   {"constraint", {"node.role==worker"}},
                   {"publish", {"8080:80"}},
                   {"mount", {"type=volume,target=/a"}},
                   {"secret", {"s1"}},
                   {"network", {"n1"}},
                   {"placement-pref", {"spread=node.labels.zone"}},
                   {"cap-drop", {"chown"}}});
  auto ok = applyUpdateFlags(
      {
          {"env-rm", {"A"}},
          {"env-add", {"B=3", "C=4"}},
          {"label-rm", {"x"}},
          {"label-add", {"y=2"}},
          {"constraint-rm", {"node.role==worker"}},
          {"constraint-add", {"node.role==manager"}},
          {"publish-rm", {"80"}},
          {"publish-add", {"9090:90"}},
          {"mount-rm", {"/a"}},
          {"mount-add", {"type=tmpfs,target=/t"}},
          {"secret-rm", {"s1"}},
          {"secret-add", {"s2"}},
          {"network-rm", {"n1"}},
          {"network-add", {"n2"}},
          {"placement-pref-rm", {"spread=node.labels.zone"}},
          {"placement-pref-add", {"spread=node.labels.rack"}},
          {"image", {"nginx:1.27"}},
          {"force", {"true"}},
          {"replicas", {"5"}},
          {"cap-add", {"chown"}},
          {"args", {"run 'a b'"}},
      },
      s);
  REQUIRE_MESSAGE(ok, (ok ? "" : ok.error().message));
  const auto& c = *s.task->container;
  CHECK(c.env == std::vector<std::string>{"B=3", "C=4"});
  REQUIRE(s.annotations->labels.size() == 1);
  CHECK(s.annotations->labels[0]->key == "y");
  CHECK(s.task->placement->constraints == std::vector<std::string>{"node.role==manager"});
  REQUIRE(s.endpoint->ports.size() == 1);
  CHECK(s.endpoint->ports[0]->target_port == 90);
  REQUIRE(c.mounts.size() == 1);
  CHECK(c.mounts[0]->target == "/t");
  REQUIRE(c.secrets.size() == 1);
  CHECK(c.secrets[0]->secret_name == "s2");
  REQUIRE(s.task->networks.size() == 1);
  CHECK(s.task->networks[0]->target == "n2");
  REQUIRE(s.task->placement->preferences.size() == 1);
  CHECK(s.task->placement->preferences[0]->spread_descriptor == "node.labels.rack");
  CHECK(c.image == "nginx:1.27");
  CHECK(s.task->force_update == 1);
  CHECK(s.mode->replicas == 5);
  CHECK(c.capability_add == std::vector<std::string>{"CAP_CHOWN"});
  CHECK(c.capability_drop.empty());
  CHECK(c.args == std::vector<std::string>{"run", "a b"});

  auto global = create({{"mode", {"global"}}});
  CHECK_FALSE(applyUpdateFlags({{"replicas", {"2"}}}, global));
  CHECK_FALSE(applyUpdateFlags({{"publish-rm", {"http"}}}, s));
  auto untouched = create({});
  REQUIRE(applyUpdateFlags({{"update-parallelism", {"3"}}}, untouched));
  CHECK(untouched.update->parallelism == 3);
  CHECK(untouched.update->monitor == 0);  // raftd fills Swarm's 5 s
  auto delayed = create({{"rollback-delay", {"2s"}}});
  CHECK(delayed.rollback->parallelism ==
        1);  // raftd fills only absent tables: not 0, "all at once"
  CHECK_FALSE(delayed.update);
}

TEST_CASE("service scale arguments") {
  auto a = parseScaleArg("web=3");
  REQUIRE(a);
  CHECK(a->service == "web");
  CHECK(a->replicas == 3);
  CHECK_FALSE(parseScaleArg("web"));
  CHECK_FALSE(parseScaleArg("=3"));
  CHECK(parseScaleArg("web=x").error().message.find("\"web\"") != std::string::npos);
}

TEST_CASE("service ls rows: docker's replicas forms") {
  auto web =
      service("abcdefghijklmnopqrstuvwxy", "web", {{"replicas", {"3"}}, {"publish", {"8080:80"}}});
  web->spec->task->container->image = "nginx:alpine@sha256:0123";
  std::vector<std::unique_ptr<objects::TaskT>> tasks;
  tasks.push_back(
      task(*web, "t1", 1, objects::TaskState::Running, objects::TaskState::Running, 5 * kSecond));
  tasks.push_back(
      task(*web, "t2", 2, objects::TaskState::Running, objects::TaskState::Running, 5 * kSecond));
  tasks.push_back(
      task(*web, "t3", 3, objects::TaskState::Pending, objects::TaskState::Running, 5 * kSecond));
  tasks.push_back(
      task(*web, "t0", 3, objects::TaskState::Running, objects::TaskState::Shutdown, 50 * kSecond));
  auto row = serviceRow(*web, countTasks(*web, ptrs(tasks)));
  CHECK(row == json{{"ID", "abcdefghijkl"},
                    {"Name", "web"},
                    {"Mode", "replicated"},
                    {"Replicas", "2/3"},
                    {"Image", "nginx:alpine"},
                    {"Ports", "*:8080->80/tcp"}});
  auto capped = service("c1", "capped", {{"replicas", {"2"}}, {"replicas-max-per-node", {"1"}}});
  CHECK(serviceRow(*capped, {1, 2, 0})["Replicas"] == "1/2 (max 1 per node)");
  auto job = service(
      "j1", "job", {{"mode", {"replicated-job"}}, {"replicas", {"10"}}, {"max-concurrent", {"3"}}});
  CHECK(serviceRow(*job, {2, 3, 5})["Replicas"] == "2/3 (5/10 completed)");
  CHECK(serviceRow(*job, {2, 3, 5})["Mode"] == "replicated job");
  auto global = service("g1", "agent", {{"mode", {"global"}}});
  CHECK(serviceRow(*global, {5, 5, 0})["Replicas"] == "5/5");

  auto table = ListingFormat::parse("", kServiceTable);
  REQUIRE(table);
  auto text = table->render({row}, serviceHeaders());
  REQUIRE(text);
  CHECK(*text ==
        "ID             NAME      MODE         REPLICAS   IMAGE          PORTS\n"
        "abcdefghijkl   web       replicated   2/3        nginx:alpine   *:8080->80/tcp\n");
}

TEST_CASE(
    "service ps rows: docker's order, the older tasks indented, and why a task is not running") {
  auto web = service("svc1", "web", {{"replicas", {"2"}}});
  std::vector<std::unique_ptr<objects::TaskT>> tasks;
  tasks.push_back(task(*web, "aaaaaaaaaaaaaaaaaaaaaaaaa", 1, objects::TaskState::Running,
                       objects::TaskState::Running, 5 * kSecond));
  auto old = task(*web, "bbbbbbbbbbbbbbbbbbbbbbbbb", 1, objects::TaskState::Failed,
                  objects::TaskState::Shutdown, 90 * kSecond);
  old->status->err = "task: non-zero exit (1)";
  tasks.push_back(std::move(old));
  auto waiting = task(*web, "ccccccccccccccccccccccccc", 2, objects::TaskState::Assigned,
                      objects::TaskState::Ready, 1 * kSecond);
  waiting->not_before = kNow + 2500 * int64_t{1'000'000};
  tasks.push_back(std::move(waiting));
  auto pending = task(*web, "ddddddddddddddddddddddddd", 10, objects::TaskState::Pending,
                      objects::TaskState::Running, 0);
  pending->node_id.clear();
  pending->status->err = "no suitable node (3 nodes fail constraint node.labels.zone==b)";
  tasks.push_back(std::move(pending));

  TaskContext ctx;
  ctx.services[web->id] = web.get();
  ctx.hostnames["node1id"] = "worker1";
  ctx.now = kNow;
  auto rows = taskRows(ptrs(tasks), ctx);
  REQUIRE(rows.size() == 4);
  CHECK(rows[0]["Name"] == "web.1");
  CHECK(rows[0]["ID"] == "aaaaaaaaaaaa");
  CHECK(rows[0]["Node"] == "worker1");
  CHECK(rows[0]["DesiredState"] == "Running");
  CHECK(rows[0]["CurrentState"] == "Running 5 seconds ago");
  CHECK(rows[0]["Error"] == "");
  CHECK(rows[1]["Name"] == " \\_ web.1");
  CHECK(rows[1]["CurrentState"] == "Failed about a minute ago");
  CHECK(rows[1]["Error"] == "\"task: non-zero exit (1)\"");
  CHECK(rows[2]["Name"] == "web.2");
  CHECK(rows[2]["Error"] == "\"waiting for restart delay (3s left)\"");
  CHECK(rows[3]["Name"] == "web.10");  // after web.2: slots in number order
  CHECK(rows[3]["Node"] == "");
  CHECK(rows[3]["Error"] == "\"no suitable node (3 nodes fail constraint node.labels.zone==b)\"");

  ctx.table = false;
  CHECK(taskRows(ptrs(tasks), ctx)[1]["Name"] == "web.1");  // json: no indent
  ctx.noTrunc = true;
  CHECK(taskRows(ptrs(tasks), ctx)[0]["ID"] == "aaaaaaaaaaaaaaaaaaaaaaaaa");

  auto f = parseTaskFilters({"desired-state=running", "node=worker1"});
  REQUIRE(f);
  CHECK(matches(*f, *tasks[0], ctx));
  CHECK_FALSE(matches(*f, *tasks[1], ctx));  // desired shutdown
  CHECK_FALSE(matches(*f, *tasks[3], ctx));  // on no node
  CHECK_FALSE(parseTaskFilters({"desired-state=asleep"}));
  CHECK_FALSE(parseTaskFilters({"colour=red"}));
  CHECK_FALSE(parseTaskFilters({"name"}));
}

TEST_CASE("service ls --filter") {
  auto web = service("abc1", "web", {{"label", {"tier=front"}}});
  auto agent = service("def2", "agent", {{"mode", {"global"}}});
  auto f = parseServiceFilters({"mode=global"});
  REQUIRE(f);
  CHECK(matches(*f, *agent));
  CHECK_FALSE(matches(*f, *web));
  f = parseServiceFilters({"label=tier=front", "name=we", "id=abc"});
  REQUIRE(f);
  CHECK(matches(*f, *web));
  CHECK_FALSE(matches(*parseServiceFilters({"label=tier=back"}), *web));
  CHECK(matches(*parseServiceFilters({"label=tier"}), *web));
  CHECK_FALSE(parseServiceFilters({"mode=daemon"}));
  CHECK_FALSE(parseServiceFilters({"colour=red"}));
}

TEST_CASE("a paused update's failed tasks show the update's message") {
  auto web = service("svc1", "web", {{"replicas", {"1"}}});
  web->update_status = std::make_unique<objects::UpdateStatusT>();
  web->update_status->state = objects::UpdateState::Paused;
  web->update_status->message =
      "update paused: task web.1 failed (exit 1) within the monitor window";
  auto t = task(*web, "t1", 1, objects::TaskState::Failed, objects::TaskState::Shutdown, kSecond);
  t->status->err = "task: non-zero exit (1)";
  CHECK(taskReason(*t, web.get(), kNow) == web->update_status->message);
  web->update_status->state = objects::UpdateState::Completed;
  CHECK(taskReason(*t, web.get(), kNow) == "task: non-zero exit (1)");
}

TEST_CASE("inspect: docker's shape with ServiceStatus and NotRunning") {
  auto web = service("svc1", "web",
                     {{"replicas", {"2"}}, {"publish", {"8080:80"}}, {"restart-delay", {"3s"}}});
  web->update_status = std::make_unique<objects::UpdateStatusT>();
  web->update_status->state = objects::UpdateState::Updating;
  web->update_status->started_at = kNow - kSecond;
  web->update_status->message = "update in progress";
  std::vector<std::unique_ptr<objects::TaskT>> tasks;
  tasks.push_back(
      task(*web, "t1", 1, objects::TaskState::Running, objects::TaskState::Running, kSecond));
  auto pending =
      task(*web, "t2", 2, objects::TaskState::Pending, objects::TaskState::Running, kSecond);
  pending->status->err = "no suitable node (1 node is drained)";
  tasks.push_back(std::move(pending));
  auto j = serviceInspect(*web, ptrs(tasks), kNow);
  CHECK(j["ID"] == "svc1");
  CHECK(j["Version"]["Index"] == 12);
  CHECK(j["Spec"]["Name"] == "web");
  CHECK(j["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == "nginx:alpine");
  CHECK(j["Spec"]["TaskTemplate"]["RestartPolicy"]["Delay"] == 3 * kSecond);
  CHECK(j["Spec"]["TaskTemplate"]["RestartPolicy"]["Condition"] == "any");
  CHECK(j["Spec"]["Mode"] == json{{"Replicated", {{"Replicas", 2}}}});
  CHECK(j["Spec"]["EndpointSpec"]["Ports"][0] == json{{"Protocol", "tcp"},
                                                      {"TargetPort", 80},
                                                      {"PublishedPort", 8080},
                                                      {"PublishMode", "ingress"}});
  CHECK(j["UpdateStatus"]["State"] == "updating");
  CHECK(j["UpdateStatus"]["Message"] == "update in progress");
  CHECK(j["ServiceStatus"] ==
        json{{"RunningTasks", 1}, {"DesiredTasks", 2}, {"CompletedTasks", 0}});
  CHECK(j["NotRunning"] == json::array({{{"Task", "web.2"},
                                         {"State", "pending"},
                                         {"Reason", "no suitable node (1 node is drained)"}}}));
  CHECK_FALSE(j.contains("PreviousSpec"));
  auto pretty = servicePretty(*web, ptrs(tasks), kNow);
  CHECK(pretty.find("Name:\t\tweb\n") != std::string::npos);
  CHECK(pretty.find(" web.2:\tpending: no suitable node (1 node is drained)\n") !=
        std::string::npos);
}

TEST_CASE("resolving a SERVICE argument") {
  auto a = service("abc111", "web", {});
  auto b = service("abc222", "db", {});
  std::vector<const objects::ServiceT*> all{a.get(), b.get()};
  CHECK(*resolveService(all, "db") == b.get());
  CHECK(*resolveService(all, "abc1") == a.get());
  CHECK(resolveService(all, "abc").error().message == "service abc is ambiguous (2 matches found)");
  CHECK(resolveService(all, "zzz").error().message == "service zzz not found");
}

TEST_CASE("humanDuration is go-units'") {
  CHECK(humanDuration(0) == "Less than a second");
  CHECK(humanDuration(kSecond) == "1 second");
  CHECK(humanDuration(59 * kSecond) == "59 seconds");
  CHECK(humanDuration(60 * kSecond) == "About a minute");
  CHECK(humanDuration(59 * 60 * kSecond) == "59 minutes");
  CHECK(humanDuration(3600 * kSecond) == "About an hour");
  CHECK(humanDuration(47 * 3600 * kSecond) == "47 hours");
  CHECK(humanDuration(3 * 24 * 3600 * kSecond) == "3 days");
}

TEST_CASE("progress: docker's per-slot lines and the overall count") {
  auto web = service("svc1", "web", {{"replicas", {"3"}}});
  std::vector<std::unique_ptr<objects::TaskT>> tasks;
  tasks.push_back(
      task(*web, "t1", 1, objects::TaskState::Running, objects::TaskState::Running, kSecond));
  tasks.push_back(
      task(*web, "t2", 2, objects::TaskState::Preparing, objects::TaskState::Running, kSecond));
  auto pending =
      task(*web, "t3", 3, objects::TaskState::Pending, objects::TaskState::Running, kSecond);
  pending->status->err = "no suitable node (2 nodes lack 2 CPUs, 1.5 free)";
  tasks.push_back(std::move(pending));
  ProgressTarget target;
  target.specVersion = 1;
  target.startedAt = kNow - kSecond;
  auto f = progressOf(*web, ptrs(tasks), {}, target, kNow);
  REQUIRE(f.lines.size() == 4);
  CHECK(f.lines[0] == "overall progress: 1 out of 3 tasks");
  CHECK(f.lines[1] == "1/3: running   [==================================================>]");
  CHECK(f.lines[2] == "2/3: preparing [=================================>                 ]");
  CHECK(f.lines[3] == "3/3: no suitable node (2 nodes lack 2 CPUs, 1.5 free)");
  CHECK_FALSE(f.converged);
  CHECK_FALSE(f.failure);
  // A slot whose only task ended waits for its next one: no bar for a dead task.
  auto ended =
      task(*web, "t0", 1, objects::TaskState::Shutdown, objects::TaskState::Shutdown, kSecond);
  auto one = progressOf(*web, {ended.get()}, {}, target, kNow);
  CHECK(one.lines.at(1) == "1/3: waiting for a task");

  tasks[1]->status->state = objects::TaskState::Running;
  tasks[2]->status->state = objects::TaskState::Running;
  f = progressOf(*web, ptrs(tasks), {}, target, kNow);
  CHECK(f.lines[0] == "overall progress: 3 out of 3 tasks");
  CHECK(f.converged);

  // A task of the old spec does not count; an update in progress is not converged.
  web->spec->task->container->image = "nginx:2";
  web->update_status = std::make_unique<objects::UpdateStatusT>();
  web->update_status->state = objects::UpdateState::Updating;
  web->update_status->spec_version = 2;
  web->spec_version = 2;
  target.specVersion = 2;
  f = progressOf(*web, ptrs(tasks), {}, target, kNow);
  CHECK(f.lines[0] == "overall progress: 0 out of 3 tasks");
  CHECK_FALSE(f.converged);

  web->update_status->state = objects::UpdateState::Paused;
  web->update_status->message =
      "update paused: task web.1 failed (exit 1) within the monitor window";
  f = progressOf(*web, ptrs(tasks), {}, target, kNow);
  REQUIRE(f.failure);
  CHECK(*f.failure == "update paused: task web.1 failed (exit 1) within the monitor window");

  // An old paused update says nothing about a later command's write.
  target.specVersion = 3;
  CHECK_FALSE(progressOf(*web, ptrs(tasks), {}, target, kNow).failure);

  target.specVersion = 2;
  web->update_status->state = objects::UpdateState::RollbackStarted;
  web->update_status->message = "update rolled back: task web.1 failed";
  f = progressOf(*web, ptrs(tasks), {}, target, kNow);
  CHECK(f.notes == std::vector<std::string>{"rollback: update rolled back: task web.1 failed"});
  CHECK_FALSE(f.failure);
  web->update_status->state = objects::UpdateState::RollbackCompleted;
  f = progressOf(*web, ptrs(tasks), {}, target, kNow);
  REQUIRE(f.failure);
  CHECK(*f.failure == "update rolled back: task web.1 failed");
  web->update_status->message = "rollback completed";
  CHECK(*progressOf(*web, ptrs(tasks), {}, target, kNow).failure ==
        "service rolled back: rollback completed");
  target.rollback = true;  // `service rollback` waits for exactly that
  CHECK_FALSE(progressOf(*web, ptrs(tasks), {}, target, kNow).failure);
}

TEST_CASE("progress: over 20 replicas only the overall line; a scale keeps running tasks") {
  auto web = service("svc1", "web", {{"replicas", {"30"}}});
  std::vector<std::unique_ptr<objects::TaskT>> tasks;
  for (uint64_t slot = 1; slot <= 30; ++slot)
    tasks.push_back(task(*web, "t" + std::to_string(slot), slot, objects::TaskState::Running,
                         objects::TaskState::Running, kSecond));
  web->spec_version = 2;  // scaled: the tasks' spec (digest) is the same
  auto f = progressOf(*web, ptrs(tasks), {}, ProgressTarget{2, 0, false}, kNow);
  CHECK(f.lines == std::vector<std::string>{"overall progress: 30 out of 30 tasks"});
  CHECK(f.converged);
}

TEST_CASE("verify: converged for the monitor period, as docker waits before it says so") {
  Verifier v(5 * kSecond);
  std::string line;
  CHECK_FALSE(v.done(true, kNow, &line));
  CHECK(line == "verify: Waiting 5 seconds to verify that tasks are stable...");
  CHECK_FALSE(v.done(true, kNow + 4 * kSecond, &line));
  CHECK_FALSE(v.done(false, kNow + 4500 * int64_t{1'000'000}, nullptr));  // a task failed: again
  CHECK_FALSE(v.done(true, kNow + 6 * kSecond, &line));
  CHECK(v.done(true, kNow + 11 * kSecond, &line));
  CHECK(Verifier(0).done(true, kNow, nullptr));

  auto web = service("s", "web", {{"update-monitor", {"7s"}}, {"rollback-monitor", {"2s"}}});
  CHECK(verifyPeriod(*web, false) == 7 * kSecond);
  CHECK(verifyPeriod(*web, true) == 2 * kSecond);
  auto job = service("j", "job", {{"mode", {"replicated-job"}}, {"update-monitor", {"7s"}}});
  CHECK(verifyPeriod(*job, false) == 0);
}

TEST_CASE("progress display: in place on a terminal, changed lines otherwise") {
  Display plain(false);
  CHECK(plain.frame({"overall progress: 0 out of 1 tasks", "1/1: new"}) ==
        "overall progress: 0 out of 1 tasks\n1/1: new\n");
  CHECK(plain.frame({"overall progress: 0 out of 1 tasks", "1/1: running"}) == "1/1: running\n");
  CHECK(plain.frame({"overall progress: 0 out of 1 tasks", "1/1: running"}) == "");
  Display tty(true);
  CHECK(tty.frame({}) == "");
  CHECK(tty.frame({"a", "b"}) == "\r\x1b[2Ka\n\r\x1b[2Kb\n");
  CHECK(tty.frame({"c"}) == "\x1b[2A\r\x1b[2Kc\n\r\x1b[2K\n\x1b[1A");
}

TEST_CASE("an ended task the restart policy keeps down says so") {
  auto web = service("svc1", "web",
                     {{"replicas", {"1"}}, {"restart-max-attempts", {"2"}}, {"restart-condition", {"on-failure"}}});
  auto t = task(*web, "t1", 1, objects::TaskState::Failed, objects::TaskState::Running, kSecond);
  t->status->err = "task: non-zero exit (1)";
  t->restart_attempt = 2;
  CHECK(taskReason(*t, web.get(), kNow) ==
        "task: non-zero exit (1); not restarted: 2 of 2 restart attempts used");
  t->restart_attempt = 1;  // a restart is still allowed: the orchestrator will replace it
  CHECK(taskReason(*t, web.get(), kNow) == "task: non-zero exit (1)");
  t->restart_attempt = 2;
  t->desired_state = objects::TaskState::Shutdown;  // replaced: nothing to explain
  CHECK(taskReason(*t, web.get(), kNow) == "task: non-zero exit (1)");
  auto done = task(*web, "t2", 1, objects::TaskState::Complete, objects::TaskState::Running, kSecond);
  CHECK(taskReason(*done, web.get(), kNow) ==
        "not restarted: it completed and the restart condition is on-failure");
  auto once = service("svc2", "once", {{"replicas", {"1"}}, {"restart-condition", {"none"}}});
  auto o = task(*once, "t3", 1, objects::TaskState::Failed, objects::TaskState::Running, kSecond);
  CHECK(taskReason(*o, once.get(), kNow) == "not restarted: restart condition none");
}
