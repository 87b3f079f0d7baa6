// When schedulerd's shell runs a pass (services/schedulerd/pacing.h), on time points of the
// test's own: changes gathered for 50 ms after the last one but never more than 1 s after the
// first, a wake due at once, no pass while a write is in flight or before the view has seen
// it, and a pause after a pass that failed.
#include <doctest/doctest.h>

#include "services/schedulerd/pacing.h"

namespace shoal::schedulerd {
namespace {

using namespace std::chrono_literals;
using TimePoint = Pacing::TimePoint;

const TimePoint t0 = TimePoint{} + 1000s;

TEST_CASE("nothing gathered: no pass is due") {
  Pacing p;
  CHECK_FALSE(p.due().has_value());
  CHECK_FALSE(p.heldBack(0));
}

TEST_CASE("a change is due 50 ms later; each further change moves it, up to 1 s after the first") {
  Pacing p;
  p.changed(t0);
  REQUIRE(p.due().has_value());
  CHECK(*p.due() == t0 + 50ms);
  p.changed(t0 + 30ms);
  CHECK(*p.due() == t0 + 80ms);
  // A change every 40 ms would hold passes off for ever without the bound.
  for (int i = 1; i <= 30; ++i) p.changed(t0 + i * 40ms);
  CHECK(*p.due() == t0 + 1000ms);
}

TEST_CASE("a pass takes what was gathered; the next change starts a new gathering") {
  Pacing p;
  p.changed(t0);
  p.changed(t0 + 900ms);
  p.ran(t0 + 950ms, false);
  CHECK_FALSE(p.due().has_value());
  p.changed(t0 + 2s);
  CHECK(*p.due() == t0 + 2s + 50ms);
}

TEST_CASE("a wake the cores asked for is due at once") {
  Pacing p;
  p.wake(t0);
  CHECK(*p.due() == t0);
  // Changes after it do not put it off.
  p.changed(t0 + 10ms);
  CHECK(*p.due() == t0 + 10ms);
  p.ran(t0 + 10ms, false);
  p.changed(t0 + 20ms);
  CHECK(*p.due() == t0 + 70ms);  // the next gathering is an ordinary one
}

TEST_CASE("writes in flight hold the next pass back, and so does a view behind them") {
  Pacing p;
  p.sent();
  p.sent();
  CHECK(p.inFlight() == 2);
  CHECK(p.heldBack(100));
  p.written(120);
  CHECK(p.heldBack(100));
  p.notWritten();
  CHECK(p.inFlight() == 0);
  CHECK(p.heldBack(119));  // the watch has not brought index 120 back yet
  CHECK_FALSE(p.heldBack(120));
  CHECK_FALSE(p.heldBack(130));
  // The highest index counts, whatever order the answers came in.
  p.sent();
  p.written(110);
  CHECK(p.highestWritten() == 120);
}

TEST_CASE("an answer with nothing in flight does not wrap the count") {
  Pacing p;
  p.notWritten();
  p.written(5);
  CHECK(p.inFlight() == 0);
  CHECK(p.highestWritten() == 5);
}

TEST_CASE("after a failed pass the next one waits a second") {
  Pacing p;
  p.changed(t0);
  p.ran(t0 + 50ms, true);
  p.changed(t0 + 60ms);
  CHECK(*p.due() == t0 + 50ms + Pacing::kAfterError);
  p.ran(t0 + 2s, false);
  p.changed(t0 + 3s);
  CHECK(*p.due() == t0 + 3s + 50ms);
}

TEST_CASE("reset forgets what was gathered and what was owed") {
  Pacing p;
  p.changed(t0);
  p.sent();
  p.written(50);
  p.sent();
  p.reset();
  CHECK_FALSE(p.due().has_value());
  CHECK(p.inFlight() == 0);
  CHECK(p.highestWritten() == 0);
  CHECK_FALSE(p.heldBack(0));
}

}  // namespace
}  // namespace shoal::schedulerd
