// Protocol transcripts (etcd raft's testdata style): each file in testdata/ is a list of
// commands, each followed by "----" and the trace it must produce. Run with --rewrite to
// regenerate the traces after a deliberate change, and review them as a diff.
//
// Commands:
//   add-nodes N [pre-vote=B] [check-quorum=B] [election=N] [chunk=N] [max-bytes=N]
//       [inflight=N]                 bootstrap voters 1..N
//   add-joiner ID [options]          an empty server that may be added later
//   forget-leader ID
//   campaign ID [early] | tick ID [N] | tick-heartbeat ID | tick-election ID
//   process-ready [ID...] | deliver [ID] | step (deliver all, then all Readies) | stabilize
//   drop-pending FROM TO [MsgType]   lose messages in flight
//   partition A B / C D | isolate ID | heal
//   propose ID DATA [early] | conf-change ID add-learner|promote|remove NODE
//   transfer-leader ID TARGET | read-index ID CTX | caught-up ID LEARNER
//   compact ID [KEEP] | crash ID | restart ID | status ID | log ID
//
// "early" handles the node's Ready as a shell that overlaps its disk write with replication
// (dissertation §10.2.1): only the messages Ready::mayPrecedePersist allows go out, and the
// Ready stays unpersisted until the next process-ready of that node (crash loses it).

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/raft/cluster.h"

using namespace shoal::raft;
using namespace shoal::raft::test;

namespace {

std::vector<std::string> split(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  std::string w;
  while (in >> w)
    out.push_back(w);
  return out;
}

class Runner {
 public:
  Runner() : cluster_([this](const std::string& s) { out_ += s + "\n"; }) {}

  std::string run(const std::string& line) {
    out_.clear();
    auto a = split(line);
    try {
      exec(a);
    } catch (const std::exception& e) {
      out_ += std::string("error: ") + e.what() + "\n";
    }
    if (out_.empty())
      out_ = "ok\n";
    return out_;
  }

 private:
  static NodeId num(const std::string& s) { return std::stoull(s); }

  NodeOptions options(const std::vector<std::string>& a, size_t from) {
    NodeOptions o;
    for (size_t i = from; i < a.size(); ++i) {
      auto eq = a[i].find('=');
      if (eq == std::string::npos)
        throw std::runtime_error("option " + a[i] + " needs name=value");
      std::string k = a[i].substr(0, eq), v = a[i].substr(eq + 1);
      if (k == "pre-vote") o.preVote = v == "true";
      else if (k == "check-quorum") o.checkQuorum = v == "true";
      else if (k == "election") o.election = std::stoi(v);
      else if (k == "chunk") o.chunkBytes = std::stoull(v);
      else if (k == "max-bytes") o.maxBytes = std::stoull(v);
      else if (k == "inflight") o.maxInflight = std::stoull(v);
      else throw std::runtime_error("unknown option " + k);
    }
    return o;
  }

  Raft& raft(NodeId id) {
    if (!cluster_.has(id) || !cluster_.node(id).raft)
      throw std::runtime_error("node " + std::to_string(id) + " is not running");
    return *cluster_.node(id).raft;
  }

  void result(const shoal::Status& st) {
    if (!st)
      out_ += "error: " + st.error().message + "\n";
  }
  template <class T>
  void result(const shoal::Result<T>& r) {
    if (!r)
      out_ += "error: " + r.error().message + "\n";
    else
      out_ += "index " + std::to_string(*r) + "\n";
  }

  static bool early(const std::vector<std::string>& a, size_t i) {
    if (a.size() <= i)
      return false;
    if (a[i] != "early")
      throw std::runtime_error("unknown argument " + a[i] + " (expected early)");
    return true;
  }

  void handle(NodeId id, bool early) {
    if (early)
      cluster_.sendEarly(id);
    else
      cluster_.processReady(id);
  }

  void exec(const std::vector<std::string>& a) {
    if (a.empty())
      return;
    const std::string& c = a[0];
    if (c == "add-nodes") {
      std::vector<NodeId> ids;
      for (NodeId i = 1; i <= num(a.at(1)); ++i)
        ids.push_back(i);
      cluster_.addVoters(ids, options(a, 2));
    } else if (c == "add-joiner") {
      cluster_.addJoiner(num(a.at(1)), options(a, 2));
    } else if (c == "forget-leader") {
      raft(num(a.at(1))).forgetLeader();
      cluster_.processReady(num(a[1]));
    } else if (c == "campaign") {
      result(raft(num(a.at(1))).campaign());
      handle(num(a[1]), early(a, 2));
    } else if (c == "tick" || c == "tick-heartbeat" || c == "tick-election") {
      NodeId id = num(a.at(1));
      TestNode& n = cluster_.node(id);
      int count = c == "tick" ? (a.size() > 2 ? std::stoi(a[2]) : 1)
                  : c == "tick-heartbeat" ? n.options.heartbeat
                                          : 2 * n.options.election;
      for (int i = 0; i < count; ++i)
        raft(id).tick();
      cluster_.processReady(id);
    } else if (c == "process-ready") {
      if (a.size() == 1)
        cluster_.processAllReady();
      for (size_t i = 1; i < a.size(); ++i)
        cluster_.processReady(num(a[i]));
    } else if (c == "deliver") {
      cluster_.deliver(a.size() > 1 ? num(a[1]) : kNoNode);
    } else if (c == "step") {
      // One round: deliver everything in flight, then every node handles its Ready.
      cluster_.deliver();
      cluster_.processAllReady();
    } else if (c == "stabilize") {
      cluster_.stabilize();
    } else if (c == "drop-pending") {
      NodeId from = num(a.at(1)), to = num(a.at(2));
      std::string type = a.size() > 3 ? a[3] : "";
      auto& p = cluster_.pending();
      for (auto it = p.begin(); it != p.end();) {
        if (it->from == from && it->to == to && (type.empty() || type == messageTypeName(it->type))) {
          out_ += "dropped " + describeMessage(*it) + "\n";
          it = p.erase(it);
        } else {
          ++it;
        }
      }
    } else if (c == "partition") {
      std::vector<std::vector<NodeId>> groups(1);
      for (size_t i = 1; i < a.size(); ++i) {
        if (a[i] == "/")
          groups.emplace_back();
        else
          groups.back().push_back(num(a[i]));
      }
      cluster_.partition(groups);
    } else if (c == "isolate") {
      cluster_.isolate(num(a.at(1)));
    } else if (c == "heal") {
      cluster_.heal();
    } else if (c == "propose") {
      result(raft(num(a.at(1))).propose(a.at(2)));
      handle(num(a[1]), early(a, 3));
    } else if (c == "conf-change") {
      ConfChange cc;
      const std::string& t = a.at(2);
      cc.type = t == "add-learner" ? ConfChangeType::AddLearner
                : t == "promote"   ? ConfChangeType::Promote
                : t == "remove"    ? ConfChangeType::Remove
                                   : throw std::runtime_error("unknown change " + t);
      cc.node = num(a.at(3));
      result(raft(num(a[1])).proposeConfChange(cc));
      cluster_.processReady(num(a[1]));
    } else if (c == "transfer-leader") {
      result(raft(num(a.at(1))).transferLeadership(num(a.at(2))));
      cluster_.processReady(num(a[1]));
    } else if (c == "read-index") {
      result(raft(num(a.at(1))).readIndex(a.at(2)));
      cluster_.processReady(num(a[1]));
    } else if (c == "caught-up") {
      out_ += raft(num(a.at(1))).learnerCaughtUp(num(a.at(2)), 0) ? "true\n" : "false\n";
    } else if (c == "compact") {
      NodeId id = num(a.at(1));
      result(cluster_.compact(id, a.size() > 2 ? num(a[2]) : 0));
      const MemoryStorage& s = *cluster_.node(id).storage;
      out_ += "snapshot " + std::to_string(s.snapshotMeta().term) + "/" +
              std::to_string(s.snapshotMeta().index) + " size " +
              std::to_string(s.snapshotMeta().size) + ", log from " +
              std::to_string(s.firstIndex()) + "\n";
    } else if (c == "crash") {
      cluster_.crash(num(a.at(1)));
    } else if (c == "restart") {
      cluster_.restart(num(a.at(1)));
    } else if (c == "status") {
      NodeStatus st = raft(num(a.at(1))).status();
      out_ += std::to_string(st.id) + " " + roleName(st.role) + " Term:" + std::to_string(st.term) +
              " Lead:" + std::to_string(st.leader) + " Commit:" + std::to_string(st.commit) +
              " Applied:" + std::to_string(st.applied) + " Last:" + std::to_string(st.lastIndex) +
              " " + describeConfState(st.conf) +
              (st.leadTransferee ? " Transferee:" + std::to_string(st.leadTransferee) : "") + "\n";
      for (const PeerStatus& p : st.peers)
        out_ += "  " + std::to_string(p.id) + ": " + progressStateName(p.state) + " match=" +
                std::to_string(p.match) + " next=" + std::to_string(p.next) +
                (p.learner ? " learner" : "") + (p.recentActive ? " active" : "") +
                (p.state == ProgressState::Snapshot
                     ? " snapshot=" + std::to_string(p.pendingSnapshot) + "@" +
                           std::to_string(p.snapshotOffset)
                     : "") +
                "\n";
    } else if (c == "log") {
      const RaftLog& l = raft(num(a.at(1))).log();
      auto ents = l.slice(l.firstIndex(), l.lastIndex() + 1, UINT64_MAX);
      if (ents)
        for (const Entry& e : *ents)
          out_ += describeEntry(e) + "\n";
      out_ += "commit " + std::to_string(l.committed()) + "\n";
    } else {
      throw std::runtime_error("unknown command " + c);
    }
  }

  std::string out_;
  Cluster cluster_;
};

// Runs one file; returns the file with fresh outputs, and whether they all matched.
bool runFile(const std::filesystem::path& path, std::string& rewritten) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);)
    lines.push_back(l);
  Runner runner;
  bool ok = true;
  size_t i = 0;
  while (i < lines.size()) {
    const std::string& l = lines[i];
    if (l.empty() || l[0] == '#') {
      rewritten += l + "\n";
      ++i;
      continue;
    }
    std::string cmd = l;
    ++i;
    std::string expected;
    if (i < lines.size() && lines[i] == "----") {
      ++i;
      while (i < lines.size() && !lines[i].empty())
        expected += lines[i++] + "\n";
    }
    std::string got = runner.run(cmd);
    rewritten += cmd + "\n----\n" + got;
    if (got != expected) {
      ok = false;
      std::printf("%s: command %s\n--- expected\n%s--- got\n%s\n", path.string().c_str(),
                  cmd.c_str(), expected.c_str(), got.c_str());
    }
  }
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  bool rewrite = false;
  std::string dir;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--rewrite")
      rewrite = true;
    else
      dir = a;
  }
  if (dir.empty()) {
    std::fprintf(stderr, "usage: %s [--rewrite] TESTDATA_DIR\n", argv[0]);
    return 2;
  }
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".txt")
      files.push_back(e.path());
  std::sort(files.begin(), files.end());
  int failed = 0;
  for (const auto& f : files) {
    std::string rewritten;
    bool ok = runFile(f, rewritten);
    if (rewrite) {
      std::ofstream(f) << rewritten;
    } else if (!ok) {
      ++failed;
    }
    std::printf("%s %s\n", rewrite ? "rewrote" : ok ? "ok" : "FAILED", f.filename().c_str());
  }
  if (files.empty()) {
    std::fprintf(stderr, "no transcripts in %s\n", dir.c_str());
    return 1;
  }
  return failed ? 1 : 0;
}
