// services/agentd/log_reader.h: CRI lines parsed, partial lines joined, tail and since over
// rotated files, and following a file that grows and is rotated.
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "services/agentd/log_reader.h"
#include "tests/support/tempdir.h"

using namespace shoal::agentd;

namespace {

constexpr int64_t kT0 = 1'796'045'431'123'456'789;  // 2026-11-30T13:30:31.123456789Z

std::string cri(int64_t ts, const std::string& text, bool err = false, bool partial = false) {
  LogLine l;
  l.timestamp = ts;
  l.stderrStream = err;
  l.partial = partial;
  l.text = text;
  return formatCriLine(l) + "\n";
}

void append(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::app | std::ios::binary);
  f << text;
}

std::vector<std::string> texts(const std::vector<LogLine>& lines) {
  std::vector<std::string> out;
  for (auto& l : lines) out.push_back(l.text);
  return out;
}

using V = std::vector<std::string>;

}  // namespace

TEST_CASE("a CRI line parses into its time, stream, tag and text") {
  auto l = parseCriLine("2026-11-30T13:37:11.123456789Z stdout F the line");
  REQUIRE(l.ok());
  CHECK(l->timestamp == parseRfc3339Nanos("2026-11-30T13:37:11.123456789Z").value());
  CHECK(l->timestamp % 1'000'000'000 == 123456789);
  CHECK_FALSE(l->stderrStream);
  CHECK_FALSE(l->partial);
  CHECK(l->text == "the line");

  auto e = parseCriLine("2026-11-30T13:37:11Z stderr P  two  spaces ");
  REQUIRE(e.ok());
  CHECK(e->stderrStream);
  CHECK(e->partial);
  CHECK(e->text == " two  spaces ");

  auto empty = parseCriLine("2026-11-30T13:37:11.5Z stdout F");
  REQUIRE(empty.ok());
  CHECK(empty->text.empty());
  CHECK(empty->timestamp % 1'000'000'000 == 500'000'000);
}

TEST_CASE("times: fractions, offsets and the epoch") {
  CHECK(parseRfc3339Nanos("1970-01-01T00:00:00Z").value() == 0);
  CHECK(parseRfc3339Nanos("1970-01-01T01:00:00+01:00").value() == 0);
  CHECK(parseRfc3339Nanos("1970-01-01T00:00:01.000000001Z").value() == 1'000'000'001);
  CHECK_FALSE(parseRfc3339Nanos("1970-01-01 00:00:00Z").ok());
  CHECK_FALSE(parseRfc3339Nanos("1970-13-01T00:00:00Z").ok());
  CHECK_FALSE(parseRfc3339Nanos("1970-01-01T00:00:00").ok());
  CHECK_FALSE(parseRfc3339Nanos("1970-01-01T00:00:00.Z").ok());
  CHECK(formatCriLine({kT0, true, false, "x"}) == "2026-11-30T13:30:31.123456789Z stderr F x");
}

TEST_CASE("bad lines are refused with a reason") {
  for (const char* bad : {"", "garbage", "2026-11-30T13:37:11Z", "2026-11-30T13:37:11Z stdin F x",
                          "2026-11-30T13:37:11Z stdout X x", "2026-11-30T13:37:11Z stdout Fx",
                          "notatime stdout F x", "2026-11-30T13:37:11Z stdout "}) {
    auto r = parseCriLine(bad);
    CHECK_MESSAGE(!r.ok(), bad);
    if (!r.ok()) CHECK(!r.error().message.empty());
  }
}

TEST_CASE("partial lines are joined per stream with the next full one") {
  LineJoiner j;
  CHECK_FALSE(j.push({1, false, true, "ab"}));
  auto err = j.push({2, true, false, "error"});  // the other stream is not held up
  REQUIRE(err);
  CHECK(err->text == "error");
  CHECK_FALSE(j.push({3, false, true, "cd"}));
  auto out = j.push({4, false, false, "ef"});
  REQUIRE(out);
  CHECK(out->text == "abcdef");
  CHECK(out->timestamp == 1);
  CHECK_FALSE(out->partial);
  CHECK_FALSE(j.push({5, true, true, "tail"}));
  auto rest = j.flush();
  REQUIRE(rest.size() == 1);
  CHECK(rest[0].text == "tail");
  CHECK(j.flush().empty());
}

TEST_CASE("since, then tail") {
  std::vector<LogLine> lines;
  for (int i = 0; i < 10; ++i) lines.push_back({i * 10, false, false, std::to_string(i)});
  CHECK(texts(selectLines(lines, {})) == V{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"});
  CHECK(texts(selectLines(lines, {3, 0})) == V{"7", "8", "9"});
  CHECK(texts(selectLines(lines, {0, 0})).empty());
  CHECK(texts(selectLines(lines, {-1, 75})) == V{"8", "9"});
  CHECK(texts(selectLines(lines, {1, 55})) == V{"9"});
  CHECK(texts(selectLines(lines, {100, 0})).size() == 10);
}

TEST_CASE("a task's files are read oldest first; tail spans them; bad lines are counted") {
  shoal::testing::TempDir tmp;
  std::string dir = tmp / "task";
  std::filesystem::create_directories(dir);
  append(dir + "/container.log.2", cri(kT0, "one") + cri(kT0 + 1, "two"));
  append(dir + "/container.log.1", cri(kT0 + 2, "three") + "not a line\n" + cri(kT0 + 3, "fo", false, true));
  append(dir + "/container.log", cri(kT0 + 4, "ur") + cri(kT0 + 5, "five", true));
  CHECK(logFiles(dir) == V{dir + "/container.log.2", dir + "/container.log.1", dir + "/container.log"});

  TaskLog all(dir);
  auto lines = all.readAll({});
  REQUIRE(lines.ok());
  CHECK(texts(*lines) == V{"one", "two", "three", "four", "five"});
  CHECK((*lines)[4].stderrStream);
  CHECK(all.badLines() == 1);

  TaskLog tail(dir);
  CHECK(texts(tail.readAll({3, 0}).value()) == V{"three", "four", "five"});
  TaskLog since(dir);
  CHECK(texts(since.readAll({-1, kT0 + 2}).value()) == V{"three", "four", "five"});

  TaskLog none(tmp / "absent");
  auto missing = none.readAll({});
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message.find("no logs for this task") != std::string::npos);
}

TEST_CASE("following: appended lines, a line written in two goes, and a rotation") {
  shoal::testing::TempDir tmp;
  std::string dir = tmp / "task";
  std::filesystem::create_directories(dir);
  std::string live = dir + "/container.log";
  append(live, cri(kT0, "before"));
  TaskLog log(dir);
  CHECK(texts(log.readAll({}).value()) == V{"before"});
  CHECK(log.readNew().empty());

  append(live, cri(kT0 + 1, "after"));
  std::string half = cri(kT0 + 2, "split");
  append(live, half.substr(0, 20));  // the writer is in the middle of a line
  CHECK(texts(log.readNew()) == V{"after"});
  append(live, half.substr(20));
  CHECK(texts(log.readNew()) == V{"split"});

  // The shim rotates: the live file becomes .1 (after one more line) and a new one starts.
  append(live, cri(kT0 + 3, "last of the old file"));
  std::filesystem::rename(live, dir + "/container.log.1");
  append(live, cri(kT0 + 4, "first of the new file"));
  CHECK(texts(log.readNew()) == V{"last of the old file", "first of the new file"});
  append(live, cri(kT0 + 5, "more"));
  CHECK(texts(log.readNew()) == V{"more"});
  CHECK(log.badLines() == 0);
}

TEST_CASE("following a task whose log does not exist yet") {
  shoal::testing::TempDir tmp;
  std::string dir = tmp / "task";
  TaskLog log(dir);
  CHECK_FALSE(log.readAll({}).ok());
  CHECK(log.readNew().empty());
  std::filesystem::create_directories(dir);
  append(dir + "/container.log", cri(kT0, "hello"));
  CHECK(texts(log.readNew()) == V{"hello"});
}
