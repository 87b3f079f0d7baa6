// Reaching this node's daemons from the CLI (see daemons.h).
#include "tools/shoal/daemons.h"

#include <sys/stat.h>

#include <iostream>

namespace shoal::cli {

std::string socketOf(const Globals& g, std::string_view daemon) {
  return g.runDir + "/" + std::string(daemon) + ".sock";
}

bool socketExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

std::string unreachable(const Globals& g, std::string_view daemon) {
  std::string d(daemon);
  std::string text = "cannot reach " + d + " at " + socketOf(g, daemon) + ": is " + d +
                     " running on this node (systemctl status shoal-" + d + ")?";
  if (daemon == "raftd")
    text += " A worker node cannot run manager commands; run them on a manager.";
  else
    text += " Or point at its run dir with --run-dir or $SHOAL_RUN_DIR.";
  return text;
}

Result<bus::Frame> callDaemon(const Globals& g, std::string_view daemon,
                              const bus::Protocol& protocol, bus::Buffer request, Millis timeout,
                              CallError* why) {
  auto fail = [why](CallError::Kind kind, std::string message) -> Result<bus::Frame> {
    if (why) *why = {kind, message};
    return Error{std::move(message)};
  };
  std::string path = socketOf(g, daemon);
  if (!socketExists(path)) return fail(CallError::Kind::Unreachable, unreachable(g, daemon));
  bus::SyncClient client(protocol);
  if (auto c = client.connect("ipc://" + path); !c)
    return fail(CallError::Kind::Unreachable,
                "cannot connect to " + std::string(daemon) + " at " + path + ": " + c.error().message);
  auto reply = client.call(std::move(request), timeout);
  if (!reply) {
    if (reply.error().code == static_cast<int>(wire::ErrorCode::DeadlineExceeded))
      return fail(CallError::Kind::Timeout,
                  std::string(daemon) + " did not answer on " + path + " within " +
                      std::to_string(timeout.count() / 1000) +
                      "s: it may be busy, hung or stopped (a stale socket); check `systemctl "
                      "status shoal-" + std::string(daemon) + "` and its log");
    return fail(CallError::Kind::Daemon, reply.error().message);
  }
  if (const auto* e = reply->error(); e && e->code() != wire::ErrorCode::None)
    return fail(CallError::Kind::Daemon, bus::errorFrom(*reply).message);
  return reply;
}

int printCallError(const CallError& e) {
  if (e.kind == CallError::Kind::Daemon)
    std::cerr << "Error response from daemon: " << e.message << "\n";
  else
    std::cerr << "error: " << e.message << "\n";
  return 1;
}

namespace {

Result<nlohmann::json> parseInfo(std::string_view daemon, const flatbuffers::String* json,
                                 CallError* why) {
  auto bad = [&](std::string message) -> Result<nlohmann::json> {
    if (why) *why = {CallError::Kind::Daemon, message};
    return Error{message};
  };
  if (!json) return bad(std::string(daemon) + " answered Info without its JSON");
  auto j = nlohmann::json::parse(json->str(), nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return bad(std::string(daemon) + " answered Info with text that is not a JSON object");
  return j;
}

}  // namespace

Result<nlohmann::json> agentInfo(const Globals& g, CallError* why) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = agentapi::CreateInfoRequest(fbb);
  auto reply = callDaemon(g, "agentd", kAgentProtocol,
                          bus::message<agentapi::Envelope>(fbb, agentapi::Body::InfoRequest, body.Union()),
                          Millis(5000), why);
  if (!reply) return reply.error();
  const auto* r = reply->as<agentapi::Envelope>();
  return parseInfo("agentd", r && r->body_as_InfoReply() ? r->body_as_InfoReply()->json() : nullptr, why);
}

Result<nlohmann::json> raftInfo(const Globals& g, CallError* why) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = swarmapi::CreateInfoRequest(fbb);
  auto reply = callDaemon(g, "raftd", kSwarmProtocol,
                          bus::message<swarmapi::Envelope>(fbb, swarmapi::Body::InfoRequest, body.Union()),
                          Millis(5000), why);
  if (!reply) return reply.error();
  const auto* r = reply->as<swarmapi::Envelope>();
  return parseInfo("raftd", r && r->body_as_InfoReply() ? r->body_as_InfoReply()->json() : nullptr, why);
}

Status requireManager(const Globals& g, CallError* why) {
  auto raft = raftInfo(g, why);
  if (!raft) return raft.error();
  std::string state = raft->value("LocalNodeState", "");
  if (state == "active") return {};
  std::string message;
  if (state == "error") {
    message = "this node's swarm state is damaged: " + raft->value("Error", std::string("(no reason given)"));
  } else {
    auto agent = agentInfo(g, nullptr);
    bool inSwarm = agent && agent->value("LocalNodeState", "") == "active";
    message = inSwarm ? "This node is not a swarm manager. Worker nodes can't be used to view or "
                        "modify cluster state. Please run this command on a manager node or "
                        "promote the current node to a manager."
                      : "This node is not a swarm manager. Use \"shoal swarm init\" or \"shoal "
                        "swarm join\" to connect this node to swarm and try again.";
  }
  if (why) *why = {CallError::Kind::Daemon, message};
  return Error{message};
}

std::string selfNodeId(const Globals& g) {
  for (auto* info : {&agentInfo, &raftInfo}) {
    auto j = info(g, nullptr);
    if (j && j->contains("NodeID") && (*j)["NodeID"].is_string() &&
        !(*j)["NodeID"].get<std::string>().empty())
      return (*j)["NodeID"].get<std::string>();
  }
  return "";
}

namespace {

// A store read through raftd.sock; store errors are the daemon's own.
template <class Read>
auto storeRead(const Globals& g, CallError* why, Read read) -> decltype(read(std::declval<store::SyncClient&>())) {
  using R = decltype(read(std::declval<store::SyncClient&>()));
  auto fail = [why](CallError::Kind kind, std::string message) -> R {
    if (why) *why = {kind, message};
    return Error{std::move(message)};
  };
  std::string path = socketOf(g, "raftd");
  if (!socketExists(path)) return fail(CallError::Kind::Unreachable, unreachable(g, "raftd"));
  store::SyncClient client;
  if (auto c = client.connect(store::endpointIn(g.runDir)); !c)
    return fail(CallError::Kind::Unreachable, "cannot connect to raftd at " + path + ": " + c.error().message);
  auto r = read(client);
  if (!r) return fail(CallError::Kind::Daemon, r.error().message);
  return r;
}

}  // namespace

Result<NodeList> listNodes(const Globals& g, CallError* why) {
  auto list = storeRead(g, why, [](store::SyncClient& c) { return c.list(objects::ObjectKind::Node); });
  if (!list) return list.error();
  NodeList out;
  out.buffers = std::move(list->objects);
  for (const auto& b : out.buffers) {
    flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(b.data()), b.size());
    if (!v.VerifyBuffer<objects::Node>(nullptr)) {
      std::string message = "raftd answered a Node that is not a valid Node object; check raftd's "
                            "log and `shoal debug status raftd`";
      if (why) *why = {CallError::Kind::Daemon, message};
      return Error{message};
    }
    out.nodes.push_back(flatbuffers::GetRoot<objects::Node>(b.data()));
  }
  return out;
}

Result<std::string> readCluster(const Globals& g, CallError* why) {
  auto list = storeRead(g, why, [](store::SyncClient& c) { return c.list(objects::ObjectKind::Cluster); });
  if (!list) return list.error();
  if (list->objects.empty()) return std::string();
  std::string b = std::move(list->objects.front());
  flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(b.data()), b.size());
  if (!v.VerifyBuffer<objects::Cluster>(nullptr)) {
    std::string message = "raftd answered a Cluster that is not a valid Cluster object";
    if (why) *why = {CallError::Kind::Daemon, message};
    return Error{message};
  }
  return b;
}

}  // namespace shoal::cli
