// services/agentd/layer_unpack.h: entry names classified (pure), and a tarball made here with
// libarchive unpacked: files, links, whiteouts, an opaque dir; entries that would leave the
// layer refused. Unpacking needs root (owners, device nodes, trusted xattrs).
#include <doctest/doctest.h>

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "services/agentd/layer_unpack.h"
#include "tests/support/tempdir.h"

namespace shoal::agentd::layer {
namespace {

namespace fs = std::filesystem;

TEST_CASE("classify: plain paths are cleaned") {
  CHECK(classify("./bin/sh")->path == "bin/sh");
  CHECK(classify("bin//busybox")->path == "bin/busybox");
  CHECK(classify("etc/")->path == "etc");
  CHECK(classify("etc/")->kind == EntryKind::Plain);
  CHECK(classify("./")->kind == EntryKind::Root);
  CHECK(classify(".")->kind == EntryKind::Root);
}

TEST_CASE("classify: whiteouts and opaque markers") {
  auto w = classify("etc/.wh.passwd");
  REQUIRE(w);
  CHECK(w->kind == EntryKind::Whiteout);
  CHECK(w->path == "etc/passwd");
  CHECK(classify("./.wh.tmp")->path == "tmp");
  auto o = classify("var/cache/.wh..wh..opq");
  REQUIRE(o);
  CHECK(o->kind == EntryKind::Opaque);
  CHECK(o->path == "var/cache");
  CHECK_FALSE(classify("etc/.wh."));
}

TEST_CASE("classify: absolute paths and .. are refused, saying why") {
  auto abs = classify("/etc/passwd");
  REQUIRE_FALSE(abs);
  CHECK(abs.error().message == "layer entry \"/etc/passwd\" refused: an absolute path");
  auto up = classify("a/../../etc/shadow");
  REQUIRE_FALSE(up);
  CHECK(up.error().message.find("climbs out of the layer") != std::string::npos);
  CHECK_FALSE(classify(""));
  CHECK_FALSE(classify("../x"));
  CHECK(classify("a..b/c..")->path == "a..b/c..");  // dots inside names are fine
}

// A tar written with libarchive, entry by entry.
class TarWriter {
 public:
  explicit TarWriter(const std::string& path, bool gzip) {
    a_ = archive_write_new();
    archive_write_set_format_pax_restricted(a_);
    if (gzip) archive_write_add_filter_gzip(a_);
    REQUIRE(archive_write_open_filename(a_, path.c_str()) == ARCHIVE_OK);
  }
  ~TarWriter() { archive_write_free(a_); }
  void close() { REQUIRE(archive_write_close(a_) == ARCHIVE_OK); }

  void add(const std::string& name, mode_t type, mode_t perm, const std::string& data = "",
           const std::string& link = "", bool hardlink = false) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, perm);
    archive_entry_set_uid(e, 1000);
    archive_entry_set_gid(e, 1000);
    archive_entry_set_mtime(e, 1000000, 0);
    if (hardlink) archive_entry_set_hardlink(e, link.c_str());
    else if (!link.empty()) archive_entry_set_symlink(e, link.c_str());
    archive_entry_set_size(e, type == AE_IFREG && !hardlink ? data.size() : 0);
    REQUIRE(archive_write_header(a_, e) == ARCHIVE_OK);
    if (!data.empty()) archive_write_data(a_, data.data(), data.size());
    archive_entry_free(e);
  }

 private:
  archive* a_;
};

std::string readText(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST_CASE("unpack: files, links, owners and modes; whiteouts and an opaque dir for overlayfs") {
  testing::TempDir dir;
  std::string tarball = dir / "layer.tar.gz";
  {
    TarWriter tar(tarball, true);
    tar.add("./", AE_IFDIR, 0755);
    tar.add("bin/", AE_IFDIR, 0755);
    tar.add("bin/tool", AE_IFREG, 04755, "#!/bin/sh\n");
    tar.add("bin/sh", AE_IFLNK, 0777, "", "/bin/tool");
    tar.add("bin/tool2", AE_IFREG, 0755, "", "bin/tool", true);
    tar.add("etc/.wh.passwd", AE_IFREG, 0644);
    tar.add("var/cache/", AE_IFDIR, 0700);
    tar.add("var/cache/.wh..wh..opq", AE_IFREG, 0644);
    tar.add("tmp/", AE_IFDIR, 01777);
    tar.close();
  }
  std::string dest = dir / "out";
  fs::create_directory(dest);
  auto st = unpack(tarball, dest);
  REQUIRE_MESSAGE(st, (st ? "" : st.error().message));

  CHECK(readText(dest + "/bin/tool") == "#!/bin/sh\n");
  struct stat s {};
  REQUIRE(::stat((dest + "/bin/tool").c_str(), &s) == 0);
  CHECK((s.st_mode & 07777) == 04755);
  CHECK(s.st_uid == 1000);
  CHECK(s.st_mtime == 1000000);
  CHECK(fs::read_symlink(dest + "/bin/sh") == "/bin/tool");  // absolute: inside the container
  struct stat h {};
  REQUIRE(::stat((dest + "/bin/tool2").c_str(), &h) == 0);
  CHECK(h.st_ino == s.st_ino);

  REQUIRE(::lstat((dest + "/etc/passwd").c_str(), &s) == 0);
  CHECK(S_ISCHR(s.st_mode));
  CHECK(s.st_rdev == makedev(0, 0));
  CHECK_FALSE(fs::exists(dest + "/etc/.wh.passwd"));

  char value[8] = {};
  CHECK(::lgetxattr((dest + "/var/cache").c_str(), "trusted.overlay.opaque", value,
                    sizeof value) == 1);
  CHECK(std::string(value) == "y");
  CHECK_FALSE(fs::exists(dest + "/var/cache/.wh..wh..opq"));
  REQUIRE(::stat((dest + "/tmp").c_str(), &s) == 0);
  CHECK((s.st_mode & 07777) == 01777);
}

Status unpackOne(const testing::TempDir& dir, const std::vector<std::string>& names,
                 const std::string& symlinkName = "", const std::string& hardlinkTarget = "") {
  std::string tarball = dir / "bad.tar";
  {
    TarWriter tar(tarball, false);
    if (!symlinkName.empty()) tar.add(symlinkName, AE_IFLNK, 0777, "", dir.path());
    for (auto& n : names)
      tar.add(n, AE_IFREG, 0644, hardlinkTarget.empty() ? "x" : "", hardlinkTarget,
              !hardlinkTarget.empty());
    tar.close();
  }
  std::string dest = dir / "out";
  fs::remove_all(dest);
  fs::create_directory(dest);
  return unpack(tarball, dest);
}

TEST_CASE("unpack: paths leaving the layer are refused, and nothing is written outside") {
  testing::TempDir dir;
  auto abs = unpackOne(dir, {dir / "escaped"});
  REQUIRE_FALSE(abs);
  CHECK(abs.error().message.find("an absolute path") != std::string::npos);
  auto up = unpackOne(dir, {"../escaped"});
  REQUIRE_FALSE(up);
  CHECK(up.error().message.find("climbs out") != std::string::npos);
  // A symlink to the outside, then a file written through it.
  auto through = unpackOne(dir, {"link/escaped"}, "link");
  REQUIRE_FALSE(through);
  MESSAGE(through.error().message);
  // A hardlink to a file outside the layer.
  auto hard = unpackOne(dir, {"h"}, "", "../../etc/passwd");
  REQUIRE_FALSE(hard);
  CHECK(hard.error().message.find("hardlink target") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "escaped"));
}

TEST_CASE("unpack: a file that is not a tarball") {
  testing::TempDir dir;
  std::ofstream(dir / "junk") << "not a tar at all, not even close to one";
  fs::create_directory(dir / "out");
  auto st = unpack(dir / "junk", dir / "out");
  REQUIRE_FALSE(st);
  CHECK(st.error().message.find(dir / "junk") != std::string::npos);
}

}  // namespace
}  // namespace shoal::agentd::layer
