#include "services/agentd/health.h"

#include <utility>

namespace shoal::agentd {
namespace {

// The fields of one health config (spec or image), before defaults.
struct RawHealth {
  std::vector<std::string> test;
  int64_t interval = 0, timeout = 0, startPeriod = 0;
  int retries = 0;
};

RawHealth fromImage(const ImageHealthcheck& h) {
  return RawHealth{h.test, h.interval, h.timeout, h.startPeriod, h.retries};
}

// Docker merges a spec without a test over the image's check (moby's merge of
// container.Config.Healthcheck): the spec's durations win where it gives them.
RawHealth merge(const objects::HealthConfig* spec, const std::optional<ImageHealthcheck>& image) {
  RawHealth r = image ? fromImage(*image) : RawHealth{};
  if (!spec) return r;
  if (spec->test() && spec->test()->size() > 0) {
    r.test.clear();
    for (const auto* s : *spec->test()) r.test.push_back(s ? s->str() : std::string());
  }
  if (spec->interval() > 0) r.interval = spec->interval();
  if (spec->timeout() > 0) r.timeout = spec->timeout();
  if (spec->start_period() > 0) r.startPeriod = spec->start_period();
  if (spec->retries() > 0) r.retries = spec->retries();
  return r;
}

Result<std::vector<std::string>> probeArgv(const std::vector<std::string>& test) {
  const std::string& kind = test.front();
  if (kind == "CMD-SHELL") {
    if (test.size() != 2 || test[1].empty())
      return Error{"health check: CMD-SHELL takes one command line, e.g. "
                   "--health-cmd 'curl -f http://localhost/'"};
    return std::vector<std::string>{"/bin/sh", "-c", test[1]};
  }
  if (kind == "CMD") {
    if (test.size() < 2 || test[1].empty())
      return Error{"health check: CMD needs a command after it"};
    return std::vector<std::string>(test.begin() + 1, test.end());
  }
  return Error{"health check: the test starts with '" + kind +
               "'; it must be NONE, CMD or CMD-SHELL (docker's HealthConfig.Test)"};
}

}  // namespace

Result<std::optional<HealthSettings>> healthSettings(const objects::HealthConfig* spec,
                                                     const std::optional<ImageHealthcheck>& image) {
  RawHealth raw = merge(spec, image);
  if (raw.test.empty() || raw.test.front() == "NONE") return std::optional<HealthSettings>();
  auto argv = probeArgv(raw.test);
  if (!argv) return argv.error();
  if (raw.interval < 0 || raw.timeout < 0 || raw.startPeriod < 0 || raw.retries < 0)
    return Error{"health check: interval, timeout, start period and retries cannot be negative"};
  HealthSettings s;
  s.argv = std::move(argv).value();
  s.interval = raw.interval > 0 ? raw.interval : kHealthDefaultInterval;
  s.timeout = raw.timeout > 0 ? raw.timeout : kHealthDefaultTimeout;
  s.startPeriod = raw.startPeriod;
  s.retries = raw.retries > 0 ? raw.retries : kHealthDefaultRetries;
  return std::optional<HealthSettings>(std::move(s));
}

HealthCheck::HealthCheck(HealthSettings settings, int64_t startedAt)
    : settings_(std::move(settings)),
      startedAt_(startedAt),
      nextProbeAt_(startedAt + settings_.interval) {}

Health HealthCheck::probed(int64_t at, bool ok, std::string output) {
  lastOutput_ = std::move(output);
  nextProbeAt_ = at + settings_.interval;
  if (health_ == Health::Unhealthy) return health_;  // final: the task is being killed
  if (ok) {
    streak_ = 0;
    health_ = Health::Healthy;
    return health_;
  }
  // Docker: failures while the start period lasts do not count (the app may still be
  // coming up), unless it was already healthy once.
  bool inStartPeriod = at < startedAt_ + settings_.startPeriod;
  if (inStartPeriod && health_ == Health::Starting) return health_;
  if (++streak_ >= settings_.retries) health_ = Health::Unhealthy;
  return health_;
}

std::string unhealthyMessage(const std::string& lastOutput) {
  std::string out = lastOutput;
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return "unhealthy container: " + (out.empty() ? std::string("the check failed") : out);
}

}  // namespace shoal::agentd
