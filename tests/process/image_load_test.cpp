// `shoal image load|ls|rm|pull` and `shoal login|logout` against a real agentd (--executor
// runc, no swarm needed: images are per node) and, for login and pull, a docker-registry with
// htpasswd users on loopback (tests/support/registry.h). Archives are made on the spot:
// tools/images/make-busybox-image's OCI layout tarball, and a docker-archive written by
// python3. Broken archives (truncated, a tampered blob) must leave the store as it was.
// Every process is stopped and every dir removed, pass or fail.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/daemons.h"
#include "tests/support/node_daemons.h"
#include "tests/support/process.h"
#include "tests/support/registry.h"
#include "tests/support/tempdir.h"

namespace shoal {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;
using testing::buildDir;
using testing::RunResult;
using testing::TempDir;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::string show(const RunResult& r) {
  return "exit " + std::to_string(r.status.code) + (r.timedOut ? " (timed out)" : "") +
         "\nstdout:\n" + r.out + "stderr:\n" + r.err;
}

// A docker-archive as `docker save` (before 25) writes it: manifest.json, the config as
// <hex>.json, one plain layer tar holding hello.txt.
constexpr const char* kDockerArchive = R"PY(
import hashlib, io, json, sys, tarfile
def tar_of(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in files:
            info = tarfile.TarInfo(name); info.size = len(data); info.mtime = 0
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()
layer = tar_of([("hello.txt", b"hello from a docker-archive\n")])
diff = "sha256:" + hashlib.sha256(layer).hexdigest()
config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["cat", "/hello.txt"]},
                     "rootfs": {"type": "layers", "diff_ids": [diff]}}).encode()
cid = hashlib.sha256(config).hexdigest()
manifest = json.dumps([{"Config": cid + ".json", "RepoTags": [sys.argv[2]],
                        "Layers": ["abc/layer.tar"]}]).encode()
open(sys.argv[1], "wb").write(tar_of([(cid + ".json", config), ("abc/layer.tar", layer),
                                      ("manifest.json", manifest)]))
)PY";

struct Node : testing::NodeDaemons {
  TempDir& tmp;
  std::string dockerConfig;

  explicit Node(TempDir& t) : NodeDaemons(t.path(), "n1"), tmp(t), dockerConfig(t / "docker") {
    start("agentd", {"--executor", "runc", "--runc-root", t / "runc"});
  }
  void restart() {
    stop("agentd");
    start("agentd", {"--executor", "runc", "--runc-root", tmp / "runc"});
  }
  std::string images() const { return (root / name / "agentd" / "images").string(); }

  RunResult shoal(std::vector<std::string> args, std::chrono::milliseconds timeout = 120s) const {
    std::vector<std::string> argv = {buildDir() + "/tools/shoal/shoal", "--run-dir", run};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::run(argv, {"DOCKER_CONFIG=" + dockerConfig}, timeout);
  }
  RunResult shoalOk(std::vector<std::string> args) const {
    auto r = shoal(args);
    REQUIRE_MESSAGE(r.status.code == 0, "shoal " << args[0] << " " << args[1] << ": " << show(r)
                                                 << logs());
    return r;
  }
  // `image ls --format json`: the Name of each row.
  std::set<std::string> names() const {
    auto r = shoalOk({"image", "ls", "--format", "json"});
    std::set<std::string> out;
    std::istringstream lines(r.out);
    for (std::string line; std::getline(lines, line);) {
      auto row = json::parse(line, nullptr, false);
      REQUIRE_MESSAGE(row.is_object(), "image ls --format json printed " << line);
      out.insert(row.value("Name", std::string("?")));
    }
    return out;
  }
  // What the store holds on disk: every file under blobs/ and layers/ (top level), and
  // images.json's content.
  std::string snapshot() const {
    std::string out;
    for (const char* dir : {"blobs/sha256", "layers"})
      if (fs::exists(images() + "/" + dir))
        for (const auto& e : fs::directory_iterator(images() + "/" + dir))
          out += e.path().string() + "\n";
    std::ifstream in(images() + "/images.json");
    out += std::string((std::istreambuf_iterator<char>(in)), {});
    return out;
  }
  size_t count(const char* dir) const {
    if (!fs::exists(images() + "/" + dir)) return 0;
    return static_cast<size_t>(std::distance(fs::directory_iterator(images() + "/" + dir), {}));
  }
};

void run(const std::vector<std::string>& argv) {
  auto r = testing::run(argv, {}, 120s);
  REQUIRE_MESSAGE(r.status.code == 0, argv[0] << " " << argv[1] << ": " << show(r));
}

// make-busybox-image's layout in tmp/<dir>, named as docker ≥ 25's `docker save` names an
// image in index.json (io.containerd.image.name: the tool writes a tag alone in ref.name), and
// tarred; labels make digests of their own.
constexpr const char* kNameImage = R"PY(
import json, sys
path = sys.argv[1] + "/index.json"
index = json.load(open(path))
index["manifests"][0].setdefault("annotations", {})["io.containerd.image.name"] = sys.argv[2]
open(path, "w").write(json.dumps(index))
)PY";

std::string tarLayout(TempDir& tmp, const std::string& dir) {
  std::string tar = tmp / (dir + ".tar");
  run({"/bin/tar", "-C", tmp / dir, "-cf", tar, "oci-layout", "index.json", "blobs"});
  return tar;
}

std::string busyboxTar(TempDir& tmp, const std::string& dir, const std::string& name,
                       const std::vector<std::string>& labels = {}) {
  std::vector<std::string> argv = {"/usr/bin/python3",
                                   testing::sourceDir() + "/tools/images/make-busybox-image",
                                   "--out", tmp / dir};
  for (const auto& l : labels) argv.insert(argv.end(), {"--label", l});
  run(argv);
  run({"/usr/bin/python3", "-c", kNameImage, tmp / dir, name});
  return tarLayout(tmp, dir);
}

TEST_CASE("image load of an OCI layout and a docker-archive; ls; rm collects the layers") {
  TempDir tmp;
  Node n(tmp);
  std::string oci = busyboxTar(tmp, "busybox", "docker.io/library/busybox:latest");
  auto loaded = n.shoalOk({"image", "load", "-i", oci});
  CHECK(loaded.out == "Loaded image: busybox:latest\n");
  CHECK(n.names() == std::set<std::string>{"docker.io/library/busybox:latest"});
  size_t layersWithBusybox = n.count("layers");
  CHECK(layersWithBusybox == 1);

  std::string archive = tmp / "hello.tar";
  run({"/usr/bin/python3", "-c", kDockerArchive, archive, "example/hello:1"});
  loaded = n.shoalOk({"image", "load", archive});
  CHECK(loaded.out == "Loaded image: example/hello:1\n");
  CHECK(n.names() == std::set<std::string>{"docker.io/library/busybox:latest",
                                           "docker.io/example/hello:1"});
  CHECK(n.count("layers") == layersWithBusybox + 1);
  auto table = n.shoalOk({"image", "ls"});
  CHECK(contains(table.out, "REPOSITORY"));
  CHECK(contains(table.out, "example/hello"));

  auto rm = n.shoalOk({"image", "rm", "example/hello:1"});
  CHECK(contains(rm.out, "Untagged: example/hello:1\n"));
  CHECK(contains(rm.out, "Deleted: sha256:"));
  CHECK(n.names() == std::set<std::string>{"docker.io/library/busybox:latest"});
  // The store keeps blobs a load put out of collection's reach for a while (image_store.cpp
  // kPinTime, in memory): after a restart, the next rm collects everything no image uses.
  n.restart();
  auto rmBusybox = n.shoalOk({"image", "rm", "busybox"});
  CHECK(contains(rmBusybox.out, "Untagged: busybox:latest\n"));
  CHECK(n.names().empty());
  CHECK_MESSAGE(testing::waitFor([&] { return n.count("layers") == 0 && n.count("blobs/sha256") == 0; }, 20s),
                "the removed images' blobs and layers were not collected: " << n.snapshot());
  auto again = n.shoal({"image", "rm", "example/hello:1"});
  CHECK(again.status.code == 1);
  CHECK(contains(again.err, "No such image"));
}

TEST_CASE("a truncated archive and one with a tampered blob change nothing in the store") {
  TempDir tmp;
  Node n(tmp);
  n.shoalOk({"image", "load", busyboxTar(tmp, "busybox", "docker.io/library/busybox:latest")});
  std::string before = n.snapshot();

  // Another image (its own digests), cut in the middle of its blobs.
  std::string other = busyboxTar(tmp, "other", "docker.io/library/other:1", {"made=for-this-test"});
  fs::resize_file(other, fs::file_size(other) / 2);
  auto truncated = n.shoal({"image", "load", other});
  CHECK_MESSAGE(truncated.status.code == 1, show(truncated));
  CHECK_MESSAGE(contains(truncated.err, "truncated"), show(truncated));
  CHECK(contains(truncated.err, other));
  CHECK(n.snapshot() == before);

  // The same layout with one byte of its layer changed, tarred again.
  busyboxTar(tmp, "tampered", "docker.io/library/tampered:1", {"made=to-be-tampered"});
  std::string layer;
  for (const auto& e : fs::directory_iterator(tmp / "tampered/blobs/sha256"))
    if (layer.empty() || fs::file_size(e.path()) > fs::file_size(layer)) layer = e.path().string();
  {
    std::fstream f(layer, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x42');
  }
  std::string tar = tarLayout(tmp, "tampered");
  auto tampered = n.shoal({"image", "load", tar});
  CHECK_MESSAGE(tampered.status.code == 1, show(tampered));
  CHECK_MESSAGE(contains(tampered.err, "changed or damaged"), show(tampered));
  CHECK(contains(tampered.err, fs::path(layer).filename().string()));
  CHECK(n.snapshot() == before);
  CHECK(n.names() == std::set<std::string>{"docker.io/library/busybox:latest"});

  auto notThere = n.shoal({"image", "load", tmp / "nothing.tar"});
  CHECK(notThere.status.code == 1);
  CHECK(contains(notThere.err, "nothing.tar"));
}

TEST_CASE("login against a registry with users: right credentials stored, wrong ones not") {
  testing::TestRegistry registry({.user = "alice", .password = "s3cret"});
  TempDir tmp;
  Node n(tmp);
  std::string config = n.dockerConfig + "/config.json";

  auto wrong = n.shoal({"login", "-u", "alice", "-p", "nope", registry.host()});
  CHECK_MESSAGE(wrong.status.code == 1, show(wrong));
  CHECK(contains(wrong.err, "wrong username or password"));
  CHECK_FALSE(fs::exists(config));

  auto noTty = n.shoal({"login", registry.host()});
  CHECK(noTty.status.code == 1);
  CHECK(contains(noTty.err, "non TTY"));

  auto right = n.shoal({"login", "-u", "alice", "-p", "s3cret", registry.host()});
  REQUIRE_MESSAGE(right.status.code == 0, show(right));
  CHECK(contains(right.out, "Login Succeeded"));
  CHECK(contains(right.err, "--password-stdin"));  // docker's warning about -p
  struct stat st {};
  REQUIRE(::stat(config.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  std::ifstream in(config);
  auto doc = json::parse(in, nullptr, false);
  CHECK(doc["auths"][registry.host()]["auth"] == "YWxpY2U6czNjcmV0");  // alice:s3cret

  // The stored credentials go with a pull of that registry's image.
  std::string ref = registry.pushBusybox("private/busybox");
  auto pull = n.shoal({"image", "pull", ref});
  CHECK_MESSAGE(pull.status.code == 0, show(pull) << n.logs());
  CHECK(contains(pull.out, "Digest: sha256:"));
  CHECK(n.names().contains(ref));

  auto out = n.shoalOk({"logout", registry.host()});
  CHECK(contains(out.out, "Removing login credentials for " + registry.host()));
  auto denied = n.shoal({"image", "pull", ref});
  CHECK(denied.status.code == 1);
  CHECK_MESSAGE(contains(denied.err, "shoal login"), show(denied));
}

}  // namespace
}  // namespace shoal
