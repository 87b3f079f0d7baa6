#pragma once
// Image references as docker reads them (DESIGN.md §8; issue 10): what a user writes after
// `shoal service create` — `busybox`, `me/app:1.2`, `localhost:5000/app@sha256:…` — made into
// the full form a registry is asked for: `docker.io/library/busybox:latest`.
//
// The rules are docker's (distribution/reference's normalised names):
// - the first component is a registry when it has a '.' or a ':' or is `localhost`; otherwise
//   the registry is docker.io, and a one-component name there gets `library/`;
// - `index.docker.io` and `registry-1.docker.io` are docker.io;
// - path components are lowercase [a-z0-9]+ joined by '.', '_', "__" or runs of '-';
// - a tag is [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}; a digest is algorithm:hex (sha256 has 64 hex
//   digits); with neither, the tag is `latest`;
// - the whole name is at most 255 characters.
// Pure: no I/O.

#include <string>
#include <string_view>

#include "common/result.h"

namespace shoal::image {

inline constexpr std::string_view kDockerHub = "docker.io";
// Where docker.io's API really is (its v2 endpoint).
inline constexpr std::string_view kDockerHubApi = "registry-1.docker.io";

struct Reference {
  std::string registry;  // host[:port], e.g. docker.io, localhost:5000
  std::string path;      // e.g. library/busybox
  std::string tag;       // empty when a digest is given without a tag
  std::string digest;    // e.g. sha256:<64 hex>; empty when none

  // registry/path[:tag][@digest]: the normalised form.
  std::string full() const;
  // What `service ls` shows: docker's familiar form (busybox:latest, me/app:1.2).
  std::string familiar() const;
  // The host to talk to: registry-1.docker.io for docker.io.
  std::string apiHost() const;
  // The tag or digest a manifest is asked for by (the digest when both are given).
  std::string manifestRef() const { return digest.empty() ? tag : digest; }
};

// A content digest as registries name blobs: algorithm:hex, lowercase hex, 64 digits for
// sha256, at least 32 for others. The error says which rule it broke.
Status checkDigest(std::string_view digest);

// Errors quote the input and say which rule it broke, e.g. `invalid image "Busybox":
// repository names must be lowercase`.
Result<Reference> parse(std::string_view text);

}  // namespace shoal::image
