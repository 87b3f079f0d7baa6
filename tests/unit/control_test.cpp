// The rules of raftd's control API (services/raftd/control_rules.h): init settings, node
// resolution, label changes and the quorum rule of docs/cluster.md "Roles and removal".
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "services/raftd/control_rules.h"

namespace shoal::raftd::control {
namespace {

using namespace std::chrono_literals;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

Result<std::string> noDefaultRoute() { return Error{"no default route here"}; }
Result<std::string> defaultRoute() { return std::string("192.0.2.7"); }

TEST_CASE("init: defaults are docker's") {
  auto s = validateInit({}, defaultRoute);
  REQUIRE(s.ok());
  CHECK(s->advertiseHost == "192.0.2.7");
  CHECK(s->listenHost == "0.0.0.0");
  CHECK(s->port == 2377);
  CHECK(s->addressPools == std::vector<std::string>{"10.0.0.0/8"});
  CHECK(s->subnetSize == 24);
  CHECK(s->heartbeat == 5s);
  CHECK(s->certExpiry == std::chrono::hours(24 * 90));
}

TEST_CASE("init: addresses") {
  InitInput in;
  in.advertiseAddr = "127.0.0.1:4000";
  auto s = validateInit(in, noDefaultRoute);
  REQUIRE_MESSAGE(s.ok(), (s ? "" : s.error().message));
  CHECK(s->advertiseHost == "127.0.0.1");
  CHECK(s->port == 4000);
  CHECK(s->listenHost == "0.0.0.0");

  SUBCASE("an interface name resolves to its address") {
    in.advertiseAddr = "lo";
    auto l = validateInit(in, noDefaultRoute);
    REQUIRE(l.ok());
    CHECK(l->advertiseHost == "127.0.0.1");
    CHECK(l->port == 2377);
  }
  SUBCASE("the listen port is the advertise port when only it is given") {
    in.advertiseAddr = "127.0.0.1";
    in.listenAddr = "0.0.0.0:5000";
    auto l = validateInit(in, noDefaultRoute);
    REQUIRE(l.ok());
    CHECK(l->port == 5000);
  }
  SUBCASE("a specific listen address is advertised when no advertise address is given") {
    in.advertiseAddr.clear();
    in.listenAddr = "127.0.0.1";
    auto l = validateInit(in, noDefaultRoute);
    REQUIRE(l.ok());
    CHECK(l->advertiseHost == "127.0.0.1");
  }
  SUBCASE("different ports are refused") {
    in.listenAddr = "0.0.0.0:5000";
    auto l = validateInit(in, noDefaultRoute);
    REQUIRE_FALSE(l.ok());
    CHECK(contains(l.error().message, "differ"));
  }
  SUBCASE("0.0.0.0 cannot be advertised") {
    in.advertiseAddr = "0.0.0.0";
    auto l = validateInit(in, noDefaultRoute);
    REQUIRE_FALSE(l.ok());
    CHECK(contains(l.error().message, "0.0.0.0 is not an address other nodes can reach"));
  }
  SUBCASE("garbage, host names and IPv6 are refused and named") {
    for (const char* bad :
         {"no such thing!", "example.com", "[::1]:2377", "1.2.3.4:0", "1.2.3.4:99999", ":2377"}) {
      in.advertiseAddr = bad;
      auto l = validateInit(in, noDefaultRoute);
      CHECK_MESSAGE(!l.ok(), bad);
      if (!l.ok()) CHECK(contains(l.error().message, "--advertise-addr"));
    }
  }
  SUBCASE("without a default route the error says to give an address") {
    auto l = validateInit({}, noDefaultRoute);
    REQUIRE_FALSE(l.ok());
    CHECK(l.error().message == "no default route here");
  }
}

TEST_CASE("init: heartbeat and certificate expiry ranges") {
  InitInput in;
  in.advertiseAddr = "127.0.0.1";
  in.heartbeatNs = 1'000'000'000;  // the lab's 1 s
  CHECK(validateInit(in, noDefaultRoute).ok());
  for (int64_t bad : std::vector<int64_t>{-1, 50'000'000, int64_t{25} * 3600 * 1'000'000'000}) {
    in.heartbeatNs = bad;
    auto s = validateInit(in, noDefaultRoute);
    REQUIRE_FALSE(s.ok());
    CHECK(contains(s.error().message, "heartbeat"));
  }
  in.heartbeatNs = 0;
  in.certExpiryNs = 30LL * 60 * 1'000'000'000LL;
  auto s = validateInit(in, noDefaultRoute);
  REQUIRE_FALSE(s.ok());
  CHECK(contains(s.error().message, "the minimum is 1h0m0s"));
  in.certExpiryNs = 2LL * 3600 * 1'000'000'000LL;
  auto ok = validateInit(in, noDefaultRoute);
  REQUIRE(ok.ok());
  CHECK(ok->certExpiry == 2h);
}

TEST_CASE("init: address pools") {
  CHECK(checkAddressPools(std::vector<std::string>{"10.0.0.0/8", "192.168.0.0/16"}, 24).ok());
  auto err = [](std::vector<std::string> pools, uint32_t size) {
    auto st = checkAddressPools(pools, size);
    return st.ok() ? std::string() : st.error().message;
  };
  CHECK(contains(err({"10.0.0.0"}, 24), "has no prefix length"));
  CHECK(contains(err({"10.0.0.1/8"}, 24), "did you mean 10.0.0.0/8?"));
  CHECK(contains(err({"10.0.0.0/33"}, 24), "prefix length"));
  CHECK(contains(err({"fd00::/8"}, 24), "not an IPv4 address"));
  CHECK(contains(err({"10.0.0.0/8", "10.1.0.0/16"}, 24), "overlap"));
  CHECK(contains(err({"10.0.0.0/26"}, 24), "smaller than one subnet"));
  CHECK(contains(err({"10.0.0.0/8"}, 30), "subnet size /30 is out of range"));
  CHECK(contains(err({"10.0.0.0/8"}, 0), "out of range"));
}

TEST_CASE("the default route's interface from /proc/net/route") {
  const char* table =
      "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
      "eth1\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
      "eth0\t00000000\t0100A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n"
      "wlan0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n";
  CHECK(defaultRouteInterface(table) == std::optional<std::string>("wlan0"));
  CHECK_FALSE(defaultRouteInterface("Iface\tDestination\n").has_value());
  CHECK_FALSE(defaultRouteInterface("").has_value());
}

TEST_CASE("JoinRaft: what the join reply must give") {
  const std::string key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";
  JoinRaftInput in{7, 9, "0.0.0.0:2378", "10.0.0.2:2378", {{1, "10.0.0.1:2378", key}}};
  REQUIRE(validateJoinRaft(in).ok());
  auto refused = [&](JoinRaftInput bad, const std::string& part) {
    auto st = validateJoinRaft(bad);
    REQUIRE_FALSE(st.ok());
    CHECK_MESSAGE(contains(st.error().message, part), st.error().message);
  };
  auto b = in;
  b.raftId = 0;
  refused(b, "raft id is 0");
  b = in;
  b.advertiseAddr = "10.0.0.2";
  refused(b, "has no port");
  b = in;
  b.peers.clear();
  refused(b, "names no peer");
  b = in;
  b.peers[0].raftId = 7;
  refused(b, "own raft id");
  b = in;
  b.peers[0].publicKey = "short";
  refused(b, "no valid public key");
  b = in;
  b.peers.push_back(b.peers[0]);
  refused(b, "named twice");
}

TEST_CASE("a node is named by id, hostname or unique id prefix") {
  std::vector<NodeName> nodes{{"aaaa1111111111111111111111", "m1"},
                              {"aaab2222222222222222222222", "w1"},
                              {"bbbb3333333333333333333333", "w1"},
                              {"cccc4444444444444444444444", "aaaa"}};
  CHECK(*resolveNode("aaab2222222222222222222222", nodes) == "aaab2222222222222222222222");
  CHECK(*resolveNode("m1", nodes) == "aaaa1111111111111111111111");
  // A hostname wins over an id prefix, as in docker.
  CHECK(*resolveNode("aaaa", nodes) == "cccc4444444444444444444444");
  CHECK(*resolveNode("bb", nodes) == "bbbb3333333333333333333333");
  auto twoNames = resolveNode("w1", nodes);
  REQUIRE_FALSE(twoNames.ok());
  CHECK(
      contains(twoNames.error().message, "aaab2222222222222222222222, bbbb3333333333333333333333"));
  auto twoIds = resolveNode("aa", nodes);
  REQUIRE_FALSE(twoIds.ok());
  CHECK(contains(twoIds.error().message, "ambiguous"));
  auto none = resolveNode("zz", nodes);
  REQUIRE_FALSE(none.ok());
  CHECK(contains(none.error().message, "shoal node ls"));
  CHECK_FALSE(resolveNode("", nodes).ok());
}

objects::NodeT nodeWithLabels(std::vector<std::pair<std::string, std::string>> labels) {
  objects::NodeT n;
  n.id = "aaaa1111111111111111111111";
  n.spec = std::make_unique<objects::NodeSpecT>();
  n.spec->annotations = std::make_unique<objects::AnnotationsT>();
  for (auto& [k, v] : labels) {
    auto kv = std::make_unique<objects::KeyValueT>();
    kv->key = k;
    kv->value = v;
    n.spec->annotations->labels.push_back(std::move(kv));
  }
  return n;
}

std::vector<std::string> labelsOf(const objects::NodeT& n) {
  std::vector<std::string> out;
  for (auto& kv : n.spec->annotations->labels) out.push_back(kv->key + "=" + kv->value);
  return out;
}

TEST_CASE("node update: labels and availability") {
  auto n = nodeWithLabels({{"zone", "a"}});
  NodeChanges c;
  c.availability = objects::NodeAvailability::Drain;
  c.labelAdd = {{"disk", "ssd"}, {"zone", "b"}};
  REQUIRE(applyNodeChanges(n, c).ok());
  CHECK(labelsOf(n) == std::vector<std::string>{"disk=ssd", "zone=b"});
  CHECK(n.spec->availability == objects::NodeAvailability::Drain);

  SUBCASE("removing a label the node does not have changes nothing") {
    NodeChanges rm;
    rm.availability = objects::NodeAvailability::Active;
    rm.labelAdd = {{"new", "x"}};
    rm.labelRm = {"disk", "nope"};
    auto st = applyNodeChanges(n, rm);
    REQUIRE_FALSE(st.ok());
    CHECK(contains(st.error().message, "has no label \"nope\""));
    CHECK(labelsOf(n) == std::vector<std::string>{"disk=ssd", "zone=b"});
    CHECK(n.spec->availability == objects::NodeAvailability::Drain);
  }
  SUBCASE("a bad key changes nothing") {
    NodeChanges bad;
    bad.labelAdd = {{"a b", "x"}};
    CHECK_FALSE(applyNodeChanges(n, bad).ok());
    bad.labelAdd = {{"", "x"}};
    CHECK_FALSE(applyNodeChanges(n, bad).ok());
    CHECK(labelsOf(n) == std::vector<std::string>{"disk=ssd", "zone=b"});
  }
  SUBCASE("remove") {
    NodeChanges rm;
    rm.labelRm = {"zone"};
    REQUIRE(applyNodeChanges(n, rm).ok());
    CHECK(labelsOf(n) == std::vector<std::string>{"disk=ssd"});
  }
  SUBCASE("an unknown availability") {
    NodeChanges bad;
    bad.availability = static_cast<objects::NodeAvailability>(7);
    CHECK_FALSE(applyNodeChanges(n, bad).ok());
  }
}

TEST_CASE("quorum: docs/cluster.md's rule") {
  std::vector<ManagerView> two{{"m1", 1, true, true}, {"m2", 2, true, true}};
  auto st = keepsQuorum(two, 2, "demoting m2", "promote another node first");
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().message ==
        "demoting m2 would lose quorum: 1 of the 2 managers would remain, and 2 must agree on "
        "the change; promote another node first");

  std::vector<ManagerView> three{
      {"m1", 1, true, true}, {"m2", 2, true, true}, {"m3", 3, true, true}};
  CHECK(keepsQuorum(three, 3, "demoting m3", "").ok());
  three[1].reachable = false;
  auto lost = keepsQuorum(three, 3, "demoting m3", "bring m2 back first");
  REQUIRE_FALSE(lost.ok());
  CHECK(contains(lost.error().message, "1 of the 3 managers would remain reachable"));
  // Removing the unreachable one keeps the two that answer.
  CHECK(keepsQuorum(three, 2, "demoting m2", "").ok());

  std::vector<ManagerView> one{{"m1", 1, true, true}};
  CHECK_FALSE(keepsQuorum(one, 1, "leaving", "").ok());
  // A learner carries no vote: removing it is always safe.
  std::vector<ManagerView> learner{{"m1", 1, true, true}, {"m2", 2, false, false}};
  CHECK(keepsQuorum(learner, 2, "demoting m2", "").ok());
  // Five managers, two down: removing a third reachable one leaves 2 of 5, short of 3.
  std::vector<ManagerView> five{{"a", 1, true, true},
                                {"b", 2, true, true},
                                {"c", 3, true, true},
                                {"d", 4, true, false},
                                {"e", 5, true, false}};
  CHECK_FALSE(keepsQuorum(five, 1, "demoting a", "").ok());
  CHECK(keepsQuorum(five, 4, "demoting d", "").ok());
}

TEST_CASE("the managers the quorum rule counts: raft's view and the store's") {
  std::vector<StoredManager> stored{{"m1", 1, true}, {"m2", 2, true}, {"m3", 3, false}};

  SUBCASE("on the leader, reachability is what it heard") {
    RaftView raft{1, 1, true, {{1, true, true}, {2, true, false}, {3, true, true}}};
    auto v = managerViews(stored, raft);
    REQUIRE(v.size() == 3);
    CHECK(v[0].reachable);
    CHECK_FALSE(v[1].reachable);  // the store said reachable; the leader knows better
    CHECK(v[2].reachable);
  }
  SUBCASE("on a follower, the leader and itself, the rest from the store") {
    RaftView raft{2, 1, false, {{1, true, true}, {2, true, false}, {3, true, false}}};
    auto v = managerViews(stored, raft);
    REQUIRE(v.size() == 3);
    CHECK(v[0].reachable);  // the leader
    CHECK(v[1].reachable);  // itself
    CHECK_FALSE(v[2].reachable);
  }
  SUBCASE("a learner has no vote; a stored manager raft does not have has none either") {
    RaftView raft{1, 1, true, {{1, true, true}, {2, false, true}}};
    auto v = managerViews(stored, raft);
    REQUIRE(v.size() == 3);
    CHECK(v[0].voter);
    CHECK_FALSE(v[1].voter);
    CHECK_FALSE(v[2].voter);
    // So demoting the leader of one voter and one learner loses quorum.
    CHECK_FALSE(keepsQuorum(v, 1, "demoting m1", "").ok());
  }
  SUBCASE("a member the store does not name still counts") {
    RaftView raft{
        1, 1, true, {{1, true, true}, {2, true, true}, {3, true, true}, {0xab, true, false}}};
    auto v = managerViews(stored, raft);
    REQUIRE(v.size() == 4);
    CHECK(v[3].name == "raft member ab");
    CHECK(v[3].voter);
    CHECK_FALSE(v[3].reachable);
    // 4 voters, one unreachable: removing a reachable one leaves 2, short of 3.
    CHECK_FALSE(keepsQuorum(v, 2, "demoting m2", "").ok());
  }
  SUBCASE("when raft's configuration is not known, every stored manager votes") {
    auto v = managerViews(stored, RaftView{});
    REQUIRE(v.size() == 3);
    for (auto& m : v) CHECK(m.voter);
    CHECK(v[0].reachable);
    CHECK_FALSE(v[2].reachable);
  }
}

}  // namespace
}  // namespace shoal::raftd::control
