#pragma once
// What this node tells the managers about itself (objects.fbs NodeDescription): its hostname,
// platform in OCI's names, CPUs and memory, and the engine version. Built once at start from
// the host's facts; the facts are read by probeHost(), everything else is pure.

#include <cstdint>
#include <string>
#include <string_view>

#include <flatbuffers/flatbuffers.h>

#include "common/result.h"
#include "objects_generated.h"

namespace shoal::agentd {

// What the host says about itself (uname, sysconf, sched_getaffinity).
struct HostFacts {
  std::string hostname;
  std::string machine;       // uname's machine: x86_64, aarch64, ...
  int64_t cpus = 0;          // CPUs this process may run on
  int64_t memoryBytes = 0;   // physical memory
};

struct NodeDescription {
  std::string hostname;
  std::string os = "linux";
  std::string architecture;  // OCI image index names: amd64, arm64, ...
  int64_t nanoCpus = 0;      // 1e9 = one CPU
  int64_t memoryBytes = 0;
  std::string engineVersion;
};

// The architecture in the names of OCI image indexes (Go's GOARCH), as Docker reports it:
// x86_64 -> amd64, aarch64 -> arm64, armv7l -> arm, i686 -> 386. A machine it does not know
// is kept as uname says it.
std::string ociArchitecture(std::string_view unameMachine);

// A hostname a node may carry: 1 to 253 characters of letters, digits, '-', '_' and '.'.
// The error says what was wrong (it is a flag's value).
Status checkHostname(std::string_view name);

NodeDescription describeNode(const HostFacts& facts, std::string_view engineVersion);

flatbuffers::Offset<objects::NodeDescription> buildDescription(flatbuffers::FlatBufferBuilder& fbb,
                                                               const NodeDescription& d);

// Reads the host's facts; hostname overrides gethostname() when not empty (the lab runs
// several nodes in one UTS namespace and names each).
Result<HostFacts> probeHost(const std::string& hostname);

}  // namespace shoal::agentd
