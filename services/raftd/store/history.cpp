#include "services/raftd/store/history.h"

#include <algorithm>
#include <cassert>

namespace shoal::store {

namespace {

std::size_t cost(const Event& e) {
  return sizeof(Event) + e.id.size() + e.object.size() + e.serviceId.size() + e.nodeId.size();
}

}  // namespace

bool WatchFilter::matches(const Event& e) const {
  if (!kinds.empty() && std::find(kinds.begin(), kinds.end(), e.kind) == kinds.end()) {
    return false;
  }
  if (e.kind == ObjectKind::Task) {
    if (!serviceId.empty() && e.serviceId != serviceId) {
      return false;
    }
    if (!nodeId.empty() && e.nodeId != nodeId) {
      return false;
    }
  }
  return true;
}

WatchHistory::WatchHistory(std::size_t maxEvents, std::size_t maxBytes,
                           std::uint64_t startIndex)
    : maxEvents_(std::max<std::size_t>(maxEvents, 1)),
      maxBytes_(maxBytes),
      trimmedThrough_(startIndex),
      last_(startIndex) {}

void WatchHistory::append(std::vector<EventPtr> events) {
  if (events.empty()) {
    return;
  }
  std::lock_guard lock(mutex_);
  std::uint64_t index = events.front()->index;
  assert(index > last_);
  for (auto& e : events) {
    assert(e->index == index);
    bytes_ += cost(*e);
    events_.push_back(std::move(e));
  }
  last_ = index;
  trim();
}

// Whole transactions leave together, so that a subscriber never sees half of one.
void WatchHistory::trim() {
  while (!events_.empty() && (events_.size() > maxEvents_ || bytes_ > maxBytes_)) {
    std::uint64_t index = events_.front()->index;
    while (!events_.empty() && events_.front()->index == index) {
      bytes_ -= cost(*events_.front());
      events_.pop_front();
    }
    trimmedThrough_ = index;
  }
}

WatchBatch WatchHistory::since(std::uint64_t index, const WatchFilter& filter,
                               std::size_t limit) const {
  std::lock_guard lock(mutex_);
  WatchBatch batch;
  if (index < trimmedThrough_) {
    batch.resyncNeeded = true;
    batch.lastIndex = last_;
    return batch;
  }
  batch.lastIndex = std::max(index, last_);
  auto it = std::upper_bound(events_.begin(), events_.end(), index,
                             [](std::uint64_t i, const EventPtr& e) { return i < e->index; });
  std::size_t seen = 0;
  while (it != events_.end()) {
    std::uint64_t txnIndex = (*it)->index;
    if (seen >= limit && seen > 0) {
      batch.lastIndex = (*std::prev(it))->index;
      break;
    }
    for (; it != events_.end() && (*it)->index == txnIndex; ++it) {
      ++seen;
      if (filter.matches(**it)) {
        batch.events.push_back(*it);
      }
    }
  }
  return batch;
}

std::uint64_t WatchHistory::lastIndex() const {
  std::lock_guard lock(mutex_);
  return last_;
}

std::uint64_t WatchHistory::oldestIndex() const {
  std::lock_guard lock(mutex_);
  return trimmedThrough_;
}

std::size_t WatchHistory::size() const {
  std::lock_guard lock(mutex_);
  return events_.size();
}

}  // namespace shoal::store
