#include "services/raftd/core/types.h"

#include <cstdio>

namespace shoal::raft {

// ConfChange encoding: 1 byte type, 8 bytes node id (little endian), then the context.
std::string encodeConfChange(const ConfChange& cc) {
  std::string out;
  out.reserve(9 + cc.context.size());
  out.push_back(static_cast<char>(cc.type));
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<char>((cc.node >> (8 * i)) & 0xff));
  out += cc.context;
  return out;
}

Result<ConfChange> decodeConfChange(std::string_view data) {
  if (data.size() < 9)
    return Error{"conf change entry is " + std::to_string(data.size()) +
                 " bytes, needs at least 9: the log holds a corrupt entry"};
  ConfChange cc;
  auto t = static_cast<uint8_t>(data[0]);
  if (t > static_cast<uint8_t>(ConfChangeType::Remove))
    return Error{"conf change entry has unknown type " + std::to_string(t) +
                 ": written by a newer version?"};
  cc.type = static_cast<ConfChangeType>(t);
  cc.node = 0;
  for (int i = 0; i < 8; ++i)
    cc.node |= static_cast<uint64_t>(static_cast<uint8_t>(data[1 + i])) << (8 * i);
  cc.context = std::string(data.substr(9));
  return cc;
}

const char* messageTypeName(MessageType t) {
  switch (t) {
    case MessageType::App: return "MsgApp";
    case MessageType::AppResp: return "MsgAppResp";
    case MessageType::Vote: return "MsgVote";
    case MessageType::VoteResp: return "MsgVoteResp";
    case MessageType::PreVote: return "MsgPreVote";
    case MessageType::PreVoteResp: return "MsgPreVoteResp";
    case MessageType::Heartbeat: return "MsgHeartbeat";
    case MessageType::HeartbeatResp: return "MsgHeartbeatResp";
    case MessageType::Snap: return "MsgSnap";
    case MessageType::SnapResp: return "MsgSnapResp";
    case MessageType::TimeoutNow: return "MsgTimeoutNow";
    case MessageType::ReadIndex: return "MsgReadIndex";
    case MessageType::ReadIndexResp: return "MsgReadIndexResp";
  }
  return "MsgUnknown";
}

const char* roleName(Role r) {
  switch (r) {
    case Role::Follower: return "Follower";
    case Role::PreCandidate: return "PreCandidate";
    case Role::Candidate: return "Candidate";
    case Role::Leader: return "Leader";
  }
  return "Unknown";
}

static std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out.push_back(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", static_cast<unsigned char>(c));
      out += buf;
    }
  }
  return out + "\"";
}

static const char* confChangeTypeName(ConfChangeType t) {
  switch (t) {
    case ConfChangeType::AddLearner: return "AddLearner";
    case ConfChangeType::Promote: return "Promote";
    case ConfChangeType::Remove: return "Remove";
  }
  return "Unknown";
}

std::string describeEntry(const Entry& e) {
  std::string out = std::to_string(e.term) + "/" + std::to_string(e.index);
  if (e.type == EntryType::ConfChange) {
    auto cc = decodeConfChange(e.data);
    if (cc)
      out += std::string(" ") + confChangeTypeName(cc->type) + " " + std::to_string(cc->node);
    else
      out += " ConfChange(corrupt)";
  } else {
    out += " EntryNormal " + quoted(e.data);
  }
  return out;
}

static std::string ids(const std::vector<NodeId>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i)
    out += (i ? " " : "") + std::to_string(v[i]);
  return out;
}

std::string describeConfState(const ConfState& c) {
  std::string out = "Voters:[" + ids(c.voters) + "]";
  if (!c.learners.empty())
    out += " Learners:[" + ids(c.learners) + "]";
  return out;
}

std::string describeMessage(const Message& m) {
  std::string out = std::to_string(m.from) + "->" + std::to_string(m.to) + " " +
                    messageTypeName(m.type) + " Term:" + std::to_string(m.term);
  switch (m.type) {
    case MessageType::App:
    case MessageType::Vote:
    case MessageType::PreVote:
      out += " Log:" + std::to_string(m.logTerm) + "/" + std::to_string(m.index);
      break;
    case MessageType::AppResp:
    case MessageType::ReadIndexResp:
      out += " Index:" + std::to_string(m.index);
      break;
    default:
      break;
  }
  if (m.reject) {
    out += " Rejected";
    if (m.type == MessageType::AppResp || m.type == MessageType::SnapResp)
      out += " (Hint: " + std::to_string(m.rejectHint) + ")";
  }
  if (m.commit != 0)
    out += " Commit:" + std::to_string(m.commit);
  if (!m.entries.empty()) {
    out += " Entries:[";
    for (size_t i = 0; i < m.entries.size(); ++i)
      out += (i ? ", " : "") + describeEntry(m.entries[i]);
    out += "]";
  }
  if (m.type == MessageType::Snap) {
    out += " Snapshot:" + std::to_string(m.snapshot.term) + "/" +
           std::to_string(m.snapshot.index) + " Size:" + std::to_string(m.snapshot.size) +
           " " + describeConfState(m.snapshot.conf) + " Chunk:" +
           std::to_string(m.chunkOffset) + "+" + std::to_string(m.chunkData.size());
    if (m.chunkDone)
      out += " Done";
  }
  if (m.type == MessageType::SnapResp)
    out += " Snapshot:" + std::to_string(m.snapshot.term) + "/" +
           std::to_string(m.snapshot.index) + " Acked:" + std::to_string(m.chunkOffset);
  if (!m.context.empty())
    out += " Context:" + quoted(m.context);
  return out;
}

}  // namespace shoal::raft
