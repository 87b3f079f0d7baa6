// services/dispatcherd/log_broker.h: the log broker's bookkeeping (LogBook) step by step:
// subscribe, publish, close, a node gone, the subscriber gone, the limit.
#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include "services/dispatcherd/log_broker.h"

using namespace shoal::dispatcherd;
using shoal::wire::ErrorCode;

namespace {

using ByNode = std::map<std::string, std::vector<std::string>>;

std::vector<std::string> nodesOf(const LogEffects& fx) {
  std::vector<std::string> out;
  for (auto& m : fx.toNodes) out.push_back(m.nodeId);
  return out;
}

using V = std::vector<std::string>;

}  // namespace

TEST_CASE("a subscription goes to every node holding the tasks and ends when all closed") {
  LogBook book;
  book.nodeUp("n1");
  book.nodeUp("n2");
  auto fx = book.subscribe(7, {{"n1", {"t1", "t2"}}, {"n2", {"t3"}}}, {false, 2, 0});
  REQUIRE(fx.ok());
  CHECK(nodesOf(*fx) == V{"n1", "n2"});
  CHECK(fx->toNodes[0].taskIds == V{"t1", "t2"});
  CHECK(fx->toNodes[0].options.tail == 2);
  CHECK_FALSE(fx->toNodes[0].close);
  CHECK(fx->missing.empty());
  CHECK(fx->finished.empty());
  std::string sub = fx->toNodes[0].subscriptionId;
  CHECK(book.subscriptionOf(7) == sub);

  LogBook::SubscriberId who = 0;
  CHECK(book.check("n1", sub, &who) == LogBook::Verdict::Relay);
  CHECK(who == 7);
  CHECK(book.allowed("n1", sub, "t2"));
  CHECK_FALSE(book.allowed("n1", sub, "t3"));  // n2's task
  CHECK(book.check("n3", sub, nullptr) == LogBook::Verdict::NotYours);
  CHECK(book.check("n1", "logs-999", nullptr) == LogBook::Verdict::Unknown);

  CHECK(book.nodeClosed("n1", sub).finished.empty());
  CHECK(book.check("n1", sub, nullptr) == LogBook::Verdict::NotYours);  // it said it is done
  auto last = book.nodeClosed("n2", sub);
  CHECK(last.finished == std::vector<uint64_t>{7});
  CHECK(book.size() == 0);
  CHECK(book.check("n2", sub, nullptr) == LogBook::Verdict::Unknown);
}

TEST_CASE("nodes without a stream are missing at once; none at all ends the subscription") {
  LogBook book;
  book.nodeUp("n1");
  auto fx = book.subscribe(1, {{"n1", {"t1"}}, {"down", {"t2"}}}, {});
  REQUIRE(fx.ok());
  CHECK(nodesOf(*fx) == V{"n1"});
  CHECK(fx->missing.at(1) == V{"down"});
  CHECK(fx->finished.empty());

  auto none = book.subscribe(2, {{"down", {"t2"}}}, {});
  REQUIRE(none.ok());
  CHECK(none->toNodes.empty());
  CHECK(none->missing.at(2) == V{"down"});
  CHECK(none->finished == std::vector<uint64_t>{2});

  auto empty = book.subscribe(3, {}, {});
  REQUIRE(empty.ok());
  CHECK(empty->finished == std::vector<uint64_t>{3});
  CHECK(book.size() == 1);
}

TEST_CASE("a node gone is missing and done in every subscription it had") {
  LogBook book;
  book.nodeUp("n1");
  book.nodeUp("n2");
  REQUIRE(book.subscribe(1, {{"n1", {"a"}}, {"n2", {"b"}}}, {}).ok());
  REQUIRE(book.subscribe(2, {{"n2", {"b"}}}, {true, -1, 0}).ok());
  auto fx = book.nodeDown("n2");
  CHECK(fx.missing.at(1) == V{"n2"});
  CHECK(fx.missing.at(2) == V{"n2"});
  CHECK(fx.finished.empty());  // 1 waits for n1; 2 follows
  CHECK_FALSE(book.isUp("n2"));
  CHECK(book.nodeClosed("n1", *book.subscriptionOf(1)).finished == std::vector<uint64_t>{1});
  CHECK(book.nodeDown("n2").missing.empty());  // said once
}

TEST_CASE("a follower never finishes by itself; its going away tells its nodes to stop") {
  LogBook book;
  book.nodeUp("n1");
  book.nodeUp("n2");
  auto fx = book.subscribe(5, {{"n1", {"a"}}, {"n2", {"b"}}}, {true, -1, 0});
  REQUIRE(fx.ok());
  std::string sub = fx->toNodes[0].subscriptionId;
  CHECK(book.nodeClosed("n1", sub).finished.empty());
  auto gone = book.unsubscribe(5);
  REQUIRE(gone.toNodes.size() == 1);
  CHECK(gone.toNodes[0].nodeId == "n2");
  CHECK(gone.toNodes[0].subscriptionId == sub);
  CHECK(gone.toNodes[0].close);
  CHECK(book.size() == 0);
  CHECK(book.unsubscribe(5).toNodes.empty());
  CHECK(book.check("n2", sub, nullptr) == LogBook::Verdict::Unknown);
}

TEST_CASE("the number of subscriptions is bounded") {
  LogBook book(2);
  book.nodeUp("n1");
  REQUIRE(book.subscribe(1, {{"n1", {"a"}}}, {true, -1, 0}).ok());
  REQUIRE(book.subscribe(2, {{"n1", {"a"}}}, {true, -1, 0}).ok());
  auto refused = book.subscribe(3, {{"n1", {"a"}}}, {true, -1, 0});
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().code == static_cast<int>(ErrorCode::ResourceExhausted));
  CHECK(refused.error().message.find("limit") != std::string::npos);
  book.unsubscribe(1);
  CHECK(book.subscribe(3, {{"n1", {"a"}}}, {true, -1, 0}).ok());
  CHECK_FALSE(book.subscribe(3, {}, {}).ok());  // one subscription per subscriber
  CHECK(book.json()["subscriptions"].size() == 2);
}
