#include "services/agentd/shim/log_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

namespace shoal::shim {

std::string criRecord(const timespec& at, std::string_view stream, bool partial,
                      std::string_view text) {
  tm utc{};
  ::gmtime_r(&at.tv_sec, &utc);
  char stamp[64];
  size_t n = std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(stamp + n, sizeof stamp - n, ".%09ldZ", static_cast<long>(at.tv_nsec));
  std::string out;
  out.reserve(text.size() + 48);
  out.append(stamp).append(" ").append(stream).append(partial ? " P " : " F ");
  out.append(text).append("\n");
  return out;
}

bool LogWriter::open(std::string path, int64_t maxBytes, int maxFiles) {
  path_ = std::move(path);
  maxBytes_ = maxBytes;
  maxFiles_ = maxFiles < 1 ? 1 : maxFiles;
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd_ < 0) return false;
  struct stat st{};
  size_ = ::fstat(fd_, &st) == 0 ? st.st_size : 0;
  return true;
}

LogWriter::~LogWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void LogWriter::add(int stream, std::string_view data) {
  std::string& pending = pending_[stream];
  pending.append(data);
  size_t start = 0;
  for (;;) {
    size_t nl = pending.find('\n', start);
    size_t len = (nl == std::string::npos ? pending.size() : nl) - start;
    if (len >= kMaxLine) {  // a long line: its first 16 KiB go out as a partial record
      record(stream, true, std::string_view(pending).substr(start, kMaxLine));
      start += kMaxLine;
      continue;
    }
    if (nl == std::string::npos) break;
    record(stream, false, std::string_view(pending).substr(start, len));
    start = nl + 1;
  }
  pending.erase(0, start);
}

void LogWriter::finish(int stream) {
  if (!pending_[stream].empty()) record(stream, true, pending_[stream]);
  pending_[stream].clear();
}

void LogWriter::record(int stream, bool partial, std::string_view text) {
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  std::string line = criRecord(now, stream == 0 ? "stdout" : "stderr", partial, text);
  if (maxBytes_ > 0 && size_ > 0 && size_ + static_cast<int64_t>(line.size()) > maxBytes_)
    rotate();
  if (fd_ < 0) return;
  // One write per record, so that a reader never sees half a line from us. A full disk
  // loses the record (the container must not block on its log).
  ssize_t n = ::write(fd_, line.data(), line.size());
  if (n > 0) size_ += n;
}

// container.log.(K-2) → .(K-1), ..., container.log → .1: the oldest falls off.
void LogWriter::rotate() {
  for (int i = maxFiles_ - 1; i >= 1; --i) {
    std::string from = i == 1 ? path_ : path_ + "." + std::to_string(i - 1);
    ::rename(from.c_str(), (path_ + "." + std::to_string(i)).c_str());
  }
  if (fd_ >= 0) ::close(fd_);
  int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (maxFiles_ == 1 ? O_TRUNC : 0);
  fd_ = ::open(path_.c_str(), flags, 0640);
  size_ = 0;
}

}  // namespace shoal::shim
