// `shoal service logs` and `shoal container logs` end to end (docs/containers.md "Logs"): a
// one-node swarm (raftd, schedulerd, dispatcherd, agentd --executor fake); the fake executor
// writes no logs, so the test writes each task's CRI file where the shim would; the CLI's
// subscription goes agentd -> its session -> dispatcherd's broker -> the node's publication
// -> back, and prints docker's way. Then --tail, --since, --timestamps, --raw, -f (a line
// appended after it started), container logs by name, an unknown service, and a second
// agentd joined as a worker so that one `service logs` shows lines from two nodes.
#include <doctest/doctest.h>

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/bus.h"
#include "common/protocols.h"
#include "services/agentd/log_reader.h"
#include "tests/support/daemons.h"
#include "tests/support/node_daemons.h"
#include "tests/support/process.h"
#include "tests/support/tempdir.h"

namespace shoal {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using testing::RunResult;
using testing::waitFor;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::vector<std::string> linesOf(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::string show(const RunResult& r) {
  return "exit " + std::to_string(r.status.code) + (r.timedOut ? " (timed out)" : "") +
         "\nstdout:\n" + r.out + "stderr:\n" + r.err;
}

int64_t nowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Node : testing::NodeDaemons {
  using NodeDaemons::NodeDaemons;

  RunResult shoal(std::vector<std::string> args, std::chrono::milliseconds timeout = 40s) const {
    std::vector<std::string> argv = {testing::buildDir() + "/tools/shoal/shoal", "--run-dir", run};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::run(argv, {}, timeout);
  }
  // A control Reload: the daemon reads node.json again (after swarm init).
  void reload(const std::string& daemon) const {
    flatbuffers::FlatBufferBuilder fbb;
    bus::SyncClient c(kControlProtocol);
    REQUIRE(c.connect(socketOf(daemon)).ok());
    auto r = c.call(bus::message<control::Envelope>(fbb, control::Body::ReloadRequest,
                                                    control::CreateReloadRequest(fbb).Union()),
                    10s);
    REQUIRE_MESSAGE(r.ok(), daemon << ": " << (r ? "" : r.error().message) << logs());
  }
  std::string logDir(const std::string& taskId) const {
    return (root / name / "agentd" / "logs" / taskId).string();
  }
  // `service ps` rows (docker's JSON keys), full ids.
  std::vector<nlohmann::json> ps(const std::string& service) const {
    std::vector<nlohmann::json> rows;
    for (auto& line : linesOf(shoal({"service", "ps", service, "--no-trunc", "--format", "json"}).out)) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_object()) rows.push_back(j);
    }
    return rows;
  }
};

void append(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream f(path, std::ios::app | std::ios::binary);
  f << text;
}

std::string cri(int64_t ts, const std::string& text, bool err = false) {
  return agentd::formatCriLine({ts, err, false, text}) + "\n";
}

// Each task's log: an old stderr line (2020), then three stdout lines from a minute ago.
constexpr int64_t kOld = 1'577'836'800'000'000'000;  // 2020-01-01T00:00:00Z

void writeTaskLog(const Node& n, const std::string& taskId, const std::string& name, int64_t recent) {
  append(n.logDir(taskId) + "/container.log",
         cri(kOld, "old error of " + name, true) + cri(recent, "line 1 of " + name) +
             cri(recent + 1000, "line 2 of " + name) + cri(recent + 2000, "line 3 of " + name));
}

size_t count(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

TEST_CASE("service logs and container logs through the sessions, on one node and then two") {
  testing::TempDir tmp;
  Node n(tmp.path(), "m1");
  n.start("raftd");
  n.start("dispatcherd");
  n.start("agentd", {"--executor", "fake", "--fake-delay", "5ms"});
  n.start("schedulerd");
  std::string addr = "127.0.0.1:" + std::to_string(testing::freePortPair());
  auto init = n.shoal({"swarm", "init", "--advertise-addr", addr, "--dispatcher-heartbeat", "1s"});
  REQUIRE_MESSAGE(init.status.code == 0, show(init) << n.logs());
  n.reload("dispatcherd");
  n.reload("agentd");

  auto created = n.shoal({"service", "create", "-d", "--name", "web", "--replicas", "3", "busybox"});
  REQUIRE_MESSAGE(created.status.code == 0, show(created) << n.logs());
  std::vector<nlohmann::json> tasks;
  REQUIRE_MESSAGE(waitFor([&] {
    tasks = n.ps("web");
    return tasks.size() == 3 && std::all_of(tasks.begin(), tasks.end(), [](auto& t) {
             return t.value("CurrentState", "").rfind("Running", 0) == 0;
           });
  }, 40s), n.shoal({"service", "ps", "web"}).out << n.logs());

  int64_t recent = nowNs() - 60'000'000'000;
  std::map<std::string, std::string> nameOf;  // task id -> web.N
  for (auto& t : tasks) {
    std::string id = t.value("ID", ""), name = t.value("Name", "");
    REQUIRE(id.size() > 12);
    nameOf[id] = name;
    writeTaskLog(n, id, name, recent);
  }
  auto prefix = [&](const std::string& id) { return nameOf[id] + "." + id.substr(0, 12) + "@m1    | "; };

  INFO("every line, with its task prefix; stderr lines on stderr");
  auto all = n.shoal({"service", "logs", "web"});
  REQUIRE_MESSAGE(all.status.code == 0, show(all) << n.logs());
  for (auto& [id, name] : nameOf) {
    for (int i = 1; i <= 3; ++i)
      CHECK_MESSAGE(contains(all.out, prefix(id) + "line " + std::to_string(i) + " of " + name), show(all));
    CHECK_MESSAGE(contains(all.err, prefix(id) + "old error of " + name), show(all));
  }
  CHECK(linesOf(all.out).size() == 9);

  INFO("--tail 2: the last two lines of each task");
  auto tail = n.shoal({"service", "logs", "--tail", "2", "web"});
  REQUIRE_MESSAGE(tail.status.code == 0, show(tail));
  CHECK_MESSAGE(linesOf(tail.out).size() == 6, show(tail));
  CHECK_MESSAGE(count(tail.out, "line 1 of") == 0, show(tail));
  CHECK(tail.err.empty());

  INFO("--since 1h leaves out the 2020 lines; --since an RFC 3339 time after them too");
  auto since = n.shoal({"service", "logs", "--since", "1h", "web"});
  REQUIRE_MESSAGE(since.status.code == 0, show(since));
  CHECK(linesOf(since.out).size() == 9);
  CHECK_MESSAGE(!contains(since.err, "old error"), show(since));
  auto sinceTime = n.shoal({"service", "logs", "--since", "2021-01-01T00:00:00Z", "web"});
  CHECK_MESSAGE(!contains(sinceTime.err, "old error"), show(sinceTime));
  CHECK(n.shoal({"service", "logs", "--since", "yesterday", "web"}).status.code == 2);

  INFO("--timestamps, --raw");
  auto ts = n.shoal({"service", "logs", "--timestamps", "--tail", "1", "web"});
  REQUIRE(ts.status.code == 0);
  for (auto& line : linesOf(ts.out)) {
    CHECK_MESSAGE(line.size() > 31, line);
    CHECK_MESSAGE(line[4] == '-', line);
    CHECK_MESSAGE(line[10] == 'T', line);
    CHECK_MESSAGE(contains(line, "Z web."), line);
  }
  auto raw = n.shoal({"service", "logs", "--raw", "web"});
  REQUIRE(raw.status.code == 0);
  for (auto& line : linesOf(raw.out)) CHECK_MESSAGE(line.rfind("line ", 0) == 0, line);

  INFO("one task by id");
  std::string first = nameOf.begin()->first;
  auto one = n.shoal({"service", "logs", first});
  REQUIRE_MESSAGE(one.status.code == 0, show(one));
  CHECK(linesOf(one.out).size() == 3);

  INFO("unknown service");
  auto nope = n.shoal({"service", "logs", "nope"});
  CHECK(nope.status.code == 1);
  CHECK_MESSAGE(contains(nope.err, "no such service: nope"), show(nope));

  INFO("container logs by name, local");
  std::string slotName = nameOf[first];
  auto local = n.shoal({"container", "logs", slotName});
  REQUIRE_MESSAGE(local.status.code == 0, show(local) << n.logs());
  CHECK(linesOf(local.out) == std::vector<std::string>{"line 1 of " + slotName, "line 2 of " + slotName,
                                                       "line 3 of " + slotName});
  CHECK(contains(local.err, "old error of " + slotName));
  auto localTail = n.shoal({"container", "logs", "--tail", "1", slotName + "." + first});
  CHECK_MESSAGE(linesOf(localTail.out) == std::vector<std::string>{"line 3 of " + slotName}, show(localTail));
  auto noContainer = n.shoal({"container", "logs", "nothere.1"});
  CHECK(noContainer.status.code == 1);
  CHECK_MESSAGE(contains(noContainer.err, "no such container"), show(noContainer));

  INFO("-f: a line appended after it started, then ended by its PID");
  {
    testing::Process follow({testing::buildDir() + "/tools/shoal/shoal", "--run-dir", n.run, "service",
                             "logs", "-f", "--tail", "1", "web"});
    REQUIRE_MESSAGE(waitFor([&] { return linesOf(follow.out()).size() == 3; }, 20s), follow.out() << follow.err());
    append(n.logDir(first) + "/container.log", cri(nowNs(), "appended while following"));
    CHECK_MESSAGE(waitFor([&] { return contains(follow.out(), prefix(first) + "appended while following"); }, 20s),
                  follow.out() << follow.err() << n.logs());
    follow.signal(SIGTERM);
    auto st = follow.wait(10s);
    REQUIRE(st.has_value());
    CHECK_MESSAGE((st->exited() && st->code == 0), follow.err());
  }

  INFO("a second node (a worker with its own agentd): one service logs shows both nodes' lines");
  Node w(tmp.path(), "w1");
  w.start("agentd", {"--executor", "fake", "--fake-delay", "5ms"});
  auto token = n.shoal({"swarm", "join-token", "-q", "worker"});
  REQUIRE(token.status.code == 0);
  std::string tokenText = linesOf(token.out).at(0);
  auto join = w.shoal({"swarm", "join", "--token", tokenText, addr});
  REQUIRE_MESSAGE(join.status.code == 0, show(join) << w.logs());
  auto scaled = n.shoal({"service", "scale", "-d", "web=6"});
  REQUIRE_MESSAGE(scaled.status.code == 0, show(scaled));
  std::vector<nlohmann::json> onW1;
  REQUIRE_MESSAGE(waitFor([&] {
    onW1.clear();
    for (auto& t : n.ps("web"))
      if (t.value("Node", "") == "w1" && t.value("CurrentState", "").rfind("Running", 0) == 0) onW1.push_back(t);
    return !onW1.empty();
  }, 40s), n.shoal({"service", "ps", "web"}).out << w.logs());
  for (auto& t : onW1)
    append(w.logDir(t.value("ID", "")) + "/container.log", cri(nowNs(), "from w1: " + t.value("Name", "")));
  auto both = n.shoal({"service", "logs", "web"});
  REQUIRE_MESSAGE(both.status.code == 0, show(both) << w.logs());
  CHECK_MESSAGE(contains(both.out, "@m1    | line 1 of"), show(both));
  CHECK_MESSAGE(contains(both.out, "@w1    | from w1: web."), show(both) << w.logs());
  MESSAGE("service logs over two nodes: " << linesOf(both.out).size() << " lines on stdout");
}

}  // namespace
}  // namespace shoal
