#include "common/constraints.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "common/units.h"

namespace shoal::constraints {

namespace {

// node.ip (Swarm's too) is left out of the list: tools and tests quote this text as it was
// first published, and a bad node.ip value has a message of its own.
constexpr std::string_view kValidForms =
    "valid forms: node.id, node.hostname, node.role, node.platform.os, node.platform.arch, "
    "node.labels.<label> or engine.labels.<label>, then == or !=, then a value; e.g. "
    "node.labels.zone==b";

constexpr std::string_view kNodeLabels = "node.labels.";
constexpr std::string_view kEngineLabels = "engine.labels.";

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool equalFold(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

bool startsWithFold(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && equalFold(s.substr(0, prefix.size()), prefix);
}

std::string_view trim(std::string_view s) {
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

// Swarm's key pattern, [a-z_][a-z0-9-_.]+ (any case): also what a label name may be here.
bool validLabel(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    char l = lower(c);
    if (!((l >= 'a' && l <= 'z') || (l >= '0' && l <= '9') || l == '-' || l == '_' || l == '.'))
      return false;
  }
  return true;
}

// Swarm's value pattern: letters, digits, spaces and : - _ . * ( ) ? + [ ] \ ^ $ | /
bool validValue(std::string_view s) {
  constexpr std::string_view kPunctuation = ":-_ \t.*()?+[]\\^$|/";
  if (s.empty()) return false;
  for (char c : s) {
    char l = lower(c);
    bool ok = (l >= 'a' && l <= 'z') || (l >= '0' && l <= '9') ||
              kPunctuation.find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

Error bad(std::string_view what, std::string_view text, std::string_view why) {
  return Error{std::string(what) + " " + quoteInput(text) + " " + std::string(why) + "; " +
               std::string(kValidForms)};
}

struct FixedKey {
  std::string_view name;
  Key key;
};
constexpr std::array<FixedKey, 6> kFixedKeys{{{"node.id", Key::NodeId},
                                              {"node.hostname", Key::NodeHostname},
                                              {"node.role", Key::NodeRole},
                                              {"node.platform.os", Key::NodeOs},
                                              {"node.platform.arch", Key::NodeArch},
                                              {"node.ip", Key::NodeIp}}};

// An address, or an address/prefix, IPv4 or IPv6 (Go's net.ParseIP and net.ParseCIDR forms).
bool parseNetwork(std::string_view text, IpNetwork& out) {
  std::string s(text);
  size_t slash = s.find('/');
  std::string addr = s.substr(0, slash);
  out.v6 = addr.find(':') != std::string::npos;
  if (inet_pton(out.v6 ? AF_INET6 : AF_INET, addr.c_str(), out.bytes) != 1) return false;
  int max = out.v6 ? 128 : 32;
  out.prefix = static_cast<uint8_t>(max);
  if (slash == std::string::npos) return true;
  std::string bits = s.substr(slash + 1);
  if (bits.empty() || bits.size() > 3 || bits.find_first_not_of("0123456789") != std::string::npos)
    return false;
  int prefix = std::stoi(bits);
  if (prefix > max) return false;
  out.prefix = static_cast<uint8_t>(prefix);
  return true;
}

// The node's address as the managers see it (a host, maybe with a port) within the network.
bool addressWithin(std::string_view addr, const IpNetwork& net) {
  std::string host(addr);
  if (!host.empty() && host.front() == '[') host = host.substr(1, host.find(']') - 1);
  else if (std::count(host.begin(), host.end(), ':') == 1) host = host.substr(0, host.find(':'));
  uint8_t bytes[16] = {};
  if (inet_pton(net.v6 ? AF_INET6 : AF_INET, host.c_str(), bytes) != 1) return false;
  size_t whole = net.prefix / 8, rest = net.prefix % 8;
  if (std::memcmp(bytes, net.bytes, whole) != 0) return false;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (bytes[whole] & mask) == (net.bytes[whole] & mask);
}

// The key part of an expression into c.key and c.label; false when it names nothing known.
bool parseKey(std::string_view key, Constraint& c) {
  for (auto& fixed : kFixedKeys) {
    if (equalFold(key, fixed.name)) {
      c.key = fixed.key;
      return true;
    }
  }
  for (auto [prefix, kind] : {std::pair{kNodeLabels, Key::NodeLabel},
                              std::pair{kEngineLabels, Key::EngineLabel}}) {
    if (startsWithFold(key, prefix) && validLabel(key.substr(prefix.size()))) {
      c.key = kind;
      c.label = std::string(key.substr(prefix.size()));
      return true;
    }
  }
  return false;
}

// Labels are kept sorted by key (objects.fbs), but a few labels are searched faster in order
// than by bisection, and an unsorted set written by hand still works.
std::string_view labelValue(const std::vector<std::unique_ptr<objects::KeyValueT>>& labels,
                            std::string_view key) {
  for (auto& kv : labels)
    if (kv && kv->key == key) return kv->value;
  return {};
}

const std::vector<std::unique_ptr<objects::KeyValueT>>& nodeLabels(const objects::NodeT& n) {
  static const std::vector<std::unique_ptr<objects::KeyValueT>> none;
  return n.spec && n.spec->annotations ? n.spec->annotations->labels : none;
}

const std::vector<std::unique_ptr<objects::KeyValueT>>& engineLabels(const objects::NodeT& n) {
  static const std::vector<std::unique_ptr<objects::KeyValueT>> none;
  return n.description && n.description->engine ? n.description->engine->labels : none;
}

std::string_view platformField(const objects::NodeT& n, bool os) {
  if (!n.description || !n.description->platform) return {};
  return os ? n.description->platform->os : n.description->platform->architecture;
}

// What the node has for the constraint's key.
std::string_view nodeValue(const Constraint& c, const objects::NodeT& n) {
  switch (c.key) {
    case Key::NodeId: return n.id;
    case Key::NodeHostname: return n.description ? std::string_view(n.description->hostname) : "";
    case Key::NodeRole: return n.role == objects::NodeRole::Manager ? "manager" : "worker";
    case Key::NodeOs: return platformField(n, true);
    case Key::NodeArch: return platformField(n, false);
    case Key::NodeLabel: return labelValue(nodeLabels(n), c.label);
    case Key::EngineLabel: return labelValue(engineLabels(n), c.label);
    case Key::NodeIp: return n.status ? std::string_view(n.status->addr) : "";
  }
  return {};
}

std::string_view normalArch(std::string_view arch) {
  if (arch == "x86_64") return "amd64";
  if (arch == "aarch64") return "arm64";
  return arch;
}

}  // namespace

Result<Constraint> parseConstraint(std::string_view text) {
  std::string_view whole = trim(text);
  // Swarm tries == before != and splits at the first occurrence of the operator it finds.
  Constraint c;
  size_t at = whole.find("==");
  if (at == std::string_view::npos) {
    at = whole.find("!=");
    c.op = Operator::NotEqual;
  }
  if (at == std::string_view::npos) return bad("constraint", text, "has no == or != operator");
  std::string_view key = trim(whole.substr(0, at));
  std::string_view value = trim(whole.substr(at + 2));
  if (!parseKey(key, c))
    return bad("constraint", text, "names an unknown key " + quoteInput(key));
  if (!validValue(value))
    return bad("constraint", text,
               value.empty() ? std::string("has no value")
                             : "has a value " + quoteInput(value) +
                                   " with characters other than letters, digits, spaces and "
                                   ":-_.*()?+[]\\^$|/");
  if (c.key == Key::NodeIp && !parseNetwork(value, c.network))
    return bad("constraint", text,
               "has a value " + quoteInput(value) +
                   " that is neither an IP address nor a CIDR network such as 10.0.0.0/24");
  c.value = std::string(value);
  c.text = std::string(whole);
  return c;
}

Result<std::vector<Constraint>> parseConstraints(const std::vector<std::string>& texts) {
  std::vector<Constraint> out;
  out.reserve(texts.size());
  for (auto& t : texts) {
    auto c = parseConstraint(t);
    if (!c) return c.error();
    out.push_back(std::move(c).value());
  }
  return out;
}

bool matches(const Constraint& constraint, const objects::NodeT& node) {
  bool equal = constraint.key == Key::NodeIp
                   ? addressWithin(nodeValue(constraint, node), constraint.network)
                   : equalFold(nodeValue(constraint, node), constraint.value);
  return constraint.op == Operator::Equal ? equal : !equal;
}

bool matchesAll(const std::vector<Constraint>& constraints, const objects::NodeT& node) {
  for (auto& c : constraints)
    if (!matches(c, node)) return false;
  return true;
}

Result<SpreadDescriptor> parseSpreadDescriptor(std::string_view descriptor) {
  std::string_view d = trim(descriptor);
  constexpr std::string_view kForms =
      "a spread descriptor is node.labels.<label> or engine.labels.<label>, e.g. "
      "node.labels.zone";
  for (auto [prefix, engine] : {std::pair{kNodeLabels, false}, std::pair{kEngineLabels, true}}) {
    if (startsWithFold(d, prefix) && validLabel(d.substr(prefix.size())))
      return SpreadDescriptor{engine, std::string(d.substr(prefix.size())), std::string(d)};
  }
  return Error{"placement preference spread descriptor " + quoteInput(descriptor) +
               " is not supported; " + std::string(kForms)};
}

Result<SpreadDescriptor> parsePreference(std::string_view text) {
  std::string_view t = trim(text);
  size_t eq = t.find('=');
  if (eq == std::string_view::npos || trim(t.substr(0, eq)) != "spread")
    return Error{"placement preference " + quoteInput(text) +
                 " is not of the form spread=<descriptor> (spread is the only strategy), e.g. "
                 "spread=node.labels.zone"};
  return parseSpreadDescriptor(t.substr(eq + 1));
}

std::string_view spreadValue(const SpreadDescriptor& descriptor, const objects::NodeT& node) {
  return labelValue(descriptor.engine ? engineLabels(node) : nodeLabels(node), descriptor.label);
}

bool platformMatches(const std::vector<std::unique_ptr<objects::PlatformT>>& platforms,
                     const objects::NodeT& node) {
  if (platforms.empty()) return true;
  std::string_view os = platformField(node, true);
  std::string_view arch = normalArch(platformField(node, false));
  for (auto& p : platforms) {
    if (!p) continue;
    bool archOk = p->architecture.empty() || normalArch(p->architecture) == arch;
    bool osOk = p->os.empty() || p->os == os;
    if (archOk && osOk) return true;
  }
  return false;
}

}  // namespace shoal::constraints
