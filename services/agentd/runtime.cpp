#include "services/agentd/runtime.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include <spdlog/spdlog.h>

#include "services/agentd/child.h"
#include "wire_generated.h"

namespace shoal::agentd {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

Error failed(const std::string& what, wire::ErrorCode code = wire::ErrorCode::Internal) {
  return Error{what, static_cast<int>(code)};
}

std::string readText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The shim's exit.json: {"exit_code", "signal", "at", "error"}. Nothing when absent or not
// readable (a shim killed before it wrote it).
std::optional<ContainerExit> readExit(const std::string& bundle) {
  auto doc = json::parse(readText(bundle + "/exit.json"), nullptr, false);
  if (!doc.is_object() || !doc.contains("exit_code") || !doc["exit_code"].is_number_integer())
    return std::nullopt;
  ContainerExit e;
  e.exitCode = doc["exit_code"];
  e.signal = doc.value("signal", 0);
  e.at = doc.value("at", int64_t{0});
  e.error = doc.value("error", std::string());
  return e;
}

int readPidFile(const std::string& path) {
  std::string text = readText(path);
  try {
    return text.empty() ? -1 : std::stoi(text);
  } catch (const std::exception&) {
    return -1;
  }
}

// Whether pid is a shoal-shim for container `id` (a pid in shim.pid may have been reused by
// anything after a reboot or a long downtime).
bool isShimFor(int pid, const std::string& id) {
  std::string cmdline = readText("/proc/" + std::to_string(pid) + "/cmdline");
  std::vector<std::string> args;
  for (size_t start = 0; start < cmdline.size();) {
    size_t end = cmdline.find('\0', start);
    if (end == std::string::npos) end = cmdline.size();
    args.push_back(cmdline.substr(start, end - start));
    start = end + 1;
  }
  if (args.empty() || fs::path(args[0]).filename() != "shoal-shim") return false;
  for (size_t i = 1; i + 1 < args.size(); ++i)
    if (args[i] == "--id" && args[i + 1] == id) return true;
  return false;
}

std::string defaultShimPath() {
  std::error_code ec;
  auto self = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string("shoal-shim") : (self.parent_path() / "shoal-shim").string();
}

bool executable(const std::string& path) {
  if (path.find('/') != std::string::npos) return ::access(path.c_str(), X_OK) == 0;
  const char* env = std::getenv("PATH");
  std::stringstream dirs(env ? env : "/usr/sbin:/usr/bin:/sbin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');)
    if (!dir.empty() && ::access((dir + "/" + path).c_str(), X_OK) == 0) return true;
  return false;
}

class RuncRuntime : public Runtime {
 public:
  RuncRuntime(Loop& loop, RuntimeOptions o, std::shared_ptr<Children> children)
      : loop_(loop), o_(std::move(o)), children_(std::move(children)) {}
  ~RuncRuntime() override;

  void onExit(ExitFn fn) override { onExit_ = std::move(fn); }
  void start(const std::string& id, const std::string& bundle, const std::string& logPath,
             StartFn started) override;
  Result<Adopted> adopt(const std::string& id, const std::string& bundle) override;
  void kill(const std::string& id, int signal, DoneFn done) override;
  void remove(const std::string& id, DoneFn done) override;
  void exec(const std::string& id, std::vector<std::string> argv,
            std::chrono::milliseconds timeout, ExecFn done) override;
  std::vector<std::string> list() const override;
  nlohmann::json status() const override;

 private:
  // A container's shim: ours (spawned here) or adopted (an earlier agentd's).
  struct Shim {
    int pid = 0;
    std::string bundle;
    bool adopted = false;
    int agentFd = -1;     // the read end of the shim's fd 3 until its line came
    std::string line;
    StartFn started;      // until told
    bool ok = false;      // runc start succeeded: its end goes to onExit
    Loop::TimerId startTimer = 0;
    bool startTimedOut = false;
  };

  std::vector<std::string> runc(std::vector<std::string> args) const;
  Result<int> spawnShim(const std::string& id, const std::string& bundle,
                        const std::string& logPath, int agentWriteFd);
  void readAgentLine(const std::string& id);
  void tellStarted(const std::string& id, Shim& shim, bool eof);
  void shimGone(const std::string& id, const std::string& how);
  void runcCall(std::vector<std::string> args, const std::string& what, DoneFn done);
  // Runs fn on the loop if this runtime still exists then (callbacks of Children outlive us).
  template <class F>
  auto guarded(F fn) {
    return [alive = std::weak_ptr<bool>(alive_), fn = std::move(fn)](auto&&... args) mutable {
      if (alive.lock()) fn(std::forward<decltype(args)>(args)...);
    };
  }

  Loop& loop_;
  RuntimeOptions o_;
  std::shared_ptr<Children> children_;
  ExitFn onExit_;
  std::map<std::string, Shim> shims_;
  size_t execsInFlight_ = 0;
  std::set<Loop::TimerId> timers_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

RuncRuntime::~RuncRuntime() {
  // The shims go on running (agentd may be restarting); only our watches end.
  for (auto& [id, shim] : shims_) {
    if (shim.agentFd >= 0) {
      loop_.unwatchFd(shim.agentFd);
      ::close(shim.agentFd);
    }
    if (shim.adopted) children_->unwatchProcess(shim.pid);
  }
  for (auto t : timers_) loop_.cancel(t);
}

std::vector<std::string> RuncRuntime::runc(std::vector<std::string> args) const {
  std::vector<std::string> argv = {o_.runcPath, "--root", o_.root};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

Result<int> RuncRuntime::spawnShim(const std::string& id, const std::string& bundle,
                                   const std::string& logPath, int agentWriteFd) {
  // The shim's own complaints (it has nobody else to tell once agentd is gone).
  int shimLog = ::open((bundle + "/shim.log").c_str(),
                       O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  SpawnOptions so;
  so.stdoutFd = so.stderrFd = shimLog;
  so.extraFds[3] = agentWriteFd;
  so.newSession = true;
  std::vector<std::string> argv = {o_.shimPath, "--runc", o_.runcPath, "--root", o_.root,
                                   "--id", id, "--bundle", bundle, "--log", logPath,
                                   "--log-max-bytes", std::to_string(o_.logMaxBytes),
                                   "--log-max-files", std::to_string(o_.logMaxFiles)};
  auto pid = children_->spawn(argv, so, guarded([this, id](ChildStatus st, std::string) {
    shimGone(id, st.describe());
  }));
  if (shimLog >= 0) ::close(shimLog);
  return pid;
}

void RuncRuntime::start(const std::string& id, const std::string& bundle,
                        const std::string& logPath, StartFn started) {
  auto refuse = [&](Error e) { loop_.post(guarded([started, e] { started(e); })); };
  if (shims_.count(id))
    return refuse(failed("container " + id + " has a shim already: remove it first",
                         wire::ErrorCode::Conflict));
  std::error_code ec;
  fs::remove(bundle + "/exit.json", ec);  // an earlier run's, in a bundle used again
  int agent[2];
  if (::pipe2(agent, O_CLOEXEC) != 0)
    return refuse(failed(std::string("cannot make the shim's pipe: ") + std::strerror(errno)));
  auto pid = spawnShim(id, bundle, logPath, agent[1]);
  ::close(agent[1]);
  if (!pid) {
    ::close(agent[0]);
    return refuse(failed("cannot start the shim " + o_.shimPath + ": " + pid.error().message));
  }
  ::fcntl(agent[0], F_SETFL, O_NONBLOCK);
  shims_[id] = Shim{*pid, bundle, false, agent[0], "", std::move(started), false};
  loop_.watchFd(agent[0], [this, id] { readAgentLine(id); });
  // runc create + start take tens of ms; a shim still silent after startTimeout is stuck (a
  // hung runc, a hook that never returns): killed, so that the task does not hang STARTING.
  Loop::TimerId timer = loop_.after(o_.startTimeout, [this, id] {
    auto it = shims_.find(id);
    if (it == shims_.end() || it->second.agentFd < 0) return;
    timers_.erase(it->second.startTimer);
    it->second.startTimedOut = true;
    spdlog::warn("container {}: its shim said nothing in {} ms: killing it", id,
                 o_.startTimeout.count());
    children_->signal(it->second.pid, SIGKILL);
  });
  shims_[id].startTimer = timer;
  timers_.insert(timer);
  spdlog::debug("container {}: shim {} started", id, *pid);
}

void RuncRuntime::readAgentLine(const std::string& id) {
  auto it = shims_.find(id);
  if (it == shims_.end() || it->second.agentFd < 0) return;
  Shim& shim = it->second;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(shim.agentFd, buf, sizeof buf)) > 0) shim.line.append(buf, n);
  bool eof = n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR);
  if (eof || shim.line.find('\n') != std::string::npos) tellStarted(id, shim, eof);
}

// The shim's one line: "started <pid>" or "error <message>"; nothing at all when it died.
void RuncRuntime::tellStarted(const std::string& id, Shim& shim, bool eof) {
  loop_.unwatchFd(shim.agentFd);
  ::close(shim.agentFd);
  shim.agentFd = -1;
  loop_.cancel(shim.startTimer);
  timers_.erase(shim.startTimer);
  std::string line = shim.line.substr(0, shim.line.find('\n'));
  StartFn started = std::move(shim.started);
  shim.started = nullptr;
  Result<int> result = failed("the shim of container " + id + " ended without a word: see " +
                              shim.bundle + "/shim.log");
  if (line.rfind("started ", 0) == 0) {
    int pid = std::atoi(line.c_str() + 8);
    if (pid > 0) result = pid;
  } else if (line.rfind("error ", 0) == 0) {
    result = failed("runc could not start container " + id + ": " + line.substr(6));
  } else if (shim.startTimedOut) {
    result = failed("runc did not start container " + id + " within " +
                        std::to_string(o_.startTimeout.count()) + " ms: its shim was killed",
                    wire::ErrorCode::DeadlineExceeded);
  } else if (!eof) {
    result = failed("the shim of container " + id + " said \"" + line + "\"");
  }
  shim.ok = result.ok();
  if (result) spdlog::info("container {} started (init pid {})", id, *result);
  if (started) started(std::move(result));
}

void RuncRuntime::shimGone(const std::string& id, const std::string& how) {
  auto it = shims_.find(id);
  if (it == shims_.end()) return;
  // The shim's line may still be in the pipe: `started` is always told before the exit.
  if (it->second.agentFd >= 0) {
    readAgentLine(id);
    it = shims_.find(id);  // `started` may have changed what we hold
    if (it == shims_.end()) return;
    if (it->second.agentFd >= 0) tellStarted(id, it->second, true);
  }
  Shim shim = std::move(it->second);
  shims_.erase(it);
  if (!shim.ok) return;  // never started: its `started` has the error
  ContainerExit exit;
  if (auto e = readExit(shim.bundle)) {
    exit = *e;
  } else {
    exit.exitCode = -1;
    exit.error = "the shim of container " + id + " ended (" + how + ") without writing " +
                 shim.bundle + "/exit.json: the container's end is unknown";
  }
  spdlog::info("container {} ended: exit code {}{}", id, exit.exitCode,
               exit.error.empty() ? "" : " (" + exit.error + ")");
  if (onExit_) onExit_(id, exit);
}

Result<Runtime::Adopted> RuncRuntime::adopt(const std::string& id, const std::string& bundle) {
  if (shims_.count(id)) return failed("container " + id + " is watched already", wire::ErrorCode::Conflict);
  int pid = readPidFile(bundle + "/shim.pid");
  if (pid > 0 && isShimFor(pid, id)) {
    auto st = children_->watchProcess(pid, guarded([this, id] { shimGone(id, "adopted"); }));
    if (st) {
      shims_[id] = Shim{pid, bundle, true, -1, "", nullptr, true};
      spdlog::info("container {}: adopted its shim {}", id, pid);
      return Adopted{true, readPidFile(bundle + "/init.pid"), {}};
    }
  }
  if (auto e = readExit(bundle)) return Adopted{false, 0, *e};
  return failed("container " + id + " has neither a running shim nor an exit.json in " + bundle,
                wire::ErrorCode::NotFound);
}

void RuncRuntime::runcCall(std::vector<std::string> args, const std::string& what,
                           DoneFn done) {
  SpawnOptions so;
  so.captureOutput = true;
  so.maxCapture = 4096;
  auto pid = children_->spawn(runc(std::move(args)), so,
                              guarded([what, done](ChildStatus st, std::string out) {
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    if (st.code == 0) return done({});
    done(failed(what + " failed (" + st.describe() + ")" + (out.empty() ? "" : ": " + out)));
  }));
  if (!pid) loop_.post(guarded([done, e = pid.error(), what] {
    done(failed(what + ": " + e.message));
  }));
}

void RuncRuntime::kill(const std::string& id, int signal, DoneFn done) {
  std::vector<std::string> args = {"kill"};
  if (signal == SIGKILL) args.push_back("--all");  // every process of the container
  args.insert(args.end(), {id, std::to_string(signal)});
  runcCall(std::move(args), "runc kill " + id + " " + std::to_string(signal), std::move(done));
}

void RuncRuntime::remove(const std::string& id, DoneFn done) {
  runcCall({"delete", "--force", id}, "runc delete " + id, std::move(done));
}

void RuncRuntime::exec(const std::string& id, std::vector<std::string> argv,
                       std::chrono::milliseconds timeout, ExecFn done) {
  std::vector<std::string> args = {"exec", id};
  args.insert(args.end(), argv.begin(), argv.end());
  SpawnOptions so;
  so.captureOutput = true;
  so.maxCapture = 4096;
  auto timedOut = std::make_shared<bool>(false);
  auto timer = std::make_shared<Loop::TimerId>(0);
  auto pid = children_->spawn(runc(std::move(args)), so,
                              guarded([this, done, timedOut, timer, timeout, id](
                                          ChildStatus st, std::string out) {
    --execsInFlight_;
    loop_.cancel(*timer);
    timers_.erase(*timer);
    if (*timedOut)
      return done(failed("the exec in container " + id + " took longer than " +
                         std::to_string(timeout.count()) + " ms and was killed",
                         wire::ErrorCode::DeadlineExceeded), std::move(out));
    if (st.signal != 0) return done(128 + st.signal, std::move(out));
    done(st.code, std::move(out));
  }));
  if (!pid) {
    loop_.post(guarded([done, e = pid.error()] { done(e, ""); }));
    return;
  }
  ++execsInFlight_;
  *timer = loop_.after(timeout, [this, timedOut, p = *pid, timer] {
    timers_.erase(*timer);
    *timedOut = true;
    children_->signal(p, SIGKILL);  // runc exec; its process in the container goes with it
  });
  timers_.insert(*timer);
}

std::vector<std::string> RuncRuntime::list() const {
  std::vector<std::string> ids;
  std::error_code ec;
  for (auto& e : fs::directory_iterator(o_.root, ec))
    if (e.is_directory(ec)) ids.push_back(e.path().filename().string());
  std::sort(ids.begin(), ids.end());
  return ids;
}

nlohmann::json RuncRuntime::status() const {
  size_t adopted = 0;
  for (auto& [id, s] : shims_) adopted += s.adopted;
  return {{"runc", o_.runcPath}, {"root", o_.root}, {"shim", o_.shimPath},
          {"shims", shims_.size()}, {"shims_adopted", adopted},
          {"execs_in_flight", execsInFlight_}, {"strays_reaped", children_->strays()}};
}

}  // namespace

Result<std::unique_ptr<Runtime>> Runtime::open(Loop& loop, RuntimeOptions options) {
  if (options.root.empty() || options.root[0] != '/')
    return failed("the runc root \"" + options.root + "\" is not an absolute path: give "
                  "--runc-root", wire::ErrorCode::InvalidArgument);
  std::error_code ec;
  fs::create_directories(options.root, ec);
  if (ec)
    return failed("cannot make the runc root " + options.root + ": " + ec.message());
  if (options.shimPath.empty()) options.shimPath = defaultShimPath();
  if (!executable(options.runcPath))
    return failed("the OCI runtime \"" + options.runcPath + "\" is not an executable: install "
                  "runc or give its path with --runtime", wire::ErrorCode::InvalidArgument);
  if (!executable(options.shimPath))
    return failed("the shim " + options.shimPath + " is not an executable: install shoal-shim "
                  "next to agentd", wire::ErrorCode::InvalidArgument);
  if (options.logMaxBytes < 0 || options.logMaxFiles < 1)
    return failed("log rotation needs a size >= 0 and at least 1 file",
                  wire::ErrorCode::InvalidArgument);
  auto children = Children::forLoop(loop);
  if (!children) return children.error();
  return std::unique_ptr<Runtime>(new RuncRuntime(loop, std::move(options), *children));
}

}  // namespace shoal::agentd
