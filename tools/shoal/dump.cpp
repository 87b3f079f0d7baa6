// shoal debug dump-store: a stopped raftd's objects as JSON, read straight from its LMDB.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <iostream>

#include <flatbuffers/idl.h>
#include <nlohmann/json.hpp>

#include "common/lmdb.h"
#include "objects_bfbs_generated.h"
#include "services/raftd/raft_storage.h"
#include "services/raftd/store/store.h"
#include "tools/shoal/cli.h"

namespace shoal::cli {
namespace {

// The daemon holds an exclusive lock on <state-dir>/LOCK while it runs (common/daemon.cpp).
bool daemonRunning(const std::string& stateDir) {
  int fd = ::open((stateDir + "/LOCK").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool held = ::flock(fd, LOCK_SH | LOCK_NB) != 0;
  ::close(fd);
  return held;
}

int dumpStore(const std::string& stateDir) {
  if (daemonRunning(stateDir)) {
    std::cerr << "error: raftd is running with state dir " << stateDir
              << "; stop it first, or use `shoal debug status raftd` for a running one\n";
    return 1;
  }
  lmdb::Options lo;
  lo.readOnly = true;
  lo.flags = MDB_NOLOCK;  // the daemon is stopped; do not touch its lock file
  lo.maxTables = 64;
  auto env = lmdb::Environment::open(stateDir + "/db", lo);
  if (!env) {
    std::cerr << "error: cannot open raftd's store in " << stateDir << "/db: "
              << env.error().message << " (is --state-dir raftd's state dir?)\n";
    return 1;
  }
  auto store = store::Store::open(**env);
  if (!store) {
    std::cerr << "error: " << store.error().message << "\n";
    return 1;
  }
  flatbuffers::Parser parser;
  parser.opts.strict_json = true;
  if (!parser.Deserialize(objects::StoreTxnBinarySchema::data(), objects::StoreTxnBinarySchema::size())) {
    std::cerr << "error: the embedded object schema is unreadable\n";
    return 1;
  }
  auto txn = (*env)->read();
  if (!txn) {
    std::cerr << "error: " << txn.error().message << "\n";
    return 1;
  }
  nlohmann::json out;
  auto last = (*store)->lastChangeIndex(*txn);
  out["last_change_index"] = last ? *last : 0;
  static const std::pair<objects::ObjectKind, const char*> kinds[] = {
      {objects::ObjectKind::Cluster, "Cluster"}, {objects::ObjectKind::Node, "Node"},
      {objects::ObjectKind::Service, "Service"}, {objects::ObjectKind::Task, "Task"},
      {objects::ObjectKind::Network, "Network"}, {objects::ObjectKind::Secret, "Secret"},
      {objects::ObjectKind::Config, "Config"}};
  int bad = 0;
  for (auto& [kind, name] : kinds) {
    auto list = (*store)->list(*txn, static_cast<store::ObjectKind>(kind));
    if (!list) {
      std::cerr << "error: " << list.error().message << "\n";
      return 1;
    }
    parser.SetRootType((std::string("shoal.objects.") + name).c_str());
    auto& arr = out["objects"][name];
    arr = nlohmann::json::array();
    for (auto bytes : *list) {
      std::string text;
      // The store verified every object before writing it; print what we can anyway.
      if (!flatbuffers::GenerateText(parser, bytes.data(), &text)) {
        ++bad;
        continue;
      }
      arr.push_back(nlohmann::json::parse(text, nullptr, false));
    }
  }
  std::cout << out.dump(2) << "\n";
  if (bad) std::cerr << "warning: " << bad << " object(s) could not be printed\n";
  return 0;
}

}  // namespace

void addDumpStoreCommand(CLI::App& debug, Outcome& outcome) {
  static std::string stateDir = "/var/lib/shoal/raftd";
  auto* ds = debug.add_subcommand("dump-store", "Print a stopped raftd's objects as JSON");
  ds->add_option("--state-dir", stateDir, "raftd's state dir")->capture_default_str();
  ds->callback([&outcome] { outcome.code = dumpStore(stateDir); });
}

}  // namespace shoal::cli
