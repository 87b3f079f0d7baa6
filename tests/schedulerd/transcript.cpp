// Transcripts of schedulerd's pure cores (orchestrator, updater, allocator, scheduler), in the
// style of etcd's raft testdata (STYLE.md): testdata/*.txt hold commands, each followed by
// "----" and the output it must produce. With --rewrite (or SHOAL_REWRITE=1) the files are
// written again with the outputs of this build, to be reviewed as a diff.
//
// The runner plays the store, the control API and the agents around runPass: it keeps the
// objects with versions (a change whose expected version is stale is a conflict, as in raftd),
// feeds a View the way schedulerd's shell does, and runs passes with a fixed clock and task
// ids t1, t2, ... Commands:
//   cluster history=N                     task history retention limit
//   node add ID [cpus=N] [mem=4G] [role=manager] [state=ready|down|unknown]
//                [availability=active|pause|drain] [os=] [arch=] [KEY=VALUE as labels]
//   node set ID state=...|availability=...|label KEY=VALUE|label KEY=
//   node rm ID
//   service create NAME [image=] [replicas=] [mode=replicated|global|replicated-job|global-job]
//                [max-concurrent=] [total-completions=] [constraint=]... [pref=]...
//                [max-per-node=] [platform=OS/ARCH] [reserve-cpu=] [reserve-mem=]
//                [publish=[PUB:]TARGET[/host]]
//                [restart=none|on-failure|any] [delay=] [max-attempts=] [window=]
//                [update-parallelism=] [update-delay=] [monitor=] [failure-action=]
//                [max-failure-ratio=] [order=] [rollback-...= the same for the rollback]
//   service update NAME [the same keys] [force]   (a scale when only replicas change)
//   service rollback NAME | service rm NAME | service show NAME
//   agent TASK STATE [exit=N] [err=TEXT]    TASK: web.1, web.n1, a task id or web.1/t3
//   agent-all running                       every agent converges: runs, readies, stops
//   tick DURATION                           the clock moves on
//   pass                                    one runPass; prints its changes, then commits
//   tasks                                   the tasks' table
//   leader-change                           a fresh View from the stored objects

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/units.h"
#include "services/schedulerd/pass.h"

namespace shoal::schedulerd {
namespace {

using objects::ObjectKind;
using objects::TaskState;

constexpr Time kStart = 1'700'000'000 * kSecond;

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::vector<std::string> words(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// key=value arguments in order (a key may repeat: constraint=, pref=).
using Args = std::vector<std::pair<std::string, std::string>>;
Args argsFrom(const std::vector<std::string>& w, size_t from) {
  Args out;
  for (size_t i = from; i < w.size(); ++i) {
    auto eq = w[i].find('=');
    if (eq == std::string::npos) out.emplace_back(w[i], "");
    else out.emplace_back(w[i].substr(0, eq), w[i].substr(eq + 1));
  }
  return out;
}

Time duration(const std::string& text) {
  auto d = parseDuration(text);
  if (!d) throw std::runtime_error(d.error().message);
  return d->count();
}

uint64_t number(const std::string& text) {
  size_t used = 0;
  uint64_t v = std::stoull(text, &used);
  if (used != text.size()) throw std::runtime_error("not a number: " + text);
  return v;
}

std::string since(Time t) {
  if (t == 0) return "0";
  return (t >= kStart ? "+" : "") + formatDuration(std::chrono::nanoseconds(t - kStart));
}

template <class T>
std::string packWithMeta(const typename T::NativeTableType& o) {
  flatbuffers::FlatBufferBuilder fbb(1024);
  fbb.Finish(T::Pack(fbb, &o));
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

template <class T>
std::unique_ptr<typename T::NativeTableType> unpackBytes(const std::string& bytes) {
  flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  if (!v.VerifyBuffer<T>(nullptr)) throw std::runtime_error("a change's object does not verify");
  return std::unique_ptr<typename T::NativeTableType>(flatbuffers::GetRoot<T>(bytes.data())->UnPack());
}

std::string stateName(TaskState s) { return lower(objects::EnumNameTaskState(s)); }

uint64_t idNumber(const std::string& id) {
  return id.size() > 1 && id[0] == 't' ? std::strtoull(id.c_str() + 1, nullptr, 10) : 0;
}

class Runner {
 public:
  std::string run(const std::string& line) {
    out_.clear();
    auto w = words(line);
    if (w.empty()) return "";
    const std::string& c = w[0];
    if (c == "cluster") cluster(argsFrom(w, 1));
    else if (c == "node") node(w);
    else if (c == "service") service(w);
    else if (c == "agent") agent(w);
    else if (c == "agent-all") agentAll();
    else if (c == "tick") tick(w.at(1));
    else if (c == "pass") pass();
    else if (c == "tasks") tasks();
    else if (c == "leader-change") leaderChange();
    else throw std::runtime_error("unknown command " + c);
    return out_;
  }

 private:
  // ---- the store

  template <class T, class O>
  void write(ObjectKind kind, O& object) {
    if (!object.meta) object.meta = std::make_unique<objects::Meta>(0, now_, now_);
    ++index_;
    object.meta = std::make_unique<objects::Meta>(index_, object.meta->created_at(), now_);
    auto st = view_.put(kind, packWithMeta<T>(object));
    if (!st) throw std::runtime_error(st.error().message);
  }

  void writeTask(objects::TaskT& t) { write<objects::Task>(ObjectKind::Task, t); }
  void writeService(objects::ServiceT& s) { write<objects::Service>(ObjectKind::Service, s); }
  void writeNode(objects::NodeT& n) { write<objects::Node>(ObjectKind::Node, n); }

  uint64_t storedVersion(ObjectKind kind, const std::string& id) {
    auto version = [](auto& table, const std::string& key) -> uint64_t {
      auto it = table.find(key);
      return it == table.end() || !it->second->meta ? 0 : it->second->meta->version();
    };
    if (kind == ObjectKind::Task) return version(tasks_, id);
    if (kind == ObjectKind::Service) return version(services_, id);
    return 0;
  }

  // ---- commands: cluster, nodes

  void cluster(const Args& args) {
    if (!cluster_) {
      cluster_ = std::make_unique<objects::ClusterT>();
      cluster_->id = "cluster";
      cluster_->spec = std::make_unique<objects::ClusterSpecT>();
      cluster_->spec->orchestration = std::make_unique<objects::OrchestrationConfigT>();
    }
    for (auto& [k, v] : args) {
      if (k != "history") throw std::runtime_error("cluster: unknown key " + k);
      cluster_->spec->orchestration->task_history_retention_limit = std::stoll(v);
    }
    write<objects::Cluster>(ObjectKind::Cluster, *cluster_);
    out_ += "ok\n";
  }

  void node(const std::vector<std::string>& w) {
    const std::string& verb = w.at(1);
    const std::string& id = w.at(2);
    if (verb == "add") {
      auto n = std::make_unique<objects::NodeT>();
      n->id = id;
      n->spec = std::make_unique<objects::NodeSpecT>();
      n->spec->annotations = std::make_unique<objects::AnnotationsT>();
      n->spec->membership = objects::NodeMembership::Accepted;
      n->description = std::make_unique<objects::NodeDescriptionT>();
      n->description->hostname = id;
      n->description->platform = std::make_unique<objects::PlatformT>();
      n->description->platform->os = "linux";
      n->description->platform->architecture = "amd64";
      n->description->resources = std::make_unique<objects::ResourcesT>();
      n->status = std::make_unique<objects::NodeStatusT>();
      n->status->state = objects::NodeState::Ready;
      nodes_[id] = std::move(n);
    } else if (verb == "rm") {
      nodes_.erase(id);
      view_.remove(ObjectKind::Node, id);
      out_ += "ok\n";
      return;
    } else if (verb != "set") {
      throw std::runtime_error("node: add, set or rm");
    }
    auto& n = *nodes_.at(id);
    setNode(n, argsFrom(w, 3));
    writeNode(n);
    out_ += "ok\n";
  }

  void setNode(objects::NodeT& n, const Args& args) {
    for (size_t i = 0; i < args.size(); ++i) {
      auto& [k, v] = args[i];
      if (k == "cpus") n.description->resources->nano_cpus = static_cast<int64_t>(std::stod(v) * 1e9);
      else if (k == "mem") n.description->resources->memory_bytes = static_cast<int64_t>(parseBytes(v).value());
      else if (k == "role") n.role = v == "manager" ? objects::NodeRole::Manager : objects::NodeRole::Worker;
      else if (k == "state") n.status->state = nodeState(v);
      else if (k == "availability") n.spec->availability = availability(v);
      else if (k == "os") n.description->platform->os = v;
      else if (k == "arch") n.description->platform->architecture = v;
      else if (k == "label") continue;  // "label zone=b": the next argument is the label
      else setLabel(n, k, v);
    }
  }

  static objects::NodeState nodeState(const std::string& v) {
    if (v == "ready") return objects::NodeState::Ready;
    if (v == "down") return objects::NodeState::Down;
    if (v == "unknown") return objects::NodeState::Unknown;
    if (v == "disconnected") return objects::NodeState::Disconnected;
    throw std::runtime_error("node state: ready, down, unknown or disconnected");
  }

  static objects::NodeAvailability availability(const std::string& v) {
    if (v == "active") return objects::NodeAvailability::Active;
    if (v == "pause") return objects::NodeAvailability::Pause;
    if (v == "drain") return objects::NodeAvailability::Drain;
    throw std::runtime_error("availability: active, pause or drain");
  }

  static void setLabel(objects::NodeT& n, const std::string& k, const std::string& v) {
    auto& labels = n.spec->annotations->labels;
    std::erase_if(labels, [&](auto& kv) { return kv->key == k; });
    if (v.empty()) return;
    auto kv = std::make_unique<objects::KeyValueT>();
    kv->key = k;
    kv->value = v;
    labels.push_back(std::move(kv));
    std::sort(labels.begin(), labels.end(), [](auto& a, auto& b) { return a->key < b->key; });
  }

  // ---- commands: services (what raftd's service API would write)

  static std::unique_ptr<objects::UpdateConfigT> defaultUpdateConfig() {
    auto c = std::make_unique<objects::UpdateConfigT>();
    c->parallelism = 1;
    c->monitor = 5 * kSecond;
    return c;
  }

  static std::unique_ptr<objects::ServiceSpecT> defaultSpec(const std::string& name) {
    auto s = std::make_unique<objects::ServiceSpecT>();
    s->annotations = std::make_unique<objects::AnnotationsT>();
    s->annotations->name = name;
    s->task = std::make_unique<objects::TaskSpecT>();
    s->task->container = std::make_unique<objects::ContainerSpecT>();
    s->task->container->image = "img:1";
    s->task->restart = std::make_unique<objects::RestartPolicyT>();
    s->task->restart->delay = 5 * kSecond;
    s->task->placement = std::make_unique<objects::PlacementT>();
    s->task->resources = std::make_unique<objects::ResourceRequirementsT>();
    s->task->resources->reservations = std::make_unique<objects::ResourcesT>();
    s->mode = std::make_unique<objects::ServiceModeT>();
    s->mode->replicas = 1;
    s->update = defaultUpdateConfig();
    s->rollback = defaultUpdateConfig();
    s->endpoint = std::make_unique<objects::EndpointSpecT>();
    return s;
  }

  void service(const std::vector<std::string>& w) {
    const std::string& verb = w.at(1);
    const std::string& name = w.at(2);
    if (verb == "create") return createService(name, argsFrom(w, 3));
    auto it = services_.find(name);
    if (it == services_.end()) throw std::runtime_error("no service " + name);
    auto& s = *it->second;
    if (verb == "update") return updateService(s, argsFrom(w, 3));
    if (verb == "rollback") return rollbackService(s);
    if (verb == "show") return showService(s);
    if (verb != "rm") throw std::runtime_error("service: create, update, rollback, rm or show");
    services_.erase(it);
    view_.remove(ObjectKind::Service, name);
    out_ += "ok\n";
  }

  void createService(const std::string& name, const Args& args) {
    auto s = std::make_unique<objects::ServiceT>();
    s->id = name;
    s->spec = defaultSpec(name);
    s->spec_version = 1;
    for (auto& [k, v] : args) setSpec(*s->spec, k, v);
    writeService(*s);
    services_[name] = std::move(s);
    out_ += "ok\n";
  }

  // raftd's update: previous_spec kept, spec_version bumped, an update status when what the
  // tasks run changed (a scale is not an update).
  void updateService(objects::ServiceT& s, const Args& args) {
    uint64_t before = taskSpecDigest(s);
    auto spec = std::make_unique<objects::ServiceSpecT>(*s.spec);
    for (auto& [k, v] : args) setSpec(*spec, k, v);
    s.previous_spec = std::move(s.spec);
    s.previous_spec_version = s.spec_version;
    s.spec = std::move(spec);
    ++s.spec_version;
    if (taskSpecDigest(s) != before) {
      s.update_status = std::make_unique<objects::UpdateStatusT>();
      s.update_status->state = objects::UpdateState::Updating;
      s.update_status->started_at = now_;
      s.update_status->spec_version = s.spec_version;
      s.update_status->message = "update in progress";
    }
    writeService(s);
    out_ += "ok\n";
  }

  void rollbackService(objects::ServiceT& s) {
    if (!s.previous_spec) throw std::runtime_error("no previous spec");
    std::swap(s.spec, s.previous_spec);
    ++s.spec_version;
    s.update_status = std::make_unique<objects::UpdateStatusT>();
    s.update_status->state = objects::UpdateState::RollbackStarted;
    s.update_status->started_at = now_;
    s.update_status->spec_version = s.spec_version;
    s.update_status->message = "manually requested rollback";
    writeService(s);
    out_ += "ok\n";
  }

  static objects::RestartCondition condition(const std::string& v) {
    if (v == "none") return objects::RestartCondition::None;
    if (v == "on-failure") return objects::RestartCondition::OnFailure;
    if (v == "any") return objects::RestartCondition::Any;
    throw std::runtime_error("restart: none, on-failure or any");
  }

  static objects::ServiceModeKind modeKind(const std::string& v) {
    if (v == "replicated") return objects::ServiceModeKind::Replicated;
    if (v == "global") return objects::ServiceModeKind::Global;
    if (v == "replicated-job") return objects::ServiceModeKind::ReplicatedJob;
    if (v == "global-job") return objects::ServiceModeKind::GlobalJob;
    throw std::runtime_error("mode: replicated, global, replicated-job or global-job");
  }

  static void setUpdateConfig(objects::UpdateConfigT& c, const std::string& k, const std::string& v) {
    if (k == "parallelism") c.parallelism = number(v);
    else if (k == "delay") c.delay = duration(v);
    else if (k == "monitor") c.monitor = duration(v);
    else if (k == "max-failure-ratio") c.max_failure_ratio = std::stof(v);
    else if (k == "order") c.order = v == "start-first" ? objects::UpdateOrder::StartFirst : objects::UpdateOrder::StopFirst;
    else if (k == "failure-action")
      c.failure_action = v == "rollback" ? objects::UpdateFailureAction::Rollback
                         : v == "continue" ? objects::UpdateFailureAction::Continue
                                           : objects::UpdateFailureAction::Pause;
    else throw std::runtime_error("unknown update key " + k);
  }

  static void setPort(objects::EndpointSpecT& e, const std::string& v) {
    auto p = std::make_unique<objects::PortConfigT>();
    std::string text = v;
    if (text.ends_with("/host")) {
      p->publish_mode = objects::PublishMode::Host;
      text.resize(text.size() - 5);
    }
    auto colon = text.find(':');
    p->published_port = colon == std::string::npos ? 0 : static_cast<uint32_t>(number(text.substr(0, colon)));
    p->target_port = static_cast<uint32_t>(number(colon == std::string::npos ? text : text.substr(colon + 1)));
    e.ports.push_back(std::move(p));
  }

  static void setSpec(objects::ServiceSpecT& s, const std::string& k, const std::string& v) {
    auto& t = *s.task;
    if (k == "image") t.container->image = v;
    else if (k == "replicas") s.mode->replicas = number(v);
    else if (k == "mode") s.mode->kind = modeKind(v);
    else if (k == "max-concurrent") s.mode->max_concurrent = number(v);
    else if (k == "total-completions") s.mode->total_completions = number(v);
    else if (k == "constraint") t.placement->constraints.push_back(v);
    else if (k == "pref") {
      auto p = std::make_unique<objects::PlacementPreferenceT>();
      p->spread_descriptor = v.starts_with("spread=") ? v.substr(7) : v;
      t.placement->preferences.push_back(std::move(p));
    } else if (k == "max-per-node") t.placement->max_replicas = number(v);
    else if (k == "platform") {
      auto p = std::make_unique<objects::PlatformT>();
      auto slash = v.find('/');
      p->os = v.substr(0, slash);
      p->architecture = slash == std::string::npos ? "" : v.substr(slash + 1);
      t.placement->platforms.push_back(std::move(p));
    }
    else if (k == "reserve-cpu") t.resources->reservations->nano_cpus = static_cast<int64_t>(std::stod(v) * 1e9);
    else if (k == "reserve-mem") t.resources->reservations->memory_bytes = static_cast<int64_t>(parseBytes(v).value());
    else if (k == "publish") setPort(*s.endpoint, v);
    else if (k == "restart") t.restart->condition = condition(v);
    else if (k == "delay") t.restart->delay = duration(v);
    else if (k == "max-attempts") t.restart->max_attempts = number(v);
    else if (k == "window") t.restart->window = duration(v);
    else if (k == "force") ++t.force_update;
    else if (k == "monitor") s.update->monitor = duration(v);
    else if (k == "order") s.update->order = v == "start-first" ? objects::UpdateOrder::StartFirst : objects::UpdateOrder::StopFirst;
    else if (k == "failure-action") setUpdateConfig(*s.update, k, v);
    else if (k.starts_with("update-")) setUpdateConfig(*s.update, k.substr(7), v);
    else if (k.starts_with("rollback-")) setUpdateConfig(*s.rollback, k.substr(9), v);
    else throw std::runtime_error("unknown service key " + k);
  }

  void showService(const objects::ServiceT& s) {
    out_ += s.id + " spec_version=" + std::to_string(s.spec_version) + " image=" +
            s.spec->task->container->image;
    if (s.previous_spec) out_ += " previous=" + s.previous_spec->task->container->image;
    out_ += "\n";
    if (s.update_status) out_ += "  " + describeUpdate(*s.update_status) + "\n";
    if (s.job_status)
      out_ += "  job iteration=" + std::to_string(s.job_status->job_iteration) + " last=" +
              since(s.job_status->last_execution) + "\n";
    if (s.endpoint)
      for (auto& p : s.endpoint->ports)
        out_ += "  port " + std::to_string(p->published_port) + ":" + std::to_string(p->target_port) + "\n";
  }

  static std::string describeUpdate(const objects::UpdateStatusT& u) {
    std::string out = "update " + lower(objects::EnumNameUpdateState(u.state));
    out += " started=" + since(u.started_at);
    if (u.batch_done_at) out += " batch_done=" + since(u.batch_done_at);
    if (u.completed_at) out += " completed=" + since(u.completed_at);
    if (u.failures) out += " failures=" + std::to_string(u.failures);
    return out + " \"" + u.message + "\"";
  }

  // ---- commands: agents

  // The task an agent reports on: by id, or by name (the newest of that name on a node).
  objects::TaskT* findTask(const std::string& what) {
    auto slash = what.find('/');  // a label as printed: web.1/t3
    if (slash != std::string::npos) return findTask(what.substr(slash + 1));
    if (auto it = tasks_.find(what); it != tasks_.end()) return it->second.get();
    objects::TaskT* best = nullptr;
    for (auto& [id, t] : tasks_) {
      if (!t->annotations || t->annotations->name != what) continue;
      if (!best || idNumber(id) > idNumber(best->id)) best = t.get();
    }
    return best;
  }

  void agent(const std::vector<std::string>& w) {
    auto* t = findTask(w.at(1));
    if (!t) throw std::runtime_error("no task " + w.at(1));
    TaskState to = taskState(w.at(2));
    if (t->status->state < TaskState::Assigned || t->status->state >= to) {
      out_ += "refused: " + label(*t) + " is " + stateName(t->status->state) + "\n";
      return;
    }
    int code = to == TaskState::Failed ? 1 : 0;
    std::string err = to == TaskState::Failed ? "task: non-zero exit (1)" : "";
    for (auto& [k, v] : argsFrom(w, 3)) {
      if (k == "exit") code = std::stoi(v);
      if (k == "exit" && to == TaskState::Failed) err = "task: non-zero exit (" + v + ")";
      if (k == "err") err = v;
    }
    report(*t, to, code, err);
    out_ += label(*t) + " " + stateName(to) + "\n";
  }

  static TaskState taskState(const std::string& v) {
    for (auto s : objects::EnumValuesTaskState())
      if (stateName(s) == v) return s;
    throw std::runtime_error("unknown task state " + v);
  }

  void report(objects::TaskT& t, TaskState to, int code, const std::string& err) {
    t.status->state = to;
    t.status->timestamp = now_;
    t.status->err = err;
    t.status->message = stateName(to);
    if (!t.status->container) t.status->container = std::make_unique<objects::ContainerStatusT>();
    t.status->container->exit_code = code;
    t.status->applied_by = t.node_id;
    writeTask(t);
  }

  // What the fake executor does with each assigned task on a live node.
  void agentAll() {
    std::vector<objects::TaskT*> todo;
    for (auto& [id, t] : tasks_) todo.push_back(t.get());
    std::sort(todo.begin(), todo.end(), [](auto* a, auto* b) { return idNumber(a->id) < idNumber(b->id); });
    bool any = false;
    for (auto* t : todo) {
      auto st = t->status->state;
      auto n = nodes_.find(t->node_id);
      if (st < TaskState::Assigned || st > TaskState::Running || n == nodes_.end() ||
          n->second->status->state == objects::NodeState::Down)
        continue;
      TaskState to = t->desired_state > TaskState::Running ? TaskState::Shutdown
                     : t->desired_state == TaskState::Ready ? TaskState::Ready
                                                            : TaskState::Running;
      if (to <= st) continue;
      report(*t, to, 0, "");
      out_ += label(*t) + " " + stateName(to) + "\n";
      any = true;
    }
    if (!any) out_ += "nothing to do\n";
  }

  // ---- commands: the clock, passes, tables

  void tick(const std::string& d) {
    now_ += duration(d);
    out_ += "now " + since(now_) + "\n";
  }

  void pass() {
    auto result = runPass(view_, now_, [this] { return "t" + std::to_string(nextId_++); });
    bool any = false;
    for (auto& batch : result.batches) {
      if (!commit(batch)) break;
      any = any || !batch.empty();
    }
    if (!any) out_ += "no changes\n";
    if (result.nextWake) out_ += "wake at " + since(result.nextWake) + "\n";
    checkInvariants();
  }

  // After every pass (LogCabin's way: a transcript cannot pass with an invariant broken):
  // at most one live task per slot, two for a start-first service; none of a removed service.
  void checkInvariants() {
    std::map<std::pair<std::string, std::string>, int> live;
    for (auto& [id, t] : tasks_) {
      if (t->desired_state > TaskState::Running) continue;
      auto s = services_.find(t->service_id);
      if (s == services_.end()) out_ += "INVARIANT BROKEN: live task " + label(*t) + " of a removed service\n";
      std::string slot = t->slot ? std::to_string(t->slot) : t->node_id;
      if (s == services_.end() || ++live[{t->service_id, slot}] <= maxLive(*s->second)) continue;
      out_ += "INVARIANT BROKEN: slot " + t->service_id + "." + slot + " has more live tasks than allowed\n";
    }
  }

  static int maxLive(const objects::ServiceT& s) {
    auto startFirst = [](const std::unique_ptr<objects::UpdateConfigT>& c) {
      return c && c->order == objects::UpdateOrder::StartFirst;
    };
    return startFirst(s.spec->update) || startFirst(s.spec->rollback) ? 2 : 1;
  }

  // A store transaction: all or nothing, with the expected versions checked. False on a
  // conflict, after which the shell lists again (a fresh view) and the pass's rest is dropped.
  bool commit(const std::vector<store::ChangeSpec>& batch) {
    for (auto& c : batch) {
      if (storedVersion(c.kind, c.id) != c.expectedVersion) {
        out_ += "conflict on " + c.id + ": expected version " + std::to_string(c.expectedVersion) + "\n";
        leaderChange(false);
        return false;
      }
    }
    for (auto& c : batch) apply(c);
    return true;
  }

  void apply(const store::ChangeSpec& c) {
    if (c.kind == ObjectKind::Task) return applyTask(c);
    if (c.kind != ObjectKind::Service || c.operation != objects::Operation::Update)
      throw std::runtime_error("a pass wrote an unexpected change to " + c.id);
    auto s = unpackBytes<objects::Service>(c.object);
    auto& old = services_.at(c.id);
    out_ += describeServiceChange(*old, *s);
    s->meta = std::move(old->meta);
    old = std::move(s);
    writeService(*old);
  }

  void applyTask(const store::ChangeSpec& c) {
    if (c.operation == objects::Operation::Delete) {
      out_ += "delete " + label(*tasks_.at(c.id)) + "\n";
      tasks_.erase(c.id);
      view_.remove(ObjectKind::Task, c.id);
      return;
    }
    auto t = unpackBytes<objects::Task>(c.object);
    if (c.operation == objects::Operation::Create) {
      out_ += "create " + label(*t) + describeTask(*t) + "\n";
      t->meta.reset();
    } else {
      auto& old = *tasks_.at(c.id);
      out_ += "update " + label(*t) + describeTaskChange(old, *t) + "\n";
      t->meta = std::move(old.meta);
    }
    auto& slot = tasks_[c.id];
    slot = std::move(t);
    writeTask(*slot);
  }

  static std::string label(const objects::TaskT& t) {
    return (t.annotations ? t.annotations->name : "?") + "/" + t.id;
  }

  std::string describeTask(const objects::TaskT& t) {
    std::string out = " desired=" + stateName(t.desired_state) + " state=" + stateName(t.status->state);
    if (!t.node_id.empty()) out += " node=" + t.node_id;
    if (t.restart_attempt) out += " restart=" + std::to_string(t.restart_attempt);
    if (t.not_before) out += " not_before=" + since(t.not_before);
    if (!t.status->err.empty()) out += " err=\"" + t.status->err + "\"";
    return out;
  }

  std::string describeTaskChange(const objects::TaskT& a, const objects::TaskT& b) {
    std::string out;
    if (a.desired_state != b.desired_state) out += " desired=" + stateName(b.desired_state);
    if (a.status->state != b.status->state) out += " state=" + stateName(b.status->state);
    if (a.node_id != b.node_id) out += " node=" + b.node_id;
    if (a.not_before != b.not_before) out += " not_before=" + since(b.not_before);
    if (a.status->err != b.status->err) out += " err=\"" + b.status->err + "\"";
    if (a.spec_digest != b.spec_digest) out += " spec changed";
    return out.empty() ? " (no visible change)" : out;
  }

  static std::string describeServiceChange(const objects::ServiceT& a, const objects::ServiceT& b) {
    std::string out;
    if (a.spec_version != b.spec_version)
      out += "service " + b.id + " spec_version=" + std::to_string(b.spec_version) + " image=" +
             b.spec->task->container->image + "\n";
    std::string before = a.update_status ? describeUpdate(*a.update_status) : "";
    std::string after = b.update_status ? describeUpdate(*b.update_status) : "";
    if (before != after) out += "service " + b.id + " " + after + "\n";
    auto iteration = [](const objects::ServiceT& s) {
      return s.job_status ? std::to_string(s.job_status->job_iteration) : "";
    };
    if (iteration(a) != iteration(b)) out += "service " + b.id + " job iteration=" + iteration(b) + "\n";
    auto ports = [](const objects::ServiceT& s) {
      std::string p;
      if (s.endpoint)
        for (auto& port : s.endpoint->ports)
          p += " " + std::to_string(port->published_port) + ":" + std::to_string(port->target_port);
      return p;
    };
    if (ports(a) != ports(b) || (a.endpoint != nullptr) != (b.endpoint != nullptr))
      out += "service " + b.id + " endpoint ports:" + (ports(b).empty() ? " none" : ports(b)) + "\n";
    return out.empty() ? "service " + b.id + " (no visible change)\n" : out;
  }

  void tasks() {
    std::vector<const objects::TaskT*> all;
    for (auto& [id, t] : tasks_) all.push_back(t.get());
    std::sort(all.begin(), all.end(), [](auto* a, auto* b) {
      auto key = [](const objects::TaskT* t) {  // a slot, or a global service's node
        return std::make_tuple(t->service_id, t->slot, t->slot ? "" : t->node_id, idNumber(t->id));
      };
      return key(a) < key(b);
    });
    char line[512];
    std::snprintf(line, sizeof line, "%-14s %-5s %-5s %-9s %-9s %s\n", "NAME", "SLOT", "NODE",
                  "DESIRED", "STATE", "ERR");
    out_ += line;
    for (auto* t : all) {
      std::string err = t->status->err;
      if (t->desired_state == TaskState::Ready && t->not_before > now_)
        err = "waiting for restart delay (" + formatDuration(std::chrono::nanoseconds(t->not_before - now_)) + " left)";
      std::snprintf(line, sizeof line, "%-14s %-5s %-5s %-9s %-9s %s", label(*t).c_str(),
                    std::to_string(t->slot).c_str(), t->node_id.empty() ? "-" : t->node_id.c_str(),
                    stateName(t->desired_state).c_str(), stateName(t->status->state).c_str(), err.c_str());
      std::string l = line;
      while (!l.empty() && l.back() == ' ') l.pop_back();
      out_ += l + "\n";
    }
  }

  // A new leader's schedulerd: a fresh View filled from what the store holds.
  void leaderChange(bool say = true) {
    view_.clear();
    auto put = [this](ObjectKind kind, const std::string& bytes) {
      auto st = view_.put(kind, bytes);
      if (!st) throw std::runtime_error(st.error().message);
    };
    if (cluster_) put(ObjectKind::Cluster, packWithMeta<objects::Cluster>(*cluster_));
    for (auto& [id, n] : nodes_) put(ObjectKind::Node, packWithMeta<objects::Node>(*n));
    for (auto& [id, s] : services_) put(ObjectKind::Service, packWithMeta<objects::Service>(*s));
    for (auto& [id, t] : tasks_) put(ObjectKind::Task, packWithMeta<objects::Task>(*t));
    view_.index = index_;
    if (say) out_ += "a new view of " + std::to_string(nodes_.size() + services_.size() + tasks_.size()) + " objects\n";
  }

  std::string out_;
  Time now_ = kStart;
  uint64_t index_ = 0;
  int nextId_ = 1;
  View view_;
  std::unique_ptr<objects::ClusterT> cluster_;
  std::map<std::string, std::unique_ptr<objects::NodeT>> nodes_;
  std::map<std::string, std::unique_ptr<objects::ServiceT>> services_;
  std::map<std::string, std::unique_ptr<objects::TaskT>> tasks_;
};

// Runs one file; returns the file with fresh outputs, and whether they all matched.
bool runFile(const std::filesystem::path& path, std::string& rewritten, bool quiet) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
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
      while (i < lines.size() && !lines[i].empty()) expected += lines[i++] + "\n";
    }
    std::string got;
    try {
      got = runner.run(cmd);
    } catch (const std::exception& e) {
      got = std::string("error: ") + e.what() + "\n";
    }
    rewritten += cmd + "\n----\n" + got;
    if (got != expected) {
      ok = false;
      if (quiet) continue;
      std::printf("%s: command %s\n--- expected\n%s--- got\n%s\n", path.string().c_str(),
                  cmd.c_str(), expected.c_str(), got.c_str());
    }
  }
  return ok;
}

}  // namespace
}  // namespace shoal::schedulerd

int main(int argc, char** argv) {
  const char* env = std::getenv("SHOAL_REWRITE");
  bool rewrite = env && std::string(env) == "1";
  std::string dir;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--rewrite" || a == "-rewrite") rewrite = true;
    else dir = a;
  }
  if (dir.empty()) {
    std::fprintf(stderr, "usage: %s [--rewrite] TESTDATA_DIR (or SHOAL_REWRITE=1)\n", argv[0]);
    return 2;
  }
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".txt") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  int failed = 0;
  for (const auto& f : files) {
    std::string rewritten;
    bool ok = shoal::schedulerd::runFile(f, rewritten, rewrite);
    if (rewrite) std::ofstream(f) << rewritten;
    else if (!ok) ++failed;
    std::printf("%s %s\n", rewrite ? "rewrote" : ok ? "ok" : "FAILED", f.filename().c_str());
  }
  if (files.empty()) {
    std::fprintf(stderr, "no transcripts in %s\n", dir.c_str());
    return 1;
  }
  return failed ? 1 : 0;
}
