#include "common/identity.h"

#include <flatbuffers/flatbuffers.h>
#include <sodium.h>
#include <zmq.h>

#include <algorithm>
#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <utility>

#include "common/ids.h"
#include "common/units.h"
#include "identity_generated.h"

namespace shoal::identity {
namespace {

constexpr std::string_view kAlphabet = "0123456789abcdefghijklmnopqrstuvwxyz";

// What the CA signs is this context followed by the certificate's bytes, so that a signature
// made by the CA key for anything else (a later message kind) can never pass as a certificate.
constexpr std::string_view kSignatureContext = "shoal node certificate v1";

// CAKey buffers carry their own identifier: the schema's "SHID" names SignedCertificate.
constexpr const char* kCAKeyIdentifier = "SHCA";

// A certificate is a flat table of scalars, strings and byte vectors: no deeper, no more tables.
constexpr unsigned kMaxDepth = 8;
constexpr unsigned kMaxTables = 8;

void ensureSodium() {
  static const bool initialised = [] {
    if (sodium_init() < 0) {
      // Without a working random source no key can be safe; this is not an input error.
      std::fputs("shoal: libsodium failed to initialise; cannot make or check keys\n", stderr);
      std::abort();
    }
    return true;
  }();
  (void)initialised;
}

Digest sha256(std::span<const std::uint8_t> bytes) {
  ensureSodium();
  Digest out;
  crypto_hash_sha256(out.data(), bytes.data(), bytes.size());
  return out;
}

// `bigEndian` as a base36 number of exactly `width` digits, zero-padded (Go's %0*s of
// big.Int.Text(36), as SwarmKit writes its tokens). The width must hold the number.
std::string toBase36(std::span<const std::uint8_t> bigEndian, std::size_t width) {
  std::vector<std::uint8_t> n(bigEndian.begin(), bigEndian.end());
  std::string out(width, '0');
  for (std::size_t i = width; i-- > 0;) {
    unsigned remainder = 0;
    for (std::uint8_t& byte : n) {
      unsigned current = remainder * 256 + byte;
      byte = static_cast<std::uint8_t>(current / 36);
      remainder = current % 36;
    }
    out[i] = kAlphabet[remainder];
  }
  assert(std::all_of(n.begin(), n.end(), [](std::uint8_t b) { return b == 0; }));
  return out;
}

int base36Digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'z') return c - 'a' + 10;
  return -1;
}

// The base36 digits of `text` (all checked) into `out` as a big-endian number; false when the
// number does not fit.
bool fromBase36(std::string_view text, std::span<std::uint8_t> out) {
  std::fill(out.begin(), out.end(), 0);
  for (char c : text) {
    unsigned carry = static_cast<unsigned>(base36Digit(c));
    for (std::size_t i = out.size(); i-- > 0;) {
      unsigned current = out[i] * 36u + carry;
      out[i] = static_cast<std::uint8_t>(current & 0xff);
      carry = current >> 8;
    }
    if (carry != 0) return false;
  }
  return true;
}

std::string formatTime(std::int64_t unixSeconds) {
  std::time_t t = static_cast<std::time_t>(unixSeconds);
  std::tm tm{};
  char text[64];
  if (!gmtime_r(&t, &tm) || std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
    return "Unix time " + std::to_string(unixSeconds);
  return text;
}

std::vector<std::uint8_t> signedMessage(std::span<const std::uint8_t> certificate) {
  std::vector<std::uint8_t> message(kSignatureContext.size() + certificate.size());
  std::copy(kSignatureContext.begin(), kSignatureContext.end(), message.begin());
  std::copy(certificate.begin(), certificate.end(), message.begin() + kSignatureContext.size());
  return message;
}

template <class T>
bool hasBytes(const flatbuffers::Vector<T>* v, std::size_t size) {
  return v && v->size() == size;
}

Error malformed(const std::string& why) {
  return Error{"not a node certificate: " + why, kCertMalformed};
}

// The NodeCertificate in `bytes` (its own aligned copy), read into a Certificate; checks
// the fields that the verifier cannot (sizes, ranges), not who signed it.
Result<Certificate> readCertificate(std::span<const std::uint8_t> bytes) {
  flatbuffers::Verifier verifier(bytes.data(), bytes.size(), kMaxDepth, kMaxTables);
  if (!verifier.VerifyBuffer<fb::NodeCertificate>(nullptr))
    return malformed("the signed part failed the FlatBuffers verifier");
  const fb::NodeCertificate* cert = flatbuffers::GetRoot<fb::NodeCertificate>(bytes.data());
  Certificate out;
  if (!cert->node_id() || !isValidId(cert->node_id()->string_view()))
    return malformed("its node id is missing or not 25 characters of 0-9 and a-z");
  out.nodeId = cert->node_id()->str();
  if (cert->role() != fb::Role::Worker && cert->role() != fb::Role::Manager)
    return malformed("unknown role " + std::to_string(static_cast<int>(cert->role())));
  out.role = static_cast<Role>(cert->role());
  if (!hasBytes(cert->curve_public_key(), out.curvePublicKey.size()))
    return malformed("its Curve public key is missing or not 32 bytes");
  std::copy(cert->curve_public_key()->begin(), cert->curve_public_key()->end(),
            out.curvePublicKey.begin());
  out.notBefore = cert->not_before();
  out.notAfter = cert->not_after();
  if (out.notAfter <= out.notBefore) return malformed("it ends before it begins");
  if (!cert->cluster_id() || cert->cluster_id()->size() == 0)
    return malformed("it names no cluster");
  out.clusterId = cert->cluster_id()->str();
  out.serial = cert->serial();
  return out;
}

}  // namespace

std::string_view roleName(Role role) { return role == Role::Manager ? "manager" : "worker"; }

FillRandom systemRandom() {
  ensureSodium();
  return [](std::span<std::uint8_t> out) { randombytes_buf(out.data(), out.size()); };
}

Result<CurvePublicKey> curveKeyFromZ85(std::string_view z85) {
  // zmq_z85_decode reads a C string: a NUL inside would end it early and leave bytes unset.
  bool printable = std::all_of(z85.begin(), z85.end(), [](char c) { return c > ' ' && c < 127; });
  CurvePublicKey key;
  std::string text(z85);
  if (z85.size() != 40 || !printable || !zmq_z85_decode(key.data(), text.c_str()))
    return Error{"invalid Curve key " + quoteInput(z85) + ": a key is 40 Z85 characters", EINVAL};
  return key;
}

std::string curveKeyToZ85(const CurvePublicKey& key) {
  char text[41];
  zmq_z85_encode(text, key.data(), key.size());
  return std::string(text, 40);
}

// --- The CA ---

ClusterCA::ClusterCA(std::string clusterId, const SigningPublicKey& publicKey,
                     std::optional<std::array<std::uint8_t, 32>> seed)
    : clusterId_(std::move(clusterId)),
      publicKey_(publicKey),
      digest_(sha256(publicKey)),
      seed_(std::move(seed)) {}

ClusterCA::ClusterCA(ClusterCA&& other) noexcept
    : clusterId_(std::move(other.clusterId_)),
      publicKey_(other.publicKey_),
      digest_(other.digest_),
      seed_(other.seed_) {
  other.wipe();
}

ClusterCA& ClusterCA::operator=(ClusterCA&& other) noexcept {
  if (this != &other) {
    clusterId_ = std::move(other.clusterId_);
    publicKey_ = other.publicKey_;
    digest_ = other.digest_;
    seed_ = other.seed_;
    other.wipe();
  }
  return *this;
}

ClusterCA::~ClusterCA() { wipe(); }

void ClusterCA::wipe() {
  if (seed_) sodium_memzero(seed_->data(), seed_->size());
  seed_.reset();
}

Result<ClusterCA> ClusterCA::create(std::string_view clusterId) {
  if (!isValidId(clusterId))
    return Error{
        "invalid cluster id " + quoteInput(clusterId) + ": an id is 25 characters of 0-9 and a-z",
        EINVAL};
  ensureSodium();
  SigningPublicKey publicKey;
  std::array<std::uint8_t, crypto_sign_SECRETKEYBYTES> secretKey;
  crypto_sign_keypair(publicKey.data(), secretKey.data());
  std::array<std::uint8_t, 32> seed;
  crypto_sign_ed25519_sk_to_seed(seed.data(), secretKey.data());
  sodium_memzero(secretKey.data(), secretKey.size());
  ClusterCA ca(std::string(clusterId), publicKey, seed);
  sodium_memzero(seed.data(), seed.size());
  return ca;
}

Result<ClusterCA> ClusterCA::load(std::span<const std::uint8_t> bytes) {
  const Error damaged{
      "the cluster CA key is damaged or not a CA key (" + std::to_string(bytes.size()) + " bytes)",
      EBADMSG};
  if (bytes.size() < 8 || bytes.size() > kMaxCertificateBytes) return damaged;
  std::vector<std::uint8_t> copy(bytes.begin(), bytes.end());  // aligned for the reads below
  flatbuffers::Verifier verifier(copy.data(), copy.size(), kMaxDepth, kMaxTables);
  if (!verifier.VerifyBuffer<fb::CAKey>(kCAKeyIdentifier)) return damaged;
  const fb::CAKey* key = flatbuffers::GetRoot<fb::CAKey>(copy.data());
  if (!key->cluster_id() || !isValidId(key->cluster_id()->string_view()) ||
      !hasBytes(key->public_key(), 32) || (key->secret_seed() && !hasBytes(key->secret_seed(), 32)))
    return damaged;
  std::string clusterId = key->cluster_id()->str();
  SigningPublicKey publicKey;
  std::copy(key->public_key()->begin(), key->public_key()->end(), publicKey.begin());
  std::optional<std::array<std::uint8_t, 32>> seed;
  if (key->secret_seed()) {
    seed.emplace();
    std::copy(key->secret_seed()->begin(), key->secret_seed()->end(), seed->begin());
    ensureSodium();
    SigningPublicKey derived;
    std::array<std::uint8_t, crypto_sign_SECRETKEYBYTES> secretKey;
    crypto_sign_seed_keypair(derived.data(), secretKey.data(), seed->data());
    sodium_memzero(secretKey.data(), secretKey.size());
    if (sodium_memcmp(derived.data(), publicKey.data(), publicKey.size()) != 0) {
      sodium_memzero(seed->data(), seed->size());
      sodium_memzero(copy.data(), copy.size());
      return Error{"the cluster CA key is damaged: its secret does not belong to its public key",
                   EBADMSG};
    }
  }
  sodium_memzero(copy.data(), copy.size());
  ClusterCA ca(std::move(clusterId), publicKey, seed);
  if (seed) sodium_memzero(seed->data(), seed->size());
  return ca;
}

std::vector<std::uint8_t> ClusterCA::saveWithSecret() const {
  flatbuffers::FlatBufferBuilder fbb(256);
  auto clusterId = fbb.CreateString(clusterId_);
  auto publicKey = fbb.CreateVector(publicKey_.data(), publicKey_.size());
  flatbuffers::Offset<flatbuffers::Vector<std::uint8_t>> seed;
  if (seed_) seed = fbb.CreateVector(seed_->data(), seed_->size());
  fbb.Finish(fb::CreateCAKey(fbb, clusterId, publicKey, seed), kCAKeyIdentifier);
  std::vector<std::uint8_t> out(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
  // The builder's copy of the seed goes with it; wipe it first.
  sodium_memzero(fbb.GetBufferPointer(), fbb.GetSize());
  return out;
}

std::vector<std::uint8_t> ClusterCA::savePublic() const { return verifierOnly().saveWithSecret(); }

ClusterCA ClusterCA::verifierOnly() const {
  return ClusterCA(clusterId_, publicKey_, std::nullopt);
}

Result<std::vector<std::uint8_t>> ClusterCA::issue(std::string_view nodeId, Role role,
                                                   const CurvePublicKey& curvePublicKey,
                                                   std::int64_t notBefore,
                                                   std::chrono::seconds validFor,
                                                   std::uint64_t serial) const {
  if (!seed_)
    return Error{"this copy of cluster " + clusterId_ +
                     "'s CA can only verify: its secret key is not here (only managers hold it)",
                 EPERM};
  if (!isValidId(nodeId))
    return Error{"cannot issue a certificate for node " + quoteInput(nodeId) +
                     ": a node id is 25 characters of 0-9 and a-z",
                 EINVAL};
  std::int64_t notAfter = 0;
  if (validFor.count() <= 0 || __builtin_add_overflow(notBefore, validFor.count(), &notAfter))
    return Error{"cannot issue a certificate valid for " + std::to_string(validFor.count()) +
                     " s from Unix time " + std::to_string(notBefore),
                 EINVAL};

  flatbuffers::FlatBufferBuilder inner(256);
  inner.Finish(fb::CreateNodeCertificate(
      inner, inner.CreateString(nodeId.data(), nodeId.size()), static_cast<fb::Role>(role),
      inner.CreateVector(curvePublicKey.data(), curvePublicKey.size()), notBefore, notAfter,
      inner.CreateString(clusterId_), serial));
  std::span<const std::uint8_t> certificate(inner.GetBufferPointer(), inner.GetSize());

  std::array<std::uint8_t, crypto_sign_BYTES> signature;
  std::array<std::uint8_t, crypto_sign_PUBLICKEYBYTES> publicKey;
  std::array<std::uint8_t, crypto_sign_SECRETKEYBYTES> secretKey;
  crypto_sign_seed_keypair(publicKey.data(), secretKey.data(), seed_->data());
  std::vector<std::uint8_t> message = signedMessage(certificate);
  crypto_sign_detached(signature.data(), nullptr, message.data(), message.size(), secretKey.data());
  sodium_memzero(secretKey.data(), secretKey.size());

  flatbuffers::FlatBufferBuilder outer(512);
  // The nested certificate starts 8-aligned in the outer buffer, so it can be read in place.
  outer.ForceVectorAlignment(certificate.size(), 1, 8);
  auto certificateVector = outer.CreateVector(certificate.data(), certificate.size());
  auto signatureVector = outer.CreateVector(signature.data(), signature.size());
  auto signerVector = outer.CreateVector(digest_.data(), digest_.size());
  fb::FinishSignedCertificateBuffer(
      outer, fb::CreateSignedCertificate(outer, certificateVector, signatureVector, signerVector));
  return std::vector<std::uint8_t>(outer.GetBufferPointer(),
                                   outer.GetBufferPointer() + outer.GetSize());
}

Result<Certificate> ClusterCA::verify(std::span<const std::uint8_t> bytes, std::int64_t now) const {
  if (bytes.size() < 8 || bytes.size() > kMaxCertificateBytes)
    return malformed(std::to_string(bytes.size()) + " bytes (a certificate has 8 to " +
                     std::to_string(kMaxCertificateBytes) + ")");
  std::vector<std::uint8_t> outerCopy(bytes.begin(), bytes.end());  // aligned for the reads
  flatbuffers::Verifier verifier(outerCopy.data(), outerCopy.size(), kMaxDepth, kMaxTables);
  if (!fb::VerifySignedCertificateBuffer(verifier))
    return malformed(
        "it failed the FlatBuffers verifier (truncated, corrupt or not a certificate)");
  const fb::SignedCertificate* signedCert = fb::GetSignedCertificate(outerCopy.data());
  if (!signedCert->certificate() || !hasBytes(signedCert->signature(), crypto_sign_BYTES) ||
      !hasBytes(signedCert->signer_key_id(), digest_.size()))
    return malformed("its certificate, signature or signer key id is missing or of a wrong size");

  Digest signer;
  std::copy(signedCert->signer_key_id()->begin(), signedCert->signer_key_id()->end(),
            signer.begin());
  if (signer != digest_)
    return Error{"the certificate was signed by another CA (digest " + toBase36(signer, 50) +
                     "), not by this cluster's CA (digest " + toBase36(digest_, 50) + ")",
                 kCertNotTrusted};

  std::vector<std::uint8_t> certificate(signedCert->certificate()->begin(),
                                        signedCert->certificate()->end());
  std::vector<std::uint8_t> message = signedMessage(certificate);
  if (crypto_sign_verify_detached(signedCert->signature()->data(), message.data(), message.size(),
                                  publicKey_.data()) != 0)
    return Error{"the certificate was not signed by this cluster's CA (bad signature)",
                 kCertNotTrusted};

  auto cert = readCertificate(certificate);
  if (!cert) return cert.error();
  const std::string who = "the certificate of node " + cert->nodeId;
  if (cert->clusterId != clusterId_)
    return Error{
        who + " is for cluster " + quoteInput(cert->clusterId) + ", not this cluster " + clusterId_,
        kCertNotTrusted};
  if (now < cert->notBefore)
    return Error{who + " is not valid before " + formatTime(cert->notBefore) + " (it is now " +
                     formatTime(now) + "; is a clock behind?)",
                 kCertNotYetValid};
  if (now >= cert->notAfter)
    return Error{who + " expired at " + formatTime(cert->notAfter) + "; renew it", kCertExpired};
  return cert;
}

// --- Renewal ---

std::int64_t renewAt(const Certificate& cert, const FillRandom& random) {
  using Wide = __int128;
  const Wide life = static_cast<Wide>(cert.notAfter) - cert.notBefore;
  if (life <= 0) return cert.notBefore;  // not a verified certificate: renew at once
  const Wide earliest = cert.notBefore + (life * 5 + 9) / 10;  // 50 %, rounded up
  const Wide latest = cert.notBefore + life * 8 / 10;          // 80 %, rounded down
  if (latest < earliest) return static_cast<std::int64_t>(cert.notBefore + life / 2);
  // Uniform over [earliest, latest]: draws below `threshold` would favour small offsets.
  const std::uint64_t span = static_cast<std::uint64_t>(latest - earliest) + 1;
  const std::uint64_t threshold = (0 - span) % span;
  std::uint64_t draw = 0;
  do {
    std::array<std::uint8_t, 8> bytes;
    random(bytes);
    draw = 0;
    for (std::uint8_t b : bytes) draw = draw << 8 | b;
  } while (draw < threshold);
  return static_cast<std::int64_t>(earliest + draw % span);
}

// --- Join tokens ---

std::string makeJoinToken(const ClusterCA& ca, const FillRandom& random) {
  std::array<std::uint8_t, 16> secret;  // SwarmKit's generatedSecretEntropyBytes
  random(secret);
  std::string token = std::string(kJoinTokenPrefix) + "1-" +
                      toBase36(ca.digest(), kTokenDigestLength) + "-" +
                      toBase36(secret, kTokenSecretLength);
  sodium_memzero(secret.data(), secret.size());
  return token;
}

namespace {

Error notAToken(const std::string& why) { return Error{"not a swarm join token: " + why, EINVAL}; }

// Checks one base36 field of a token and decodes it into `out`.
Status readBase36Field(std::string_view field, std::string_view name, std::size_t length,
                       std::span<std::uint8_t> out) {
  if (field.size() != length)
    return notAToken("its " + std::string(name) + " is " + std::to_string(field.size()) +
                     " characters; it should be " + std::to_string(length));
  for (std::size_t i = 0; i < field.size(); ++i)
    if (base36Digit(field[i]) < 0)
      return notAToken("its " + std::string(name) + " has " + quoteInput(field.substr(i, 1)) +
                       " at position " + std::to_string(i + 1) +
                       ", which is not base36 (0-9, a-z)");
  if (!fromBase36(field, out))
    return notAToken("its " + std::string(name) + " is larger than " +
                     std::to_string(out.size() * 8) + " bits");
  return {};
}

}  // namespace

Result<ParsedJoinToken> parseJoinToken(std::string_view text) {
  if (text.empty()) return notAToken("it is empty");
  if (!text.starts_with(kJoinTokenPrefix))
    return notAToken(quoteInput(text) + " does not start with SWMTKN-");
  std::vector<std::string_view> parts;
  for (std::size_t start = 0;;) {
    std::size_t dash = text.find('-', start);
    parts.push_back(text.substr(start, dash - start));
    if (dash == std::string_view::npos) break;
    start = dash + 1;
  }
  if (parts[1] == "2")
    return notAToken("version 2 (Swarm's FIPS tokens) is not supported; shoal makes version 1");
  if (parts[1] != "1")
    return notAToken("unknown version " + quoteInput(parts[1]) + " (shoal reads version 1)");
  if (parts.size() != 4)
    return notAToken(
        "a version 1 token has four parts separated by '-' "
        "(SWMTKN-1-<CA digest>-<secret>); this one has " +
        std::to_string(parts.size()));
  ParsedJoinToken token;
  token.version = 1;
  if (auto ok = readBase36Field(parts[2], "CA digest", kTokenDigestLength, token.caDigest); !ok)
    return ok.error();
  std::array<std::uint8_t, 16> secret;
  auto ok = readBase36Field(parts[3], "secret", kTokenSecretLength, secret);
  sodium_memzero(secret.data(), secret.size());
  if (!ok) return ok.error();
  token.secret = std::string(parts[3]);
  return token;
}

bool tokenMatchesCA(const ParsedJoinToken& token, const SigningPublicKey& caPublicKey) {
  Digest digest = sha256(caPublicKey);
  return sodium_memcmp(digest.data(), token.caDigest.data(), digest.size()) == 0;
}

JoinTokens JoinTokens::make(const ClusterCA& ca, const FillRandom& random) {
  return JoinTokens{makeJoinToken(ca, random), makeJoinToken(ca, random)};
}

void JoinTokens::rotate(Role role, const ClusterCA& ca, const FillRandom& random) {
  (role == Role::Manager ? manager : worker) = makeJoinToken(ca, random);
}

std::optional<Role> JoinTokens::admits(std::string_view presented) const {
  auto same = [presented](const std::string& stored) {
    // The lengths are public (every token is 85 characters); the contents are compared in
    // constant time.
    return !stored.empty() && stored.size() == presented.size() &&
           sodium_memcmp(stored.data(), presented.data(), stored.size()) == 0;
  };
  const bool isWorker = same(worker);
  const bool isManager = same(manager);
  if (isManager) return Role::Manager;
  if (isWorker) return Role::Worker;
  return std::nullopt;
}

}  // namespace shoal::identity
