#pragma once
// Node identity (DESIGN.md §4; the format is in docs/identity.md and schemas/identity.fbs).
//
// The cluster CA is an Ed25519 key pair made at `swarm init`. It signs one certificate per
// node, binding the node's id and role to its Curve25519 key (the key its CURVE links use).
// A node joins with a join token in Swarm's shape, SWMTKN-1-<CA digest>-<secret>: the digest
// lets the joiner check the CA a manager shows it, the secret lets the manager admit the node
// in the role the token was made for. Pure code: time and randomness come from the caller.

#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace shoal::identity {

enum class Role : std::uint8_t { Worker = 0, Manager = 1 };  // objects.fbs NodeRole's values
std::string_view roleName(Role role);                        // "worker", "manager"

using SigningPublicKey = std::array<std::uint8_t, 32>;  // Ed25519, the CA's
using CurvePublicKey = std::array<std::uint8_t, 32>;    // Curve25519, a node's
using Digest = std::array<std::uint8_t, 32>;            // SHA-256

// Fills its argument with random bytes. systemRandom() is libsodium's randombytes; tests
// pass a seeded generator so that a run replays exactly.
using FillRandom = std::function<void(std::span<std::uint8_t>)>;
FillRandom systemRandom();

// Node keys are kept Z85-encoded (common/curve.h KeyPair); certificates carry the raw bytes.
Result<CurvePublicKey> curveKeyFromZ85(std::string_view z85);
std::string curveKeyToZ85(const CurvePublicKey& key);

// What a verified certificate says.
struct Certificate {
  std::string nodeId;
  Role role = Role::Worker;
  CurvePublicKey curvePublicKey{};
  std::int64_t notBefore = 0;  // Unix seconds
  std::int64_t notAfter = 0;   // Unix seconds, > notBefore
  std::string clusterId;
  std::uint64_t serial = 0;
};

// The Error::code that verify() returns, so that a caller can tell a certificate to renew
// from one to refuse.
inline constexpr int kCertMalformed = EBADMSG;        // not a certificate at all
inline constexpr int kCertNotTrusted = EKEYREJECTED;  // another CA, bad signature, another cluster
inline constexpr int kCertExpired = EKEYEXPIRED;      // renew it
inline constexpr int kCertNotYetValid = EAGAIN;       // a clock is behind; retry later

// Certificates and CA keys from outside are refused beyond this size (a certificate is
// about 300 bytes).
inline constexpr std::size_t kMaxCertificateBytes = 4096;

class ClusterCA {
 public:
  // A new CA for the cluster `clusterId` (an id of common/ids.h).
  static Result<ClusterCA> create(std::string_view clusterId);
  // A CA from saveWithSecret() or savePublic() bytes; checks that the secret, when present,
  // belongs to the public key.
  static Result<ClusterCA> load(std::span<const std::uint8_t> bytes);

  ClusterCA(const ClusterCA& other) = default;
  ClusterCA& operator=(const ClusterCA& other) = default;
  ClusterCA(ClusterCA&& other) noexcept;
  ClusterCA& operator=(ClusterCA&& other) noexcept;
  ~ClusterCA();

  // The store's form of the CA (schemas/identity.fbs CAKey). The secret form is for the
  // managers' store only, encrypted when the cluster is autolocked (docs/identity.md); every
  // other place gets the public form.
  std::vector<std::uint8_t> saveWithSecret() const;
  std::vector<std::uint8_t> savePublic() const;
  // The same CA without its secret: it verifies but cannot issue.
  ClusterCA verifierOnly() const;

  const std::string& clusterId() const { return clusterId_; }
  const SigningPublicKey& publicKey() const { return publicKey_; }
  // SHA-256 of the public key: the digest that join tokens carry and certificates name.
  const Digest& digest() const { return digest_; }
  bool canSign() const { return seed_.has_value(); }

  // A signed certificate for a node. Swarm backdates by an hour for clock skew; a caller that
  // wants that passes notBefore = now - 1h. Errors: this CA cannot sign, bad node id,
  // validFor not positive, not_after beyond 64-bit time.
  Result<std::vector<std::uint8_t>> issue(std::string_view nodeId, Role role,
                                          const CurvePublicKey& curvePublicKey,
                                          std::int64_t notBefore, std::chrono::seconds validFor,
                                          std::uint64_t serial) const;

  // The certificate in `bytes` if this CA signed it for this cluster and it is valid at `now`
  // (Unix seconds, notBefore <= now < notAfter). Errors (codes above) name what is wrong.
  Result<Certificate> verify(std::span<const std::uint8_t> bytes, std::int64_t now) const;

 private:
  ClusterCA(std::string clusterId, const SigningPublicKey& publicKey,
            std::optional<std::array<std::uint8_t, 32>> seed);
  void wipe();

  std::string clusterId_;
  SigningPublicKey publicKey_{};
  Digest digest_{};
  std::optional<std::array<std::uint8_t, 32>> seed_;  // Ed25519 seed; the secret key
};

// When a node should renew `cert` (Unix seconds): a uniformly random second between 50 %
// and 80 % of its life, as Swarm does, so that the nodes of a cluster joined together do not
// all renew at once. A caller past that point renews now.
std::int64_t renewAt(const Certificate& cert, const FillRandom& random);

// Join tokens, Swarm's version 1 (SwarmKit ca/config.go): "SWMTKN-1-" + the CA digest as a
// base36 number of 50 digits, "-" + 16 random bytes as a base36 number of 25 digits, both
// zero-padded and in lowercase.
inline constexpr std::string_view kJoinTokenPrefix = "SWMTKN-";
inline constexpr std::size_t kTokenDigestLength = 50;
inline constexpr std::size_t kTokenSecretLength = 25;
inline constexpr std::size_t kJoinTokenLength =
    9 + kTokenDigestLength + 1 + kTokenSecretLength;  // 85

struct ParsedJoinToken {
  int version = 1;
  Digest caDigest{};   // SHA-256 of the CA public key
  std::string secret;  // its 25 base36 characters, as written
};

// A new token for `ca` with a fresh random secret. Swarm keeps one per role (the text does not
// say the role; the manager knows it by which stored token matches), see JoinTokens.
std::string makeJoinToken(const ClusterCA& ca, const FillRandom& random);
// Errors start "not a swarm join token: " and say which part is wrong.
Result<ParsedJoinToken> parseJoinToken(std::string_view text);
// Whether the token was made for the CA whose public key a manager showed (the joiner's
// check before it trusts that manager).
bool tokenMatchesCA(const ParsedJoinToken& token, const SigningPublicKey& caPublicKey);

// The cluster's two current tokens, as the managers keep them; rotating one replaces it.
struct JoinTokens {
  std::string worker;
  std::string manager;

  static JoinTokens make(const ClusterCA& ca, const FillRandom& random);
  void rotate(Role role, const ClusterCA& ca, const FillRandom& random);
  // The role that `presented` admits, or none. Compared in constant time, both tokens
  // always, so timing tells an attacker nothing about either secret.
  std::optional<Role> admits(std::string_view presented) const;
};

}  // namespace shoal::identity
