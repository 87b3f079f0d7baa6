// The health check's state machine (services/agentd/health.h) on a fake clock: docker's
// rules for intervals, retries and the start period, and which check a task gets.
#include <doctest/doctest.h>

#include "services/agentd/health.h"

namespace shoal::agentd {
namespace {

constexpr int64_t kSecond = 1'000'000'000;

HealthSettings settings(int retries, int64_t interval = kSecond, int64_t startPeriod = 0) {
  return HealthSettings{{"/bin/sh", "-c", "true"}, interval, kSecond, startPeriod, retries};
}

// A spec HealthConfig as the control API stores it.
struct SpecHealth {
  flatbuffers::FlatBufferBuilder fbb;
  const objects::HealthConfig* config;
  explicit SpecHealth(objects::HealthConfigT h) {
    fbb.Finish(objects::HealthConfig::Pack(fbb, &h));
    config = flatbuffers::GetRoot<objects::HealthConfig>(fbb.GetBufferPointer());
  }
};

TEST_CASE("a check is starting until its first success, then healthy") {
  HealthCheck h(settings(3), 100 * kSecond);
  CHECK(h.health() == Health::Starting);
  CHECK(h.nextProbeAt() == 101 * kSecond);
  CHECK(h.probed(101 * kSecond, false, "no") == Health::Starting);
  CHECK(h.failingStreak() == 1);
  CHECK(h.nextProbeAt() == 102 * kSecond);
  CHECK(h.probed(102 * kSecond, true, "") == Health::Healthy);
  CHECK(h.failingStreak() == 0);
}

TEST_CASE("retries failures in a row make it unhealthy; a success in between resets") {
  HealthCheck h(settings(2), 0);
  CHECK(h.probed(1 * kSecond, false, "a") == Health::Starting);
  CHECK(h.probed(2 * kSecond, true, "") == Health::Healthy);
  CHECK(h.probed(3 * kSecond, false, "b") == Health::Healthy);
  CHECK(h.probed(4 * kSecond, false, "c") == Health::Unhealthy);
  CHECK(h.lastOutput() == "c");
  // Final: the task is being killed, a late success changes nothing.
  CHECK(h.probed(5 * kSecond, true, "") == Health::Unhealthy);
}

TEST_CASE("failures inside the start period do not count; a success there counts") {
  HealthCheck h(settings(1, kSecond, 10 * kSecond), 0);
  for (int i = 1; i < 10; ++i) CHECK(h.probed(i * kSecond, false, "x") == Health::Starting);
  CHECK(h.failingStreak() == 0);
  CHECK(h.probed(10 * kSecond, false, "x") == Health::Unhealthy);

  HealthCheck early(settings(1, kSecond, 10 * kSecond), 0);
  CHECK(early.probed(2 * kSecond, true, "") == Health::Healthy);
  // Once healthy, the start period no longer shields a failure.
  CHECK(early.probed(3 * kSecond, false, "down") == Health::Unhealthy);
}

TEST_CASE("the unhealthy message is Swarm's, with the check's last output") {
  CHECK(unhealthyMessage("missing\n") == "unhealthy container: missing");
  CHECK(unhealthyMessage("") == "unhealthy container: the check failed");
}

TEST_CASE("which check: the spec's, else the image's; NONE disables; docker's defaults") {
  objects::HealthConfigT shell;
  shell.test = {"CMD-SHELL", "test -f /tmp/ok"};
  shell.interval = 2 * kSecond;
  SpecHealth spec(shell);
  auto s = healthSettings(spec.config, std::nullopt);
  REQUIRE(s);
  REQUIRE(s->has_value());
  CHECK((*s)->argv == std::vector<std::string>{"/bin/sh", "-c", "test -f /tmp/ok"});
  CHECK((*s)->interval == 2 * kSecond);
  CHECK((*s)->timeout == kHealthDefaultTimeout);
  CHECK((*s)->retries == kHealthDefaultRetries);

  ImageHealthcheck image{{"CMD", "/bin/check", "--fast"}, 5 * kSecond, 0, 0, 0, 7};
  auto fromImage = healthSettings(nullptr, image);
  REQUIRE(fromImage);
  REQUIRE(fromImage->has_value());
  CHECK((*fromImage)->argv == std::vector<std::string>{"/bin/check", "--fast"});
  CHECK((*fromImage)->retries == 7);

  // A spec without a test keeps the image's command, with its own durations.
  objects::HealthConfigT durations;
  durations.retries = 1;
  SpecHealth onlyRetries(durations);
  auto merged = healthSettings(onlyRetries.config, image);
  REQUIRE(merged);
  CHECK((*merged)->argv.front() == "/bin/check");
  CHECK((*merged)->retries == 1);

  objects::HealthConfigT none;
  none.test = {"NONE"};
  SpecHealth off(none);
  auto disabled = healthSettings(off.config, image);
  REQUIRE(disabled);
  CHECK(!disabled->has_value());
  auto nothing = healthSettings(nullptr, std::nullopt);
  REQUIRE(nothing);
  CHECK(!nothing->has_value());
}

TEST_CASE("tests docker refuses are refused, naming the problem") {
  objects::HealthConfigT bad;
  bad.test = {"RUN", "x"};
  SpecHealth kind(bad);
  auto r = healthSettings(kind.config, std::nullopt);
  REQUIRE(!r);
  CHECK(r.error().message.find("'RUN'") != std::string::npos);
  bad.test = {"CMD"};
  SpecHealth empty(bad);
  CHECK(!healthSettings(empty.config, std::nullopt));
  bad.test = {"CMD-SHELL", "a", "b"};
  SpecHealth two(bad);
  CHECK(!healthSettings(two.config, std::nullopt));
}

}  // namespace
}  // namespace shoal::agentd
