// raftd's service API (schemas/service.fbs, services/raftd/service_control.h) on a real raftd
// after swarm init: every refusal through the socket with its message and the store
// unchanged after it; create with Swarm's defaults filled; update keeps the previous spec and
// starts an update only when what the tasks run changed; rollback swaps; rm deletes; a stale
// version is a Conflict; a follower's raftd serves it too. The rules one by one are in tests/unit/service_rules_test.cpp.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "common/bus.h"
#include "common/ids.h"
#include "common/protocols.h"
#include "common/store_client.h"
#include "tests/support/daemons.h"
#include "tests/support/process.h"
#include "tests/support/raft_members.h"
#include "tests/support/tempdir.h"

namespace shoal {
namespace {

using namespace std::chrono_literals;
using objects::ObjectKind;
using testing::daemonPath;
using testing::freePortPair;
using testing::Process;
using wire::ErrorCode;

constexpr int64_t kSecond = 1'000'000'000;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A replicated busybox service as the CLI sends it: replicas given, defaults left zero.
objects::ServiceSpecT spec(const std::string& name, uint64_t replicas = 2) {
  objects::ServiceSpecT s;
  s.annotations = std::make_unique<objects::AnnotationsT>();
  s.annotations->name = name;
  s.task = std::make_unique<objects::TaskSpecT>();
  s.task->container = std::make_unique<objects::ContainerSpecT>();
  s.task->container->image = "busybox";
  s.mode = std::make_unique<objects::ServiceModeT>();
  s.mode->replicas = replicas;
  return s;
}

void publish(objects::ServiceSpecT& s, uint32_t published,
             objects::ResolutionMode mode = objects::ResolutionMode::Vip) {
  if (!s.endpoint) s.endpoint = std::make_unique<objects::EndpointSpecT>();
  s.endpoint->mode = mode;
  auto p = std::make_unique<objects::PortConfigT>();
  p->published_port = published;
  p->target_port = 80;
  s.endpoint->ports.push_back(std::move(p));
}

bus::Buffer createRequest(const objects::ServiceSpecT& s) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = serviceapi::CreateCreateServiceRequest(fbb, objects::ServiceSpec::Pack(fbb, &s));
  return bus::message<serviceapi::Envelope>(fbb, serviceapi::Body::CreateServiceRequest,
                                            body.Union());
}

bus::Buffer updateRequest(const std::string& service, uint64_t version,
                          const objects::ServiceSpecT* s, bool rollback = false) {
  flatbuffers::FlatBufferBuilder fbb;
  flatbuffers::Offset<objects::ServiceSpec> packed;
  if (s) packed = objects::ServiceSpec::Pack(fbb, s);
  auto body = serviceapi::CreateUpdateServiceRequest(fbb, fbb.CreateString(service), version,
                                                     packed, rollback);
  return bus::message<serviceapi::Envelope>(fbb, serviceapi::Body::UpdateServiceRequest,
                                            body.Union());
}

bus::Buffer removeRequest(const std::string& service) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = serviceapi::CreateRemoveServiceRequestDirect(fbb, service.c_str());
  return bus::message<serviceapi::Envelope>(fbb, serviceapi::Body::RemoveServiceRequest,
                                            body.Union());
}

bus::Buffer initRequest(const std::string& advertise) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = swarmapi::CreateInitRequestDirect(fbb, advertise.c_str());
  return bus::message<swarmapi::Envelope>(fbb, swarmapi::Body::InitRequest, body.Union());
}

bus::Buffer infoRequest() {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = swarmapi::CreateInfoRequest(fbb);
  return bus::message<swarmapi::Envelope>(fbb, swarmapi::Body::InfoRequest, body.Union());
}

// One raftd that ran swarm init, with clients of its swarm, service and store APIs.
class Manager {
 public:
  Manager()
      : run_(tmp_ / "run"),
        process_({daemonPath("raftd"), "--foreground", "--state-dir", tmp_ / "state", "--run-dir",
                  run_, "--node-dir", tmp_ / "node", "--log-file", tmp_ / "raftd.log"}),
        swarm_(kSwarmProtocol),
        services_(kServiceProtocol) {
    std::string endpoint = "ipc://" + run_ + "/raftd.sock";
    REQUIRE(swarm_.connect(endpoint));
    REQUIRE(services_.connect(endpoint));
    REQUIRE(store_.connect(store::endpointIn(run_)));
    bool up = testing::waitFor([&] { return swarm_.call(infoRequest(), 1s).ok(); }, 10s);
    REQUIRE_MESSAGE(up, "raftd did not answer Info:\n", process_.err());
    auto init = swarm_.call(initRequest("127.0.0.1:" + std::to_string(freePortPair())), 30s);
    REQUIRE_MESSAGE(init.ok(), (init ? "" : init.error().message));
  }
  ~Manager() {
    if (!process_.running()) MESSAGE("raftd ended early:\n", process_.err());
  }

  Result<bus::Frame> call(bus::Buffer request) { return services_.call(std::move(request), 30s); }
  // The new or changed service's id; fails the test when the call was refused.
  std::string accepted(bus::Buffer request) {
    auto r = call(std::move(request));
    REQUIRE_MESSAGE(r.ok(), (r ? "" : r.error().message));
    auto* reply = r->as<serviceapi::Envelope>()->body_as_ServiceReply();
    REQUIRE(reply);
    return reply->service_id()->str();
  }
  // A refused call's error; fails the test when the call was accepted.
  Error refusal(bus::Buffer request) {
    auto r = call(std::move(request));
    REQUIRE_MESSAGE(!r.ok(), "the call was expected to be refused");
    return r.error();
  }
  // Every stored Service, as bytes (to tell that nothing changed).
  std::vector<std::string> services() {
    auto r = store_.list(ObjectKind::Service);
    REQUIRE_MESSAGE(r.ok(), (r ? "" : r.error().message));
    return r->objects;
  }
  std::unique_ptr<objects::ServiceT> service(const std::string& name) {
    auto got = store_.getByName(ObjectKind::Service, name);
    REQUIRE_MESSAGE(got.ok(), (got ? "" : got.error().message));
    return std::unique_ptr<objects::ServiceT>(
        flatbuffers::GetRoot<objects::Service>(got->data.data())->UnPack());
  }

 private:
  testing::TempDir tmp_;
  std::string run_;
  Process process_;
  bus::SyncClient swarm_;
  bus::SyncClient services_;
  store::SyncClient store_;
};

struct Refused {
  const char* what;
  std::function<void(objects::ServiceSpecT&)> change;
  std::string message;
};

TEST_CASE("the service API on a real raftd") {
  Manager m;
  auto first = spec("web");
  publish(first, 8080);
  std::string webId = m.accepted(createRequest(first));
  CHECK(isValidId(webId));

  // create: Swarm's defaults are filled in, spec_version 1.
  auto web = m.service("web");
  CHECK(web->id == webId);
  CHECK(web->spec_version == 1);
  CHECK(web->spec->mode->replicas == 2);
  CHECK(web->spec->task->restart->condition == objects::RestartCondition::Any);
  CHECK(web->spec->task->restart->delay == 5 * kSecond);
  CHECK(web->spec->task->container->stop_grace_period == 10 * kSecond);
  CHECK(web->spec->update->parallelism == 1);
  CHECK(web->spec->update->monitor == 5 * kSecond);
  CHECK(web->spec->rollback->monitor == 5 * kSecond);
  CHECK(!web->previous_spec);
  CHECK(!web->update_status);

  SUBCASE("every refusal names what was wrong, and nothing is written") {
    const Refused cases[] = {
        {"bad name", [](auto& s) { s.annotations->name = "a b"; }, "invalid --name \"a b\""},
        {"taken name", [](auto& s) { s.annotations->name = "WEB"; },
         "a service named web already exists"},
        {"no image", [](auto& s) { s.task->container->image = ""; }, "a service needs an image"},
        {"replicas for global", [](auto& s) { s.mode->kind = objects::ServiceModeKind::Global; },
         "invalid --replicas 2: a global service runs one task per node"},
        {"negative replicas", [](auto& s) { s.mode->replicas = uint64_t(-1); },
         "invalid --replicas 18446744073709551615: that is a negative number read as unsigned"},
        {"bad constraint",
         [](auto& s) {
           s.task->placement = std::make_unique<objects::PlacementT>();
           s.task->placement->constraints = {"node.labels.zone=b"};
         },
         "invalid --constraint \"node.labels.zone=b\": constraint \"node.labels.zone=b\" has no == or != operator"},
        {"unknown network",
         [](auto& s) {
           s.task->networks.push_back(std::make_unique<objects::NetworkAttachmentConfigT>());
           s.task->networks.back()->target = "backend";
         },
         "invalid --network \"backend\": no such network"},
        {"unknown secret",
         [](auto& s) {
           s.task->container->secrets.push_back(std::make_unique<objects::SecretReferenceT>());
           s.task->container->secrets.back()->secret_name = "pw";
         },
         "invalid --secret \"pw\": no such secret"},
        {"port of another service", [](auto& s) { publish(s, 8080); },
         "invalid --publish 8080/tcp: port 8080 is already published by service web"},
        {"port twice", [](auto& s) { publish(s, 9000); publish(s, 9000); },
         "invalid --publish 9000/tcp: the port is published twice"},
        {"dnsrr with ingress", [](auto& s) { publish(s, 9000, objects::ResolutionMode::Dnsrr); },
         "--endpoint-mode dnsrr has no virtual IP for ingress ports"},
        {"failure ratio",
         [](auto& s) {
           s.update = std::make_unique<objects::UpdateConfigT>();
           s.update->max_failure_ratio = 2;
         },
         "invalid --update-max-failure-ratio 2.000000: a ratio is from 0 to 1"},
        {"negative delay",
         [](auto& s) {
           s.task->restart = std::make_unique<objects::RestartPolicyT>();
           s.task->restart->delay = -kSecond;
         },
         "invalid --restart-delay -1s: a duration cannot be negative"},
        {"mount without target",
         [](auto& s) {
           s.task->container->mounts.push_back(std::make_unique<objects::MountT>());
           s.task->container->mounts.back()->source = "data";
         },
         "invalid --mount source=data: a mount needs a target"},
        {"health check form",
         [](auto& s) {
           s.task->container->healthcheck = std::make_unique<objects::HealthConfigT>();
           s.task->container->healthcheck->test = {"CMD"};
         },
         "invalid health check: CMD needs a command to run"},
        {"memory limit",
         [](auto& s) {
           s.task->resources = std::make_unique<objects::ResourceRequirementsT>();
           s.task->resources->limits = std::make_unique<objects::ResourcesT>();
           s.task->resources->limits->memory_bytes = 1 << 20;
         },
         "invalid --limit-memory 1M: the minimum is 4M"},
    };
    auto before = m.services();
    for (const auto& c : cases) {
      CAPTURE(c.what);
      auto s = spec("api");
      c.change(s);
      auto error = m.refusal(createRequest(s));
      CHECK_MESSAGE(contains(error.message, c.message), error.message);
      CHECK(store::codeOf(error) ==
            (c.message.starts_with("a service named") ? ErrorCode::Conflict
                                                      : ErrorCode::InvalidArgument));
      CHECK(m.services() == before);
    }
    // An update is checked the same way, and the name and mode kind stay.
    auto renamed = spec("web2");
    CHECK(m.refusal(updateRequest("web", 0, &renamed)).message ==
          "invalid --name \"web2\": service web cannot be renamed; create a new service under "
          "that name");
    auto global = spec("web", 0);
    global.mode->kind = objects::ServiceModeKind::Global;
    CHECK(contains(m.refusal(updateRequest("web", 0, &global)).message,
                   "service web is replicated and its mode cannot change"));
    auto missing = m.refusal(updateRequest("nope", 0, &renamed));
    CHECK(store::codeOf(missing) == ErrorCode::NotFound);
    CHECK(contains(missing.message, "no service \"nope\""));
    CHECK(store::codeOf(m.refusal(removeRequest("nope"))) == ErrorCode::NotFound);
    CHECK(m.services() == before);
  }

  SUBCASE("a create without a name gets one, as docker's does") {
    auto unnamed = spec("");
    std::string id = m.accepted(createRequest(unnamed));
    std::string name;
    for (auto& bytes : m.services()) {
      auto* stored = flatbuffers::GetRoot<objects::Service>(bytes.data());
      if (stored->id()->str() == id) name = stored->spec()->annotations()->name()->str();
    }
    CHECK_MESSAGE(name.find('_') != std::string::npos, name);
  }

  SUBCASE("update, scale, rollback, stale versions and rm") {
    // An update of the image: the old spec kept, an update started.
    uint64_t read = web->meta->version();
    auto nginx = spec("web");
    publish(nginx, 8080);
    nginx.task->container->image = "nginx";
    CHECK(m.accepted(updateRequest(webId.substr(0, 6), read, &nginx)) == webId);
    web = m.service("web");
    CHECK(web->spec_version == 2);
    CHECK(web->spec->task->container->image == "nginx");
    REQUIRE(web->previous_spec);
    CHECK(web->previous_spec->task->container->image == "busybox");
    CHECK(web->previous_spec_version == 1);
    REQUIRE(web->update_status);
    CHECK(web->update_status->state == objects::UpdateState::Updating);
    CHECK(web->update_status->message == "update in progress");
    CHECK(web->update_status->spec_version == 2);
    CHECK(web->update_status->started_at > 0);

    // The version read before that update is stale now.
    auto stale = m.refusal(updateRequest("web", read, &nginx));
    CHECK(store::codeOf(stale) == ErrorCode::Conflict);
    CHECK(stale.message == "the service changed since it was read; run the command again");
    CHECK(m.service("web")->spec_version == 2);

    // A scale: a new spec_version, no update status.
    m.accepted(createRequest(spec("worker", 1)));
    auto more = spec("worker", 5);
    m.accepted(updateRequest("worker", m.service("worker")->meta->version(), &more));
    auto worker = m.service("worker");
    CHECK(worker->spec_version == 2);
    CHECK(worker->spec->mode->replicas == 5);
    CHECK(!worker->update_status);

    // Rollback: the specs swap.
    m.accepted(updateRequest("web", 0, nullptr, true));
    web = m.service("web");
    CHECK(web->spec_version == 3);
    CHECK(web->spec->task->container->image == "busybox");
    CHECK(web->previous_spec->task->container->image == "nginx");
    REQUIRE(web->update_status);
    CHECK(web->update_status->state == objects::UpdateState::RollbackStarted);
    CHECK(web->update_status->message == "manually requested rollback");
    m.accepted(createRequest(spec("fresh")));
    auto none = m.refusal(updateRequest("fresh", 0, nullptr, true));
    CHECK(none.message == "service fresh has no previous spec to roll back to");

    // A previous spec is checked again before it comes back: its port went to another service.
    auto on9100 = spec("moved");
    publish(on9100, 9100);
    m.accepted(createRequest(on9100));
    auto on9200 = spec("moved");
    publish(on9200, 9200);
    m.accepted(updateRequest("moved", 0, &on9200));
    auto taker = spec("taker");
    publish(taker, 9100);
    m.accepted(createRequest(taker));
    auto blocked = m.refusal(updateRequest("moved", 0, nullptr, true));
    CHECK(store::codeOf(blocked) == ErrorCode::InvalidArgument);
    CHECK(blocked.message ==
          "the previous spec of service moved cannot come back: invalid --publish 9100/tcp: port "
          "9100 is already published by service taker");
    CHECK(m.service("moved")->spec_version == 2);

    // rm: gone, and a second rm finds nothing.
    size_t count = m.services().size();
    CHECK(m.accepted(removeRequest("web")) == webId);
    CHECK(m.services().size() == count - 1);
    CHECK(store::codeOf(m.refusal(removeRequest(webId))) == ErrorCode::NotFound);
    // Its port is free again.
    auto api = spec("api");
    publish(api, 8080);
    CHECK(isValidId(m.accepted(createRequest(api))));
  }
}

TEST_CASE("the service API on a follower writes through the leader") {
  testing::RaftCluster c;
  int lead = testing::startThree(c);
  auto& follower = c.members[(lead + 1) % 3];
  bus::SyncClient services(kServiceProtocol);
  REQUIRE(services.connect(follower.socket()));
  auto created = services.call(createRequest(spec("web")), 30s);
  REQUIRE_MESSAGE(created.ok(), (created ? "" : created.error().message), c.logs());
  std::string id = created->as<serviceapi::Envelope>()->body_as_ServiceReply()->service_id()->str();

  // Committed by the cluster: the leader's copy has it.
  store::SyncClient leader;
  REQUIRE(leader.connect(c.members[lead].socket()));
  auto got = leader.getByName(ObjectKind::Service, "web");
  REQUIRE_MESSAGE(got.ok(), (got ? "" : got.error().message));
  CHECK(flatbuffers::GetRoot<objects::Service>(got->data.data())->id()->str() == id);

  auto removed = services.call(removeRequest("web"), 30s);
  REQUIRE_MESSAGE(removed.ok(), (removed ? "" : removed.error().message));
  auto gone = leader.getByName(ObjectKind::Service, "web");
  REQUIRE_MESSAGE(!gone.ok(), "service web is still there after its rm");
  CHECK(store::codeOf(gone.error()) == ErrorCode::NotFound);
}

}  // namespace
}  // namespace shoal
