// A task's OCI runtime spec (services/agentd/bundle.h): one test per rule of docker's merge
// of the ContainerSpec with the image's config, the defaults docker gives every container,
// and the refusals, each with the message a user sees in `service ps`.
#include <doctest/doctest.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <flatbuffers/flatbuffers.h>
#include <nlohmann/json.hpp>

#include "common/object_codec.h"
#include "services/agentd/bundle.h"
#include "tests/support/tempdir.h"

namespace shoal::agentd {
namespace {

using nlohmann::json;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

void writeFile(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path) << text;
}

// A task, its image's config and a rootfs with an /etc/passwd and /etc/group.
struct Bundle {
  testing::TempDir root;
  objects::TaskT task;
  ImageConfig image;
  BundleInput input;
  std::string bytes;

  Bundle() {
    task.id = "0123456789abcdef0123";
    task.spec = std::make_unique<objects::TaskSpecT>();
    task.spec->container = std::make_unique<objects::ContainerSpecT>();
    image.cmd = {"sh"};
    writeFile(root / "etc/passwd",
              "root:x:0:0:root:/root:/bin/sh\n# a comment\nwww:x:33:33::/var/www:/bin/sh\n"
              "nobody:x:65534:65534::/:/bin/false\n");
    writeFile(root / "etc/group",
              "root:x:0:\nwww:x:33:\nadm:x:4:www,other\nvideo:x:44:\n");
    input.rootfs = root.path();
    input.cgroupsPath = "/shoal/" + task.id;
  }
  objects::ContainerSpecT& c() { return *task.spec->container; }
  objects::ResourcesT& limits() {
    if (!task.spec->resources) {
      task.spec->resources = std::make_unique<objects::ResourceRequirementsT>();
      task.spec->resources->limits = std::make_unique<objects::ResourcesT>();
    }
    return *task.spec->resources->limits;
  }
  Result<json> make() {
    bytes = objects_codec::pack<objects::Task>(task);
    input.task = flatbuffers::GetRoot<objects::Task>(bytes.data());
    input.image = &image;
    return makeRuntimeSpec(input);
  }
  json spec() {
    auto s = make();
    if (!s) FAIL(s.error().message);
    return *s;
  }
  std::string error() {
    auto s = make();
    REQUIRE_FALSE(s.ok());
    return s.error().message;
  }
};

std::vector<std::string> caps(const json& spec) {
  return spec["process"]["capabilities"]["bounding"].get<std::vector<std::string>>();
}

bool has(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

const json* mountAt(const json& spec, const std::string& dest) {
  for (auto& m : spec["mounts"])
    if (m["destination"] == dest) return &m;
  return nullptr;
}

TEST_CASE("the spec has runc's basic shape: ociVersion 1.0.2, process, root, mounts, linux") {
  Bundle b;
  json s = b.spec();
  CHECK(s["ociVersion"] == "1.0.2");
  for (const char* key : {"process", "root", "hostname", "mounts", "linux"})
    CHECK_MESSAGE(s.contains(key), key);
  CHECK(s["process"]["terminal"] == false);
  CHECK(s["process"]["noNewPrivileges"] == false);
  CHECK(s["process"]["cwd"] == "/");
  CHECK(s["process"]["user"] == json{{"uid", 0}, {"gid", 0}});
  CHECK(s["root"] == json{{"path", b.root.path()}, {"readonly", false}});
  CHECK(s["linux"]["cgroupsPath"] == "/shoal/0123456789abcdef0123");
}

TEST_CASE("the image's entrypoint and cmd run when the service gives neither") {
  Bundle b;
  b.image.entrypoint = {"/entry", "-x"};
  b.image.cmd = {"serve", "--port", "80"};
  CHECK(b.spec()["process"]["args"] == json{"/entry", "-x", "serve", "--port", "80"});
}

TEST_CASE("a command replaces the image's entrypoint and drops its cmd") {
  Bundle b;
  b.image.entrypoint = {"/entry"};
  b.image.cmd = {"serve"};
  b.c().command = {"sh", "-c"};
  CHECK(b.spec()["process"]["args"] == json{"sh", "-c"});
  b.c().args = {"echo hi"};
  CHECK(b.spec()["process"]["args"] == json{"sh", "-c", "echo hi"});
}

TEST_CASE("args alone replace the image's cmd and keep its entrypoint") {
  Bundle b;
  b.image.entrypoint = {"/entry"};
  b.image.cmd = {"serve"};
  b.c().args = {"check", "-v"};
  CHECK(b.spec()["process"]["args"] == json{"/entry", "check", "-v"});
}

TEST_CASE("no entrypoint, no cmd and no command is refused, saying what to give") {
  Bundle b;
  b.image.cmd.clear();
  CHECK(contains(b.error(), "the image has no entrypoint or cmd and the service gives no command"));
}

TEST_CASE("env: PATH and HOSTNAME first, the image's, then the spec's overriding by name") {
  Bundle b;
  b.image.env = {"PATH=/image/bin", "A=image", "B=image"};
  b.c().env = {"B=spec", "C=spec", "A"};  // "A" alone unsets A, as docker's merge does
  CHECK(b.spec()["process"]["env"] ==
        json{"PATH=/image/bin", "HOSTNAME=0123456789ab", "B=spec", "C=spec"});
}

TEST_CASE("env: PATH is defaulted when the image has none; a nameless entry is refused") {
  Bundle b;
  auto env = b.spec()["process"]["env"];
  CHECK(env[0] == "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  b.c().env = {"=x"};
  CHECK(contains(b.error(), "\"=x\" has no name"));
}

TEST_CASE("hostname: the given one, else the task id's first 12 characters; bad ones refused") {
  Bundle b;
  CHECK(b.spec()["hostname"] == "0123456789ab");
  b.input.hostname = "web-1.example";
  CHECK(b.spec()["hostname"] == "web-1.example");
  b.input.hostname = "bad host";
  CHECK(contains(b.error(), "the hostname \"bad host\" is not valid"));
}

TEST_CASE("user: a name from the image's /etc/passwd, with its group and its member groups") {
  Bundle b;
  b.c().user = "www";
  CHECK(b.spec()["process"]["user"] ==
        json{{"uid", 33}, {"gid", 33}, {"additionalGids", {4}}});
}

TEST_CASE("user: the image's user when the spec has none; name:group and uid:gid") {
  Bundle b;
  b.image.user = "nobody";
  CHECK(b.spec()["process"]["user"] == json{{"uid", 65534}, {"gid", 65534}});
  b.c().user = "www:video";
  CHECK(b.spec()["process"]["user"]["gid"] == 44);
  b.c().user = "1234:5678";
  CHECK(b.spec()["process"]["user"] == json{{"uid", 1234}, {"gid", 5678}});
}

TEST_CASE("user: groups become additionalGids; unknown names are refused") {
  Bundle b;
  b.c().user = "nobody";
  b.c().groups = {"video", "500"};
  CHECK(b.spec()["process"]["user"]["additionalGids"] == json{44, 500});
  b.c().groups = {"nosuch"};
  CHECK(contains(b.error(), "the group \"nosuch\" is not in the image's /etc/group"));
  b.c().groups.clear();
  b.c().user = "ghost";
  CHECK(contains(b.error(), "the user \"ghost\" is not in the image's /etc/passwd"));
}

TEST_CASE("user: /etc/passwd is read inside the rootfs, a symlink out of it stays inside") {
  Bundle b;
  // An absolute link resolves against the rootfs, not the host: the host's /etc/passwd (which
  // has a "root") must not be read in place of the image's missing one.
  std::filesystem::remove(b.root / "etc/passwd");
  std::filesystem::create_symlink("/etc/passwd", b.root / "etc/passwd");
  b.c().user = "root";
  CHECK(contains(b.error(), "the user \"root\" is not in the image's /etc/passwd"));
  b.c().user = "0";
  CHECK(b.spec()["process"]["user"]["uid"] == 0);
}

TEST_CASE("dir: the spec's, else the image's, else /; a relative one is refused") {
  Bundle b;
  b.image.workingDir = "/srv";
  CHECK(b.spec()["process"]["cwd"] == "/srv");
  b.c().dir = "/app";
  CHECK(b.spec()["process"]["cwd"] == "/app");
  b.c().dir = "app";
  CHECK(contains(b.error(), "the working directory \"app\" is not absolute"));
}

TEST_CASE("capabilities: docker's 14 by default in bounding, effective and permitted") {
  Bundle b;
  json s = b.spec();
  auto c = caps(s);
  CHECK(c.size() == 14);
  for (const char* cap : {"CAP_CHOWN", "CAP_NET_RAW", "CAP_KILL", "CAP_AUDIT_WRITE",
                          "CAP_SETFCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT"})
    CHECK_MESSAGE(has(c, cap), cap);
  CHECK_FALSE(has(c, "CAP_SYS_ADMIN"));
  CHECK(s["process"]["capabilities"]["effective"] == s["process"]["capabilities"]["bounding"]);
  CHECK(s["process"]["capabilities"]["permitted"] == s["process"]["capabilities"]["bounding"]);
}

TEST_CASE("capabilities: add and drop, with or without CAP_, in any case") {
  Bundle b;
  b.c().capability_add = {"net_admin", "CAP_SYS_TIME"};
  b.c().capability_drop = {"NET_RAW", "cap_chown"};
  auto c = caps(b.spec());
  CHECK(has(c, "CAP_NET_ADMIN"));
  CHECK(has(c, "CAP_SYS_TIME"));
  CHECK_FALSE(has(c, "CAP_NET_RAW"));
  CHECK_FALSE(has(c, "CAP_CHOWN"));
  CHECK(c.size() == 14);
}

TEST_CASE("capabilities: drop ALL keeps only the added ones; add ALL keeps all but the dropped") {
  Bundle b;
  b.c().capability_drop = {"ALL"};
  b.c().capability_add = {"KILL"};
  CHECK(caps(b.spec()) == std::vector<std::string>{"CAP_KILL"});
  b.c().capability_drop = {"SYS_ADMIN"};
  b.c().capability_add = {"all"};
  auto c = caps(b.spec());
  CHECK(c.size() == 40);
  CHECK_FALSE(has(c, "CAP_SYS_ADMIN"));
  CHECK(has(c, "CAP_BPF"));
}

TEST_CASE("capabilities: an unknown name is refused, naming it") {
  Bundle b;
  b.c().capability_add = {"FLY"};
  CHECK(contains(b.error(), "unknown capability \"FLY\""));
}

TEST_CASE("ulimits become rlimits; unknown names and soft above hard are refused") {
  Bundle b;
  auto u = std::make_unique<objects::UlimitT>();
  u->name = "nofile";
  u->soft = 1024;
  u->hard = 4096;
  b.c().ulimits.push_back(std::move(u));
  CHECK(b.spec()["process"]["rlimits"] ==
        json::array({{{"type", "RLIMIT_NOFILE"}, {"soft", 1024}, {"hard", 4096}}}));
  b.c().ulimits[0]->soft = 5000;
  CHECK(contains(b.error(), "soft limit above its hard limit"));
  b.c().ulimits[0]->name = "wings";
  CHECK(contains(b.error(), "unknown ulimit \"wings\""));
}

TEST_CASE("oom_score_adj is the process's; out of range is refused") {
  Bundle b;
  CHECK_FALSE(b.spec()["process"].contains("oomScoreAdj"));
  b.c().oom_score_adj = 500;
  CHECK(b.spec()["process"]["oomScoreAdj"] == 500);
  b.c().oom_score_adj = 1001;
  CHECK(contains(b.error(), "oom_score_adj 1001 is out of range"));
}

TEST_CASE("sysctls: namespaced ones pass, host-wide ones are refused") {
  Bundle b;
  auto kv = std::make_unique<objects::KeyValueT>();
  kv->key = "net.ipv4.ip_forward";
  kv->value = "1";
  b.c().sysctls.push_back(std::move(kv));
  CHECK(b.spec()["linux"]["sysctl"] == json{{"net.ipv4.ip_forward", "1"}});
  b.c().sysctls[0]->key = "kernel.panic";
  CHECK(contains(b.error(), "the sysctl \"kernel.panic\" is not allowed in a container"));
}

TEST_CASE("root is read-only with ContainerSpec.read_only") {
  Bundle b;
  b.c().read_only = true;
  CHECK(b.spec()["root"]["readonly"] == true);
}

TEST_CASE("docker's default mounts come first, /sys read-only, then the given ones in order") {
  Bundle b;
  b.input.mounts = {{"bind", "/host/a", "/a", {"rbind", "ro"}},
                    {"tmpfs", "tmpfs", "/t", {"nosuid"}}};
  json s = b.spec();
  std::vector<std::string> dests;
  for (auto& m : s["mounts"]) dests.push_back(m["destination"]);
  CHECK(dests == std::vector<std::string>{"/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup",
                                          "/dev/mqueue", "/dev/shm", "/a", "/t"});
  CHECK(has((*mountAt(s, "/sys"))["options"].get<std::vector<std::string>>(), "ro"));
  CHECK(*mountAt(s, "/a") == json{{"destination", "/a"}, {"type", "bind"},
                                  {"source", "/host/a"}, {"options", {"rbind", "ro"}}});
}

TEST_CASE("a given mount on a default's destination replaces the default") {
  Bundle b;
  b.input.mounts = {{"tmpfs", "tmpfs", "/dev/shm", {"size=1g"}}};
  json s = b.spec();
  int count = 0;
  for (auto& m : s["mounts"]) count += m["destination"] == "/dev/shm";
  CHECK(count == 1);
  CHECK((*mountAt(s, "/dev/shm"))["options"] == json{"size=1g"});
}

TEST_CASE("docker's masked and read-only paths") {
  Bundle b;
  json s = b.spec();
  auto masked = s["linux"]["maskedPaths"].get<std::vector<std::string>>();
  auto ro = s["linux"]["readonlyPaths"].get<std::vector<std::string>>();
  CHECK(has(masked, "/proc/kcore"));
  CHECK(has(masked, "/sys/firmware"));
  CHECK(masked.size() == 11);
  CHECK(ro == std::vector<std::string>{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                       "/proc/sysrq-trigger"});
}

TEST_CASE("namespaces: pid, ipc, uts, mount and a new network one, or overlayd's by path") {
  Bundle b;
  json ns = b.spec()["linux"]["namespaces"];
  CHECK(ns == json::array({{{"type", "pid"}}, {{"type", "ipc"}}, {{"type", "uts"}},
                           {{"type", "mount"}}, {{"type", "network"}}}));
  b.input.netnsPath = "/run/shoal/netns/t1";
  CHECK(b.spec()["linux"]["namespaces"][4] ==
        json{{"type", "network"}, {"path", "/run/shoal/netns/t1"}});
}

TEST_CASE("limits: CPU quota from nano CPUs over a 100 ms period, memory, pids") {
  Bundle b;
  b.limits().nano_cpus = 500'000'000;
  b.limits().memory_bytes = 64 << 20;
  b.limits().pids = 50;
  json r = b.spec()["linux"]["resources"];
  CHECK(r["cpu"] == json{{"quota", 50000}, {"period", 100000}});
  CHECK(r["memory"]["limit"] == 67108864);
  CHECK(r["pids"] == json{{"limit", 50}});
}

TEST_CASE("limits: none given, none set; too small ones refused with docker's minimums") {
  Bundle b;
  json r = b.spec()["linux"]["resources"];
  CHECK_FALSE(r.contains("cpu"));
  CHECK_FALSE(r.contains("memory"));
  CHECK_FALSE(r.contains("pids"));
  b.limits().nano_cpus = 1000;
  CHECK(contains(b.error(), "below 0.01 CPU"));
  b.limits().nano_cpus = 0;
  b.limits().memory_bytes = 1 << 20;
  CHECK(contains(b.error(), "below docker's minimum of 6 MiB"));
}

TEST_CASE("devices: deny all first, then docker's allowed list (null, zero, urandom, pts...)") {
  Bundle b;
  json d = b.spec()["linux"]["resources"]["devices"];
  CHECK(d[0] == json{{"allow", false}, {"access", "rwm"}});
  auto allowed = [&](int major, int minor) {
    for (auto& r : d)
      if (r["allow"] == true && r.value("major", -1) == major && r.value("minor", -1) == minor)
        return true;
    return false;
  };
  CHECK(allowed(1, 3));
  CHECK(allowed(1, 5));
  CHECK(allowed(1, 9));
  CHECK(allowed(5, 2));
  CHECK(allowed(136, -1));
  CHECK_FALSE(allowed(10, 229));
}

// ---- resolveMounts

struct Mounts {
  objects::ContainerSpecT spec;
  std::string bytes;
  void add(objects::MountType type, std::string source, std::string target, bool ro = false) {
    auto m = std::make_unique<objects::MountT>();
    m->type = type;
    m->source = std::move(source);
    m->target = std::move(target);
    m->read_only = ro;
    spec.mounts.push_back(std::move(m));
  }
  Result<std::vector<ResolvedMount>> resolve() {
    flatbuffers::FlatBufferBuilder fbb;
    fbb.Finish(objects::ContainerSpec::Pack(fbb, &spec));
    bytes.assign(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
    return resolveMounts(*flatbuffers::GetRoot<objects::ContainerSpec>(bytes.data()), "/vols");
  }
  std::string error() {
    auto r = resolve();
    REQUIRE_FALSE(r.ok());
    return r.error().message;
  }
};

TEST_CASE("resolveMounts: binds as given, volumes under the volumes dir, read-only as asked") {
  Mounts m;
  m.add(objects::MountType::Bind, "/srv/data", "/data", true);
  m.add(objects::MountType::Volume, "db-1", "/var/lib/db");
  auto r = m.resolve();
  REQUIRE(r.ok());
  REQUIRE(r->size() == 2);
  CHECK((*r)[0].type == "bind");
  CHECK((*r)[0].source == "/srv/data");
  CHECK((*r)[0].options == std::vector<std::string>{"rbind", "rprivate", "ro"});
  CHECK((*r)[1].source == "/vols/db-1/_data");
  CHECK((*r)[1].destination == "/var/lib/db");
  CHECK((*r)[1].options == std::vector<std::string>{"rbind", "rprivate"});
}

TEST_CASE("resolveMounts: tmpfs with docker's noexec,nosuid,nodev, its size and mode") {
  Mounts m;
  m.add(objects::MountType::Tmpfs, "", "/scratch");
  m.spec.mounts[0]->tmpfs_options = std::make_unique<objects::TmpfsOptionsT>();
  m.spec.mounts[0]->tmpfs_options->size_bytes = 1 << 20;
  m.spec.mounts[0]->tmpfs_options->mode = 01777;
  m.spec.mounts[0]->tmpfs_options->options = {"exec"};
  auto r = m.resolve();
  REQUIRE(r.ok());
  CHECK((*r)[0].type == "tmpfs");
  CHECK((*r)[0].options ==
        std::vector<std::string>{"noexec", "nosuid", "nodev", "size=1048576", "mode=1777", "exec"});
  m.spec.mounts[0]->tmpfs_options->options = {"uid=0,exec"};
  CHECK(contains(m.error(), "the tmpfs option \"uid=0,exec\" is not supported"));
}

TEST_CASE("resolveMounts: refusals name the mount") {
  Mounts m;
  m.add(objects::MountType::Bind, "relative", "/x");
  CHECK(contains(m.error(), "mount 1 (target \"/x\"): a bind mount needs an absolute source"));
  m.spec.mounts.clear();
  m.add(objects::MountType::Volume, "../etc", "/x");
  CHECK(contains(m.error(), "the volume name \"../etc\" is not valid"));
  m.spec.mounts.clear();
  m.add(objects::MountType::Bind, "/a", "/");
  CHECK(contains(m.error(), "an absolute path other than /"));
  m.spec.mounts.clear();
  m.add(objects::MountType::Bind, "/a", "/x/../etc");
  CHECK(contains(m.error(), "must not contain .."));
  m.spec.mounts.clear();
  m.add(objects::MountType::Bind, "/a", "/x");
  m.add(objects::MountType::Bind, "/b", "/x");
  CHECK(contains(m.error(), "mount 2 (target \"/x\"): another mount has the same target"));
}

// ---- stopSignal

TEST_CASE("stopSignal: the spec's by name, short name or number; the image's; else SIGTERM") {
  ImageConfig image;
  CHECK(*stopSignal(nullptr, image) == 15);
  image.stopSignal = "SIGQUIT";
  CHECK(*stopSignal(nullptr, image) == 3);
  objects::ContainerSpecT spec;
  auto signalOf = [&](const std::string& s) {
    spec.stop_signal = s;
    flatbuffers::FlatBufferBuilder fbb;
    fbb.Finish(objects::ContainerSpec::Pack(fbb, &spec));
    return stopSignal(flatbuffers::GetRoot<objects::ContainerSpec>(fbb.GetBufferPointer()), image);
  };
  CHECK(*signalOf("SIGINT") == 2);
  CHECK(*signalOf("usr1") == 10);
  CHECK(*signalOf("9") == 9);
  CHECK(*signalOf("SIGRTMIN+3") == SIGRTMIN + 3);
  CHECK(*signalOf("") == 3);  // empty: the image's
  auto bad = signalOf("SIGNOPE");
  REQUIRE_FALSE(bad.ok());
  CHECK(contains(bad.error().message, "the stop signal \"SIGNOPE\" is not a signal"));
  CHECK_FALSE(signalOf("0").ok());
  CHECK_FALSE(signalOf("65").ok());
}

}  // namespace
}  // namespace shoal::agentd
