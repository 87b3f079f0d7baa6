#pragma once
// raftd's secret and config API (schemas/service.fbs CreateSecretRequest, RemoveSecretRequest,
// CreateConfigRequest, RemoveConfigRequest; docs/containers.md "Secrets and configs"), the
// read-check-write of each on the store path the service API uses. ServiceControl serves the
// protocol and queues the requests (one at a time, so two creates of one name cannot both
// pass the check); this does the work of one. The rules are service_rules.h's.
//
// A secret's data is never logged nor put in an error message.

#include <functional>
#include <memory>
#include <string>

#include "common/result.h"
#include "objects_generated.h"
#include "services/raftd/local_store.h"

namespace shoal::raftd {

class SecretControl {
 public:
  // The id of the object created or removed, or the refusal (its code a wire::ErrorCode).
  using Done = std::function<void(Result<std::string>)>;

  explicit SecretControl(LocalStore& store) : store_(store) {}

  void createSecret(std::shared_ptr<const objects::SecretSpecT> spec, Done done);
  void createConfig(std::shared_ptr<const objects::ConfigSpecT> spec, Done done);
  // query: an id, a name or a unique id prefix.
  void removeSecret(std::string query, Done done);
  void removeConfig(std::string query, Done done);

 private:
  template <class K>
  void create(std::shared_ptr<const typename K::Spec> spec, Done done);
  template <class K>
  void remove(std::string query, Done done);

  LocalStore& store_;
};

}  // namespace shoal::raftd
