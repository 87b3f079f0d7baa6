// shoal: the command line of a shoal cluster.
#include <cstdlib>
#include <exception>
#include <iostream>

#include "tools/shoal/cli.h"

int main(int argc, char** argv) {
  CLI::App app("shoal: run containers on a cluster, the Docker Swarm way", "shoal");
  app.set_version_flag("--version", std::string("shoal ") + SHOAL_VERSION);
  app.require_subcommand(1);
  shoal::cli::Globals globals;
  const char* env = std::getenv("SHOAL_RUN_DIR");
  globals.runDir = env && *env ? env : "/run/shoal";
  app.add_option("--run-dir", globals.runDir,
                 "Where the daemons' local sockets are (default $SHOAL_RUN_DIR or /run/shoal)");
  shoal::cli::Outcome outcome;
  shoal::cli::addSwarmCommands(app, globals, outcome);
  shoal::cli::addNodeCommands(app, globals, outcome);
  shoal::cli::addNodePsCommand(*app.get_subcommand("node"), globals, outcome);
  shoal::cli::addServiceCommands(app, globals, outcome);
  shoal::cli::addImageCommands(app, globals, outcome);
  shoal::cli::addLoginCommands(app, globals, outcome);
  shoal::cli::addContainerCommands(app, globals, outcome);
  shoal::cli::addLogsCommands(*app.get_subcommand("service"), *app.get_subcommand("container"),
                              globals, outcome);
  shoal::cli::addSecretCommands(app, globals, outcome);
  shoal::cli::addInfoCommand(app, globals, outcome);
  shoal::cli::addDebugCommands(app, globals, outcome);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version end well; any other parse error is bad usage.
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  } catch (const std::exception& e) {
    // A bug, not an input: say so rather than abort.
    std::cerr << "error: shoal failed unexpectedly: " << e.what()
              << "; please report it with the command you ran\n";
    return 1;
  }
  return outcome.code;
}
