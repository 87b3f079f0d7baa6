#pragma once
// How the CLI reaches this node's daemons: their local sockets under the run dir
// (<run-dir>/<daemon>.sock), one request at a time, and what it says when one is not there.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/bus.h"
#include "common/protocols.h"
#include "common/result.h"
#include "common/store_client.h"
#include "tools/shoal/cli.h"

namespace shoal::cli {

using Millis = std::chrono::milliseconds;

std::string socketOf(const Globals& g, std::string_view daemon);
bool socketExists(const std::string& path);

// Why `daemon`'s socket is not there and what to do. raftd's says that manager commands run
// on a manager.
std::string unreachable(const Globals& g, std::string_view daemon);

// A failure of a call, as the CLI prints it.
struct CallError {
  enum class Kind { Unreachable, Timeout, Daemon } kind;
  std::string message;  // Daemon: the daemon's own message, as it came
};

// One request to <run-dir>/<daemon>.sock in `protocol`; the reply frame, or why not.
Result<bus::Frame> callDaemon(const Globals& g, std::string_view daemon,
                              const bus::Protocol& protocol, bus::Buffer request, Millis timeout,
                              CallError* why = nullptr);

// Prints a failed call's error on stderr: a daemon's error as docker does ("Error response
// from daemon: ..."), an unreachable or silent daemon as "error: ...". Returns 1.
int printCallError(const CallError& e);

// The InfoReply JSON of agentd (agent.fbs) or raftd (swarm.fbs), or why not.
Result<nlohmann::json> agentInfo(const Globals& g, CallError* why);
Result<nlohmann::json> raftInfo(const Globals& g, CallError* why);

// Whether this node's raftd is an active manager, asked before the node commands read the
// store (whose reads would otherwise retry until their deadline): docker's "This node is not a
// swarm manager..." texts otherwise, as a daemon error.
Status requireManager(const Globals& g, CallError* why);

// The id of the node the CLI runs on: agentd's Info NodeID, else raftd's; "" when neither says.
std::string selfNodeId(const Globals& g);

// The Nodes in the store, read through raftd.sock (linearizable). The strings own the
// FlatBuffers; keep them while using the Node pointers.
struct NodeList {
  std::vector<std::string> buffers;
  std::vector<const objects::Node*> nodes;
};
Result<NodeList> listNodes(const Globals& g, CallError* why);

// The Cluster object, the same way ("" buffer: there is none yet).
Result<std::string> readCluster(const Globals& g, CallError* why);

}  // namespace shoal::cli
