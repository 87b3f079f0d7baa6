#include "services/agentd/fake_nodes.h"

#include <sys/resource.h>

#include <filesystem>
#include <map>

#include <spdlog/spdlog.h>

#include "common/protocols.h"
#include "services/agentd/swarm_agent.h"

namespace shoal::agentd {
namespace {

using namespace std::chrono_literals;

std::string str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }

// File descriptors a session needs: its socket's TCP connection and the mailboxes of its
// DEALER and monitor sockets; and some for the daemon itself.
constexpr size_t kFdsPerNode = 5;
constexpr size_t kFdsSpare = 256;

// Raises the soft open-file limit to what N sessions need (up to the hard limit).
Status raiseFileLimit(size_t nodes) {
  rlim_t need = nodes * kFdsPerNode + kFdsSpare;
  struct rlimit lim {};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return Error{"getrlimit(RLIMIT_NOFILE) failed"};
  if (lim.rlim_cur >= need) return {};
  if (lim.rlim_max != RLIM_INFINITY && lim.rlim_max < need)
    return Error{"--fake-nodes " + std::to_string(nodes) + " needs about " +
                 std::to_string(need) + " open files, and the hard limit is " +
                 std::to_string(lim.rlim_max) + ": raise it (ulimit -Hn, LimitNOFILE=) or ask "
                 "for fewer nodes"};
  lim.rlim_cur = need;
  if (::setrlimit(RLIMIT_NOFILE, &lim) != 0)
    return Error{"cannot raise the open-file limit to " + std::to_string(need)};
  return {};
}

// agent.fbs errors carry wire codes; others (errno) are Internal.
wire::ErrorCode wireCode(const Error& e, wire::ErrorCode otherwise) {
  if (e.code > 0 && e.code <= static_cast<int>(wire::ErrorCode::MAX))
    return static_cast<wire::ErrorCode>(e.code);
  return otherwise;
}

}  // namespace

FakeNodes::Node::Node(Loop& loop, zmq::context_t& ctx, size_t i, node::NodeDir d,
                      NodeDescription desc, std::chrono::milliseconds delay)
    : index(i),
      dir(std::move(d)),
      description(std::move(desc)),
      executor(loop, delay),
      worker(executor, wallClockNs),
      session(loop, ctx, dir.key(), description,
              {[this](const std::vector<node::Manager>& managers) {
                 if (!config) return;
                 config->managers = managers;
                 if (auto st = dir.save(*config); !st)
                   spdlog::error("fake node {}: {}", description.hostname, st.error().message);
               },
               {}, {}, {}, {}}) {
  session.attach(&worker);
}

Result<std::unique_ptr<FakeNodes>> FakeNodes::start(Daemon& daemon, const std::string& hostname,
                                                    size_t count,
                                                    std::chrono::milliseconds delay) {
  if (count == 0 || count > kMaxNodes)
    return Error{"--fake-nodes: " + std::to_string(count) + " is not between 1 and " +
                 std::to_string(kMaxNodes)};
  if (auto st = raiseFileLimit(count); !st) return st.error();
  std::unique_ptr<FakeNodes> fake(new FakeNodes(daemon, count));
  if (auto st = fake->openNodes(hostname, delay); !st) return st.error();
  FakeNodes* f = fake.get();
  daemon.server().serve(kAgentProtocol, [f](bus::Call call) { f->serve(std::move(call)); });
  daemon.addStatus([f](nlohmann::json& j) { f->status(j); });
  daemon.onStop([f] {
    for (auto& n : f->nodes_) n->session.stop();
  });
  spdlog::info("posing as {} fake nodes ({} .. {}), {} of them in a swarm already", count,
               f->nodes_.front()->description.hostname, f->nodes_.back()->description.hostname,
               f->joinedNodes());
  f->updateStatusText();
  return fake;
}

FakeNodes::FakeNodes(Daemon& daemon, size_t count)
    : daemon_(daemon), count_(count), flows_(count) {
  // Before its first socket: each session has a DEALER and a monitor pair.
  ctx_.set(zmq::ctxopt::max_sockets, static_cast<int>(count * 4 + 64));
}

FakeNodes::~FakeNodes() {
  if (cleanup_) daemon_.loop().cancel(cleanup_);
  flows_.clear();
  for (auto& n : nodes_) n->session.stop();
}

Status FakeNodes::openNodes(const std::string& hostname, std::chrono::milliseconds delay) {
  auto facts = probeHost(hostname);
  if (!facts) return Error{"--hostname: " + facts.error().message};
  std::filesystem::path root = std::filesystem::path(daemon_.stateDir()) / "fake-nodes";
  std::error_code ec;
  std::filesystem::create_directories(root, ec);
  if (ec) return Error{"cannot make " + root.string() + ": " + ec.message()};
  nodes_.reserve(count_);
  for (size_t i = 1; i <= count_; ++i) {
    HostFacts f = *facts;
    f.hostname = facts->hostname + "-" + std::to_string(i);
    auto dir = node::NodeDir::open((root / std::to_string(i)).string());
    if (!dir) return dir.error();
    nodes_.push_back(std::make_unique<Node>(daemon_.loop(), ctx_, i, std::move(dir).value(),
                                            describeNode(f, SHOAL_VERSION), delay));
    Node& n = *nodes_.back();
    auto loaded = n.dir.load();
    if (!loaded) return Error{"fake node " + std::to_string(i) + ": " + loaded.error().message +
                              "; remove " + n.dir.path() + " to make it a new node"};
    if (*loaded) adopt(n, std::move(**loaded), 5s);
  }
  return {};
}

void FakeNodes::adopt(Node& n, node::NodeConfig config, std::chrono::nanoseconds period) {
  n.config = std::move(config);
  Node* node = &n;
  // Spread the first attempts: N sessions opening in the same millisecond is a storm for
  // the dispatcher and nothing a real cluster does.
  daemon_.loop().after(std::chrono::milliseconds(n.index % 1000), [this, node, period] {
    if (!node->config) return;
    node->session.start(node->config->managers, node->config->advertiseHost, period);
    updateStatusText();
  });
}

// ---- agent.fbs

void FakeNodes::serve(bus::Call call) {
  auto* env = call.as<agentapi::Envelope>();
  switch (env->body_type()) {
    case agentapi::Body::JoinRequest: return join(std::move(call));
    case agentapi::Body::LeaveRequest: return leave(std::move(call));
    case agentapi::Body::InfoRequest: return info(std::move(call));
    case agentapi::Body::TasksRequest: return tasks(std::move(call));
    case agentapi::Body::FakeTaskRequest: return fakeTask(std::move(call));
    default:
      call.fail(wire::ErrorCode::Unimplemented,
                std::string("agent message ") + agentapi::EnumNameBody(env->body_type()) +
                    " is not a request agentd serves");
  }
}

void FakeNodes::join(bus::Call call) {
  if (pending_)
    return call.fail(wire::ErrorCode::Unavailable,
                     "the fake nodes are joining already; wait for that join's answer");
  if (joinedNodes() == count_)
    return call.fail(wire::ErrorCode::Conflict,
                     "all " + std::to_string(count_) + " fake nodes are part of a swarm; use "
                     "`shoal swarm leave` first");
  auto* req = call.as<agentapi::Envelope>()->body_as_JoinRequest();
  JoinFields fields{str(req->token()), str(req->remote_addr()), str(req->advertise_addr()),
                    str(req->listen_addr())};
  auto plan = planJoin(fields, sourceAddressTowards);
  if (!plan) return call.fail(wire::ErrorCode::InvalidArgument, plan.error().message);
  spdlog::info("join: {} fake nodes to {}", count_ - joinedNodes(),
               node::joinHostPort(plan->manager.host, plan->manager.port));
  plan_ = std::move(plan).value();
  pending_.emplace(std::move(call));
  nextJoin_ = inFlight_ = joinsDone_ = joinsFailed_ = 0;
  firstJoinError_.clear();
  firstChecked_ = false;
  joinNext();
}

// Starts joins up to kJoinsInFlight; the first one goes alone, so that a manager token is
// found out before it makes N managers.
void FakeNodes::joinNext() {
  size_t limit = firstChecked_ ? kJoinsInFlight : 1;
  while (inFlight_ < limit && nextJoin_ < count_) {
    Node& n = *nodes_[nextJoin_++];
    if (n.config) continue;
    ++inFlight_;
    Node* node = &n;
    auto& flow = flows_[n.index - 1];
    flow = std::make_unique<JoinFlow>(daemon_.loop(), ctx_, n.dir.key(), *plan_, n.description,
                                      SwarmAgent::kJoinBudget,
                                      [this, node](Result<JoinOutcome> r) { onJoined(*node, std::move(r)); });
    flow->start();
  }
  if (inFlight_ == 0 && nextJoin_ >= count_) endJoin();
}

void FakeNodes::onJoined(Node& n, Result<JoinOutcome> result) {
  --inFlight_;
  // The flow ends inside its client's callback: destroyed from a timer.
  finished_.push_back(std::move(flows_[n.index - 1]));
  if (!cleanup_)
    cleanup_ = daemon_.loop().after(0ms, [this] {
      cleanup_ = 0;
      finished_.clear();
    });
  if (!result) {
    ++joinsFailed_;
    if (firstJoinError_.empty()) firstJoinError_ = n.description.hostname + ": " + result.error().message;
    spdlog::warn("join of fake node {}: {}", n.description.hostname, result.error().message);
  } else if (result->raft) {
    // Admitted as a manager: no more joins with this token.
    ++joinsFailed_;
    firstJoinError_ = "fake nodes join as workers, but the token is a manager token: " +
                      n.description.hostname + " was admitted as manager " +
                      result->config.nodeId + " (demote and remove it: `shoal node demote " +
                      result->config.nodeId + "`, `shoal node rm " + result->config.nodeId +
                      "`); join with `shoal swarm join-token worker`'s token";
    spdlog::error("{}", firstJoinError_);
    nextJoin_ = count_;
  } else if (auto st = n.dir.save(result->config); !st) {
    ++joinsFailed_;
    if (firstJoinError_.empty()) firstJoinError_ = n.description.hostname + ": " + st.error().message;
  } else {
    ++joinsDone_;
    firstChecked_ = true;
    adopt(n, std::move(result->config), result->heartbeatPeriod);
  }
  if (!firstChecked_) nextJoin_ = count_;  // the first failed: the rest would too
  joinNext();
}

void FakeNodes::endJoin() {
  if (!pending_) return;
  bus::Call call = std::move(*pending_);
  pending_.reset();
  plan_.reset();
  updateStatusText();
  spdlog::info("join: {} fake nodes joined, {} failed", joinsDone_, joinsFailed_);
  if (joinsDone_ == 0 || joinsFailed_ > 0)
    return call.fail(wire::ErrorCode::Unavailable,
                     std::to_string(joinsDone_) + " fake nodes joined and " +
                         std::to_string(joinsFailed_) + " did not; the first error: " +
                         firstJoinError_ + (joinsDone_ > 0 ? "; join again for the rest" : ""));
  const Node* first = nullptr;
  for (const auto& n : nodes_)
    if (n->config) { first = n.get(); break; }
  flatbuffers::FlatBufferBuilder fbb;
  auto body = agentapi::CreateJoinReply(fbb, fbb.CreateString(first->config->nodeId),
                                        objects::NodeRole::Worker);
  call.reply(bus::message<agentapi::Envelope>(fbb, agentapi::Body::JoinReply, body.Union()));
}

void FakeNodes::leave(bus::Call call) {
  if (pending_)
    return call.fail(wire::ErrorCode::Unavailable, "a join is under way; wait for its answer");
  if (joinedNodes() == 0)
    return call.fail(wire::ErrorCode::NotFound, "no fake node is part of a swarm");
  size_t left = 0;
  for (auto& n : nodes_) {
    if (!n->config) continue;
    n->session.stop();
    n->worker.clear();
    n->config.reset();
    if (auto st = n->dir.clear(); !st)
      return call.fail(wire::ErrorCode::Internal, "fake node " + n->description.hostname + ": " +
                                                      st.error().message);
    // A node that joins again is a new node, with a new key (node_dir.h).
    auto fresh = node::NodeDir::open(n->dir.path());
    if (!fresh) return call.fail(wire::ErrorCode::Internal, fresh.error().message);
    n->dir = std::move(fresh).value();
    n->session.setNodeKey(n->dir.key());
    ++left;
  }
  spdlog::info("left the swarm: {} fake nodes", left);
  updateStatusText();
  flatbuffers::FlatBufferBuilder fbb;
  call.reply(bus::message<agentapi::Envelope>(fbb, agentapi::Body::LeaveReply,
                                              agentapi::CreateLeaveReply(fbb).Union()));
}

// docs/cluster.md "`shoal info`'s fields", for the first fake node in the swarm; the others
// are in Status.
void FakeNodes::info(bus::Call call) {
  nlohmann::json j;
  size_t joined = joinedNodes();
  size_t active = counts()["sessions"].value("active", size_t{0});
  j["LocalNodeState"] = pending_ ? "pending" : joined == 0 ? "inactive"
                                             : active == joined ? "active" : "pending";
  j["ControlAvailable"] = false;
  j["Error"] = "";
  for (const auto& n : nodes_) {
    if (!n->config) continue;
    j["NodeID"] = n->config->nodeId;
    j["NodeAddr"] = n->config->advertiseHost;
    j["ClusterID"] = n->config->clusterId;
    auto managers = nlohmann::json::array();
    for (const auto& m : n->config->managers)
      managers.push_back({{"NodeID", m.nodeId}, {"Addr", m.addr}});
    j["RemoteManagers"] = managers;
    break;
  }
  flatbuffers::FlatBufferBuilder fbb;
  auto body = agentapi::CreateInfoReply(fbb, fbb.CreateString(j.dump()));
  call.reply(bus::message<agentapi::Envelope>(fbb, agentapi::Body::InfoReply, body.Union()));
}

void FakeNodes::tasks(bus::Call call) {
  auto list = nlohmann::json::array();
  for (const auto& n : nodes_) n->worker.appendJson(list);
  call.reply(tasksReply(list));
}

void FakeNodes::fakeTask(bus::Call call) {
  std::vector<FakeTarget> targets;
  targets.reserve(nodes_.size());
  for (auto& n : nodes_) targets.push_back({&n->worker, &n->executor});
  auto st = actOnTask(targets, *call.as<agentapi::Envelope>()->body_as_FakeTaskRequest());
  if (!st) return call.fail(wireCode(st.error(), wire::ErrorCode::Internal), st.error().message);
  call.reply(fakeTaskReply());
}

// ---- what the operator sees

size_t FakeNodes::joinedNodes() const {
  size_t joined = 0;
  for (const auto& n : nodes_) joined += n->config.has_value();
  return joined;
}

nlohmann::json FakeNodes::counts() const {
  std::map<std::string, size_t> sessions, states;
  size_t tasks = 0;
  for (const auto& n : nodes_) {
    if (n->config) ++sessions[sessionStateName(n->session.state())];
    n->worker.countStates(states);
    tasks += n->worker.size();
  }
  return {{"sessions", sessions}, {"tasks", {{"assigned", tasks}, {"by_state", states}}}};
}

void FakeNodes::status(nlohmann::json& j) const {
  nlohmann::json c = counts();
  j["fake_nodes"] = {{"nodes", count_},
                     {"joined", joinedNodes()},
                     {"sessions", c["sessions"]},
                     {"joining", {{"under_way", pending_.has_value()},
                                  {"in_flight", inFlight_},
                                  {"done", joinsDone_},
                                  {"failed", joinsFailed_},
                                  {"first_error", firstJoinError_}}}};
  j["tasks"] = c["tasks"];
  j["tasks"]["executor"] = "fake";
}

void FakeNodes::updateStatusText() {
  size_t joined = joinedNodes();
  daemon_.setStatusText(joined == 0 ? std::to_string(count_) + " fake nodes, not in a swarm"
                                    : std::to_string(joined) + " of " + std::to_string(count_) +
                                          " fake nodes in the swarm");
}

}  // namespace shoal::agentd
