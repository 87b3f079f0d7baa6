#include "tests/lincheck/lincheck.h"

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <map>
#include <numeric>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace shoal::lincheck {
namespace {

// The history, compiled: values interned to small integers, keys to slots of a partition.

constexpr int32_t kAbsent = -1;

// Every written value has one version (the raft index of its write): learned from the Ok
// transaction that wrote it or from an Ok read that saw it, before the search starts.
struct Values {
  std::unordered_map<std::string, int32_t> ids;
  std::vector<std::string> names;
  std::vector<std::optional<uint64_t>> versions;
  std::vector<int> learnedFrom;  // the operation that taught the version, for explanations

  int32_t intern(const std::string& value) {
    auto [it, added] = ids.try_emplace(value, static_cast<int32_t>(names.size()));
    if (added) {
      names.push_back(value);
      versions.emplace_back();
      learnedFrom.push_back(-1);
    }
    return it->second;
  }
};

struct Effect {
  Change::Kind kind = Change::Create;
  int slot = 0;
  uint64_t expectedVersion = 0;
  int32_t value = kAbsent;
};

// One operation the search may linearize. Ok operations must take effect between invoke and
// complete; Unknown ones at any point after invoke, or never.
struct Step {
  int op = 0;  // index in the caller's history
  bool ok = true;
  Operation::Kind kind = Operation::Read;
  int slot = 0;           // Read
  int32_t sees = kAbsent; // Read: the value it saw
  std::vector<Effect> effects;
  bool applied = false;   // Ok Txn
};

struct Partition {
  std::vector<std::string> keys;  // by slot
  std::vector<Step> steps;
};

using State = std::vector<int32_t>;  // the value each slot holds, or kAbsent

// The model: raftd's store (services/raftd/store/store.cpp). A create needs the object absent;
// an update or delete needs it present at the expected version; one failed condition refuses
// the whole transaction.

bool holds(const Effect& e, const State& state, const Values& values) {
  const int32_t current = state[e.slot];
  if (e.kind == Change::Create) return current == kAbsent;
  if (current == kAbsent) return false;
  const auto& version = values.versions[current];
  return version && *version == e.expectedVersion;
}

bool wouldApply(const Step& s, const State& state, const Values& values) {
  return std::all_of(s.effects.begin(), s.effects.end(),
                     [&](const Effect& e) { return holds(e, state, values); });
}

// An Unknown transaction that would be refused changes nothing, so placing it is the same as
// leaving it out: the search only places those that apply.
bool accepts(const Step& s, const State& state, const Values& values) {
  if (s.kind == Operation::Read) return state[s.slot] == s.sees;
  const bool applies = wouldApply(s, state, values);
  return s.ok ? applies == s.applied : applies;
}

// Whether placing the step changes the state (Unknown transactions are placed only when they
// apply).
bool writes(const Step& s) {
  return s.kind == Operation::Txn && (s.applied || !s.ok);
}

// Lowe's cache of explored configurations (linearized set, state), kept as 128-bit Zobrist
// fingerprints: each operation and each (slot, value) has a random 128-bit word, and a
// configuration is the XOR of its words, updated in O(1) as the search moves. Two different
// configurations share a fingerprint with odds of 2^-128 per pair, which at 20 million states
// is far below a hardware fault; a bitset per entry would cost 250 bytes at 2,000 operations.

struct Fingerprint {
  uint64_t hi = 0;
  uint64_t lo = 0;
  Fingerprint& operator^=(const Fingerprint& o) {
    hi ^= o.hi;
    lo ^= o.lo;
    return *this;
  }
  bool operator==(const Fingerprint&) const = default;
};

uint64_t splitmix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Two independent 64-bit halves, each a chain of mixes over (domain, a, b).
Fingerprint word(uint64_t domain, uint64_t a, uint64_t b) {
  auto half = [&](uint64_t salt) { return splitmix(splitmix(splitmix(domain ^ salt) ^ a) ^ b); };
  return {half(0x243f6a8885a308d3ULL), half(0x13198a2e03707344ULL)};
}

Fingerprint opWord(size_t step) { return word(1, step, 0); }

Fingerprint slotWord(int slot, int32_t value) {
  return word(2, static_cast<uint64_t>(slot), static_cast<uint64_t>(value + 1));
}

// Open addressing with linear probing: 16 bytes a state, kept at most three quarters full, so
// 20 million states take 512 MiB (768 MiB while growing).
class FingerprintSet {
 public:
  FingerprintSet() : table_(1024) {}

  bool insert(Fingerprint f) {
    if (f == Fingerprint{}) f.lo = 1;  // the empty marker
    if (4 * (size_ + 1) > 3 * table_.size()) grow();
    if (!place(table_, f)) return false;
    ++size_;
    return true;
  }

  uint64_t size() const { return size_; }

 private:
  static bool place(std::vector<Fingerprint>& table, Fingerprint f) {
    const size_t mask = table.size() - 1;
    for (size_t i = f.lo & mask;; i = (i + 1) & mask) {
      if (table[i] == f) return false;
      if (table[i] == Fingerprint{}) {
        table[i] = f;
        return true;
      }
    }
  }

  void grow() {
    std::vector<Fingerprint> bigger(table_.size() * 2);
    for (const Fingerprint& f : table_) {
      if (!(f == Fingerprint{})) place(bigger, f);
    }
    table_.swap(bigger);
  }

  std::vector<Fingerprint> table_;
  uint64_t size_ = 0;
};

// The search: Wing & Gong's, with Lowe's memoisation, over a list of call and return events as
// Porcupine's checkSingle does. Placing an operation lifts its events out of the list
// (dancing links); backtracking puts them back. An Unknown operation has no return event, so
// nothing ever forces it, and the search succeeds once every Ok operation is placed.

enum class Result { Linearizable, NotLinearizable, GaveUp };

struct Event {
  int64_t time = 0;
  bool isReturn = false;
  int step = 0;
  int prev = -1;
  int next = -1;
  int match = -1;  // a call's return event, or -1
};

class Search {
 public:
  Search(const Partition& p, const std::vector<Operation>& history, const Values& values,
         uint64_t budget)
      : p_(p), history_(history), values_(values), budget_(budget),
        state_(p.keys.size(), kAbsent) {
    for (size_t i = 0; i < state_.size(); ++i) here_ ^= slotWord(static_cast<int>(i), kAbsent);
    buildEvents();
  }

  Result run();
  uint64_t statesExplored() const { return cache_.size(); }
  const std::vector<int>& longestPrefix() const { return longest_; }

 private:
  struct Frame {
    int call;
    size_t undoFrom;
    Fingerprint before;
  };

  void buildEvents();
  void link(const std::vector<int>& order);
  bool tryPlace(int call);
  void place(int call);
  int backtrack();
  void apply(const Step& s);
  void rollback(size_t undoFrom, Fingerprint before);
  void set(int slot, int32_t value);
  void lift(int call);
  void unlift(int call);
  void remember();

  const Partition& p_;
  const std::vector<Operation>& history_;
  const Values& values_;
  uint64_t budget_;

  std::vector<Event> events_;
  int head_ = 0;  // a sentinel event
  int okLeft_ = 0;
  int okPlaced_ = 0;
  int mostOkPlaced_ = 0;

  State state_;
  Fingerprint here_;
  std::vector<std::pair<int, int32_t>> undo_;  // (slot, previous value)
  std::vector<Frame> stack_;
  FingerprintSet cache_;
  std::vector<int> longest_;
};

// Events in time order; at equal times calls come first, so operations that merely touch
// are concurrent: a coarse clock must not invent an order the system never promised.
void Search::buildEvents() {
  events_.push_back({});  // head
  for (size_t i = 0; i < p_.steps.size(); ++i) {
    const Step& s = p_.steps[i];
    const Operation& op = history_[s.op];
    const int call = static_cast<int>(events_.size());
    events_.push_back({op.invoke, false, static_cast<int>(i), -1, -1, -1});
    if (s.ok) {
      events_[call].match = static_cast<int>(events_.size());
      events_.push_back({op.complete, true, static_cast<int>(i), -1, -1, -1});
      ++okLeft_;
    }
  }
  std::vector<int> order(events_.size() - 1);
  std::iota(order.begin(), order.end(), 1);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    const Event& x = events_[a];
    const Event& y = events_[b];
    return x.time != y.time ? x.time < y.time : x.isReturn < y.isReturn;
  });
  link(order);
}

void Search::link(const std::vector<int>& order) {
  int last = head_;
  for (int e : order) {
    events_[last].next = e;
    events_[e].prev = last;
    last = e;
  }
}

// Each configuration tries its candidates (the calls before the first return) in two rounds:
// Ok operations first, then Unknown ones. Most Unknown writes either never happened or are
// needed only later, so placing them eagerly sends a linearizable history down many dead ends;
// trying them last still tries every candidate, so the search stays complete.
Result Search::run() {
  int e = events_[head_].next;
  bool unknownRound = false;
  while (okLeft_ > 0) {
    assert(e != -1);  // an Ok operation's return event is always ahead
    if (cache_.size() >= budget_) return Result::GaveUp;
    const Event& ev = events_[e];
    if (ev.isReturn && !unknownRound) {
      unknownRound = true;
      e = events_[head_].next;
    } else if (ev.isReturn) {
      // This operation must have taken effect by now and was not placed: undo the last choice.
      if (stack_.empty()) return Result::NotLinearizable;
      const int call = backtrack();
      unknownRound = !p_.steps[events_[call].step].ok;
      e = events_[call].next;
    } else if (p_.steps[ev.step].ok != unknownRound && tryPlace(e)) {
      unknownRound = false;
      e = events_[head_].next;
    } else {
      e = ev.next;
    }
  }
  return Result::Linearizable;
}

bool Search::tryPlace(int call) {
  const Step& s = p_.steps[events_[call].step];
  if (!accepts(s, state_, values_)) return false;
  const size_t undoFrom = undo_.size();
  const Fingerprint before = here_;
  apply(s);
  here_ ^= opWord(events_[call].step);
  if (!cache_.insert(here_)) {
    rollback(undoFrom, before);
    return false;
  }
  stack_.push_back({call, undoFrom, before});
  place(call);
  return true;
}

// The longest prefix counts Ok operations: an Unknown one tried last at a dead end would
// otherwise lengthen it without explaining anything.
void Search::place(int call) {
  lift(call);
  if (!p_.steps[events_[call].step].ok) return;
  --okLeft_;
  if (++okPlaced_ > mostOkPlaced_) {
    mostOkPlaced_ = okPlaced_;
    remember();
  }
}

int Search::backtrack() {
  const Frame f = stack_.back();
  stack_.pop_back();
  rollback(f.undoFrom, f.before);
  unlift(f.call);
  if (p_.steps[events_[f.call].step].ok) {
    ++okLeft_;
    --okPlaced_;
  }
  return f.call;
}

void Search::apply(const Step& s) {
  if (!writes(s)) return;
  for (const Effect& e : s.effects) {
    undo_.emplace_back(e.slot, state_[e.slot]);
    set(e.slot, e.kind == Change::Delete ? kAbsent : e.value);
  }
}

void Search::rollback(size_t undoFrom, Fingerprint before) {
  while (undo_.size() > undoFrom) {
    set(undo_.back().first, undo_.back().second);
    undo_.pop_back();
  }
  here_ = before;
}

void Search::set(int slot, int32_t value) {
  here_ ^= slotWord(slot, state_[slot]);
  here_ ^= slotWord(slot, value);
  state_[slot] = value;
}

void Search::lift(int call) {
  Event& c = events_[call];
  events_[c.prev].next = c.next;
  if (c.next != -1) events_[c.next].prev = c.prev;
  if (c.match == -1) return;
  Event& r = events_[c.match];
  events_[r.prev].next = r.next;
  if (r.next != -1) events_[r.next].prev = r.prev;
}

// The exact inverse of lift, valid because backtracking unlifts in the reverse order.
void Search::unlift(int call) {
  Event& c = events_[call];
  if (c.match != -1) {
    Event& r = events_[c.match];
    events_[r.prev].next = c.match;
    if (r.next != -1) events_[r.next].prev = c.match;
  }
  events_[c.prev].next = call;
  if (c.next != -1) events_[c.next].prev = call;
}

void Search::remember() {
  longest_.clear();
  for (const Frame& f : stack_) longest_.push_back(events_[f.call].step);
}

// Preparing the history: versions learned, operations kept, partitions found.

std::string versionConflict(const std::vector<Operation>& history, const Values& values,
                            int32_t value, uint64_t version, int op) {
  const int first = values.learnedFrom[value];
  return "not linearizable: value " + values.names[value] + " has two versions, " +
         std::to_string(*values.versions[value]) + " and " + std::to_string(version) +
         " (values are unique per write, and a write has one raft index):\n  " +
         describe(history[first]) + "\n  " + describe(history[op]) + "\n";
}

// Returns an explanation when two operations disagree on a value's version.
std::optional<std::string> learn(const std::vector<Operation>& history, int op, int32_t value,
                                 uint64_t version, Values& values) {
  auto& known = values.versions[value];
  if (!known) {
    known = version;
    values.learnedFrom[value] = op;
    return std::nullopt;
  }
  if (*known == version) return std::nullopt;
  return versionConflict(history, values, value, version, op);
}

std::optional<std::string> learnVersions(const std::vector<Operation>& history,
                                         Values& values) {
  for (size_t i = 0; i < history.size(); ++i) {
    const Operation& op = history[i];
    if (op.outcome != Outcome::Ok) continue;
    const int at = static_cast<int>(i);
    if (op.kind == Operation::Read && op.found) {
      if (auto e = learn(history, at, values.intern(op.value), op.version, values)) return e;
    }
    if (op.kind == Operation::Txn && op.applied) {
      for (const Change& c : op.changes) {
        if (c.kind == Change::Delete) continue;
        if (auto e = learn(history, at, values.intern(c.value), op.index, values)) return e;
      }
    }
  }
  return std::nullopt;
}

// Failed operations never took effect, and an Unknown read changed nothing and told nothing.
bool kept(const Operation& op) {
  if (op.outcome == Outcome::Failed) return false;
  return !(op.outcome == Outcome::Unknown && op.kind == Operation::Read);
}

std::optional<std::string> malformed(const std::vector<Operation>& history) {
  for (const Operation& op : history) {
    if (op.outcome == Outcome::Ok && op.complete < op.invoke) {
      return "malformed history: answered before it was invoked: " + describe(op) + "\n";
    }
  }
  return std::nullopt;
}

std::vector<std::string> keysOf(const Operation& op) {
  if (op.kind == Operation::Read) return {op.key};
  std::vector<std::string> keys;
  for (const Change& c : op.changes) keys.push_back(c.key);
  return keys;
}

// Herlihy & Wing's locality (P-compositionality): keys no operation ties together are
// independent objects, and a history is linearizable iff each object's sub-history is. Keys
// are grouped by union-find over the operations that touch several; with single-key
// operations only, each key is checked alone.
class KeyGroups {
 public:
  int find(const std::string& key) {
    auto [it, added] = index_.try_emplace(key, static_cast<int>(parent_.size()));
    if (added) parent_.push_back(it->second);
    return root(it->second);
  }

  void unite(const std::vector<std::string>& keys) {
    for (size_t i = 1; i < keys.size(); ++i) parent_[find(keys[i])] = find(keys[0]);
  }

 private:
  int root(int k) {
    while (parent_[k] != k) k = parent_[k] = parent_[parent_[k]];
    return k;
  }

  std::map<std::string, int> index_;
  std::vector<int> parent_;
};

int slotOf(Partition& p, std::map<std::string, int>& slots, const std::string& key) {
  auto [it, added] = slots.try_emplace(key, static_cast<int>(p.keys.size()));
  if (added) p.keys.push_back(key);
  return it->second;
}

Step compile(const Operation& op, int index, Partition& p, std::map<std::string, int>& slots,
             Values& values) {
  Step s;
  s.op = index;
  s.ok = op.outcome == Outcome::Ok;
  s.kind = op.kind;
  s.applied = op.applied;
  if (op.kind == Operation::Read) {
    s.slot = slotOf(p, slots, op.key);
    s.sees = op.found ? values.intern(op.value) : kAbsent;
    return s;
  }
  for (const Change& c : op.changes) {
    const int32_t value = c.kind == Change::Delete ? kAbsent : values.intern(c.value);
    s.effects.push_back({c.kind, slotOf(p, slots, c.key), c.expectedVersion, value});
  }
  return s;
}

// Operations touching no key (an empty transaction) form a partition of their own.
std::vector<Partition> partition(const std::vector<Operation>& history, Values& values) {
  KeyGroups groups;
  for (const Operation& op : history) {
    if (kept(op)) groups.unite(keysOf(op));
  }
  std::map<int, Partition> byGroup;
  std::map<int, std::map<std::string, int>> slots;
  for (size_t i = 0; i < history.size(); ++i) {
    const Operation& op = history[i];
    if (!kept(op)) continue;
    const auto keys = keysOf(op);
    const int g = keys.empty() ? -1 : groups.find(keys[0]);
    Step s = compile(op, static_cast<int>(i), byGroup[g], slots[g], values);
    byGroup[g].steps.push_back(std::move(s));
  }
  std::vector<Partition> out;
  for (auto& [g, p] : byGroup) out.push_back(std::move(p));
  return out;
}

// Explaining a failure: replay the longest prefix, then say why each operation that could have
// come next does not fit.

constexpr size_t kMaxPrefixLines = 30;
constexpr size_t kMaxStuckLines = 20;

std::string holding(const Partition& p, const Values& values, const State& state, int slot) {
  const int32_t v = state[slot];
  if (v == kAbsent) return p.keys[slot] + " is absent";
  const auto& version = values.versions[v];
  return p.keys[slot] + " holds " + values.names[v] + "@" +
         (version ? std::to_string(*version) : std::string("?"));
}

std::string whyNot(const Partition& p, const Values& values, const State& state,
                   const Step& s) {
  if (accepts(s, state, values)) return "fits here, but nothing fits after it";
  if (s.kind == Operation::Read) return holding(p, values, state, s.slot);
  if (s.ok && !s.applied) return "every condition holds, so the store would have applied it";
  for (const Effect& e : s.effects) {
    if (!holds(e, state, values)) return holding(p, values, state, e.slot);
  }
  return "would be refused";
}

std::string line(const std::vector<Operation>& history, const Step& s) {
  return "  " + describe(history[s.op]) + "\n";
}

std::string prefixLines(const Partition& p, const std::vector<Operation>& history,
                        const std::vector<int>& prefix) {
  std::string out = "longest linearizable prefix found (" + std::to_string(prefix.size()) +
                    " of " + std::to_string(p.steps.size()) +
                    " operations, in linearization order):\n";
  const size_t skip = prefix.size() > kMaxPrefixLines ? prefix.size() - kMaxPrefixLines : 0;
  if (skip > 0) out += "  ... " + std::to_string(skip) + " earlier operations\n";
  for (size_t i = skip; i < prefix.size(); ++i) out += line(history, p.steps[prefix[i]]);
  return out;
}

// The candidates after the prefix: every remaining operation invoked before the first answer
// among the remaining Ok ones (`due`, the one that could not wait), listed first, then the
// other Ok ones, then the Unknown ones.
std::vector<int> candidates(const Partition& p, const std::vector<Operation>& history,
                            const std::vector<bool>& placed, int& due) {
  due = -1;
  for (size_t i = 0; i < p.steps.size(); ++i) {
    const Step& s = p.steps[i];
    if (placed[i] || !s.ok) continue;
    if (due == -1 || history[s.op].complete < history[p.steps[due].op].complete) {
      due = static_cast<int>(i);
    }
  }
  std::vector<int> out;
  if (due == -1) return out;
  for (size_t i = 0; i < p.steps.size(); ++i) {
    if (!placed[i] && history[p.steps[i].op].invoke <= history[p.steps[due].op].complete) {
      out.push_back(static_cast<int>(i));
    }
  }
  std::stable_partition(out.begin(), out.end(), [&](int i) { return i == due; });
  std::stable_partition(out.begin() + 1, out.end(), [&](int i) { return p.steps[i].ok; });
  return out;
}

std::string stuckLines(const Partition& p, const std::vector<Operation>& history,
                       const Values& values, const std::vector<int>& prefix) {
  State state(p.keys.size(), kAbsent);
  std::vector<bool> placed(p.steps.size(), false);
  for (int i : prefix) {
    placed[i] = true;
    if (!writes(p.steps[i])) continue;
    for (const Effect& e : p.steps[i].effects) {
      state[e.slot] = e.kind == Change::Delete ? kAbsent : e.value;
    }
  }
  int due = -1;
  std::string out = "after the longest linearizable prefix (below), none of these fits next:\n";
  size_t shown = 0;
  for (int i : candidates(p, history, placed, due)) {
    const Step& s = p.steps[i];
    if (!s.ok && !accepts(s, state, values)) continue;  // an Unknown write left out: no-op
    if (++shown > kMaxStuckLines) break;
    out += "  " + describe(history[s.op]) + "    [" + whyNot(p, values, state, s) +
           (i == due ? "; must take effect by its answer" : "") + "]\n";
  }
  return out;
}

std::string keyList(const Partition& p) {
  std::vector<std::string> keys = p.keys;
  std::sort(keys.begin(), keys.end());
  std::string out;
  for (size_t i = 0; i < keys.size() && i < 8; ++i) out += (i ? ", " : "") + keys[i];
  if (keys.size() > 8) out += ", ... (" + std::to_string(keys.size()) + " keys)";
  return out;
}

std::string explainFailure(const Partition& p, const std::vector<Operation>& history,
                           const Values& values, const std::vector<int>& prefix) {
  return "not linearizable (keys " + keyList(p) + "):\n" +
         stuckLines(p, history, values, prefix) + prefixLines(p, history, prefix);
}

std::string changeText(const Change& c) {
  switch (c.kind) {
    case Change::Create: return "create " + c.key + "=" + c.value;
    case Change::Update:
      return "update " + c.key + "@" + std::to_string(c.expectedVersion) + "=" + c.value;
    case Change::Delete: return "delete " + c.key + "@" + std::to_string(c.expectedVersion);
  }
  return "?";
}

std::string resultText(const Operation& op) {
  if (op.outcome == Outcome::Failed) return "failed";
  if (op.outcome == Outcome::Unknown) return "unknown";
  if (op.kind == Operation::Read) {
    return op.found ? op.value + "@" + std::to_string(op.version) : "absent";
  }
  return op.applied ? "ok at " + std::to_string(op.index) : "refused";
}

}  // namespace

Verdict check(const std::vector<Operation>& history, uint64_t maxStates) {
  Verdict v;
  if (auto bad = malformed(history)) {
    v.explanation = *bad;
    return v;
  }
  Values values;
  if (auto conflict = learnVersions(history, values)) {
    v.explanation = *conflict;
    return v;
  }
  bool gaveUp = false;
  for (const Partition& p : partition(history, values)) {
    const uint64_t left = maxStates > v.statesExplored ? maxStates - v.statesExplored : 0;
    Search search(p, history, values, left);
    const Result r = search.run();
    v.statesExplored += search.statesExplored();
    if (r == Result::NotLinearizable) {
      v.explanation = explainFailure(p, history, values, search.longestPrefix());
      return v;
    }
    // A partition not decided says nothing of the others: one may still be refuted.
    gaveUp = gaveUp || r == Result::GaveUp;
  }
  v.gaveUp = gaveUp;
  v.linearizable = !gaveUp;
  if (gaveUp) {
    v.explanation = "gave up after " + std::to_string(v.statesExplored) +
                    " states (maxStates): no verdict\n";
  }
  return v;
}

std::string describe(const Operation& op) {
  std::string what;
  if (op.kind == Operation::Read) {
    what = "read " + op.key;
  } else {
    what = "txn";
    for (size_t i = 0; i < op.changes.size(); ++i) {
      what += (i ? ", " : " ") + changeText(op.changes[i]);
    }
  }
  return "client " + std::to_string(op.client) + " [" + std::to_string(op.invoke) + ".." +
         std::to_string(op.complete) + "] " + what + " -> " + resultText(op);
}

}  // namespace shoal::lincheck
