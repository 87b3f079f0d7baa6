#pragma once
// Facts about this process for Status output.

#include <cstdint>

namespace shoal::proc {

// Resident set size in bytes (from /proc/self/statm), 0 if unknown.
uint64_t rssBytes();
// Peak resident set size in bytes (VmHWM), 0 if unknown.
uint64_t peakRssBytes();

}  // namespace shoal::proc
