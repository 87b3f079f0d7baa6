// libFuzzer target for the envelope verifier (DESIGN.md §3: every received buffer passes the
// FlatBuffers verifier before use). Whatever bus::verify accepts is then read in full — the
// header and error through the generated accessors, and every field of the envelope,
// nested tables, vectors and the union body through the protocol's binary schema — so that
// a hole in the verifier becomes an out-of-bounds read that AddressSanitizer reports.
#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <span>
#include <string>
#include <vector>

#include <flatbuffers/reflection.h>

#include "common/bus.h"
#include "common/protocols.h"
#include "services/raftd/protocols.h"
#include "tests/support/testing_protocol.h"

namespace shoal {
namespace {

template <class Env>
void readEnvelope(const uint8_t* data);

// Every protocol of the tree. To fuzz a new one, add its line here; its schema file must be
// in schemas/meson.build's schema_files (tests/fuzz/meson.build compiles each to .bfbs).
struct FuzzedProtocol {
  const bus::Protocol* protocol;
  const char* schema;  // <schema>.bfbs in SHOAL_FUZZ_SCHEMA_DIR
  void (*readGenerated)(const uint8_t*);
};
const FuzzedProtocol kFuzzed[] = {
    {&kControlProtocol, "control", readEnvelope<control::Envelope>},
    {&testing::kTestingProtocol, "testing", readEnvelope<testing::Envelope>},
    {&raftd::kRaftProtocol, "raft", readEnvelope<raftpeer::Envelope>},
    {&raftd::kStoreProtocol, "store", readEnvelope<storeapi::Envelope>},
    {&kSwarmProtocol, "swarm", readEnvelope<swarmapi::Envelope>},
    {&kDispatchProtocol, "dispatch", readEnvelope<dispatch::Envelope>},
    {&kAgentProtocol, "agent", readEnvelope<agentapi::Envelope>},
    {&kServiceProtocol, "service", readEnvelope<serviceapi::Envelope>},
    {&kImageProtocol, "images", readEnvelope<imageapi::Envelope>},
    {&kContainerProtocol, "containers", readEnvelope<containerapi::Envelope>},
    {&kOverlayProtocol, "overlay", readEnvelope<overlayapi::Envelope>},
    {&kLogProtocol, "logs", readEnvelope<logapi::Envelope>},
};

// Reads are summed into a volatile so that the compiler cannot drop them.
volatile uint64_t sink;

void touch(uint64_t v) { sink = sink + v; }
// Scalars read through the schema come as double; their bits are what counts (a cast of a
// negative or huge value to an integer would be undefined).
void touchScalar(double v) { touch(std::bit_cast<uint64_t>(v)); }

void touch(const flatbuffers::String* s) {
  if (!s) return;
  uint64_t sum = s->size();
  for (char c : s->string_view()) sum += static_cast<unsigned char>(c);
  touch(sum);
}

// The fields every protocol shares, through the generated accessors.
template <class Env>
void readEnvelope(const uint8_t* data) {
  auto* env = flatbuffers::GetRoot<Env>(data);
  if (const wire::Header* h = env->header()) {
    touch(h->request_id());
    touch(h->timeout_ms());
    touch(h->credits());
    touch(h->version());
    touch(static_cast<uint64_t>(h->kind()));
  }
  if (const wire::Error* e = env->error()) {
    touch(static_cast<uint64_t>(e->code()));
    touch(e->message());
  }
  touch(static_cast<uint64_t>(env->body_type()));
  touch(reinterpret_cast<uintptr_t>(env->body()));
}

// --- every field, generically, through the binary schema ---------------------------------

class Walker {
 public:
  explicit Walker(const reflection::Schema& schema) : schema_(schema) {}

  void table(const reflection::Object& object, const flatbuffers::Table& t) {
    for (const reflection::Field* field : *object.fields()) {
      if (field->deprecated()) continue;
      const reflection::Type& type = *field->type();
      switch (type.base_type()) {
        case reflection::String:
          touch(flatbuffers::GetFieldS(t, *field));
          break;
        case reflection::Obj: {
          const reflection::Object& sub = *schema_.objects()->Get(type.index());
          if (sub.is_struct()) {
            if (auto* s = flatbuffers::GetFieldStruct(t, *field))
              structAt(sub, reinterpret_cast<const uint8_t*>(s));
          } else if (auto* sub_table = flatbuffers::GetFieldT(t, *field)) {
            table(sub, *sub_table);
          }
          break;
        }
        case reflection::Union:
          unionField(object, *field, t);
          break;
        case reflection::Vector:
          vector(type, flatbuffers::GetFieldAnyV(t, *field));
          nested(*field, t);
          break;
        case reflection::Array:  // only in structs
        case reflection::None:
          break;
        default:  // scalars, the union type field included
          touchScalar(flatbuffers::GetAnyFieldF(t, *field));
      }
    }
  }

 private:
  // The union's value is read as the type its <name>_type field says. An unknown type value
  // passes the generated verifier (it is a newer member), and readers ignore it.
  void unionField(const reflection::Object& parent, const reflection::Field& field,
                  const flatbuffers::Table& t) {
    auto* typeField =
        parent.fields()->LookupByKey((field.name()->str() + flatbuffers::UnionTypeFieldSuffix()).c_str());
    if (!typeField) return;
    auto unionType = flatbuffers::GetFieldI<uint8_t>(t, *typeField);
    auto* enumDef = schema_.enums()->Get(field.type()->index());
    auto* value = enumDef->values()->LookupByKey(unionType);
    if (!value || !value->union_type() || value->union_type()->base_type() != reflection::Obj)
      return;
    const reflection::Object& member = *schema_.objects()->Get(value->union_type()->index());
    if (auto* sub = flatbuffers::GetFieldT(t, field)) table(member, *sub);
  }

  // A [ubyte] (nested_flatbuffer: "T") is checked by the generated verifier, and readers
  // may open it with <field>_nested_root(): read it as a T.
  void nested(const reflection::Field& field, const flatbuffers::Table& t) {
    if (!field.attributes()) return;
    auto* attr = field.attributes()->LookupByKey("nested_flatbuffer");
    if (!attr || !attr->value()) return;
    auto* v = t.GetPointer<const flatbuffers::Vector<uint8_t>*>(field.offset());
    if (!v || v->size() == 0) return;
    auto* object = schema_.objects()->LookupByKey(attr->value()->c_str());
    if (!object) {
      std::fprintf(stderr, "envelope-fuzz: nested_flatbuffer type %s is not in the schema\n",
                   attr->value()->c_str());
      std::abort();
    }
    table(*object, *flatbuffers::GetRoot<flatbuffers::Table>(v->data()));
  }

  void vector(const reflection::Type& type, const flatbuffers::VectorOfAny* v) {
    if (!v) return;
    reflection::BaseType element = type.element();
    touch(v->size());
    for (flatbuffers::uoffset_t i = 0; i < v->size(); ++i) {
      if (element == reflection::String) {
        touch(flatbuffers::GetAnyVectorElemPointer<const flatbuffers::String>(v, i));
      } else if (element == reflection::Obj) {
        const reflection::Object& sub = *schema_.objects()->Get(type.index());
        if (sub.is_struct())
          structAt(sub, flatbuffers::GetAnyVectorElemAddressOf<const uint8_t>(v, i, sub.bytesize()));
        else
          table(sub, *flatbuffers::GetAnyVectorElemPointer<const flatbuffers::Table>(v, i));
      } else if (element <= reflection::Double) {  // scalars
        touchScalar(flatbuffers::GetAnyVectorElemF(v, element, i));
      }
      // A vector of unions needs its sibling vector of types; no schema of ours has one.
    }
  }

  void structAt(const reflection::Object& object, const uint8_t* data) {
    for (const reflection::Field* field : *object.fields()) {
      const reflection::Type& type = *field->type();
      const uint8_t* at = data + field->offset();
      if (type.base_type() == reflection::Obj) {
        structAt(*schema_.objects()->Get(type.index()), at);
      } else if (type.base_type() == reflection::Array) {
        size_t size = type.element() == reflection::Obj
                          ? schema_.objects()->Get(type.index())->bytesize()
                          : flatbuffers::GetTypeSize(type.element());
        for (uint16_t i = 0; i < type.fixed_length(); ++i) {
          if (type.element() == reflection::Obj)
            structAt(*schema_.objects()->Get(type.index()), at + i * size);
          else
            touchScalar(flatbuffers::GetAnyValueF(type.element(), at + i * size));
        }
      } else {
        touchScalar(flatbuffers::GetAnyValueF(type.base_type(), at));
      }
    }
  }

  const reflection::Schema& schema_;
};

struct LoadedSchema {
  std::vector<uint8_t> bytes;
  const reflection::Schema* schema = nullptr;
};

std::vector<LoadedSchema>& schemas() {
  static std::vector<LoadedSchema> loaded = [] {
    std::vector<LoadedSchema> out;
    for (auto& f : kFuzzed) {
      std::string path = std::string(SHOAL_FUZZ_SCHEMA_DIR) + "/" + f.schema + ".bfbs";
      std::ifstream in(path, std::ios::binary);
      LoadedSchema s;
      s.bytes.assign(std::istreambuf_iterator<char>(in), {});
      flatbuffers::Verifier v(s.bytes.data(), s.bytes.size());
      if (s.bytes.empty() || !reflection::VerifySchemaBuffer(v)) {
        std::fprintf(stderr, "envelope-fuzz: cannot read the binary schema %s; build it with "
                             "ninja (tests/fuzz/meson.build makes it)\n", path.c_str());
        std::abort();
      }
      s.schema = reflection::GetSchema(s.bytes.data());
      if (!s.schema->root_table()) {
        std::fprintf(stderr, "envelope-fuzz: %s has no root_type\n", path.c_str());
        std::abort();
      }
      out.push_back(std::move(s));
    }
    return out;
  }();
  return loaded;
}

const std::vector<const bus::Protocol*>& protocols() {
  static const std::vector<const bus::Protocol*> all = [] {
    std::vector<const bus::Protocol*> out;
    for (auto& f : kFuzzed) out.push_back(f.protocol);
    return out;
  }();
  return all;
}

void readAccepted(const bus::Protocol* protocol, const uint8_t* data) {
  auto& loaded = schemas();
  for (size_t i = 0; i < std::size(kFuzzed); ++i) {
    if (kFuzzed[i].protocol != protocol) continue;
    kFuzzed[i].readGenerated(data);
    const reflection::Schema& schema = *loaded[i].schema;
    Walker(schema).table(*schema.root_table(), *flatbuffers::GetRoot<flatbuffers::Table>(data));
    return;
  }
  std::fprintf(stderr, "envelope-fuzz: bus::verify accepted protocol %.*s, which is not in the list\n",
               static_cast<int>(protocol->name.size()), protocol->name.data());
  std::abort();
}

}  // namespace
}  // namespace shoal

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  shoal::schemas();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace shoal;
  std::span<const uint8_t> bytes(data, size);
  auto& all = protocols();
  // Once with the daemons' limits, once with tight ones, so the depth and table limits'
  // refusals are exercised too.
  bus::Limits tight;
  tight.maxBytes = 4096;
  tight.maxDepth = 3;
  tight.maxTables = 8;
  for (const bus::Limits& limits : {bus::Limits{}, tight}) {
    auto accepted = bus::verify(bytes, all, limits);
    if (accepted) readAccepted(*accepted, data);
  }
  return 0;
}
