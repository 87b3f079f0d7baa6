#pragma once
// What shoal-lab asks of the machine: iproute2 for namespaces and links, processes started
// inside a node's network namespace with setns(2) (never `ip netns exec`, which mounts a fresh
// /sys and hides /sys/fs/cgroup from runc), and /proc to tell the lab's processes from others.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace shoal::lab {

struct CommandResult {
  int code = -1;  // exit code; -1 if it was killed or timed out
  std::string out;
  std::string err;
};

// Runs argv[0] (a path) to its end with a bound; output captured.
CommandResult runCommand(const std::vector<std::string>& argv,
                         std::chrono::milliseconds timeout = std::chrono::seconds(20));
// The same inside network namespace netns (entered with setns), with environment env;
// stdout and stderr captured apart. Safe to call from several threads at once.
CommandResult runInNetns(const std::string& netns, const std::vector<std::string>& argv,
                         const std::vector<std::string>& env, std::chrono::milliseconds timeout);
// Runs `ip ARGS...`; throws LabError with ip's message when it fails.
void ip(const std::vector<std::string>& args);
// Runs `ip ARGS...` and returns what it said, failed or not.
CommandResult ipCapture(const std::vector<std::string>& args);
// Same, but a failure is only returned (for cleanup, where the thing may be gone already).
bool ipQuiet(const std::vector<std::string>& args);

// Named network namespaces (/run/netns).
std::vector<std::string> listNetns();
bool netnsExists(const std::string& name);

// The environment a lab process gets: ours without what would make a daemon talk to systemd
// or to another run dir, plus extra ("NAME=VALUE", these win).
std::vector<std::string> labEnvironment(const std::vector<std::string>& extra);

// Starts argv in netns with cwd and stdout+stderr appended to outFile, stdin /dev/null, in a
// new session. Returns its pid (it is our child).
pid_t spawnInNetns(const std::string& netns, const std::vector<std::string>& argv,
                   const std::vector<std::string>& env, const std::string& cwd,
                   const std::string& outFile);
// Waits for our child with a bound; its exit code, 128+signal, or nothing on timeout.
std::optional<int> waitChild(pid_t pid, std::chrono::milliseconds timeout);
// Runs argv (searched in PATH of env) in netns with our stdin, stdout and stderr; returns its
// exit code (128+signal when a signal ended it).
int execInNetns(const std::string& netns, const std::vector<std::string>& argv,
                const std::vector<std::string>& env);

// Field 22 of /proc/<pid>/stat (start time in clock ticks since boot), nothing if no such pid.
std::optional<uint64_t> startTime(pid_t pid);
// Whether pid is still the process that had startTime (not a later one reusing the pid).
bool sameProcess(pid_t pid, uint64_t startTime);
// Every process whose network namespace is the named one.
std::vector<pid_t> processesIn(const std::string& netns);
// Every process whose network namespace is the one bound at path (a task's sandbox that
// overlayd bind-mounted under a node's run dir); none if path is not a namespace.
std::vector<pid_t> processesInNetnsFile(const std::string& path);
// SIGKILLs the pids and waits (bounded) until they are gone; returns those still there.
std::vector<pid_t> killAll(const std::vector<pid_t>& pids, std::chrono::milliseconds bound);

// The mount points at or under dir (from /proc/self/mountinfo), deepest first.
std::vector<std::string> mountsUnder(const std::string& dir);
// Detaches the mount at path (umount2 MNT_DETACH); false with errno set when it fails.
bool detachMount(const std::string& path);

std::string readFile(const std::string& path);
std::string tail(const std::string& text, size_t lines);

}  // namespace shoal::lab
