// Tests of raftd's object store (services/raftd/store, DESIGN.md §5).

#include "services/raftd/store/store.h"

#include <doctest/doctest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <tuple>
#include <vector>

#include <flatbuffers/flatbuffers.h>

#include "objects_generated.h"
#include "wire_generated.h"

using namespace shoal;
using namespace shoal::store;
namespace obj = shoal::objects;

namespace {

constexpr int kConflict = static_cast<int>(wire::ErrorCode::Conflict);
constexpr int kNotFound = static_cast<int>(wire::ErrorCode::NotFound);
constexpr int kInvalid = static_cast<int>(wire::ErrorCode::InvalidArgument);
constexpr int kTooLarge = static_cast<int>(wire::ErrorCode::ResourceExhausted);

struct TempDir {
  std::string path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "shoal-store-XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

std::string finish(flatbuffers::FlatBufferBuilder& b) {
  return std::string(reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize());
}

const obj::Meta kZeroMeta(0, 0, 0);

std::string service(const std::string& id, const std::string& name, std::uint64_t replicas = 1) {
  flatbuffers::FlatBufferBuilder b;
  auto annotations = obj::CreateAnnotationsDirect(b, name.c_str());
  auto container = obj::CreateContainerSpecDirect(b, "nginx:1.25");
  auto task = obj::CreateTaskSpec(b, container);
  auto mode = obj::CreateServiceMode(b, obj::ServiceModeKind::Replicated, replicas);
  auto spec = obj::CreateServiceSpec(b, annotations, task, mode);
  b.Finish(obj::CreateServiceDirect(b, id.c_str(), &kZeroMeta, spec));
  return finish(b);
}

std::string task(const std::string& id, const std::string& serviceId, std::uint64_t slot,
                 const std::string& nodeId,
                 obj::TaskState state = obj::TaskState::New) {
  flatbuffers::FlatBufferBuilder b;
  auto status = obj::CreateTaskStatus(b, 0, state);
  b.Finish(obj::CreateTaskDirect(b, id.c_str(), &kZeroMeta, 0, 0, serviceId.c_str(), slot,
                                 nodeId.empty() ? nullptr : nodeId.c_str(), 0, 0, status,
                                 obj::TaskState::Running));
  return finish(b);
}

std::string node(const std::string& id, obj::NodeRole role) {
  flatbuffers::FlatBufferBuilder b;
  auto description = obj::CreateNodeDescriptionDirect(b, ("host-" + id).c_str());
  b.Finish(obj::CreateNodeDirect(b, id.c_str(), &kZeroMeta, 0, description, 0, 0, role));
  return finish(b);
}

std::string secret(const std::string& id, const std::string& name, std::size_t size) {
  flatbuffers::FlatBufferBuilder b;
  auto annotations = obj::CreateAnnotationsDirect(b, name.c_str());
  std::vector<std::uint8_t> data(size, 0x5a);
  auto spec = obj::CreateSecretSpecDirect(b, annotations, &data);
  b.Finish(obj::CreateSecretDirect(b, id.c_str(), &kZeroMeta, spec));
  return finish(b);
}

struct Batch {
  std::vector<std::tuple<obj::ObjectKind, obj::Operation, std::string, std::uint64_t,
                         std::string>>
      changes;

  Batch& create(obj::ObjectKind kind, const std::string& id, const std::string& object) {
    changes.emplace_back(kind, obj::Operation::Create, id, 0, object);
    return *this;
  }
  Batch& update(obj::ObjectKind kind, const std::string& id, std::uint64_t expected,
                const std::string& object) {
    changes.emplace_back(kind, obj::Operation::Update, id, expected, object);
    return *this;
  }
  Batch& remove(obj::ObjectKind kind, const std::string& id, std::uint64_t expected) {
    changes.emplace_back(kind, obj::Operation::Delete, id, expected, std::string());
    return *this;
  }
  std::string bytes() const {
    flatbuffers::FlatBufferBuilder b;
    std::vector<flatbuffers::Offset<obj::Change>> offsets;
    for (const auto& [kind, op, id, expected, object] : changes) {
      std::vector<std::uint8_t> data(object.begin(), object.end());
      offsets.push_back(obj::CreateChangeDirect(b, kind, op, id.c_str(), expected,
                                                object.empty() ? nullptr : &data));
    }
    obj::FinishStoreTxnBuffer(b, obj::CreateStoreTxnDirect(b, &offsets));
    return finish(b);
  }
};

// An environment and a store over it, reopened on demand.
struct Fixture {
  TempDir dir;
  std::unique_ptr<lmdb::Environment> env;
  std::unique_ptr<Store> store;
  StoreOptions options;

  Fixture() { open(); }
  void open(lmdb::Options lmdbOptions = {}) {
    store.reset();
    env.reset();
    auto e = lmdb::Environment::open(dir.path, lmdbOptions);
    REQUIRE_MESSAGE(e.ok(), e.error().message);
    env = std::move(*e);
    auto s = Store::open(*env, options);
    REQUIRE_MESSAGE(s.ok(), s.error().message);
    store = std::move(*s);
  }

  // The verdict of apply(); storage failures fail the test.
  Status apply(const Batch& batch, std::uint64_t index, std::int64_t now = 1000) {
    return applyBytes(batch.bytes(), index, now);
  }
  Status applyBytes(const std::string& bytes, std::uint64_t index, std::int64_t now = 1000) {
    Status verdict;
    Status s = env->update([&](lmdb::WriteTxn& txn) -> Status {
      auto r = store->apply(txn, bytes, index, now);
      if (!r) return r.error();
      verdict = *r;
      return {};
    });
    REQUIRE_MESSAGE(s.ok(), s.error().message);
    return verdict;
  }

  std::optional<std::string> get(obj::ObjectKind kind, const std::string& id) {
    auto txn = env->read();
    REQUIRE(txn.ok());
    auto v = store->get(*txn, kind, id);
    REQUIRE(v.ok());
    return v->has_value() ? std::optional<std::string>(std::string(**v)) : std::nullopt;
  }
  std::optional<std::string> getByName(obj::ObjectKind kind, const std::string& name) {
    auto txn = env->read();
    REQUIRE(txn.ok());
    auto v = store->getByName(*txn, kind, name);
    REQUIRE(v.ok());
    return v->has_value() ? std::optional<std::string>(std::string(**v)) : std::nullopt;
  }
  // The ids of the objects an index query returned, in order.
  template <class T, class Query>
  std::vector<std::string> ids(Query query) {
    auto txn = env->read();
    REQUIRE(txn.ok());
    auto r = query(*txn);
    REQUIRE_MESSAGE(r.ok(), r.error().message);
    std::vector<std::string> out;
    for (std::string_view bytes : *r) {
      out.emplace_back(objectAs<T>(bytes)->id()->str());
    }
    return out;
  }
  std::vector<std::string> tasksOfService(const std::string& id) {
    return ids<obj::Task>([&](lmdb::ReadTxn& t) { return store->tasksOfService(t, id); });
  }
  std::vector<std::string> tasksOfNode(const std::string& id) {
    return ids<obj::Task>([&](lmdb::ReadTxn& t) { return store->tasksOfNode(t, id); });
  }
  std::vector<std::string> tasksOfSlot(const std::string& id, std::uint64_t slot) {
    return ids<obj::Task>([&](lmdb::ReadTxn& t) { return store->tasksOfSlot(t, id, slot); });
  }
  std::vector<std::string> nodesWithRole(obj::NodeRole role) {
    return ids<obj::Node>([&](lmdb::ReadTxn& t) { return store->nodesWithRole(t, role); });
  }
  std::uint64_t count(obj::ObjectKind kind) {
    auto txn = env->read();
    REQUIRE(txn.ok());
    auto n = store->count(*txn, kind);
    REQUIRE(n.ok());
    return *n;
  }
};

const obj::Meta& metaOf(const std::string& bytes, obj::ObjectKind kind) {
  switch (kind) {
    case obj::ObjectKind::Service: return *objectAs<obj::Service>(bytes)->meta();
    case obj::ObjectKind::Task: return *objectAs<obj::Task>(bytes)->meta();
    case obj::ObjectKind::Node: return *objectAs<obj::Node>(bytes)->meta();
    default: return *objectAs<obj::Secret>(bytes)->meta();
  }
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("create, update and delete set meta and versions") {
  Fixture f;
  using K = obj::ObjectKind;
  REQUIRE(f.apply(Batch().create(K::Service, "svc1", service("svc1", "web")), 5, 100).ok());
  auto web = f.get(K::Service, "svc1");
  REQUIRE(web.has_value());
  CHECK(metaOf(*web, K::Service).version() == 5);
  CHECK(metaOf(*web, K::Service).created_at() == 100);
  CHECK(metaOf(*web, K::Service).updated_at() == 100);
  CHECK(objectAs<obj::Service>(*web)->spec()->mode()->replicas() == 1);

  REQUIRE(f.apply(Batch().update(K::Service, "svc1", 5, service("svc1", "web", 3)), 9, 200)
              .ok());
  web = f.get(K::Service, "svc1");
  REQUIRE(web.has_value());
  CHECK(metaOf(*web, K::Service).version() == 9);
  CHECK(metaOf(*web, K::Service).created_at() == 100);
  CHECK(metaOf(*web, K::Service).updated_at() == 200);
  CHECK(objectAs<obj::Service>(*web)->spec()->mode()->replicas() == 3);

  // A stale version is refused and says which object and which versions.
  Status stale = f.apply(Batch().update(K::Service, "svc1", 5, service("svc1", "web", 4)), 10);
  REQUIRE_FALSE(stale.ok());
  CHECK(stale.error().code == kConflict);
  CHECK(contains(stale.error().message, "service 'web' (id svc1)"));
  CHECK(contains(stale.error().message, "expected version 5"));
  CHECK(contains(stale.error().message, "at version 9"));
  CHECK(objectAs<obj::Service>(*f.get(K::Service, "svc1"))->spec()->mode()->replicas() == 3);

  Status dup = f.apply(Batch().create(K::Service, "svc1", service("svc1", "other")), 11);
  CHECK(dup.error().code == kConflict);
  CHECK(contains(dup.error().message, "exists already"));

  Status missing = f.apply(Batch().remove(K::Service, "nope", 1), 12);
  CHECK(missing.error().code == kNotFound);
  CHECK(contains(missing.error().message, "service nope"));

  REQUIRE(f.apply(Batch().remove(K::Service, "svc1", 9), 13).ok());
  CHECK_FALSE(f.get(K::Service, "svc1").has_value());
  CHECK_FALSE(f.getByName(K::Service, "web").has_value());
  CHECK(f.count(K::Service) == 0);

  // An index that is not after the last applied change is refused (no double apply).
  Status old = f.apply(Batch().create(K::Service, "svc2", service("svc2", "x")), 13);
  CHECK(old.error().code == kInvalid);
  CHECK_FALSE(f.get(K::Service, "svc2").has_value());
}

TEST_CASE("a conflict rejects the whole batch and names the object") {
  Fixture f;
  using K = obj::ObjectKind;
  REQUIRE(f.apply(Batch()
                      .create(K::Service, "svc1", service("svc1", "web"))
                      .create(K::Node, "node1", node("node1", obj::NodeRole::Worker)),
                  1)
              .ok());

  Status s = f.apply(Batch()
                         .create(K::Task, "t1", task("t1", "svc1", 1, "node1"))
                         .update(K::Node, "node1", 1, node("node1", obj::NodeRole::Manager))
                         .update(K::Service, "svc1", 7, service("svc1", "web", 2)),
                     2);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().code == kConflict);
  CHECK(contains(s.error().message, "service 'web' (id svc1)"));
  CHECK(contains(s.error().message, "expected version 7"));
  // Nothing of the batch was written, indexes included.
  CHECK_FALSE(f.get(K::Task, "t1").has_value());
  CHECK(f.tasksOfService("svc1").empty());
  CHECK(f.nodesWithRole(obj::NodeRole::Manager).empty());
  CHECK(f.nodesWithRole(obj::NodeRole::Worker) == std::vector<std::string>{"node1"});
  CHECK(f.store->history().lastIndex() == 1);

  // One object twice in one batch is refused as well.
  Status twice = f.apply(Batch()
                             .update(K::Service, "svc1", 1, service("svc1", "web", 2))
                             .update(K::Service, "svc1", 1, service("svc1", "web", 3)),
                         3);
  CHECK(twice.error().code == kInvalid);
  CHECK(contains(twice.error().message, "twice"));
}

TEST_CASE("names are unique per kind, without case") {
  Fixture f;
  using K = obj::ObjectKind;
  REQUIRE(f.apply(Batch().create(K::Service, "svc1", service("svc1", "web")), 1).ok());

  Status taken = f.apply(Batch().create(K::Service, "svc2", service("svc2", "WEB")), 2);
  REQUIRE_FALSE(taken.ok());
  CHECK(taken.error().code == kConflict);
  CHECK(contains(taken.error().message, "'WEB' is taken by service svc1"));

  // Another kind may use the same name.
  REQUIRE(f.apply(Batch().create(K::Secret, "sec1", secret("sec1", "web", 10)), 3).ok());

  // Two creates of one name in a batch: the second one conflicts.
  Status both = f.apply(Batch()
                            .create(K::Service, "svc2", service("svc2", "api"))
                            .create(K::Service, "svc3", service("svc3", "Api")),
                        4);
  CHECK(both.error().code == kConflict);
  CHECK_FALSE(f.get(K::Service, "svc2").has_value());

  // Renaming frees the old name for the next change in the same batch.
  REQUIRE(f.apply(Batch()
                      .update(K::Service, "svc1", 1, service("svc1", "frontend"))
                      .create(K::Service, "svc2", service("svc2", "web")),
                  5)
              .ok());
  CHECK(objectAs<obj::Service>(*f.getByName(K::Service, "Frontend"))->id()->str() == "svc1");
  CHECK(objectAs<obj::Service>(*f.getByName(K::Service, "web"))->id()->str() == "svc2");

  // So does a delete.
  REQUIRE(f.apply(Batch()
                      .remove(K::Service, "svc2", 5)
                      .create(K::Service, "svc3", service("svc3", "web")),
                  6)
              .ok());
  CHECK(objectAs<obj::Service>(*f.getByName(K::Service, "web"))->id()->str() == "svc3");
  CHECK_FALSE(f.getByName(K::Service, "api").has_value());
}

TEST_CASE("task and node indexes follow updates and deletes") {
  Fixture f;
  using K = obj::ObjectKind;
  using R = obj::NodeRole;
  REQUIRE(f.apply(Batch()
                      .create(K::Node, "n1", node("n1", R::Manager))
                      .create(K::Node, "n2", node("n2", R::Worker))
                      .create(K::Node, "n3", node("n3", R::Worker))
                      .create(K::Service, "s1", service("s1", "web"))
                      .create(K::Service, "s2", service("s2", "db"))
                      .create(K::Task, "t1", task("t1", "s1", 1, "n2"))
                      .create(K::Task, "t2", task("t2", "s1", 2, "n3"))
                      .create(K::Task, "t3", task("t3", "s2", 1, "n2"))
                      .create(K::Task, "t4", task("t4", "s1", 1, "")),  // not assigned yet
                  1)
              .ok());
  CHECK(f.tasksOfService("s1") == std::vector<std::string>{"t1", "t2", "t4"});
  CHECK(f.tasksOfService("s2") == std::vector<std::string>{"t3"});
  CHECK(f.tasksOfNode("n2") == std::vector<std::string>{"t1", "t3"});
  CHECK(f.tasksOfNode("n3") == std::vector<std::string>{"t2"});
  CHECK(f.tasksOfSlot("s1", 1) == std::vector<std::string>{"t1", "t4"});
  CHECK(f.tasksOfSlot("s1", 2) == std::vector<std::string>{"t2"});
  CHECK(f.tasksOfSlot("s2", 2).empty());
  CHECK(f.nodesWithRole(R::Manager) == std::vector<std::string>{"n1"});
  CHECK(f.nodesWithRole(R::Worker) == std::vector<std::string>{"n2", "n3"});
  CHECK(f.count(K::Task) == 4);

  // The scheduler assigns t4, t1 moves slot and node, n3 is promoted, t3 is deleted.
  REQUIRE(f.apply(Batch()
                      .update(K::Task, "t4", 1, task("t4", "s1", 1, "n3", obj::TaskState::Assigned))
                      .update(K::Task, "t1", 1, task("t1", "s1", 3, "n1"))
                      .update(K::Node, "n3", 1, node("n3", R::Manager))
                      .remove(K::Task, "t3", 1),
                  2)
              .ok());
  CHECK(f.tasksOfService("s1") == std::vector<std::string>{"t1", "t2", "t4"});
  CHECK(f.tasksOfService("s2").empty());
  CHECK(f.tasksOfNode("n1") == std::vector<std::string>{"t1"});
  CHECK(f.tasksOfNode("n2").empty());
  CHECK(f.tasksOfNode("n3") == std::vector<std::string>{"t2", "t4"});
  CHECK(f.tasksOfSlot("s1", 1) == std::vector<std::string>{"t4"});
  CHECK(f.tasksOfSlot("s1", 3) == std::vector<std::string>{"t1"});
  CHECK(f.nodesWithRole(R::Manager) == std::vector<std::string>{"n1", "n3"});
  CHECK(f.nodesWithRole(R::Worker) == std::vector<std::string>{"n2"});
  auto t4 = f.get(K::Task, "t4");
  REQUIRE(t4.has_value());
  CHECK(objectAs<obj::Task>(*t4)->status()->state() == obj::TaskState::Assigned);

  // A service id that is a prefix of another does not leak into its index.
  REQUIRE(f.apply(Batch()
                      .create(K::Service, "s", service("s", "short"))
                      .create(K::Task, "t5", task("t5", "s", 1, "n1")),
                  3)
              .ok());
  CHECK(f.tasksOfService("s") == std::vector<std::string>{"t5"});
  CHECK(f.tasksOfNode("n") == std::vector<std::string>{});
}

TEST_CASE("limits: 200 changes and 1.5 MiB per transaction") {
  Fixture f;
  using K = obj::ObjectKind;
  Batch most;
  for (int i = 0; i < 200; ++i) {
    std::string id = "t" + std::to_string(i);
    most.create(K::Task, id, task(id, "s1", static_cast<std::uint64_t>(i), "n1"));
  }
  REQUIRE(f.apply(most, 1).ok());
  CHECK(f.count(K::Task) == 200);

  Batch tooMany;
  for (int i = 0; i < 201; ++i) {
    std::string id = "u" + std::to_string(i);
    tooMany.create(K::Task, id, task(id, "s1", 1, "n1"));
  }
  Status s = f.apply(tooMany, 2);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().code == kTooLarge);
  CHECK(contains(s.error().message, "201 changes"));
  CHECK(f.count(K::Task) == 200);

  // Two secrets of 800 KiB: over 1.5 MiB together, fine one by one.
  Batch big;
  big.create(K::Secret, "a", secret("a", "a", 800 * 1024));
  big.create(K::Secret, "b", secret("b", "b", 800 * 1024));
  s = f.apply(big, 3);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().code == kTooLarge);
  CHECK(f.count(K::Secret) == 0);
  REQUIRE(f.apply(Batch().create(K::Secret, "a", secret("a", "a", 800 * 1024)), 4).ok());
  REQUIRE(f.apply(Batch().create(K::Secret, "b", secret("b", "b", 800 * 1024)), 5).ok());
  CHECK(f.count(K::Secret) == 2);
}

TEST_CASE("bad buffers are refused before anything is written") {
  Fixture f;
  using K = obj::ObjectKind;
  Status s = f.applyBytes("definitely not a flatbuffer", 1);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().code == kInvalid);
  CHECK(contains(s.error().message, "verifier"));

  // A valid batch whose second object is garbage: the first is not written either.
  std::string garbage(64, '\x7f');
  s = f.apply(Batch()
                  .create(K::Service, "s1", service("s1", "web"))
                  .create(K::Service, "s2", garbage),
              2);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().code == kInvalid);
  CHECK(contains(s.error().message, "change 1 (create service s2)"));
  CHECK_FALSE(f.get(K::Service, "s1").has_value());

  // An object of another kind than the change says is caught by its id or its verifier.
  s = f.apply(Batch().create(K::Service, "s1", service("s9", "web")), 3);
  CHECK(s.error().code == kInvalid);
  CHECK(contains(s.error().message, "'s9'"));

  s = f.apply(Batch().create(K::Service, "bad id!", service("bad id!", "web")), 4);
  CHECK(s.error().code == kInvalid);

  // Objects must carry a Meta for the store to fill.
  flatbuffers::FlatBufferBuilder b;
  b.Finish(obj::CreateServiceDirect(b, "s1"));
  s = f.apply(Batch().create(K::Service, "s1", finish(b)), 5);
  CHECK(s.error().code == kInvalid);
  CHECK(contains(s.error().message, "no meta"));

  s = f.apply(Batch().create(static_cast<obj::ObjectKind>(42), "x", service("x", "x")), 6);
  CHECK(s.error().code == kInvalid);
  CHECK(f.count(K::Service) == 0);
}

TEST_CASE("watch: events after an index, filters, and resync when too old") {
  Fixture f;
  f.options.historyEvents = 6;
  f.open();
  using K = obj::ObjectKind;
  std::vector<std::uint64_t> published;
  f.store->setListener([&](std::uint64_t index) { published.push_back(index); });

  REQUIRE(f.apply(Batch()
                      .create(K::Service, "s1", service("s1", "web"))
                      .create(K::Task, "t1", task("t1", "s1", 1, "n1")),
                  10)
              .ok());
  REQUIRE(f.apply(Batch().create(K::Task, "t2", task("t2", "s2", 1, "n2")), 11).ok());
  // A rejected batch publishes nothing.
  REQUIRE_FALSE(f.apply(Batch().remove(K::Task, "t1", 99), 12).ok());
  REQUIRE(f.apply(Batch().remove(K::Task, "t1", 10), 13).ok());
  CHECK(published == std::vector<std::uint64_t>{10, 11, 13});

  WatchBatch all = f.store->changesSince(0, {});
  CHECK_FALSE(all.resyncNeeded);
  CHECK(all.lastIndex == 13);
  REQUIRE(all.events.size() == 4);
  CHECK(all.events[0]->kind == K::Service);
  CHECK(all.events[0]->index == 10);
  CHECK(all.events[0]->version == 10);
  CHECK(metaOf(all.events[0]->object, K::Service).version() == 10);
  CHECK(all.events[3]->operation == obj::Operation::Delete);
  CHECK(all.events[3]->id == "t1");
  CHECK(all.events[3]->version == 10);  // the version that was deleted
  CHECK(objectAs<obj::Task>(all.events[3]->object)->service_id()->str() == "s1");

  WatchBatch after = f.store->changesSince(10, {});
  REQUIRE(after.events.size() == 2);
  CHECK(after.events[0]->id == "t2");

  WatchFilter tasksOfS1;
  tasksOfS1.kinds = {K::Task};
  tasksOfS1.serviceId = "s1";
  WatchBatch s1 = f.store->changesSince(0, tasksOfS1);
  REQUIRE(s1.events.size() == 2);
  CHECK(s1.events[0]->id == "t1");
  CHECK(s1.events[1]->operation == obj::Operation::Delete);

  WatchFilter onN2;
  onN2.nodeId = "n2";
  WatchBatch n2 = f.store->changesSince(0, onN2);
  REQUIRE(n2.events.size() == 2);  // the service passes, t1 (on n1) does not
  CHECK(n2.events[0]->kind == K::Service);
  CHECK(n2.events[1]->id == "t2");

  // A limit cuts between transactions, never inside one, and lastIndex says where.
  WatchBatch first = f.store->changesSince(0, {}, 1);
  CHECK(first.events.size() == 2);
  CHECK(first.lastIndex == 10);
  WatchBatch rest = f.store->changesSince(first.lastIndex, {}, 1);
  CHECK(rest.events.size() == 1);
  CHECK(rest.lastIndex == 11);

  // Nothing new: an empty batch, no resync.
  WatchBatch none = f.store->changesSince(13, {});
  CHECK_FALSE(none.resyncNeeded);
  CHECK(none.events.empty());
  CHECK(none.lastIndex == 13);

  // Push the first transactions out of the bounded history.
  Batch more;
  for (int i = 0; i < 4; ++i) {
    std::string id = "x" + std::to_string(i);
    more.create(K::Task, id, task(id, "s1", 1, "n1"));
  }
  REQUIRE(f.apply(more, 14).ok());
  CHECK(f.store->history().size() <= 6);
  CHECK(f.store->changesSince(0, {}).resyncNeeded);
  CHECK(f.store->changesSince(9, {}).resyncNeeded);
  WatchBatch recent = f.store->changesSince(13, {});
  CHECK_FALSE(recent.resyncNeeded);
  CHECK(recent.events.size() == 4);
}

TEST_CASE("everything survives a reopen; the history starts afresh") {
  Fixture f;
  using K = obj::ObjectKind;
  REQUIRE(f.apply(Batch()
                      .create(K::Node, "n1", node("n1", obj::NodeRole::Manager))
                      .create(K::Service, "s1", service("s1", "web"))
                      .create(K::Task, "t1", task("t1", "s1", 1, "n1")),
                  20, 555)
              .ok());
  f.open();
  auto web = f.getByName(K::Service, "web");
  REQUIRE(web.has_value());
  CHECK(metaOf(*web, K::Service).version() == 20);
  CHECK(metaOf(*web, K::Service).created_at() == 555);
  CHECK(f.tasksOfService("s1") == std::vector<std::string>{"t1"});
  CHECK(f.tasksOfNode("n1") == std::vector<std::string>{"t1"});
  CHECK(f.tasksOfSlot("s1", 1) == std::vector<std::string>{"t1"});
  CHECK(f.nodesWithRole(obj::NodeRole::Manager) == std::vector<std::string>{"n1"});
  {
    auto txn = f.env->read();
    REQUIRE(txn.ok());
    CHECK(*f.store->lastChangeIndex(*txn) == 20);
  }

  // The events before the restart are gone: an older subscriber resyncs, a current one not.
  CHECK(f.store->changesSince(19, {}).resyncNeeded);
  CHECK_FALSE(f.store->changesSince(20, {}).resyncNeeded);

  // Writing goes on, and the double-apply guard survived too.
  CHECK(f.apply(Batch().update(K::Service, "s1", 20, service("s1", "web", 2)), 20).error().code ==
        kInvalid);
  REQUIRE(f.apply(Batch().update(K::Service, "s1", 20, service("s1", "web", 2)), 21).ok());
  WatchBatch w = f.store->changesSince(20, {});
  REQUIRE(w.events.size() == 1);
  CHECK(w.events[0]->operation == obj::Operation::Update);
}

TEST_CASE("a batch retried after map growth is published once") {
  Fixture f;
  lmdb::Options small;
  small.mapSize = 1 << 20;
  f.open(small);
  using K = obj::ObjectKind;
  int published = 0;
  f.store->setListener([&](std::uint64_t) { ++published; });
  // Close to 1.5 MiB of secrets: more than the 1 MiB map holds.
  Batch big;
  for (int i = 0; i < 3; ++i) {
    std::string id = "sec" + std::to_string(i);
    big.create(K::Secret, id, secret(id, id, 500 * 1024));
  }
  REQUIRE(f.apply(big, 1).ok());
  auto info = f.env->info();
  REQUIRE(info.ok());
  CHECK(info->mapGrowths > 0);
  CHECK(published == 1);
  CHECK(f.store->changesSince(0, {}).events.size() == 3);
  CHECK(f.count(K::Secret) == 3);
}
