// node ls / node inspect in docker's shapes (see nodes.h).
#include "tools/shoal/nodes.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>

#include "common/units.h"

namespace shoal::cli {
namespace {

using nlohmann::json;

std::string str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }

json labelMap(const flatbuffers::Vector<flatbuffers::Offset<objects::KeyValue>>* labels) {
  json out = json::object();
  if (labels)
    for (const auto* kv : *labels)
      if (kv && kv->key()) out[kv->key()->str()] = str(kv->value());
  return out;
}

// Go's time.Time split in UTC: the date and time text and the nanoseconds (trailing zeros cut,
// with their dot; "" for a whole second).
std::pair<std::string, std::string> splitTime(int64_t unixNanos, const char* layout) {
  int64_t secs = unixNanos / 1'000'000'000;
  int64_t nanos = unixNanos % 1'000'000'000;
  if (nanos < 0) {
    nanos += 1'000'000'000;
    --secs;
  }
  std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char date[64];
  std::strftime(date, sizeof date, layout, &tm);
  std::string frac;
  if (nanos) {
    char buf[16];
    std::snprintf(buf, sizeof buf, ".%09lld", static_cast<long long>(nanos));
    frac = buf;
    while (frac.back() == '0') frac.pop_back();
  }
  return {date, frac};
}

bool isDigit(char c) { return c >= '0' && c <= '9'; }

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

bool hasPrefix(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

bool anyPrefix(std::string_view s, const std::vector<std::string>& prefixes) {
  if (prefixes.empty()) return true;
  return std::any_of(prefixes.begin(), prefixes.end(), [&](auto& p) { return hasPrefix(s, p); });
}

// Swarmkit's filterMatchLabels: every wanted label is there (with the value, when given).
bool labelsMatch(const flatbuffers::Vector<flatbuffers::Offset<objects::KeyValue>>* labels,
                 const std::vector<std::pair<std::string, std::optional<std::string>>>& wanted) {
  for (auto& [key, value] : wanted) {
    bool found = false;
    if (labels)
      for (const auto* kv : *labels)
        if (kv && str(kv->key()) == key && (!value || str(kv->value()) == *value)) found = true;
    if (!found) return false;
  }
  return true;
}

std::string managerStatusOf(const objects::Node& node) {
  const auto* ms = node.manager_status();
  if (node.role() != objects::NodeRole::Manager || !ms) return "";
  if (ms->leader()) return "Leader";
  return capitalizeFirst(dockerReachability(ms->reachability()));
}

const objects::NodeDescription* descriptionOf(const objects::Node& node) { return node.description(); }

std::string hostnameOf(const objects::Node& node) {
  return descriptionOf(node) ? str(descriptionOf(node)->hostname()) : "";
}

}  // namespace

std::string_view dockerRole(objects::NodeRole role) {
  return role == objects::NodeRole::Manager ? "manager" : "worker";
}

std::string_view dockerAvailability(objects::NodeAvailability availability) {
  switch (availability) {
    case objects::NodeAvailability::Active: return "active";
    case objects::NodeAvailability::Pause: return "pause";
    case objects::NodeAvailability::Drain: return "drain";
  }
  return "unknown";
}

std::string_view dockerState(objects::NodeState state) {
  switch (state) {
    case objects::NodeState::Unknown: return "unknown";
    case objects::NodeState::Down: return "down";
    case objects::NodeState::Ready: return "ready";
    case objects::NodeState::Disconnected: return "disconnected";
  }
  return "unknown";
}

std::string_view dockerReachability(objects::Reachability reachability) {
  switch (reachability) {
    case objects::Reachability::Unknown: return "unknown";
    case objects::Reachability::Unreachable: return "unreachable";
    case objects::Reachability::Reachable: return "reachable";
  }
  return "unknown";
}

std::string capitalizeFirst(std::string_view text) {
  std::string out(text);
  if (!out.empty()) out[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(out[0])));
  return out;
}

std::string rfc3339Nano(int64_t unixNanos) {
  auto [date, frac] = splitTime(unixNanos, "%Y-%m-%dT%H:%M:%S");
  return date + frac + "Z";
}

std::string goTimeString(int64_t unixNanos) {
  auto [date, frac] = splitTime(unixNanos, "%Y-%m-%d %H:%M:%S");
  return date + frac + " +0000 UTC";
}

std::string bytesSize(double bytes) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"};
  size_t i = 0;
  while (bytes >= 1024.0 && i + 1 < std::size(units)) {
    bytes /= 1024.0;
    ++i;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.4g%s", bytes, units[i]);
  return buf;
}

const Headers& nodeHeaders() {
  static const Headers headers = {
      {"ID", "ID"},
      {"Self", ""},
      {"Hostname", "HOSTNAME"},
      {"Status", "STATUS"},
      {"Availability", "AVAILABILITY"},
      {"ManagerStatus", "MANAGER STATUS"},
      {"EngineVersion", "ENGINE VERSION"},
      {"TLSStatus", "TLS STATUS"},
  };
  return headers;
}

json nodeRow(const objects::Node& node, std::string_view selfId) {
  const auto* d = descriptionOf(node);
  const auto* spec = node.spec();
  std::string id = str(node.id());
  return {
      {"ID", id},
      {"Self", !selfId.empty() && id == selfId},
      {"Hostname", hostnameOf(node)},
      {"Status", capitalizeFirst(dockerState(node.status() ? node.status()->state()
                                                           : objects::NodeState::Unknown))},
      {"Availability", capitalizeFirst(dockerAvailability(
                           spec ? spec->availability() : objects::NodeAvailability::Active))},
      {"ManagerStatus", managerStatusOf(node)},
      {"EngineVersion", d && d->engine() ? str(d->engine()->engine_version()) : ""},
      // Every node's certificate is issued by the one cluster CA (DESIGN.md §4); there is no
      // root rotation that would leave a node needing a new one.
      {"TLSStatus", "Ready"},
  };
}

json nodeInspect(const objects::Node& node, InspectShape shape) {
  bool full = shape == InspectShape::Template;
  const auto* spec = node.spec();
  const auto* d = descriptionOf(node);
  const auto* st = node.status();
  const objects::Meta* meta = node.meta();

  json specJ = json::object();
  std::string name = spec && spec->annotations() ? str(spec->annotations()->name()) : "";
  if (full || !name.empty()) specJ["Name"] = name;
  specJ["Labels"] = labelMap(spec && spec->annotations() ? spec->annotations()->labels() : nullptr);
  specJ["Role"] = dockerRole(spec ? spec->desired_role() : node.role());
  specJ["Availability"] =
      dockerAvailability(spec ? spec->availability() : objects::NodeAvailability::Active);

  json platform = json::object(), resources = json::object(), engine = json::object();
  auto put = [full](json& j, const char* key, auto value, bool empty) {
    if (full || !empty) j[key] = value;
  };
  const auto* p = d ? d->platform() : nullptr;
  put(platform, "Architecture", p ? str(p->architecture()) : "", !p || !p->architecture() || !p->architecture()->size());
  put(platform, "OS", p ? str(p->os()) : "", !p || !p->os() || !p->os()->size());
  const auto* r = d ? d->resources() : nullptr;
  put(resources, "NanoCPUs", r ? r->nano_cpus() : 0, !r || !r->nano_cpus());
  put(resources, "MemoryBytes", r ? r->memory_bytes() : 0, !r || !r->memory_bytes());
  const auto* e = d ? d->engine() : nullptr;
  std::string engineVersion = e ? str(e->engine_version()) : "";
  put(engine, "EngineVersion", engineVersion, engineVersion.empty());
  json engineLabels = labelMap(e ? e->labels() : nullptr);
  put(engine, "Labels", engineLabels, engineLabels.empty());
  if (full) engine["Plugins"] = json::array();  // shoal's engine has no plugins
  json desc = json::object();
  std::string hostname = hostnameOf(node);
  put(desc, "Hostname", hostname, hostname.empty());
  desc["Platform"] = platform;
  desc["Resources"] = resources;
  desc["Engine"] = engine;

  json status = json::object();
  status["State"] = dockerState(st ? st->state() : objects::NodeState::Unknown);
  std::string message = st ? str(st->message()) : "", addr = st ? str(st->addr()) : "";
  put(status, "Message", message, message.empty());
  put(status, "Addr", addr, addr.empty());

  json out = {
      {"ID", str(node.id())},
      {"Version", {{"Index", meta ? meta->version() : 0}}},
      {"CreatedAt", rfc3339Nano(meta ? meta->created_at() : 0)},
      {"UpdatedAt", rfc3339Nano(meta ? meta->updated_at() : 0)},
      {"Spec", specJ},
      {"Description", desc},
      {"Status", status},
  };
  if (const auto* ms = node.manager_status(); ms && node.role() == objects::NodeRole::Manager) {
    json m = json::object();
    put(m, "Leader", ms->leader(), !ms->leader());
    m["Reachability"] = dockerReachability(ms->reachability());
    std::string maddr = str(ms->addr());
    put(m, "Addr", maddr, maddr.empty());
    out["ManagerStatus"] = m;
  }
  return out;
}

std::string nodePretty(const objects::Node& node) {
  // The lines and their tabs are docker's nodeInspectPrettyTemplate's: docker prints them
  // without a tabwriter, so the tabs reach the terminal as they are.
  const auto* spec = node.spec();
  const auto* ann = spec ? spec->annotations() : nullptr;
  const auto* d = descriptionOf(node);
  const auto* st = node.status();
  std::string out = "ID:\t\t\t" + str(node.id()) + "\n";
  if (ann && ann->name() && ann->name()->size()) out += "Name:\t\t\t" + ann->name()->str() + "\n";
  auto labels = [&out](const flatbuffers::Vector<flatbuffers::Offset<objects::KeyValue>>* l,
                       const char* title) {
    json m = labelMap(l);  // sorted by key, as Go's range over a map
    if (m.empty()) return;
    out += std::string(title) + ":\n";
    for (auto& [k, v] : m.items()) {
      std::string value = v.get<std::string>();
      out += " - " + k + (value.empty() ? "" : "=" + value) + "\n";
    }
  };
  labels(ann ? ann->labels() : nullptr, "Labels");
  out += "Hostname:              \t" + hostnameOf(node) + "\n";
  out += "Joined at:             \t" +
         capitalizeFirst(goTimeString(node.meta() ? node.meta()->created_at() : 0)) + "\n";
  out += "Status:\n";
  out += " State:\t\t\t" +
         capitalizeFirst(dockerState(st ? st->state() : objects::NodeState::Unknown)) + "\n";
  if (st && st->message() && st->message()->size())
    out += " Message:              \t" + capitalizeFirst(st->message()->str()) + "\n";
  out += " Availability:         \t" +
         capitalizeFirst(dockerAvailability(spec ? spec->availability()
                                                 : objects::NodeAvailability::Active)) + "\n";
  if (st && st->addr() && st->addr()->size()) out += " Address:\t\t" + st->addr()->str() + "\n";
  if (const auto* ms = node.manager_status(); ms && node.role() == objects::NodeRole::Manager) {
    out += "Manager Status:\n";
    out += " Address:\t\t" + str(ms->addr()) + "\n";
    out += " Raft Status:\t\t" + capitalizeFirst(dockerReachability(ms->reachability())) + "\n";
    out += std::string(" Leader:\t\t") + (ms->leader() ? "Yes" : "No") + "\n";
  }
  const auto* p = d ? d->platform() : nullptr;
  out += "Platform:\n";
  out += " Operating System:\t" + (p ? str(p->os()) : "") + "\n";
  out += " Architecture:\t\t" + (p ? str(p->architecture()) : "") + "\n";
  const auto* r = d ? d->resources() : nullptr;
  int64_t cpus = r ? r->nano_cpus() / 1'000'000'000 : 0;
  int64_t memory = r ? r->memory_bytes() : 0;
  out += "Resources:\n";
  out += " CPUs:\t\t\t" + std::to_string(cpus) + "\n";
  out += " Memory:\t\t" + (memory ? bytesSize(static_cast<double>(memory)) : "") + "\n";
  const auto* e = d ? d->engine() : nullptr;
  out += "Engine Version:\t\t" + (e ? str(e->engine_version()) : "") + "\n";
  labels(e ? e->labels() : nullptr, "Engine Labels");
  return out;
}

Result<NodeFilter> parseNodeFilters(const std::vector<std::string>& flags) {
  NodeFilter f;
  auto label = [](std::string_view v) -> std::pair<std::string, std::optional<std::string>> {
    auto eq = v.find('=');
    if (eq == std::string_view::npos) return {std::string(v), std::nullopt};
    return {std::string(v.substr(0, eq)), std::string(v.substr(eq + 1))};
  };
  for (const auto& flag : flags) {
    auto eq = flag.find('=');
    if (eq == std::string::npos)
      return Error{"bad format of filter " + quoteInput(flag) +
                   " (expected name=value): use id=, name=, role=, membership=, label= or "
                   "node.label="};
    std::string key = lower(trim(std::string_view(flag).substr(0, eq)));
    std::string value = trim(std::string_view(flag).substr(eq + 1));
    if (key == "id") {
      f.ids.push_back(value);
    } else if (key == "name") {
      f.names.push_back(value);
    } else if (key == "role") {
      std::string v = lower(value);
      if (v == "manager") f.roles.push_back(objects::NodeRole::Manager);
      else if (v == "worker") f.roles.push_back(objects::NodeRole::Worker);
      else if (!v.empty())
        return Error{"invalid role filter value " + quoteInput(value) + ": use role=manager or role=worker"};
    } else if (key == "membership") {
      std::string v = lower(value);
      if (v == "accepted") f.memberships.push_back(objects::NodeMembership::Accepted);
      else if (v == "pending") f.memberships.push_back(objects::NodeMembership::Pending);
      else if (!v.empty())
        return Error{"invalid membership filter value " + quoteInput(value) +
                     ": use membership=accepted or membership=pending"};
    } else if (key == "label") {
      f.engineLabels.push_back(label(value));
    } else if (key == "node.label") {
      f.nodeLabels.push_back(label(value));
    } else {
      return Error{"invalid filter " + quoteInput(key) +
                   ": node ls filters on id, name, role, membership, label and node.label"};
    }
  }
  return f;
}

bool matches(const NodeFilter& f, const objects::Node& node) {
  if (!anyPrefix(str(node.id()), f.ids)) return false;
  if (!f.names.empty() && (!descriptionOf(node) || !anyPrefix(hostnameOf(node), f.names))) return false;
  if (!f.roles.empty() && std::find(f.roles.begin(), f.roles.end(), node.role()) == f.roles.end())
    return false;
  auto membership = node.spec() ? node.spec()->membership() : objects::NodeMembership::Pending;
  if (!f.memberships.empty() &&
      std::find(f.memberships.begin(), f.memberships.end(), membership) == f.memberships.end())
    return false;
  const auto* d = descriptionOf(node);
  if (!labelsMatch(d && d->engine() ? d->engine()->labels() : nullptr, f.engineLabels)) return false;
  const auto* ann = node.spec() ? node.spec()->annotations() : nullptr;
  return labelsMatch(ann ? ann->labels() : nullptr, f.nodeLabels);
}

bool naturalLess(std::string_view a, std::string_view b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    bool da = isDigit(a[i]), db = isDigit(b[j]);
    if (da != db) return da;  // digits sort before other characters
    if (!da) {
      if (a[i] != b[j]) return static_cast<unsigned char>(a[i]) < static_cast<unsigned char>(b[j]);
      ++i, ++j;
      continue;
    }
    // Two numbers: without their leading zeros, the shorter is smaller, then the text decides,
    // then the one with fewer leading zeros is smaller.
    size_t zi = i, zj = j;
    while (i < a.size() && a[i] == '0') ++i;
    while (j < b.size() && b[j] == '0') ++j;
    size_t si = i, sj = j;
    while (i < a.size() && isDigit(a[i])) ++i;
    while (j < b.size() && isDigit(b[j])) ++j;
    if (i - si != j - sj) return i - si < j - sj;
    if (auto na = a.substr(si, i - si), nb = b.substr(sj, j - sj); na != nb) return na < nb;
    if (si - zi != sj - zj) return si - zi < sj - zj;
  }
  return a.size() - i < b.size() - j;
}

void sortNodes(std::vector<const objects::Node*>& nodes) {
  std::sort(nodes.begin(), nodes.end(), [](const objects::Node* x, const objects::Node* y) {
    std::string hx = hostnameOf(*x), hy = hostnameOf(*y);
    if (naturalLess(hx, hy)) return true;
    if (naturalLess(hy, hx)) return false;
    return str(x->id()) < str(y->id());
  });
}

Result<const objects::Node*> resolveNode(const std::vector<const objects::Node*>& nodes,
                                         std::string_view ref, std::string_view selfId) {
  if (ref == "self") {
    if (selfId.empty())
      return Error{"cannot tell which node `self` is: this node's agentd (and raftd) did not say "
                   "its node id; is this node in a swarm (shoal info)?"};
    ref = selfId;
  }
  if (ref.empty()) return Error{"node \"\" not found: give a node id, an id prefix or a hostname"};
  for (const auto* n : nodes)
    if (str(n->id()) == ref) return n;
  std::vector<const objects::Node*> found;
  for (const auto* n : nodes)
    if (hostnameOf(*n) == ref) found.push_back(n);
  if (found.empty())
    for (const auto* n : nodes)
      if (hasPrefix(str(n->id()), ref)) found.push_back(n);
  if (found.empty()) return Error{"node " + std::string(ref) + " not found"};
  if (found.size() > 1)
    return Error{"node " + std::string(ref) + " is ambiguous (" + std::to_string(found.size()) +
                 " matches found)"};
  return found.front();
}

}  // namespace shoal::cli
