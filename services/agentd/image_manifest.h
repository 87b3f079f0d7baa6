#pragma once
// What a registry's manifest endpoint returns (DESIGN.md §8; issue 10), read and checked before
// anything is fetched: an image manifest (OCI or Docker v2 schema 2) with its config and layer
// descriptors, or an index (OCI image index or Docker manifest list) from which the node's
// platform is picked. Pure: the puller (libcurl) gives it the bytes and the Content-Type.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace shoal::agentd::image {

namespace media {
inline constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kDockerManifest =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view kDockerList =
    "application/vnd.docker.distribution.manifest.list.v2+json";
}  // namespace media

// The Accept header a puller sends: every kind read here.
std::string acceptHeader();

struct Descriptor {
  std::string mediaType;
  std::string digest;  // algorithm:hex, checked
  int64_t size = 0;
};

struct Platform {
  std::string os;            // linux
  std::string architecture;  // amd64, arm64, ...
  std::string variant;       // v8 for arm64, v7 for arm, ...
};

struct Manifest {
  Descriptor config;
  std::vector<Descriptor> layers;
};

struct IndexEntry {
  Descriptor manifest;
  Platform platform;
};

struct Parsed {
  bool isIndex = false;
  Manifest manifest;               // when !isIndex
  std::vector<IndexEntry> entries;  // when isIndex
};

// Reads a manifest or an index. contentType: the response's Content-Type (may be empty: then
// the document's own mediaType decides). Errors say what is wrong with the document.
Result<Parsed> parse(std::string_view body, std::string_view contentType);

// The index entry for `want` (os and architecture must match; a variant, when both name one,
// too), or an error listing the platforms the index has.
Result<Descriptor> pickPlatform(const std::vector<IndexEntry>& entries, const Platform& want);

// This machine's platform as OCI names it (linux/amd64, linux/arm64/v8, ...).
Platform hostPlatform();

}  // namespace shoal::agentd::image
