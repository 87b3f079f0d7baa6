#include "common/ids.h"

#include <doctest/doctest.h>

#include <array>
#include <cerrno>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

using shoal::isValidId;
using shoal::kIdLength;
using shoal::matchIdPrefix;
using shoal::newId;
using shoal::parseId;
using shoal::resolveIdPrefix;

namespace {

constexpr std::string_view kAlphabet = "0123456789abcdefghijklmnopqrstuvwxyz";

}  // namespace

TEST_CASE("newId gives distinct valid IDs") {
  std::set<std::string> seen;
  for (int i = 0; i < 2000; ++i) {
    std::string id = newId();
    REQUIRE(id.size() == kIdLength);
    REQUIRE(isValidId(id));
    seen.insert(id);
  }
  CHECK(seen.size() == 2000);
}

TEST_CASE("newId symbols are uniform, at every position") {
  // 4000 IDs = 100000 symbols, about 2778 of each. A chi-square statistic (35 degrees of
  // freedom) above 100 happens by chance with probability below 1e-7; folding bytes with % 36
  // instead of rejecting would make 0-3 about 14 % more common and push it near 200.
  constexpr int kIds = 4000;
  std::array<long, 36> counts{};
  std::array<long, 36> firstCounts{};
  for (int i = 0; i < kIds; ++i) {
    std::string id = newId();
    for (char c : id) ++counts[kAlphabet.find(c)];
    ++firstCounts[kAlphabet.find(id[0])];
  }
  const double expected = kIds * static_cast<double>(kIdLength) / 36;
  double chiSquare = 0;
  for (long n : counts) chiSquare += (n - expected) * (n - expected) / expected;
  CHECK(chiSquare < 100);
  // Swarm's IDs are a 128-bit number in base36, so their first symbol is never above 'f'; ours
  // use all 36 symbols everywhere. Each has about 111 occurrences in first position.
  for (std::size_t s = 0; s < counts.size(); ++s) {
    CAPTURE(kAlphabet[s]);
    CHECK(firstCounts[s] > 0);
  }
}

TEST_CASE("newId with injected bytes rejects the biased ones") {
  int calls = 0;
  unsigned char next = 250;
  std::string id = newId([&](std::span<unsigned char> out) {
    ++calls;
    for (auto& b : out) b = next++;
  });
  // 250 -> 'y', 251 -> 'z', 252..255 rejected, then 0.. -> '0'..
  CHECK(id == "yz0123456789abcdefghijklm");
  CHECK(calls == 1);

  // A whole pool of rejected bytes makes it draw again.
  calls = 0;
  id = newId([&](std::span<unsigned char> out) {
    ++calls;
    for (auto& b : out) b = calls == 1 ? 252 + (&b - out.data()) % 4 : 71;  // 71 % 36 = 35
  });
  CHECK(id == std::string(kIdLength, 'z'));
  CHECK(calls == 2);
}

TEST_CASE("isValidId and parseId") {
  const std::string good = "0123456789abcdefghijklmno";
  REQUIRE(good.size() == kIdLength);
  CHECK(isValidId(good));
  CHECK(isValidId("zzzzzzzzzzzzzzzzzzzzzzzzz"));
  auto parsed = parseId(good);
  REQUIRE(parsed.ok());
  CHECK(*parsed == good);

  const std::vector<std::pair<std::string, std::string>> bad = {
      {"", "\"\""},
      {"0123456789abcdefghijklmn", "\"0123456789abcdefghijklmn\""},      // 24
      {"0123456789abcdefghijklmnop", "\"0123456789abcdefghijklmnop\""},  // 26
      {"0123456789ABCDEFGHIJKLMNO", "\"0123456789ABCDEFGHIJKLMNO\""},
      {"0123456789abcdefghijklm-o", "\"0123456789abcdefghijklm-o\""},
      {"0123456789abcdefghijklm o", "\"0123456789abcdefghijklm o\""},
      {std::string("0123456789abcdefghijklm\0o", 25), "\"0123456789abcdefghijklm\\x00o\""},
  };
  for (const auto& [text, quoted] : bad) {
    CAPTURE(text);
    CHECK_FALSE(isValidId(text));
    auto r = parseId(text);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message ==
          "invalid ID " + quoted + ": an ID is 25 characters of 0-9 and a-z");
    CHECK(r.error().code == EINVAL);
  }
}

TEST_CASE("matchIdPrefix finds one, several or none") {
  const std::vector<std::string> ids = {
      "abc00000000000000000000000",  // not a valid ID (26), still just a string to match
      "abd0000000000000000000000",
      "abd1111111111111111111111",
      "xyz0000000000000000000000",
  };
  CHECK(matchIdPrefix("x", ids).unique());
  CHECK(matchIdPrefix("x", ids).matches == std::vector<std::string>{"xyz0000000000000000000000"});
  CHECK(matchIdPrefix("abc", ids).unique());
  CHECK(matchIdPrefix("ab", ids).ambiguous());
  CHECK(matchIdPrefix("ab", ids).matches.size() == 3);
  CHECK(matchIdPrefix("abd1", ids).unique());
  CHECK(matchIdPrefix("abd1111111111111111111111", ids).unique());
  CHECK(matchIdPrefix("q", ids).none());
  CHECK(matchIdPrefix("X", ids).none());  // IDs are lowercase; matching is exact
  CHECK(matchIdPrefix("", ids).none());
  CHECK(matchIdPrefix("xyz00000000000000000000000", ids).none());  // longer than the ID

  // The same ID listed twice is still one match.
  const std::vector<std::string_view> twice = {"k000000000000000000000000",
                                               "k000000000000000000000000"};
  CHECK(matchIdPrefix("k", twice).unique());

  // Any range of strings works: a set, a span of views.
  const std::set<std::string> set(ids.begin(), ids.end());
  CHECK(matchIdPrefix("abd", set).matches ==
        std::vector<std::string>{"abd0000000000000000000000", "abd1111111111111111111111"});
}

TEST_CASE("resolveIdPrefix explains what went wrong") {
  const std::vector<std::string> ids = {
      "p100000000000000000000000", "p200000000000000000000000", "p300000000000000000000000",
      "p400000000000000000000000", "p500000000000000000000000", "p600000000000000000000000",
      "p700000000000000000000000", "q000000000000000000000000",
  };
  auto one = resolveIdPrefix("q", ids, "service");
  REQUIRE(one.ok());
  CHECK(*one == "q000000000000000000000000");

  auto none = resolveIdPrefix("zz", ids, "service");
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().message == "no such service: no service ID starts with \"zz\"");
  CHECK(none.error().code == ENOENT);

  auto empty = resolveIdPrefix("", ids, "node");
  REQUIRE_FALSE(empty.ok());
  CHECK(empty.error().message == "no node ID given: give an ID or the first characters of one");
  CHECK(empty.error().code == ENOENT);

  const std::vector<std::string> two = {"p100000000000000000000000", "p200000000000000000000000"};
  auto ambiguous = resolveIdPrefix("p", two, "task");
  REQUIRE_FALSE(ambiguous.ok());
  CHECK(ambiguous.error().message ==
        "task ID prefix \"p\" is ambiguous: it matches 2 tasks (p100000000000000000000000, "
        "p200000000000000000000000); give more characters of the ID");
  CHECK(ambiguous.error().code == ENOTUNIQ);

  // Many matches: the first five are listed, the rest counted.
  auto many = resolveIdPrefix("p", ids, "task");
  REQUIRE_FALSE(many.ok());
  CHECK(many.error().message ==
        "task ID prefix \"p\" is ambiguous: it matches 7 tasks (p100000000000000000000000, "
        "p200000000000000000000000, p300000000000000000000000, p400000000000000000000000, "
        "p500000000000000000000000 and 2 more); give more characters of the ID");
}
