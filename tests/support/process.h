#pragma once
// Child processes for tests: start a program, capture what it writes, wait with a bound,
// signal it by PID. A Process that goes out of scope while its child still runs kills
// (SIGKILL) and reaps it, so a failed test leaves nothing behind; the child also gets
// SIGKILL if the test process itself dies (PR_SET_PDEATHSIG).

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace shoal::testing {

struct ExitStatus {
  int code = -1;   // the exit code, when the process exited
  int signal = 0;  // the signal that ended it, else 0
  bool exited() const { return signal == 0; }
};

class Process {
 public:
  // Starts argv[0] (a path, not searched in $PATH) with the test's environment minus the
  // variables that would make a daemon talk to systemd, plus env ("NAME=VALUE", these win).
  // Standard input is /dev/null; standard output and error are captured in memory files.
  explicit Process(std::vector<std::string> argv, std::vector<std::string> env = {}) {
    if (argv.empty()) throw std::invalid_argument("Process: empty argv");
    out_ = memfd("stdout");
    err_ = memfd("stderr");

    std::vector<std::string> envStrings;
    for (char** e = environ; *e; ++e) {
      std::string_view entry(*e);
      std::string_view name = entry.substr(0, entry.find('='));
      if (inherited(name, env)) envStrings.emplace_back(entry);
    }
    for (auto& e : env) envStrings.push_back(e);
    // Everything the child needs is built before fork: after it only async-signal-safe
    // calls are allowed (the test has ZeroMQ threads).
    std::vector<char*> args, envp;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    for (auto& e : envStrings) envp.push_back(e.data());
    envp.push_back(nullptr);

    int failPipe[2];
    if (::pipe2(failPipe, O_CLOEXEC) != 0) throw error("pipe2");
    pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0) {
      ::close(failPipe[0]);
      ::close(failPipe[1]);
      throw error("fork");
    }
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);  // the test died before prctl took effect
      int null = ::open("/dev/null", O_RDONLY);
      if (null < 0 || ::dup2(null, 0) < 0 || ::dup2(out_, 1) < 0 || ::dup2(err_, 2) < 0)
        childFail(failPipe[1]);
      // The signal mask and dispositions are inherited through exec; start clean.
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::signal(SIGPIPE, SIG_DFL);
      ::execve(args[0], args.data(), envp.data());
      childFail(failPipe[1]);
    }
    ::close(failPipe[1]);
    int childErrno = 0;
    ssize_t n;
    do n = ::read(failPipe[0], &childErrno, sizeof childErrno);
    while (n < 0 && errno == EINTR);
    ::close(failPipe[0]);
    if (n == sizeof childErrno) {
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
      errno = childErrno;
      throw error("cannot start " + argv[0]);
    }
  }

  ~Process() {
    if (pid_ > 0 && !status_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    for (int fd : {out_, err_})
      if (fd >= 0) ::close(fd);
  }

  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }

  // Whether the child still runs; reaps it if it ended.
  bool running() {
    poll();
    return !status_;
  }

  // Waits until the child ends or timeout passes. Returns how it ended, nothing on timeout.
  std::optional<ExitStatus> wait(std::chrono::milliseconds timeout) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (!poll() && std::chrono::steady_clock::now() < end)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return status_;
  }

  // Sends sig to the child, unless it was reaped already (its PID may be someone else's).
  void signal(int sig) {
    if (pid_ > 0 && !poll()) ::kill(pid_, sig);
  }

  // What the child wrote so far.
  std::string out() const { return readAll(out_); }
  std::string err() const { return readAll(err_); }

 private:
  static int memfd(const char* name) {
    int fd = ::memfd_create(name, MFD_CLOEXEC);
    if (fd < 0) throw error("memfd_create");
    return fd;
  }

  static std::runtime_error error(const std::string& what) {
    return std::runtime_error(what + ": " + std::strerror(errno));
  }

  static bool inherited(std::string_view name, const std::vector<std::string>& overrides) {
    for (const char* drop : {"NOTIFY_SOCKET", "INVOCATION_ID", "JOURNAL_STREAM", "WATCHDOG_USEC",
                             "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "SHOAL_RUN_DIR"})
      if (name == drop) return false;
    for (auto& o : overrides)
      if (std::string_view(o).substr(0, o.find('=')) == name) return false;
    return true;
  }

  [[noreturn]] static void childFail(int fd) {
    int e = errno;
    [[maybe_unused]] auto n = ::write(fd, &e, sizeof e);
    ::_exit(127);
  }

  // Reaps the child if it ended; true once it has.
  bool poll() {
    if (status_) return true;
    if (pid_ <= 0) return false;
    int ws = 0;
    pid_t r = ::waitpid(pid_, &ws, WNOHANG);
    if (r != pid_) return false;
    ExitStatus s;
    if (WIFEXITED(ws)) s.code = WEXITSTATUS(ws);
    if (WIFSIGNALED(ws)) s.signal = WTERMSIG(ws);
    status_ = s;
    return true;
  }

  static std::string readAll(int fd) {
    std::string text;
    char buf[4096];
    off_t offset = 0;
    ssize_t n;
    while ((n = ::pread(fd, buf, sizeof buf, offset)) > 0) {
      text.append(buf, n);
      offset += n;
    }
    return text;
  }

  pid_t pid_ = -1;
  int out_ = -1;
  int err_ = -1;
  std::optional<ExitStatus> status_;
};

struct RunResult {
  ExitStatus status;
  bool timedOut = false;  // the child was killed after the timeout
  std::string out;
  std::string err;
};

// Runs a program to its end; kills it if it takes longer than timeout.
inline RunResult run(std::vector<std::string> argv, std::vector<std::string> env = {},
                     std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  Process p(std::move(argv), std::move(env));
  RunResult r;
  auto status = p.wait(timeout);
  if (!status) {
    r.timedOut = true;
    p.signal(SIGKILL);
    status = p.wait(std::chrono::seconds(5));
  }
  if (status) r.status = *status;
  r.out = p.out();
  r.err = p.err();
  return r;
}

}  // namespace shoal::testing
