#pragma once
// A layer tarball unpacked into a directory (docs/containers.md "Images"), as overlayfs reads
// it as a lower dir: AUFS-style whiteouts (`.wh.NAME`) become overlayfs whiteouts (a 0/0
// character device NAME), opaque markers (`.wh..wh..opq`) the xattr trusted.overlay.opaque=y
// on their directory. Entries whose path is absolute or climbs out with `..`, hardlinks whose
// target does, and entries written through a symlink are refused: a layer is input from a
// registry. Modes, owners, times and xattrs are kept (agentd runs as root).

#include <string>
#include <string_view>

#include "common/result.h"

namespace shoal::agentd::layer {

enum class EntryKind {
  Plain,     // a file, dir, link or device to write at `path`
  Whiteout,  // `path` is deleted in this layer: an overlayfs whiteout goes there
  Opaque,    // the dir `path` hides the lower layers' content: trusted.overlay.opaque=y
  Root,      // the layer's root itself ("./"): nothing to write
};

struct Entry {
  EntryKind kind = EntryKind::Plain;
  std::string path;  // relative, cleaned: no "./", no trailing or doubled '/'
};

// What a tar entry's name means. Errors quote the name and say which rule it broke. Pure.
Result<Entry> classify(std::string_view name);

// Unpacks the tarball at `tarball` (gzip, zstd or plain) into the existing empty dir `dest`.
// On error `dest` holds part of the layer: the caller unpacks into tmp/ and removes it.
Status unpack(const std::string& tarball, const std::string& dest);

}  // namespace shoal::agentd::layer
