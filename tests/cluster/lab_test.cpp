// shoal-lab as a user runs it (DESIGN.md §10, docs/lab.md): a lab of 3 managers and a worker
// forms its raft cluster; `exec` reaches a node's daemons through its run dir; nodes reach each
// other inside the lab and nothing outside it; kill/start, partition/heal; two labs at once;
// `down` leaves no namespace, link, process or dir behind, also after the lab's daemons were
// killed and its state file lost. Needs root (namespaces).
#include <doctest/doctest.h>

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/support/process.h"
#include "tools/lab/lab.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using shoal::testing::run;
using shoal::testing::RunResult;

std::string buildDir() {
  const char* b = std::getenv("SHOAL_BUILD_DIR");
  REQUIRE_MESSAGE(b, "SHOAL_BUILD_DIR must name the build dir (meson sets it)");
  return b;
}

std::string labBinary() { return buildDir() + "/tools/lab/shoal-lab"; }

RunResult lab(std::vector<std::string> args, std::chrono::milliseconds timeout = 120s) {
  args.insert(args.begin(), labBinary());
  return run(args, {"SHOAL_LAB="}, timeout);
}

std::string said(const RunResult& r) { return "stdout:\n" + r.out + "\nstderr:\n" + r.err; }

// A name no other run of this test uses, so that a crashed earlier run is no obstacle.
std::string uniqueName(const std::string& tag) { return "t" + std::to_string(::getpid()) + tag; }

bool alive(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), {});
  auto close = stat.rfind(')');
  return close != std::string::npos && stat.size() > close + 2 && stat[close + 2] != 'Z';
}

std::set<std::string> lines(const std::string& text) {
  std::set<std::string> out;
  std::stringstream in(text);
  std::string l;
  while (std::getline(in, l)) out.insert(l);
  return out;
}

std::string ipOut(std::vector<std::string> args) {
  args.insert(args.begin(), "/usr/sbin/ip");
  auto r = run(args);
  REQUIRE_MESSAGE(r.status.code == 0, said(r));
  return r.out;
}

// The root namespace's link names (their indexes and states may change under other tests).
std::set<std::string> rootLinks() {
  std::set<std::string> names;
  for (auto& l : lines(ipOut({"-o", "link", "show"}))) {
    auto a = l.find(": "), b = l.find(':', a + 2);
    if (a != std::string::npos && b != std::string::npos) names.insert(l.substr(a + 2, b - a - 2));
  }
  return names;
}

std::vector<std::string> netnsOf(const std::string& name) {
  std::vector<std::string> found;
  for (auto& l : lines(ipOut({"netns", "list"})))
    if (l.starts_with("shoal-" + name + "-")) found.push_back(l.substr(0, l.find(' ')));
  return found;
}

// Runs `down` when the test ends, pass or fail, so that a failed test leaves no lab behind.
struct LabGuard {
  std::string name;
  ~LabGuard() { lab({"down", "--name", name}); }
};

nlohmann::json ls(const std::string& name) {
  auto r = lab({"ls", "--name", name, "--format", "json"});
  REQUIRE_MESSAGE(r.status.code == 0, said(r));
  auto all = nlohmann::json::parse(r.out);
  REQUIRE(all.size() == 1);
  return all[0];
}

nlohmann::json nodeOf(const nlohmann::json& l, const std::string& node) {
  for (auto& n : l["nodes"])
    if (n["name"] == node) return n;
  FAIL("no node " << node << " in " << l.dump());
  return {};
}

std::vector<pid_t> pidsOf(const nlohmann::json& l) {
  std::vector<pid_t> pids;
  for (auto& n : l["nodes"])
    for (auto& [d, r] : n["daemons"].items())
      if (r["pid"].get<int>() > 0) pids.push_back(r["pid"].get<int>());
  return pids;
}

// Whether `from` opens a TCP connection to addr:2378 (raftd's raft port) within 2 s.
bool reaches(const std::string& name, const std::string& from, const std::string& addr) {
  auto r = lab({"exec", "--name", name, from, "timeout", "2", "bash", "-c",
                "exec 3<>/dev/tcp/" + addr + "/2378"});
  return r.status.code == 0;
}

nlohmann::json raftStatus(const std::string& name, const std::string& node) {
  auto r = lab({"exec", "--name", name, node, "shoal", "debug", "status", "raftd", "--json"}, 20s);
  if (r.status.code != 0) return nlohmann::json::object();
  return nlohmann::json::parse(r.out, nullptr, false);
}

template <class F>
bool waitFor(F done, std::chrono::milliseconds limit) {
  auto end = Clock::now() + limit;
  while (Clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(200ms);
  }
  return done();
}

void checkGone(const std::string& name, const std::vector<pid_t>& pids, const std::set<std::string>& linksBefore) {
  CHECK_MESSAGE(netnsOf(name).empty(), ipOut({"netns", "list"}));
  CHECK_MESSAGE(rootLinks() == linksBefore, ipOut({"-o", "link", "show"}));
  CHECK_FALSE(std::filesystem::exists("/var/lib/shoal-lab/" + name));
  for (pid_t p : pids) CHECK_MESSAGE(!alive(p), "pid " << p << " of lab " << name << " still runs");
}

void requireRoot() { REQUIRE_MESSAGE(::geteuid() == 0, "this test needs root: it makes network namespaces"); }

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
  CHECK(nodeOf(l, "w1")["daemons"].size() == 3);
  CHECK(nodeOf(l, "w1")["role"] == "worker");
  CHECK(nodeOf(l, "m2")["netns"] == "shoal-" + a + "-m2");
  for (auto& n : l["nodes"])
    for (auto& [d, r] : n["daemons"].items()) {
      CHECK_MESSAGE(r["running"] == true, n["name"] << " " << d);
      CHECK_MESSAGE(alive(r["pid"].get<int>()), n["name"] << " " << d);
    }
  const std::string m1 = nodeOf(l, "m1")["address"], m3 = nodeOf(l, "m3")["address"];

  // The raft cluster: exec reaches each manager's raftd through that node's run dir.
  {
    nlohmann::json s;
    CHECK(waitFor([&] {
      s = raftStatus(a, "m1");
      size_t voters = 0;
      for (auto& m : s.value("members", nlohmann::json::array())) voters += m.value("suffrage", "") == "voter";
      return voters == 3;
    }, 30s));
    CHECK(s.value("run_dir", "") == "/var/lib/shoal-lab/" + a + "/m1/run");
    int leaders = 0;
    for (auto node : {"m1", "m2", "m3"}) leaders += raftStatus(a, node).value("role", "") == "Leader";
    CHECK(leaders == 1);
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
  CHECK(lab({"kill", "--name", a, "w1", "raftd"}).status.code == 1);  // a worker runs no raftd
  CHECK(lab({"exec", "--name", a, "w9", "true"}).status.code == 1);

  // partition m1: it reaches no one and no one it; m2 and m3 go on with a leader of their own.
  auto p = lab({"partition", "--name", a, "m1"});
  REQUIRE_MESSAGE(p.status.code == 0, said(p));
  CHECK_FALSE(reaches(a, "w1", m1));
  CHECK_FALSE(reaches(a, "m1", m3));
  CHECK(reaches(a, "w1", m3));
  CHECK(waitFor([&] {
    auto s = raftStatus(a, "m3");
    return s.value("leader_address", "") != "" && s.value("leader_address", "") != m1 + ":2378";
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
  REQUIRE(pids.size() == 9);
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
