#pragma once
// raftd's own store API, called from inside raftd: the control and service APIs read and write
// objects the way every other client does, through RaftNode::serveStore with local calls, so
// reads are linearizable and a follower forwards writes to its leader. A call is retried with
// backoff (50 ms doubling to 1 s) while the store says nothing was done (store::retryable),
// until its budget runs out; every callback runs on the loop, at most once, and none after the
// LocalStore is gone.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/loop.h"
#include "common/store_client.h"
#include "services/raftd/node.h"

namespace shoal::raftd {

class LocalStore {
 public:
  using Millis = std::chrono::milliseconds;
  template <class T>
  using Then = std::function<void(Result<T>)>;
  static constexpr Millis kBudget = std::chrono::seconds(8);

  LocalStore(Loop& loop, RaftNode& node) : loop_(loop), node_(node) {}
  ~LocalStore() { *alive_ = false; }
  LocalStore(const LocalStore&) = delete;
  LocalStore& operator=(const LocalStore&) = delete;

  // One store API request; the answer frame, or the store's error (its code a wire::ErrorCode).
  void call(bus::Buffer request, Then<bus::Frame> fn, Millis budget = kBudget);
  // The object's bytes.
  void get(objects::ObjectKind kind, const std::string& id, Then<std::string> fn);
  // Every object of the kind (local: this manager's copy, without the linearizable check).
  void list(objects::ObjectKind kind, bool local, Then<std::vector<std::string>> fn,
            Millis budget = kBudget);
  // One transaction; the index it was applied at.
  void commit(std::vector<store::ChangeSpec> changes, Then<uint64_t> fn);

 private:
  struct Attempt;
  void attempt(std::shared_ptr<Attempt> a);

  Loop& loop_;
  RaftNode& node_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  uint64_t nextCall_ = 1;
};

}  // namespace shoal::raftd
