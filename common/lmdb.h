#pragma once
// A small RAII wrapper of LMDB (liblmdb) for every daemon that keeps state (DESIGN.md §1, §5).
//
// - One Environment per state dir. Durable by default: every committed write transaction is
//   on disk when update() returns (MDB_NOSYNC and friends are refused). Throughput comes
//   from putting many changes in one transaction (group commit), not from weaker syncs.
// - One writer at a time inside the process: update() serialises write transactions with a
//   mutex. Read transactions are cheap, independent of threads (MDB_NOTLS) and may run
//   concurrently with the writer.
// - The map is opened at its maximum size (Options::maxMapSize) at once: that only reserves
//   address space, and the file grows with the data. So a write never waits for the map to
//   grow; when the store is full (the map, or the disk) update() fails at once with a clear
//   error, the write is undone, and reads and smaller writes go on.
// - A map opened smaller (Options::mapSize) grows by doubling when a write fills it, but only
//   if no transaction of this process is open at that moment (LMDB cannot move the map under
//   a reader): growth never waits, and a write that needs it then fails like a full store.
//   When it does grow, the whole write is run again. That is why writes only happen through
//   update(): the function given to it may run more than once, and whatever it did in memory
//   must wait for the commit (WriteTxn::onCommit).
// - Every failure is a value: Error.code is the MDB_* (or errno) code, the message names the
//   operation and the table and says what to do.
//
// Views (std::string_view) returned by reads point into the memory map: they stay valid only
// until the transaction that returned them ends.

// Debian's liblmdb header. libshoal-common's own sources have common/ on their include path
// (meson's implicit include directory), where <lmdb.h> would name this very file; this file is
// always reached as "common/lmdb.h" through the tree's root, so the next <lmdb.h> after it is
// the library's.
#include_next <lmdb.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/result.h"

namespace shoal::lmdb {

// The address space a store may take: 16 GiB where there is plenty of it (64-bit systems).
inline constexpr std::size_t kDefaultMaxMapSize =
    sizeof(std::size_t) >= 8 ? std::size_t{16} << 30 : std::size_t{1} << 30;

struct Options {
  // The map size the environment starts with (or keeps, if the file is already larger).
  // 0, the default: maxMapSize, so that the map never has to grow.
  std::size_t mapSize = 0;
  // The most the store may hold; a write beyond it fails with MDB_MAP_FULL.
  std::size_t maxMapSize = kDefaultMaxMapSize;
  unsigned maxTables = 32;
  unsigned maxReaders = 126;
  // For tools that inspect a daemon's state: no write transaction can be started.
  bool readOnly = false;
  // Extra mdb_env_open flags (e.g. MDB_NOMEMINIT). Flags that weaken durability
  // (MDB_NOSYNC, MDB_NOMETASYNC, MDB_MAPASYNC) are refused, and so is MDB_WRITEMAP (it makes
  // the file as large as the map, sparse, and a full disk then kills the process with SIGBUS
  // instead of failing a write); MDB_NOTLS is always added.
  unsigned flags = 0;
  // Mode of the data and lock files (and of the directory, when open() creates it).
  unsigned fileMode = 0600;
};

// What `shoal debug status` shows about a store, and what a daemon needs to refuse writes
// before the store refuses them.
struct Info {
  std::size_t mapSize = 0;     // the map as it is
  std::size_t maxMapSize = 0;  // what it may grow to: the most the store may hold
  std::size_t pageSize = 0;
  // Pages up to the highest one in use. Pages freed inside that range are reused by later
  // writes, so the data may take less.
  std::size_t usedPages = 0;
  std::size_t usedBytes = 0;
  std::uint64_t lastTxnId = 0;
  unsigned maxReaders = 0;
  unsigned numReaders = 0;
  unsigned mapGrowths = 0;  // how often this process grew the map
  // Writes that failed because the store was full (MDB_MAP_FULL) or its disk was (ENOSPC,
  // EDQUOT, EFBIG), since this process opened it.
  std::uint64_t fullWrites = 0;

  // What writes may still add, at the least, before MDB_MAP_FULL (the free pages inside
  // usedBytes come on top). A daemon that refuses writes below some headroom keeps room for
  // the writes it cannot refuse (deletes, its own bookkeeping).
  std::size_t headroom() const { return maxMapSize > usedBytes ? maxMapSize - usedBytes : 0; }
};

// A named table (an LMDB database), opened once per Environment with Environment::table().
// A cheap value: copy it freely; it stays valid as long as its Environment.
class Table {
 public:
  Table() = default;
  const std::string& name() const {
    static const std::string kNone = "(no table)";
    return name_ != nullptr ? *name_ : kNone;
  }
  MDB_dbi dbi() const { return dbi_; }
  unsigned flags() const { return flags_; }
  bool valid() const { return name_ != nullptr; }

 private:
  friend class Environment;
  Table(const std::string* name, MDB_dbi dbi, unsigned flags)
      : name_(name), dbi_(dbi), flags_(flags) {}
  const std::string* name_ = nullptr;  // owned by the Environment's table registry
  MDB_dbi dbi_ = 0;
  unsigned flags_ = 0;
};

class Txn;

// Counts this process's open transactions so that the map is resized only when there are
// none: LMDB may move the map then, which would pull it out from under a reader. It never
// waits for them to end (a reader may be a snapshot that takes minutes): a resize that
// would have to wait is not done. Unlike a rwlock it may be left from another thread than
// the one that entered (read transactions may move between threads).
class MapGate {
 public:
  // Waits only while a resize runs (the time of an mmap).
  void enter();
  void leave();
  // Runs fn if no transaction is open, holding new ones off while it runs; false otherwise.
  bool tryExclusive(const std::function<void()>& fn);

 private:
  std::mutex mutex_;
  unsigned active_ = 0;
};

// A position in a table. Moves return whether the cursor now stands on an entry; an error
// other than "no more entries" leaves the cursor invalid and is kept in status().
// A cursor must be destroyed before its transaction ends.
class Cursor {
 public:
  Cursor(Cursor&& other) noexcept;
  Cursor& operator=(Cursor&& other) noexcept;
  Cursor(const Cursor&) = delete;
  Cursor& operator=(const Cursor&) = delete;
  ~Cursor();

  bool first();
  bool last();
  bool seek(std::string_view key);       // the first entry with a key >= key
  bool seekExact(std::string_view key);  // the first entry with exactly this key
  bool next();                           // also steps through the duplicates of a key
  bool prev();
  bool nextDup();                        // DUPSORT: the next value of the same key
  bool nextKey();                        // DUPSORT: the first value of the next key

  bool valid() const { return valid_; }
  std::string_view key() const { return key_; }
  std::string_view value() const { return value_; }
  const Status& status() const { return status_; }
  // DUPSORT: how many values the current key has.
  Result<std::size_t> duplicates() const;

 private:
  friend class Txn;
  Cursor(MDB_cursor* cursor, const Table& table) : cursor_(cursor), table_(table) {}
  bool move(MDB_cursor_op op, std::string_view key, const char* what);

  MDB_cursor* cursor_ = nullptr;
  Table table_;
  bool valid_ = false;
  std::string_view key_;
  std::string_view value_;
  Status status_;
};

// Called for each entry by the scan functions; return false to stop.
using Visitor = std::function<bool(std::string_view key, std::string_view value)>;

// Reads, shared by read and write transactions.
class Txn {
 public:
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;

  // The value stored under key, or nullopt when there is none (for DUPSORT: the first one).
  Result<std::optional<std::string_view>> get(const Table& table, std::string_view key) const;
  // The number of entries (for DUPSORT: of key/value pairs).
  Result<std::uint64_t> count(const Table& table) const;
  Result<Cursor> cursor(const Table& table) const;

  // Every entry with from <= key < to, in key order; an empty `to` means "to the end".
  Status scanRange(const Table& table, std::string_view from, std::string_view to,
                   const Visitor& visit) const;
  // Every entry whose key starts with prefix, in key order.
  Status scanPrefix(const Table& table, std::string_view prefix, const Visitor& visit) const;

  MDB_txn* raw() const { return txn_; }

 protected:
  Txn(MDB_txn* txn) : txn_(txn) {}
  ~Txn() = default;
  MDB_txn* txn_ = nullptr;
};

// A read transaction: a consistent snapshot. Cheap; usable from any thread, one at a time.
// A long-lived reader keeps old pages from being reused (the store fills faster) and, for a
// map opened below its maximum, keeps it from growing.
class ReadTxn : public Txn {
 public:
  ReadTxn(ReadTxn&& other) noexcept;
  ReadTxn& operator=(ReadTxn&&) = delete;
  ~ReadTxn();

 private:
  friend class Environment;
  ReadTxn(MDB_txn* txn, MapGate* gate) : Txn(txn), gate_(gate) {}
  MapGate* gate_;  // entered for as long as txn_ is open
};

// A write transaction, only ever given out by Environment::update(), which commits it when
// the function returns success and aborts it otherwise.
class WriteTxn : public Txn {
 public:
  // flags: e.g. MDB_NOOVERWRITE (fails with MDB_KEYEXIST) or MDB_NODUPDATA.
  Status put(const Table& table, std::string_view key, std::string_view value,
             unsigned flags = 0);
  // Whether the key existed. DUPSORT: without a value every value of the key is deleted.
  Result<bool> del(const Table& table, std::string_view key);
  Result<bool> del(const Table& table, std::string_view key, std::string_view value);
  // Deletes every entry of the table; the table itself stays.
  Status clear(const Table& table);

  // Runs after this transaction has committed (in order); dropped when it aborts or is
  // retried. For effects outside the store, e.g. publishing watch events.
  void onCommit(std::function<void()> fn) { onCommit_.push_back(std::move(fn)); }

 private:
  friend class Environment;
  WriteTxn(MDB_txn* txn) : Txn(txn) {}
  Status check(int rc, const char* op, const Table& table);

  std::vector<std::function<void()>> onCommit_;
  bool mapFull_ = false;  // an operation hit MDB_MAP_FULL: grow, if it may, and run it again
};

class Environment {
 public:
  // Opens (and, unless read-only, creates) the environment in directory `dir`.
  static Result<std::unique_ptr<Environment>> open(const std::string& dir,
                                                    const Options& options = {});
  ~Environment();
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;

  // Opens a named table once; later calls with the same name return the same handle.
  // flags: MDB_DUPSORT, MDB_INTEGERKEY, MDB_DUPFIXED, ... (MDB_CREATE is implied unless
  // read-only). Call it outside update() — at startup, typically.
  Result<Table> table(const std::string& name, unsigned flags = 0);

  Result<ReadTxn> read();
  // Runs fn in a fresh read transaction.
  Status view(const std::function<Status(ReadTxn&)>& fn);

  // Runs fn in a write transaction and commits it when fn returns success; an error from fn
  // (or from the commit) aborts everything fn wrote, and the store stays as it was, for
  // reads and writes. It never waits for readers. When the store is full the error's code is
  // MDB_MAP_FULL and its message starts "lmdb: the store in <dir> is full"; a full disk
  // gives ENOSPC (or EDQUOT, EFBIG; EIO for a write cut short on a disk that is not full).
  // A map opened below its maximum is grown when that needs no waiting, and fn run again
  // from the start.
  Status update(const std::function<Status(WriteTxn&)>& fn);

  // A consistent copy of the whole environment into directory `path` (created if missing;
  // it must hold no data.mdb). compact: leave out free pages (slower, smaller).
  Status copy(const std::string& path, bool compact = false);

  Result<Info> info();
  const std::string& path() const { return path_; }
  bool readOnly() const { return options_.readOnly; }
  MDB_env* raw() const { return env_; }

 private:
  Environment(MDB_env* env, std::string path, const Options& options)
      : env_(env), path_(std::move(path)), options_(options) {}
  // After a write found the map full: grows it, or says why the store is full.
  Status grow();
  Status adoptResize();
  Error fullError(const std::string& why);

  MDB_env* env_;
  std::string path_;
  Options options_;

  // Serialises write transactions (LMDB allows one; waiting here is cheaper and keeps the
  // map-growth retry in one place).
  std::mutex writeMutex_;
  std::atomic<std::thread::id> writer_{};
  MapGate gate_;
  std::atomic<unsigned> growths_{0};
  std::atomic<std::uint64_t> fullWrites_{0};

  std::mutex tablesMutex_;
  std::map<std::string, std::pair<MDB_dbi, unsigned>> tables_;
};

// Big-endian 8-byte keys, so that numeric order is byte order (LMDB's default key order).
std::string u64Key(std::uint64_t value);
void appendU64(std::string& out, std::uint64_t value);
// The number encoded in the first 8 bytes of key; nullopt if key is shorter.
std::optional<std::uint64_t> readU64(std::string_view key);

// The smallest key greater than every key that starts with prefix; empty when there is none
// (prefix is empty or all 0xff bytes), which scanRange reads as "to the end".
std::string prefixEnd(std::string_view prefix);

// The message for an MDB_* or errno code with advice on what to do.
Error error(int code, std::string_view op, std::string_view table = {},
            std::string_view path = {});

}  // namespace shoal::lmdb
