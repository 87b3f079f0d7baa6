#include "services/raftd/control_rules.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <map>
#include <sstream>

#include <fmt/format.h>

#include "common/curve.h"
#include "common/ids.h"
#include "common/units.h"

namespace shoal::raftd::control {
namespace {

bool isIpv4(const std::string& host) {
  in_addr a;
  return ::inet_pton(AF_INET, host.c_str(), &a) == 1;
}

std::string dur(nanoseconds d) { return formatDuration(d); }

// host[:port] with port 0 when none was given.
Result<node::HostPort> parseOptionalPort(std::string_view text, std::string_view flag,
                                         bool resolveInterfaces = true) {
  auto hp = node::parseAddr(text, 0, resolveInterfaces);
  if (!hp) return Error{std::string(flag) + ": " + hp.error().message, EINVAL};
  return hp;
}

Status mustBeIpv4(const node::HostPort& hp, std::string_view text, std::string_view flag) {
  if (!isIpv4(hp.host))
    return Error{std::string(flag) + " " + quoteInput(text) +
                     ": give an IPv4 address or a network interface (host names and IPv6 "
                     "are not supported here)",
                 EINVAL};
  return {};
}

}  // namespace

Result<nanoseconds> checkHeartbeat(int64_t ns) {
  nanoseconds d(ns);
  if (d < kMinHeartbeat || d > kMaxHeartbeat)
    return Error{"the dispatcher heartbeat period " + dur(d) + " is out of range: give from " +
                     dur(kMinHeartbeat) + " to " + dur(kMaxHeartbeat) +
                     " (--dispatcher-heartbeat; the default is " + dur(kDefaultHeartbeat) + ")",
                 EINVAL};
  return d;
}

Result<nanoseconds> checkCertExpiry(int64_t ns) {
  nanoseconds d(ns);
  if (d < kMinCertExpiry)
    return Error{"the certificate expiry " + dur(d) + " is too short: the minimum is " +
                     dur(kMinCertExpiry) + " (--cert-expiry; the default is " +
                     dur(kDefaultCertExpiry) + ")",
                 EINVAL};
  if (d > kMaxCertExpiry)
    return Error{"the certificate expiry " + dur(d) + " is too long: the maximum is " +
                     dur(kMaxCertExpiry) + " (--cert-expiry)",
                 EINVAL};
  return d;
}

Result<Cidr> parseCidr(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return Error{"address pool " + quoteInput(text) + " " + why +
                     "; give an IPv4 CIDR such as 10.0.0.0/8",
                 EINVAL};
  };
  auto slash = text.find('/');
  if (slash == std::string_view::npos) return bad("has no prefix length");
  std::string host(text.substr(0, slash));
  std::string_view len = text.substr(slash + 1);
  in_addr a;
  if (::inet_pton(AF_INET, host.c_str(), &a) != 1) return bad("is not an IPv4 address");
  unsigned prefix = 0;
  auto [p, ec] = std::from_chars(len.data(), len.data() + len.size(), prefix);
  if (len.empty() || ec != std::errc() || p != len.data() + len.size() || prefix < 1 ||
      prefix > 32)
    return bad("has a prefix length that is not a number from 1 to 32");
  Cidr c{ntohl(a.s_addr), prefix};
  uint32_t mask = prefix == 32 ? ~0u : ~(~0u >> prefix);
  if ((c.address & mask) != c.address) {
    in_addr net{htonl(c.address & mask)};
    char buf[INET_ADDRSTRLEN];
    ::inet_ntop(AF_INET, &net, buf, sizeof buf);
    return Error{"address pool " + quoteInput(text) + " has host bits set: did you mean " +
                     buf + "/" + std::to_string(prefix) + "?",
                 EINVAL};
  }
  return c;
}

Status checkAddressPools(std::span<const std::string> pools, uint32_t subnetSize) {
  if (subnetSize < 1 || subnetSize > kMaxSubnetSize)
    return Error{"the subnet size /" + std::to_string(subnetSize) +
                     " is out of range: give a prefix length from 1 to " +
                     std::to_string(kMaxSubnetSize) + " (--default-addr-pool-mask-length)",
                 EINVAL};
  std::vector<std::pair<std::string, Cidr>> parsed;
  for (const auto& text : pools) {
    auto c = parseCidr(text);
    if (!c) return c.error();
    if (c->prefix > subnetSize)
      return Error{"address pool " + text + " is smaller than one subnet of size /" +
                       std::to_string(subnetSize) +
                       ": give a larger pool or a longer --default-addr-pool-mask-length",
                   EINVAL};
    for (const auto& [otherText, other] : parsed) {
      uint32_t shorter = std::min(c->prefix, other.prefix);
      uint32_t mask = ~(~0u >> shorter);
      if ((c->address & mask) == (other.address & mask))
        return Error{"address pools " + otherText + " and " + text +
                         " overlap: give pools that do not",
                     EINVAL};
    }
    parsed.emplace_back(text, *c);
  }
  return {};
}

std::optional<std::string> defaultRouteInterface(std::string_view table) {
  std::istringstream in{std::string(table)};
  std::string line;
  std::getline(in, line);  // the header
  std::optional<std::string> best;
  long bestMetric = 0;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string iface, dest, gateway, flags, refcnt, use, metric, mask;
    if (!(f >> iface >> dest >> gateway >> flags >> refcnt >> use >> metric >> mask)) continue;
    unsigned long fl = std::strtoul(flags.c_str(), nullptr, 16);
    if (dest != "00000000" || mask != "00000000" || !(fl & 0x1)) continue;  // RTF_UP
    long m = std::strtol(metric.c_str(), nullptr, 10);
    if (!best || m < bestMetric) {
      best = iface;
      bestMetric = m;
    }
  }
  return best;
}

Result<InitSettings> validateInit(const InitInput& in, const DefaultHost& defaultHost) {
  InitSettings s;
  std::optional<node::HostPort> listen, advertise;
  if (!in.listenAddr.empty()) {
    auto l = parseOptionalPort(in.listenAddr, "--listen-addr");
    if (!l) return l.error();
    if (auto st = mustBeIpv4(*l, in.listenAddr, "--listen-addr"); !st) return st.error();
    listen = *l;
  }
  if (!in.advertiseAddr.empty()) {
    auto a = parseOptionalPort(in.advertiseAddr, "--advertise-addr");
    if (!a) return a.error();
    if (auto st = mustBeIpv4(*a, in.advertiseAddr, "--advertise-addr"); !st) return st.error();
    if (a->host == "0.0.0.0")
      return Error{"--advertise-addr " + quoteInput(in.advertiseAddr) +
                       ": 0.0.0.0 is not an address other nodes can reach; give this node's "
                       "address or interface",
                   EINVAL};
    advertise = *a;
  }
  uint16_t lp = listen ? listen->port : 0;
  uint16_t ap = advertise ? advertise->port : 0;
  if (lp && ap && lp != ap)
    return Error{"the listen port " + std::to_string(lp) + " and the advertise port " +
                     std::to_string(ap) +
                     " differ: shoal listens and advertises on the same port; give one port",
                 EINVAL};
  s.port = ap ? ap : lp ? lp : node::kDefaultPort;
  s.listenHost = listen ? listen->host : "0.0.0.0";
  if (advertise) {
    s.advertiseHost = advertise->host;
  } else if (listen && listen->host != "0.0.0.0") {
    s.advertiseHost = listen->host;  // docker advertises a specific listen address
  } else {
    auto h = defaultHost();
    if (!h) return h.error();
    s.advertiseHost = *h;
  }

  if (in.heartbeatNs != 0) {
    auto h = checkHeartbeat(in.heartbeatNs);
    if (!h) return h.error();
    s.heartbeat = *h;
  }
  if (in.certExpiryNs != 0) {
    auto c = checkCertExpiry(in.certExpiryNs);
    if (!c) return c.error();
    s.certExpiry = *c;
  }
  s.addressPools = in.addressPools;
  if (s.addressPools.empty()) s.addressPools.emplace_back(kDefaultAddressPool);
  if (in.subnetSize != 0) s.subnetSize = in.subnetSize;
  if (auto st = checkAddressPools(s.addressPools, s.subnetSize); !st) return st.error();
  return s;
}

Status validateJoinRaft(const JoinRaftInput& in) {
  if (in.raftId == 0) return Error{"JoinRaft: the raft id is 0; the join reply gives it", EINVAL};
  if (in.raftClusterId == 0)
    return Error{"JoinRaft: the raft cluster id is 0; the join reply gives it", EINVAL};
  auto hostPort = [](std::string_view text, std::string_view what) -> Status {
    auto hp = parseOptionalPort(text, what, false);
    if (!hp) return hp.error();
    if (hp->port == 0)
      return Error{std::string(what) + " " + quoteInput(text) + " has no port: give host:port",
                   EINVAL};
    return {};
  };
  if (auto st = hostPort(in.listenAddr, "JoinRaft listen_addr"); !st) return st;
  if (auto st = hostPort(in.advertiseAddr, "JoinRaft advertise_addr"); !st) return st;
  if (in.advertiseAddr.starts_with("0.0.0.0"))
    return Error{"JoinRaft advertise_addr " + quoteInput(in.advertiseAddr) +
                     " is not an address peers can reach",
                 EINVAL};
  if (in.peers.empty())
    return Error{"JoinRaft names no peer: a joining manager needs at least one manager to "
                 "hear from",
                 EINVAL};
  std::vector<uint64_t> seen;
  for (const auto& p : in.peers) {
    std::string which = "JoinRaft peer " + std::to_string(p.raftId);
    if (p.raftId == 0) return Error{"JoinRaft: a peer has raft id 0", EINVAL};
    if (p.raftId == in.raftId)
      return Error{which + " has this node's own raft id; the join reply is inconsistent", EINVAL};
    if (std::find(seen.begin(), seen.end(), p.raftId) != seen.end())
      return Error{which + " is named twice", EINVAL};
    seen.push_back(p.raftId);
    if (auto st = hostPort(p.addr, which + " addr"); !st) return st;
    if (!curve::isValidKey(p.publicKey))
      return Error{which + " has no valid public key (40 Z85 characters expected)", EINVAL};
  }
  return {};
}

Result<std::string> resolveNode(std::string_view query, std::span<const NodeName> nodes) {
  if (query.empty()) return Error{"no node given: give a node ID, ID prefix or hostname", EINVAL};
  for (const auto& n : nodes)
    if (n.id == query) return n.id;
  std::vector<std::string> byName;
  for (const auto& n : nodes)
    if (n.hostname == query) byName.push_back(n.id);
  if (byName.size() == 1) return byName.front();
  if (byName.size() > 1) {
    std::sort(byName.begin(), byName.end());
    std::string listed;
    for (const auto& id : byName) listed += (listed.empty() ? "" : ", ") + id;
    return Error{"hostname " + quoteInput(query) + " names " + std::to_string(byName.size()) +
                     " nodes (" + listed + "): give the ID of the one you mean",
                 ENOTUNIQ};
  }
  std::vector<std::string_view> ids;
  for (const auto& n : nodes) ids.push_back(n.id);
  auto match = matchIdPrefix(query, ids);
  if (match.none())
    return Error{"no node " + quoteInput(query) +
                     ": no node has that hostname or an ID starting with it; `shoal node ls` "
                     "lists the nodes",
                 ENOENT};
  return resolveIdPrefix(query, ids, "node");
}

std::string nodeLabel(const objects::NodeT& node) {
  std::string shortId = node.id.substr(0, 12);
  if (node.description && !node.description->hostname.empty())
    return node.description->hostname + " (" + shortId + ")";
  return shortId;
}

Status checkLabelKey(std::string_view key) {
  if (key.empty()) return Error{"a label key is empty: give key=value", EINVAL};
  if (key.size() > 256)
    return Error{"label key " + quoteInput(key) + " is longer than 256 characters", EINVAL};
  for (char c : key) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == '=')
      return Error{"label key " + quoteInput(key) +
                       " has a space, '=' or a character that is not printable ASCII",
                   EINVAL};
  }
  return {};
}

Status applyNodeChanges(objects::NodeT& node, const NodeChanges& changes) {
  std::map<std::string, std::string> labels;
  if (node.spec && node.spec->annotations)
    for (const auto& kv : node.spec->annotations->labels)
      if (kv) labels[kv->key] = kv->value;
  // docker node update: --label-add first, then --label-rm.
  for (const auto& [k, v] : changes.labelAdd) {
    if (auto st = checkLabelKey(k); !st) return st;
    labels[k] = v;
  }
  for (const auto& k : changes.labelRm) {
    if (!labels.erase(k))
      return Error{"node " + nodeLabel(node) + " has no label " + quoteInput(k) +
                       " to remove; `shoal node inspect " + node.id.substr(0, 12) +
                       "` shows its labels",
                   ENOENT};
  }
  if (changes.availability) {
    auto a = static_cast<uint8_t>(*changes.availability);
    if (a > static_cast<uint8_t>(objects::NodeAvailability::MAX))
      return Error{"availability " + std::to_string(a) + " is not active, pause or drain", EINVAL};
  }
  if (!node.spec) node.spec = std::make_unique<objects::NodeSpecT>();
  if (!node.spec->annotations) node.spec->annotations = std::make_unique<objects::AnnotationsT>();
  auto& out = node.spec->annotations->labels;
  out.clear();
  for (const auto& [k, v] : labels) {
    auto kv = std::make_unique<objects::KeyValueT>();
    kv->key = k;
    kv->value = v;
    out.push_back(std::move(kv));
  }
  if (changes.availability) node.spec->availability = *changes.availability;
  return {};
}

std::vector<ManagerView> managerViews(std::span<const StoredManager> stored, const RaftView& raft) {
  auto memberOf = [&](uint64_t id) {
    return std::find_if(raft.members.begin(), raft.members.end(),
                        [&](const RaftMember& m) { return m.raftId == id; });
  };
  auto reachable = [&](uint64_t id, bool storedReachable) {
    if (id == raft.self || id == raft.leader) return true;
    auto m = memberOf(id);
    if (raft.leads && m != raft.members.end()) return m->reachable;
    return storedReachable;
  };
  std::vector<ManagerView> out;
  for (const auto& s : stored) {
    if (s.raftId == 0) continue;
    auto m = memberOf(s.raftId);
    bool voter = raft.members.empty() || (m != raft.members.end() && m->voter);
    out.push_back({s.name, s.raftId, voter, reachable(s.raftId, s.storedReachable)});
  }
  for (const auto& m : raft.members)
    if (std::none_of(out.begin(), out.end(), [&](auto& v) { return v.raftId == m.raftId; }))
      out.push_back({fmt::format("raft member {:x}", m.raftId), m.raftId, m.voter,
                     reachable(m.raftId, false)});
  return out;
}

Status keepsQuorum(std::span<const ManagerView> managers, uint64_t raftId,
                   std::string_view action, std::string_view advice) {
  bool targetVotes = false;
  size_t voters = 0, unreachable = 0, remaining = 0;
  for (const auto& m : managers) {
    if (!m.voter) continue;
    ++voters;
    if (m.raftId == raftId) {
      targetVotes = true;
      continue;
    }
    if (m.reachable)
      ++remaining;
    else
      ++unreachable;
  }
  if (!targetVotes) return {};  // a learner or a node raft does not know: no vote is lost
  size_t majority = voters / 2 + 1;
  if (remaining >= majority) return {};
  return Error{std::string(action) + " would lose quorum: " + std::to_string(remaining) +
                   " of the " + std::to_string(voters) + " managers would remain" +
                   (unreachable ? " reachable" : "") + ", and " + std::to_string(majority) +
                   " must agree on the change; " + std::string(advice),
               EBUSY};
}

}  // namespace shoal::raftd::control
