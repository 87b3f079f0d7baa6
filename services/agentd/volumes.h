#pragma once
// Named local volumes (docs/containers.md "agentd's state dir"): <state>/volumes/<name>/_data,
// as docker's "local" driver keeps them. A volume is made the first time a task mounts it and
// stays until `shoal volume rm` (docker's way: removing a service keeps its data). The mounts
// themselves are bundle.h's resolveMounts; this is the directories.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace shoal::agentd {

// Docker's rule for a volume name: [a-zA-Z0-9][a-zA-Z0-9_.-]+. InvalidArgument naming it.
Status checkVolumeName(std::string_view name);

struct VolumeInfo {
  std::string name;
  std::string mountpoint;  // <root>/<name>/_data
  int64_t created = 0;     // ns since the epoch (the volume dir's change time)
};

class Volumes {
 public:
  explicit Volumes(std::string root) : root_(std::move(root)) {}

  // The volume's _data dir, made (0755, as docker's) when missing.
  Result<std::string> ensure(std::string_view name);
  std::vector<VolumeInfo> list() const;
  // Removes the volume and its data. NotFound when there is none (the caller decides what
  // `-f` makes of that); a volume in use is the caller's to refuse.
  Status remove(std::string_view name);
  bool exists(std::string_view name) const;
  const std::string& root() const { return root_; }

 private:
  std::string root_;
};

}  // namespace shoal::agentd
