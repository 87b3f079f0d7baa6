#include "services/agentd/manager_replies.h"

#include <cstdio>

namespace shoal::agentd {
namespace {

std::string str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }

// An address a manager sent: host:port, never an interface name of this host.
Status checkAddr(const std::string& addr, std::string_view what) {
  if (addr.empty()) return Error{std::string(what) + " has no address"};
  auto parsed = node::parseAddr(addr, 0, false);
  if (!parsed) return Error{std::string(what) + ": " + parsed.error().message};
  if (parsed->port == 0) return Error{std::string(what) + ": address '" + addr + "' has no port"};
  return {};
}

}  // namespace

std::span<const uint8_t> bytesOf(const flatbuffers::Vector<uint8_t>* v) {
  if (!v) return {};
  return {v->data(), v->size()};
}

Result<node::Manager> managerFrom(const dispatch::Manager* m) {
  if (!m) return Error{"a manager entry is empty"};
  node::Manager out{str(m->node_id()), str(m->addr()), str(m->curve_public_key())};
  std::string what = "manager " + (out.nodeId.empty() ? std::string("(no id)") : out.nodeId);
  if (out.nodeId.empty()) return Error{what + " has no node id"};
  if (auto st = checkAddr(out.addr, what); !st) return st.error();
  if (!curve::isValidKey(out.publicKey))
    return Error{what + " has no valid CURVE key (40 Z85 characters)"};
  return out;
}

Result<std::vector<node::Manager>> managersFrom(
    const flatbuffers::Vector<flatbuffers::Offset<dispatch::Manager>>* list) {
  std::vector<node::Manager> out;
  if (!list) return out;
  for (const auto* m : *list) {
    auto manager = managerFrom(m);
    if (!manager) return manager.error();
    out.push_back(std::move(manager).value());
  }
  return out;
}

Result<RaftJoinInfo> raftJoinFrom(const dispatch::RaftJoin* r) {
  if (!r) return Error{"the reply has no raft membership for this manager"};
  RaftJoinInfo out{r->raft_id(), r->raft_cluster_id(), {}};
  if (out.raftId == 0) return Error{"the raft membership has raft id 0"};
  if (out.raftClusterId == 0) return Error{"the raft membership has raft cluster id 0"};
  size_t n = r->peers_raft_ids() ? r->peers_raft_ids()->size() : 0;
  size_t addrs = r->peers_addrs() ? r->peers_addrs()->size() : 0;
  size_t keys = r->peers_keys() ? r->peers_keys()->size() : 0;
  if (addrs != n || keys != n)
    return Error{"the raft membership names " + std::to_string(n) + " peer ids, " +
                 std::to_string(addrs) + " addresses and " + std::to_string(keys) + " keys"};
  for (size_t i = 0; i < n; ++i) {
    RaftPeer p{r->peers_raft_ids()->Get(i), r->peers_addrs()->Get(i)->str(),
               r->peers_keys()->Get(i)->str()};
    std::string what = "raft peer " + std::to_string(p.raftId);
    if (p.raftId == 0 || p.raftId == out.raftId)
      return Error{"the raft membership names a peer with raft id " + std::to_string(p.raftId)};
    if (auto st = checkAddr(p.addr, what); !st) return st.error();
    if (!curve::isValidKey(p.publicKey)) return Error{what + " has no valid CURVE key"};
    out.peers.push_back(std::move(p));
  }
  return out;
}

Result<identity::Certificate> acceptCertificate(const identity::ClusterCA& ca,
                                                std::span<const uint8_t> bytes,
                                                const curve::KeyPair& nodeKey,
                                                std::string_view expectedNodeId, int64_t now) {
  if (bytes.empty()) return Error{"no certificate"};
  if (bytes.size() > identity::kMaxCertificateBytes)
    return Error{"a certificate of " + std::to_string(bytes.size()) + " bytes (" +
                 std::to_string(identity::kMaxCertificateBytes) + " at most)"};
  auto cert = ca.verify(bytes, now);
  if (!cert) return Error{"the certificate does not verify: " + cert.error().message,
                          cert.error().code};
  if (identity::curveKeyToZ85(cert->curvePublicKey) != nodeKey.publicKey)
    return Error{"the certificate is for another node's key, not this node's"};
  if (!expectedNodeId.empty() && cert->nodeId != expectedNodeId)
    return Error{"the certificate is for node " + cert->nodeId + ", not " +
                 std::string(expectedNodeId)};
  return cert;
}

std::string shortDigest(const identity::Digest& digest) {
  std::string out;
  char buf[3];
  for (size_t i = 0; i < 6; ++i) {
    std::snprintf(buf, sizeof buf, "%02x", digest[i]);
    out += buf;
  }
  return out;
}

Result<TrustedManager> checkHello(const dispatch::HelloReply* reply,
                                  const identity::ParsedJoinToken& token,
                                  std::string_view helloAddr, int64_t now) {
  std::string who = "the manager at " + std::string(helloAddr);
  if (!reply || !reply->ca() || reply->ca()->size() == 0)
    return Error{who + " sent no CA in its hello; is it a shoal manager?"};
  if (reply->ca()->size() > identity::kMaxCertificateBytes)
    return Error{who + " sent a CA of " + std::to_string(reply->ca()->size()) + " bytes"};
  auto ca = identity::ClusterCA::load({reply->ca()->data(), reply->ca()->size()});
  if (!ca) return Error{who + " sent a CA that cannot be read: " + ca.error().message};
  if (!identity::tokenMatchesCA(token, ca->publicKey()))
    return Error{"the join token was made for another swarm (its CA digest " +
                 shortDigest(token.caDigest) + "…, the manager at " + std::string(helloAddr) +
                 " has " + shortDigest(ca->digest()) +
                 "…); get a token from `shoal swarm join-token` on a manager of this swarm"};
  auto bytes = reply->certificate();
  if (!bytes || bytes->size() == 0) return Error{who + " sent no certificate in its hello"};
  if (bytes->size() > identity::kMaxCertificateBytes)
    return Error{who + " sent a certificate of " + std::to_string(bytes->size()) + " bytes"};
  auto cert = ca->verify({bytes->data(), bytes->size()}, now);
  if (!cert)
    return Error{who + " showed a certificate that its CA does not vouch for: " +
                 cert.error().message +
                 (cert.error().code == identity::kCertNotYetValid ||
                          cert.error().code == identity::kCertExpired
                      ? " (are both clocks right?)"
                      : "")};
  if (cert->role != identity::Role::Manager)
    return Error{std::string(helloAddr) + " is a worker (node " + cert->nodeId +
                 "), not a manager; join at a manager's address"};
  TrustedManager out{ca->verifierOnly(), cert->nodeId,
                     identity::curveKeyToZ85(cert->curvePublicKey)};
  return out;
}

}  // namespace shoal::agentd
