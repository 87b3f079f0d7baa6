#pragma once
// What agentd accepts from a manager (schemas/dispatch.fbs): every field of a hello, join or
// session reply is checked here before the node trusts or stores it. Pure: the time is the
// caller's.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/curve.h"
#include "common/identity.h"
#include "common/node_dir.h"
#include "common/result.h"
#include "dispatch_generated.h"

namespace shoal::agentd {

// The bytes of a [ubyte] field, empty when it is absent.
std::span<const uint8_t> bytesOf(const flatbuffers::Vector<uint8_t>* v);

// A manager entry (managers lists, redirects): a node id, an address and a CURVE key.
Result<node::Manager> managerFrom(const dispatch::Manager* m);
Result<std::vector<node::Manager>> managersFrom(
    const flatbuffers::Vector<flatbuffers::Offset<dispatch::Manager>>* list);

// What a new manager's raftd needs (swarm.fbs JoinRaftRequest is built from it).
struct RaftPeer {
  uint64_t raftId = 0;
  std::string addr;       // host:port of its raft peer port
  std::string publicKey;  // Z85
};
struct RaftJoinInfo {
  uint64_t raftId = 0;
  uint64_t raftClusterId = 0;
  std::vector<RaftPeer> peers;
};
Result<RaftJoinInfo> raftJoinFrom(const dispatch::RaftJoin* r);

// The node's certificate as a manager sent it: signed by the cluster's CA, valid now, for
// this node's key and (when expectedNodeId is not empty) this node id.
Result<identity::Certificate> acceptCertificate(const identity::ClusterCA& ca,
                                                std::span<const uint8_t> bytes,
                                                const curve::KeyPair& nodeKey,
                                                std::string_view expectedNodeId, int64_t now);

// The manager a joiner may trust, from its hello reply (docs/cluster.md "swarm join" 1):
// the CA it showed is the token's, and its certificate is a manager's signed by that CA.
struct TrustedManager {
  identity::ClusterCA ca;
  std::string nodeId;
  std::string publicKey;  // Z85: the server key of its dispatcher
};
// helloAddr names the endpoint in errors.
Result<TrustedManager> checkHello(const dispatch::HelloReply* reply,
                                  const identity::ParsedJoinToken& token,
                                  std::string_view helloAddr, int64_t now);

// Lowercase hex of the first bytes of a digest: enough to tell two CAs apart in a message.
std::string shortDigest(const identity::Digest& digest);

}  // namespace shoal::agentd
