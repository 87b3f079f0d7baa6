#include "services/schedulerd/updater.h"

namespace shoal::schedulerd {

void updateServices(Plan&) {}

}  // namespace shoal::schedulerd
