#include "services/agentd/node_description.h"

#include <sched.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <array>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstring>
#include <utility>

namespace shoal::agentd {

std::string ociArchitecture(std::string_view machine) {
  static constexpr std::array<std::pair<std::string_view, std::string_view>, 16> kNames = {{
      {"x86_64", "amd64"},     {"amd64", "amd64"},     {"aarch64", "arm64"},
      {"arm64", "arm64"},      {"armv8l", "arm"},      {"armv7l", "arm"},
      {"armv6l", "arm"},       {"i386", "386"},        {"i486", "386"},
      {"i586", "386"},         {"i686", "386"},        {"ppc64le", "ppc64le"},
      {"ppc64", "ppc64"},      {"s390x", "s390x"},     {"riscv64", "riscv64"},
      {"loongarch64", "loong64"},
  }};
  for (auto [uname, oci] : kNames)
    if (machine == uname) return std::string(oci);
  return std::string(machine);
}

Status checkHostname(std::string_view name) {
  if (name.empty()) return Error{"the hostname is empty; give --hostname NAME"};
  if (name.size() > 253)
    return Error{"the hostname is " + std::to_string(name.size()) +
                 " characters long; 253 at most"};
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
      return Error{"the hostname '" + std::string(name) +
                   "' has a character other than letters, digits, '-', '_' and '.'"};
  return {};
}

NodeDescription describeNode(const HostFacts& facts, std::string_view engineVersion) {
  NodeDescription d;
  d.hostname = facts.hostname;
  d.architecture = ociArchitecture(facts.machine);
  d.nanoCpus = facts.cpus * 1'000'000'000;
  d.memoryBytes = facts.memoryBytes;
  d.engineVersion = std::string(engineVersion);
  return d;
}

flatbuffers::Offset<objects::NodeDescription> buildDescription(flatbuffers::FlatBufferBuilder& fbb,
                                                               const NodeDescription& d) {
  auto hostname = fbb.CreateString(d.hostname);
  auto platform =
      objects::CreatePlatform(fbb, fbb.CreateString(d.architecture), fbb.CreateString(d.os));
  auto resources = objects::CreateResources(fbb, d.nanoCpus, d.memoryBytes);
  auto engine = objects::CreateEngineDescription(fbb, fbb.CreateString(d.engineVersion));
  return objects::CreateNodeDescription(fbb, hostname, platform, resources, engine);
}

Result<HostFacts> probeHost(const std::string& hostname) {
  HostFacts f;
  if (!hostname.empty()) {
    f.hostname = hostname;
  } else {
    char buf[HOST_NAME_MAX + 1] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0)
      return Error{std::string("gethostname: ") + std::strerror(errno) + "; give --hostname",
                   errno};
    f.hostname = buf;
  }
  if (auto st = checkHostname(f.hostname); !st) return st.error();
  utsname u{};
  if (::uname(&u) != 0) return Error{std::string("uname: ") + std::strerror(errno), errno};
  f.machine = u.machine;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) f.cpus = CPU_COUNT(&set);
  if (f.cpus <= 0) f.cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  if (f.cpus <= 0) f.cpus = 1;
  long pages = ::sysconf(_SC_PHYS_PAGES);
  long pageSize = ::sysconf(_SC_PAGESIZE);
  if (pages > 0 && pageSize > 0) f.memoryBytes = static_cast<int64_t>(pages) * pageSize;
  return f;
}

}  // namespace shoal::agentd
