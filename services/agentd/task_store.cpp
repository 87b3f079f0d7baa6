#include "services/agentd/task_store.h"

#include <nlohmann/json.hpp>

namespace shoal::agentd {
namespace {

using Phase = TaskRecord::Phase;

constexpr Phase kPhases[] = {Phase::Preparing, Phase::Prepared, Phase::Started, Phase::Ended};

Result<Phase> parsePhase(const std::string& text) {
  for (Phase p : kPhases)
    if (text == phaseName(p)) return p;
  return Error{"phase '" + text + "' is not one of preparing, prepared, started, ended"};
}

}  // namespace

const char* phaseName(Phase phase) {
  switch (phase) {
    case Phase::Preparing: return "preparing";
    case Phase::Prepared: return "prepared";
    case Phase::Started: return "started";
    case Phase::Ended: return "ended";
  }
  return "preparing";
}

std::string encodeRecord(const TaskRecord& r) {
  nlohmann::json j = {{"id", r.id},           {"name", r.name},       {"service_id", r.serviceId},
                      {"image", r.image},     {"image_id", r.imageId}, {"bundle", r.bundle},
                      {"phase", phaseName(r.phase)}, {"sandbox", r.sandbox},
                      {"volumes", r.volumes}, {"created", r.created}, {"started", r.started},
                      {"ended", r.ended},     {"pid", r.pid},         {"exit_code", r.exitCode},
                      {"error", r.error}};
  return j.dump();
}

Result<TaskRecord> decodeRecord(std::string_view key, std::string_view bytes) {
  auto j = nlohmann::json::parse(bytes, nullptr, false);
  std::string where = "task record '" + std::string(key) + "'";
  if (!j.is_object()) return Error{where + " is not a JSON object"};
  try {
    TaskRecord r;
    r.id = j.at("id").get<std::string>();
    if (r.id != key) return Error{where + " holds task id '" + r.id + "'"};
    r.name = j.value("name", "");
    r.serviceId = j.value("service_id", "");
    r.image = j.value("image", "");
    r.imageId = j.value("image_id", "");
    r.bundle = j.at("bundle").get<std::string>();
    auto phase = parsePhase(j.at("phase").get<std::string>());
    if (!phase) return Error{where + ": " + phase.error().message};
    r.phase = *phase;
    r.sandbox = j.value("sandbox", false);
    r.volumes = j.value("volumes", std::vector<std::string>{});
    r.created = j.value("created", int64_t{0});
    r.started = j.value("started", int64_t{0});
    r.ended = j.value("ended", int64_t{0});
    r.pid = j.value("pid", 0);
    r.exitCode = j.value("exit_code", 0);
    r.error = j.value("error", "");
    return r;
  } catch (const nlohmann::json::exception& e) {
    return Error{where + ": " + e.what()};
  }
}

Result<std::unique_ptr<TaskStore>> TaskStore::open(const std::string& dir) {
  lmdb::Options o;
  o.maxMapSize = std::size_t{1} << 30;  // a record is ~400 bytes: room for millions
  o.maxTables = 4;
  auto env = lmdb::Environment::open(dir, o);
  if (!env) return Error{"the task store " + dir + ": " + env.error().message, env.error().code};
  auto table = (*env)->table("tasks");
  if (!table) return Error{"the task store " + dir + ": " + table.error().message};
  return std::unique_ptr<TaskStore>(new TaskStore(std::move(env).value(), *table));
}

Status TaskStore::put(const TaskRecord& record) {
  std::string bytes = encodeRecord(record);
  return env_->update([&](lmdb::WriteTxn& txn) { return txn.put(table_, record.id, bytes); });
}

Status TaskStore::remove(const std::string& id) {
  return env_->update([&](lmdb::WriteTxn& txn) -> Status {
    auto r = txn.del(table_, id);
    if (!r) return r.error();
    return {};
  });
}

Result<TaskStore::Listing> TaskStore::list() {
  Listing out;
  auto st = env_->view([&](lmdb::ReadTxn& txn) {
    return txn.scanPrefix(table_, "", [&](std::string_view key, std::string_view value) {
      auto r = decodeRecord(key, value);
      if (r) out.records.push_back(std::move(r).value());
      else out.bad.push_back(r.error().message);
      return true;
    });
  });
  if (!st) return st.error();
  return out;
}

}  // namespace shoal::agentd
