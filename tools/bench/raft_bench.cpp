#include "tools/bench/raft_bench.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <latch>
#include <map>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "common/bus.h"
#include "common/ids.h"
#include "common/loop.h"
#include "services/raftd/protocols.h"
#include "services/raftd/store_client.h"

namespace shoal::bench {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr bus::Millis kWriteTimeout{5000};
constexpr int kInterruptedExit = 130;

void emit(const nlohmann::ordered_json& j) { std::cout << j.dump() << std::endl; }

double millisBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// What a Config's data holds: value-bytes of a fixed pattern (LMDB does not compress, so the
// content does not matter, only the size).
std::string makeValue(int bytes) {
  std::string v(static_cast<size_t>(bytes), '\0');
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<char>('a' + i % 26);
  return v;
}

// One durable single-object create: a Config with a fresh id.
bus::Buffer createConfigTxn(const std::string& value) {
  std::string id = newId();
  return raftd::txnRequest({{objects::ObjectKind::Config, objects::Operation::Create, id, 0,
                             raftd::configObject(id, "bench-" + id, value)}});
}

// NotLeader and Unavailable come from an election in progress; DeadlineExceeded from a
// request that went to a leader that is gone. All three are worth trying again.
bool retryable(int code) {
  auto c = static_cast<wire::ErrorCode>(code);
  return c == wire::ErrorCode::NotLeader || c == wire::ErrorCode::Unavailable ||
         c == wire::ErrorCode::DeadlineExceeded;
}

double percentile(const std::vector<uint32_t>& sortedUs, double p) {
  if (sortedUs.empty()) return 0;
  size_t rank = static_cast<size_t>(p * static_cast<double>(sortedUs.size() - 1) + 0.5);
  return sortedUs[std::min(rank, sortedUs.size() - 1)] / 1000.0;
}

double round2(double v) { return static_cast<double>(static_cast<int64_t>(v * 100 + 0.5)) / 100; }

// A share of the writers on one event-loop thread. Each writer is its own DEALER with one
// request in flight: the next write goes out when the last one is answered.
class WriterGroup {
 public:
  WriterGroup(zmq::context_t& ctx, std::string endpoint, int writers, const std::string& value)
      : ctx_(ctx), endpoint_(std::move(endpoint)), count_(writers), value_(value) {}

  void start(std::latch& ready, std::latch& go) {
    thread_ = std::thread([this, &ready, &go] { run(ready, go); });
  }
  void requestStop() { stopping_.store(true); }
  void join() {
    if (thread_.joinable()) thread_.join();
  }

  uint64_t writes() const { return writes_.load(std::memory_order_relaxed); }
  uint64_t errors() const { return errors_.load(std::memory_order_relaxed); }
  uint64_t retries() const { return retries_.load(std::memory_order_relaxed); }
  // Read after join().
  const std::vector<uint32_t>& latenciesUs() const { return latenciesUs_; }
  const std::string& setupError() const { return setupError_; }

 private:
  struct Writer {
    std::unique_ptr<bus::Client> client;
    Clock::time_point firstSent;  // of the write being attempted, across retries
    bool inFlight = false;
  };

  void run(std::latch& ready, std::latch& go) {
    Loop loop;
    loop_ = &loop;
    writers_.resize(static_cast<size_t>(count_));
    for (auto& w : writers_) {
      w.client = std::make_unique<bus::Client>(loop, ctx_, raftd::kStoreProtocol);
      if (auto st = w.client->connect(endpoint_); !st) setupError_ = st.error().message;
    }
    latenciesUs_.reserve(1 << 16);
    ready.count_down();
    go.wait();
    if (setupError_.empty())
      for (auto& w : writers_) {
        w.firstSent = Clock::now();
        send(w);
      }
    // After the stop, let the writes in flight finish (bounded) so no reply is left for a
    // socket that is being closed.
    std::optional<Clock::time_point> drainUntil;
    while (true) {
      if (stopping_.load() && !drainUntil) drainUntil = Clock::now() + 2s;
      if (drainUntil) {
        bool busy = std::any_of(writers_.begin(), writers_.end(), [](const Writer& w) { return w.inFlight; });
        if (!busy || Clock::now() > *drainUntil) break;
      }
      loop.runOnce(20ms);
    }
    writers_.clear();
    loop_ = nullptr;
  }

  void send(Writer& w) {
    w.inFlight = true;
    w.client->call(createConfigTxn(value_), kWriteTimeout, [this, &w](Result<bus::Frame> r) {
      w.inFlight = false;
      auto now = Clock::now();
      bool stopping = stopping_.load();
      if (r) {
        if (!stopping) {
          latenciesUs_.push_back(static_cast<uint32_t>(
              std::chrono::duration_cast<std::chrono::microseconds>(now - w.firstSent).count()));
          writes_.fetch_add(1, std::memory_order_relaxed);
        }
        if (stopping) return;
        w.firstSent = now;
        return send(w);
      }
      if (!stopping) errors_.fetch_add(1, std::memory_order_relaxed);
      if (stopping) return;
      if (retryable(r.error().code)) {
        // The same write again (with a fresh id: the first may have been committed
        // unanswered); its latency keeps counting from the first attempt. A short pause
        // keeps an election from turning into a busy loop.
        retries_.fetch_add(1, std::memory_order_relaxed);
        w.inFlight = true;
        loop_->after(5ms, [this, &w] {
          if (stopping_.load()) {
            w.inFlight = false;
            return;
          }
          send(w);
        });
        return;
      }
      if (errors_.load() <= 5)
        std::cerr << "shoal-bench: write failed: " << r.error().message << "\n";
      w.firstSent = now;
      send(w);
    });
  }

  zmq::context_t& ctx_;
  std::string endpoint_;
  int count_;
  const std::string& value_;
  std::thread thread_;
  Loop* loop_ = nullptr;
  std::vector<Writer> writers_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> writes_{0};
  std::atomic<uint64_t> errors_{0};
  std::atomic<uint64_t> retries_{0};
  std::vector<uint32_t> latenciesUs_;
  std::string setupError_;
};

struct LeaderCounters {
  uint64_t readyBatches = 0;
  uint64_t appliedEntries = 0;
};

LeaderCounters countersOf(const LocalCluster& cluster, size_t i) {
  auto st = cluster.status(i);
  if (!st) return {};
  return {st->value("ready_batches", uint64_t{0}), st->value("applied_entries", uint64_t{0})};
}

// Sleeps until `until`, waking for an interrupt; false if interrupted.
bool sleepUntil(Clock::time_point until) {
  while (Clock::now() < until) {
    if (interrupted()) return false;
    std::this_thread::sleep_for(std::min<Clock::duration>(50ms, until - Clock::now()));
  }
  return !interrupted();
}

}  // namespace

int runRaftThroughput(const RaftBenchOptions& o) {
  if (o.clients < 1 || o.seconds < 1 || o.valueBytes < 0 || o.threads < 1)
    return std::cerr << "shoal-bench: --clients, --seconds and --threads must be positive\n", 1;
  LocalCluster cluster(o.cluster);
  std::cerr << "shoal-bench: starting " << o.cluster.nodes << " raftd (" << o.cluster.raftd << ")\n";
  if (auto st = cluster.start(); !st) {
    std::cerr << "shoal-bench: " << st.error().message << "\n";
    return interrupted() ? kInterruptedExit : 1;
  }
  auto leader = cluster.leader();
  if (!leader) {
    std::cerr << "shoal-bench: " << leader.error().message << "\n";
    return 1;
  }
  std::cerr << "shoal-bench: " << o.cluster.nodes << " voters, leader is raftd " << *leader + 1
            << "; writing with " << o.clients << " clients for " << o.seconds << "s\n";
  LeaderCounters before = countersOf(cluster, *leader);
  std::vector<double> cpuBefore;
  for (size_t i = 0; i < cluster.size(); ++i) cpuBefore.push_back(cluster.cpuSeconds(i));
  double selfBefore = selfCpuSeconds();
  auto machineBefore = machineJiffies();

  zmq::context_t ctx(1);
  std::string value = makeValue(o.valueBytes);
  int threads = std::min(o.threads, o.clients);
  std::vector<std::unique_ptr<WriterGroup>> groups;
  for (int t = 0; t < threads; ++t) {
    int share = o.clients / threads + (t < o.clients % threads ? 1 : 0);
    groups.push_back(std::make_unique<WriterGroup>(ctx, cluster.endpoint(*leader), share, value));
  }
  std::latch ready(threads), go(1);
  for (auto& g : groups) g->start(ready, go);
  ready.wait();
  auto started = Clock::now();
  go.count_down();

  auto sum = [&](uint64_t (WriterGroup::*fn)() const) {
    uint64_t n = 0;
    for (auto& g : groups) n += ((*g).*fn)();
    return n;
  };
  uint64_t lastWrites = 0, lastErrors = 0;
  int t = 0;
  for (t = 1; t <= o.seconds; ++t) {
    if (!sleepUntil(started + std::chrono::seconds(t))) break;
    uint64_t w = sum(&WriterGroup::writes), e = sum(&WriterGroup::errors);
    emit({{"bench", "raft"}, {"t", t}, {"writes", w - lastWrites}, {"errors", e - lastErrors}});
    lastWrites = w;
    lastErrors = e;
  }
  for (auto& g : groups) g->requestStop();
  auto stopped = Clock::now();
  // CPU over the window: each raftd's, this process's (the writers and their ZeroMQ thread),
  // and the share of the machine's CPUs busy, which says whether the cores were the limit.
  nlohmann::ordered_json raftdCpu = nlohmann::ordered_json::array();
  double cpuTotal = selfCpuSeconds() - selfBefore;
  double benchCpu = cpuTotal;
  for (size_t i = 0; i < cluster.size(); ++i) {
    double c = cluster.cpuSeconds(i) - cpuBefore[i];
    cpuTotal += c;
    raftdCpu.push_back(round2(c));
  }
  auto machineAfter = machineJiffies();
  double busy = machineAfter.second > machineBefore.second
                    ? static_cast<double>(machineAfter.first - machineBefore.first) /
                          static_cast<double>(machineAfter.second - machineBefore.second)
                    : 0;
  uint64_t writes = sum(&WriterGroup::writes), errors = sum(&WriterGroup::errors),
           retries = sum(&WriterGroup::retries);
  for (auto& g : groups) g->join();

  std::vector<uint32_t> lat;
  for (auto& g : groups) {
    if (!g->setupError().empty()) std::cerr << "shoal-bench: " << g->setupError() << "\n";
    lat.insert(lat.end(), g->latenciesUs().begin(), g->latenciesUs().end());
  }
  std::sort(lat.begin(), lat.end());
  LeaderCounters after = countersOf(cluster, *leader);
  nlohmann::ordered_json rss = nlohmann::ordered_json::array();
  nlohmann::ordered_json anon = nlohmann::ordered_json::array();
  for (size_t i = 0; i < cluster.size(); ++i) {
    rss.push_back(cluster.peakRss(i));
    anon.push_back(cluster.anonRss(i));
  }
  cluster.stop();

  double elapsed = std::chrono::duration<double>(stopped - started).count();
  uint64_t batches = after.readyBatches - before.readyBatches;
  uint64_t entries = after.appliedEntries - before.appliedEntries;
  nlohmann::ordered_json summary{{"bench", "raft"},
        {"nodes", o.cluster.nodes},
        {"clients", o.clients},
        {"seconds", o.seconds},
        {"value_bytes", o.valueBytes},
        {"writes", writes},
        {"writes_per_s", round2(elapsed > 0 ? static_cast<double>(writes) / elapsed : 0)},
        {"p50_ms", round2(percentile(lat, 0.50))},
        {"p99_ms", round2(percentile(lat, 0.99))},
        {"max_ms", round2(lat.empty() ? 0 : lat.back() / 1000.0)},
        {"errors", errors},
        {"retries", retries},
        {"leader_ready_batches", batches},
        {"leader_applied_entries", entries},
        {"raftd_peak_rss_bytes", rss},
        {"raftd_rss_anon_bytes", anon},
        {"raftd_cpu_s", raftdCpu},
        {"bench_cpu_s", round2(benchCpu)},
        {"cpu_us_per_write", round2(writes ? cpuTotal * 1e6 / static_cast<double>(writes) : 0)},
        {"machine_cpu_busy", round2(busy)}};
  if (interrupted()) {
    summary["interrupted"] = true;
    summary["elapsed_s"] = round2(elapsed);
  }
  emit(summary);
  if (interrupted()) return kInterruptedExit;
  return 0;
}

int runRaftFailover(const RaftBenchOptions& o) {
  if (o.runs < 1) return std::cerr << "shoal-bench: --runs must be positive\n", 1;
  ClusterOptions co = o.cluster;
  co.nodes = 3;
  co.tickMs = 100;  // the defaults of DESIGN.md §13: the goal is stated for them
  co.electionTicks = 10;
  std::string value = makeValue(o.valueBytes);
  std::vector<double> results;
  int failures = 0;
  for (int run = 1; run <= o.runs && !interrupted(); ++run) {
    LocalCluster cluster(co);
    std::cerr << "shoal-bench: failover run " << run << ": starting 3 raftd\n";
    if (auto st = cluster.start(); !st) {
      std::cerr << "shoal-bench: " << st.error().message << "\n";
      if (interrupted()) break;
      ++failures;
      continue;
    }
    auto old = cluster.leader();
    if (!old) {
      std::cerr << "shoal-bench: " << old.error().message << "\n";
      ++failures;
      continue;
    }
    size_t via = (*old + 1) % cluster.size();  // a follower: it forwards to the leader
    std::string oldId = cluster.member(*old).nodeId;
    bus::SyncClient client(raftd::kStoreProtocol);
    if (auto st = client.connect(cluster.endpoint(via)); !st) {
      std::cerr << "shoal-bench: " << st.error().message << "\n";
      ++failures;
      continue;
    }

    // Steady writing first, so the kill lands on a leader that is busy committing.
    uint64_t before = 0, errors = 0;
    auto warm = Clock::now() + 1s;
    while (Clock::now() < warm && !interrupted()) {
      auto r = client.call(createConfigTxn(value), kWriteTimeout);
      r ? ++before : ++errors;
    }
    if (before == 0) {
      std::cerr << "shoal-bench: no write succeeded through raftd " << via + 1
                << " before the kill; see the logs in " << cluster.dir() << "\n";
      ++failures;
      continue;
    }

    // SIGKILL closes the leader's connections, which raftd's peers notice at once; SIGSTOP
    // leaves them open, so only the election timeout (10 ticks) tells. Either way nothing
    // sent after this point can be committed by the old leader.
    auto killed = Clock::now();
    if (o.freeze)
      cluster.freeze(*old);
    else
      cluster.kill(*old);
    std::optional<Clock::time_point> committed;
    uint64_t attempts = 0;
    std::map<std::string, uint64_t> errorsAfterKill;  // by error code name
    auto giveUp = killed + 30s;
    while (!committed && Clock::now() < giveUp && !interrupted()) {
      ++attempts;
      auto r = client.call(createConfigTxn(value), bus::Millis(o.attemptTimeoutMs));
      if (r) {
        committed = Clock::now();
      } else {
        ++errors;
        ++errorsAfterKill[bus::errorCodeName(static_cast<wire::ErrorCode>(r.error().code))];
        if (!retryable(r.error().code))
          std::cerr << "shoal-bench: write failed: " << r.error().message << "\n";
        if (r.error().code != static_cast<int>(wire::ErrorCode::DeadlineExceeded))
          std::this_thread::sleep_for(5ms);
      }
    }
    if (!committed) {
      std::cerr << "shoal-bench: run " << run << ": no write committed within 30s of the kill; "
                << "see the logs in " << cluster.dir() << "\n";
      ++failures;
      continue;
    }
    // The write's commit came from a leader; check that it is a new one and that the
    // survivors agree on it.
    auto now = cluster.waitLeader(2s);
    std::string newId = now ? cluster.member(*now).nodeId : "";
    if (!now || newId == oldId) {
      std::cerr << "shoal-bench: run " << run << ": after the kill no new leader was reported"
                << (now ? "" : ": " + now.error().message) << "\n";
      ++failures;
      continue;
    }
    double ms = millisBetween(killed, *committed);
    results.push_back(ms);
    emit({{"bench", "raft-failover"},
          {"run", run},
          {"leader_signal", o.freeze ? "SIGSTOP" : "SIGKILL"},
          {"failover_ms", round2(ms)},
          {"old_leader", oldId},
          {"new_leader", newId},
          {"via", "raftd" + std::to_string(via + 1)},
          {"writes_before_kill", before},
          {"attempts_after_kill", attempts},
          {"errors_after_kill", errorsAfterKill},
          {"errors", errors}});
  }
  std::vector<double> sorted = results;
  std::sort(sorted.begin(), sorted.end());
  double median = 0;
  if (!sorted.empty()) {
    size_t n = sorted.size();
    median = n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  }
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (double r : results) list.push_back(round2(r));
  emit({{"bench", "raft-failover"},
        {"runs", o.runs},
        {"leader_signal", o.freeze ? "SIGSTOP" : "SIGKILL"},
        {"failed_runs", failures},
        {"failover_ms", list},
        {"failover_ms_median", round2(median)},
        {"failover_ms_max", round2(sorted.empty() ? 0 : sorted.back())}});
  if (interrupted()) return kInterruptedExit;
  return failures == 0 ? 0 : 1;
}

}  // namespace shoal::bench
