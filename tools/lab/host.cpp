#include "tools/lab/host.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "tools/lab/lab.h"

extern char** environ;

namespace shoal::lab {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

std::string errnoText() { return std::strerror(errno); }

struct CStrings {
  std::vector<std::string> strings;
  std::vector<char*> ptrs;
  explicit CStrings(std::vector<std::string> s) : strings(std::move(s)) {
    for (auto& x : strings) ptrs.push_back(x.data());
    ptrs.push_back(nullptr);
  }
  char** get() { return ptrs.data(); }
};

int openNetns(const std::string& netns) {
  std::string path = "/run/netns/" + netns;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw LabError("cannot open the network namespace " + path + ": " + errnoText());
  return fd;
}

// In a child after fork: everything it needs was prepared before the fork.
void resetSignals() {
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int s : {SIGPIPE, SIGINT, SIGQUIT, SIGTERM}) ::signal(s, SIG_DFL);
}

std::string readFd(int fd) {
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

std::string ipPath() {
  for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"})
    if (::access(p, X_OK) == 0) return p;
  throw LabError("iproute2's `ip` is not installed (Debian package iproute2)");
}

// The file a command name means under env's PATH; the name itself if it holds a '/' or is
// nowhere (execve then says why).
std::string inPath(const std::string& command, const std::vector<std::string>& env) {
  if (command.find('/') != std::string::npos) return command;
  std::string path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  for (auto& e : env)
    if (e.starts_with("PATH=")) path = e.substr(5);
  std::stringstream dirs(path);
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    std::string file = (dir.empty() ? "." : dir) + "/" + command;
    if (::access(file.c_str(), X_OK) == 0) return file;
  }
  return command;
}

}  // namespace

namespace {

// argv[0] (a path) to its end with a bound, output captured; in netns when one is named (-1:
// ours), with env when given (else ours).
CommandResult runCaptured(int netnsFd, const std::vector<std::string>& argv,
                          const std::vector<std::string>* env, std::chrono::milliseconds timeout) {
  int out = ::memfd_create("out", MFD_CLOEXEC), err = ::memfd_create("err", MFD_CLOEXEC);
  if (out < 0 || err < 0) {
    if (out >= 0) ::close(out);
    if (err >= 0) ::close(err);
    throw LabError("memfd_create: " + errnoText());
  }
  // Everything the child needs is built before fork: after it only async-signal-safe calls.
  CStrings args(argv), envp(env ? *env : std::vector<std::string>{});
  char** childEnv = env ? envp.get() : environ;
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(out);
    ::close(err);
    throw LabError("fork: " + errnoText());
  }
  if (pid == 0) {
    if (netnsFd >= 0 && ::setns(netnsFd, CLONE_NEWNET) != 0) {
      static const char m[] = "shoal-lab: setns into the node's network namespace failed\n";
      [[maybe_unused]] auto n = ::write(err, m, sizeof m - 1);
      ::_exit(126);
    }
    int null = ::open("/dev/null", O_RDONLY);
    if (null < 0 || ::dup2(null, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0) ::_exit(127);
    resetSignals();
    ::execve(args.get()[0], args.get(), childEnv);
    ::_exit(127);
  }
  CommandResult r;
  auto status = waitChild(pid, timeout);
  if (!status) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    r.err = "timed out after " + std::to_string(timeout.count()) + " ms; ";
  } else {
    r.code = *status;
  }
  r.out = readFd(out);
  r.err += readFd(err);
  ::close(out);
  ::close(err);
  return r;
}

}  // namespace

CommandResult runCommand(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  return runCaptured(-1, argv, nullptr, timeout);
}

CommandResult runInNetns(const std::string& netns, const std::vector<std::string>& argv,
                         const std::vector<std::string>& env, std::chrono::milliseconds timeout) {
  int ns = openNetns(netns);
  try {
    auto r = runCaptured(ns, argv, &env, timeout);
    ::close(ns);
    return r;
  } catch (...) {
    ::close(ns);
    throw;
  }
}

void ip(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {ipPath()};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = runCommand(argv);
  if (r.code != 0) {
    std::string line;
    for (auto& a : argv) line += (line.empty() ? "" : " ") + a;
    throw LabError("`" + line + "` failed: " + r.err);
  }
}

CommandResult ipCapture(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {ipPath()};
  argv.insert(argv.end(), args.begin(), args.end());
  return runCommand(argv);
}

bool ipQuiet(const std::vector<std::string>& args) { return ipCapture(args).code == 0; }

std::vector<std::string> listNetns() {
  std::vector<std::string> names;
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator("/run/netns", ec))
    names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

bool netnsExists(const std::string& name) {
  struct stat st;
  return ::stat(("/run/netns/" + name).c_str(), &st) == 0;
}

std::vector<std::string> labEnvironment(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string_view entry(*e);
    std::string_view name = entry.substr(0, entry.find('='));
    bool drop = false;
    for (const char* d : {"NOTIFY_SOCKET", "INVOCATION_ID", "JOURNAL_STREAM", "WATCHDOG_USEC",
                          "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "SHOAL_RUN_DIR"})
      drop = drop || name == d;
    for (auto& x : extra) drop = drop || std::string_view(x).substr(0, x.find('=')) == name;
    if (!drop) env.emplace_back(entry);
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

pid_t spawnInNetns(const std::string& netns, const std::vector<std::string>& argv,
                   const std::vector<std::string>& env, const std::string& cwd,
                   const std::string& outFile) {
  int ns = openNetns(netns);
  int out = ::open(outFile.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (out < 0) {
    ::close(ns);
    throw LabError("cannot open " + outFile + ": " + errnoText());
  }
  CStrings args(argv), envp(env);
  pid_t pid = ::fork();
  if (pid < 0) throw LabError("fork: " + errnoText());
  if (pid == 0) {
    auto fail = [out](const char* what) {
      std::string m = std::string("shoal-lab: cannot start: ") + what + ": " + std::strerror(errno) + "\n";
      [[maybe_unused]] auto n = ::write(out, m.data(), m.size());
      ::_exit(127);
    };
    if (::setns(ns, CLONE_NEWNET) != 0) fail("setns");
    if (::setsid() < 0) fail("setsid");
    if (::chdir(cwd.c_str()) != 0) fail("chdir");
    int null = ::open("/dev/null", O_RDONLY);
    if (null < 0 || ::dup2(null, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(out, 2) < 0) fail("stdio");
    resetSignals();
    ::execve(args.get()[0], args.get(), envp.get());
    fail(args.get()[0]);
  }
  ::close(ns);
  ::close(out);
  return pid;
}

std::optional<int> waitChild(pid_t pid, std::chrono::milliseconds timeout) {
  auto end = Clock::now() + timeout;
  for (;;) {
    int ws = 0;
    pid_t r = ::waitpid(pid, &ws, WNOHANG);
    if (r == pid) return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    if (r < 0 && errno != EINTR) return -1;
    if (Clock::now() >= end) return std::nullopt;
    std::this_thread::sleep_for(5ms);
  }
}

int execInNetns(const std::string& netns, const std::vector<std::string>& argv,
                const std::vector<std::string>& env) {
  int ns = openNetns(netns);
  // execvpe would search our own PATH, not env's: the lab's shoal comes first in env's.
  std::vector<std::string> resolved = argv;
  resolved[0] = inPath(argv[0], env);
  CStrings args(resolved), envp(env);
  // Like system(3): the terminal's ^C goes to the command, which decides; we wait for it.
  struct sigaction ignore{}, oldInt{}, oldQuit{};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGINT, &ignore, &oldInt);
  ::sigaction(SIGQUIT, &ignore, &oldQuit);
  pid_t pid = ::fork();
  if (pid < 0) throw LabError("fork: " + errnoText());
  if (pid == 0) {
    if (::setns(ns, CLONE_NEWNET) != 0) {
      std::fprintf(stderr, "shoal-lab: setns %s: %s\n", netns.c_str(), std::strerror(errno));
      ::_exit(126);
    }
    resetSignals();
    ::execve(args.get()[0], args.get(), envp.get());
    std::fprintf(stderr, "shoal-lab: cannot run %s: %s\n", argv[0].c_str(), std::strerror(errno));
    ::_exit(errno == ENOENT ? 127 : 126);
  }
  ::close(ns);
  int ws = 0;
  while (::waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
  }
  ::sigaction(SIGINT, &oldInt, nullptr);
  ::sigaction(SIGQUIT, &oldQuit, nullptr);
  return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
}

std::optional<uint64_t> startTime(pid_t pid) {
  std::string stat = readFile("/proc/" + std::to_string(pid) + "/stat");
  // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
  auto close = stat.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  std::string state;
  rest >> state;
  if (state == "Z" || state == "X") return std::nullopt;  // dead, waiting to be reaped
  for (int i = 4; i <= 22; ++i) rest >> field;          // fields 4..22
  if (!rest) return std::nullopt;
  return std::stoull(field);
}

bool sameProcess(pid_t pid, uint64_t start) {
  if (pid <= 0) return false;
  auto now = startTime(pid);
  return now && *now == start;
}

std::vector<pid_t> processesIn(const std::string& netns) { return processesInNetnsFile("/run/netns/" + netns); }

std::vector<pid_t> processesInNetnsFile(const std::string& path) {
  struct stat ns;
  if (::stat(path.c_str(), &ns) != 0) return {};
  std::vector<pid_t> pids;
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    std::string name = e.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    pid_t pid = std::stoi(name);
    if (pid == ::getpid()) continue;
    struct stat st;
    if (::stat(("/proc/" + name + "/ns/net").c_str(), &st) != 0) continue;
    if (st.st_dev == ns.st_dev && st.st_ino == ns.st_ino) pids.push_back(pid);
  }
  return pids;
}

std::vector<pid_t> killAll(const std::vector<pid_t>& pids, std::chrono::milliseconds bound) {
  for (pid_t p : pids) ::kill(p, SIGKILL);
  auto end = Clock::now() + bound;
  std::vector<pid_t> left = pids;
  while (!left.empty()) {
    std::erase_if(left, [](pid_t p) {
      ::waitpid(p, nullptr, WNOHANG);  // in case it is our own child
      return !startTime(p);
    });
    if (left.empty() || Clock::now() >= end) break;
    std::this_thread::sleep_for(10ms);
  }
  return left;
}

std::vector<std::string> mountsUnder(const std::string& dir) {
  std::vector<std::string> found;
  std::stringstream in(readFile("/proc/self/mountinfo"));
  for (std::string line; std::getline(in, line);) {
    // id parent major:minor root mountpoint ...; the mount point escapes space as \040.
    std::stringstream fields(line);
    std::string id, parent, dev, root, point;
    if (!(fields >> id >> parent >> dev >> root >> point)) continue;
    std::string unescaped;
    for (size_t i = 0; i < point.size(); ++i) {
      if (point[i] == '\\' && i + 3 < point.size()) {
        unescaped += static_cast<char>(std::stoi(point.substr(i + 1, 3), nullptr, 8));
        i += 3;
      } else {
        unescaped += point[i];
      }
    }
    if (unescaped == dir || unescaped.starts_with(dir + "/")) found.push_back(unescaped);
  }
  std::sort(found.begin(), found.end(), [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  return found;
}

bool detachMount(const std::string& path) { return ::umount2(path.c_str(), MNT_DETACH) == 0; }

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

std::string tail(const std::string& text, size_t lines) {
  size_t pos = text.size();
  if (pos > 0 && text[pos - 1] == '\n') --pos;
  for (size_t n = 0; n < lines && pos != std::string::npos && pos > 0; ++n)
    pos = text.rfind('\n', pos - 1);
  return pos == std::string::npos || pos == 0 ? text : text.substr(pos + 1);
}

}  // namespace shoal::lab
