#pragma once
// agentd's calls to the node's overlayd (schemas/overlay.fbs, docs/containers.md "Network
// sandboxes"): the task's network namespace. Callbacks run on the loop, never inside the call.
// When overlayd does not answer, the error says so and how to start it.

#include <functional>
#include <memory>
#include <string>

#include <zmq.hpp>

#include "common/loop.h"
#include "common/result.h"

namespace shoal::agentd {

class SandboxClient {
 public:
  // runDir: where overlayd.sock is (the daemon's --run-dir).
  SandboxClient(Loop& loop, zmq::context_t& ctx, std::string runDir);
  ~SandboxClient();
  SandboxClient(const SandboxClient&) = delete;
  SandboxClient& operator=(const SandboxClient&) = delete;

  using PathFn = std::function<void(Result<std::string>)>;  // the netns path
  void create(const std::string& taskId, PathFn done);
  void remove(const std::string& taskId, std::function<void(Status)> done);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace shoal::agentd
