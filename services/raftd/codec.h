#pragma once
// raft::Message <-> the FlatBuffers of schemas/raft.fbs.

#include "common/bus.h"
#include "common/result.h"
#include "services/raftd/core/types.h"
#include "services/raftd/protocols.h"

namespace shoal::raftd {

bus::Buffer encodeMessage(const raft::Message& m, uint64_t clusterId, std::string_view fromAddress);
// Checks what the verifier cannot: enum ranges and that the message is for `self`.
Result<raft::Message> decodeMessage(const raftpeer::Message& m);

}  // namespace shoal::raftd
