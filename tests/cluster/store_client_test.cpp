// common/store_client against raftd processes on loopback: calls and their typed errors, a
// watch in order, resync after the history moved on (and after raftd restarted), writes that
// go on across a leader's SIGKILL without a silent loss, and the Leadership stream following
// a new leader (DESIGN.md §5, docs/raftd.md "Errors a caller can act on").
#include <doctest/doctest.h>

#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "common/ids.h"
#include "common/store_client.h"
#include "tests/support/raft_members.h"

namespace shoal::store {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using objects::ObjectKind;
using objects::Operation;

// --- raftd processes (tests/support/raft_members.h) -----------------------------------------

using Member = shoal::testing::RaftMember;
using Cluster = shoal::testing::RaftCluster;
using shoal::testing::spin;
using shoal::testing::startThree;
using shoal::testing::waitFor;

Member& startOne(Cluster& c) {
  auto& a = c.add();
  a.start();
  a.init();
  REQUIRE_MESSAGE(waitFor([&] { return a.leads(); }, 10s), c.logs());
  return a;
}

// --- helpers ---------------------------------------------------------------------------------

ChangeSpec create(const std::string& id, const std::string& data = "x") {
  return {ObjectKind::Config, Operation::Create, id, 0, configObject(id, "c-" + id, data)};
}

std::string configData(const std::string& object) {
  auto* c = flatbuffers::GetRoot<objects::Config>(object.data());
  return std::string(reinterpret_cast<const char*>(c->spec()->data()->data()), c->spec()->data()->size());
}

std::string configId(const std::string& object) { return flatbuffers::GetRoot<objects::Config>(object.data())->id()->str(); }

// The Configs a view holds, id → version, kept by a snapshot and then events.
struct View {
  std::map<std::string, uint64_t> configs;
  int snapshots = 0;
  uint64_t last = 0;
  bool eventsOutOfOrder = false;

  void reset(const Snapshot& s) {
    ++snapshots;
    configs.clear();
    for (auto& k : s.kinds)
      for (auto& o : k.objects)
        configs[configId(o)] = flatbuffers::GetRoot<objects::Config>(o.data())->meta()->version();
  }
  void apply(uint64_t lastIndex, const std::vector<Change>& events) {
    for (auto& e : events) {
      if (e.index <= last) eventsOutOfOrder = true;
      if (e.operation == Operation::Delete)
        configs.erase(e.id);
      else
        configs[e.id] = e.version;
    }
    last = std::max(last, lastIndex);
  }
};

std::map<std::string, uint64_t> configsIn(SyncClient& c) {
  auto all = c.list(ObjectKind::Config);
  REQUIRE_MESSAGE(all.ok(), (all ? "" : all.error().message));
  std::map<std::string, uint64_t> out;
  for (auto& o : all->objects) out[configId(o)] = flatbuffers::GetRoot<objects::Config>(o.data())->meta()->version();
  return out;
}

// --- tests -----------------------------------------------------------------------------------

TEST_CASE("txn, get and list, and the errors a caller acts on, as they are") {
  Cluster c;
  auto& m = startOne(c);
  SyncClient sc;
  REQUIRE(sc.connect(m.socket()));

  std::string id = newId();
  auto created = sc.txn({create(id, "one")});
  REQUIRE_MESSAGE(created.ok(), (created ? "" : created.error().message));
  CHECK(*created > 0);

  auto got = sc.get(ObjectKind::Config, id);
  REQUIRE(got.ok());
  CHECK(got->index >= *created);
  CHECK(configData(got->data) == "one");
  auto byName = sc.getByName(ObjectKind::Config, "c-" + id, ReadOptions{.local = true});
  REQUIRE(byName.ok());
  CHECK(configId(byName->data) == id);

  auto listed = sc.list(ObjectKind::Config);
  REQUIRE(listed.ok());
  CHECK(listed->index >= *created);
  REQUIRE(listed->objects.size() == 1);
  CHECK(configId(listed->objects[0]) == id);

  // An update from the version it read; a second one from the same (now stale) version
  // conflicts and is not retried.
  auto updated = sc.txn({{ObjectKind::Config, Operation::Update, id, *created, configObject(id, "c-" + id, "two", *created)}});
  REQUIRE(updated.ok());
  CHECK(*updated > *created);
  auto stale = sc.txn({{ObjectKind::Config, Operation::Update, id, *created, configObject(id, "c-" + id, "three", *created)}});
  REQUIRE_FALSE(stale.ok());
  CHECK(codeOf(stale.error()) == wire::ErrorCode::Conflict);
  CHECK(configData(sc.get(ObjectKind::Config, id)->data) == "two");

  auto missing = sc.get(ObjectKind::Config, "nosuchid");
  REQUIRE_FALSE(missing.ok());
  CHECK(codeOf(missing.error()) == wire::ErrorCode::NotFound);

  // Too many changes is not "overloaded": returned as it is, long before the deadline.
  std::vector<ChangeSpec> many;
  for (int i = 0; i < 201; ++i) many.push_back(create(newId()));
  auto t0 = Clock::now();
  auto tooMany = sc.txn(many, WriteOptions{.timeout = 30s});
  REQUIRE_FALSE(tooMany.ok());
  CHECK(codeOf(tooMany.error()) == wire::ErrorCode::ResourceExhausted);
  CHECK_FALSE(retryable(tooMany.error()));
  CHECK(Clock::now() - t0 < 20s);

  // raftd not there: a read retries until its deadline and then says so.
  SyncClient nowhere(Backoff{10ms, 100ms});
  REQUIRE(nowhere.connect(endpointIn(std::string(c.dir / "nowhere"))));
  auto none = nowhere.get(ObjectKind::Config, id, ReadOptions{.timeout = 300ms});
  REQUIRE_FALSE(none.ok());
  CHECK(codeOf(none.error()) == wire::ErrorCode::DeadlineExceeded);
  // A write that went out and got no answer may have been applied.
  auto unanswered = nowhere.txn({create(newId())}, WriteOptions{.timeout = 300ms});
  REQUIRE_FALSE(unanswered.ok());
  CHECK(codeOf(unanswered.error()) == wire::ErrorCode::Indeterminate);
}

TEST_CASE("a watch sees creates, updates and deletes in order") {
  Cluster c;
  auto& m = startOne(c);
  SyncClient sc;
  REQUIRE(sc.connect(m.socket()));
  auto before = sc.list(ObjectKind::Config);
  REQUIRE(before.ok());

  std::vector<Change> seen;
  bool resynced = false;
  sc.client().watch({ObjectKind::Config}, before->index, {},
                    [&](uint64_t, std::vector<Change> events) {
                      for (auto& e : events) seen.push_back(std::move(e));
                    },
                    [&](Error) { resynced = true; });

  std::string a = newId(), b = newId();
  auto ca = sc.txn({create(a, "1")});
  REQUIRE(ca.ok());
  auto ua = sc.txn({{ObjectKind::Config, Operation::Update, a, *ca, configObject(a, "c-" + a, "2", *ca)}});
  REQUIRE(ua.ok());
  auto cb = sc.txn({create(b)});
  REQUIRE(cb.ok());
  auto da = sc.txn({{ObjectKind::Config, Operation::Delete, a, *ua, ""}});
  REQUIRE(da.ok());

  REQUIRE(spin(sc.loop(), [&] { return seen.size() >= 4; }, 10s));
  CHECK_FALSE(resynced);
  REQUIRE(seen.size() == 4);
  CHECK((seen[0].operation == Operation::Create && seen[0].id == a && seen[0].index == *ca));
  CHECK((seen[1].operation == Operation::Update && seen[1].id == a && seen[1].index == *ua));
  CHECK(configData(seen[1].object) == "2");
  CHECK((seen[2].operation == Operation::Create && seen[2].id == b && seen[2].index == *cb));
  CHECK((seen[3].operation == Operation::Delete && seen[3].id == a && seen[3].index == *da));
  CHECK(seen[3].version == *ua);
}

TEST_CASE("a watch from before the history resyncs; the helper recovers with a snapshot, then events") {
  Cluster c;
  auto& m = startOne(c);
  SyncClient sc;
  REQUIRE(sc.connect(m.socket()));
  auto start = sc.list(ObjectKind::Config);
  REQUIRE(start.ok());
  // raftd keeps the last 10,000 changes (services/raftd/store/store.h): write more.
  for (int t = 0; t < 51; ++t) {
    std::vector<ChangeSpec> batch;
    for (int i = 0; i < 200; ++i) batch.push_back(create(newId()));
    auto r = sc.txn(batch, WriteOptions{.timeout = 30s});
    REQUIRE_MESSAGE(r.ok(), (r ? "" : r.error().message));
  }

  // The plain watch: onResync, and no event.
  std::optional<Error> why;
  size_t events = 0;
  sc.client().watch({ObjectKind::Config}, start->index, {},
                    [&](uint64_t, std::vector<Change> e) { events += e.size(); },
                    [&](Error e) { why = e; });
  REQUIRE(spin(sc.loop(), [&] { return why.has_value(); }, 10s));
  CHECK(events == 0);
  CHECK(why->message.find("resync") != std::string::npos);

  // The helper, from the same old index: a full snapshot first, then what changes after.
  View view;
  auto id = sc.client().watchWithResync({ObjectKind::Config}, {}, [&](Snapshot s) { view.reset(s); },
                                        [&](uint64_t last, std::vector<Change> e) { view.apply(last, e); },
                                        start->index);
  REQUIRE(spin(sc.loop(), [&] { return view.snapshots == 1; }, 20s));
  CHECK(view.configs.size() == 10200);
  std::string x = newId();
  auto cx = sc.txn({create(x)});
  REQUIRE(cx.ok());
  auto dx = sc.txn({{ObjectKind::Config, Operation::Delete, x, *cx, ""}});
  REQUIRE(dx.ok());
  std::string y = newId();
  auto cy = sc.txn({create(y)});
  REQUIRE(cy.ok());
  REQUIRE(spin(sc.loop(), [&] { return view.last >= *cy; }, 10s));
  CHECK(view.snapshots == 1);
  CHECK_FALSE(view.eventsOutOfOrder);
  CHECK(view.configs == configsIn(sc));

  // raftd restarts: the stream is gone with it, so the helper takes a new snapshot and goes on;
  // the leadership stream says it knows nothing meanwhile, then the leader again.
  std::vector<Leadership> leads;
  sc.client().leadership([&](const Leadership& l) { leads.push_back(l); });
  REQUIRE(spin(sc.loop(), [&] { return !leads.empty(); }, 10s));
  CHECK((leads.back().known && leads.back().isLeader));
  m.kill9();
  m.start();
  REQUIRE(spin(sc.loop(), [&] { return view.snapshots == 2; }, 30s));
  std::string z = newId();
  auto cz = sc.txn({create(z)}, WriteOptions{.timeout = 20s});
  REQUIRE_MESSAGE(cz.ok(), (cz ? "" : cz.error().message));
  REQUIRE(spin(sc.loop(), [&] { return view.last >= *cz; }, 10s));
  CHECK(view.configs.count(z) == 1);
  CHECK(view.configs == configsIn(sc));
  REQUIRE(spin(sc.loop(), [&] { return leads.back().known && leads.back().isLeader; }, 10s));
  bool sawUnknown = false;
  for (auto& l : leads) sawUnknown |= !l.known;
  CHECK(sawUnknown);

  sc.client().cancel(id);
  auto w = sc.txn({create(newId())});
  REQUIRE(w.ok());
  auto lastBefore = view.last;
  spin(sc.loop(), [] { return false; }, 300ms);
  CHECK(view.last == lastBefore);  // a cancelled watch delivers nothing more
}

TEST_CASE("writes through a follower across the leader's SIGKILL: success, Indeterminate or not done, never lost") {
  Cluster c;
  int lead = startThree(c);
  int via = (lead + 1) % 3;
  zmq::context_t ctx{1};
  Loop loop;
  Client client(loop, ctx);
  REQUIRE(client.connect(c.members[via].socket()));

  std::set<std::string> acked, indeterminate, notDone;
  std::vector<std::string> other;
  int outstanding = 0;
  uint64_t calls = 0;
  size_t ackedAfterKill = 0;
  bool killed = false;
  auto send = [&] {
    std::string id = newId();
    ++outstanding;
    ++calls;
    client.txn({create(id)}, WriteOptions{.timeout = 4s}, [&, id](Result<uint64_t> r) {
      --outstanding;
      if (r) {
        acked.insert(id);
        ackedAfterKill += killed;
      } else if (codeOf(r.error()) == wire::ErrorCode::Indeterminate) {
        indeterminate.insert(id);
      } else if (codeOf(r.error()) == wire::ErrorCode::DeadlineExceeded) {
        notDone.insert(id);
      } else {
        other.push_back(r.error().message);
      }
    });
  };
  auto run = [&](std::function<bool()> done, std::chrono::seconds limit) {
    auto end = Clock::now() + limit;
    while (!done() && Clock::now() < end) {
      while (outstanding < 8) send();
      loop.runOnce(10ms);
    }
  };
  run([&] { return acked.size() >= 200; }, 30s);
  REQUIRE(acked.size() >= 200);

  c.members[lead].kill9();
  killed = true;
  run([&] { return ackedAfterKill >= 200; }, 30s);
  REQUIRE(spin(loop, [&] { return outstanding == 0; }, 10s));
  // Requests sent beyond one per call are retries of answers that said nothing was done.
  uint64_t retries = client.bus().stats().sent - calls;
  MESSAGE(acked.size() << " acknowledged, " << indeterminate.size() << " indeterminate, " << notDone.size()
                       << " not done, " << retries << " retries");
  CHECK(retries > 0);  // the election's NotLeader/Unavailable answers were retried, not returned
  CHECK_MESSAGE(ackedAfterKill >= 200, c.logs());
  CHECK_MESSAGE(other.empty(), (other.empty() ? "" : other.front()));

  SyncClient reader;
  REQUIRE(reader.connect(c.members[via].socket()));
  auto stored = configsIn(reader);
  size_t lost = 0, doneAnyway = 0;
  for (auto& id : acked) lost += !stored.count(id);
  for (auto& id : notDone) doneAnyway += stored.count(id);
  CHECK(lost == 0);
  CHECK(doneAnyway == 0);  // "not done" means nothing was proposed
}

TEST_CASE("the leadership stream reports the new leader after the leader's SIGKILL") {
  Cluster c;
  int lead = startThree(c);
  int via = (lead + 1) % 3;
  uint64_t oldLeader = c.members[lead].nodeId();
  REQUIRE(oldLeader != 0);
  zmq::context_t ctx{1};
  Loop loop;
  Client follower(loop, ctx), onLeader(loop, ctx);
  REQUIRE(follower.connect(c.members[via].socket()));
  REQUIRE(onLeader.connect(c.members[lead].socket()));
  std::vector<Leadership> seen, seenOnLeader;
  follower.leadership([&](const Leadership& l) { seen.push_back(l); });
  onLeader.leadership([&](const Leadership& l) { seenOnLeader.push_back(l); });
  REQUIRE(spin(loop, [&] { return !seen.empty() && !seenOnLeader.empty(); }, 10s));
  CHECK((seen.back().known && !seen.back().isLeader && seen.back().leaderId == oldLeader));
  CHECK((seenOnLeader.back().known && seenOnLeader.back().isLeader));

  c.members[lead].kill9();
  REQUIRE_MESSAGE(spin(loop, [&] { return seen.back().leaderId != 0 && seen.back().leaderId != oldLeader; }, 20s),
                  c.logs());
  int newLead = -1;
  REQUIRE(waitFor([&] { return (newLead = c.leader()) >= 0; }, 10s));
  CHECK(seen.back().leaderId == c.members[newLead].nodeId());
  CHECK(seen.back().term > seen.front().term);
  // The client of the dead member says it does not know any more.
  REQUIRE(spin(loop, [&] { return !seenOnLeader.back().known; }, 10s));
}

}  // namespace
}  // namespace shoal::store
