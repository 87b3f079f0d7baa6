// overlayd's network sandboxes (services/overlayd/sandboxes.h, schemas/overlay.fbs) on a real
// overlayd with temp dirs: a create makes a netns with only its loopback, up; a second create
// gives the same path; a remove unmounts and deletes it; a restarted overlayd lists what is
// still there and drops the record of one whose netns went away meanwhile. Runs as root (CI
// does).
#include <doctest/doctest.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <chrono>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "common/bus.h"
#include "common/protocols.h"
#include "tests/support/daemons.h"
#include "tests/support/process.h"
#include "tests/support/tempdir.h"

namespace shoal {
namespace {

using namespace std::chrono_literals;
using testing::daemonPath;
using testing::Process;

bool isNetns(const std::string& path) {
  struct statfs fs {};
  return ::statfs(path.c_str(), &fs) == 0 && static_cast<unsigned long>(fs.f_type) == NSFS_MAGIC;
}

bool mounted(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.find(" " + path + " ") != std::string::npos) return true;
  return false;
}

// Whatever the test leaves under netns/ is unmounted and deleted before the temp dir goes,
// pass or fail (a mounted netns file cannot be deleted).
struct NetnsCleanup {
  std::string dir;
  ~NetnsCleanup() {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
      for (int i = 0; i < 8 && ::umount2(e.path().c_str(), MNT_DETACH) == 0; ++i) {
      }
      ::unlink(e.path().c_str());
    }
  }
};

class Overlayd {
 public:
  explicit Overlayd(const testing::TempDir& tmp) : tmp_(tmp) { start(); }
  ~Overlayd() { stop(); }

  void start() {
    process_ = std::make_unique<Process>(std::vector<std::string>{
        daemonPath("overlayd"), "--foreground", "--state-dir", tmp_ / "state", "--run-dir",
        tmp_ / "run", "--log-file", tmp_ / "overlayd.log"});
    client_ = std::make_unique<bus::SyncClient>(kOverlayProtocol);
    REQUIRE(client_->connect("ipc://" + tmp_ / "run" + "/overlayd.sock"));
    bool up = testing::waitFor([&] { return !status().empty(); }, 20s);
    REQUIRE_MESSAGE(up, "overlayd does not answer: ", process_->err(), log());
  }
  void stop() {
    if (!process_) return;
    client_.reset();
    process_->signal(SIGTERM);
    CHECK_MESSAGE(process_->wait(10s).has_value(), "overlayd did not stop on SIGTERM in 10 s");
    process_.reset();
  }
  std::string log() const {
    std::ifstream in(tmp_ / "overlayd.log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  nlohmann::json status() {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = control::CreateStatusRequest(fbb);
    bus::SyncClient control(kControlProtocol);
    if (!control.connect("ipc://" + tmp_ / "run" + "/overlayd.sock")) return {};
    auto r = control.call(bus::message<control::Envelope>(fbb, control::Body::StatusRequest, body.Union()), 1s);
    if (!r) return {};
    return nlohmann::json::parse(r->as<control::Envelope>()->body_as_StatusReply()->json()->str());
  }
  Result<std::string> create(const std::string& taskId) {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = overlayapi::CreateCreateSandboxRequestDirect(fbb, taskId.c_str());
    auto r = client_->call(bus::message<overlayapi::Envelope>(fbb, overlayapi::Body::CreateSandboxRequest, body.Union()), 10s);
    if (!r) return r.error();
    return r->as<overlayapi::Envelope>()->body_as_SandboxReply()->path()->str();
  }
  Status remove(const std::string& taskId) {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = overlayapi::CreateRemoveSandboxRequestDirect(fbb, taskId.c_str());
    auto r = client_->call(bus::message<overlayapi::Envelope>(fbb, overlayapi::Body::RemoveSandboxRequest, body.Union()), 10s);
    if (!r) return r.error();
    return {};
  }
  // The task ids ListSandboxes names, in order.
  std::vector<std::string> list() {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = overlayapi::CreateListSandboxesRequest(fbb);
    auto r = client_->call(bus::message<overlayapi::Envelope>(fbb, overlayapi::Body::ListSandboxesRequest, body.Union()), 10s);
    REQUIRE_MESSAGE(r.ok(), (r ? "" : r.error().message));
    auto j = nlohmann::json::parse(r->as<overlayapi::Envelope>()->body_as_ListSandboxesReply()->json()->str());
    std::vector<std::string> ids;
    for (auto& s : j["sandboxes"]) ids.push_back(s["task_id"].get<std::string>());
    return ids;
  }

 private:
  const testing::TempDir& tmp_;
  std::unique_ptr<Process> process_;
  std::unique_ptr<bus::SyncClient> client_;
};

}  // namespace

TEST_CASE("overlayd makes, keeps across a restart, and removes the tasks' network namespaces") {
  testing::TempDir tmp;
  NetnsCleanup cleanup{tmp / "run/netns"};
  Overlayd overlayd(tmp);
  auto st = overlayd.status();
  CHECK(st["sandboxes"] == 0);
  CHECK((st["lb"] == "ipvs" || st["lb"] == "nftables"));

  auto path = overlayd.create("task1");
  REQUIRE_MESSAGE(path.ok(), (path ? "" : path.error().message), overlayd.log());
  CHECK(*path == tmp / "run/netns/task1");
  CHECK(isNetns(*path));
  // Inside: the loopback and nothing else, up.
  auto links = testing::run({"/usr/bin/nsenter", "--net=" + *path, "/usr/sbin/ip", "-o", "link", "show"});
  REQUIRE_MESSAGE(links.status.code == 0, links.err);
  CHECK_MESSAGE(links.out.find("1: lo:") != std::string::npos, links.out);
  CHECK_MESSAGE(links.out.find("UP,LOWER_UP") != std::string::npos, links.out);
  CHECK_MESSAGE(std::count(links.out.begin(), links.out.end(), '\n') == 1, links.out);

  auto again = overlayd.create("task1");
  REQUIRE(again.ok());
  CHECK(*again == *path);
  REQUIRE(overlayd.create("task2").ok());
  REQUIRE(overlayd.create("task3").ok());
  CHECK(overlayd.status()["sandboxes"] == 3);

  auto bad = overlayd.create("../etc");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == static_cast<int>(wire::ErrorCode::InvalidArgument));
  CHECK_FALSE(std::filesystem::exists(tmp / "run/etc"));

  REQUIRE(overlayd.remove("task1").ok());
  CHECK_FALSE(std::filesystem::exists(*path));
  CHECK_FALSE(mounted(*path));
  CHECK(overlayd.remove("task1").ok());  // not there: not an error
  CHECK(overlayd.list() == std::vector<std::string>{"task2", "task3"});

  // A restart lists what is still there; a netns that went away meanwhile loses its record.
  overlayd.stop();
  std::string task3 = tmp / "run/netns/task3";
  REQUIRE(::umount2(task3.c_str(), MNT_DETACH) == 0);
  REQUIRE(::unlink(task3.c_str()) == 0);
  overlayd.start();
  CHECK(overlayd.list() == std::vector<std::string>{"task2"});
  CHECK(overlayd.status()["sandboxes"] == 1);
  CHECK(isNetns(tmp / "run/netns/task2"));
  REQUIRE(overlayd.remove("task2").ok());
  CHECK(overlayd.list().empty());
  CHECK(std::filesystem::is_empty(tmp / "run/netns"));
}

}  // namespace shoal
