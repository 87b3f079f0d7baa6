#pragma once
// Stored objects (schemas/objects.fbs) to and from flatc's object API, in one place for every
// daemon and the CLI: read-modify-write of a Service, a Task or a Node copies every field, also
// those added later.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include <flatbuffers/flatbuffers.h>

#include "common/result.h"
#include "objects_generated.h"
#include "wire_generated.h"

namespace shoal::objects_codec {

// A stored object of table T (objects::Task, ...) decoded, after the verifier accepted it.
template <class T>
Result<std::unique_ptr<typename T::NativeTableType>> unpack(std::string_view bytes,
                                                            std::string_view what) {
  flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  if (!v.VerifyBuffer<T>(nullptr))
    return Error{"a stored " + std::string(what) + " does not verify: the store is damaged",
                 static_cast<int>(wire::ErrorCode::Internal)};
  return std::unique_ptr<typename T::NativeTableType>(
      flatbuffers::GetRoot<T>(bytes.data())->UnPack());
}

// The object as a writer sends it to the store: with a zero Meta, which the store fills in
// (objects.fbs). The object itself keeps its meta.
template <class T>
std::string pack(typename T::NativeTableType& object) {
  auto meta = std::move(object.meta);
  object.meta = std::make_unique<objects::Meta>();
  flatbuffers::FlatBufferBuilder fbb(1024);
  fbb.Finish(T::Pack(fbb, &object));
  object.meta = std::move(meta);
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

inline uint64_t versionOf(const std::unique_ptr<objects::Meta>& meta) {
  return meta ? meta->version() : 0;
}

}  // namespace shoal::objects_codec
