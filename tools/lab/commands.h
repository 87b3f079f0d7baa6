#pragma once
// shoal-lab's commands (docs/lab.md). Each returns the process's exit code and throws
// LabError for what the user must read.

#include <optional>
#include <string>
#include <vector>

namespace shoal::lab {

struct UpOptions {
  std::string name;
  int managers = 3;
  int workers = 2;
  std::string binDir;  // where the daemons and the shoal CLI are; empty: beside shoal-lab
  std::string heartbeat;  // `swarm init --dispatcher-heartbeat`; empty: the cluster's default
  std::string executor;   // agentd --executor (fake | runc); empty: agentd's default
  std::string fakeDelay;  // agentd --fake-delay (with --executor fake); empty: agentd's default
  int fakeNodes = 0;      // > 0: one more worker whose agentd poses as this many nodes
  bool registry = false;  // a docker-registry on the hub's bridge, trusted by every agentd
};

int up(const UpOptions& options);
int down(const std::string& name);
int ls(const std::optional<std::string>& name, bool json);
int exec(const std::string& name, const std::string& node, const std::vector<std::string>& command);
int kill(const std::string& name, const std::string& node, const std::optional<std::string>& daemon);
int start(const std::string& name, const std::string& node, const std::optional<std::string>& daemon);
int partition(const std::string& name, const std::vector<std::string>& nodes);
int heal(const std::string& name);
// Copies an image (a skopeo source: oci:DIR:REF, oci-archive:, docker-archive:, dir:) into
// the lab's registry as image (NAME[:TAG]); prints the reference the nodes pull.
int push(const std::string& name, const std::string& source, const std::string& image);

}  // namespace shoal::lab
