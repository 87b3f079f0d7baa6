#include "common/identity.h"

#include <doctest/doctest.h>
#include <sodium.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/curve.h"
#include "common/ids.h"
#include "identity_generated.h"

using namespace shoal::identity;
using shoal::newId;

namespace {

constexpr std::int64_t kNow = 1'790'000'000;  // 2026-09-21
constexpr std::chrono::seconds k90Days{90 * 24 * 3600};
constexpr std::string_view kAlphabet = "0123456789abcdefghijklmnopqrstuvwxyz";

FillRandom seeded(std::uint64_t seed) {
  auto engine = std::make_shared<std::mt19937_64>(seed);
  return [engine](std::span<std::uint8_t> out) {
    for (auto& b : out) b = static_cast<std::uint8_t>((*engine)());
  };
}

ClusterCA newCA() { return ClusterCA::create(newId()).value(); }

CurvePublicKey newNodeKey() { return curveKeyFromZ85(shoal::curve::generate().publicKey).value(); }

std::vector<std::uint8_t> issueAt(const ClusterCA& ca, std::int64_t notBefore,
                                  Role role = Role::Worker) {
  return ca.issue(newId(), role, newNodeKey(), notBefore, k90Days, 7).value();
}

// Where `needle` starts in `haystack`; fails the test when it is not there.
std::size_t find(const std::vector<std::uint8_t>& haystack, std::span<const std::uint8_t> needle) {
  auto it = std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end());
  REQUIRE(it != haystack.end());
  return static_cast<std::size_t>(it - haystack.begin());
}

std::vector<std::string_view> split(std::string_view token) {
  std::vector<std::string_view> parts;
  for (std::size_t start = 0;;) {
    std::size_t dash = token.find('-', start);
    parts.push_back(token.substr(start, dash - start));
    if (dash == std::string_view::npos) return parts;
    start = dash + 1;
  }
}

bool isBase36(std::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return kAlphabet.find(c) != std::string_view::npos; });
}

}  // namespace

TEST_CASE("a certificate issued by the CA verifies and says what was issued") {
  ClusterCA ca = newCA();
  shoal::curve::KeyPair node = shoal::curve::generate();
  CurvePublicKey key = curveKeyFromZ85(node.publicKey).value();
  std::string nodeId = newId();
  auto bytes = ca.issue(nodeId, Role::Manager, key, kNow, k90Days, 42);
  REQUIRE(bytes.ok());
  CHECK(bytes->size() < 400);

  auto cert = ca.verify(*bytes, kNow + 3600);
  REQUIRE_MESSAGE(cert.ok(), cert.error().message);
  CHECK(cert->nodeId == nodeId);
  CHECK(cert->role == Role::Manager);
  CHECK(cert->curvePublicKey == key);
  CHECK(curveKeyToZ85(cert->curvePublicKey) == node.publicKey);
  CHECK(cert->notBefore == kNow);
  CHECK(cert->notAfter == kNow + k90Days.count());
  CHECK(cert->clusterId == ca.clusterId());
  CHECK(cert->serial == 42);
  CHECK(roleName(cert->role) == "manager");
  CHECK(roleName(Role::Worker) == "worker");

  // The first and the last second of its life are in it; the second after is not.
  CHECK(ca.verify(*bytes, kNow).ok());
  CHECK(ca.verify(*bytes, cert->notAfter - 1).ok());
  CHECK_FALSE(ca.verify(*bytes, cert->notAfter).ok());
}

TEST_CASE("the CA's digest is the SHA-256 of its public key") {
  ClusterCA ca = newCA();
  Digest expected;
  crypto_hash_sha256(expected.data(), ca.publicKey().data(), ca.publicKey().size());
  CHECK(ca.digest() == expected);
  CHECK(newCA().digest() != ca.digest());
}

TEST_CASE("a changed certificate byte breaks the signature") {
  ClusterCA ca = newCA();
  CurvePublicKey key = newNodeKey();
  auto bytes = ca.issue(newId(), Role::Worker, key, kNow, k90Days, 1).value();

  SUBCASE("the node's key, swapped for an attacker's") {
    bytes[find(bytes, key) + 5] ^= 0x01;
    auto cert = ca.verify(bytes, kNow + 1);
    REQUIRE_FALSE(cert.ok());
    CHECK(cert.error().code == kCertNotTrusted);
    CHECK(cert.error().message ==
          "the certificate was not signed by this cluster's CA (bad signature)");
  }
  SUBCASE("every single byte") {
    int refused = 0;
    for (std::size_t i = 0; i < bytes.size(); ++i) {
      auto changed = bytes;
      changed[i] ^= 0x40;
      auto cert = ca.verify(changed, kNow + 1);
      // Alignment padding is covered by nothing, and need not be: a changed padding byte
      // changes no field. Anything else is refused.
      if (cert.ok()) {
        CHECK(cert->curvePublicKey == key);
        CHECK(cert->notAfter == kNow + k90Days.count());
        CHECK(cert->role == Role::Worker);
      } else {
        ++refused;
      }
    }
    CHECK(refused > static_cast<int>(bytes.size()) * 9 / 10);
  }
  SUBCASE("the signature") {
    auto cert = ca.verify(bytes, kNow + 1);
    REQUIRE(cert.ok());
    const auto* signature = shoal::identity::fb::GetSignedCertificate(bytes.data())->signature();
    std::size_t at = static_cast<std::size_t>(signature->data() - bytes.data());
    bytes[at + 63] ^= 0x80;
    auto refused = ca.verify(bytes, kNow + 1);
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().code == kCertNotTrusted);
  }
}

TEST_CASE("a certificate of another CA is refused, naming that CA") {
  ClusterCA ours = newCA();
  ClusterCA theirs = newCA();
  auto bytes = issueAt(theirs, kNow);
  auto cert = ours.verify(bytes, kNow + 1);
  REQUIRE_FALSE(cert.ok());
  CHECK(cert.error().code == kCertNotTrusted);
  // Named by the digest that its join tokens carry, so an operator can tell which it is.
  std::string theirDigest(split(makeJoinToken(theirs, systemRandom()))[2]);
  std::string ourDigest(split(makeJoinToken(ours, systemRandom()))[2]);
  CHECK(cert.error().message == "the certificate was signed by another CA (digest " + theirDigest +
                                    "), not by this cluster's CA (digest " + ourDigest + ")");

  SUBCASE("also when it claims to be signed by ours") {
    std::size_t at = find(bytes, theirs.digest());
    std::copy(ours.digest().begin(), ours.digest().end(), bytes.begin() + at);
    auto forged = ours.verify(bytes, kNow + 1);
    REQUIRE_FALSE(forged.ok());
    CHECK(forged.error().message ==
          "the certificate was not signed by this cluster's CA (bad signature)");
  }
}

TEST_CASE("a certificate for another cluster is refused even with the same CA key") {
  // A cluster recreated from the same key (a restored backup) under another cluster id.
  ClusterCA ca = newCA();
  auto saved = ca.saveWithSecret();
  std::string otherCluster = newId();
  std::size_t at =
      find(saved, std::span(reinterpret_cast<const std::uint8_t*>(ca.clusterId().data()),
                            ca.clusterId().size()));
  std::copy(otherCluster.begin(), otherCluster.end(), saved.begin() + at);
  ClusterCA other = ClusterCA::load(saved).value();
  REQUIRE(other.clusterId() == otherCluster);
  REQUIRE(other.publicKey() == ca.publicKey());

  auto cert = other.verify(issueAt(ca, kNow), kNow + 1);
  REQUIRE_FALSE(cert.ok());
  CHECK(cert.error().code == kCertNotTrusted);
  CHECK(cert.error().message.find("is for cluster \"" + ca.clusterId() + "\", not this cluster " +
                                  otherCluster) != std::string::npos);
}

TEST_CASE("expired and not-yet-valid certificates are refused with what to do") {
  ClusterCA ca = newCA();
  std::string nodeId = newId();
  // 2026-11-30 00:00:00 UTC, for 90 days.
  const std::int64_t start = 1'795'996'800;
  auto bytes = ca.issue(nodeId, Role::Worker, newNodeKey(), start, k90Days, 1).value();

  auto expired = ca.verify(bytes, start + k90Days.count() + 10);
  REQUIRE_FALSE(expired.ok());
  CHECK(expired.error().code == kCertExpired);
  CHECK(expired.error().message ==
        "the certificate of node " + nodeId + " expired at 2027-02-28 00:00:00 UTC; renew it");

  auto early = ca.verify(bytes, start - 60);
  REQUIRE_FALSE(early.ok());
  CHECK(early.error().code == kCertNotYetValid);
  CHECK(early.error().message == "the certificate of node " + nodeId +
                                     " is not valid before 2026-11-30 00:00:00 UTC (it is now "
                                     "2026-11-29 23:59:00 UTC; is a clock behind?)");
}

TEST_CASE("issue refuses what it cannot sign") {
  ClusterCA ca = newCA();
  CurvePublicKey key = newNodeKey();
  SUBCASE("a CA without its secret") {
    auto r = ca.verifierOnly().issue(newId(), Role::Worker, key, kNow, k90Days, 1);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("can only verify") != std::string::npos);
  }
  SUBCASE("a node id that is no id") {
    for (std::string_view bad :
         {"", "short", "ABCDEFGHIJKLMNOPQRSTUVWXY", "p8x2k0m4q9w7z1c3v5b6n7l8jj"}) {
      auto r = ca.issue(bad, Role::Worker, key, kNow, k90Days, 1);
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().message.find("a node id is 25 characters") != std::string::npos);
    }
  }
  SUBCASE("a life that is empty, negative or beyond 64-bit time") {
    CHECK_FALSE(ca.issue(newId(), Role::Worker, key, kNow, std::chrono::seconds(0), 1).ok());
    CHECK_FALSE(ca.issue(newId(), Role::Worker, key, kNow, std::chrono::seconds(-5), 1).ok());
    CHECK_FALSE(ca.issue(newId(), Role::Worker, key, INT64_MAX - 10, k90Days, 1).ok());
  }
  SUBCASE("a bad cluster id at creation") {
    auto r = ClusterCA::create("not an id");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("invalid cluster id") != std::string::npos);
  }
}

TEST_CASE("the CA saves and loads, with or without its secret") {
  ClusterCA ca = newCA();
  SUBCASE("with the secret: the loaded CA signs what the original verifies") {
    ClusterCA loaded = ClusterCA::load(ca.saveWithSecret()).value();
    CHECK(loaded.canSign());
    CHECK(loaded.clusterId() == ca.clusterId());
    CHECK(loaded.publicKey() == ca.publicKey());
    CHECK(loaded.digest() == ca.digest());
    CHECK(ca.verify(issueAt(loaded, kNow), kNow + 1).ok());
  }
  SUBCASE("the public form verifies but cannot sign, and carries no secret") {
    auto withSecret = ca.saveWithSecret();
    auto publicForm = ca.savePublic();
    CHECK(publicForm.size() < withSecret.size());
    ClusterCA verifier = ClusterCA::load(publicForm).value();
    CHECK_FALSE(verifier.canSign());
    CHECK(verifier.verify(issueAt(ca, kNow), kNow + 1).ok());
    CHECK(ClusterCA::load(verifier.saveWithSecret()).value().canSign() == false);
  }
  SUBCASE("a secret that does not belong to the public key is refused") {
    auto saved = ca.saveWithSecret();
    std::size_t at = find(saved, ca.publicKey());
    saved[at] ^= 1;
    auto r = ClusterCA::load(saved);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message ==
          "the cluster CA key is damaged: its secret does not belong to its public key");
  }
  SUBCASE("a certificate is not a CA key") {
    auto r = ClusterCA::load(issueAt(ca, kNow));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("damaged or not a CA key") != std::string::npos);
  }
  SUBCASE("a moved-from CA holds no secret") {
    ClusterCA moved = std::move(ca);
    CHECK(moved.canSign());
    CHECK_FALSE(ca.canSign());  // NOLINT(bugprone-use-after-move): that is the point
  }
}

TEST_CASE("renewAt is always between 50 % and 80 % of the life, and covers that range") {
  FillRandom random = seeded(8);
  std::mt19937_64 lives(9);
  for (int round = 0; round < 200; ++round) {
    Certificate cert;
    cert.notBefore = kNow + static_cast<std::int64_t>(lives() % 100000) - 50000;
    std::int64_t life =
        round == 0 ? k90Days.count() : 1 + static_cast<std::int64_t>(lives() % 10'000'000);
    cert.notAfter = cert.notBefore + life;
    std::int64_t lowest = INT64_MAX, highest = INT64_MIN;
    for (int draw = 0; draw < 500; ++draw) {
      std::int64_t at = renewAt(cert, random);
      std::int64_t offset = at - cert.notBefore;
      // offset / life in [0.5, 0.8], in integers
      REQUIRE(offset * 10 >= life * 5);
      REQUIRE(offset * 10 <= life * 8);
      lowest = std::min(lowest, offset);
      highest = std::max(highest, offset);
    }
    if (life >= 1000) {
      // 500 uniform draws leave less than 1 % of the range uncovered at either end.
      CHECK(lowest * 100 < life * 51);
      CHECK(highest * 100 > life * 79);
    }
  }
  SUBCASE("90 days: between day 45 and day 72") {
    Certificate cert;
    cert.notBefore = kNow;
    cert.notAfter = kNow + k90Days.count();
    std::int64_t at = renewAt(cert, systemRandom());
    CHECK(at >= kNow + 45 * 86400);
    CHECK(at <= kNow + 72 * 86400);
  }
  SUBCASE("a life too short for the range, and none at all") {
    Certificate cert;
    cert.notBefore = kNow;
    cert.notAfter = kNow + 1;
    CHECK(renewAt(cert, random) == kNow);
    cert.notAfter = kNow;
    CHECK(renewAt(cert, random) == kNow);
  }
}

TEST_CASE("join tokens have Swarm's shape") {
  ClusterCA ca = newCA();
  JoinTokens tokens = JoinTokens::make(ca, systemRandom());
  for (const std::string& token : {tokens.worker, tokens.manager}) {
    CAPTURE(token);
    CHECK(token.size() == kJoinTokenLength);
    CHECK(token.starts_with("SWMTKN-1-"));
    auto parts = split(token);
    REQUIRE(parts.size() == 4);
    CHECK(parts[2].size() == 50);
    CHECK(parts[3].size() == 25);
    CHECK(isBase36(parts[2]));
    CHECK(isBase36(parts[3]));
  }
  // One CA digest, two secrets.
  CHECK(split(tokens.worker)[2] == split(tokens.manager)[2]);
  CHECK(split(tokens.worker)[3] != split(tokens.manager)[3]);
}

TEST_CASE("the secret is its 16 random bytes as a zero-padded base36 number") {
  // Values computed with Python's int(); the second is 2^128-1, SwarmKit's largest secret.
  ClusterCA ca = newCA();
  auto counting = [](std::span<std::uint8_t> out) {
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::uint8_t>(i);
  };
  CHECK(split(makeJoinToken(ca, counting))[3] == "000avh9he7dy896m08s18udxr");
  auto ones = [](std::span<std::uint8_t> out) { std::fill(out.begin(), out.end(), 0xff); };
  CHECK(split(makeJoinToken(ca, ones))[3] == "f5lxx1zz5pnorynqglhzmsp33");
  auto zeros = [](std::span<std::uint8_t> out) { std::fill(out.begin(), out.end(), 0); };
  CHECK(split(makeJoinToken(ca, zeros))[3] == std::string(25, '0'));
}

TEST_CASE("a join token parses back to its CA digest and secret") {
  ClusterCA ca = newCA();
  std::string token = makeJoinToken(ca, systemRandom());
  auto parsed = parseJoinToken(token);
  REQUIRE_MESSAGE(parsed.ok(), parsed.error().message);
  CHECK(parsed->version == 1);
  CHECK(parsed->caDigest == ca.digest());
  CHECK(parsed->secret == split(token)[3]);
  CHECK(tokenMatchesCA(*parsed, ca.publicKey()));
  CHECK_FALSE(tokenMatchesCA(*parsed, newCA().publicKey()));
  CHECK_FALSE(tokenMatchesCA(parseJoinToken(makeJoinToken(newCA(), systemRandom())).value(),
                             ca.publicKey()));

  SUBCASE("the largest digest there is") {
    auto max = parseJoinToken(
        "SWMTKN-1-6dp5qcb22im238nr3wvp0ic7q99w035jmy2iw7i6n43d37jtof-"
        "f5lxx1zz5pnorynqglhzmsp33");
    REQUIRE(max.ok());
    Digest ones;
    ones.fill(0xff);
    CHECK(max->caDigest == ones);
  }
}

TEST_CASE("malformed join tokens get clear errors") {
  ClusterCA ca = newCA();
  const std::string good = makeJoinToken(ca, systemRandom());
  const std::string digest(split(good)[2]);
  const std::string secret(split(good)[3]);
  struct Case {
    std::string token;
    std::string says;
  };
  const Case cases[] = {
      {"", "it is empty"},
      {"SWMTKN", "does not start with SWMTKN-"},
      {"swmtkn-1-" + digest + "-" + secret, "does not start with SWMTKN-"},
      {"SWMTKN1-" + digest + "-" + secret, "does not start with SWMTKN-"},
      {"SWMTKN-", "unknown version \"\""},
      {"SWMTKN-3-" + digest + "-" + secret, "unknown version \"3\""},
      {"SWMTKN-2-" + digest + "-" + secret + "-FIPS", "version 2 (Swarm's FIPS tokens)"},
      {"SWMTKN-1-" + digest, "this one has 3"},
      {"SWMTKN-1-" + digest + "-" + secret + "-x", "this one has 5"},
      {"SWMTKN-1-" + digest + "-" + secret + "-", "this one has 5"},
      {"SWMTKN-1-" + digest.substr(1) + "-" + secret,
       "its CA digest is 49 characters; it should be 50"},
      {"SWMTKN-1-" + digest + "0-" + secret, "its CA digest is 51 characters; it should be 50"},
      {"SWMTKN-1-" + digest + "-" + secret + "0", "its secret is 26 characters; it should be 25"},
      {"SWMTKN-1-" + digest + "-" + secret.substr(2),
       "its secret is 23 characters; it should be 25"},
      {"SWMTKN-1-" + digest + "-", "its secret is 0 characters"},
      {"SWMTKN-1-A" + digest.substr(1) + "-" + secret,
       "its CA digest has \"A\" at position 1, which is not base36 (0-9, a-z)"},
      {"SWMTKN-1-" + digest + "-" + secret.substr(0, 24) + "!",
       "its secret has \"!\" at position 25, which is not base36"},
      {"SWMTKN-1-" + digest + "-" + secret.substr(0, 24) + "\n", "its secret has \"\\n\""},
      {"SWMTKN-1-" + digest + "-" + secret + "\n", "its secret is 26 characters"},
      {"SWMTKN-1-" + std::string(50, 'z') + "-" + secret, "its CA digest is larger than 256 bits"},
      {"SWMTKN-1-6dp5qcb22im238nr3wvp0ic7q99w035jmy2iw7i6n43d37jtog-" + secret,
       "its CA digest is larger than 256 bits"},
      {"SWMTKN-1-" + digest + "-f5lxx1zz5pnorynqglhzmsp34", "its secret is larger than 128 bits"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.token);
    auto r = parseJoinToken(c.token);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.starts_with("not a swarm join token: "));
    CHECK_MESSAGE(r.error().message.find(c.says) != std::string::npos, r.error().message);
  }
}

TEST_CASE("the stored tokens admit their role, compared whole") {
  ClusterCA ca = newCA();
  FillRandom random = seeded(1);
  JoinTokens tokens = JoinTokens::make(ca, random);
  CHECK(tokens.admits(tokens.worker) == Role::Worker);
  CHECK(tokens.admits(tokens.manager) == Role::Manager);
  CHECK_FALSE(tokens.admits("").has_value());
  CHECK_FALSE(tokens.admits(makeJoinToken(ca, random)).has_value());
  std::string almost = tokens.worker;
  almost.back() = almost.back() == '0' ? '1' : '0';
  CHECK_FALSE(tokens.admits(almost).has_value());
  CHECK_FALSE(tokens.admits(tokens.worker.substr(0, 84)).has_value());

  SUBCASE("rotating one role's token retires only that token") {
    std::string oldWorker = tokens.worker;
    std::string manager = tokens.manager;
    tokens.rotate(Role::Worker, ca, random);
    CHECK(tokens.worker != oldWorker);
    CHECK_FALSE(tokens.admits(oldWorker).has_value());
    CHECK(tokens.admits(tokens.worker) == Role::Worker);
    CHECK(tokens.manager == manager);
  }
  SUBCASE("no tokens admit nothing") {
    JoinTokens none;
    CHECK_FALSE(none.admits("").has_value());
  }
}

TEST_CASE("Curve keys convert between Z85 and raw bytes, and bad Z85 is refused") {
  shoal::curve::KeyPair pair = shoal::curve::generate();
  auto raw = curveKeyFromZ85(pair.publicKey);
  REQUIRE(raw.ok());
  CHECK(curveKeyToZ85(*raw) == pair.publicKey);
  std::string withNul = pair.publicKey;
  withNul[20] = '\0';
  std::string badChar = pair.publicKey;
  badChar[3] = '~';  // not in Z85's alphabet
  for (const std::string& bad : {std::string(), pair.publicKey.substr(1), pair.publicKey + "0",
                                 withNul, badChar, std::string(40, ' ')}) {
    auto r = curveKeyFromZ85(bad);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("a key is 40 Z85 characters") != std::string::npos);
  }
}

TEST_CASE("random bytes never crash the parsers and are never accepted") {
  ClusterCA ca = newCA();
  std::mt19937_64 rng(20261130);
  auto randomBytes = [&](std::size_t size) {
    std::vector<std::uint8_t> out(size);
    for (auto& b : out) b = static_cast<std::uint8_t>(rng());
    return out;
  };
  SUBCASE("verify: random buffers, some with the certificate's identifier") {
    for (int i = 0; i < 4000; ++i) {
      auto bytes = randomBytes(rng() % 700);
      if (i % 2 == 0 && bytes.size() >= 8) std::copy_n("SHID", 4, bytes.begin() + 4);
      CHECK_FALSE(ca.verify(bytes, kNow).ok());
      CHECK_FALSE(ClusterCA::load(bytes).ok());
    }
  }
  SUBCASE("verify: a real certificate with random damage, truncations and extensions") {
    std::string nodeId = newId();
    CurvePublicKey key = newNodeKey();
    auto good = ca.issue(nodeId, Role::Worker, key, kNow, k90Days, 3).value();
    for (int i = 0; i < 4000; ++i) {
      auto bytes = good;
      int damage = 1 + static_cast<int>(rng() % 8);
      for (int d = 0; d < damage; ++d)
        bytes[rng() % bytes.size()] = static_cast<std::uint8_t>(rng());
      if (i % 5 == 0) bytes.resize(rng() % bytes.size());
      if (i % 7 == 0) {
        auto tail = randomBytes(rng() % 64);
        bytes.insert(bytes.end(), tail.begin(), tail.end());
      }
      auto cert = ca.verify(bytes, kNow + 1);
      if (cert.ok()) {  // only padding or appended bytes changed: it says what was signed
        CHECK(cert->nodeId == nodeId);
        CHECK(cert->curvePublicKey == key);
        CHECK(cert->role == Role::Worker);
      }
    }
  }
  SUBCASE("an oversized buffer") {
    auto r = ca.verify(std::vector<std::uint8_t>(kMaxCertificateBytes + 1), kNow);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == kCertMalformed);
  }
  SUBCASE("parseJoinToken and curveKeyFromZ85: random text") {
    for (int i = 0; i < 4000; ++i) {
      auto bytes = randomBytes(rng() % 100);
      std::string text(bytes.begin(), bytes.end());
      if (i % 2 == 0 && text.size() >= 9) text.replace(0, 9, "SWMTKN-1-");
      (void)parseJoinToken(text);
      (void)curveKeyFromZ85(text);
    }
  }
}
