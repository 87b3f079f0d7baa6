#pragma once
// The shoal CLI: Docker's verbs (DESIGN.md §11). Each command group registers itself on the
// root app; what a command prints and returns is its own.

#include <string>

#include <CLI/CLI.hpp>

namespace shoal::cli {

struct Globals {
  std::string runDir;  // where daemons' local sockets are: --run-dir, $SHOAL_RUN_DIR, /run/shoal
};

// Exit codes: 0 ok, 1 the operation failed, 2 bad usage (main maps CLI11's parse errors to 2).
struct Outcome {
  int code = 0;
};

void addSwarmCommands(CLI::App& app, Globals& globals, Outcome& outcome);
void addNodeCommands(CLI::App& app, Globals& globals, Outcome& outcome);
void addInfoCommand(CLI::App& app, Globals& globals, Outcome& outcome);
void addDebugCommands(CLI::App& app, Globals& globals, Outcome& outcome);
void addDumpStoreCommand(CLI::App& debug, Outcome& outcome);
void addServiceCommands(CLI::App& app, Globals& globals, Outcome& outcome);
// `node ps`, registered on the node command (it lists tasks, as the service commands do).
void addNodePsCommand(CLI::App& node, Globals& globals, Outcome& outcome);
// Issue 10 (docs/containers.md): the node's images (image.cpp), `login`/`logout`
// (login.cpp), its containers and volumes (container.cpp), `service logs` and `container
// logs` (logs.cpp, registered on the service and container commands), secrets and configs
// (secret.cpp).
void addImageCommands(CLI::App& app, Globals& globals, Outcome& outcome);
void addLoginCommands(CLI::App& app, Globals& globals, Outcome& outcome);
void addContainerCommands(CLI::App& app, Globals& globals, Outcome& outcome);
void addLogsCommands(CLI::App& service, CLI::App& container, Globals& globals, Outcome& outcome);
void addSecretCommands(CLI::App& app, Globals& globals, Outcome& outcome);

}  // namespace shoal::cli
