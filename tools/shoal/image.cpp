// Placeholder until its owner lands it (docs/containers.md "Who builds what").
#include "tools/shoal/cli.h"

namespace shoal::cli {

void addImageCommands(CLI::App& app, Globals&, Outcome&) {
  (void)app;
}

}  // namespace shoal::cli
