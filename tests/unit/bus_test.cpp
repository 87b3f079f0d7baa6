// The bus: request/reply, deadlines, credit-based streams, bad buffers, CURVE.
#include <doctest/doctest.h>

#include "common/bus.h"
#include "common/curve.h"
#include "common/protocols.h"
#include "testing_generated.h"
#include "tests/support/tempdir.h"

#include <fstream>
#include <thread>

namespace shoal::bus {
namespace t = shoal::testing;

inline const Protocol kTestingProtocol = makeProtocol<t::Envelope>(
    "testing", 1, t::EnvelopeIdentifier(), t::VerifyEnvelopeBuffer);
template <>
const Protocol& protocolOf<t::Envelope>() { return kTestingProtocol; }

namespace {

using namespace std::chrono_literals;

Buffer echo(std::string_view text) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = t::CreateEcho(fbb, fbb.CreateString(text));
  return message<t::Envelope>(fbb, t::Body::Echo, body.Union());
}

Buffer sleepFor(uint32_t ms) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = t::CreateSleep(fbb, ms);
  return message<t::Envelope>(fbb, t::Body::Sleep, body.Union());
}

Buffer count(uint32_t n) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = t::CreateCount(fbb, n);
  return message<t::Envelope>(fbb, t::Body::Count, body.Union());
}

Buffer item(uint32_t n) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = t::CreateItem(fbb, n);
  return message<t::Envelope>(fbb, t::Body::Item, body.Union());
}

// A stream item carrying n: an Item, or an Echo of "n:" and `pad` bytes (big items fill a
// socket's queues after a few).
Buffer streamItem(uint32_t n, size_t pad) {
  if (pad == 0) return item(n);
  return echo(std::to_string(n) + ":" + std::string(pad, 'x'));
}

uint32_t itemNumber(const Frame& frame) {
  auto* env = frame.as<t::Envelope>();
  if (auto* i = env->body_as_Item()) return i->n();
  return static_cast<uint32_t>(std::stoul(env->body_as_Echo()->text()->str()));
}

// A server of the testing protocol: Echo answers at once, Sleep after ms, Count opens a
// stream that pushes n items as fast as credits allow, and a text of "throw" throws.
struct TestServer {
  TestServer(Loop& loop, zmq::context_t& ctx, std::string endpoint, Limits limits = {},
             size_t itemPad = 0)
      : server(loop, ctx, limits) {
    server.serve(kTestingProtocol, [this, &loop, itemPad](Call call) {
      auto* env = call.as<t::Envelope>();
      switch (env->body_type()) {
        case t::Body::Echo: {
          auto text = env->body_as_Echo()->text() ? env->body_as_Echo()->text()->str() : "";
          if (text == "throw") throw std::runtime_error("asked to throw");
          call.reply(echo(text));
          return;
        }
        case t::Body::Sleep: {
          auto held = std::make_shared<Call>(std::move(call));
          loop.after(std::chrono::milliseconds(env->body_as_Sleep()->ms()),
                     [held] { held->reply(echo("late")); });
          return;
        }
        case t::Body::Count: {
          uint32_t n = env->body_as_Count()->n();
          auto stream = call.openStream();
          auto next = std::make_shared<uint32_t>(0);
          streams.push_back(stream);
          auto pump = [stream, next, n, itemPad, this] {
            while (*next < n && stream->send(streamItem(*next, itemPad))) {
              ++*next;
              ++pushed;
            }
            if (*next == n) stream->end();
            if (stream->open()) ++stalls;  // waiting for credit
          };
          stream->onCredit(pump);
          pump();
          return;
        }
        default:
          call.fail(wire::ErrorCode::Unimplemented, "not served");
      }
    });
    REQUIRE(server.bind(endpoint));
  }
  Server server;
  std::vector<std::shared_ptr<ServerStream>> streams;
  int pushed = 0;
  int stalls = 0;
};

// Runs the loop until done() or the time is up; bounded in time, never in machine speed.
template <class F>
bool runUntil(Loop& loop, F done, std::chrono::milliseconds limit = 5000ms) {
  auto end = Loop::Clock::now() + limit;
  while (Loop::Clock::now() < end) {
    if (done()) return true;
    loop.runOnce(10ms);
  }
  return false;
}

// The same for a server and a client on loops of their own (so that one can stop reading).
template <class F>
bool runBothUntil(Loop& a, Loop& b, F done, std::chrono::milliseconds limit = 5000ms) {
  auto end = Loop::Clock::now() + limit;
  while (Loop::Clock::now() < end) {
    if (done()) return true;
    a.runOnce(1ms);
    b.runOnce(1ms);
  }
  return false;
}

// A server and a client with queues of two messages each way, on loops of their own.
struct SlowReaderFixture {
  static Limits smallQueues() {
    Limits l;
    l.highWater = 2;
    return l;
  }
  shoal::testing::TempDir dir;
  zmq::context_t ctx{1};
  Loop serverLoop;
  Loop clientLoop;
  std::string endpoint = "ipc://" + dir / "test.sock";
  static constexpr size_t kPad = 64 << 10;  // a few such items fill the kernel's buffers
  TestServer server{serverLoop, ctx, endpoint, smallQueues(), kPad};
  std::unique_ptr<Client> client = std::make_unique<Client>(clientLoop, ctx, kTestingProtocol, smallQueues());
  SlowReaderFixture() { REQUIRE(client->connect(endpoint)); }

  void bigCall() { client->call(echo(std::string(kPad, 'e')), 5000ms, [](Result<Frame>) {}); }
  // Until a message that cannot go still cannot once ZeroMQ's threads have moved all they
  // could: then nothing moves until the other side reads, and the next send fails too.
  template <class Send>
  void saturate(Send dropped) {
    for (int i = 0; i < 200; ++i) {
      if (!dropped()) continue;
      std::this_thread::sleep_for(50ms);
      if (dropped()) return;
    }
    FAIL("the queues never filled");
  }
  // The server does not read: big calls fill the client's queue to it.
  void fillClientQueue() {
    saturate([&] {
      auto before = client->stats().dropped;
      bigCall();
      return client->stats().dropped > before;
    });
  }
  // The client does not read: the replies to big calls fill the server's queue to it.
  void fillServerQueue() {
    saturate([&] {
      auto before = server.server.stats();
      bigCall();
      REQUIRE(runUntil(serverLoop, [&] { return server.server.stats().received > before.received; }));
      return server.server.stats().dropped > before.dropped;
    });
  }
};

struct Fixture {
  shoal::testing::TempDir dir;
  zmq::context_t ctx{1};
  Loop loop;
  std::string endpoint = "ipc://" + dir / "test.sock";
  TestServer server{loop, ctx, endpoint};
  Client client{loop, ctx, kTestingProtocol};
  Fixture() { REQUIRE(client.connect(endpoint)); }

  Result<Frame> call(Buffer b, Millis timeout = 2000ms) {
    std::optional<Result<Frame>> out;
    client.call(std::move(b), timeout, [&](Result<Frame> r) { out.emplace(std::move(r)); });
    REQUIRE(runUntil(loop, [&] { return out.has_value(); }));
    return std::move(*out);
  }
  std::string echoText(const Result<Frame>& r) {
    REQUIRE(r.ok());
    auto* e = r->as<t::Envelope>()->body_as_Echo();
    REQUIRE(e != nullptr);
    return e->text()->str();
  }
  // Sends raw bytes on a plain DEALER and returns the decoded answer.
  Frame rawExchange(std::string_view bytes) {
    zmq::socket_t raw(ctx, zmq::socket_type::dealer);
    raw.set(zmq::sockopt::linger, 0);
    raw.connect(endpoint);
    raw.send(zmq::buffer(bytes), zmq::send_flags::none);
    zmq::message_t reply;
    bool got = runUntil(loop, [&] { return raw.recv(reply, zmq::recv_flags::dontwait).has_value(); });
    REQUIRE(got);
    const Protocol* any[] = {&kTestingProtocol, &kControlProtocol};
    auto frame = decode(std::move(reply), any);
    REQUIRE(frame.ok());
    return std::move(frame).value();
  }
};

TEST_CASE("request and reply, matched by request id") {
  Fixture f;
  CHECK(f.echoText(f.call(echo("hello"))) == "hello");
  // Several in flight at once come back to their own callbacks.
  std::map<uint64_t, std::string> got;
  for (int i = 0; i < 20; ++i) {
    std::string text = "n" + std::to_string(i);
    f.client.call(echo(text), 2000ms, [&got, text](Result<Frame> r) {
      REQUIRE(r.ok());
      got[r->requestId()] = r->as<t::Envelope>()->body_as_Echo()->text()->str() + "/" + text;
    });
  }
  REQUIRE(runUntil(f.loop, [&] { return got.size() == 20; }));
  for (auto& [id, v] : got) {
    auto slash = v.find('/');
    CHECK(v.substr(0, slash) == v.substr(slash + 1));
  }
}

TEST_CASE("a call past its deadline fails with DeadlineExceeded and the late reply is dropped") {
  Fixture f;
  auto start = Loop::Clock::now();
  auto r = f.call(sleepFor(400), 50ms);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == static_cast<int>(wire::ErrorCode::DeadlineExceeded));
  CHECK(r.error().message.find("no answer within 50ms") != std::string::npos);
  CHECK(Loop::Clock::now() - start < 400ms);
  CHECK(f.client.pending() == 0);
  // The server's late answer comes and goes; the client stays usable.
  runUntil(f.loop, [&] { return f.server.server.stats().expired > 0; }, 2000ms);
  CHECK(f.server.server.stats().expired == 1);  // the server saw the deadline pass too
  CHECK(f.echoText(f.call(echo("after"))) == "after");
}

TEST_CASE("a stream never outruns the credits the client granted") {
  Fixture f;
  std::vector<uint32_t> items;
  std::optional<Status> ended;
  uint64_t id = f.client.openStream(
      count(100), 10, [&](const Frame& fr) { items.push_back(fr.as<t::Envelope>()->body_as_Item()->n()); },
      [&](Status st) { ended = st; }, /*autoGrant=*/false);
  REQUIRE(runUntil(f.loop, [&] { return items.size() == 10; }));
  // Give the server every chance to push more than it may.
  runUntil(f.loop, [] { return false; }, 200ms);
  CHECK(items.size() == 10);
  CHECK(f.server.pushed == 10);
  REQUIRE(f.server.streams.size() == 1);
  CHECK(f.server.streams[0]->credits() == 0);
  CHECK(f.server.stalls >= 1);

  f.client.grant(id, 5);
  REQUIRE(runUntil(f.loop, [&] { return items.size() == 15; }));
  runUntil(f.loop, [] { return false; }, 100ms);
  CHECK(items.size() == 15);
  CHECK_FALSE(ended.has_value());

  // Granting the rest lets it finish, in order, with StreamEnd.
  f.client.grant(id, 85);
  REQUIRE(runUntil(f.loop, [&] { return ended.has_value(); }));
  CHECK(ended->ok());
  REQUIRE(items.size() == 100);
  for (uint32_t i = 0; i < 100; ++i) CHECK(items[i] == i);
  CHECK(f.client.stats().badMessages == 0);
  CHECK(f.server.server.openStreams() == 0);
}

TEST_CASE("a stream with automatic credit delivers everything in order") {
  Fixture f;
  uint32_t next = 0;
  bool inOrder = true;
  std::optional<Status> ended;
  f.client.openStream(
      count(5000), 16,
      [&](const Frame& fr) { inOrder &= fr.as<t::Envelope>()->body_as_Item()->n() == next++; },
      [&](Status st) { ended = st; });
  REQUIRE(runUntil(f.loop, [&] { return ended.has_value(); }, 20000ms));
  CHECK(ended->ok());
  CHECK(next == 5000);
  CHECK(inOrder);
}

TEST_CASE("a client that falls behind gets a prefix of its stream and an error end, never a gap") {
  SlowReaderFixture f;
  constexpr uint32_t kItems = 200;
  std::vector<uint32_t> items;
  std::optional<Status> ended;
  f.client->openStream(
      count(kItems), kItems, [&](const Frame& fr) { items.push_back(itemNumber(fr)); },
      [&](Status st) { ended = st; }, /*autoGrant=*/false);
  // The client's loop does not run while the server pushes all it has credits for.
  REQUIRE(runUntil(f.serverLoop, [&] { return f.server.streams.size() == 1; }));
  runUntil(f.serverLoop, [&] { return !f.server.streams[0]->open(); }, 1000ms);
  CHECK_FALSE(ended.has_value());

  // The client catches up: it sees the first items in order, then the end.
  bool endSeen = runBothUntil(f.serverLoop, f.clientLoop, [&] { return ended.has_value(); });
  INFO("got " << items.size() << " of " << kItems << " items, the last " << (items.empty() ? -1 : int(items.back())));
  for (uint32_t i = 0; i < items.size(); ++i) REQUIRE(items[i] == i);
  REQUIRE(endSeen);
  REQUIRE(items.size() < kItems);  // or this test did not make the client fall behind
  REQUIRE_FALSE(ended->ok());
  CHECK(ended->error().code == static_cast<int>(wire::ErrorCode::ResourceExhausted));
  CHECK(ended->error().message.find("fell behind") != std::string::npos);
  CHECK(f.server.server.stats().fellBehind == 1);
  CHECK(f.server.server.held() == 0);
  CHECK(f.server.server.openStreams() == 0);

  // It resyncs with a new stream, which a client that reads gets whole.
  items.clear();
  ended.reset();
  // (A window within the server's queue of two, so that a client that reads is never cut.)
  f.client->openStream(count(20), 2, [&](const Frame& fr) { items.push_back(itemNumber(fr)); },
                       [&](Status st) { ended = st; });
  REQUIRE(runBothUntil(f.serverLoop, f.clientLoop, [&] { return ended.has_value(); }));
  CHECK(ended->ok());
  REQUIRE(items.size() == 20);
  for (uint32_t i = 0; i < 20; ++i) CHECK(items[i] == i);
}

TEST_CASE("an end held for a client that disconnects is given up") {
  SlowReaderFixture f;
  f.fillServerQueue();
  f.client->openStream(count(200), 200, [](const Frame&) {}, [](Status) {}, false);
  REQUIRE(runUntil(f.serverLoop, [&] { return f.server.streams.size() == 1; }));
  CHECK_FALSE(f.server.streams[0]->open());  // its first item could not go
  CHECK(f.server.server.stats().fellBehind == 1);
  CHECK(f.server.server.held() == 1);  // the StreamEnd, behind the replies the client has not read
  runUntil(f.serverLoop, [] { return false; }, 100ms);  // retried, still held
  CHECK(f.server.server.held() == 1);

  auto dropped = f.server.server.stats().dropped;
  f.client.reset();
  REQUIRE(runUntil(f.serverLoop, [&] { return f.server.server.held() == 0; }));
  CHECK(f.server.server.stats().dropped == dropped + 1);
}

TEST_CASE("a reply that cannot go is dropped and counted; the caller's deadline answers it") {
  SlowReaderFixture f;
  constexpr int kCalls = 30;
  int replies = 0;
  int deadlines = 0;
  for (int i = 0; i < kCalls; ++i) {
    f.client->call(echo(std::string(SlowReaderFixture::kPad, 'e')), 1000ms, [&](Result<Frame> r) {
      if (r.ok())
        ++replies;
      else if (r.error().code == static_cast<int>(wire::ErrorCode::DeadlineExceeded))
        ++deadlines;
    });
    // The server reads each request; the client reads nothing yet.
    REQUIRE(runUntil(f.serverLoop, [&] { return f.server.server.stats().received == uint64_t(i + 1); }));
  }
  CHECK(f.client->stats().dropped == 0);
  REQUIRE(runBothUntil(f.serverLoop, f.clientLoop, [&] { return replies + deadlines == kCalls; }));
  CHECK(f.server.server.stats().dropped > 0);
  CHECK(uint64_t(deadlines) == f.server.server.stats().dropped);
  CHECK(f.server.server.stats().fellBehind == 0);
}

TEST_CASE("a stream request that cannot go yet is held and sent once the server reads") {
  SlowReaderFixture f;
  f.fillClientQueue();
  std::vector<uint32_t> items;
  std::optional<Status> ended;
  f.client->openStream(count(10), 2, [&](const Frame& fr) { items.push_back(itemNumber(fr)); },
                       [&](Status st) { ended = st; });
  CHECK(f.client->held() == 1);
  REQUIRE(runBothUntil(f.serverLoop, f.clientLoop, [&] { return ended.has_value(); }));
  CHECK(ended->ok());
  CHECK(items.size() == 10);
  CHECK(f.client->held() == 0);
}

TEST_CASE("cancelling a stream closes it on the server") {
  Fixture f;
  int got = 0;
  uint64_t id = f.client.openStream(count(1000), 4, [&](const Frame&) { ++got; }, nullptr, false);
  REQUIRE(runUntil(f.loop, [&] { return got == 4; }));
  f.client.cancel(id);
  REQUIRE(runUntil(f.loop, [&] { return f.server.server.openStreams() == 0; }));
}

TEST_CASE("garbage bytes get an error reply and the server still answers") {
  Fixture f;
  Frame err = f.rawExchange("this is not a flatbuffer at all, just some bytes");
  CHECK(err.kind() == wire::Kind::Error);
  CHECK(err.requestId() == 0);
  REQUIRE(err.error() != nullptr);
  CHECK(err.error()->code() == wire::ErrorCode::UnknownProtocol);
  CHECK(f.server.server.stats().badMessages == 1);
  CHECK(f.echoText(f.call(echo("still here"))) == "still here");

  Frame tiny = f.rawExchange("xy");
  CHECK(tiny.error()->code() == wire::ErrorCode::BadMessage);
  CHECK(f.echoText(f.call(echo("and here"))) == "and here");
}

TEST_CASE("a truncated buffer gets an error reply and the server still answers") {
  Fixture f;
  Buffer whole = echo(std::string(200, 'x'));
  // (The last bytes of a buffer may be padding, so cut well inside it.)
  for (size_t cut : {whole.size() - 12, whole.size() / 2, size_t{20}}) {
    Frame err = f.rawExchange({reinterpret_cast<const char*>(whole.data()), cut});
    REQUIRE(err.kind() == wire::Kind::Error);
    REQUIRE(err.error() != nullptr);
    CHECK(err.error()->code() == wire::ErrorCode::BadMessage);
    CHECK(f.echoText(f.call(echo("next"))) == "next");
  }
  // A root offset that points outside the buffer.
  std::string bent(reinterpret_cast<const char*>(whole.data()), whole.size());
  bent[2] = static_cast<char>(0xff);
  bent[3] = static_cast<char>(0x7f);
  Frame err = f.rawExchange(bent);
  CHECK(err.kind() == wire::Kind::Error);
  CHECK(f.echoText(f.call(echo("next"))) == "next");
}

TEST_CASE("a buffer of another protocol gets an error reply naming the problem") {
  Fixture f;
  flatbuffers::FlatBufferBuilder fbb;
  auto body = control::CreateStatusRequest(fbb);
  Buffer other = message<control::Envelope>(fbb, control::Body::StatusRequest, body.Union());
  Frame err = f.rawExchange({reinterpret_cast<const char*>(other.data()), other.size()});
  CHECK(err.kind() == wire::Kind::Error);
  CHECK(err.error()->code() == wire::ErrorCode::UnknownProtocol);
  CHECK(err.error()->message()->str().find("no protocol served here") != std::string::npos);
  CHECK(f.echoText(f.call(echo("next"))) == "next");
}

TEST_CASE("a client may not send stream items; a throwing handler answers Internal") {
  Fixture f;
  Buffer wrong = item(7);
  setHeader(wrong, 42, wire::Kind::StreamItem, 0, 0);
  Frame err = f.rawExchange({reinterpret_cast<const char*>(wrong.data()), wrong.size()});
  CHECK(err.error()->code() == wire::ErrorCode::BadMessage);
  CHECK(err.requestId() == 42);

  auto r = f.call(echo("throw"));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == static_cast<int>(wire::ErrorCode::Internal));
  CHECK(f.echoText(f.call(echo("next"))) == "next");
}

TEST_CASE("verify refuses oversized buffers before reading them") {
  Buffer b = echo(std::string(5000, 'y'));
  const Protocol* protocols[] = {&kTestingProtocol};
  CHECK(verify({b.data(), b.size()}, protocols).ok());
  Limits small;
  small.maxBytes = 1000;
  auto r = verify({b.data(), b.size()}, protocols, small);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("over the limit") != std::string::npos);
}

TEST_CASE("CURVE: the ZAP handler admits known keys only") {
  shoal::testing::TempDir dir;
  zmq::context_t ctx{1};
  Loop loop;
  auto serverKeys = curve::generate();
  auto good = curve::generate();
  auto bad = curve::generate();
  curve::ZapHandler zap(loop, ctx, [&](std::string_view, std::string_view, std::string_view key) {
    return key == good.publicKey;
  });
  Server server(loop, ctx);
  server.setCurve({serverKeys.publicKey, serverKeys.secretKey});
  std::string seenKey;
  server.serve(kTestingProtocol, [&](Call call) {
    seenKey = call.peerKey();
    call.reply(echo("secret"));
  });
  REQUIRE(server.bind("tcp://127.0.0.1:*"));
  std::string endpoint = server.endpoint();

  auto tryCall = [&](const curve::KeyPair& me) -> Result<Frame> {
    Client client(loop, ctx, kTestingProtocol);
    client.setCurve({serverKeys.publicKey, me.publicKey, me.secretKey});
    REQUIRE(client.connect(endpoint));
    std::optional<Result<Frame>> out;
    client.call(echo("hi"), 1000ms, [&](Result<Frame> r) { out.emplace(std::move(r)); });
    REQUIRE(runUntil(loop, [&] { return out.has_value(); }));
    return std::move(*out);
  };
  auto ok = tryCall(good);
  REQUIRE(ok.ok());
  CHECK(seenKey == good.publicKey);
  auto refused = tryCall(bad);
  CHECK_FALSE(refused.ok());
  CHECK(zap.refused() >= 1);
  CHECK(zap.admitted() >= 1);
  CHECK(curve::isValidKey(good.publicKey));
  CHECK_FALSE(curve::isValidKey("short"));
}

TEST_CASE("key files: made once with mode 0600, read back the same") {
  shoal::testing::TempDir dir;
  auto a = curve::loadOrCreate(dir / "node.key");
  REQUIRE(a.ok());
  auto b = curve::loadOrCreate(dir / "node.key");
  REQUIRE(b.ok());
  CHECK(a->publicKey == b->publicKey);
  CHECK(a->secretKey == b->secretKey);
  CHECK((std::filesystem::status(dir / "node.key").permissions() & std::filesystem::perms::others_read) ==
        std::filesystem::perms::none);
  {
    std::ofstream broken(dir / "bad.key");
    broken << "nonsense\n";
  }
  auto c = curve::loadOrCreate(dir / "bad.key");
  REQUIRE_FALSE(c.ok());
  CHECK(c.error().message.find("damaged") != std::string::npos);
}

}  // namespace
}  // namespace shoal::bus
