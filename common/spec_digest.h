#pragma once
// A digest of what a service's tasks run (docs/services.md "Updates"): its TaskSpec and
// EndpointSpec, packed. Tasks record it (Task.spec_digest); a task whose digest differs from its
// service's is dirty and schedulerd's updater replaces it. raftd tells an update from a scale
// by it, and the CLI's progress tells new tasks from old. Stable across processes and builds
// (FNV-1a over the bytes).

#include <cstdint>

#include "objects_generated.h"

namespace shoal {

uint64_t taskSpecDigest(const objects::ServiceT& service);

}  // namespace shoal
