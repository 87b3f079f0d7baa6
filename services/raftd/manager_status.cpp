#include "services/raftd/manager_status.h"

#include <flatbuffers/reflection.h>

#include "common/identity.h"
#include "objects_bfbs_generated.h"

namespace shoal::raftd {
namespace {

const reflection::Schema& schema() {
  static const reflection::Schema* s = reflection::GetSchema(objects::StoreTxnBinarySchema::data());
  return *s;
}

const reflection::Object* objectDef(const char* name) {
  return schema().objects()->LookupByKey(name);
}

// An inline value (scalar or struct) of `size` bytes at `align`, as field `field`.
void pushInline(flatbuffers::FlatBufferBuilder& fbb, flatbuffers::voffset_t field, const uint8_t* bytes,
                size_t size, size_t align) {
  fbb.Align(align);
  fbb.PushBytes(bytes, size);
  fbb.TrackField(field, fbb.GetSize());
}

// A copy of table `t` of type `def` into fbb, every present field as it was, but for the
// sub-table fields named in `tables` (replaced by the given offsets) and the scalar fields
// named in `scalars` (little-endian values of the field's size, always written).
Result<flatbuffers::uoffset_t> copyTable(
    flatbuffers::FlatBufferBuilder& fbb, const reflection::Object& def, const flatbuffers::Table& t,
    const std::map<std::string, flatbuffers::uoffset_t>& tables,
    const std::map<std::string, uint64_t>& scalars) {
  const auto& s = schema();
  std::map<flatbuffers::voffset_t, flatbuffers::uoffset_t> offsets;
  for (const reflection::Field* f : *def.fields()) {
    auto off = f->offset();
    if (auto it = tables.find(f->name()->str()); it != tables.end()) {
      offsets[off] = it->second;
      continue;
    }
    if (!t.GetOptionalFieldOffset(off)) continue;
    switch (f->type()->base_type()) {
      case reflection::String:
        offsets[off] = fbb.CreateString(flatbuffers::GetFieldS(t, *f)->string_view()).o;
        break;
      case reflection::Obj: {
        const reflection::Object& sub = *s.objects()->Get(f->type()->index());
        if (sub.is_struct()) break;  // inline, below
        offsets[off] = flatbuffers::CopyTable(fbb, s, sub, *flatbuffers::GetFieldT(t, *f)).o;
        break;
      }
      case reflection::Vector: {
        auto element = f->type()->element();
        if (!flatbuffers::IsScalar(element))
          return Error{"field " + f->name()->str() + " of " + def.name()->str() +
                       " is a vector of tables or strings, which this copy does not carry"};
        auto* v = flatbuffers::GetFieldAnyV(t, *f);
        size_t elem = flatbuffers::GetTypeSize(element);
        fbb.StartVector(v->size(), elem);
        fbb.PushBytes(v->Data(), v->size() * elem);
        offsets[off] = fbb.EndVector(v->size());
        break;
      }
      default:
        if (!flatbuffers::IsScalar(f->type()->base_type()))
          return Error{"field " + f->name()->str() + " of " + def.name()->str() +
                       " has a type this copy does not carry (a union?)"};
        break;
    }
  }
  auto start = fbb.StartTable();
  for (const reflection::Field* f : *def.fields()) {
    auto off = f->offset();
    auto base = f->type()->base_type();
    if (auto it = offsets.find(off); it != offsets.end()) {
      fbb.AddOffset(off, flatbuffers::Offset<void>(it->second));
      continue;
    }
    if (auto it = scalars.find(f->name()->str()); it != scalars.end()) {
      size_t size = flatbuffers::GetTypeSize(base);
      uint64_t v = it->second;
      pushInline(fbb, off, reinterpret_cast<const uint8_t*>(&v), size, size);
      continue;
    }
    if (!t.GetOptionalFieldOffset(off)) continue;
    if (base == reflection::Obj) {
      const reflection::Object& sub = *s.objects()->Get(f->type()->index());
      if (sub.is_struct())
        pushInline(fbb, off, t.GetStruct<const uint8_t*>(off), sub.bytesize(), sub.minalign());
    } else if (flatbuffers::IsScalar(base)) {
      size_t size = flatbuffers::GetTypeSize(base);
      pushInline(fbb, off, t.GetStruct<const uint8_t*>(off), size, size);
    }
  }
  return fbb.EndTable(start);
}

bool isManager(const objects::Node& n) {
  return n.role() == objects::NodeRole::Manager ||
         (n.spec() && n.spec()->desired_role() == objects::NodeRole::Manager);
}

const objects::Node* readNode(std::string_view bytes) {
  flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  if (!v.VerifyBuffer<objects::Node>(nullptr)) return nullptr;
  return flatbuffers::GetRoot<objects::Node>(bytes.data());
}

}  // namespace

Result<std::string> withManagerStatus(std::string_view node, bool leader,
                                      objects::Reachability reachability) {
  const objects::Node* n = readNode(node);
  if (!n) return Error{"the object is not a readable Node (schemas/objects.fbs)"};
  const auto* nodeDef = objectDef("shoal.objects.Node");
  const auto* msDef = objectDef("shoal.objects.ManagerStatus");
  if (!nodeDef || !msDef) return Error{"objects.fbs has no Node or ManagerStatus table", EINVAL};
  flatbuffers::FlatBufferBuilder fbb;
  // An absent manager_status is copied from an empty table: the overrides make it.
  flatbuffers::FlatBufferBuilder emptyFbb;
  emptyFbb.Finish(objects::CreateManagerStatus(emptyFbb));
  const auto* old = n->manager_status()
                        ? reinterpret_cast<const flatbuffers::Table*>(n->manager_status())
                        : flatbuffers::GetRoot<flatbuffers::Table>(emptyFbb.GetBufferPointer());
  auto ms = copyTable(fbb, *msDef, *old, {},
                      {{"leader", leader ? 1u : 0u}, {"reachability", static_cast<uint64_t>(reachability)}});
  if (!ms) return ms.error();
  auto root = copyTable(fbb, *nodeDef, *reinterpret_cast<const flatbuffers::Table*>(n),
                        {{"manager_status", *ms}}, {});
  if (!root) return root.error();
  fbb.Finish(flatbuffers::Offset<objects::Node>(*root));
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

Result<std::optional<std::string>> managerStatusTxn(const std::vector<std::string_view>& nodes,
                                                    const ManagerTruth& truth) {
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<flatbuffers::Offset<objects::Change>> changes;
  for (auto bytes : nodes) {
    const objects::Node* n = readNode(bytes);
    if (!n || !isManager(*n) || !n->manager_status() || n->manager_status()->raft_id() == 0) continue;
    uint64_t id = n->manager_status()->raft_id();
    bool leader = id == truth.leader;
    auto reach = truth.reachable.count(id) ? objects::Reachability::Reachable
                                           : objects::Reachability::Unreachable;
    if (n->manager_status()->leader() == leader && n->manager_status()->reachability() == reach)
      continue;
    auto updated = withManagerStatus(bytes, leader, reach);
    if (!updated) return updated.error();
    uint64_t version = n->meta() ? n->meta()->version() : 0;
    changes.push_back(objects::CreateChange(
        fbb, objects::ObjectKind::Node, objects::Operation::Update,
        fbb.CreateString(n->id() ? n->id()->string_view() : ""), version,
        fbb.CreateVector(reinterpret_cast<const uint8_t*>(updated->data()), updated->size())));
  }
  if (changes.empty()) return std::optional<std::string>();
  fbb.Finish(objects::CreateStoreTxn(fbb, fbb.CreateVector(changes)), objects::StoreTxnIdentifier());
  return std::optional<std::string>(
      std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize()));
}

ManagerKeys managerKeys(const std::vector<std::string_view>& nodes) {
  ManagerKeys out;
  for (auto bytes : nodes) {
    const objects::Node* n = readNode(bytes);
    if (!n || !isManager(*n) || !n->curve_public_key() || n->curve_public_key()->size() != 32)
      continue;
    identity::CurvePublicKey raw{};
    std::copy(n->curve_public_key()->begin(), n->curve_public_key()->end(), raw.begin());
    std::string key = identity::curveKeyToZ85(raw);
    out.managers.insert(key);
    if (n->manager_status() && n->manager_status()->raft_id())
      out.byRaftId[n->manager_status()->raft_id()] = key;
  }
  return out;
}

}  // namespace shoal::raftd
