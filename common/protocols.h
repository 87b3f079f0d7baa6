#pragma once
// The protocols of libshoal-common and their bus handles. Each daemon's own protocols are
// declared the same way beside its code.

#include "common/bus.h"
#include "agent_generated.h"
#include "control_generated.h"
#include "dispatch_generated.h"
#include "store_generated.h"
#include "service_generated.h"
#include "swarm_generated.h"
#include "images_generated.h"
#include "containers_generated.h"
#include "overlay_generated.h"
#include "logs_generated.h"

namespace shoal {

// Served by every daemon on <run-dir>/<daemon>.sock: Status and SetLogLevel.
inline const bus::Protocol kControlProtocol = bus::makeProtocol<control::Envelope>(
    "control", 1, control::EnvelopeIdentifier(), control::VerifyEnvelopeBuffer);

// raftd's store API (schemas/store.fbs), on raftd.sock and its peer port. It is here and not
// beside raftd because every daemon and the CLI speak it through common/store_client.h, and
// none links raftd (DESIGN.md §12).
inline const bus::Protocol kStoreProtocol = bus::makeProtocol<storeapi::Envelope>(
    "store", 1, storeapi::EnvelopeIdentifier(), storeapi::VerifyEnvelopeBuffer);

// raftd's control API (schemas/swarm.fbs) on raftd.sock: the cluster operations.
inline const bus::Protocol kSwarmProtocol = bus::makeProtocol<swarmapi::Envelope>(
    "swarm", 1, swarmapi::EnvelopeIdentifier(), swarmapi::VerifyEnvelopeBuffer);

// The dispatcher protocol (schemas/dispatch.fbs): agentd <-> dispatcherd on tcp 2377 (CURVE)
// and the plain hello endpoint.
inline const bus::Protocol kDispatchProtocol = bus::makeProtocol<dispatch::Envelope>(
    "dispatch", 1, dispatch::EnvelopeIdentifier(), dispatch::VerifyEnvelopeBuffer);

// agentd's local API (schemas/agent.fbs) on agentd.sock.
inline const bus::Protocol kAgentProtocol = bus::makeProtocol<agentapi::Envelope>(
    "agent", 1, agentapi::EnvelopeIdentifier(), agentapi::VerifyEnvelopeBuffer);

// raftd's service API (schemas/service.fbs) on raftd.sock: service create, update, rm.
inline const bus::Protocol kServiceProtocol = bus::makeProtocol<serviceapi::Envelope>(
    "service", 1, serviceapi::EnvelopeIdentifier(), serviceapi::VerifyEnvelopeBuffer);

inline const bus::Protocol kImageProtocol = bus::makeProtocol<imageapi::Envelope>(
    "image", 1, imageapi::EnvelopeIdentifier(), imageapi::VerifyEnvelopeBuffer);

inline const bus::Protocol kContainerProtocol = bus::makeProtocol<containerapi::Envelope>(
    "container", 1, containerapi::EnvelopeIdentifier(), containerapi::VerifyEnvelopeBuffer);

inline const bus::Protocol kOverlayProtocol = bus::makeProtocol<overlayapi::Envelope>(
    "overlay", 1, overlayapi::EnvelopeIdentifier(), overlayapi::VerifyEnvelopeBuffer);

inline const bus::Protocol kLogProtocol = bus::makeProtocol<logapi::Envelope>(
    "log", 1, logapi::EnvelopeIdentifier(), logapi::VerifyEnvelopeBuffer);

}  // namespace shoal

template <>
inline const shoal::bus::Protocol& shoal::bus::protocolOf<shoal::control::Envelope>() {
  return shoal::kControlProtocol;
}
template <>
inline const shoal::bus::Protocol& shoal::bus::protocolOf<shoal::storeapi::Envelope>() {
  return shoal::kStoreProtocol;
}
template <>
inline const shoal::bus::Protocol& shoal::bus::protocolOf<shoal::swarmapi::Envelope>() {
  return shoal::kSwarmProtocol;
}
template <>
inline const shoal::bus::Protocol& shoal::bus::protocolOf<shoal::dispatch::Envelope>() {
  return shoal::kDispatchProtocol;
}
template <>
inline const shoal::bus::Protocol& shoal::bus::protocolOf<shoal::agentapi::Envelope>() {
  return shoal::kAgentProtocol;
}
template <>
inline const shoal::bus::Protocol& shoal::bus::protocolOf<shoal::serviceapi::Envelope>() {
  return shoal::kServiceProtocol;
}
template <>
inline const shoal::bus::Protocol& shoal::bus::protocolOf<shoal::imageapi::Envelope>() {
  return shoal::kImageProtocol;
}
template <>
inline const shoal::bus::Protocol& shoal::bus::protocolOf<shoal::containerapi::Envelope>() {
  return shoal::kContainerProtocol;
}
template <>
inline const shoal::bus::Protocol& shoal::bus::protocolOf<shoal::overlayapi::Envelope>() {
  return shoal::kOverlayProtocol;
}
template <>
inline const shoal::bus::Protocol& shoal::bus::protocolOf<shoal::logapi::Envelope>() {
  return shoal::kLogProtocol;
}
