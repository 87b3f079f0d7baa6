#pragma once
// A task's OCI runtime bundle (DESIGN.md §8, docs/containers.md "Bundles"): the runtime spec
// (config.json) made from the task's ContainerSpec merged with its image's config, docker's
// way. Pure: no I/O but reading the rootfs's /etc/passwd and /etc/group for a user name.
//
// Docker's merge rules: ContainerSpec.command replaces the image's entrypoint (and then the
// image's cmd is dropped); ContainerSpec.args replaces the image's cmd; env is the image's
// overridden by the spec's, by name, with PATH defaulted; user and dir from the spec, else
// the image. Capabilities: docker's default set, then capability_add/capability_drop ("ALL"
// allowed, names with or without CAP_). Limits: CPU quota = nano_cpus * period / 1e9 with
// period 100 ms; memory; pids. Docker's default mounts (/proc, /dev, /dev/pts, /dev/shm,
// /dev/mqueue, /sys read-only, cgroup), masked and read-only paths.

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "objects_generated.h"
#include "services/agentd/image_store.h"

namespace shoal::agentd {

// A mount with its source resolved to a host path (volumes, binds, tmpfs, and the files of
// secrets, configs, /etc/hosts, /etc/hostname, /etc/resolv.conf).
struct ResolvedMount {
  std::string type;     // "bind" or "tmpfs"
  std::string source;   // host path ("tmpfs" for tmpfs)
  std::string destination;
  std::vector<std::string> options;  // e.g. rbind, ro, nosuid, size=65536k, mode=1777
};

struct BundleInput {
  const objects::Task* task = nullptr;
  const ImageConfig* image = nullptr;
  std::string rootfs;       // absolute path of the container's root (the overlay's merged dir)
  std::string hostname;     // ContainerSpec.hostname, else the container id's first 12 chars
  std::string netnsPath;    // the task's namespace from overlayd; "" → a new one by runc
  std::string cgroupsPath;  // e.g. /shoal/<node id>/<task id> (cgroupfs: a path)
  std::vector<ResolvedMount> mounts;  // in order, after docker's defaults
};

// The config.json. Errors (InvalidArgument) say what in the spec cannot be run: an unknown
// capability, a user not in the image's /etc/passwd, no command at all ("the image has no
// entrypoint or cmd and the service gives no command").
Result<nlohmann::json> makeRuntimeSpec(const BundleInput& in);

// The mounts of a task's ContainerSpec.mounts, resolved: bind sources as given (must be
// absolute), volumes under `volumesDir`/<name>/_data (made by the executor), tmpfs with its
// size and mode. Errors name the mount.
Result<std::vector<ResolvedMount>> resolveMounts(const objects::ContainerSpec& spec,
                                                 const std::string& volumesDir);

// The stop signal's number: "SIGTERM", "TERM", "15"; the image's when the spec has none;
// SIGTERM when neither. InvalidArgument for an unknown name.
Result<int> stopSignal(const objects::ContainerSpec* spec, const ImageConfig& image);

}  // namespace shoal::agentd
