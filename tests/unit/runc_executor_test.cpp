// The runc executor's pure pieces (services/agentd/runc_executor.h): the overlay mount's
// options, /etc/hosts, secret targets and owners, and the event of a container's end.
#include <doctest/doctest.h>

#include "services/agentd/runc_executor.h"

namespace shoal::agentd {
namespace {

using objects::TaskState;

TEST_CASE("the overlay's lowerdir is the image's layers top first") {
  auto o = overlayOptions({"/l/base", "/l/mid", "/l/top"}, "/b/upper", "/b/work");
  REQUIRE(o);
  CHECK(*o == "lowerdir=/l/top:/l/mid:/l/base,upperdir=/b/upper,workdir=/b/work");
  auto none = overlayOptions({}, "/u", "/w");
  REQUIRE(!none);
  CHECK(none.error().message.find("no layers") != std::string::npos);
  CHECK(!overlayOptions({"/l/a:b"}, "/u", "/w"));
  std::vector<std::string> many(100, "/var/lib/shoal/agentd/images/layers/" + std::string(64, 'a'));
  auto tooMany = overlayOptions(many, "/u", "/w");
  REQUIRE(!tooMany);
  CHECK(tooMany.error().message.find("100 layers") != std::string::npos);
}

TEST_CASE("/etc/hosts: loopback, the hostname, then the spec's lines") {
  std::string hosts = hostsFile("web1", {"10.0.0.5 db", "10.0.0.6 cache c"});
  CHECK(hosts.rfind("127.0.0.1\tlocalhost\n", 0) == 0);
  CHECK(hosts.find("127.0.1.1\tweb1\n") != std::string::npos);
  std::string extra = "10.0.0.5 db\n10.0.0.6 cache c\n";
  REQUIRE(hosts.size() > extra.size());
  CHECK(hosts.substr(hosts.size() - extra.size()) == extra);
}

TEST_CASE("secrets under /run/secrets, configs under /, absolute targets as given") {
  CHECK(secretTarget("token", false) == "/run/secrets/token");
  CHECK(secretTarget("app.conf", true) == "/app.conf");
  CHECK(secretTarget("/etc/app/key", false) == "/etc/app/key");
}

TEST_CASE("a file's uid and gid are numbers, empty meaning root") {
  CHECK(fileOwner("", "uid", "secret s").value() == 0u);
  CHECK(fileOwner("1000", "uid", "secret s").value() == 1000u);
  auto bad = fileOwner("nobody", "uid", "secret s (id1)");
  REQUIRE(!bad);
  CHECK(bad.error().message == "secret s (id1): uid 'nobody' is not a number (give a numeric id)");
  CHECK(!fileOwner("-1", "gid", "x"));
}

TEST_CASE("a container's end: exit 0 COMPLETE, else FAILED with the code, runc's error told") {
  auto done = exitEvent("t1", ContainerExit{0, 0, 1, ""});
  CHECK(done.state == TaskState::Complete);
  CHECK(done.err.empty());
  auto three = exitEvent("t1", ContainerExit{3, 0, 1, ""});
  CHECK(three.state == TaskState::Failed);
  CHECK(three.err == "task: non-zero exit (3)");
  CHECK(three.exitCode == 3);
  auto killed = exitEvent("t1", ContainerExit{137, 9, 1, ""});
  CHECK(killed.err == "task: non-zero exit (137)");
  auto broken = exitEvent("t1", ContainerExit{128, 0, 1, "exec: \"nope\": not found"});
  CHECK(broken.state == TaskState::Failed);
  CHECK(broken.err == "task: exec: \"nope\": not found");
}

}  // namespace
}  // namespace shoal::agentd
