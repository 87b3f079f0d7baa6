#pragma once
// Containers through an OCI runtime (runc), one shim each (DESIGN.md §8, docs/containers.md
// "Runtime and shims"). agentd never runs a container as its own child: it starts a shim
// (services/agentd/shim/, the `shoal-shim` binary next to agentd), which
//   - is a child subreaper in a session of its own, so it outlives an agentd that is killed;
//   - runs `runc --root R create` then `runc start` with the container's stdout and stderr
//     on pipes it reads, writing every line to the task's log (docs/containers.md "Logs":
//     timestamped, rotated by size);
//   - reaps the container's init and writes its exit to <bundle>/exit.json
//     ({"exit_code", "signal", "at", "error"}) before it exits itself.
// agentd is a child subreaper too (set by Runtime): it reaps its shims and runc calls. It
// learns of a container's end when its shim exits (a pidfd on the loop), also for shims of
// an earlier agentd that it adopted after a restart.
//
// Every call returns at once; callbacks run on the loop thread, never inside the call.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/loop.h"
#include "common/result.h"

namespace shoal::agentd {

struct RuntimeOptions {
  std::string runcPath = "runc";  // agentd --runtime
  std::string root;               // runc --root: agentd --runc-root (default <run dir>/runc)
  std::string shimPath;           // default: shoal-shim next to agentd's own binary
  int64_t logMaxBytes = 10 << 20;  // a log file is rotated at this size
  int logMaxFiles = 3;             // files kept per task, the current one included
  // A shim that has not told the outcome of runc create + start by then is killed and the
  // start fails with DeadlineExceeded (a hung runc or hook).
  std::chrono::milliseconds startTimeout{60'000};
};

// How a container ended.
struct ContainerExit {
  int exitCode = 0;    // 128 + signal when a signal killed it, as docker reports
  int signal = 0;
  int64_t at = 0;      // ns since the epoch
  std::string error;   // the runtime could not start it (runc's own message)
};

class Runtime {
 public:
  static Result<std::unique_ptr<Runtime>> open(Loop& loop, RuntimeOptions options);
  virtual ~Runtime() = default;

  using StartFn = std::function<void(Result<int>)>;  // the container init's pid
  using ExitFn = std::function<void(const std::string& id, const ContainerExit& exit)>;
  using DoneFn = std::function<void(Status)>;
  using ExecFn = std::function<void(Result<int> exitCode, std::string output)>;

  // Where the ends of containers started or adopted here are told: once per container.
  virtual void onExit(ExitFn fn) = 0;
  // Starts a shim for the bundle (config.json in it) with the task's log at logPath;
  // `started` gets the init's pid once `runc start` returned, or runc's error.
  virtual void start(const std::string& id, const std::string& bundle,
                     const std::string& logPath, StartFn started) = 0;
  // After an agentd restart: the container of an earlier shim (the shim's pid is in
  // <bundle>/shim.pid). Running → its init's pid, and its exit is told later by onExit;
  // ended meanwhile → its exit now; neither (no shim, no exit.json) → NotFound.
  struct Adopted {
    bool running = false;
    int pid = 0;
    ContainerExit exit;
  };
  virtual Result<Adopted> adopt(const std::string& id, const std::string& bundle) = 0;
  // runc kill: signal to the container's init (SIGKILL also to every process in it).
  virtual void kill(const std::string& id, int signal, DoneFn done) = 0;
  // runc delete --force, and the runtime's state of it gone. The bundle is the caller's.
  virtual void remove(const std::string& id, DoneFn done) = 0;
  // runc exec (health checks): the command's exit code and its first 4 KiB of output, or
  // DeadlineExceeded after `timeout` (the exec is killed).
  virtual void exec(const std::string& id, std::vector<std::string> argv,
                    std::chrono::milliseconds timeout, ExecFn done) = 0;
  // Container ids the runtime knows under its root (leftovers after a crash).
  virtual std::vector<std::string> list() const = 0;
  // {runc, root, shim, shims, execs_in_flight}
  virtual nlohmann::json status() const = 0;
};

}  // namespace shoal::agentd
