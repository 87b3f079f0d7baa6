#include "tools/lab/node_list.h"

#include <algorithm>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tools/lab/lab.h"

namespace shoal::lab {
namespace {

std::string field(const nlohmann::json& j, const char* name) {
  auto it = j.find(name);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

SwarmNode toNode(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object() || !j.contains("ID") || !j.contains("Hostname"))
    throw LabError("`shoal node ls --format json` printed something that is not a node (" + where +
                   "): " + j.dump().substr(0, 200));
  SwarmNode n;
  n.id = field(j, "ID");
  n.hostname = field(j, "Hostname");
  n.status = field(j, "Status");
  n.availability = field(j, "Availability");
  n.managerStatus = field(j, "ManagerStatus");
  auto self = j.find("Self");
  n.self = self != j.end() && ((self->is_boolean() && self->get<bool>()) || (self->is_string() && *self == "true"));
  return n;
}

std::string trim(std::string_view s) {
  auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return "";
  auto e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

}  // namespace

std::vector<SwarmNode> parseNodeList(std::string_view text) {
  std::vector<SwarmNode> nodes;
  std::string all = trim(text);
  if (all.starts_with('[')) {
    auto j = nlohmann::json::parse(all, nullptr, false);
    if (j.is_discarded() || !j.is_array())
      throw LabError("`shoal node ls --format json` printed a damaged JSON array: " + all.substr(0, 200));
    for (size_t i = 0; i < j.size(); ++i) nodes.push_back(toNode(j[i], "element " + std::to_string(i + 1)));
    return nodes;
  }
  std::stringstream in(all);
  int number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    line = trim(line);
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded())
      throw LabError("`shoal node ls --format json` printed a line that is not JSON (line " +
                     std::to_string(number) + "): " + line.substr(0, 200));
    nodes.push_back(toNode(j, "line " + std::to_string(number)));
  }
  return nodes;
}

std::optional<SwarmNode> findHost(const std::vector<SwarmNode>& nodes, std::string_view hostname) {
  std::optional<SwarmNode> found;
  for (auto& n : nodes)
    if (n.hostname == hostname) {
      if (found) return std::nullopt;
      found = n;
    }
  return found;
}

std::optional<std::string> soleLeader(const std::vector<SwarmNode>& nodes) {
  std::optional<std::string> leader;
  for (auto& n : nodes)
    if (n.managerStatus == "Leader") {
      if (leader) return std::nullopt;
      leader = n.hostname;
    }
  return leader;
}

std::string notFormedBecause(const std::vector<SwarmNode>& nodes, const std::vector<std::string>& managers,
                             const std::vector<std::string>& workers) {
  size_t expected = managers.size() + workers.size();
  if (nodes.size() != expected)
    return std::to_string(nodes.size()) + " nodes are listed, " + std::to_string(expected) + " expected";
  int leaders = 0;
  auto check = [&](const std::string& host, bool manager) -> std::string {
    auto n = findHost(nodes, host);
    if (!n) return host + " is not listed exactly once";
    if (n->status != "Ready") return host + " is " + (n->status.empty() ? "without a status" : n->status);
    if (manager) {
      if (n->managerStatus == "Leader") ++leaders;
      else if (n->managerStatus != "Reachable")
        return "manager " + host + " is " + (n->managerStatus.empty() ? "not a manager yet" : n->managerStatus);
    } else if (!n->managerStatus.empty()) {
      return "worker " + host + " is a manager (" + n->managerStatus + ")";
    }
    return "";
  };
  for (auto& m : managers)
    if (auto why = check(m, true); !why.empty()) return why;
  for (auto& w : workers)
    if (auto why = check(w, false); !why.empty()) return why;
  if (leaders != 1) return std::to_string(leaders) + " managers are Leader";
  return "";
}

std::string notFormedBecause(const std::vector<SwarmNode>& nodes, const std::vector<std::string>& managers,
                             const std::vector<std::string>& workers, int fakeNodes) {
  std::set<std::string> named(managers.begin(), managers.end());
  named.insert(workers.begin(), workers.end());
  std::vector<SwarmNode> real;
  int fakes = 0, fakesReady = 0;
  std::string notReady;
  for (auto& n : nodes) {
    if (named.count(n.hostname)) {
      real.push_back(n);
      continue;
    }
    ++fakes;
    if (n.status == "Ready" && n.managerStatus.empty()) ++fakesReady;
    else if (notReady.empty())
      notReady = "fake node " + n.hostname + " is " + (n.managerStatus.empty() ? n.status : "a manager");
  }
  if (auto why = notFormedBecause(real, managers, workers); !why.empty()) return why;
  if (fakes != fakeNodes)
    return std::to_string(fakes) + " fake nodes are listed, " + std::to_string(fakeNodes) + " expected";
  if (fakesReady != fakeNodes)
    return std::to_string(fakesReady) + " of " + std::to_string(fakeNodes) + " fake nodes are Ready (" + notReady + ")";
  return "";
}

std::optional<std::string> findJoinToken(std::string_view text) {
  std::optional<std::string> token;
  std::stringstream in{std::string(text)};
  for (std::string word; in >> word;)
    if (word.starts_with("SWMTKN-")) {
      if (token) return std::nullopt;
      token = word;
    }
  return token;
}

}  // namespace shoal::lab
