#include "common/daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include "common/log.h"
#include "common/proc.h"
#include "common/protocols.h"

namespace shoal {
namespace {

bool underSystemd() { return std::getenv("NOTIFY_SOCKET") || std::getenv("INVOCATION_ID"); }

std::string errnoText() { return std::strerror(errno); }

// mkdir -p with a clear error.
Status makeDir(const std::string& path, mode_t mode, const char* flag) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec)
    return Error{std::string("cannot create ") + flag + " " + path + ": " + ec.message() +
                     "; create it or choose another " + flag,
                 ec.value()};
  if (!std::filesystem::is_directory(path, ec))
    return Error{std::string(flag) + " " + path + " is not a directory; choose another " + flag};
  ::chmod(path.c_str(), mode);
  return {};
}

// Takes an exclusive lock on path and writes our pid into it. Says who holds it otherwise.
Result<int> lockFile(const std::string& path, const std::string& what, const char* flag) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    return Error{"cannot write " + path + " (" + errnoText() + "): the " + what +
                     " must be writable; fix its permissions or choose another " + flag,
                 errno};
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {};
    [[maybe_unused]] auto n = ::pread(fd, buf, sizeof buf - 1, 0);
    ::close(fd);
    for (char& c : buf)
      if (c == '\n') c = 0;
    return Error{"the " + what + " is in use by another process (pid " +
                 std::string(buf[0] ? buf : "unknown") + "; lock " + path +
                 "): stop it, or choose another " + flag};
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    int err = errno;
    ::close(fd);
    return Error{"cannot write " + path + " (" + std::strerror(err) + "): the " + what +
                     " must be writable; fix its permissions or choose another " + flag,
                 err};
  }
  return fd;
}

}  // namespace

Daemon::Daemon(std::string name, std::string summary)
    : name_(std::move(name)), app_(std::move(summary), name_) {
  stateDir_ = "/var/lib/shoal/" + name_;
  runDir_ = "/run/shoal";
  app_.set_version_flag("--version", std::string(name_) + " (shoal) " + SHOAL_VERSION);
  app_.add_flag("--foreground,-f", foreground_,
                "Stay in the foreground and log to stderr (the default under systemd is "
                "foreground with the journal)");
  app_.add_option("--log-level", logLevel_, "trace, debug, info, warn, error, critical or off")
      ->capture_default_str();
  app_.add_option("--log-file", logFile_, "Log to this file (reopened on SIGHUP)");
  app_.add_option("--state-dir", stateDir_, "Where this daemon keeps its state")
      ->capture_default_str();
  app_.add_option("--run-dir", runDir_, "Where the local sockets live")->capture_default_str();
  app_.add_option("--node-dir", nodeDir_,
                  "The node's swarm identity, shared by its daemons (default: node/ beside "
                  "--state-dir, /var/lib/shoal/node)");
  started_ = Loop::Clock::now();
}

Daemon::~Daemon() {
  server_.reset();
  // A socket kept alive by a posted callback or a timer would hold zmq_'s termination.
  loop_.discardPending();
  zmq_.reset();
  for (int fd : {signalFd_, stateLockFd_, runLockFd_, readyPipe_})
    if (fd >= 0) ::close(fd);
}

std::optional<int> Daemon::parse(int argc, char** argv) {
  try {
    app_.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app_.exit(e);
  }
  if (auto level = log::parseLevel(logLevel_); !level) {
    std::cerr << name_ << ": " << level.error().message << "\n";
    return 2;
  }
  // Paths are made absolute now: a daemonized process changes its directory to /.
  std::error_code ec;
  stateDir_ = std::filesystem::absolute(stateDir_, ec).lexically_normal().string();
  runDir_ = std::filesystem::absolute(runDir_, ec).lexically_normal().string();
  while (stateDir_.size() > 1 && stateDir_.back() == '/') stateDir_.pop_back();
  while (runDir_.size() > 1 && runDir_.back() == '/') runDir_.pop_back();
  if (nodeDir_.empty())
    nodeDir_ = std::filesystem::path(stateDir_).parent_path().append("node").string();
  nodeDir_ = std::filesystem::absolute(nodeDir_, ec).lexically_normal().string();
  while (nodeDir_.size() > 1 && nodeDir_.back() == '/') nodeDir_.pop_back();
  if (!logFile_.empty()) logFile_ = std::filesystem::absolute(logFile_, ec).string();
  return std::nullopt;
}

Status Daemon::prepareDirs() {
  if (auto st = makeDir(stateDir_, 0750, "--state-dir"); !st) return st;
  if (auto st = makeDir(runDir_, 0755, "--run-dir"); !st) return st;
  std::string sock = socketPath();
  if (sock.size() >= sizeof(sockaddr_un::sun_path))
    return Error{"the socket path " + sock + " is longer than the " +
                 std::to_string(sizeof(sockaddr_un::sun_path) - 1) +
                 " characters a Unix socket allows; choose a shorter --run-dir"};
  return {};
}

Status Daemon::lockFiles() {
  auto state = lockFile(stateDir_ + "/LOCK", "state dir " + stateDir_, "--state-dir");
  if (!state) return state.error();
  stateLockFd_ = *state;
  auto run = lockFile(runDir_ + "/" + name_ + ".pid", "run dir " + runDir_ + " for " + name_,
                      "--run-dir");
  if (!run) return run.error();
  runLockFd_ = *run;
  return {};
}

void Daemon::setupSignals() {
  // Blocked before ZeroMQ starts its threads, so that they inherit the mask and the
  // signals reach only our signalfd.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  signalFd_ = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  loop_.watchFd(signalFd_, [this] { onSignal(); });
}

void Daemon::onSignal() {
  signalfd_siginfo info;
  while (::read(signalFd_, &info, sizeof info) == sizeof info) {
    if (info.ssi_signo == SIGHUP) {
      spdlog::info("SIGHUP: reopening the log");
      if (auto st = log::reopen(); !st) spdlog::error("{}", st.error().message);
    } else {
      spdlog::info("{} received: stopping", info.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
      requestStop();
    }
  }
}

void Daemon::requestStop() {
  sd_notify(0, "STOPPING=1");
  loop_.stop();
}

void Daemon::setStatusText(std::string text) {
  if (text == statusText_) return;
  statusText_ = std::move(text);
  sd_notifyf(0, "STATUS=%s", statusText_.c_str());
}

nlohmann::json Daemon::status() const {
  using namespace std::chrono;
  nlohmann::json j;
  j["daemon"] = name_;
  j["version"] = SHOAL_VERSION;
  j["pid"] = ::getpid();
  j["uptime_s"] = duration_cast<duration<double>>(Loop::Clock::now() - started_).count();
  j["rss_bytes"] = proc::rssBytes();
  j["rss_anon_bytes"] = proc::rssAnonBytes();
  j["peak_rss_bytes"] = proc::peakRssBytes();
  j["log_level"] = log::levelName(spdlog::get_level());
  j["state_dir"] = stateDir_;
  j["run_dir"] = runDir_;
  j["node_dir"] = nodeDir_;
  j["socket"] = socketPath();
  j["status"] = statusText_;
  if (server_) {
    auto& s = server_->stats();
    j["bus"] = {{"received", s.received},       {"sent", s.sent},
                {"bad_messages", s.badMessages}, {"expired", s.expired},
                {"dropped", s.dropped},          {"fell_behind", s.fellBehind},
                {"held", server_->held()},       {"open_streams", server_->openStreams()}};
  }
  for (auto& fn : statusFns_) fn(j);
  return j;
}

void Daemon::serveControl() {
  server_->serve(kControlProtocol, [this](bus::Call call) {
    auto* env = call.as<control::Envelope>();
    flatbuffers::FlatBufferBuilder fbb;
    switch (env->body_type()) {
      case control::Body::StatusRequest: {
        auto text = fbb.CreateString(status().dump());
        auto body = control::CreateStatusReply(fbb, text);
        call.reply(bus::message<control::Envelope>(fbb, control::Body::StatusReply, body.Union()));
        return;
      }
      case control::Body::SetLogLevelRequest: {
        auto* req = env->body_as_SetLogLevelRequest();
        auto level = log::parseLevel(req->level() ? req->level()->string_view() : "");
        if (!level) return call.fail(wire::ErrorCode::InvalidArgument, level.error().message);
        std::string previous = log::levelName(spdlog::get_level());
        spdlog::set_level(*level);
        spdlog::info("log level {} -> {} (SetLogLevel)", previous, log::levelName(*level));
        auto body = control::CreateSetLogLevelReply(fbb, fbb.CreateString(previous),
                                                    fbb.CreateString(log::levelName(*level)));
        call.reply(bus::message<control::Envelope>(fbb, control::Body::SetLogLevelReply, body.Union()));
        return;
      }
      case control::Body::ReloadRequest: {
        for (auto& fn : reloadFns_) {
          if (auto st = fn(); !st) {
            call.fail(wire::ErrorCode::Internal, st.error().message);
            return;
          }
        }
        call.reply(bus::message<control::Envelope>(fbb, control::Body::ReloadReply,
                                                   control::CreateReloadReply(fbb).Union()));
        return;
      }
      default:
        call.fail(wire::ErrorCode::Unimplemented,
                  std::string("control message ") + control::EnumNameBody(env->body_type()) +
                      " is not a request " + name_ + " serves");
    }
  });
}

Status Daemon::startSocket() {
  server_ = std::make_unique<bus::Server>(loop_, *zmq_);
  serveControl();
  return server_->bind("ipc://" + socketPath());
}

std::optional<int> Daemon::daemonize() {
  // The parent waits until the child is ready (or failed) so that `raftd` run by hand
  // reports a bad state dir with its exit code, like a foreground start.
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    std::cerr << name_ << ": cannot daemonize: pipe: " << errnoText() << "\n";
    return 1;
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    std::cerr << name_ << ": cannot daemonize: fork: " << errnoText() << "\n";
    return 1;
  }
  if (pid > 0) {
    ::close(fds[1]);
    std::string message;
    char buf[512];
    ssize_t n;
    while ((n = ::read(fds[0], buf, sizeof buf)) > 0) message.append(buf, n);
    ::close(fds[0]);
    if (message == "ok") return 0;
    if (message.empty()) message = "exited before it was ready";
    std::cerr << name_ << ": " << message << "\n";
    return 1;
  }
  ::close(fds[0]);
  readyPipe_ = fds[1];
  ::setsid();
  if (::chdir("/") != 0) {
  }
  int null = ::open("/dev/null", O_RDWR);
  if (null >= 0) {
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::dup2(null, 2);
    if (null > 2) ::close(null);
  }
  return std::nullopt;
}

int Daemon::run(std::function<Status(Daemon&)> init) {
  bool logging = false;  // once our logger is set up, failures go to the log as well
  auto fail = [this, &logging](const std::string& message) {
    if (readyPipe_ >= 0) {
      [[maybe_unused]] auto n = ::write(readyPipe_, message.data(), message.size());
    } else {
      std::cerr << name_ << ": " << message << "\n";
    }
    if (logging) spdlog::error("{}", message);
    return 1;
  };

  if (auto st = prepareDirs(); !st) return fail(st.error().message);
  bool detach = !foreground_ && !underSystemd();
  if (detach)
    if (auto rc = daemonize()) return *rc;

  log::Options lo{name_, log::Target::Stderr, logFile_, *log::parseLevel(logLevel_)};
  if (!logFile_.empty())
    lo.target = log::Target::File;
  else if (std::getenv("JOURNAL_STREAM") || detach)
    lo.target = log::Target::Journal;
  if (auto st = log::setup(lo); !st) return fail(st.error().message);
  logging = lo.target != log::Target::Stderr;  // on stderr the message is printed already

  if (auto st = lockFiles(); !st) return fail(st.error().message);
  setupSignals();
  zmq_ = std::make_unique<zmq::context_t>(1);
  if (auto st = startSocket(); !st) return fail(st.error().message + "; check --run-dir");
  if (auto st = init(*this); !st) return fail(st.error().message);

  if (readyPipe_ >= 0) {
    [[maybe_unused]] auto n = ::write(readyPipe_, "ok", 2);
    ::close(readyPipe_);
    readyPipe_ = -1;
  }
  if (statusText_ == "starting") statusText_ = "running";
  sd_notifyf(0, "READY=1\nMAINPID=%d\nSTATUS=%s", ::getpid(), statusText_.c_str());
  uint64_t watchdogUsec = 0;
  if (sd_watchdog_enabled(0, &watchdogUsec) > 0 && watchdogUsec > 0)
    loop_.every(std::chrono::microseconds(watchdogUsec / 2), [] { sd_notify(0, "WATCHDOG=1"); });
  spdlog::info("{} {} ready: state dir {}, socket {}", name_, SHOAL_VERSION, stateDir_, socketPath());

  loop_.run();

  for (auto it = stopFns_.rbegin(); it != stopFns_.rend(); ++it) (*it)();
  server_->close();
  ::unlink((runDir_ + "/" + name_ + ".pid").c_str());
  spdlog::info("{} stopped", name_);
  spdlog::default_logger()->flush();
  return 0;
}

}  // namespace shoal
