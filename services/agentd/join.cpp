#include "services/agentd/join.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <spdlog/spdlog.h>

#include "common/protocols.h"
#include "services/agentd/failover.h"

namespace shoal::agentd {
namespace {

using namespace std::chrono_literals;

// The hello is one small answer from the manager's own dispatcherd: when it has not come in
// this long, nothing there is answering.
constexpr std::chrono::milliseconds kHelloTimeout = 5s;

}  // namespace

int64_t unixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Result<std::string> sourceAddressTowards(std::string_view managerHost) {
  std::string host(managerHost);
  in6_addr any;
  if (::inet_pton(AF_INET, host.c_str(), &any) == 1 ||
      ::inet_pton(AF_INET6, host.c_str(), &any) == 1)
    return node::sourceAddressFor(host);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &found); rc != 0)
    return Error{"cannot resolve the manager's name " + host + ": " + ::gai_strerror(rc) +
                 "; give its address"};
  char buf[INET6_ADDRSTRLEN] = {};
  const sockaddr* a = found->ai_addr;
  if (a->sa_family == AF_INET)
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(a)->sin_addr, buf, sizeof buf);
  else
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(a)->sin6_addr, buf, sizeof buf);
  ::freeaddrinfo(found);
  return node::sourceAddressFor(buf);
}

Result<JoinPlan> planJoin(const JoinFields& f, const SourceAddressFn& sourceAddressFor) {
  JoinPlan plan;
  if (f.token.empty())
    return Error{"no join token; get one with `shoal swarm join-token worker` (or manager) on "
                 "a manager and pass it with --token"};
  auto token = identity::parseJoinToken(f.token);
  if (!token) return token.error();
  plan.token = f.token;
  plan.parsedToken = std::move(token).value();

  if (f.remoteAddr.empty())
    return Error{"no manager address; give a manager's address, host[:port]"};
  auto manager = node::parseAddr(f.remoteAddr, node::kDefaultPort, false);
  if (!manager) return Error{"the manager address: " + manager.error().message};
  plan.manager = std::move(manager).value();

  uint16_t listenPort = 0, advertisePort = 0;
  if (!f.listenAddr.empty()) {
    auto listen = node::parseAddr(f.listenAddr, 0);
    if (!listen) return Error{"--listen-addr: " + listen.error().message};
    plan.listenHost = listen->host;
    listenPort = listen->port;
  }
  if (!f.advertiseAddr.empty()) {
    auto advertise = node::parseAddr(f.advertiseAddr, 0);
    if (!advertise) return Error{"--advertise-addr: " + advertise.error().message};
    plan.advertiseHost = advertise->host;
    advertisePort = advertise->port;
  } else {
    auto source = sourceAddressFor(plan.manager.host);
    if (!source) return Error{"cannot choose this node's address: " + source.error().message};
    plan.advertiseHost = std::move(source).value();
  }
  if (listenPort && advertisePort && listenPort != advertisePort)
    return Error{"--listen-addr has port " + std::to_string(listenPort) +
                 " and --advertise-addr port " + std::to_string(advertisePort) +
                 "; a node's dispatcher has one port: give the same one (or one of them)"};
  if (listenPort) plan.port = listenPort;
  else if (advertisePort) plan.port = advertisePort;
  return plan;
}

Result<JoinOutcome> acceptJoinReply(const dispatch::JoinReply* reply,
                                    const identity::ClusterCA& ca, const curve::KeyPair& nodeKey,
                                    const JoinPlan& plan, const node::Manager& joinedAt,
                                    int64_t now) {
  if (!reply->node_id() || reply->node_id()->size() == 0) return Error{"it names no node id"};
  std::string nodeId = reply->node_id()->str();
  auto cert = acceptCertificate(ca, bytesOf(reply->certificate()), nodeKey, nodeId, now);
  if (!cert) return cert.error();
  if (reply->cluster_id() && reply->cluster_id()->str() != ca.clusterId())
    return Error{"it names cluster " + reply->cluster_id()->str() + " but the CA is cluster " +
                 ca.clusterId() + "'s"};
  bool manager = cert->role == identity::Role::Manager;
  if (static_cast<uint8_t>(reply->role()) != static_cast<uint8_t>(cert->role))
    return Error{std::string("it says role ") + objects::EnumNameNodeRole(reply->role()) +
                 " but the certificate says " + std::string(identity::roleName(cert->role))};
  auto managers = managersFrom(reply->managers());
  if (!managers) return Error{"its managers list: " + managers.error().message};

  JoinOutcome out;
  if (manager) {
    auto raft = raftJoinFrom(reply->raft());
    if (!raft) return raft.error();
    out.raft = std::move(raft).value();
  }
  node::NodeConfig& c = out.config;
  c.nodeId = nodeId;
  c.clusterId = ca.clusterId();
  c.manager = manager;
  c.certificate.assign(reply->certificate()->begin(), reply->certificate()->end());
  c.ca = ca.savePublic();
  c.advertiseHost = plan.advertiseHost;
  c.listenHost = plan.listenHost;
  c.port = plan.port;
  c.managers = std::move(managers).value();
  if (c.managers.empty()) c.managers.push_back(joinedAt);
  if (out.raft) c.raft = node::RaftIdentity{out.raft->raftId, out.raft->raftClusterId};
  out.heartbeatPeriod = sanePeriod(reply->heartbeat_period());
  return out;
}

JoinFlow::JoinFlow(Loop& loop, zmq::context_t& ctx, curve::KeyPair nodeKey, JoinPlan plan,
                   NodeDescription description, std::chrono::milliseconds budget, Done done)
    : loop_(loop), ctx_(ctx), nodeKey_(std::move(nodeKey)), plan_(std::move(plan)),
      description_(std::move(description)), deadline_(loop.now() + budget),
      done_(std::move(done)) {}

JoinFlow::~JoinFlow() {
  if (timer_) loop_.cancel(timer_);
  if (timer2_) loop_.cancel(timer2_);
}

std::chrono::milliseconds JoinFlow::left() const {
  auto d = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - loop_.now());
  return std::max(d, std::chrono::milliseconds(1));
}

void JoinFlow::start() {
  // Every step's call is bounded by what is left; this only catches a step that never ends.
  timer_ = loop_.after(left() + 500ms, [this] {
    timer_ = 0;
    finish(Error{"the join got no answer in time from " + target_.addr +
                 "; is the manager reachable from this node?"});
  });
  hello();
}

bus::Client& JoinFlow::newClient() {
  clients_.push_back(std::make_unique<bus::Client>(loop_, ctx_, kDispatchProtocol));
  return *clients_.back();
}

void JoinFlow::hello() {
  std::string addr = node::joinHostPort(plan_.manager.host, node::helloPort(plan_.manager.port));
  target_ = {"", addr, ""};
  bus::Client& client = newClient();
  if (auto st = client.connect("tcp://" + addr); !st) return finish(st.error());
  flatbuffers::FlatBufferBuilder fbb;
  auto body = dispatch::CreateHelloRequest(fbb);
  spdlog::info("join: asking {} (hello) which CA and manager to trust", addr);
  client.call(bus::message<dispatch::Envelope>(fbb, dispatch::Body::HelloRequest, body.Union()),
              std::min(left(), kHelloTimeout),
              [this](Result<bus::Frame> r) { onHello(std::move(r)); });
}

void JoinFlow::onHello(Result<bus::Frame> r) {
  const std::string& addr = target_.addr;
  if (!r) {
    if (r.error().code == static_cast<int>(wire::ErrorCode::DeadlineExceeded))
      return finish(Error{"cannot reach a manager at " + addr + " (hello): " +
                          r.error().message +
                          "; is the address right and the manager's dispatcherd running?"});
    return finish(Error{"the manager at " + addr + " refused hello: " + r.error().message});
  }
  auto* env = r->as<dispatch::Envelope>();
  auto* reply = env->body_as_HelloReply();
  if (!reply)
    return finish(Error{"the manager at " + addr + " answered hello with " +
                        dispatch::EnumNameBody(env->body_type()) + "; is it a shoal manager?"});
  auto trusted = checkHello(reply, plan_.parsedToken, addr, unixNow());
  if (!trusted) return finish(trusted.error());
  ca_ = std::move(trusted->ca);
  spdlog::info("join: {} is manager {} of cluster {}", addr, trusted->nodeId, ca_->clusterId());
  join({trusted->nodeId, node::joinHostPort(plan_.manager.host, plan_.manager.port),
        trusted->publicKey});
}

void JoinFlow::join(node::Manager target) {
  target_ = std::move(target);
  bus::Client& client = newClient();
  client.setCurve({target_.publicKey, nodeKey_.publicKey, nodeKey_.secretKey});
  if (auto st = client.connect("tcp://" + target_.addr); !st) return finish(st.error());
  flatbuffers::FlatBufferBuilder fbb;
  auto token = fbb.CreateString(plan_.token);
  auto addr = fbb.CreateString(plan_.advertiseHost);
  auto description = buildDescription(fbb, description_);
  auto body = dispatch::CreateJoinRequest(fbb, token, addr, description);
  spdlog::info("join: sending the join to {} (manager {})", target_.addr, target_.nodeId);
  client.call(bus::message<dispatch::Envelope>(fbb, dispatch::Body::JoinRequest, body.Union()),
              left(), [this](Result<bus::Frame> r) { onJoin(std::move(r)); });
}

void JoinFlow::onJoin(Result<bus::Frame> r) {
  std::string who = "the manager at " + target_.addr;
  if (!r) {
    if (r.error().code == static_cast<int>(wire::ErrorCode::DeadlineExceeded))
      return finish(Error{who + " did not answer the join (CURVE on port " +
                          target_.addr.substr(target_.addr.rfind(':') + 1) + "): " +
                          r.error().message + "; is that port reachable from this node?"});
    // NotLeader and Unavailable say that nothing was done and that the answer will change
    // shortly: a leader is being elected, or a follower does not know the leader's node yet,
    // or a new leader's dispatcher is still reading the store. Ask again while time is left.
    bool transient = r.error().code == static_cast<int>(wire::ErrorCode::NotLeader) ||
                     r.error().code == static_cast<int>(wire::ErrorCode::Unavailable);
    if (transient && left() > kTransientRetry * 2 && ++transientRetries_ <= kMaxTransientRetries) {
      spdlog::info("join: {} cannot take it yet ({}); asking again in {} ms", target_.addr,
                   r.error().message, kTransientRetry.count());
      timer2_ = loop_.after(kTransientRetry, [this, target = target_] {
        timer2_ = 0;
        join(target);
      });
      return;
    }
    return finish(Error{who + " refused the join: " + r.error().message, r.error().code});
  }
  auto* env = r->as<dispatch::Envelope>();
  if (auto* redirect = env->body_as_Redirect()) {
    auto leader = managerFrom(redirect->leader());
    if (!leader) return finish(Error{who + " redirected the join to a bad address: " +
                                     leader.error().message});
    if (++redirects_ > kMaxRedirects)
      return finish(Error{"the join was redirected " + std::to_string(kMaxRedirects) +
                          " times, last to " + leader->addr +
                          "; the managers may be electing a leader: try again in a moment"});
    spdlog::info("join: {} is not the leader; going to {}", target_.addr, leader->addr);
    return join(std::move(leader).value());
  }
  auto* reply = env->body_as_JoinReply();
  if (!reply)
    return finish(Error{who + " answered the join with " +
                        std::string(dispatch::EnumNameBody(env->body_type()))});
  auto outcome = acceptJoinReply(reply, *ca_, nodeKey_, plan_, target_, unixNow());
  if (!outcome)
    return finish(Error{who + " sent a join reply this node cannot accept: " +
                        outcome.error().message});
  finish(std::move(outcome).value());
}

void JoinFlow::finish(Result<JoinOutcome> result) {
  if (finished_) return;
  finished_ = true;
  if (timer_) loop_.cancel(timer_);
  if (timer2_) loop_.cancel(timer2_);
  timer_ = timer2_ = 0;
  done_(std::move(result));
}

}  // namespace shoal::agentd
