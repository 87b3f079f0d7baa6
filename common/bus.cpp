#include "common/bus.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <grp.h>

#include <spdlog/spdlog.h>

namespace shoal::bus {
namespace {

// The envelope's first field (vtable slot 0) is the header struct, slot 1 the error.
constexpr flatbuffers::voffset_t kHeaderField = 4;
constexpr flatbuffers::voffset_t kErrorField = 6;
constexpr flatbuffers::voffset_t kBodyTypeField = 8;
constexpr flatbuffers::voffset_t kBodyField = 10;

const wire::Header* headerOf(const void* data) {
  auto* table = flatbuffers::GetRoot<flatbuffers::Table>(data);
  return table->GetStruct<const wire::Header*>(kHeaderField);
}

// How often held messages are tried again, and how many one peer may have held: a peer that
// reads nothing for long enough loses the rest (counted in Stats::dropped, and warned of).
constexpr auto kRetryPeriod = std::chrono::milliseconds(20);
constexpr size_t kMaxHeldPerPeer = 1024;

// A send that cannot go at once. ZeroMQ learns how far the peer has read from commands that
// send() takes in at most once a millisecond or so, so a queue may look full that is not:
// reading ZMQ_EVENTS takes them in, and then one more try says whether it really is.
template <class Send>
bool sendNow(zmq::socket_t& socket, Send send) {
  if (send()) return true;
  (void)socket.get(zmq::sockopt::events);
  return send();
}

std::string_view bytesOf(const Buffer& buf) {
  return {reinterpret_cast<const char*>(buf.data()), buf.size()};
}

std::string hexPrefix(std::span<const uint8_t> bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < bytes.size() && i < 8; ++i) {
    out += digits[bytes[i] >> 4];
    out += digits[bytes[i] & 15];
  }
  return out;
}

}  // namespace

const wire::Error* Frame::error() const {
  auto* table = flatbuffers::GetRoot<flatbuffers::Table>(msg_.data());
  return table->GetPointer<const wire::Error*>(kErrorField);
}

Result<const Protocol*> verify(std::span<const uint8_t> bytes,
                               std::span<const Protocol* const> protocols, const Limits& limits) {
  if (bytes.size() > limits.maxBytes)
    return Error{"message of " + std::to_string(bytes.size()) + " bytes is over the limit of " +
                     std::to_string(limits.maxBytes) + " bytes",
                 static_cast<int>(wire::ErrorCode::BadMessage)};
  // Root offset (4 bytes), identifier (4 bytes), and at least a vtable and a table.
  if (bytes.size() < 16)
    return Error{"message of " + std::to_string(bytes.size()) +
                     " bytes is too short to be a shoal envelope",
                 static_cast<int>(wire::ErrorCode::BadMessage)};
  const Protocol* protocol = nullptr;
  for (const Protocol* p : protocols)
    if (std::memcmp(bytes.data() + 4, p->identifier.data(), 4) == 0) protocol = p;
  if (!protocol)
    return Error{"message is of no protocol served here (identifier bytes " +
                     hexPrefix(bytes.subspan(4, 4)) + ")",
                 static_cast<int>(wire::ErrorCode::UnknownProtocol)};
  flatbuffers::Verifier verifier(bytes.data(), bytes.size(), limits.maxDepth, limits.maxTables);
  if (!protocol->verify(verifier))
    return Error{"message failed the " + std::string(protocol->name) +
                     " protocol's verifier (truncated or corrupt buffer)",
                 static_cast<int>(wire::ErrorCode::BadMessage)};
  // The verifier accepts a missing header only if the schema forgot `required`.
  if (!headerOf(bytes.data()))
    return Error{"message has no header", static_cast<int>(wire::ErrorCode::BadMessage)};
  return protocol;
}

Result<Frame> decode(zmq::message_t msg, std::span<const Protocol* const> protocols,
                     const Limits& limits) {
  auto protocol = verify({static_cast<const uint8_t*>(msg.data()), msg.size()}, protocols, limits);
  if (!protocol) return protocol.error();
  wire::Header header = *headerOf(msg.data());
  return Frame(std::move(msg), *protocol, header);
}

Buffer finish(flatbuffers::FlatBufferBuilder& fbb, const Protocol& protocol, wire::Kind kind,
              uint8_t bodyType, flatbuffers::Offset<void> body,
              flatbuffers::Offset<wire::Error> error) {
  wire::Header header(0, 0, 0, protocol.version, kind);
  auto start = fbb.StartTable();
  if (!body.IsNull()) fbb.AddOffset(kBodyField, body);
  if (!error.IsNull()) fbb.AddOffset(kErrorField, error);
  fbb.AddStruct(kHeaderField, &header);
  if (bodyType != 0) fbb.AddElement<uint8_t>(kBodyTypeField, bodyType, 0);
  flatbuffers::Offset<flatbuffers::Table> root(fbb.EndTable(start));
  fbb.Finish(root, protocol.identifier.data());
  return fbb.Release();
}

Buffer control(const Protocol& protocol, wire::Kind kind, uint64_t requestId, uint32_t credits,
               wire::ErrorCode code, std::string_view message) {
  flatbuffers::FlatBufferBuilder fbb(128 + message.size());
  flatbuffers::Offset<wire::Error> error;
  if (code != wire::ErrorCode::None)
    error = wire::CreateError(fbb, code, fbb.CreateString(message.data(), message.size()));
  Buffer buf = finish(fbb, protocol, kind, 0, 0, error);
  setHeader(buf, requestId, kind, 0, credits);
  return buf;
}

void setHeader(Buffer& buf, uint64_t requestId, wire::Kind kind, uint32_t timeoutMs,
               uint32_t credits) {
  // The header struct is stored inline in the finished buffer; rewrite it there.
  auto* header = const_cast<wire::Header*>(headerOf(buf.data()));
  *header = wire::Header(requestId, timeoutMs, credits, header->version(), kind);
}

const char* errorCodeName(wire::ErrorCode code) { return wire::EnumNameErrorCode(code); }

Error errorFrom(const Frame& frame) {
  const wire::Error* e = frame.error();
  if (!e) return Error{"the server failed the call without saying why",
                       static_cast<int>(wire::ErrorCode::Internal)};
  return Error{e->message() ? e->message()->str() : errorCodeName(e->code()),
               static_cast<int>(e->code())};
}

void RateLimitedWarning::warn(const std::string& message) {
  auto now = Loop::Clock::now();
  if (now - windowStart_ >= period_) {
    if (suppressed_ > 0)
      spdlog::warn("{} more like this in the last {}s were not logged", suppressed_, period_.count());
    windowStart_ = now;
    inWindow_ = 0;
    suppressed_ = 0;
  }
  if (inWindow_ < burst_) {
    ++inWindow_;
    spdlog::warn("{}", message);
  } else {
    ++suppressed_;
  }
}

// --- Server ---------------------------------------------------------------------------

bool Call::expired() const { return deadline_ && Loop::Clock::now() > *deadline_; }

Call Call::local(Frame request, Sink sink) {
  Call call(nullptr, {}, {}, std::move(request), std::nullopt);
  call.sink_ = std::move(sink);
  return call;
}

void Call::deliver(std::string_view envelope) {
  if (!server_) {
    sink_(envelope);
    return;
  }
  // A caller with a deadline hears of a lost answer from it; one without (a stream's
  // opening request) would wait forever. Request id 0 is a one-way post: nobody waits.
  server_->answer(peer_, envelope, deadline_.has_value() || requestId() == 0);
}

void Call::reply(Buffer buf) {
  assert(!answered_);
  answered_ = true;
  if (expired()) {
    ++server_->stats_.expired;
    return;
  }
  setHeader(buf, requestId(), wire::Kind::Reply, 0, 0);
  deliver(bytesOf(buf));
}

void Call::replyRaw(std::string_view envelope) {
  assert(!answered_);
  answered_ = true;
  if (expired()) {
    ++server_->stats_.expired;
    return;
  }
  std::string copy(envelope);
  auto* header = const_cast<wire::Header*>(headerOf(copy.data()));
  *header = wire::Header(requestId(), 0, 0, header->version(), header->kind());
  deliver(copy);
}

void Call::fail(wire::ErrorCode code, std::string message) {
  assert(!answered_);
  answered_ = true;
  if (expired()) {
    ++server_->stats_.expired;
    return;
  }
  deliver(bytesOf(control(request_.protocol(), wire::Kind::Error, requestId(), 0, code, message)));
}

std::shared_ptr<ServerStream> Call::openStream() {
  assert(!answered_);
  answered_ = true;
  auto stream = std::shared_ptr<ServerStream>(
      new ServerStream(server_, peer_, requestId(), request_.header().credits()));
  stream->protocol_ = &request_.protocol();
  if (server_)
    server_->streams_[{peer_, requestId()}] = stream;
  else
    stream->sink_ = sink_;
  return stream;
}

bool ServerStream::send(Buffer buf) {
  if (!open_ || credits_ == 0) return false;
  --credits_;
  setHeader(buf, id_, wire::Kind::StreamItem, 0, 0);
  if (!server_) {
    sink_(bytesOf(buf));
    return true;
  }
  switch (server_->trySend(peer_, bytesOf(buf))) {
    case Server::Sent::Yes:
      return true;
    case Server::Sent::PeerGone:
      return false;  // trySend closed the stream
    case Server::Sent::QueueFull:
      break;
  }
  // Skipping the item would leave a gap the client cannot see; ending the stream here
  // tells it to resync from the last item it got, which is the one before this.
  ++server_->stats_.fellBehind;
  server_->dropWarning_.warn(fmt::format(
      "{} stream {} ended: its client fell behind (its queue of {} messages is full)",
      protocol_->name, id_, server_->limits_.highWater));
  end(wire::ErrorCode::ResourceExhausted,
      "the client fell behind (the server's queue to it was full): the stream was ended "
      "after the last item it got; resync from there");
  return false;
}

void ServerStream::end() { end(wire::ErrorCode::None, {}); }

void ServerStream::end(wire::ErrorCode code, std::string message) {
  if (!open_) return;
  // StreamEnd needs no credit, and must arrive: it is held until it goes.
  Buffer buf = control(*protocol_, wire::Kind::StreamEnd, id_, 0, code, message);
  if (server_)
    server_->sendOrHold(peer_, bytesOf(buf));
  else
    sink_(bytesOf(buf));
  close();
}

void ServerStream::close() {
  if (!open_) return;
  open_ = false;
  if (server_) {
    auto keep = server_->streams_[{peer_, id_}];  // keep this alive through the erase
    server_->streams_.erase({peer_, id_});
  }
  if (onClose_) onClose_();
}

Server::Server(Loop& loop, zmq::context_t& ctx, Limits limits)
    : loop_(loop), socket_(ctx, zmq::socket_type::router), limits_(limits) {
  socket_.set(zmq::sockopt::linger, 0);
  // Fail a send to a peer that went away instead of dropping it silently: the server then
  // ends that peer's streams.
  socket_.set(zmq::sockopt::router_mandatory, 1);
  socket_.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(limits_.maxBytes) + 1024);
  socket_.set(zmq::sockopt::sndhwm, limits_.highWater);
  socket_.set(zmq::sockopt::rcvhwm, limits_.highWater);
}

Server::~Server() { close(); }

void Server::setCurve(const CurveServerKeys& keys, std::string zapDomain) {
  socket_.set(zmq::sockopt::curve_server, 1);
  socket_.set(zmq::sockopt::curve_secretkey, keys.secretKey);
  socket_.set(zmq::sockopt::zap_domain, zapDomain);
}

Status Server::bind(const std::string& endpoint) {
  try {
    socket_.bind(endpoint);
  } catch (const zmq::error_t& e) {
    return Error{"cannot listen on " + endpoint + ": " + e.what(), e.num()};
  }
  if (endpoint.starts_with("ipc://")) {
    ipcPath_ = endpoint.substr(6);
    // Local sockets are for root and the shoal group (DESIGN.md §1).
    ::chmod(ipcPath_.c_str(), 0660);
    if (struct group* g = ::getgrnam("shoal"))
      if (::chown(ipcPath_.c_str(), 0, g->gr_gid) != 0)
        spdlog::debug("could not give {} to group shoal: {}", ipcPath_, std::strerror(errno));
  }
  loop_.watch(socket_, [this] { onReadable(); });
  return {};
}

std::string Server::endpoint() const { return socket_.get(zmq::sockopt::last_endpoint); }

void Server::serve(const Protocol& protocol, Handler handler) {
  if (!handlers_.count(&protocol)) protocols_.push_back(&protocol);
  handlers_[&protocol] = std::move(handler);
}

size_t Server::held() const {
  size_t n = 0;
  for (auto& [peer, messages] : held_) n += messages.size();
  return n;
}

void Server::close() {
  if (closed_) return;
  while (!streams_.empty()) streams_.begin()->second->end(wire::ErrorCode::Unavailable, "server is shutting down");
  closed_ = true;
  if (retryTimer_) loop_.cancel(retryTimer_);
  held_.clear();
  loop_.unwatch(socket_);
  socket_.close();
  if (!ipcPath_.empty()) ::unlink(ipcPath_.c_str());
}

void Server::onReadable() {
  // Drain what is there, but yield to the loop after a batch so timers still run.
  for (int i = 0; i < 256 && !closed_; ++i) {
    zmq::message_t peer;
    if (!socket_.recv(peer, zmq::recv_flags::dontwait)) return;
    std::string peerKey;
    std::vector<zmq::message_t> parts;
    while (socket_.get(zmq::sockopt::rcvmore)) {
      zmq::message_t part;
      if (!socket_.recv(part, zmq::recv_flags::dontwait)) break;
      if (parts.size() < 2) parts.push_back(std::move(part));
    }
    if (parts.size() != 1) {
      ++stats_.badMessages;
      badWarning_.warn(fmt::format("dropped a message of {} parts on the {} socket (expected 1)",
                                   parts.size(), ipcPath_.empty() ? "tcp" : ipcPath_));
      continue;
    }
    // With CURVE, ZAP's user id is the peer's public key (curve::ZapHandler sets it).
    if (const char* k = zmq_msg_gets(parts[0].handle(), "User-Id")) peerKey = k;
    handle(peer.to_string(), std::move(parts[0]), std::move(peerKey));
  }
}

void Server::handle(std::string peer, zmq::message_t msg, std::string peerKey) {
  ++stats_.received;
  auto decoded = decode(std::move(msg), protocols_, limits_);
  if (!decoded) {
    ++stats_.badMessages;
    badWarning_.warn("bad message from a peer: " + decoded.error().message);
    // Answer in the protocol named, or in the first protocol served; request id 0 since
    // nothing in an unverified buffer can be trusted.
    answer(peer,
           bytesOf(control(*protocols_.front(), wire::Kind::Error, 0, 0,
                           static_cast<wire::ErrorCode>(decoded.error().code),
                           decoded.error().message + "; the message was dropped")),
           true);
    return;
  }
  Frame frame = std::move(decoded).value();
  const Protocol* protocol = &frame.protocol();
  uint64_t id = frame.requestId();
  switch (frame.kind()) {
    case wire::Kind::Request: {
      std::optional<Loop::Clock::time_point> deadline;
      if (frame.header().timeout_ms() > 0)
        deadline = loop_.now() + Millis(frame.header().timeout_ms());
      try {
        handlers_[protocol](Call(this, peer, std::move(peerKey), std::move(frame), deadline));
      } catch (const std::exception& e) {
        // A handler's bug must not take the daemon down with it; the caller hears of it.
        spdlog::error("{} handler failed on request {}: {}", protocol->name, id, e.what());
        answer(peer,
               bytesOf(control(*protocol, wire::Kind::Error, id, 0, wire::ErrorCode::Internal,
                               std::string("internal error: ") + e.what() +
                                   " (see the daemon's log)")),
               deadline.has_value() || id == 0);
      }
      return;
    }
    case wire::Kind::Credit: {
      auto it = streams_.find({peer, id});
      if (it == streams_.end()) return;  // ended already; the grant crossed our StreamEnd
      auto stream = it->second;
      bool wasEmpty = stream->credits_ == 0;
      stream->credits_ += frame.header().credits();
      if (wasEmpty && stream->credits_ > 0 && stream->onCredit_) stream->onCredit_();
      return;
    }
    case wire::Kind::Cancel: {
      auto it = streams_.find({peer, id});
      if (it != streams_.end()) it->second->close();
      return;
    }
    default:
      ++stats_.badMessages;
      badWarning_.warn(fmt::format("{} message of kind {} is not valid from a client; dropped",
                                   protocol->name, wire::EnumNameKind(frame.kind())));
      answer(peer,
             bytesOf(control(*protocol, wire::Kind::Error, id, 0, wire::ErrorCode::BadMessage,
                             std::string("a client may send only Request, Credit or Cancel, not ") +
                                 wire::EnumNameKind(frame.kind()))),
             true);
  }
}

Server::Sent Server::trySend(const std::string& peer, std::string_view bytes) {
  if (closed_) return Sent::PeerGone;
  try {
    zmq::message_t id(peer.data(), peer.size());
    // The bytes are copied into the message; ZeroMQ may keep it after we return.
    zmq::message_t body(bytes.data(), bytes.size());
    // With ROUTER_MANDATORY a full queue refuses the first part, so nothing half-sent is
    // left behind; the second part goes wherever the first did.
    if (!sendNow(socket_, [&] {
          return socket_.send(id, zmq::send_flags::sndmore | zmq::send_flags::dontwait).has_value();
        }))
      return Sent::QueueFull;
    if (!socket_.send(body, zmq::send_flags::dontwait)) return Sent::QueueFull;
    ++stats_.sent;
    return Sent::Yes;
  } catch (const zmq::error_t& e) {
    if (e.num() != EHOSTUNREACH) {
      spdlog::warn("send to a peer failed: {}", e.what());
      return Sent::QueueFull;
    }
    // The peer disconnected (ROUTER_MANDATORY says so rather than dropping): nobody is left
    // to tell, so its streams end quietly.
    closeStreamsOf(peer);
    return Sent::PeerGone;
  }
}

void Server::closeStreamsOf(const std::string& peer) {
  std::vector<std::shared_ptr<ServerStream>> gone;
  for (auto& [key, s] : streams_)
    if (key.first == peer) gone.push_back(s);
  for (auto& s : gone) s->close();
}

void Server::answer(const std::string& peer, std::string_view bytes, bool coveredByDeadline) {
  if (!coveredByDeadline) {
    sendOrHold(peer, bytes);
    return;
  }
  if (trySend(peer, bytes) == Sent::QueueFull) {
    ++stats_.dropped;
    dropWarning_.warn("dropped a reply to a client whose queue is full (it is not reading); "
                      "its deadline will answer the call");
  }
}

void Server::sendOrHold(const std::string& peer, std::string_view bytes) {
  if (trySend(peer, bytes) != Sent::QueueFull) return;
  auto& messages = held_[peer];
  if (messages.size() >= kMaxHeldPerPeer) {
    ++stats_.dropped;
    dropWarning_.warn(fmt::format("a client has not read for long: {} messages are held for it "
                                  "already, and one more was dropped",
                                  messages.size()));
    return;
  }
  messages.emplace_back(bytes);
  if (!retryTimer_) retryTimer_ = loop_.after(kRetryPeriod, [this] { retryHeld(); });
}

void Server::retryHeld() {
  retryTimer_ = 0;
  // Taken out first: a send may close streams, whose callbacks may hold more.
  auto pending = std::exchange(held_, {});
  for (auto& [peer, messages] : pending) {
    for (auto& bytes : messages) {
      switch (trySend(peer, bytes)) {
        case Sent::Yes:
          break;
        case Sent::PeerGone:
          ++stats_.dropped;
          break;
        case Sent::QueueFull:
          held_[peer].push_back(std::move(bytes));
          break;
      }
    }
  }
  if (!held_.empty() && !closed_) retryTimer_ = loop_.after(kRetryPeriod, [this] { retryHeld(); });
}

// --- Client ---------------------------------------------------------------------------

Client::Client(Loop& loop, zmq::context_t& ctx, const Protocol& protocol, Limits limits)
    : loop_(loop), ctx_(ctx), socket_(ctx, zmq::socket_type::dealer), protocol_(protocol), limits_(limits) {
  socket_.set(zmq::sockopt::linger, 0);
  socket_.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(limits_.maxBytes) + 1024);
  // Do not queue requests for a server that is not there yet beyond what deadlines allow.
  socket_.set(zmq::sockopt::immediate, 0);
  socket_.set(zmq::sockopt::sndhwm, limits_.highWater);
  socket_.set(zmq::sockopt::rcvhwm, limits_.highWater);
  loop_.watch(socket_, [this] { onReadable(); });
}

Client::~Client() {
  for (auto& [id, c] : calls_) loop_.cancel(c.timer);
  if (retryTimer_) loop_.cancel(retryTimer_);
  loop_.unwatch(socket_);
  if (monitor_) {
    loop_.unwatch(*monitor_);
    zmq_socket_monitor(socket_.handle(), nullptr, 0);
  }
}

void Client::onDisconnect(std::function<void()> fn) {
  onDisconnect_ = std::move(fn);
  if (monitor_) return;
  static std::atomic<uint64_t> counter{0};
  std::string endpoint = "inproc://shoal-client-monitor-" + std::to_string(++counter);
  if (zmq_socket_monitor(socket_.handle(), endpoint.c_str(), ZMQ_EVENT_DISCONNECTED) != 0) {
    spdlog::warn("cannot watch {} connections: {}", protocol_.name, zmq_strerror(zmq_errno()));
    return;
  }
  monitor_ = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::pair);
  monitor_->set(zmq::sockopt::linger, 0);
  monitor_->connect(endpoint);
  loop_.watch(*monitor_, [this] {
    for (int i = 0; i < 64; ++i) {
      // Each event is two frames: 6 bytes (event id, value), then the endpoint.
      zmq::message_t event, address;
      if (!monitor_->recv(event, zmq::recv_flags::dontwait)) return;
      if (monitor_->get(zmq::sockopt::rcvmore)) (void)monitor_->recv(address);
      if (event.size() >= 2 && onDisconnect_) {
        uint16_t id;
        std::memcpy(&id, event.data(), sizeof id);
        if (id == ZMQ_EVENT_DISCONNECTED) onDisconnect_();
      }
    }
  });
}

void Client::setCurve(const CurveClientKeys& keys) {
  socket_.set(zmq::sockopt::curve_serverkey, keys.serverPublicKey);
  socket_.set(zmq::sockopt::curve_publickey, keys.publicKey);
  socket_.set(zmq::sockopt::curve_secretkey, keys.secretKey);
}

Status Client::connect(const std::string& endpoint) {
  try {
    socket_.connect(endpoint);
  } catch (const zmq::error_t& e) {
    return Error{"cannot connect to " + endpoint + ": " + e.what(), e.num()};
  }
  return {};
}

bool Client::trySend(std::string_view bytes) {
  zmq::message_t msg(bytes.data(), bytes.size());
  if (!sendNow(socket_, [&] { return socket_.send(msg, zmq::send_flags::dontwait).has_value(); }))
    return false;
  ++stats_.sent;
  return true;
}

void Client::send(std::string_view bytes) {
  if (trySend(bytes)) return;
  ++stats_.dropped;
  dropWarning_.warn(fmt::format("dropped a message to the {} server, whose queue is full (it is "
                                "not reading); a call's deadline will answer it",
                                protocol_.name));
}

void Client::sendOrHold(std::string_view bytes) {
  // Behind what is held already: a stream's request must go before its credits and cancel.
  if (held_.empty() && trySend(bytes)) return;
  if (held_.size() >= kMaxHeldPerPeer) {
    ++stats_.dropped;
    dropWarning_.warn(fmt::format("the {} server has not read for long: {} messages are held "
                                  "for it already, and one more was dropped",
                                  protocol_.name, held_.size()));
    return;
  }
  held_.emplace_back(bytes);
  if (!retryTimer_) retryTimer_ = loop_.after(kRetryPeriod, [this] { retryHeld(); });
}

void Client::retryHeld() {
  retryTimer_ = 0;
  size_t sent = 0;
  while (sent < held_.size() && trySend(held_[sent])) ++sent;
  held_.erase(held_.begin(), held_.begin() + static_cast<std::ptrdiff_t>(sent));
  if (!held_.empty()) retryTimer_ = loop_.after(kRetryPeriod, [this] { retryHeld(); });
}

void Client::post(Buffer message) {
  setHeader(message, 0, wire::Kind::Request, 0, 0);
  send(bytesOf(message));
}

uint64_t Client::callRaw(std::string envelope, Millis timeout, ReplyFn fn) {
  uint64_t id = track(timeout, std::move(fn));
  auto* header = const_cast<wire::Header*>(headerOf(envelope.data()));
  *header = wire::Header(id, static_cast<uint32_t>(std::max<int64_t>(1, timeout.count())), 0,
                         header->version(), wire::Kind::Request);
  send(envelope);
  return id;
}

void Client::sendRaw(std::string_view bytes) { send(bytes); }

uint64_t Client::call(Buffer request, Millis timeout, ReplyFn fn) {
  uint64_t id = track(timeout, std::move(fn));
  setHeader(request, id, wire::Kind::Request,
            static_cast<uint32_t>(std::max<int64_t>(1, timeout.count())), 0);
  send(bytesOf(request));
  return id;
}

uint64_t Client::track(Millis timeout, ReplyFn fn) {
  uint64_t id = nextId_++;
  uint32_t timeoutMs = static_cast<uint32_t>(std::max<int64_t>(1, timeout.count()));
  auto timer = loop_.after(timeout, [this, id, timeoutMs] {
    auto it = calls_.find(id);
    if (it == calls_.end()) return;
    auto done = std::move(it->second.fn);
    calls_.erase(it);
    ++stats_.expired;
    done(Error{std::string(protocol_.name) +  " request got no answer within " + std::to_string(timeoutMs) + "ms",
               static_cast<int>(wire::ErrorCode::DeadlineExceeded)});
  });
  calls_[id] = {std::move(fn), timer};
  return id;
}

uint64_t Client::openStream(Buffer request, uint32_t window, ItemFn onItem, EndFn onEnd,
                            bool autoGrant) {
  uint64_t id = nextId_++;
  setHeader(request, id, wire::Kind::Request, 0, window);
  streams_[id] = {std::move(onItem), std::move(onEnd), window, window, 0, autoGrant};
  // No deadline covers a stream: its request, credits and cancel must all arrive.
  sendOrHold(bytesOf(request));
  return id;
}

void Client::grant(uint64_t streamId, uint32_t credits) {
  auto it = streams_.find(streamId);
  if (it == streams_.end() || credits == 0) return;
  it->second.outstanding += credits;
  sendOrHold(bytesOf(control(protocol_, wire::Kind::Credit, streamId, credits)));
}

void Client::cancel(uint64_t id) {
  if (auto it = calls_.find(id); it != calls_.end()) {
    loop_.cancel(it->second.timer);
    calls_.erase(it);
  }
  if (streams_.erase(id)) sendOrHold(bytesOf(control(protocol_, wire::Kind::Cancel, id)));
}

void Client::onReadable() {
  for (int i = 0; i < 256; ++i) {
    zmq::message_t msg;
    if (!socket_.recv(msg, zmq::recv_flags::dontwait)) return;
    bool more = socket_.get(zmq::sockopt::rcvmore);
    while (socket_.get(zmq::sockopt::rcvmore)) {
      zmq::message_t rest;
      if (!socket_.recv(rest, zmq::recv_flags::dontwait)) break;
    }
    ++stats_.received;
    const Protocol* accepted[] = {&protocol_};
    auto decoded = more ? Result<Frame>(Error{"message of several parts"})
                        : decode(std::move(msg), accepted, limits_);
    if (!decoded) {
      ++stats_.badMessages;
      badWarning_.warn(std::string("bad message from the ") + std::string(protocol_.name) +
                       " server dropped: " + decoded.error().message);
      continue;
    }
    dispatch(std::move(decoded).value());
  }
}

void Client::dispatch(Frame frame) {
  uint64_t id = frame.requestId();
  switch (frame.kind()) {
    case wire::Kind::Reply:
    case wire::Kind::Error: {
      if (auto it = calls_.find(id); it != calls_.end()) {
        loop_.cancel(it->second.timer);
        auto fn = std::move(it->second.fn);
        calls_.erase(it);
        if (frame.kind() == wire::Kind::Error)
          fn(errorFrom(frame));
        else
          fn(std::move(frame));
        return;
      }
      if (auto it = streams_.find(id); it != streams_.end() && frame.kind() == wire::Kind::Error) {
        auto onEnd = std::move(it->second.onEnd);
        streams_.erase(it);
        if (onEnd) onEnd(errorFrom(frame));
        return;
      }
      if (frame.kind() == wire::Kind::Error && id == 0)
        badWarning_.warn(std::string("the ") + std::string(protocol_.name) +
                         " server refused a message: " + errorFrom(frame).message);
      // Otherwise a late answer to a call that timed out or was cancelled.
      return;
    }
    case wire::Kind::StreamItem: {
      auto it = streams_.find(id);
      if (it == streams_.end()) return;  // cancelled; items in flight are dropped
      auto& s = it->second;
      if (s.outstanding == 0) {
        // The server outran the credits it was given: a protocol violation.
        ++stats_.badMessages;
        auto onEnd = std::move(s.onEnd);
        streams_.erase(it);
        sendOrHold(bytesOf(control(protocol_, wire::Kind::Cancel, id)));
        if (onEnd) onEnd(Error{"the server sent more stream items than it had credits for",
                               static_cast<int>(wire::ErrorCode::BadMessage)});
        return;
      }
      --s.outstanding;
      ++s.consumed;
      auto onItem = s.onItem;  // the callback may cancel the stream
      onItem(frame);
      it = streams_.find(id);
      if (it != streams_.end() && it->second.autoGrant &&
          it->second.consumed >= std::max<uint32_t>(1, it->second.window / 2)) {
        uint32_t n = it->second.consumed;
        it->second.consumed = 0;
        grant(id, n);
      }
      return;
    }
    case wire::Kind::StreamEnd: {
      auto it = streams_.find(id);
      if (it == streams_.end()) return;
      auto onEnd = std::move(it->second.onEnd);
      streams_.erase(it);
      Status st;
      if (frame.error() && frame.error()->code() != wire::ErrorCode::None) st = errorFrom(frame);
      if (onEnd) onEnd(st);
      return;
    }
    default:
      ++stats_.badMessages;
      badWarning_.warn(std::string("unexpected ") + wire::EnumNameKind(frame.kind()) +
                       " message from the " + std::string(protocol_.name) + " server; dropped");
  }
}

// --- SyncClient -----------------------------------------------------------------------

SyncClient::SyncClient(const Protocol& protocol, Limits limits)
    : client_(loop_, ctx_, protocol, limits) {}

Status SyncClient::connect(const std::string& endpoint) { return client_.connect(endpoint); }

Result<Frame> SyncClient::call(Buffer request, Millis timeout) {
  std::optional<Result<Frame>> result;
  client_.call(std::move(request), timeout, [&](Result<Frame> r) { result.emplace(std::move(r)); });
  while (!result) loop_.runOnce(timeout);
  return std::move(*result);
}

}  // namespace shoal::bus
