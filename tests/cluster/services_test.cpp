// Services on a shoal-lab (issue 9's "Show", docs/services.md): 3 managers and 2 workers whose
// agentd runs the fake executor (tasks walk to RUNNING without containers), heartbeat 1 s.
// Every case makes a lab of its own, works it through `shoal-lab exec NODE shoal ...` as a
// user would, reads `--format json` (docker's field names), and takes the lab down when it
// ends, failed or not (LabGuard); then checks that nothing of it is left. Needs root.
#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/cluster/lab_support.h"
#include "tools/lab/lab.h"
#include "tools/lab/node_list.h"

namespace {

using namespace shoal::labtest;
using nlohmann::json;

size_t desiredRunning(const Rows& rows) {
  return std::count_if(rows.begin(), rows.end(),
                       [](const json& r) { return lower(field(r, "DesiredState")) == "running"; });
}

std::map<std::string, int> perNode(const Rows& rows) {
  std::map<std::string, int> n;
  for (auto& r : rows) ++n[field(r, "Node")];
  return n;
}

// The slot in a replicated task's name, "web.3" (docker's history rows may start "\_ ").
int slotOf(const json& row) {
  std::string name = field(row, "Name");
  auto dot = name.rfind('.');
  if (dot == std::string::npos) return -1;
  try {
    return std::stoi(name.substr(dot + 1));
  } catch (const std::exception&) {
    return -1;
  }
}

bool allImage(const Rows& rows, const std::string& image) {
  return std::all_of(rows.begin(), rows.end(), [&](const json& r) { return field(r, "Image") == image; });
}

std::string dump(const Rows& rows) {
  std::string s;
  for (auto& r : rows) s += r.dump() + "\n";
  return s;
}

// A lab of its own for one test case: fake executor, heartbeat 1 s; down (and checked gone)
// at the end. Commands go to manager `cli` (m1 until a test kills it).
class ServiceLab {
 public:
  explicit ServiceLab(const std::string& tag, int managers = 3, int workers = 2)
      : name_(uniqueName(tag)), linksBefore_(rootLinks()), guard_{name_} {
    auto up = lab({"up", "--name", name_, "--managers", std::to_string(managers), "--workers",
                   std::to_string(workers), "--bin-dir", buildDir(), "--heartbeat", "1s", "--executor", "fake"},
                  180s);
    REQUIRE_MESSAGE(up.status.code == 0, said(up));
  }
  void down() {
    auto pids = pidsOf(ls(name_));
    auto d = lab({"down", "--name", name_});
    CHECK_MESSAGE(d.status.code == 0, said(d));
    checkGone(name_, pids, linksBefore_);
  }
  const std::string& name() const { return name_; }

  RunResult shoal(const std::string& node, std::vector<std::string> args, std::chrono::milliseconds bound = 30s) {
    args.insert(args.begin(), {"exec", "--name", name_, node, "shoal"});
    return lab(args, bound);
  }
  RunResult shoal(std::vector<std::string> args) { return shoal(cli, std::move(args)); }
  std::string must(std::vector<std::string> args) {
    auto r = shoal(args);
    REQUIRE_MESSAGE(r.status.code == 0, said(r));
    return r.out;
  }
  void labCommand(std::vector<std::string> args) {
    args.insert(args.begin() + 1, {"--name", name_});
    auto r = lab(args);
    REQUIRE_MESSAGE(r.status.code == 0, said(r));
  }

  // `service ps SERVICE` rows, every task of the service (history included); nothing when
  // the command failed (why in *why).
  std::optional<Rows> ps(const std::string& service, std::string* why = nullptr) {
    return rowsOf({"service", "ps", "--no-trunc", "--format", "json", service}, why);
  }
  std::optional<Rows> rowsOf(const std::vector<std::string>& args, std::string* why = nullptr) {
    auto r = shoal(cli, args, 15s);
    try {
      if (r.status.code == 0) return jsonLines(r.out);
    } catch (const std::exception& e) {
      if (why) *why = e.what();
      return std::nullopt;
    }
    if (why) *why = said(r);
    return std::nullopt;
  }
  // Waits until done(every row of `service ps SERVICE`); the last rows seen, or a failed
  // check showing them.
  template <class F>
  Rows waitPs(const std::string& service, F done, std::chrono::milliseconds limit, const std::string& what) {
    Rows last;
    std::string why = "service ps was not asked";
    bool ok = waitFor([&] {
      auto rows = ps(service, &why);
      if (!rows) return false;
      last = *rows;
      return done(last);
    }, limit, 300ms);
    CHECK_MESSAGE(ok, what << " within " << limit.count() / 1000 << " s; the last service ps:\n"
                           << dump(last) << (last.empty() ? why : ""));
    return last;
  }
  // `service inspect SERVICE`: docker's JSON array of one object, or null.
  json inspect(const std::string& service) {
    auto r = shoal(cli, {"service", "inspect", service}, 15s);
    if (r.status.code != 0) return nullptr;
    auto j = json::parse(r.out, nullptr, false);
    if (j.is_array() && j.size() == 1) return j[0];
    return j.is_object() ? j : json(nullptr);
  }
  std::string updateState(const std::string& service) {
    auto j = inspect(service);
    if (!j.is_object() || !j.contains("UpdateStatus") || !j["UpdateStatus"].is_object()) return "";
    return field(j["UpdateStatus"], "State");
  }
  std::vector<::shoal::lab::SwarmNode> nodeLs() {
    auto r = shoal(cli, {"node", "ls", "--format", "json"}, 10s);
    if (r.status.code != 0) return {};
    try {
      return ::shoal::lab::parseNodeList(r.out);
    } catch (const ::shoal::lab::LabError&) {
      return {};
    }
  }
  bool waitNodeStatus(const std::string& host, const std::string& status, std::chrono::milliseconds limit) {
    return waitFor([&] {
      auto nodes = nodeLs();
      return std::any_of(nodes.begin(), nodes.end(),
                         [&](auto& n) { return n.hostname == host && n.status == status; });
    }, limit, 300ms);
  }

  std::string cli = "m1";

 private:
  std::string name_;
  std::set<std::string> linksBefore_;
  LabGuard guard_;
};

// A replicated service of `replicas` on image, created detached; waits until all run.
Rows createReplicated(ServiceLab& l, const std::string& name, int replicas, const std::string& image,
                      std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"service", "create", "-d", "--name", name, "--replicas", std::to_string(replicas)};
  args.insert(args.end(), extra.begin(), extra.end());
  args.push_back(image);
  l.must(args);
  return l.waitPs(name, [&](const Rows& rows) { return running(rows).size() == static_cast<size_t>(replicas); },
                  60s, std::to_string(replicas) + " tasks of " + name + " RUNNING");
}

}  // namespace

TEST_CASE("10 replicas run 2 on each of the 5 nodes; scaled to 3, 3 run") {
  requireRoot();
  ServiceLab l("sr");
  auto rows = running(createReplicated(l, "web", 10, "nginx:1"));
  REQUIRE(rows.size() == 10);
  auto nodes = perNode(rows);
  for (auto node : {"m1", "m2", "m3", "w1", "w2"})
    CHECK_MESSAGE(nodes[node] == 2, node << " runs " << nodes[node] << " tasks:\n" << dump(rows));
  auto ls = l.rowsOf({"service", "ls", "--format", "json"});
  REQUIRE(ls);
  REQUIRE(ls->size() == 1);
  CHECK(field((*ls)[0], "Replicas") == "10/10");
  CHECK(field((*ls)[0], "Name") == "web");

  l.must({"service", "scale", "-d", "web=3"});
  auto after = l.waitPs("web", [](const Rows& r) { return running(r).size() == 3 && desiredRunning(r) == 3; }, 60s,
                        "3 tasks of web RUNNING and no other one desired RUNNING");
  std::set<int> slots;
  for (auto& r : running(after)) slots.insert(slotOf(r));
  const std::set<int> firstThree = {1, 2, 3};
  CHECK_MESSAGE(slots == firstThree, dump(after));
  CHECK(waitFor([&] {
    auto now = l.rowsOf({"service", "ls", "--format", "json"});
    return now && now->size() == 1 && field((*now)[0], "Replicas") == "3/3";
  }, 20s));
  l.down();
}

TEST_CASE("an update whose new tasks fail rolls back to the old image by itself") {
  requireRoot();
  ServiceLab l("su");
  createReplicated(l, "web", 4, "nginx:1");
  // A long monitor window: the failures below count wherever they land in it.
  l.must({"service", "update", "-d", "--image", "nginx:2", "--update-parallelism", "2", "--update-failure-action",
          "rollback", "--update-monitor", "30s", "web"});
  // Every new task that runs is made to fail on its node, until the rollback is done.
  std::set<std::string> failed;
  std::string state;
  bool rolledBack = waitFor([&] {
    state = l.updateState("web");
    if (state == "rollback_completed") return true;
    for (auto& r : running(l.ps("web").value_or(Rows{}))) {
      if (field(r, "Image") != "nginx:2" || failed.count(field(r, "ID"))) continue;
      auto f = l.shoal(field(r, "Node"), {"debug", "fake-task", field(r, "ID"), "fail", "--exit-code", "3"});
      if (f.status.code == 0) failed.insert(field(r, "ID"));
      else MESSAGE("fake-task fail " << field(r, "ID") << " on " << field(r, "Node") << ": " << said(f));
    }
    return false;
  }, 90s, 300ms);
  auto rows = l.ps("web").value_or(Rows{});
  CHECK_MESSAGE(rolledBack, "UpdateStatus.State is '" << state << "'; service ps:\n" << dump(rows));
  CHECK_MESSAGE(!failed.empty(), "no new task was seen RUNNING to fail");
  auto j = l.inspect("web");
  MESSAGE("UpdateStatus: " << (j.is_object() ? j.value("UpdateStatus", json()).dump() : "none"));
  REQUIRE(j.is_object());
  CHECK(j["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == "nginx:1");
  // Every live task runs the old image again; the failed ones say how they ended.
  auto settled = l.waitPs("web", [](const Rows& r) {
    return running(r).size() == 4 && desiredRunning(r) == 4 && allImage(running(r), "nginx:1");
  }, 60s, "4 tasks of nginx:1 RUNNING and no other one desired RUNNING");
  bool sawFailure = std::any_of(settled.begin(), settled.end(), [&](const json& r) {
    return failed.count(field(r, "ID")) && lower(field(r, "CurrentState")).starts_with("failed") &&
           !field(r, "Error").empty();
  });
  CHECK_MESSAGE(sawFailure, "no failed task shows FAILED with its error:\n" << dump(settled));
  l.down();
}

TEST_CASE("the leader's node killed half-way through a rolling update: the new leader finishes it") {
  requireRoot();
  ServiceLab l("sf");
  createReplicated(l, "web", 6, "nginx:1");
  l.must({"service", "update", "-d", "--image", "nginx:2", "--update-delay", "1s", "web"});
  auto mid = l.waitPs("web", [](const Rows& r) {
    auto run = running(r);
    return std::count_if(run.begin(), run.end(), [](auto& x) { return field(x, "Image") == "nginx:2"; }) >= 2;
  }, 60s, "2 tasks of nginx:2 RUNNING");
  auto midNew = running(mid);
  auto updated = std::count_if(midNew.begin(), midNew.end(), [](auto& x) { return field(x, "Image") == "nginx:2"; });
  CHECK_MESSAGE(updated < 6, "the update was over before the kill:\n" << dump(mid));
  auto leader = ::shoal::lab::soleLeader(l.nodeLs());
  REQUIRE(leader);
  MESSAGE("killing " << *leader << " with " << updated << " of 6 tasks updated");
  l.labCommand({"kill", *leader});
  l.cli = *leader == "m2" ? "m3" : "m2";

  std::string state;
  auto rows = l.waitPs("web", [&](const Rows& r) {
    state = l.updateState("web");
    return state == "completed" && running(r).size() == 6 && desiredRunning(r) == 6;
  }, 120s, "the update completed with 6 tasks RUNNING");
  MESSAGE("UpdateStatus.State: " << state);
  auto run = running(rows);
  CHECK_MESSAGE(allImage(run, "nginx:2"), dump(rows));
  std::map<int, int> perSlot;
  for (auto& r : rows)
    if (lower(field(r, "DesiredState")) == "running") ++perSlot[slotOf(r)];
  const std::map<int, int> onePerSlot = {{1, 1}, {2, 1}, {3, 1}, {4, 1}, {5, 1}, {6, 1}};
  CHECK_MESSAGE(perSlot == onePerSlot, "not exactly one live task per slot:\n" << dump(rows));
  CHECK(perNode(run).count(*leader) == 0);
  l.down();
}

TEST_CASE("a worker killed: its tasks run elsewhere once it is Down; a drained node's tasks move") {
  requireRoot();
  ServiceLab l("sk");
  auto before = running(createReplicated(l, "web", 10, "nginx:1"));
  REQUIRE(perNode(before)["w1"] > 0);
  l.labCommand({"kill", "w1"});
  CHECK_MESSAGE(l.waitNodeStatus("w1", "Down", 30s), "w1 is not Down 30 s after its daemons were killed");
  auto moved = l.waitPs("web", [](const Rows& r) {
    auto run = running(r);
    return run.size() == 10 && desiredRunning(r) == 10 && perNode(run).count("w1") == 0;
  }, 60s, "10 tasks RUNNING, none on w1");

  l.must({"node", "update", "--availability", "drain", "w2"});
  auto drained = l.waitPs("web", [](const Rows& r) {
    auto run = running(r);
    auto n = perNode(run);
    return run.size() == 10 && desiredRunning(r) == 10 && n.count("w1") == 0 && n.count("w2") == 0;
  }, 60s, "10 tasks RUNNING on the managers only");
  MESSAGE("after the drain: " << json(perNode(running(drained))).dump());
  l.down();
}

TEST_CASE("a global service runs one task on each node, and one on a node that joins") {
  requireRoot();
  ServiceLab l("sg");
  l.must({"service", "create", "-d", "--name", "g", "--mode", "global", "nginx:1"});
  auto rows = l.waitPs("g", [](const Rows& r) {
    auto n = perNode(running(r));
    return running(r).size() == 5 && n.size() == 5;
  }, 60s, "one task of g RUNNING on each of the 5 nodes");
  std::set<std::string> before;
  for (auto& r : running(rows)) before.insert(field(r, "ID"));

  // w2 leaves; it joins again as a new node (a new key, as in Swarm).
  auto token = l.must({"swarm", "join-token", "-q", "worker"});
  auto t = ::shoal::lab::findJoinToken(token);
  REQUIRE(t);
  auto leave = l.shoal("w2", {"swarm", "leave"});
  REQUIRE_MESSAGE(leave.status.code == 0, said(leave));
  CHECK(l.waitNodeStatus("w2", "Down", 30s));
  auto m1 = nodeOf(ls(l.name()), "m1")["address"].get<std::string>();
  auto join = l.shoal("w2", {"swarm", "join", "--token", *t, m1 + ":2377"}, 40s);
  if (join.status.code != 0 && join.err.find("node rm") != std::string::npos) {
    l.must({"node", "rm", "w2"});
    join = l.shoal("w2", {"swarm", "join", "--token", *t, m1 + ":2377"}, 40s);
  }
  REQUIRE_MESSAGE(join.status.code == 0, said(join));
  auto after = l.waitPs("g", [&](const Rows& r) {
    auto run = running(r);
    return std::any_of(run.begin(), run.end(),
                       [&](auto& x) { return field(x, "Node") == "w2" && !before.count(field(x, "ID")); });
  }, 60s, "a new task of g RUNNING on the w2 that joined again");
  auto n = perNode(running(after));
  for (auto node : {"m1", "m2", "m3", "w1", "w2"}) CHECK_MESSAGE(n[node] == 1, node << ":\n" << dump(after));
  l.down();
}

TEST_CASE("an impossible constraint says why in service ps; bad input changes nothing") {
  requireRoot();
  ServiceLab l("sc");
  l.must({"service", "create", "-d", "--name", "zonal", "--constraint", "node.labels.zone==nowhere", "nginx:1"});
  auto rows = l.waitPs("zonal", [](const Rows& r) {
    return r.size() == 1 && field(r[0], "Error").find("no suitable node") != std::string::npos;
  }, 30s, "the task of zonal PENDING with the reason");
  REQUIRE(rows.size() == 1);
  MESSAGE("service ps ERROR: " << field(rows[0], "Error"));
  CHECK(lower(field(rows[0], "CurrentState")).starts_with("pending"));
  CHECK(field(rows[0], "Error").find("node.labels.zone") != std::string::npos);
  CHECK(field(rows[0], "Node").empty());

  // A service that runs, so that the list below stays still (its REPLICAS would change).
  createReplicated(l, "p", 1, "nginx:1", {"--publish", "8080:80"});
  auto before = l.rowsOf({"service", "ls", "--format", "json"});
  REQUIRE(before);
  REQUIRE(before->size() == 2);
  // Each refusal names the bad value; the service list stays as it was.
  auto refused = [&](std::vector<std::string> args, const std::string& mentions) {
    auto r = l.shoal(args);
    MESSAGE(args[1] << " " << mentions << ": " << r.err);
    CHECK_MESSAGE(r.status.code != 0, said(r));
    CHECK_MESSAGE(r.err.find(mentions) != std::string::npos, "should mention " << mentions << ": " << said(r));
    auto now = l.rowsOf({"service", "ls", "--format", "json"});
    CHECK_MESSAGE((now && dump(*now) == dump(*before)), "service ls changed after " << said(r));
  };
  refused({"service", "create", "-d", "--name", "neg", "--replicas", "-1", "nginx:1"}, "-1");
  refused({"service", "create", "-d", "--name", "zonal", "nginx:1"}, "zonal");
  refused({"service", "create", "-d", "--name", "bad", "--constraint", "node.labels.zone", "nginx:1"},
          "node.labels.zone");
  refused({"service", "create", "-d", "--name", "gl", "--mode", "global", "--replicas", "2", "nginx:1"}, "replicas");
  refused({"service", "create", "-d", "--name", "p2", "--publish", "8080:81", "nginx:1"}, "8080");
  refused({"service", "create", "-d", "--name", "nonet", "--network", "nosuchnet", "nginx:1"}, "nosuchnet");
  refused({"service", "update", "-d", "--image", "nginx:2", "nosuchservice"}, "nosuchservice");
  refused({"service", "scale", "-d", "zonal=-2"}, "-2");
  l.down();
}
