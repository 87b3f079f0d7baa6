// raftd's snapshot copies (services/raftd/snapshot.h): the state-machine tables written into a
// new environment, and a snapshot's tables copied over a member's own, must come out exactly
// as the source holds them — plain, DUPSORT and INTEGERKEY tables, values spilling onto
// overflow pages — and the Raft tables must stay out.
#include "services/raftd/snapshot.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/lmdb.h"
#include "tests/support/tempdir.h"

using namespace shoal;
using namespace shoal::raftd;
using shoal::testing::TempDir;

namespace {

// A table's whole content, duplicates included, in the table's order.
using Content = std::vector<std::pair<std::string, std::string>>;

Content contentOf(lmdb::Environment& env, const std::string& name, unsigned flags) {
  auto table = env.table(name, flags);
  REQUIRE(table.ok());
  auto txn = env.read();
  REQUIRE(txn.ok());
  Content out;
  REQUIRE(txn->scanPrefix(*table, "", [&](std::string_view k, std::string_view v) {
    out.emplace_back(std::string(k), std::string(v));
    return true;
  }).ok());
  return out;
}

std::string u64Native(uint64_t v) {
  std::string s(sizeof v, '\0');
  std::memcpy(s.data(), &v, sizeof v);
  return s;
}

struct Source {
  std::unique_ptr<lmdb::Environment> env;
  std::map<std::string, unsigned> tables;  // the state-machine tables and their flags
};

// Writes, in random order: "objects" (plain; some values larger than a page), "by-owner"
// (DUPSORT: up to 20 values per key), "counters" (INTEGERKEY), and "raft.log", which is not
// state-machine data.
Source makeSource(const std::string& dir, uint32_t seed) {
  lmdb::Options o;
  o.maxTables = 16;
  auto env = lmdb::Environment::open(dir, o);
  REQUIRE(env.ok());
  Source s{std::move(env).value(), {{"objects", 0}, {"by-owner", MDB_DUPSORT}, {"counters", MDB_INTEGERKEY}}};
  auto objects = s.env->table("objects");
  auto owners = s.env->table("by-owner", MDB_DUPSORT);
  auto counters = s.env->table("counters", MDB_INTEGERKEY);
  auto log = s.env->table("raft.log");
  REQUIRE((objects.ok() && owners.ok() && counters.ok() && log.ok()));
  std::mt19937 rng(seed);
  std::vector<int> order(3000);
  for (int i = 0; i < 3000; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  REQUIRE(s.env->update([&](lmdb::WriteTxn& txn) -> Status {
    for (int i : order) {
      size_t size = i % 97 == 0 ? 9000 : 50 + rng() % 400;  // a few need overflow pages
      if (auto st = txn.put(*objects, "obj-" + std::to_string(i), std::string(size, char('a' + i % 26))); !st) return st;
      for (uint32_t d = 0; d < 1 + rng() % 20; ++d)
        if (auto st = txn.put(*owners, "owner-" + std::to_string(i % 150), "task-" + std::to_string(rng() % 100000));
            !st)
          return st;
      if (auto st = txn.put(*counters, u64Native(uint64_t{1} << (i % 60) | static_cast<uint64_t>(i)), std::to_string(i));
          !st)
        return st;
      if (auto st = txn.put(*log, u64Native(static_cast<uint64_t>(i)), "entry"); !st) return st;
    }
    return {};
  }).ok());
  return s;
}

std::vector<std::pair<StateTable, lmdb::Table>> opened(lmdb::Environment& env, const std::vector<StateTable>& names) {
  std::vector<std::pair<StateTable, lmdb::Table>> out;
  for (auto& t : names) {
    auto table = env.table(t.name, t.flags);
    REQUIRE(table.ok());
    out.emplace_back(t, *table);
  }
  return out;
}

}  // namespace

TEST_CASE("a state copy holds exactly the source's state-machine tables, and not the Raft ones") {
  TempDir dir;
  Source src = makeSource(dir.path() + "/src", 7);

  std::vector<StateTable> names;
  {
    auto txn = src.env->read();
    REQUIRE(txn.ok());
    auto listed = stateTables(*txn);
    REQUIRE(listed.ok());
    names = *listed;
  }
  std::set<std::string> got;
  for (auto& t : names) {
    got.insert(t.name);
    CHECK(t.flags == src.tables.at(t.name));
  }
  CHECK(got == std::set<std::string>{"objects", "by-owner", "counters"});

  auto tables = opened(*src.env, names);
  {
    auto txn = src.env->read();
    REQUIRE(txn.ok());
    auto st = writeStateCopy(*txn, tables, dir.path() + "/copy");
    REQUIRE_MESSAGE(st.ok(), (st ? "" : st.error().message));
  }
  lmdb::Options o;
  o.maxTables = 16;
  auto copy = lmdb::Environment::open(dir.path() + "/copy", o);
  REQUIRE(copy.ok());
  for (auto& [name, flags] : src.tables) {
    auto want = contentOf(*src.env, name, flags);
    CHECK(want.size() > 100);
    CHECK_MESSAGE(contentOf(**copy, name, flags) == want, name);
  }
  {
    auto txn = (*copy)->read();
    REQUIRE(txn.ok());
    auto listed = stateTables(*txn);
    REQUIRE(listed.ok());
    CHECK(listed->size() == 3);  // no raft.log
  }
}

TEST_CASE("copying a snapshot's tables over a member's own replaces them entirely") {
  TempDir dir;
  Source snap = makeSource(dir.path() + "/snap", 11);
  // The member's own state: other content in the same tables, which must all be gone.
  Source member = makeSource(dir.path() + "/member", 12);
  auto memberLog = contentOf(*member.env, "raft.log", 0);

  std::vector<std::pair<lmdb::Table, lmdb::Table>> pairs;
  for (auto& [name, flags] : snap.tables) {
    auto from = snap.env->table(name, flags);
    auto to = member.env->table(name, flags);
    REQUIRE((from.ok() && to.ok()));
    pairs.emplace_back(*from, *to);
  }
  auto src = snap.env->read();
  REQUIRE(src.ok());
  auto st = member.env->update([&](lmdb::WriteTxn& txn) { return copyTablesInto(txn, *src, pairs); });
  REQUIRE_MESSAGE(st.ok(), (st ? "" : st.error().message));
  for (auto& [name, flags] : snap.tables)
    CHECK_MESSAGE(contentOf(*member.env, name, flags) == contentOf(*snap.env, name, flags), name);
  CHECK(contentOf(*member.env, "raft.log", 0) == memberLog);  // not a state-machine table
}
