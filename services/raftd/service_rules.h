#pragma once
// The rules of raftd's service API (schemas/service.fbs, docs/services.md "The service API"):
// Swarm's defaults, the checks of a ServiceSpec against the objects the store holds, and the
// changes a create, update or rollback makes to a Service. Pure: the shell
// (service_control.h) reads the objects, calls these, and writes what they made.
//
// A refusal is an Error whose code is a wire::ErrorCode (InvalidArgument, Conflict, NotFound)
// and whose message names the CLI flag or field and quotes the value, e.g.
// `invalid --constraint "node.labels.zone=b": ...`.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "objects_generated.h"

namespace shoal::raftd::service_rules {

inline constexpr int64_t kSecond = 1'000'000'000;
// Swarm's defaults, filled in where the CLI left a field zero or a table out.
inline constexpr int64_t kDefaultRestartDelay = 5 * kSecond;
inline constexpr int64_t kDefaultMonitor = 5 * kSecond;
inline constexpr int64_t kDefaultStopGrace = 10 * kSecond;
// Docker refuses a memory limit under 4 MiB: a container cannot start in less.
inline constexpr int64_t kMinMemoryLimit = 4 << 20;
inline constexpr size_t kMaxNameLength = 63;

// What a spec is checked against: the store's objects, as read just before.
struct Objects {
  std::vector<std::unique_ptr<objects::ServiceT>> services;
  std::vector<std::unique_ptr<objects::NetworkT>> networks;
  std::vector<std::unique_ptr<objects::SecretT>> secrets;
  std::vector<std::unique_ptr<objects::ConfigT>> configs;
};

// Fills Swarm's defaults the CLI leaves to the manager: restart policy (condition any, delay
// 5 s), update and rollback configs (parallelism 1, monitor 5 s, failure action pause; a
// present config with monitor 0 gets 5 s), stop grace period 10 s.
void fillDefaults(objects::ServiceSpecT& spec);

// Checks `spec` (defaults filled) against `objects`, and resolves names in it: network targets
// and secret and config references become ids (and their names are filled in). `self` is the
// service being updated, null for a create: its own name and ports do not clash with it, and
// its mode kind and name must stay.
Status validate(objects::ServiceSpecT& spec, const Objects& objects,
                const objects::ServiceT* self);

// The service `query` names: its id, its name (without case, as the store's name index), or
// a unique prefix of its id. NotFound or InvalidArgument (ambiguous) otherwise.
Result<const objects::ServiceT*> resolveService(
    std::string_view query, const std::vector<std::unique_ptr<objects::ServiceT>>& services);

// A new Service: spec_version 1, a zero meta (the store fills it in).
std::unique_ptr<objects::ServiceT> newService(std::string id,
                                              std::unique_ptr<objects::ServiceSpecT> spec);

// An update of `service` to `spec`: the old spec kept as previous_spec, spec_version bumped,
// and, when what the tasks run changed (templateChanged: taskSpecDigest differs),
// update_status = Updating "update in progress". A change of replicas alone is a scale and
// leaves update_status as it was.
void applyUpdate(objects::ServiceT& service, std::unique_ptr<objects::ServiceSpecT> spec,
                 bool templateChanged, int64_t now);

// `service rollback`: spec and previous_spec swap, spec_version bumped, update_status =
// RollbackStarted "manually requested rollback". Refused (InvalidArgument) without a previous
// spec; the caller validates the spec that comes back before writing.
Status applyRollback(objects::ServiceT& service, int64_t now);

// A name for a service created without --name, as docker makes one: "<adjective>_<surname>",
// not taken by `services` (a number is added after 20 draws that were all taken). pick(n):
// a uniform number below n (randomness is injected, so tests replay).
std::string generatedName(const std::vector<std::unique_ptr<objects::ServiceT>>& services,
                          const std::function<uint32_t(uint32_t)>& pick);

// The service's name, or its id when it has none.
std::string nameOf(const objects::ServiceT& service);

// --- secrets and configs (`shoal secret|config create|rm`, docs/containers.md) ---------------
//
// Docker's rules: a name is [a-zA-Z0-9][a-zA-Z0-9_.-]* of at most 64 characters, unique per
// kind (without case, as the store's name index); a secret holds 1 byte to 500 KiB, a config
// up to 1000 KiB; drivers and templating are not supported yet (refused, never ignored). A
// duplicate name is a Conflict "secret X already exists"; removing one that a service's spec
// refers to is a Conflict naming the services.

inline constexpr size_t kMaxSecretNameLength = 64;
inline constexpr size_t kMaxSecretBytes = 500 * 1024;
inline constexpr size_t kMaxConfigBytes = 1000 * 1024;

Status validateSecret(const objects::SecretSpecT& spec,
                      const std::vector<std::unique_ptr<objects::SecretT>>& secrets);
Status validateConfig(const objects::ConfigSpecT& spec,
                      const std::vector<std::unique_ptr<objects::ConfigT>>& configs);

// The secret (config) `query` names: id, name (without case) or a unique id prefix. NotFound
// or InvalidArgument (ambiguous) otherwise.
Result<const objects::SecretT*> resolveSecret(
    std::string_view query, const std::vector<std::unique_ptr<objects::SecretT>>& secrets);
Result<const objects::ConfigT*> resolveConfig(
    std::string_view query, const std::vector<std::unique_ptr<objects::ConfigT>>& configs);

// Whether the secret (config) may be removed: refused while a service's spec refers to it.
Status checkSecretUnused(const objects::SecretT& secret,
                         const std::vector<std::unique_ptr<objects::ServiceT>>& services);
Status checkConfigUnused(const objects::ConfigT& config,
                         const std::vector<std::unique_ptr<objects::ServiceT>>& services);

// New objects with a zero meta (the store fills it in).
std::unique_ptr<objects::SecretT> newSecret(std::string id, const objects::SecretSpecT& spec);
std::unique_ptr<objects::ConfigT> newConfig(std::string id, const objects::ConfigSpecT& spec);

}  // namespace shoal::raftd::service_rules
