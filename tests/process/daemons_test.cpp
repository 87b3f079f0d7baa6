// The six daemons as processes: flags, systemd readiness, the control socket through
// `shoal debug`, bad buffers, log level, refusing a second instance, and a clean SIGTERM
// (DESIGN.md §1, §3). Every child is started by PID and killed and reaped on failure.
#include <doctest/doctest.h>

#include <signal.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "common/bus.h"
#include "common/protocols.h"
#include "tests/support/daemons.h"
#include "tests/support/process.h"
#include "tests/support/tempdir.h"
#include "tests/support/testing_protocol.h"

namespace shoal {
namespace {

using namespace std::chrono_literals;
using testing::Process;
using testing::RunResult;
using testing::TempDir;
using testing::buildDir;
using testing::daemonPath;
using testing::freePort;

std::string shoalPath() { return buildDir() + "/tools/shoal/shoal"; }

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A Unix datagram socket standing in for systemd's NOTIFY_SOCKET.
class NotifySocket {
 public:
  explicit NotifySocket(std::string path) : path_(std::move(path)) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    REQUIRE(path_.size() < sizeof addr.sun_path);
    std::strcpy(addr.sun_path, path_.c_str());
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  }
  ~NotifySocket() { ::close(fd_); }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  const std::string& path() const { return path_; }

  // Reads datagrams until one holds the line `line`, the time is up or gaveUp() says so;
  // returns all it read.
  template <class F>
  std::string waitFor(const std::string& line, std::chrono::milliseconds limit, F gaveUp) {
    std::string seen;
    auto end = std::chrono::steady_clock::now() + limit;
    while (true) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          end - std::chrono::steady_clock::now());
      if (left.count() <= 0 || gaveUp()) return seen;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 50))) <= 0) continue;
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) continue;
      std::string datagram(buf, n);
      seen += datagram + "\n";
      for (size_t pos = 0; pos <= datagram.size();) {
        size_t nl = datagram.find('\n', pos);
        if (nl == std::string::npos) nl = datagram.size();
        if (datagram.substr(pos, nl - pos) == line) return seen;
        pos = nl + 1;
      }
    }
  }

 private:
  std::string path_;
  int fd_ = -1;
};

// One daemon's dirs under a fresh temp dir: <tmp>/s (state) and <tmp>/r (run).
struct Dirs {
  TempDir tmp;
  std::string state = tmp / "s";
  std::string run = tmp / "r";
};

std::vector<std::string> daemonArgs(const std::string& daemon, const std::string& state,
                                    const std::string& run) {
  std::vector<std::string> args = {daemonPath(daemon), "--foreground", "--state-dir", state,
                                   "--run-dir", run};
  return args;
}

RunResult shoal(const std::string& runDir, std::vector<std::string> args) {
  std::vector<std::string> argv = {shoalPath(), "--run-dir", runDir};
  argv.insert(argv.end(), args.begin(), args.end());
  return testing::run(argv);
}

// A daemon started in the foreground and seen ready by its NOTIFY_SOCKET.
struct Running {
  Running(const std::string& daemon, const Dirs& dirs)
      : notify(dirs.tmp / "notify.sock"),
        process(daemonArgs(daemon, dirs.state, dirs.run), {"NOTIFY_SOCKET=" + notify.path()}) {
    std::string seen = notify.waitFor("READY=1", 10s, [this] { return !process.running(); });
    INFO("notifications: ", seen);
    INFO("stderr: ", process.err());
    REQUIRE_MESSAGE(contains(seen, "READY=1"), daemon,
                    " did not send READY=1 within 10 s (or exited first)");
  }
  NotifySocket notify;
  Process process;
};

nlohmann::json statusJson(const std::string& runDir, const std::string& daemon) {
  RunResult r = shoal(runDir, {"debug", "status", daemon, "--json"});
  INFO("stderr: ", r.err);
  REQUIRE(r.status.exited());
  REQUIRE(r.status.code == 0);
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  INFO("stdout: ", r.out);
  REQUIRE_FALSE(j.is_discarded());
  REQUIRE(j.is_object());
  return j;
}

// Sends bytes on a plain DEALER and returns the one answer, decoded as control protocol.
bus::Frame rawExchange(const std::string& socketPath, std::string_view bytes) {
  zmq::context_t ctx(1);
  zmq::socket_t raw(ctx, zmq::socket_type::dealer);
  raw.set(zmq::sockopt::linger, 0);
  raw.connect("ipc://" + socketPath);
  raw.send(zmq::buffer(bytes), zmq::send_flags::none);
  zmq::pollitem_t item{raw.handle(), 0, ZMQ_POLLIN, 0};
  REQUIRE_MESSAGE(zmq::poll(&item, 1, 5000ms) == 1, "no answer within 5 s on ", socketPath);
  zmq::message_t reply;
  REQUIRE(raw.recv(reply, zmq::recv_flags::dontwait));
  const bus::Protocol* any[] = {&kControlProtocol, &testing::kTestingProtocol};
  auto frame = bus::decode(std::move(reply), any);
  // (A message is stringified even on success when doctest logs successes.)
  std::string why = frame.ok() ? "" : frame.error().message;
  REQUIRE_MESSAGE(frame.ok(), "the answer does not verify: ", why);
  return std::move(frame).value();
}

std::string bytesOf(const bus::Buffer& b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// A Status call through bus::SyncClient, as a program of our own would make it.
nlohmann::json syncStatus(const std::string& socketPath) {
  bus::SyncClient client(kControlProtocol);
  REQUIRE(client.connect("ipc://" + socketPath));
  flatbuffers::FlatBufferBuilder fbb;
  auto body = control::CreateStatusRequest(fbb);
  auto reply = client.call(
      bus::message<control::Envelope>(fbb, control::Body::StatusRequest, body.Union()), 5000ms);
  std::string why = reply.ok() ? "" : reply.error().message;
  REQUIRE_MESSAGE(reply.ok(), "Status failed: ", why);
  auto* r = reply->as<control::Envelope>()->body_as_StatusReply();
  REQUIRE(r != nullptr);
  REQUIRE(r->json() != nullptr);
  return nlohmann::json::parse(r->json()->str());
}

#define DAEMON(Type, text) \
  struct Type {            \
    static constexpr const char* name = text; \
  };
DAEMON(Raftd, "raftd")
DAEMON(Schedulerd, "schedulerd")
DAEMON(Dispatcherd, "dispatcherd")
DAEMON(Agentd, "agentd")
DAEMON(Overlayd, "overlayd")
DAEMON(Meshd, "meshd")
#undef DAEMON
#define ALL_DAEMONS Raftd, Schedulerd, Dispatcherd, Agentd, Overlayd, Meshd

TEST_CASE_TEMPLATE("--help and --version exit 0 and say what they should", D, ALL_DAEMONS) {
  const std::string daemon = D::name;
  RunResult help = testing::run({daemonPath(daemon), "--help"});
  INFO("stderr: ", help.err);
  CHECK(help.status.exited());
  CHECK(help.status.code == 0);
  CHECK(contains(help.out, "--state-dir"));
  CHECK(contains(help.out, "--run-dir"));

  RunResult version = testing::run({daemonPath(daemon), "--version"});
  CHECK(version.status.exited());
  CHECK(version.status.code == 0);
  CHECK(contains(version.out, SHOAL_VERSION));
  CHECK(contains(version.out, daemon));
}

TEST_CASE_TEMPLATE("a running daemon: ready, status, bad buffers, log level, one instance, "
                   "SIGTERM", D, ALL_DAEMONS) {
  const std::string daemon = D::name;
  Dirs dirs;
  const std::string socket = dirs.run + "/" + daemon + ".sock";
  Running d(daemon, dirs);
  INFO("daemon stderr: ", d.process.err());

  // Status through the CLI, as an operator would ask.
  nlohmann::json st = statusJson(dirs.run, daemon);
  INFO("status: ", st.dump());
  CHECK(st.value("daemon", "") == daemon);
  CHECK(st.value("version", "") == SHOAL_VERSION);
  CHECK(st.value("pid", -1) == d.process.pid());
  REQUIRE(st.contains("uptime_s"));
  CHECK(st["uptime_s"].is_number());
  CHECK(st["uptime_s"].get<double>() >= 0);
  REQUIRE(st.contains("rss_bytes"));
  CHECK(st["rss_bytes"].is_number());
  CHECK(st["rss_bytes"].get<double>() > 0);

  // Bad buffers each get an Error, and the daemon goes on answering.
  {
    bus::Frame err = rawExchange(socket, "these bytes are not a FlatBuffer of any protocol");
    CHECK(err.kind() == wire::Kind::Error);
    REQUIRE(err.error() != nullptr);
    CHECK(err.error()->code() == wire::ErrorCode::UnknownProtocol);
    CHECK(syncStatus(socket).value("daemon", "") == daemon);
  }
  {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = control::CreateSetLogLevelRequest(fbb, fbb.CreateString(std::string(200, 'x')));
    bus::Buffer whole =
        bus::message<control::Envelope>(fbb, control::Body::SetLogLevelRequest, body.Union());
    // Cut in the middle of the string, well past the header: the verifier must refuse it.
    bus::Frame err = rawExchange(socket, bytesOf(whole).substr(0, whole.size() / 2));
    CHECK(err.kind() == wire::Kind::Error);
    REQUIRE(err.error() != nullptr);
    CHECK(err.error()->code() == wire::ErrorCode::BadMessage);
    CHECK(syncStatus(socket).value("daemon", "") == daemon);
  }
  {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = testing::CreateEcho(fbb, fbb.CreateString("hello"));
    bus::Buffer other = bus::message<testing::Envelope>(fbb, testing::Body::Echo, body.Union());
    bus::Frame err = rawExchange(socket, bytesOf(other));
    CHECK(err.kind() == wire::Kind::Error);
    REQUIRE(err.error() != nullptr);
    CHECK(err.error()->code() == wire::ErrorCode::UnknownProtocol);
    REQUIRE(err.error()->message() != nullptr);
    CHECK(contains(err.error()->message()->str(), "no protocol served here"));
  }
  nlohmann::json after = syncStatus(socket);
  CHECK(after.value("pid", -1) == d.process.pid());
  CHECK(after["bus"].value("bad_messages", 0) == 3);

  // The log level, changed while it runs.
  {
    RunResult r = shoal(dirs.run, {"debug", "log-level", daemon, "debug"});
    INFO("stderr: ", r.err);
    CHECK(r.status.code == 0);
    CHECK(contains(r.out, "-> debug"));
    CHECK(statusJson(dirs.run, daemon).value("log_level", "") == "debug");

    RunResult bad = shoal(dirs.run, {"debug", "log-level", daemon, "loud"});
    INFO("stderr: ", bad.err);
    CHECK(bad.status.exited());
    CHECK(bad.status.code != 0);
    CHECK(contains(bad.err, "loud"));
    for (const char* level : {"trace", "debug", "info", "warn", "error", "critical", "off"})
      CHECK(contains(bad.err, level));
    CHECK(statusJson(dirs.run, daemon).value("log_level", "") == "debug");
  }

  // A second instance on the same run dir, or on the same state dir, is refused.
  {
    Process second(daemonArgs(daemon, dirs.tmp / "s2", dirs.run));
    auto end = second.wait(5s);
    INFO("second's stderr: ", second.err());
    REQUIRE_MESSAGE(end.has_value(), "a second ", daemon, " on the same run dir kept running");
    CHECK(end->exited());
    CHECK(end->code != 0);
    CHECK(contains(second.err(), "in use"));
    CHECK(contains(second.err(), std::to_string(d.process.pid())));
    CHECK(contains(second.err(), "--run-dir"));
  }
  {
    Process second(daemonArgs(daemon, dirs.state, dirs.tmp / "r2"));
    auto end = second.wait(5s);
    INFO("second's stderr: ", second.err());
    REQUIRE_MESSAGE(end.has_value(), "a second ", daemon, " on the same state dir kept running");
    CHECK(end->exited());
    CHECK(end->code != 0);
    CHECK(contains(second.err(), "in use"));
    CHECK(contains(second.err(), "--state-dir"));
    CHECK_FALSE(std::filesystem::exists(dirs.tmp / "r2/" + daemon + ".sock"));
  }
  // The refused instances left the first one's socket alone.
  CHECK(syncStatus(socket).value("pid", -1) == d.process.pid());

  // SIGTERM: a clean exit, the socket gone.
  REQUIRE(std::filesystem::exists(socket));
  d.process.signal(SIGTERM);
  auto end = d.process.wait(2s);
  REQUIRE_MESSAGE(end.has_value(), daemon, " did not exit within 2 s of SIGTERM");
  CHECK(end->exited());
  CHECK(end->code == 0);
  CHECK_FALSE(std::filesystem::exists(socket));
  CHECK_FALSE(std::filesystem::exists(dirs.run + "/" + daemon + ".pid"));
}

TEST_CASE_TEMPLATE("bad command lines and unusable dirs are refused with a clear message", D,
                   ALL_DAEMONS) {
  const std::string daemon = D::name;
  TempDir tmp;

  RunResult unknown = testing::run({daemonPath(daemon), "--no-such-flag", "--foreground"});
  INFO("stderr: ", unknown.err);
  CHECK(unknown.status.exited());
  CHECK(unknown.status.code != 0);
  CHECK(contains(unknown.err, "--no-such-flag"));

  {
    std::ofstream(tmp / "file") << "a regular file, not a directory\n";
  }
  // Root can write anywhere, so the state dirs are paths that cannot be made at all.
  for (const std::string& state : {tmp / "file/state", std::string("/proc/shoal-test-state")}) {
    INFO("--state-dir ", state);
    RunResult r = testing::run(daemonArgs(daemon, state, tmp / "r"), {}, 10s);
    INFO("stderr: ", r.err);
    CHECK_FALSE(r.timedOut);
    CHECK(r.status.exited());
    CHECK(r.status.code != 0);
    CHECK(contains(r.err, "--state-dir"));
    CHECK(contains(r.err, state));
    CHECK_FALSE(std::filesystem::exists(tmp / "r/" + daemon + ".sock"));
  }

  // No daemon: the CLI says the socket is missing and what to do.
  RunResult none = shoal(tmp / "r", {"debug", "status", daemon});
  INFO("stderr: ", none.err);
  CHECK(none.status.exited());
  CHECK(none.status.code != 0);
  CHECK(contains(none.err, "no socket at " + tmp / "r/" + daemon + ".sock"));
  CHECK(contains(none.err, "running"));
  CHECK(contains(none.err, "--run-dir"));
}

TEST_CASE("without --foreground a daemon detaches once ready, logs to --log-file, reopens it on SIGHUP") {
  Dirs dirs;
  std::string log = dirs.tmp / "agentd.log";
  // The parent returns only when the detached child is ready (or failed).
  RunResult start = testing::run({daemonPath("agentd"), "--state-dir", dirs.state, "--run-dir",
                                  dirs.run, "--log-file", log}, {}, 10s);
  INFO("stderr: ", start.err);
  REQUIRE(start.status.exited());
  REQUIRE(start.status.code == 0);
  auto status = statusJson(dirs.run, "agentd");
  pid_t pid = status.value("pid", 0);
  REQUIRE(pid > 0);
  // Stop it by its pid whatever happens below.
  struct Stop {
    pid_t pid;
    ~Stop() { ::kill(pid, SIGTERM); }
  } stop{pid};

  std::filesystem::rename(log, log + ".1");
  REQUIRE(::kill(pid, SIGHUP) == 0);
  RunResult level = shoal(dirs.run, {"debug", "log-level", "agentd", "debug"});
  CHECK(level.status.code == 0);
  auto fileHas = [](const std::string& path, const std::string& text) {
    std::ifstream in(path);
    std::string all((std::istreambuf_iterator<char>(in)), {});
    return contains(all, text);
  };
  // The message after SIGHUP lands in a new file at the old path.
  bool reopened = false;
  for (int i = 0; i < 100 && !reopened; ++i) {
    reopened = fileHas(log, "SetLogLevel");
    if (!reopened) std::this_thread::sleep_for(20ms);
  }
  CHECK(reopened);
  CHECK(fileHas(log + ".1", "SIGHUP"));

  REQUIRE(::kill(pid, SIGTERM) == 0);
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    gone = ::kill(pid, 0) != 0 && !std::filesystem::exists(dirs.run + "/agentd.sock");
    if (!gone) std::this_thread::sleep_for(20ms);
  }
  CHECK(gone);

  // A detached start that fails still says why, with a non-zero exit.
  RunResult bad = testing::run({daemonPath("agentd"), "--state-dir", "/proc/shoal-test-state",
                                "--run-dir", dirs.run}, {}, 10s);
  CHECK(bad.status.code != 0);
  CHECK(contains(bad.err, "--state-dir"));
}

}  // namespace
}  // namespace shoal
