#pragma once
// agentd's record of the tasks its runc executor holds (docs/containers.md "Restart safety"):
// one LMDB entry per task in <state>/tasks.mdb/, written before the executor acts on what it
// records, so that an agentd killed at any point finds, when it starts again, every container,
// mount and sandbox it may have made: it adopts the running ones and tears down the rest.
//
// A record is JSON (one small object per task; the store is read once at start and written a
// few times per task), encoded and decoded by pure functions tested without LMDB.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/lmdb.h"
#include "common/result.h"

namespace shoal::agentd {

struct TaskRecord {
  // How far the task got. Each phase is written before the step that needs it undone.
  enum class Phase {
    Preparing,  // things may have been made (sandbox, mounts, bundle dir): tear down to reuse
    Prepared,   // everything made, nothing runs
    Started,    // a shim was started: the container may run (adopt it)
    Ended,      // the container ended: exitCode holds how (kept until the task is removed)
  };
  std::string id;
  std::string name;       // <service>.<slot>.<task id>
  std::string serviceId;
  std::string image;      // the reference as the spec gives it
  std::string imageId;    // the image's config digest, once known
  std::string bundle;     // <state>/containers/<task id>
  Phase phase = Phase::Preparing;
  bool sandbox = false;   // overlayd was asked for a namespace (remove it on teardown)
  std::vector<std::string> volumes;  // named volumes the task uses
  int64_t created = 0;    // ns since the epoch
  int64_t started = 0;
  int64_t ended = 0;
  int pid = 0;            // the container's init, once started
  int exitCode = 0;       // Ended
  std::string error;      // Ended: why (runc's error, "container removed by hand", ...)
};

const char* phaseName(TaskRecord::Phase phase);
std::string encodeRecord(const TaskRecord& record);
// Errors say which field of which record is wrong (a record written by a future agentd, or
// a damaged file): the executor then logs it and leaves the record alone.
Result<TaskRecord> decodeRecord(std::string_view key, std::string_view bytes);

class TaskStore {
 public:
  // Opens (creates) the LMDB environment in dir. Errors name the dir.
  static Result<std::unique_ptr<TaskStore>> open(const std::string& dir);

  // Durable when it returns (LMDB's sync commit).
  Status put(const TaskRecord& record);
  Status remove(const std::string& id);
  // Every record that decodes; the others are named in `bad` (key: why).
  struct Listing {
    std::vector<TaskRecord> records;
    std::vector<std::string> bad;
  };
  Result<Listing> list();

 private:
  TaskStore(std::unique_ptr<lmdb::Environment> env, lmdb::Table table)
      : env_(std::move(env)), table_(table) {}
  std::unique_ptr<lmdb::Environment> env_;
  lmdb::Table table_;
};

}  // namespace shoal::agentd
