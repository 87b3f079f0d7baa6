#pragma once
// The protocols of libshoal-common and their bus handles. Each daemon's own protocols are
// declared the same way beside its code.

#include "common/bus.h"
#include "control_generated.h"

namespace shoal {

// Served by every daemon on <run-dir>/<daemon>.sock: Status and SetLogLevel.
inline const bus::Protocol kControlProtocol = bus::makeProtocol<control::Envelope>(
    "control", 1, control::EnvelopeIdentifier(), control::VerifyEnvelopeBuffer);

}  // namespace shoal

template <>
inline const shoal::bus::Protocol& shoal::bus::protocolOf<shoal::control::Envelope>() {
  return shoal::kControlProtocol;
}
