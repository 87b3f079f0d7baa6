#pragma once
// CurveZMQ identities (DESIGN.md §4): every node has a Curve25519 key pair made with
// libsodium, kept Z85-encoded as ZeroMQ wants it. The ZAP handler decides which peer keys a
// CURVE server admits; the cluster issue plugs the store's node list into it.

#include <functional>
#include <string>
#include <string_view>

#include <zmq.hpp>

#include "common/loop.h"
#include "common/result.h"

namespace shoal::curve {

struct KeyPair {
  std::string publicKey;  // Z85, 40 characters
  std::string secretKey;  // Z85, 40 characters
};

KeyPair generate();
// Reads a key pair from path (two lines: public, secret), or makes one and writes it with
// mode 0600 when the file does not exist.
Result<KeyPair> loadOrCreate(const std::string& path);
bool isValidKey(std::string_view z85);

// Answers ZeroMQ's ZAP requests (RFC 27) on inproc://zeromq.zap.01 of a context, on a loop.
// admit(domain, address, publicKeyZ85) says whether a CURVE peer may connect; the admitted
// key becomes the connection's User-Id, which servers see as Call::peerKey().
class ZapHandler {
 public:
  using Admit = std::function<bool(std::string_view domain, std::string_view address,
                                   std::string_view publicKey)>;
  ZapHandler(Loop& loop, zmq::context_t& ctx, Admit admit);
  ~ZapHandler();
  uint64_t admitted() const { return admitted_; }
  uint64_t refused() const { return refused_; }

 private:
  void onRequest();
  Loop& loop_;
  zmq::socket_t socket_;
  Admit admit_;
  uint64_t admitted_ = 0;
  uint64_t refused_ = 0;
};

}  // namespace shoal::curve
