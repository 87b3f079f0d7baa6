#pragma once
// Durations and byte sizes as users write them: on the CLI (--stop-grace-period 10s,
// --limit-memory 512M), in specs and in output. The forms are Docker's, so that what works
// with `docker service create` works with shoal:
//  - durations are Go's time.Duration text (ParseDuration / Duration.String);
//  - sizes are Docker's RAMInBytes forms: a number and an optional binary unit.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace shoal {

// Accepts exactly what Go's time.ParseDuration accepts: an optional sign, then one or more
// decimal numbers (fraction allowed) each with a unit of ns, us, µs (or μs), ms, s, m, h, e.g.
// "300ms", "-1.5h", "2h45m", "1h2m3.5s"; "0" alone needs no unit. Out of int64 nanoseconds is
// an error. Errors quote the input and show the valid form.
Result<std::chrono::nanoseconds> parseDuration(std::string_view text);

// Exactly Go's Duration.String(): "1h30m0s", "1.5s", "90ms", "1µs", "0s", "-5s".
// parseDuration(formatDuration(d)) == d for every d.
std::string formatDuration(std::chrono::nanoseconds d);

// Accepts Docker's RAMInBytes forms: a decimal number (fraction allowed), an optional space,
// then an optional unit k, m, g, t, p (any case; multiples of 1024) that may be followed by "b"
// or "ib", or a lone "b": "512", "64k", "512M", "1.5G", "512MB", "64kb", "2GiB". A fraction of
// a byte is dropped, as Docker does ("0.1k" is 102). Errors: bad form, negative, more than
// 2^64-1 bytes.
Result<std::uint64_t> parseBytes(std::string_view text);

// The shortest text that parseBytes reads back as exactly `bytes`: "512M", "1.5G", "64k",
// "1000", "0". Units k, M, G, T, P; on a tie, the form without a fraction.
std::string formatBytes(std::uint64_t bytes);

// For tables: three significant figures in binary units, like Docker's sizes: "512B", "64KiB",
// "1.46GiB", "16EiB". Not exact, so not for anything that is read back.
std::string humanBytes(std::uint64_t bytes);

// User input quoted for an error message, the way Go's %q shows it: in double quotes, with
// quotes, backslashes, control characters and invalid UTF-8 escaped, and cut (with "...")
// after 64 bytes so that a huge argument does not make a huge message.
std::string quoteInput(std::string_view text);

}  // namespace shoal
