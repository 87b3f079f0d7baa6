// shoal-shim: one per container (services/agentd/runtime.h, docs/containers.md "Runtime and
// shims"). It runs `runc create` + `runc start` with the container's stdout and stderr on
// pipes it reads into the task's log, tells agentd the outcome on fd 3, reaps the
// container's init (it is a child subreaper in a session of its own, so it outlives agentd),
// and writes <bundle>/exit.json when the init is gone. libc and the log writer only: every
// running container has one, and its memory counts.
//
//   shoal-shim --runc PATH --root DIR --id ID --bundle DIR --log FILE
//              [--log-max-bytes N] [--log-max-files K]

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "services/agentd/shim/log_writer.h"

extern char** environ;

namespace shoal::shim {
namespace {

struct Options {
  std::string runc = "runc", root, id, bundle, log;
  int64_t logMaxBytes = 10 << 20;
  int logMaxFiles = 3;
};

struct Exit {
  int code = -1, signal = 0;
  std::string error;
};

constexpr int kAgentFd = 3;  // the pipe agentd reads the outcome from

void fail(const std::string& message) {
  std::fprintf(stderr, "shoal-shim: %s\n", message.c_str());
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (i + 1 >= argc) fail(flag + " needs a value");
    std::string value = argv[++i];
    if (flag == "--runc") o.runc = value;
    else if (flag == "--root") o.root = value;
    else if (flag == "--id") o.id = value;
    else if (flag == "--bundle") o.bundle = value;
    else if (flag == "--log") o.log = value;
    else if (flag == "--log-max-bytes") o.logMaxBytes = std::atoll(value.c_str());
    else if (flag == "--log-max-files") o.logMaxFiles = std::atoi(value.c_str());
    else fail("unknown flag " + flag + " (agentd starts the shim; see runtime.h)");
  }
  if (o.root.empty() || o.id.empty() || o.bundle.empty() || o.log.empty())
    fail("--root, --id, --bundle and --log are required");
  return o;
}

// A file written whole or not at all: readers (agentd) never see half of it.
bool writeAtomic(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ok = ::fsync(fd) == 0 && ok;
  ::close(fd);
  return ok && ::rename(tmp.c_str(), path.c_str()) == 0;
}

// Starts runc with stdin /dev/null, stdout and stderr on the given fds, a clean signal
// mask (ours blocks SIGCHLD for the signalfd; the container must not inherit that).
pid_t spawn(const std::vector<std::string>& args, int out, int err) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out, 1);
  posix_spawn_file_actions_adddup2(&fa, err, 2);
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  int rc = ::posix_spawnp(&pid, argv[0], &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) errno = rc;
  return rc == 0 ? pid : -1;
}

int waitFor(pid_t pid) {
  int ws = 0;
  while (::waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
  }
  return ws;
}

std::string readAvailable(int fd) {
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0 && text.size() < (64 << 10)) text.append(buf, n);
  return text;
}

// runc's message, on one line: what agentd shows as the task's error. runc writes
// logrus's `time="..." level=error msg="..."`: the msg is what a person reads.
std::string oneLine(std::string text) {
  size_t msg = text.rfind("msg=\"");
  if (msg != std::string::npos) {
    std::string inner;
    for (size_t i = msg + 5; i < text.size() && text[i] != '"'; ++i)
      inner += text[i] == '\\' && i + 1 < text.size() ? text[++i] : text[i];
    text = inner;
  }
  for (auto& c : text)
    if (c == '\n' || c == '\r') c = ' ';
  size_t b = text.find_first_not_of(' '), e = text.find_last_not_of(' ');
  return b == std::string::npos ? std::string() : text.substr(b, e - b + 1);
}

void tellAgent(const std::string& line) {
  // agentd may be gone (killed while we started): SIGPIPE is ignored, EPIPE is fine.
  [[maybe_unused]] auto n = ::write(kAgentFd, line.data(), line.size());
  ::close(kAgentFd);
}

int64_t nowNs() {
  timespec t{};
  ::clock_gettime(CLOCK_REALTIME, &t);
  return static_cast<int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec;
}

void writeExit(const Options& o, const Exit& e) {
  nlohmann::json j = {{"exit_code", e.code}, {"signal", e.signal}, {"at", nowNs()},
                      {"error", e.error}};
  if (!writeAtomic(o.bundle + "/exit.json", j.dump() + "\n"))
    std::fprintf(stderr, "shoal-shim: cannot write %s/exit.json: %s\n", o.bundle.c_str(),
                 std::strerror(errno));
}

std::vector<std::string> runc(const Options& o, std::vector<std::string> args) {
  std::vector<std::string> argv = {o.runc, "--root", o.root};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

// Runs one runc command to its end, its own output captured: "" on success, else the
// error to report.
std::string runcStep(const Options& o, std::vector<std::string> args, int out, int err,
                     int capture) {
  std::string what = "runc " + args[0];
  pid_t pid = spawn(runc(o, args), out, err);
  if (pid < 0) return "cannot run " + o.runc + ": " + std::strerror(errno);
  int ws = waitFor(pid);
  if (WIFEXITED(ws) && WEXITSTATUS(ws) == 0) return "";
  std::string said = oneLine(readAvailable(capture));
  if (!said.empty()) return said;
  return what + " failed (" + (WIFEXITED(ws) ? "exit code " + std::to_string(WEXITSTATUS(ws))
                                             : "signal " + std::to_string(WTERMSIG(ws))) + ")";
}

int readPid(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "re");
  if (!f) return -1;
  int pid = -1;
  if (std::fscanf(f, "%d", &pid) != 1) pid = -1;
  std::fclose(f);
  return pid;
}

struct Pipes {
  int out[2] = {-1, -1}, err[2] = {-1, -1}, start[2] = {-1, -1};
};

// The container's stdout and stderr pipes, and one for runc start's own words. Our ends
// are non-blocking (the poll loop reads what there is); runc's are blocking, as a program
// expects its stdout to be.
bool makePipes(Pipes& p) {
  for (int* fds : {p.out, p.err, p.start}) {
    if (::pipe2(fds, O_CLOEXEC) != 0) return false;
    ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
  }
  return true;
}

// The container's output until its init is reaped, then what is left in the pipes (other
// processes of the container die with its init in a pid namespace; 2 s at most for those
// that do not).
Exit supervise(int initPid, int sigFd, Pipes& p, LogWriter& log) {
  Exit e;
  bool reaped = false;
  int64_t drainUntil = 0;
  pollfd fds[3] = {{p.out[0], POLLIN, 0}, {p.err[0], POLLIN, 0}, {sigFd, POLLIN, 0}};
  while (fds[0].fd >= 0 || fds[1].fd >= 0 || !reaped) {
    if (reaped && nowNs() > drainUntil) break;
    if (::poll(fds, 3, reaped ? 100 : -1) < 0 && errno != EINTR) break;
    for (int s = 0; s < 2; ++s) {
      if (fds[s].fd < 0 || !(fds[s].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[65536];
      ssize_t n = ::read(fds[s].fd, buf, sizeof buf);
      if (n > 0) log.add(s, std::string_view(buf, n));
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) fds[s].fd = -1;
    }
    if (fds[2].revents & POLLIN) {
      signalfd_siginfo info;
      while (::read(sigFd, &info, sizeof info) == sizeof info) {
      }
      int ws;
      pid_t pid;
      // Every orphan of the container is ours to reap too; bounded by what exited.
      for (int i = 0; i < 4096 && (pid = ::waitpid(-1, &ws, WNOHANG)) > 0; ++i) {
        if (pid != initPid) continue;
        reaped = true;
        drainUntil = nowNs() + 2'000'000'000;
        if (WIFEXITED(ws)) e.code = WEXITSTATUS(ws);
        if (WIFSIGNALED(ws)) e.signal = WTERMSIG(ws), e.code = 128 + e.signal;
      }
    }
  }
  log.finish(0);
  log.finish(1);
  return e;
}

int run(const Options& o) {
  if (!writeAtomic(o.bundle + "/shim.pid", std::to_string(::getpid()) + "\n"))
    fail("cannot write " + o.bundle + "/shim.pid: " + std::strerror(errno));
  LogWriter log;
  if (!log.open(o.log, o.logMaxBytes, o.logMaxFiles)) {
    Exit e{-1, 0, "cannot open the log " + o.log + ": " + std::strerror(errno)};
    writeExit(o, e);
    tellAgent("error " + e.error + "\n");
    return 0;
  }
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  ::sigprocmask(SIG_BLOCK, &chld, nullptr);
  int sigFd = ::signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
  Pipes p;
  if (sigFd < 0 || !makePipes(p)) fail(std::string("cannot make pipes: ") + std::strerror(errno));

  // runc passes its stdout and stderr to the container's init (no terminal): ours to read.
  std::string error = runcStep(o, {"create", "--bundle", o.bundle, "--pid-file",
                                   o.bundle + "/init.pid", o.id}, p.out[1], p.err[1], p.err[0]);
  ::close(p.out[1]);
  ::close(p.err[1]);
  if (!error.empty()) {
    writeExit(o, {-1, 0, error});
    tellAgent("error " + error + "\n");
    return 0;
  }
  int initPid = readPid(o.bundle + "/init.pid");
  if (initPid <= 0) {
    error = "runc create wrote no init pid to " + o.bundle + "/init.pid";
    runcStep(o, {"delete", "--force", o.id}, p.start[1], p.start[1], p.start[0]);
    writeExit(o, {-1, 0, error});
    tellAgent("error " + error + "\n");
    return 0;
  }
  error = runcStep(o, {"start", o.id}, p.start[1], p.start[1], p.start[0]);
  if (!error.empty()) {
    // The init waits for a start that will not come: it goes, and its exit is reported.
    runcStep(o, {"kill", o.id, "KILL"}, p.start[1], p.start[1], p.start[0]);
    tellAgent("error " + error + "\n");
  } else {
    tellAgent("started " + std::to_string(initPid) + "\n");
  }
  Exit e = supervise(initPid, sigFd, p, log);
  if (!error.empty()) e.error = error;
  writeExit(o, e);
  return 0;
}

}  // namespace
}  // namespace shoal::shim

int main(int argc, char** argv) {
  auto options = shoal::shim::parse(argc, argv);
  // A session of our own (agentd may have made one already: then setsid fails, harmlessly),
  // so that a signal to agentd's process group does not reach the container.
  ::setsid();
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  ::signal(SIGPIPE, SIG_IGN);
  return shoal::shim::run(options);
}
