#include "services/agentd/executor.h"

#include <memory>

namespace shoal::agentd {

const char* healthName(Health health) {
  switch (health) {
    case Health::None: return "";
    case Health::Starting: return "starting";
    case Health::Healthy: return "healthy";
    case Health::Unhealthy: return "unhealthy";
  }
  return "";
}

Result<ExecutorKind> parseExecutorKind(std::string_view text) {
  if (text == "runc") return ExecutorKind::Runc;
  if (text == "fake") return ExecutorKind::Fake;
  return Error{"--executor: '" + std::string(text) + "' is not an executor; use runc or fake"};
}

}  // namespace shoal::agentd
