#pragma once
// The store client (DESIGN.md §5, §12): how every daemon, the CLI and the tools reach raftd's
// store API (schemas/store.fbs) on the local raftd.sock. Nothing talks to raftd any other way,
// and nothing here links raftd: like FRR's lib/zclient.c, the client lives in the shared
// library.
//
// Two layers:
// - request builders (txnRequest, getRequest, ...): one store API message each, for tools and
//   tests that drive a bus::Client themselves;
// - store::Client, on a Loop: get/list/txn with the retry rules of docs/raftd.md ("Errors a
//   caller can act on"), watches that never skip an event silently, and the Leadership
//   stream. store::SyncClient wraps it for the CLI and tests.
//
// Errors carry a wire::ErrorCode as Error::code (codeOf()). What a caller sees:
// - NotLeader, Unavailable, ResourceExhausted "overloaded", and a read whose connection to
//   raftd dropped, said that nothing was done: they are retried with backoff (50 ms doubling
//   to 1 s) until the caller's timeout. When it runs out the call ends DeadlineExceeded with
//   the last error in the message: for a write, that still means nothing was done.
// - Indeterminate (a write): it may or may not have been applied — raftd said so, no answer
//   came within the timeout, or the connection to raftd dropped while it was in flight.
//   Never retried here: read the state before retrying a write that is not idempotent.
// - Conflict, NotFound, InvalidArgument, ResourceExhausted for a transaction too large or a
//   store nearly full: returned as they are.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/bus.h"
#include "common/loop.h"
#include "common/protocols.h"
#include "common/result.h"
#include "objects_generated.h"
#include "store_generated.h"

namespace shoal::store {

using Millis = std::chrono::milliseconds;

// --- Request builders --------------------------------------------------------------------

// A Config object, the smallest kind: id, name and data.
std::string configObject(std::string_view id, std::string_view name, std::string_view data,
                         uint64_t version = 0);

// One change of a transaction. expectedVersion: the object's meta.version the change was
// computed from (0 for a Create); a different stored version rejects the whole transaction
// with Conflict.
struct ChangeSpec {
  objects::ObjectKind kind;
  objects::Operation operation;
  std::string id;
  uint64_t expectedVersion = 0;
  std::string object;  // a FlatBuffer of `kind`; empty for Delete
};

// Which objects of a kind a List names (schemas/store.fbs ListRequest). None set: all.
struct ListFilter {
  std::string serviceId;  // tasks of a service (with slot > 0: of that slot)
  uint64_t slot = 0;
  std::string nodeId;     // tasks on a node
  int16_t role = -1;      // nodes with this objects::NodeRole
};

// Which events a watch gets besides its kinds. Both apply to tasks only; other kinds pass.
struct EventFilter {
  std::string serviceId;
  std::string nodeId;
};

bus::Buffer txnRequest(const std::vector<ChangeSpec>& changes);
bus::Buffer listRequest(objects::ObjectKind kind, bool local = false);
bus::Buffer listRequest(objects::ObjectKind kind, const ListFilter& filter, bool local = false);
bus::Buffer getRequest(objects::ObjectKind kind, std::string_view id, bool local = false);
bus::Buffer getByNameRequest(objects::ObjectKind kind, std::string_view name, bool local = false);
bus::Buffer storeStatusRequest();
bus::Buffer addMemberRequest(uint64_t nodeId, std::string_view address);
bus::Buffer removeMemberRequest(uint64_t nodeId);
bus::Buffer transferLeaderRequest(uint64_t nodeId);
bus::Buffer watchRequest(std::vector<objects::ObjectKind> kinds, uint64_t fromIndex);
bus::Buffer watchRequest(std::vector<objects::ObjectKind> kinds, uint64_t fromIndex,
                         const EventFilter& filter);
bus::Buffer leadershipRequest();

// --- Answers -------------------------------------------------------------------------------

// The code of a failed call (wire::ErrorCode::None for an error that carries none).
wire::ErrorCode codeOf(const Error& error);
// True for the errors that say nothing was done and a retry may succeed (see the top).
bool retryable(const Error& error);

// `ipc://<runDir>/raftd.sock`.
std::string endpointIn(std::string_view runDir);

struct Object {
  uint64_t index = 0;  // the store's applied index the answer reflects
  std::string data;    // a FlatBuffer of the kind asked for
};

struct Objects {
  uint64_t index = 0;  // the store's applied index the answer reflects
  std::vector<std::string> objects;
};

// One applied change, as a watch delivers it. For Delete, `object` is the object as it was.
struct Change {
  uint64_t index = 0;  // the Raft index of its transaction
  objects::ObjectKind kind = objects::ObjectKind::Unknown;
  objects::Operation operation = objects::Operation::Create;
  std::string id;
  uint64_t version = 0;
  std::string object;
};

// A full view of the watched kinds, delivered by watchWithResync before (and after every
// resync, instead of) the events it missed.
struct Snapshot {
  struct Kind {
    objects::ObjectKind kind;
    uint64_t index;  // this list's index: events of this kind up to it are in `objects`
    std::vector<std::string> objects;
  };
  std::vector<Kind> kinds;
};

// What raftd's Leadership stream says. known is false while the client has no stream to its
// raftd (it died or restarted): a daemon that follows leadership must then act as a follower.
struct Leadership {
  bool known = false;
  bool isLeader = false;
  uint64_t leaderId = 0;
  uint64_t term = 0;
};

struct ReadOptions {
  Millis timeout = std::chrono::seconds(5);
  bool local = false;  // this manager's copy, without the linearizable check
};

struct WriteOptions {
  Millis timeout = std::chrono::seconds(5);
};

struct Backoff {
  Millis first = Millis(50);
  Millis max = Millis(1000);
};

// --- The client ------------------------------------------------------------------------------

// An asynchronous client of one raftd (the node's own, on raftd.sock). Callbacks run on the
// loop. Every call's callback is called exactly once, unless the Client is destroyed first
// (then none is); a watch's callbacks are called until it is cancelled. Do not destroy the
// Client from inside one of its callbacks.
class Client {
 public:
  using ObjectFn = std::function<void(Result<Object>)>;
  using ObjectsFn = std::function<void(Result<Objects>)>;
  using IndexFn = std::function<void(Result<uint64_t>)>;
  using JsonFn = std::function<void(Result<nlohmann::json>)>;
  // Events in index order, whole transactions at a time; lastIndex: everything up to it has
  // been delivered (watch from it to go on).
  using EventsFn = std::function<void(uint64_t lastIndex, std::vector<Change> events)>;
  // The watch is over and events may have been missed after the last one delivered: list,
  // then watch from the list's index. The error says why.
  using ResyncFn = std::function<void(Error why)>;
  using SnapshotFn = std::function<void(Snapshot snapshot)>;
  using LeadershipFn = std::function<void(const Leadership&)>;
  using WatchId = uint64_t;

  Client(Loop& loop, zmq::context_t& ctx, Backoff backoff = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // ipc://<run-dir>/raftd.sock (endpointIn), or raftd's peer port for tools.
  Status connect(const std::string& endpoint);

  void get(objects::ObjectKind kind, std::string_view id, ReadOptions options, ObjectFn fn);
  void getByName(objects::ObjectKind kind, std::string_view name, ReadOptions options, ObjectFn fn);
  void list(objects::ObjectKind kind, const ListFilter& filter, ReadOptions options, ObjectsFn fn);
  // Applies the changes all or nothing; the answer is the index they were applied at.
  void txn(std::vector<ChangeSpec> changes, WriteOptions options, IndexFn fn);
  // raftd's Status (JSON: node_id, role, leader, members, ...).
  void status(Millis timeout, JsonFn fn);
  // Adds a raft member at `address` (host:port of its peer port): a learner until raftd
  // promotes it. The answer is the index of the membership change. A write, retried like txn.
  void addMember(uint64_t raftId, std::string_view address, WriteOptions options, IndexFn fn);

  // Events of `kinds` (all kinds if empty) after fromIndex (0: from now on). Ends, with one
  // call of onResync and none of onEvents after it, when raftd says its history does not
  // reach fromIndex any more, when the stream ends for any reason (raftd stopping, the
  // client fell behind) or when the connection to raftd drops.
  WatchId watch(std::vector<objects::ObjectKind> kinds, uint64_t fromIndex, EventFilter filter,
                EventsFn onEvents, ResyncFn onResync);
  // list → watch → resync, forever: onSnapshot gets the current objects of every kind, then
  // onEvents what changed after, and after every resync a new snapshot (to replace the whole
  // view with) followed by events again. fromIndex > 0: the caller already holds the state at
  // that index, so it starts with the events after it (and a snapshot only if the history
  // does not reach it).
  WatchId watchWithResync(std::vector<objects::ObjectKind> kinds, EventFilter filter,
                          SnapshotFn onSnapshot, EventsFn onEvents, uint64_t fromIndex = 0);
  // The leadership of raftd's node: once now and at every change; re-opened when it ends.
  WatchId leadership(LeadershipFn onChange);
  // Stops a watch or leadership stream; no callback of it runs after this.
  void cancel(WatchId id);

  bus::Client& bus() { return bus_; }
  Loop& loop() { return loop_; }

 private:
  struct Op;
  struct Watch;
  struct Resyncing;
  struct LeaderSub;

  // Sends a request and retries it as the top of this file says.
  void start(bool write, std::function<bus::Buffer()> build, Millis timeout,
             std::function<void(Result<bus::Frame>)> done);
  void attempt(uint64_t opId);
  void answered(uint64_t opId, Result<bus::Frame> r);
  void retryLater(uint64_t opId, Error why);
  void onDisconnect();

  void openWatch(WatchId id);
  void endWatch(WatchId id, Error why);
  void resyncList(WatchId id, size_t next);
  void resyncWatch(WatchId id);
  void openLeadership(WatchId id);

  Loop& loop_;
  bus::Client bus_;
  Backoff backoff_;
  uint64_t nextId_ = 1;
  std::map<uint64_t, std::unique_ptr<Op>> ops_;
  std::map<WatchId, std::unique_ptr<Watch>> watches_;
  std::map<WatchId, std::unique_ptr<Resyncing>> resyncing_;
  std::map<WatchId, std::unique_ptr<LeaderSub>> leaders_;
};

// A blocking client for the CLI and tests: its own loop, one call at a time. Watches run
// while the caller turns the loop (loop().runOnce).
class SyncClient {
 public:
  explicit SyncClient(Backoff backoff = {});
  Status connect(const std::string& endpoint) { return client_.connect(endpoint); }

  Result<Object> get(objects::ObjectKind kind, std::string_view id, ReadOptions options = {});
  Result<Object> getByName(objects::ObjectKind kind, std::string_view name, ReadOptions options = {});
  Result<Objects> list(objects::ObjectKind kind, const ListFilter& filter = {}, ReadOptions options = {});
  Result<uint64_t> txn(std::vector<ChangeSpec> changes, WriteOptions options = {});
  Result<nlohmann::json> status(Millis timeout = std::chrono::seconds(5));

  Client& client() { return client_; }
  Loop& loop() { return loop_; }

 private:
  template <class T, class Start>
  Result<T> wait(Start start);

  zmq::context_t ctx_{1};
  Loop loop_;
  Client client_;
};

}  // namespace shoal::store
