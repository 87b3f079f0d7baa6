#pragma once
// Snapshots of raftd's state machine as LMDB files (DESIGN.md §5).
//
// A snapshot holds the state-machine tables — every table not named "raft.*" — as a fresh
// LMDB environment. It is written from a read transaction opened on the loop thread, so its
// index is exactly the applied index at that moment, while the copying itself runs on a
// thread of its own: a large store must not stall the loop (a stalled leader loses its
// followers' heartbeats and, with them, its leadership).

#include <string>
#include <utility>
#include <vector>

#include "common/lmdb.h"
#include "common/result.h"

namespace shoal::raftd {

struct StateTable {
  std::string name;
  unsigned flags = 0;  // MDB_DUPSORT and friends, as the table was created
};

// The state-machine tables of an environment, read under txn.
Result<std::vector<StateTable>> stateTables(const lmdb::Txn& txn);

// Writes the tables as they are in `from` into a new environment in directory `dir` (its
// data file is dir/data.mdb). `tables` must be open in `fromEnv` (Environment::table is
// not for other threads); `from` may be used on the calling thread even if it was begun on
// another (MDB_NOTLS).
Status writeStateCopy(const lmdb::Txn& from, const std::vector<std::pair<StateTable, lmdb::Table>>& tables,
                      const std::string& dir);

// Replaces the state-machine tables of `env` by those of the snapshot file `path`, inside
// txn; `opened` are the snapshot's tables paired with env's, opened beforehand.
Status copyTablesInto(lmdb::WriteTxn& txn, const lmdb::Txn& snapshot,
                      const std::vector<std::pair<lmdb::Table, lmdb::Table>>& opened);

}  // namespace shoal::raftd
