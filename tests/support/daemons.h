#pragma once
// What a test needs to run the daemons the build made: where they are, a loopback port for
// one, and a bounded wait for what it does. Failures are doctest REQUIREs.

#include <doctest/doctest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

namespace shoal::testing {

// meson test sets SHOAL_BUILD_DIR (tests/*/meson.build).
inline std::string buildDir() {
  const char* dir = std::getenv("SHOAL_BUILD_DIR");
  REQUIRE_MESSAGE(dir, "SHOAL_BUILD_DIR is not set: run this test through `meson test`");
  return dir;
}

inline std::string daemonPath(const std::string& daemon) {
  return buildDir() + "/services/" + daemon + "/" + daemon;
}

// A TCP port that was free a moment ago, so that a daemon with a network port does not
// collide with a real one (or another test) on its default port.
inline int freePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
            ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  ::close(fd);
  REQUIRE(ok);
  return ntohs(addr.sin_port);
}

// A dispatcher port P whose raft port P+1 was free a moment ago too (docs/cluster.md "Ports").
inline int freePortPair() {
  for (int i = 0; i < 50; ++i) {
    int p = freePort();
    if (p >= 65533) continue;
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(p + 1));
    bool free = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    if (free) return p;
  }
  FAIL("no pair of free ports");
  return 0;
}

// Asks done() every 50 ms until it holds or limit passed; whether it held, asked once more
// at the end so that a slow last step still counts.
template <class F>
bool waitFor(F done, std::chrono::milliseconds limit) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return done();
}

}  // namespace shoal::testing
