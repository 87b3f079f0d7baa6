#include "tests/raft/sim_host.h"

#include <flatbuffers/flatbuffers.h>
#include <zmq.hpp>

#include "services/raftd/protocols.h"

namespace shoal::raftd::sim {

uint64_t Rng::next() {
  uint64_t z = (s_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

Clock::duration Rng::between(Clock::duration lo, Clock::duration hi) {
  return Clock::duration(static_cast<Clock::rep>(
      between(static_cast<uint64_t>(lo.count()), static_cast<uint64_t>(hi.count()))));
}

uint64_t mixSeed(uint64_t a, uint64_t b, uint64_t c) {
  Rng r(a ^ (b * 0x9e3779b97f4a7c15ULL) ^ (c * 0xc2b2ae3d27d4eb4fULL));
  uint64_t v = r.next();
  return v ? v : 1;
}

// --- World ------------------------------------------------------------------------------

int64_t World::unixNanos() const {
  return kEpochUnixNanos + std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed()).count();
}

void World::insert(Clock::time_point when, Event ev) {
  Key key{std::max(when, now_), nextSeq_++};
  byId_[ev.id] = key;
  queue_.emplace(key, std::move(ev));
}

uint64_t World::at(Clock::time_point when, Incarnation owner, std::function<void()> fn) {
  uint64_t id = nextId_++;
  insert(when, {id, owner, Clock::duration::zero(),
                std::make_shared<std::function<void()>>(std::move(fn))});
  return id;
}

uint64_t World::every(Clock::duration period, Incarnation owner, std::function<void()> fn) {
  uint64_t id = nextId_++;
  insert(now_ + period, {id, owner, period, std::make_shared<std::function<void()>>(std::move(fn))});
  return id;
}

void World::cancel(uint64_t id) {
  auto it = byId_.find(id);
  if (it == byId_.end()) return;
  queue_.erase(it->second);
  byId_.erase(it);
}

void World::runUntil(Clock::time_point until) {
  while (!queue_.empty() && queue_.begin()->first.first <= until) {
    auto node = queue_.extract(queue_.begin());
    Event ev = std::move(node.mapped());
    byId_.erase(ev.id);
    if (ev.owner != 0 && !alive(ev.owner)) continue;
    now_ = node.key().first;
    ++eventsRun_;
    trace(static_cast<uint64_t>(elapsed().count()), node.key().second, ev.owner);
    // A periodic timer is due again before it runs, so that it may cancel itself.
    if (ev.period > Clock::duration::zero()) insert(now_ + ev.period, ev);
    (*ev.fn)();
  }
  now_ = std::max(now_, until);
}

Incarnation World::born() {
  Incarnation inc = nextIncarnation_++;
  alive_.insert(inc);
  return inc;
}

void World::kill(Incarnation incarnation) {
  alive_.erase(incarnation);
  for (auto it = queue_.begin(); it != queue_.end();) {
    if (it->second.owner == incarnation) {
      byId_.erase(it->second.id);
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
}

void World::trace(uint64_t a, uint64_t b, uint64_t c) {
  for (uint64_t v : {a, b, c}) {
    for (int i = 0; i < 8; ++i) {
      digest_ ^= (v >> (i * 8)) & 0xff;
      digest_ *= 0x100000001b3ULL;
    }
  }
}

// --- Network ----------------------------------------------------------------------------

void Network::cut(const std::string& from, const std::string& to) { ++cuts_[{from, to}]; }

void Network::restore(const std::string& from, const std::string& to) {
  auto it = cuts_.find({from, to});
  if (it != cuts_.end() && --it->second <= 0) cuts_.erase(it);
}

bool Network::isCut(const std::string& from, const std::string& to) const {
  return cuts_.count({from, to}) > 0;
}

SimHost* Network::host(Incarnation incarnation) const {
  auto it = hosts_.find(incarnation);
  return it == hosts_.end() || !world_.alive(incarnation) ? nullptr : it->second;
}

void Network::send(const std::string& from, const std::string& to, std::string bytes,
                   Copies copies, Arrive arrive) {
  ++stats_.sent;
  if (isCut(from, to)) {
    ++stats_.cut;
    return;
  }
  if (rng_.chance(weather.loss)) {
    ++stats_.lost;
    return;
  }
  auto shared = std::make_shared<const std::string>(std::move(bytes));
  auto fn = std::make_shared<Arrive>(std::move(arrive));
  deliverLater(from, to, shared, fn);
  if (copies == Copies::MaybeTwo && rng_.chance(weather.duplicate)) {
    ++stats_.duplicated;
    deliverLater(from, to, shared, fn);
  }
}

void Network::deliverLater(const std::string& from, const std::string& to,
                           std::shared_ptr<const std::string> bytes,
                           std::shared_ptr<Arrive> arrive) {
  auto delay = rng_.chance(weather.slow) ? rng_.between(weather.minSlow, weather.maxSlow)
                                         : rng_.between(weather.minDelay, weather.maxDelay);
  // Already on the wire: it arrives even if its sender dies meanwhile (owner 0), and goes to
  // whoever lives at the address by then (a restarted process gets what a reconnecting
  // ZeroMQ socket would hand it).
  world_.at(world_.now() + delay, 0, [this, from, to, bytes, arrive] {
    // A partition that began while the message was in flight drops it too.
    if (isCut(from, to)) {
      ++stats_.cut;
      return;
    }
    Endpoint ep = resolve_(to);
    if (!ep.node) {
      ++stats_.unreachable;
      return;
    }
    ++stats_.delivered;
    world_.trace(ep.incarnation, bytes->size());
    (*arrive)(ep, *bytes);
  });
}

void Network::dispatch(const Endpoint& to, std::string_view bytes, bus::Call::Sink sink) {
  static const bus::Protocol* const kPeerProtocols[] = {&kRaftProtocol, &kStoreProtocol};
  auto frame = bus::decode(zmq::message_t(bytes.data(), bytes.size()), kPeerProtocols);
  if (!frame) {
    problems.push_back("a message between nodes does not decode: " + frame.error().message);
    return;
  }
  bool raft = &frame->protocol() == &kRaftProtocol;
  auto call = bus::Call::local(std::move(frame).value(), std::move(sink));
  if (raft)
    to.node->servePeer(std::move(call));
  else
    to.node->serveStore(std::move(call));
}

// --- SimHost ----------------------------------------------------------------------------

namespace {

// The header of a finished envelope, rewritten in place as the bus does when it sends.
void setEnvelopeHeader(std::string& envelope, uint64_t requestId, uint32_t timeoutMs) {
  auto* table = flatbuffers::GetMutableRoot<flatbuffers::Table>(envelope.data());
  auto* header = const_cast<wire::Header*>(table->GetStruct<const wire::Header*>(4));
  *header = wire::Header(requestId, timeoutMs, 0, header->version(), wire::Kind::Request);
}

}  // namespace

SimHost::SimHost(World& world, Network& net, Rng& rng, std::string address,
                 Incarnation incarnation)
    : world_(world), net_(net), rng_(rng), address_(std::move(address)), incarnation_(incarnation) {
  net_.enroll(incarnation_, this);
}

SimHost::~SimHost() { net_.leave(incarnation_); }

NodeHost::TimerId SimHost::after(Clock::duration delay, std::function<void()> fn) {
  return world_.at(world_.now() + delay, incarnation_, std::move(fn));
}

NodeHost::TimerId SimHost::every(Clock::duration period, std::function<void()> fn) {
  return world_.every(period, incarnation_, std::move(fn));
}

void SimHost::post(std::function<void()> fn) { world_.at(world_.now(), incarnation_, std::move(fn)); }

void SimHost::background(std::function<Status()> work, std::function<void(Status)> done) {
  // The work runs a little later, as on a thread of its own: the shell goes on meanwhile.
  // Its completion comes later still, so a crash may fall between the two and leave the
  // work's files written but not recorded.
  uint64_t id = nextWork_++;
  work_[id] = {std::move(work), std::move(done)};
  world_.at(world_.now() + rng_.between(0ms, 20ms), incarnation_, [this, id] { runWork(id); });
}

void SimHost::runWork(uint64_t id) {
  auto it = work_.find(id);
  if (it == work_.end()) return;
  Work w = std::move(it->second);
  work_.erase(it);
  Status st = w.work();
  uint64_t event = nextWork_++;
  dones_[event] = world_.at(world_.now() + rng_.between(1ms, 20ms), incarnation_,
                            [this, event, done = std::move(w.done), st] {
                              dones_.erase(event);
                              done(st);
                            });
}

// As the daemon's host joins its threads: what was handed over runs to its end, and no
// completion is delivered any more.
void SimHost::waitBackground() {
  while (!work_.empty()) runWork(work_.begin()->first);
  for (auto& [event, timer] : dones_) world_.cancel(timer);
  dones_.clear();
}

void SimHost::die() {
  work_.clear();
  calls_.clear();
}

void SimHost::postToPeer(const std::string& address, bus::Buffer message) {
  bus::setHeader(message, 0, wire::Kind::Request, 0, 0);
  connected_.insert(address);
  net_.send(address_, address,
            std::string(reinterpret_cast<const char*>(message.data()), message.size()),
            Network::Copies::MaybeTwo, [&net = net_](const Endpoint& to, std::string_view bytes) {
              net.dispatch(to, bytes, [](std::string_view) {});
            });
}

uint64_t SimHost::callPeer(const std::string& address, const bus::Protocol&,
                           std::string envelope, bus::Millis timeout, ReplyFn fn) {
  uint64_t id = nextCall_++;
  setEnvelopeHeader(envelope, id, static_cast<uint32_t>(timeout.count()));
  uint64_t timer = world_.at(world_.now() + timeout, incarnation_, [this, id, address] {
    auto it = calls_.find(id);
    if (it == calls_.end()) return;
    auto fn = std::move(it->second.fn);
    calls_.erase(it);
    fn(Error{"no answer from " + address + " in time", static_cast<int>(wire::ErrorCode::DeadlineExceeded)});
  });
  calls_[id] = {std::move(fn), timer};
  connected_.insert(address);
  // The answer travels back over the same network, to this incarnation if it still lives.
  auto reply = [&net = net_, caller = incarnation_, from = address, to = address_,
                id](const Endpoint& served, std::string_view bytes) {
    net.dispatch(served, bytes, [&net, caller, from, to, id, server = served.incarnation](
                                    std::string_view answer) {
      if (!net.host(server)) return;  // a dying process sends nothing
      net.send(from, to, std::string(answer), Network::Copies::One, [&net, caller, id](const Endpoint&, std::string_view a) {
        if (SimHost* h = net.host(caller)) h->answered(id, a);
      });
    });
  };
  net_.send(address_, address, std::move(envelope), Network::Copies::One, std::move(reply));
  return id;
}

void SimHost::answered(uint64_t id, std::string_view envelope) {
  auto it = calls_.find(id);
  if (it == calls_.end()) return;  // timed out or cancelled: a late answer
  static const bus::Protocol* const kPeerProtocols[] = {&kRaftProtocol, &kStoreProtocol};
  auto frame = bus::decode(zmq::message_t(envelope.data(), envelope.size()), kPeerProtocols);
  auto fn = std::move(it->second.fn);
  world_.cancel(it->second.timer);
  calls_.erase(it);
  if (!frame) {
    net_.problems.push_back("an answer between nodes does not decode: " + frame.error().message);
    return fn(frame.error());
  }
  if (frame->kind() == wire::Kind::Error) return fn(bus::errorFrom(*frame));
  fn(std::move(frame).value());
}

void SimHost::cancelPeerCall(const std::string&, uint64_t id) {
  auto it = calls_.find(id);
  if (it == calls_.end()) return;
  world_.cancel(it->second.timer);
  calls_.erase(it);
}

void SimHost::dropPeer(const std::string& address) { connected_.erase(address); }

void SimHost::fatal(const std::string& why) {
  if (onFatal) onFatal(why);
}

}  // namespace shoal::raftd::sim
