#pragma once
// The node dir (docs/cluster.md "The node dir"): the node's swarm identity, shared by the
// daemons of one node. It holds the node's Curve25519 key pair (node.key, made on first use)
// and, once the node is in a swarm, node.json: node id, cluster id, role, certificate, the
// CA's public form, this node's addresses and the managers it knows. Whoever performs `swarm
// init` (raftd), a join or a role change (agentd) writes it, atomically; the other daemons
// read it at start and on a control Reload.
//
// Default place: <dirname of --state-dir>/node, i.e. /var/lib/shoal/node (Daemon::nodeDir).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/curve.h"
#include "common/result.h"

namespace shoal::node {

// Port layout (docs/cluster.md "Ports"): everything derives from the dispatcher's port.
inline constexpr uint16_t kDefaultPort = 2377;
inline uint16_t raftPort(uint16_t dispatcherPort) { return dispatcherPort + 1; }
inline uint16_t helloPort(uint16_t dispatcherPort) { return dispatcherPort + 2; }

// "host:port" (IPv6 hosts in brackets).
std::string joinHostPort(std::string_view host, uint16_t port);

struct HostPort {
  std::string host;
  uint16_t port = kDefaultPort;
};
// Parses host[:port] (port defaults to defaultPort; "[v6]:port" accepted). When `text` is
// an interface name that exists here and resolveInterfaces is set, host is its first IPv4
// address (as `docker swarm init --advertise-addr eth0`). Errors say what was wrong.
Result<HostPort> parseAddr(std::string_view text, uint16_t defaultPort = kDefaultPort,
                           bool resolveInterfaces = true);
// The local address this host uses to reach `remoteHost` (a connected UDP socket's name):
// the advertise address a joiner uses when none is given.
Result<std::string> sourceAddressFor(std::string_view remoteHost);

struct Manager {
  std::string nodeId;
  std::string addr;       // host:port of its dispatcher
  std::string publicKey;  // Z85
};

struct RaftIdentity {
  uint64_t id = 0;
  uint64_t clusterId = 0;  // the raft cluster id (raft.fbs Message.cluster_id)
};

struct NodeConfig {
  std::string nodeId;
  std::string clusterId;
  bool manager = false;
  std::vector<uint8_t> certificate;  // identity.fbs SignedCertificate
  std::vector<uint8_t> ca;           // identity.fbs CAKey, public form
  std::string advertiseHost;         // where others reach this node
  std::string listenHost = "0.0.0.0";
  uint16_t port = kDefaultPort;      // dispatcher; raft = port+1, hello = port+2
  std::vector<Manager> managers;     // the last list the managers sent
  std::optional<RaftIdentity> raft;  // managers

  std::string dispatcherAddr() const { return joinHostPort(advertiseHost, port); }
  std::string raftAddr() const { return joinHostPort(advertiseHost, raftPort(port)); }
};

class NodeDir {
 public:
  // Creates the dir (0700) when missing and loads or makes node.key.
  static Result<NodeDir> open(const std::string& path);

  const std::string& path() const { return path_; }
  const curve::KeyPair& key() const { return key_; }

  // node.json, or nothing when the node is not in a swarm. A damaged file is an error that
  // names it (never taken for "not in a swarm").
  Result<std::optional<NodeConfig>> load() const;
  // Writes node.json atomically (temporary file, fsync, rename, fsync of the dir).
  Status save(const NodeConfig& config) const;
  // Forgets the swarm (swarm leave): removes node.json and node.key. As in Swarm, a node that
  // left and joins again is a new node: the next open() makes a new key, which is what the
  // daemons use from then on (they open the dir again when they bind or join).
  Status clear() const;

 private:
  NodeDir(std::string path, curve::KeyPair key) : path_(std::move(path)), key_(std::move(key)) {}
  std::string path_;
  curve::KeyPair key_;
};

}  // namespace shoal::node
