#include "services/agentd/child.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
// glibc 2.36's <sys/pidfd.h> lacks __BEGIN_DECLS (fixed in 2.37): without this its functions
// get C++ linkage and agentd does not link.
extern "C" {
#include <sys/pidfd.h>
}
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

extern char** environ;

namespace shoal::agentd {
namespace {

using namespace std::chrono_literals;

Error sysError(const std::string& what) {
  return Error{what + ": " + std::strerror(errno), errno};
}

// posix_spawn's attributes and file actions, released however spawn() returns.
struct SpawnSetup {
  posix_spawnattr_t attr;
  posix_spawn_file_actions_t actions;
  std::vector<int> tempFds;
  SpawnSetup() {
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_init(&actions);
  }
  ~SpawnSetup() {
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
    for (int fd : tempFds) ::close(fd);
  }
};

// The child starts clean: no blocked signals, every disposition default (agentd ignores
// SIGPIPE, and an ignored signal stays ignored through exec), maybe a session of its own.
void setAttributes(SpawnSetup& s, bool newSession) {
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&s.attr, &none);
  posix_spawnattr_setsigdefault(&s.attr, &all);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (newSession) flags |= POSIX_SPAWN_SETSID;
  posix_spawnattr_setflags(&s.attr, flags);
}

// The child's fds: target → our source (-1: /dev/null). A source below the highest target
// could be overwritten by an earlier dup2, so such sources are moved above first.
Status setFds(SpawnSetup& s, const std::map<int, int>& fds) {
  int top = fds.empty() ? 2 : std::max(2, fds.rbegin()->first);
  for (auto [target, source] : fds) {
    if (source < 0) {
      posix_spawn_file_actions_addopen(&s.actions, target, "/dev/null", O_RDWR, 0);
      continue;
    }
    if (source <= top) {
      int moved = ::fcntl(source, F_DUPFD_CLOEXEC, top + 1);
      if (moved < 0) return sysError("cannot duplicate fd " + std::to_string(source));
      s.tempFds.push_back(moved);
      source = moved;
    }
    posix_spawn_file_actions_adddup2(&s.actions, source, target);
  }
  posix_spawn_file_actions_addclosefrom_np(&s.actions, top + 1);
  return {};
}

}  // namespace

ChildStatus ChildStatus::fromWait(int ws) {
  ChildStatus s;
  if (WIFEXITED(ws)) s.code = WEXITSTATUS(ws);
  if (WIFSIGNALED(ws)) s.signal = WTERMSIG(ws);
  return s;
}

std::string ChildStatus::describe() const {
  if (signal != 0)
    return "killed by signal " + std::to_string(signal) + " (" + ::strsignal(signal) + ")";
  return "exit code " + std::to_string(code);
}

Result<std::shared_ptr<Children>> Children::forLoop(Loop& loop) {
  static std::map<Loop*, std::weak_ptr<Children>> reapers;
  if (auto existing = reapers[&loop].lock()) return existing;
  std::shared_ptr<Children> c(new Children(loop));
  if (auto st = c->setUp(); !st) return st.error();
  reapers[&loop] = c;
  return c;
}

Children::Children(Loop& loop) : loop_(loop) {}

Status Children::setUp() {
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
    return sysError("cannot become a child subreaper (prctl PR_SET_CHILD_SUBREAPER)");
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signalFd_ = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signalFd_ < 0) return sysError("cannot make a signalfd for SIGCHLD");
  loop_.watchFd(signalFd_, [this] {
    signalfd_siginfo info;
    while (::read(signalFd_, &info, sizeof info) == sizeof info) {
    }
    reap();
  });
  sweep_ = loop_.every(1s, [this] { reap(); });
  return {};
}

Children::~Children() {
  loop_.cancel(sweep_);
  if (signalFd_ >= 0) {
    loop_.unwatchFd(signalFd_);
    ::close(signalFd_);
  }
  // Children still running are left to run; a later reaper on this process reaps them as
  // strays. Only our fds go.
  for (auto& [pid, c] : children_)
    for (int fd : {c.pidfd, c.outFd})
      if (fd >= 0) {
        loop_.unwatchFd(fd);
        ::close(fd);
      }
  for (auto& [pid, w] : watched_) {
    loop_.unwatchFd(w.pidfd);
    ::close(w.pidfd);
  }
}

Result<pid_t> Children::spawn(const std::vector<std::string>& argv, const SpawnOptions& o,
                              ExitFn exited) {
  if (argv.empty() || argv[0].empty()) return Error{"nothing to run: an empty command", EINVAL};
  SpawnSetup s;
  setAttributes(s, o.newSession);
  int capture[2] = {-1, -1};
  if (o.captureOutput && ::pipe2(capture, O_CLOEXEC | O_NONBLOCK) != 0)
    return sysError("cannot make a pipe for " + argv[0] + "'s output");
  std::map<int, int> fds = o.extraFds;
  fds[0] = o.stdinFd;
  fds[1] = o.captureOutput ? capture[1] : o.stdoutFd;
  fds[2] = o.captureOutput ? capture[1] : o.stderrFd;
  if (o.captureOutput) s.tempFds.push_back(capture[1]);  // ours closes after the spawn
  if (auto st = setFds(s, fds); !st) {
    if (capture[0] >= 0) ::close(capture[0]);
    return st.error();
  }
  if (!o.cwd.empty()) posix_spawn_file_actions_addchdir_np(&s.actions, o.cwd.c_str());

  std::vector<char*> args, envp;
  for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  for (auto& e : o.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  pid_t pid = -1;
  int rc = ::posix_spawnp(&pid, args[0], &s.actions, &s.attr, args.data(),
                          o.env.empty() ? environ : envp.data());
  if (rc != 0) {
    if (capture[0] >= 0) ::close(capture[0]);
    errno = rc;
    return sysError("cannot run " + argv[0]);
  }
  // The child stays a zombie until we reap it, so its pid cannot be reused under us here.
  Child c{static_cast<int>(::pidfd_open(pid, 0)), capture[0], o.maxCapture, {}, std::move(exited)};
  if (c.pidfd >= 0) loop_.watchFd(c.pidfd, [this] { reap(); });
  if (c.outFd >= 0) loop_.watchFd(c.outFd, [this, pid] { readOutput(pid); });
  children_.emplace(pid, std::move(c));
  spdlog::debug("started {} (pid {})", argv[0], pid);
  return pid;
}

void Children::readOutput(pid_t pid) {
  auto it = children_.find(pid);
  if (it == children_.end() || it->second.outFd < 0) return;
  Child& c = it->second;
  char buf[16384];
  ssize_t n;
  while ((n = ::read(c.outFd, buf, sizeof buf)) > 0)
    c.output.append(buf, std::min(static_cast<size_t>(n), c.maxCapture - std::min(c.maxCapture, c.output.size())));
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
    loop_.unwatchFd(c.outFd);
    ::close(c.outFd);
    c.outFd = -1;
  }
}

void Children::reap() {
  int ws = 0;
  pid_t pid;
  // Bounded: each round reaps one child, and there are only so many.
  for (int i = 0; i < 4096 && (pid = ::waitpid(-1, &ws, WNOHANG)) > 0; ++i) onReaped(pid, ws);
}

void Children::onReaped(pid_t pid, int ws) {
  auto it = children_.find(pid);
  if (it == children_.end()) {
    ++strays_;
    spdlog::debug("reaped pid {} (not started here: an orphan re-parented to us), {}", pid,
                  ChildStatus::fromWait(ws).describe());
    return;
  }
  readOutput(pid);  // what it wrote before it exited is in the pipe already
  Child c = std::move(it->second);
  children_.erase(it);
  for (int fd : {c.pidfd, c.outFd})
    if (fd >= 0) {
      loop_.unwatchFd(fd);
      ::close(fd);
    }
  if (c.exited) c.exited(ChildStatus::fromWait(ws), std::move(c.output));
}

bool Children::signal(pid_t pid, int sig) {
  auto it = children_.find(pid);
  if (it == children_.end()) return false;
  if (it->second.pidfd >= 0) return ::pidfd_send_signal(it->second.pidfd, sig, nullptr, 0) == 0;
  return ::kill(pid, sig) == 0;  // not reaped yet, so the pid is still this child's
}

Status Children::watchProcess(pid_t pid, GoneFn gone) {
  int fd = static_cast<int>(::pidfd_open(pid, 0));
  if (fd < 0)
    return Error{"no process " + std::to_string(pid) + " to watch: " + std::strerror(errno), ESRCH};
  unwatchProcess(pid);
  watched_[pid] = {fd, std::move(gone)};
  loop_.watchFd(fd, [this, pid] {
    auto it = watched_.find(pid);
    if (it == watched_.end()) return;
    GoneFn fn = std::move(it->second.gone);
    unwatchProcess(pid);
    reap();  // it may have been ours after all (an orphan's parent is its subreaper)
    if (fn) fn();
  });
  return {};
}

void Children::unwatchProcess(pid_t pid) {
  auto it = watched_.find(pid);
  if (it == watched_.end()) return;
  loop_.unwatchFd(it->second.pidfd);
  ::close(it->second.pidfd);
  watched_.erase(it);
}

}  // namespace shoal::agentd
