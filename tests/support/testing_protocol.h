#pragma once
// The bus handle of the `testing` protocol (schemas/testing.fbs), for tests that need a
// protocol no daemon serves.

#include "common/bus.h"
#include "testing_generated.h"

namespace shoal::testing {

inline const bus::Protocol kTestingProtocol = bus::makeProtocol<Envelope>(
    "testing", 1, EnvelopeIdentifier(), VerifyEnvelopeBuffer);

}  // namespace shoal::testing

template <>
inline const shoal::bus::Protocol& shoal::bus::protocolOf<shoal::testing::Envelope>() {
  return shoal::testing::kTestingProtocol;
}
