#pragma once
// The allocator (DESIGN.md §6, docs/services.md "Allocation"): takes tasks from NEW to PENDING
// once what they need is allocated. Now: the service's published ports (a port without a
// number gets one from 30000–32767, unique in the cluster; Service.endpoint records them).
// Networks: the place for per-network IPAM, a VIP per service and network, and an address per
// task attachment is allocateNetworks(), a no-op until the networking work fills it in. Pure.

#include "services/schedulerd/plan.h"

namespace shoal::schedulerd {

inline constexpr uint32_t kFirstDynamicPort = 30000;
inline constexpr uint32_t kLastDynamicPort = 32767;

void allocate(Plan& plan);

}  // namespace shoal::schedulerd
