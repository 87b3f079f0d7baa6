#include "services/schedulerd/schedulerd.h"

namespace shoal::schedulerd {

Result<std::unique_ptr<Scheduler>> Scheduler::start(Daemon&) {
  return std::make_unique<Scheduler>();
}

}  // namespace shoal::schedulerd
