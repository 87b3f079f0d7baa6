#include "common/curve.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

#include <sodium.h>
#include <spdlog/spdlog.h>

namespace shoal::curve {
namespace {

std::string z85(const unsigned char* key) {
  char out[41];
  zmq_z85_encode(out, key, 32);
  return std::string(out, 40);
}

}  // namespace

KeyPair generate() {
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
  unsigned char pub[crypto_box_PUBLICKEYBYTES], sec[crypto_box_SECRETKEYBYTES];
  crypto_box_keypair(pub, sec);
  KeyPair pair{z85(pub), z85(sec)};
  sodium_memzero(sec, sizeof sec);
  return pair;
}

bool isValidKey(std::string_view key) {
  if (key.size() != 40) return false;
  std::string copy(key);
  uint8_t raw[32];
  return zmq_z85_decode(raw, copy.c_str()) != nullptr;
}

Result<KeyPair> loadOrCreate(const std::string& path) {
  std::ifstream in(path);
  if (in) {
    KeyPair pair;
    std::getline(in, pair.publicKey);
    std::getline(in, pair.secretKey);
    if (!isValidKey(pair.publicKey) || !isValidKey(pair.secretKey))
      return Error{"the key file " + path +
                   " is damaged (expected two Z85 keys of 40 characters); remove it to make a "
                   "new identity"};
    return pair;
  }
  // Several daemons of a node may start together: the first link() wins and the others
  // read its key, so that a node never has two identities.
  KeyPair pair = generate();
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    return Error{"cannot write the key file " + tmp + ": " + std::strerror(errno), errno};
  std::string text = pair.publicKey + "\n" + pair.secretKey + "\n";
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
            ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) {
    int err = errno;
    ::unlink(tmp.c_str());
    return Error{"cannot write the key file " + tmp + ": " + std::strerror(err), err};
  }
  int linked = ::link(tmp.c_str(), path.c_str());
  int err = errno;
  ::unlink(tmp.c_str());
  if (linked != 0 && err == EEXIST) return loadOrCreate(path);
  if (linked != 0)
    return Error{"cannot write the key file " + path + ": " + std::strerror(err), err};
  return pair;
}

ZapHandler::ZapHandler(Loop& loop, zmq::context_t& ctx, Admit admit)
    : loop_(loop), socket_(ctx, zmq::socket_type::rep), admit_(std::move(admit)) {
  socket_.set(zmq::sockopt::linger, 0);
  socket_.bind("inproc://zeromq.zap.01");
  loop_.watch(socket_, [this] { onRequest(); });
}

ZapHandler::~ZapHandler() { loop_.unwatch(socket_); }

void ZapHandler::onRequest() {
  for (int n = 0; n < 64; ++n) {
    // RFC 27: version, request id, domain, address, identity, mechanism, credentials...
    std::vector<zmq::message_t> parts;
    zmq::message_t part;
    if (!socket_.recv(part, zmq::recv_flags::dontwait)) return;
    parts.push_back(std::move(part));
    while (socket_.get(zmq::sockopt::rcvmore)) {
      zmq::message_t more;
      (void)socket_.recv(more);
      parts.push_back(std::move(more));
    }
    std::string requestId = parts.size() > 1 ? parts[1].to_string() : "";
    bool ok = false;
    std::string key;
    if (parts.size() >= 7 && parts[0].to_string() == "1.0" && parts[5].to_string() == "CURVE" &&
        parts[6].size() == 32) {
      char text[41];
      zmq_z85_encode(text, static_cast<const uint8_t*>(parts[6].data()), 32);
      key.assign(text, 40);
      ok = admit_(parts[2].to_string_view(), parts[3].to_string_view(), key);
    }
    if (ok) ++admitted_; else ++refused_;
    if (!ok) spdlog::info("refused a CURVE connection from {} (key {})",
                          parts.size() > 3 ? parts[3].to_string() : "?", key.empty() ? "?" : key);
    const std::string status = ok ? "200" : "400";
    const std::string text = ok ? "OK" : "key not admitted";
    socket_.send(zmq::buffer(std::string_view("1.0")), zmq::send_flags::sndmore);
    socket_.send(zmq::buffer(requestId), zmq::send_flags::sndmore);
    socket_.send(zmq::buffer(status), zmq::send_flags::sndmore);
    socket_.send(zmq::buffer(text), zmq::send_flags::sndmore);
    socket_.send(zmq::buffer(ok ? key : std::string()), zmq::send_flags::sndmore);
    socket_.send(zmq::buffer(std::string_view()), zmq::send_flags::none);
  }
}

}  // namespace shoal::curve
