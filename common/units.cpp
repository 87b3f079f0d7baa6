#include "common/units.h"

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <optional>

namespace shoal {

namespace {

constexpr std::uint64_t kTwoTo63 = std::uint64_t{1} << 63;

bool isDigit(char c) { return c >= '0' && c <= '9'; }

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

// Length of the valid UTF-8 sequence at the start of `s`, or 0 if it is not one.
std::size_t utf8SequenceLength(std::string_view s) {
  auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  unsigned char b0 = byte(0);
  std::size_t n;
  std::uint32_t cp;
  if (b0 < 0x80) return 1;
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    n = 2;
    cp = b0 & 0x1f;
  } else if (b0 >= 0xe0 && b0 <= 0xef) {
    n = 3;
    cp = b0 & 0x0f;
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    n = 4;
    cp = b0 & 0x07;
  } else {
    return 0;
  }
  if (s.size() < n) return 0;
  for (std::size_t i = 1; i < n; ++i) {
    if ((byte(i) & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i) & 0x3f);
  }
  // Overlong forms, surrogates and code points past U+10FFFF are not valid UTF-8.
  if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || (cp >= 0xd800 && cp <= 0xdfff) ||
      cp > 0x10ffff)
    return 0;
  // C1 control characters (U+0080..U+009F) are escaped like the ASCII ones.
  if (cp < 0xa0) return 0;
  return n;
}

// --- durations ---------------------------------------------------------------------------

constexpr std::uint64_t kNanosecond = 1;
constexpr std::uint64_t kMicrosecond = 1000 * kNanosecond;
constexpr std::uint64_t kMillisecond = 1000 * kMicrosecond;
constexpr std::uint64_t kSecond = 1000 * kMillisecond;
constexpr std::uint64_t kMinute = 60 * kSecond;
constexpr std::uint64_t kHour = 60 * kMinute;

std::optional<std::uint64_t> durationUnit(std::string_view unit) {
  if (unit == "ns") return kNanosecond;
  // Go accepts both the micro sign (U+00B5, what it prints) and the Greek mu (U+03BC).
  if (unit == "us" || unit == "\u00b5s" || unit == "\u03bcs") return kMicrosecond;
  if (unit == "ms") return kMillisecond;
  if (unit == "s") return kSecond;
  if (unit == "m") return kMinute;
  if (unit == "h") return kHour;
  return std::nullopt;
}

constexpr std::string_view kDurationHint =
    "use a number with a unit: 300ms, 5s, 1m30s, 2h45m (units: ns, us, ms, s, m, h)";

Error durationError(std::string_view text, std::string_view reason = {}) {
  std::string message = "invalid duration " + quoteInput(text) + ": ";
  if (!reason.empty()) {
    message += reason;
    message += "; ";
  }
  message += kDurationHint;
  return Error{std::move(message), EINVAL};
}

Error durationRangeError(std::string_view text) {
  return Error{"invalid duration " + quoteInput(text) +
                   ": out of range; durations go from -2562047h47m16.854775808s to "
                   "2562047h47m16.854775807s (about 292 years)",
               ERANGE};
}

// Puts the fraction of v / 10^prec (".5", ".000001") in front of `out`, without trailing zeros
// and without the point when the fraction is zero, and returns v / 10^prec. As Go's fmtFrac.
std::uint64_t putFraction(std::string& out, std::uint64_t v, int prec) {
  bool printing = false;
  std::string digits;
  for (int i = 0; i < prec; ++i) {
    char digit = static_cast<char>('0' + v % 10);
    printing = printing || digit != '0';
    if (printing) digits.insert(digits.begin(), digit);
    v /= 10;
  }
  if (printing) out.insert(0, "." + digits);
  return v;
}

void putInt(std::string& out, std::uint64_t v) { out.insert(0, std::to_string(v)); }

// --- byte sizes --------------------------------------------------------------------------

constexpr std::string_view kBytesHint =
    "use a number of bytes with an optional unit: 512, 64k, 512M, 1.5G (units: b, k, m, g, t, "
    "p, each 1024 times the one before)";

Error bytesError(std::string_view text, std::string_view reason = {}) {
  std::string message = "invalid size " + quoteInput(text) + ": ";
  if (!reason.empty()) {
    message += reason;
    message += "; ";
  }
  message += kBytesHint;
  return Error{std::move(message), EINVAL};
}

// log2 of the multiple of a unit letter, as in Docker's binary map.
std::optional<int> bytesUnitShift(char letter) {
  switch (lower(letter)) {
    case 'k': return 10;
    case 'm': return 20;
    case 'g': return 30;
    case 't': return 40;
    case 'p': return 50;
    default: return std::nullopt;
  }
}

constexpr std::array<char, 6> kBytesUnitLetters = {'\0', 'k', 'M', 'G', 'T', 'P'};

}  // namespace

std::string quoteInput(std::string_view text) {
  constexpr std::size_t kMaxShown = 64;
  std::string_view shown = text;
  bool cut = false;
  if (shown.size() > kMaxShown) {
    std::size_t end = kMaxShown;
    // Do not split a UTF-8 sequence: back up over continuation bytes (at most three).
    for (int i = 0; i < 3 && end > 0 && (static_cast<unsigned char>(text[end]) & 0xc0) == 0x80;
         ++i)
      --end;
    shown = text.substr(0, end);
    cut = true;
  }
  std::string out = "\"";
  while (!shown.empty()) {
    char c = shown[0];
    std::size_t n = utf8SequenceLength(shown);
    if (n > 1) {
      out.append(shown.substr(0, n));
      shown.remove_prefix(n);
      continue;
    }
    shown.remove_prefix(1);
    switch (c) {
      case '"': out += "\\\""; continue;
      case '\\': out += "\\\\"; continue;
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      default: break;
    }
    auto b = static_cast<unsigned char>(c);
    if (n == 1 && b >= 0x20 && b != 0x7f) {
      out += c;
    } else {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02x", b);
      out += hex;
    }
  }
  out += '"';
  if (cut) out += "...";
  return out;
}

// The grammar and the arithmetic follow Go's time.ParseDuration step by step, including its
// overflow checks and its float64 scaling of fractions, so that a value gives the same
// nanoseconds here as in Docker: [-+]?([0-9]*(\.[0-9]*)?[a-z]+)+ with "0" allowed alone.
Result<std::chrono::nanoseconds> parseDuration(std::string_view text) {
  std::string_view s = text;
  bool negative = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s == "0") return std::chrono::nanoseconds(0);
  if (s.empty()) return durationError(text);

  std::uint64_t total = 0;
  while (!s.empty()) {
    if (!(s[0] == '.' || isDigit(s[0]))) return durationError(text);

    // The integer part; more than 2^63 is out of range whatever the unit.
    std::uint64_t whole = 0;
    std::size_t i = 0;
    for (; i < s.size() && isDigit(s[i]); ++i) {
      if (whole > kTwoTo63 / 10) return durationRangeError(text);
      whole = whole * 10 + static_cast<std::uint64_t>(s[i] - '0');
      if (whole > kTwoTo63) return durationRangeError(text);
    }
    bool haveWhole = i > 0;
    s.remove_prefix(i);

    // The fraction: digits past what fits in 63 bits only add precision nobody can see, so
    // they are read and ignored.
    std::uint64_t fraction = 0;
    double scale = 1;
    bool haveFraction = false;
    if (!s.empty() && s[0] == '.') {
      s.remove_prefix(1);
      bool saturated = false;
      std::size_t j = 0;
      for (; j < s.size() && isDigit(s[j]); ++j) {
        if (saturated) continue;
        if (fraction > (kTwoTo63 - 1) / 10) {
          saturated = true;
          continue;
        }
        std::uint64_t next = fraction * 10 + static_cast<std::uint64_t>(s[j] - '0');
        if (next > kTwoTo63) {
          saturated = true;
          continue;
        }
        fraction = next;
        scale *= 10;
      }
      haveFraction = j > 0;
      s.remove_prefix(j);
    }
    if (!haveWhole && !haveFraction) return durationError(text);  // ".s", "-.h"

    // The unit runs to the next number.
    std::size_t k = 0;
    while (k < s.size() && s[k] != '.' && !isDigit(s[k])) ++k;
    if (k == 0) return durationError(text, "missing unit");
    std::string_view unitText = s.substr(0, k);
    s.remove_prefix(k);
    std::optional<std::uint64_t> unit = durationUnit(unitText);
    if (!unit) return durationError(text, "unknown unit " + quoteInput(unitText));

    if (whole > kTwoTo63 / *unit) return durationRangeError(text);
    std::uint64_t value = whole * *unit;
    if (fraction > 0) {
      // Go computes this in float64, which is exact to the nanosecond even for fractions of
      // an hour; doing the same keeps our rounding identical to Docker's.
      value += static_cast<std::uint64_t>(static_cast<double>(fraction) *
                                          (static_cast<double>(*unit) / scale));
      if (value > kTwoTo63) return durationRangeError(text);
    }
    total += value;
    if (total > kTwoTo63) return durationRangeError(text);
  }
  if (negative) {
    // 2^63 is allowed here: it is the most negative int64.
    return std::chrono::nanoseconds(static_cast<std::int64_t>(0 - total));
  }
  if (total > kTwoTo63 - 1) return durationRangeError(text);
  return std::chrono::nanoseconds(static_cast<std::int64_t>(total));
}

// Go's Duration.String(): below a second in the largest of ns, µs, ms with a fraction; from a
// second up as hours, minutes and seconds with a fraction, leading zero fields left out. It
// stops at hours because days are not all the same length.
std::string formatDuration(std::chrono::nanoseconds d) {
  std::int64_t count = d.count();
  bool negative = count < 0;
  // Negating in unsigned arithmetic is defined for the most negative int64 too.
  std::uint64_t u = static_cast<std::uint64_t>(count);
  if (negative) u = 0 - u;

  std::string out;
  if (u == 0) return "0s";
  if (u < kSecond) {
    int prec;
    if (u < kMicrosecond) {
      prec = 0;
      out = "ns";
    } else if (u < kMillisecond) {
      prec = 3;
      out = "\u00b5s";
    } else {
      prec = 6;
      out = "ms";
    }
    u = putFraction(out, u, prec);
    putInt(out, u);
  } else {
    out = "s";
    u = putFraction(out, u, 9);
    putInt(out, u % 60);
    u /= 60;
    if (u > 0) {
      out.insert(0, "m");
      putInt(out, u % 60);
      u /= 60;
      if (u > 0) {
        out.insert(0, "h");
        putInt(out, u);
      }
    }
  }
  if (negative) out.insert(0, "-");
  return out;
}

// Docker's parser reads the number as a float64 and truncates the product; we read it exactly
// (so that "1.5G" and every formatBytes output are exact) and truncate the same way.
Result<std::uint64_t> parseBytes(std::string_view text) {
  if (!text.empty() && text[0] == '-') {
    if (parseBytes(text.substr(1)).ok())
      return Error{"invalid size " + quoteInput(text) + ": a size cannot be negative", EINVAL};
    return bytesError(text);
  }

  std::string_view s = text;
  std::size_t i = 0;
  while (i < s.size() && isDigit(s[i])) ++i;
  std::string_view wholeDigits = s.substr(0, i);
  std::string_view fractionDigits;
  if (i < s.size() && s[i] == '.') {
    std::size_t start = ++i;
    while (i < s.size() && isDigit(s[i])) ++i;
    fractionDigits = s.substr(start, i - start);
  }
  if (wholeDigits.empty() && fractionDigits.empty()) return bytesError(text);
  s.remove_prefix(i);

  // The unit: "", "b", or a letter with an optional "b" or "ib"; a single space may come
  // before it, as in "512 MB".
  int shift = 0;
  if (!s.empty() && s[0] == ' ') {
    s.remove_prefix(1);
    if (s.empty()) return bytesError(text, "a space must be followed by a unit");
  }
  if (!s.empty()) {
    std::optional<int> letterShift = bytesUnitShift(s[0]);
    std::string_view rest = s.substr(1);
    bool known = false;
    if (lower(s[0]) == 'b') {
      known = rest.empty();
    } else if (letterShift) {
      known = rest.empty() || (rest.size() == 1 && lower(rest[0]) == 'b') ||
              (rest.size() == 2 && lower(rest[0]) == 'i' && lower(rest[1]) == 'b');
      shift = *letterShift;
    }
    if (!known) return bytesError(text, "unknown unit " + quoteInput(s));
  }

  const Error tooLarge{"invalid size " + quoteInput(text) +
                           ": too large; the largest is 18446744073709551615 bytes (just under "
                           "16384P)",
                       ERANGE};
  constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
  std::uint64_t whole = 0;
  for (char c : wholeDigits) {
    auto digit = static_cast<std::uint64_t>(c - '0');
    if (whole > (kMax - digit) / 10) return tooLarge;
    whole = whole * 10 + digit;
  }
  if (shift > 0 && whole > (kMax >> shift)) return tooLarge;
  std::uint64_t bytes = whole << shift;

  // floor(0.d1d2...dn * 2^shift) by schoolbook multiplication from the last digit: the carry
  // out of the first digit is the whole part of the product. Every step stays below 2^54.
  std::uint64_t multiple = std::uint64_t{1} << shift;
  std::uint64_t carry = 0;
  for (auto it = fractionDigits.rbegin(); it != fractionDigits.rend(); ++it)
    carry = (static_cast<std::uint64_t>(*it - '0') * multiple + carry) / 10;
  if (bytes > kMax - carry) return tooLarge;
  return bytes + carry;
}

std::string formatBytes(std::uint64_t bytes) {
  std::string best = std::to_string(bytes);
  for (std::size_t u = 1; u < kBytesUnitLetters.size(); ++u) {
    int shift = static_cast<int>(10 * u);
    std::uint64_t multiple = std::uint64_t{1} << shift;
    if (bytes < multiple) break;
    std::string text = std::to_string(bytes >> shift);
    // bytes / 2^shift always ends within `shift` decimal places: each step below takes one
    // factor of 2 out of the denominator.
    std::uint64_t remainder = bytes & (multiple - 1);
    if (remainder != 0) text += '.';
    while (remainder != 0) {
      remainder *= 10;
      text += static_cast<char>('0' + (remainder >> shift));
      remainder &= multiple - 1;
    }
    text += kBytesUnitLetters[u];
    // Shorter wins; on a tie the form already chosen (fewer fraction digits) stays.
    if (text.size() < best.size()) best = std::move(text);
  }
  return best;
}

std::string humanBytes(std::uint64_t bytes) {
  static constexpr std::array<std::string_view, 7> kNames = {"B",   "KiB", "MiB", "GiB",
                                                             "TiB", "PiB", "EiB"};
  std::size_t unit = 0;
  auto size = static_cast<double>(bytes);
  while (size >= 1024 && unit + 1 < kNames.size()) {
    size /= 1024;
    ++unit;
  }
  for (;;) {
    // %.3g would switch to an exponent from 999.5 on ("1e+03"); whole numbers read better.
    char buf[32];
    std::snprintf(buf, sizeof buf, size < 100 ? "%.3g" : "%.0f", size);
    // Rounding may reach 1024 ("1024KiB"): that is 1 of the next unit.
    if (std::strtod(buf, nullptr) >= 1024 && unit + 1 < kNames.size()) {
      size /= 1024;
      ++unit;
      continue;
    }
    return std::string(buf) + std::string(kNames[unit]);
  }
}

}  // namespace shoal
