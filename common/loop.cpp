#include "common/loop.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

namespace shoal {

Loop::Loop() {
  wakeFd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wakeFd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
  watchFd(wakeFd_, [this] { drainPosted(); });
}

Loop::~Loop() {
  if (wakeFd_ >= 0) ::close(wakeFd_);
}

void Loop::watch(zmq::socket_t& socket, Callback onReadable) {
  unwatch(socket);
  watches_.push_back({socket.handle(), -1, std::make_shared<Callback>(std::move(onReadable))});
}

void Loop::unwatch(zmq::socket_t& socket) {
  void* h = socket.handle();
  std::erase_if(watches_, [h](const Watch& w) { return w.socket == h; });
}

void Loop::watchFd(int fd, Callback onReadable) {
  unwatchFd(fd);
  watches_.push_back({nullptr, fd, std::make_shared<Callback>(std::move(onReadable))});
}

void Loop::unwatchFd(int fd) {
  std::erase_if(watches_, [fd](const Watch& w) { return w.socket == nullptr && w.fd == fd; });
}

Loop::TimerId Loop::after(Clock::duration delay, Callback fn) {
  TimerId id = nextTimer_++;
  timers_[id] = {Clock::now() + delay, Clock::duration{0}, std::make_shared<Callback>(std::move(fn))};
  return id;
}

Loop::TimerId Loop::every(Clock::duration period, Callback fn) {
  TimerId id = nextTimer_++;
  timers_[id] = {Clock::now() + period, period, std::make_shared<Callback>(std::move(fn))};
  return id;
}

void Loop::cancel(TimerId id) { timers_.erase(id); }

void Loop::post(Callback fn) {
  {
    std::lock_guard lock(postedMutex_);
    posted_.push_back(std::move(fn));
  }
  uint64_t one = 1;
  // A full counter still wakes the loop; nothing to do on EAGAIN.
  [[maybe_unused]] auto n = ::write(wakeFd_, &one, sizeof one);
}

void Loop::discardPending() {
  std::vector<Callback> posted;
  {
    std::lock_guard lock(postedMutex_);
    posted.swap(posted_);
  }
  timers_.clear();
}

void Loop::drainPosted() {
  uint64_t count;
  [[maybe_unused]] auto n = ::read(wakeFd_, &count, sizeof count);
  std::vector<Callback> batch;
  {
    std::lock_guard lock(postedMutex_);
    batch.swap(posted_);
  }
  for (auto& fn : batch) fn();
}

void Loop::runDueTimers() {
  auto now = Clock::now();
  // Collect first: a callback may add or cancel timers.
  std::vector<std::pair<TimerId, std::shared_ptr<Callback>>> due;
  for (auto& [id, t] : timers_)
    if (t.due <= now) due.emplace_back(id, t.fn);
  for (auto& [id, fn] : due) {
    auto it = timers_.find(id);
    if (it == timers_.end()) continue;  // cancelled by an earlier callback
    if (it->second.period.count() > 0)
      it->second.due = now + it->second.period;
    else
      timers_.erase(it);
    (*fn)();
    if (stopped_) return;
  }
}

bool Loop::runOnce(Clock::duration maxWait) {
  if (stopped_) return false;
  auto wait = maxWait;
  auto now = Clock::now();
  for (auto& [id, t] : timers_) wait = std::min(wait, std::max(Clock::duration{0}, t.due - now));

  std::vector<zmq_pollitem_t> items;
  items.reserve(watches_.size());
  for (auto& w : watches_) items.push_back({w.socket, w.fd, ZMQ_POLLIN, 0});
  auto callbacks = watches_;  // a callback may change watches_

  long timeoutMs = std::chrono::ceil<std::chrono::milliseconds>(wait).count();
  int rc = zmq_poll(items.data(), static_cast<int>(items.size()), timeoutMs);
  if (rc < 0 && zmq_errno() != EINTR) throw zmq::error_t();
  for (size_t i = 0; rc > 0 && i < items.size() && !stopped_; ++i) {
    if (!(items[i].revents & ZMQ_POLLIN)) continue;
    // Skip a watch that an earlier callback of this round removed.
    bool still = std::any_of(watches_.begin(), watches_.end(),
                             [&](const Watch& w) { return w.fn == callbacks[i].fn; });
    if (still) (*callbacks[i].fn)();
  }
  if (!stopped_) runDueTimers();
  return !stopped_;
}

void Loop::run() {
  while (runOnce(std::chrono::hours(1))) {
  }
}

void Loop::stop() { stopped_ = true; }

}  // namespace shoal
