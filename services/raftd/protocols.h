#pragma once
// raftd's protocols: the Raft peer protocol (tcp) and the store API (raftd.sock and tcp; its
// handle lives in common/protocols.h, since every daemon's store client speaks it).

#include "common/bus.h"
#include "common/protocols.h"
#include "raft_generated.h"
#include "store_generated.h"

namespace shoal::raftd {

inline const bus::Protocol kRaftProtocol = bus::makeProtocol<raftpeer::Envelope>(
    "raft", 1, raftpeer::EnvelopeIdentifier(), raftpeer::VerifyEnvelopeBuffer);
using shoal::kStoreProtocol;

}  // namespace shoal::raftd

template <>
inline const shoal::bus::Protocol& shoal::bus::protocolOf<shoal::raftpeer::Envelope>() {
  return shoal::raftd::kRaftProtocol;
}
