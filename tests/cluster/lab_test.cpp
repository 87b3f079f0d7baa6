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
