#include "common/proc.h"

#include <unistd.h>

#include <fstream>
#include <string>

namespace shoal::proc {

uint64_t rssBytes() {
  std::ifstream in("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  if (!(in >> size >> resident)) return 0;
  return resident * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

namespace {
// A "Name:  N kB" line of /proc/self/status, in bytes.
uint64_t statusKb(const std::string& name) {
  std::ifstream in("/proc/self/status");
  std::string key;
  while (in >> key) {
    if (key == name) {
      uint64_t kb = 0;
      in >> kb;
      return kb * 1024;
    }
    in.ignore(1 << 16, '\n');
  }
  return 0;
}
}  // namespace

uint64_t peakRssBytes() { return statusKb("VmHWM:"); }
uint64_t rssAnonBytes() { return statusKb("RssAnon:"); }

}  // namespace shoal::proc
