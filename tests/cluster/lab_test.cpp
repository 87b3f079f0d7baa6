// shoal-lab as a user runs it (DESIGN.md §10, docs/lab.md): a lab of 3 managers and a worker
// forms its swarm (init and join, every node runs every daemon); `exec` reaches a node's daemons through its run dir; nodes reach each
// other inside the lab and nothing outside it; kill/start, partition/heal; two labs at once;
// `down` leaves no namespace, link, process or dir behind, also after the lab's daemons were
// killed and its state file lost. Needs root (namespaces).
#include <doctest/doctest.h>

#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "tests/cluster/lab_support.h"
#include "tests/support/process.h"
#include "tools/lab/lab.h"
#include "tools/lab/node_list.h"

namespace {

using namespace shoal::labtest;

// Whether `from` opens a TCP connection to addr:2378 (raftd's raft port) within 2 s.
bool reaches(const std::string& name, const std::string& from, const std::string& addr) {
  auto r = lab({"exec", "--name", name, from, "timeout", "2", "bash", "-c",
                "exec 3<>/dev/tcp/" + addr + "/2378"});
  return r.status.code == 0;
}

// `shoal node ls` in node, parsed; empty when it failed.
std::vector<shoal::lab::SwarmNode> nodeLs(const std::string& name, const std::string& node) {
  auto r = lab({"exec", "--name", name, node, "shoal", "node", "ls", "--format", "json"}, 20s);
  if (r.status.code != 0) return {};
  try {
    return shoal::lab::parseNodeList(r.out);
  } catch (const shoal::lab::LabError&) {
    return {};
  }
}

}  // namespace

TEST_CASE("a lab: cluster formed, exec, kill and start, partition and heal, two labs, down") {
  requireRoot();
  const std::string a = uniqueName("a"), b = uniqueName("b");
  auto linksBefore = rootLinks();
  LabGuard guardA{a}, guardB{b};

  auto up = lab({"up", "--name", a, "--managers", "3", "--workers", "1", "--bin-dir", buildDir()});
  REQUIRE_MESSAGE(up.status.code == 0, said(up));
  CHECK(up.out.find("shoal-lab exec --name " + a + " m1 shoal") != std::string::npos);
  CHECK(up.out.find("shoal swarm init") != std::string::npos);

  auto l = ls(a);
  REQUIRE(l["nodes"].size() == 4);
  CHECK(nodeOf(l, "m1")["daemons"].size() == 6);
  CHECK(nodeOf(l, "w1")["daemons"].size() == 6);  // every node runs every daemon
  CHECK(nodeOf(l, "w1")["role"] == "worker");
  CHECK(nodeOf(l, "m2")["netns"] == "shoal-" + a + "-m2");
  for (auto& n : l["nodes"])
    for (auto& [d, r] : n["daemons"].items()) {
      CHECK_MESSAGE(r["running"] == true, n["name"] << " " << d);
      CHECK_MESSAGE(alive(r["pid"].get<int>()), n["name"] << " " << d);
      auto argv = r["argv"].dump();
      CHECK_MESSAGE(argv.find("--node-dir") != std::string::npos, argv);
      CHECK_MESSAGE(argv.find("--bootstrap") == std::string::npos, argv);
      CHECK_MESSAGE(argv.find("--join") == std::string::npos, argv);
    }
  CHECK(nodeOf(l, "w1")["daemons"]["agentd"]["argv"].dump().find("\"--hostname\",\"w1\"") != std::string::npos);
  const std::string m1 = nodeOf(l, "m1")["address"], m3 = nodeOf(l, "m3")["address"];

  // The swarm, formed when up returned: exec reaches each node's daemons through its run dir.
  for (auto node : {"m1", "m2", "m3"}) {
    auto nodes = nodeLs(a, node);
    CHECK_MESSAGE(shoal::lab::notFormedBecause(nodes, {"m1", "m2", "m3"}, {"w1"}) == "", node);
    auto self = shoal::lab::findHost(nodes, node);
    CHECK_MESSAGE((self && self->self), node << " is not marked as the node asked");
  }

  // The underlay: nodes reach each other, and the root namespace has none of the lab's addresses.
  CHECK(reaches(a, "w1", m1));
  CHECK(reaches(a, "m1", m3));
  CHECK(ipOut({"-o", "addr", "show"}).find("198.18.") == std::string::npos);
  auto code = lab({"exec", "--name", a, "w1", "bash", "-c", "exit 7"});
  CHECK(code.status.code == 7);

  // kill and start: a new process.
  pid_t before = nodeOf(l, "m2")["daemons"]["raftd"]["pid"];
  auto k = lab({"kill", "--name", a, "m2", "raftd"});
  REQUIRE_MESSAGE(k.status.code == 0, said(k));
  CHECK(waitFor([&] { return !alive(before); }, 5s));
  CHECK(nodeOf(ls(a), "m2")["daemons"]["raftd"]["running"] == false);
  auto st = lab({"start", "--name", a, "m2", "raftd"});
  REQUIRE_MESSAGE(st.status.code == 0, said(st));
  auto after = nodeOf(ls(a), "m2")["daemons"]["raftd"];
  CHECK(after["running"] == true);
  CHECK(after["pid"].get<int>() != before);
  CHECK(lab({"kill", "--name", a, "w1", "nosuchd"}).status.code == 1);
  CHECK(lab({"exec", "--name", a, "w9", "true"}).status.code == 1);

  // partition m1: it reaches no one and no one it; m2 and m3 go on with a leader of their own.
  auto p = lab({"partition", "--name", a, "m1"});
  REQUIRE_MESSAGE(p.status.code == 0, said(p));
  CHECK_FALSE(reaches(a, "w1", m1));
  CHECK_FALSE(reaches(a, "m1", m3));
  CHECK(reaches(a, "w1", m3));
  CHECK(waitFor([&] {
    auto leader = shoal::lab::soleLeader(nodeLs(a, "m3"));
    return leader && *leader != "m1";
  }, 30s));
  auto h = lab({"heal", "--name", a});
  REQUIRE_MESSAGE(h.status.code == 0, said(h));
  CHECK(reaches(a, "w1", m1));

  // A second lab at once, on its own subnet, which the first cannot reach.
  auto upB = lab({"up", "--name", b, "--managers", "1", "--workers", "1", "--bin-dir", buildDir()});
  REQUIRE_MESSAGE(upB.status.code == 0, said(upB));
  auto lb = ls(b);
  CHECK(lb["subnet"] != l["subnet"]);
  const std::string bm1 = nodeOf(lb, "m1")["address"];
  CHECK(reaches(b, "w1", bm1));
  CHECK_FALSE(reaches(a, "w1", bm1));
  CHECK_FALSE(reaches(b, "w1", m1));
  CHECK(lab({"up", "--name", b, "--bin-dir", buildDir()}).status.code == 1);  // the name is taken

  // down: nothing left, the other lab untouched until its own down.
  auto pidsA = pidsOf(ls(a)), pidsB = pidsOf(lb);
  auto d = lab({"down", "--name", a});
  REQUIRE_MESSAGE(d.status.code == 0, said(d));
  checkGone(a, pidsA, linksBefore);
  for (pid_t pb : pidsB) CHECK(alive(pb));
  CHECK(reaches(b, "w1", bm1));
  auto db = lab({"down", "--name", b});
  REQUIRE_MESSAGE(db.status.code == 0, said(db));
  checkGone(b, pidsB, linksBefore);
  CHECK(lab({"down", "--name", b}).status.code == 0);  // again: nothing to do
}

TEST_CASE("down removes a lab whose daemons were killed and whose state file is lost") {
  requireRoot();
  const std::string c = uniqueName("c");
  auto linksBefore = rootLinks();
  LabGuard guard{c};
  auto up = lab({"up", "--name", c, "--managers", "1", "--workers", "1", "--bin-dir", buildDir()});
  REQUIRE_MESSAGE(up.status.code == 0, said(up));
  auto l = ls(c);
  auto pids = pidsOf(l);
  REQUIRE(pids.size() == 12);
  // A recorded pid that now belongs to another process is never signalled: here the state
  // file names a sleep of ours where w1's agentd was (its start time is agentd's).
  shoal::testing::Process bystander({"/bin/sleep", "60"});
  {
    const std::string file = "/var/lib/shoal-lab/" + c + "/lab.json";
    std::ifstream in(file);
    auto state = nlohmann::json::parse(in);
    for (auto& n : state["nodes"])
      if (n["name"] == "w1") n["daemons"]["agentd"]["pid"] = bystander.pid();
    std::ofstream(file) << state.dump();
  }
  auto k = lab({"kill", "--name", c, "w1", "agentd"});
  CHECK_MESSAGE(k.status.code == 0, said(k));
  CHECK(k.out.find("was not running") != std::string::npos);
  std::this_thread::sleep_for(200ms);
  CHECK(bystander.running());
  CHECK(alive(nodeOf(l, "w1")["daemons"]["agentd"]["pid"].get<int>()));  // now known only by its netns

  // The lab "crashed": some daemons died with it, the others run on, and its state is gone.
  auto m1 = nodeOf(l, "m1");
  for (auto& [d, r] : m1["daemons"].items()) ::kill(r["pid"].get<int>(), SIGKILL);
  std::filesystem::remove("/var/lib/shoal-lab/" + c + "/lab.json");
  CHECK(lab({"ls", "--name", c}).status.code == 1);
  auto d = lab({"down", "--name", c});
  REQUIRE_MESSAGE(d.status.code == 0, said(d));
  CHECK(d.out.find("removed") != std::string::npos);
  checkGone(c, pids, linksBefore);
  CHECK(bystander.running());
}

TEST_CASE("a lab owns exactly its own namespaces, so down never takes another lab's") {
  using shoal::lab::ownsNetns;
  CHECK(ownsNetns("a", "shoal-a-hub"));
  CHECK(ownsNetns("a", "shoal-a-m1"));
  CHECK(ownsNetns("a", "shoal-a-w150"));
  CHECK_FALSE(ownsNetns("a", "shoal-a-b-m1"));    // lab a-b's
  CHECK_FALSE(ownsNetns("a", "shoal-a-m1-hub"));  // lab a-m1's
  CHECK_FALSE(ownsNetns("a", "shoal-ab-m1"));
  CHECK_FALSE(ownsNetns("a", "shoal-a-m0"));
  CHECK_FALSE(ownsNetns("a", "shoal-a-"));
  CHECK_FALSE(ownsNetns("a", "other"));
  auto l = shoal::lab::plan("a", 7, 3, 2);
  CHECK(l.subnet() == "198.18.7.0/24");
  CHECK(l.node("m3").address == "198.18.7.3");
  CHECK(l.node("w2").address == "198.18.7.102");
  CHECK(l.node("w2").netns == "shoal-a-w2");
  CHECK_THROWS_AS(l.node("w3"), shoal::lab::LabError);
  CHECK_THROWS_AS(shoal::lab::checkName("A"), shoal::lab::LabError);
  CHECK_THROWS_AS(shoal::lab::checkName("-a"), shoal::lab::LabError);
  CHECK_THROWS_AS(shoal::lab::checkName(std::string(21, 'a')), shoal::lab::LabError);
  CHECK_NOTHROW(shoal::lab::checkName("ci-3"));
}

TEST_CASE("the lab's registry: its config, the names push takes, and its record in the state file") {
  using shoal::lab::checkRepositoryRef;
  CHECK(checkRepositoryRef("busybox") == "");
  CHECK(checkRepositoryRef("busybox:latest") == "");
  CHECK(checkRepositoryRef("library/busy-box_1.2:v1.36.1") == "");
  CHECK(checkRepositoryRef("") != "");
  CHECK(checkRepositoryRef("BusyBox").find("BusyBox") != std::string::npos);
  CHECK(checkRepositoryRef("busybox:").find("tag") != std::string::npos);
  CHECK(checkRepositoryRef("busybox:-x").find("tag") != std::string::npos);
  CHECK(checkRepositoryRef("a//b") != "");
  CHECK(checkRepositoryRef("a/../b") != "");
  CHECK(checkRepositoryRef("busybox@sha256:00").find("digest") != std::string::npos);
  CHECK(checkRepositoryRef("x:" + std::string(129, 'a')) != "");

  auto config = shoal::lab::registryConfig("198.18.3.254:5000", "/var/lib/shoal-lab/a/registry/data");
  CHECK(config.find("addr: 198.18.3.254:5000\n") != std::string::npos);
  CHECK(config.find("rootdirectory: /var/lib/shoal-lab/a/registry/data\n") != std::string::npos);
  CHECK(config.find("auth") == std::string::npos);

  auto l = shoal::lab::plan("a", 3, 1, 0);
  CHECK(l.registryHost() == "198.18.3.254");
  CHECK_FALSE(shoal::lab::Lab::fromJson(l.toJson()).registry);
  l.registry = shoal::lab::Registry{"198.18.3.254:5000", {{"/usr/bin/docker-registry", "serve", "c.yml"}, 42, 7}};
  auto back = shoal::lab::Lab::fromJson(l.toJson());
  REQUIRE(back.registry);
  CHECK(back.registry->address == "198.18.3.254:5000");
  CHECK(back.registry->process.pid == 42);
  CHECK(back.registry->process.startTime == 7);
  CHECK(back.registry->process.argv.size() == 3);
}

namespace {

// A container as a runc lab node holds one, made by hand where agentd would make it: a
// bundle in agentd's state dir with an overlay rootfs (busybox-static) and a tmpfs, in a
// network namespace bound under the node's run dir as overlayd binds them, run detached with
// the node's runc root and a cgroup /shoal/<id>. Returns its init's pid.
pid_t runContainerByHand(const std::string& node, const std::string& id) {
  namespace fs = std::filesystem;
  using shoal::testing::run;
  const std::string bundle = node + "/state/agentd/containers/" + id, netns = node + "/run/netns/" + id;
  for (auto d : {"/lower/bin", "/upper", "/work", "/rootfs", "/secrets"}) fs::create_directories(bundle + d);
  fs::create_directories(node + "/run/netns");
  fs::copy_file("/bin/busybox", bundle + "/lower/bin/busybox");
  fs::create_symlink("busybox", bundle + "/lower/bin/sleep");
  auto sh = [](const std::string& cmd) {
    auto r = run({"/bin/bash", "-c", cmd}, {}, 30s);
    REQUIRE_MESSAGE(r.status.code == 0, cmd << "\n" << said(r));
    return r.out;
  };
  sh("mount -t overlay overlay -o lowerdir=" + bundle + "/lower,upperdir=" + bundle + "/upper,workdir=" + bundle +
     "/work " + bundle + "/rootfs && mount -t tmpfs tmpfs " + bundle + "/secrets");
  sh("touch " + netns + " && unshare --net=" + netns + " true");
  sh("cd " + bundle + " && runc spec");
  nlohmann::json spec = nlohmann::json::parse(std::ifstream(bundle + "/config.json"));
  spec["process"]["terminal"] = false;
  spec["process"]["args"] = {"sleep", "100000"};
  spec["linux"]["cgroupsPath"] = "/shoal/" + id;
  for (auto& ns : spec["linux"]["namespaces"])
    if (ns["type"] == "network") ns["path"] = netns;
  std::ofstream(bundle + "/config.json") << spec.dump();
  sh("runc --root " + node + "/run/runc run -d --bundle " + bundle + " " + id + " </dev/null >/dev/null 2>&1");
  auto state = nlohmann::json::parse(sh("runc --root " + node + "/run/runc state " + id));
  return state.value("pid", 0);
}

bool cgroupsLeft(const std::string& id) {
  std::error_code ec;
  for (auto& top : std::filesystem::directory_iterator("/sys/fs/cgroup", ec))
    if (std::filesystem::exists(top.path() / "shoal" / id)) return true;
  return std::filesystem::exists("/sys/fs/cgroup/shoal/" + id);
}

}  // namespace

TEST_CASE("down removes a node's containers (processes, runc state, mounts, cgroups) also without a state file") {
  requireRoot();
  const std::string e = uniqueName("e"), id = uniqueName("ctr");
  auto linksBefore = rootLinks();
  LabGuard guard{e};
  auto up = lab({"up", "--name", e, "--managers", "1", "--workers", "0", "--bin-dir", buildDir(), "--executor",
                 "fake"});
  REQUIRE_MESSAGE(up.status.code == 0, said(up));
  auto l = ls(e);
  pid_t init = runContainerByHand(nodeOf(l, "m1")["dir"], id);
  REQUIRE(init > 0);
  CHECK(alive(init));
  CHECK(cgroupsLeft(id));
  auto pids = pidsOf(l);
  pids.push_back(init);
  std::filesystem::remove("/var/lib/shoal-lab/" + e + "/lab.json");  // a crash of shoal-lab
  auto d = lab({"down", "--name", e});
  REQUIRE_MESSAGE(d.status.code == 0, said(d));
  checkGone(e, pids, linksBefore);
  CHECK_FALSE(cgroupsLeft(id));
}
