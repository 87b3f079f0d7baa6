#pragma once
// The daemon runtime every shoal daemon is built on (FRR's lib/ idea): flags, logging,
// signals, systemd notification and watchdog, the state and run dirs, and the local control
// socket <run-dir>/<daemon>.sock that answers Status and SetLogLevel. A daemon's main.cpp
// only wires its own parts into this.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "common/bus.h"
#include "common/loop.h"
#include "common/result.h"

namespace shoal {

class Daemon {
 public:
  using StatusFn = std::function<void(nlohmann::json&)>;

  // name: the daemon's name (raftd, agentd, ...); summary: one line for --help.
  Daemon(std::string name, std::string summary);
  ~Daemon();

  // Add the daemon's own flags here before parse().
  CLI::App& flags() { return app_; }
  // Parses the command line. Returns an exit code when the process should end at once
  // (--help, --version, a bad flag), nothing when it should go on to run().
  std::optional<int> parse(int argc, char** argv);

  // Prepares the dirs, logging and control socket, calls init, tells systemd READY=1 and
  // runs the loop until SIGTERM or SIGINT. Returns the process's exit code.
  int run(std::function<Status(Daemon&)> init);

  const std::string& name() const { return name_; }
  const std::string& stateDir() const { return stateDir_; }
  const std::string& runDir() const { return runDir_; }
  // The node's identity dir (common/node_dir.h), shared by the node's daemons.
  const std::string& nodeDir() const { return nodeDir_; }
  std::string socketPath() const { return runDir_ + "/" + name_ + ".sock"; }
  Loop& loop() { return loop_; }
  zmq::context_t& zmq() { return *zmq_; }
  // The control socket's server; a daemon may serve its own protocols on it too.
  bus::Server& server() { return *server_; }

  // Adds the daemon's own fields to its Status JSON.
  void addStatus(StatusFn fn) { statusFns_.push_back(std::move(fn)); }
  // A one-line summary of the state, for systemd (STATUS=) and Status.
  void setStatusText(std::string text);
  // Called on a control Reload (after swarm init, a join, a role change or a leave): the
  // daemon re-reads the node dir. An error is the Reload's answer.
  void onReload(std::function<Status()> fn) { reloadFns_.push_back(std::move(fn)); }
  // Called on stop, in reverse order of registration, before the socket closes.
  void onStop(std::function<void()> fn) { stopFns_.push_back(std::move(fn)); }
  // Stops the loop as SIGTERM does.
  void requestStop();

  nlohmann::json status() const;

 private:
  Status prepareDirs();
  Status lockFiles();
  Status startSocket();
  void setupSignals();
  void onSignal();
  void serveControl();
  std::optional<int> daemonize();

  std::string name_;
  CLI::App app_;
  std::string stateDir_;
  std::string runDir_;
  std::string nodeDir_;
  std::string logLevel_ = "info";
  std::string logFile_;
  bool foreground_ = false;

  Loop loop_;
  std::unique_ptr<zmq::context_t> zmq_;
  std::unique_ptr<bus::Server> server_;
  std::vector<StatusFn> statusFns_;
  std::vector<std::function<void()>> stopFns_;
  std::vector<std::function<Status()>> reloadFns_;
  std::string statusText_ = "starting";
  int signalFd_ = -1;
  int stateLockFd_ = -1;
  int runLockFd_ = -1;
  int readyPipe_ = -1;  // to the waiting parent when daemonized
  Loop::Clock::time_point started_;
};

}  // namespace shoal
