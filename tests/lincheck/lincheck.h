#pragma once
// A linearizability checker (Wing & Gong's search with Lowe's memoisation of (linearized set,
// state), as Porcupine and Knossos do) for histories of raftd's store API: reads of one object
// and transactions of creates, updates and deletes with expected versions (DESIGN.md §5).
//
// An operation is invoked at `invoke` and answered at `complete` (any monotonic unit). Two
// operations are ordered only when one's `complete` is strictly before the other's `invoke`;
// equal times count as concurrent, so a coarse clock cannot invent an order. Its outcome is
// what the client learned:
//   Ok       it answered: a read with what it saw; a transaction applied at `index`, or
//            refused by the store (a conflict or a missing object: `applied` false), which
//            the model checks too: a refusal is wrong when every condition held.
//   Failed   it definitely did not take effect (e.g. NotLeader before proposing, or rejected
//            as invalid): left out. Only for certainties: an operation marked Failed that did
//            take effect makes a correct history look broken.
//   Unknown  it may or may not have taken effect (a timeout, "may or may not have been
//            applied"): as Jepsen does, it may take effect at any point after its invocation,
//            or never; `complete` is ignored, and an Unknown read is left out.
//
// The store starts empty: every key is absent before the first operation, so each history
// needs keys of its own.
//
// Versions: an object's version is the raft index of the transaction that last wrote it, so
// every value written (values are unique per write, across all keys) has one version, learned
// from the Ok transaction that wrote it or from an Ok read that saw it. One value reported at
// two versions is not linearizable. A value written only by Unknown transactions and never
// read has no known version and matches no expected version (a client could not have learned
// it). An update or delete applies when the object's version equals the expected one; a
// create when the object is absent; a transaction applies all or nothing, each condition
// judged on the state before it (the store refuses a transaction that changes one key twice
// as invalid: record that as Failed). Not checked: that applied indexes grow in real-time
// order.
//
// Keys no transaction ties together are checked apart (Herlihy & Wing's locality), so a
// history of single-key operations costs little whatever its length; one multi-key
// transaction merges its keys into one search.

#include <cstdint>
#include <string>
#include <vector>

namespace shoal::lincheck {

enum class Outcome { Ok, Failed, Unknown };

struct Change {
  enum Kind { Create, Update, Delete } kind = Create;
  std::string key;               // the object's id
  uint64_t expectedVersion = 0;  // Update, Delete
  std::string value;             // Create, Update: unique across the history
};

struct Operation {
  enum Kind { Read, Txn } kind = Read;
  int client = 0;
  int64_t invoke = 0;
  int64_t complete = 0;
  Outcome outcome = Outcome::Ok;

  std::string key;              // Read
  std::vector<Change> changes;  // Txn: applied all or nothing

  // Ok results.
  bool found = false;           // Read: the object existed
  std::string value;            // Read: its value
  uint64_t version = 0;         // Read: its version
  bool applied = false;         // Txn: applied (true) or refused by the store (false)
  uint64_t index = 0;           // Txn: the raft index it was applied at
};

struct Verdict {
  bool linearizable = false;
  bool gaveUp = false;          // the search hit maxStates: no verdict (linearizable is false)
  uint64_t statesExplored = 0;  // distinct (linearized set, state) configurations, all keys
  // When not linearizable: the operations that could not be placed next, each with what the
  // model held instead, and the longest linearizable prefix found, one operation per line
  // (describe()), a few dozen lines at most; only the keys whose search failed. Also says why
  // for a value with two versions, an Ok operation answered before it was invoked, or giving up.
  std::string explanation;
};

// Deterministic, with no shared state: histories may be checked on several threads at once.
// Memory is about 16 to 48 bytes a state explored (128-bit fingerprints of configurations;
// two configurations sharing one has odds of 2^-128 per pair), so the default limit may take
// up to 768 MiB; a test that expects small searches can pass a smaller maxStates.
Verdict check(const std::vector<Operation>& history, uint64_t maxStates = 20'000'000);

// One line: "client 3 [120..135] txn update k1@17=c3-9 -> ok at 21".
std::string describe(const Operation& op);

}  // namespace shoal::lincheck
