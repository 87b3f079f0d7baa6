#pragma once
// The event loop every daemon runs on (FRR's lib/event idea): one thread polls ZeroMQ
// sockets and file descriptors, and runs timers. Callbacks run on the loop's thread; post()
// is the only call that is safe from other threads.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <vector>

#include <zmq.hpp>

namespace shoal {

class Loop {
 public:
  using Clock = std::chrono::steady_clock;
  using TimerId = uint64_t;
  using Callback = std::function<void()>;

  Loop();
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  // Calls onReadable whenever the socket has a message (level-triggered: the callback
  // should drain what it can without blocking).
  void watch(zmq::socket_t& socket, Callback onReadable);
  void unwatch(zmq::socket_t& socket);
  void watchFd(int fd, Callback onReadable);
  void unwatchFd(int fd);

  TimerId after(Clock::duration delay, Callback fn);
  TimerId every(Clock::duration period, Callback fn);
  void cancel(TimerId id);

  // Runs fn on the loop's thread soon; safe from any thread.
  void post(Callback fn);

  // Runs until stop(). Returns at once if stop() was already called.
  void run();
  // Runs callbacks that are due, waiting at most maxWait for one; for tests and
  // synchronous clients. Returns false once stop() has been called.
  bool runOnce(Clock::duration maxWait);
  void stop();
  bool stopped() const { return stopped_; }
  // Destroys, without running them, the callbacks posted and the timers not run yet: after
  // the loop stopped, what they hold (a bus::Client whose destruction was deferred to the
  // loop, say) must go before the ZeroMQ context it uses, or terminating it waits forever.
  void discardPending();

  Clock::time_point now() const { return Clock::now(); }

 private:
  struct Watch {
    void* socket = nullptr;  // zmq socket handle, or null for an fd
    int fd = -1;
    std::shared_ptr<Callback> fn;
  };
  struct Timer {
    Clock::time_point due;
    Clock::duration period{0};
    std::shared_ptr<Callback> fn;
  };

  void runDueTimers();
  void drainPosted();

  std::vector<Watch> watches_;
  std::map<TimerId, Timer> timers_;
  TimerId nextTimer_ = 1;
  int wakeFd_ = -1;  // eventfd for post()
  std::mutex postedMutex_;
  std::vector<Callback> posted_;
  bool stopped_ = false;
};

}  // namespace shoal
