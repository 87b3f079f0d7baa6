#include "common/lmdb.h"

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <utility>

namespace shoal::lmdb {

namespace {

// update() grows the map by doubling; this many attempts reach any size_t.
constexpr int kMaxWriteAttempts = 64;

std::string mib(std::size_t bytes) {
  char out[32];
  std::snprintf(out, sizeof out, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return out;
}

// The disk, rather than the map, is full: the write fails the same way.
bool diskFull(int code) { return code == ENOSPC || code == EDQUOT || code == EFBIG; }

// LMDB reports a write cut short as EIO; a disk that filled up mid-write does that. When the
// file system of dir is all but full, say so (ENOSPC) rather than leave it an I/O error.
int commitError(int code, const std::string& dir) {
  struct statvfs fs{};
  if (code != EIO || ::statvfs(dir.c_str(), &fs) != 0) {
    return code;
  }
  // Root may use the blocks reserved for it.
  std::uint64_t blocks = ::geteuid() == 0 ? fs.f_bfree : fs.f_bavail;
  return blocks * fs.f_frsize < (std::uint64_t{1} << 20) ? ENOSPC : code;
}

MDB_val toVal(std::string_view s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}

std::string_view toView(const MDB_val& v) {
  return {static_cast<const char*>(v.mv_data), v.mv_size};
}

const char* advice(int code) {
  switch (code) {
    case MDB_MAP_FULL:
      return "the store reached its maximum map size: raise the maximum map size or remove data";
    case MDB_DBS_FULL:
      return "too many named tables are open: raise Options::maxTables";
    case MDB_READERS_FULL:
      return "too many read transactions at once: raise Options::maxReaders or end idle readers";
    case MDB_TXN_FULL:
      return "the transaction has too many dirty pages: split the work into smaller batches";
    case MDB_BAD_VALSIZE:
      return "a key is empty or longer than 511 bytes (or a DUPSORT value is longer than "
             "511 bytes): shorten it";
    case MDB_INCOMPATIBLE:
      return "the table exists with other flags: open it with the flags it was created with";
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
      return "the directory does not hold an LMDB environment of this version: check the "
             "state dir, or restore it from a snapshot";
    case MDB_CORRUPTED:
    case MDB_PANIC:
      return "the store is damaged: stop the daemon and restore the state dir from a "
             "snapshot (or remove it and rejoin the node)";
    case MDB_KEYEXIST:
      return "the key exists already";
    case MDB_MAP_RESIZED:
      return "another process grew the map: retry";
    case MDB_BAD_TXN:
      return "the transaction failed earlier and must be aborted: this is a bug, report it";
    case EACCES:
    case EPERM:
      return "check the owner and permissions of the state dir, and whether it was opened "
             "read-only";
    case ENOENT:
      return "the directory does not exist: create it or fix the path";
    case ENOSPC:
      return "the disk is full: free space on the state dir's file system";
    case EDQUOT:
      return "the disk quota of the daemon's user is used up: free space or raise the quota";
    case EFBIG:
      return "a file size limit (ulimit -f) keeps the store's file from growing: raise it";
    case EIO:
      return "a write to the disk failed or was cut short: check the state dir's file "
             "system (free space, errors in the kernel log)";
    case EDEADLK:
      return "this would wait for itself: see the comments in common/lmdb.h";
    default:
      return nullptr;
  }
}

// Directories need search permission wherever files have read permission.
mode_t dirMode(unsigned fileMode) {
  return static_cast<mode_t>(fileMode | ((fileMode & 0444) >> 2));
}

Status makeDir(const std::string& dir, unsigned fileMode) {
  if (::mkdir(dir.c_str(), dirMode(fileMode)) == 0 || errno == EEXIST) {
    return {};
  }
  return error(errno, "create directory", {}, dir);
}

}  // namespace

Error error(int code, std::string_view op, std::string_view table, std::string_view path) {
  std::string m = "lmdb: ";
  m += op;
  if (!table.empty()) {
    m += " (table '";
    m += table;
    m += "')";
  }
  if (!path.empty()) {
    m += " in ";
    m += path;
  }
  m += " failed: ";
  m += mdb_strerror(code);
  if (const char* a = advice(code)) {
    m += "; ";
    m += a;
  }
  return Error{std::move(m), code};
}

// ---- MapGate

void MapGate::enter() {
  std::lock_guard lock(mutex_);
  ++active_;
}

void MapGate::leave() {
  std::lock_guard lock(mutex_);
  assert(active_ > 0);
  --active_;
}

bool MapGate::tryExclusive(const std::function<void()>& fn) {
  std::lock_guard lock(mutex_);
  if (active_ != 0) {
    return false;
  }
  fn();
  return true;
}

// ---- Cursor

Cursor::Cursor(Cursor&& other) noexcept
    : cursor_(std::exchange(other.cursor_, nullptr)),
      table_(other.table_),
      valid_(std::exchange(other.valid_, false)),
      key_(other.key_),
      value_(other.value_),
      status_(std::move(other.status_)) {}

Cursor& Cursor::operator=(Cursor&& other) noexcept {
  if (this != &other) {
    if (cursor_ != nullptr) {
      mdb_cursor_close(cursor_);
    }
    cursor_ = std::exchange(other.cursor_, nullptr);
    table_ = other.table_;
    valid_ = std::exchange(other.valid_, false);
    key_ = other.key_;
    value_ = other.value_;
    status_ = std::move(other.status_);
  }
  return *this;
}

Cursor::~Cursor() {
  if (cursor_ != nullptr) {
    mdb_cursor_close(cursor_);
  }
}

bool Cursor::move(MDB_cursor_op op, std::string_view key, const char* what) {
  MDB_val k = toVal(key);
  MDB_val v{0, nullptr};
  int rc = mdb_cursor_get(cursor_, &k, &v, op);
  if (rc == 0) {
    valid_ = true;
    key_ = toView(k);
    value_ = toView(v);
    return true;
  }
  valid_ = false;
  key_ = {};
  value_ = {};
  if (rc != MDB_NOTFOUND) {
    status_ = error(rc, what, table_.name());
  }
  return false;
}

bool Cursor::first() { return move(MDB_FIRST, {}, "cursor first"); }
bool Cursor::last() { return move(MDB_LAST, {}, "cursor last"); }
bool Cursor::seek(std::string_view key) { return move(MDB_SET_RANGE, key, "cursor seek"); }
bool Cursor::seekExact(std::string_view key) { return move(MDB_SET_KEY, key, "cursor seek"); }
bool Cursor::next() { return move(MDB_NEXT, {}, "cursor next"); }
bool Cursor::prev() { return move(MDB_PREV, {}, "cursor prev"); }
bool Cursor::nextDup() { return move(MDB_NEXT_DUP, {}, "cursor next duplicate"); }
bool Cursor::nextKey() { return move(MDB_NEXT_NODUP, {}, "cursor next key"); }

Result<std::size_t> Cursor::duplicates() const {
  std::size_t n = 0;
  if (int rc = mdb_cursor_count(cursor_, &n)) {
    return error(rc, "count duplicates", table_.name());
  }
  return static_cast<std::size_t>(n);
}

// ---- Txn

Result<std::optional<std::string_view>> Txn::get(const Table& table,
                                                 std::string_view key) const {
  MDB_val k = toVal(key);
  MDB_val v{0, nullptr};
  int rc = mdb_get(txn_, table.dbi(), &k, &v);
  if (rc == MDB_NOTFOUND) {
    return std::optional<std::string_view>{};
  }
  if (rc != 0) {
    return error(rc, "get", table.name());
  }
  return std::optional<std::string_view>{toView(v)};
}

Result<std::uint64_t> Txn::count(const Table& table) const {
  MDB_stat st{};
  if (int rc = mdb_stat(txn_, table.dbi(), &st)) {
    return error(rc, "count entries", table.name());
  }
  return static_cast<std::uint64_t>(st.ms_entries);
}

Result<Cursor> Txn::cursor(const Table& table) const {
  MDB_cursor* c = nullptr;
  if (int rc = mdb_cursor_open(txn_, table.dbi(), &c)) {
    return error(rc, "open cursor", table.name());
  }
  return Cursor(c, table);
}

Status Txn::scanRange(const Table& table, std::string_view from, std::string_view to,
                      const Visitor& visit) const {
  auto c = cursor(table);
  if (!c) {
    return c.error();
  }
  MDB_val end = toVal(to);
  for (bool on = from.empty() ? c->first() : c->seek(from); on; on = c->next()) {
    if (!to.empty()) {
      // The table's own order (it differs from byte order for MDB_INTEGERKEY tables).
      MDB_val k = toVal(c->key());
      if (mdb_cmp(txn_, table.dbi(), &k, &end) >= 0) {
        break;
      }
    }
    if (!visit(c->key(), c->value())) {
      break;
    }
  }
  return c->status();
}

Status Txn::scanPrefix(const Table& table, std::string_view prefix,
                       const Visitor& visit) const {
  auto c = cursor(table);
  if (!c) {
    return c.error();
  }
  for (bool on = prefix.empty() ? c->first() : c->seek(prefix);
       on && c->key().substr(0, prefix.size()) == prefix; on = c->next()) {
    if (!visit(c->key(), c->value())) {
      break;
    }
  }
  return c->status();
}

// ---- ReadTxn

ReadTxn::ReadTxn(ReadTxn&& other) noexcept
    : Txn(std::exchange(other.txn_, nullptr)), gate_(std::exchange(other.gate_, nullptr)) {}

ReadTxn::~ReadTxn() {
  if (txn_ != nullptr) {
    mdb_txn_abort(txn_);
    gate_->leave();
  }
}

// ---- WriteTxn

Status WriteTxn::check(int rc, const char* op, const Table& table) {
  if (rc == 0) {
    return {};
  }
  if (rc == MDB_MAP_FULL) {
    mapFull_ = true;
  }
  return error(rc, op, table.name());
}

Status WriteTxn::put(const Table& table, std::string_view key, std::string_view value,
                     unsigned flags) {
  MDB_val k = toVal(key);
  MDB_val v = toVal(value);
  return check(mdb_put(txn_, table.dbi(), &k, &v, flags), "put", table);
}

Result<bool> WriteTxn::del(const Table& table, std::string_view key) {
  MDB_val k = toVal(key);
  int rc = mdb_del(txn_, table.dbi(), &k, nullptr);
  if (rc == MDB_NOTFOUND) {
    return false;
  }
  if (Status s = check(rc, "delete", table); !s) {
    return s.error();
  }
  return true;
}

Result<bool> WriteTxn::del(const Table& table, std::string_view key, std::string_view value) {
  MDB_val k = toVal(key);
  MDB_val v = toVal(value);
  int rc = mdb_del(txn_, table.dbi(), &k, &v);
  if (rc == MDB_NOTFOUND) {
    return false;
  }
  if (Status s = check(rc, "delete", table); !s) {
    return s.error();
  }
  return true;
}

Status WriteTxn::clear(const Table& table) {
  return check(mdb_drop(txn_, table.dbi(), 0), "clear", table);
}

// ---- Environment

Result<std::unique_ptr<Environment>> Environment::open(const std::string& dir,
                                                       const Options& given) {
  Options options = given;
  constexpr unsigned kUnsafe = MDB_NOSYNC | MDB_NOMETASYNC | MDB_MAPASYNC;
  if (options.flags & kUnsafe) {
    return Error{"lmdb: open " + dir +
                     ": MDB_NOSYNC, MDB_NOMETASYNC and MDB_MAPASYNC are refused, since a "
                     "committed write must survive a crash (DESIGN.md §5); drop those flags",
                 EINVAL};
  }
  if (options.flags & MDB_WRITEMAP) {
    return Error{"lmdb: open " + dir +
                     ": MDB_WRITEMAP is refused: it makes the file as large as the map, and "
                     "writing into that sparse file on a full disk kills the process with "
                     "SIGBUS rather than failing the write; drop the flag",
                 EINVAL};
  }
  if (options.flags & MDB_RDONLY) {
    options.readOnly = true;
  }
  if (options.mapSize == 0) {
    options.mapSize = options.maxMapSize;
  }
  if (options.maxMapSize < options.mapSize) {
    options.maxMapSize = options.mapSize;
  }
  if (!options.readOnly) {
    if (Status s = makeDir(dir, options.fileMode); !s) {
      return s.error();
    }
  }

  MDB_env* env = nullptr;
  if (int rc = mdb_env_create(&env)) {
    return error(rc, "create environment", {}, dir);
  }
  auto fail = [&](int rc, const char* op) -> Error {
    mdb_env_close(env);
    return error(rc, op, {}, dir);
  };
  if (int rc = mdb_env_set_maxdbs(env, options.maxTables)) {
    return fail(rc, "set max tables");
  }
  if (int rc = mdb_env_set_maxreaders(env, options.maxReaders)) {
    return fail(rc, "set max readers");
  }
  // Read-only: LMDB then maps what the file holds; a writer asks for its configured size.
  if (!options.readOnly) {
    if (int rc = mdb_env_set_mapsize(env, options.mapSize)) {
      return fail(rc, "set map size");
    }
  }
  unsigned flags = options.flags | MDB_NOTLS | (options.readOnly ? MDB_RDONLY : 0u);
  if (int rc = mdb_env_open(env, dir.c_str(), flags, static_cast<mdb_mode_t>(options.fileMode))) {
    return fail(rc, options.readOnly ? "open read-only" : "open");
  }
  // Reader slots of processes that died (a crash, SIGKILL) would pin old pages forever.
  int dead = 0;
  mdb_reader_check(env, &dead);
  return std::unique_ptr<Environment>(new Environment(env, dir, options));
}

Environment::~Environment() { mdb_env_close(env_); }

Status Environment::adoptResize() {
  int rc = 0;
  // Size 0: take the size another process set.
  if (!gate_.tryExclusive([&] { rc = mdb_env_set_mapsize(env_, 0); })) {
    return Error{"lmdb: another process grew the map of " + path_ +
                     ", and this one cannot follow while one of its transactions is open: "
                     "retry when it has ended",
                 MDB_MAP_RESIZED};
  }
  if (rc != 0) {
    return error(rc, "adopt the map size set by another process", {}, path_);
  }
  return {};
}

Error Environment::fullError(const std::string& why) {
  fullWrites_.fetch_add(1);
  MDB_envinfo ei{};
  MDB_stat st{};
  mdb_env_info(env_, &ei);
  mdb_env_stat(env_, &st);
  std::size_t map = ei.me_mapsize;
  std::size_t used = std::min(map, (static_cast<std::size_t>(ei.me_last_pgno) + 1) * st.ms_psize);
  return Error{"lmdb: the store in " + path_ + " is full: the write needs more than the " +
                   mib(map - used) + " left of " + mib(map) + " (" + mib(used) + " used)" + why,
               MDB_MAP_FULL};
}

Status Environment::grow() {
  MDB_envinfo ei{};
  mdb_env_info(env_, &ei);
  std::size_t current = ei.me_mapsize;
  if (current >= options_.maxMapSize) {
    return fullError("; it was undone: remove data, or raise the maximum map size");
  }
  std::size_t next = std::min(current * 2, options_.maxMapSize);
  int rc = 0;
  // Never waits: the writer may be a daemon's loop, and a reader a snapshot of minutes.
  if (!gate_.tryExclusive([&] { rc = mdb_env_set_mapsize(env_, next); })) {
    return fullError(", and the map cannot grow (up to " + mib(options_.maxMapSize) +
                     ") while a transaction of this process is open; it was undone: retry "
                     "when readers have ended, or open the store at its maximum map size "
                     "(the default)");
  }
  if (rc != 0) {
    return error(rc, "grow the map to " + mib(next), {}, path_);
  }
  growths_.fetch_add(1);
  return {};
}

Result<ReadTxn> Environment::read() {
  for (int attempt = 0; attempt < 3; ++attempt) {
    gate_.enter();
    MDB_txn* txn = nullptr;
    int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn);
    if (rc == 0) {
      return ReadTxn(txn, &gate_);
    }
    gate_.leave();
    if (rc != MDB_MAP_RESIZED) {
      return error(rc, "begin read transaction", {}, path_);
    }
    if (Status s = adoptResize(); !s) {
      return s.error();
    }
  }
  return error(MDB_MAP_RESIZED, "begin read transaction", {}, path_);
}

Status Environment::view(const std::function<Status(ReadTxn&)>& fn) {
  auto txn = read();
  if (!txn) {
    return txn.error();
  }
  return fn(*txn);
}

Status Environment::update(const std::function<Status(WriteTxn&)>& fn) {
  if (options_.readOnly) {
    return error(EACCES, "write", {}, path_);
  }
  if (writer_.load() == std::this_thread::get_id()) {
    return error(EDEADLK, "update() inside update()", {}, path_);
  }
  std::lock_guard lock(writeMutex_);
  writer_.store(std::this_thread::get_id());
  struct ClearWriter {
    std::atomic<std::thread::id>& w;
    ~ClearWriter() { w.store(std::thread::id{}); }
  } clearWriter{writer_};

  for (int attempt = 0; attempt < kMaxWriteAttempts; ++attempt) {
    gate_.enter();
    MDB_txn* raw = nullptr;
    int rc = mdb_txn_begin(env_, nullptr, 0, &raw);
    if (rc != 0) {
      gate_.leave();
      if (rc != MDB_MAP_RESIZED) {
        return error(rc, "begin write transaction", {}, path_);
      }
      if (Status s = adoptResize(); !s) {
        return s;
      }
      continue;
    }

    WriteTxn txn(raw);
    bool full = false;
    {
      // Aborts if fn throws, so that the writer lock and the gate are never left held.
      struct Guard {
        MDB_txn*& txn;
        MapGate& gate;
        ~Guard() {
          if (txn != nullptr) {
            mdb_txn_abort(txn);
          }
          gate.leave();
        }
      } guard{txn.txn_, gate_};

      Status st = fn(txn);
      full = txn.mapFull_ || (!st.ok() && st.error().code == MDB_MAP_FULL);
      if (!full && !st.ok()) {
        return st;  // the guard aborts
      }
      if (!full) {
        // A failed commit is aborted by LMDB: the store stays as it was.
        rc = mdb_txn_commit(std::exchange(txn.txn_, nullptr));
        if (rc == MDB_MAP_FULL) {
          full = true;
        } else if (rc != 0) {
          rc = commitError(rc, path_);
          if (diskFull(rc)) {
            fullWrites_.fetch_add(1);
          }
          return error(rc, "commit (the write was undone)", {}, path_);
        }
      }
    }
    if (!full) {
      // After the guard left the gate: hooks may read.
      for (auto& hook : txn.onCommit_) {
        hook();
      }
      return {};
    }
    // Grow, then run the whole write again: LMDB cannot resume a transaction that failed.
    // (The guard has aborted it and left the gate: growth needs no open transaction.)
    if (Status s = grow(); !s) {
      return s;
    }
  }
  return error(MDB_MAP_FULL, "write (gave up after growing the map repeatedly)", {}, path_);
}

Result<Table> Environment::table(const std::string& name, unsigned flags) {
  if (writer_.load() == std::this_thread::get_id()) {
    return error(EDEADLK, "open a table inside update()", name, path_);
  }
  flags &= ~static_cast<unsigned>(MDB_CREATE);
  std::lock_guard lock(tablesMutex_);
  if (auto it = tables_.find(name); it != tables_.end()) {
    if (it->second.second != flags) {
      return Error{"lmdb: table '" + name + "' in " + path_ +
                       " is already open with other flags: open it with the same flags "
                       "everywhere",
                   MDB_INCOMPATIBLE};
    }
    return Table(&it->first, it->second.first, flags);
  }

  MDB_dbi dbi = 0;
  if (options_.readOnly) {
    auto txn = read();
    if (!txn) {
      return txn.error();
    }
    int rc = mdb_dbi_open(txn->raw(), name.c_str(), flags, &dbi);
    if (rc == MDB_NOTFOUND) {
      return Error{"lmdb: table '" + name + "' does not exist in " + path_ +
                       ": the daemon that owns this state creates it when it starts",
                   rc};
    }
    if (rc != 0) {
      return error(rc, "open table", name, path_);
    }
    // Committing (rather than aborting) keeps the handle open for later transactions.
    MDB_txn* raw = std::exchange(txn->txn_, nullptr);
    rc = mdb_txn_commit(raw);
    txn->gate_->leave();
    if (rc != 0) {
      return error(rc, "open table", name, path_);
    }
  } else {
    // A handle opened in a transaction that aborts is closed with it, so a retried update()
    // simply opens it again.
    Status s = update([&](WriteTxn& txn) -> Status {
      if (int rc = mdb_dbi_open(txn.raw(), name.c_str(), flags | MDB_CREATE, &dbi)) {
        if (rc == MDB_MAP_FULL) {
          txn.mapFull_ = true;
        }
        return error(rc, "open table", name, path_);
      }
      return {};
    });
    if (!s) {
      return s.error();
    }
  }
  auto [it, inserted] = tables_.emplace(name, std::make_pair(dbi, flags));
  (void)inserted;
  return Table(&it->first, dbi, flags);
}

Status Environment::copy(const std::string& path, bool compact) {
  if (writer_.load() == std::this_thread::get_id()) {
    return error(EDEADLK, "copy inside update()", {}, path);
  }
  if (Status s = makeDir(path, options_.fileMode); !s) {
    return s;
  }
  struct stat st{};
  std::string data = path + "/data.mdb";
  if (::stat(data.c_str(), &st) == 0) {
    return Error{"lmdb: copy " + path_ + " to " + path + ": " + data +
                     " exists already; copy into an empty directory",
                 EEXIST};
  }
  gate_.enter();
  int rc = mdb_env_copy2(env_, path.c_str(), compact ? MDB_CP_COMPACT : 0);
  gate_.leave();
  if (rc != 0) {
    return error(rc, "copy to " + path, {}, path_);
  }
  return {};
}

Result<Info> Environment::info() {
  MDB_envinfo ei{};
  MDB_stat st{};
  if (int rc = mdb_env_info(env_, &ei)) {
    return error(rc, "read environment info", {}, path_);
  }
  if (int rc = mdb_env_stat(env_, &st)) {
    return error(rc, "read environment stat", {}, path_);
  }
  Info info;
  info.mapSize = ei.me_mapsize;
  info.maxMapSize = options_.maxMapSize;
  info.pageSize = st.ms_psize;
  info.usedPages = static_cast<std::size_t>(ei.me_last_pgno) + 1;
  info.usedBytes = info.usedPages * info.pageSize;
  info.lastTxnId = ei.me_last_txnid;
  info.maxReaders = ei.me_maxreaders;
  info.numReaders = ei.me_numreaders;
  info.mapGrowths = growths_.load();
  info.fullWrites = fullWrites_.load();
  return info;
}

// ---- keys

void appendU64(std::string& out, std::uint64_t value) {
  for (int shift = 56; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((value >> shift) & 0xff));
  }
}

std::string u64Key(std::uint64_t value) {
  std::string out;
  out.reserve(8);
  appendU64(out, value);
  return out;
}

std::optional<std::uint64_t> readU64(std::string_view key) {
  if (key.size() < 8) {
    return std::nullopt;
  }
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) {
    v = (v << 8) | static_cast<unsigned char>(key[static_cast<std::size_t>(i)]);
  }
  return v;
}

std::string prefixEnd(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    auto last = static_cast<unsigned char>(end.back());
    if (last != 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();
  }
  return end;
}

}  // namespace shoal::lmdb
