#pragma once
// A docker registry for tests (docs/containers.md "Images"): Debian's docker-registry on a
// loopback address and a free port, with its config and storage in a temp dir of its own and,
// optionally, htpasswd users; stopped by PID when it goes out of scope, pass or fail.
// pushBusybox builds tools/images/make-busybox-image's image and pushes it with skopeo.
//
// Paths: the registry, skopeo, htpasswd and python3 are Debian's (tools/deps installs them);
// make-busybox-image is found under SHOAL_SOURCE_DIR when the test's registration sets it,
// else under the source dir meson recorded in SHOAL_BUILD_DIR/meson-info/meson-info.json.
// Failures are doctest REQUIREs that quote what the tool said.

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/daemons.h"
#include "tests/support/process.h"
#include "tests/support/tempdir.h"

namespace shoal::testing {

// The source tree, for tools the tests run (see the header comment).
inline std::string sourceDir() {
  if (const char* dir = std::getenv("SHOAL_SOURCE_DIR"); dir && *dir) return dir;
  std::string info = buildDir() + "/meson-info/meson-info.json";
  std::ifstream in(info);
  REQUIRE_MESSAGE(in, "cannot read " << info << ": set SHOAL_SOURCE_DIR in the test's env");
  auto doc = nlohmann::json::parse(in, nullptr, false);
  REQUIRE_MESSAGE(doc.is_object(), info << " is not JSON: set SHOAL_SOURCE_DIR");
  return doc["directories"].value("source", std::string());
}

struct RegistryOptions {
  std::string address = "127.0.0.1";
  // With a user, the registry wants basic auth (htpasswd, bcrypt) for everything.
  std::string user, password;
};

struct PushOptions {
  std::string tag = "latest";
  bool multiPlatform = false;       // an index of linux/amd64 and linux/arm64/v8
  std::string healthcheck;          // the image's Healthcheck (CMD-SHELL), "" none
  std::vector<std::string> labels;  // K=V
};

// HTTP status of GET http://host:port/path on loopback (or the address given), 0 when no
// answer. Plain sockets, so the support code needs no libcurl.
inline int httpStatus(const std::string& address, int port, const std::string& path) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  int status = 0;
  if (::inet_pton(AF_INET, address.c_str(), &addr.sin_addr) == 1 &&
      ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    std::string req = "GET " + path + " HTTP/1.0\r\nHost: " + address + "\r\n\r\n";
    char buf[64] = {};
    if (::write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size()) &&
        ::read(fd, buf, sizeof buf - 1) > 12)
      status = std::atoi(buf + 9);  // "HTTP/1.1 200 ..."
  }
  ::close(fd);
  return status;
}

class TestRegistry {
 public:
  explicit TestRegistry(RegistryOptions options = {}) : options_(std::move(options)) {
    if (!options_.user.empty()) writeHtpasswd();
    // The port was free a moment ago; another process may take it first, so a few tries.
    for (int attempt = 0; attempt < 5 && !process_; ++attempt) start();
    REQUIRE_MESSAGE(process_, "docker-registry did not start: " << lastError_);
  }
  ~TestRegistry() { stop(); }
  TestRegistry(const TestRegistry&) = delete;
  TestRegistry& operator=(const TestRegistry&) = delete;

  // host:port, as an image reference names the registry.
  std::string host() const { return options_.address + ":" + std::to_string(port_); }
  int port() const { return port_; }
  std::string storage() const { return dir_ / "storage"; }
  // Where the registry keeps a blob's bytes, so a test can tamper with them.
  std::string blobPath(const std::string& digest) const {
    std::string hex = digest.substr(digest.find(':') + 1);
    return storage() + "/docker/registry/v2/blobs/sha256/" + hex.substr(0, 2) + "/" + hex +
           "/data";
  }

  // Stops the registry (SIGTERM, then SIGKILL after 5 s); its storage stays until the end.
  void stop() {
    if (!process_) return;
    process_->signal(SIGTERM);
    if (!process_->wait(std::chrono::seconds(5))) process_->signal(SIGKILL);
    process_->wait(std::chrono::seconds(5));
    process_.reset();
  }

  // Builds the busybox image and pushes it as <host>/<name>:<tag>; returns that reference.
  std::string pushBusybox(const std::string& name, const PushOptions& push = {}) {
    std::string layout = dir_ / ("layout-" + std::to_string(++pushes_));
    std::vector<std::string> make = {"/usr/bin/python3",
                                     sourceDir() + "/tools/images/make-busybox-image",
                                     "--out", layout, "--tag", push.tag};
    if (push.multiPlatform) make.push_back("--multi-platform");
    if (!push.healthcheck.empty()) make.insert(make.end(), {"--healthcheck", push.healthcheck});
    for (auto& l : push.labels) make.insert(make.end(), {"--label", l});
    expectSuccess(make, std::chrono::seconds(60));

    std::string ref = host() + "/" + name + ":" + push.tag;
    std::vector<std::string> copy = {"/usr/bin/skopeo", "copy", "--all",
                                      "--dest-tls-verify=false"};
    if (!options_.user.empty())
      copy.insert(copy.end(), {"--dest-creds", options_.user + ":" + options_.password});
    copy.insert(copy.end(), {"oci:" + layout + ":" + push.tag, "docker://" + ref});
    expectSuccess(copy, std::chrono::seconds(120));
    return ref;
  }

 private:
  void writeHtpasswd() {
    auto r = run({"/usr/bin/htpasswd", "-Bbn", options_.user, options_.password}, {},
                 std::chrono::seconds(30));
    REQUIRE_MESSAGE(r.status.code == 0, "htpasswd failed: " << r.err);
    std::ofstream(dir_ / "htpasswd") << r.out;
  }

  std::string config(int port) const {
    std::ostringstream c;
    c << "version: 0.1\n"
      << "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
      << "storage:\n  filesystem:\n    rootdirectory: " << storage() << "\n"
      << "  delete:\n    enabled: true\n"
      << "http:\n  addr: " << options_.address << ":" << port << "\n"
      << "health:\n  storagedriver:\n    enabled: false\n";
    if (!options_.user.empty())
      c << "auth:\n  htpasswd:\n    realm: shoal-test\n    path: " << (dir_ / "htpasswd")
        << "\n";
    return c.str();
  }

  // One try: a free port, the registry on it, until GET /v2/ answers (200, or 401 with auth).
  void start() {
    int port = freePort();
    std::string file = dir_ / "config.yml";
    std::ofstream(file) << config(port);
    auto p = std::make_unique<Process>(
        std::vector<std::string>{"/usr/bin/docker-registry", "serve", file});
    bool up = waitFor([&] { return !p->running() || httpStatus(options_.address, port, "/v2/"); },
                      std::chrono::seconds(30));
    if (up && p->running()) {
      port_ = port;
      process_ = std::move(p);
      return;
    }
    lastError_ = p->err();
  }

  void expectSuccess(const std::vector<std::string>& argv, std::chrono::milliseconds limit) {
    auto r = run(argv, {}, limit);
    std::string line;
    for (auto& a : argv) line += a + " ";
    REQUIRE_MESSAGE((!r.timedOut && r.status.exited() && r.status.code == 0),
                    line << "failed (exit " << r.status.code << "): " << r.err << r.out);
  }

  RegistryOptions options_;
  TempDir dir_;
  std::unique_ptr<Process> process_;
  int port_ = 0;
  int pushes_ = 0;
  std::string lastError_;
};

}  // namespace shoal::testing
