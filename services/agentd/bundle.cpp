#include "services/agentd/bundle.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <limits>
#include <optional>
#include <set>
#include <string_view>

namespace shoal::agentd {
namespace {

using nlohmann::json;

Error invalid(const std::string& what) { return Error{what, EINVAL}; }

const char* const kDefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr int64_t kCpuPeriod = 100000;  // µs: docker's CFS period for --cpus

// Docker's default capability set (moby oci/caps/defaults.go).
const std::vector<std::string> kDefaultCaps = {
    "CAP_CHOWN",      "CAP_DAC_OVERRIDE", "CAP_FSETID",           "CAP_FOWNER",
    "CAP_MKNOD",      "CAP_NET_RAW",      "CAP_SETGID",           "CAP_SETUID",
    "CAP_SETFCAP",    "CAP_SETPCAP",      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
    "CAP_KILL",       "CAP_AUDIT_WRITE"};

// Every capability Linux knows, in its numeric order (linux/capability.h).
const std::vector<std::string> kAllCaps = {
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"};

// Docker's masked and read-only paths (moby oci/defaults.go).
const std::vector<std::string> kMaskedPaths = {
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap"};
const std::vector<std::string> kReadonlyPaths = {"/proc/bus", "/proc/fs", "/proc/irq",
                                                 "/proc/sys", "/proc/sysrq-trigger"};

const std::vector<std::string> kSignalNames = {
    "",     "HUP",  "INT",  "QUIT", "ILL",    "TRAP", "ABRT",  "BUS",  "FPE",  "KILL", "USR1",
    "SEGV", "USR2", "PIPE", "ALRM", "TERM",   "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN",
    "TTOU", "URG",  "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO",   "PWR",  "SYS"};

std::vector<std::string> strings(const flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>>* v) {
  std::vector<std::string> out;
  if (v)
    for (auto s : *v) out.push_back(s ? s->str() : std::string());
  return out;
}

std::string str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }

std::optional<int64_t> number(std::string_view text) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return v;
}

std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// ---- the process's argv: docker's entrypoint/cmd merge (moby daemon/commit.go merge and
// swarmkit's container adapter: a command replaces the entrypoint and drops the image's cmd).
Result<std::vector<std::string>> processArgs(const objects::ContainerSpec* spec,
                                             const ImageConfig& image) {
  auto command = strings(spec ? spec->command() : nullptr);
  auto args = strings(spec ? spec->args() : nullptr);
  std::vector<std::string> entrypoint = command.empty() ? image.entrypoint : command;
  std::vector<std::string> cmd = args;
  if (command.empty() && args.empty()) cmd = image.cmd;
  std::vector<std::string> argv = entrypoint;
  argv.insert(argv.end(), cmd.begin(), cmd.end());
  if (argv.empty())
    return invalid("the image has no entrypoint or cmd and the service gives no command: "
                   "give one (shoal service create IMAGE COMMAND...)");
  return argv;
}

// ---- env: docker's ReplaceOrAppendEnvValues, PATH and HOSTNAME first.
std::string envName(const std::string& entry) { return entry.substr(0, entry.find('=')); }

void replaceOrAppend(std::vector<std::string>& env, const std::string& entry) {
  std::string name = envName(entry);
  bool remove = entry.find('=') == std::string::npos;  // "NAME" alone unsets it
  auto it = std::find_if(env.begin(), env.end(),
                         [&](const std::string& e) { return envName(e) == name; });
  if (it == env.end()) {
    if (!remove) env.push_back(entry);
  } else if (remove) {
    env.erase(it);
  } else {
    *it = entry;
  }
}

Result<std::vector<std::string>> processEnv(const objects::ContainerSpec* spec,
                                            const ImageConfig& image,
                                            const std::string& hostname) {
  std::vector<std::string> env = {kDefaultPath, "HOSTNAME=" + hostname};
  for (auto& e : image.env) replaceOrAppend(env, e);
  for (auto& e : strings(spec ? spec->env() : nullptr)) {
    if (e.empty() || e[0] == '=' || e.find('\0') != std::string::npos)
      return invalid("the environment variable \"" + e + "\" has no name: write NAME=VALUE");
    replaceOrAppend(env, e);
  }
  return env;
}

// ---- the user: names resolved in the image's /etc/passwd and /etc/group, read inside the
// rootfs (RESOLVE_IN_ROOT: a symlink in the image cannot make us read a host file).
std::optional<std::string> readInRoot(const std::string& root, const char* path) {
  int dir = ::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return std::nullopt;
  open_how how{};
  how.flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  int fd = static_cast<int>(::syscall(SYS_openat2, dir, path, &how, sizeof how));
  ::close(dir);
  if (fd < 0) return std::nullopt;
  std::string text;
  char buf[8192];
  ssize_t n;
  constexpr size_t kMax = 4 << 20;  // an /etc/passwd larger than this is not one
  while ((n = ::read(fd, buf, sizeof buf)) > 0 && text.size() < kMax) text.append(buf, n);
  ::close(fd);
  return text;
}

// One line of /etc/passwd or /etc/group, split at ':'.
std::vector<std::vector<std::string>> colonLines(const std::string& text) {
  std::vector<std::vector<std::string>> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + start, end - start);
    start = end + 1;
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> fields;
    size_t f = 0;
    for (size_t colon; (colon = line.find(':', f)) != std::string_view::npos; f = colon + 1)
      fields.emplace_back(line.substr(f, colon - f));
    fields.emplace_back(line.substr(f));
    out.push_back(std::move(fields));
  }
  return out;
}

struct PasswdEntry {
  std::string name;
  int64_t uid = 0, gid = 0;
};

std::optional<PasswdEntry> findUser(const std::string& passwd, const std::string& user) {
  auto num = number(user);
  for (auto& f : colonLines(passwd)) {
    if (f.size() < 4) continue;
    auto uid = number(f[2]), gid = number(f[3]);
    if (!uid || !gid) continue;
    if (f[0] == user || (num && *uid == *num)) return PasswdEntry{f[0], *uid, *gid};
  }
  return std::nullopt;
}

Result<int64_t> findGroup(const std::string& group, const std::string& name) {
  if (auto num = number(name)) {
    if (*num < 0 || *num > std::numeric_limits<uint32_t>::max())
      return invalid("the group id " + name + " is out of range");
    return *num;
  }
  for (auto& f : colonLines(group))
    if (f.size() >= 3 && f[0] == name)
      if (auto gid = number(f[2])) return *gid;
  return invalid("the group \"" + name + "\" is not in the image's /etc/group: use a group "
                 "the image has, or a numeric gid");
}

// The groups that list `user` as a member (docker's supplementary groups).
std::vector<int64_t> memberGroups(const std::string& group, const std::string& user) {
  std::vector<int64_t> out;
  if (user.empty()) return out;
  for (auto& f : colonLines(group)) {
    if (f.size() < 4) continue;
    auto gid = number(f[2]);
    size_t start = 0;
    std::string_view members(f[3]);
    while (gid && start <= members.size()) {
      size_t comma = members.find(',', start);
      if (comma == std::string_view::npos) comma = members.size();
      if (members.substr(start, comma - start) == user) out.push_back(*gid);
      start = comma + 1;
    }
  }
  return out;
}

Result<json> processUser(const objects::ContainerSpec* spec, const ImageConfig& image,
                         const std::string& rootfs) {
  std::string text = spec && spec->user() && spec->user()->size() ? spec->user()->str() : image.user;
  if (text.empty()) text = "0";
  std::string userPart = text.substr(0, text.find(':'));
  std::string groupPart = text.find(':') == std::string::npos ? "" : text.substr(text.find(':') + 1);
  std::string passwd = readInRoot(rootfs, "etc/passwd").value_or("");
  std::string group = readInRoot(rootfs, "etc/group").value_or("");
  auto entry = findUser(passwd, userPart);
  auto num = number(userPart);
  if (!entry && !num)
    return invalid("the user \"" + userPart + "\" is not in the image's /etc/passwd: use a user "
                   "the image has, or a numeric uid");
  if (!entry && (*num < 0 || *num > std::numeric_limits<uint32_t>::max()))
    return invalid("the user id " + userPart + " is out of range");
  PasswdEntry who = entry ? *entry : PasswdEntry{"", *num, 0};
  if (!groupPart.empty()) {
    auto gid = findGroup(group, groupPart);
    if (!gid) return gid.error();
    who.gid = *gid;
  }
  std::vector<int64_t> extra = memberGroups(group, who.name);
  for (auto& g : strings(spec ? spec->groups() : nullptr)) {
    auto gid = findGroup(group, g);
    if (!gid) return gid.error();
    extra.push_back(*gid);
  }
  json user = {{"uid", who.uid}, {"gid", who.gid}};
  std::sort(extra.begin(), extra.end());
  extra.erase(std::unique(extra.begin(), extra.end()), extra.end());
  if (!extra.empty()) user["additionalGids"] = extra;
  return user;
}

// ---- capabilities: docker's TweakCapabilities (moby oci/caps/utils.go).
Result<std::string> capName(const std::string& given) {
  std::string name = upper(given);
  if (name == "ALL") return name;
  if (name.rfind("CAP_", 0) != 0) name = "CAP_" + name;
  if (std::find(kAllCaps.begin(), kAllCaps.end(), name) == kAllCaps.end())
    return invalid("unknown capability \"" + given + "\": use a Linux capability name such as "
                   "NET_ADMIN or CAP_SYS_TIME, or ALL");
  return name;
}

Result<std::vector<std::string>> capNames(const std::vector<std::string>& given) {
  std::vector<std::string> out;
  for (auto& g : given) {
    auto name = capName(g);
    if (!name) return name.error();
    out.push_back(*name);
  }
  return out;
}

Result<std::vector<std::string>> capabilities(const objects::ContainerSpec* spec) {
  auto add = capNames(strings(spec ? spec->capability_add() : nullptr));
  if (!add) return add.error();
  auto drop = capNames(strings(spec ? spec->capability_drop() : nullptr));
  if (!drop) return drop.error();
  auto has = [](const std::vector<std::string>& v, const std::string& c) {
    return std::find(v.begin(), v.end(), c) != v.end();
  };
  std::vector<std::string> caps;
  if (has(*add, "ALL")) {
    for (auto& c : kAllCaps)
      if (!has(*drop, c)) caps.push_back(c);
  } else {
    if (!has(*drop, "ALL"))
      for (auto& c : kDefaultCaps)
        if (!has(*drop, c)) caps.push_back(c);
    for (auto& c : *add)
      if (!has(caps, c)) caps.push_back(c);
  }
  return caps;
}

// ---- rlimits, sysctls
Result<json> rlimits(const objects::ContainerSpec* spec) {
  static const std::set<std::string> known = {
      "as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
      "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack"};
  json out = json::array();
  if (!spec || !spec->ulimits()) return out;
  for (auto u : *spec->ulimits()) {
    std::string name = str(u->name());
    if (!known.count(name))
      return invalid("unknown ulimit \"" + name + "\": use one of nofile, nproc, core, "
                     "memlock, stack, ... (as in docker's --ulimit)");
    auto limit = [](int64_t v) {  // -1: unlimited
      return v < 0 ? std::numeric_limits<uint64_t>::max() : static_cast<uint64_t>(v);
    };
    if (u->soft() < -1 || u->hard() < -1 || limit(u->soft()) > limit(u->hard()))
      return invalid("the ulimit " + name + " has a soft limit above its hard limit, or a "
                     "negative one: give soft <= hard (-1 for unlimited)");
    out.push_back({{"type", "RLIMIT_" + upper(name)}, {"soft", limit(u->soft())},
                   {"hard", limit(u->hard())}});
  }
  return out;
}

// Docker allows only the namespaced sysctls (moby opts/runtime validateSysctl): the others
// would change the host.
bool namespacedSysctl(const std::string& key) {
  static const std::set<std::string> ipc = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni",
                                            "kernel.sem", "kernel.shmall", "kernel.shmmax",
                                            "kernel.shmmni", "kernel.shm_rmid_forced"};
  return ipc.count(key) || key.rfind("fs.mqueue.", 0) == 0 || key.rfind("net.", 0) == 0;
}

Result<json> sysctls(const objects::ContainerSpec* spec) {
  json out = json::object();
  if (!spec || !spec->sysctls()) return out;
  for (auto kv : *spec->sysctls()) {
    std::string key = str(kv->key());
    if (!namespacedSysctl(key))
      return invalid("the sysctl \"" + key + "\" is not allowed in a container: only "
                     "namespaced ones are (net.*, fs.mqueue.*, kernel.msg*, kernel.sem, "
                     "kernel.shm*)");
    out[key] = str(kv->value());
  }
  return out;
}

// ---- mounts
json mountJson(const std::string& dest, const std::string& type, const std::string& source,
               std::vector<std::string> options) {
  return {{"destination", dest}, {"type", type}, {"source", source}, {"options", options}};
}

// Docker's default mounts (moby oci/defaults.go), /dev/shm with docker's 64 MiB.
std::vector<json> defaultMounts() {
  return {
      mountJson("/proc", "proc", "proc", {"nosuid", "noexec", "nodev"}),
      mountJson("/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"}),
      mountJson("/dev/pts", "devpts", "devpts",
                {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}),
      mountJson("/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", "ro"}),
      mountJson("/sys/fs/cgroup", "cgroup", "cgroup", {"ro", "nosuid", "noexec", "nodev"}),
      mountJson("/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev"}),
      mountJson("/dev/shm", "tmpfs", "shm",
                {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}),
  };
}

// The defaults, minus those a given mount replaces (docker: a user's /dev/shm wins), then
// the given ones in order.
json mounts(const std::vector<ResolvedMount>& given) {
  json out = json::array();
  for (auto& d : defaultMounts()) {
    bool replaced = std::any_of(given.begin(), given.end(), [&](const ResolvedMount& m) {
      return m.destination == d["destination"];
    });
    if (!replaced) out.push_back(d);
  }
  for (auto& m : given) out.push_back(mountJson(m.destination, m.type, m.source, m.options));
  return out;
}

// ---- linux.resources
json deviceRule(bool allow, const char* type, int major, int minor, const char* access) {
  json d = {{"allow", allow}, {"access", access}};
  if (type) d["type"] = type;
  if (major >= 0) d["major"] = major;
  if (minor >= 0) d["minor"] = minor;
  return d;
}

// Deny all, then docker's allowed list (moby oci/defaults.go and daemon/oci_linux.go). No
// deny rule after the mknod wildcards: cgroup v1 cannot punch a hole in a wildcard.
json devices() {
  return json::array({
      deviceRule(false, nullptr, -1, -1, "rwm"),
      deviceRule(true, "c", -1, -1, "m"),     // mknod of any char device
      deviceRule(true, "b", -1, -1, "m"),     // and block device
      deviceRule(true, "c", 1, 3, "rwm"),     // /dev/null
      deviceRule(true, "c", 1, 5, "rwm"),     // /dev/zero
      deviceRule(true, "c", 1, 7, "rwm"),     // /dev/full
      deviceRule(true, "c", 1, 8, "rwm"),     // /dev/random
      deviceRule(true, "c", 1, 9, "rwm"),     // /dev/urandom
      deviceRule(true, "c", 5, 0, "rwm"),     // /dev/tty
      deviceRule(true, "c", 5, 1, "rwm"),     // /dev/console
      deviceRule(true, "c", 5, 2, "rwm"),     // /dev/ptmx
      deviceRule(true, "c", 136, -1, "rwm"),  // /dev/pts/*
      deviceRule(true, "c", 10, 200, "rwm"),  // /dev/net/tun
  });
}

Result<json> resources(const objects::Task& task) {
  json r = {{"devices", devices()}};
  auto* req = task.spec() ? task.spec()->resources() : nullptr;
  auto* limits = req ? req->limits() : nullptr;
  auto* reservations = req ? req->reservations() : nullptr;
  if (limits && limits->nano_cpus() != 0) {
    // runc refuses a quota under 1 ms: docker's minimum of 0.01 CPU.
    if (limits->nano_cpus() < 10'000'000)
      return invalid("the CPU limit " + std::to_string(limits->nano_cpus()) +
                     " nano CPUs is below 0.01 CPU: give --limit-cpu 0.01 or more");
    r["cpu"] = {{"quota", limits->nano_cpus() * kCpuPeriod / 1'000'000'000},
                {"period", kCpuPeriod}};
  }
  constexpr int64_t kMinMemory = 6 << 20;  // docker's minimum
  if (limits && limits->memory_bytes() != 0) {
    if (limits->memory_bytes() < kMinMemory)
      return invalid("the memory limit " + std::to_string(limits->memory_bytes()) +
                     " bytes is below docker's minimum of 6 MiB: give --limit-memory 6M or more");
    r["memory"]["limit"] = limits->memory_bytes();
  }
  if (reservations && reservations->memory_bytes() > 0)
    r["memory"]["reservation"] = reservations->memory_bytes();
  if (limits && limits->pids() < 0)
    return invalid("the pids limit " + std::to_string(limits->pids()) + " is negative");
  if (limits && limits->pids() > 0) r["pids"] = {{"limit", limits->pids()}};
  return r;
}

json namespaces(const std::string& netnsPath) {
  json ns = json::array({{{"type", "pid"}}, {{"type", "ipc"}}, {{"type", "uts"}},
                         {{"type", "mount"}}});
  json net = {{"type", "network"}};
  if (!netnsPath.empty()) net["path"] = netnsPath;
  ns.push_back(net);
  return ns;
}

Status checkHostname(const std::string& name) {
  bool ok = !name.empty() && name.size() <= 64;
  for (char c : name)
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_');
  if (!ok)
    return invalid("the hostname \"" + name + "\" is not valid: use up to 64 letters, digits, "
                   "'-', '.' or '_'");
  return {};
}

Result<std::string> workingDir(const objects::ContainerSpec* spec, const ImageConfig& image) {
  std::string dir = spec && spec->dir() && spec->dir()->size() ? spec->dir()->str() : image.workingDir;
  if (dir.empty()) return std::string("/");
  if (dir[0] != '/')
    return invalid("the working directory \"" + dir + "\" is not absolute: give a path "
                   "starting with /");
  return dir;
}

Result<json> processJson(const BundleInput& in, const std::string& hostname) {
  const objects::ContainerSpec* spec = in.task->spec() ? in.task->spec()->container() : nullptr;
  auto args = processArgs(spec, *in.image);
  if (!args) return args.error();
  auto env = processEnv(spec, *in.image, hostname);
  if (!env) return env.error();
  auto cwd = workingDir(spec, *in.image);
  if (!cwd) return cwd.error();
  auto user = processUser(spec, *in.image, in.rootfs);
  if (!user) return user.error();
  auto caps = capabilities(spec);
  if (!caps) return caps.error();
  auto limits = rlimits(spec);
  if (!limits) return limits.error();
  json p = {{"terminal", false}, {"user", *user}, {"args", *args}, {"env", *env},
            {"cwd", *cwd}, {"noNewPrivileges", false},
            {"capabilities", {{"bounding", *caps}, {"effective", *caps}, {"permitted", *caps}}}};
  if (!limits->empty()) p["rlimits"] = *limits;
  if (spec && spec->oom_score_adj() != 0) {
    if (spec->oom_score_adj() < -1000 || spec->oom_score_adj() > 1000)
      return invalid("oom_score_adj " + std::to_string(spec->oom_score_adj()) +
                     " is out of range: give -1000 to 1000");
    p["oomScoreAdj"] = spec->oom_score_adj();
  }
  return p;
}

// Mount targets: absolute, not the root, no "..": a container path runc can mount on.
Status checkTarget(const std::string& target, size_t index) {
  std::string where = "mount " + std::to_string(index + 1) + " (target \"" + target + "\")";
  if (target.empty() || target[0] != '/' || target == "/")
    return invalid(where + ": the target must be an absolute path other than /");
  if (target.find("/../") != std::string::npos || target.ends_with("/.."))
    return invalid(where + ": the target must not contain ..");
  return {};
}

bool validVolumeName(const std::string& name) {
  // docker's volume names: [a-zA-Z0-9][a-zA-Z0-9_.-]+
  if (name.size() < 2 || !std::isalnum(static_cast<unsigned char>(name[0]))) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  });
}

const char* propagationName(objects::BindPropagation p) {
  switch (p) {
    case objects::BindPropagation::Private: return "private";
    case objects::BindPropagation::RShared: return "rshared";
    case objects::BindPropagation::Shared: return "shared";
    case objects::BindPropagation::RSlave: return "rslave";
    case objects::BindPropagation::Slave: return "slave";
    default: return "rprivate";
  }
}

Result<ResolvedMount> bindMount(const objects::Mount& m, const std::string& where) {
  std::string source = str(m.source());
  if (source.empty() || source[0] != '/')
    return invalid(where + ": a bind mount needs an absolute source path on the host");
  bool nonRecursive = m.bind_options() && m.bind_options()->non_recursive();
  auto propagation = m.bind_options() ? m.bind_options()->propagation()
                                      : objects::BindPropagation::RPrivate;
  ResolvedMount r{"bind", source, str(m.target()),
                  {nonRecursive ? "bind" : "rbind", propagationName(propagation)}};
  if (m.read_only()) r.options.push_back("ro");
  return r;
}

Result<ResolvedMount> volumeMount(const objects::Mount& m, const std::string& where,
                                  const std::string& volumesDir) {
  std::string name = str(m.source());
  if (!validVolumeName(name))
    return invalid(where + ": the volume name \"" + name + "\" is not valid: give a name of "
                   "letters, digits, '_', '.' or '-' (at least 2 characters)");
  ResolvedMount r{"bind", volumesDir + "/" + name + "/_data", str(m.target()),
                  {"rbind", "rprivate"}};
  if (m.read_only()) r.options.push_back("ro");
  return r;
}

// Docker's tmpfs mounts: noexec, nosuid, nodev by default (moby daemon/oci_linux.go).
Result<ResolvedMount> tmpfsMount(const objects::Mount& m, const std::string& where) {
  static const std::set<std::string> allowed = {"exec", "noexec", "suid", "nosuid", "dev",
                                                "nodev", "ro", "rw", "atime", "noatime",
                                                "relatime", "strictatime", "nodiratime"};
  ResolvedMount r{"tmpfs", "tmpfs", str(m.target()), {"noexec", "nosuid", "nodev"}};
  if (auto* t = m.tmpfs_options()) {
    if (t->size_bytes() < 0) return invalid(where + ": the tmpfs size is negative");
    if (t->mode() > 07777) return invalid(where + ": the tmpfs mode is not a permission mode");
    if (t->size_bytes() > 0) r.options.push_back("size=" + std::to_string(t->size_bytes()));
    if (t->mode() != 0) {
      char mode[32];
      std::snprintf(mode, sizeof mode, "mode=%o", t->mode());
      r.options.push_back(mode);
    }
    for (auto& o : strings(t->options())) {
      if (!allowed.count(o))
        return invalid(where + ": the tmpfs option \"" + o + "\" is not supported: use "
                       "exec, suid, dev, noatime and the like");
      r.options.push_back(o);
    }
  }
  if (m.read_only()) r.options.push_back("ro");
  return r;
}

}  // namespace

Result<nlohmann::json> makeRuntimeSpec(const BundleInput& in) {
  if (!in.task || !in.image) return invalid("a bundle needs a task and its image's config");
  if (in.rootfs.empty() || in.rootfs[0] != '/')
    return invalid("the rootfs path \"" + in.rootfs + "\" is not absolute");
  const objects::ContainerSpec* spec = in.task->spec() ? in.task->spec()->container() : nullptr;
  std::string hostname = in.hostname.empty() ? str(in.task->id()).substr(0, 12) : in.hostname;
  if (auto st = checkHostname(hostname); !st) return st.error();
  auto process = processJson(in, hostname);
  if (!process) return process.error();
  auto res = resources(*in.task);
  if (!res) return res.error();
  auto sys = sysctls(spec);
  if (!sys) return sys.error();
  json linux = {{"namespaces", namespaces(in.netnsPath)}, {"resources", *res},
                {"maskedPaths", kMaskedPaths}, {"readonlyPaths", kReadonlyPaths}};
  if (!in.cgroupsPath.empty()) linux["cgroupsPath"] = in.cgroupsPath;
  if (!sys->empty()) linux["sysctl"] = *sys;
  return json{{"ociVersion", "1.0.2"},
              {"process", *process},
              {"root", {{"path", in.rootfs}, {"readonly", spec && spec->read_only()}}},
              {"hostname", hostname},
              {"mounts", mounts(in.mounts)},
              {"linux", linux}};
}

Result<std::vector<ResolvedMount>> resolveMounts(const objects::ContainerSpec& spec,
                                                 const std::string& volumesDir) {
  std::vector<ResolvedMount> out;
  if (!spec.mounts()) return out;
  std::set<std::string> targets;
  for (size_t i = 0; i < spec.mounts()->size(); ++i) {
    const objects::Mount& m = *spec.mounts()->Get(i);
    std::string target = str(m.target());
    if (auto st = checkTarget(target, i); !st) return st.error();
    std::string where = "mount " + std::to_string(i + 1) + " (target \"" + target + "\")";
    if (!targets.insert(target).second)
      return invalid(where + ": another mount has the same target");
    Result<ResolvedMount> r = invalid(where + ": unknown mount type");
    switch (m.type()) {
      case objects::MountType::Bind: r = bindMount(m, where); break;
      case objects::MountType::Volume: r = volumeMount(m, where, volumesDir); break;
      case objects::MountType::Tmpfs: r = tmpfsMount(m, where); break;
    }
    if (!r) return r.error();
    out.push_back(std::move(*r));
  }
  return out;
}

Result<int> stopSignal(const objects::ContainerSpec* spec, const ImageConfig& image) {
  std::string text = spec && spec->stop_signal() && spec->stop_signal()->size()
                         ? spec->stop_signal()->str()
                         : image.stopSignal;
  if (text.empty()) return 15;  // SIGTERM
  if (auto n = number(text)) {
    if (*n >= 1 && *n <= 64) return static_cast<int>(*n);
  } else {
    std::string name = upper(text);
    if (name.rfind("SIG", 0) == 0) name = name.substr(3);
    for (size_t i = 1; i < kSignalNames.size(); ++i)
      if (kSignalNames[i] == name) return static_cast<int>(i);
    // SIGRTMIN+N and SIGRTMAX-N, as docker's signal.ParseSignal reads them.
    if (name.rfind("RTMIN+", 0) == 0)
      if (auto k = number(name.substr(6)); k && *k >= 0 && SIGRTMIN + *k <= SIGRTMAX)
        return static_cast<int>(SIGRTMIN + *k);
    if (name.rfind("RTMAX-", 0) == 0)
      if (auto k = number(name.substr(6)); k && *k >= 0 && SIGRTMAX - *k >= SIGRTMIN)
        return static_cast<int>(SIGRTMAX - *k);
  }
  return invalid("the stop signal \"" + text + "\" is not a signal: give a name such as "
                 "SIGTERM or SIGINT, or a number");
}

}  // namespace shoal::agentd
