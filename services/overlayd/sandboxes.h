#pragma once
// overlayd's network sandboxes (schemas/overlay.fbs, docs/containers.md "Network sandboxes"):
// one network namespace per task, bind-mounted at <run dir>/netns/<task id> as `ip netns add`
// does, with its loopback up, and a record of it in overlayd's LMDB so that a restarted
// overlayd lists what it made and forgets what is gone. Networks attach here once overlay
// networking lands, behind the same calls.
//
// The kernel work is synchronous (a thread that unshares its netns, one bind mount, one
// netlink change: about a millisecond), done on the daemon's loop.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/daemon.h"
#include "common/lmdb.h"
#include "common/result.h"

namespace shoal::overlayd {

// A task id names a file under netns/: 1 to 64 of [A-Za-z0-9_.-], not starting with '.'.
Status checkTaskId(std::string_view id);

// Whether `path` is a bind-mounted network namespace (its file system is nsfs).
bool isNetns(const std::string& path);

// A new network namespace bind-mounted at `path` (the file is created), loopback up. On an
// error nothing is left at `path`.
Status makeNetns(const std::string& path);
// Unmounts (MNT_DETACH: a process still inside keeps its namespace) and deletes `path`; a
// path that is not there is not an error.
Status removeNetns(const std::string& path);

// The service load balancer this kernel offers: "ipvs" when it has IPVS (/proc/net/ip_vs, or
// its generic netlink family), else "nftables" (DESIGN.md §9).
std::string loadBalancerKind();

class Sandboxes {
 public:
  // Opens the records in stateDir and reconciles them with the netns files in runDir/netns:
  // a record whose namespace is gone is dropped, a namespace without a record (a create cut
  // short by a crash) is removed.
  static Result<std::unique_ptr<Sandboxes>> open(const std::string& stateDir,
                                                 const std::string& runDir);

  // The task's netns path; made if it is not there (idempotent).
  Result<std::string> create(const std::string& taskId);
  // Removing one that is not there is not an error.
  Status remove(const std::string& taskId);
  // {"sandboxes": [{task_id, path, created}]}, in task id order.
  Result<nlohmann::json> list();
  size_t size() const { return count_; }
  std::string pathOf(const std::string& taskId) const { return dir_ + "/" + taskId; }

 private:
  Sandboxes(std::unique_ptr<lmdb::Environment> env, lmdb::Table table, std::string dir)
      : env_(std::move(env)), table_(table), dir_(std::move(dir)) {}
  Status reconcile();
  Status forget(const std::string& taskId);

  std::unique_ptr<lmdb::Environment> env_;
  lmdb::Table table_;
  std::string dir_;  // <run dir>/netns
  size_t count_ = 0;
};

// Serves kOverlayProtocol on the daemon's socket and adds {sandboxes, lb} to its Status.
void serveSandboxes(Daemon& daemon, Sandboxes& sandboxes);

}  // namespace shoal::overlayd
