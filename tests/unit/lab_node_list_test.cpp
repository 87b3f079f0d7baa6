// What shoal-lab, its tests and `shoal-bench failover` read from `shoal node ls --format json`
// and `shoal swarm join-token -q` (tools/lab/node_list.h).
#include <doctest/doctest.h>

#include "tools/lab/lab.h"
#include "tools/lab/node_list.h"

using namespace shoal::lab;

namespace {

const char* kFormed =
    R"({"Availability":"Active","EngineVersion":"0.1.0","Hostname":"m1","ID":"a1","ManagerStatus":"Leader","Self":true,"Status":"Ready","TLSStatus":"Ready"}
{"Availability":"Active","EngineVersion":"0.1.0","Hostname":"m2","ID":"b2","ManagerStatus":"Reachable","Self":false,"Status":"Ready","TLSStatus":"Ready"}
{"Availability":"Drain","EngineVersion":"0.1.0","Hostname":"w1","ID":"c3","ManagerStatus":"","Self":false,"Status":"Ready","TLSStatus":"Ready"}
)";

}  // namespace

TEST_CASE("node ls --format json: one object per line, docker's fields") {
  auto nodes = parseNodeList(kFormed);
  REQUIRE(nodes.size() == 3);
  CHECK(nodes[0].id == "a1");
  CHECK(nodes[0].hostname == "m1");
  CHECK(nodes[0].managerStatus == "Leader");
  CHECK(nodes[0].self);
  CHECK_FALSE(nodes[1].self);
  CHECK(nodes[2].availability == "Drain");
  CHECK(nodes[2].managerStatus.empty());
  CHECK(parseNodeList("").empty());
  CHECK(parseNodeList("\n  \n").empty());
  // An array of the same objects is taken too.
  auto array = parseNodeList(R"([{"ID":"x","Hostname":"m1","Status":"Down","Self":"true"}])");
  REQUIRE(array.size() == 1);
  CHECK(array[0].status == "Down");
  CHECK(array[0].self);
}

TEST_CASE("node ls --format json: what is not a node list is an error naming the line") {
  CHECK_THROWS_WITH_AS(parseNodeList("{\"ID\":\"a\",\"Hostname\":\"m1\"}\nError: no leader\n"),
                       doctest::Contains("line 2"), LabError);
  CHECK_THROWS_WITH_AS(parseNodeList("{\"Name\":\"m1\"}"), doctest::Contains("not a node"), LabError);
  CHECK_THROWS_AS(parseNodeList("[{\"ID\":1"), LabError);
  CHECK_THROWS_AS(parseNodeList("[1]"), LabError);
}

TEST_CASE("the sole leader, and a hostname listed once") {
  auto nodes = parseNodeList(kFormed);
  CHECK(soleLeader(nodes) == std::optional<std::string>("m1"));
  nodes[1].managerStatus = "Leader";
  CHECK_FALSE(soleLeader(nodes));  // two leaders: none is the leader
  nodes[0].managerStatus = nodes[1].managerStatus = "Unreachable";
  CHECK_FALSE(soleLeader(nodes));
  CHECK(findHost(nodes, "w1")->id == "c3");
  CHECK_FALSE(findHost(nodes, "w2"));
  nodes.push_back(nodes[2]);
  CHECK_FALSE(findHost(nodes, "w1"));  // listed twice
}

TEST_CASE("formed: every node once and Ready, managers Leader or Reachable, one Leader") {
  auto nodes = parseNodeList(kFormed);
  CHECK(notFormedBecause(nodes, {"m1", "m2"}, {"w1"}) == "");
  CHECK(notFormedBecause(nodes, {"m1", "m2"}, {"w1", "w2"}) == "3 nodes are listed, 4 expected");
  CHECK(notFormedBecause(nodes, {"m1", "m2"}, {"w2"}) == "w2 is not listed exactly once");
  CHECK(notFormedBecause(nodes, {"m1"}, {"m2", "w1"}) == "worker m2 is a manager (Reachable)");
  CHECK(notFormedBecause(nodes, {"m1", "m2", "w1"}, {}) == "manager w1 is not a manager yet");
  auto down = nodes;
  down[2].status = "Down";
  CHECK(notFormedBecause(down, {"m1", "m2"}, {"w1"}) == "w1 is Down");
  auto unreachable = nodes;
  unreachable[1].managerStatus = "Unreachable";
  CHECK(notFormedBecause(unreachable, {"m1", "m2"}, {"w1"}) == "manager m2 is Unreachable");
  auto noLeader = nodes;
  noLeader[0].managerStatus = "Reachable";
  CHECK(notFormedBecause(noLeader, {"m1", "m2"}, {"w1"}) == "0 managers are Leader");
  auto twoLeaders = nodes;
  twoLeaders[1].managerStatus = "Leader";
  CHECK(notFormedBecause(twoLeaders, {"m1", "m2"}, {"w1"}) == "2 managers are Leader");
}

TEST_CASE("formed with fake nodes: the named nodes as above, and exactly that many others Ready workers") {
  auto nodes = parseNodeList(kFormed);
  auto fake = [](const std::string& host, const std::string& status) {
    SwarmNode n;
    n.id = "id-" + host;
    n.hostname = host;
    n.status = status;
    n.availability = "Active";
    return n;
  };
  nodes.push_back(fake("w2-1", "Ready"));
  nodes.push_back(fake("w2-2", "Ready"));
  CHECK(notFormedBecause(nodes, {"m1", "m2"}, {"w1"}, 2) == "");
  CHECK(notFormedBecause(nodes, {"m1", "m2"}, {"w1"}, 3) == "2 fake nodes are listed, 3 expected");
  CHECK(notFormedBecause(nodes, {"m1", "m2"}, {"w1", "w3"}, 2) == "3 nodes are listed, 4 expected");
  nodes[4].status = "Unknown";
  CHECK(notFormedBecause(nodes, {"m1", "m2"}, {"w1"}, 2) == "1 of 2 fake nodes are Ready (fake node w2-2 is Unknown)");
}

TEST_CASE("the join token in what join-token -q printed") {
  const std::string token = "SWMTKN-1-" + std::string(50, '0') + "-" + std::string(25, 'a');
  CHECK(findJoinToken(token + "\n") == token);
  CHECK(findJoinToken("  " + token + "  ") == token);
  CHECK_FALSE(findJoinToken(""));
  CHECK_FALSE(findJoinToken("Error: this node is not a swarm manager\n"));
  CHECK_FALSE(findJoinToken(token + "\n" + token + "\n"));  // two: which one?
}
