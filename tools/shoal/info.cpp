// shoal info: the Swarm section of `docker info`, from agentd, raftd and (on a manager) the
// store; what a missing daemon would have told is named in a warning.
#include <iostream>

#include "tools/shoal/daemons.h"
#include "tools/shoal/format.h"
#include "tools/shoal/swarm_text.h"

namespace shoal::cli {
namespace {

int info(const Globals& g, const std::string& formatFlag) {
  std::optional<Template> tmpl;
  if (!formatFlag.empty() && formatFlag != "json") {
    auto t = Template::parse(formatFlag, TextEscapes::Keep);
    if (!t) {
      std::cerr << "error: --format: " << t.error().message << "\n";
      return 2;
    }
    tmpl = std::move(*t);
  }
  std::vector<std::string> warnings;
  InfoSources src;
  CallError agentWhy, raftWhy;
  if (auto a = agentInfo(g, &agentWhy))
    src.agent = std::move(*a);
  if (auto r = raftInfo(g, &raftWhy))
    src.raft = std::move(*r);
  if (!src.agent && !src.raft) {
    std::cerr << "error: " << agentWhy.message << "\nerror: " << raftWhy.message << "\n";
    return 1;
  }
  if (!src.agent)
    warnings.push_back("agentd did not answer, so this node's own part (its address, the "
                       "managers it knows) is missing: " + agentWhy.message);
  bool workerRaftd = !src.raft && raftWhy.kind == CallError::Kind::Unreachable;
  if (!src.raft && !workerRaftd)
    warnings.push_back("raftd did not answer, so the cluster's part is missing: " + raftWhy.message);

  bool manager = src.raft && src.raft->value("LocalNodeState", "") == "active";
  if (src.agent && src.agent->value("ControlAvailable", false) && !src.raft && workerRaftd)
    warnings.push_back("this node is a manager but raftd is not running, so the cluster's part "
                       "is missing: " + raftWhy.message);
  std::string clusterBuf;
  std::optional<NodeList> nodes;
  if (manager) {
    CallError why;
    if (auto c = readCluster(g, &why))
      clusterBuf = std::move(*c);
    else
      warnings.push_back("could not read the Cluster object from raftd: " + why.message);
    if (auto n = listNodes(g, &why))
      nodes = std::move(*n);
    else
      warnings.push_back("could not read the nodes from raftd: " + why.message);
  }
  if (!clusterBuf.empty()) src.cluster = flatbuffers::GetRoot<objects::Cluster>(clusterBuf.data());
  if (nodes) src.nodes = nodes->nodes;

  auto j = swarmInfo(src);
  j["Warnings"] = warnings;
  if (formatFlag == "json") {
    std::cout << toJson(j) << "\n";
  } else if (tmpl) {
    auto out = tmpl->render(j);
    if (!out) {
      std::cerr << "error: --format: " << out.error().message << "\n";
      return 1;
    }
    std::cout << *out << "\n";
  } else {
    std::cout << infoText(j);
  }
  for (const auto& w : warnings) std::cerr << "WARNING: " << w << "\n";
  return 0;
}

}  // namespace

void addInfoCommand(CLI::App& app, Globals& g, Outcome& outcome) {
  static std::string format;
  auto* in = app.add_subcommand("info", "Display this node's swarm information");
  in->add_option("-f,--format", format, "Format output: 'json' or a Go template, e.g. '{{.Swarm.NodeID}}'");
  in->callback([&g, &outcome] { outcome.code = info(g, format); });
}

}  // namespace shoal::cli
