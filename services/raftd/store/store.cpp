#include "services/raftd/store/store.h"

#include <map>
#include <set>
#include <utility>

#include "wire_generated.h"

namespace shoal::store {

namespace {

constexpr int kConflict = static_cast<int>(wire::ErrorCode::Conflict);
constexpr int kNotFound = static_cast<int>(wire::ErrorCode::NotFound);
constexpr int kInvalid = static_cast<int>(wire::ErrorCode::InvalidArgument);
constexpr int kTooLarge = static_cast<int>(wire::ErrorCode::ResourceExhausted);
constexpr int kInternal = static_cast<int>(wire::ErrorCode::Internal);

constexpr std::size_t kMaxIdLength = 64;
// Keeps name index keys well under LMDB's 511-byte key limit.
constexpr std::size_t kMaxNameLength = 256;
constexpr std::string_view kLastChangeKey = "last-change";

static_assert(sizeof(objects::Meta) == 24, "Meta is patched in place at fixed offsets");

bool validId(std::string_view id) {
  if (id.empty() || id.size() > kMaxIdLength) {
    return false;
  }
  for (char c : id) {
    bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '-' || c == '_' || c == '.';
    if (!ok) {
      return false;
    }
  }
  return true;
}

const char* verb(Operation op) {
  switch (op) {
    case Operation::Create: return "create";
    case Operation::Update: return "update";
    case Operation::Delete: return "delete";
  }
  return "change";
}

// "service 'web' (id 3x...)" or "task 3x...".
std::string describe(ObjectKind kind, std::string_view id, std::string_view name) {
  std::string s = kindName(kind);
  if (!name.empty()) {
    s += " '";
    s += name;
    s += "' (id ";
    s += id;
    s += ")";
  } else {
    s += " ";
    s += id;
  }
  return s;
}

// A verdict that refuses the batch (the outer Result is for I/O errors).
Result<Status> reject(int code, std::string message) {
  return Result<Status>(Status(Error{"store: " + std::move(message), code}));
}
// The verdict that applies it.
Result<Status> accepted() { return Result<Status>(Status{}); }

std::string_view bytesOf(const flatbuffers::Vector<std::uint8_t>* v) {
  if (v == nullptr) {
    return {};
  }
  return {reinterpret_cast<const char*>(v->data()), v->size()};
}

std::string_view view(const flatbuffers::String* s) {
  return s == nullptr ? std::string_view{} : std::string_view(s->data(), s->size());
}

std::string nameKey(ObjectKind kind, std::string_view foldedName) {
  std::string k(1, static_cast<char>(kind));
  k += foldedName;
  return k;
}

std::string joinKey(std::string_view a, std::string_view b) {
  std::string k(a);
  k.push_back('\0');
  k += b;
  return k;
}

}  // namespace

std::string objectKey(ObjectKind kind, std::string_view id) {
  std::string k(1, static_cast<char>(kind));
  k += id;
  return k;
}

Result<std::unique_ptr<Store>> Store::open(lmdb::Environment& env, const StoreOptions& options) {
  Tables t;
  struct Want {
    lmdb::Table* table;
    const char* name;
  };
  for (auto [table, name] : {Want{&t.objects, "obj"}, Want{&t.names, "idx.name"},
                             Want{&t.taskService, "idx.task.service"},
                             Want{&t.taskNode, "idx.task.node"},
                             Want{&t.taskSlot, "idx.task.slot"},
                             Want{&t.nodeRole, "idx.node.role"},
                             Want{&t.state, "store.state"}}) {
    auto opened = env.table(name);
    if (!opened) {
      return opened.error();
    }
    *table = *opened;
  }
  auto txn = env.read();
  if (!txn) {
    return txn.error();
  }
  auto last = txn->get(t.state, kLastChangeKey);
  if (!last) {
    return last.error();
  }
  std::uint64_t lastChange = 0;
  if (last->has_value()) {
    lastChange = lmdb::readU64(**last).value_or(0);
  }
  return std::unique_ptr<Store>(new Store(t, options, lastChange));
}

std::vector<Store::IndexEntry> Store::indexEntries(ObjectKind kind,
                                                   const ObjectFields& f) const {
  std::vector<IndexEntry> out;
  if (hasUniqueName(kind) && !f.name.empty()) {
    out.push_back({&tables_.names, nameKey(kind, foldName(f.name)), std::string(f.id)});
  }
  if (kind == ObjectKind::Task) {
    if (!f.serviceId.empty()) {
      out.push_back({&tables_.taskService, joinKey(f.serviceId, f.id), {}});
      std::string slot = joinKey(f.serviceId, {});
      lmdb::appendU64(slot, f.slot);
      slot += f.id;
      out.push_back({&tables_.taskSlot, std::move(slot), {}});
    }
    if (!f.nodeId.empty()) {
      out.push_back({&tables_.taskNode, joinKey(f.nodeId, f.id), {}});
    }
  }
  if (kind == ObjectKind::Node) {
    std::string k(1, static_cast<char>(f.role));
    k += f.id;
    out.push_back({&tables_.nodeRole, std::move(k), {}});
  }
  return out;
}

Result<Status> Store::apply(lmdb::WriteTxn& txn, std::string_view batch, std::uint64_t index,
                            std::int64_t now) {
  // Objects are limited to kMaxBytes; the batch's own framing is small beside them.
  if (batch.size() > 2 * kMaxBytes) {
    return reject(kTooLarge, "the transaction is " + std::to_string(batch.size()) +
                                 " bytes; at most " + std::to_string(kMaxBytes) +
                                 " bytes of objects are allowed: split it into batches");
  }
  flatbuffers::Verifier verifier(reinterpret_cast<const std::uint8_t*>(batch.data()),
                                 batch.size());
  if (!objects::VerifyStoreTxnBuffer(verifier)) {
    return reject(kInvalid,
                  "the transaction does not pass the FlatBuffers verifier; build it as a "
                  "StoreTxn of objects.fbs finished with its file identifier");
  }
  return apply(txn, *objects::GetStoreTxn(batch.data()), index, now);
}

Result<Status> Store::apply(lmdb::WriteTxn& txn, const objects::StoreTxn& batch,
                            std::uint64_t index, std::int64_t now) {
  const auto* changes = batch.changes();
  std::size_t n = changes == nullptr ? 0 : changes->size();
  if (n > kMaxChanges) {
    return reject(kTooLarge, "the transaction has " + std::to_string(n) +
                                 " changes; at most " + std::to_string(kMaxChanges) +
                                 " are allowed: split it into batches");
  }
  std::size_t bytes = 0;
  for (std::size_t i = 0; i < n; ++i) {
    bytes += bytesOf(changes->Get(static_cast<flatbuffers::uoffset_t>(i))->object()).size();
  }
  if (bytes > kMaxBytes) {
    return reject(kTooLarge, "the transaction carries " + std::to_string(bytes) +
                                 " bytes of objects; at most " + std::to_string(kMaxBytes) +
                                 " are allowed: split it into batches");
  }
  auto last = lastChangeIndex(txn);
  if (!last) {
    return last.error();
  }
  if (index <= *last) {
    return reject(kInvalid, "raft index " + std::to_string(index) +
                                " is not after the last applied change at index " +
                                std::to_string(*last) + "; an entry must be applied once");
  }
  if (n == 0) {
    return accepted();
  }

  // Phase 1: judge every change against the stored state plus the changes before it in the
  // batch. Anything read from the map is copied: the writes of phase 2 may move it.
  struct Planned {
    ObjectKind kind;
    Operation op;
    std::string id;
    std::string_view bytes;             // the new object (in the batch)
    ObjectFields fields;                // of the new object
    std::vector<IndexEntry> oldIndex;   // to remove
    std::int64_t createdAt = 0;
    std::uint64_t oldVersion = 0;
    std::string oldObject;              // Delete: for the event
    std::string oldServiceId, oldNodeId;
  };
  std::vector<Planned> plan;
  plan.reserve(n);
  std::set<std::string> touched;
  // Name claims and releases made earlier in this batch: folded name key -> id ("" = free).
  std::map<std::string, std::string> names;

  auto nameOwner = [&](const std::string& key) -> Result<std::string> {
    if (auto it = names.find(key); it != names.end()) {
      return it->second;
    }
    auto owner = txn.get(tables_.names, key);
    if (!owner) {
      return owner.error();
    }
    return owner->has_value() ? std::string(**owner) : std::string();
  };

  for (std::size_t i = 0; i < n; ++i) {
    const objects::Change* c = changes->Get(static_cast<flatbuffers::uoffset_t>(i));
    Planned p{c->kind(), c->operation(), std::string(view(c->id())), {}, {}, {}, 0, 0, {}, {}, {}};
    const std::string where = "change " + std::to_string(i) + " (" + verb(p.op) + " " +
                              kindName(p.kind) + " " + p.id + ")";
    if (!isKnownKind(p.kind)) {
      return reject(kInvalid, where + ": unknown object kind " +
                                  std::to_string(static_cast<int>(p.kind)));
    }
    if (p.op != Operation::Create && p.op != Operation::Update && p.op != Operation::Delete) {
      return reject(kInvalid, where + ": unknown operation " +
                                  std::to_string(static_cast<int>(p.op)));
    }
    if (!validId(p.id)) {
      return reject(kInvalid, where + ": an id is 1 to 64 characters of [A-Za-z0-9._-]");
    }
    const std::string key = objectKey(p.kind, p.id);
    if (!touched.insert(key).second) {
      return reject(kInvalid, where + ": the batch changes this object twice; merge the "
                                      "changes into one");
    }

    auto existing = txn.get(tables_.objects, key);
    if (!existing) {
      return existing.error();
    }
    std::string oldName;
    if (existing->has_value()) {
      auto old = inspect(p.kind, **existing);
      if (!old) {
        return Error{"store: the stored " + describe(p.kind, p.id, {}) +
                         " is damaged (" + old.error().message +
                         "); restore the state from a snapshot",
                     kInternal};
      }
      p.oldVersion = old->meta != nullptr ? old->meta->version() : 0;
      p.createdAt = old->meta != nullptr ? old->meta->created_at() : 0;
      p.oldIndex = indexEntries(p.kind, *old);
      oldName = std::string(old->name);
      p.oldServiceId = std::string(old->serviceId);
      p.oldNodeId = std::string(old->nodeId);
      if (p.op == Operation::Delete) {
        p.oldObject = std::string(**existing);
      }
    }

    if (p.op == Operation::Create) {
      if (existing->has_value()) {
        return reject(kConflict, "cannot create " + describe(p.kind, p.id, oldName) +
                                     ": it exists already, at version " +
                                     std::to_string(p.oldVersion));
      }
      if (c->expected_version() != 0) {
        return reject(kInvalid, where + ": a create expects version 0, not " +
                                    std::to_string(c->expected_version()));
      }
    } else {
      if (!existing->has_value()) {
        return reject(kNotFound, "cannot " + std::string(verb(p.op)) + " " +
                                     describe(p.kind, p.id, {}) +
                                     ": it does not exist (expected version " +
                                     std::to_string(c->expected_version()) + ")");
      }
      if (p.oldVersion != c->expected_version()) {
        return reject(kConflict, "cannot " + std::string(verb(p.op)) + " " +
                                     describe(p.kind, p.id, oldName) + ": expected version " +
                                     std::to_string(c->expected_version()) +
                                     " but it is at version " + std::to_string(p.oldVersion) +
                                     "; read it again and retry");
      }
    }

    if (p.op == Operation::Delete) {
      if (hasUniqueName(p.kind) && !oldName.empty()) {
        names[nameKey(p.kind, foldName(oldName))] = "";
      }
      plan.push_back(std::move(p));
      continue;
    }

    p.bytes = bytesOf(c->object());
    if (p.bytes.empty()) {
      return reject(kInvalid, where + ": the change carries no object");
    }
    auto fields = inspect(p.kind, p.bytes);
    if (!fields) {
      return reject(kInvalid, where + ": " + fields.error().message);
    }
    p.fields = *fields;
    if (p.fields.id != p.id) {
      return reject(kInvalid, where + ": the object's id is '" + std::string(p.fields.id) +
                                  "', not the change's");
    }
    if (p.fields.meta == nullptr) {
      return reject(kInvalid, where + ": the object has no meta; put a zero Meta in it, the "
                                      "store fills it in");
    }
    if (p.fields.name.size() > kMaxNameLength) {
      return reject(kInvalid, where + ": the name is longer than " +
                                  std::to_string(kMaxNameLength) + " bytes");
    }
    if (hasUniqueName(p.kind)) {
      std::string oldKey = oldName.empty() ? std::string() : nameKey(p.kind, foldName(oldName));
      std::string newKey =
          p.fields.name.empty() ? std::string() : nameKey(p.kind, foldName(p.fields.name));
      if (newKey != oldKey) {
        if (!newKey.empty()) {
          auto owner = nameOwner(newKey);
          if (!owner) {
            return owner.error();
          }
          if (!owner->empty() && *owner != p.id) {
            return reject(kConflict, "cannot " + std::string(verb(p.op)) + " " +
                                         describe(p.kind, p.id, p.fields.name) + ": the name '" +
                                         std::string(p.fields.name) + "' is taken by " +
                                         kindName(p.kind) + " " + *owner +
                                         "; choose another name");
          }
        }
        if (!oldKey.empty()) {
          names[oldKey] = "";
        }
        if (!newKey.empty()) {
          names[newKey] = p.id;
        }
      }
    }
    plan.push_back(std::move(p));
  }

  // Phase 2: write. Only storage failures can stop it now, and the caller aborts on those.
  std::vector<EventPtr> events;
  events.reserve(plan.size());
  for (Planned& p : plan) {
    const std::string key = objectKey(p.kind, p.id);
    for (const IndexEntry& e : p.oldIndex) {
      auto gone = txn.del(*e.table, e.key);
      if (!gone) {
        return gone.error();
      }
    }
    auto event = std::make_shared<Event>();
    event->index = index;
    event->kind = p.kind;
    event->operation = p.op;
    event->id = p.id;
    if (p.op == Operation::Delete) {
      auto gone = txn.del(tables_.objects, key);
      if (!gone) {
        return gone.error();
      }
      event->version = p.oldVersion;
      event->object = std::move(p.oldObject);
      event->serviceId = std::move(p.oldServiceId);
      event->nodeId = std::move(p.oldNodeId);
    } else {
      std::string object(p.bytes);
      // Meta is a struct stored inline, so it can be set in the copy without rebuilding.
      auto at = static_cast<std::size_t>(reinterpret_cast<const char*>(p.fields.meta) -
                                         p.bytes.data());
      std::int64_t created = p.op == Operation::Create ? now : p.createdAt;
      flatbuffers::WriteScalar<std::uint64_t>(object.data() + at, index);
      flatbuffers::WriteScalar<std::int64_t>(object.data() + at + 8, created);
      flatbuffers::WriteScalar<std::int64_t>(object.data() + at + 16, now);
      if (Status s = txn.put(tables_.objects, key, object); !s) {
        return s.error();
      }
      for (const IndexEntry& e : indexEntries(p.kind, p.fields)) {
        if (Status s = txn.put(*e.table, e.key, e.value); !s) {
          return s.error();
        }
      }
      event->version = index;
      event->serviceId = std::string(p.fields.serviceId);
      event->nodeId = std::string(p.fields.nodeId);
      event->object = std::move(object);
    }
    events.push_back(std::move(event));
  }
  if (Status s = txn.put(tables_.state, kLastChangeKey, lmdb::u64Key(index)); !s) {
    return s.error();
  }
  txn.onCommit([this, index, events = std::move(events)]() mutable {
    history_.append(std::move(events));
    if (listener_) {
      listener_(index);
    }
  });
  return accepted();
}

Result<std::optional<std::string_view>> Store::get(const lmdb::Txn& txn, ObjectKind kind,
                                                   std::string_view id) const {
  return txn.get(tables_.objects, objectKey(kind, id));
}

Result<std::optional<std::string_view>> Store::getByName(const lmdb::Txn& txn,
                                                         ObjectKind kind,
                                                         std::string_view name) const {
  auto id = txn.get(tables_.names, nameKey(kind, foldName(name)));
  if (!id) {
    return id.error();
  }
  if (!id->has_value()) {
    return std::optional<std::string_view>{};
  }
  return get(txn, kind, **id);
}

Result<std::vector<std::string_view>> Store::list(const lmdb::Txn& txn, ObjectKind kind) const {
  std::vector<std::string_view> out;
  Status s = txn.scanPrefix(tables_.objects, std::string(1, static_cast<char>(kind)),
                            [&](std::string_view, std::string_view v) {
                              out.push_back(v);
                              return true;
                            });
  if (!s) {
    return s.error();
  }
  return out;
}

Result<std::uint64_t> Store::count(const lmdb::Txn& txn, ObjectKind kind) const {
  std::uint64_t n = 0;
  Status s = txn.scanPrefix(tables_.objects, std::string(1, static_cast<char>(kind)),
                            [&](std::string_view, std::string_view) {
                              ++n;
                              return true;
                            });
  if (!s) {
    return s.error();
  }
  return n;
}

Result<std::vector<std::string_view>> Store::objectsByIndex(const lmdb::Txn& txn,
                                                            const lmdb::Table& table,
                                                            const std::string& prefix,
                                                            ObjectKind kind) const {
  std::vector<std::string> ids;
  Status s = txn.scanPrefix(table, prefix, [&](std::string_view k, std::string_view) {
    ids.emplace_back(k.substr(prefix.size()));
    return true;
  });
  if (!s) {
    return s.error();
  }
  std::vector<std::string_view> out;
  out.reserve(ids.size());
  for (const std::string& id : ids) {
    auto o = get(txn, kind, id);
    if (!o) {
      return o.error();
    }
    if (!o->has_value()) {
      return Error{"store: index " + table.name() + " names " + describe(kind, id, {}) +
                       ", which does not exist; the store is inconsistent: restore it from a "
                       "snapshot",
                   kInternal};
    }
    out.push_back(**o);
  }
  return out;
}

Result<std::vector<std::string_view>> Store::tasksOfService(const lmdb::Txn& txn,
                                                            std::string_view serviceId) const {
  return objectsByIndex(txn, tables_.taskService, joinKey(serviceId, {}), ObjectKind::Task);
}

Result<std::vector<std::string_view>> Store::tasksOfNode(const lmdb::Txn& txn,
                                                         std::string_view nodeId) const {
  return objectsByIndex(txn, tables_.taskNode, joinKey(nodeId, {}), ObjectKind::Task);
}

Result<std::vector<std::string_view>> Store::tasksOfSlot(const lmdb::Txn& txn,
                                                         std::string_view serviceId,
                                                         std::uint64_t slot) const {
  std::string prefix = joinKey(serviceId, {});
  lmdb::appendU64(prefix, slot);
  return objectsByIndex(txn, tables_.taskSlot, prefix, ObjectKind::Task);
}

Result<std::vector<std::string_view>> Store::nodesWithRole(const lmdb::Txn& txn,
                                                           objects::NodeRole role) const {
  return objectsByIndex(txn, tables_.nodeRole, std::string(1, static_cast<char>(role)),
                        ObjectKind::Node);
}

Result<std::uint64_t> Store::lastChangeIndex(const lmdb::Txn& txn) const {
  auto v = txn.get(tables_.state, kLastChangeKey);
  if (!v) {
    return v.error();
  }
  if (!v->has_value()) {
    return std::uint64_t{0};
  }
  return lmdb::readU64(**v).value_or(0);
}

}  // namespace shoal::store
