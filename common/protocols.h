#pragma once
// The protocols of libshoal-common and their bus handles. Each daemon's own protocols are
// declared the same way beside its code.

#include "common/bus.h"
#include "control_generated.h"
#include "store_generated.h"

namespace shoal {

// Served by every daemon on <run-dir>/<daemon>.sock: Status and SetLogLevel.
inline const bus::Protocol kControlProtocol = bus::makeProtocol<control::Envelope>(
    "control", 1, control::EnvelopeIdentifier(), control::VerifyEnvelopeBuffer);

// raftd's store API (schemas/store.fbs), on raftd.sock and its peer port. It is here and not
// beside raftd because every daemon and the CLI speak it through common/store_client.h, and
// none links raftd (DESIGN.md §12).
inline const bus::Protocol kStoreProtocol = bus::makeProtocol<storeapi::Envelope>(
    "store", 1, storeapi::EnvelopeIdentifier(), storeapi::VerifyEnvelopeBuffer);

}  // namespace shoal

template <>
inline const shoal::bus::Protocol& shoal::bus::protocolOf<shoal::control::Envelope>() {
  return shoal::kControlProtocol;
}
template <>
inline const shoal::bus::Protocol& shoal::bus::protocolOf<shoal::storeapi::Envelope>() {
  return shoal::kStoreProtocol;
}
