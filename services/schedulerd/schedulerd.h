#pragma once
// schedulerd's shell (DESIGN.md §1, §2 step 2; docs/services.md "schedulerd"): follows its
// raftd's leadership through the store client; while that raftd leads it keeps a View of the
// Cluster, Nodes, Networks, Services and Tasks with a store watch, and runs passes (pass.h) —
// debounced: gathering changes for up to 50 ms after the first, at most 1 s — and at the
// times the cores ask for (Plan::wakeAt). Each pass's batches are committed as store
// transactions; the next pass waits until the watch has brought them back (pacing.h). A
// Conflict or a failed write makes it list everything again. On a follower, or a worker, it
// idles and its Status says why.
//
// Whether it acts is raftd's word alone: a raftd that leads is a manager's, so a schedulerd
// started before `swarm init` or a promotion needs no Reload to take over. node.json (read at
// start, on a Reload and when leadership changes) only explains an idle schedulerd.

#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "common/daemon.h"
#include "common/result.h"
#include "common/store_client.h"
#include "services/schedulerd/pacing.h"
#include "services/schedulerd/view.h"

namespace shoal::schedulerd {

class Scheduler {
 public:
  // Wires schedulerd into the daemon. Not reaching raftd is no error: it idles until raftd
  // answers, with the reason in its Status.
  static Result<std::unique_ptr<Scheduler>> start(Daemon& daemon);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

 private:
  explicit Scheduler(Daemon& daemon) : daemon_(daemon) {}

  // --- node dir and leadership
  Status reload();
  void onLeadership(const store::Leadership& leadership);
  void activate();
  void deactivate(const std::string& why);
  void stop();
  void showStatusText();

  // --- the view
  void watchStore();
  void resync(const std::string& why);
  void onSnapshot(store::Snapshot snapshot);
  void onEvents(uint64_t lastIndex, std::vector<store::Change> events);
  void put(objects::ObjectKind kind, std::string_view bytes);

  // --- passes and their writes
  void pump();
  void armPassTimer(Pacing::TimePoint at);
  void runPass();
  void commit(std::vector<std::vector<store::ChangeSpec>> batches);
  void committed(uint64_t generation, size_t changes, Result<uint64_t> r);
  void armWake(Time when);

  // --- Status
  std::string why() const;
  void status(nlohmann::json& j) const;
  nlohmann::json viewCounts() const;

  Daemon& daemon_;
  std::unique_ptr<store::Client> store_;
  store::Leadership leadership_;
  std::string nodeDirReason_;  // why node.json says this node cannot schedule; empty if a manager

  // While active: everything below belongs to one term of leadership (generation_).
  bool active_ = false;
  uint64_t generation_ = 0;  // answers of an earlier activation or watch are ignored
  store::Client::WatchId watch_ = 0;
  bool loaded_ = false;      // the watch has delivered its snapshot
  View view_;
  Pacing pacing_;
  Loop::TimerId passTimer_ = 0;
  Pacing::TimePoint passTimerAt_{};
  Loop::TimerId wakeTimer_ = 0;
  Time nextWake_ = 0;

  struct LastPass {
    double ms = 0;
    size_t creates = 0, updates = 0, deletes = 0, txns = 0;
  };
  struct Counters {
    uint64_t passes = 0;
    uint64_t passErrors = 0;
    uint64_t txns = 0;
    uint64_t conflicts = 0;
    uint64_t failures = 0;
    uint64_t resyncs = 0;
    uint64_t badObjects = 0;
  } counters_;
  LastPass lastPass_;
  std::string lastError_;
  bus::RateLimitedWarning badObjectWarning_;
};

}  // namespace shoal::schedulerd
