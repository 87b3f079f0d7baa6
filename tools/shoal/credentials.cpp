// The user's registry credentials in docker's config.json (see credentials.h).
#include "tools/shoal/credentials.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace shoal::cli {
namespace {

using nlohmann::json;

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// host[:port] of a key or server: docker's ConvertToHostname (scheme and path dropped).
std::string hostOf(std::string_view s) {
  for (std::string_view scheme : {"https://", "http://"})
    if (s.substr(0, scheme.size()) == scheme) s.remove_prefix(scheme.size());
  return lower(s.substr(0, s.find('/')));
}

bool isDockerHub(std::string_view host) {
  return host == "docker.io" || host == "index.docker.io" || host == "registry-1.docker.io";
}

std::string base64(std::string_view bytes) {
  std::string out(sodium_base64_encoded_len(bytes.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(std::strlen(out.c_str()));
  return out;
}

std::optional<std::string> unbase64(std::string_view text) {
  std::string out(text.size(), '\0');
  size_t len = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(),
                        text.size(), " \n", &len, nullptr, sodium_base64_VARIANT_ORIGINAL) != 0)
    return std::nullopt;
  out.resize(len);
  return out;
}

std::string text(const json& entry, const char* key) {
  return entry.contains(key) && entry[key].is_string() ? entry[key].get<std::string>() : "";
}

// One auths entry: "auth" (base64 user:password), else "username"/"password"; and an
// "identitytoken". nullopt when it holds nothing (a credential helper keeps it).
Result<std::optional<Credentials>> entryCredentials(const std::string& key, const json& entry) {
  auto bad = [&key](const std::string& why) {
    return Error{"the credentials stored for " + key + " cannot be read: " + why +
                 "; run `shoal login " + key + "` again"};
  };
  if (!entry.is_object()) return bad("its entry is not an object");
  Credentials c{text(entry, "username"), text(entry, "password"), text(entry, "identitytoken")};
  if (std::string auth = text(entry, "auth"); !auth.empty()) {
    auto decoded = unbase64(auth);
    if (!decoded) return bad("\"auth\" is not base64");
    auto colon = decoded->find(':');
    if (colon == std::string::npos) return bad("\"auth\" is not user:password");
    c.username = decoded->substr(0, colon);
    c.password = decoded->substr(colon + 1);
  }
  if (c.username.empty() && c.identityToken.empty()) return std::optional<Credentials>();
  return std::optional<Credentials>(c);
}

Status makeDir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) == 0 || errno == EEXIST) return {};
  return Error{"cannot make " + dir + ": " + std::strerror(errno), errno};
}

Status writeFileAtomically(const std::string& path, const std::string& body) {
  std::string tmp = path + ".tmp-XXXXXX";
  int fd = ::mkstemp(tmp.data());
  if (fd < 0) return Error{"cannot write " + tmp + ": " + std::strerror(errno), errno};
  bool ok = ::fchmod(fd, 0600) == 0;
  for (size_t off = 0; ok && off < body.size();) {
    ssize_t w = ::write(fd, body.data() + off, body.size() - off);
    ok = w > 0 || (w < 0 && errno == EINTR);
    if (w > 0) off += static_cast<size_t>(w);
  }
  ok = ok && ::fsync(fd) == 0;
  int saved = errno;
  ::close(fd);
  if (ok && ::rename(tmp.c_str(), path.c_str()) == 0) return {};
  if (ok) saved = errno;
  ::unlink(tmp.c_str());
  return Error{"cannot write " + path + ": " + std::strerror(saved), saved};
}

}  // namespace

Result<std::string> loginKey(std::string_view server) {
  if (server.empty()) return std::string(kDockerHubKey);
  std::string host = hostOf(server);
  if (host.empty() || host.find_first_of(" \t@") != std::string::npos)
    return Error{"invalid registry \"" + std::string(server) +
                 "\": give its host[:port], e.g. registry.example.com or 127.0.0.1:5000"};
  if (isDockerHub(host)) return std::string(kDockerHubKey);
  return host;
}

std::string registryHostOf(std::string_view keyOrServer) {
  std::string host = hostOf(keyOrServer);
  return isDockerHub(host) ? "docker.io" : host;
}

Result<std::optional<Credentials>> credentialsFor(const json& config, std::string_view registryHost) {
  std::string want = registryHostOf(registryHost);
  if (!config.is_object() || !config.contains("auths") || !config["auths"].is_object())
    return std::optional<Credentials>();
  // An exact key first (docker's own lookup), then any key naming the same host.
  for (bool exact : {true, false})
    for (const auto& [key, entry] : config["auths"].items()) {
      bool match = exact ? (key == (want == "docker.io" ? std::string(kDockerHubKey) : want))
                         : registryHostOf(key) == want;
      if (!match) continue;
      auto c = entryCredentials(key, entry);
      if (!c || *c) return c;
    }
  return std::optional<Credentials>();
}

json withCredentials(json config, const std::string& key, const Credentials& c) {
  if (!config.is_object()) config = json::object();
  if (!config.contains("auths") || !config["auths"].is_object()) config["auths"] = json::object();
  json entry = {{"auth", base64(c.username + ":" + c.password)}};
  if (!c.identityToken.empty()) entry["identitytoken"] = c.identityToken;
  config["auths"][key] = entry;
  return config;
}

bool removeCredentials(json& config, std::string_view server) {
  if (!config.is_object() || !config.contains("auths") || !config["auths"].is_object())
    return false;
  std::string want = registryHostOf(server.empty() ? kDockerHubKey : server);
  std::vector<std::string> gone;
  for (const auto& [key, entry] : config["auths"].items())
    if (registryHostOf(key) == want) gone.push_back(key);
  for (const auto& key : gone) config["auths"].erase(key);
  return !gone.empty();
}

Result<std::string> configPath() {
  if (const char* dir = std::getenv("DOCKER_CONFIG"); dir && *dir)
    return std::string(dir) + "/config.json";
  const char* home = std::getenv("HOME");
  if (!home || !*home)
    return Error{"cannot find docker's config.json: neither $DOCKER_CONFIG nor $HOME is set"};
  return std::string(home) + "/.docker/config.json";
}

Result<json> readConfig(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 && errno == ENOENT) return json::object();
  std::ifstream in(path);
  if (!in) return Error{"cannot read " + path + ": " + std::strerror(errno), errno};
  std::stringstream body;
  body << in.rdbuf();
  json doc = json::parse(body.str(), nullptr, false);
  if (body.str().find_first_not_of(" \t\r\n") == std::string::npos) return json::object();
  if (doc.is_discarded() || !doc.is_object())
    return Error{path + " is not a JSON object: fix or remove it, then run `shoal login` again"};
  return doc;
}

Status writeConfig(const std::string& path, const json& config) {
  auto slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0)
    if (auto st = makeDir(path.substr(0, slash)); !st) return st;
  return writeFileAtomically(path, config.dump(1, '\t') + "\n");
}

Result<std::optional<Credentials>> storedCredentials(std::string_view registryHost) {
  auto path = configPath();
  if (!path) return path.error();
  auto config = readConfig(*path);
  if (!config) return config.error();
  auto c = credentialsFor(*config, registryHost);
  if (!c) return Error{c.error().message + " (in " + *path + ")"};
  return c;
}

}  // namespace shoal::cli
