// The shoal CLI against real daemons on loopback (issue 8 points 2, 3, 7): a manager and a
// worker, each with its own run, state and node dirs; swarm init, join-token, join, node ls,
// inspect, update, rm and info as a user types them, with docker's output and exit codes.
// Every child is killed and reaped on failure; every dir is temporary.
#include <doctest/doctest.h>

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/daemons.h"
#include "tests/support/node_daemons.h"
#include "tests/support/process.h"
#include "tests/support/tempdir.h"

namespace shoal {
namespace {

using namespace std::chrono_literals;
using testing::buildDir;
using testing::daemonPath;
using testing::freePort;
using testing::Process;
using testing::RunResult;
using testing::TempDir;
using testing::waitFor;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// One node's daemons (tests/support/node_daemons.h) and its CLI.
struct Node : testing::NodeDaemons {
  using NodeDaemons::NodeDaemons;

  std::string logs() const { return NodeDaemons::logs(4000); }
  // `shoal --run-dir <this node's> args...`
  RunResult shoal(std::vector<std::string> args, std::chrono::milliseconds timeout = 40s) const {
    std::vector<std::string> argv = {buildDir() + "/tools/shoal/shoal", "--run-dir", run};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::run(argv, {}, timeout);
  }
};

std::string show(const RunResult& r) {
  return "exit " + std::to_string(r.status.code) + (r.timedOut ? " (timed out)" : "") +
         "\nstdout:\n" + r.out + "stderr:\n" + r.err;
}

int lines(const std::string& text) { return static_cast<int>(std::count(text.begin(), text.end(), '\n')); }

TEST_CASE("shoal swarm, node and info on a manager and a worker") {
  TempDir tmp;
  Node m1(tmp.path(), "m1"), w1(tmp.path(), "w1");
  for (auto* d : {"raftd", "dispatcherd", "agentd"}) m1.start(d);
  for (auto* d : {"raftd", "agentd"}) w1.start(d);

  // Before any swarm: docker's inactive section, and the node commands say why they cannot run.
  auto info = m1.shoal({"info"});
  CHECK_MESSAGE(info.status.code == 0, show(info));
  CHECK(info.out == "Swarm: inactive\n");
  auto ls = m1.shoal({"node", "ls"});
  CHECK_MESSAGE(ls.status.code == 1, show(ls));
  CHECK(contains(ls.err, "Error response from daemon: This node is not a swarm manager. Use \"shoal swarm init\""));

  // A run dir without daemons: raftd's socket is named and the way out said.
  Node none(tmp.path(), "none");
  auto missing = none.shoal({"node", "ls"});
  CHECK(missing.status.code == 1);
  CHECK(contains(missing.err, "cannot reach raftd at " + none.run + "/raftd.sock"));
  CHECK(contains(missing.err, "A worker node cannot run manager commands; run them on a manager."));

  // Bad usage is 2, before anything is asked.
  CHECK(m1.shoal({"swarm", "init", "--dispatcher-heartbeat", "soon"}).status.code == 2);
  CHECK(m1.shoal({"swarm", "join-token", "boss"}).status.code == 2);
  CHECK(m1.shoal({"node", "ls", "--filter", "colour=red"}).status.code == 2);

  int port = freePort();
  std::string addr = "127.0.0.1:" + std::to_string(port);
  auto init = m1.shoal({"swarm", "init", "--advertise-addr", addr, "--dispatcher-heartbeat", "1s"});
  REQUIRE_MESSAGE(init.status.code == 0, show(init) << m1.logs());
  std::smatch m;
  std::regex text(
      "Swarm initialized: current node \\(([0-9a-z]{25})\\) is now a manager\\.\n\n"
      "To add a worker to this swarm, run the following command:\n\n"
      "    shoal swarm join --token (SWMTKN-1-[0-9a-z]+-[0-9a-z]+) ([0-9.:]+)\n\n"
      "To add a manager to this swarm, run 'shoal swarm join-token manager' and follow the "
      "instructions\\.\n\n");
  REQUIRE_MESSAGE(std::regex_match(init.out, m, text), init.out);
  std::string m1Id = m[1], token = m[2];
  CHECK(m[3] == addr);
  CHECK_MESSAGE(init.err.empty(), init.err);  // dispatcherd and agentd reloaded: no warning

  auto tokenQ = m1.shoal({"swarm", "join-token", "-q", "worker"});
  CHECK(tokenQ.out == token + "\n");

  auto join = w1.shoal({"swarm", "join", "--token", token, addr});
  REQUIRE_MESSAGE(join.status.code == 0, show(join) << m1.logs() << w1.logs());
  CHECK(join.out == "This node joined a swarm as a worker.\n");

  // Both nodes Ready in node ls --format json, one JSON object a line.
  std::string json;
  bool ready = waitFor([&] {
    json = m1.shoal({"node", "ls", "--format", "json"}).out;
    // raftd describes m1 at init with the host's name; m1's agentd names it at its session.
    return lines(json) == 2 && !contains(json, "\"Status\":\"Unknown\"") &&
           !contains(json, "\"Status\":\"Down\"") && contains(json, "\"Hostname\":\"m1\"");
  }, 20s);
  REQUIRE_MESSAGE(ready, json << m1.logs() << w1.logs());
  auto first = nlohmann::json::parse(json.substr(0, json.find('\n')));
  CHECK(first["Hostname"] == "m1");
  CHECK(first["ManagerStatus"] == "Leader");
  CHECK(first["Self"] == true);

  auto table = m1.shoal({"node", "ls"});
  REQUIRE(table.status.code == 0);
  CHECK(table.out.substr(0, 30) == "ID                            ");
  CHECK(contains(table.out, m1Id + " *   m1 "));
  CHECK(m1.shoal({"node", "ls", "--filter", "role=worker", "--format", "{{.Hostname}}"}).out == "w1\n");
  CHECK(lines(m1.shoal({"node", "ls", "-q"}).out) == 2);

  CHECK(m1.shoal({"node", "inspect", "w1", "--format", "{{.Status.State}} {{.Spec.Role}}"}).out == "ready worker\n");
  CHECK(m1.shoal({"node", "inspect", "self", "--format", "{{.ID}} {{.ManagerStatus.Leader}}"}).out ==
        m1Id + " true\n");
  auto inspect = m1.shoal({"node", "inspect", "w1"});
  REQUIRE(inspect.status.code == 0);
  auto arr = nlohmann::json::parse(inspect.out);
  CHECK(arr.size() == 1);
  CHECK(arr[0]["Description"]["Hostname"] == "w1");
  CHECK_FALSE(arr[0].contains("ManagerStatus"));
  CHECK(contains(m1.shoal({"node", "inspect", "--pretty", "w1"}).out, "Hostname:              \tw1\n"));
  auto notFound = m1.shoal({"node", "inspect", "w1", "nosuch"});
  CHECK(notFound.status.code == 1);
  CHECK(contains(notFound.err, "node nosuch not found"));

  auto drain = m1.shoal({"node", "update", "--availability", "drain", "--label-add", "zone=a", "w1"});
  CHECK_MESSAGE(drain.out == "w1\n", show(drain));
  CHECK(m1.shoal({"node", "ls", "--filter", "node.label=zone=a", "--format", "{{.Hostname}} {{.Availability}}"}).out ==
        "w1 Drain\n");
  auto promoteAgain = m1.shoal({"node", "promote", "m1"});
  CHECK(promoteAgain.out == "Node " + m1Id + " is already a manager.\n");

  // The worker: its own part of info; the cluster's commands refused at once.
  auto winfo = w1.shoal({"info"});
  CHECK_MESSAGE(contains(winfo.out, " Is Manager: false\n"), show(winfo));
  CHECK(contains(winfo.out, " Manager Addresses:\n  " + addr + "\n"));
  auto wls = w1.shoal({"node", "ls"});
  CHECK(wls.status.code == 1);
  CHECK(contains(wls.err, "Worker nodes can't be used to view or modify cluster state"));

  auto minfo = m1.shoal({"info", "--format", "{{.Swarm.NodeID}} {{.Swarm.Nodes}} {{.Swarm.Managers}}"});
  CHECK(minfo.out == m1Id + " 2 1\n");
  auto text2 = m1.shoal({"info"}).out;
  CHECK(contains(text2, "  Heartbeat Period: 1 second\n"));
  CHECK(contains(text2, "  Leader: m1 (" + m1Id + ")\n"));

  // A worker that is up is not removed; once it left and is Down, it is.
  auto rm = m1.shoal({"node", "rm", "w1"});
  CHECK(rm.status.code == 1);
  CHECK(contains(rm.err, "Error response from daemon: "));
  auto leave = w1.shoal({"swarm", "leave"});
  CHECK_MESSAGE(leave.out == "Node left the swarm.\n", show(leave));
  CHECK(w1.shoal({"info"}).out == "Swarm: inactive\n");
  std::string state;
  bool down = waitFor([&] {
    state = m1.shoal({"node", "inspect", "w1", "--format", "{{.Status.State}}"}).out;
    return state == "down\n";
  }, 20s);
  CHECK_MESSAGE(down, "w1 is " << state << " 20 s after it left (heartbeat 1 s)");
  std::vector<std::string> rmArgs = {"node", "rm", "w1"};
  if (!down) rmArgs.insert(rmArgs.begin() + 2, "--force");  // so that what follows still runs
  auto rmDown = m1.shoal(rmArgs);
  CHECK_MESSAGE((rmDown.status.code == 0 && rmDown.out == "w1\n"), show(rmDown));
  CHECK(lines(m1.shoal({"node", "ls", "-q"}).out) == 1);
  auto gone = m1.shoal({"node", "inspect", "w1"});
  CHECK(gone.status.code == 1);
  CHECK(gone.out == "[]\n");
}

}  // namespace
}  // namespace shoal
