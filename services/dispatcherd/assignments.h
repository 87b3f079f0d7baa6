#pragma once
// What each node is assigned, and what the dispatcher has told its agent (docs/services.md
// "Assignments", DESIGN.md §2 step 3 and §7). Pure: the shell feeds it the store's Tasks and
// its streams' credits and the time, and sends the items it hands out.
//
// A node's set is every task with node_id = the node and status.state >= ASSIGNED, whatever
// its desired state (the agent needs to see desired SHUTDOWN to stop a task). Per open stream
// the dispatcher remembers what the agent holds (task id -> version sent) and the version of
// the last item: the first item is the complete set, every later one an increment {version,
// previous = the last item's version, updated, removed} computed as the difference between
// the node's set now and what the agent holds. Since every item is built from that record
// and chains to the item before it on the same stream, the server never leaves a gap.
//
// Batching: a change goes out at once when the stream sent nothing for 100 ms, otherwise
// 100 ms after its last item (at most one increment per 100 ms per stream, never more late
// than that), so one store transaction of 200 tasks reaches its nodes in one item each.
// An item is at most kMaxItemBytes: a larger set goes as several items (the complete set
// first, the rest as increments chained to it, sent without waiting).
//
// The Task view is kept as stored bytes plus the four fields the dispatcher reads, so that
// 10,000+ tasks stay light: nothing is unpacked until a status is written (task_status.h).
//
// Secrets and configs (docs/containers.md "Secrets and configs"): the view also holds the
// store's Secrets and Configs, and an item carries those the tasks in its `updated` refer to
// (ContainerSpec.secrets[].secret_id, configs[].config_id), so a complete set carries all
// those of the node's tasks, and a node only ever gets the secrets of its own tasks (DESIGN.md
// §4). One the view does not have (removed meanwhile) is left out; the agent then rejects the
// task naming it.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/bus.h"
#include "common/result.h"
#include "objects_generated.h"
#include "services/dispatcherd/sessions.h"

namespace shoal::dispatcherd {

// A stored Task as the dispatcher keeps it.
struct TaskEntry {
  std::string id;
  uint64_t version = 0;  // meta.version: the expected version of an Update
  std::string nodeId;
  objects::TaskState state = objects::TaskState::New;
  std::string bytes;  // as stored (verified): what the agent gets
  std::vector<std::string> secretIds;  // what its container spec refers to
  std::vector<std::string> configIds;
};

// A stored Secret or Config as the dispatcher keeps it.
struct FileEntry {
  std::string id;
  uint64_t version = 0;
  std::string bytes;  // as stored (verified)
};

// A Secret (Config) from the store, verified; errors say what is wrong.
Result<FileEntry> readSecret(std::string_view bytes);
Result<FileEntry> readConfig(std::string_view bytes);

// A Task from the store, verified before anything reads it. Errors say what is wrong.
Result<TaskEntry> readTask(std::string_view bytes);

// Whether a task in this state is its node's business: ASSIGNED and every later state.
inline bool isAssigned(objects::TaskState state) { return state >= objects::TaskState::Assigned; }

// One item of an assignments stream (schemas/dispatch.fbs Assignments).
struct AssignmentItem {
  bool full = false;
  uint64_t version = 0;
  uint64_t previous = 0;             // 0 for a complete set
  std::vector<std::string> updated;  // Task bytes, as stored
  std::vector<std::string> removed;  // task ids
  std::vector<std::string> secrets;  // Secret bytes, as stored: those `updated` refer to
  std::vector<std::string> configs;  // Config bytes, likewise
};

// The item as a dispatch Envelope (Body::Assignments), ready for ServerStream::send.
bus::Buffer encodeAssignments(const AssignmentItem& item);

class Assignments {
 public:
  using StreamId = uint64_t;
  static constexpr Clock::duration kInterval = std::chrono::milliseconds(100);
  // Well under the bus's 64 MiB limit, and small enough that a complete set of thousands of
  // tasks does not hold the dispatcher's loop for long in one send.
  static constexpr size_t kMaxItemBytes = 1u << 20;

  // --- the Task view (the store watch)
  // Takes a task's newer version; an older or equal one is ignored (false): a watch event
  // behind a re-read that already put the task in the view.
  bool put(TaskEntry task);
  void erase(const std::string& id);
  // The view after a resync: exactly these tasks. Open streams get the difference.
  void replaceAll(std::vector<TaskEntry> tasks);

  // The Secrets and Configs, likewise (a newer version wins; replaceSecrets after a resync).
  void putSecret(FileEntry secret);
  void eraseSecret(const std::string& id);
  void replaceSecrets(std::vector<FileEntry> secrets);
  void putConfig(FileEntry config);
  void eraseConfig(const std::string& id);
  void replaceConfigs(std::vector<FileEntry> configs);
  size_t secrets() const { return secrets_.size(); }
  size_t configs() const { return configs_.size(); }

  const TaskEntry* task(const std::string& id) const;
  size_t tasks() const { return tasks_.size(); }
  // Assigned tasks per node (nodes with none are left out), for Status.
  const std::map<std::string, std::set<std::string>>& byNode() const { return byNode_; }

  // --- streams
  // A stream of the node's assignments; its first item will be the complete set.
  void open(StreamId id, const std::string& nodeId);
  void close(StreamId id);
  std::vector<StreamId> streamsOf(const std::string& nodeId) const;
  std::vector<StreamId> streams() const;
  // Whether the stream has an item to send by `now` (credits aside).
  bool due(StreamId id, Clock::time_point now) const;
  // When the stream's next item may go (now at the earliest); none when it has nothing.
  std::optional<Clock::time_point> dueAt(StreamId id, Clock::time_point now) const;
  // The soonest time a stream with something pending becomes due, if any.
  std::optional<Clock::time_point> nextDue(Clock::time_point now) const;
  // The items to send now, at most `credits` of them; the stream's record takes them as
  // sent. An empty result when nothing is due.
  std::vector<AssignmentItem> take(StreamId id, Clock::time_point now, uint32_t credits);

  // The version of the stream's last item (0 before its first).
  uint64_t versionOf(StreamId id) const;

 private:
  struct Stream {
    std::string nodeId;
    bool started = false;                  // the complete set went
    uint64_t version = 0;                  // the last item's
    std::map<std::string, uint64_t> held;  // what the agent holds: task id -> version
    std::set<std::string> dirty;           // tasks to compare with what it holds
    bool continuing = false;               // a split item's rest: goes without waiting
    std::optional<Clock::time_point> lastSent;
  };

  void index(const TaskEntry& task);
  void unindex(const TaskEntry& task);
  // Marks the task for the streams of the node it was or is on.
  void touch(const std::string& taskId, const std::string& nodeId);
  bool hasWork(const Stream& s) const { return !s.started || !s.dirty.empty(); }
  // When the stream's next item may go (now at the earliest); none when it has nothing.
  std::optional<Clock::time_point> readyAt(const Stream& s, Clock::time_point now) const;
  AssignmentItem fullItem(Stream& s);
  AssignmentItem increment(Stream& s);
  // The secrets and configs the item's updated tasks refer to, into the item.
  void attachFiles(AssignmentItem& item, const std::vector<std::string>& taskIds) const;

  std::map<std::string, TaskEntry> tasks_;
  std::map<std::string, FileEntry> secrets_;
  std::map<std::string, FileEntry> configs_;
  std::map<std::string, std::set<std::string>> byNode_;  // assigned tasks only
  std::map<StreamId, Stream> streams_;
  std::map<std::string, std::set<StreamId>> streamsByNode_;
  uint64_t nextVersion_ = 1;
};

}  // namespace shoal::dispatcherd
