#include "common/spec_digest.h"

#include <flatbuffers/flatbuffers.h>

namespace shoal {
namespace {

uint64_t fnv1a(const uint8_t* data, size_t size, uint64_t h = 1469598103934665603ull) {
  for (size_t i = 0; i < size; ++i) {
    h ^= data[i];
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace

uint64_t taskSpecDigest(const objects::ServiceT& service) {
  uint64_t h = 1469598103934665603ull;
  const objects::TaskSpecT empty;
  const bool hasTask = service.spec && service.spec->task;
  flatbuffers::FlatBufferBuilder fbb(1024);
  fbb.Finish(objects::TaskSpec::Pack(fbb, hasTask ? service.spec->task.get() : &empty));
  h = fnv1a(fbb.GetBufferPointer(), fbb.GetSize(), h);
  if (service.spec && service.spec->endpoint) {
    flatbuffers::FlatBufferBuilder e(256);
    e.Finish(objects::EndpointSpec::Pack(e, service.spec->endpoint.get()));
    h = fnv1a(e.GetBufferPointer(), e.GetSize(), h);
  }
  return h;
}

}  // namespace shoal
