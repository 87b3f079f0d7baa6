#pragma once
// Object IDs, in Swarm's shape: 25 random base36 characters ([0-9a-z]), e.g.
// "p8x2k0m4q9w7z1c3v5b6n7l8j". Every object in the store (service, task, node, network, secret,
// config) is named by one; the CLI also accepts any unambiguous prefix of one.

#include <concepts>
#include <cstddef>
#include <functional>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace shoal {

inline constexpr std::size_t kIdLength = 25;

// A new ID from libsodium's randombytes (initialised on first use, thread-safe). Every
// character is uniform over the 36 symbols: random bytes that would bias the draw are rejected.
std::string newId();

// The same, drawing bytes from `fillRandom` instead: for tests and simulations, where
// randomness is injected so that a run replays exactly.
std::string newId(const std::function<void(std::span<unsigned char>)>& fillRandom);

bool isValidId(std::string_view id);

// `text` as an ID, or an error that quotes it and says what an ID looks like.
Result<std::string> parseId(std::string_view text);

// The IDs of `ids` that start with `prefix`: sorted, without duplicates. An empty prefix
// matches nothing (it would otherwise pick any object when there happens to be only one).
struct IdPrefixMatch {
  std::vector<std::string> matches;

  bool unique() const { return matches.size() == 1; }
  bool ambiguous() const { return matches.size() > 1; }
  bool none() const { return matches.empty(); }
};

IdPrefixMatch matchIdPrefix(std::string_view prefix, std::span<const std::string_view> ids);

template <std::ranges::input_range R>
  requires std::convertible_to<std::ranges::range_reference_t<R>, std::string_view>
IdPrefixMatch matchIdPrefix(std::string_view prefix, R&& ids) {
  std::vector<std::string_view> views;
  for (auto&& id : ids) views.emplace_back(id);
  return matchIdPrefix(prefix, std::span<const std::string_view>(views));
}

// The one ID of `ids` that starts with `prefix`. `kind` names the object in the error
// ("service", "node"). Errors: code ENOENT when nothing matches, ENOTUNIQ when several do (the
// message lists them, so the user can pick).
Result<std::string> resolveIdPrefix(std::string_view prefix, std::span<const std::string_view> ids,
                                    std::string_view kind);

template <std::ranges::input_range R>
  requires std::convertible_to<std::ranges::range_reference_t<R>, std::string_view>
Result<std::string> resolveIdPrefix(std::string_view prefix, R&& ids, std::string_view kind) {
  std::vector<std::string_view> views;
  for (auto&& id : ids) views.emplace_back(id);
  return resolveIdPrefix(prefix, std::span<const std::string_view>(views), kind);
}

}  // namespace shoal
