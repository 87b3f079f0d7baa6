#include "services/agentd/runc_executor.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <spdlog/spdlog.h>

#include "services/agentd/bundle.h"
#include "services/agentd/worker.h"
#include "wire_generated.h"

namespace shoal::agentd {
namespace {

namespace fs = std::filesystem;
using objects::TaskState;
using Phase = TaskRecord::Phase;

std::string str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }

const objects::Task* taskOf(const std::string& bytes) {
  return flatbuffers::GetRoot<objects::Task>(bytes.data());
}

const objects::ContainerSpec* specOf(const objects::Task& t) {
  return t.spec() ? t.spec()->container() : nullptr;
}

// The name `container ls` shows: <service>.<slot>.<task id> (global: <service>.<node
// id>.<task id>), as Swarm names a task's container.
std::string containerName(const objects::Task& t) {
  std::string service = t.service_annotations() ? str(t.service_annotations()->name()) : "";
  return service + "." + (t.slot() ? std::to_string(t.slot()) : str(t.node_id())) + "." +
         str(t.id());
}

Error wireError(wire::ErrorCode code, std::string message) {
  return Error{std::move(message), static_cast<int>(code)};
}

std::string errnoText(int e) { return std::strerror(e); }

// A lazy unmount: a mount a dead process still holds goes once it lets go. Not mounted (or
// not there) is fine: teardown runs whatever was made.
void unmount(const std::string& path) {
  if (::umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT)
    spdlog::warn("cannot unmount {}: {}", path, errnoText(errno));
}

Status writeFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
  out.close();
  if (!out) return Error{"cannot write " + path + ": " + errnoText(errno)};
  return {};
}

Status makeDir(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST)
    return Error{"cannot make " + path + ": " + errnoText(errno) +
                 "; check the state dir's disk and permissions"};
  return {};
}

std::string readFileOr(const std::string& path, std::string otherwise) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return otherwise;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The task outlives the worker's buffer it came in: a copy of its own.
std::string copyTask(const objects::Task& task) {
  std::unique_ptr<objects::TaskT> t(task.UnPack());
  flatbuffers::FlatBufferBuilder fbb;
  fbb.Finish(objects::Task::Pack(fbb, t.get()));
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

ResolvedMount bindFile(const std::string& source, const std::string& destination, bool ro) {
  ResolvedMount m{"bind", source, destination, {"rbind", "rprivate"}};
  if (ro) m.options.push_back("ro");
  return m;
}

}  // namespace

// ---- pure pieces

Result<std::string> overlayOptions(const std::vector<std::string>& layers,
                                   const std::string& upper, const std::string& work) {
  if (layers.empty()) return Error{"the image has no layers: nothing to make a rootfs from"};
  std::string lower;
  for (auto it = layers.rbegin(); it != layers.rend(); ++it) {
    if (it->find_first_of(",:") != std::string::npos)
      return Error{"layer dir " + *it + " has a ',' or ':' that overlayfs cannot take"};
    lower += (lower.empty() ? "" : ":") + *it;
  }
  std::string data = "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work;
  // The kernel takes mount data of one page at most.
  if (data.size() >= 4096)
    return Error{"the image has " + std::to_string(layers.size()) +
                 " layers, too many for one overlay mount (" + std::to_string(data.size()) +
                 " bytes of options; the kernel takes 4095)"};
  return data;
}

std::string hostsFile(const std::string& hostname, const std::vector<std::string>& extra) {
  std::string out =
      "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
      "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
      "ff02::2\tip6-allrouters\n";
  out += "127.0.1.1\t" + hostname + "\n";
  for (const auto& line : extra) out += line + "\n";
  return out;
}

Result<uint32_t> fileOwner(const std::string& text, const char* what, const std::string& name) {
  if (text.empty()) return uint32_t{0};
  uint32_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size())
    return Error{name + ": " + what + " '" + text + "' is not a number (give a numeric id)"};
  return v;
}

std::string secretTarget(const std::string& target, bool config) {
  if (!target.empty() && target.front() == '/') return target;
  return (config ? "/" : "/run/secrets/") + target;
}

TaskEvent exitEvent(const std::string& taskId, const ContainerExit& exit) {
  if (!exit.error.empty())
    return TaskEvent{taskId, TaskState::Failed, "started", "task: " + exit.error, exit.exitCode};
  if (exit.exitCode == 0) return TaskEvent{taskId, TaskState::Complete, "finished"};
  return TaskEvent{taskId, TaskState::Failed, "started",
                   "task: non-zero exit (" + std::to_string(exit.exitCode) + ")", exit.exitCode};
}

// ---- opening

Result<std::unique_ptr<RuncExecutor>> RuncExecutor::open(Loop& loop, RuncExecutorOptions options,
                                                         ImageStore& images, Runtime& runtime,
                                                         SandboxClient& sandboxes,
                                                         const SecretStore& secrets) {
  for (const char* sub : {"/containers", "/logs", "/volumes"})
    if (auto st = makeDir(options.stateDir + sub, 0711); !st) return st.error();
  auto store = TaskStore::open(options.stateDir + "/tasks.mdb");
  if (!store) return store.error();
  std::unique_ptr<RuncExecutor> e(new RuncExecutor(loop, std::move(options), images, runtime,
                                                   sandboxes, secrets, std::move(store).value()));
  e->loadRecords();
  return e;
}

RuncExecutor::RuncExecutor(Loop& loop, RuncExecutorOptions options, ImageStore& images,
                           Runtime& runtime, SandboxClient& sandboxes, const SecretStore& secrets,
                           std::unique_ptr<TaskStore> store)
    : loop_(loop),
      options_(std::move(options)),
      images_(images),
      runtime_(runtime),
      sandboxes_(sandboxes),
      secrets_(secrets),
      store_(std::move(store)),
      volumes_(options_.stateDir + "/volumes") {
  std::weak_ptr<bool> alive = alive_;
  runtime_.onExit([this, alive](const std::string& id, const ContainerExit& exit) {
    if (alive.lock()) onExit(id, exit);
  });
}

RuncExecutor::~RuncExecutor() {
  *alive_ = false;
  for (auto id : timers_) loop_.cancel(id);
  for (auto& [id, c] : containers_) {
    if (c.healthTimer) loop_.cancel(c.healthTimer);
    if (c.killTimer) loop_.cancel(c.killTimer);
  }
}

// Every record is a leftover until a task claims it: containers keep running meanwhile.
void RuncExecutor::loadRecords() {
  auto listing = store_->list();
  if (!listing) {
    spdlog::error("runc executor: cannot read the task store: {}", listing.error().message);
    return;
  }
  for (const auto& why : listing->bad) spdlog::warn("runc executor: {}; left alone", why);
  for (auto& r : listing->records) leftovers_.emplace(r.id, std::move(r));
  if (!leftovers_.empty())
    spdlog::info("runc executor: {} task records from before; waiting for the managers' set",
                 leftovers_.size());
}

// ---- helpers

int64_t RuncExecutor::now() const {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t RuncExecutor::steadyNs() const {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(loop_.now().time_since_epoch())
      .count();
}

std::string RuncExecutor::bundleOf(const std::string& id) const {
  return options_.stateDir + "/containers/" + id;
}

std::string RuncExecutor::logDirOf(const std::string& id) const {
  return options_.stateDir + "/logs/" + id;
}

RuncExecutor::Container* RuncExecutor::find(const std::string& id) {
  auto it = containers_.find(id);
  return it == containers_.end() ? nullptr : &it->second;
}

Status RuncExecutor::save(Container& c) {
  auto st = store_->put(c.record);
  if (!st) spdlog::error("task {}: cannot write its record: {}", c.record.id, st.error().message);
  return st;
}

void RuncExecutor::later(TaskEvent event) {
  auto id = std::make_shared<Loop::TimerId>(0);
  *id = loop_.after(std::chrono::milliseconds(0), [this, id, event = std::move(event)] {
    timers_.erase(*id);
    emit(event);
  });
  timers_.insert(*id);
}

// ---- prepare

void RuncExecutor::prepare(const objects::Task& task) {
  std::string id = str(task.id());
  if (auto* c = find(id)) {
    // Asked again (executor.h): where it stands is reported again by the worker's own
    // state; an ended prepare's REJECTED was already told.
    if (c->step == Step::Ready) later({id, TaskState::Ready, "prepared"});
    return;
  }
  Container& c = containers_[id];
  c.task = copyTask(task);
  c.generation = nextGeneration_++;
  c.record.id = id;
  c.record.name = containerName(task);
  c.record.serviceId = str(task.service_id());
  c.record.image = specOf(task) ? str(specOf(task)->image()) : "";
  c.record.bundle = bundleOf(id);
  c.record.created = now();
  later({id, TaskState::Accepted, "accepted"});
  later({id, TaskState::Preparing, "preparing"});
  // A record from before a restart: what it made goes first, then the prepare starts over.
  if (auto it = leftovers_.find(id); it != leftovers_.end()) {
    TaskRecord old = std::move(it->second);
    leftovers_.erase(it);
    uint64_t gen = c.generation;
    std::weak_ptr<bool> alive = alive_;
    return teardown(old, old.phase >= Phase::Started, [this, alive, id, gen] {
      if (!alive.lock()) return;
      if (auto* c = find(id); c && c->generation == gen && c->step == Step::Preparing)
        pullImage(id);
    });
  }
  pullImage(id);
}

void RuncExecutor::pullImage(const std::string& id) {
  Container& c = containers_.at(id);
  const auto* spec = specOf(*taskOf(c.task));
  if (c.record.image.empty()) return reject(id, "the task's spec names no image");
  RegistryAuth auth;
  if (spec && spec->registry_auth() && spec->registry_auth()->size() > 0) {
    auto decoded = decodeRegistryAuth(spec->registry_auth()->str());
    if (!decoded) return reject(id, "--with-registry-auth: " + decoded.error().message);
    auth = std::move(decoded).value();
  }
  // Written before anything is made, so that a restart finds what to tear down.
  if (auto st = save(c); !st) return reject(id, "cannot record the task: " + st.error().message);
  uint64_t gen = c.generation;
  std::weak_ptr<bool> alive = alive_;
  images_.ensure(c.record.image, auth, [this, alive, id, gen](Result<Image> image) {
    if (!alive.lock()) return;
    Container* c = find(id);
    if (!c || c->generation != gen || c->step != Step::Preparing) return;
    if (!image) return reject(id, image.error().message);
    c->record.imageId = image->id;
    c->image = std::move(image).value();
    makeSandbox(id);
  });
}

void RuncExecutor::makeSandbox(const std::string& id) {
  Container& c = containers_.at(id);
  c.record.sandbox = true;  // before asking: a restart then removes it whatever happened
  if (auto st = save(c); !st) return reject(id, "cannot record the task: " + st.error().message);
  uint64_t gen = c.generation;
  std::weak_ptr<bool> alive = alive_;
  sandboxes_.create(id, [this, alive, id, gen](Result<std::string> path) {
    if (!alive.lock()) return;
    Container* c = find(id);
    if (!c || c->generation != gen || c->step != Step::Preparing) {
      // Cancelled while overlayd made it: the teardown's remove may have come first.
      if (path && (!c || c->step == Step::Ended)) sandboxes_.remove(id, [](Status) {});
      return;
    }
    if (!path) return reject(id, "network sandbox: " + path.error().message);
    c->netns = std::move(path).value();
    finishPrepare(id);
  });
}

void RuncExecutor::finishPrepare(const std::string& id) {
  Container& c = containers_.at(id);
  const objects::Task& task = *taskOf(c.task);
  if (auto st = materialize(c, task); !st) return reject(id, st.error().message);
  c.record.phase = Phase::Prepared;
  if (auto st = save(c); !st) return reject(id, "cannot record the task: " + st.error().message);
  c.step = Step::Ready;
  spdlog::info("task {} ({}): prepared", id, c.record.name);
  later({id, TaskState::Ready, "prepared"});
}

// The synchronous part of a prepare: everything on the node's disk.
Status RuncExecutor::materialize(Container& c, const objects::Task& task) {
  const std::string& b = c.record.bundle;
  for (const char* sub : {"", "/rootfs", "/upper", "/work", "/etc", "/secrets"})
    if (auto st = makeDir(b + sub, sub[0] ? 0755 : 0711); !st) return st;
  if (auto st = makeDir(logDirOf(c.record.id), 0750); !st) return st;
  const auto* spec = specOf(task);
  if (!spec) return Error{"the task has no container spec"};
  auto signal = stopSignal(spec, c.image->config);
  if (!signal) return signal.error();
  c.stopSignal = *signal;
  if (spec->stop_grace_period() > 0) c.grace = std::chrono::nanoseconds(spec->stop_grace_period());
  std::vector<ResolvedMount> mounts;
  auto etc = etcFiles(c, task);
  if (!etc) return etc.error();
  mounts = std::move(etc).value();
  if (auto st = makeVolumes(c, *spec); !st) return st;
  auto resolved = resolveMounts(*spec, volumes_.root());
  if (!resolved) return resolved.error();
  mounts.insert(mounts.end(), resolved->begin(), resolved->end());
  auto secrets = secretFiles(c, task);
  if (!secrets) return secrets.error();
  mounts.insert(mounts.end(), secrets->begin(), secrets->end());
  if (auto st = mountRootfs(c); !st) return st;
  return writeSpec(c, task, std::move(mounts));
}

// Named volumes are made on first use, as docker's local driver does.
Status RuncExecutor::makeVolumes(Container& c, const objects::ContainerSpec& spec) {
  if (!spec.mounts()) return {};
  for (const auto* m : *spec.mounts()) {
    if (!m || m->type() != objects::MountType::Volume || str(m->source()).empty()) continue;
    auto made = volumes_.ensure(m->source()->str());
    if (!made) return made.error();
    c.record.volumes.push_back(m->source()->str());
  }
  return {};
}

// /etc/hostname, /etc/hosts and /etc/resolv.conf: files of the bundle bound into the
// container, as docker's are (the image's own stay underneath).
Result<std::vector<ResolvedMount>> RuncExecutor::etcFiles(Container& c,
                                                          const objects::Task& task) {
  const auto* spec = specOf(task);
  std::string hostname = str(spec->hostname());
  if (hostname.empty()) hostname = c.record.id.substr(0, 12);
  std::vector<std::string> extra;
  if (spec->hosts())
    for (const auto* h : *spec->hosts()) extra.push_back(str(h));
  std::string etc = c.record.bundle + "/etc";
  std::string resolv = readFileOr(options_.resolvConf, "nameserver 127.0.0.1\n");
  for (auto [file, data] : {std::pair<const char*, std::string>{"hostname", hostname + "\n"},
                            {"hosts", hostsFile(hostname, extra)},
                            {"resolv.conf", resolv}})
    if (auto st = writeFile(etc + "/" + file, data); !st) return st.error();
  return std::vector<ResolvedMount>{bindFile(etc + "/hostname", "/etc/hostname", false),
                                    bindFile(etc + "/hosts", "/etc/hosts", false),
                                    bindFile(etc + "/resolv.conf", "/etc/resolv.conf", false)};
}

// Secrets and configs: files on the task's own tmpfs (never on the node's disk, as Swarm
// keeps them), each bound read-only at its target.
Result<std::vector<ResolvedMount>> RuncExecutor::secretFiles(Container& c,
                                                             const objects::Task& task) {
  const auto* spec = specOf(task);
  std::vector<SecretFile> files;
  if (spec->secrets())
    for (const auto* ref : *spec->secrets())
      files.push_back({str(ref->secret_id()), str(ref->secret_name()), ref->file(), false});
  if (spec->configs())
    for (const auto* ref : *spec->configs())
      files.push_back({str(ref->config_id()), str(ref->config_name()), ref->file(), true});
  std::vector<ResolvedMount> out;
  if (files.empty()) return out;
  std::string dir = c.record.bundle + "/secrets";
  if (::mount("tmpfs", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "size=1m,mode=0755") != 0)
    return Error{"cannot mount the secrets tmpfs at " + dir + ": " + errnoText(errno)};
  for (size_t i = 0; i < files.size(); ++i) {
    auto mount = writeSecret(dir, std::to_string(i), files[i]);
    if (!mount) return mount.error();
    out.push_back(std::move(mount).value());
  }
  return out;
}

// One secret or config from the assignments' store, as file `file` of the tmpfs.
Result<ResolvedMount> RuncExecutor::writeSecret(const std::string& dir, const std::string& file,
                                                const SecretFile& s) {
  std::string what = std::string(s.config ? "config " : "secret ") + s.name + " (" + s.id + ")";
  auto item = s.config ? secrets_.config(s.id) : secrets_.secret(s.id);
  if (!item) return Error{what + " is not on this node"};
  if (auto st = writeSecretFile(dir, file, item->data, s.target, what); !st) return st.error();
  std::string target = s.target ? str(s.target->name()) : "";
  if (target.empty()) target = s.name;
  return bindFile(dir + "/" + file, secretTarget(target, s.config), true);
}

Status RuncExecutor::writeSecretFile(const std::string& dir, const std::string& file,
                                     const std::string& data, const objects::FileTarget* target,
                                     const std::string& what) {
  auto uid = fileOwner(target ? str(target->uid()) : "", "uid", what);
  if (!uid) return uid.error();
  auto gid = fileOwner(target ? str(target->gid()) : "", "gid", what);
  if (!gid) return gid.error();
  mode_t mode = target && target->mode() ? (target->mode() & 07777) : 0444;
  std::string path = dir + "/" + file;
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Error{what + ": cannot write " + path + ": " + errnoText(errno)};
  bool ok = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()) &&
            ::fchown(fd, *uid, *gid) == 0 && ::fchmod(fd, mode) == 0;
  int err = errno;
  ::close(fd);
  if (!ok) return Error{what + ": cannot write " + path + ": " + errnoText(err)};
  return {};
}

Status RuncExecutor::mountRootfs(Container& c) {
  const std::string& b = c.record.bundle;
  auto data = overlayOptions(c.image->layers, b + "/upper", b + "/work");
  if (!data) return data.error();
  std::string rootfs = b + "/rootfs";
  if (::mount("overlay", rootfs.c_str(), "overlay", 0, data->c_str()) != 0)
    return Error{"cannot mount the container's overlay rootfs at " + rootfs + ": " +
                 errnoText(errno) + " (the kernel needs overlayfs; the state dir must not be "
                 "on overlayfs itself)"};
  return {};
}

Status RuncExecutor::writeSpec(Container& c, const objects::Task& task,
                               std::vector<ResolvedMount> mounts) {
  BundleInput in;
  in.task = &task;
  in.image = &c.image->config;
  in.rootfs = c.record.bundle + "/rootfs";
  const auto* spec = specOf(task);
  in.hostname = str(spec->hostname());
  if (in.hostname.empty()) in.hostname = c.record.id.substr(0, 12);
  in.netnsPath = c.netns;
  in.cgroupsPath = options_.cgroupParent + "/" + c.record.id;
  in.mounts = std::move(mounts);
  auto runtimeSpec = makeRuntimeSpec(in);
  if (!runtimeSpec) return runtimeSpec.error();
  auto health = healthSettings(spec->healthcheck(), c.image->config.healthcheck);
  if (!health) return health.error();
  return writeFile(c.record.bundle + "/config.json", runtimeSpec->dump(2));
}

// Whatever the prepare made is undone before REJECTED goes (docs/containers.md).
void RuncExecutor::reject(const std::string& id, const std::string& why) {
  Container* c = find(id);
  if (!c) return;
  spdlog::warn("task {} ({}): rejected: {}", id, c->record.name, why);
  c->step = Step::Ended;
  c->generation = nextGeneration_++;
  c->record.phase = Phase::Ended;
  c->record.error = why;
  std::weak_ptr<bool> alive = alive_;
  TaskRecord record = c->record;
  teardown(record, false, [this, alive, id, why] {
    if (!alive.lock()) return;
    if (Container* c = find(id)) c->tornDown = true;
    later({id, TaskState::Rejected, "preparing", why});
  });
}

// ---- start, exit, stop

void RuncExecutor::start(const std::string& id) {
  Container* c = find(id);
  if (!c || c->step != Step::Ready) {
    std::string why = c ? "it is not prepared" : "this node does not hold it";
    return later({id, TaskState::Failed, "starting", "cannot start task " + id + ": " + why});
  }
  c->step = Step::Starting;
  c->record.phase = Phase::Started;  // before the shim: a restart then looks for it
  c->record.started = now();
  if (auto st = save(*c); !st) {
    c->step = Step::Ended;
    return later({id, TaskState::Failed, "starting", "cannot record the task: " +
                                                         st.error().message});
  }
  later({id, TaskState::Starting, "starting"});
  uint64_t gen = c->generation;
  std::weak_ptr<bool> alive = alive_;
  runtime_.start(id, c->record.bundle, logDirOf(id) + "/container.log",
                 [this, alive, id, gen](Result<int> pid) {
                   if (alive.lock()) onStarted(id, gen, std::move(pid));
                 });
}

void RuncExecutor::onStarted(const std::string& id, uint64_t gen, Result<int> pid) {
  Container* c = find(id);
  if (!c || c->generation != gen || c->step != Step::Starting) return;
  if (!pid) {
    // The shim told runc's error; its exit (exit.json) may still come: Ended ignores it.
    ContainerExit exit;
    exit.exitCode = 128;
    exit.error = "starting container failed: " + pid.error().message;
    return onExit(id, exit);
  }
  c->record.pid = *pid;
  (void)save(*c);
  c->step = Step::Running;
  spdlog::info("task {} ({}): started, pid {}", id, c->record.name, *pid);
  if (c->byHand) return kill(id, SIGKILL);
  if (c->stopping) {  // a stop came while runc started it: now it can be signalled
    c->stopping = false;
    return stop(id);
  }
  setupHealth(*c);
  if (c->health) return scheduleProbe(id, *c);
  later({id, TaskState::Running, "started"});
}

void RuncExecutor::onExit(const std::string& id, const ContainerExit& exit) {
  Container* c = find(id);
  if (!c || c->step == Step::Ended || c->step == Step::Preparing || c->step == Step::Ready)
    return;
  spdlog::info("task {} ({}): exited with {}{}", id, c->record.name, exit.exitCode,
               exit.error.empty() ? "" : " (" + exit.error + ")");
  c->record.exitCode = exit.exitCode;
  c->record.ended = exit.at ? exit.at : now();
  c->record.error = exit.error;
  TaskEvent e = exitEvent(id, exit);
  if (c->stopping) {
    e = TaskEvent{id, TaskState::Shutdown, "shutdown"};
  } else if (c->byHand) {
    e = TaskEvent{id, TaskState::Failed, "started", "container removed by hand", exit.exitCode};
    c->record.error = e.err;
  } else if (c->unhealthy) {
    e = TaskEvent{id, TaskState::Failed, "started",
                  unhealthyMessage(c->health ? c->health->lastOutput() : ""), exit.exitCode,
                  Health::Unhealthy};
    c->record.error = e.err;
  }
  ended(*c, id, std::move(e));
}

void RuncExecutor::ended(Container& c, const std::string& id, TaskEvent event) {
  c.step = Step::Ended;
  c.generation = nextGeneration_++;
  if (c.healthTimer) loop_.cancel(c.healthTimer);
  if (c.killTimer) loop_.cancel(c.killTimer);
  c.healthTimer = c.killTimer = 0;
  c.record.phase = Phase::Ended;
  (void)save(c);
  later(std::move(event));
  if (c.removing) return forget(id);
  // An ended task stays in the store (history) for a while; what it held goes now (runc's
  // state, cgroup, mounts, netns, bundle), its record and log stay until it is removed.
  c.tornDown = true;
  teardown(c.record, true, [] {});
}

void RuncExecutor::kill(const std::string& id, int signal) {
  runtime_.kill(id, signal, [id, signal](Status st) {
    if (!st) spdlog::warn("task {}: signal {}: {}", id, signal, st.error().message);
  });
}

void RuncExecutor::stop(const std::string& id) {
  Container* c = find(id);
  if (!c) return later({id, TaskState::Shutdown, "shutdown"});
  switch (c->step) {
    case Step::Ended: return;
    case Step::Preparing:
      // Cancels it: the stale callbacks find another generation.
      c->generation = nextGeneration_++;
      c->step = Step::Ended;
      c->record.phase = Phase::Ended;
      teardown(c->record, false, [] {});
      c->tornDown = true;
      return later({id, TaskState::Shutdown, "shutdown"});
    case Step::Ready:
      c->step = Step::Ended;
      c->record.phase = Phase::Ended;
      (void)save(*c);
      c->tornDown = true;
      teardown(c->record, false, [] {});
      return later({id, TaskState::Shutdown, "shutdown"});
    case Step::Starting:
      c->stopping = true;  // signalled once runc start returned
      return;
    case Step::Running: break;
  }
  if (c->stopping) return;
  c->stopping = true;
  kill(id, c->stopSignal);
  std::weak_ptr<bool> alive = alive_;
  c->killTimer = loop_.after(c->grace, [this, alive, id] {
    if (!alive.lock()) return;
    if (Container* c = find(id)) c->killTimer = 0;
    spdlog::info("task {}: still running after its grace period; SIGKILL", id);
    kill(id, SIGKILL);
  });
}

void RuncExecutor::remove(const std::string& id) {
  Container* c = find(id);
  if (!c) return;
  c->removing = true;
  if (c->step == Step::Starting || c->step == Step::Running) return stop(id);
  if (c->step == Step::Preparing) stop(id);
  forget(id);
}

// Everything of the task goes: container, mounts, sandbox, bundle, logs, record.
void RuncExecutor::forget(const std::string& id) {
  auto it = containers_.find(id);
  if (it == containers_.end()) return;
  Container& c = it->second;
  if (c.healthTimer) loop_.cancel(c.healthTimer);
  if (c.killTimer) loop_.cancel(c.killTimer);
  TaskRecord record = c.record;
  bool started = c.record.started != 0;
  bool tornDown = c.tornDown;
  containers_.erase(it);
  std::weak_ptr<bool> alive = alive_;
  auto last = [this, alive, id] {
    if (!alive.lock()) return;
    std::error_code ec;
    fs::remove_all(logDirOf(id), ec);
    if (auto st = store_->remove(id); !st)
      spdlog::error("task {}: cannot remove its record: {}", id, st.error().message);
    collectImages();
  };
  if (tornDown) return last();
  teardown(record, started, last);
}

void RuncExecutor::collectImages() { images_.collect(imagesInUse()); }

// ---- tearing down

void RuncExecutor::teardown(const TaskRecord& record, bool started, std::function<void()> done) {
  std::weak_ptr<bool> alive = alive_;
  auto rest = [this, alive, record, done = std::move(done)] {
    if (!alive.lock()) return;
    unmountAndDelete(record);
    if (!record.sandbox) return done();
    sandboxes_.remove(record.id, [alive, id = record.id, done](Status st) {
      if (!st) spdlog::warn("task {}: removing its network sandbox: {}", id, st.error().message);
      if (alive.lock()) done();
    });
  };
  if (!started && record.phase < Phase::Started) return rest();
  runtime_.remove(record.id, [id = record.id, rest](Status st) {
    if (!st) spdlog::warn("task {}: removing its container: {}", id, st.error().message);
    rest();
  });
}

void RuncExecutor::unmountAndDelete(const TaskRecord& record) {
  // Only a bundle under our containers/ dir is ever deleted: a damaged record cannot point
  // this at anything else.
  if (record.bundle != bundleOf(record.id) || record.id.empty() ||
      record.id.find('/') != std::string::npos) {
    spdlog::error("task {}: its record names bundle {}, not {}; left alone", record.id,
                  record.bundle, bundleOf(record.id));
    return;
  }
  unmount(record.bundle + "/rootfs");
  unmount(record.bundle + "/secrets");
  std::error_code ec;
  fs::remove_all(record.bundle, ec);
  if (ec) spdlog::warn("task {}: cannot delete {}: {}", record.id, record.bundle, ec.message());
}

void RuncExecutor::reconcile(const std::set<std::string>& assigned) {
  // The worker has prepared or adopted every task of the set before this: the leftovers
  // not claimed are tasks the managers no longer give this node.
  removeStrays();
  std::map<std::string, TaskRecord> gone;
  gone.swap(leftovers_);
  for (auto& [id, record] : gone) {
    if (assigned.count(id))
      spdlog::info("task {} ({}): ended or kept down; removing its container", id, record.name);
    else
      spdlog::info("task {} ({}): no longer assigned; removing its container", id, record.name);
    std::weak_ptr<bool> alive = alive_;
    teardown(record, record.phase >= Phase::Started, [this, alive, id = id] {
      if (!alive.lock()) return;
      std::error_code ec;
      fs::remove_all(logDirOf(id), ec);
      (void)store_->remove(id);
    });
  }
  reconciled_ = true;
}

// Containers under the runc root that no task or record knows: a crash between `runc
// create` and the record, or a state dir wiped while they ran.
void RuncExecutor::removeStrays() {
  for (const auto& id : runtime_.list()) {
    if (containers_.count(id) || leftovers_.count(id)) continue;
    spdlog::info("runc executor: container {} belongs to no task; removing it", id);
    runtime_.remove(id, [id](Status st) {
      if (!st) spdlog::warn("container {}: {}", id, st.error().message);
    });
  }
}

// ---- adopting after a restart

void RuncExecutor::adopt(const objects::Task& task) {
  std::string id = str(task.id());
  if (Container* c = find(id)) {
    if (c->step == Step::Running) later({id, TaskState::Running, "started"});
    return;
  }
  auto it = leftovers_.find(id);
  if (it == leftovers_.end())
    return later({id, TaskState::Failed, "started",
                  "the task's container is not on this node (agentd has no record of it)"});
  TaskRecord record = std::move(it->second);
  leftovers_.erase(it);
  adoptRecord(id, task, record);
}

void RuncExecutor::adoptRecord(const std::string& id, const objects::Task& task,
                               const TaskRecord& record) {
  Container& c = containers_[id];
  c.task = copyTask(task);
  c.record = record;
  c.generation = nextGeneration_++;
  if (auto image = images_.find(record.imageId.empty() ? record.image : record.imageId))
    c.image = std::move(image).value();
  if (c.image) {
    if (auto sig = stopSignal(specOf(task), c.image->config)) c.stopSignal = *sig;
  }
  if (const auto* spec = specOf(task); spec && spec->stop_grace_period() > 0)
    c.grace = std::chrono::nanoseconds(spec->stop_grace_period());
  if (record.phase != Phase::Started) {
    // Ended (its teardown may not have finished before the restart) or never started.
    c.step = Step::Ended;
    c.tornDown = true;
    teardown(record, record.started != 0, [] {});
    if (record.phase == Phase::Ended)
      return later(exitEvent(id, ContainerExit{record.exitCode, 0, record.ended, record.error}));
    return later({id, TaskState::Failed, "starting",
                  "agentd restarted before the container was started"});
  }
  c.step = Step::Running;
  auto adopted = runtime_.adopt(id, record.bundle);
  if (!adopted) {
    ContainerExit gone{128, 0, now(), "the container is gone (" + adopted.error().message + ")"};
    c.step = Step::Starting;  // so that onExit takes it
    return onExit(id, gone);
  }
  if (!adopted->running) return onExit(id, adopted->exit);
  c.record.pid = adopted->pid;
  spdlog::info("task {} ({}): adopted, pid {}", id, record.name, adopted->pid);
  setupHealth(c);
  if (c.health) scheduleProbe(id, c);
  later({id, TaskState::Running, "started"});
}

// ---- health checks

void RuncExecutor::setupHealth(Container& c) {
  const auto* spec = specOf(*taskOf(c.task));
  std::optional<ImageHealthcheck> fromImage;
  if (c.image) fromImage = c.image->config.healthcheck;
  auto settings = healthSettings(spec ? spec->healthcheck() : nullptr, fromImage);
  if (!settings) {  // checked at prepare; an adopted task's image may have changed
    spdlog::warn("task {}: {}; running without a health check", c.record.id,
                 settings.error().message);
    return;
  }
  if (*settings) c.health.emplace(std::move(**settings), steadyNs());
}

void RuncExecutor::scheduleProbe(const std::string& id, Container& c) {
  int64_t wait = std::max<int64_t>(0, c.health->nextProbeAt() - steadyNs());
  std::weak_ptr<bool> alive = alive_;
  c.healthTimer = loop_.after(std::chrono::nanoseconds(wait), [this, alive, id] {
    if (!alive.lock()) return;
    if (Container* c = find(id)) c->healthTimer = 0;
    probe(id);
  });
}

void RuncExecutor::probe(const std::string& id) {
  Container* c = find(id);
  if (!c || c->step != Step::Running || !c->health || c->stopping) return;
  auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::nanoseconds(c->health->settings().timeout));
  uint64_t gen = c->generation;
  int64_t at = steadyNs();
  std::weak_ptr<bool> alive = alive_;
  runtime_.exec(id, c->health->settings().argv, timeout,
                [this, alive, id, gen, at](Result<int> code, std::string output) {
                  if (!alive.lock()) return;
                  if (!code) output = code.error().message;
                  onProbe(id, gen, at, code && *code == 0, std::move(output));
                });
}

void RuncExecutor::onProbe(const std::string& id, uint64_t gen, int64_t at, bool ok,
                           std::string output) {
  Container* c = find(id);
  if (!c || c->generation != gen || c->step != Step::Running || !c->health) return;
  Health before = c->health->health();
  Health after = c->health->probed(at, ok, std::move(output));
  if (after == Health::Unhealthy) {
    spdlog::info("task {} ({}): unhealthy ({}); killing it", id, c->record.name,
                 c->health->lastOutput());
    c->unhealthy = true;
    return kill(id, SIGKILL);
  }
  if (after != before) later({id, TaskState::Running, "started", "", 0, after});
  scheduleProbe(id, *c);
}

// ---- the node-local view (container_api.h)

namespace {

std::string since(int64_t thenNs, int64_t nowNs) {
  int64_t s = std::max<int64_t>(0, (nowNs - thenNs) / 1'000'000'000);
  if (s < 60) return std::to_string(s) + " seconds";
  if (s < 3600) return std::to_string(s / 60) + " minutes";
  if (s < 172800) return std::to_string(s / 3600) + " hours";
  return std::to_string(s / 86400) + " days";
}

}  // namespace

nlohmann::json RuncExecutor::containers(bool all) const {
  auto out = nlohmann::json::array();
  int64_t t = now();
  for (const auto& [id, c] : containers_) {
    bool running = c.step == Step::Running || c.step == Step::Starting;
    bool neverRan = c.tornDown && c.record.started == 0;  // rejected or stopped early
    if (c.hidden || neverRan || (!all && !running)) continue;
    std::string state = running ? "running" : c.step == Step::Ended ? "exited" : "created";
    std::string status =
        running ? "Up " + since(c.record.started, t)
        : c.step == Step::Ended
            ? "Exited (" + std::to_string(c.record.exitCode) + ") " + since(c.record.ended, t) +
                  " ago"
            : "Created";
    if (running && c.health) status += " (" + std::string(healthName(c.health->health())) + ")";
    out.push_back({{"id", id}, {"name", c.record.name}, {"task_id", id},
                   {"service_id", c.record.serviceId}, {"image", c.record.image},
                   {"state", state}, {"status", status}, {"exit_code", c.record.exitCode},
                   {"pid", running ? c.record.pid : 0}, {"created", c.record.created},
                   {"started", c.record.started}});
  }
  return out;
}

Result<std::string> RuncExecutor::resolve(const std::string& ref) const {
  if (ref.empty())
    return wireError(wire::ErrorCode::InvalidArgument, "give a container name or id");
  std::vector<std::string> matches;
  for (const auto& [id, c] : containers_) {
    if (c.hidden || (c.tornDown && c.record.started == 0)) continue;
    if (id == ref || c.record.name == ref) return id;
    if (id.rfind(ref, 0) == 0 || c.record.name.rfind(ref, 0) == 0) matches.push_back(id);
  }
  if (matches.size() == 1) return matches.front();
  if (matches.empty())
    return wireError(wire::ErrorCode::NotFound, "No such container: " + ref);
  return wireError(wire::ErrorCode::InvalidArgument,
                   "'" + ref + "' names " + std::to_string(matches.size()) +
                       " containers on this node; give more of the name or id");
}

Status RuncExecutor::removeByHand(const std::string& ref, bool force) {
  auto id = resolve(ref);
  if (!id) return id.error();
  Container& c = containers_.at(*id);
  switch (c.step) {
    case Step::Preparing:
      return wireError(wire::ErrorCode::Conflict, "container " + c.record.name +
                                                      " is being prepared; try again once it "
                                                      "runs or was rejected");
    case Step::Ready:
      c.step = Step::Ended;
      c.record.error = "container removed by hand";
      later({*id, TaskState::Failed, "prepared", c.record.error});
      break;
    case Step::Starting:
    case Step::Running:
      if (!force)
        return wireError(wire::ErrorCode::Conflict,
                         "You cannot remove a running container " + c.record.name +
                             ". Stop the container before attempting removal or force remove");
      spdlog::info("task {} ({}): container removed by hand", *id, c.record.name);
      c.byHand = true;
      if (c.step == Step::Running) kill(*id, SIGKILL);
      break;
    case Step::Ended:  // its container is gone already (ended() tore it down)
      break;
  }
  c.hidden = true;
  return {};
}

std::map<std::string, std::vector<std::string>> RuncExecutor::volumeUsers() const {
  std::map<std::string, std::vector<std::string>> users;
  for (const auto& [id, c] : containers_)
    if (!c.tornDown)
      for (const auto& v : c.record.volumes) users[v].push_back(c.record.name);
  for (const auto& [id, r] : leftovers_)
    for (const auto& v : r.volumes) users[v].push_back(r.name);
  return users;
}

std::set<std::string> RuncExecutor::imagesInUse() const {
  std::set<std::string> ids;
  for (const auto& [id, c] : containers_)
    if (!c.record.imageId.empty() && !c.tornDown) ids.insert(c.record.imageId);
  for (const auto& [id, r] : leftovers_)
    if (!r.imageId.empty()) ids.insert(r.imageId);
  return ids;
}

nlohmann::json RuncExecutor::status() const {
  size_t running = 0, preparing = 0;
  for (const auto& [id, c] : containers_) {
    running += c.step == Step::Running;
    preparing += c.step == Step::Preparing;
  }
  return {{"containers", containers_.size()}, {"running", running},
          {"prepares_in_flight", preparing},  {"leftovers", leftovers_.size()},
          {"reconciled", reconciled_},        {"images", images_.status()},
          {"runtime", runtime_.status()}};
}

}  // namespace shoal::agentd
