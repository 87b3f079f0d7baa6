#pragma once
// One node's daemons for a process test: under root/name a state dir per daemon, one run dir
// and one node dir (docs/cluster.md "The node dir"), each daemon started in the foreground
// with its own log file, and all of them stopped with SIGTERM when the object goes.

#include <doctest/doctest.h>

#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/daemons.h"
#include "tests/support/process.h"

namespace shoal::testing {

inline std::string readFile(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

struct NodeDaemons {
  std::string name, run, nodeDir;
  std::filesystem::path root;
  std::map<std::string, std::unique_ptr<Process>> procs;

  NodeDaemons(const std::filesystem::path& r, std::string n) : name(std::move(n)), root(r) {
    run = (root / name / "run").string();
    nodeDir = (root / name / "node").string();
    std::filesystem::create_directories(root / name);
  }
  ~NodeDaemons() {
    for (auto& [daemon, proc] : procs) proc->signal(SIGTERM);
    for (auto& [daemon, proc] : procs) proc->wait(std::chrono::seconds(10));
  }
  NodeDaemons(const NodeDaemons&) = delete;
  NodeDaemons& operator=(const NodeDaemons&) = delete;

  std::string logOf(const std::string& daemon) const {
    return (root / (name + "-" + daemon + ".log")).string();
  }
  std::string socketOf(const std::string& daemon) const {
    return "ipc://" + run + "/" + daemon + ".sock";
  }
  // The last tailBytes of each daemon's log and its stderr, for failure messages.
  std::string logs(size_t tailBytes = 6000) const {
    std::string out;
    for (auto& [daemon, proc] : procs) {
      std::string text = readFile(logOf(daemon));
      if (text.size() > tailBytes) text = text.substr(text.size() - tailBytes);
      out += "--- " + name + " " + daemon + "\n" + text + proc->err();
    }
    return out;
  }

  // Starts the daemon (agentd with --hostname <name>) and waits until its socket exists.
  void start(const std::string& daemon, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {daemonPath(daemon), "--foreground",
                                     "--state-dir", (root / name / daemon).string(),
                                     "--run-dir", run, "--node-dir", nodeDir,
                                     "--log-file", logOf(daemon)};
    if (daemon == "agentd") argv.insert(argv.end(), {"--hostname", name});
    argv.insert(argv.end(), extra.begin(), extra.end());
    procs[daemon] = std::make_unique<Process>(argv);
    REQUIRE_MESSAGE(waitFor([&] { return std::filesystem::exists(run + "/" + daemon + ".sock"); },
                            std::chrono::seconds(20)),
                    name << "'s " << daemon << " made no socket: " << logs());
  }
  // SIGTERM, and it must end within 10 s.
  void stop(const std::string& daemon) {
    auto it = procs.find(daemon);
    if (it == procs.end()) return;
    it->second->signal(SIGTERM);
    auto st = it->second->wait(std::chrono::seconds(10));
    CHECK_MESSAGE(st.has_value(), name << "'s " << daemon << " did not stop on SIGTERM in 10 s");
    procs.erase(it);
  }
};

}  // namespace shoal::testing
