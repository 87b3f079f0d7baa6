#include "services/raftd/raft_storage.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <system_error>

#include <sodium.h>
#include <spdlog/spdlog.h>

namespace shoal::raftd {

using raft::ConfState;
using raft::Entry;
using raft::EntryType;
using raft::HardState;
using raft::Index;
using raft::NodeId;
using raft::SnapshotMeta;
using raft::Term;

namespace {

constexpr uint64_t kFormat = 1;

// raft.meta keys.
constexpr std::string_view kKeyFormat = "format";
constexpr std::string_view kKeyHardState = "hardstate";
constexpr std::string_view kKeySnapshot = "snapshot";
constexpr std::string_view kKeyOffset = "log.offset";
constexpr std::string_view kKeyApplied = "applied";
constexpr std::string_view kKeyNodeId = "node.id";
constexpr std::string_view kKeyClusterId = "cluster.id";

// How many entries open() reads back from the end of the log to warm the term cache: a
// compacted log holds about 10,500 (DESIGN §13), so this covers all of it in practice.
constexpr uint64_t kWarmEntries = 65536;

constexpr const char* kDamaged =
    ": the Raft state of this manager is damaged; restore the state directory from a backup, "
    "or remove it and join this manager to the cluster again";

std::string str(uint64_t v) { return std::to_string(v); }
std::string hex(uint64_t v) { return fmt::format("{:016x}", v); }

Error corrupt(const std::string& what) { return Error{"raft storage: " + what + kDamaged, raft::kErrIo}; }

Error ioError(const std::string& op, const std::string& path, int err) {
  return Error{"raft storage: " + op + " " + path + ": " + std::strerror(err) +
                   " (check the disk and the permissions of the snapshot directory)",
               raft::kErrIo};
}

// A failure of the LMDB layer keeps its message; the code becomes the Storage's kErrIo so the
// core can tell it from kErrCompacted / kErrUnavailable.
Error storeError(const Error& e) { return Error{e.message, raft::kErrIo}; }

// Runs fn in a write transaction. An error fn returns keeps its raft::StorageError code; the
// environment's own (begin, commit: MDB_* or errno codes) become kErrIo.
Status update(lmdb::Environment& env, const std::function<Status(lmdb::WriteTxn&)>& fn) {
  bool inner = false;
  Status st = env.update([&](lmdb::WriteTxn& txn) {
    Status s = fn(txn);
    inner = !s.ok();
    return s;
  });
  if (!st && !inner)
    return storeError(st.error());
  return st;
}

void appendVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

bool readVarint(std::string_view& in, uint64_t& v) {
  v = 0;
  for (unsigned shift = 0; shift < 64 && !in.empty(); shift += 7) {
    auto b = static_cast<unsigned char>(in.front());
    in.remove_prefix(1);
    if (shift == 63 && b > 1)
      return false;
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80))
      return true;
  }
  return false;
}

// A sequence of big-endian uint64 values, read with bounds checks.
class U64Reader {
 public:
  explicit U64Reader(std::string_view in) : in_(in) {}
  bool next(uint64_t& v) {
    auto r = lmdb::readU64(in_);
    if (!r)
      return false;
    v = *r;
    in_.remove_prefix(8);
    return true;
  }
  bool done() const { return in_.empty(); }

 private:
  std::string_view in_;
};

std::string encodeU64(uint64_t v) { return lmdb::u64Key(v); }

Result<uint64_t> decodeU64(std::string_view key, std::string_view v) {
  if (v.size() != 8)
    return corrupt("raft.meta record '" + std::string(key) + "' is " + str(v.size()) +
                   " bytes, expected 8");
  return *lmdb::readU64(v);
}

std::string encodeHardState(const HardState& hs) {
  std::string out;
  lmdb::appendU64(out, hs.term);
  lmdb::appendU64(out, hs.vote);
  lmdb::appendU64(out, hs.commit);
  return out;
}

Result<HardState> decodeHardState(std::string_view v) {
  HardState hs;
  U64Reader r(v);
  if (!r.next(hs.term) || !r.next(hs.vote) || !r.next(hs.commit) || !r.done())
    return corrupt("raft.meta record 'hardstate' is " + str(v.size()) + " bytes, expected 24");
  return hs;
}

std::string encodeSnapshotMeta(const SnapshotMeta& m) {
  std::string out;
  lmdb::appendU64(out, m.index);
  lmdb::appendU64(out, m.term);
  lmdb::appendU64(out, m.size);
  lmdb::appendU64(out, m.conf.voters.size());
  for (NodeId id : m.conf.voters)
    lmdb::appendU64(out, id);
  lmdb::appendU64(out, m.conf.learners.size());
  for (NodeId id : m.conf.learners)
    lmdb::appendU64(out, id);
  lmdb::appendU64(out, m.checksum);
  return out;
}

Result<SnapshotMeta> decodeSnapshotMeta(std::string_view v) {
  SnapshotMeta m;
  U64Reader r(v);
  auto bad = [&] {
    return corrupt("raft.meta record 'snapshot' (" + str(v.size()) +
                   " bytes) does not hold index, term, size, voters and learners");
  };
  auto readIds = [&](std::vector<NodeId>& ids) {
    uint64_t n = 0;
    if (!r.next(n) || n > v.size() / 8)
      return false;
    ids.resize(n);
    for (NodeId& id : ids)
      if (!r.next(id))
        return false;
    return true;
  };
  if (!r.next(m.index) || !r.next(m.term) || !r.next(m.size) || !readIds(m.conf.voters) ||
      !readIds(m.conf.learners))
    return bad();
  // Records written before snapshots had checksums end here.
  if (!r.done() && (!r.next(m.checksum) || !r.done()))
    return bad();
  return m;
}

std::string encodeEntry(const Entry& e) {
  std::string out;
  out.reserve(1 + 10 + e.data.size());
  out.push_back(static_cast<char>(e.type));
  appendVarint(out, e.term);
  out += e.data;
  return out;
}

// The type byte and term at the front of an encoded entry; v is left at the data.
Result<std::pair<EntryType, Term>> decodeEntryHeader(Index i, std::string_view& v) {
  if (v.empty())
    return corrupt("raft.log entry " + str(i) + " is empty");
  auto type = static_cast<uint8_t>(v.front());
  if (type != static_cast<uint8_t>(EntryType::Normal) &&
      type != static_cast<uint8_t>(EntryType::ConfChange))
    return corrupt("raft.log entry " + str(i) + " has an unknown type " + str(type));
  v.remove_prefix(1);
  uint64_t term = 0;
  if (!readVarint(v, term))
    return corrupt("raft.log entry " + str(i) + " has no valid term");
  return std::pair{static_cast<EntryType>(type), term};
}

Result<Index> decodeLogKey(std::string_view key) {
  if (key.size() != 8)
    return corrupt("raft.log holds a key of " + str(key.size()) + " bytes, expected 8");
  return *lmdb::readU64(key);
}

std::string snapshotFileName(Index index, Term term) {
  return str(index) + "-" + str(term) + ".snap";
}

Status syncPath(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), (directory ? O_DIRECTORY : 0) | O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return ioError("open", path, errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0)
    return ioError("fsync", path, err);
  return {};
}

Result<uint64_t> fileSize(const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0)
    return ioError("stat", path, errno);
  return static_cast<uint64_t>(st.st_size);
}

Status writeAll(int fd, std::string_view data, uint64_t offset, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return ioError("write", path, errno);
    }
    data.remove_prefix(static_cast<size_t>(n));
    offset += static_cast<uint64_t>(n);
  }
  return {};
}

// For a snapshot copy made on another file system than the snapshot directory.
Status copyFile(const std::string& from, const std::string& to) {
  int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0)
    return ioError("open", from, errno);
  int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out < 0) {
    int err = errno;
    ::close(in);
    return ioError("create", to, err);
  }
  Status st;
  std::string buf(1 << 20, '\0');
  uint64_t offset = 0;
  for (;;) {
    ssize_t n = ::read(in, buf.data(), buf.size());
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      st = ioError("read", from, errno);
      break;
    }
    if (n == 0)
      break;
    st = writeAll(out, std::string_view(buf.data(), static_cast<size_t>(n)), offset, to);
    if (!st)
      break;
    offset += static_cast<uint64_t>(n);
  }
  if (st && ::fsync(out) != 0)
    st = ioError("fsync", to, errno);
  ::close(in);
  ::close(out);
  return st;
}

}  // namespace

Result<uint64_t> snapshotChecksum(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return ioError("open", path, errno);
  crypto_generichash_state state;
  crypto_generichash_init(&state, nullptr, 0, 32);
  std::string buf(1 << 20, '\0');
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return ioError("read", path, err);
    }
    if (n == 0)
      break;
    crypto_generichash_update(&state, reinterpret_cast<const unsigned char*>(buf.data()),
                              static_cast<size_t>(n));
  }
  ::close(fd);
  unsigned char digest[32];
  crypto_generichash_final(&state, digest, sizeof digest);
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i)
    v = (v << 8) | digest[i];
  return v == 0 ? 1 : v;
}

Result<std::unique_ptr<RaftStorage>> RaftStorage::open(lmdb::Environment& env,
                                                       std::string snapshotDir) {
  if (snapshotDir.empty())
    return Error{"raft storage: no snapshot directory given", raft::kErrIo};
  std::error_code ec;
  std::filesystem::create_directories(snapshotDir, ec);
  if (ec)
    return Error{"raft storage: create snapshot directory " + snapshotDir + ": " +
                     ec.message() + " (check its parent's permissions)",
                 raft::kErrIo};
  auto log = env.table("raft.log");
  if (!log)
    return storeError(log.error());
  auto meta = env.table("raft.meta");
  if (!meta)
    return storeError(meta.error());
  std::unique_ptr<RaftStorage> s(new RaftStorage(env, std::move(snapshotDir), *log, *meta));
  if (Status st = s->initialize(); !st)
    return st.error();
  Status st = [&]() -> Status {
    auto txn = env.read();
    if (!txn)
      return storeError(txn.error());
    auto state = s->loadState(*txn);
    if (!state)
      return state.error();
    if (Status c = s->checkLog(*txn, *state); !c)
      return c;
    s->state_ = std::move(*state);
    return s->rebuildTermCache(*txn);
  }();
  if (!st)
    return st.error();
  if (Status c = s->checkSnapshotFile(); !c)
    return c.error();
  // Files a crash left behind: a snapshot moved in place but never recorded, a half-received
  // one (the core restarts a transfer from offset 0 after a restart anyway).
  s->removeSnapshotFiles(snapshotFileName(s->state_.snapshot.index, s->state_.snapshot.term),
                         true, true);
  return s;
}

Status RaftStorage::initialize() {
  {
    // A store already initialised needs no write (and may be open read-only, by a tool).
    auto txn = env_.read();
    if (!txn)
      return storeError(txn.error());
    auto metaCount = txn->count(meta_);
    if (!metaCount)
      return storeError(metaCount.error());
    if (*metaCount != 0)
      return {};
  }
  return update(env_, [&](lmdb::WriteTxn& txn) -> Status {
    auto metaCount = txn.count(meta_);
    if (!metaCount)
      return storeError(metaCount.error());
    if (*metaCount != 0)
      return {};
    auto logCount = txn.count(log_);
    if (!logCount)
      return storeError(logCount.error());
    if (*logCount != 0)
      return corrupt("raft.log holds " + str(*logCount) + " entries but raft.meta is empty");
    if (Status st = txn.put(meta_, kKeyFormat, encodeU64(kFormat)); !st)
      return storeError(st.error());
    return putState(txn, State{});
  });
}

Status RaftStorage::putState(lmdb::WriteTxn& txn, const State& st) {
  std::string offset;
  lmdb::appendU64(offset, st.offset);
  lmdb::appendU64(offset, st.offsetTerm);
  const std::pair<std::string_view, std::string> records[] = {
      {kKeyHardState, encodeHardState(st.hardState)},
      {kKeySnapshot, encodeSnapshotMeta(st.snapshot)},
      {kKeyOffset, offset},
      {kKeyApplied, encodeU64(st.applied)},
      {kKeyNodeId, encodeU64(st.nodeId)},
      {kKeyClusterId, st.clusterId},
  };
  for (const auto& [key, value] : records)
    if (Status s = txn.put(meta_, key, value); !s)
      return storeError(s.error());
  return {};
}

Result<RaftStorage::State> RaftStorage::loadState(const lmdb::Txn& txn) const {
  State st;
  auto get = [&](std::string_view key) -> Result<std::string_view> {
    auto v = txn.get(meta_, key);
    if (!v)
      return storeError(v.error());
    if (!*v)
      return corrupt("raft.meta has no '" + std::string(key) + "' record");
    return **v;
  };
  auto format = get(kKeyFormat);
  if (!format)
    return format.error();
  auto version = decodeU64(kKeyFormat, *format);
  if (!version)
    return version.error();
  if (*version != kFormat)
    return Error{"raft storage: raft.meta is in format " + str(*version) + ", this raftd reads " +
                     str(kFormat) + ": run the raftd that wrote it, or a newer one",
                 raft::kErrIo};

  auto hs = get(kKeyHardState);
  if (!hs)
    return hs.error();
  auto hardState = decodeHardState(*hs);
  if (!hardState)
    return hardState.error();
  st.hardState = *hardState;

  auto snap = get(kKeySnapshot);
  if (!snap)
    return snap.error();
  auto snapshot = decodeSnapshotMeta(*snap);
  if (!snapshot)
    return snapshot.error();
  st.snapshot = std::move(*snapshot);

  auto off = get(kKeyOffset);
  if (!off)
    return off.error();
  U64Reader r(*off);
  if (!r.next(st.offset) || !r.next(st.offsetTerm) || !r.done())
    return corrupt("raft.meta record 'log.offset' is " + str(off->size()) +
                   " bytes, expected 16");
  if (st.offset > st.snapshot.index)
    return corrupt("the log is compacted up to " + str(st.offset) +
                   ", past the snapshot at " + str(st.snapshot.index));

  for (auto [key, field] : {std::pair{kKeyApplied, &st.applied}, std::pair{kKeyNodeId, &st.nodeId}}) {
    auto v = get(key);
    if (!v)
      return v.error();
    auto n = decodeU64(key, *v);
    if (!n)
      return n.error();
    *field = *n;
  }
  auto cluster = get(kKeyClusterId);
  if (!cluster)
    return cluster.error();
  st.clusterId = std::string(*cluster);

  auto cursor = txn.cursor(log_);
  if (!cursor)
    return storeError(cursor.error());
  if (cursor->last()) {
    auto last = decodeLogKey(cursor->key());
    if (!last)
      return last.error();
    if (*last <= st.offset)
      return corrupt("raft.log ends at " + str(*last) + ", at or below its compaction point " +
                     str(st.offset));
    st.last = *last;
  } else if (!cursor->status()) {
    return storeError(cursor->status().error());
  } else {
    st.last = st.offset;
  }
  return st;
}

Status RaftStorage::checkLog(const lmdb::Txn& txn, const State& st) const {
  auto count = txn.count(log_);
  if (!count)
    return storeError(count.error());
  if (*count != st.last - st.offset)
    return corrupt("raft.log holds " + str(*count) + " entries, but (" + str(st.offset) + ", " +
                   str(st.last) + "] are " + str(st.last - st.offset));
  if (*count == 0)
    return {};
  auto cursor = txn.cursor(log_);
  if (!cursor)
    return storeError(cursor.error());
  if (!cursor->first())
    return cursor->status() ? corrupt("raft.log has no first entry")
                            : storeError(cursor->status().error());
  auto first = decodeLogKey(cursor->key());
  if (!first)
    return first.error();
  if (*first != st.offset + 1)
    return corrupt("raft.log starts at " + str(*first) + ", expected " + str(st.offset + 1));
  return {};
}

Status RaftStorage::rebuildTermCache(const lmdb::Txn& txn) {
  runs_.clear();
  if (state_.last == state_.offset)
    return {};
  auto cursor = txn.cursor(log_);
  if (!cursor)
    return storeError(cursor.error());
  std::vector<std::pair<Index, Term>> reversed;
  Index expect = state_.last;
  for (bool on = cursor->last(); on && expect > state_.offset && state_.last - expect < kWarmEntries;
       on = cursor->prev(), --expect) {
    auto i = decodeLogKey(cursor->key());
    if (!i)
      return i.error();
    if (*i != expect)
      return corrupt("raft.log has no entry " + str(expect) + " (found " + str(*i) + ")");
    std::string_view v = cursor->value();
    auto header = decodeEntryHeader(*i, v);
    if (!header)
      return header.error();
    Term t = header->second;
    if (reversed.empty() || reversed.back().second != t) {
      if (reversed.size() == kMaxTermRuns)
        break;
      reversed.emplace_back(*i, t);
    } else {
      reversed.back().first = *i;
    }
  }
  if (!cursor->status())
    return storeError(cursor->status().error());
  runs_.assign(reversed.rbegin(), reversed.rend());
  return {};
}

Status RaftStorage::checkSnapshotFile() const {
  const SnapshotMeta& m = state_.snapshot;
  if (m.size == 0)
    return {};
  std::string path = snapshotPath(m);
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0)
    return corrupt("the snapshot file " + path + " of snapshot " + str(m.index) + " (term " +
                   str(m.term) + ") is missing (" + std::strerror(errno) + ")");
  if (static_cast<uint64_t>(st.st_size) != m.size)
    return corrupt("the snapshot file " + path + " is " + str(static_cast<uint64_t>(st.st_size)) +
                   " bytes, its meta says " + str(m.size));
  return {};
}

// ---- reads ----

Result<raft::InitialState> RaftStorage::initialState() const {
  return raft::InitialState{state_.hardState, state_.snapshot.conf};
}

Result<Term> RaftStorage::term(Index i) const {
  if (i < state_.offset)
    return Error{"entry " + str(i) + " is compacted (the log starts after " +
                     str(state_.offset) + ")",
                 raft::kErrCompacted};
  if (i > state_.last)
    return Error{"entry " + str(i) + " is past the last index " + str(state_.last),
                 raft::kErrUnavailable};
  if (i == state_.offset)
    return state_.offsetTerm;
  if (!runs_.empty() && i >= runs_.front().first) {
    auto it = std::upper_bound(runs_.begin(), runs_.end(), i,
                               [](Index v, const auto& run) { return v < run.first; });
    return std::prev(it)->second;
  }
  auto txn = env_.read();
  if (!txn)
    return storeError(txn.error());
  return storedTerm(*txn, i);
}

Result<Term> RaftStorage::storedTerm(const lmdb::Txn& txn, Index i) const {
  auto v = txn.get(log_, lmdb::u64Key(i));
  if (!v)
    return storeError(v.error());
  if (!*v)
    return corrupt("raft.log has no entry " + str(i));
  std::string_view value = **v;
  auto header = decodeEntryHeader(i, value);
  if (!header)
    return header.error();
  return header->second;
}

Result<std::vector<Entry>> RaftStorage::entries(Index lo, Index hi, uint64_t maxBytes) const {
  if (lo <= state_.offset)
    return Error{"entry " + str(lo) + " is compacted (the log starts after " +
                     str(state_.offset) + ")",
                 raft::kErrCompacted};
  if (hi > state_.last + 1)
    return Error{"entries up to " + str(hi - 1) + " asked, last is " + str(state_.last),
                 raft::kErrUnavailable};
  std::vector<Entry> out;
  if (lo >= hi)
    return out;
  auto txn = env_.read();
  if (!txn)
    return storeError(txn.error());
  auto cursor = txn->cursor(log_);
  if (!cursor)
    return storeError(cursor.error());
  uint64_t bytes = 0;
  bool on = cursor->seek(lmdb::u64Key(lo));
  for (Index i = lo; i < hi; ++i, on = cursor->next()) {
    if (!on)
      return cursor->status() ? corrupt("raft.log has no entry " + str(i))
                              : storeError(cursor->status().error());
    auto key = decodeLogKey(cursor->key());
    if (!key)
      return key.error();
    if (*key != i)
      return corrupt("raft.log has no entry " + str(i) + " (found " + str(*key) + ")");
    std::string_view v = cursor->value();
    auto header = decodeEntryHeader(i, v);
    if (!header)
      return header.error();
    bytes += v.size();
    if (!out.empty() && bytes > maxBytes)
      break;
    out.push_back(Entry{header->second, i, header->first, std::string(v)});
  }
  return out;
}

Result<std::string> RaftStorage::snapshotChunk(Index snapshotIndex, uint64_t offset,
                                               uint64_t maxBytes) const {
  const SnapshotMeta& m = state_.snapshot;
  if (snapshotIndex != m.index)
    return Error{"snapshot " + str(snapshotIndex) + " was replaced by " + str(m.index),
                 raft::kErrSnapshotOutOfDate};
  if (offset > m.size)
    return Error{"offset " + str(offset) + " is past the snapshot's " + str(m.size) + " bytes",
                 raft::kErrUnavailable};
  uint64_t want = std::min(maxBytes, m.size - offset);
  if (want == 0)
    return std::string();
  std::string path = snapshotPath(m);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return ioError("open snapshot", path, errno);
  std::string out(want, '\0');
  uint64_t got = 0;
  while (got < want) {
    ssize_t n = ::pread(fd, out.data() + got, want - got, static_cast<off_t>(offset + got));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      int err = errno;
      ::close(fd);
      if (n == 0)
        return corrupt("the snapshot file " + path + " ends before the " + str(m.size) +
                       " bytes its meta says");
      return ioError("read snapshot", path, err);
    }
    got += static_cast<uint64_t>(n);
  }
  ::close(fd);
  return out;
}

// ---- writes ----

Status RaftStorage::append(lmdb::WriteTxn& txn, const std::vector<Entry>& entries) {
  if (entries.empty())
    return {};
  for (size_t k = 1; k < entries.size(); ++k)
    if (entries[k].index != entries[0].index + k)
      return Error{"entries to append are not consecutive: " + str(entries[k].index) +
                       " follows " + str(entries[k - 1].index),
                   raft::kErrUnavailable};
  auto st = loadState(txn);
  if (!st)
    return st.error();
  Index first = st->offset + 1;
  Index last = entries.back().index;
  if (last < first)
    return {};  // all compacted already
  if (entries.front().index > st->last + 1)
    return Error{"appending entry " + str(entries.front().index) + " would leave a gap after " +
                     str(st->last),
                 raft::kErrUnavailable};
  size_t skip = entries.front().index < first ? first - entries.front().index : 0;
  // A conflicting suffix longer than the new entries goes; the rest is overwritten.
  for (Index i = last + 1; i <= st->last; ++i) {
    auto gone = txn.del(log_, lmdb::u64Key(i));
    if (!gone)
      return storeError(gone.error());
    if (!*gone)
      return corrupt("raft.log has no entry " + str(i) + " to truncate");
  }
  std::vector<std::pair<Index, Term>> runs;
  for (size_t k = skip; k < entries.size(); ++k) {
    const Entry& e = entries[k];
    if (Status s = txn.put(log_, lmdb::u64Key(e.index), encodeEntry(e)); !s)
      return storeError(s.error());
    if (runs.empty() || runs.back().second != e.term)
      runs.emplace_back(e.index, e.term);
  }
  st->last = last;
  txn.onCommit([this, state = std::move(*st), runs = std::move(runs)]() mutable {
    state_ = std::move(state);
    while (!runs_.empty() && runs_.back().first >= runs.front().first)
      runs_.pop_back();
    for (const auto& run : runs)
      if (runs_.empty() || runs_.back().second != run.second)
        runs_.push_back(run);
    while (runs_.size() > kMaxTermRuns)
      runs_.pop_front();
  });
  return {};
}

Status RaftStorage::setHardState(lmdb::WriteTxn& txn, const HardState& hs) {
  if (Status s = txn.put(meta_, kKeyHardState, encodeHardState(hs)); !s)
    return storeError(s.error());
  txn.onCommit([this, hs] { state_.hardState = hs; });
  return {};
}

Status RaftStorage::setApplied(lmdb::WriteTxn& txn, Index index) {
  auto v = txn.get(meta_, kKeyApplied);
  if (!v)
    return storeError(v.error());
  if (!*v)
    return corrupt("raft.meta has no 'applied' record");
  auto applied = decodeU64(kKeyApplied, **v);
  if (!applied)
    return applied.error();
  if (index < *applied)
    return Error{"the applied index cannot go back from " + str(*applied) + " to " + str(index) +
                     " (entries would be applied twice)",
                 raft::kErrUnavailable};
  if (Status s = txn.put(meta_, kKeyApplied, encodeU64(index)); !s)
    return storeError(s.error());
  txn.onCommit([this, index] { state_.applied = index; });
  return {};
}

Status RaftStorage::setNodeId(lmdb::WriteTxn& txn, NodeId id) {
  if (id == raft::kNoNode)
    return Error{"node id 0 means nobody: give this server an id of 1 or more",
                 raft::kErrUnavailable};
  auto v = txn.get(meta_, kKeyNodeId);
  if (!v)
    return storeError(v.error());
  if (!*v)
    return corrupt("raft.meta has no 'node.id' record");
  auto old = decodeU64(kKeyNodeId, **v);
  if (!old)
    return old.error();
  if (*old != raft::kNoNode && *old != id)
    return Error{"this Raft state belongs to node " + str(*old) + ", not " + str(id) +
                     ": a server keeps its id for life; remove the state to join as a new node",
                 raft::kErrUnavailable};
  if (Status s = txn.put(meta_, kKeyNodeId, encodeU64(id)); !s)
    return storeError(s.error());
  txn.onCommit([this, id] { state_.nodeId = id; });
  return {};
}

Status RaftStorage::setClusterId(lmdb::WriteTxn& txn, std::string_view id) {
  if (id.empty())
    return Error{"an empty cluster id cannot be recorded", raft::kErrUnavailable};
  auto v = txn.get(meta_, kKeyClusterId);
  if (!v)
    return storeError(v.error());
  if (!*v)
    return corrupt("raft.meta has no 'cluster.id' record");
  if (!(*v)->empty() && **v != id)
    return Error{"this Raft state belongs to cluster " + std::string(**v) + ", not " +
                     std::string(id) + ": remove the state to join another cluster",
                 raft::kErrUnavailable};
  if (Status s = txn.put(meta_, kKeyClusterId, id); !s)
    return storeError(s.error());
  txn.onCommit([this, cluster = std::string(id)] { state_.clusterId = cluster; });
  return {};
}

Status RaftStorage::compact(lmdb::WriteTxn& txn, Index index) {
  auto st = loadState(txn);
  if (!st)
    return st.error();
  if (index <= st->offset)
    return {};
  if (index > st->snapshot.index)
    return Error{"cannot compact past the snapshot (" + str(st->snapshot.index) +
                     "): take a snapshot at " + str(index) + " first",
                 raft::kErrUnavailable};
  if (index > st->last)
    return Error{"cannot compact up to " + str(index) + ": the log ends at " + str(st->last),
                 raft::kErrUnavailable};
  auto t = storedTerm(txn, index);
  if (!t)
    return t.error();
  for (Index i = st->offset + 1; i <= index; ++i) {
    auto gone = txn.del(log_, lmdb::u64Key(i));
    if (!gone)
      return storeError(gone.error());
    if (!*gone)
      return corrupt("raft.log has no entry " + str(i) + " to compact");
  }
  st->offset = index;
  st->offsetTerm = *t;
  std::string offset;
  lmdb::appendU64(offset, st->offset);
  lmdb::appendU64(offset, st->offsetTerm);
  if (Status s = txn.put(meta_, kKeyOffset, offset); !s)
    return storeError(s.error());
  txn.onCommit([this, state = std::move(*st)]() mutable {
    state_ = std::move(state);
    Index first = state_.offset + 1;
    while (runs_.size() >= 2 && runs_[1].first <= first)
      runs_.pop_front();
    if (!runs_.empty() && runs_.front().first < first)
      runs_.front().first = first;
    if (!runs_.empty() && runs_.front().first > state_.last)
      runs_.clear();
  });
  return {};
}

Status RaftStorage::installSnapshot(lmdb::WriteTxn& txn, const SnapshotMeta& meta) {
  auto st = loadState(txn);
  if (!st)
    return st.error();
  if (meta.index <= st->snapshot.index)
    return Error{"snapshot " + str(meta.index) + " is older than the one held (" +
                     str(st->snapshot.index) + ")",
                 raft::kErrSnapshotOutOfDate};
  if (meta.size > 0) {
    std::string path = snapshotPath(meta);
    auto size = fileSize(path);
    if (!size)
      return Error{size.error().message + "; call completeIncoming() before installSnapshot()",
                   raft::kErrIo};
    if (*size != meta.size)
      return Error{"snapshot file " + path + " is " + str(*size) + " bytes, the snapshot " +
                       str(meta.size) + ": it was not received completely",
                   raft::kErrIo};
  }
  if (Status s = txn.clear(log_); !s)
    return storeError(s.error());
  st->snapshot = meta;
  st->offset = meta.index;
  st->offsetTerm = meta.term;
  st->last = meta.index;
  st->applied = meta.index;
  if (Status s = putState(txn, *st); !s)
    return s;
  txn.onCommit([this, state = std::move(*st)]() mutable {
    state_ = std::move(state);
    runs_.clear();
    spdlog::info("raft: installed snapshot {} (term {}, {} bytes) received from the leader",
                 state_.snapshot.index, state_.snapshot.term, state_.snapshot.size);
    removeSnapshotFiles(snapshotFileName(state_.snapshot.index, state_.snapshot.term), true,
                        false);
  });
  return {};
}

Status RaftStorage::bootstrap(lmdb::WriteTxn& txn, const std::vector<NodeId>& voters) {
  if (voters.empty())
    return Error{"bootstrap needs at least one voter", raft::kErrUnavailable};
  std::vector<NodeId> sorted = voters;
  std::sort(sorted.begin(), sorted.end());
  if (sorted.front() == raft::kNoNode ||
      std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
    return Error{"bootstrap voters must be distinct node ids of 1 or more",
                 raft::kErrUnavailable};
  auto st = loadState(txn);
  if (!st)
    return st.error();
  if (st->snapshot.index != 0 || st->last != 0 || st->hardState != HardState{})
    return Error{"cannot bootstrap: this server already holds Raft state (snapshot " +
                     str(st->snapshot.index) + ", last index " + str(st->last) + ", term " +
                     str(st->hardState.term) + "); remove it first to start a new cluster",
                 raft::kErrUnavailable};
  st->snapshot = SnapshotMeta{1, 1, ConfState{voters, {}}, 0};
  st->offset = 1;
  st->offsetTerm = 1;
  st->last = 1;
  st->hardState = HardState{1, raft::kNoNode, 1};
  st->applied = 1;
  if (Status s = putState(txn, *st); !s)
    return s;
  txn.onCommit([this, state = std::move(*st)]() mutable {
    state_ = std::move(state);
    runs_.clear();
  });
  return {};
}

Status RaftStorage::bootstrap(const std::vector<NodeId>& voters) {
  return update(env_, [&](lmdb::WriteTxn& txn) { return bootstrap(txn, voters); });
}

Status RaftStorage::recordSnapshot(Index index, Term term, const ConfState& conf,
                                   std::string path, uint64_t checksum) {
  if (index <= state_.snapshot.index)
    return Error{"snapshot at " + str(index) + " is not newer than the one held (" +
                     str(state_.snapshot.index) + ")",
                 raft::kErrSnapshotOutOfDate};
  auto t = this->term(index);
  if (!t)
    return t.error();
  if (*t != term)
    return Error{"snapshot at " + str(index) + " names term " + str(term) + " but the entry " +
                     "there has term " + str(*t),
                 raft::kErrUnavailable};
  if (index > state_.applied)
    return Error{"snapshot at " + str(index) + " but only " + str(state_.applied) +
                     " is applied: a snapshot holds applied entries only",
                 raft::kErrUnavailable};
  auto size = fileSize(path);
  if (!size)
    return size.error();
  if (checksum == 0 && *size > 0) {
    auto sum = snapshotChecksum(path);
    if (!sum)
      return sum.error();
    checksum = *sum;
  }
  SnapshotMeta meta{index, term, conf, *size, checksum};
  std::string target = snapshotPath(meta);
  if (*size == 0) {
    ::unlink(path.c_str());  // an empty state machine needs no file
  } else {
    if (Status s = syncPath(path, false); !s)
      return s;
    if (::rename(path.c_str(), target.c_str()) != 0) {
      if (errno != EXDEV)
        return ioError("move snapshot to " + target + " from", path, errno);
      std::string tmp = target + ".tmp";
      if (Status s = copyFile(path, tmp); !s) {
        ::unlink(tmp.c_str());
        return s;
      }
      if (::rename(tmp.c_str(), target.c_str()) != 0) {
        int err = errno;
        ::unlink(tmp.c_str());
        return ioError("move snapshot to " + target + " from", tmp, err);
      }
      ::unlink(path.c_str());
    }
    if (Status s = syncPath(snapshotDir_, true); !s)
      return s;
  }
  Status st = update(env_, [&](lmdb::WriteTxn& txn) -> Status {
    auto v = txn.get(meta_, kKeySnapshot);
    if (!v)
      return storeError(v.error());
    if (!*v)
      return corrupt("raft.meta has no 'snapshot' record");
    auto held = decodeSnapshotMeta(**v);
    if (!held)
      return held.error();
    if (index <= held->index)
      return Error{"snapshot at " + str(index) + " is not newer than the one held (" +
                       str(held->index) + ")",
                   raft::kErrSnapshotOutOfDate};
    if (Status s = txn.put(meta_, kKeySnapshot, encodeSnapshotMeta(meta)); !s)
      return storeError(s.error());
    txn.onCommit([this, meta] { state_.snapshot = meta; });
    return {};
  });
  if (!st) {
    if (!target.empty())
      ::unlink(target.c_str());
    return st;
  }
  spdlog::info("raft: recorded snapshot {} (term {}, {} bytes)", index, term, meta.size);
  removeSnapshotFiles(snapshotFileName(index, term), true, false);
  return {};
}

Status RaftStorage::writeChunk(const raft::SnapshotChunk& chunk) {
  const SnapshotMeta& m = chunk.meta;
  if (m.index <= state_.snapshot.index)
    return Error{"snapshot chunk for " + str(m.index) + ", not newer than the snapshot held (" +
                     str(state_.snapshot.index) + ")",
                 raft::kErrSnapshotOutOfDate};
  if (chunk.offset > m.size || chunk.data.size() > m.size - chunk.offset)
    return Error{"snapshot chunk at " + str(chunk.offset) + " of " + str(chunk.data.size()) +
                     " bytes runs past the snapshot's " + str(m.size) + " bytes",
                 raft::kErrUnavailable};
  std::string path = incomingPath(m);
  int fd = -1;
  if (chunk.offset == 0) {
    removeSnapshotFiles({}, false, true);  // an earlier transfer that never completed
    fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
      return ioError("create", path, errno);
  } else {
    fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0)
      return errno == ENOENT
                 ? Error{"snapshot chunk at offset " + str(chunk.offset) + " for snapshot " +
                             str(m.index) + " (term " + str(m.term) +
                             ") but no transfer of it started (no chunk at offset 0)",
                         raft::kErrUnavailable}
                 : ioError("open", path, errno);
    struct stat st{};
    if (::fstat(fd, &st) != 0) {
      int err = errno;
      ::close(fd);
      return ioError("stat", path, err);
    }
    if (static_cast<uint64_t>(st.st_size) != chunk.offset) {
      ::close(fd);
      return Error{"snapshot chunk at offset " + str(chunk.offset) + " but " + path + " holds " +
                       str(static_cast<uint64_t>(st.st_size)) + " bytes: chunks must arrive in order",
                   raft::kErrUnavailable};
    }
  }
  Status st = writeAll(fd, chunk.data, chunk.offset, path);
  if (st && chunk.done) {
    if (chunk.offset + chunk.data.size() != m.size)
      st = Error{"the last snapshot chunk ends at " + str(chunk.offset + chunk.data.size()) +
                     ", the snapshot has " + str(m.size) + " bytes",
                 raft::kErrUnavailable};
    else if (::fsync(fd) != 0)
      st = ioError("fsync", path, errno);
  }
  ::close(fd);
  if (st && chunk.done)
    st = syncPath(snapshotDir_, true);
  return st;
}

Result<std::string> RaftStorage::completeIncoming(const SnapshotMeta& meta) {
  if (meta.index <= state_.snapshot.index)
    return Error{"snapshot " + str(meta.index) + " is older than the one held (" +
                     str(state_.snapshot.index) + ")",
                 raft::kErrSnapshotOutOfDate};
  std::string incoming = incomingPath(meta);
  if (meta.size == 0) {
    ::unlink(incoming.c_str());
    return std::string();
  }
  auto size = fileSize(incoming);
  if (!size)
    return size.error();
  if (*size != meta.size)
    return Error{"incoming snapshot " + incoming + " holds " + str(*size) + " of " +
                     str(meta.size) + " bytes: it is not complete",
                 raft::kErrUnavailable};
  if (meta.checksum != 0) {
    auto sum = snapshotChecksum(incoming);
    if (!sum)
      return sum.error();
    if (*sum != meta.checksum) {
      ::unlink(incoming.c_str());
      return Error{"incoming snapshot " + str(meta.index) + " (term " + str(meta.term) +
                       ") has checksum " + hex(*sum) + " but the leader announced " +
                       hex(meta.checksum) + ": it was damaged on the way and is not opened",
                   raft::kErrIo};
    }
  }
  std::string target = snapshotPath(meta);
  if (::rename(incoming.c_str(), target.c_str()) != 0)
    return ioError("move received snapshot to " + target + " from", incoming, errno);
  if (Status s = syncPath(snapshotDir_, true); !s)
    return s.error();
  return target;
}

Status RaftStorage::discardIncoming() {
  removeSnapshotFiles({}, false, true);
  return {};
}

std::string RaftStorage::snapshotPath(const SnapshotMeta& meta) const {
  if (meta.size == 0)
    return {};
  return snapshotDir_ + "/" + snapshotFileName(meta.index, meta.term);
}

std::string RaftStorage::incomingPath(const SnapshotMeta& meta) const {
  return snapshotDir_ + "/incoming-" + snapshotFileName(meta.index, meta.term);
}

void RaftStorage::removeSnapshotFiles(const std::string& keep, bool old, bool incoming) const {
  std::error_code ec;
  std::filesystem::directory_iterator it(snapshotDir_, ec);
  if (ec) {
    spdlog::warn("raft: cannot list snapshot directory {}: {}", snapshotDir_, ec.message());
    return;
  }
  for (const auto& f : it) {
    std::string name = f.path().filename().string();
    if (!name.ends_with(".snap") && !name.ends_with(".snap.tmp"))
      continue;
    bool isIncoming = name.starts_with("incoming-");
    if (isIncoming ? !incoming : (!old || name == keep))
      continue;
    std::error_code rec;
    std::filesystem::remove(f.path(), rec);
    if (rec)
      spdlog::warn("raft: cannot remove old snapshot file {}: {}", f.path().string(),
                   rec.message());
  }
}

RaftStorageStatus RaftStorage::status() const {
  RaftStorageStatus s;
  s.firstIndex = firstIndex();
  s.lastIndex = lastIndex();
  s.entryCount = state_.last - state_.offset;
  s.applied = state_.applied;
  s.hardState = state_.hardState;
  s.snapshot = state_.snapshot;
  s.snapshotPath = snapshotPath(state_.snapshot);
  s.nodeId = state_.nodeId;
  s.clusterId = state_.clusterId;
  s.cachedTermRuns = runs_.size();
  return s;
}

}  // namespace shoal::raftd
