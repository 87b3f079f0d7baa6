#include "services/overlayd/sandboxes.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <net/if.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <set>
#include <thread>

#include "common/protocols.h"
#include "common/units.h"

namespace shoal::overlayd {
namespace {

using wire::ErrorCode;

constexpr size_t kMaxTaskIdLength = 64;
// The records are small (a path and a time); this is room for millions of them.
constexpr size_t kMaxStoreBytes = size_t{256} << 20;
// umount2 may have to peel several mounts stacked on one path (a crash between two creates).
constexpr int kMaxStackedMounts = 8;

std::string errnoText(const char* call, int err = errno) {
  return std::string(call) + ": " + std::strerror(err);
}

Error failed(ErrorCode code, std::string message) {
  return Error{std::move(message), static_cast<int>(code)};
}

int64_t nowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// In the calling thread's (new) network namespace: `ip link set lo up` through libnl-route.
Status loopbackUp() {
  std::unique_ptr<nl_sock, decltype(&nl_socket_free)> sk(nl_socket_alloc(), nl_socket_free);
  if (!sk) return Error{"nl_socket_alloc: out of memory"};
  if (int err = nl_connect(sk.get(), NETLINK_ROUTE); err < 0)
    return Error{std::string("netlink connect: ") + nl_geterror(err)};
  rtnl_link* raw = nullptr;
  if (int err = rtnl_link_get_kernel(sk.get(), 0, "lo", &raw); err < 0)
    return Error{std::string("reading link lo: ") + nl_geterror(err)};
  std::unique_ptr<rtnl_link, decltype(&rtnl_link_put)> lo(raw, rtnl_link_put);
  std::unique_ptr<rtnl_link, decltype(&rtnl_link_put)> change(rtnl_link_alloc(), rtnl_link_put);
  if (!change) return Error{"rtnl_link_alloc: out of memory"};
  rtnl_link_set_flags(change.get(), IFF_UP);
  if (int err = rtnl_link_change(sk.get(), lo.get(), change.get(), 0); err < 0)
    return Error{std::string("setting lo up: ") + nl_geterror(err)};
  return {};
}

// Runs on a thread of its own: the new namespace is that thread's only (unshare of
// CLONE_NEWNET is per thread), and the thread ends with it bind-mounted at `path`, so the
// daemon's own threads never leave the node's namespace.
Status enterNewNetns(const std::string& path) {
  if (::unshare(CLONE_NEWNET) != 0)
    return Error{errnoText("unshare(CLONE_NEWNET)") + " (overlayd needs CAP_SYS_ADMIN: run it as root)"};
  if (::mount("/proc/thread-self/ns/net", path.c_str(), "none", MS_BIND, nullptr) != 0)
    return Error{errnoText("bind-mounting the namespace")};
  return loopbackUp();
}

bool genlHasIpvs() {
  std::unique_ptr<nl_sock, decltype(&nl_socket_free)> sk(nl_socket_alloc(), nl_socket_free);
  if (!sk || genl_connect(sk.get()) < 0) return false;
  return genl_ctrl_resolve(sk.get(), "IPVS") >= 0;
}

std::string recordOf(const std::string& path) {
  return nlohmann::json{{"path", path}, {"created", nowNs()}}.dump();
}

}  // namespace

// --- the kernel --------------------------------------------------------------------------------

Status checkTaskId(std::string_view id) {
  if (id.empty()) return failed(ErrorCode::InvalidArgument, "no task id given");
  if (id.size() > kMaxTaskIdLength)
    return failed(ErrorCode::InvalidArgument,
                  "task id of " + std::to_string(id.size()) + " characters: at most " +
                      std::to_string(kMaxTaskIdLength));
  bool ok = id.front() != '.';
  for (char c : id) ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-');
  if (!ok)
    return failed(ErrorCode::InvalidArgument,
                  "task id " + quoteInput(id) + " is not a task id: letters, digits, '_', '.', '-', "
                  "not starting with '.'");
  return {};
}

bool isNetns(const std::string& path) {
  struct statfs fs {};
  return ::statfs(path.c_str(), &fs) == 0 && static_cast<unsigned long>(fs.f_type) == NSFS_MAGIC;
}

Status makeNetns(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0444);
  if (fd < 0) return Error{errnoText(("creating " + path).c_str())};
  ::close(fd);
  Status result;
  std::thread worker([&] { result = enterNewNetns(path); });
  worker.join();
  if (!result) {
    (void)removeNetns(path);  // nothing half made is left
    return Error{"making the network namespace at " + path + ": " + result.error().message};
  }
  return {};
}

Status removeNetns(const std::string& path) {
  int err = 0;
  for (int i = 0; i < kMaxStackedMounts && err == 0; ++i)
    err = ::umount2(path.c_str(), MNT_DETACH) == 0 ? 0 : errno;
  if (err != 0 && err != EINVAL && err != ENOENT)  // EINVAL: not (or no longer) a mount point
    return Error{"unmounting " + path + ": " + errnoText("umount2", err)};
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    return Error{"deleting " + path + ": " + errnoText("unlink")};
  return {};
}

std::string loadBalancerKind() {
  if (::access("/proc/net/ip_vs", F_OK) == 0 || genlHasIpvs()) return "ipvs";
  return "nftables";
}

// --- the records -------------------------------------------------------------------------------

Result<std::unique_ptr<Sandboxes>> Sandboxes::open(const std::string& stateDir,
                                                   const std::string& runDir) {
  std::string dir = runDir + "/netns";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Error{"creating " + dir + ": " + ec.message() + "; check the run dir's permissions"};
  lmdb::Options options;
  options.maxMapSize = kMaxStoreBytes;
  auto env = lmdb::Environment::open(stateDir + "/sandboxes.mdb", options);
  if (!env) return env.error();
  auto table = (*env)->table("sandboxes");
  if (!table) return table.error();
  std::unique_ptr<Sandboxes> s(new Sandboxes(std::move(*env), *table, dir));
  if (auto st = s->reconcile(); !st) return st.error();
  return s;
}

Status Sandboxes::reconcile() {
  std::set<std::string> recorded, gone;
  auto st = env_->view([&](lmdb::ReadTxn& txn) {
    return txn.scanPrefix(table_, "", [&](std::string_view key, std::string_view) {
      std::string id(key);
      (isNetns(pathOf(id)) ? recorded : gone).insert(id);
      return true;
    });
  });
  if (!st) return st;
  for (const auto& id : gone) {
    spdlog::info("the network namespace of task {} is gone ({}); its record is dropped", id, pathOf(id));
    (void)removeNetns(pathOf(id));  // a plain file left by a crash
    if (auto f = forget(id); !f) return f;
  }
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
    std::string id = entry.path().filename().string();
    if (recorded.count(id)) continue;
    spdlog::info("removing {}: no record of it (a create cut short)", entry.path().string());
    if (auto r = removeNetns(entry.path().string()); !r) spdlog::warn("{}", r.error().message);
  }
  count_ = recorded.size();
  return {};
}

Status Sandboxes::forget(const std::string& taskId) {
  bool existed = false;
  auto st = env_->update([&](lmdb::WriteTxn& txn) -> Status {
    auto del = txn.del(table_, taskId);
    if (!del) return del.error();
    existed = *del;
    return {};
  });
  if (st && existed && count_ > 0) --count_;
  return st;
}

Result<std::string> Sandboxes::create(const std::string& taskId) {
  if (auto st = checkTaskId(taskId); !st) return st.error();
  std::string path = pathOf(taskId);
  bool known = false;
  auto st = env_->view([&](lmdb::ReadTxn& txn) -> Status {
    auto got = txn.get(table_, taskId);
    if (!got) return got.error();
    known = got->has_value();
    return {};
  });
  if (!st) return st.error();
  if (known && isNetns(path)) return path;  // asked again: the same one
  if (!isNetns(path))
    if (auto made = makeNetns(path); !made) return failed(ErrorCode::Internal, made.error().message);
  auto wrote = env_->update([&](lmdb::WriteTxn& txn) { return txn.put(table_, taskId, recordOf(path)); });
  if (!wrote) {
    (void)removeNetns(path);
    return failed(ErrorCode::Internal, "recording the sandbox of task " + taskId + ": " + wrote.error().message);
  }
  if (!known) ++count_;
  spdlog::info("sandbox of task {} made at {}", taskId, path);
  return path;
}

Status Sandboxes::remove(const std::string& taskId) {
  if (auto st = checkTaskId(taskId); !st) return st;
  if (auto st = removeNetns(pathOf(taskId)); !st) return failed(ErrorCode::Internal, st.error().message);
  if (auto st = forget(taskId); !st)
    return failed(ErrorCode::Internal, "forgetting the sandbox of task " + taskId + ": " + st.error().message);
  spdlog::info("sandbox of task {} removed", taskId);
  return {};
}

Result<nlohmann::json> Sandboxes::list() {
  nlohmann::json out = nlohmann::json::array();
  auto st = env_->view([&](lmdb::ReadTxn& txn) {
    return txn.scanPrefix(table_, "", [&](std::string_view key, std::string_view value) {
      auto rec = nlohmann::json::parse(value, nullptr, false);
      out.push_back({{"task_id", std::string(key)},
                     {"path", pathOf(std::string(key))},
                     {"created", rec.is_object() ? rec.value("created", int64_t{0}) : 0}});
      return true;
    });
  });
  if (!st) return st.error();
  return nlohmann::json{{"sandboxes", out}};
}

// --- the protocol ------------------------------------------------------------------------------

namespace {

std::string str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }

void answer(bus::Call& call, const Error& e) {
  auto code = static_cast<ErrorCode>(e.code);
  call.fail(code == ErrorCode::None ? ErrorCode::Internal : code, e.message);
}

void serveOne(bus::Call call, Sandboxes& sandboxes) {
  auto* env = call.as<overlayapi::Envelope>();
  flatbuffers::FlatBufferBuilder fbb;
  using B = overlayapi::Body;
  if (!env->body())
    return call.fail(ErrorCode::BadMessage, std::string("overlay message ") +
                                                overlayapi::EnumNameBody(env->body_type()) + " has no body");
  switch (env->body_type()) {
    case B::CreateSandboxRequest: {
      auto path = sandboxes.create(str(env->body_as_CreateSandboxRequest()->task_id()));
      if (!path) return answer(call, path.error());
      auto body = overlayapi::CreateSandboxReplyDirect(fbb, path->c_str());
      return call.reply(bus::message<overlayapi::Envelope>(fbb, B::SandboxReply, body.Union()));
    }
    case B::RemoveSandboxRequest: {
      if (auto st = sandboxes.remove(str(env->body_as_RemoveSandboxRequest()->task_id())); !st)
        return answer(call, st.error());
      auto body = overlayapi::CreateRemoveSandboxReply(fbb);
      return call.reply(bus::message<overlayapi::Envelope>(fbb, B::RemoveSandboxReply, body.Union()));
    }
    case B::ListSandboxesRequest: {
      auto list = sandboxes.list();
      if (!list) return answer(call, list.error());
      auto body = overlayapi::CreateListSandboxesReplyDirect(fbb, list->dump().c_str());
      return call.reply(bus::message<overlayapi::Envelope>(fbb, B::ListSandboxesReply, body.Union()));
    }
    default:
      return call.fail(ErrorCode::Unimplemented, std::string("overlay message ") +
                                                     overlayapi::EnumNameBody(env->body_type()) +
                                                     " is not a request overlayd serves");
  }
}

}  // namespace

void serveSandboxes(Daemon& daemon, Sandboxes& sandboxes) {
  std::string lb = loadBalancerKind();
  spdlog::info("{} sandboxes; service load balancing: {}", sandboxes.size(), lb);
  daemon.server().serve(kOverlayProtocol, [&sandboxes](bus::Call call) { serveOne(std::move(call), sandboxes); });
  daemon.addStatus([&sandboxes, lb](nlohmann::json& j) {
    j["sandboxes"] = sandboxes.size();
    j["lb"] = lb;
  });
}

}  // namespace shoal::overlayd
