#pragma once
// Docker's `service create` and `service update` flags (github.com/docker/cli
// cli/command/service/opts.go, update.go) turned into a ServiceSpec (schemas/objects.fbs).
// Pure: service.cpp registers the flags listed here on CLI11 and hands over what was given.
//
// What the CLI leaves zero, raftd fills with Swarm's defaults (docs/services.md "The service
// API"): restart delay 5 s, update and rollback monitor 5 s and parallelism 1, stop grace
// 10 s. So a table no flag touched (restart, update, rollback, resources, healthcheck) is
// left out of the spec, and a flag sets only its own field. Replicas are always sent for a
// replicated service (1 when --replicas is not given), as docker does.
//
// Every value is checked here, before anything is sent: a bad one is an error that names the
// flag and the value and says what is accepted. Names (networks, secrets, configs) are
// resolved by raftd, which refuses the unknown ones.

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "objects_generated.h"

namespace shoal::cli {

// What was given on the command line: flag name (without the dashes) → its values in the
// order given. A boolean flag's value is "true" or "false".
using FlagValues = std::map<std::string, std::vector<std::string>, std::less<>>;

struct FlagInfo {
  std::string name;       // "replicas"
  std::string shortName;  // "e" for --env, or ""
  std::string help;
  bool boolean = false;  // --read-only, --no-healthcheck, --force
};

// The flags of `service create` and of `service update`, with docker's names and help.
const std::vector<FlagInfo>& createFlags();
const std::vector<FlagInfo>& updateFlags();

// `service create [OPTIONS] IMAGE [COMMAND] [ARG...]`: COMMAND and ARGs become the
// container's args, as docker does (--entrypoint sets its command).
Result<objects::ServiceSpecT> specFromCreateFlags(const FlagValues& flags, std::string_view image,
                                                  const std::vector<std::string>& args);

// `service update`: the flags applied to a copy of the service's spec. Removals (--env-rm,
// --mount-rm, ...) come before additions, as docker applies them; an addition replaces an
// entry with the same key (env name, label key, mount target, published port, secret target).
// Flags that cannot change a service (--mode) are not update flags; --replicas on a global
// service is an error here.
Status applyUpdateFlags(const FlagValues& flags, objects::ServiceSpecT& spec);

// The pieces, for tests and for `service scale`.
Result<uint64_t> parseReplicas(std::string_view flag, std::string_view text);
Result<objects::MountT> parseMount(std::string_view text);
Result<std::vector<objects::PortConfigT>> parsePublish(std::string_view text);
Result<objects::SecretReferenceT> parseSecret(std::string_view flag, std::string_view text);
Result<objects::NetworkAttachmentConfigT> parseNetwork(std::string_view text);
Result<int64_t> parseCpus(std::string_view flag, std::string_view text);

// `service scale web=3`: the service and the number, or an error naming the argument.
struct ScaleArg {
  std::string service;
  uint64_t replicas = 0;
};
Result<ScaleArg> parseScaleArg(std::string_view text);

}  // namespace shoal::cli
