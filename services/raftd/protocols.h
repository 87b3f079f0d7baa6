#pragma once
// raftd's protocols: the Raft peer protocol (tcp) and the store API (raftd.sock and tcp).

#include "common/bus.h"
#include "raft_generated.h"
#include "store_generated.h"

namespace shoal::raftd {

inline const bus::Protocol kRaftProtocol = bus::makeProtocol<raftpeer::Envelope>(
    "raft", 1, raftpeer::EnvelopeIdentifier(), raftpeer::VerifyEnvelopeBuffer);
inline const bus::Protocol kStoreProtocol = bus::makeProtocol<storeapi::Envelope>(
    "store", 1, storeapi::EnvelopeIdentifier(), storeapi::VerifyEnvelopeBuffer);

}  // namespace shoal::raftd

template <>
inline const shoal::bus::Protocol& shoal::bus::protocolOf<shoal::raftpeer::Envelope>() {
  return shoal::raftd::kRaftProtocol;
}
template <>
inline const shoal::bus::Protocol& shoal::bus::protocolOf<shoal::storeapi::Envelope>() {
  return shoal::raftd::kStoreProtocol;
}
