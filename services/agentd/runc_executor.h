#pragma once
// The runc executor (`agentd --executor runc`, docs/containers.md "A task's way on a node"):
// real containers. Each task is prepared (image, network sandbox, volumes, secrets and
// configs on a tmpfs, the overlay rootfs, /etc files, config.json), started through the
// runtime's shim, watched (exit, health checks) and stopped (stop signal, grace, SIGKILL);
// its record in the task store (task_store.h) is written before each step that makes
// something, so that an agentd killed anywhere can adopt or tear down what it left.
//
// It owns nothing it is given: the image store, runtime, sandbox client and secrets are
// SwarmAgent's. Every call returns at once; events come from timers and callbacks
// (executor.h), never from inside a call.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/loop.h"
#include "common/result.h"
#include "services/agentd/bundle.h"
#include "services/agentd/executor.h"
#include "services/agentd/health.h"
#include "services/agentd/image_store.h"
#include "services/agentd/runtime.h"
#include "services/agentd/sandbox_client.h"
#include "services/agentd/secrets.h"
#include "services/agentd/task_store.h"
#include "services/agentd/volumes.h"

namespace shoal::agentd {

struct RuncExecutorOptions {
  std::string stateDir;  // agentd's: containers/, logs/, volumes/, tasks.mdb/
  // The container's cgroup is <cgroupParent>/<task id> (cgroupfs paths).
  std::string cgroupParent = "/shoal";
  // Where /etc/resolv.conf of containers comes from (the host's until meshd's DNS lands).
  std::string resolvConf = "/etc/resolv.conf";
};

// Pure pieces of a prepare, tested without I/O.
// The overlay mount's data: lowerdir = the layers top first (image.layers is lowest first).
Result<std::string> overlayOptions(const std::vector<std::string>& layers,
                                   const std::string& upper, const std::string& work);
// /etc/hosts of a container: loopback, its hostname, then the spec's extra lines ("IP names").
std::string hostsFile(const std::string& hostname, const std::vector<std::string>& extra);
// A FileTarget's uid or gid ("" → 0). InvalidArgument for anything but a number.
Result<uint32_t> fileOwner(const std::string& text, const char* what, const std::string& name);
// Where a secret (/run/secrets/<target>) or config (/<target>) appears in the container.
std::string secretTarget(const std::string& target, bool config);
// The FAILED/COMPLETE event of a container that ended on its own.
TaskEvent exitEvent(const std::string& taskId, const ContainerExit& exit);

class RuncExecutor : public Executor {
 public:
  static Result<std::unique_ptr<RuncExecutor>> open(Loop& loop, RuncExecutorOptions options,
                                                    ImageStore& images, Runtime& runtime,
                                                    SandboxClient& sandboxes,
                                                    const SecretStore& secrets);
  ~RuncExecutor() override;

  std::string_view name() const override { return "runc"; }
  void prepare(const objects::Task& task) override;
  void start(const std::string& taskId) override;
  void stop(const std::string& taskId) override;
  void remove(const std::string& taskId) override;
  void adopt(const objects::Task& task) override;
  void reconcile(const std::set<std::string>& assigned) override;

  // ---- for the container API (container_api.h)
  // containers.fbs ListReply's objects; `all` adds those that ended.
  nlohmann::json containers(bool all) const;
  // `container rm [-f]`: a running one only with force (killed: FAILED "container removed
  // by hand"). Errors carry wire codes (NotFound, Conflict, InvalidArgument).
  Status removeByHand(const std::string& ref, bool force);
  // Container names using each volume.
  std::map<std::string, std::vector<std::string>> volumeUsers() const;
  Volumes& volumes() { return volumes_; }
  // Image ids the node's tasks use (not to be collected or removed).
  std::set<std::string> imagesInUse() const;

  // {containers, running, prepares_in_flight, records, leftovers, images, runtime}
  nlohmann::json status() const;

 private:
  enum class Step { Preparing, Ready, Starting, Running, Ended };
  struct Container {
    TaskRecord record;
    std::string task;  // the Task FlatBuffer as assigned
    Step step = Step::Preparing;
    uint64_t generation = 0;  // async callbacks of an earlier generation are stale
    std::optional<Image> image;
    std::string netns;
    int stopSignal = 15;
    std::chrono::nanoseconds grace{std::chrono::seconds(10)};
    std::optional<HealthCheck> health;
    Loop::TimerId healthTimer = 0, killTimer = 0;
    bool probing = false;
    bool stopping = false;      // SHUTDOWN once it ended
    bool removing = false;      // torn down and forgotten once it ended
    bool byHand = false;        // `container rm -f`
    bool hidden = false;        // `container rm`: gone from `container ls -a`
    bool unhealthy = false;
    bool tornDown = false;
  };
  using Containers = std::map<std::string, Container>;

  RuncExecutor(Loop& loop, RuncExecutorOptions options, ImageStore& images, Runtime& runtime,
               SandboxClient& sandboxes, const SecretStore& secrets,
               std::unique_ptr<TaskStore> store);
  void loadRecords();

  // ---- prepare, step by step
  void pullImage(const std::string& id);
  void makeSandbox(const std::string& id);
  void finishPrepare(const std::string& id);
  Status materialize(Container& c, const objects::Task& task);
  Status makeVolumes(Container& c, const objects::ContainerSpec& spec);
  Result<std::vector<ResolvedMount>> etcFiles(Container& c, const objects::Task& task);
  Result<std::vector<ResolvedMount>> secretFiles(Container& c, const objects::Task& task);
  struct SecretFile {
    std::string id, name;
    const objects::FileTarget* target;
    bool config;
  };
  Result<ResolvedMount> writeSecret(const std::string& dir, const std::string& file,
                                    const SecretFile& s);
  Status writeSecretFile(const std::string& dir, const std::string& file, const std::string& data,
                         const objects::FileTarget* target, const std::string& what);
  Status mountRootfs(Container& c);
  Status writeSpec(Container& c, const objects::Task& task, std::vector<ResolvedMount> mounts);
  void reject(const std::string& id, const std::string& why);

  // ---- running
  void onStarted(const std::string& id, uint64_t generation, Result<int> pid);
  void onExit(const std::string& id, const ContainerExit& exit);
  void ended(Container& c, const std::string& id, TaskEvent event);
  void kill(const std::string& id, int signal);
  void scheduleProbe(const std::string& id, Container& c);
  void probe(const std::string& id);
  void onProbe(const std::string& id, uint64_t generation, int64_t at, bool ok,
               std::string output);
  void setupHealth(Container& c);
  void adoptRecord(const std::string& id, const objects::Task& task, const TaskRecord& record);

  // ---- tearing down (idempotent: from the record's paths, whatever was made)
  void teardown(const TaskRecord& record, bool started, std::function<void()> done);
  void unmountAndDelete(const TaskRecord& record);
  void forget(const std::string& id);
  void removeStrays();
  void collectImages();

  Container* find(const std::string& id);
  Result<std::string> resolve(const std::string& ref) const;
  Status save(Container& c);
  // Emits from a timer: never inside a call (executor.h).
  void later(TaskEvent event);
  int64_t now() const;  // wall clock ns
  int64_t steadyNs() const;
  std::string bundleOf(const std::string& id) const;
  std::string logDirOf(const std::string& id) const;

  Loop& loop_;
  RuncExecutorOptions options_;
  ImageStore& images_;
  Runtime& runtime_;
  SandboxClient& sandboxes_;
  const SecretStore& secrets_;
  std::unique_ptr<TaskStore> store_;
  Volumes volumes_;
  Containers containers_;
  // Records found at start that no task claimed yet (adopt or prepare claims them; the first
  // complete set's reconcile tears down the rest).
  std::map<std::string, TaskRecord> leftovers_;
  bool reconciled_ = false;
  uint64_t nextGeneration_ = 1;
  std::set<Loop::TimerId> timers_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace shoal::agentd
