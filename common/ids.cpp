#include "common/ids.h"

#include <sodium.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "common/units.h"

namespace shoal {

namespace {

constexpr std::string_view kAlphabet = "0123456789abcdefghijklmnopqrstuvwxyz";

// 252 = 7 * 36 is the largest multiple of 36 that a byte can hold. Bytes from 252 up are
// drawn again: folding them in with % 36 would make 0-3 more likely than the other symbols.
constexpr unsigned kAcceptBelow = 256 - 256 % kAlphabet.size();

void ensureSodium() {
  // A function-local static is initialised once, even with threads racing to it.
  static const bool initialised = [] {
    if (sodium_init() < 0) {
      // Without a working random source no ID can be safe; this is not an input error.
      std::fputs("shoal: libsodium failed to initialise; cannot generate IDs\n", stderr);
      std::abort();
    }
    return true;
  }();
  (void)initialised;
}

bool isIdChar(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z'); }

constexpr std::size_t kMaxListedMatches = 5;

}  // namespace

std::string newId() {
  ensureSodium();
  return newId([](std::span<unsigned char> out) { randombytes_buf(out.data(), out.size()); });
}

std::string newId(const std::function<void(std::span<unsigned char>)>& fillRandom) {
  std::string id;
  id.reserve(kIdLength);
  // 32 bytes usually cover 25 symbols (about 1.6 % of bytes are rejected).
  std::array<unsigned char, 32> pool;
  std::size_t used = pool.size();
  while (id.size() < kIdLength) {
    if (used == pool.size()) {
      fillRandom(pool);
      used = 0;
    }
    unsigned char b = pool[used++];
    if (b < kAcceptBelow) id += kAlphabet[b % kAlphabet.size()];
  }
  return id;
}

bool isValidId(std::string_view id) {
  return id.size() == kIdLength && std::all_of(id.begin(), id.end(), isIdChar);
}

Result<std::string> parseId(std::string_view text) {
  if (!isValidId(text))
    return Error{"invalid ID " + quoteInput(text) + ": an ID is 25 characters of 0-9 and a-z",
                 EINVAL};
  return std::string(text);
}

IdPrefixMatch matchIdPrefix(std::string_view prefix, std::span<const std::string_view> ids) {
  IdPrefixMatch result;
  if (prefix.empty()) return result;
  for (std::string_view id : ids)
    if (id.starts_with(prefix)) result.matches.emplace_back(id);
  std::sort(result.matches.begin(), result.matches.end());
  result.matches.erase(std::unique(result.matches.begin(), result.matches.end()),
                       result.matches.end());
  return result;
}

Result<std::string> resolveIdPrefix(std::string_view prefix, std::span<const std::string_view> ids,
                                    std::string_view kind) {
  const std::string kindText(kind);
  if (prefix.empty())
    return Error{"no " + kindText + " ID given: give an ID or the first characters of one", ENOENT};
  IdPrefixMatch match = matchIdPrefix(prefix, ids);
  if (match.none())
    return Error{"no such " + kindText + ": no " + kindText + " ID starts with " +
                     quoteInput(prefix),
                 ENOENT};
  if (match.ambiguous()) {
    std::string listed;
    for (std::size_t i = 0; i < match.matches.size() && i < kMaxListedMatches; ++i) {
      if (i > 0) listed += ", ";
      listed += match.matches[i];
    }
    if (match.matches.size() > kMaxListedMatches)
      listed += " and " + std::to_string(match.matches.size() - kMaxListedMatches) + " more";
    return Error{kindText + " ID prefix " + quoteInput(prefix) + " is ambiguous: it matches " +
                     std::to_string(match.matches.size()) + " " + kindText + "s (" + listed +
                     "); give more characters of the ID",
                 ENOTUNIQ};
  }
  return std::move(match.matches.front());
}

}  // namespace shoal
