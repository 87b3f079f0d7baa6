// The node and swarm commands' output against docker's (docs.docker.com `docker node ls`,
// `docker node inspect`, `docker swarm init`, `docker info`; docker/cli's formatters), from Node
// and Cluster FlatBuffers built here.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "tools/shoal/format.h"
#include "tools/shoal/nodes.h"
#include "tools/shoal/swarm_text.h"

using nlohmann::json;
using namespace shoal::cli;
namespace objects = shoal::objects;

namespace {

struct NodeFields {
  std::string id{};
  std::string hostname{};
  objects::NodeRole role = objects::NodeRole::Worker;
  objects::NodeState state = objects::NodeState::Ready;
  objects::NodeAvailability availability = objects::NodeAvailability::Active;
  objects::NodeMembership membership = objects::NodeMembership::Accepted;
  bool leader = false;
  objects::Reachability reachability = objects::Reachability::Reachable;
  std::string engineVersion = "0.1.0";
  std::map<std::string, std::string> labels{}, engineLabels{};
  std::string addr = "10.0.0.2";
  std::string message{};
  std::string name{};
  int64_t nanoCpus = 4'000'000'000;
  int64_t memory = 2'096'058'368;  // 1.952GiB, docker's own example
  uint64_t version = 10;
  int64_t createdAt = 1494975164'991066200;  // 2017-05-16T22:52:44.9910662Z
  int64_t updatedAt = 1494975165'230878043;
};

std::vector<flatbuffers::Offset<objects::KeyValue>> keyValues(
    flatbuffers::FlatBufferBuilder& fbb, const std::map<std::string, std::string>& m) {
  std::vector<flatbuffers::Offset<objects::KeyValue>> out;
  for (auto& [k, v] : m) out.push_back(objects::CreateKeyValueDirect(fbb, k.c_str(), v.c_str()));
  return out;
}

std::string buildNode(const NodeFields& f) {
  flatbuffers::FlatBufferBuilder fbb;
  auto labels = keyValues(fbb, f.labels);
  auto ann = objects::CreateAnnotationsDirect(fbb, f.name.empty() ? nullptr : f.name.c_str(), &labels);
  auto spec = objects::CreateNodeSpec(fbb, ann, f.role, f.membership, f.availability);
  auto platform = objects::CreatePlatformDirect(fbb, "amd64", "linux");
  auto resources = objects::CreateResources(fbb, f.nanoCpus, f.memory);
  auto engineLabels = keyValues(fbb, f.engineLabels);
  auto engine = objects::CreateEngineDescriptionDirect(fbb, f.engineVersion.c_str(), &engineLabels);
  auto desc = objects::CreateNodeDescriptionDirect(fbb, f.hostname.c_str(), platform, resources, engine);
  auto status = objects::CreateNodeStatusDirect(fbb, f.state, f.message.empty() ? nullptr : f.message.c_str(),
                                                f.addr.c_str());
  flatbuffers::Offset<objects::ManagerStatus> ms = 0;
  if (f.role == objects::NodeRole::Manager)
    ms = objects::CreateManagerStatusDirect(fbb, 7, (f.addr + ":2378").c_str(), f.leader, f.reachability);
  objects::Meta meta(f.version, f.createdAt, f.updatedAt);
  fbb.Finish(objects::CreateNodeDirect(fbb, f.id.c_str(), &meta, spec, desc, status, ms, f.role));
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

const objects::Node& node(const std::string& buf) { return *flatbuffers::GetRoot<objects::Node>(buf.data()); }

// A cluster of docker's documentation: a leader, a reachable and an unreachable manager, two
// workers (one down, one drained).
struct Fixture {
  std::vector<std::string> bufs;
  std::vector<const objects::Node*> nodes;
  Fixture() {
    auto add = [this](NodeFields f) { bufs.push_back(buildNode(f)); };
    NodeFields m1{.id = "1bcef6utixb0l0ca7gxuivsj0", .hostname = "manager1", .role = objects::NodeRole::Manager};
    m1.leader = true;
    add(m1);
    NodeFields m2{.id = "38ciaotwjuritcdtn9npbnkuz", .hostname = "manager2", .role = objects::NodeRole::Manager};
    add(m2);
    NodeFields m3{.id = "e216jshn25ckzbvmwlnh5jr3g", .hostname = "manager10", .role = objects::NodeRole::Manager};
    m3.reachability = objects::Reachability::Unreachable;
    m3.state = objects::NodeState::Down;
    add(m3);
    NodeFields w1{.id = "9j68exjopxe7wfl6yuxml7a7j", .hostname = "worker1"};
    w1.availability = objects::NodeAvailability::Drain;
    w1.labels = {{"zone", "a"}};
    add(w1);
    NodeFields w2{.id = "9jxqcbkz0c2gzx0x4znc3ffu1", .hostname = "worker2"};
    w2.state = objects::NodeState::Down;
    w2.membership = objects::NodeMembership::Pending;
    w2.engineLabels = {{"disk", "ssd"}};
    add(w2);
    for (auto& b : bufs) nodes.push_back(&node(b));
  }
  const objects::Node* byHost(std::string_view host) const {
    for (auto* n : nodes)
      if (n->description()->hostname()->string_view() == host) return n;
    return nullptr;
  }
};

std::string ls(const Fixture& fx, std::string_view format, std::string_view self,
               const std::vector<std::string>& filters = {}) {
  auto filter = parseNodeFilters(filters);
  REQUIRE(filter);
  std::vector<const objects::Node*> shown;
  for (auto* n : fx.nodes)
    if (matches(*filter, *n)) shown.push_back(n);
  sortNodes(shown);
  std::vector<json> rows;
  for (auto* n : shown) rows.push_back(nodeRow(*n, self));
  auto f = ListingFormat::parse(format, kNodeTable);
  REQUIRE(f);
  auto out = f->render(rows, nodeHeaders());
  REQUIRE(out);
  return *out;
}

}  // namespace

TEST_CASE("node ls: docker's table, sorted by hostname as docker sorts, `*` after this node's id") {
  Fixture fx;
  CHECK(ls(fx, "", "1bcef6utixb0l0ca7gxuivsj0") ==
        "ID                            HOSTNAME    STATUS    AVAILABILITY   MANAGER STATUS   ENGINE VERSION\n"
        "1bcef6utixb0l0ca7gxuivsj0 *   manager1    Ready     Active         Leader           0.1.0\n"
        "38ciaotwjuritcdtn9npbnkuz     manager2    Ready     Active         Reachable        0.1.0\n"
        "e216jshn25ckzbvmwlnh5jr3g     manager10   Down      Active         Unreachable      0.1.0\n"
        "9j68exjopxe7wfl6yuxml7a7j     worker1     Ready     Drain                           0.1.0\n"
        "9jxqcbkz0c2gzx0x4znc3ffu1     worker2     Down      Active                          0.1.0\n");
  // Not in the swarm's view (no self id): no star anywhere.
  CHECK(ls(fx, "", "").find('*') == std::string::npos);
  // The `*` moves with the node asked.
  CHECK(ls(fx, "{{.ID}}{{if .Self}} *{{end}}", "9j68exjopxe7wfl6yuxml7a7j") ==
        "1bcef6utixb0l0ca7gxuivsj0\n38ciaotwjuritcdtn9npbnkuz\ne216jshn25ckzbvmwlnh5jr3g\n"
        "9j68exjopxe7wfl6yuxml7a7j *\n9jxqcbkz0c2gzx0x4znc3ffu1\n");
}

TEST_CASE("node ls --format: templates, table templates and json lines with docker's fields") {
  Fixture fx;
  CHECK(ls(fx, "{{.Hostname}}", "") == "manager1\nmanager2\nmanager10\nworker1\nworker2\n");
  CHECK(ls(fx, "table {{.ID}}\t{{.Hostname}}", "", {"role=worker"}) ==
        "ID                          HOSTNAME\n"
        "9j68exjopxe7wfl6yuxml7a7j   worker1\n"
        "9jxqcbkz0c2gzx0x4znc3ffu1   worker2\n");
  CHECK(ls(fx, "table {{.Hostname}}\t{{.ManagerStatus}}\t{{.TLSStatus}}", "", {"role=manager"}) ==
        "HOSTNAME    MANAGER STATUS   TLS STATUS\n"
        "manager1    Leader           Ready\n"
        "manager2    Reachable        Ready\n"
        "manager10   Unreachable      Ready\n");
  auto lines = ls(fx, "json", "1bcef6utixb0l0ca7gxuivsj0", {"id=1bc"});
  CHECK(lines ==
        "{\"Availability\":\"Active\",\"EngineVersion\":\"0.1.0\",\"Hostname\":\"manager1\","
        "\"ID\":\"1bcef6utixb0l0ca7gxuivsj0\",\"ManagerStatus\":\"Leader\",\"Self\":true,"
        "\"Status\":\"Ready\",\"TLSStatus\":\"Ready\"}\n");
  // One line per node, each a whole JSON object.
  auto all = ls(fx, "json", "");
  CHECK(std::count(all.begin(), all.end(), '\n') == 5);
  CHECK(json::parse(all.substr(0, all.find('\n')))["Hostname"] == "manager1");
}

TEST_CASE("node ls --filter: docker's keys, OR within a key, AND across keys") {
  Fixture fx;
  CHECK(ls(fx, "{{.Hostname}}", "", {"role=manager"}) == "manager1\nmanager2\nmanager10\n");
  CHECK(ls(fx, "{{.Hostname}}", "", {"ROLE = Worker"}) == "worker1\nworker2\n");
  CHECK(ls(fx, "{{.Hostname}}", "", {"id=9j"}) == "worker1\nworker2\n");
  CHECK(ls(fx, "{{.Hostname}}", "", {"id=9j6", "id=38"}) == "manager2\nworker1\n");
  CHECK(ls(fx, "{{.Hostname}}", "", {"name=manager1"}) == "manager1\nmanager10\n");  // a prefix
  CHECK(ls(fx, "{{.Hostname}}", "", {"name=manager", "role=worker"}).empty());
  CHECK(ls(fx, "{{.Hostname}}", "", {"membership=pending"}) == "worker2\n");
  CHECK(ls(fx, "{{.Hostname}}", "", {"node.label=zone"}) == "worker1\n");
  CHECK(ls(fx, "{{.Hostname}}", "", {"node.label=zone=b"}).empty());
  CHECK(ls(fx, "{{.Hostname}}", "", {"label=disk=ssd"}) == "worker2\n");
  CHECK(ls(fx, "{{.Hostname}}", "", {"role="}) == "manager1\nmanager2\nmanager10\nworker1\nworker2\n");

  auto bad = parseNodeFilters({"role=boss"});
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("\"boss\"") != std::string::npos);
  CHECK(bad.error().message.find("role=manager or role=worker") != std::string::npos);
  auto unknown = parseNodeFilters({"colour=red"});
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error().message.find("invalid filter \"colour\"") != std::string::npos);
  auto noEq = parseNodeFilters({"manager"});
  REQUIRE_FALSE(noEq);
  CHECK(noEq.error().message.find("expected name=value") != std::string::npos);
  CHECK_FALSE(parseNodeFilters({"membership=maybe"}));
}

TEST_CASE("node ls: -q prints ids with docker's quiet format") {
  Fixture fx;
  CHECK(ls(fx, "{{.ID}}", "1bcef6utixb0l0ca7gxuivsj0", {"role=worker"}) ==
        "9j68exjopxe7wfl6yuxml7a7j\n9jxqcbkz0c2gzx0x4znc3ffu1\n");
}

TEST_CASE("naturalLess: fvbommel/sortorder's order") {
  CHECK(naturalLess("node2", "node10"));
  CHECK_FALSE(naturalLess("node10", "node2"));
  CHECK(naturalLess("a", "b"));
  CHECK(naturalLess("a", "ab"));
  CHECK(naturalLess("1", "a"));  // digits first
  CHECK(naturalLess("x01", "x001"));  // equal numbers: fewer zeros first
  CHECK(naturalLess("x1", "x01"));
  CHECK_FALSE(naturalLess("same", "same"));
  CHECK(naturalLess("m9z", "m10a"));
  std::vector<std::string> bufs = {buildNode({.id = "b", .hostname = "n"}), buildNode({.id = "a", .hostname = "n"}),
                                   buildNode({.id = "c", .hostname = "m"})};
  std::vector<const objects::Node*> ns = {&node(bufs[0]), &node(bufs[1]), &node(bufs[2])};
  sortNodes(ns);
  CHECK(ns[0]->id()->str() == "c");
  CHECK(ns[1]->id()->str() == "a");  // same hostname: by id
  CHECK(ns[2]->id()->str() == "b");
}

TEST_CASE("node inspect: docker's swarm.Node JSON") {
  NodeFields f{.id = "e216jshn25ckzbvmwlnh5jr3g", .hostname = "swarm-manager", .role = objects::NodeRole::Manager};
  f.leader = true;
  f.addr = "192.168.99.100";
  f.labels = {{"zone", "a"}};
  auto buf = buildNode(f);
  auto j = nodeInspect(node(buf), InspectShape::Json);
  CHECK(j == json::parse(R"({
    "ID": "e216jshn25ckzbvmwlnh5jr3g",
    "Version": {"Index": 10},
    "CreatedAt": "2017-05-16T22:52:44.9910662Z",
    "UpdatedAt": "2017-05-16T22:52:45.230878043Z",
    "Spec": {"Labels": {"zone": "a"}, "Role": "manager", "Availability": "active"},
    "Description": {
      "Hostname": "swarm-manager",
      "Platform": {"Architecture": "amd64", "OS": "linux"},
      "Resources": {"NanoCPUs": 4000000000, "MemoryBytes": 2096058368},
      "Engine": {"EngineVersion": "0.1.0"}
    },
    "Status": {"State": "ready", "Addr": "192.168.99.100"},
    "ManagerStatus": {"Leader": true, "Reachability": "reachable", "Addr": "192.168.99.100:2378"}
  })"));

  // The default --format: an indented array, as docker prints it.
  auto fmt = InspectFormat::parse("");
  REQUIRE(fmt);
  auto text = fmt->render({j});
  REQUIRE(text);
  CHECK(text->substr(0, 12) == "[\n    {\n    ");
  CHECK(json::parse(*text)[0]["Status"]["State"] == "ready");

  // A worker has no ManagerStatus; an empty message is left out.
  auto w = buildNode({.id = "w1", .hostname = "worker1"});
  auto wj = nodeInspect(node(w), InspectShape::Json);
  CHECK_FALSE(wj.contains("ManagerStatus"));
  CHECK_FALSE(wj["Status"].contains("Message"));
  CHECK(wj["Spec"]["Role"] == "worker");
}

TEST_CASE("node inspect --format: templates see docker's typed fields") {
  NodeFields f{.id = "w1", .hostname = "worker1", .state = objects::NodeState::Down};
  f.availability = objects::NodeAvailability::Pause;
  auto buf = buildNode(f);
  auto run = [&](std::string_view format) {
    auto fmt = InspectFormat::parse(format);
    REQUIRE(fmt);
    REQUIRE(fmt->kind() == InspectFormat::Kind::Template);
    auto out = fmt->render({nodeInspect(node(buf), InspectShape::Template)});
    REQUIRE(out);
    return *out;
  };
  CHECK(run("{{.Status.State}}") == "down\n");
  CHECK(run("{{.Spec.Availability}}") == "pause\n");
  CHECK(run("{{.Spec.Role}} {{.Description.Hostname}}") == "worker worker1\n");
  // Docker's struct has these fields even when empty: "" and not <no value>.
  CHECK(run("[{{.Status.Message}}][{{.Spec.Name}}]") == "[][]\n");
  CHECK(run("{{.Description.Platform.Architecture}}/{{.Description.Resources.NanoCPUs}}") ==
        "amd64/4000000000\n");
  CHECK(run("{{json .Spec.Labels}}") == "{}\n");
  auto m = buildNode({.id = "m1", .hostname = "m1", .role = objects::NodeRole::Manager});
  auto fmt = InspectFormat::parse("{{.ManagerStatus.Reachability}} {{.ManagerStatus.Leader}}");
  REQUIRE(fmt);
  auto out = fmt->render({nodeInspect(node(m), InspectShape::Template)});
  REQUIRE(out);
  CHECK(*out == "reachable false\n");
}

TEST_CASE("node inspect --pretty: docker's human text") {
  NodeFields f{.id = "e216jshn25ckzbvmwlnh5jr3g", .hostname = "swarm-manager", .role = objects::NodeRole::Manager};
  f.leader = true;
  f.addr = "192.168.99.100";
  f.labels = {{"zone", "a"}, {"ssd", ""}};
  f.engineLabels = {{"disk", "ssd"}};
  auto buf = buildNode(f);
  CHECK(nodePretty(node(buf)) ==
        "ID:\t\t\te216jshn25ckzbvmwlnh5jr3g\n"
        "Labels:\n"
        " - ssd\n"
        " - zone=a\n"
        "Hostname:              \tswarm-manager\n"
        "Joined at:             \t2017-05-16 22:52:44.9910662 +0000 UTC\n"
        "Status:\n"
        " State:\t\t\tReady\n"
        " Availability:         \tActive\n"
        " Address:\t\t192.168.99.100\n"
        "Manager Status:\n"
        " Address:\t\t192.168.99.100:2378\n"
        " Raft Status:\t\tReachable\n"
        " Leader:\t\tYes\n"
        "Platform:\n"
        " Operating System:\tlinux\n"
        " Architecture:\t\tamd64\n"
        "Resources:\n"
        " CPUs:\t\t\t4\n"
        " Memory:\t\t1.952GiB\n"
        "Engine Version:\t\t0.1.0\n"
        "Engine Labels:\n"
        " - disk=ssd\n");
  NodeFields w{.id = "w1", .hostname = "worker1", .state = objects::NodeState::Down};
  w.message = "heartbeat failure";
  w.name = "edge";
  auto wb = buildNode(w);
  auto text = nodePretty(node(wb));
  CHECK(text.find("Name:\t\t\tedge\n") != std::string::npos);
  CHECK(text.find(" State:\t\t\tDown\n Message:              \tHeartbeat failure\n") != std::string::npos);
  CHECK(text.find("Manager Status") == std::string::npos);
}

TEST_CASE("resolveNode: id, hostname, unique id prefix, self, as docker's daemon finds a node") {
  Fixture fx;
  auto id = [&](std::string_view ref, std::string_view self = "") -> std::string {
    auto n = resolveNode(fx.nodes, ref, self);
    return n ? (*n)->id()->str() : "error: " + n.error().message;
  };
  CHECK(id("38ciaotwjuritcdtn9npbnkuz") == "38ciaotwjuritcdtn9npbnkuz");
  CHECK(id("worker2") == "9jxqcbkz0c2gzx0x4znc3ffu1");
  CHECK(id("38c") == "38ciaotwjuritcdtn9npbnkuz");
  CHECK(id("9j") == "error: node 9j is ambiguous (2 matches found)");
  CHECK(id("nosuch") == "error: node nosuch not found");
  CHECK(id("self", "e216jshn25ckzbvmwlnh5jr3g") == "e216jshn25ckzbvmwlnh5jr3g");
  CHECK(id("self").find("error: cannot tell which node `self` is") == 0);
}

TEST_CASE("times and sizes as docker prints them") {
  CHECK(rfc3339Nano(1494975164'991066200) == "2017-05-16T22:52:44.9910662Z");
  CHECK(rfc3339Nano(1494975164'000000000) == "2017-05-16T22:52:44Z");
  CHECK(rfc3339Nano(0) == "1970-01-01T00:00:00Z");
  CHECK(goTimeString(1494975164'000000001) == "2017-05-16 22:52:44.000000001 +0000 UTC");
  CHECK(bytesSize(2'096'058'368) == "1.952GiB");
  CHECK(bytesSize(512.0 * 1024 * 1024) == "512MiB");
  CHECK(bytesSize(1000) == "1000B");
  CHECK(capitalizeFirst("ready") == "Ready");
  CHECK(capitalizeFirst("") == "");
}

TEST_CASE("swarm init and join-token: docker's texts") {
  CHECK(initText("dxn1zf6l61qsb1josjja83ngz", "SWMTKN-1-49nj1-abc", "192.168.99.121:2377") ==
        "Swarm initialized: current node (dxn1zf6l61qsb1josjja83ngz) is now a manager.\n\n"
        "To add a worker to this swarm, run the following command:\n\n"
        "    shoal swarm join --token SWMTKN-1-49nj1-abc 192.168.99.121:2377\n\n"
        "To add a manager to this swarm, run 'shoal swarm join-token manager' and follow the "
        "instructions.\n\n");
  CHECK(joinTokenText("manager", "SWMTKN-1-x-y", "10.0.0.1:2377") ==
        "To add a manager to this swarm, run the following command:\n\n"
        "    shoal swarm join --token SWMTKN-1-x-y 10.0.0.1:2377\n\n");
  CHECK(rotatedText("worker") == "Successfully rotated worker join token.\n\n");
}

TEST_CASE("duration flags: Go's forms, more than zero") {
  using namespace std::chrono;
  CHECK(*parsePositiveDuration("5s") == seconds(5));
  CHECK(*parsePositiveDuration("1m30s") == seconds(90));
  CHECK(*parsePositiveDuration("2160h") == hours(2160));
  CHECK(*parsePositiveDuration("300ms") == milliseconds(300));
  for (const char* bad : {"0", "0s", "-5s", "5", "five", "", "5 s"}) {
    auto d = parsePositiveDuration(bad);
    CHECK_MESSAGE(!d, bad);
  }
  CHECK(parsePositiveDuration("-5s").error().message.find("must be more than 0") != std::string::npos);
  CHECK(humanDuration(seconds(5)) == "5 seconds");
  CHECK(humanDuration(seconds(1)) == "1 second");
  CHECK(humanDuration(milliseconds(500)) == "Less than a second");
  CHECK(humanDuration(seconds(90)) == "About a minute");
  CHECK(humanDuration(minutes(30)) == "30 minutes");
  CHECK(humanDuration(minutes(61)) == "About an hour");
  CHECK(humanDuration(hours(5)) == "5 hours");
  CHECK(humanDuration(hours(24 * 3)) == "3 days");
  CHECK(humanDuration(hours(24 * 20)) == "2 weeks");
  CHECK(humanDuration(hours(2160)) == "3 months");  // Swarm's default certificate expiry
  CHECK(humanDuration(hours(24 * 365 * 3)) == "3 years");
}

namespace {

std::string buildCluster() {
  flatbuffers::FlatBufferBuilder fbb;
  auto ann = objects::CreateAnnotationsDirect(fbb, "default");
  auto orch = objects::CreateOrchestrationConfig(fbb, 5);
  auto raft = objects::CreateRaftConfig(fbb, 10000, 0, 500, 1, 10, 100);
  auto disp = objects::CreateDispatcherConfig(fbb, 5'000'000'000);
  auto ca = objects::CreateCaConfig(fbb, int64_t(2160) * 3600 * 1'000'000'000);
  auto spec = objects::CreateClusterSpec(fbb, ann, orch, raft, disp, ca);
  auto id = fbb.CreateString("r3xdxly8zv82e4kg38krd0vog");
  auto pools = fbb.CreateVectorOfStrings({"10.0.0.0/8"});
  objects::Meta meta(3, 1494975164'000000000, 1494975164'000000000);
  fbb.Finish(objects::CreateCluster(fbb, id, &meta, spec, 0, 0, 0, 0, pools, 24, 4789));
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

}  // namespace

TEST_CASE("shoal info: docker's Swarm section from agentd, raftd and the store") {
  Fixture fx;
  auto cluster = buildCluster();
  InfoSources src;
  src.agent = json{{"LocalNodeState", "active"},
                   {"NodeID", "1bcef6utixb0l0ca7gxuivsj0"},
                   {"NodeAddr", "192.168.65.2"},
                   {"ControlAvailable", true},
                   {"Error", ""},
                   {"RemoteManagers", json::array({{{"NodeID", "38ciaotwjuritcdtn9npbnkuz"}, {"Addr", "192.168.65.3:2377"}},
                                                   {{"NodeID", "1bcef6utixb0l0ca7gxuivsj0"}, {"Addr", "192.168.65.2:2377"}}})}};
  src.raft = json{{"LocalNodeState", "active"}, {"NodeID", "1bcef6utixb0l0ca7gxuivsj0"}, {"Leader", "1bcef6utixb0l0ca7gxuivsj0"}};
  src.cluster = flatbuffers::GetRoot<objects::Cluster>(cluster.data());
  src.nodes = fx.nodes;
  auto info = swarmInfo(src);
  CHECK(info["Swarm"]["Managers"] == 3);
  CHECK(info["Swarm"]["Nodes"] == 5);
  CHECK(info["Swarm"]["Cluster"]["ID"] == "r3xdxly8zv82e4kg38krd0vog");
  CHECK(info["Swarm"]["Cluster"]["Spec"]["Dispatcher"]["HeartbeatPeriod"] == 5'000'000'000);
  CHECK(info["Swarm"]["Cluster"]["CreatedAt"] == "2017-05-16T22:52:44Z");
  CHECK(infoText(info) ==
        "Swarm: active\n"
        " NodeID: 1bcef6utixb0l0ca7gxuivsj0\n"
        " Is Manager: true\n"
        " ClusterID: r3xdxly8zv82e4kg38krd0vog\n"
        " Managers: 3\n"
        " Nodes: 5\n"
        " Default Address Pool: 10.0.0.0/8  \n"
        " SubnetSize: 24\n"
        " Data Path Port: 4789\n"
        " Orchestration:\n"
        "  Task History Retention Limit: 5\n"
        " Raft:\n"
        "  Snapshot Interval: 10000\n"
        "  Number of Old Snapshots to Retain: 0\n"
        "  Heartbeat Tick: 1\n"
        "  Election Tick: 10\n"
        "  Leader: manager1 (1bcef6utixb0l0ca7gxuivsj0)\n"
        " Dispatcher:\n"
        "  Heartbeat Period: 5 seconds\n"
        " CA Configuration:\n"
        "  Expiry Duration: 3 months\n"
        "  Force Rotate: 0\n"
        " Autolock Managers: false\n"
        " Root Rotation In Progress: false\n"
        " Node Address: 192.168.65.2\n"
        " Manager Addresses:\n"
        "  192.168.65.2:2377\n"
        "  192.168.65.3:2377\n");
  // docker info --format '{{.Swarm.NodeID}}' works the same.
  auto t = Template::parse("{{.Swarm.NodeID}} {{.Swarm.ControlAvailable}}", TextEscapes::Keep);
  REQUIRE(t);
  CHECK(*t->render(info) == "1bcef6utixb0l0ca7gxuivsj0 true");
}

TEST_CASE("shoal info: a worker, a node out of any swarm, and raftd alone") {
  InfoSources worker;
  worker.agent = json{{"LocalNodeState", "active"}, {"NodeID", "w1"}, {"NodeAddr", "10.0.0.5"},
                      {"ControlAvailable", false}, {"RemoteManagers", json::array({{{"NodeID", "m1"}, {"Addr", "10.0.0.1:2377"}}})}};
  CHECK(infoText(swarmInfo(worker)) ==
        "Swarm: active\n NodeID: w1\n Is Manager: false\n Node Address: 10.0.0.5\n"
        " Manager Addresses:\n  10.0.0.1:2377\n");

  InfoSources out;
  out.agent = json{{"LocalNodeState", "inactive"}, {"NodeID", ""}};
  CHECK(infoText(swarmInfo(out)) == "Swarm: inactive\n");

  // agentd absent: raftd tells the node id and that it is a manager.
  InfoSources raftOnly;
  raftOnly.raft = json{{"LocalNodeState", "active"}, {"NodeID", "m1"}, {"Leader", "m2"}};
  auto info = swarmInfo(raftOnly);
  CHECK(info["Swarm"]["NodeID"] == "m1");
  CHECK(info["Swarm"]["ControlAvailable"] == true);
  CHECK(info["Swarm"]["Leader"]["NodeID"] == "m2");
  // With the store's nodes, this node's address is the one the managers see.
  Fixture fx;
  raftOnly.raft = json{{"LocalNodeState", "active"}, {"NodeID", "38ciaotwjuritcdtn9npbnkuz"}};
  raftOnly.nodes = fx.nodes;
  CHECK(swarmInfo(raftOnly)["Swarm"]["NodeAddr"] == "10.0.0.2");

  // A daemon's key of the wrong type is ignored, not trusted.
  InfoSources bad;
  bad.agent = json{{"LocalNodeState", 7}, {"NodeID", json::array()}, {"ControlAvailable", "yes"}};
  auto b = swarmInfo(bad);
  CHECK(b["Swarm"]["LocalNodeState"] == "inactive");
  CHECK(b["Swarm"]["NodeID"] == "");
  CHECK(b["Swarm"]["ControlAvailable"] == false);
}
