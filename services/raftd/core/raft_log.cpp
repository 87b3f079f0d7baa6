#include "services/raftd/core/raft_log.h"

#include <algorithm>
#include <cassert>

namespace shoal::raft {

Status RaftLog::init() {
  Index first = storage_.firstIndex();
  offset_ = storage_.lastIndex() + 1;
  committed_ = first - 1;
  applied_ = first - 1;
  applying_ = first - 1;
  return {};
}

Index RaftLog::firstIndex() const {
  if (unstableSnapshot_)
    return unstableSnapshot_->index + 1;
  return storage_.firstIndex();
}

Index RaftLog::lastIndex() const {
  if (!unstable_.empty())
    return offset_ + unstable_.size() - 1;
  if (unstableSnapshot_)
    return unstableSnapshot_->index;
  return storage_.lastIndex();
}

Index RaftLog::stableLastIndex() const {
  if (unstableSnapshot_)
    return 0;
  if (unstable_.empty())
    return storage_.lastIndex();
  // Storage may still hold a suffix from offset_ on that the unstable entries replace.
  return std::min(storage_.lastIndex(), offset_ - 1);
}

Term RaftLog::lastTerm() const { return termOrZero(lastIndex()); }

Result<Term> RaftLog::term(Index i) const {
  Index dummy = firstIndex() - 1;
  if (i < dummy)
    return Error{"entry " + std::to_string(i) + " is compacted", kErrCompacted};
  if (i > lastIndex())
    return Error{"entry " + std::to_string(i) + " is past the last index", kErrUnavailable};
  if (unstableSnapshot_ && i == unstableSnapshot_->index)
    return unstableSnapshot_->term;
  if (!unstable_.empty() && i >= offset_)
    return unstable_[i - offset_].term;
  return storage_.term(i);
}

Term RaftLog::termOrZero(Index i) const {
  auto t = term(i);
  return t ? *t : 0;
}

bool RaftLog::matchTerm(Index i, Term t) const {
  auto tt = term(i);
  return tt && *tt == t;
}

bool RaftLog::isUpToDate(Index lastIdx, Term lastTrm) const {
  Term myTerm = lastTerm();
  return lastTrm > myTerm || (lastTrm == myTerm && lastIdx >= lastIndex());
}

Index RaftLog::findConflict(const std::vector<Entry>& ents) const {
  for (const Entry& e : ents) {
    if (!matchTerm(e.index, e.term)) {
      // An entry below firstIndex is committed and covered by the snapshot: it matches.
      if (e.index < firstIndex())
        continue;
      return e.index;
    }
  }
  return 0;
}

std::optional<Index> RaftLog::maybeAppend(Index index, Term logTerm, Index commit,
                                          const std::vector<Entry>& ents) {
  if (!matchTerm(index, logTerm)) {
    // Below the snapshot everything is committed and therefore matches (paper §5.3 log
    // matching); the leader will skip past it.
    if (index >= firstIndex() - 1)
      return std::nullopt;
  }
  Index lastNew = index + ents.size();
  Index conflict = findConflict(ents);
  if (conflict != 0) {
    // Paper §5.3: never overwrite a committed entry; a leader would not send one that
    // conflicts (leader completeness), so this is a bug, not bad input.
    assert(conflict > committed_);
    std::vector<Entry> rest(ents.begin() + static_cast<std::ptrdiff_t>(conflict - (index + 1)),
                            ents.end());
    truncateAndAppend(rest);
  }
  commitTo(std::min(commit, lastNew));
  return lastNew;
}

Index RaftLog::append(const std::vector<Entry>& ents) {
  if (ents.empty())
    return lastIndex();
  assert(ents.front().index > committed_);
  truncateAndAppend(ents);
  return lastIndex();
}

void RaftLog::truncateAndAppend(const std::vector<Entry>& ents) {
  if (ents.empty())
    return;
  Index after = ents.front().index;
  if (after == offset_ + unstable_.size()) {
    unstable_.insert(unstable_.end(), ents.begin(), ents.end());
  } else if (after <= offset_) {
    // Replaces (part of) the stable log too; the shell overwrites it when persisting.
    offset_ = after;
    unstable_ = ents;
  } else {
    unstable_.resize(after - offset_);
    unstable_.insert(unstable_.end(), ents.begin(), ents.end());
  }
}

Result<std::vector<Entry>> RaftLog::slice(Index lo, Index hi, uint64_t maxBytes) const {
  std::vector<Entry> out;
  if (lo >= hi)
    return out;
  if (lo < firstIndex())
    return Error{"entry " + std::to_string(lo) + " is compacted", kErrCompacted};
  if (hi > lastIndex() + 1)
    return Error{"entry " + std::to_string(hi - 1) + " is past the last index", kErrUnavailable};
  uint64_t bytes = 0;
  if (lo < offset_) {
    auto stored = storage_.entries(lo, std::min(hi, offset_), maxBytes);
    if (!stored)
      return stored.error();
    out = std::move(*stored);
    for (const Entry& e : out)
      bytes += e.data.size();
    // The storage stopped early because of maxBytes: do not add unstable entries after a gap.
    if (out.empty() || out.back().index + 1 < std::min(hi, offset_))
      return out;
  }
  for (Index i = std::max(lo, offset_); i < hi; ++i) {
    const Entry& e = unstable_[i - offset_];
    bytes += e.data.size();
    if (!out.empty() && bytes > maxBytes)
      break;
    out.push_back(e);
  }
  return out;
}

void RaftLog::commitTo(Index i) {
  if (i > committed_) {
    assert(i <= lastIndex());
    committed_ = i;
  }
}

bool RaftLog::hasNextCommitted() const {
  return committed_ > std::max(applying_, firstIndex() - 1);
}

std::vector<Entry> RaftLog::takeNextCommitted() {
  Index lo = std::max(applying_ + 1, firstIndex());
  if (committed_ < lo)
    return {};
  auto ents = slice(lo, committed_ + 1, UINT64_MAX);
  // The range is inside the log by construction; a storage read failure cannot be recovered
  // from here.
  assert(ents.ok());
  applying_ = committed_;
  return std::move(*ents);
}

void RaftLog::appliedTo(Index i) {
  if (i > applied_)
    applied_ = i;
  if (applying_ < applied_)
    applying_ = applied_;
}

void RaftLog::restore(const SnapshotMeta& meta) {
  committed_ = meta.index;
  unstableSnapshot_ = meta;
  unstable_.clear();
  offset_ = meta.index + 1;
  // The state machine is replaced by the snapshot: nothing below it is applied from the log.
  applying_ = std::max(applying_, meta.index);
}

void RaftLog::stableTo(Index i, Term t) {
  if (unstable_.empty() || i < offset_)
    return;
  if (i - offset_ >= unstable_.size() || unstable_[i - offset_].term != t)
    return;  // replaced since that Ready was taken
  unstable_.erase(unstable_.begin(), unstable_.begin() + static_cast<std::ptrdiff_t>(i + 1 - offset_));
  offset_ = i + 1;
}

void RaftLog::stableSnapTo(Index i) {
  if (unstableSnapshot_ && unstableSnapshot_->index == i)
    unstableSnapshot_.reset();
}

}  // namespace shoal::raft
