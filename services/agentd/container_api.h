#pragma once
// The node's containers and volumes on agentd.sock (schemas/containers.fbs, docs/containers.md
// "Node-local commands"): `shoal container ls|rm` and `shoal volume ls|rm`, answered by the
// node's own agentd as docker's are by the local engine. With the fake executor there are no
// containers: every request is answered Unavailable, saying so.

#include "common/bus.h"
#include "containers_generated.h"
#include "services/agentd/runc_executor.h"

namespace shoal::agentd {

class ContainerApi {
 public:
  // executor: null when agentd runs the fake executor.
  explicit ContainerApi(RuncExecutor* executor) : executor_(executor) {}
  void serve(bus::Call call);

 private:
  void list(bus::Call call, const containerapi::ListRequest& req);
  void remove(bus::Call call, const containerapi::RemoveRequest& req);
  void listVolumes(bus::Call call);
  void removeVolume(bus::Call call, const containerapi::VolumeRemoveRequest& req);

  RuncExecutor* executor_;
};

}  // namespace shoal::agentd
