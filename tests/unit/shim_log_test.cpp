// The shim's log writer (services/agentd/shim/log_writer.h): CRI records, long lines split
// into partial ones at 16 KiB, a line without its newline at the end, rotation by size.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "services/agentd/shim/log_writer.h"
#include "tests/support/tempdir.h"

namespace shoal::shim {
namespace {

std::vector<std::string> lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// "<time> <stream> <tag> <text>" without the time.
std::string body(const std::string& line) { return line.substr(line.find(' ') + 1); }

TEST_CASE("a CRI record: RFC 3339 UTC time with nanoseconds, stream, F or P, text") {
  timespec at{1796045831, 123000789};  // 2026-11-30T13:37:11.123000789Z
  CHECK(criRecord(at, "stdout", false, "hello") ==
        "2026-11-30T13:37:11.123000789Z stdout F hello\n");
  CHECK(criRecord(at, "stderr", true, "") == "2026-11-30T13:37:11.123000789Z stderr P \n");
}

TEST_CASE("lines of both streams as they come, split across reads") {
  testing::TempDir dir;
  {
    LogWriter w;
    REQUIRE(w.open(dir / "container.log", 0, 3));
    w.add(0, "one\ntw");
    w.add(1, "err\n");
    w.add(0, "o\n\nthree");
    w.finish(0);
    w.finish(1);
  }
  auto l = lines(dir / "container.log");
  REQUIRE(l.size() == 5);
  CHECK(body(l[0]) == "stdout F one");
  CHECK(body(l[1]) == "stderr F err");
  CHECK(body(l[2]) == "stdout F two");
  CHECK(body(l[3]) == "stdout F ");
  CHECK(body(l[4]) == "stdout P three");  // no newline at the end
}

TEST_CASE("a line longer than 16 KiB is split into partial records, then its F end") {
  testing::TempDir dir;
  {
    LogWriter w;
    REQUIRE(w.open(dir / "container.log", 0, 3));
    w.add(0, std::string(kMaxLine * 2 + 10, 'x') + "\n");
  }
  auto l = lines(dir / "container.log");
  REQUIRE(l.size() == 3);
  CHECK(body(l[0]) == "stdout P " + std::string(kMaxLine, 'x'));
  CHECK(body(l[1]) == "stdout P " + std::string(kMaxLine, 'x'));
  CHECK(body(l[2]) == "stdout F " + std::string(10, 'x'));
}

TEST_CASE("rotation at the size: container.log → .1 → .2, the oldest dropped") {
  testing::TempDir dir;
  std::string log = dir / "container.log";
  {
    LogWriter w;
    REQUIRE(w.open(log, 200, 3));
    for (int i = 0; i < 40; ++i) w.add(0, "line " + std::to_string(i) + "\n");
  }
  namespace fs = std::filesystem;
  CHECK(fs::exists(log + ".1"));
  CHECK(fs::exists(log + ".2"));
  CHECK_FALSE(fs::exists(log + ".3"));
  for (auto& f : {log, log + ".1", log + ".2"}) CHECK(fs::file_size(f) <= 200);
  CHECK(body(lines(log).back()) == "stdout F line 39");
  // .1 ends where container.log starts
  auto newest = lines(log), older = lines(log + ".1");
  int last = std::stoi(body(older.back()).substr(14));
  int first = std::stoi(body(newest.front()).substr(14));
  CHECK(first == last + 1);
}

TEST_CASE("one file kept: the log starts over when full") {
  testing::TempDir dir;
  std::string log = dir / "container.log";
  {
    LogWriter w;
    REQUIRE(w.open(log, 200, 1));
    for (int i = 0; i < 40; ++i) w.add(1, "line " + std::to_string(i) + "\n");
  }
  CHECK_FALSE(std::filesystem::exists(log + ".1"));
  CHECK(std::filesystem::file_size(log) <= 200);
  CHECK(body(lines(log).back()) == "stderr F line 39");
}

}  // namespace
}  // namespace shoal::shim
