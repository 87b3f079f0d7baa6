#include "services/raftd/local_store.h"

#include <algorithm>

#include "services/raftd/protocols.h"

namespace shoal::raftd {

using namespace std::chrono_literals;
using wire::ErrorCode;

// One store call in flight, retried while the store says nothing was done.
struct LocalStore::Attempt {
  std::string request;
  Then<bus::Frame> fn;
  Loop::Clock::time_point deadline;
  Millis backoff{50};
  Loop::TimerId watchdog = 0;
  bool done = false;
};

namespace {

constexpr uint32_t kAttemptTimeoutMs = 3000;

}  // namespace

void LocalStore::call(bus::Buffer request, Then<bus::Frame> fn, Millis budget) {
  auto a = std::make_shared<Attempt>();
  auto attemptMs = static_cast<uint32_t>(std::min<int64_t>(kAttemptTimeoutMs, budget.count()));
  bus::setHeader(request, nextCall_++, wire::Kind::Request, attemptMs, 0);
  a->request.assign(reinterpret_cast<const char*>(request.data()), request.size());
  a->fn = std::move(fn);
  a->deadline = loop_.now() + budget;
  // serveStore answers every call (by its deadline at the latest); this only guards the
  // caller against a call that is never answered.
  std::weak_ptr<bool> alive = alive_;
  a->watchdog = loop_.after(budget + Millis(attemptMs) + 2s, [a, alive] {
    if (alive.expired() || a->done) return;
    a->done = true;
    a->fn(Error{"the store did not answer in time; retry",
                static_cast<int>(ErrorCode::DeadlineExceeded)});
  });
  attempt(a);
}

void LocalStore::attempt(std::shared_ptr<Attempt> a) {
  auto finish = [this, a](Result<bus::Frame> r) {
    if (a->done) return;
    a->done = true;
    loop_.cancel(a->watchdog);
    a->fn(std::move(r));
  };
  if (!node_.inCluster())
    return finish(Error{"this raftd has no raft state (this node is not part of a swarm: "
                        "`shoal swarm init` starts one, `shoal swarm join` joins one)",
                        static_cast<int>(ErrorCode::Unavailable)});
  static const bus::Protocol* const kStoreOnly[] = {&kStoreProtocol};
  auto frame = bus::decode(zmq::message_t(a->request.data(), a->request.size()), kStoreOnly);
  if (!frame) return finish(frame.error());
  std::weak_ptr<bool> alive = alive_;
  node_.serveStore(
      bus::Call::local(std::move(frame).value(), [this, a, alive, finish](std::string_view env) {
        // Answers may come from inside serveStore: go on from the loop, not from its stack.
        loop_.post([this, a, alive, finish, answer = std::string(env)] {
          if (alive.expired() || a->done) return;
          auto f = bus::decode(zmq::message_t(answer.data(), answer.size()), kStoreOnly);
          Result<bus::Frame> r = !f ? Result<bus::Frame>(f.error())
                                 : f->kind() == wire::Kind::Error
                                     ? Result<bus::Frame>(bus::errorFrom(*f))
                                     : std::move(f);
          if (!r && store::retryable(r.error()) && loop_.now() + a->backoff < a->deadline) {
            Millis wait = a->backoff;
            a->backoff = std::min(a->backoff * 2, Millis(1000));
            loop_.after(wait, [this, a, alive] {
              if (!alive.expired() && !a->done) attempt(a);
            });
            return;
          }
          finish(std::move(r));
        });
      }));
}

void LocalStore::get(objects::ObjectKind kind, const std::string& id, Then<std::string> fn) {
  call(store::getRequest(kind, id), [fn = std::move(fn)](Result<bus::Frame> r) {
    if (!r) return fn(r.error());
    auto* reply = r->as<storeapi::Envelope>()->body_as_ObjectsReply();
    if (!reply || !reply->objects() || reply->objects()->size() != 1 ||
        !reply->objects()->Get(0)->data())
      return fn(Error{"the store's answer to a Get is not one object",
                      static_cast<int>(ErrorCode::Internal)});
    auto* data = reply->objects()->Get(0)->data();
    fn(std::string(reinterpret_cast<const char*>(data->data()), data->size()));
  });
}

void LocalStore::list(objects::ObjectKind kind, bool local, Then<std::vector<std::string>> fn,
                      Millis budget) {
  call(
      store::listRequest(kind, local),
      [fn = std::move(fn)](Result<bus::Frame> r) {
        if (!r) return fn(r.error());
        auto* reply = r->as<storeapi::Envelope>()->body_as_ObjectsReply();
        if (!reply)
          return fn(Error{"the store's answer to a List is not a list",
                          static_cast<int>(ErrorCode::Internal)});
        std::vector<std::string> out;
        if (reply->objects())
          for (auto* o : *reply->objects())
            if (o->data())
              out.emplace_back(reinterpret_cast<const char*>(o->data()->data()), o->data()->size());
        fn(std::move(out));
      },
      budget);
}

void LocalStore::commit(std::vector<store::ChangeSpec> changes, Then<uint64_t> fn) {
  call(store::txnRequest(changes), [fn = std::move(fn)](Result<bus::Frame> r) {
    if (!r) return fn(r.error());
    auto* reply = r->as<storeapi::Envelope>()->body_as_TxnReply();
    if (!reply)
      return fn(Error{"the store's answer to a txn is not a TxnReply",
                      static_cast<int>(ErrorCode::Internal)});
    fn(reply->index());
  });
}

}  // namespace shoal::raftd
