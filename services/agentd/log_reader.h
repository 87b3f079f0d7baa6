#pragma once
// A task's log files read back (docs/containers.md "Logs"): `<state>/logs/<task id>/
// container.log` and its rotated predecessors container.log.1 (the previous), .2, ..., each
// line in the CRI format the shim writes:
//
//     2026-11-30T13:37:11.123456789Z stdout F the line
//     2026-11-30T13:37:11.123457000Z stderr P the first 16 KiB of a longer line
//
// A P (partial) line is joined with the lines of the same stream that follow it, up to and
// with the next F. A line that does not parse is skipped and counted, never fatal: the files
// are written by another process and may be cut short by a crash.
//
// Following is by polling (LogAgent calls readNew every 250 ms): a follower is one CLI's
// `-f`, so there are few; a poll is one fstat and one stat, and it sees a rotation (the live
// file renamed to .1 and a new one made) by the inode changing, without the race between an
// inotify event and the rename that a watch would have to handle anyway.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace shoal::agentd {

struct LogLine {
  int64_t timestamp = 0;  // ns since the epoch
  bool stderrStream = false;
  bool partial = false;   // a P line (only before joining)
  std::string text;       // without its newline
};

// One CRI line, without its newline. An Error says what is wrong with it.
Result<LogLine> parseCriLine(std::string_view line);
// RFC 3339 with up to 9 fraction digits and Z or ±hh:mm, as ns since the epoch.
Result<int64_t> parseRfc3339Nanos(std::string_view text);
// The CRI form of a line (what the shim writes; tests write files with it).
std::string formatCriLine(const LogLine& line);

// Joins P lines with what follows them on the same stream. Lines come out complete, in the
// order their last piece came in.
class LineJoiner {
 public:
  // The complete line, once `piece` ends one.
  std::optional<LogLine> push(LogLine piece);
  // What is still partial (a container that ended without a newline), oldest first.
  std::vector<LogLine> flush();

 private:
  std::optional<LogLine> pending_[2];  // stdout, stderr
};

struct ReadOptions {
  int64_t tail = -1;  // the last N lines (of all the files together); -1: all
  int64_t since = 0;  // only lines at or after this time (ns since the epoch); 0: all
};

// Applies since, then tail, to lines in file order. Pure.
std::vector<LogLine> selectLines(std::vector<LogLine> lines, const ReadOptions& options);

// The log files of a task's dir, oldest first: container.log.N .. container.log.1,
// container.log (those that exist).
std::vector<std::string> logFiles(const std::string& dir);

// One task's logs: what is there now, then what is appended later, across rotations.
class TaskLog {
 public:
  static constexpr std::string_view kLiveFile = "container.log";
  // A line longer than this (the shim splits at 16 KiB) is taken as a broken file.
  static constexpr size_t kMaxLine = 1u << 20;

  explicit TaskLog(std::string dir) : dir_(std::move(dir)) {}

  // Every complete line in the files now, selected by options; remembers where the live file
  // ends so that readNew continues from there. NotFound when the task has no log dir.
  Result<std::vector<LogLine>> readAll(const ReadOptions& options);
  // The complete lines appended since the last read, including those written to the live
  // file before it was rotated away. Nothing (not an error) while the dir or file is absent.
  std::vector<LogLine> readNew();
  // Lines still partial at the end (for a read that is not followed).
  std::vector<LogLine> flush() { return joiner_.flush(); }

  uint64_t badLines() const { return bad_; }
  const std::string& dir() const { return dir_; }

 private:
  // Reads from `fd` at `offset` to the last newline, parsing into `out`; returns the new offset.
  uint64_t readFrom(int fd, uint64_t offset, std::vector<LogLine>& out);
  void takeChunk(std::string_view chunk, std::vector<LogLine>& out);
  // The rotated file that has inode `ino` (the live file we were reading), or -1.
  int openRotated(uint64_t ino) const;

  std::string dir_;
  LineJoiner joiner_;
  uint64_t bad_ = 0;
  std::optional<uint64_t> ino_;  // the live file being followed
  uint64_t offset_ = 0;
};

}  // namespace shoal::agentd
