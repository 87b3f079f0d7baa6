#include "services/agentd/layer_unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <vector>

namespace shoal::agentd::layer {
namespace {

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";

Error refused(std::string_view name, const std::string& why) {
  return Error{"layer entry \"" + std::string(name) + "\" refused: " + why, EINVAL};
}

// Splits on '/', dropping empty and "." components; nothing on "..".
Result<std::vector<std::string>> components(std::string_view name) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('/', start);
    if (end == std::string_view::npos) end = name.size();
    std::string_view part = name.substr(start, end - start);
    if (part == "..") return refused(name, "it climbs out of the layer with \"..\"");
    if (!part.empty() && part != ".") parts.emplace_back(part);
    start = end + 1;
  }
  return parts;
}

std::string join(const std::vector<std::string>& parts, size_t count) {
  std::string path;
  for (size_t i = 0; i < count; ++i) path += (i ? "/" : "") + parts[i];
  return path;
}

struct ReadCloser {
  void operator()(archive* a) const { archive_read_free(a); }
};
struct WriteCloser {
  void operator()(archive* a) const { archive_write_free(a); }
};

Error archiveError(archive* a, const std::string& what) {
  const char* msg = archive_error_string(a);
  return Error{what + ": " + (msg ? msg : "unknown libarchive error"), archive_errno(a)};
}

Error osError(const std::string& what) {
  int e = errno;
  return Error{what + ": " + std::strerror(e), e};
}

// An overlayfs whiteout: a character device 0/0 where the lower layers' file was.
Status whiteout(const std::string& dest, const std::string& path) {
  std::filesystem::path target = std::filesystem::path(dest) / path;
  std::error_code ec;
  std::filesystem::create_directories(target.parent_path(), ec);
  std::filesystem::remove_all(target, ec);  // a file the same layer wrote before its whiteout
  if (::mknod(target.c_str(), S_IFCHR | 0, makedev(0, 0)) != 0)
    return osError("cannot make the whiteout " + target.string() + " (agentd must run as root)");
  return {};
}

Status opaque(const std::string& dest, const std::string& path) {
  std::filesystem::path dir = std::filesystem::path(dest) / path;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (::lsetxattr(dir.c_str(), "trusted.overlay.opaque", "y", 1, 0) != 0)
    return osError("cannot mark " + dir.string() + " opaque (trusted xattrs need root)");
  return {};
}

Status copyData(archive* in, archive* out, const std::string& name) {
  const void* buf;
  size_t size;
  la_int64_t offset;
  for (;;) {
    int r = archive_read_data_block(in, &buf, &size, &offset);
    if (r == ARCHIVE_EOF) return {};
    if (r < ARCHIVE_OK) return archiveError(in, "cannot read layer entry " + name);
    if (archive_write_data_block(out, buf, size, offset) < ARCHIVE_OK)
      return archiveError(out, "cannot write layer entry " + name);
  }
}

// Writes one plain entry under dest; its hardlink target, if any, must be in the layer too.
Status writePlain(archive* in, archive* out, archive_entry* e, const std::string& dest,
                  const std::string& path) {
  std::string name = archive_entry_pathname(e);
  if (const char* link = archive_entry_hardlink(e)) {
    auto target = classify(link);
    if (!target) return refused(name, "its hardlink target " + target.error().message);
    if (target->kind != EntryKind::Plain) return refused(name, "a hardlink to a whiteout");
    archive_entry_copy_hardlink(e, (dest + "/" + target->path).c_str());
  }
  archive_entry_copy_pathname(e, (dest + "/" + path).c_str());
  if (archive_write_header(out, e) < ARCHIVE_OK)
    return archiveError(out, "cannot write layer entry " + name);
  if (archive_entry_size(e) > 0)
    if (auto st = copyData(in, out, name); !st) return st;
  if (archive_write_finish_entry(out) < ARCHIVE_OK)
    return archiveError(out, "cannot finish layer entry " + name);
  return {};
}

Status writeEntry(archive* in, archive* out, archive_entry* e, const std::string& dest) {
  const char* raw = archive_entry_pathname(e);
  if (!raw) return Error{"a layer entry without a name", EINVAL};
  auto entry = classify(raw);
  if (!entry) return entry.error();
  switch (entry->kind) {
    case EntryKind::Root: return {};
    case EntryKind::Whiteout: return whiteout(dest, entry->path);
    case EntryKind::Opaque: return opaque(dest, entry->path);
    case EntryKind::Plain: return writePlain(in, out, e, dest, entry->path);
  }
  return {};
}

std::unique_ptr<archive, WriteCloser> diskWriter() {
  std::unique_ptr<archive, WriteCloser> out(archive_write_disk_new());
  // Absolute paths are ours (dest + a checked relative path); SECURE_SYMLINKS refuses to
  // write through a symlink an earlier entry made (without EXTRACT_UNLINK, which would
  // quietly replace the symlink instead), NODOTDOT is a second guard on "..".
  archive_write_disk_set_options(
      out.get(), ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
                     ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                     ARCHIVE_EXTRACT_SECURE_NODOTDOT);
  archive_write_disk_set_standard_lookup(out.get());
  return out;
}

}  // namespace

Result<Entry> classify(std::string_view name) {
  if (name.empty()) return refused(name, "an empty name");
  if (name.front() == '/') return refused(name, "an absolute path");
  auto parts = components(name);
  if (!parts) return parts.error();
  if (parts->empty()) return Entry{EntryKind::Root, ""};
  const std::string& base = parts->back();
  std::string dir = join(*parts, parts->size() - 1);
  if (base == kOpaqueMarker) return Entry{EntryKind::Opaque, dir};
  if (base.rfind(kWhiteoutPrefix, 0) == 0) {
    std::string target = base.substr(kWhiteoutPrefix.size());
    if (target.empty() || target == "." || target == "..")
      return refused(name, "a whiteout of nothing");
    return Entry{EntryKind::Whiteout, dir.empty() ? target : dir + "/" + target};
  }
  return Entry{EntryKind::Plain, join(*parts, parts->size())};
}

Status unpack(const std::string& tarball, const std::string& dest) {
  std::unique_ptr<archive, ReadCloser> in(archive_read_new());
  archive_read_support_filter_all(in.get());
  archive_read_support_format_tar(in.get());
  if (archive_read_open_filename(in.get(), tarball.c_str(), 1 << 16) != ARCHIVE_OK)
    return archiveError(in.get(), "cannot open the layer " + tarball);
  auto out = diskWriter();
  archive_entry* e;
  for (;;) {
    int r = archive_read_next_header(in.get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) return archiveError(in.get(), "the layer " + tarball + " is not a tar");
    if (auto st = writeEntry(in.get(), out.get(), e, dest); !st) return st;
  }
  if (archive_write_close(out.get()) < ARCHIVE_OK)
    return archiveError(out.get(), "cannot finish unpacking " + tarball);
  return {};
}

}  // namespace shoal::agentd::layer
