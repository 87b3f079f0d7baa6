// shoal swarm init|join|join-token|leave|update (docs/cluster.md "Flows"): requests to raftd's
// control API and agentd, and docker's texts (swarm_text.h).
#include <iostream>

#include "common/units.h"
#include "tools/shoal/daemons.h"
#include "tools/shoal/swarm_text.h"

namespace shoal::cli {
namespace {

// raftd bootstraps a cluster, agentd reaches a manager over the network: both may take a while.
constexpr Millis kSlowCall{30'000};
constexpr Millis kCall{10'000};

struct InitOptions {
  std::string advertiseAddr, listenAddr;
  std::vector<std::string> addrPools;
  uint32_t maskLength = 0;
  std::string heartbeat, certExpiry;
  bool forceNewCluster = false;
};

struct JoinOptions {
  std::string token, advertiseAddr, listenAddr, remoteAddr;
};

int64_t nanosOf(const std::string& flag) {
  if (flag.empty()) return 0;
  auto d = parseDuration(flag);
  return d ? d->count() : 0;  // the flag's validator accepted it already
}

// --dispatcher-heartbeat and --cert-expiry: Go durations, and more than zero.
CLI::Validator positiveDuration() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        auto d = parsePositiveDuration(text);
        return d ? "" : d.error().message;
      },
      "DURATION");
}

// Tells a daemon that uses the node dir to read it again; a daemon that is not running reads it
// when it starts, so its absence is a warning.
void reload(const Globals& g, const char* daemon) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = control::CreateReloadRequest(fbb);
  CallError why;
  auto reply = callDaemon(g, daemon, kControlProtocol,
                          bus::message<control::Envelope>(fbb, control::Body::ReloadRequest, body.Union()),
                          kCall, &why);
  if (reply) return;
  if (why.kind == CallError::Kind::Unreachable)
    std::cerr << "warning: " << daemon << " is not running (no socket at " << socketOf(g, daemon)
              << "): start it (systemctl start shoal-" << daemon
              << "); it reads the node's new identity when it starts\n";
  else
    std::cerr << "warning: " << daemon << " did not reload the node's identity: " << why.message
              << "; restart it (systemctl restart shoal-" << daemon << ")\n";
}

template <class BodyT>
Result<bus::Frame> callRaftd(const Globals& g, swarmapi::Body type, flatbuffers::FlatBufferBuilder& fbb,
                             flatbuffers::Offset<BodyT> body, Millis timeout, CallError& why) {
  return callDaemon(g, "raftd", kSwarmProtocol,
                    bus::message<swarmapi::Envelope>(fbb, type, body.Union()), timeout, &why);
}

int init(const Globals& g, const InitOptions& o) {
  flatbuffers::FlatBufferBuilder fbb;
  auto advertise = fbb.CreateString(o.advertiseAddr);
  auto listen = fbb.CreateString(o.listenAddr);
  auto pools = fbb.CreateVectorOfStrings(o.addrPools);
  auto body = swarmapi::CreateInitRequest(fbb, advertise, listen, pools, o.maskLength,
                                          nanosOf(o.heartbeat), nanosOf(o.certExpiry),
                                          o.forceNewCluster);
  CallError why;
  auto reply = callRaftd(g, swarmapi::Body::InitRequest, fbb, body, kSlowCall, why);
  if (!reply && why.kind == CallError::Kind::Unreachable) {
    // Any node may start a swarm, so the manager-only hint of unreachable() does not apply.
    std::cerr << "error: cannot reach raftd at " << socketOf(g, "raftd")
              << ": swarm init needs this node's raftd; start it (systemctl start shoal-raftd), "
                 "or point at its run dir with --run-dir or $SHOAL_RUN_DIR\n";
    return 1;
  }
  if (!reply) return printCallError(why);
  const auto* env = reply->as<swarmapi::Envelope>();
  const auto* r = env ? env->body_as_InitReply() : nullptr;
  if (!r || !r->node_id() || !r->worker_token() || !r->advertise_addr()) {
    std::cerr << "error: raftd answered swarm init without the node id, token and address; "
                 "check `shoal info` and raftd's log\n";
    return 1;
  }
  reload(g, "dispatcherd");
  reload(g, "agentd");
  std::cout << initText(r->node_id()->str(), r->worker_token()->str(), r->advertise_addr()->str());
  return 0;
}

int join(const Globals& g, const JoinOptions& o) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = agentapi::CreateJoinRequestDirect(fbb, o.token.c_str(), o.remoteAddr.c_str(),
                                                o.advertiseAddr.c_str(), o.listenAddr.c_str());
  CallError why;
  auto reply = callDaemon(g, "agentd", kAgentProtocol,
                          bus::message<agentapi::Envelope>(fbb, agentapi::Body::JoinRequest, body.Union()),
                          kSlowCall, &why);
  if (!reply) return printCallError(why);
  const auto* env = reply->as<agentapi::Envelope>();
  const auto* r = env ? env->body_as_JoinReply() : nullptr;
  if (!r) {
    std::cerr << "error: agentd answered swarm join without saying the node's role; check "
                 "`shoal info`\n";
    return 1;
  }
  std::cout << "This node joined a swarm as a "
            << (r->role() == objects::NodeRole::Manager ? "manager" : "worker") << ".\n";
  return 0;
}

int joinToken(const Globals& g, const std::string& role, bool quiet, bool rotate) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = swarmapi::CreateJoinTokenRequest(
      fbb, role == "manager" ? objects::NodeRole::Manager : objects::NodeRole::Worker, rotate);
  CallError why;
  auto reply = callRaftd(g, swarmapi::Body::JoinTokenRequest, fbb, body, kCall, why);
  if (!reply) return printCallError(why);
  const auto* env = reply->as<swarmapi::Envelope>();
  const auto* r = env ? env->body_as_JoinTokenReply() : nullptr;
  if (!r || !r->token() || !r->token()->size()) {
    std::cerr << "error: raftd answered join-token without a token\n";
    return 1;
  }
  if (rotate && !quiet) std::cout << rotatedText(role);
  if (quiet)
    std::cout << r->token()->str() << "\n";
  else
    std::cout << joinTokenText(role, r->token()->str(), r->manager_addr() ? r->manager_addr()->str() : "");
  return 0;
}

int leave(const Globals& g, bool force) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = agentapi::CreateLeaveRequest(fbb, force);
  CallError why;
  auto reply = callDaemon(g, "agentd", kAgentProtocol,
                          bus::message<agentapi::Envelope>(fbb, agentapi::Body::LeaveRequest, body.Union()),
                          kSlowCall, &why);
  if (!reply) return printCallError(why);
  std::cout << "Node left the swarm.\n";
  return 0;
}

int update(const Globals& g, const std::string& heartbeat, const std::string& certExpiry) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = swarmapi::CreateUpdateRequest(fbb, nanosOf(heartbeat), nanosOf(certExpiry));
  CallError why;
  auto reply = callRaftd(g, swarmapi::Body::UpdateRequest, fbb, body, kCall, why);
  if (!reply) return printCallError(why);
  std::cout << "Swarm updated.\n";
  return 0;
}

}  // namespace

void addSwarmCommands(CLI::App& app, Globals& g, Outcome& outcome) {
  auto* swarm = app.add_subcommand("swarm", "Manage the swarm");
  swarm->require_subcommand(1);

  static InitOptions init_;
  auto* in = swarm->add_subcommand("init", "Initialize a swarm: this node becomes its first manager");
  in->add_option("--advertise-addr", init_.advertiseAddr,
                 "Advertised address (format: <ip|interface>[:port]); default: the default route's");
  in->add_option("--listen-addr", init_.listenAddr, "Listen address (format: <ip|interface>[:port])");
  in->add_option("--default-addr-pool", init_.addrPools,
                 "Default address pool in CIDR format (repeatable); default 10.0.0.0/8")
      ->delimiter(',');
  in->add_option("--default-addr-pool-mask-length", init_.maskLength,
                 "Default address pool subnet mask length (default 24)")
      ->check(CLI::Range(1, 32));
  in->add_option("--dispatcher-heartbeat", init_.heartbeat, "Dispatcher heartbeat period (ns|us|ms|s|m|h), default 5s")
      ->check(positiveDuration());
  in->add_option("--cert-expiry", init_.certExpiry, "Validity period for node certificates (ns|us|ms|s|m|h), default 2160h0m0s")
      ->check(positiveDuration());
  in->add_flag("--force-new-cluster", init_.forceNewCluster,
               "Force create a new cluster from current state (after losing quorum)");
  in->callback([&g, &outcome] { outcome.code = init(g, init_); });

  static JoinOptions join_;
  auto* jn = swarm->add_subcommand("join", "Join a swarm as a worker or a manager");
  jn->add_option("--token", join_.token, "Token for entry into the swarm")->required();
  jn->add_option("--advertise-addr", join_.advertiseAddr, "Advertised address (format: <ip|interface>[:port])");
  jn->add_option("--listen-addr", join_.listenAddr, "Listen address (format: <ip|interface>[:port])");
  jn->add_option("HOST:PORT", join_.remoteAddr, "A manager's address (the port defaults to 2377)")
      ->required();
  jn->callback([&g, &outcome] { outcome.code = join(g, join_); });

  static std::string role;
  static bool quiet = false, rotate = false;
  auto* jt = swarm->add_subcommand("join-token", "Manage join tokens");
  jt->add_flag("-q,--quiet", quiet, "Only display token");
  jt->add_flag("--rotate", rotate, "Rotate join token");
  jt->add_option("ROLE", role, "worker or manager")->required()->check(CLI::IsMember({"worker", "manager"}));
  jt->callback([&g, &outcome] { outcome.code = joinToken(g, role, quiet, rotate); });

  static bool force = false;
  auto* lv = swarm->add_subcommand("leave", "Leave the swarm");
  lv->add_flag("-f,--force", force, "Force this node to leave the swarm, ignoring warnings");
  lv->callback([&g, &outcome] { outcome.code = leave(g, force); });

  static std::string heartbeat, certExpiry;
  auto* up = swarm->add_subcommand("update", "Update the swarm");
  up->add_option("--dispatcher-heartbeat", heartbeat, "Dispatcher heartbeat period (ns|us|ms|s|m|h)")
      ->check(positiveDuration());
  up->add_option("--cert-expiry", certExpiry, "Validity period for node certificates (ns|us|ms|s|m|h)")
      ->check(positiveDuration());
  up->callback([&g, &outcome] { outcome.code = update(g, heartbeat, certExpiry); });
}

}  // namespace shoal::cli
