#pragma once
// agentd's child processes on its Loop (docs/containers.md "Runtime and shims"): it starts
// shims and runc calls, and it is a child subreaper, so a container whose shim died is
// re-parented to agentd. One reaper for the whole process, so that no exit status is lost to
// a race between two waitpid callers: everything agentd runs goes through Children::spawn,
// and nothing else in agentd may call waitpid.
//
// Each spawned child has a pidfd on the loop (readable once it exits), and a signalfd takes
// SIGCHLD where the thread mask lets it; either wakes one waitpid(-1, WNOHANG) sweep that
// hands every reaped pid to its callback. Strays (orphans of dead shims) are reaped and
// logged at debug. A slow timer sweeps too, since threads started before us (ZeroMQ's) do
// not block SIGCHLD and may swallow it.
//
// Processes that are not our children (the shims of an earlier agentd) are watched with a
// pidfd: watchProcess tells once the process is gone.

#include <sys/types.h>

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/loop.h"
#include "common/result.h"

namespace shoal::agentd {

// How a child ended.
struct ChildStatus {
  int code = -1;   // its exit code when it exited, else -1
  int signal = 0;  // the signal that killed it, else 0
  static ChildStatus fromWait(int waitStatus);
  // "exit code 3", "killed by signal 9 (Killed)"
  std::string describe() const;
};

struct SpawnOptions {
  // Our fds to give the child as its 0, 1, 2; -1 gives /dev/null. Ignored for 1 and 2 when
  // captureOutput is set.
  int stdinFd = -1, stdoutFd = -1, stderrFd = -1;
  // Stdout and stderr together into the string the exit callback gets, up to maxCapture
  // bytes (the rest is read and dropped, so the child never blocks on a full pipe).
  bool captureOutput = false;
  size_t maxCapture = 64 << 10;
  // More fds for the child: its fd number → ours (the shim's fd 3).
  std::map<int, int> extraFds;
  bool newSession = false;            // setsid(): the child outlives our process group
  std::string cwd;                    // "" keeps ours
  std::vector<std::string> env;       // NAME=VALUE; empty: our environment
};

class Children {
 public:
  // The process's one reaper on this loop: made by the first caller, shared after (a second
  // Runtime on the same loop gets the same). Makes the process a child subreaper.
  static Result<std::shared_ptr<Children>> forLoop(Loop& loop);
  ~Children();
  Children(const Children&) = delete;
  Children& operator=(const Children&) = delete;

  using ExitFn = std::function<void(ChildStatus status, std::string output)>;
  // Starts argv (argv[0] searched in $PATH when it has no '/'); every fd of ours but those
  // named in options is closed in the child; the signal mask and dispositions are reset.
  // `exited` runs on the loop once the child was reaped, never inside this call.
  Result<pid_t> spawn(const std::vector<std::string>& argv, const SpawnOptions& options,
                      ExitFn exited);
  // Signals a child of ours that has not been reaped yet (through its pidfd, so never a
  // process that took its pid). False if it is gone.
  bool signal(pid_t pid, int sig);

  using GoneFn = std::function<void()>;
  // Watches a process that is not our child (an adopted shim): `gone` runs on the loop once
  // it exited. NotFound if there is no such process now.
  Status watchProcess(pid_t pid, GoneFn gone);
  void unwatchProcess(pid_t pid);

  size_t running() const { return children_.size(); }
  size_t watched() const { return watched_.size(); }
  uint64_t strays() const { return strays_; }

 private:
  explicit Children(Loop& loop);
  Status setUp();
  void reap();
  void onReaped(pid_t pid, int waitStatus);
  void readOutput(pid_t pid);

  struct Child {
    int pidfd = -1;
    int outFd = -1;  // the capture pipe's read end, -1 when not captured or at EOF
    size_t maxCapture = 0;
    std::string output;
    ExitFn exited;
  };
  struct Watched {
    int pidfd = -1;
    GoneFn gone;
  };

  Loop& loop_;
  int signalFd_ = -1;
  Loop::TimerId sweep_ = 0;
  std::map<pid_t, Child> children_;
  std::map<pid_t, Watched> watched_;
  uint64_t strays_ = 0;
};

}  // namespace shoal::agentd
