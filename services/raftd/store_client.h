#pragma once
// Building store API requests (schemas/store.fbs) for tools, tests and benchmarks.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/bus.h"
#include "objects_generated.h"
#include "services/raftd/protocols.h"

namespace shoal::raftd {

// A Config object, the smallest kind: id, name and data.
std::string configObject(std::string_view id, std::string_view name, std::string_view data,
                         uint64_t version = 0);

struct ChangeSpec {
  objects::ObjectKind kind;
  objects::Operation operation;
  std::string id;
  uint64_t expectedVersion = 0;
  std::string object;  // empty for Delete
};

bus::Buffer txnRequest(const std::vector<ChangeSpec>& changes);
bus::Buffer listRequest(objects::ObjectKind kind, bool local = false);
bus::Buffer getRequest(objects::ObjectKind kind, std::string_view id, bool local = false);
bus::Buffer storeStatusRequest();
bus::Buffer addMemberRequest(uint64_t nodeId, std::string_view address);
bus::Buffer removeMemberRequest(uint64_t nodeId);
bus::Buffer transferLeaderRequest(uint64_t nodeId);
bus::Buffer watchRequest(std::vector<objects::ObjectKind> kinds, uint64_t fromIndex);

}  // namespace shoal::raftd
