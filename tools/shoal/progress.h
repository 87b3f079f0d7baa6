#pragma once
// The convergence display of `service create|update|scale|rollback` without -d, as docker's
// (github.com/docker/cli cli/command/service/progress/progress.go):
//
//   overall progress: 2 out of 3 tasks
//   1/3: running   [==================================================>]
//   2/3: running   [==================================================>]
//   3/3: no suitable node (3 nodes fail constraint node.labels.zone==b)
//   verify: Service converged
//
// Pure: progressOf reads a Service and its Tasks (as polled from the store) and says what to
// show and whether the wait is over; Display turns successive frames into terminal output
// (redrawn in place with ANSI on a terminal, the changed lines otherwise).

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "objects_generated.h"

namespace shoal::cli {

// What the command waits for.
struct ProgressTarget {
  uint64_t specVersion = 0;  // the service's spec_version the command's write made
  int64_t startedAt = 0;     // when the command wrote (ns since the epoch)
  bool rollback = false;     // `service rollback`: a rollback is what it waits for
};

struct ProgressFrame {
  std::vector<std::string> lines;  // the display now, without trailing newlines
  std::vector<std::string> notes;  // one-off lines, e.g. "rollback: update rolled back: ..."
  bool converged = false;          // then print "verify: Service converged" and exit 0
  std::optional<std::string>
      failure;  // exit 1 with it: "update paused: ...", "service rolled back: ..."
};

// Docker shows a line per slot (or per node) up to 20 of them; over that, only the overall line.
inline constexpr size_t kMaxProgressBars = 20;

// hostnames: node id → hostname, for global services' lines. now: ns since the epoch.
ProgressFrame progressOf(const objects::ServiceT& service,
                         const std::vector<const objects::TaskT*>& tasks,
                         const std::map<std::string, std::string>& hostnames,
                         const ProgressTarget& target, int64_t now);

// Docker's progress bar for a task state: new ... running on a 50-character bar.
std::string progressBar(objects::TaskState state);

// Docker's verify step: a converged service must stay so for the update (or rollback)
// config's monitor period before the wait ends, so that a task that fails right after it
// started is seen. A frame that is not converged starts the period again. Jobs end at once.
class Verifier {
 public:
  explicit Verifier(int64_t monitorNanos) : monitor_(monitorNanos) {}
  // Whether the wait is over; while verifying, the line to show under the frame.
  bool done(bool converged, int64_t now, std::string* line);

 private:
  int64_t monitor_;
  std::optional<int64_t> since_;
};

// The monitor period of the service's update config (its rollback config for a rollback);
// 0 for jobs, which docker does not verify.
int64_t verifyPeriod(const objects::ServiceT& service, bool rollback);

// Successive frames to output. On a terminal each frame replaces the last (cursor up, clear
// line); otherwise a line is printed when it is new or its text changed.
class Display {
 public:
  explicit Display(bool terminal) : terminal_(terminal) {}
  std::string frame(const std::vector<std::string>& lines);
  // A line printed once above the frame (on a terminal the frame is drawn again below it).
  std::string note(const std::string& line);

 private:
  bool terminal_;
  std::vector<std::string> shown_;
};

}  // namespace shoal::cli
