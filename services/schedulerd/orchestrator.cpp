#include "services/schedulerd/orchestrator.h"

namespace shoal::schedulerd {

void orchestrate(Plan&) {}

}  // namespace shoal::schedulerd
