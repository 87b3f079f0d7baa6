#include "services/schedulerd/scheduler.h"

namespace shoal::schedulerd {

void schedule(Plan&) {}

}  // namespace shoal::schedulerd
