#include "services/raftd/core/storage.h"

#include <algorithm>

namespace shoal::raft {

MemoryStorage MemoryStorage::bootstrap(const std::vector<NodeId>& voters) {
  MemoryStorage s;
  s.snapshot_.index = 1;
  s.snapshot_.term = 1;
  s.snapshot_.conf.voters = voters;
  s.ents_[0].index = 1;
  s.ents_[0].term = 1;
  s.hardState_ = HardState{1, kNoNode, 1};
  return s;
}

Result<InitialState> MemoryStorage::initialState() const {
  return InitialState{hardState_, snapshot_.conf};
}

Index MemoryStorage::firstIndex() const { return ents_[0].index + 1; }
Index MemoryStorage::lastIndex() const { return ents_[0].index + ents_.size() - 1; }
SnapshotMeta MemoryStorage::snapshotMeta() const { return snapshot_; }

Result<Term> MemoryStorage::term(Index i) const {
  Index off = ents_[0].index;
  if (i < off)
    return Error{"entry " + std::to_string(i) + " is compacted", kErrCompacted};
  if (i > lastIndex())
    return Error{"entry " + std::to_string(i) + " is past the last index " +
                     std::to_string(lastIndex()),
                 kErrUnavailable};
  return ents_[i - off].term;
}

Result<std::vector<Entry>> MemoryStorage::entries(Index lo, Index hi, uint64_t maxBytes) const {
  Index off = ents_[0].index;
  if (lo <= off)
    return Error{"entry " + std::to_string(lo) + " is compacted", kErrCompacted};
  if (hi > lastIndex() + 1)
    return Error{"entries up to " + std::to_string(hi - 1) + " asked, last is " +
                     std::to_string(lastIndex()),
                 kErrUnavailable};
  std::vector<Entry> out;
  uint64_t bytes = 0;
  for (Index i = lo; i < hi; ++i) {
    const Entry& e = ents_[i - off];
    bytes += e.data.size();
    if (!out.empty() && bytes > maxBytes)
      break;
    out.push_back(e);
  }
  return out;
}

Result<std::string> MemoryStorage::snapshotChunk(Index snapshotIndex, uint64_t offset,
                                                 uint64_t maxBytes) const {
  if (snapshotIndex != snapshot_.index)
    return Error{"snapshot " + std::to_string(snapshotIndex) + " was replaced by " +
                     std::to_string(snapshot_.index),
                 kErrSnapshotOutOfDate};
  if (offset > snapshotData_.size())
    return Error{"offset " + std::to_string(offset) + " is past the snapshot's " +
                     std::to_string(snapshotData_.size()) + " bytes",
                 kErrUnavailable};
  return snapshotData_.substr(offset, maxBytes);
}

Status MemoryStorage::append(const std::vector<Entry>& entries) {
  if (entries.empty())
    return {};
  Index first = firstIndex();
  Index last = entries.back().index;
  if (last < first)
    return {};  // all compacted already
  if (entries.front().index > lastIndex() + 1)
    return Error{"appending entry " + std::to_string(entries.front().index) +
                     " would leave a gap after " + std::to_string(lastIndex()),
                 kErrUnavailable};
  size_t skip = entries.front().index < first ? first - entries.front().index : 0;
  Index off = ents_[0].index;
  ents_.resize(entries[skip].index - off);
  ents_.insert(ents_.end(), entries.begin() + static_cast<std::ptrdiff_t>(skip), entries.end());
  return {};
}

Status MemoryStorage::applySnapshot(const SnapshotMeta& meta, std::string data) {
  if (meta.index <= snapshot_.index)
    return Error{"snapshot " + std::to_string(meta.index) + " is older than the one held (" +
                     std::to_string(snapshot_.index) + ")",
                 kErrSnapshotOutOfDate};
  snapshot_ = meta;
  snapshot_.size = data.size();
  snapshotData_ = std::move(data);
  ents_.assign(1, Entry{meta.term, meta.index, EntryType::Normal, {}});
  return {};
}

Status MemoryStorage::createSnapshot(Index index, const ConfState& conf, std::string data) {
  if (index <= snapshot_.index)
    return Error{"snapshot at " + std::to_string(index) + " is not newer than the one held (" +
                     std::to_string(snapshot_.index) + ")",
                 kErrSnapshotOutOfDate};
  auto t = term(index);
  if (!t)
    return t.error();
  snapshot_ = SnapshotMeta{index, *t, conf, data.size()};
  snapshotData_ = std::move(data);
  return {};
}

Status MemoryStorage::compact(Index index) {
  Index off = ents_[0].index;
  if (index <= off)
    return {};
  if (index > snapshot_.index)
    return Error{"cannot compact past the snapshot (" + std::to_string(snapshot_.index) +
                     "): take a snapshot at " + std::to_string(index) + " first",
                 kErrUnavailable};
  ents_.erase(ents_.begin(), ents_.begin() + static_cast<std::ptrdiff_t>(index - off));
  ents_[0].data.clear();
  ents_[0].type = EntryType::Normal;
  return {};
}

}  // namespace shoal::raft
