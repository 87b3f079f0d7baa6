#pragma once
// `shoal swarm join` on the node's side (docs/cluster.md "swarm join"): the token is parsed,
// the manager's plain hello endpoint (port+2) says which CA and which manager key to trust,
// then the join goes over CURVE to the dispatcher (port), following a follower's redirect to
// the leader. What comes back is checked and becomes node.json; the caller stores it and
// starts raft on a manager.

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <zmq.hpp>

#include "common/bus.h"
#include "common/curve.h"
#include "common/identity.h"
#include "common/loop.h"
#include "common/node_dir.h"
#include "services/agentd/manager_replies.h"
#include "services/agentd/node_description.h"

namespace shoal::agentd {

// What the CLI asked (agent.fbs JoinRequest), made ready to go: the token parsed and the
// addresses resolved.
struct JoinPlan {
  std::string token;
  identity::ParsedJoinToken parsedToken;
  node::HostPort manager;     // the dispatcher of the manager asked (port P)
  std::string advertiseHost;  // where the others reach this node
  std::string listenHost = "0.0.0.0";
  uint16_t port = node::kDefaultPort;  // this node's dispatcher port, when it is a manager
};

struct JoinFields {
  std::string token;
  std::string remoteAddr;
  std::string advertiseAddr;
  std::string listenAddr;
};

// The route's source address to a host (node::sourceAddressFor), passed in so that tests do
// not depend on this machine's routes.
using SourceAddressFn = std::function<Result<std::string>(std::string_view remoteHost)>;

// Errors name the field that was wrong.
Result<JoinPlan> planJoin(const JoinFields& fields, const SourceAddressFn& sourceAddressFor);

// This host's source address towards a manager given by address or by name (resolved here:
// node::sourceAddressFor takes addresses only). The SourceAddressFn of a real join.
Result<std::string> sourceAddressTowards(std::string_view managerHost);

// What a successful join gives: node.json's content, and what raftd needs on a manager.
struct JoinOutcome {
  node::NodeConfig config;
  std::optional<RaftJoinInfo> raft;  // managers
  std::chrono::nanoseconds heartbeatPeriod{0};
};

// Checks a JoinReply: the certificate is the CA's, for this node's key and the node id the
// reply names, in the cluster of the CA; a manager's reply carries its raft membership.
// joinedAt: the manager that answered, the one manager known when the reply lists none.
Result<JoinOutcome> acceptJoinReply(const dispatch::JoinReply* reply,
                                    const identity::ClusterCA& ca, const curve::KeyPair& nodeKey,
                                    const JoinPlan& plan, const node::Manager& joinedAt,
                                    int64_t now);

// One join under way. It calls done exactly once (unless destroyed first), at the latest when
// `budget` has passed. Destroy it only outside its own callbacks (from a timer or a later
// event): done runs inside a client's callback.
class JoinFlow {
 public:
  using Done = std::function<void(Result<JoinOutcome>)>;
  // At most this many redirects from followers are followed before giving up.
  static constexpr int kMaxRedirects = 2;

  JoinFlow(Loop& loop, zmq::context_t& ctx, curve::KeyPair nodeKey, JoinPlan plan,
           NodeDescription description, std::chrono::milliseconds budget, Done done);
  ~JoinFlow();
  JoinFlow(const JoinFlow&) = delete;
  JoinFlow& operator=(const JoinFlow&) = delete;

  void start();

 private:
  std::chrono::milliseconds left() const;
  void hello();
  void onHello(Result<bus::Frame> r);
  void join(node::Manager target);
  void onJoin(Result<bus::Frame> r);
  void finish(Result<JoinOutcome> result);
  // A client of the dispatch protocol; the ones of earlier steps are kept until the flow ends
  // (a step's answer arrives inside its client's callback).
  bus::Client& newClient();

  Loop& loop_;
  zmq::context_t& ctx_;
  curve::KeyPair nodeKey_;
  JoinPlan plan_;
  NodeDescription description_;
  Loop::Clock::time_point deadline_;
  Done done_;
  Loop::TimerId timer_ = 0;
  Loop::TimerId timer2_ = 0;  // the next try after a transient refusal
  std::vector<std::unique_ptr<bus::Client>> clients_;
  std::optional<identity::ClusterCA> ca_;
  node::Manager target_;  // the dispatcher the join goes to now
  int redirects_ = 0;
  // NotLeader / Unavailable: nothing was done, the manager says to retry shortly.
  static constexpr std::chrono::milliseconds kTransientRetry{200};
  static constexpr int kMaxTransientRetries = 25;
  int transientRetries_ = 0;
  bool finished_ = false;
};

// Wall-clock Unix seconds (certificates are in them).
int64_t unixNow();

}  // namespace shoal::agentd
