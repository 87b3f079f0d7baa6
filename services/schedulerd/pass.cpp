#include "services/schedulerd/pass.h"

#include "services/schedulerd/allocator.h"
#include "services/schedulerd/orchestrator.h"
#include "services/schedulerd/scheduler.h"
#include "services/schedulerd/updater.h"

namespace shoal::schedulerd {

PassResult runPass(View& view, Time now, IdSource ids) {
  Plan plan(view, now, std::move(ids));
  orchestrate(plan);
  updateServices(plan);
  allocate(plan);
  schedule(plan);
  return PassResult{plan.batches(), plan.counts(), plan.nextWake()};
}

}  // namespace shoal::schedulerd
