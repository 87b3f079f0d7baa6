// Placeholder until its owner lands it (docs/containers.md "Who builds what").
#include "tools/shoal/cli.h"

namespace shoal::cli {

void addLogsCommands(CLI::App&, CLI::App&, Globals&, Outcome&) {}

}  // namespace shoal::cli
