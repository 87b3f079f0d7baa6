#pragma once
// Facts about this process for Status output.

#include <cstdint>

namespace shoal::proc {

// Resident set size in bytes (from /proc/self/statm), 0 if unknown.
uint64_t rssBytes();
// Peak resident set size in bytes (VmHWM), 0 if unknown.
uint64_t peakRssBytes();
// The anonymous part of the RSS (RssAnon): the process's own memory, without the pages of
// mapped files such as an LMDB map, which the kernel may drop at any time.
uint64_t rssAnonBytes();

}  // namespace shoal::proc
