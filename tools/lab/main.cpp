// shoal-lab: a shoal cluster of many nodes on one machine, one network namespace per node
// (DESIGN.md §10, docs/lab.md).
#include <cstdlib>
#include <iostream>

#include <CLI/CLI.hpp>

#include "tools/lab/commands.h"
#include "tools/lab/lab.h"

namespace {

using namespace shoal::lab;

std::string defaultName() {
  const char* env = std::getenv("SHOAL_LAB");
  return env && *env ? env : kDefaultName;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("shoal-lab: a shoal cluster of many nodes on one machine", "shoal-lab");
  app.set_version_flag("--version", std::string("shoal-lab ") + SHOAL_VERSION);
  app.require_subcommand(1);
  app.footer("--name defaults to $SHOAL_LAB, else \"lab\". Needs root. See docs/lab.md.");
  int code = 0;

  UpOptions upo;
  upo.name = defaultName();
  auto* upc = app.add_subcommand("up", "Make a lab: namespaces, bridge, daemons, the swarm formed (init on m1, join on the others)");
  upc->add_option("--name", upo.name, "The lab's name");
  upc->add_option("--managers", upo.managers, "How many managers (m1..)")->capture_default_str();
  upc->add_option("--workers", upo.workers, "How many workers (w1..)")->capture_default_str();
  upc->add_option("--bin-dir", upo.binDir, "Where the daemons and shoal are (a build dir; default: beside shoal-lab)");
  upc->add_option("--heartbeat", upo.heartbeat,
                  "The swarm's dispatcher heartbeat period (swarm init --dispatcher-heartbeat), e.g. 1s; "
                  "default: the cluster's (5s)");
  upc->add_option("--executor", upo.executor,
                  "Every agentd's executor: fake (tasks walk to RUNNING without containers) or runc; "
                  "default: agentd's");
  upc->add_option("--fake-delay", upo.fakeDelay,
                  "With --executor fake: the time between a fake task's steps (agentd --fake-delay), e.g. 10ms");
  upc->add_option("--fake-nodes", upo.fakeNodes,
                  "With --executor fake: one more worker whose agentd poses as this many nodes (agentd --fake-nodes)");
  upc->add_flag("--registry", upo.registry,
                "Run Debian's docker-registry in the lab on <subnet>.254:5000 (storage in the lab's dir) and "
                "give every agentd --insecure-registry for it; `shoal-lab push` fills it");
  upc->callback([&] { code = up(upo); });

  std::string name = defaultName();
  std::optional<std::string> lsName;
  std::string format = "table";
  auto* lsc = app.add_subcommand("ls", "List the nodes of a lab (of every lab without --name)");
  lsc->add_option("--name", lsName, "The lab's name");
  lsc->add_option("--format", format, "table or json")->check(CLI::IsMember({"table", "json"}));
  lsc->callback([&] { code = ls(lsName, format == "json"); });

  auto* downc = app.add_subcommand("down", "Remove a lab and everything it made (also a half-made one)");
  downc->add_option("--name", name, "The lab's name");
  downc->callback([&] { code = down(name); });

  std::string node;
  auto* execc = app.add_subcommand("exec", "Run CMD in NODE's namespace with SHOAL_RUN_DIR set to its run dir: exec [--name N] NODE CMD...");
  execc->add_option("--name", name, "The lab's name");
  execc->add_option("node", node, "m1.., w1..")->required();
  // Everything after NODE is the command, its options included.
  execc->prefix_command();
  execc->callback([&] { code = exec(name, node, execc->remaining()); });

  std::optional<std::string> daemon;
  auto* killc = app.add_subcommand("kill", "SIGKILL NODE's DAEMON (all its daemons without one)");
  killc->add_option("--name", name, "The lab's name");
  killc->add_option("node", node, "m1.., w1..")->required();
  killc->add_option("daemon", daemon, "raftd, schedulerd, dispatcherd, agentd, overlayd or meshd");
  killc->callback([&] { code = shoal::lab::kill(name, node, daemon); });

  auto* startc = app.add_subcommand("start", "Start NODE's DAEMON again (all its stopped daemons without one)");
  startc->add_option("--name", name, "The lab's name");
  startc->add_option("node", node, "m1.., w1..")->required();
  startc->add_option("daemon", daemon, "raftd, schedulerd, dispatcherd, agentd, overlayd or meshd");
  startc->callback([&] { code = start(name, node, daemon); });

  std::vector<std::string> nodes;
  auto* partc = app.add_subcommand("partition", "Cut NODEs off from the rest of the lab (they still reach each other)");
  partc->add_option("--name", name, "The lab's name");
  partc->add_option("nodes", nodes, "m1.., w1..")->required();
  partc->callback([&] { code = partition(name, nodes); });

  auto* healc = app.add_subcommand("heal", "Undo every partition");
  healc->add_option("--name", name, "The lab's name");
  healc->callback([&] { code = heal(name); });

  std::string source, image;
  auto* pushc = app.add_subcommand(
      "push", "Copy an image into the lab's registry (up --registry) with skopeo: push [--name N] SOURCE NAME[:TAG]; "
              "prints the reference the nodes pull, e.g. 198.18.0.254:5000/busybox:latest");
  pushc->add_option("--name", name, "The lab's name");
  pushc->add_option("source", source, "A local image as skopeo names it: oci:DIR[:REF], oci-archive:FILE, "
                                      "docker-archive:FILE, dir:DIR")->required();
  pushc->add_option("image", image, "Its name in the lab's registry, NAME[:TAG] (default tag latest)")->required();
  pushc->callback([&] { code = push(name, source, image); });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const LabError& e) {
    std::cerr << "shoal-lab: error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "shoal-lab: error: " << e.what() << "\n";
    return 1;
  }
  return code;
}
