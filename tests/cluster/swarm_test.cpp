// The swarm on a shoal-lab, as issue 8's "Show with the lab" asks (docs/cluster.md, docs/lab.md):
// every case makes a lab of its own (a unique name), works it through `shoal-lab exec NODE
// shoal ...` as a user would, and takes it down when it ends, failed or not (LabGuard); then
// checks that no namespace, link, mount or process of it is left. Needs root.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/cluster/lab_support.h"
#include "tools/lab/lab.h"
#include "tools/lab/node_list.h"

namespace {

using namespace shoal::labtest;
using shoal::lab::SwarmNode;

std::string randomWord(size_t n) {
  static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::random_device rd;
  std::string w;
  for (size_t i = 0; i < n; ++i) w += alphabet[rd() % (sizeof alphabet - 1)];
  return w;
}

// A lab for one test case: up with the given shape, down (and checked gone) at the end.
class TestLab {
 public:
  TestLab(const std::string& tag, int managers, int workers, const std::string& heartbeat = "1s")
      : name_(uniqueName(tag)), linksBefore_(rootLinks()), guard_{name_} {
    std::vector<std::string> args = {"up",         "--name", name_, "--managers", std::to_string(managers),
                                     "--workers", std::to_string(workers), "--bin-dir", buildDir()};
    if (!heartbeat.empty()) {
      args.push_back("--heartbeat");
      args.push_back(heartbeat);
    }
    auto t0 = Clock::now();
    auto up = lab(args, 180s);
    REQUIRE_MESSAGE(up.status.code == 0, said(up));
    MESSAGE("lab " << name_ << " (" << managers << "+" << workers << ") up in "
                   << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count() << " ms");
    for (int i = 1; i <= managers; ++i) managers_.push_back("m" + std::to_string(i));
    for (int i = 1; i <= workers; ++i) workers_.push_back("w" + std::to_string(i));
  }
  // Takes the lab down and checks that nothing of it is left.
  void down() {
    if (isDown_) return;
    auto pids = pidsOf(ls(name_));
    auto d = lab({"down", "--name", name_});
    CHECK_MESSAGE(d.status.code == 0, said(d));
    checkGone(name_, pids, linksBefore_);
    isDown_ = true;
  }
  ~TestLab() {
    // A failed REQUIRE skips down(): the guard still removes the lab.
  }

  const std::string& name() const { return name_; }
  const std::vector<std::string>& managers() const { return managers_; }
  const std::vector<std::string>& workers() const { return workers_; }
  std::string address(const std::string& node) { return nodeOf(ls(name_), node)["address"]; }
  std::string netns(const std::string& node) const { return "shoal-" + name_ + "-" + node; }
  std::string hubNetns() const { return "shoal-" + name_ + "-hub"; }

  RunResult exec(const std::string& node, std::vector<std::string> command, std::chrono::milliseconds bound = 30s) {
    command.insert(command.begin(), {"exec", "--name", name_, node});
    return lab(command, bound);
  }
  RunResult shoal(const std::string& node, std::vector<std::string> args, std::chrono::milliseconds bound = 30s) {
    args.insert(args.begin(), "shoal");
    return exec(node, args, bound);
  }
  // `shoal node ls` in node, parsed; nothing when it failed (why in *error).
  std::optional<std::vector<SwarmNode>> nodeLs(const std::string& node, std::string* error = nullptr,
                                               std::chrono::milliseconds bound = 10s) {
    auto r = shoal(node, {"node", "ls", "--format", "json"}, bound);
    if (r.status.code != 0) {
      if (error) *error = said(r);
      return std::nullopt;
    }
    try {
      return shoal::lab::parseNodeList(r.out);
    } catch (const shoal::lab::LabError& e) {
      if (error) *error = e.what();
      return std::nullopt;
    }
  }
  std::vector<SwarmNode> mustNodeLs(const std::string& node) {
    std::string error;
    auto nodes = nodeLs(node, &error);
    REQUIRE_MESSAGE(nodes, "node ls in " << node << ": " << error);
    return *nodes;
  }
  std::string token(const std::string& role, bool rotate = false) {
    std::vector<std::string> args = {"swarm", "join-token", "-q"};
    if (rotate) args.push_back("--rotate");
    args.push_back(role);
    auto r = shoal("m1", args);
    REQUIRE_MESSAGE(r.status.code == 0, said(r));
    auto t = shoal::lab::findJoinToken(r.out);
    REQUIRE_MESSAGE(t, said(r));
    return *t;
  }
  void labCommand(std::vector<std::string> args) {
    args.insert(args.begin() + 1, {"--name", name_});
    auto r = lab(args);
    REQUIRE_MESSAGE(r.status.code == 0, said(r));
  }

 private:
  std::string name_;
  std::set<std::string> linksBefore_;
  LabGuard guard_;
  std::vector<std::string> managers_, workers_;
  bool isDown_ = false;
};

long msSince(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
}

// The node of hostname in nodes, or a failed check.
SwarmNode host(const std::vector<SwarmNode>& nodes, const std::string& hostname) {
  auto n = shoal::lab::findHost(nodes, hostname);
  REQUIRE_MESSAGE(n, hostname << " is not listed exactly once");
  return *n;
}

// A stable picture of the store's nodes for before/after comparisons: what node ls shows.
std::set<std::string> picture(const std::vector<SwarmNode>& nodes) {
  std::set<std::string> p;
  for (auto& n : nodes)
    p.insert(n.id + " " + n.hostname + " " + n.status + " " + n.availability + " " + n.managerStatus);
  return p;
}

// Runs fn on a thread of its own inside network namespace netns (setns applies to the
// calling thread only), and returns what it returned.
template <class F>
auto inNetns(const std::string& netns, F fn) -> decltype(fn()) {
  decltype(fn()) result{};
  std::string error;
  std::thread t([&] {
    int fd = ::open(("/run/netns/" + netns).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
      error = "cannot enter " + netns + ": " + std::strerror(errno);
      if (fd >= 0) ::close(fd);
      return;
    }
    ::close(fd);
    result = fn();
  });
  t.join();
  REQUIRE_MESSAGE(error.empty(), error);
  return result;
}

// Sends bytes over a plain TCP connection to addr:port and returns what came back within 2 s
// (the peer may answer, close, or say nothing); "connect failed: ..." when it could not connect.
std::string sendRaw(const std::string& addr, int port, const std::string& bytes) {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return std::string("socket failed: ") + std::strerror(errno);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  ::inet_pton(AF_INET, addr.c_str(), &sa.sin_addr);
  if (::connect(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    std::string e = std::string("connect failed: ") + std::strerror(errno);
    ::close(s);
    return e;
  }
  [[maybe_unused]] auto n = ::send(s, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  std::string got;
  auto end = Clock::now() + 2s;
  while (Clock::now() < end && got.size() < 65536) {
    pollfd p{s, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[4096];
    ssize_t r = ::recv(s, buf, sizeof buf, 0);
    if (r <= 0) break;
    got.append(buf, r);
  }
  ::close(s);
  return got;
}

// Captures every frame on the lab's bridge ports with an AF_PACKET socket opened in the hub
// namespace (there is no tcpdump here): the TCP payloads per flow, in arrival order.
class WireCapture {
 public:
  explicit WireCapture(const std::string& hubNetns) {
    std::promise<std::string> opened;
    auto ready = opened.get_future();
    thread_ = std::thread([this, hubNetns, &opened] {
      int fd = ::open(("/run/netns/" + hubNetns).c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
        opened.set_value("cannot enter " + hubNetns + ": " + std::strerror(errno));
        return;
      }
      ::close(fd);
      sock_ = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
      if (sock_ < 0) {
        opened.set_value(std::string("AF_PACKET socket: ") + std::strerror(errno));
        return;
      }
      int size = 8 << 20;
      ::setsockopt(sock_, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size);
      opened.set_value("");
      loop();
    });
    std::string error = ready.get();
    if (!error.empty()) {
      thread_.join();
      FAIL(error);
    }
  }
  ~WireCapture() { stop(); }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (sock_ >= 0) ::close(sock_);
    sock_ = -1;
  }
  // Payload bytes seen on flows from or to one of the ports.
  size_t bytesOn(std::initializer_list<int> ports) {
    std::lock_guard lock(mu_);
    size_t n = 0;
    for (auto& [flow, data] : flows_)
      for (int p : ports)
        if (flow.first == p || flow.second == p) {
          n += data.size();
          break;
        }
    return n;
  }
  // Whether text occurs inside the payload of a flow from or to one of the ports.
  bool contains(std::initializer_list<int> ports, const std::string& text) {
    std::lock_guard lock(mu_);
    for (auto& [flow, data] : flows_)
      for (int p : ports)
        if ((flow.first == p || flow.second == p) && data.find(text) != std::string::npos) return true;
    return false;
  }
  size_t frames() const { return frames_; }

 private:
  void loop() {
    std::vector<unsigned char> buf(65536);
    auto end = Clock::now() + 300s;  // bounded, whatever the test does
    while (!stop_ && Clock::now() < end) {
      pollfd p{sock_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      sockaddr_ll from{};
      socklen_t len = sizeof from;
      ssize_t n = ::recvfrom(sock_, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &len);
      // Each bridged frame is seen entering one port and leaving another: keep the entering.
      if (n <= 0 || from.sll_pkttype == PACKET_OUTGOING) continue;
      ++frames_;
      parse(buf.data(), static_cast<size_t>(n));
    }
  }
  void parse(const unsigned char* f, size_t n) {
    if (n < 14 + 20 || f[12] != 0x08 || f[13] != 0x00) return;  // IPv4 only
    const unsigned char* ip = f + 14;
    size_t ihl = (ip[0] & 0x0f) * 4;
    if ((ip[0] >> 4) != 4 || ip[9] != IPPROTO_TCP || n < 14 + ihl + 20) return;
    size_t total = (ip[2] << 8) | ip[3];
    const unsigned char* tcp = ip + ihl;
    size_t thl = (tcp[12] >> 4) * 4;
    if (total < ihl + thl || 14 + total > n) return;
    int sport = (tcp[0] << 8) | tcp[1], dport = (tcp[2] << 8) | tcp[3];
    std::string payload(reinterpret_cast<const char*>(tcp + thl), total - ihl - thl);
    if (payload.empty()) return;
    // Flows are keyed by their two ports; the addresses are the lab's own.
    std::lock_guard lock(mu_);
    flows_[{sport, dport}] += payload;
  }

  std::thread thread_;
  std::atomic<bool> stop_{false};
  int sock_ = -1;
  std::mutex mu_;
  std::map<std::pair<int, int>, std::string> flows_;
  std::atomic<size_t> frames_{0};
};

// The labels of a node from `shoal node inspect` (docker's shape: Spec.Labels).
std::map<std::string, std::string> labelsOf(TestLab& l, const std::string& via, const std::string& node) {
  auto r = l.shoal(via, {"node", "inspect", node});
  REQUIRE_MESSAGE(r.status.code == 0, said(r));
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  REQUIRE_MESSAGE((j.is_array() && j.size() == 1), r.out);
  std::map<std::string, std::string> labels;
  const auto spec = j[0].value("Spec", nlohmann::json::object());
  const auto found = spec.value("Labels", nlohmann::json::object());
  for (auto& [k, v] : found.items())
    if (v.is_string()) labels[k] = v.get<std::string>();
  return labels;
}

}  // namespace

TEST_CASE("a 3+2 swarm: formed; the leader's node killed and started again; a worker's agentd too") {
  requireRoot();
  TestLab l("f", 3, 2, "1s");
  const std::vector<std::string> all = {"m1", "m2", "m3", "w1", "w2"};

  // Every manager lists the 5 nodes Ready, with exactly one Leader, and marks itself.
  std::map<std::string, std::string> ids;
  for (auto& m : l.managers()) {
    auto nodes = l.mustNodeLs(m);
    CHECK_MESSAGE(shoal::lab::notFormedBecause(nodes, l.managers(), l.workers()) == "", "asked " << m);
    CHECK(host(nodes, m).self);
    for (auto& n : nodes) ids[n.hostname] = n.id;
  }
  REQUIRE(ids.size() == 5);
  // Workers are no managers: node ls there is refused, as docker's is.
  CHECK(l.shoal("w1", {"node", "ls"}).status.code != 0);

  // SIGKILL every daemon of the leader's node.
  auto leader = shoal::lab::soleLeader(l.mustNodeLs("m1"));
  REQUIRE(leader);
  const std::string old = *leader;
  std::vector<std::string> survivors;
  for (auto& m : l.managers())
    if (m != old) survivors.push_back(m);
  auto t0 = Clock::now();
  l.labCommand({"kill", old});
  MESSAGE("killed every daemon of " << old << ", the leader, in " << msSince(t0) << " ms");

  // Within 3 s a survivor reports another Leader and the old one Unreachable.
  long newLeaderMs = -1;
  std::string seen;
  waitFor([&] {
    for (auto& s : survivors) {
      auto nodes = l.nodeLs(s, nullptr, 3s);
      if (!nodes) continue;
      auto now = shoal::lab::soleLeader(*nodes);
      auto was = shoal::lab::findHost(*nodes, old);
      seen = s + " says leader " + now.value_or("none") + ", " + old + " " + (was ? was->managerStatus : "missing");
      if (now && *now != old && was && was->managerStatus == "Unreachable") {
        newLeaderMs = msSince(t0);
        return true;
      }
    }
    return false;
  }, 15s, 50ms);
  MESSAGE("a new leader and " << old << " Unreachable after " << newLeaderMs << " ms (" << seen << ")");
  CHECK_MESSAGE(newLeaderMs >= 0, "no survivor reported another leader within 15 s: " << seen);
  CHECK_MESSAGE(newLeaderMs <= 3000, "took " << newLeaderMs << " ms");

  // With a 1 s heartbeat the old leader's node shows Down within about 4 s.
  // Meanwhile every other node stays Ready: their agentds fail over to the new leader's
  // dispatcher within the 3 periods it gives them.
  long downMs = -1;
  std::string othersDown;
  waitFor([&] {
    for (auto& s : survivors) {
      auto nodes = l.nodeLs(s, nullptr, 3s);
      if (nodes)
        for (auto& n : *nodes)
          if (n.hostname != old && n.status != "Ready" && othersDown.find(n.hostname) == std::string::npos)
            othersDown += " " + n.hostname + " " + n.status + " at " + std::to_string(msSince(t0)) + " ms;";
      auto was = nodes ? shoal::lab::findHost(*nodes, old) : std::nullopt;
      if (was && was->status == "Down") {
        downMs = msSince(t0);
        return true;
      }
    }
    return false;
  }, 15s, 100ms);
  MESSAGE(old << " Down after " << downMs << " ms");
  CHECK_MESSAGE(othersDown.empty(), "survivors not Ready after the failover:" << othersDown);
  CHECK_MESSAGE(downMs >= 0, old << " was not Down within 15 s");
  WARN_MESSAGE((downMs >= 0 && downMs <= 5000), "Down after " << downMs << " ms, about 4 s expected");

  // Started again (no token: the daemons' command lines are the ones of `up`), it is a
  // Reachable manager with the same node ID.
  const auto oldDaemons = nodeOf(ls(l.name()), old)["daemons"];
  for (auto& [d, r] : oldDaemons.items()) CHECK_MESSAGE(r["argv"].dump().find("SWMTKN") == std::string::npos, d);
  auto t1 = Clock::now();
  l.labCommand({"start", old});
  std::string why;
  bool back = waitFor([&] {
    auto nodes = l.nodeLs(survivors.front(), &why, 5s);
    if (!nodes) return false;
    why = shoal::lab::notFormedBecause(*nodes, l.managers(), l.workers());
    auto was = shoal::lab::findHost(*nodes, old);
    return why.empty() && was && was->managerStatus == "Reachable";
  }, 30s);
  CHECK_MESSAGE(back, why);
  MESSAGE(old << " Ready and Reachable again " << msSince(t1) << " ms after its start");
  {
    auto nodes = l.mustNodeLs(old);
    CHECK(nodes.size() == 5);
    CHECK(host(nodes, old).id == ids[old]);
    CHECK(host(nodes, old).self);
  }

  // A worker's agentd killed: Down; started again: Ready, the same ID.
  auto t2 = Clock::now();
  l.labCommand({"kill", "w1", "agentd"});
  long workerDownMs = -1;
  waitFor([&] {
    auto nodes = l.nodeLs("m1", nullptr, 3s);
    auto w = nodes ? shoal::lab::findHost(*nodes, "w1") : std::nullopt;
    if (w && w->status == "Down") workerDownMs = msSince(t2);
    return workerDownMs >= 0;
  }, 15s, 100ms);
  MESSAGE("w1 Down " << workerDownMs << " ms after its agentd was killed");
  CHECK(workerDownMs >= 0);
  l.labCommand({"start", "w1", "agentd"});
  std::optional<SwarmNode> w1;
  CHECK(waitFor([&] {
    auto nodes = l.nodeLs("m1", nullptr, 3s);
    w1 = nodes ? shoal::lab::findHost(*nodes, "w1") : std::nullopt;
    return w1 && w1->status == "Ready";
  }, 30s));
  REQUIRE(w1);
  CHECK(w1->id == ids["w1"]);
  CHECK(l.mustNodeLs("m1").size() == 5);

  l.down();
}

TEST_CASE("roles: promote, demote, drain, rm; quorum kept; a removed node stays out; a rotated token") {
  requireRoot();
  TestLab l("r", 2, 3, "1s");
  auto ok = [&](const std::string& node, std::vector<std::string> args) {
    auto r = l.shoal(node, args);
    CHECK_MESSAGE(r.status.code == 0, said(r));
    return r;
  };
  auto until = [&](auto pred, std::chrono::milliseconds bound = 30s) {
    std::vector<SwarmNode> last;
    bool met = waitFor([&] {
      auto nodes = l.nodeLs("m1", nullptr, 5s);
      if (!nodes) return false;
      last = *nodes;
      return pred(last);
    }, bound);
    return std::make_pair(met, last);
  };
  auto text = [](const std::vector<SwarmNode>& nodes) {
    std::string t;
    for (auto& p : picture(nodes)) t += p + "\n";
    return t;
  };

  // promote w1: a Reachable manager once its raftd caught up.
  ok("m1", {"node", "promote", "w1"});
  auto [promoted, p1] = until([](auto& ns) {
    auto w = shoal::lab::findHost(ns, "w1");
    return w && w->managerStatus == "Reachable";
  });
  CHECK_MESSAGE(promoted, text(p1));
  // w1 now answers node ls itself, as a manager does.
  CHECK(waitFor([&] { return l.nodeLs("w1", nullptr, 5s).has_value(); }, 20s));

  // demote w1 again: a worker (no manager status); two managers are left.
  ok("m1", {"node", "demote", "w1"});
  auto [demoted, p2] = until([](auto& ns) {
    auto w = shoal::lab::findHost(ns, "w1");
    return w && w->managerStatus.empty() && w->status == "Ready";
  });
  CHECK_MESSAGE(demoted, text(p2));

  // Demoting a manager of a 2-manager cluster would lose quorum: refused, nothing changed.
  auto before = picture(l.mustNodeLs("m1"));
  auto refused = l.shoal("m1", {"node", "demote", "m2"});
  CHECK_MESSAGE(refused.status.code != 0, said(refused));
  CHECK_MESSAGE(refused.err.find("quorum") != std::string::npos, said(refused));
  CHECK(picture(l.mustNodeLs("m1")) == before);

  // drain w2.
  ok("m1", {"node", "update", "--availability", "drain", "w2"});
  auto [drained, p3] = until([](auto& ns) {
    auto w = shoal::lab::findHost(ns, "w2");
    return w && w->availability == "Drain";
  });
  CHECK_MESSAGE(drained, text(p3));

  // rm w3: refused while it is Ready; once its agentd is dead and it is Down, removed.
  auto early = l.shoal("m1", {"node", "rm", "w3"});
  CHECK_MESSAGE(early.status.code != 0, said(early));
  const std::string w3id = host(l.mustNodeLs("m1"), "w3").id;
  l.labCommand({"kill", "w3", "agentd"});
  auto [w3down, p4] = until([](auto& ns) {
    auto w = shoal::lab::findHost(ns, "w3");
    return w && w->status == "Down";
  });
  CHECK_MESSAGE(w3down, text(p4));
  ok("m1", {"node", "rm", "w3"});
  auto [removed, p5] = until([](auto& ns) { return !shoal::lab::findHost(ns, "w3") && ns.size() == 4; });
  CHECK_MESSAGE(removed, text(p5));

  // The removed node cannot connect again: its agentd's session is refused, and it says so.
  l.labCommand({"start", "w3", "agentd"});
  // agentd tries the managers it knew (w1 among them, a manager then) until one answers.
  RunResult info;
  bool told = waitFor([&] {
    info = l.shoal("w3", {"info"});
    const std::string t = info.out + info.err;
    return t.find("removed") != std::string::npos || t.find("refused") != std::string::npos;
  }, 30s, 500ms);
  MESSAGE("shoal info on the removed w3:\n" << said(info));
  CHECK_MESSAGE(told, said(info));
  auto after = l.mustNodeLs("m1");
  CHECK(after.size() == 4);
  CHECK_FALSE(shoal::lab::findHost(after, "w3"));

  // join-token --rotate worker: the old token no longer joins; the new one does.
  const std::string oldToken = l.token("worker");
  const std::string newToken = l.token("worker", true);
  CHECK(newToken != oldToken);
  CHECK(l.token("worker") == newToken);
  auto leave = l.shoal("w3", {"swarm", "leave", "--force"});
  CHECK_MESSAGE(leave.status.code == 0, said(leave));
  const std::string target = l.address("m1") + ":2377";
  auto stale = l.shoal("w3", {"swarm", "join", "--token", oldToken, target});
  CHECK_MESSAGE(stale.status.code != 0, said(stale));
  CHECK_MESSAGE(stale.err.find("token") != std::string::npos, said(stale));
  CHECK(l.mustNodeLs("m1").size() == 4);
  auto fresh = l.shoal("w3", {"swarm", "join", "--token", newToken, target});
  CHECK_MESSAGE(fresh.status.code == 0, said(fresh));
  auto [rejoined, p6] = until([&](auto& ns) {
    auto w = shoal::lab::findHost(ns, "w3");
    return w && w->status == "Ready" && w->id != w3id;
  });
  CHECK_MESSAGE(rejoined, text(p6));

  l.down();
}

TEST_CASE("the wire: 2377 and 2378 carry no plaintext; the capture sees it where there is some") {
  requireRoot();
  TestLab l("w", 3, 1, "1s");
  const std::string m1 = l.address("m1");
  const std::string marker = "mk" + randomWord(24);
  const std::string control = "plain" + randomWord(24);

  WireCapture capture(l.hubNetns());
  // The capture works: bytes sent in clear to the plain hello port (2379) are seen.
  inNetns(l.netns("w1"), [&] { return sendRaw(m1, 2379, control + "\n"); });
  // The marker inside an object: a label written on a follower (forwarded to the leader on
  // 2378) and replicated to every manager (2378), while heartbeats go on (2377).
  std::string via = "m1";
  if (auto leader = shoal::lab::soleLeader(l.mustNodeLs("m1")); leader && *leader == "m1") via = "m2";
  auto put = l.shoal(via, {"node", "update", "--label-add", "marker=" + marker, "w1"});
  REQUIRE_MESSAGE(put.status.code == 0, said(put));
  CHECK(labelsOf(l, "m3", "w1")["marker"] == marker);
  std::this_thread::sleep_for(2500ms);  // heartbeats at 1 s
  capture.stop();

  MESSAGE("captured " << capture.frames() << " frames; payload bytes: 2377 " << capture.bytesOn({2377}) << ", 2378 "
                      << capture.bytesOn({2378}) << ", 2379 " << capture.bytesOn({2379}));
  CHECK(capture.contains({2379}, control));
  CHECK(capture.bytesOn({2378}) > 0);
  CHECK(capture.bytesOn({2377}) > 0);
  CHECK_FALSE(capture.contains({2377, 2378}, marker));
  CHECK_FALSE(capture.contains({2377, 2378}, "marker"));

  l.down();
}

TEST_CASE("--force-new-cluster on the last manager brings back a writable cluster with the old objects") {
  requireRoot();
  TestLab l("n", 3, 1, "1s");
  auto put = l.shoal("m1", {"node", "update", "--label-add", "before=1", "w1"});
  REQUIRE_MESSAGE(put.status.code == 0, said(put));
  const std::string w1id = host(l.mustNodeLs("m1"), "w1").id;

  // Two of three managers gone: no quorum, no write.
  l.labCommand({"kill", "m2"});
  l.labCommand({"kill", "m3"});
  auto stuck = l.shoal("m1", {"node", "update", "--label-add", "stuck=1", "w1"}, 40s);
  CHECK_MESSAGE(stuck.status.code != 0, said(stuck));

  auto t0 = Clock::now();
  auto force = l.shoal("m1", {"swarm", "init", "--force-new-cluster", "--advertise-addr", l.address("m1")}, 60s);
  REQUIRE_MESSAGE(force.status.code == 0, said(force));
  std::string why;
  bool leads = waitFor([&] {
    auto nodes = l.nodeLs("m1", &why, 5s);
    return nodes && shoal::lab::soleLeader(*nodes) == std::optional<std::string>("m1");
  }, 30s);
  REQUIRE_MESSAGE(leads, why);
  MESSAGE("m1 leads a one-manager cluster " << msSince(t0) << " ms after swarm init --force-new-cluster");

  auto nodes = l.mustNodeLs("m1");
  CHECK(nodes.size() == 4);  // the old Nodes, m2 and m3 among them
  CHECK(host(nodes, "w1").id == w1id);
  CHECK(labelsOf(l, "m1", "w1")["before"] == "1");
  auto write = l.shoal("m1", {"node", "update", "--label-add", "after=1", "w1"});
  CHECK_MESSAGE(write.status.code == 0, said(write));
  auto labels = labelsOf(l, "m1", "w1");
  CHECK(labels["after"] == "1");
  CHECK(labels.count("stuck") == 0);

  l.down();
}

TEST_CASE("bad input: a clear error each, and the store unchanged") {
  requireRoot();
  TestLab l("b", 3, 2, "1s");
  TestLab other("o", 1, 0, "");
  const std::string m1 = l.address("m1"), w1 = l.address("w1");
  const std::string target = m1 + ":2377";
  const std::string token = l.token("worker");

  // w2 leaves, so that it can try to join again.
  auto leave = l.shoal("w2", {"swarm", "leave"});
  REQUIRE_MESSAGE(leave.status.code == 0, said(leave));
  REQUIRE(waitFor([&] {
    auto nodes = l.nodeLs("m1", nullptr, 5s);
    auto w = nodes ? shoal::lab::findHost(*nodes, "w2") : std::nullopt;
    return w && w->status == "Down";
  }, 20s));
  auto before = picture(l.mustNodeLs("m1"));
  auto unchanged = [&](const std::string& what) {
    CHECK_MESSAGE(picture(l.mustNodeLs("m1")) == before, "the store changed after " << what);
  };
  auto refusedJoin = [&](const std::string& what, const std::string& t, const std::string& at,
                         const std::string& mentions) {
    auto r = l.shoal("w2", {"swarm", "join", "--token", t, at}, 40s);
    MESSAGE(what << ": " << r.err);
    CHECK_MESSAGE(r.status.code != 0, what << ": " << said(r));
    CHECK_MESSAGE(r.err.find(mentions) != std::string::npos, what << " (should mention " << mentions << "): " << said(r));
    unchanged(what);
  };

  // A wrong token: this cluster's CA digest, another secret.
  std::string wrong = token;
  wrong.back() = wrong.back() == 'a' ? 'b' : 'a';
  refusedJoin("a wrong token", wrong, target, "token");
  // A token of another cluster.
  auto foreign = other.shoal("m1", {"swarm", "join-token", "-q", "worker"});
  REQUIRE_MESSAGE(foreign.status.code == 0, said(foreign));
  auto foreignToken = shoal::lab::findJoinToken(foreign.out);
  REQUIRE(foreignToken);
  refusedJoin("a token of another cluster", *foreignToken, target, "token");
  // Not a token at all.
  refusedJoin("not a token", "SWMTKN-1-nonsense", target, "token");
  // A join aimed at a worker.
  refusedJoin("a join aimed at a worker", token, w1 + ":2377", w1);

  // Garbage on the hello endpoint and on 2377, from inside a node; the dispatcher lives on.
  const pid_t dispatcher = nodeOf(ls(l.name()), "m1")["daemons"]["dispatcherd"]["pid"];
  std::random_device rd;
  std::string garbage(8192, '\0');
  for (auto& c : garbage) c = static_cast<char>(rd());
  for (int port : {2379, 2377}) {
    auto got = inNetns(l.netns("w2"), [&] { return sendRaw(m1, port, garbage); });
    CHECK_MESSAGE(got.find("connect failed") != 0, port << ": " << got);
    auto zmtpish = inNetns(l.netns("w2"), [&] {
      return sendRaw(m1, port, std::string("\xff\0\0\0\0\0\0\0\x01\x7f", 10) + garbage);
    });
    MESSAGE("garbage to " << port << ": " << got.size() << " and " << zmtpish.size() << " bytes came back");
    CHECK(alive(dispatcher));
    unchanged("garbage on " + std::to_string(port));
  }

  // A second swarm init.
  auto again = l.shoal("m1", {"swarm", "init", "--advertise-addr", m1});
  MESSAGE("a second swarm init: " << again.err);
  CHECK(again.status.code != 0);
  CHECK_MESSAGE(again.err.find("already") != std::string::npos, said(again));
  unchanged("a second swarm init");

  // The same w2, the right token: it joins (the refusals were the input's fault). Should the
  // swarm refuse its known key instead, the refusal says to remove the old Node first.
  auto good = l.shoal("w2", {"swarm", "join", "--token", token, target}, 40s);
  if (good.status.code != 0 && good.err.find("node rm") != std::string::npos) {
    unchanged("a join of a key the swarm knows");
    auto rm = l.shoal("m1", {"node", "rm", "w2"});
    CHECK_MESSAGE(rm.status.code == 0, said(rm));
    good = l.shoal("w2", {"swarm", "join", "--token", token, target}, 40s);
  }
  CHECK_MESSAGE(good.status.code == 0, said(good));
  // As in Swarm, the node that left may still be listed (Down) beside the one that joined.
  CHECK(waitFor([&] {
    auto nodes = l.nodeLs("m1", nullptr, 5s);
    return nodes && std::any_of(nodes->begin(), nodes->end(),
                                [](auto& n) { return n.hostname == "w2" && n.status == "Ready"; });
  }, 20s));

  other.down();
  l.down();
}
