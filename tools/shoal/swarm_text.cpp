// The swarm commands' and `shoal info`'s texts, in docker's words (see swarm_text.h).
#include "tools/shoal/swarm_text.h"

#include <algorithm>

#include "common/units.h"
#include "tools/shoal/nodes.h"

namespace shoal::cli {
namespace {

using nlohmann::json;

std::string str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }

// A value of `from` when it has the type of `fallback`, else fallback.
json pick(const json& from, const char* key, const json& fallback) {
  if (!from.is_object()) return fallback;
  auto it = from.find(key);
  if (it == from.end() || it->type() != fallback.type()) {
    // JSON numbers come as signed or unsigned integers; either is a number here.
    if (it != from.end() && it->is_number() && fallback.is_number()) return *it;
    return fallback;
  }
  return *it;
}

std::string text(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_null()) return "";
  return j.dump();
}

}  // namespace

std::string initText(std::string_view nodeId, std::string_view workerToken,
                     std::string_view managerAddr) {
  return "Swarm initialized: current node (" + std::string(nodeId) + ") is now a manager.\n\n" +
         joinTokenText("worker", workerToken, managerAddr) +
         "To add a manager to this swarm, run 'shoal swarm join-token manager' and follow the "
         "instructions.\n\n";
}

std::string joinTokenText(std::string_view role, std::string_view token,
                          std::string_view managerAddr) {
  return "To add a " + std::string(role) + " to this swarm, run the following command:\n\n" +
         "    shoal swarm join --token " + std::string(token) + " " + std::string(managerAddr) +
         "\n\n";
}

std::string rotatedText(std::string_view role) {
  return "Successfully rotated " + std::string(role) + " join token.\n\n";
}

Result<std::chrono::nanoseconds> parsePositiveDuration(std::string_view text) {
  auto d = parseDuration(text);
  if (!d) return d.error();
  if (d->count() <= 0)
    return Error{"the duration " + quoteInput(text) + " must be more than 0, e.g. 5s or 1m30s"};
  return *d;
}

std::string humanDuration(std::chrono::nanoseconds d) {
  double secondsF = static_cast<double>(d.count()) / 1e9;
  auto seconds = static_cast<int64_t>(secondsF);
  if (seconds < 1) return "Less than a second";
  if (seconds == 1) return "1 second";
  if (seconds < 60) return std::to_string(seconds) + " seconds";
  auto minutes = static_cast<int64_t>(secondsF / 60);
  if (minutes == 1) return "About a minute";
  if (minutes < 60) return std::to_string(minutes) + " minutes";
  double hoursF = secondsF / 3600;
  auto hours = static_cast<int64_t>(hoursF + 0.5);
  if (hours == 1) return "About an hour";
  if (hours < 48) return std::to_string(hours) + " hours";
  if (hours < 24 * 7 * 2) return std::to_string(hours / 24) + " days";
  if (hours < 24 * 30 * 2) return std::to_string(hours / 24 / 7) + " weeks";
  if (hours < 24 * 365 * 2) return std::to_string(hours / 24 / 30) + " months";
  return std::to_string(static_cast<int64_t>(hoursF) / 24 / 365) + " years";
}

json clusterInfo(const objects::Cluster& c) {
  const auto* spec = c.spec();
  const auto* ann = spec ? spec->annotations() : nullptr;
  json labels = json::object();
  if (ann && ann->labels())
    for (const auto* kv : *ann->labels())
      if (kv && kv->key()) labels[kv->key()->str()] = str(kv->value());
  const auto* o = spec ? spec->orchestration() : nullptr;
  const auto* r = spec ? spec->raft() : nullptr;
  const auto* d = spec ? spec->dispatcher() : nullptr;
  const auto* ca = spec ? spec->ca_config() : nullptr;
  const auto* enc = spec ? spec->encryption_config() : nullptr;
  json pools = json::array();
  if (c.default_address_pool())
    for (const auto* p : *c.default_address_pool()) pools.push_back(str(p));
  const objects::Meta* meta = c.meta();
  return {
      {"ID", str(c.id())},
      {"Version", {{"Index", meta ? meta->version() : 0}}},
      {"CreatedAt", rfc3339Nano(meta ? meta->created_at() : 0)},
      {"UpdatedAt", rfc3339Nano(meta ? meta->updated_at() : 0)},
      {"Spec",
       {{"Name", ann ? str(ann->name()) : ""},
        {"Labels", labels},
        {"Orchestration", {{"TaskHistoryRetentionLimit", o ? o->task_history_retention_limit() : 0}}},
        {"Raft",
         {{"SnapshotInterval", r ? r->snapshot_interval() : 0},
          {"KeepOldSnapshots", r ? r->keep_old_snapshots() : 0},
          {"LogEntriesForSlowFollowers", r ? r->log_entries_for_slow_followers() : 0},
          {"ElectionTick", r ? r->election_tick() : 0},
          {"HeartbeatTick", r ? r->heartbeat_tick() : 0}}},
        {"Dispatcher", {{"HeartbeatPeriod", d ? d->heartbeat_period() : 0}}},
        {"CAConfig",
         {{"NodeCertExpiry", ca ? ca->node_cert_expiry() : 0},
          {"ForceRotate", ca ? ca->force_rotate() : 0}}},
        {"TaskDefaults", json::object()},
        {"EncryptionConfig", {{"AutoLockManagers", enc && enc->auto_lock_managers()}}}}},
      {"TLSInfo", json::object()},
      {"RootRotationInProgress", false},
      {"DefaultAddrPool", pools},
      {"SubnetSize", c.subnet_size()},
      {"DataPathPort", c.vxlan_udp_port()},
  };
}

json swarmInfo(const InfoSources& src) {
  const json none = json::object();
  const json& agent = src.agent ? *src.agent : none;
  const json& raft = src.raft ? *src.raft : none;
  // agentd speaks for the node, raftd for the manager it hosts: agentd first.
  auto either = [&](const char* key, const json& fallback) {
    return pick(agent, key, pick(raft, key, fallback));
  };
  json s;
  s["NodeID"] = either("NodeID", "");
  s["NodeAddr"] = either("NodeAddr", "");
  s["LocalNodeState"] = either("LocalNodeState", "inactive");
  bool raftActive = pick(raft, "LocalNodeState", "") == "active";
  s["ControlAvailable"] = pick(agent, "ControlAvailable", pick(raft, "ControlAvailable", raftActive));
  s["Error"] = either("Error", "");
  s["RemoteManagers"] = nullptr;  // docker's JSON for none
  for (const json* from : {&agent, &raft})
    if (auto it = from->find("RemoteManagers"); it != from->end() && it->is_array()) {
      s["RemoteManagers"] = *it;
      break;
    }
  s["Nodes"] = 0;
  s["Managers"] = 0;
  if (src.nodes) {
    int managers = 0;
    for (const auto* n : *src.nodes) {
      if (n->role() == objects::NodeRole::Manager) ++managers;
      const auto* ms = n->manager_status();
      if (n->role() == objects::NodeRole::Manager && ms && ms->leader())
        s["Leader"] = {{"NodeID", str(n->id())},
                       {"Hostname", n->description() ? str(n->description()->hostname()) : ""},
                       {"Addr", str(ms->addr())}};
    }
    // Without agentd, this node's address is the one the managers see it at.
    std::string self = s["NodeID"].get<std::string>();
    if (s["NodeAddr"] == "" && !self.empty())
      for (const auto* n : *src.nodes)
        if (str(n->id()) == self && n->status()) s["NodeAddr"] = str(n->status()->addr());
    s["Nodes"] = src.nodes->size();
    s["Managers"] = managers;
  }
  if (!s.contains("Leader")) {
    std::string leader = pick(raft, "Leader", "").get<std::string>();
    if (!leader.empty()) s["Leader"] = {{"NodeID", leader}, {"Hostname", ""}, {"Addr", ""}};
  }
  if (src.cluster) s["Cluster"] = clusterInfo(*src.cluster);
  return {{"Swarm", s}};
}

std::string infoText(const json& info) {
  const json& s = info.contains("Swarm") ? info["Swarm"] : json::object();
  std::string state = text(pick(s, "LocalNodeState", "inactive"));
  std::string out = "Swarm: " + state + "\n";
  if (state == "inactive" || state == "locked") return out;
  out += " NodeID: " + text(pick(s, "NodeID", "")) + "\n";
  std::string error = text(pick(s, "Error", ""));
  if (!error.empty()) out += " Error: " + error + "\n";
  bool manager = pick(s, "ControlAvailable", false).get<bool>();
  out += std::string(" Is Manager: ") + (manager ? "true" : "false") + "\n";
  const json& c = s.contains("Cluster") ? s["Cluster"] : json();
  if (c.is_object() && manager && error.empty() && state != "error") {
    const json& spec = c["Spec"];
    out += " ClusterID: " + text(c["ID"]) + "\n";
    out += " Managers: " + text(s["Managers"]) + "\n";
    out += " Nodes: " + text(s["Nodes"]) + "\n";
    if (c["DefaultAddrPool"].is_array() && !c["DefaultAddrPool"].empty()) {
      std::string pools;
      for (auto& p : c["DefaultAddrPool"]) pools += text(p) + "  ";
      out += " Default Address Pool: " + pools + "\n";
      out += " SubnetSize: " + text(c["SubnetSize"]) + "\n";
    }
    if (c["DataPathPort"].is_number() && c["DataPathPort"].get<int64_t>() > 0)
      out += " Data Path Port: " + text(c["DataPathPort"]) + "\n";
    out += " Orchestration:\n";
    out += "  Task History Retention Limit: " +
           text(spec["Orchestration"]["TaskHistoryRetentionLimit"]) + "\n";
    out += " Raft:\n";
    out += "  Snapshot Interval: " + text(spec["Raft"]["SnapshotInterval"]) + "\n";
    out += "  Number of Old Snapshots to Retain: " + text(spec["Raft"]["KeepOldSnapshots"]) + "\n";
    out += "  Heartbeat Tick: " + text(spec["Raft"]["HeartbeatTick"]) + "\n";
    out += "  Election Tick: " + text(spec["Raft"]["ElectionTick"]) + "\n";
    if (s.contains("Leader")) {
      const json& l = s["Leader"];
      std::string host = text(l["Hostname"]), id = text(l["NodeID"]);
      out += "  Leader: " + (host.empty() ? id : host + " (" + id + ")") + "\n";
    } else {
      out += "  Leader: none known (the managers may be electing one; check `shoal node ls`)\n";
    }
    auto ns = [](const json& v) {
      return std::chrono::nanoseconds(v.is_number() ? v.get<int64_t>() : 0);
    };
    out += " Dispatcher:\n";
    out += "  Heartbeat Period: " + humanDuration(ns(spec["Dispatcher"]["HeartbeatPeriod"])) + "\n";
    out += " CA Configuration:\n";
    out += "  Expiry Duration: " + humanDuration(ns(spec["CAConfig"]["NodeCertExpiry"])) + "\n";
    out += "  Force Rotate: " + text(spec["CAConfig"]["ForceRotate"]) + "\n";
    out += " Autolock Managers: " + text(spec["EncryptionConfig"]["AutoLockManagers"]) + "\n";
    out += " Root Rotation In Progress: " + text(c["RootRotationInProgress"]) + "\n";
  }
  out += " Node Address: " + text(pick(s, "NodeAddr", "")) + "\n";
  if (s.contains("RemoteManagers") && s["RemoteManagers"].is_array() && !s["RemoteManagers"].empty()) {
    std::vector<std::string> addrs;
    for (auto& m : s["RemoteManagers"])
      if (m.is_object()) addrs.push_back(text(pick(m, "Addr", "")));
    std::sort(addrs.begin(), addrs.end());
    out += " Manager Addresses:\n";
    for (auto& a : addrs) out += "  " + a + "\n";
  }
  return out;
}

}  // namespace shoal::cli
