// Placeholder until its owner lands it (docs/containers.md "Who builds what"): the group
// exists so that logs.cpp can register `container logs` on it.
#include "tools/shoal/cli.h"

namespace shoal::cli {

void addContainerCommands(CLI::App& app, Globals&, Outcome&) {
  app.add_subcommand("container", "The task containers on this node")->require_subcommand(1);
}

}  // namespace shoal::cli
