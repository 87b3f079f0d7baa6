#include "common/node_dir.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>
#include <sodium.h>

namespace shoal::node {
namespace {

std::string toBase64(const std::vector<uint8_t>& bytes) {
  std::string out(sodium_base64_encoded_len(bytes.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), bytes.data(), bytes.size(),
                    sodium_base64_VARIANT_ORIGINAL);
  out.resize(std::strlen(out.c_str()));
  return out;
}

Result<std::vector<uint8_t>> fromBase64(const std::string& text, const std::string& what) {
  std::vector<uint8_t> out(text.size());
  size_t len = 0;
  if (sodium_base642bin(out.data(), out.size(), text.data(), text.size(), nullptr, &len, nullptr,
                        sodium_base64_VARIANT_ORIGINAL) != 0)
    return Error{what + " is not base64"};
  out.resize(len);
  return out;
}

Status writeFileAtomically(const std::string& dir, const std::string& name,
                           const std::string& text) {
  std::string path = dir + "/" + name;
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Error{"cannot write " + tmp + ": " + std::strerror(errno), errno};
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
            ::fsync(fd) == 0;
  int err = errno;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    if (ok) err = errno;
    ::unlink(tmp.c_str());
    return Error{"cannot write " + path + ": " + std::strerror(err), err};
  }
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return {};
}

std::optional<std::string> interfaceAddress(std::string_view name) {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return std::nullopt;
  std::optional<std::string> found;
  for (ifaddrs* a = list; a; a = a->ifa_next) {
    if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET || name != a->ifa_name) continue;
    char buf[INET_ADDRSTRLEN];
    auto* sin = reinterpret_cast<sockaddr_in*>(a->ifa_addr);
    if (::inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof buf)) {
      found = buf;
      break;
    }
  }
  ::freeifaddrs(list);
  return found;
}

}  // namespace

std::string joinHostPort(std::string_view host, uint16_t port) {
  if (host.find(':') != std::string_view::npos)
    return "[" + std::string(host) + "]:" + std::to_string(port);
  return std::string(host) + ":" + std::to_string(port);
}

Result<HostPort> parseAddr(std::string_view text, uint16_t defaultPort, bool resolveInterfaces) {
  if (text.empty()) return Error{"an address is empty; give host[:port] or an interface name"};
  HostPort out;
  out.port = defaultPort;
  std::string_view host = text;
  std::string_view port;
  if (text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos)
      return Error{"address '" + std::string(text) + "' has no closing ']'"};
    host = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':')
        return Error{"address '" + std::string(text) + "': expected ':port' after ']'"};
      port = rest.substr(1);
    }
  } else if (auto colon = text.rfind(':'); colon != std::string_view::npos) {
    if (text.find(':') != colon)
      return Error{"address '" + std::string(text) + "': put an IPv6 address in brackets, [addr]:port"};
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (port.empty()) return Error{"address '" + std::string(text) + "' has an empty port"};
  }
  if (!port.empty()) {
    unsigned value = 0;
    auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || p != port.data() + port.size() || value == 0 || value > 65533)
      return Error{"address '" + std::string(text) + "': the port '" + std::string(port) +
                   "' is not a number from 1 to 65533 (port+1 and port+2 are used too)"};
    out.port = static_cast<uint16_t>(value);
  }
  if (host.empty()) return Error{"address '" + std::string(text) + "' has no host"};
  in_addr a4;
  in6_addr a6;
  std::string h(host);
  if (::inet_pton(AF_INET, h.c_str(), &a4) == 1 || ::inet_pton(AF_INET6, h.c_str(), &a6) == 1) {
    out.host = h;
    return out;
  }
  if (resolveInterfaces && ::if_nametoindex(h.c_str()) != 0) {
    auto addr = interfaceAddress(h);
    if (!addr)
      return Error{"interface " + h + " has no IPv4 address; give an address instead"};
    out.host = *addr;
    return out;
  }
  // A host name: kept as it is (ZeroMQ resolves it).
  for (char c : h)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.'))
      return Error{"address '" + std::string(text) + "': '" + h +
                   "' is not an IP address, an interface or a host name"};
  out.host = h;
  return out;
}

Result<std::string> sourceAddressFor(std::string_view remoteHost) {
  std::string h(remoteHost);
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family = AF_INET;
  auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (::inet_pton(AF_INET, h.c_str(), &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
    sin->sin_port = htons(9);
    len = sizeof(sockaddr_in);
  } else if (::inet_pton(AF_INET6, h.c_str(), &sin6->sin6_addr) == 1) {
    family = AF_INET6;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(9);
    len = sizeof(sockaddr_in6);
  } else {
    return Error{"cannot tell this node's address from '" + h +
                 "' (not an IP address); give --advertise-addr"};
  }
  int fd = ::socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error{std::string("socket: ") + std::strerror(errno), errno};
  if (::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    int err = errno;
    ::close(fd);
    return Error{"no route to " + h + ": " + std::strerror(err) + "; give --advertise-addr", err};
  }
  sockaddr_storage local{};
  socklen_t llen = sizeof local;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &llen);
  ::close(fd);
  char buf[INET6_ADDRSTRLEN] = {};
  if (local.ss_family == AF_INET)
    ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&local)->sin_addr, buf, sizeof buf);
  else
    ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr, buf, sizeof buf);
  return std::string(buf);
}

Result<NodeDir> NodeDir::open(const std::string& path) {
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST)
    return Error{"cannot make the node dir " + path + ": " + std::strerror(errno) +
                     " (set it with --node-dir)",
                 errno};
  auto key = curve::loadOrCreate(path + "/node.key");
  if (!key) return key.error();
  return NodeDir(path, std::move(key).value());
}

Result<std::optional<NodeConfig>> NodeDir::load() const {
  std::string file = path_ + "/node.json";
  std::ifstream in(file);
  if (!in) {
    if (errno == ENOENT) return std::optional<NodeConfig>{};
    return Error{"cannot read " + file + ": " + std::strerror(errno), errno};
  }
  std::stringstream text;
  text << in.rdbuf();
  auto damaged = [&](const std::string& why) {
    return Error{file + " is damaged (" + why +
                 "); `shoal swarm leave --force` forgets it, then join again"};
  };
  try {
    auto j = nlohmann::json::parse(text.str());
    NodeConfig c;
    c.nodeId = j.at("node_id").get<std::string>();
    c.clusterId = j.at("cluster_id").get<std::string>();
    c.manager = j.at("role").get<std::string>() == "manager";
    auto cert = fromBase64(j.at("certificate").get<std::string>(), "certificate");
    if (!cert) return damaged(cert.error().message);
    c.certificate = std::move(cert).value();
    auto ca = fromBase64(j.at("ca").get<std::string>(), "ca");
    if (!ca) return damaged(ca.error().message);
    c.ca = std::move(ca).value();
    c.advertiseHost = j.at("advertise_host").get<std::string>();
    c.listenHost = j.value("listen_host", std::string("0.0.0.0"));
    c.port = j.value("port", kDefaultPort);
    for (const auto& m : j.value("managers", nlohmann::json::array()))
      c.managers.push_back({m.at("node_id").get<std::string>(), m.at("addr").get<std::string>(),
                            m.at("key").get<std::string>()});
    if (j.contains("raft") && !j["raft"].is_null())
      c.raft = RaftIdentity{j["raft"].at("id").get<uint64_t>(),
                            j["raft"].at("cluster_id").get<uint64_t>()};
    return std::optional<NodeConfig>(std::move(c));
  } catch (const nlohmann::json::exception& e) {
    return damaged(e.what());
  }
}

Status NodeDir::save(const NodeConfig& c) const {
  nlohmann::json j;
  j["node_id"] = c.nodeId;
  j["cluster_id"] = c.clusterId;
  j["role"] = c.manager ? "manager" : "worker";
  j["certificate"] = toBase64(c.certificate);
  j["ca"] = toBase64(c.ca);
  j["advertise_host"] = c.advertiseHost;
  j["listen_host"] = c.listenHost;
  j["port"] = c.port;
  auto managers = nlohmann::json::array();
  for (const auto& m : c.managers)
    managers.push_back({{"node_id", m.nodeId}, {"addr", m.addr}, {"key", m.publicKey}});
  j["managers"] = managers;
  if (c.raft) j["raft"] = {{"id", c.raft->id}, {"cluster_id", c.raft->clusterId}};
  return writeFileAtomically(path_, "node.json", j.dump(2) + "\n");
}

Status NodeDir::clear() const {
  for (const char* name : {"node.json", "node.key"}) {
    std::string file = path_ + "/" + name;
    if (::unlink(file.c_str()) != 0 && errno != ENOENT)
      return Error{"cannot remove " + file + ": " + std::strerror(errno), errno};
  }
  return {};
}

}  // namespace shoal::node
