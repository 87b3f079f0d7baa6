// Tests of raftd's Raft storage on LMDB (services/raftd/raft_storage.h): it must answer exactly
// like the core's MemoryStorage, survive a restart, keep its in-memory view in step with what
// committed, and carry a real Raft core through bootstrap, restart and snapshot transfer.

#include "services/raftd/raft_storage.h"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "common/lmdb.h"
#include "services/raftd/core/raft.h"
#include "services/raftd/core/storage.h"
#include "services/raftd/core/types.h"
#include "tests/support/tempdir.h"

using namespace shoal;
using raft::ConfState;
using raft::Entry;
using raft::EntryType;
using raft::HardState;
using raft::Index;
using raft::MemoryStorage;
using raft::SnapshotMeta;
using raft::Term;
using raftd::RaftStorage;

namespace {

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void writeFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

std::vector<std::string> listDir(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& f : std::filesystem::directory_iterator(dir))
    out.push_back(f.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<Entry> ents(Index from, Index to, Term term, const std::string& tag = "e") {
  std::vector<Entry> out;
  for (Index i = from; i <= to; ++i)
    out.push_back(Entry{term, i, EntryType::Normal, tag + std::to_string(i)});
  return out;
}

// One server's state directory: an environment (shared, as in raftd, with other tables) and
// the Raft storage over it, reopened at will as after a restart.
struct Node {
  testing::TempDir dir;
  std::unique_ptr<lmdb::Environment> env;
  std::unique_ptr<RaftStorage> storage;

  Node() { open(); }

  std::string envDir() const { return dir / "state"; }
  std::string snapDir() const { return dir / "snapshots"; }

  Status tryOpen() {
    auto e = lmdb::Environment::open(envDir());
    REQUIRE_MESSAGE(e.ok(), (e.ok() ? "" : e.error().message));
    env = std::move(*e);
    auto s = RaftStorage::open(*env, snapDir());
    if (!s)
      return s.error();
    storage = std::move(*s);
    return {};
  }
  void open() {
    Status st = tryOpen();
    REQUIRE_MESSAGE(st.ok(), (st.ok() ? "" : st.error().message));
  }
  void close() {
    storage.reset();
    env.reset();
  }
  void reopen() {
    close();
    open();
  }
  RaftStorage& s() { return *storage; }

  Status write(const std::function<Status(lmdb::WriteTxn&)>& fn) { return env->update(fn); }
  Status append(const std::vector<Entry>& e) {
    return write([&](lmdb::WriteTxn& t) { return storage->append(t, e); });
  }
  Status setHardState(const HardState& hs) {
    return write([&](lmdb::WriteTxn& t) { return storage->setHardState(t, hs); });
  }
  Status setApplied(Index i) {
    return write([&](lmdb::WriteTxn& t) { return storage->setApplied(t, i); });
  }
  Status compact(Index i) {
    return write([&](lmdb::WriteTxn& t) { return storage->compact(t, i); });
  }
  // A snapshot file as the shell hands it over (here: any bytes), made under the snapshot
  // directory so that recording it is a rename.
  Status snapshot(Index index, const ConfState& conf, const std::string& data) {
    auto t = storage->term(index);
    std::string path = snapDir() + "/tmp-" + std::to_string(index);
    writeFile(path, data);
    Status st = storage->recordSnapshot(index, t ? *t : 0, conf, path);
    ::unlink(path.c_str());
    return st;
  }
  // Receives a snapshot in chunks of chunkBytes and installs it, as the shell does.
  Status receive(const SnapshotMeta& meta, const std::string& data, size_t chunkBytes) {
    uint64_t off = 0;
    do {
      raft::SnapshotChunk c{meta, off, data.substr(off, chunkBytes), false};
      c.done = off + c.data.size() >= data.size();
      if (Status st = storage->writeChunk(c); !st)
        return st;
      off += c.data.size();
    } while (off < data.size());
    auto path = storage->completeIncoming(meta);
    if (!path)
      return path.error();
    if (meta.size > 0 && readFile(*path) != data)
      return Error{"completed snapshot differs from what was sent"};
    return write([&](lmdb::WriteTxn& t) { return storage->installSnapshot(t, meta); });
  }
};

std::string codeOf(const Status& s) { return s ? "ok" : "error " + std::to_string(s.error().code); }
template <class T>
std::string codeOf(const Result<T>& r) {
  return r ? "ok" : "error " + std::to_string(r.error().code);
}

// Every read of the Storage interface gives the same answer from both.
void compareReads(const MemoryStorage& mem, const RaftStorage& rs, std::mt19937_64& rng) {
  REQUIRE(rs.firstIndex() == mem.firstIndex());
  REQUIRE(rs.lastIndex() == mem.lastIndex());
  // MemoryStorage keeps no checksum: RaftStorage adds one to the snapshots it records.
  SnapshotMeta held = rs.snapshotMeta();
  held.checksum = mem.snapshotMeta().checksum;
  REQUIRE(held == mem.snapshotMeta());
  auto mi = mem.initialState();
  auto ri = rs.initialState();
  REQUIRE(ri.ok());
  CHECK(ri->hardState == mi->hardState);
  CHECK(ri->confState == mi->confState);
  CHECK(rs.hardState() == mem.hardState());
  Index lo = mem.firstIndex() >= 2 ? mem.firstIndex() - 2 : 0;
  for (Index i = lo; i <= mem.lastIndex() + 1; ++i) {
    auto a = mem.term(i);
    auto b = rs.term(i);
    REQUIRE_MESSAGE(codeOf(a) == codeOf(b), "term(", i, ")");
    if (a)
      REQUIRE(*a == *b);
  }
  auto all = mem.entries(mem.firstIndex(), mem.lastIndex() + 1, UINT64_MAX);
  auto allR = rs.entries(mem.firstIndex(), mem.lastIndex() + 1, UINT64_MAX);
  REQUIRE(codeOf(all) == codeOf(allR));
  if (all)
    REQUIRE(*all == *allR);
  for (int k = 0; k < 4; ++k) {
    Index a = lo + rng() % (mem.lastIndex() + 3 - lo);
    Index b = a + rng() % 6;
    uint64_t maxBytes = rng() % 3 == 0 ? 0 : rng() % 200;
    auto x = mem.entries(a, b, maxBytes);
    auto y = rs.entries(a, b, maxBytes);
    REQUIRE_MESSAGE(codeOf(x) == codeOf(y), "entries(", a, ", ", b, ", ", maxBytes, ")");
    if (x)
      REQUIRE(*x == *y);
  }
  SnapshotMeta sm = mem.snapshotMeta();
  for (int k = 0; k < 3; ++k) {
    uint64_t off = rng() % (sm.size + 2);
    uint64_t n = 1 + rng() % 1000;
    auto x = mem.snapshotChunk(sm.index, off, n);
    auto y = rs.snapshotChunk(sm.index, off, n);
    REQUIRE_MESSAGE(codeOf(x) == codeOf(y), "snapshotChunk at ", off);
    if (x)
      REQUIRE(*x == *y);
  }
  CHECK(codeOf(rs.snapshotChunk(sm.index + 1, 0, 10)) ==
        codeOf(mem.snapshotChunk(sm.index + 1, 0, 10)));
  auto st = rs.status();
  CHECK(st.entryCount == mem.lastIndex() + 1 - mem.firstIndex());
  CHECK(st.cachedTermRuns <= RaftStorage::kMaxTermRuns);
}

}  // namespace

TEST_CASE("a new storage is empty, like a new MemoryStorage") {
  Node n;
  MemoryStorage mem;
  std::mt19937_64 rng(1);
  compareReads(mem, n.s(), rng);
  CHECK(n.s().applied() == 0);
  CHECK(n.s().nodeId() == raft::kNoNode);
  CHECK(n.s().snapshotChunk(0, 0, 100).value().empty());
  // Shared environment: only raft.* tables were added.
  n.reopen();
  compareReads(mem, n.s(), rng);
}

TEST_CASE("appends replace conflicting suffixes and refuse gaps") {
  Node n;
  MemoryStorage mem;
  std::mt19937_64 rng(2);
  auto both = [&](const std::vector<Entry>& e) {
    Status a = mem.append(e);
    Status b = n.append(e);
    REQUIRE(codeOf(a) == codeOf(b));
    compareReads(mem, n.s(), rng);
    return b;
  };
  REQUIRE(both(ents(1, 5, 1)));
  CHECK(n.s().lastIndex() == 5);
  REQUIRE(both(ents(4, 7, 2, "x")));  // conflict at 4: 4.. replaced
  CHECK(n.s().term(3).value() == 1);
  CHECK(n.s().term(4).value() == 2);
  CHECK(n.s().entries(4, 5, 0).value()[0].data == "x4");
  REQUIRE(both(ents(3, 3, 3)));  // shorter: 4..7 go
  CHECK(n.s().lastIndex() == 3);
  Status gap = both(ents(5, 6, 3));
  REQUIRE_FALSE(gap.ok());
  CHECK(gap.error().code == raft::kErrUnavailable);
  CHECK(n.s().lastIndex() == 3);
  REQUIRE(both({}));
  std::vector<Entry> holes = ents(4, 4, 3);
  holes.push_back(Entry{3, 6, EntryType::Normal, "y"});
  Status notConsecutive = n.append(holes);
  REQUIRE_FALSE(notConsecutive.ok());
  CHECK(n.s().lastIndex() == 3);

  // maxBytes: at least one entry, then only while under the limit.
  REQUIRE(both(ents(4, 10, 4, "0123456789-")));
  CHECK(n.s().entries(4, 11, 0).value().size() == 1);
  CHECK(n.s().entries(4, 11, 26).value().size() == 2);
  CHECK(n.s().entries(4, 11, UINT64_MAX).value().size() == 7);
  CHECK(n.s().entries(0, 2, 10).error().code == raft::kErrCompacted);
  CHECK(n.s().entries(4, 12, 10).error().code == raft::kErrUnavailable);
  CHECK(n.s().term(11).error().code == raft::kErrUnavailable);

  // ConfChange entries and empty data round-trip.
  std::vector<Entry> cc{Entry{5, 11, EntryType::ConfChange,
                              raft::encodeConfChange({raft::ConfChangeType::AddLearner, 4, "a"})},
                        Entry{5, 12, EntryType::Normal, ""}};
  REQUIRE(both(cc));
  n.reopen();
  compareReads(mem, n.s(), rng);
  CHECK(n.s().entries(11, 13, UINT64_MAX).value() == cc);
}

TEST_CASE("hard state, applied index and identity persist across a restart") {
  Node n;
  REQUIRE(n.append(ents(1, 3, 2)));
  REQUIRE(n.write([&](lmdb::WriteTxn& t) -> Status {
    // One transaction for a whole Ready, as raftd's shell does.
    if (Status s = n.s().setHardState(t, HardState{2, 1, 3}); !s)
      return s;
    if (Status s = n.s().setApplied(t, 3); !s)
      return s;
    if (Status s = n.s().setNodeId(t, 7); !s)
      return s;
    return n.s().setClusterId(t, "c0ffee");
  }));
  n.reopen();
  CHECK(n.s().hardState() == HardState{2, 1, 3});
  CHECK(n.s().initialState().value().hardState == HardState{2, 1, 3});
  CHECK(n.s().applied() == 3);
  CHECK(n.s().nodeId() == 7);
  CHECK(n.s().clusterId() == "c0ffee");
  CHECK(n.s().lastIndex() == 3);

  // A tool may inspect the state through a read-only environment.
  {
    n.close();
    lmdb::Options ro;
    ro.readOnly = true;
    auto env = lmdb::Environment::open(n.envDir(), ro);
    REQUIRE(env.ok());
    auto s = RaftStorage::open(**env, n.snapDir());
    REQUIRE_MESSAGE(s.ok(), (s.ok() ? "" : s.error().message));
    CHECK((*s)->hardState() == HardState{2, 1, 3});
    CHECK((*s)->entries(1, 4, UINT64_MAX).value() == ents(1, 3, 2));
  }
  n.open();

  // A server keeps its identity, and the applied index never goes back.
  CHECK_FALSE(n.write([&](lmdb::WriteTxn& t) { return n.s().setNodeId(t, 8); }).ok());
  CHECK(n.write([&](lmdb::WriteTxn& t) { return n.s().setNodeId(t, 7); }).ok());
  CHECK_FALSE(n.write([&](lmdb::WriteTxn& t) { return n.s().setClusterId(t, "other"); }).ok());
  Status back = n.setApplied(2);
  REQUIRE_FALSE(back.ok());
  CHECK(n.s().applied() == 3);
}

TEST_CASE("an aborted write leaves the in-memory view unchanged") {
  Node n;
  REQUIRE(n.append(ents(1, 5, 1)));
  REQUIRE(n.setHardState(HardState{1, 1, 2}));
  Status st = n.write([&](lmdb::WriteTxn& t) -> Status {
    REQUIRE(n.s().append(t, ents(3, 9, 2)));
    REQUIRE(n.s().setHardState(t, HardState{2, 2, 9}));
    REQUIRE(n.s().setApplied(t, 4));
    // Later writers in the same transaction see the earlier ones...
    REQUIRE(n.s().append(t, ents(10, 10, 2)));
    // ... but readers see only what committed.
    CHECK(n.s().lastIndex() == 5);
    CHECK(n.s().term(4).value() == 1);
    return Error{"the shell failed to apply an entry"};
  });
  REQUIRE_FALSE(st.ok());
  CHECK(n.s().lastIndex() == 5);
  CHECK(n.s().term(4).value() == 1);
  CHECK(n.s().term(5).value() == 1);
  CHECK(n.s().hardState() == HardState{1, 1, 2});
  CHECK(n.s().applied() == 0);
  CHECK(n.s().entries(1, 6, UINT64_MAX).value() == ents(1, 5, 1));
  n.reopen();
  CHECK(n.s().lastIndex() == 5);
  CHECK(n.s().hardState() == HardState{1, 1, 2});
}

TEST_CASE("bootstrap follows MemoryStorage's convention") {
  Node n;
  MemoryStorage mem = MemoryStorage::bootstrap({1, 2, 3});
  REQUIRE(n.s().bootstrap({1, 2, 3}));
  std::mt19937_64 rng(3);
  compareReads(mem, n.s(), rng);
  CHECK(n.s().applied() == 1);
  CHECK(n.s().snapshotChunk(1, 0, 100).value().empty());
  CHECK(n.s().snapshotPath(n.s().snapshotMeta()).empty());
  n.reopen();
  compareReads(mem, n.s(), rng);
  CHECK(listDir(n.snapDir()).empty());
  Status again = n.s().bootstrap({1});
  REQUIRE_FALSE(again.ok());
  Node m;
  CHECK_FALSE(m.s().bootstrap({}).ok());
  CHECK_FALSE(m.s().bootstrap({1, 1}).ok());
  CHECK_FALSE(m.s().bootstrap({0}).ok());
}

TEST_CASE("snapshots: record, compact, read in chunks, restart") {
  Node n;
  MemoryStorage mem;
  std::mt19937_64 rng(4);
  REQUIRE(n.append(ents(1, 20, 1)));
  REQUIRE(mem.append(ents(1, 20, 1)));
  ConfState conf{{1, 2}, {3}};
  std::string data(5000, '\0');
  for (size_t i = 0; i < data.size(); ++i)
    data[i] = static_cast<char>(i * 7);

  // Only applied entries can be in a snapshot.
  CHECK(n.snapshot(10, conf, data).error().code == raft::kErrUnavailable);
  REQUIRE(n.setApplied(15));
  REQUIRE(n.snapshot(10, conf, data));
  REQUIRE(mem.createSnapshot(10, conf, data));
  compareReads(mem, n.s(), rng);
  CHECK(listDir(n.snapDir()) == std::vector<std::string>{"10-1.snap"});
  CHECK(n.s().snapshotChunk(10, 4096, 4096).value() == data.substr(4096));
  CHECK(n.s().snapshotChunk(10, 5001, 1).error().code == raft::kErrUnavailable);
  CHECK(n.s().snapshotChunk(9, 0, 1).error().code == raft::kErrSnapshotOutOfDate);
  CHECK(n.snapshot(10, conf, data).error().code == raft::kErrSnapshotOutOfDate);
  CHECK(n.snapshot(25, conf, data).error().code == raft::kErrUnavailable);

  // Compaction keeps entries below the snapshot when asked to (slow followers).
  CHECK(n.compact(11).error().code == raft::kErrUnavailable);
  REQUIRE(n.compact(6));
  REQUIRE(mem.compact(6));
  compareReads(mem, n.s(), rng);
  CHECK(n.s().term(6).value() == 1);
  CHECK(n.s().term(5).error().code == raft::kErrCompacted);
  REQUIRE(n.compact(3));  // below the compaction point: nothing to do
  CHECK(n.s().firstIndex() == 7);

  // A newer snapshot replaces the file of the older one.
  std::string data2 = data + "more";
  REQUIRE(n.snapshot(15, conf, data2));
  REQUIRE(mem.createSnapshot(15, conf, data2));
  CHECK(listDir(n.snapDir()) == std::vector<std::string>{"15-1.snap"});
  compareReads(mem, n.s(), rng);
  CHECK(n.s().snapshotChunk(10, 0, 10).error().code == raft::kErrSnapshotOutOfDate);

  // What a crash may leave behind is removed on open: a snapshot moved in place but never
  // recorded, a half-received one, a half-copied one.
  writeFile(n.snapDir() + "/99-9.snap", "x");
  writeFile(n.snapDir() + "/incoming-99-9.snap", "x");
  writeFile(n.snapDir() + "/16-1.snap.tmp", "x");
  n.reopen();
  CHECK(listDir(n.snapDir()) == std::vector<std::string>{"15-1.snap"});
  compareReads(mem, n.s(), rng);
  std::string all;
  while (all.size() < data2.size())
    all += n.s().snapshotChunk(15, all.size(), 1000).value();
  CHECK(all == data2);
  REQUIRE(n.compact(15));
  REQUIRE(mem.compact(15));
  n.reopen();
  compareReads(mem, n.s(), rng);
  CHECK(n.s().status().entryCount == 5);
}

TEST_CASE("snapshots: a received file whose checksum differs is not opened") {
  Node n;
  REQUIRE(n.append(ents(1, 8, 1)));
  std::string data(5000, 'q');
  std::string path = n.snapDir() + "/sum";
  writeFile(path, data);
  auto sum = shoal::raftd::snapshotChecksum(path);
  ::unlink(path.c_str());
  REQUIRE(sum.ok());
  CHECK(*sum != 0);

  // One byte changed on the way: same size, other checksum.
  SnapshotMeta meta{30, 4, ConfState{{1, 2, 3}, {}}, data.size(), *sum};
  std::string damaged = data;
  damaged[1234] = 'r';
  auto st = n.receive(meta, damaged, 2000);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().message.find("damaged on the way") != std::string::npos);
  CHECK(listDir(n.snapDir()).empty());  // removed: the transfer starts again
  CHECK(n.s().lastIndex() == 8);

  REQUIRE(n.receive(meta, data, 2000));
  CHECK(n.s().applied() == 30);
  CHECK(n.s().snapshotMeta().checksum == *sum);
  n.reopen();  // the checksum is part of the durable meta
  CHECK(n.s().snapshotMeta().checksum == *sum);
}

TEST_CASE("snapshots: receive in chunks, complete and install") {
  Node n;
  MemoryStorage mem;
  std::mt19937_64 rng(5);
  REQUIRE(n.append(ents(1, 8, 1)));
  REQUIRE(mem.append(ents(1, 8, 1)));
  std::string data(10000, 'x');
  for (size_t i = 0; i < data.size(); ++i)
    data[i] = static_cast<char>('a' + i % 26);
  SnapshotMeta meta{30, 4, ConfState{{1, 2, 3}, {}}, data.size()};

  // Out of order: the first chunk must start the file, later ones continue it.
  raft::SnapshotChunk late{meta, 100, data.substr(100, 100), false};
  CHECK(n.s().writeChunk(late).error().code == raft::kErrUnavailable);
  REQUIRE(n.s().writeChunk({meta, 0, data.substr(0, 100), false}));
  CHECK_FALSE(n.s().writeChunk({meta, 300, data.substr(300, 100), false}).ok());
  CHECK_FALSE(n.s().writeChunk({meta, 9990, data.substr(9990) + "extra", true}).ok());
  CHECK_FALSE(n.s().completeIncoming(meta).ok());  // not complete
  CHECK(listDir(n.snapDir()) == std::vector<std::string>{"incoming-30-4.snap"});
  // Installing before completing is refused.
  CHECK_FALSE(n.write([&](lmdb::WriteTxn& t) { return n.s().installSnapshot(t, meta); }).ok());
  CHECK(n.s().lastIndex() == 8);

  // A restart drops a half-received snapshot (the core restarts the transfer).
  n.reopen();
  CHECK(listDir(n.snapDir()).empty());

  REQUIRE(n.receive(meta, data, 3000));
  REQUIRE(mem.applySnapshot(meta, data));
  compareReads(mem, n.s(), rng);
  CHECK(n.s().applied() == 30);
  CHECK(n.s().firstIndex() == 31);
  CHECK(n.s().lastIndex() == 30);
  CHECK(n.s().term(30).value() == 4);
  CHECK(listDir(n.snapDir()) == std::vector<std::string>{"30-4.snap"});

  // The log continues after the snapshot, and everything survives a restart.
  REQUIRE(n.append(ents(31, 33, 4)));
  REQUIRE(mem.append(ents(31, 33, 4)));
  n.reopen();
  compareReads(mem, n.s(), rng);

  // A stale snapshot is refused; a newer one replaces the file.
  SnapshotMeta old{20, 3, {}, 10};
  CHECK(n.s().writeChunk({old, 0, "0123456789", true}).error().code ==
        raft::kErrSnapshotOutOfDate);
  CHECK(n.write([&](lmdb::WriteTxn& t) { return n.s().installSnapshot(t, old); }).error().code ==
        raft::kErrSnapshotOutOfDate);
  SnapshotMeta next{40, 5, ConfState{{1}, {}}, 1};
  REQUIRE(n.receive(next, "z", 1000));
  REQUIRE(mem.applySnapshot(next, "z"));
  compareReads(mem, n.s(), rng);
  CHECK(listDir(n.snapDir()) == std::vector<std::string>{"40-5.snap"});

  // An empty snapshot (a joiner receiving the bootstrap snapshot) needs no file.
  Node j;
  MemoryStorage jm;
  SnapshotMeta empty{1, 1, ConfState{{1}, {}}, 0};
  REQUIRE(j.s().writeChunk({empty, 0, "", true}));
  auto path = j.s().completeIncoming(empty);
  REQUIRE(path.ok());
  CHECK(path->empty());
  REQUIRE(j.write([&](lmdb::WriteTxn& t) { return j.s().installSnapshot(t, empty); }));
  REQUIRE(jm.applySnapshot(empty, ""));
  compareReads(jm, j.s(), rng);
  CHECK(listDir(j.snapDir()).empty());
}

TEST_CASE("damaged state gives a clear error, never a crash") {
  auto damage = [](const std::function<void(Node&, lmdb::WriteTxn&, const lmdb::Table&,
                                            const lmdb::Table&)>& fn) {
    auto n = std::make_unique<Node>();
    REQUIRE(n->append(ents(1, 10, 1)));
    auto log = n->env->table("raft.log");
    auto meta = n->env->table("raft.meta");
    REQUIRE(log.ok());
    REQUIRE(meta.ok());
    REQUIRE(n->write([&](lmdb::WriteTxn& t) -> Status {
      fn(*n, t, *log, *meta);
      return {};
    }));
    n->close();
    Status st = n->tryOpen();
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == raft::kErrIo);
    return st.error().message;
  };
  SUBCASE("a hard state of the wrong size") {
    auto msg = damage([](Node&, lmdb::WriteTxn& t, const lmdb::Table&, const lmdb::Table& m) {
      REQUIRE(t.put(m, "hardstate", "short"));
    });
    CHECK(msg.find("hardstate") != std::string::npos);
  }
  SUBCASE("a missing record") {
    auto msg = damage([](Node&, lmdb::WriteTxn& t, const lmdb::Table&, const lmdb::Table& m) {
      REQUIRE(t.del(m, "snapshot").value());
    });
    CHECK(msg.find("snapshot") != std::string::npos);
  }
  SUBCASE("a hole in the log") {
    auto msg = damage([](Node&, lmdb::WriteTxn& t, const lmdb::Table& l, const lmdb::Table&) {
      REQUIRE(t.del(l, lmdb::u64Key(5)).value());
    });
    CHECK(msg.find("raft.log") != std::string::npos);
  }
  SUBCASE("an entry that does not decode") {
    auto msg = damage([](Node&, lmdb::WriteTxn& t, const lmdb::Table& l, const lmdb::Table&) {
      REQUIRE(t.put(l, lmdb::u64Key(9), std::string("\x07\x01", 2)));
    });
    CHECK(msg.find("entry 9") != std::string::npos);
  }
  SUBCASE("an unknown format") {
    auto msg = damage([](Node&, lmdb::WriteTxn& t, const lmdb::Table&, const lmdb::Table& m) {
      REQUIRE(t.put(m, "format", lmdb::u64Key(99)));
    });
    CHECK(msg.find("format 99") != std::string::npos);
  }
  SUBCASE("a missing snapshot file") {
    Node n;
    REQUIRE(n.append(ents(1, 4, 1)));
    REQUIRE(n.setApplied(4));
    REQUIRE(n.snapshot(3, {{1}, {}}, "data"));
    n.close();
    std::filesystem::remove(n.snapDir() + "/3-1.snap");
    Status st = n.tryOpen();
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().message.find("3-1.snap") != std::string::npos);
  }
  SUBCASE("an entry damaged below the term cache is reported on read") {
    Node n;
    REQUIRE(n.append(ents(1, 4, 1)));
    auto log = n.env->table("raft.log");
    REQUIRE(n.write([&](lmdb::WriteTxn& t) -> Status {
      REQUIRE(t.put(*log, lmdb::u64Key(2), ""));
      return {};
    }));
    auto e = n.s().entries(1, 5, UINT64_MAX);
    REQUIRE_FALSE(e.ok());
    CHECK(e.error().code == raft::kErrIo);
  }
}

TEST_CASE("property: RaftStorage answers like MemoryStorage under random operations") {
  Node n;
  MemoryStorage mem;
  std::mt19937_64 rng(20240601);
  auto pick = [&](uint64_t lo, uint64_t hi) { return lo + rng() % (hi - lo + 1); };  // [lo, hi]
  auto randomData = [&](size_t maxLen) {
    std::string s(pick(0, maxLen), '\0');
    for (char& c : s)
      c = static_cast<char>(rng());
    return s;
  };
  Term maxTerm = 1;
  int counts[8] = {};
  for (int step = 0; step < 600; ++step) {
    INFO("step " << step);
    int op = static_cast<int>(pick(0, 99));
    Index first = mem.firstIndex();
    Index last = mem.lastIndex();
    Index snap = mem.snapshotMeta().index;
    if (op < 45) {  // append (new entries, conflicts, compacted prefixes, gaps)
      ++counts[0];
      Index start;
      int kind = static_cast<int>(pick(0, 9));
      if (kind == 0 && first > 1)
        start = pick(first > 3 ? first - 3 : 1, first - 1);  // prefix already compacted
      else if (kind == 1)
        start = last + 2;  // a gap
      else
        start = pick(std::max(first, snap + 1), last + 1);
      size_t len = pick(0, 6);
      if (rng() % 4 == 0)
        maxTerm += 1;
      std::vector<Entry> batch;
      for (size_t k = 0; k < len; ++k) {
        Index idx = start + k;
        // Entries at or below the snapshot are committed: a batch carries the same ones.
        Term t = idx <= snap || idx < first ? mem.term(idx).ok() ? *mem.term(idx) : 1 : maxTerm;
        batch.push_back(Entry{t, idx, rng() % 5 ? EntryType::Normal : EntryType::ConfChange,
                              randomData(40)});
      }
      Status a = mem.append(batch);
      Status b = n.append(batch);
      REQUIRE(codeOf(a) == codeOf(b));
    } else if (op < 60) {  // hard state
      ++counts[1];
      HardState hs{pick(0, maxTerm), pick(0, 3), pick(0, last)};
      mem.setHardState(hs);
      REQUIRE(n.setHardState(hs));
    } else if (op < 70) {  // take a snapshot
      ++counts[2];
      Index index = pick(first > 1 ? first - 1 : 0, last + 1);
      ConfState conf{{pick(1, 3)}, {}};
      if (rng() % 2)
        conf.learners.push_back(pick(4, 5));
      std::string data = rng() % 5 ? randomData(3000) : std::string();
      REQUIRE(n.setApplied(std::max(n.s().applied(), std::min(index, last))));
      Status a = mem.createSnapshot(index, conf, data);
      Status b = n.snapshot(index, conf, data);
      REQUIRE_MESSAGE(codeOf(a) == codeOf(b), (b ? "" : b.error().message));
    } else if (op < 80) {  // compact, keeping a few entries below the snapshot
      ++counts[3];
      Index index = pick(first > 2 ? first - 2 : 0, std::min(snap, last) + 1);
      Status a = mem.compact(index);
      Status b = n.compact(index);
      REQUIRE(codeOf(a) == codeOf(b));
    } else if (op < 87) {  // receive a snapshot from a leader (sometimes a stale one)
      ++counts[4];
      Index index = rng() % 5 ? pick(snap + 1, last + 5) : pick(snap > 2 ? snap - 2 : 0, snap);
      maxTerm += rng() % 2;
      std::string data = rng() % 4 ? randomData(5000) : std::string();
      SnapshotMeta meta{index, maxTerm, ConfState{{1, 2}, {}}, data.size()};
      Status a = mem.applySnapshot(meta, data);
      Status b = index <= snap ? n.write([&](lmdb::WriteTxn& t) {
        return n.s().installSnapshot(t, meta);
      })
                               : n.receive(meta, data, pick(1, 2000));
      REQUIRE_MESSAGE(codeOf(a) == codeOf(b), (b ? "" : b.error().message));
    } else if (op < 93) {  // a write the shell aborts changes nothing
      ++counts[5];
      Status b = n.write([&](lmdb::WriteTxn& t) -> Status {
        (void)n.s().append(t, ents(std::max(first, snap + 1), last + 3, maxTerm + 9));
        (void)n.s().setHardState(t, HardState{99, 9, 9});
        (void)n.s().compact(t, snap);
        return Error{"aborted"};
      });
      REQUIRE_FALSE(b.ok());
    } else {  // restart
      ++counts[6];
      n.reopen();
    }
    compareReads(mem, n.s(), rng);
    // No snapshot file but the current one (and none for an empty snapshot).
    std::string cur = n.s().snapshotPath(n.s().snapshotMeta());
    auto files = listDir(n.snapDir());
    CHECK(files.size() == (cur.empty() ? 0u : 1u));
  }
  for (int i = 0; i < 7; ++i)
    CHECK(counts[i] > 0);  // every kind of operation ran
}

TEST_CASE("the term cache stays bounded and agrees with the log") {
  Node n;
  MemoryStorage mem;
  std::mt19937_64 rng(6);
  // A term per entry: the worst case for run-length caching.
  std::vector<Entry> batch;
  Index total = RaftStorage::kMaxTermRuns + 500;
  for (Index i = 1; i <= total; ++i)
    batch.push_back(Entry{i, i, EntryType::Normal, ""});
  REQUIRE(n.append(batch));
  REQUIRE(mem.append(batch));
  CHECK(n.s().status().cachedTermRuns == RaftStorage::kMaxTermRuns);
  compareReads(mem, n.s(), rng);  // the oldest 500 come from LMDB
  n.reopen();
  CHECK(n.s().status().cachedTermRuns == RaftStorage::kMaxTermRuns);
  compareReads(mem, n.s(), rng);
}

namespace {

// Drives a Raft core over a RaftStorage the way raftd's shell does: one write transaction
// per Ready for what to persist, what to apply and the applied index.
struct Driver {
  Node& node;
  std::unique_ptr<raft::Raft> raft;
  uint64_t rng = 1;
  std::vector<raft::Message> outbox;
  std::vector<std::string> applied;  // the state machine: data of applied normal entries
  lmdb::Table kv;                    // ... also kept in the environment, for snapshots

  explicit Driver(Node& n, raft::NodeId id) : node(n) { start(id); }

  void start(raft::NodeId id) {
    auto t = node.env->table("test.kv");
    REQUIRE(t.ok());
    kv = *t;
    raft::Config c;
    c.id = id;
    c.applied = node.s().applied();
    c.snapshotChunkBytes = 4096;
    c.random = [this] {
      rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
      return static_cast<uint32_t>(rng >> 33);
    };
    auto r = raft::Raft::create(std::move(c), node.s());
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
    raft = std::move(*r);
  }

  bool process() {
    if (!raft->hasReady())
      return false;
    raft::Ready rd = raft->ready();
    for (const auto& c : rd.snapshotChunks)
      REQUIRE(node.s().writeChunk(c));
    std::string snapshotFile;
    if (rd.snapshot) {
      auto p = node.s().completeIncoming(*rd.snapshot);
      REQUIRE_MESSAGE(p.ok(), (p.ok() ? "" : p.error().message));
      snapshotFile = *p;
    }
    // The snapshot's object table, read before the write (no reader across update()).
    std::vector<std::pair<std::string, std::string>> restored;
    if (!snapshotFile.empty()) {
      lmdb::Options o;
      o.readOnly = true;
      o.flags = MDB_NOSUBDIR | MDB_NOLOCK;
      auto src = lmdb::Environment::open(snapshotFile, o);
      REQUIRE_MESSAGE(src.ok(), (src.ok() ? "" : src.error().message));
      auto table = (*src)->table("test.kv");
      REQUIRE(table.ok());
      REQUIRE((*src)->view([&](lmdb::ReadTxn& t) {
        return t.scanPrefix(*table, "", [&](std::string_view k, std::string_view v) {
          restored.emplace_back(std::string(k), std::string(v));
          return true;
        });
      }));
    }
    Status st = node.write([&](lmdb::WriteTxn& t) -> Status {
      if (rd.snapshot) {
        if (Status s = t.clear(kv); !s)
          return s;
        for (const auto& [k, v] : restored)
          if (Status s = t.put(kv, k, v); !s)
            return s;
        if (Status s = node.s().installSnapshot(t, *rd.snapshot); !s)
          return s;
      }
      if (Status s = node.s().append(t, rd.entries); !s)
        return s;
      if (rd.hardState)
        if (Status s = node.s().setHardState(t, *rd.hardState); !s)
          return s;
      for (const Entry& e : rd.committedEntries) {
        if (e.type == EntryType::Normal && !e.data.empty())
          if (Status s = t.put(kv, lmdb::u64Key(e.index), e.data); !s)
            return s;
      }
      if (!rd.committedEntries.empty())
        return node.s().setApplied(t, rd.committedEntries.back().index);
      return {};
    });
    REQUIRE_MESSAGE(st.ok(), (st.ok() ? "" : st.error().message));
    if (rd.snapshot) {
      applied.clear();
      for (const auto& [k, v] : restored)
        applied.push_back(v);
    }
    for (const Entry& e : rd.committedEntries)
      if (e.type == EntryType::Normal && !e.data.empty())
        applied.push_back(e.data);
    for (auto& m : rd.messages)
      outbox.push_back(std::move(m));
    raft->advance(rd);
    return true;
  }

  void drain() {
    for (int i = 0; i < 1000 && process(); ++i) {
    }
    REQUIRE_FALSE(raft->hasReady());
  }
};

// Delivers messages between drivers until nothing moves (bounded).
void stabilize(std::vector<Driver*> ds) {
  for (int round = 0; round < 2000; ++round) {
    bool any = false;
    for (Driver* d : ds)
      any |= d->process();
    for (Driver* d : ds) {
      auto out = std::move(d->outbox);
      d->outbox.clear();
      for (const auto& m : out)
        for (Driver* to : ds)
          if (to->raft->id() == m.to) {
            REQUIRE(to->raft->step(m));
            any = true;
          }
    }
    if (!any)
      return;
  }
  FAIL("the cluster did not settle");
}

}  // namespace

TEST_CASE("a Raft core over RaftStorage: bootstrap, 100 proposals, restart") {
  Node n;
  REQUIRE(n.s().bootstrap({1}));
  REQUIRE(n.write([&](lmdb::WriteTxn& t) { return n.s().setNodeId(t, 1); }));
  std::vector<std::string> before;
  Index commit = 0;
  {
    Driver d(n, 1);
    REQUIRE(d.raft->campaign());
    d.drain();
    REQUIRE(d.raft->role() == raft::Role::Leader);
    for (int i = 0; i < 100; ++i) {
      auto idx = d.raft->propose("cmd" + std::to_string(i));
      REQUIRE(idx.ok());
      if (i % 7 == 0)
        d.drain();  // several proposals per Ready otherwise: group commit
    }
    d.drain();
    CHECK(d.applied.size() == 100);
    CHECK(d.applied.back() == "cmd99");
    commit = d.raft->status().commit;
    CHECK(commit == n.s().lastIndex());
    CHECK(n.s().applied() == commit);
    CHECK(n.s().hardState().commit == commit);
    auto all = n.s().entries(2, n.s().lastIndex() + 1, UINT64_MAX);
    REQUIRE(all.ok());
    for (const Entry& e : *all)
      if (!e.data.empty())
        before.push_back(e.data);
    CHECK(before == d.applied);
  }
  n.reopen();
  CHECK(n.s().nodeId() == 1);
  Driver d(n, n.s().nodeId());
  CHECK(d.raft->log().lastIndex() == commit);
  CHECK(d.raft->status().commit == commit);
  CHECK(d.raft->status().applied == commit);
  d.drain();
  CHECK(d.applied.empty());  // nothing applied twice
  REQUIRE(d.raft->campaign());
  d.drain();
  REQUIRE(d.raft->role() == raft::Role::Leader);
  REQUIRE(d.raft->propose("after restart").ok());
  d.drain();
  CHECK(d.applied == std::vector<std::string>{"after restart"});
  CHECK(n.s().applied() == n.s().lastIndex());
}

TEST_CASE("a Raft core over RaftStorage: a new member catches up from a snapshot file") {
  Node leaderNode;
  REQUIRE(leaderNode.s().bootstrap({1}));
  Driver leader(leaderNode, 1);
  REQUIRE(leader.raft->campaign());
  leader.drain();
  for (int i = 0; i < 60; ++i)
    REQUIRE(leader.raft->propose(std::string(200, static_cast<char>('a' + i % 26))).ok());
  leader.drain();
  // Snapshot as the shell takes it: a consistent copy of the environment, then compaction
  // keeping a few entries for slow followers.
  Index at = leaderNode.s().applied();
  std::string tmp = leaderNode.snapDir() + "/copy";
  REQUIRE(leaderNode.env->copy(tmp));
  REQUIRE(leaderNode.s().recordSnapshot(at, leaderNode.s().term(at).value(),
                                        leader.raft->confState(), tmp + "/data.mdb"));
  std::filesystem::remove_all(tmp);
  REQUIRE(leaderNode.compact(at - 5));
  for (int i = 0; i < 5; ++i)
    REQUIRE(leader.raft->propose("tail" + std::to_string(i)).ok());
  leader.drain();

  Node joinerNode;
  Driver joiner(joinerNode, 2);
  REQUIRE(leader.raft->proposeConfChange({raft::ConfChangeType::AddLearner, 2, ""}).ok());
  for (int i = 0; i < 40 && (joinerNode.s().applied() < leaderNode.s().applied() ||
                             joiner.applied.size() < leader.applied.size());
       ++i) {
    stabilize({&leader, &joiner});
    leader.raft->tick();
    joiner.raft->tick();
  }
  CHECK(joinerNode.s().snapshotMeta().index == at);
  CHECK(joinerNode.s().snapshotMeta().size > 0);
  CHECK(joiner.applied == leader.applied);
  CHECK(joinerNode.s().lastIndex() == leaderNode.s().lastIndex());
  CHECK(joinerNode.s().term(joinerNode.s().lastIndex()).value() ==
        leaderNode.s().term(leaderNode.s().lastIndex()).value());

  // The joiner restarts with its received snapshot and log.
  joiner.raft.reset();
  joinerNode.reopen();
  CHECK(joinerNode.s().snapshotMeta().index == at);
  CHECK(joinerNode.s().snapshotChunk(at, 0, 16).value().size() == 16);
}
