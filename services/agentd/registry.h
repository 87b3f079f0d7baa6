#pragma once
// The OCI distribution API's client side (docs/containers.md "Images", "Registry auth"), over
// libcurl: the /v2/ ping, manifests by tag or digest, blobs streamed to a file while their
// sha256 is checked. Plain HTTP for localhost, 127.0.0.0/8 and the insecure registries;
// HTTPS with the system's CAs (plus caFile) for the others. Auth: anonymous, basic, and the
// bearer-token flow (401 + WWW-Authenticate: Bearer → a token from the realm → retry once),
// tokens cached per registry, scope and user until they expire.
//
// Thread safety: a Registry is used by several pull threads at once; each call has its own
// curl handle, the token cache has a mutex.

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <string_view>

#include "common/image_ref.h"
#include "common/result.h"
#include "services/agentd/image_manifest.h"
#include "services/agentd/image_store.h"

namespace shoal::agentd::registry {

struct Options {
  std::set<std::string> insecureRegistries;  // host:port spoken to over plain HTTP
  std::string caFile;                        // an extra CA bundle; "" none
};

// A WWW-Authenticate challenge (RFC 7235): `Bearer realm="...",service="...",scope="..."`.
struct Challenge {
  std::string scheme;  // lowercase: "bearer", "basic"
  std::map<std::string, std::string> params;  // names lowercase
  std::string param(const std::string& name) const;
};
// Pure. Errors quote the header.
Result<Challenge> parseChallenge(std::string_view header);

// Whether host (host[:port]) is spoken to over plain HTTP: localhost, 127.0.0.0/8, ::1, or
// named in insecure. Pure.
bool plainHttp(std::string_view host, const std::set<std::string>& insecure);

// A token endpoint's answer ({"token"|"access_token", "expires_in"}); pure.
struct Token {
  std::string value;
  std::chrono::seconds lifetime{60};
};
Result<Token> parseToken(std::string_view body);

// What a registry's error body ({"errors":[{"code","message","detail"}]}) says, as one line;
// empty when the body is not such a document. Pure.
std::string errorSummary(std::string_view body);

struct FetchedManifest {
  std::string body;
  std::string contentType;
  std::string digest;  // sha256 of body, checked against the digest asked for or announced
};

class Registry {
 public:
  explicit Registry(Options options) : options_(std::move(options)) {}

  // The manifest or index `reference` (a tag or a digest) of ref's repository.
  Result<FetchedManifest> manifest(const shoal::image::Reference& ref,
                                   const std::string& reference, const RegistryAuth& auth);
  // Streams blob `d` of ref's repository to `path` (created), checking its size and digest.
  // Returns the bytes written. On error `path` may be left: the caller's tmp/ holds it.
  Result<int64_t> blob(const shoal::image::Reference& ref, const agentd::image::Descriptor& d,
                       const std::string& path, const RegistryAuth& auth);
  // GET /v2/ with the credentials: `shoal login`'s check.
  Status login(const std::string& server, const RegistryAuth& auth);

  // Bearer tokens, cached (the request code in registry.cpp reads and fills this).
  std::string cachedToken(const std::string& key);
  void cacheToken(const std::string& key, const Token& token);

  const Options& options() const { return options_; }

 private:
  Options options_;
  std::mutex mutex_;
  std::map<std::string, std::pair<std::string, std::chrono::steady_clock::time_point>> tokens_;
};

// `shoal login SERVER`: whether the registry takes these credentials. Errors say why not
// ("wrong username or password", "cannot reach registry ...").
Status checkLogin(const std::string& server, const RegistryAuth& auth, const Options& options);

}  // namespace shoal::agentd::registry
