#pragma once
// schedulerd's shell (DESIGN.md §1, §2 step 2; docs/services.md "schedulerd"): follows its
// raftd's leadership through the store client; while that raftd leads it keeps a View of the
// Cluster, Nodes, Services, Tasks and Networks with a store watch, and runs passes (pass.h) —
// debounced: gathering changes for up to 50 ms after the first, at most 1 s — and at the
// times the cores ask for (Plan::wakeAt). Each pass's batches are committed as store
// transactions; the next pass waits until the watch has brought them back. A Conflict or a
// failed write makes it list everything again. On a follower, or a worker, it idles and its
// Status says why.

#include <memory>

#include "common/daemon.h"
#include "common/result.h"

namespace shoal::schedulerd {

class Scheduler {
 public:
  static Result<std::unique_ptr<Scheduler>> start(Daemon& daemon);
  virtual ~Scheduler() = default;
};

}  // namespace shoal::schedulerd
