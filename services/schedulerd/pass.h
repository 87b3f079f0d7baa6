#pragma once
// One scheduling pass (DESIGN.md §2 step 2): the cores in order on the view — orchestrate,
// update, allocate, schedule — each seeing what the earlier ones decided. Pure.

#include "services/schedulerd/plan.h"

namespace shoal::schedulerd {

struct PassResult {
  std::vector<std::vector<store::ChangeSpec>> batches;  // one store transaction each
  Plan::Counts counts;
  Time nextWake = 0;  // when a pass is due again without a store change; 0: none
};

PassResult runPass(View& view, Time now, IdSource ids);

}  // namespace shoal::schedulerd
