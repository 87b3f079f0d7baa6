#include "services/raftd/snapshot.h"

#include <filesystem>

namespace shoal::raftd {

Result<std::vector<StateTable>> stateTables(const lmdb::Txn& txn) {
  // Named tables are the keys of LMDB's main database.
  MDB_dbi main;
  if (int rc = mdb_dbi_open(txn.raw(), nullptr, 0, &main); rc != 0)
    return Error{std::string("cannot list the tables: ") + mdb_strerror(rc), rc};
  MDB_cursor* cur;
  if (int rc = mdb_cursor_open(txn.raw(), main, &cur); rc != 0)
    return Error{std::string("cannot list the tables: ") + mdb_strerror(rc), rc};
  std::vector<StateTable> out;
  MDB_val k, v;
  for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    std::string name(static_cast<const char*>(k.mv_data), k.mv_size);
    if (name.starts_with("raft.")) continue;  // the log and hard state are this server's own
    MDB_dbi dbi;
    unsigned flags = 0;
    if (mdb_dbi_open(txn.raw(), name.c_str(), 0, &dbi) == 0) mdb_dbi_flags(txn.raw(), dbi, &flags);
    out.push_back({name, flags & (MDB_DUPSORT | MDB_INTEGERKEY | MDB_DUPFIXED | MDB_REVERSEKEY)});
  }
  mdb_cursor_close(cur);
  return out;
}

Status writeStateCopy(const lmdb::Txn& from, const std::vector<std::pair<StateTable, lmdb::Table>>& tables,
                      const std::string& dir) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  lmdb::Options lo;
  lo.maxTables = 64;
  auto env = lmdb::Environment::open(dir, lo);
  if (!env) return env.error();
  std::vector<std::pair<lmdb::Table, lmdb::Table>> pairs;
  for (auto& [st, source] : tables) {
    auto to = (*env)->table(st.name, st.flags);
    if (!to) return to.error();
    pairs.emplace_back(source, *to);
  }
  return (*env)->update([&](lmdb::WriteTxn& txn) { return copyTablesInto(txn, from, pairs); });
}

Status copyTablesInto(lmdb::WriteTxn& txn, const lmdb::Txn& snapshot,
                      const std::vector<std::pair<lmdb::Table, lmdb::Table>>& opened) {
  for (auto& [from, to] : opened) {
    if (auto s = txn.clear(to); !s) return s;
    Status inner;
    auto s = snapshot.scanPrefix(from, "", [&](std::string_view k, std::string_view v) {
      // The scan yields keys (and duplicates) in the table's own order, so every put appends:
      // no search, and full pages instead of split halves (a smaller file, less to flush).
      inner = txn.put(to, k, v, (to.flags() & MDB_DUPSORT) ? MDB_APPENDDUP : MDB_APPEND);
      return inner.ok();
    });
    if (!s) return s;
    if (!inner) return inner;
  }
  return {};
}

}  // namespace shoal::raftd
