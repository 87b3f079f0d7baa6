#include "services/raftd/codec.h"

namespace shoal::raftd {
namespace {

std::string_view bytes(const flatbuffers::Vector<uint8_t>* v) {
  return v ? std::string_view(reinterpret_cast<const char*>(v->data()), v->size()) : std::string_view();
}

flatbuffers::Offset<raftpeer::ConfState> encodeConf(flatbuffers::FlatBufferBuilder& fbb,
                                                    const raft::ConfState& c) {
  return raftpeer::CreateConfState(fbb, fbb.CreateVector(c.voters), fbb.CreateVector(c.learners));
}

raft::ConfState decodeConf(const raftpeer::ConfState* c) {
  raft::ConfState out;
  if (!c) return out;
  if (c->voters()) out.voters.assign(c->voters()->begin(), c->voters()->end());
  if (c->learners()) out.learners.assign(c->learners()->begin(), c->learners()->end());
  return out;
}

}  // namespace

bus::Buffer encodeMessage(const raft::Message& m, uint64_t clusterId, std::string_view fromAddress) {
  size_t guess = 256 + m.chunkData.size() + m.context.size();
  for (auto& e : m.entries) guess += e.data.size() + 48;
  flatbuffers::FlatBufferBuilder fbb(guess);
  std::vector<flatbuffers::Offset<raftpeer::Entry>> entries;
  entries.reserve(m.entries.size());
  for (auto& e : m.entries) {
    auto data = fbb.CreateVector(reinterpret_cast<const uint8_t*>(e.data.data()), e.data.size());
    entries.push_back(raftpeer::CreateEntry(fbb, e.term, e.index, static_cast<uint8_t>(e.type), data));
  }
  auto ents = fbb.CreateVector(entries);
  auto snap = raftpeer::CreateSnapshotMeta(fbb, m.snapshot.index, m.snapshot.term,
                                           encodeConf(fbb, m.snapshot.conf), m.snapshot.size,
                                           m.snapshot.checksum);
  auto chunk = fbb.CreateVector(reinterpret_cast<const uint8_t*>(m.chunkData.data()), m.chunkData.size());
  auto ctx = fbb.CreateVector(reinterpret_cast<const uint8_t*>(m.context.data()), m.context.size());
  auto from = fbb.CreateString(fromAddress.data(), fromAddress.size());
  auto msg = raftpeer::CreateMessage(fbb, static_cast<uint8_t>(m.type), m.from, m.to, m.term,
                                     m.logTerm, m.index, ents, m.commit, m.reject, m.rejectHint,
                                     snap, m.chunkOffset, chunk, m.chunkDone, ctx, clusterId, from);
  return bus::message<raftpeer::Envelope>(fbb, raftpeer::Body::Message, msg.Union());
}

Result<raft::Message> decodeMessage(const raftpeer::Message& in) {
  if (in.type() > static_cast<uint8_t>(raft::MessageType::ReadIndexResp))
    return Error{"raft message of unknown type " + std::to_string(in.type())};
  raft::Message m;
  m.type = static_cast<raft::MessageType>(in.type());
  m.from = in.from();
  m.to = in.to();
  m.term = in.term();
  m.logTerm = in.log_term();
  m.index = in.index();
  if (in.entries()) {
    m.entries.reserve(in.entries()->size());
    for (const auto* e : *in.entries()) {
      if (e->type() > static_cast<uint8_t>(raft::EntryType::ConfChange))
        return Error{"raft entry of unknown type " + std::to_string(e->type())};
      m.entries.push_back({e->term(), e->index(), static_cast<raft::EntryType>(e->type()),
                           std::string(bytes(e->data()))});
    }
  }
  m.commit = in.commit();
  m.reject = in.reject();
  m.rejectHint = in.reject_hint();
  if (auto* s = in.snapshot())
    m.snapshot = {s->index(), s->term(), decodeConf(s->conf()), s->size(), s->checksum()};
  m.chunkOffset = in.chunk_offset();
  m.chunkData = std::string(bytes(in.chunk_data()));
  m.chunkDone = in.chunk_done();
  m.context = std::string(bytes(in.context()));
  return m;
}

}  // namespace shoal::raftd
