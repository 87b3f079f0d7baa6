#pragma once
// A container's log as the shim writes it (docs/containers.md "Logs"): the CRI format,
//   2026-11-30T13:37:11.123456789Z stdout F the line
// one record per line of the container's stdout or stderr, a line longer than 16 KiB split
// into partial (P) records, rotated by size (container.log → .1 → .2 ..., keeping maxFiles
// files, the current one included). libc only: the shim stays small.

#include <cstddef>
#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

namespace shoal::shim {

inline constexpr size_t kMaxLine = 16 << 10;  // longer lines are split, as CRI's

// One record: "<time> <stream> <F|P> <text>\n", time as RFC 3339 UTC with nanoseconds.
std::string criRecord(const timespec& at, std::string_view stream, bool partial,
                      std::string_view text);

class LogWriter {
 public:
  // Opens (appends to) path. maxBytes <= 0: never rotated. Returns false with errno set.
  bool open(std::string path, int64_t maxBytes, int maxFiles);
  ~LogWriter();

  // What one stream (0 stdout, 1 stderr) gave: complete lines become F records, a line
  // that reached kMaxLine without its newline becomes a P record, the rest waits.
  void add(int stream, std::string_view data);
  // The stream ended: what waits is written as a P record.
  void finish(int stream);

 private:
  void record(int stream, bool partial, std::string_view text);
  void rotate();

  std::string path_;
  int64_t maxBytes_ = 0;
  int maxFiles_ = 1;
  int fd_ = -1;
  int64_t size_ = 0;
  std::string pending_[2];
};

}  // namespace shoal::shim
