#pragma once
// The store API's request builders moved to common/store_client.h (namespace shoal::store),
// where every daemon and the CLI find them without linking raftd (DESIGN.md §12). These names
// keep raftd's tests and tools compiling as they were.

#include "common/store_client.h"
#include "services/raftd/protocols.h"

namespace shoal::raftd {

using store::ChangeSpec;
using store::configObject;
using store::txnRequest;
using store::listRequest;
using store::getRequest;
using store::storeStatusRequest;
using store::addMemberRequest;
using store::removeMemberRequest;
using store::transferLeaderRequest;
using store::watchRequest;

}  // namespace shoal::raftd
