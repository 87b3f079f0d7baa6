#pragma once
// A throw-away raftd cluster on loopback for benchmarks: N raftd processes with their own
// state, run and node dirs under one temp dir, formed as `swarm init` and manager joins form
// one (docs/cluster.md): InitRequest on the first raftd; for each other, its manager Node and
// AddMember on the first, then JoinRaftRequest to it with the first as its peer (new members
// come in as learners and are promoted once caught up). Peer links run on CURVE.
//
// Every process is ours and is stopped by its PID: by stop(), by the destructor (also when a
// benchmark fails or is interrupted), and by the kernel if the bench itself dies
// (PR_SET_PDEATHSIG), so no raftd outlives a run.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"

namespace shoal::bench {

// Set by SIGINT/SIGTERM; every wait of the bench checks it.
void installInterruptHandlers();
bool interrupted();

struct ClusterOptions {
  int nodes = 3;
  std::string raftd;            // path of the raftd executable
  int tickMs = 100;             // DESIGN.md §13 defaults
  int electionTicks = 10;
  bool keep = false;            // keep the temp dir (state, logs) after the run
  std::string parentDir = "/tmp";  // where the temp dir goes (/dev/shm: no disk flushes)
  std::string logLevel = "info";
  std::vector<std::string> extraArgs;  // appended to every raftd's command line
};

class LocalCluster {
 public:
  struct Member {
    pid_t pid = -1;
    uint16_t port = 0;     // its dispatcher port P (nothing listens there in a bench)
    std::string address;   // 127.0.0.1:P+1, its raft peer port
    std::string stateDir;
    std::string runDir;
    std::string nodeDir;   // its node.key (and node.json, written for a joiner)
    std::string logFile;
    std::string nodeId;    // hex raft id, as Status reports it; known once it is a member
    bool running = false;
    bool frozen = false;   // SIGSTOPped: alive, connections open, answering nothing
  };

  explicit LocalCluster(ClusterOptions options);
  ~LocalCluster();
  LocalCluster(const LocalCluster&) = delete;
  LocalCluster& operator=(const LocalCluster&) = delete;

  // Starts the members and returns once all of them are voters and agree on one leader.
  Status start(std::chrono::seconds timeout = std::chrono::seconds(30));

  // The store API endpoint of member i (ipc://<run-dir>/raftd.sock).
  std::string endpoint(size_t i) const;
  // raftd's Status JSON over the store protocol.
  Result<nlohmann::json> status(size_t i, std::chrono::milliseconds timeout = std::chrono::milliseconds(2000)) const;
  // The index of the member that reports itself leader and is the leader of every running
  // member's view (frozen ones are not asked, nor those not in the cluster yet); an error
  // while they disagree or no one leads.
  Result<size_t> leader() const;
  // Waits until a running member leads with all running members agreeing (and, with
  // `voters`, with that many voters in its configuration).
  Result<size_t> waitLeader(std::chrono::milliseconds timeout, size_t voters = 0) const;

  // SIGKILL and reap member i (no chance to flush anything: a crash).
  void kill(size_t i);
  // SIGSTOP member i: a hung or cut-off process whose TCP connections stay open, so peers
  // learn of it only from silence. stop() kills it.
  void freeze(size_t i);
  // VmHWM of member i from /proc/<pid>/status, 0 if unknown. It counts the LMDB file pages
  // mapped in, which the kernel can drop at will.
  uint64_t peakRss(size_t i) const;
  // RssAnon of member i now: the memory that is the process's own (heap, stacks).
  uint64_t anonRss(size_t i) const;
  // CPU seconds (user + system, all threads) member i has used so far, 0 if unknown.
  double cpuSeconds(size_t i) const;
  // SIGTERM every running member, SIGKILL what is left after a grace period, reap them all.
  void stop();

  size_t size() const { return members_.size(); }
  const Member& member(size_t i) const { return members_[i]; }
  const std::string& dir() const { return dir_; }

 private:
  Status spawn(size_t i);
  Status waitAnswering(size_t i, std::chrono::steady_clock::time_point deadline);
  // swarm init on member 0; then member i joined through member 0.
  Status init();
  Status join(size_t i);

  ClusterOptions options_;
  std::string dir_;
  std::vector<Member> members_;
};

// CPU seconds (user + system, all threads) this process has used so far.
double selfCpuSeconds();
// Jiffies of the whole machine from /proc/stat: {busy, total}, for the share of the CPUs in use.
std::pair<uint64_t, uint64_t> machineJiffies();

// A port on 127.0.0.1 the kernel reports free (bound to port 0, then released).
Result<uint16_t> freeLoopbackPort();
// A free port on 127.0.0.1 below the kernel's ephemeral range (ip_local_port_range), for a
// port bound long after it is chosen: no outgoing connection takes it meanwhile.
Result<uint16_t> freeRaftPort();
// raftd next to this executable in a build tree, else the installed one.
std::string defaultRaftdPath();

}  // namespace shoal::bench
