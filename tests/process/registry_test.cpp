// The image store against a real registry (docs/containers.md "Images"): Debian's
// docker-registry on loopback (tests/support/registry.h), busybox pushed with
// tools/images/make-busybox-image and skopeo, pulled by ImageStore on a Loop. Every failure
// must leave the store as it was: tmp/ empty, no new image, blob or layer. Needs root (layers
// keep their owners; whiteouts are device nodes).
#include <doctest/doctest.h>

#include <netinet/in.h>
#include <poll.h>
#include <sodium.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/loop.h"
#include "services/agentd/image_store.h"
#include "tests/support/process.h"
#include "tests/support/registry.h"
#include "tests/support/tempdir.h"

namespace shoal {
namespace {

namespace fs = std::filesystem;
using agentd::Image;
using agentd::ImageStore;
using agentd::RegistryAuth;
using testing::TestRegistry;

size_t entries(const std::string& dir) {
  size_t n = 0;
  for ([[maybe_unused]] auto& e : fs::directory_iterator(dir)) ++n;
  return n;
}

// A store in a temp dir, and a bounded wait for a pull's callback on the loop.
struct Store {
  Loop loop;
  testing::TempDir dir;
  std::unique_ptr<ImageStore> store;

  explicit Store(ImageStore::Options options = {}) {
    auto opened = ImageStore::open(loop, dir / "images", std::move(options));
    REQUIRE_MESSAGE(opened, (opened ? "" : opened.error().message));
    store = std::move(*opened);
  }
  std::string root() const { return store->root(); }

  using Start = std::function<void(ImageStore::PullFn)>;
  Result<Image> wait(const Start& start) {
    std::optional<Result<Image>> got;
    start([&](Result<Image> r) { got.emplace(std::move(r)); });
    CHECK_FALSE(got);  // never inside the call
    auto end = std::chrono::steady_clock::now() + std::chrono::minutes(2);
    while (!got && std::chrono::steady_clock::now() < end)
      loop.runOnce(std::chrono::milliseconds(50));
    REQUIRE_MESSAGE(got, "the pull did not finish in 2 minutes");
    return std::move(*got);
  }
  Result<Image> ensure(const std::string& ref, const RegistryAuth& auth = {}) {
    return wait([&](ImageStore::PullFn done) { store->ensure(ref, auth, std::move(done)); });
  }

  // A failed pull leaves nothing: tmp/ empty, the counts of images, blobs and layers as before.
  void checkUnchanged(const nlohmann::json& before) {
    CHECK(entries(root() + "/tmp") == 0);
    auto now = store->status();
    CHECK(now["images"] == before["images"]);
    CHECK(now["blobs"] == before["blobs"]);
    CHECK(now["layers"] == before["layers"]);
  }
  Error failedPull(const std::string& ref, const RegistryAuth& auth = {}) {
    auto before = store->status();
    auto got = ensure(ref, auth);
    REQUIRE_FALSE(got);
    checkUnchanged(before);
    MESSAGE(got.error().message);
    return got.error();
  }
};

RegistryAuth login(const std::string& user, const std::string& password) {
  RegistryAuth auth;
  auth.username = user;
  auth.password = password;
  return auth;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST_CASE("test registry: busybox pushed, its blobs in the registry's storage") {
  TestRegistry registry;
  std::string ref = registry.pushBusybox("busybox");
  CHECK(ref == registry.host() + "/busybox:latest");
  CHECK(testing::httpStatus("127.0.0.1", registry.port(), "/v2/busybox/tags/list") == 200);
  CHECK(fs::exists(registry.storage() + "/docker/registry/v2/repositories/busybox"));
}

TEST_CASE("pull busybox into an empty store, then it is used from the store") {
  TestRegistry registry;
  std::string ref = registry.pushBusybox("busybox");
  Store s;
  auto started = std::chrono::steady_clock::now();
  auto image = s.ensure(ref);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - started).count();
  REQUIRE_MESSAGE(image, (image ? "" : image.error().message));
  auto status = s.store->status();
  MESSAGE("pulled busybox in " << ms << " ms, " << status["bytes_downloaded"] << " bytes");
  CHECK(image->config.cmd == std::vector<std::string>{"sh"});
  CHECK(image->config.architecture == "amd64");
  CHECK(image->names == std::vector<std::string>{ref});
  REQUIRE(image->layers.size() == 1);
  CHECK(fs::is_regular_file(image->layers[0] + "/bin/busybox"));
  CHECK(fs::read_symlink(image->layers[0] + "/bin/sh") == "busybox");
  CHECK((fs::status(image->layers[0] + "/tmp").permissions() & fs::perms::sticky_bit) !=
        fs::perms::none);
  CHECK(status["pulled"] == 1);
  CHECK(status["blobs"] == 3);  // manifest, config, layer
  CHECK(status["layers"] == 1);
  CHECK(entries(s.root() + "/tmp") == 0);

  auto again = s.ensure(ref);
  REQUIRE(again);
  CHECK(again->id == image->id);
  CHECK(s.store->status()["pulled"] == 1);  // from the store, no second pull

  // The store reads itself back: a new store on the same dir finds the image by id prefix.
  s.store.reset();
  auto reopened = ImageStore::open(s.loop, s.dir / "images", {});
  REQUIRE(reopened);
  auto found = (*reopened)->find(image->id.substr(7, 12));
  REQUIRE(found);
  CHECK(found->config.cmd == std::vector<std::string>{"sh"});
  CHECK((*reopened)->find("busybox:latest").error().message.find("no such image") !=
        std::string::npos);
}

TEST_CASE("two concurrent ensure() of one reference share one pull") {
  TestRegistry registry;
  std::string ref = registry.pushBusybox("busybox");
  Store s;
  std::optional<Result<Image>> a, b;
  s.store->ensure(ref, {}, [&](Result<Image> r) { a.emplace(std::move(r)); });
  s.store->ensure(ref, {}, [&](Result<Image> r) { b.emplace(std::move(r)); });
  CHECK(s.store->status()["pulls_in_flight"] == 1);
  auto end = std::chrono::steady_clock::now() + std::chrono::minutes(2);
  while (!(a && b) && std::chrono::steady_clock::now() < end)
    s.loop.runOnce(std::chrono::milliseconds(50));
  REQUIRE((a && b));
  REQUIRE((*a && *b));
  CHECK((*a)->id == (*b)->id);
  CHECK(s.store->status()["pulled"] == 1);
}

TEST_CASE("a multi-platform index: the node's platform (linux/amd64) is picked") {
  TestRegistry registry;
  std::string ref = registry.pushBusybox("multi", [] {
    testing::PushOptions o;
    o.multiPlatform = true;
    return o;
  }());
  Store s;
  auto image = s.ensure(ref);
  REQUIRE_MESSAGE(image, (image ? "" : image.error().message));
  CHECK(image->config.architecture == "amd64");
  REQUIRE(image->layers.size() == 1);
  CHECK(fs::exists(image->layers[0] + "/bin/busybox"));
  CHECK_FALSE(fs::exists(image->layers[0] + "/etc/platform"));  // the arm64 layer's file
  CHECK(image->digest != image->id);
  // The repo digest is the index's: what the tag names.
  CHECK(s.store->status()["blobs"] == 4);  // index, manifest, config, layer
}

TEST_CASE("a registry with users: the right credentials pull, wrong or none are refused") {
  TestRegistry registry({.user = "alice", .password = "s3cret"});
  std::string ref = registry.pushBusybox("private/busybox");
  Store s;
  auto wrong = s.failedPull(ref, login("alice", "nope"));
  CHECK(contains(wrong.message, "pull access denied for " + registry.host() +
                                    "/private/busybox: wrong username or password (HTTP 401)"));
  auto none = s.failedPull(ref);
  CHECK(contains(none.message, "pull access denied for " + registry.host() + "/private/busybox"));
  CHECK(contains(none.message, "shoal login"));
  auto image = s.ensure(ref, login("alice", "s3cret"));
  REQUIRE_MESSAGE(image, (image ? "" : image.error().message));
  CHECK(image->config.cmd == std::vector<std::string>{"sh"});
}

TEST_CASE("a tag the registry does not have, and a name that is not an image") {
  TestRegistry registry;
  registry.pushBusybox("busybox");
  Store s;
  auto missing = s.failedPull(registry.host() + "/busybox:nope");
  CHECK(contains(missing.message, registry.host() + "/busybox: manifest unknown"));
  CHECK(contains(missing.message, "tag nope does not exist"));
  auto noRepo = s.failedPull(registry.host() + "/nothing:latest");
  CHECK(contains(noRepo.message, registry.host() + "/nothing"));
  auto bad = s.failedPull("Busybox!!");
  CHECK(contains(bad.message, "invalid image"));
}

TEST_CASE("a tampered blob in the registry: digest mismatch, nothing kept") {
  TestRegistry registry;
  std::string ref = registry.pushBusybox("busybox");
  // The layer is the largest blob; overwrite its bytes in place (same size, other content).
  std::string layer;
  uintmax_t largest = 0;
  for (auto& e : fs::recursive_directory_iterator(registry.storage()))
    if (e.is_regular_file() && e.path().filename() == "data" && e.file_size() > largest) {
      largest = e.file_size();
      layer = e.path().string();
    }
  REQUIRE(largest > 100000);
  {
    std::fstream f(layer, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(largest / 2));
    f.write("tampered", 8);
  }
  Store s;
  auto e = s.failedPull(ref);
  CHECK(contains(e.message, "digest mismatch: got sha256:"));
  CHECK(contains(e.message, "corrupted or tampered"));
  CHECK(s.store->status()["blobs"] == 0);
}

TEST_CASE("a registry that is down: cannot reach it, nothing kept") {
  TestRegistry registry;
  std::string ref = registry.pushBusybox("busybox");
  registry.stop();
  Store s;
  auto e = s.failedPull(ref);
  CHECK(contains(e.message, "cannot reach registry " + registry.host()));
  CHECK(contains(e.message, "Connection refused"));
}

TEST_CASE("an image in use survives collect; an unnamed unused one goes with its files") {
  TestRegistry registry;
  std::string ref = registry.pushBusybox("busybox");
  Store s;
  auto image = s.ensure(ref);
  REQUIRE(image);
  CHECK_FALSE(s.store->remove(ref, false, {image->id}));  // in use: refused
  REQUIRE(s.store->remove(ref, false, {}));
  CHECK_FALSE(s.store->find(image->id));
  s.store->collect({});
  CHECK(testing::waitFor(
      [&] {
        auto st = s.store->status();
        return st["blobs"] == 0 && st["layers"] == 0;
      },
      std::chrono::seconds(30)));
  CHECK(s.store->status()["images"] == 0);
}

// A registry that wants bearer tokens (the docker token spec), in a thread of the test: a
// token endpoint that takes basic credentials (GET) or a refresh token (POST), and the /v2/
// API serving an OCI layout from make-busybox-image to whoever shows the token. One request
// per connection. Counts the tokens it gave, so a test sees the client's cache work.
class BearerRegistry {
 public:
  BearerRegistry(std::string layout, const std::string& user, const std::string& password)
      : layout_(std::move(layout)) {
    std::string pair = user + ":" + password;
    std::string b64(sodium_base64_ENCODED_LEN(pair.size(), sodium_base64_VARIANT_ORIGINAL), 0);
    sodium_bin2base64(b64.data(), b64.size(), reinterpret_cast<const unsigned char*>(pair.data()),
                      pair.size(), sodium_base64_VARIANT_ORIGINAL);
    basic_ = "Basic " + std::string(b64.c_str());
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd_, 16) == 0);
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~BearerRegistry() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  int tokensGiven() const { return tokens_; }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      timeval tv{5, 0};
      ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      std::string reply = answer(readRequest(c));
      for (size_t off = 0; off < reply.size();) {
        ssize_t w = ::send(c, reply.data() + off, reply.size() - off, MSG_NOSIGNAL);
        if (w <= 0) break;
        off += static_cast<size_t>(w);
      }
      ::close(c);
    }
  }

  static std::string readRequest(int c) {
    std::string req;
    char buf[4096];
    for (int i = 0; i < 64 && req.find("\r\n\r\n") == std::string::npos; ++i) {
      ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) break;
      req.append(buf, static_cast<size_t>(n));
    }
    // A POST's form (the refresh token) follows the headers.
    if (req.rfind("POST", 0) == 0 && req.find("refresh_token=") == std::string::npos) {
      ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n > 0) req.append(buf, static_cast<size_t>(n));
    }
    return req;
  }

  static std::string response(int status, const std::string& body,
                              const std::string& extra = "") {
    return "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\nConnection: close\r\n" + extra + "\r\n" + body;
  }

  std::string blob(const std::string& digest) const {
    std::ifstream in(layout_ + "/blobs/sha256/" + digest.substr(7), std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  std::string answer(const std::string& req) {
    std::string path = req.substr(req.find(' ') + 1);
    path = path.substr(0, path.find(' '));
    if (path.rfind("/token", 0) == 0) {
      bool ok = req.find("Authorization: " + basic_) != std::string::npos ||
                req.find("refresh_token=refresh-me") != std::string::npos;
      if (!ok) return response(401, "{}");
      ++tokens_;
      return response(200, R"({"token":"tok-1","expires_in":300})");
    }
    if (req.find("Authorization: Bearer tok-1") == std::string::npos)
      return response(401, R"({"errors":[{"code":"UNAUTHORIZED","message":"auth required"}]})",
                      "WWW-Authenticate: Bearer realm=\"http://" + host() +
                          "/token\",service=\"test\",scope=\"repository:busybox:pull\"\r\n");
    return serveV2(path);
  }

  std::string serveV2(const std::string& path) {
    const std::string manifests = "/v2/busybox/manifests/", blobs = "/v2/busybox/blobs/";
    if (path.rfind(manifests, 0) == 0) {
      std::string ref = path.substr(manifests.size());
      std::string digest = ref;
      if (ref == "latest") {
        std::ifstream in(layout_ + "/index.json");
        digest = nlohmann::json::parse(in)["manifests"][0]["digest"];
      }
      std::string body = blob(digest);
      if (body.empty()) return response(404, R"({"errors":[{"message":"manifest unknown"}]})");
      auto type = nlohmann::json::parse(body)["mediaType"].get<std::string>();
      return response(200, body, "Content-Type: " + type + "\r\n");
    }
    if (path.rfind(blobs, 0) == 0) {
      std::string body = blob(path.substr(blobs.size()));
      return body.empty() ? response(404, "{}") : response(200, body);
    }
    return response(404, "{}");
  }

  std::string layout_, basic_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> tokens_{0};
  std::thread thread_;
};

TEST_CASE("the bearer flow: a token from the realm with basic credentials or a refresh token") {
  testing::TempDir dir;
  auto made = testing::run({"/usr/bin/python3", testing::sourceDir() +
                            "/tools/images/make-busybox-image", "--out", dir / "layout"},
                           {}, std::chrono::seconds(60));
  REQUIRE_MESSAGE(made.status.code == 0, made.err);
  BearerRegistry registry(dir / "layout", "bob", "hunter2");
  std::string ref = registry.host() + "/busybox:latest";

  Store s;
  auto wrong = s.failedPull(ref, login("bob", "nope"));
  CHECK(contains(wrong.message, "pull access denied for " + registry.host() + "/busybox"));
  CHECK(contains(wrong.message, "wrong username or password"));

  auto image = s.ensure(ref, login("bob", "hunter2"));
  REQUIRE_MESSAGE(image, (image ? "" : image.error().message));
  CHECK(image->config.cmd == std::vector<std::string>{"sh"});
  // One token for the manifest, the config and the layer: the cache works.
  CHECK(registry.tokensGiven() == 1);

  Store other;
  RegistryAuth refresh;
  refresh.identityToken = "refresh-me";
  auto viaRefresh = other.wait(
      [&](ImageStore::PullFn done) { other.store->pull(ref, refresh, std::move(done)); });
  REQUIRE_MESSAGE(viaRefresh, (viaRefresh ? "" : viaRefresh.error().message));
  CHECK(registry.tokensGiven() == 2);
}

}  // namespace
}  // namespace shoal
