#pragma once
// When schedulerd's shell may run a pass (DESIGN.md §2 step 2: "debounced: gather for up to
// 50 ms, at most 1 s"). Pure: steady time points in, decisions out, so that a unit test drives
// it without a loop (tests/unit/schedulerd_pacing_test.cpp).
//
// - Store changes are gathered: a pass is due 50 ms after the last change, and never later
//   than 1 s after the first change it gathers, so a steady stream of changes (a busy
//   dispatcher) cannot hold passes off. A time the cores asked for (Plan::wakeAt) is due at
//   once: its change is the clock, and nothing more will come to gather.
// - No pass while a transaction of the last one is in flight, nor before the view has caught
//   up with the highest index written: the cores compute expected versions from the view, so
//   a view behind its own writes would only make them conflict.
// - After a pass that failed (a core threw), the next one waits kAfterError, so that a failure
//   that repeats does not spin the daemon.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>

namespace shoal::schedulerd {

class Pacing {
 public:
  using Clock = std::chrono::steady_clock;
  using TimePoint = Clock::time_point;
  static constexpr std::chrono::milliseconds kQuiet{50};
  static constexpr std::chrono::milliseconds kMaxDelay{1000};
  static constexpr std::chrono::milliseconds kAfterError{1000};

  // A store change came in (or a new snapshot of the store).
  void changed(TimePoint now) {
    if (!first_) first_ = now;
    last_ = now;
  }
  // A time the cores asked for has come.
  void wake(TimePoint now) {
    changed(now);
    urgent_ = true;
  }

  // A transaction went to the store; its answer comes as written() or notWritten().
  void sent() { ++inFlight_; }
  void written(uint64_t index) {
    if (inFlight_ > 0) --inFlight_;
    highest_ = std::max(highest_, index);
  }
  void notWritten() {
    if (inFlight_ > 0) --inFlight_;
  }

  // Whether the last pass's writes hold the next one back: some are in flight, or the view
  // (at viewIndex) has not seen them come back yet.
  bool heldBack(uint64_t viewIndex) const { return inFlight_ > 0 || viewIndex < highest_; }

  // When the gathered changes call for a pass; nothing when none are gathered.
  std::optional<TimePoint> due() const {
    if (!first_) return std::nullopt;
    TimePoint at = urgent_ ? *last_ : std::min(*last_ + kQuiet, *first_ + kMaxDelay);
    return std::max(at, notBefore_);
  }

  // A pass ran at `now` and took every change gathered so far.
  void ran(TimePoint now, bool failed) {
    first_.reset();
    last_.reset();
    urgent_ = false;
    notBefore_ = failed ? now + kAfterError : TimePoint{};
  }

  // Leadership was lost: nothing gathered, nothing owed (answers of the old term are ignored).
  void reset() { *this = Pacing{}; }

  size_t inFlight() const { return inFlight_; }
  uint64_t highestWritten() const { return highest_; }

 private:
  std::optional<TimePoint> first_, last_;
  bool urgent_ = false;
  TimePoint notBefore_{};
  size_t inFlight_ = 0;
  uint64_t highest_ = 0;
};

}  // namespace shoal::schedulerd
