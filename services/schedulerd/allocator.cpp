#include "services/schedulerd/allocator.h"

namespace shoal::schedulerd {

void allocate(Plan&) {}

}  // namespace shoal::schedulerd
