#pragma once
// A lab: a shoal cluster of many nodes on one machine (DESIGN.md §10, docs/lab.md). This is
// its model and its state file, /var/lib/shoal-lab/<name>/lab.json: which nodes it has, their
// network namespaces and addresses, and the daemons shoal-lab started, each with what tells
// it apart from any later process that reuses its pid (the start time in /proc/<pid>/stat).

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace shoal::lab {

// Every failure a user should read; main prints it and exits 1.
struct LabError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline constexpr const char* kLabRoot = "/var/lib/shoal-lab";
inline constexpr const char* kDefaultName = "lab";
// The lab's underlay: 198.18.<index>.0/24 for lab number <index> (0..255), so labs never share
// a subnet; 198.19.0.0/16 is left for the lab clusters' default address pool (DESIGN.md §10).
inline constexpr int kMaxLabs = 256;
inline constexpr int kMaxManagers = 99;  // m<i> is .<i>
inline constexpr int kMaxWorkers = 150;  // w<i> is .<100+i>
inline constexpr int kDispatcherPort = 2377;  // `swarm join` goes here
inline constexpr int kRaftPort = 2378;
// The lab's registry (shoal-lab up --registry): Debian's docker-registry in the hub namespace,
// on the bridge's own address 198.18.<index>.254, plain HTTP (every agentd is told to trust it
// with --insecure-registry).
inline constexpr int kRegistryHost = 254;
inline constexpr int kRegistryPort = 5000;
inline constexpr const char* kRegistryBinary = "/usr/bin/docker-registry";

// The daemons of a node, in the order they are started (DESIGN.md §1). Every node runs all
// of them, as every Swarm node runs dockerd: a worker's raftd, schedulerd and dispatcherd stay
// idle until the node is promoted.
const std::vector<std::string>& allDaemons();

struct DaemonRecord {
  std::vector<std::string> argv;  // how it is started, also by `start`
  pid_t pid = 0;                  // 0: not running as far as the lab knows
  uint64_t startTime = 0;         // field 22 of /proc/<pid>/stat when it was started
};

// The lab's registry: where it listens and its process (docker-registry runs in the foreground,
// so the process shoal-lab started is the registry).
struct Registry {
  std::string address;  // host:port, as image references and --insecure-registry name it
  DaemonRecord process;
};

struct Node {
  std::string name;  // m1.., w1..; also its hostname in the swarm (agentd --hostname)
  std::string role;  // manager | worker: as the lab made it (promote/demote do not change it)
  std::string netns;
  std::string address;  // without the prefix length
  std::string hubPort;  // its veth's end in the hub namespace
  int partition = 0;    // 0: on the lab's bridge; n: cut off with the others of group n
  int fakeNodes = 0;    // > 0: its agentd poses as this many fake nodes (agentd --fake-nodes)
  std::map<std::string, DaemonRecord> daemons;

  bool manager() const { return role == "manager"; }
};

struct Lab {
  std::string name;
  int index = 0;
  std::string dir;
  std::string hubNetns;
  std::map<std::string, std::string> binaries;  // daemon or "shoal" -> path
  std::vector<Node> nodes;
  // Added to every agentd's command line (shoal-lab up --executor, --fake-delay).
  std::vector<std::string> agentdArgs;
  std::optional<Registry> registry;  // up --registry

  std::string registryDir() const { return dir + "/registry"; }  // config.yml, data/, registry.log
  std::string registryHost() const;  // 198.18.<index>.254

  std::string subnet() const;  // 198.18.<index>.0/24
  std::string nodeDir(const Node& n) const { return dir + "/" + n.name; }
  std::string runDir(const Node& n) const { return nodeDir(n) + "/run"; }
  // The node's swarm identity (node.key, node.json), shared by its daemons (--node-dir).
  std::string identityDir(const Node& n) const { return nodeDir(n) + "/node"; }
  std::string stateDir(const Node& n, const std::string& daemon) const {
    return nodeDir(n) + "/state/" + daemon;
  }
  std::string logFile(const Node& n, const std::string& daemon) const {
    return nodeDir(n) + "/log/" + daemon + ".log";
  }
  Node& node(const std::string& name);
  const Node& node(const std::string& name) const;

  nlohmann::json toJson() const;
  static Lab fromJson(const nlohmann::json& j);
};

// Lab names: 1-20 of [a-z0-9-], starting with a letter or digit; they make the netns names
// shoal-<name>-<node> and the lab's dir.
void checkName(const std::string& name);
std::string labDir(const std::string& name);
std::string stateFile(const std::string& name);
std::string netnsPrefix(const std::string& name);  // "shoal-<name>-"
// Whether netns is one of lab name's: shoal-<name>-hub, -m<N> or -w<N>, exactly, so that lab
// "a" never claims lab "a-b"'s namespaces.
bool ownsNetns(const std::string& name, const std::string& netns);

// A new lab's description: nodes, addresses, names. Nothing is created.
Lab plan(const std::string& name, int index, int managers, int workers);
// docker-registry's config.yml for a lab registry listening on address (host:port) and storing
// under dataDir: no auth, deletes allowed, no health poller, logs as text.
std::string registryConfig(const std::string& address, const std::string& dataDir);
// Whether ref is a repository[:tag] that `shoal-lab push` may name in the lab's registry: lower
// case path components of [a-z0-9._-] separated by '/', an optional tag of [A-Za-z0-9_.-]
// (at most 128, not starting with '.' or '-'); no registry host, no digest. Empty when fine,
// else what is wrong.
std::string checkRepositoryRef(const std::string& ref);

// Adds to a planned lab one more worker, w<workers + 1>, whose agentd poses as fakeNodes
// nodes of the swarm (a scale test's many nodes on one process).
void addFakeHost(Lab& lab, int fakeNodes);

std::optional<Lab> load(const std::string& name);
void save(const Lab& lab);
// Every lab with a state file.
std::vector<Lab> loadAll();

}  // namespace shoal::lab
