#pragma once
// The message bus: ZeroMQ + FlatBuffers (DESIGN.md §3).
//
// Every message is one FlatBuffers buffer whose root is a protocol's Envelope: a
// shoal.wire.Header (request id, deadline, credits, version, kind), an optional
// shoal.wire.Error and a union body (schemas/wire.fbs). A protocol is told apart by the
// buffer's file identifier, so one socket can serve several protocols. Servers are ROUTER
// sockets, clients DEALER sockets; requests are asynchronous and matched by request id;
// streams are opened by a request and pushed by the server only while the client has
// granted credits.
//
// Every received buffer passes the FlatBuffers verifier (size, depth and table limits)
// before anything reads it. A bad buffer is answered with an Error (requests) or dropped
// (streams) and logged by a rate-limited warning: it never crashes or blocks a daemon.
//
// Nothing is ever sent blocking, so a peer that does not read fills its queue (Limits::
// highWater) and what comes next cannot go. What happens then depends on who would notice:
// - a reply to a call with a deadline is dropped (and counted in Stats::dropped): the
//   caller's deadline answers it;
// - a stream item is never skipped: the stream is ended with ResourceExhausted instead (the
//   client resyncs from the last item it saw), so a stream is always its items in order,
//   possibly cut short, and then its end;
// - what no deadline covers (a StreamEnd, the answer to a stream's opening request, a
//   client's credits and cancels) is held and retried from a loop timer until it goes or the
//   peer has disconnected.

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <flatbuffers/flatbuffers.h>
#include <zmq.hpp>

#include "common/loop.h"
#include "common/result.h"
#include "wire_generated.h"

namespace shoal::bus {

using Buffer = flatbuffers::DetachedBuffer;
using Millis = std::chrono::milliseconds;

// Limits for the verifier and the socket's queues. A buffer over maxBytes is refused before
// it is read.
struct Limits {
  size_t maxBytes = 64u << 20;
  unsigned maxDepth = 64;
  unsigned maxTables = 1'000'000;
  // Messages ZeroMQ queues for one peer in each direction (SNDHWM and RCVHWM) before a send
  // to it cannot go (see the top of this file).
  int highWater = 1000;
};

struct Protocol {
  std::string_view name;
  std::array<char, 5> identifier;  // four characters and a NUL
  uint16_t version;
  bool (*verify)(flatbuffers::Verifier&);
};

// Describes a generated protocol: makeProtocol<control::Envelope>("control", 1,
// control::EnvelopeIdentifier(), control::VerifyEnvelopeBuffer). Checks at compile time that
// the Envelope starts with the fields common/bus relies on.
template <class Env>
Protocol makeProtocol(std::string_view name, uint16_t version, const char* identifier,
                      bool (*verify)(flatbuffers::Verifier&)) {
  static_assert(Env::VT_HEADER == 4, "Envelope field 0 must be header:shoal.wire.Header");
  static_assert(Env::VT_ERROR == 6, "Envelope field 1 must be error:shoal.wire.Error");
  static_assert(Env::VT_BODY_TYPE == 8, "Envelope field 2 must be the body union");
  return Protocol{name, {identifier[0], identifier[1], identifier[2], identifier[3], 0}, version, verify};
}

// Every protocol's handle, found from its Envelope type (specialised in common/protocols.h).
template <class Env>
const Protocol& protocolOf();

// A received buffer that passed the verifier.
class Frame {
 public:
  Frame() = default;
  Frame(zmq::message_t msg, const Protocol* protocol, wire::Header header)
      : msg_(std::move(msg)), protocol_(protocol), header_(header) {}

  const Protocol& protocol() const { return *protocol_; }
  const wire::Header& header() const { return header_; }
  wire::Kind kind() const { return header_.kind(); }
  uint64_t requestId() const { return header_.request_id(); }
  // The error table, when the sender set one.
  const wire::Error* error() const;
  std::string_view bytes() const { return {static_cast<const char*>(msg_.data()), msg_.size()}; }

  // The envelope as its generated type; null if the frame is of another protocol.
  template <class Env>
  const Env* as() const {
    if (protocol_ != &protocolOf<Env>()) return nullptr;
    return flatbuffers::GetRoot<Env>(msg_.data());
  }

 private:
  zmq::message_t msg_;
  const Protocol* protocol_ = nullptr;
  wire::Header header_;
};

// Checks identifier, size and structure; on success the Frame may be read freely.
// protocols: the ones accepted here. The error code tells BadMessage from UnknownProtocol.
Result<Frame> decode(zmq::message_t msg, std::span<const Protocol* const> protocols,
                     const Limits& limits = {});
// The same check on raw bytes (the fuzz target's entry point); returns the protocol.
Result<const Protocol*> verify(std::span<const uint8_t> bytes,
                               std::span<const Protocol* const> protocols,
                               const Limits& limits = {});

// Finishes an envelope of any protocol in fbb. Header fields other than version are set by
// the bus when it sends (request id, kind, credits, deadline).
Buffer finish(flatbuffers::FlatBufferBuilder& fbb, const Protocol& protocol,
              wire::Kind kind, uint8_t bodyType, flatbuffers::Offset<void> body,
              flatbuffers::Offset<wire::Error> error = 0);

// Builds a message of Env's protocol: bus::message<control::Envelope>(fbb, Body::X, x.Union()).
template <class Env, class BodyEnum>
Buffer message(flatbuffers::FlatBufferBuilder& fbb, BodyEnum type, flatbuffers::Offset<void> body) {
  return finish(fbb, protocolOf<Env>(), wire::Kind::Request, static_cast<uint8_t>(type), body);
}

// An envelope with only a header (and an error): credits, cancels, stream ends, errors.
Buffer control(const Protocol& protocol, wire::Kind kind, uint64_t requestId,
               uint32_t credits = 0, wire::ErrorCode code = wire::ErrorCode::None,
               std::string_view message = {});

// Sets header fields of a finished buffer in place.
void setHeader(Buffer& buf, uint64_t requestId, wire::Kind kind, uint32_t timeoutMs,
               uint32_t credits);

const char* errorCodeName(wire::ErrorCode code);
// The Error of a failed call: the code as Error::code, the server's message.
Error errorFrom(const Frame& frame);

// Counters every server and client keeps; they appear in Status.
struct Stats {
  uint64_t received = 0;
  uint64_t sent = 0;
  uint64_t badMessages = 0;
  uint64_t expired = 0;
  // Messages that never went: replies and requests to a peer whose queue was full (a
  // deadline answers them), and held messages given up on because the peer disconnected or
  // had too many held.
  uint64_t dropped = 0;
  // Streams ended with ResourceExhausted because their client fell behind (servers only).
  uint64_t fellBehind = 0;
};

// Logs at most `burst` warnings per `period`, then counts what it suppressed.
class RateLimitedWarning {
 public:
  explicit RateLimitedWarning(std::chrono::seconds period = std::chrono::seconds(10), int burst = 5)
      : period_(period), burst_(burst) {}
  void warn(const std::string& message);

 private:
  std::chrono::seconds period_;
  int burst_;
  Loop::Clock::time_point windowStart_{};
  int inWindow_ = 0;
  uint64_t suppressed_ = 0;
};

struct CurveServerKeys {
  std::string publicKey;  // Z85, 40 characters
  std::string secretKey;
};

class Server;
class ServerStream;

// One request being served. Answer it exactly once: reply(), fail() or openStream().
// It may be kept and answered later (asynchronous handlers); an answer after the caller's
// deadline is dropped. An answer to a request without a deadline (a stream's opening
// request) is held until it goes, since nothing else would tell the caller.
class Call {
 public:
  const Frame& request() const { return request_; }
  template <class Env>
  const Env* as() const { return request_.as<Env>(); }
  uint64_t requestId() const { return request_.requestId(); }
  // The peer's ZeroMQ routing id (and, with CURVE, the peer's public key).
  const std::string& peer() const { return peer_; }
  const std::string& peerKey() const { return peerKey_; }
  bool expired() const;
  bool answered() const { return answered_; }

  void reply(Buffer buf);
  // Replies with an envelope received from elsewhere (a forwarded answer), as it is but for
  // the request id.
  void replyRaw(std::string_view envelope);
  void fail(wire::ErrorCode code, std::string message);
  // Opens a stream; its initial credits are the request's header.credits.
  std::shared_ptr<ServerStream> openStream();

  // Where a local call's answers go: each envelope as a client would receive it.
  using Sink = std::function<void(std::string_view envelope)>;
  // A call that came through no socket (a test driving a server's handler in-process, such
  // as the raft shell's simulation): reply, replyRaw, fail and the items and end of a stream
  // it opens all go to `sink`. It has no deadline; a stream starts with the request's credits
  // and gets no more.
  static Call local(Frame request, Sink sink);

 private:
  friend class Server;
  Call(Server* server, std::string peer, std::string peerKey, Frame request,
       std::optional<Loop::Clock::time_point> deadline)
      : server_(server), peer_(std::move(peer)), peerKey_(std::move(peerKey)),
        request_(std::move(request)), deadline_(deadline) {}
  void deliver(std::string_view envelope);

  Server* server_;  // null for a local call
  std::string peer_;
  std::string peerKey_;
  Frame request_;
  std::optional<Loop::Clock::time_point> deadline_;
  bool answered_ = false;
  Sink sink_;  // a local call's answers
};

// A server-pushed stream. send() never outruns the client's credits: with none left it
// returns false and sends nothing; onCredit() says when to go on. An item that cannot go
// (the client's queue is full, or the client disconnected) is never skipped: the stream ends
// there, with ResourceExhausted for a client that fell behind, and send() returns false with
// open() false.
class ServerStream {
 public:
  bool send(Buffer buf);
  uint32_t credits() const { return credits_; }
  bool open() const { return open_; }
  void end();
  void end(wire::ErrorCode code, std::string message);
  void onCredit(std::function<void()> fn) { onCredit_ = std::move(fn); }
  void onClose(std::function<void()> fn) { onClose_ = std::move(fn); }
  const std::string& peer() const { return peer_; }
  uint64_t id() const { return id_; }

 private:
  friend class Server;
  friend class Call;
  ServerStream(Server* server, std::string peer, uint64_t id, uint32_t credits)
      : server_(server), peer_(std::move(peer)), id_(id), credits_(credits) {}
  void close();

  Server* server_;  // null for a local call's stream
  std::string peer_;
  uint64_t id_;
  uint32_t credits_;
  Call::Sink sink_;
  const Protocol* protocol_ = nullptr;
  bool open_ = true;
  std::function<void()> onCredit_;
  std::function<void()> onClose_;
};

// A ROUTER socket serving one or more protocols.
class Server {
 public:
  using Handler = std::function<void(Call)>;

  Server(Loop& loop, zmq::context_t& ctx, Limits limits = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Before bind(): enables CURVE; peers must know keys.publicKey.
  void setCurve(const CurveServerKeys& keys, std::string zapDomain = "shoal");
  // ipc:// or tcp:// endpoint. For ipc, the socket file is made 0660.
  Status bind(const std::string& endpoint);
  void serve(const Protocol& protocol, Handler handler);
  // The endpoint bound last, with the port the kernel chose for tcp://host:*.
  std::string endpoint() const;
  const Stats& stats() const { return stats_; }
  size_t openStreams() const { return streams_.size(); }
  // Messages held for peers whose queue is full (see the top of this file).
  size_t held() const;
  // Ends every stream and closes the socket (an ipc socket file is removed).
  void close();

 private:
  friend class Call;
  friend class ServerStream;
  enum class Sent { Yes, QueueFull, PeerGone };
  void onReadable();
  void handle(std::string peer, zmq::message_t msg, std::string peerKey);
  // One attempt, never blocking. A peer that is gone has its streams closed.
  Sent trySend(const std::string& peer, std::string_view bytes);
  // An answer: dropped (and counted) if it cannot go and a deadline covers it, held otherwise.
  void answer(const std::string& peer, std::string_view bytes, bool coveredByDeadline);
  void sendOrHold(const std::string& peer, std::string_view bytes);
  void retryHeld();
  void closeStreamsOf(const std::string& peer);

  Loop& loop_;
  zmq::socket_t socket_;
  Limits limits_;
  std::vector<const Protocol*> protocols_;
  std::map<const Protocol*, Handler> handlers_;
  std::map<std::pair<std::string, uint64_t>, std::shared_ptr<ServerStream>> streams_;
  // By peer. Their order does not matter: each answers another request or ends another
  // stream (whose items all went before it).
  std::map<std::string, std::vector<std::string>> held_;
  Loop::TimerId retryTimer_ = 0;
  std::string ipcPath_;
  Stats stats_;
  RateLimitedWarning badWarning_;
  RateLimitedWarning dropWarning_;
  bool closed_ = false;
};

struct CurveClientKeys {
  std::string serverPublicKey;  // Z85
  std::string publicKey;
  std::string secretKey;
};

// A DEALER socket speaking one protocol to one server.
class Client {
 public:
  using ReplyFn = std::function<void(Result<Frame>)>;
  using ItemFn = std::function<void(const Frame&)>;
  using EndFn = std::function<void(Status)>;

  Client(Loop& loop, zmq::context_t& ctx, const Protocol& protocol, Limits limits = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  void setCurve(const CurveClientKeys& keys);
  Status connect(const std::string& endpoint);
  // Calls fn when a connection of this socket closes (e.g. the server's process died), so
  // that a caller can act before its own timeouts would tell it.
  void onDisconnect(std::function<void()> fn);

  // Sends a request; fn gets the reply, the server's error, or DeadlineExceeded once
  // timeout passed. Returns the request id.
  uint64_t call(Buffer request, Millis timeout, ReplyFn fn);
  // The same with an envelope received from elsewhere (forwarding); it must be verified.
  uint64_t callRaw(std::string envelope, Millis timeout, ReplyFn fn);
  // A one-way message: no reply is expected (Raft messages).
  void post(Buffer message);

  // Opens a stream with `window` credits. With autoGrant, credits are granted again as
  // items are delivered (half a window at a time); otherwise call grant(). Credits beyond
  // the server's queue (Limits::highWater) let it push more than it can queue, and a stream
  // whose items cannot be queued is ended with ResourceExhausted (see the top of this file).
  uint64_t openStream(Buffer request, uint32_t window, ItemFn onItem, EndFn onEnd,
                      bool autoGrant = true);
  void grant(uint64_t streamId, uint32_t credits);
  void cancel(uint64_t id);

  // Sends raw bytes as they are (tests use it to send bad buffers).
  void sendRaw(std::string_view bytes);

  const Stats& stats() const { return stats_; }
  size_t pending() const { return calls_.size(); }
  // Messages held while the server's queue is full (see the top of this file).
  size_t held() const { return held_.size(); }

 private:
  struct PendingCall {
    ReplyFn fn;
    Loop::TimerId timer;
  };
  struct OpenStream {
    ItemFn onItem;
    EndFn onEnd;
    uint32_t window;
    uint32_t outstanding;  // credits granted and not yet used
    uint32_t consumed = 0; // items delivered since the last grant
    bool autoGrant;
  };
  void onReadable();
  void dispatch(Frame frame);
  bool trySend(std::string_view bytes);
  // Best effort: a deadline answers a request that did not go.
  void send(std::string_view bytes);
  // For what no deadline covers (stream requests, credits, cancels).
  void sendOrHold(std::string_view bytes);
  void retryHeld();
  uint64_t track(Millis timeout, ReplyFn fn);

  Loop& loop_;
  zmq::context_t& ctx_;
  zmq::socket_t socket_;
  std::unique_ptr<zmq::socket_t> monitor_;
  std::function<void()> onDisconnect_;
  const Protocol& protocol_;
  Limits limits_;
  uint64_t nextId_ = 1;
  std::map<uint64_t, PendingCall> calls_;
  std::map<uint64_t, OpenStream> streams_;
  std::vector<std::string> held_;
  Loop::TimerId retryTimer_ = 0;
  Stats stats_;
  RateLimitedWarning badWarning_;
  RateLimitedWarning dropWarning_;
};

// A blocking client for tools and tests: its own loop, one call at a time.
class SyncClient {
 public:
  SyncClient(const Protocol& protocol, Limits limits = {});
  Status connect(const std::string& endpoint);
  void setCurve(const CurveClientKeys& keys) { client_.setCurve(keys); }
  Result<Frame> call(Buffer request, Millis timeout);
  Client& client() { return client_; }
  Loop& loop() { return loop_; }

 private:
  zmq::context_t ctx_{1};
  Loop loop_;
  Client client_;
};

}  // namespace shoal::bus
