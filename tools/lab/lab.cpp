#include "tools/lab/lab.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>

namespace shoal::lab {

const std::vector<std::string>& allDaemons() {
  static const std::vector<std::string> d = {"raftd",   "schedulerd", "dispatcherd",
                                             "agentd", "overlayd",   "meshd"};
  return d;
}

std::string Lab::subnet() const { return "198.18." + std::to_string(index) + ".0/24"; }
std::string Lab::registryHost() const {
  return "198.18." + std::to_string(index) + "." + std::to_string(kRegistryHost);
}

namespace {
nlohmann::json recordJson(const DaemonRecord& r) {
  return {{"argv", r.argv}, {"pid", r.pid}, {"start_time", r.startTime}};
}
DaemonRecord recordFromJson(const nlohmann::json& jr) {
  DaemonRecord r;
  r.argv = jr.value("argv", std::vector<std::string>{});
  r.pid = jr.value("pid", 0);
  r.startTime = jr.value("start_time", uint64_t{0});
  return r;
}
}  // namespace

Node& Lab::node(const std::string& n) {
  for (auto& x : nodes)
    if (x.name == n) return x;
  std::string names;
  for (auto& x : nodes) names += (names.empty() ? "" : ", ") + x.name;
  throw LabError("lab " + name + " has no node " + n + " (its nodes: " + names + ")");
}

const Node& Lab::node(const std::string& n) const { return const_cast<Lab*>(this)->node(n); }

nlohmann::json Lab::toJson() const {
  nlohmann::json j;
  j["name"] = name;
  j["index"] = index;
  j["subnet"] = subnet();
  j["dir"] = dir;
  j["hub_netns"] = hubNetns;
  j["binaries"] = binaries;
  j["agentd_args"] = agentdArgs;
  if (registry) {
    j["registry"] = recordJson(registry->process);
    j["registry"]["address"] = registry->address;
    j["registry"]["dir"] = registryDir();
  }
  j["nodes"] = nlohmann::json::array();
  for (auto& n : nodes) {
    nlohmann::json jn = {{"name", n.name},          {"role", n.role},
                         {"netns", n.netns},        {"address", n.address},
                         {"hub_port", n.hubPort},   {"partition", n.partition},
                         {"run_dir", runDir(n)},    {"dir", nodeDir(n)},
                         {"daemons", nlohmann::json::object()}};
    if (n.fakeNodes > 0) jn["fake_nodes"] = n.fakeNodes;
    for (auto& [d, r] : n.daemons) jn["daemons"][d] = recordJson(r);
    j["nodes"].push_back(jn);
  }
  return j;
}

Lab Lab::fromJson(const nlohmann::json& j) {
  Lab lab;
  lab.name = j.at("name").get<std::string>();
  lab.index = j.at("index").get<int>();
  lab.dir = j.at("dir").get<std::string>();
  lab.hubNetns = j.at("hub_netns").get<std::string>();
  lab.binaries = j.value("binaries", std::map<std::string, std::string>{});
  lab.agentdArgs = j.value("agentd_args", std::vector<std::string>{});
  if (j.contains("registry") && j["registry"].is_object())
    lab.registry = Registry{j["registry"].at("address").get<std::string>(), recordFromJson(j["registry"])};
  for (auto& jn : j.at("nodes")) {
    Node n;
    n.name = jn.at("name").get<std::string>();
    n.role = jn.at("role").get<std::string>();
    n.netns = jn.at("netns").get<std::string>();
    n.address = jn.at("address").get<std::string>();
    n.hubPort = jn.at("hub_port").get<std::string>();
    n.partition = jn.value("partition", 0);
    n.fakeNodes = jn.value("fake_nodes", 0);
    auto daemons = jn.value("daemons", nlohmann::json::object());
    for (auto& [d, jr] : daemons.items()) n.daemons[d] = recordFromJson(jr);
    lab.nodes.push_back(std::move(n));
  }
  return lab;
}

void checkName(const std::string& name) {
  static const std::regex ok("[a-z0-9][a-z0-9-]{0,19}");
  if (!std::regex_match(name, ok))
    throw LabError("bad lab name '" + name +
                   "': use 1 to 20 of a-z, 0-9 and '-', starting with a letter or digit");
}

std::string labDir(const std::string& name) { return std::string(kLabRoot) + "/" + name; }
std::string stateFile(const std::string& name) { return labDir(name) + "/lab.json"; }
std::string netnsPrefix(const std::string& name) { return "shoal-" + name + "-"; }

bool ownsNetns(const std::string& name, const std::string& netns) {
  std::string prefix = netnsPrefix(name);
  if (!netns.starts_with(prefix)) return false;
  static const std::regex suffix("hub|[mw][1-9][0-9]{0,2}");
  return std::regex_match(netns.substr(prefix.size()), suffix);
}

Lab plan(const std::string& name, int index, int managers, int workers) {
  Lab lab;
  lab.name = name;
  lab.index = index;
  lab.dir = labDir(name);
  lab.hubNetns = netnsPrefix(name) + "hub";
  std::string base = "198.18." + std::to_string(index) + ".";
  auto add = [&](const std::string& node, const std::string& role, int host) {
    Node n;
    n.name = node;
    n.role = role;
    n.netns = netnsPrefix(name) + node;
    n.address = base + std::to_string(host);
    n.hubPort = node;
    lab.nodes.push_back(n);
  };
  for (int i = 1; i <= managers; ++i) add("m" + std::to_string(i), "manager", i);
  for (int i = 1; i <= workers; ++i) add("w" + std::to_string(i), "worker", 100 + i);
  return lab;
}

std::string registryConfig(const std::string& address, const std::string& dataDir) {
  // No health section (its storage poller would only add log lines); info is one line per
  // request, which is what a user debugging a pull wants to read in registry.log.
  return "version: 0.1\n"
         "log:\n"
         "  level: info\n"
         "  formatter: text\n"
         "storage:\n"
         "  filesystem:\n"
         "    rootdirectory: " + dataDir + "\n"
         "  delete:\n"
         "    enabled: true\n"
         "http:\n"
         "  addr: " + address + "\n";
}

std::string checkRepositoryRef(const std::string& ref) {
  static const std::regex component("[a-z0-9]+([._-][a-z0-9]+)*");
  static const std::regex tag("[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}");
  if (ref.empty()) return "the image name is empty";
  if (ref.find('@') != std::string::npos) return "a digest cannot be pushed to: give NAME[:TAG]";
  auto colon = ref.rfind(':');
  std::string repo = colon == std::string::npos ? ref : ref.substr(0, colon);
  if (colon != std::string::npos && !std::regex_match(ref.substr(colon + 1), tag))
    return "bad tag '" + ref.substr(colon + 1) + "': use up to 128 of A-Z, a-z, 0-9, '_', '.', '-'";
  size_t start = 0;
  while (true) {
    auto slash = repo.find('/', start);
    std::string c = repo.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (!std::regex_match(c, component))
      return "bad name component '" + c + "' in '" + repo +
             "': use a-z, 0-9 and single '.', '_' or '-' between them (the lab's registry is added in front)";
    if (slash == std::string::npos) return "";
    start = slash + 1;
  }
}

void addFakeHost(Lab& lab, int fakeNodes) {
  int workers = 0;
  for (auto& n : lab.nodes) workers += n.manager() ? 0 : 1;
  if (workers + 1 > kMaxWorkers)
    throw LabError("a lab has at most " + std::to_string(kMaxWorkers) +
                   " workers, the fake nodes' host included: ask for fewer --workers");
  Node n;
  n.name = "w" + std::to_string(workers + 1);
  n.role = "worker";
  n.netns = netnsPrefix(lab.name) + n.name;
  n.address = "198.18." + std::to_string(lab.index) + "." + std::to_string(100 + workers + 1);
  n.hubPort = n.name;
  n.fakeNodes = fakeNodes;
  lab.nodes.push_back(n);
}

std::optional<Lab> load(const std::string& name) {
  std::ifstream in(stateFile(name));
  if (!in) return std::nullopt;
  try {
    return Lab::fromJson(nlohmann::json::parse(in));
  } catch (const std::exception& e) {
    throw LabError("the state file " + stateFile(name) + " is damaged (" + e.what() +
                   "); `shoal-lab down --name " + name + "` still removes the lab");
  }
}

void save(const Lab& lab) {
  std::string path = stateFile(lab.name), tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << lab.toJson().dump(2) << "\n";
    if (!out) throw LabError("cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw LabError("cannot write " + path);
}

std::vector<Lab> loadAll() {
  std::vector<Lab> labs;
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator(kLabRoot, ec)) {
    if (!e.is_directory()) continue;
    try {
      if (auto lab = load(e.path().filename().string())) labs.push_back(std::move(*lab));
    } catch (const LabError&) {
      // A damaged lab still holds its name; up refuses that name, down removes it.
    }
  }
  return labs;
}

}  // namespace shoal::lab
