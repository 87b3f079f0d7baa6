#pragma once
// A task's health check (docs/containers.md "Health checks"): the settings from the spec's
// HealthConfig, else the image's HEALTHCHECK, with docker's defaults; and the pure state
// machine that turns probe results into Starting → Healthy → Unhealthy. Time is given in ns
// by the caller (the executor's clock, a test's fake one): nothing here sleeps or reads a
// clock, so every rule is tested with a fake clock.
//
// Docker's rules (moby daemon/health.go):
// - a probe every `interval` from the start; each probe may take `timeout`;
// - a failure inside the start period does not count, but a success there makes the
//   container healthy at once;
// - `retries` failures in a row (counted outside the start period) make it unhealthy;
// - a success resets the count.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "objects_generated.h"
#include "services/agentd/executor.h"
#include "services/agentd/image_store.h"

namespace shoal::agentd {

struct HealthSettings {
  std::vector<std::string> argv;  // what `runc exec` runs: CMD args, or /bin/sh -c CMD-SHELL
  int64_t interval = 0, timeout = 0, startPeriod = 0;  // ns
  int retries = 0;
};

// Docker's defaults for a field left zero.
inline constexpr int64_t kHealthDefaultInterval = 30'000'000'000;
inline constexpr int64_t kHealthDefaultTimeout = 30'000'000'000;
inline constexpr int kHealthDefaultRetries = 3;

// The check a task runs: the spec's when it has a test, else the image's; nullopt when
// neither has one or the test is ["NONE"]. InvalidArgument for a test docker would refuse
// (an unknown kind, CMD without a command), naming it.
Result<std::optional<HealthSettings>> healthSettings(const objects::HealthConfig* spec,
                                                     const std::optional<ImageHealthcheck>& image);

class HealthCheck {
 public:
  // startedAt: when the container started (ns); the first probe is one interval later.
  HealthCheck(HealthSettings settings, int64_t startedAt);

  // When the next probe is due (ns).
  int64_t nextProbeAt() const { return nextProbeAt_; }
  // A probe that began at `at` ended: ok (exit 0), with its output (or why it failed:
  // "timed out after 1s"). Returns the health after it; the next probe is one interval
  // after `at`.
  Health probed(int64_t at, bool ok, std::string output);

  Health health() const { return health_; }
  int failingStreak() const { return streak_; }
  const std::string& lastOutput() const { return lastOutput_; }
  const HealthSettings& settings() const { return settings_; }

 private:
  HealthSettings settings_;
  int64_t startedAt_;
  int64_t nextProbeAt_;
  Health health_ = Health::Starting;
  int streak_ = 0;
  std::string lastOutput_;
};

// The err of a task killed as unhealthy, as Swarm words it.
std::string unhealthyMessage(const std::string& lastOutput);

}  // namespace shoal::agentd
