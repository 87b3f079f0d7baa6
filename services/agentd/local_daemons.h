#pragma once
// The node's other daemons as agentd asks them (docs/cluster.md "swarm join" 4, roles): raftd
// starts or stops raft (swarm.fbs), dispatcherd re-reads node.json (control.fbs Reload).
// Both on their sockets in the run dir.

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "common/bus.h"
#include "common/loop.h"
#include "common/result.h"
#include "services/agentd/manager_replies.h"

namespace shoal::agentd {

struct RaftStart {
  RaftJoinInfo membership;
  std::string listenAddr;     // host:port of the peer port
  std::string advertiseAddr;  // host:port
};

class LocalDaemons {
 public:
  using Done = std::function<void(Status)>;
  static constexpr std::chrono::milliseconds kTimeout{5000};

  LocalDaemons(Loop& loop, zmq::context_t& ctx, const std::string& runDir);

  // swarm JoinRaftRequest to raftd.
  void joinRaft(const RaftStart& start, Done done);
  // swarm LeaveRequest to raftd; its refusal (quorum) is the error, as raftd wrote it.
  void leaveRaft(bool force, Done done);
  // control Reload to dispatcherd.
  void reloadDispatcher(Done done);

 private:
  Done explain(std::string daemon, std::string socket, Done done);

  std::string raftdSocket_;
  std::string dispatcherdSocket_;
  bus::Client raftd_;
  bus::Client dispatcherd_;
};

}  // namespace shoal::agentd
