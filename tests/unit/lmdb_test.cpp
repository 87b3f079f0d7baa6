// Tests of common/lmdb: the LMDB wrapper every stateful daemon uses (DESIGN.md §5).

#include "common/lmdb.h"

#include <doctest/doctest.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace shoal;
using namespace shoal::lmdb;

namespace {

// A directory under $TMPDIR removed with everything in it, also when a check fails.
struct TempDir {
  std::string path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "shoal-lmdb-XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string sub(const std::string& name) const { return path + "/" + name; }
};

// Kills (by PID) and reaps a child that a failing check left running.
struct Child {
  pid_t pid = -1;
  ~Child() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
};

std::unique_ptr<Environment> openEnv(const std::string& dir, Options options = {}) {
  auto env = Environment::open(dir, options);
  REQUIRE_MESSAGE(env.ok(), env.error().message);
  return std::move(env.value());
}

Table openTable(Environment& env, const std::string& name, unsigned flags = 0) {
  auto t = env.table(name, flags);
  REQUIRE_MESSAGE(t.ok(), t.error().message);
  return *t;
}

std::optional<std::string> getString(Environment& env, const Table& t, std::string_view key) {
  std::optional<std::string> out;
  Status s = env.view([&](ReadTxn& txn) -> Status {
    auto v = txn.get(t, key);
    if (!v) {
      return v.error();
    }
    if (*v) {
      out = std::string(**v);
    }
    return {};
  });
  REQUIRE_MESSAGE(s.ok(), s.error().message);
  return out;
}

std::vector<std::string> keysIn(Environment& env, const Table& t) {
  std::vector<std::string> keys;
  Status s = env.view([&](ReadTxn& txn) {
    return txn.scanRange(t, {}, {}, [&](std::string_view k, std::string_view) {
      keys.emplace_back(k);
      return true;
    });
  });
  REQUIRE_MESSAGE(s.ok(), s.error().message);
  return keys;
}

template <class T>
int codeOf(const Result<T>& r) {
  return r.ok() ? 0 : r.error().code;
}

// n values of 4 KiB under keys from `first` on, in one write.
Status putBlobs(Environment& env, const Table& t, std::uint64_t first, std::uint64_t n) {
  const std::string blob(4096, 'b');
  return env.update([&](WriteTxn& txn) -> Status {
    for (std::uint64_t i = first; i < first + n; ++i) {
      if (auto r = txn.put(t, u64Key(i), blob); !r) return r;
    }
    return {};
  });
}

std::uint64_t countOf(Environment& env, const Table& t) {
  auto txn = env.read();
  REQUIRE(txn.ok());
  auto n = txn->count(t);
  REQUIRE(n.ok());
  return *n;
}

// A read transaction held open on a thread of its own (as raftd's snapshot thread does)
// until the object goes; it reads `key` when it starts and again when it ends.
class HeldReader {
 public:
  HeldReader(Environment& env, const Table& t, std::string key) {
    std::promise<void> opened;
    auto started = opened.get_future();
    auto release = release_.get_future();
    thread_ = std::thread([&env, t, key, &opened, release = std::move(release), this]() mutable {
      auto txn = env.read();
      if (txn.ok()) {
        first_ = readKey(*txn, t, key);
      }
      opened.set_value();
      release.wait();
      if (txn.ok()) {
        last_ = readKey(*txn, t, key);
      }
    });
    started.wait();
  }
  ~HeldReader() {
    if (thread_.joinable()) {
      end();
    }
  }
  // Ends the transaction; what it read at its start and at its end.
  std::pair<std::string, std::string> end() {
    release_.set_value();
    thread_.join();
    return {first_, last_};
  }

 private:
  static std::string readKey(const ReadTxn& txn, const Table& t, const std::string& key) {
    auto v = txn.get(t, key);
    return v.ok() && *v ? std::string(**v) : "(none)";
  }
  std::promise<void> release_;
  std::thread thread_;
  std::string first_;
  std::string last_;
};

// Lowers this process's file size limit (RLIMIT_FSIZE) for as long as it lives: writes past
// it fail (EFBIG) as they would on a full disk (ENOSPC), which a test cannot arrange.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    REQUIRE(getrlimit(RLIMIT_FSIZE, &saved_) == 0);
    oldHandler_ = signal(SIGXFSZ, SIG_IGN);  // or the write kills the process
    rlimit lower = saved_;
    lower.rlim_cur = bytes;
    REQUIRE(setrlimit(RLIMIT_FSIZE, &lower) == 0);
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &saved_);
    signal(SIGXFSZ, oldHandler_);
  }

 private:
  rlimit saved_{};
  sighandler_t oldHandler_ = SIG_DFL;
};

off_t fileSize(const std::string& path) {
  struct stat st{};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_size;
}

}  // namespace

TEST_CASE("put, get, delete and count") {
  TempDir dir;
  auto env = openEnv(dir.path);
  Table t = openTable(*env, "things");

  Status s = env->update([&](WriteTxn& txn) -> Status {
    if (auto r = txn.put(t, "a", "1"); !r) return r;
    if (auto r = txn.put(t, "b", "2"); !r) return r;
    return txn.put(t, "c", "3");
  });
  REQUIRE_MESSAGE(s.ok(), s.error().message);
  CHECK(getString(*env, t, "b") == "2");
  CHECK_FALSE(getString(*env, t, "zz").has_value());

  s = env->update([&](WriteTxn& txn) -> Status {
    auto gone = txn.del(t, "b");
    REQUIRE(gone.ok());
    CHECK(*gone);
    auto again = txn.del(t, "b");
    REQUIRE(again.ok());
    CHECK_FALSE(*again);
    // Overwrite, and MDB_NOOVERWRITE refuses to.
    if (auto r = txn.put(t, "a", "one"); !r) return r;
    auto refused = txn.put(t, "c", "x", MDB_NOOVERWRITE);
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().code == MDB_KEYEXIST);
    CHECK(refused.error().message.find("things") != std::string::npos);
    return {};
  });
  REQUIRE_MESSAGE(s.ok(), s.error().message);
  CHECK(getString(*env, t, "a") == "one");
  CHECK_FALSE(getString(*env, t, "b").has_value());
  CHECK(getString(*env, t, "c") == "3");

  auto txn = env->read();
  REQUIRE(txn.ok());
  auto n = txn->count(t);
  REQUIRE(n.ok());
  CHECK(*n == 2);
}

TEST_CASE("a failed or aborted write leaves nothing") {
  TempDir dir;
  auto env = openEnv(dir.path);
  Table t = openTable(*env, "things");

  int hooks = 0;
  Status s = env->update([&](WriteTxn& txn) -> Status {
    REQUIRE(txn.put(t, "k", "v").ok());
    txn.onCommit([&] { ++hooks; });
    return Error{"the caller changed its mind", 42};
  });
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().code == 42);
  CHECK(s.error().message == "the caller changed its mind");
  CHECK_FALSE(getString(*env, t, "k").has_value());
  CHECK(hooks == 0);

  // An exception aborts too, and the environment stays usable.
  CHECK_THROWS_AS(env->update([&](WriteTxn& txn) -> Status {
    REQUIRE(txn.put(t, "k", "v").ok());
    throw std::runtime_error("boom");
  }),
                  std::runtime_error);
  CHECK_FALSE(getString(*env, t, "k").has_value());

  s = env->update([&](WriteTxn& txn) -> Status {
    txn.onCommit([&] { ++hooks; });
    return txn.put(t, "k", "v2");
  });
  REQUIRE(s.ok());
  CHECK(getString(*env, t, "k") == "v2");
  CHECK(hooks == 1);

  // Errors that would otherwise deadlock.
  s = env->update([&](WriteTxn&) -> Status {
    Status inner = env->update([](WriteTxn&) -> Status { return {}; });
    CHECK(codeOf(inner) == EDEADLK);
    auto table = env->table("other");
    CHECK(codeOf(table) == EDEADLK);
    return {};
  });
  CHECK(s.ok());
}

TEST_CASE("durability flags and MDB_WRITEMAP are refused") {
  TempDir dir;
  Options o;
  o.flags = MDB_NOSYNC;
  auto env = Environment::open(dir.path, o);
  REQUIRE_FALSE(env.ok());
  CHECK(env.error().code == EINVAL);
  CHECK(env.error().message.find("MDB_NOSYNC") != std::string::npos);

  o.flags = MDB_WRITEMAP;
  env = Environment::open(dir.path, o);
  REQUIRE_FALSE(env.ok());
  CHECK(env.error().code == EINVAL);
  CHECK(env.error().message.find("SIGBUS") != std::string::npos);
}

TEST_CASE("ranges, prefixes, big-endian keys and duplicates") {
  TempDir dir;
  auto env = openEnv(dir.path);
  Table letters = openTable(*env, "letters");
  Table numbers = openTable(*env, "numbers");
  Table dups = openTable(*env, "dups", MDB_DUPSORT);

  const std::vector<std::uint64_t> nums = {70000, 1, 256, 255, 0, 1ull << 40};
  Status s = env->update([&](WriteTxn& txn) -> Status {
    for (char c = 'a'; c <= 'z'; ++c) {
      if (auto r = txn.put(letters, std::string(1, c), "x"); !r) return r;
      if (auto r = txn.put(letters, std::string(1, c) + "1", "y"); !r) return r;
    }
    for (auto n : nums) {
      if (auto r = txn.put(numbers, u64Key(n), std::to_string(n)); !r) return r;
    }
    for (const char* v : {"b", "c", "a"}) {
      if (auto r = txn.put(dups, "key", v); !r) return r;
    }
    return txn.put(dups, "other", "z");
  });
  REQUIRE_MESSAGE(s.ok(), s.error().message);

  auto txn = env->read();
  REQUIRE(txn.ok());
  std::vector<std::string> seen;
  auto collect = [&](std::string_view k, std::string_view) {
    seen.emplace_back(k);
    return true;
  };
  REQUIRE(txn->scanRange(letters, "c", "e", collect).ok());
  CHECK(seen == std::vector<std::string>{"c", "c1", "d", "d1"});

  seen.clear();
  REQUIRE(txn->scanPrefix(letters, "q", collect).ok());
  CHECK(seen == std::vector<std::string>{"q", "q1"});

  seen.clear();
  REQUIRE(txn->scanRange(letters, "y", {}, collect).ok());
  CHECK(seen == std::vector<std::string>{"y", "y1", "z", "z1"});

  seen.clear();
  REQUIRE(txn->scanRange(letters, {}, {}, [&](std::string_view k, std::string_view) {
                seen.emplace_back(k);
                return seen.size() < 3;  // stops early
              }).ok());
  CHECK(seen.size() == 3);

  std::vector<std::uint64_t> order;
  REQUIRE(txn->scanRange(numbers, {}, {}, [&](std::string_view k, std::string_view v) {
                auto n = readU64(k);
                REQUIRE(n.has_value());
                CHECK(std::to_string(*n) == v);
                order.push_back(*n);
                return true;
              }).ok());
  CHECK(order == std::vector<std::uint64_t>{0, 1, 255, 256, 70000, 1ull << 40});

  order.clear();
  REQUIRE(txn->scanRange(numbers, u64Key(255), u64Key(70000), [&](std::string_view k,
                                                                   std::string_view) {
                order.push_back(*readU64(k));
                return true;
              }).ok());
  CHECK(order == std::vector<std::uint64_t>{255, 256});

  seen.clear();
  REQUIRE(txn->scanPrefix(dups, "key", [&](std::string_view, std::string_view v) {
                seen.emplace_back(v);
                return true;
              }).ok());
  CHECK(seen == std::vector<std::string>{"a", "b", "c"});
  auto dupCount = txn->count(dups);
  REQUIRE(dupCount.ok());
  CHECK(*dupCount == 4);

  auto c = txn->cursor(dups);
  REQUIRE(c.ok());
  REQUIRE(c->seekExact("key"));
  auto n = c->duplicates();
  REQUIRE(n.ok());
  CHECK(*n == 3);
  CHECK(c->nextKey());
  CHECK(c->key() == "other");
  CHECK_FALSE(c->next());
  CHECK(c->status().ok());

  CHECK(prefixEnd("ab") == "ac");
  CHECK(prefixEnd(std::string("a\xff", 2)) == "b");
  CHECK(prefixEnd(std::string("\xff", 1)).empty());
  CHECK_FALSE(readU64("short").has_value());
}

TEST_CASE("deleting one duplicate") {
  TempDir dir;
  auto env = openEnv(dir.path);
  Table dups = openTable(*env, "dups", MDB_DUPSORT);
  // Asking again with other flags is an error, with the same flags the same handle.
  CHECK(codeOf(env->table("dups")) == MDB_INCOMPATIBLE);
  CHECK(openTable(*env, "dups", MDB_DUPSORT).dbi() == dups.dbi());

  REQUIRE(env->update([&](WriteTxn& txn) -> Status {
                for (const char* v : {"1", "2", "3"}) {
                  if (auto r = txn.put(dups, "k", v); !r) return r;
                }
                auto gone = txn.del(dups, "k", "2");
                REQUIRE(gone.ok());
                CHECK(*gone);
                return {};
              }).ok());
  std::vector<std::string> values;
  REQUIRE(env->view([&](ReadTxn& txn) {
                return txn.scanPrefix(dups, "k", [&](std::string_view, std::string_view v) {
                  values.emplace_back(v);
                  return true;
                });
              }).ok());
  CHECK(values == std::vector<std::string>{"1", "3"});
}

TEST_CASE("the map is opened at its maximum size at once; the file grows with the data") {
  TempDir dir;
  auto env = openEnv(dir.path);
  Table t = openTable(*env, "blobs");
  REQUIRE(putBlobs(*env, t, 0, 16).ok());
  auto info = env->info();
  REQUIRE(info.ok());
  CHECK(info->mapSize == kDefaultMaxMapSize);
  CHECK(info->maxMapSize == kDefaultMaxMapSize);
  CHECK(info->usedBytes > 16 * 4096);
  CHECK(info->headroom() == info->maxMapSize - info->usedBytes);
  // Only address space: the file holds the data and no more.
  CHECK(fileSize(dir.sub("data.mdb")) < (1 << 20));
  CHECK(info->mapGrowths == 0);
  CHECK(info->fullWrites == 0);
}

TEST_CASE("a map opened smaller grows when full and the whole write is run again") {
  TempDir dir;
  Options o;
  o.mapSize = 1 << 20;
  o.maxMapSize = 256 << 20;
  auto env = openEnv(dir.path, o);
  Table t = openTable(*env, "blobs");

  auto before = env->info();
  REQUIRE(before.ok());
  CHECK(before->mapSize == (1u << 20));

  // 20 MiB in 10 writes of 2 MiB: every early write overflows the map.
  int runs = 0;
  int commits = 0;
  const std::string blob(4096, 'x');
  for (std::uint64_t batch = 0; batch < 10; ++batch) {
    Status s = env->update([&](WriteTxn& txn) -> Status {
      ++runs;
      txn.onCommit([&] { ++commits; });
      for (std::uint64_t i = 0; i < 512; ++i) {
        std::string value = blob;
        value[0] = static_cast<char>('a' + batch);
        if (auto r = txn.put(t, u64Key(batch * 512 + i), value); !r) return r;
      }
      return {};
    });
    REQUIRE_MESSAGE(s.ok(), s.error().message);
    // Reads between the writes see each grown map.
    auto last = getString(*env, t, u64Key(batch * 512 + 511));
    REQUIRE(last.has_value());
    CHECK((*last)[0] == static_cast<char>('a' + batch));
  }
  CHECK(commits == 10);
  CHECK(runs > 10);  // some writes ran again after the map grew

  auto after = env->info();
  REQUIRE(after.ok());
  CHECK(after->mapSize >= (20u << 20));
  CHECK(after->mapGrowths > 0);
  CHECK(after->usedBytes > (20u << 20));
  CHECK(after->lastTxnId > before->lastTxnId);
  CHECK(after->fullWrites == 0);

  auto txn = env->read();
  REQUIRE(txn.ok());
  auto n = txn->count(t);
  REQUIRE(n.ok());
  CHECK(*n == 5120);
  for (std::uint64_t batch = 0; batch < 10; ++batch) {
    auto v = txn->get(t, u64Key(batch * 512 + 7));
    REQUIRE(v.ok());
    REQUIRE(v->has_value());
    CHECK((**v)[0] == static_cast<char>('a' + batch));
    CHECK((**v).size() == 4096);
  }
}

TEST_CASE("a write larger than the maximum map size fails and leaves nothing") {
  TempDir dir;
  Options o;
  o.mapSize = 1 << 20;
  o.maxMapSize = 4 << 20;
  auto env = openEnv(dir.path, o);
  Table t = openTable(*env, "blobs");
  Status s = putBlobs(*env, t, 0, 2048);  // 8 MiB
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().code == MDB_MAP_FULL);
  CHECK(s.error().message.find("is full") != std::string::npos);
  CHECK(s.error().message.find("of 4.0 MiB") != std::string::npos);
  CHECK(s.error().message.find("raise the maximum map size") != std::string::npos);
  CHECK(countOf(*env, t) == 0);
  auto info = env->info();
  REQUIRE(info.ok());
  CHECK(info->mapSize == (4u << 20));  // it grew as far as it could
  CHECK(info->fullWrites == 1);
}

TEST_CASE("a write that needs the map to grow while a read transaction is open fails at once") {
  TempDir dir;
  Options o;
  o.mapSize = 1 << 20;
  o.maxMapSize = 64 << 20;
  auto env = openEnv(dir.path, o);
  Table t = openTable(*env, "blobs");
  REQUIRE(env->update([&](WriteTxn& txn) { return txn.put(t, "before", "x"); }).ok());
  {
    HeldReader snapshot(*env, t, "before");  // e.g. raftd's snapshot thread

    auto start = std::chrono::steady_clock::now();
    Status s = putBlobs(*env, t, 0, 512);  // 2 MiB: the map would have to grow
    auto took = std::chrono::steady_clock::now() - start;
    REQUIRE_FALSE(s.ok());
    CHECK(took < std::chrono::milliseconds(500));
    CHECK(s.error().code == MDB_MAP_FULL);
    CHECK_MESSAGE(s.error().message.find("is full") != std::string::npos, s.error().message);
    CHECK_MESSAGE(s.error().message.find("while a transaction of this process is open") !=
                      std::string::npos,
                  s.error().message);

    // The store is as it was, for reads and for writes that fit.
    CHECK(getString(*env, t, "before") == "x");
    CHECK(countOf(*env, t) == 1);
    REQUIRE(putBlobs(*env, t, 0, 16).ok());
    CHECK(countOf(*env, t) == 17);
    CHECK(snapshot.end() == std::pair<std::string, std::string>{"x", "x"});
  }
  // With no reader open the map grows, and the same write goes through.
  REQUIRE(putBlobs(*env, t, 0, 512).ok());
  CHECK(countOf(*env, t) == 513);
  auto info = env->info();
  REQUIRE(info.ok());
  CHECK(info->mapGrowths > 0);
  CHECK(info->fullWrites == 1);
}

TEST_CASE("a full store fails a write at once; reads and smaller writes go on") {
  TempDir dir;
  Options o;
  o.maxMapSize = 1 << 20;  // and the map opened at that size
  auto env = openEnv(dir.path, o);
  Table t = openTable(*env, "blobs");
  REQUIRE(putBlobs(*env, t, 0, 64).ok());  // 256 KiB
  auto before = env->info();
  REQUIRE(before.ok());
  CHECK(before->mapSize == (1u << 20));
  CHECK(before->headroom() < (1u << 20) - 64 * 4096);
  {
    HeldReader snapshot(*env, t, u64Key(0));
    auto start = std::chrono::steady_clock::now();
    Status s = putBlobs(*env, t, 1000, 256);  // 1 MiB
    auto took = std::chrono::steady_clock::now() - start;
    REQUIRE_FALSE(s.ok());
    CHECK(took < std::chrono::milliseconds(500));
    CHECK(s.error().code == MDB_MAP_FULL);
    CHECK_MESSAGE(s.error().message.find("lmdb: the store in " + dir.path + " is full") == 0,
                  s.error().message);
    CHECK_MESSAGE(s.error().message.find("of 1.0 MiB") != std::string::npos, s.error().message);
    CHECK(countOf(*env, t) == 64);
    REQUIRE(putBlobs(*env, t, 1000, 16).ok());
    CHECK(countOf(*env, t) == 80);
    CHECK(snapshot.end().second == std::string(4096, 'b'));
  }
  auto after = env->info();
  REQUIRE(after.ok());
  CHECK(after->fullWrites == 1);
  CHECK(after->headroom() < before->headroom());
}

TEST_CASE("a write the disk refuses is undone, and the store stays usable") {
  TempDir dir;
  auto env = openEnv(dir.path);
  Table t = openTable(*env, "blobs");
  REQUIRE(putBlobs(*env, t, 0, 16).ok());
  {
    // Room for a few pages more, not for 2 MiB.
    FileSizeLimit limit(static_cast<rlim_t>(fileSize(dir.sub("data.mdb"))) + (64 << 10));
    Status s = putBlobs(*env, t, 1000, 512);
    REQUIRE_FALSE(s.ok());
    // EFBIG, or EIO when the write that crossed the limit was cut short (LMDB's code for a
    // short write: a disk that filled up mid-write looks the same).
    CHECK_MESSAGE((s.error().code == EFBIG || s.error().code == EIO), s.error().message);
    CHECK_MESSAGE(s.error().message.find("the write was undone") != std::string::npos,
                  s.error().message);
    CHECK(countOf(*env, t) == 16);
    CHECK(getString(*env, t, u64Key(3)) == std::string(4096, 'b'));
    REQUIRE(env->update([&](WriteTxn& txn) { return txn.put(t, "small", "fits"); }).ok());
    CHECK(getString(*env, t, "small") == "fits");
  }
  REQUIRE(putBlobs(*env, t, 1000, 512).ok());
  CHECK(countOf(*env, t) == 16 + 1 + 512);
}

TEST_CASE("committed writes survive a SIGKILL of the writer") {
  TempDir dir;
  constexpr int kWanted = 50;  // commits to see before the kill
  int pipeFds[2];
  REQUIRE(pipe(pipeFds) == 0);

  Child child;
  child.pid = fork();
  REQUIRE(child.pid >= 0);
  if (child.pid == 0) {
    // The child: its own environment (an LMDB env must not cross fork()).
    close(pipeFds[0]);
    auto env = Environment::open(dir.path);
    if (!env) _exit(2);
    auto t = (*env)->table("log");
    if (!t) _exit(3);
    for (std::uint64_t i = 0; i < 1000000; ++i) {
      Status s = (*env)->update([&](WriteTxn& txn) {
        return txn.put(*t, u64Key(i), "entry " + std::to_string(i));
      });
      if (!s) _exit(4);
      // One byte per commit, written only after update() returned: the parent may count it.
      if (write(pipeFds[1], "c", 1) != 1) _exit(5);
    }
    _exit(0);
  }
  close(pipeFds[1]);

  int seen = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (seen < kWanted && std::chrono::steady_clock::now() < deadline) {
    pollfd p{pipeFds[0], POLLIN, 0};
    if (poll(&p, 1, 1000) <= 0) continue;
    char buf[64];
    ssize_t n = read(pipeFds[0], buf, sizeof buf);
    if (n <= 0) break;  // the child ended early
    seen += static_cast<int>(n);
  }
  REQUIRE(kill(child.pid, SIGKILL) == 0);
  int wstatus = 0;
  REQUIRE(waitpid(child.pid, &wstatus, 0) == child.pid);
  child.pid = -1;
  close(pipeFds[0]);
  CHECK_MESSAGE(seen >= kWanted, "the child committed only " << seen << " entries in 60 s");
  CHECK(WIFSIGNALED(wstatus));

  auto env = openEnv(dir.path);
  Table t = openTable(*env, "log");
  std::uint64_t next = 0;
  Status s = env->view([&](ReadTxn& txn) {
    return txn.scanRange(t, {}, {}, [&](std::string_view k, std::string_view v) {
      CHECK(readU64(k) == next);
      CHECK(v == "entry " + std::to_string(next));
      ++next;
      return true;
    });
  });
  REQUIRE(s.ok());
  CHECK(next >= static_cast<std::uint64_t>(seen));  // no commit that was reported is lost

  // Usable after the crash: the next write goes on.
  s = env->update([&](WriteTxn& txn) { return txn.put(t, u64Key(next), "after"); });
  REQUIRE_MESSAGE(s.ok(), s.error().message);
  CHECK(getString(*env, t, u64Key(next)) == "after");
}

TEST_CASE("read-only open") {
  TempDir dir;
  {
    auto env = openEnv(dir.path);
    Table t = openTable(*env, "things");
    REQUIRE(env->update([&](WriteTxn& txn) { return txn.put(t, "k", "v"); }).ok());
  }
  Options o;
  o.readOnly = true;
  auto env = openEnv(dir.path, o);
  CHECK(env->readOnly());
  Table t = openTable(*env, "things");
  CHECK(getString(*env, t, "k") == "v");
  Status s = env->update([&](WriteTxn& txn) { return txn.put(t, "k", "w"); });
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().code == EACCES);
  auto missing = env->table("nothing");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == MDB_NOTFOUND);
  CHECK(missing.error().message.find("nothing") != std::string::npos);
  CHECK(getString(*env, t, "k") == "v");

  // Read-only never creates: a missing directory is an error.
  auto none = Environment::open(dir.sub("absent"), o);
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().code == ENOENT);
}

TEST_CASE("copy, then open the copy") {
  TempDir dir;
  auto env = openEnv(dir.sub("live"));
  Table t = openTable(*env, "things");
  REQUIRE(env->update([&](WriteTxn& txn) -> Status {
                for (std::uint64_t i = 0; i < 1000; ++i) {
                  if (auto r = txn.put(t, u64Key(i), std::string(100, 'v')); !r) return r;
                }
                return {};
              }).ok());
  // Free pages in the live env, which the compact copy leaves out.
  REQUIRE(env->update([&](WriteTxn& txn) -> Status {
                for (std::uint64_t i = 0; i < 900; ++i) {
                  auto r = txn.del(t, u64Key(i));
                  if (!r) return r.error();
                }
                return {};
              }).ok());

  for (bool compact : {false, true}) {
    CAPTURE(compact);
    std::string target = dir.sub(compact ? "compact" : "plain");
    Status s = env->copy(target, compact);
    REQUIRE_MESSAGE(s.ok(), s.error().message);
    // A second copy into the same place is refused rather than overwriting.
    CHECK(codeOf(env->copy(target, compact)) == EEXIST);

    auto copy = openEnv(target);
    Table ct = openTable(*copy, "things");
    auto keys = keysIn(*copy, ct);
    REQUIRE(keys.size() == 100);
    CHECK(readU64(keys.front()) == 900u);
    CHECK(readU64(keys.back()) == 999u);
    // The copy is a full environment: writable.
    REQUIRE(copy->update([&](WriteTxn& txn) { return txn.put(ct, "new", "x"); }).ok());
  }
}
