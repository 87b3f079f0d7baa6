// Writes the seed corpus of envelope-fuzz: real envelopes of every fuzzed protocol, made
// with the bus's own builders, so that the fuzzer starts from buffers the verifier accepts.
// No binary file is kept in git; tests/fuzz/run_fuzzer.sh calls this at the start.
//   envelope-fuzz-seeds DIR
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "common/bus.h"
#include "common/protocols.h"
#include "services/raftd/protocols.h"
#include "tests/support/testing_protocol.h"

namespace shoal {
namespace {

std::vector<bus::Buffer> seeds() {
  std::vector<bus::Buffer> out;
  auto add = [&out](bus::Buffer b, uint64_t id, wire::Kind kind, uint32_t timeoutMs,
                    uint32_t credits) {
    bus::setHeader(b, id, kind, timeoutMs, credits);
    out.push_back(std::move(b));
  };
  {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = control::CreateStatusRequest(fbb);
    add(bus::message<control::Envelope>(fbb, control::Body::StatusRequest, body.Union()), 1,
        wire::Kind::Request, 5000, 0);
  }
  {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = control::CreateStatusReply(fbb, fbb.CreateString(R"({"daemon":"raftd","pid":1})"));
    add(bus::message<control::Envelope>(fbb, control::Body::StatusReply, body.Union()), 1,
        wire::Kind::Reply, 0, 0);
  }
  {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = control::CreateSetLogLevelRequest(fbb, fbb.CreateString("debug"));
    add(bus::message<control::Envelope>(fbb, control::Body::SetLogLevelRequest, body.Union()), 2,
        wire::Kind::Request, 1000, 0);
  }
  {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = control::CreateSetLogLevelReply(fbb, fbb.CreateString("info"), fbb.CreateString("debug"));
    add(bus::message<control::Envelope>(fbb, control::Body::SetLogLevelReply, body.Union()), 2,
        wire::Kind::Reply, 0, 0);
  }
  out.push_back(bus::control(kControlProtocol, wire::Kind::Error, 3, 0,
                             wire::ErrorCode::InvalidArgument, "unknown log level"));
  out.push_back(bus::control(kControlProtocol, wire::Kind::Cancel, 4));
  {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = testing::CreateEcho(fbb, fbb.CreateString("hello"));
    add(bus::message<testing::Envelope>(fbb, testing::Body::Echo, body.Union()), 5,
        wire::Kind::Request, 0, 0);
  }
  {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = testing::CreateSleep(fbb, 100);
    add(bus::message<testing::Envelope>(fbb, testing::Body::Sleep, body.Union()), 6,
        wire::Kind::Request, 50, 0);
  }
  {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = testing::CreateCount(fbb, 10);
    add(bus::message<testing::Envelope>(fbb, testing::Body::Count, body.Union()), 7,
        wire::Kind::Request, 0, 16);
  }
  {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = testing::CreateItem(fbb, 3);
    add(bus::message<testing::Envelope>(fbb, testing::Body::Item, body.Union()), 7,
        wire::Kind::StreamItem, 0, 0);
  }
  out.push_back(bus::control(testing::kTestingProtocol, wire::Kind::Credit, 7, 8));
  out.push_back(bus::control(testing::kTestingProtocol, wire::Kind::StreamEnd, 7, 0,
                             wire::ErrorCode::Unavailable, "server is shutting down"));
  {
    flatbuffers::FlatBufferBuilder fbb;
    std::vector<uint8_t> data = {1, 2, 3, 4};
    std::vector<flatbuffers::Offset<raftpeer::Entry>> entries = {
        raftpeer::CreateEntry(fbb, 2, 10, 0, fbb.CreateVector(data)),
        raftpeer::CreateEntry(fbb, 2, 11, 1, fbb.CreateVector(data))};
    auto entriesVec = fbb.CreateVector(entries);
    std::vector<uint64_t> voters = {1, 2, 3}, learners = {4};
    auto conf = raftpeer::CreateConfState(fbb, fbb.CreateVector(voters), fbb.CreateVector(learners));
    auto snapshot = raftpeer::CreateSnapshotMeta(fbb, 9, 2, conf, 4096);
    auto address = fbb.CreateString("127.0.0.1:2378");
    raftpeer::MessageBuilder m(fbb);
    m.add_type(3);
    m.add_from(1);
    m.add_to(2);
    m.add_term(2);
    m.add_log_term(2);
    m.add_index(9);
    m.add_entries(entriesVec);
    m.add_commit(9);
    m.add_snapshot(snapshot);
    m.add_cluster_id(77);
    m.add_from_address(address);
    auto body = m.Finish();
    add(bus::message<raftpeer::Envelope>(fbb, raftpeer::Body::Message, body.Union()), 0,
        wire::Kind::Request, 0, 0);
  }
  {
    // A transaction, as a nested StoreTxn buffer.
    flatbuffers::FlatBufferBuilder inner;
    std::vector<uint8_t> object = {0x10, 0, 0, 0};
    std::vector<flatbuffers::Offset<objects::Change>> changes = {objects::CreateChange(
        inner, objects::ObjectKind{}, objects::Operation{}, inner.CreateString("abc"), 0,
        inner.CreateVector(object))};
    inner.Finish(objects::CreateStoreTxn(inner, inner.CreateVector(changes)),
                 objects::StoreTxnIdentifier());
    flatbuffers::FlatBufferBuilder fbb;
    auto txn = fbb.CreateVector(inner.GetBufferPointer(), inner.GetSize());
    auto body = storeapi::CreateTxnRequest(fbb, txn);
    add(bus::message<storeapi::Envelope>(fbb, storeapi::Body::TxnRequest, body.Union()), 9,
        wire::Kind::Request, 5000, 0);
  }
  {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = storeapi::CreateStatusRequest(fbb);
    add(bus::message<storeapi::Envelope>(fbb, storeapi::Body::StatusRequest, body.Union()), 10,
        wire::Kind::Request, 5000, 0);
  }
  out.push_back(bus::control(raftd::kStoreProtocol, wire::Kind::Error, 11, 0,
                             wire::ErrorCode::NotLeader, "not the leader"));
  {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = dispatch::CreateJoinRequest(fbb, fbb.CreateString("SWMTKN-1-abc-def"),
                                            fbb.CreateString("198.18.0.2"));
    add(bus::message<dispatch::Envelope>(fbb, dispatch::Body::JoinRequest, body.Union()), 7,
        wire::Kind::Request, 5000, 0);
  }
  {
    flatbuffers::FlatBufferBuilder fbb;
    auto status = objects::CreateTaskStatus(fbb, 1, objects::TaskState::Running,
                                            fbb.CreateString("started"));
    std::vector<flatbuffers::Offset<dispatch::TaskStatusUpdate>> updates{
        dispatch::CreateTaskStatusUpdate(fbb, fbb.CreateString("t1"), status)};
    auto body = dispatch::CreateUpdateTaskStatusRequest(fbb, fbb.CreateString("s1"),
                                                        fbb.CreateVector(updates));
    add(bus::message<dispatch::Envelope>(fbb, dispatch::Body::UpdateTaskStatusRequest,
                                         body.Union()),
        8, wire::Kind::Request, 5000, 0);
  }
  {
    flatbuffers::FlatBufferBuilder fbb;
    auto annotations = objects::CreateAnnotations(fbb, fbb.CreateString("web"));
    auto container = objects::CreateContainerSpec(fbb, fbb.CreateString("busybox"));
    auto task = objects::CreateTaskSpec(fbb, container);
    auto spec = objects::CreateServiceSpec(fbb, annotations, task);
    auto body = serviceapi::CreateCreateServiceRequest(fbb, spec);
    add(bus::message<serviceapi::Envelope>(fbb, serviceapi::Body::CreateServiceRequest,
                                           body.Union()),
        9, wire::Kind::Request, 5000, 0);
  }
  // Issue 10's protocols: one request each, so the fuzzer starts on their accepted paths.
  {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = imageapi::CreatePullRequest(fbb, fbb.CreateString("busybox"));
    add(bus::message<imageapi::Envelope>(fbb, imageapi::Body::PullRequest, body.Union()), 10,
        wire::Kind::Request, 5000, 0);
  }
  {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = containerapi::CreateRemoveRequest(fbb, fbb.CreateString("web.1.x"), true);
    add(bus::message<containerapi::Envelope>(fbb, containerapi::Body::RemoveRequest,
                                             body.Union()),
        11, wire::Kind::Request, 5000, 0);
  }
  {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = overlayapi::CreateCreateSandboxRequest(fbb, fbb.CreateString("t1"));
    add(bus::message<overlayapi::Envelope>(fbb, overlayapi::Body::CreateSandboxRequest,
                                           body.Union()),
        12, wire::Kind::Request, 5000, 0);
  }
  {
    flatbuffers::FlatBufferBuilder fbb;
    std::vector<uint8_t> line{'h', 'i'};
    std::vector<flatbuffers::Offset<logapi::LogMessage>> messages{logapi::CreateLogMessage(
        fbb, fbb.CreateString("t1"), fbb.CreateString("n1"), logapi::LogStream::Stderr, 1,
        fbb.CreateVector(line))};
    auto body = logapi::CreatePublishRequest(fbb, fbb.CreateString("s1"), fbb.CreateString("sub1"),
                                             fbb.CreateVector(messages));
    add(bus::message<logapi::Envelope>(fbb, logapi::Body::PublishRequest, body.Union()), 13,
        wire::Kind::Request, 5000, 0);
  }
  return out;
}

}  // namespace
}  // namespace shoal

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR (the directory, which must exist, gets the seeds)\n", argv[0]);
    return 2;
  }
  using namespace shoal;
  // A seed the verifier refuses would start the fuzzer off the accepted path: refuse it here.
  const bus::Protocol* all[] = {&kControlProtocol,     &testing::kTestingProtocol,
                                &raftd::kRaftProtocol, &raftd::kStoreProtocol,
                                &kSwarmProtocol,       &kDispatchProtocol,
                                &kAgentProtocol,       &kServiceProtocol,
                                &kImageProtocol,       &kContainerProtocol,
                                &kOverlayProtocol,     &kLogProtocol};
  int n = 0;
  for (auto& seed : seeds()) {
    if (auto ok = bus::verify({seed.data(), seed.size()}, all); !ok) {
      std::fprintf(stderr, "%s: seed %d does not verify: %s\n", argv[0], n, ok.error().message.c_str());
      return 1;
    }
    std::string path = std::string(argv[1]) + "/seed-" + std::to_string(n++);
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(seed.data()), static_cast<std::streamsize>(seed.size()));
    if (!out) {
      std::fprintf(stderr, "%s: cannot write %s\n", argv[0], path.c_str());
      return 1;
    }
  }
  return 0;
}
