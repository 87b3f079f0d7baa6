#include "services/dispatcherd/records.h"

#include <flatbuffers/flatbuffers.h>

namespace shoal::dispatcherd {
namespace {

// Bounds on what a node may say about itself: a hostname is at most 253 characters (RFC
// 1035); the rest are generous for real values and small enough that a Node stays a few KiB.
constexpr size_t kMaxHostname = 253;
constexpr size_t kMaxShortField = 64;
constexpr size_t kMaxEngineLabels = 64;
constexpr size_t kMaxLabelBytes = 1024;

std::string str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }

Labels labelsOf(const flatbuffers::Vector<flatbuffers::Offset<objects::KeyValue>>* v) {
  Labels out;
  if (!v) return out;
  for (auto* kv : *v) out.emplace_back(str(kv->key()), str(kv->value()));
  return out;
}

std::vector<std::unique_ptr<objects::KeyValueT>> labelsT(const Labels& labels) {
  std::vector<std::unique_ptr<objects::KeyValueT>> out;
  for (auto& [k, v] : labels) {
    auto kv = std::make_unique<objects::KeyValueT>();
    kv->key = k;
    kv->value = v;
    out.push_back(std::move(kv));
  }
  return out;
}

Description rawDescription(const objects::NodeDescription* d) {
  Description out;
  if (!d) return out;
  out.hostname = str(d->hostname());
  if (auto* p = d->platform()) {
    out.os = str(p->os());
    out.architecture = str(p->architecture());
  }
  if (auto* r = d->resources()) {
    out.nanoCpus = r->nano_cpus();
    out.memoryBytes = r->memory_bytes();
    out.pids = r->pids();
  }
  if (auto* e = d->engine()) {
    out.engineVersion = str(e->engine_version());
    out.engineLabels = labelsOf(e->labels());
  }
  return out;
}

Status bounded(std::string_view field, const std::string& value, size_t max) {
  if (value.size() > max)
    return Error{"the node description's " + std::string(field) + " is " +
                 std::to_string(value.size()) + " bytes; at most " + std::to_string(max) +
                 " are accepted"};
  return {};
}

template <class Vec>
std::vector<uint8_t> bytesOf(const Vec* v) {
  return v ? std::vector<uint8_t>(v->begin(), v->end()) : std::vector<uint8_t>();
}

}  // namespace

Result<Description> descriptionFrom(const objects::NodeDescription* d) {
  Description out = rawDescription(d);
  for (auto [field, value, max] :
       {std::tuple<std::string_view, const std::string*, size_t>{"hostname", &out.hostname, kMaxHostname},
        {"platform os", &out.os, kMaxShortField},
        {"platform architecture", &out.architecture, kMaxShortField},
        {"engine version", &out.engineVersion, kMaxShortField}})
    if (auto st = bounded(field, *value, max); !st) return st.error();
  if (out.nanoCpus < 0 || out.memoryBytes < 0 || out.pids < 0)
    return Error{"the node description's resources are negative (CPUs " +
                 std::to_string(out.nanoCpus) + " ns, memory " + std::to_string(out.memoryBytes) +
                 " bytes, pids " + std::to_string(out.pids) + ")"};
  if (out.engineLabels.size() > kMaxEngineLabels)
    return Error{"the node description has " + std::to_string(out.engineLabels.size()) +
                 " engine labels; at most " + std::to_string(kMaxEngineLabels) + " are accepted"};
  for (auto& [k, v] : out.engineLabels) {
    if (k.empty()) return Error{"the node description has an engine label without a key"};
    if (k.size() + v.size() > kMaxLabelBytes)
      return Error{"the node description's engine label " + k.substr(0, 64) + " is longer than " +
                   std::to_string(kMaxLabelBytes) + " bytes"};
  }
  return out;
}

std::string NodeRecord::curveKeyZ85() const {
  return curveKey ? identity::curveKeyToZ85(*curveKey) : std::string();
}

Result<NodeRecord> parseNode(std::string_view bytes) {
  flatbuffers::Verifier verifier(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  if (!verifier.VerifyBuffer<objects::Node>(nullptr))
    return Error{"a Node of the store failed the FlatBuffers verifier (" +
                 std::to_string(bytes.size()) + " bytes)"};
  auto* n = flatbuffers::GetRoot<objects::Node>(bytes.data());
  NodeRecord out;
  out.id = str(n->id());
  if (out.id.empty()) return Error{"a Node of the store has no id"};
  if (n->meta()) out.version = n->meta()->version();
  if (auto* s = n->spec()) {
    if (s->annotations()) {
      out.name = str(s->annotations()->name());
      out.labels = labelsOf(s->annotations()->labels());
    }
    out.desiredRole = s->desired_role();
    out.membership = s->membership();
    out.availability = s->availability();
  }
  out.description = rawDescription(n->description());
  if (auto* st = n->status()) {
    out.state = st->state();
    out.message = str(st->message());
    out.addr = str(st->addr());
  }
  if (auto* m = n->manager_status())
    out.managerStatus = ManagerStatus{m->raft_id(), str(m->addr()), m->leader(), m->reachability()};
  out.role = n->role();
  if (auto* k = n->curve_public_key()) {
    if (k->size() != 32)
      return Error{"Node " + out.id + " has a Curve key of " + std::to_string(k->size()) +
                   " bytes (a key is 32)"};
    identity::CurvePublicKey key;
    std::copy(k->begin(), k->end(), key.begin());
    out.curveKey = key;
  }
  out.certificate = bytesOf(n->certificate());
  out.certificateExpiry = n->certificate_expiry();
  out.stored.assign(bytes);
  return out;
}

std::string buildNode(const NodeRecord& node) {
  objects::NodeT t;
  if (!node.stored.empty()) flatbuffers::GetRoot<objects::Node>(node.stored.data())->UnPackTo(&t);
  t.id = node.id;
  t.meta = std::make_unique<objects::Meta>(0, 0, 0);
  if (!t.spec) t.spec = std::make_unique<objects::NodeSpecT>();
  if (!t.spec->annotations) t.spec->annotations = std::make_unique<objects::AnnotationsT>();
  t.spec->annotations->name = node.name;
  t.spec->annotations->labels = labelsT(node.labels);
  t.spec->desired_role = node.desiredRole;
  t.spec->membership = node.membership;
  t.spec->availability = node.availability;

  auto& d = node.description;
  if (!t.description) t.description = std::make_unique<objects::NodeDescriptionT>();
  auto& td = *t.description;
  td.hostname = d.hostname;
  if (!td.platform) td.platform = std::make_unique<objects::PlatformT>();
  td.platform->os = d.os;
  td.platform->architecture = d.architecture;
  if (!td.resources) td.resources = std::make_unique<objects::ResourcesT>();
  td.resources->nano_cpus = d.nanoCpus;
  td.resources->memory_bytes = d.memoryBytes;
  td.resources->pids = d.pids;
  if (!td.engine) td.engine = std::make_unique<objects::EngineDescriptionT>();
  td.engine->engine_version = d.engineVersion;
  td.engine->labels = labelsT(d.engineLabels);

  if (!t.status) t.status = std::make_unique<objects::NodeStatusT>();
  t.status->state = node.state;
  t.status->message = node.message;
  t.status->addr = node.addr;
  if (node.managerStatus) {
    if (!t.manager_status) t.manager_status = std::make_unique<objects::ManagerStatusT>();
    t.manager_status->raft_id = node.managerStatus->raftId;
    t.manager_status->addr = node.managerStatus->addr;
    t.manager_status->leader = node.managerStatus->leader;
    t.manager_status->reachability = node.managerStatus->reachability;
  } else {
    t.manager_status.reset();
  }
  t.role = node.role;
  t.curve_public_key.clear();
  if (node.curveKey) t.curve_public_key.assign(node.curveKey->begin(), node.curveKey->end());
  t.certificate = node.certificate;
  t.certificate_expiry = node.certificateExpiry;

  flatbuffers::FlatBufferBuilder fbb(1024);
  fbb.Finish(objects::Node::Pack(fbb, &t));
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

Result<ClusterRecord> parseCluster(std::string_view bytes) {
  flatbuffers::Verifier verifier(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  if (!verifier.VerifyBuffer<objects::Cluster>(nullptr))
    return Error{"the Cluster object of the store failed the FlatBuffers verifier (" +
                 std::to_string(bytes.size()) + " bytes)"};
  auto* c = flatbuffers::GetRoot<objects::Cluster>(bytes.data());
  ClusterRecord out;
  out.id = str(c->id());
  if (c->meta()) out.version = c->meta()->version();
  if (auto* s = c->spec()) {
    if (s->dispatcher()) out.heartbeatPeriodNs = s->dispatcher()->heartbeat_period();
    if (s->ca_config()) out.nodeCertExpiryNs = s->ca_config()->node_cert_expiry();
  }
  if (auto* ca = c->root_ca()) {
    out.caKey = bytesOf(ca->ca_key());
    out.caPublicKey = bytesOf(ca->ca_public_key());
    if (auto* t = ca->join_tokens()) out.tokens = identity::JoinTokens{str(t->worker()), str(t->manager())};
  }
  return out;
}

int64_t heartbeatPeriodNs(const ClusterRecord* cluster) {
  // Under 100 ms no agent could keep up; over a day a dead node would go unnoticed. Either
  // is a bad write, and the default is the safe reading of it.
  constexpr int64_t kMin = 100'000'000, kMax = 86'400'000'000'000;
  if (!cluster || cluster->heartbeatPeriodNs < kMin || cluster->heartbeatPeriodNs > kMax)
    return kDefaultHeartbeatPeriodNs;
  return cluster->heartbeatPeriodNs;
}

int64_t certExpiryNs(const ClusterRecord* cluster) {
  constexpr int64_t kMin = 3600LL * 1'000'000'000;  // Swarm's minimum: one hour
  if (!cluster || cluster->nodeCertExpiryNs < kMin) return kDefaultCertExpiryNs;
  return cluster->nodeCertExpiryNs;
}

void NodeTable::clear() {
  nodes_.clear();
  byKey_.clear();
}

void NodeTable::put(NodeRecord node) {
  auto it = nodes_.find(node.id);
  if (it != nodes_.end()) {
    if (node.version != 0 && it->second.version > node.version) return;
    if (auto key = it->second.curveKeyZ85(); !key.empty()) {
      auto k = byKey_.find(key);
      if (k != byKey_.end() && k->second == node.id) byKey_.erase(k);
    }
  }
  if (auto key = node.curveKeyZ85(); !key.empty()) byKey_[key] = node.id;
  std::string id = node.id;
  nodes_.insert_or_assign(std::move(id), std::move(node));
}

void NodeTable::erase(const std::string& id) {
  auto it = nodes_.find(id);
  if (it == nodes_.end()) return;
  if (auto key = it->second.curveKeyZ85(); !key.empty()) {
    auto k = byKey_.find(key);
    if (k != byKey_.end() && k->second == id) byKey_.erase(k);
  }
  nodes_.erase(it);
}

const NodeRecord* NodeTable::byId(const std::string& id) const {
  auto it = nodes_.find(id);
  return it == nodes_.end() ? nullptr : &it->second;
}

const NodeRecord* NodeTable::byKey(const std::string& keyZ85) const {
  auto it = byKey_.find(keyZ85);
  return it == byKey_.end() ? nullptr : byId(it->second);
}

}  // namespace shoal::dispatcherd
