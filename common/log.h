#pragma once
// Logging for daemons and tools, on spdlog. Levels, as this project uses them:
//   error: something failed that an operator must act on (a write lost, a peer refused).
//   warn:  something is wrong but handled (a bad message dropped, a retry).
//   info:  a state change an operator may care about (leader elected, node down); each one
//          also shows in the daemon's Status.
//   debug: what a developer needs to follow one request.
//   trace: every message.

#include <optional>
#include <string>
#include <string_view>

#include <spdlog/common.h>

#include "common/result.h"

namespace shoal::log {

enum class Target { Stderr, Journal, File };

struct Options {
  std::string name;        // the daemon, used as the journal's identifier
  Target target = Target::Stderr;
  std::string file;        // for Target::File
  spdlog::level::level_enum level = spdlog::level::info;
};

Result<spdlog::level::level_enum> parseLevel(std::string_view text);
std::string levelName(spdlog::level::level_enum level);

Status setup(const Options& options);
// Reopens the log file (SIGHUP, after logrotate moved it); a no-op for stderr and journal.
Status reopen();

}  // namespace shoal::log
