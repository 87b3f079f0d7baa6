#include "services/raftd/store/objects.h"

#include "wire_generated.h"

namespace shoal::store {

namespace {

constexpr int kInvalid = static_cast<int>(wire::ErrorCode::InvalidArgument);

std::string_view view(const flatbuffers::String* s) {
  return s == nullptr ? std::string_view{} : std::string_view(s->data(), s->size());
}

template <class Spec>
std::string_view specName(const Spec* spec) {
  if (spec == nullptr || spec->annotations() == nullptr) {
    return {};
  }
  return view(spec->annotations()->name());
}

template <class T>
void fillKindFields(const T* o, ObjectFields& f) {
  f.name = specName(o->spec());
}

template <>
void fillKindFields(const objects::Task* o, ObjectFields& f) {
  f.serviceId = view(o->service_id());
  f.nodeId = view(o->node_id());
  f.slot = o->slot();
}

template <>
void fillKindFields(const objects::Node* o, ObjectFields& f) {
  f.role = o->role();
}

template <class T>
Result<ObjectFields> inspectAs(ObjectKind kind, std::string_view bytes) {
  flatbuffers::Verifier::Options options;
  options.max_depth = 32;
  options.max_tables = 100000;
  flatbuffers::Verifier verifier(reinterpret_cast<const std::uint8_t*>(bytes.data()),
                                 bytes.size(), options);
  if (!verifier.VerifyBuffer<T>(nullptr)) {
    return Error{std::string("store: the ") + kindName(kind) +
                     " object does not pass the FlatBuffers verifier; build it with the "
                     "objects.fbs schema (a " + kindName(kind) + " root table)",
                 kInvalid};
  }
  const T* o = flatbuffers::GetRoot<T>(bytes.data());
  ObjectFields f;
  f.id = view(o->id());
  f.meta = o->meta();
  fillKindFields(o, f);
  return f;
}

}  // namespace

const char* kindName(ObjectKind kind) {
  switch (kind) {
    case ObjectKind::Cluster: return "cluster";
    case ObjectKind::Node: return "node";
    case ObjectKind::Service: return "service";
    case ObjectKind::Task: return "task";
    case ObjectKind::Network: return "network";
    case ObjectKind::Secret: return "secret";
    case ObjectKind::Config: return "config";
    default: return "unknown";
  }
}

bool isKnownKind(ObjectKind kind) {
  return kind >= ObjectKind::Cluster && kind <= ObjectKind::Config;
}

bool hasUniqueName(ObjectKind kind) {
  switch (kind) {
    case ObjectKind::Cluster:
    case ObjectKind::Service:
    case ObjectKind::Network:
    case ObjectKind::Secret:
    case ObjectKind::Config:
      return true;
    default:
      return false;
  }
}

Result<ObjectFields> inspect(ObjectKind kind, std::string_view bytes) {
  if (bytes.size() >= FLATBUFFERS_MAX_BUFFER_SIZE) {
    return Error{"store: object too large", kInvalid};
  }
  switch (kind) {
    case ObjectKind::Cluster: return inspectAs<objects::Cluster>(kind, bytes);
    case ObjectKind::Node: return inspectAs<objects::Node>(kind, bytes);
    case ObjectKind::Service: return inspectAs<objects::Service>(kind, bytes);
    case ObjectKind::Task: return inspectAs<objects::Task>(kind, bytes);
    case ObjectKind::Network: return inspectAs<objects::Network>(kind, bytes);
    case ObjectKind::Secret: return inspectAs<objects::Secret>(kind, bytes);
    case ObjectKind::Config: return inspectAs<objects::Config>(kind, bytes);
    default:
      return Error{"store: unknown object kind " + std::to_string(static_cast<int>(kind)) +
                       "; use one of ObjectKind's values",
                   kInvalid};
  }
}

std::string foldName(std::string_view name) {
  std::string out(name);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

}  // namespace shoal::store
