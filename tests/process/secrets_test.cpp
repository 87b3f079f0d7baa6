// Secrets and configs end to end on a real raftd after swarm init, through the CLI (docs/
// containers.md "Secrets and configs"): `shoal secret create NAME -` from standard input,
// ls, inspect (never the data), rm; a duplicate refused; one a service uses refused by rm,
// naming the service; configs show their data (base64) in inspect. The rules one by one are
// in tests/unit/service_rules_test.cpp.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/bus.h"
#include "common/protocols.h"
#include "common/store_client.h"
#include "tests/support/daemons.h"
#include "tests/support/node_daemons.h"
#include "tests/support/process.h"
#include "tests/support/tempdir.h"

namespace shoal {
namespace {

using namespace std::chrono_literals;
using testing::daemonPath;
using testing::Process;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// One raftd that ran swarm init, and the CLI pointed at its run dir.
class Manager {
 public:
  Manager()
      : run_(tmp_ / "run"),
        process_({daemonPath("raftd"), "--foreground", "--state-dir", tmp_ / "state", "--run-dir",
                  run_, "--node-dir", tmp_ / "node", "--log-file", tmp_ / "raftd.log"}),
        swarm_(kSwarmProtocol),
        services_(kServiceProtocol) {
    REQUIRE(swarm_.connect("ipc://" + run_ + "/raftd.sock"));
    REQUIRE(services_.connect("ipc://" + run_ + "/raftd.sock"));
    bool up = testing::waitFor([&] { return swarm_.call(info(), 1s).ok(); }, 10s);
    REQUIRE_MESSAGE(up, "raftd did not answer Info:\n", process_.err());
    flatbuffers::FlatBufferBuilder fbb;
    std::string advertise = "127.0.0.1:" + std::to_string(testing::freePortPair());
    auto body = swarmapi::CreateInitRequestDirect(fbb, advertise.c_str());
    auto init = swarm_.call(bus::message<swarmapi::Envelope>(fbb, swarmapi::Body::InitRequest, body.Union()), 30s);
    REQUIRE_MESSAGE(init.ok(), (init ? "" : init.error().message));
  }

  // `shoal --run-dir RUN args...`, with `input` on its standard input (through sh, since
  // test processes read /dev/null).
  testing::RunResult shoal(const std::vector<std::string>& args, const std::string& input = "") {
    std::string command = "printf '%s' \"$SHOAL_INPUT\" | \"$0\" --run-dir \"$1\"";
    for (size_t i = 0; i < args.size(); ++i) command += " \"${" + std::to_string(i + 2) + "}\"";
    std::vector<std::string> argv = {"/bin/sh", "-c", command, testing::buildDir() + "/tools/shoal/shoal", run_};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::run(argv, {"SHOAL_INPUT=" + input}, 30s);
  }

  // A service "name" using secret `secret` (by name), through the service API.
  void createServiceUsing(const std::string& name, const std::string& secret) {
    objects::ServiceSpecT s;
    s.annotations = std::make_unique<objects::AnnotationsT>();
    s.annotations->name = name;
    s.task = std::make_unique<objects::TaskSpecT>();
    s.task->container = std::make_unique<objects::ContainerSpecT>();
    s.task->container->image = "busybox";
    auto ref = std::make_unique<objects::SecretReferenceT>();
    ref->secret_name = secret;
    s.task->container->secrets.push_back(std::move(ref));
    s.mode = std::make_unique<objects::ServiceModeT>();
    s.mode->replicas = 1;
    flatbuffers::FlatBufferBuilder fbb;
    auto body = serviceapi::CreateCreateServiceRequest(fbb, objects::ServiceSpec::Pack(fbb, &s));
    auto r = services_.call(bus::message<serviceapi::Envelope>(fbb, serviceapi::Body::CreateServiceRequest, body.Union()), 30s);
    REQUIRE_MESSAGE(r.ok(), (r ? "" : r.error().message));
  }

  std::string log() const { return testing::readFile(tmp_ / "raftd.log"); }

 private:
  static bus::Buffer info() {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = swarmapi::CreateInfoRequest(fbb);
    return bus::message<swarmapi::Envelope>(fbb, swarmapi::Body::InfoRequest, body.Union());
  }

  testing::TempDir tmp_;
  std::string run_;
  Process process_;
  bus::SyncClient swarm_;
  bus::SyncClient services_;
};

}  // namespace

TEST_CASE("shoal secret and config create, ls, inspect and rm on a real raftd") {
  Manager m;
  const std::string data = "s3cr3t-value\nwith two lines";

  auto created = m.shoal({"secret", "create", "s1", "-", "--label", "env=prod"}, data);
  REQUIRE_MESSAGE(created.status.code == 0, created.err);
  std::string id = created.out.substr(0, created.out.find('\n'));
  CHECK(id.size() == 25);

  auto dup = m.shoal({"secret", "create", "S1", "-"}, "other");
  CHECK(dup.status.code == 1);
  CHECK_MESSAGE(contains(dup.err, "secret s1 already exists"), dup.err);
  auto empty = m.shoal({"secret", "create", "s2", "-"}, "");
  CHECK(empty.status.code == 1);
  CHECK_MESSAGE(contains(empty.err, "has no data"), empty.err);
  auto badName = m.shoal({"secret", "create", "-bad", "-"}, "x");
  CHECK(badName.status.code != 0);

  auto ls = m.shoal({"secret", "ls"});
  REQUIRE_MESSAGE(ls.status.code == 0, ls.err);
  CHECK_MESSAGE(contains(ls.out, "ID"), ls.out);
  CHECK_MESSAGE(contains(ls.out, "s1"), ls.out);
  CHECK_MESSAGE(contains(ls.out, " ago"), ls.out);
  auto quiet = m.shoal({"secret", "ls", "-q"});
  CHECK(quiet.out == id + "\n");
  auto json = m.shoal({"secret", "ls", "--format", "json"});
  REQUIRE(json.status.code == 0);
  CHECK(nlohmann::json::parse(json.out)["Name"] == "s1");

  // inspect shows everything but the data, by name, id or id prefix.
  for (const std::string& ref : {std::string("s1"), id, id.substr(0, 6)}) {
    auto in = m.shoal({"secret", "inspect", ref});
    REQUIRE_MESSAGE(in.status.code == 0, in.err);
    auto j = nlohmann::json::parse(in.out);
    REQUIRE(j.size() == 1);
    CHECK(j[0]["ID"] == id);
    CHECK(j[0]["Spec"]["Name"] == "s1");
    CHECK(j[0]["Spec"]["Labels"]["env"] == "prod");
    CHECK_FALSE(j[0]["Spec"].contains("Data"));
    CHECK_FALSE(contains(in.out, "s3cr3t"));
  }
  auto pretty = m.shoal({"secret", "inspect", "--pretty", "s1"});
  CHECK(contains(pretty.out, "Name:            s1"));
  CHECK_FALSE(contains(pretty.out, "s3cr3t"));
  CHECK_FALSE(contains(m.log(), "s3cr3t"));

  // In use: refused, naming the service; free again once the service is gone.
  m.createServiceUsing("web", "s1");
  auto inUse = m.shoal({"secret", "rm", "s1"});
  CHECK(inUse.status.code == 1);
  CHECK_MESSAGE(contains(inUse.err, "secret s1 is in use by service(s) web: remove it from them first"), inUse.err);
  auto serviceRm = m.shoal({"service", "rm", "web"});
  REQUIRE_MESSAGE(serviceRm.status.code == 0, serviceRm.err);
  auto rm = m.shoal({"secret", "rm", "s1"});
  REQUIRE_MESSAGE(rm.status.code == 0, rm.err);
  CHECK(rm.out == "s1\n");
  CHECK(m.shoal({"secret", "ls", "-q"}).out.empty());
  auto missing = m.shoal({"secret", "rm", "s1"});
  CHECK(missing.status.code == 1);
  CHECK_MESSAGE(contains(missing.err, "no secret \"s1\""), missing.err);

  // Configs: the data is shown, base64 in Spec.Data as docker's.
  auto config = m.shoal({"config", "create", "c1", "-"}, "hello");
  REQUIRE_MESSAGE(config.status.code == 0, config.err);
  auto cin = m.shoal({"config", "inspect", "c1"});
  REQUIRE_MESSAGE(cin.status.code == 0, cin.err);
  CHECK(nlohmann::json::parse(cin.out)[0]["Spec"]["Data"] == "aGVsbG8=");
  CHECK(contains(m.shoal({"config", "ls"}).out, "c1"));
  CHECK(m.shoal({"config", "rm", "c1"}).status.code == 0);
}

}  // namespace shoal
