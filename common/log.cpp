#include "common/log.h"

#include <memory>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/systemd_sink.h>
#include <spdlog/spdlog.h>

namespace shoal::log {
namespace {
Options current;
}

Result<spdlog::level::level_enum> parseLevel(std::string_view text) {
  static constexpr std::pair<std::string_view, spdlog::level::level_enum> names[] = {
      {"trace", spdlog::level::trace}, {"debug", spdlog::level::debug},
      {"info", spdlog::level::info},   {"warn", spdlog::level::warn},
      {"warning", spdlog::level::warn}, {"error", spdlog::level::err},
      {"critical", spdlog::level::critical}, {"off", spdlog::level::off}};
  for (auto& [name, level] : names)
    if (text == name) return level;
  return Error{"unknown log level \"" + std::string(text) +
               "\": use one of trace, debug, info, warn, error, critical, off"};
}

std::string levelName(spdlog::level::level_enum level) {
  if (level == spdlog::level::warn) return "warn";
  if (level == spdlog::level::err) return "error";
  auto sv = spdlog::level::to_string_view(level);
  return std::string(sv.data(), sv.size());
}

Status setup(const Options& options) {
  std::shared_ptr<spdlog::logger> logger;
  try {
    switch (options.target) {
      case Target::Stderr:
        logger = std::make_shared<spdlog::logger>(
            options.name, std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
        logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %n[%P] %^%l%$: %v");
        break;
      case Target::Journal:
        logger = std::make_shared<spdlog::logger>(
            options.name, std::make_shared<spdlog::sinks::systemd_sink_mt>(options.name));
        logger->set_pattern("%v");
        break;
      case Target::File:
        logger = std::make_shared<spdlog::logger>(
            options.name, std::make_shared<spdlog::sinks::basic_file_sink_mt>(options.file));
        logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %n[%P] %l: %v");
        break;
    }
  } catch (const spdlog::spdlog_ex& e) {
    return Error{"cannot open the log " + options.file + ": " + e.what() +
                 "; choose another --log-file"};
  }
  logger->set_level(options.level);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
  current = options;
  return {};
}

Status reopen() {
  if (current.target != Target::File) return {};
  Options options = current;
  options.level = spdlog::get_level();
  return setup(options);
}

}  // namespace shoal::log
