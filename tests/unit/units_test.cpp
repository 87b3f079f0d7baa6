// Durations are checked against Go's time.ParseDuration / Duration.String() behaviour and sizes
// against Docker's RAMInBytes (github.com/docker/go-units), so that flag values mean what they
// mean for `docker service create`.

#include "common/units.h"

#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using shoal::formatBytes;
using shoal::formatDuration;
using shoal::humanBytes;
using shoal::parseBytes;
using shoal::parseDuration;
using shoal::quoteInput;

namespace {

constexpr std::int64_t kMaxNs = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t kMinNs = std::numeric_limits<std::int64_t>::min();
constexpr std::uint64_t kMaxBytes = std::numeric_limits<std::uint64_t>::max();

const std::string kDurationHint =
    "use a number with a unit: 300ms, 5s, 1m30s, 2h45m (units: ns, us, ms, s, m, h)";
const std::string kDurationRange =
    "out of range; durations go from -2562047h47m16.854775808s to 2562047h47m16.854775807s "
    "(about 292 years)";
const std::string kBytesHint =
    "use a number of bytes with an optional unit: 512, 64k, 512M, 1.5G (units: b, k, m, g, t, p, "
    "each 1024 times the one before)";

struct DurationCase {
  std::string text;
  std::int64_t ns;
};

struct ErrorCase {
  std::string text;
  std::string message;
};

}  // namespace

TEST_CASE("parseDuration accepts Go's forms") {
  const std::vector<DurationCase> cases = {
      // "0" is the one number that needs no unit, with or without a sign.
      {"0", 0},
      {"+0", 0},
      {"-0", 0},
      {"0s", 0},
      {"0.0h", 0},
      // One unit each.
      {"10ns", 10},
      {"11us", 11'000},
      {"12\u00b5s", 12'000},  // micro sign, what Duration.String() prints
      {"12\u03bcs", 12'000},  // Greek mu
      {"13ms", 13'000'000},
      {"14s", 14'000'000'000},
      {"15m", 15 * 60'000'000'000},
      {"16h", 16 * 3'600'000'000'000},
      // Signs.
      {"5s", 5'000'000'000},
      {"+5s", 5'000'000'000},
      {"-5s", -5'000'000'000},
      // Fractions, with the point anywhere.
      {"1.5h", 5'400'000'000'000},
      {"-1.5h", -5'400'000'000'000},
      {"1.004s", 1'004'000'000},
      {"100.00100s", 100'001'000'000},
      {".5s", 500'000'000},
      {"1.s", 1'000'000'000},
      {"2.5ms", 2'500'000},
      {"0.000000001s", 1},
      {"0.0000000009s", 0},  // below a nanosecond truncates, as in Go
      // Sequences, in any order, units repeated.
      {"300ms", 300'000'000},
      {"2h45m", 9'900'000'000'000},
      {"1m30s", 90'000'000'000},
      {"1h2m3.5s", 3'723'500'000'000},
      {"10.5s4m", 250'500'000'000},
      {"-2m3.4s", -123'400'000'000},
      {"1h2m3s4ms5us6ns", 3'723'004'005'006},
      {"39h9m14.425s", 140'954'425'000'000},
      {"1s1s", 2'000'000'000},
      // Fractions of hours are exact to the nanosecond; digits past 63 bits are ignored.
      {"0.3333333333333333333h", 20 * 60'000'000'000},
      {"0.100000000000000000000h", 6 * 60'000'000'000},
      {"1.00000000000000000000000000000000001s", 1'000'000'000},
      // The ends of int64 nanoseconds.
      {"9223372036854775807ns", kMaxNs},
      {"9223372036854775.807us", kMaxNs},
      {"9223372036s854ms775us807ns", kMaxNs},
      {"2562047h47m16.854775807s", kMaxNs},
      {"-9223372036854775808ns", kMinNs},
      {"-9223372036854775.808us", kMinNs},
      {"-2562047h47m16.854775808s", kMinNs},
  };
  for (const auto& c : cases) {
    CAPTURE(c.text);
    auto d = parseDuration(c.text);
    REQUIRE_MESSAGE(d.ok(), d.error().message);
    CHECK(d->count() == c.ns);
  }
}

TEST_CASE("parseDuration rejects everything else, quoting the input") {
  const std::vector<ErrorCase> cases = {
      {"", "invalid duration \"\": " + kDurationHint},
      {"-", "invalid duration \"-\": " + kDurationHint},
      {"+", "invalid duration \"+\": " + kDurationHint},
      {"s", "invalid duration \"s\": " + kDurationHint},
      {".", "invalid duration \".\": " + kDurationHint},
      {".s", "invalid duration \".s\": " + kDurationHint},
      {"-.s", "invalid duration \"-.s\": " + kDurationHint},
      {" 5s", "invalid duration \" 5s\": " + kDurationHint},
      {"--5s", "invalid duration \"--5s\": " + kDurationHint},
      {"3", "invalid duration \"3\": missing unit; " + kDurationHint},
      {"-3", "invalid duration \"-3\": missing unit; " + kDurationHint},
      {"00", "invalid duration \"00\": missing unit; " + kDurationHint},
      {"1h3", "invalid duration \"1h3\": missing unit; " + kDurationHint},
      {"1.5.5s", "invalid duration \"1.5.5s\": missing unit; " + kDurationHint},
      {"5x", "invalid duration \"5x\": unknown unit \"x\"; " + kDurationHint},
      {"1d", "invalid duration \"1d\": unknown unit \"d\"; " + kDurationHint},
      {"1H", "invalid duration \"1H\": unknown unit \"H\"; " + kDurationHint},
      {"1sec", "invalid duration \"1sec\": unknown unit \"sec\"; " + kDurationHint},
      {"1h 2m", "invalid duration \"1h 2m\": unknown unit \"h \"; " + kDurationHint},
      {"5s ", "invalid duration \"5s \": unknown unit \"s \"; " + kDurationHint},
      {"1e3s", "invalid duration \"1e3s\": unknown unit \"e\"; " + kDurationHint},
      {"1\x01s", "invalid duration \"1\\x01s\": unknown unit \"\\x01s\"; " + kDurationHint},
      {"9223372036854775808ns", "invalid duration \"9223372036854775808ns\": " + kDurationRange},
      {"-9223372036854775809ns", "invalid duration \"-9223372036854775809ns\": " + kDurationRange},
      {"9223372036854775807ns1ns",
       "invalid duration \"9223372036854775807ns1ns\": " + kDurationRange},
      {"2562048h", "invalid duration \"2562048h\": " + kDurationRange},
      {"2562047h47m16.854775808s",
       "invalid duration \"2562047h47m16.854775808s\": " + kDurationRange},
      {"99999999999999999999s", "invalid duration \"99999999999999999999s\": " + kDurationRange},
  };
  for (const auto& c : cases) {
    CAPTURE(c.text);
    auto d = parseDuration(c.text);
    REQUIRE_FALSE(d.ok());
    CHECK(d.error().message == c.message);
  }
}

TEST_CASE("formatDuration prints like Go's Duration.String()") {
  struct Case {
    std::int64_t ns;
    std::string text;
  };
  const std::vector<Case> table = {
      {0, "0s"},
      {1, "1ns"},
      {-1, "-1ns"},
      {999, "999ns"},
      {1'000, "1\u00b5s"},
      {1'100, "1.1\u00b5s"},
      {999'999, "999.999\u00b5s"},
      {2'200'000, "2.2ms"},
      {90'000'000, "90ms"},
      {999'999'999, "999.999999ms"},
      {1'000'000'000, "1s"},
      {1'500'000'000, "1.5s"},
      {3'300'000'000, "3.3s"},
      {-5'000'000'000, "-5s"},
      {60'000'000'000, "1m0s"},
      {245'000'000'000, "4m5s"},
      {245'001'000'000, "4m5.001s"},
      {480'000'000'001, "8m0.000000001s"},
      {3'600'000'000'000, "1h0m0s"},
      {5'400'000'000'000, "1h30m0s"},
      {18'367'001'000'000, "5h6m7.001s"},
      {2160 * 3'600'000'000'000, "2160h0m0s"},
      {kMaxNs, "2562047h47m16.854775807s"},
      {kMinNs, "-2562047h47m16.854775808s"},
  };
  for (const auto& c : table) {
    CAPTURE(c.ns);
    CHECK(formatDuration(std::chrono::nanoseconds(c.ns)) == c.text);
  }
  CHECK(formatDuration(90min) == "1h30m0s");
}

TEST_CASE("durations round-trip: parse(format(d)) == d for random d") {
  std::mt19937_64 rng(20240611);
  std::vector<std::int64_t> values = {0, 1, -1, kMaxNs, kMinNs, kMaxNs - 1, kMinNs + 1};
  for (int i = 0; i < 20000; ++i) {
    // Random magnitudes: a random bit width, so small and large values are both common.
    int width = static_cast<int>(rng() % 64);
    std::uint64_t bits = width == 0 ? 0 : rng() >> (64 - width);
    auto v = static_cast<std::int64_t>(bits);
    values.push_back(rng() % 2 ? v : -v);
  }
  for (std::int64_t v : values) {
    CAPTURE(v);
    std::string text = formatDuration(std::chrono::nanoseconds(v));
    auto back = parseDuration(text);
    REQUIRE_MESSAGE(back.ok(), back.error().message);
    REQUIRE(back->count() == v);
  }
}

TEST_CASE("durations round-trip: format(parse(x)) is stable for random valid x") {
  std::mt19937_64 rng(7);
  const std::vector<std::string> units = {"ns", "us", "\u00b5s", "ms", "s", "m", "h"};
  for (int i = 0; i < 5000; ++i) {
    std::string text = rng() % 4 == 0 ? "-" : "";
    int parts = 1 + static_cast<int>(rng() % 3);
    for (int p = 0; p < parts; ++p) {
      text += std::to_string(rng() % 1000);
      if (rng() % 2) {
        text += '.';
        int digits = static_cast<int>(rng() % 10);
        for (int k = 0; k < digits; ++k) text += static_cast<char>('0' + rng() % 10);
      }
      text += units[rng() % units.size()];
    }
    CAPTURE(text);
    auto d = parseDuration(text);
    REQUIRE_MESSAGE(d.ok(), d.error().message);
    std::string once = formatDuration(*d);
    auto again = parseDuration(once);
    REQUIRE_MESSAGE(again.ok(), again.error().message);
    CHECK(*again == *d);
    CHECK(formatDuration(*again) == once);
  }
}

TEST_CASE("parseBytes accepts Docker's RAMInBytes forms") {
  struct Case {
    std::string text;
    std::uint64_t bytes;
  };
  const std::vector<Case> cases = {
      {"0", 0},
      {"512", 512},
      {"1000", 1000},
      {"32b", 32},
      {"32B", 32},
      {"64k", 64 * 1024},
      {"64K", 64 * 1024},
      {"64kb", 64 * 1024},
      {"64KB", 64 * 1024},
      {"64KiB", 64 * 1024},
      {"64kib", 64 * 1024},
      {"512M", 512ull << 20},
      {"512m", 512ull << 20},
      {"512MB", 512ull << 20},
      {"512 MB", 512ull << 20},
      {"512 m", 512ull << 20},
      {"2g", 2ull << 30},
      {"2GiB", 2ull << 30},
      {"1.5G", 1'610'612'736},
      {"1.75g", 1'879'048'192},
      {"1T", 1ull << 40},
      {"1P", 1ull << 50},
      {"16383P", 16383ull << 50},
      // Fractions: exact, then truncated to whole bytes like Docker's int64(float).
      {"0.5k", 512},
      {".5k", 512},
      {"1.k", 1024},
      {"0.1k", 102},
      {"1.5", 1},
      {"0.0009765625k", 1},
      {"0.0009765624k", 0},
      {"007", 7},
      // The largest size, directly and through a fraction of the largest unit.
      {"18446744073709551615", kMaxBytes},
      {"16383.999999999999999999999999P", kMaxBytes},
      // In float64 (Docker) this rounds up past the end; exact arithmetic keeps it below.
      {"16383.9999999999999999999999999999999999P", kMaxBytes},
      {"15.99999999999999999999T", (16ull << 40) - 1},
  };
  for (const auto& c : cases) {
    CAPTURE(c.text);
    auto n = parseBytes(c.text);
    REQUIRE_MESSAGE(n.ok(), n.error().message);
    CHECK(*n == c.bytes);
  }
}

TEST_CASE("parseBytes rejects bad sizes with a clear message") {
  const std::string tooLarge =
      "too large; the largest is 18446744073709551615 bytes (just under 16384P)";
  const std::vector<ErrorCase> cases = {
      {"", "invalid size \"\": " + kBytesHint},
      {"k", "invalid size \"k\": " + kBytesHint},
      {".", "invalid size \".\": " + kBytesHint},
      {" 1", "invalid size \" 1\": " + kBytesHint},
      {"+1", "invalid size \"+1\": " + kBytesHint},
      {"-x", "invalid size \"-x\": " + kBytesHint},
      {"inf", "invalid size \"inf\": " + kBytesHint},
      {"-1", "invalid size \"-1\": a size cannot be negative"},
      {"-0", "invalid size \"-0\": a size cannot be negative"},
      {"-1.5G", "invalid size \"-1.5G\": a size cannot be negative"},
      {"5x", "invalid size \"5x\": unknown unit \"x\"; " + kBytesHint},
      {"1kk", "invalid size \"1kk\": unknown unit \"kk\"; " + kBytesHint},
      {"1bb", "invalid size \"1bb\": unknown unit \"bb\"; " + kBytesHint},
      {"1ib", "invalid size \"1ib\": unknown unit \"ib\"; " + kBytesHint},
      {"1bib", "invalid size \"1bib\": unknown unit \"bib\"; " + kBytesHint},
      {"1KiBs", "invalid size \"1KiBs\": unknown unit \"KiBs\"; " + kBytesHint},
      {"1e3", "invalid size \"1e3\": unknown unit \"e3\"; " + kBytesHint},
      {"0x10", "invalid size \"0x10\": unknown unit \"x10\"; " + kBytesHint},
      {"1,5G", "invalid size \"1,5G\": unknown unit \",5G\"; " + kBytesHint},
      {"1.5.5G", "invalid size \"1.5.5G\": unknown unit \".5G\"; " + kBytesHint},
      {"1  k", "invalid size \"1  k\": unknown unit \" k\"; " + kBytesHint},
      {"1 ", "invalid size \"1 \": a space must be followed by a unit; " + kBytesHint},
      {"18446744073709551616", "invalid size \"18446744073709551616\": " + tooLarge},
      {"99999999999999999999999", "invalid size \"99999999999999999999999\": " + tooLarge},
      {"16384P", "invalid size \"16384P\": " + tooLarge},
      {"16777216T", "invalid size \"16777216T\": " + tooLarge},
  };
  for (const auto& c : cases) {
    CAPTURE(c.text);
    auto n = parseBytes(c.text);
    REQUIRE_FALSE(n.ok());
    CHECK(n.error().message == c.message);
  }
}

TEST_CASE("formatBytes prints the shortest exact form") {
  struct Case {
    std::uint64_t bytes;
    std::string text;
  };
  const std::vector<Case> cases = {
      {0, "0"},
      {1, "1"},
      {512, "512"},
      {1000, "1000"},
      {1023, "1023"},
      {1024, "1k"},
      {1280, "1280"},          // "1.25k" is longer
      {1536, "1536"},          // as long as "1.5k": the form without a fraction wins
      {64 * 1024, "64k"},
      {1023 * 1024, "1023k"},
      {1'000'000, "1000000"},  // "976.5625k" is longer
      {1'572'864, "1.5M"},
      {512ull << 20, "512M"},
      {1ull << 30, "1G"},
      {1'610'612'736, "1.5G"},
      {1'879'048'192, "1792M"},   // "1.75G" is as long; no fraction wins
      {1ull << 40, "1T"},
      {1ull << 50, "1P"},
      {1ull << 63, "8192P"},
      {kMaxBytes, "18446744073709551615"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.bytes);
    CHECK(formatBytes(c.bytes) == c.text);
  }
}

TEST_CASE("sizes round-trip: parse(format(n)) == n for random n") {
  std::mt19937_64 rng(1024);
  std::vector<std::uint64_t> values = {0, 1, 1023, 1024, 1025, kMaxBytes, kMaxBytes - 1,
                                       1ull << 63};
  for (int i = 0; i < 20000; ++i) {
    int width = static_cast<int>(rng() % 65);
    values.push_back(width == 0 ? 0 : rng() >> (64 - width));
    // Round numbers of a unit with a few fraction bits, the sizes people actually write.
    int shift = 10 * static_cast<int>(rng() % 6);
    std::uint64_t round = (rng() % 4096) << shift;
    values.push_back(round + (shift > 4 ? (rng() % 16) << (shift - 4) : 0));
  }
  for (std::uint64_t v : values) {
    CAPTURE(v);
    std::string text = formatBytes(v);
    auto back = parseBytes(text);
    REQUIRE_MESSAGE(back.ok(), back.error().message);
    REQUIRE(*back == v);
    CHECK(text.size() <= std::to_string(v).size());
    CHECK(formatBytes(*back) == text);
  }
}

TEST_CASE("humanBytes shows three significant figures in binary units") {
  struct Case {
    std::uint64_t bytes;
    std::string text;
  };
  const std::vector<Case> cases = {
      {0, "0B"},
      {512, "512B"},
      {1000, "1000B"},  // never "1e+03B"
      {1023, "1023B"},
      {1024, "1KiB"},
      {1536, "1.5KiB"},
      {64 * 1024, "64KiB"},
      {102'359, "100KiB"},      // 99.96 KiB rounds to 100
      {1'048'166, "1MiB"},      // 1023.6 KiB would round to "1024KiB"
      {1'572'864'000, "1.46GiB"},
      {512ull << 20, "512MiB"},
      {1ull << 40, "1TiB"},
      {kMaxBytes, "16EiB"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.bytes);
    CHECK(humanBytes(c.bytes) == c.text);
  }
}

TEST_CASE("quoteInput quotes like Go's %q and bounds the length") {
  CHECK(quoteInput("") == "\"\"");
  CHECK(quoteInput("5x") == "\"5x\"");
  CHECK(quoteInput("a\"b\\c") == "\"a\\\"b\\\\c\"");
  CHECK(quoteInput("a\nb\tc\x01\x7f") == "\"a\\nb\\tc\\x01\\x7f\"");
  CHECK(quoteInput("12\u00b5s") == "\"12\u00b5s\"");                    // valid UTF-8 stays
  CHECK(quoteInput("\xff\xc3(") == "\"\\xff\\xc3(\"");                   // invalid is escaped
  CHECK(quoteInput("\xc2\x85") == "\"\\xc2\\x85\"");                     // C1 control
  CHECK(quoteInput(std::string(70, 'a')) == "\"" + std::string(64, 'a') + "\"...");
  // A cut never splits a UTF-8 sequence.
  CHECK(quoteInput(std::string(63, 'a') + "\u00b5xyz") == "\"" + std::string(63, 'a') + "\"...");
}
