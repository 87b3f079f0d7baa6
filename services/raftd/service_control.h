#pragma once
// raftd's service API (schemas/service.fbs, docs/services.md "The service API"), on raftd.sock
// beside the store and control APIs: service create, update (and scale), rollback and rm.
//
// Each request reads what its checks need (services, networks, secrets, configs:
// linearizable reads through LocalStore), checks and resolves the spec with service_rules.h,
// and writes the Service in one transaction with the version it read, so nothing is written
// when a check fails and a change made meanwhile comes back as a Conflict. Requests run one at
// a time, in the order they came (like Control's): two creates of one name, or an update and a
// rm, interleaved would only make each other's checks stale. On a follower the store path
// forwards the write to the leader.

#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "common/daemon.h"
#include "common/protocols.h"
#include "services/raftd/local_store.h"
#include "services/raftd/node.h"
#include "services/raftd/secret_control.h"
#include "services/raftd/service_rules.h"

namespace shoal::raftd {

class ServiceControl {
 public:
  // Serves the service protocol on the daemon's socket.
  static Result<std::unique_ptr<ServiceControl>> start(Daemon& daemon, RaftNode& node);
  ~ServiceControl();
  ServiceControl(const ServiceControl&) = delete;
  ServiceControl& operator=(const ServiceControl&) = delete;

 private:
  struct Request {
    bus::Call call;
  };
  using Req = std::shared_ptr<Request>;
  using ObjectsPtr = std::shared_ptr<service_rules::Objects>;
  template <class T>
  using Then = std::function<void(Result<T>)>;
  // What an update or rollback asks, kept for its retries.
  struct UpdateArgs {
    std::string query;
    uint64_t version = 0;
    std::shared_ptr<const objects::ServiceSpecT> spec;  // null for a rollback
  };

  ServiceControl(Daemon& daemon, RaftNode& node);

  // The queue.
  void enqueue(bus::Call call);
  void next();
  void done();
  void serve(Req r);
  void reply(const Req& r, const std::string& serviceId);
  // A secret or config request's answer (ObjectReply), or its refusal.
  void replyObject(const Req& r, Result<std::string> id);
  void fail(const Req& r, wire::ErrorCode code, const std::string& message);
  void fail(const Req& r, const Error& error);

  // The operations.
  void create(Req r);
  void update(Req r);
  // One read-check-write of an update; a Conflict without a version from the caller (the
  // schedulers write endpoint and update_status) reads again, a few times.
  void updateOnce(Req r, UpdateArgs args, int attempt);
  void remove(Req r, std::string query, int attempt);
  // Secrets and configs (secret_control.h); false when the body is none of theirs.
  bool serveSecrets(const Req& r);

  // Every Service, Network, Secret and Config, decoded.
  void readObjects(Then<ObjectsPtr> fn);
  template <class T>
  void listInto(objects::ObjectKind kind, const char* what,
                std::vector<std::unique_ptr<typename T::NativeTableType>>& out,
                std::function<void(Status)> fn);
  void status(nlohmann::json& j) const;

  Daemon& daemon_;
  LocalStore store_;
  SecretControl secrets_{store_};
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::deque<bus::Call> queue_;
  bool busy_ = false;
  uint64_t served_ = 0;
  uint64_t refused_ = 0;
  std::string lastError_;
};

}  // namespace shoal::raftd
