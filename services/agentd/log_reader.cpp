#include "services/agentd/log_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>

namespace shoal::agentd {
namespace {

// Rotated files beyond this are not looked for (the shim keeps 3).
constexpr int kMaxRotated = 9;
constexpr size_t kChunk = 64u << 10;

bool digits(std::string_view s, size_t pos, size_t n, int& out) {
  if (pos + n > s.size()) return false;
  auto r = std::from_chars(s.data() + pos, s.data() + pos + n, out);
  return r.ec == std::errc() && r.ptr == s.data() + pos + n;
}

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd(Fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

std::optional<uint64_t> inodeOf(int fd) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return std::nullopt;
  return static_cast<uint64_t>(st.st_ino);
}

std::string rotatedPath(const std::string& dir, int n) {
  return dir + "/" + std::string(TaskLog::kLiveFile) + "." + std::to_string(n);
}

}  // namespace

Result<int64_t> parseRfc3339Nanos(std::string_view s) {
  int year, month, day, hour, minute, second;
  if (s.size() < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
      s[13] != ':' || s[16] != ':' || !digits(s, 0, 4, year) || !digits(s, 5, 2, month) ||
      !digits(s, 8, 2, day) || !digits(s, 11, 2, hour) || !digits(s, 14, 2, minute) ||
      !digits(s, 17, 2, second))
    return Error{"'" + std::string(s.substr(0, 40)) + "' is not an RFC 3339 time (2026-11-30T13:37:11Z)"};
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60)
    return Error{"'" + std::string(s.substr(0, 40)) + "' is not a valid date and time"};
  size_t pos = 19;
  int64_t frac = 0;
  if (pos < s.size() && s[pos] == '.') {
    size_t start = ++pos;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9' && pos - start < 9)
      frac = frac * 10 + (s[pos++] - '0');
    if (pos == start) return Error{"'" + std::string(s.substr(0, 40)) + "': no digits after the '.'"};
    for (size_t n = pos - start; n < 9; ++n) frac *= 10;
  }
  int64_t offset = 0;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos + 6 == s.size() && (s[pos] == '+' || s[pos] == '-') && s[pos + 3] == ':') {
    int oh, om;
    if (!digits(s, pos + 1, 2, oh) || !digits(s, pos + 4, 2, om))
      return Error{"'" + std::string(s) + "': a bad UTC offset"};
    offset = (s[pos] == '-' ? -1 : 1) * (oh * 3600 + om * 60);
    pos += 6;
  } else {
    return Error{"'" + std::string(s.substr(0, 40)) + "' has no time zone (Z or ±hh:mm)"};
  }
  if (pos != s.size()) return Error{"'" + std::string(s.substr(0, 40)) + "': text after the time"};
  struct tm tm {};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  int64_t secs = static_cast<int64_t>(timegm(&tm)) - offset;
  return secs * 1'000'000'000 + frac;
}

Result<LogLine> parseCriLine(std::string_view line) {
  size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return Error{"no space after the time"};
  auto ts = parseRfc3339Nanos(line.substr(0, sp1));
  if (!ts) return ts.error();
  std::string_view rest = line.substr(sp1 + 1);
  LogLine out;
  out.timestamp = *ts;
  if (rest.starts_with("stdout ")) {
    out.stderrStream = false;
  } else if (rest.starts_with("stderr ")) {
    out.stderrStream = true;
  } else {
    return Error{"the stream is neither stdout nor stderr"};
  }
  rest.remove_prefix(7);
  // The tag: F (full) or P (partial); the text after one space (an empty line has none).
  if (rest.empty() || (rest[0] != 'F' && rest[0] != 'P')) return Error{"the tag is neither F nor P"};
  out.partial = rest[0] == 'P';
  if (rest.size() > 1 && rest[1] != ' ') return Error{"no space after the tag"};
  if (rest.size() > 2) out.text = std::string(rest.substr(2));
  return out;
}

std::string formatCriLine(const LogLine& line) {
  time_t secs = static_cast<time_t>(line.timestamp / 1'000'000'000);
  int64_t frac = line.timestamp % 1'000'000'000;
  struct tm tm {};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%09lldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long long>(frac));
  return std::string(buf) + (line.stderrStream ? " stderr " : " stdout ") +
         (line.partial ? "P " : "F ") + line.text;
}

// ---- LineJoiner

std::optional<LogLine> LineJoiner::push(LogLine piece) {
  auto& pending = pending_[piece.stderrStream ? 1 : 0];
  if (pending) {
    pending->text += piece.text;
    pending->partial = piece.partial;
  } else {
    pending = std::move(piece);
  }
  if (pending->partial) return std::nullopt;
  // The time of a joined line is its first piece's: when it began to be written.
  std::optional<LogLine> done = std::move(pending);
  pending.reset();
  return done;
}

std::vector<LogLine> LineJoiner::flush() {
  std::vector<LogLine> out;
  for (auto& p : pending_)
    if (p) {
      p->partial = false;
      out.push_back(std::move(*p));
      p.reset();
    }
  if (out.size() == 2 && out[1].timestamp < out[0].timestamp) std::swap(out[0], out[1]);
  return out;
}

// ---- selection

std::vector<LogLine> selectLines(std::vector<LogLine> lines, const ReadOptions& options) {
  if (options.since > 0)
    std::erase_if(lines, [&](const LogLine& l) { return l.timestamp < options.since; });
  if (options.tail >= 0 && lines.size() > static_cast<size_t>(options.tail))
    lines.erase(lines.begin(), lines.end() - options.tail);
  return lines;
}

std::vector<std::string> logFiles(const std::string& dir) {
  std::vector<std::string> out;
  struct stat st;
  for (int n = kMaxRotated; n >= 1; --n)
    if (::stat(rotatedPath(dir, n).c_str(), &st) == 0) out.push_back(rotatedPath(dir, n));
  std::string live = dir + "/" + std::string(TaskLog::kLiveFile);
  if (::stat(live.c_str(), &st) == 0) out.push_back(live);
  return out;
}

// ---- TaskLog

void TaskLog::takeChunk(std::string_view chunk, std::vector<LogLine>& out) {
  size_t start = 0;
  while (start < chunk.size()) {
    size_t nl = chunk.find('\n', start);
    if (nl == std::string_view::npos) nl = chunk.size();
    std::string_view line = chunk.substr(start, nl - start);
    start = nl + 1;
    if (line.empty()) continue;
    auto parsed = parseCriLine(line);
    if (!parsed) {
      ++bad_;
      continue;
    }
    if (auto done = joiner_.push(std::move(parsed).value())) out.push_back(std::move(*done));
  }
}

uint64_t TaskLog::readFrom(int fd, uint64_t offset, std::vector<LogLine>& out) {
  std::string buf;
  char chunk[kChunk];
  for (;;) {
    ssize_t n = ::pread(fd, chunk, sizeof chunk, static_cast<off_t>(offset + buf.size()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buf.append(chunk, static_cast<size_t>(n));
    size_t last = buf.rfind('\n');
    if (last == std::string::npos) {
      // No newline in a whole line's worth: the file is broken here; skip what was read.
      if (buf.size() > kMaxLine) {
        ++bad_;
        offset += buf.size();
        buf.clear();
      }
      continue;
    }
    takeChunk(std::string_view(buf).substr(0, last + 1), out);
    offset += last + 1;
    buf.erase(0, last + 1);
  }
  // What is left has no newline yet: the writer is in the middle of it; read it next time.
  return offset;
}

Result<std::vector<LogLine>> TaskLog::readAll(const ReadOptions& options) {
  struct stat st;
  if (::stat(dir_.c_str(), &st) != 0)
    return Error{"no logs for this task on this node (" + dir_ + ": " + std::strerror(errno) + ")", ENOENT};
  // Newest first, so that a rotation between two opens shows as the same inode twice (skipped)
  // rather than as a file missed.
  std::vector<Fd> files;
  std::vector<uint64_t> seen;
  std::string live = dir_ + "/" + std::string(kLiveFile);
  for (int n = 0; n <= kMaxRotated; ++n) {
    Fd fd(::open(n == 0 ? live.c_str() : rotatedPath(dir_, n).c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.fd < 0) continue;
    auto ino = inodeOf(fd.fd);
    if (!ino || std::find(seen.begin(), seen.end(), *ino) != seen.end()) continue;
    if (n == 0) ino_ = *ino;
    seen.push_back(*ino);
    files.push_back(std::move(fd));
  }
  std::vector<LogLine> lines;
  for (auto it = files.rbegin(); it != files.rend(); ++it) {
    uint64_t end = readFrom(it->fd, 0, lines);
    if (ino_ && inodeOf(it->fd) == ino_) offset_ = end;
  }
  return selectLines(std::move(lines), options);
}

int TaskLog::openRotated(uint64_t ino) const {
  for (int n = 1; n <= kMaxRotated; ++n) {
    int fd = ::open(rotatedPath(dir_, n).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    if (inodeOf(fd) == ino) return fd;
    ::close(fd);
  }
  return -1;
}

std::vector<LogLine> TaskLog::readNew() {
  std::vector<LogLine> out;
  std::string live = dir_ + "/" + std::string(kLiveFile);
  Fd fd(::open(live.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.fd < 0) return out;
  auto ino = inodeOf(fd.fd);
  if (!ino) return out;
  if (ino_ && *ino_ != *ino) {
    // Rotated since the last read: finish the file we were reading (now .1 or later).
    Fd old(openRotated(*ino_));
    if (old.fd >= 0) readFrom(old.fd, offset_, out);
    offset_ = 0;
  }
  if (!ino_ || *ino_ != *ino) offset_ = 0;
  ino_ = *ino;
  struct stat st;
  if (::fstat(fd.fd, &st) == 0 && static_cast<uint64_t>(st.st_size) < offset_) offset_ = 0;  // truncated
  offset_ = readFrom(fd.fd, offset_, out);
  return out;
}

}  // namespace shoal::agentd
