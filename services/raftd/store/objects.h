#pragma once
// What the store needs to know about any object: its id, meta and the fields it indexes.
// Each stored object is its own FlatBuffer whose root table is given by its ObjectKind.

#include <cstdint>
#include <string>
#include <string_view>

#include <flatbuffers/flatbuffers.h>

#include "common/result.h"
#include "objects_generated.h"

namespace shoal::store {

using objects::ObjectKind;
using objects::Operation;

// "service", "task", ... as the CLI names them; "unknown" for anything else.
const char* kindName(ObjectKind kind);
bool isKnownKind(ObjectKind kind);
// Services, networks, secrets, configs and the cluster have names unique per kind (compared
// without case, as Swarm does); nodes and tasks do not.
bool hasUniqueName(ObjectKind kind);

struct ObjectFields {
  std::string_view id;
  const objects::Meta* meta = nullptr;  // null when the writer left it out
  std::string_view name;                // the unique name; empty when none
  // Task
  std::string_view serviceId;
  std::string_view nodeId;
  std::uint64_t slot = 0;
  // Node
  objects::NodeRole role = objects::NodeRole::Worker;
};

// Runs the FlatBuffers verifier over bytes as an object of `kind` (DESIGN.md §3: every buffer
// is verified before use) and reads the fields the store needs. Views point into bytes.
Result<ObjectFields> inspect(ObjectKind kind, std::string_view bytes);

// A verified object's root table; bytes must have passed inspect() (everything the store
// holds has).
template <class T>
const T* objectAs(std::string_view bytes) {
  return flatbuffers::GetRoot<T>(bytes.data());
}

// Names are compared without case.
std::string foldName(std::string_view name);

}  // namespace shoal::store
