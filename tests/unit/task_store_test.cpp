// The runc executor's task records (services/agentd/task_store.h): the encoding, a damaged
// record told apart, and the LMDB store across a reopen (what an agentd restart reads);
// named volumes' directories (volumes.h).
#include <doctest/doctest.h>

#include <filesystem>

#include "services/agentd/task_store.h"
#include "services/agentd/volumes.h"
#include "tests/support/tempdir.h"

namespace shoal::agentd {
namespace {

TaskRecord sample() {
  TaskRecord r;
  r.id = "t1abc";
  r.name = "web.1.t1abc";
  r.serviceId = "s1";
  r.image = "127.0.0.1:5000/busybox:latest";
  r.imageId = "sha256:aa";
  r.bundle = "/var/lib/shoal/agentd/containers/t1abc";
  r.phase = TaskRecord::Phase::Started;
  r.sandbox = true;
  r.volumes = {"data", "cache"};
  r.created = 10;
  r.started = 20;
  r.pid = 4242;
  return r;
}

TEST_CASE("a record encodes and decodes to itself") {
  TaskRecord r = sample();
  auto back = decodeRecord(r.id, encodeRecord(r));
  REQUIRE(back);
  CHECK(back->name == r.name);
  CHECK(back->imageId == r.imageId);
  CHECK(back->phase == TaskRecord::Phase::Started);
  CHECK(back->sandbox);
  CHECK(back->volumes == r.volumes);
  CHECK(back->pid == 4242);
  CHECK(back->started == 20);
}

TEST_CASE("a damaged record is refused, saying which and why") {
  auto notJson = decodeRecord("t1", "{oops");
  REQUIRE(!notJson);
  CHECK(notJson.error().message.find("task record 't1'") != std::string::npos);
  TaskRecord r = sample();
  auto otherKey = decodeRecord("t2", encodeRecord(r));
  REQUIRE(!otherKey);
  CHECK(otherKey.error().message.find("t1abc") != std::string::npos);
  std::string phase = encodeRecord(r);
  phase.replace(phase.find("\"started\",\""), 9, "\"dancing\"");
  auto badPhase = decodeRecord(r.id, phase);
  REQUIRE(!badPhase);
  CHECK(badPhase.error().message.find("dancing") != std::string::npos);
  auto noBundle = decodeRecord("t1", R"({"id":"t1","phase":"started"})");
  CHECK(!noBundle);
}

TEST_CASE("the store keeps records across a reopen, and removes them") {
  testing::TempDir dir;
  {
    auto store = TaskStore::open(dir.path() + "/tasks.mdb");
    REQUIRE(store);
    TaskRecord a = sample();
    TaskRecord b = sample();
    b.id = "t2";
    b.bundle = "/b";
    b.phase = TaskRecord::Phase::Ended;
    b.exitCode = 3;
    REQUIRE((*store)->put(a));
    REQUIRE((*store)->put(b));
    a.phase = TaskRecord::Phase::Ended;
    REQUIRE((*store)->put(a));  // a later write replaces the record
  }
  auto store = TaskStore::open(dir.path() + "/tasks.mdb");
  REQUIRE(store);
  auto listing = (*store)->list();
  REQUIRE(listing);
  REQUIRE(listing->records.size() == 2);
  CHECK(listing->records[0].id == "t1abc");
  CHECK(listing->records[0].phase == TaskRecord::Phase::Ended);
  CHECK(listing->records[1].exitCode == 3);
  REQUIRE((*store)->remove("t1abc"));
  REQUIRE((*store)->remove("never"));  // removing what is not there is fine
  auto after = (*store)->list();
  REQUIRE(after);
  CHECK(after->records.size() == 1);
  CHECK(after->bad.empty());
}

TEST_CASE("volume names follow docker's rule") {
  CHECK(checkVolumeName("data"));
  CHECK(checkVolumeName("my_vol.1-x"));
  CHECK(!checkVolumeName("a"));
  CHECK(!checkVolumeName("_x"));
  CHECK(!checkVolumeName("../etc"));
  CHECK(!checkVolumeName("a/b"));
  auto e = checkVolumeName("x y");
  REQUIRE(!e);
  CHECK(e.error().message.find("'x y'") != std::string::npos);
}

TEST_CASE("volumes are made on first use, listed, and removed") {
  testing::TempDir dir;
  Volumes v(dir.path());
  auto made = v.ensure("data");
  REQUIRE(made);
  CHECK(*made == dir.path() + "/data/_data");
  CHECK(std::filesystem::is_directory(*made));
  REQUIRE(v.ensure("data"));  // again: the same dir, kept
  REQUIRE(v.ensure("logs"));
  CHECK(!v.ensure("../x"));
  auto list = v.list();
  REQUIRE(list.size() == 2);
  CHECK(list[0].name == "data");
  CHECK(list[0].mountpoint == dir.path() + "/data/_data");
  CHECK(list[0].created > 0);
  REQUIRE(v.remove("data"));
  CHECK(!std::filesystem::exists(dir.path() + "/data"));
  auto missing = v.remove("data");
  REQUIRE(!missing);
  CHECK(missing.error().message == "no such volume: data");
}

}  // namespace
}  // namespace shoal::agentd
