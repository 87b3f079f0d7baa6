#include "tests/lincheck/lincheck.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

using shoal::lincheck::Change;
using shoal::lincheck::check;
using shoal::lincheck::describe;
using shoal::lincheck::Operation;
using shoal::lincheck::Outcome;
using shoal::lincheck::Verdict;

namespace {

Change create(std::string key, std::string value) {
  return {Change::Create, std::move(key), 0, std::move(value)};
}

Change update(std::string key, uint64_t expected, std::string value) {
  return {Change::Update, std::move(key), expected, std::move(value)};
}

Change remove(std::string key, uint64_t expected) {
  return {Change::Delete, std::move(key), expected, {}};
}

Operation read(int client, int64_t invoke, int64_t complete, std::string key) {
  Operation op;
  op.kind = Operation::Read;
  op.client = client;
  op.invoke = invoke;
  op.complete = complete;
  op.key = std::move(key);
  return op;
}

// A read that saw `value` at `version`.
Operation readSaw(int client, int64_t invoke, int64_t complete, std::string key,
                  std::string value, uint64_t version) {
  Operation op = read(client, invoke, complete, std::move(key));
  op.found = true;
  op.value = std::move(value);
  op.version = version;
  return op;
}

Operation txn(int client, int64_t invoke, int64_t complete, std::vector<Change> changes) {
  Operation op;
  op.kind = Operation::Txn;
  op.client = client;
  op.invoke = invoke;
  op.complete = complete;
  op.changes = std::move(changes);
  return op;
}

// A transaction the store applied at `index`.
Operation applied(int client, int64_t invoke, int64_t complete, std::vector<Change> changes,
                  uint64_t index) {
  Operation op = txn(client, invoke, complete, std::move(changes));
  op.applied = true;
  op.index = index;
  return op;
}

Operation with(Operation op, Outcome outcome) {
  op.outcome = outcome;
  return op;
}

void expectLinearizable(const std::vector<Operation>& history) {
  const Verdict v = check(history);
  CHECK_MESSAGE(v.linearizable, v.explanation);
}

void expectNotLinearizable(const std::vector<Operation>& history) {
  const Verdict v = check(history);
  CHECK_FALSE(v.gaveUp);
  CHECK_FALSE(v.linearizable);
  CHECK(v.explanation.find("not linearizable") != std::string::npos);
}

}  // namespace

TEST_CASE("describe gives one line per operation") {
  CHECK(describe(applied(3, 120, 135, {update("k1", 17, "c3-9")}, 21)) ==
        "client 3 [120..135] txn update k1@17=c3-9 -> ok at 21");
  CHECK(describe(readSaw(1, 5, 9, "k2", "c1-4", 12)) == "client 1 [5..9] read k2 -> c1-4@12");
  CHECK(describe(read(1, 5, 9, "k2")) == "client 1 [5..9] read k2 -> absent");
  CHECK(describe(with(txn(2, 1, 2, {create("k1", "a"), remove("k2", 4)}), Outcome::Unknown)) ==
        "client 2 [1..2] txn create k1=a, delete k2@4 -> unknown");
  CHECK(describe(txn(2, 1, 2, {create("k1", "a")})) ==
        "client 2 [1..2] txn create k1=a -> refused");
  CHECK(describe(with(read(4, 1, 2, "k"), Outcome::Failed)) == "client 4 [1..2] read k -> failed");
}

TEST_CASE("a sequential history is linearizable") {
  expectLinearizable({
      read(1, 0, 1, "k"),
      applied(1, 2, 3, {create("k", "a")}, 5),
      readSaw(2, 4, 5, "k", "a", 5),
      applied(2, 6, 7, {update("k", 5, "b")}, 8),
      txn(1, 8, 9, {update("k", 5, "c")}),  // refused: k is at 8
      txn(1, 10, 11, {create("k", "d")}),   // refused: k exists
      readSaw(3, 12, 13, "k", "b", 8),
      applied(3, 14, 15, {remove("k", 8)}, 9),
      read(1, 16, 17, "k"),
  });
  expectLinearizable({});
}

TEST_CASE("concurrent operations fit only in the order the results allow") {
  // The update expects the create's version, so the create comes first though both overlap.
  const std::vector<Operation> writes = {
      applied(2, 0, 10, {update("k", 5, "b")}, 6),
      applied(1, 0, 10, {create("k", "a")}, 5),
  };
  auto history = writes;
  history.push_back(read(3, 1, 2, "k"));            // before both
  history.push_back(readSaw(4, 3, 11, "k", "a", 5));  // between them
  history.push_back(readSaw(3, 11, 12, "k", "b", 6));
  expectLinearizable(history);

  SUBCASE("a read after both that sees the first write is stale") {
    auto stale = writes;
    stale.push_back(readSaw(3, 11, 12, "k", "a", 5));
    expectNotLinearizable(stale);
  }
  SUBCASE("two reads that see the writes in the other order") {
    auto swapped = writes;
    swapped.push_back(readSaw(3, 1, 4, "k", "b", 6));
    swapped.push_back(readSaw(4, 5, 6, "k", "a", 5));
    expectNotLinearizable(swapped);
  }
}

TEST_CASE("a stale read is not linearizable, and the explanation says where it stuck") {
  const Operation stale = readSaw(3, 4, 5, "k", "a", 1);
  const Verdict v = check({
      applied(1, 0, 1, {create("k", "a")}, 1),
      applied(2, 2, 3, {update("k", 1, "b")}, 2),
      stale,
  });
  CHECK_FALSE(v.linearizable);
  CHECK_FALSE(v.gaveUp);
  CHECK(v.explanation.find(describe(stale) + "    [k holds b@2") != std::string::npos);
  CHECK(v.explanation.find("longest linearizable prefix found (2 of 3 operations") !=
        std::string::npos);
  CHECK(v.explanation.find("client 2 [2..3] txn update k@1=b -> ok at 2") != std::string::npos);
}

TEST_CASE("a lost acknowledged write is not linearizable") {
  expectNotLinearizable({
      applied(1, 0, 1, {create("k", "a")}, 3),
      read(2, 2, 3, "k"),
  });
  // The same read overlapping the write may come before it.
  expectLinearizable({
      applied(1, 0, 2, {create("k", "a")}, 3),
      read(2, 2, 3, "k"),
  });
}

TEST_CASE("an Unknown write may take effect late, or never") {
  const Operation maybe = with(txn(1, 0, 1, {create("k", "a")}), Outcome::Unknown);
  SUBCASE("read later: linearizable, and its version is what the read says") {
    expectLinearizable({maybe, read(2, 2, 3, "k"), readSaw(2, 4, 5, "k", "a", 7),
                        applied(3, 6, 7, {update("k", 7, "b")}, 9)});
  }
  SUBCASE("never seen: linearizable") {
    expectLinearizable({maybe, read(2, 2, 3, "k"), read(3, 100, 101, "k")});
  }
  SUBCASE("seen, then gone without a delete: not") {
    expectNotLinearizable({maybe, readSaw(2, 2, 3, "k", "a", 7), read(2, 4, 5, "k")});
  }
  SUBCASE("not before its invocation") {
    expectNotLinearizable({readSaw(2, 0, 1, "k", "a", 7),
                           with(txn(1, 2, 3, {create("k", "a")}), Outcome::Unknown)});
  }
  SUBCASE("its version is never learned, so no update can expect it") {
    expectNotLinearizable({maybe, applied(2, 2, 3, {update("k", 0, "b")}, 4)});
  }
}

TEST_CASE("Failed operations are left out, Unknown reads too") {
  const Operation failed = with(applied(1, 0, 1, {create("k", "a")}, 3), Outcome::Failed);
  expectLinearizable({failed, read(2, 2, 3, "k")});
  expectNotLinearizable({failed, readSaw(2, 2, 3, "k", "a", 3)});
  expectLinearizable({with(readSaw(2, 0, 1, "k", "zz", 3), Outcome::Unknown)});
}

TEST_CASE("an Ok transaction applied against a version the object never had is not") {
  expectNotLinearizable({
      applied(1, 0, 1, {create("k", "a")}, 1),
      applied(2, 2, 3, {update("k", 9, "b")}, 2),
  });
  expectNotLinearizable({applied(2, 0, 1, {remove("k", 1)}, 2)});
}

TEST_CASE("a refused transaction whose conditions held is not") {
  expectNotLinearizable({
      applied(1, 0, 1, {create("k", "a")}, 1),
      txn(2, 2, 3, {update("k", 1, "b")}),
  });
  // Refused because a concurrent update got there first: fine.
  expectLinearizable({
      applied(1, 0, 1, {create("k", "a")}, 1),
      txn(2, 2, 5, {update("k", 1, "b")}),
      applied(3, 2, 5, {update("k", 1, "c")}, 2),
  });
}

TEST_CASE("a multi-key transaction seen half applied is not") {
  const Operation both = applied(1, 0, 10, {create("k1", "a"), create("k2", "b")}, 4);
  expectNotLinearizable({both, readSaw(2, 1, 2, "k1", "a", 4), read(3, 3, 4, "k2")});
  expectLinearizable({both, read(3, 1, 2, "k2"), readSaw(2, 3, 4, "k1", "a", 4)});
  SUBCASE("also beside a key checked apart") {
    expectNotLinearizable({both, readSaw(2, 1, 2, "k1", "a", 4), read(3, 3, 4, "k2"),
                           applied(4, 0, 1, {create("k3", "c")}, 2),
                           readSaw(4, 5, 6, "k3", "c", 2)});
  }
}

TEST_CASE("two versions reported for one value is not linearizable") {
  const Verdict v = check({
      applied(1, 0, 1, {create("k", "a")}, 1),
      readSaw(2, 2, 3, "k", "a", 2),
  });
  CHECK_FALSE(v.linearizable);
  CHECK(v.explanation.find("value a has two versions, 1 and 2") != std::string::npos);
  CHECK(v.explanation.find("client 2 [2..3] read k -> a@2") != std::string::npos);
}

TEST_CASE("a malformed operation is reported, not searched") {
  const Verdict v = check({readSaw(2, 5, 3, "k", "a", 2)});
  CHECK_FALSE(v.linearizable);
  CHECK(v.explanation.find("malformed") != std::string::npos);
}

// Generated histories: a random sequential execution against a tiny reference store, each
// operation then given an interval around its place in that execution. Such a history is
// linearizable by construction (the execution order is a witness), with much overlap.

namespace {

struct Object {
  std::string value;
  uint64_t version = 0;
};

class Generator {
 public:
  Generator(uint64_t seed, int keys, int clients, bool multiKey)
      : rng_(seed), keys_(keys), clients_(clients), multiKey_(multiKey) {}

  std::vector<Operation> history(int n) {
    std::vector<Operation> out;
    for (int i = 0; i < n; ++i) out.push_back(next(i));
    return out;
  }

 private:
  int below(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }
  std::string key() { return "k" + std::to_string(below(keys_)); }

  Operation next(int i) {
    Operation op = below(10) < 4 ? readNow() : txnNow(i);
    op.client = i % clients_;
    const int64_t at = 100 * static_cast<int64_t>(i);
    const int spread = 40 * clients_;  // a client's operations never overlap each other
    op.invoke = at - below(spread);
    op.complete = at + below(spread);
    return op;
  }

  Operation readNow() {
    Operation op;
    op.key = key();
    auto it = store_.find(op.key);
    op.found = it != store_.end();
    if (op.found) {
      op.value = it->second.value;
      op.version = it->second.version;
    }
    if (below(100) < 5) {
      op.outcome = Outcome::Unknown;
    } else if (op.found) {
      known_.insert(op.value);
    }
    return op;
  }

  Change change(int i, const std::string& k) {
    const std::string value = "v" + std::to_string(i) + k;
    auto it = store_.find(k);
    const int roll = below(100);
    if (it == store_.end()) {
      return roll < 85 ? Change{Change::Create, k, 0, value}
                       : Change{Change::Update, k, index_, value};
    }
    const uint64_t v = it->second.version;
    // Clients learn versions from answers: one only an Unknown write set is not known yet.
    if (!known_.contains(it->second.value)) return {Change::Update, k, v + 1, value};
    if (roll < 60) return {Change::Update, k, v, value};
    if (roll < 75) return {Change::Delete, k, v, {}};
    if (roll < 90) return {Change::Update, k, v > 1 ? v - 1 : v + 1, value};  // a stale one
    return {Change::Create, k, 0, value};
  }

  Operation txnNow(int i) {
    Operation op;
    op.kind = Operation::Txn;
    const std::string first = key();
    op.changes.push_back(change(i, first));
    const std::string second = key();
    if (multiKey_ && below(3) == 0 && second != first) op.changes.push_back(change(i, second));
    const int roll = below(100);
    op.outcome = roll < 5 ? Outcome::Unknown : roll < 8 ? Outcome::Failed : Outcome::Ok;
    const bool tookEffect = op.outcome == Outcome::Ok ||
                            (op.outcome == Outcome::Unknown && below(2) == 0);
    ++index_;
    if (tookEffect && conditionsHold(op)) {
      op.applied = true;
      op.index = index_;
      write(op);
    }
    if (op.outcome == Outcome::Ok && op.applied) {
      for (const Change& c : op.changes) known_.insert(c.value);
    }
    return op;
  }

  bool conditionsHold(const Operation& op) const {
    for (const Change& c : op.changes) {
      auto it = store_.find(c.key);
      const bool present = it != store_.end();
      if (c.kind == Change::Create ? present
                                   : !present || it->second.version != c.expectedVersion) {
        return false;
      }
    }
    return true;
  }

  void write(const Operation& op) {
    for (const Change& c : op.changes) {
      if (c.kind == Change::Delete) {
        store_.erase(c.key);
      } else {
        store_[c.key] = {c.value, op.index};
      }
    }
  }

  std::mt19937_64 rng_;
  int keys_;
  int clients_;
  bool multiKey_;
  std::map<std::string, Object> store_;
  std::set<std::string> known_;  // values whose version some Ok answer told
  uint64_t index_ = 0;
};

// Gives one Ok read the result of another read of the same key that saw something else.
bool corruptOneRead(std::vector<Operation>& h, std::mt19937_64& rng) {
  std::vector<size_t> reads;
  for (size_t i = 0; i < h.size(); ++i) {
    if (h[i].kind == Operation::Read && h[i].outcome == Outcome::Ok) reads.push_back(i);
  }
  std::shuffle(reads.begin(), reads.end(), rng);
  for (size_t a : reads) {
    for (size_t b : reads) {
      if (h[b].key != h[a].key || (h[b].found == h[a].found && h[b].value == h[a].value)) continue;
      h[a].found = h[b].found;
      h[a].value = h[b].value;
      h[a].version = h[b].version;
      return true;
    }
  }
  return false;
}

}  // namespace

TEST_CASE("generated histories are linearizable, and most corrupted reads are caught") {
  for (const bool multiKey : {false, true}) {
    int corrupted = 0;
    int caught = 0;
    for (uint64_t seed = 1; seed <= 100; ++seed) {
      CAPTURE(multiKey);
      CAPTURE(seed);
      auto h = Generator(seed, 3, 6, multiKey).history(150);
      const Verdict v = check(h);
      REQUIRE_MESSAGE(v.linearizable, v.explanation);
      std::mt19937_64 rng(seed);
      if (!corruptOneRead(h, rng)) continue;
      ++corrupted;
      const Verdict bad = check(h);
      REQUIRE_FALSE(bad.gaveUp);
      caught += bad.linearizable ? 0 : 1;
    }
    MESSAGE("multiKey=" << multiKey << ": caught " << caught << " of " << corrupted);
    CHECK(corrupted >= 90);
    CHECK(caught * 10 >= corrupted * 7);
  }
}

// Small random histories, most of them wrong, judged again by brute force: every order of every
// choice of Unknown operations, against a second, plain model of the store.

namespace {

Operation randomOperation(int i, std::mt19937_64& rng) {
  auto below = [&](int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); };
  const std::string key = below(2) == 0 ? "a" : "b";
  const int64_t invoke = below(20);
  Operation op = below(2) == 0 ? read(i, invoke, invoke + below(8), key)
                               : txn(i, invoke, invoke + below(8), {});
  const int roll = below(10);
  op.outcome = roll < 7 ? Outcome::Ok : roll < 9 ? Outcome::Unknown : Outcome::Failed;
  if (op.kind == Operation::Read) {
    const int seen = below(4);  // 0: absent, else the write of operation seen-1 (if any)
    op.found = seen > 0;
    op.value = "w" + std::to_string(seen - 1);
    op.version = static_cast<uint64_t>(seen);
    return op;
  }
  const std::string value = "w" + std::to_string(i);
  const auto expected = static_cast<uint64_t>(below(4));
  const int kind = below(3);
  op.changes.push_back(kind == 0 ? create(key, value)
                       : kind == 1 ? update(key, expected, value) : remove(key, expected));
  if (below(4) == 0) op.changes.push_back(create(key == "a" ? "b" : "a", value + "'"));
  op.applied = below(2) == 0;
  op.index = static_cast<uint64_t>(i + 1);
  return op;
}

// Written apart from the checker on purpose: the store as a map, versions as a map.
class PlainStore {
 public:
  explicit PlainStore(const std::map<std::string, uint64_t>& versions) : versions_(versions) {}

  bool step(const Operation& op) {
    if (op.kind == Operation::Read) {
      auto it = objects_.find(op.key);
      return op.found ? it != objects_.end() && it->second == op.value : it == objects_.end();
    }
    bool ok = true;
    for (const Change& c : op.changes) ok = ok && holds(c);
    if (op.outcome == Outcome::Ok && ok != op.applied) return false;
    if (!ok) return true;
    for (const Change& c : op.changes) {
      if (c.kind == Change::Delete) objects_.erase(c.key);
      else objects_[c.key] = c.value;
    }
    return true;
  }

 private:
  bool holds(const Change& c) const {
    auto it = objects_.find(c.key);
    if (c.kind == Change::Create) return it == objects_.end();
    if (it == objects_.end()) return false;
    auto v = versions_.find(it->second);
    return v != versions_.end() && v->second == c.expectedVersion;
  }

  const std::map<std::string, uint64_t>& versions_;
  std::map<std::string, std::string> objects_;
};

// Returns false when two answers give one value different versions.
bool learnedVersions(const std::vector<Operation>& h, std::map<std::string, uint64_t>& out) {
  auto learn = [&](const std::string& value, uint64_t version) {
    return out.try_emplace(value, version).first->second == version;
  };
  for (const Operation& op : h) {
    if (op.outcome != Outcome::Ok) continue;
    if (op.kind == Operation::Read && op.found && !learn(op.value, op.version)) return false;
    if (op.kind != Operation::Txn || !op.applied) continue;
    for (const Change& c : op.changes) {
      if (c.kind != Change::Delete && !learn(c.value, op.index)) return false;
    }
  }
  return true;
}

bool precedes(const Operation& a, const Operation& b) {
  return a.outcome == Outcome::Ok && a.complete < b.invoke;
}

bool fitsInOrder(const std::vector<Operation>& ops, const std::map<std::string, uint64_t>& v) {
  for (size_t i = 0; i < ops.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (precedes(ops[i], ops[j])) return false;
    }
  }
  PlainStore store(v);
  for (const Operation& op : ops) {
    if (!store.step(op)) return false;
  }
  return true;
}

bool bruteForce(const std::vector<Operation>& h) {
  std::map<std::string, uint64_t> versions;
  if (!learnedVersions(h, versions)) return false;
  std::vector<Operation> sure;
  std::vector<Operation> maybe;
  for (const Operation& op : h) {
    if (op.outcome == Outcome::Ok) sure.push_back(op);
    if (op.outcome == Outcome::Unknown && op.kind == Operation::Txn) maybe.push_back(op);
  }
  for (unsigned subset = 0; subset < (1u << maybe.size()); ++subset) {
    std::vector<Operation> ops = sure;
    for (size_t i = 0; i < maybe.size(); ++i) {
      if (subset & (1u << i)) ops.push_back(maybe[i]);
    }
    std::vector<size_t> order(ops.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    do {
      std::vector<Operation> permuted;
      for (size_t i : order) permuted.push_back(ops[i]);
      if (fitsInOrder(permuted, versions)) return true;
    } while (std::next_permutation(order.begin(), order.end()));
  }
  return false;
}

}  // namespace

TEST_CASE("on small random histories the search agrees with brute force") {
  std::mt19937_64 rng(2024);
  int yes = 0;
  int no = 0;
  for (int round = 0; round < 3000; ++round) {
    std::vector<Operation> h;
    const int n = 2 + static_cast<int>(rng() % 6);
    for (int i = 0; i < n; ++i) h.push_back(randomOperation(i, rng));
    const bool expected = bruteForce(h);
    const Verdict v = check(h);
    CAPTURE(round);
    CAPTURE(v.explanation);
    REQUIRE(v.linearizable == expected);
    (expected ? yes : no) += 1;
  }
  MESSAGE("linearizable " << yes << ", not " << no);
  CHECK(yes >= 300);
  CHECK(no >= 300);
}

TEST_CASE("a single-key history of 2,000 operations over 8 clients checks well under a second") {
  const auto h = Generator(42, 4, 8, false).history(2000);
  const auto start = std::chrono::steady_clock::now();
  const Verdict v = check(h);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - start).count();
  MESSAGE("2,000 single-key operations: " << ms << " ms, " << v.statesExplored << " states");
  CHECK(v.linearizable);
  CHECK(ms < 500);
}

TEST_CASE("a broken 2,000-operation history is refuted quickly, in a few dozen lines") {
  auto h = Generator(44, 4, 8, true).history(2000);
  std::mt19937_64 rng(44);
  REQUIRE(corruptOneRead(h, rng));
  const auto start = std::chrono::steady_clock::now();
  const Verdict v = check(h);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - start).count();
  MESSAGE("refuted in " << ms << " ms, " << v.statesExplored << " states:\n" << v.explanation);
  CHECK_FALSE(v.linearizable);
  CHECK_FALSE(v.gaveUp);
  CHECK(std::count(v.explanation.begin(), v.explanation.end(), '\n') <= 60);
  CHECK(ms < 5000);
}

TEST_CASE("a multi-key history of 2,000 operations is checked whole") {
  const auto h = Generator(43, 4, 8, true).history(2000);
  const auto start = std::chrono::steady_clock::now();
  const Verdict v = check(h);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - start).count();
  MESSAGE("2,000 multi-key operations: " << ms << " ms, " << v.statesExplored << " states");
  CHECK(v.linearizable);
  CHECK(ms < 5000);
}

TEST_CASE("the search gives up at maxStates without a verdict") {
  const auto h = Generator(7, 3, 6, true).history(300);
  const Verdict v = check(h, 50);
  CHECK(v.gaveUp);
  CHECK_FALSE(v.linearizable);
  CHECK(v.statesExplored <= 50);
  CHECK(check(h).linearizable);
}
