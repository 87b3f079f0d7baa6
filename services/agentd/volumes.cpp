#include "services/agentd/volumes.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <system_error>

#include "wire_generated.h"

namespace shoal::agentd {
namespace {

namespace fs = std::filesystem;

bool nameChar(char c, bool first) {
  if (std::isalnum(static_cast<unsigned char>(c))) return true;
  return !first && (c == '_' || c == '.' || c == '-');
}

int64_t changeTimeNs(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return int64_t{st.st_ctim.tv_sec} * 1'000'000'000 + st.st_ctim.tv_nsec;
}

}  // namespace

Status checkVolumeName(std::string_view name) {
  bool ok = name.size() >= 2 && name.size() <= 255;
  for (size_t i = 0; ok && i < name.size(); ++i) ok = nameChar(name[i], i == 0);
  if (ok) return {};
  return Error{"volume name '" + std::string(name) +
                   "' is not valid: use 2 or more of [a-zA-Z0-9_.-], starting with a letter "
                   "or digit",
               static_cast<int>(wire::ErrorCode::InvalidArgument)};
}

Result<std::string> Volumes::ensure(std::string_view name) {
  if (auto st = checkVolumeName(name); !st) return st.error();
  std::string data = root_ + "/" + std::string(name) + "/_data";
  std::error_code ec;
  fs::create_directories(data, ec);
  if (ec) return Error{"cannot make volume " + std::string(name) + " at " + data + ": " +
                       ec.message() + "; check the state dir's disk and permissions"};
  return data;
}

std::vector<VolumeInfo> Volumes::list() const {
  std::vector<VolumeInfo> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root_, ec)) {
    std::string name = entry.path().filename().string();
    if (!entry.is_directory(ec) || !checkVolumeName(name)) continue;
    std::string dir = root_ + "/" + name;
    out.push_back({name, dir + "/_data", changeTimeNs(dir)});
  }
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.name < b.name; });
  return out;
}

bool Volumes::exists(std::string_view name) const {
  if (!checkVolumeName(name)) return false;
  std::error_code ec;
  return fs::is_directory(root_ + "/" + std::string(name), ec);
}

Status Volumes::remove(std::string_view name) {
  if (auto st = checkVolumeName(name); !st) return st;
  if (!exists(name))
    return Error{"no such volume: " + std::string(name),
                 static_cast<int>(wire::ErrorCode::NotFound)};
  std::error_code ec;
  fs::remove_all(root_ + "/" + std::string(name), ec);
  if (ec) return Error{"cannot remove volume " + std::string(name) + ": " + ec.message() +
                       " (is something still mounted inside it?)"};
  return {};
}

}  // namespace shoal::agentd
