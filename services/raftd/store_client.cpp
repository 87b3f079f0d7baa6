#include "services/raftd/store_client.h"

namespace shoal::raftd {

std::string configObject(std::string_view id, std::string_view name, std::string_view data,
                         uint64_t version) {
  flatbuffers::FlatBufferBuilder fbb(128 + data.size());
  auto ann = objects::CreateAnnotations(fbb, fbb.CreateString(name));
  auto spec = objects::CreateConfigSpec(
      fbb, ann, fbb.CreateVector(reinterpret_cast<const uint8_t*>(data.data()), data.size()));
  objects::Meta meta(version, 0, 0);
  auto cfg = objects::CreateConfig(fbb, fbb.CreateString(id), &meta, spec);
  fbb.Finish(cfg);
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

bus::Buffer txnRequest(const std::vector<ChangeSpec>& changes) {
  flatbuffers::FlatBufferBuilder inner;
  std::vector<flatbuffers::Offset<objects::Change>> offs;
  for (auto& c : changes)
    offs.push_back(objects::CreateChange(
        inner, c.kind, c.operation, inner.CreateString(c.id), c.expectedVersion,
        c.object.empty() ? 0
                         : inner.CreateVector(reinterpret_cast<const uint8_t*>(c.object.data()),
                                              c.object.size())));
  inner.Finish(objects::CreateStoreTxn(inner, inner.CreateVector(offs)), objects::StoreTxnIdentifier());
  flatbuffers::FlatBufferBuilder fbb(inner.GetSize() + 128);
  auto body = storeapi::CreateTxnRequest(fbb, fbb.CreateVector(inner.GetBufferPointer(), inner.GetSize()));
  return bus::message<storeapi::Envelope>(fbb, storeapi::Body::TxnRequest, body.Union());
}

bus::Buffer listRequest(objects::ObjectKind kind, bool local) {
  flatbuffers::FlatBufferBuilder fbb;
  storeapi::ListRequestBuilder b(fbb);
  b.add_kind(kind);
  b.add_local(local);
  auto body = b.Finish();
  return bus::message<storeapi::Envelope>(fbb, storeapi::Body::ListRequest, body.Union());
}

bus::Buffer getRequest(objects::ObjectKind kind, std::string_view id, bool local) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = storeapi::CreateGetRequest(fbb, kind, fbb.CreateString(id), 0, local);
  return bus::message<storeapi::Envelope>(fbb, storeapi::Body::GetRequest, body.Union());
}

bus::Buffer storeStatusRequest() {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = storeapi::CreateStatusRequest(fbb);
  return bus::message<storeapi::Envelope>(fbb, storeapi::Body::StatusRequest, body.Union());
}

bus::Buffer addMemberRequest(uint64_t nodeId, std::string_view address) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = storeapi::CreateAddMemberRequest(fbb, nodeId, fbb.CreateString(address));
  return bus::message<storeapi::Envelope>(fbb, storeapi::Body::AddMemberRequest, body.Union());
}

bus::Buffer removeMemberRequest(uint64_t nodeId) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = storeapi::CreateRemoveMemberRequest(fbb, nodeId);
  return bus::message<storeapi::Envelope>(fbb, storeapi::Body::RemoveMemberRequest, body.Union());
}

bus::Buffer transferLeaderRequest(uint64_t nodeId) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = storeapi::CreateTransferLeaderRequest(fbb, nodeId);
  return bus::message<storeapi::Envelope>(fbb, storeapi::Body::TransferLeaderRequest, body.Union());
}

bus::Buffer watchRequest(std::vector<objects::ObjectKind> kinds, uint64_t fromIndex) {
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<uint8_t> raw;
  for (auto k : kinds) raw.push_back(static_cast<uint8_t>(k));
  auto body = storeapi::CreateWatchRequest(
      fbb, fbb.CreateVector(reinterpret_cast<const objects::ObjectKind*>(raw.data()), raw.size()),
      fromIndex);
  return bus::message<storeapi::Envelope>(fbb, storeapi::Body::WatchRequest, body.Union());
}

}  // namespace shoal::raftd
