#include "services/agentd/registry.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <sodium.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>

#include <nlohmann/json.hpp>

namespace shoal::agentd::registry {
namespace {

using nlohmann::json;

constexpr size_t kMaxManifest = 4 << 20;  // docker's limit for a manifest
constexpr size_t kMaxSmallBody = 1 << 20;  // tokens and error bodies
constexpr long kConnectTimeoutS = 15;
constexpr long kStallTimeoutS = 60;  // a transfer with no byte for this long fails

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

std::string hex(const unsigned char* bytes, size_t n) {
  std::string out(n * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), bytes, n);
  out.pop_back();
  return out;
}

std::string sha256Of(std::string_view data) {
  unsigned char d[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(d, reinterpret_cast<const unsigned char*>(data.data()), data.size());
  return "sha256:" + hex(d, sizeof d);
}

// ---- one HTTP exchange

// Where a response body goes: a file (hashed while written) when the status is 200, else a
// bounded string (error documents, manifests, tokens).
struct Sink {
  int fd = -1;
  int64_t limit = 0;  // bytes the file may get
  crypto_hash_sha256_state hash;
  int64_t written = 0;
  bool overflow = false;
};

struct Response {
  CURLcode curl = CURLE_OK;
  std::string curlError;
  int osErrno = 0;
  long status = 0;
  std::string body, contentType, wwwAuthenticate, dockerDigest;
};

struct Transfer {
  CURL* handle;
  Response* response;
  Sink* sink;
  size_t bodyLimit;
};

size_t onBody(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t len = size * n;
  long status = 0;
  curl_easy_getinfo(t->handle, CURLINFO_RESPONSE_CODE, &status);
  if (t->sink && status == 200) {
    Sink& s = *t->sink;
    if (s.written + static_cast<int64_t>(len) > s.limit) return s.overflow = true, 0;
    crypto_hash_sha256_update(&s.hash, reinterpret_cast<unsigned char*>(data), len);
    for (size_t off = 0; off < len;) {
      ssize_t w = ::write(s.fd, data + off, len - off);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return 0;
      off += static_cast<size_t>(w);
    }
    s.written += static_cast<int64_t>(len);
    return len;
  }
  if (t->response->body.size() + len > t->bodyLimit) return 0;
  t->response->body.append(data, len);
  return len;
}

// Headers of the last response only: a redirect's are dropped when the next status line comes.
size_t onHeader(char* data, size_t size, size_t n, void* user) {
  auto* r = static_cast<Response*>(user);
  std::string_view line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) {
    r->contentType.clear();
    r->wwwAuthenticate.clear();
    r->dockerDigest.clear();
    r->body.clear();
    return size * n;
  }
  auto colon = line.find(':');
  if (colon == std::string_view::npos) return size * n;
  std::string name = lower(line.substr(0, colon));
  std::string value = trim(line.substr(colon + 1));
  if (name == "content-type") r->contentType = value;
  if (name == "www-authenticate" && r->wwwAuthenticate.empty()) r->wwwAuthenticate = value;
  if (name == "docker-content-digest") r->dockerDigest = value;
  return size * n;
}

struct Request {
  std::string url;
  std::vector<std::string> headers;
  std::string postFields;  // a POST when not empty
  std::string user, password;  // basic auth
  std::string bearer;
  Sink* sink = nullptr;
  size_t bodyLimit = kMaxSmallBody;
};

struct CurlHandle {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct CurlList {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

void setCommon(CURL* c, const Options& options, char* errorBuffer) {
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errorBuffer);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "shoal-agentd/" SHOAL_VERSION);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  // Registries redirect blob GETs to their storage (S3, a CDN); curl drops the credentials
  // when a redirect leaves the host.
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, kConnectTimeoutS);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, kStallTimeoutS);
  if (!options.caFile.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, options.caFile.c_str());
}

void setAuth(CURL* c, const Request& req) {
  if (!req.bearer.empty()) {
    curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
    curl_easy_setopt(c, CURLOPT_XOAUTH2_BEARER, req.bearer.c_str());
  } else if (!req.user.empty()) {
    curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(c, CURLOPT_USERNAME, req.user.c_str());
    curl_easy_setopt(c, CURLOPT_PASSWORD, req.password.c_str());
  }
}

Response perform(const Request& req, const Options& options) {
  Response r;
  std::unique_ptr<CURL, CurlHandle> c(curl_easy_init());
  if (!c) return r.curl = CURLE_FAILED_INIT, r.curlError = "curl_easy_init failed", r;
  char errorBuffer[CURL_ERROR_SIZE] = {};
  setCommon(c.get(), options, errorBuffer);
  curl_slist* list = nullptr;
  for (auto& h : req.headers) list = curl_slist_append(list, h.c_str());
  std::unique_ptr<curl_slist, CurlList> headers(list);
  curl_easy_setopt(c.get(), CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(c.get(), CURLOPT_HTTPHEADER, headers.get());
  if (!req.postFields.empty())
    curl_easy_setopt(c.get(), CURLOPT_POSTFIELDS, req.postFields.c_str());
  setAuth(c.get(), req);
  Transfer t{c.get(), &r, req.sink, req.bodyLimit};
  curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, onBody);
  curl_easy_setopt(c.get(), CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c.get(), CURLOPT_HEADERFUNCTION, onHeader);
  curl_easy_setopt(c.get(), CURLOPT_HEADERDATA, &r);
  r.curl = curl_easy_perform(c.get());
  r.curlError = errorBuffer[0] ? errorBuffer : curl_easy_strerror(r.curl);
  curl_easy_getinfo(c.get(), CURLINFO_RESPONSE_CODE, &r.status);
  curl_easy_getinfo(c.get(), CURLINFO_OS_ERRNO, &r.osErrno);
  return r;
}

// ---- what a failed exchange means to a person

Error transportError(const Response& r, std::string_view host, bool https) {
  switch (r.curl) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT: {
      std::string why = r.osErrno ? std::strerror(r.osErrno) : r.curlError;
      return Error{"cannot reach registry " + std::string(host) + ": " + why, ECONNREFUSED};
    }
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
      if (https)
        return Error{std::string(host) + ": HTTPS failed (" + r.curlError +
                         "): if the registry serves plain HTTP, use agentd --insecure-registry " +
                         std::string(host) + "; if its certificate is from your own CA, give "
                         "agentd that CA",
                     EPROTO};
      break;
    default: break;
  }
  return Error{"registry " + std::string(host) + ": " + r.curlError, EIO};
}

// ---- the exchange with auth: the bearer flow

struct Exchange {
  Registry& registry;
  std::string host;   // as the user wrote it (127.0.0.1:5000, docker.io)
  std::string api;    // what is asked (registry-1.docker.io)
  std::string scope;  // repository:<path>:pull, "" for the ping
  const RegistryAuth& auth;
  std::string repo;   // what errors name: 127.0.0.1:5000/busybox

  std::string base() const {
    return (plainHttp(api, registry.options().insecureRegistries) ? "http://" : "https://") +
           api + "/v2/";
  }
  std::string tokenKey() const { return api + " " + scope + " " + auth.username; }
};

std::string urlEncode(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

// GET the realm (with basic credentials when given), or POST a refresh token (docker's
// identitytoken), per the docker token spec.
Result<Token> fetchToken(Exchange& x, const Challenge& ch) {
  std::string realm = ch.param("realm");
  if (realm.rfind("https://", 0) != 0 && realm.rfind("http://", 0) != 0)
    return Error{"registry " + x.host + " names no usable token realm (\"" + realm + "\")", EPROTO};
  std::string scope = ch.param("scope").empty() ? x.scope : ch.param("scope");
  std::string query = "service=" + urlEncode(ch.param("service"));
  if (!scope.empty()) query += "&scope=" + urlEncode(scope);
  Request req;
  if (!x.auth.identityToken.empty()) {
    req.url = realm;
    req.postFields = query + "&grant_type=refresh_token&client_id=shoal&refresh_token=" +
                     urlEncode(x.auth.identityToken);
  } else {
    req.url = realm + (realm.find('?') == std::string::npos ? "?" : "&") + query;
    req.user = x.auth.username;
    req.password = x.auth.password;
  }
  Response r = perform(req, x.registry.options());
  if (r.curl != CURLE_OK) return transportError(r, x.host, realm.rfind("https", 0) == 0);
  if (r.status == 401 || r.status == 403) return Error{"wrong username or password", EACCES};
  if (r.status != 200)
    return Error{"the token server " + realm + " answered HTTP " + std::to_string(r.status), EIO};
  return parseToken(r.body);
}

// The request, with the cached token or the basic credentials; on a 401, the challenge
// answered (a token fetched, or basic credentials) and the request sent once more.
Result<Response> exchange(Exchange& x, Request req) {
  if (auto token = x.registry.cachedToken(x.tokenKey()); !token.empty()) req.bearer = token;
  Response r = perform(req, x.registry.options());
  if (r.curl == CURLE_OK && r.status == 401 && !r.wwwAuthenticate.empty()) {
    auto ch = parseChallenge(r.wwwAuthenticate);
    if (!ch) return ch.error();
    if (ch->scheme == "bearer") {
      auto token = fetchToken(x, *ch);
      if (!token && token.error().code == EACCES)
        return Error{"pull access denied for " + x.repo + ": " +
                         (x.auth.empty() ? "the token server wants credentials: shoal login " +
                                               x.host + ", then --with-registry-auth"
                                         : "wrong username or password") +
                         " (the token server answered HTTP 401)",
                     EACCES};
      if (!token) return token.error();
      x.registry.cacheToken(x.tokenKey(), *token);
      req.bearer = token->value;
    } else if (ch->scheme == "basic" && !x.auth.username.empty()) {
      req.user = x.auth.username;
      req.password = x.auth.password;
    } else {
      return r;
    }
    if (req.sink && ::ftruncate(req.sink->fd, 0) != 0) return Error{"ftruncate failed", errno};
    r = perform(req, x.registry.options());
  }
  // A write error is the caller's to explain: a body over its limit, or a full disk.
  if (r.curl != CURLE_OK && r.curl != CURLE_WRITE_ERROR)
    return transportError(r, x.host, !plainHttp(x.api, x.registry.options().insecureRegistries));
  return r;
}

std::string repoName(const shoal::image::Reference& ref) { return ref.registry + "/" + ref.path; }

Error statusError(const Response& r, const std::string& repo, const RegistryAuth& auth,
                  const std::string& what) {
  std::string summary = errorSummary(r.body);
  std::string http = " (HTTP " + std::to_string(r.status) + ")";
  if (r.status == 401)
    return Error{"pull access denied for " + repo + ": " +
                     (auth.empty() ? "the registry wants credentials: shoal login " +
                                         repo.substr(0, repo.find('/')) +
                                         ", then --with-registry-auth"
                                   : "wrong username or password") + http,
                 EACCES};
  if (r.status == 403)
    return Error{"pull access denied for " + repo + ": " +
                     (summary.empty() ? "forbidden" : summary) + http, EACCES};
  if (r.status == 404)
    return Error{repo + ": " + (summary.empty() ? "not found" : summary) + ": " + what +
                     " does not exist", ENOENT};
  if (r.status == 429)
    return Error{repo + ": too many requests: the registry limits pulls, try later" + http,
                 EAGAIN};
  return Error{repo + ": " + what + ": " + (summary.empty() ? "refused" : summary) + http, EIO};
}

void curlInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

bool isLoopbackV4(std::string_view host) {
  in_addr a{};
  std::string h(host);
  return ::inet_pton(AF_INET, h.c_str(), &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

}  // namespace

// ---- pure parts

std::string Challenge::param(const std::string& name) const {
  auto it = params.find(name);
  return it == params.end() ? std::string() : it->second;
}

Result<Challenge> parseChallenge(std::string_view header) {
  auto bad = [&](const std::string& why) {
    return Error{"the registry's WWW-Authenticate \"" + std::string(header) + "\" is not usable: " +
                     why, EPROTO};
  };
  std::string text = trim(header);
  size_t sp = text.find(' ');
  Challenge ch;
  ch.scheme = lower(text.substr(0, sp));
  if (ch.scheme.empty()) return bad("no scheme");
  size_t i = sp == std::string::npos ? text.size() : sp + 1;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == ',')) ++i;
    if (i >= text.size()) break;
    size_t eq = text.find('=', i);
    if (eq == std::string::npos) return bad("a parameter without '='");
    std::string name = lower(trim(std::string_view(text).substr(i, eq - i)));
    std::string value;
    i = eq + 1;
    while (i < text.size() && text[i] == ' ') ++i;
    if (i < text.size() && text[i] == '"') {
      for (++i; i < text.size() && text[i] != '"'; ++i) {
        if (text[i] == '\\' && i + 1 < text.size()) ++i;
        value += text[i];
      }
      if (i >= text.size()) return bad("an unterminated quoted value");
      ++i;
    } else {
      size_t end = text.find(',', i);
      if (end == std::string::npos) end = text.size();
      value = trim(std::string_view(text).substr(i, end - i));
      i = end;
    }
    ch.params[name] = value;
  }
  return ch;
}

bool plainHttp(std::string_view host, const std::set<std::string>& insecure) {
  if (insecure.count(std::string(host))) return true;
  std::string name(host);
  if (!name.empty() && name.front() == '[') {
    name = name.substr(1, name.find(']') - 1);
  } else if (auto colon = name.rfind(':'); colon != std::string::npos) {
    name = name.substr(0, colon);
  }
  return name == "localhost" || name == "::1" || isLoopbackV4(name) || insecure.count(name);
}

Result<Token> parseToken(std::string_view body) {
  auto doc = json::parse(body, nullptr, false);
  if (!doc.is_object()) return Error{"the token server's answer is not a JSON object", EPROTO};
  Token t;
  for (const char* key : {"token", "access_token"})
    if (doc.contains(key) && doc[key].is_string() && t.value.empty()) t.value = doc[key];
  if (t.value.empty()) return Error{"the token server's answer has no token", EPROTO};
  if (doc.contains("expires_in") && doc["expires_in"].is_number_integer() &&
      doc["expires_in"].get<int64_t>() > 0)
    t.lifetime = std::chrono::seconds(doc["expires_in"].get<int64_t>());
  return t;
}

std::string errorSummary(std::string_view body) {
  auto doc = json::parse(body, nullptr, false);
  if (!doc.is_object() || !doc.contains("errors") || !doc["errors"].is_array()) return {};
  std::string out;
  for (auto& e : doc["errors"]) {
    if (!e.is_object() || !e.contains("message") || !e["message"].is_string()) continue;
    out += (out.empty() ? "" : "; ") + e["message"].get<std::string>();
  }
  return out;
}

// ---- Registry

std::string Registry::cachedToken(const std::string& key) {
  std::lock_guard lock(mutex_);
  auto it = tokens_.find(key);
  if (it == tokens_.end()) return {};
  if (std::chrono::steady_clock::now() >= it->second.second) {
    tokens_.erase(it);
    return {};
  }
  return it->second.first;
}

void Registry::cacheToken(const std::string& key, const Token& token) {
  // A margin, so that a token is not used in the seconds it expires in.
  auto margin = std::min<std::chrono::seconds>(token.lifetime / 2, std::chrono::seconds(10));
  std::lock_guard lock(mutex_);
  tokens_[key] = {token.value, std::chrono::steady_clock::now() + token.lifetime - margin};
}

Result<FetchedManifest> Registry::manifest(const shoal::image::Reference& ref,
                                           const std::string& reference,
                                           const RegistryAuth& auth) {
  curlInit();
  Exchange x{*this, ref.registry, ref.apiHost(), "repository:" + ref.path + ":pull", auth,
             repoName(ref)};
  Request req;
  req.url = x.base() + ref.path + "/manifests/" + reference;
  req.headers = {"Accept: " + agentd::image::acceptHeader()};
  req.bodyLimit = kMaxManifest;
  bool byDigest = reference.find(':') != std::string::npos;
  std::string what = (byDigest ? "digest " : "tag ") + reference;
  auto r = exchange(x, req);
  if (!r) return r.error();
  if (r->curl == CURLE_WRITE_ERROR)
    return Error{repoName(ref) + ": the manifest of " + what + " is larger than 4 MiB", EPROTO};
  if (r->status != 200) return statusError(*r, repoName(ref), auth, what);
  FetchedManifest m{r->body, r->contentType, sha256Of(r->body)};
  if (byDigest && m.digest != reference)
    return Error{repoName(ref) + ": the manifest asked by digest " + reference + " has digest " +
                     m.digest + " (the registry served a corrupted or tampered manifest)", EPROTO};
  if (r->dockerDigest.rfind("sha256:", 0) == 0 && r->dockerDigest != m.digest)
    return Error{repoName(ref) + ": the manifest of " + what + " has digest " + m.digest +
                     ", the registry says " + r->dockerDigest, EPROTO};
  return m;
}

Result<int64_t> Registry::blob(const shoal::image::Reference& ref,
                               const agentd::image::Descriptor& d,
                               const std::string& path, const RegistryAuth& auth) {
  curlInit();
  if (d.digest.rfind("sha256:", 0) != 0)
    return Error{"blob " + d.digest + " of " + repoName(ref) + ": only sha256 digests are "
                 "supported", EINVAL};
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Error{"cannot create " + path + ": " + std::strerror(errno), errno};
  Sink sink;
  sink.fd = fd;
  sink.limit = d.size;
  crypto_hash_sha256_init(&sink.hash);
  Exchange x{*this, ref.registry, ref.apiHost(), "repository:" + ref.path + ":pull", auth,
             repoName(ref)};
  Request req;
  req.url = x.base() + ref.path + "/blobs/" + d.digest;
  req.sink = &sink;
  auto r = exchange(x, req);
  bool synced = ::fsync(fd) == 0;
  ::close(fd);
  std::string blob = "blob " + d.digest + " of " + repoName(ref);
  if (!r) return r.error();
  if (sink.overflow || (r->status == 200 && sink.written != d.size))
    return Error{blob + ": size mismatch: the registry sent " +
                     (sink.overflow ? "more than " : "") + std::to_string(sink.written) +
                     " bytes, the manifest says " + std::to_string(d.size) +
                     " (the registry served a corrupted or tampered blob)", EPROTO};
  if (r->curl == CURLE_WRITE_ERROR && r->status == 200)
    return Error{"cannot write " + path + ": " + std::strerror(errno), EIO};
  if (r->status != 200) return statusError(*r, repoName(ref), auth, "blob " + d.digest);
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256_final(&sink.hash, digest);
  std::string got = "sha256:" + hex(digest, sizeof digest);
  if (got != d.digest)
    return Error{blob + ": digest mismatch: got " + got +
                     " (the registry served a corrupted or tampered blob)", EPROTO};
  if (!synced) return Error{"cannot write " + path + ": " + std::strerror(errno), errno};
  return sink.written;
}

Status Registry::login(const std::string& server, const RegistryAuth& auth) {
  curlInit();
  std::string api = server == shoal::image::kDockerHub || server == "index.docker.io" ||
                            server.rfind("https://index.docker.io", 0) == 0
                        ? std::string(shoal::image::kDockerHubApi)
                        : server;
  Exchange x{*this, server, api, "", auth, server};
  Request req;
  req.url = x.base();
  auto r = exchange(x, req);
  if (!r) {
    if (r.error().code == EACCES)
      return Error{"login to " + server + " failed: wrong username or password", EACCES};
    return r.error();
  }
  if (r->status == 401)
    return Error{"login to " + server + " failed: wrong username or password (HTTP 401)", EACCES};
  if (r->status != 200)
    return Error{"login to " + server + " failed: " + server + "/v2/ answered HTTP " +
                     std::to_string(r->status) + ": is it a registry?", EIO};
  return {};
}

Status checkLogin(const std::string& server, const RegistryAuth& auth, const Options& options) {
  Registry registry(options);
  return registry.login(server, auth);
}

}  // namespace shoal::agentd::registry
