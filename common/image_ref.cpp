#include "common/image_ref.h"

#include <cctype>
#include <vector>

#include "common/units.h"

namespace shoal::image {
namespace {

constexpr size_t kMaxName = 255;
constexpr size_t kMaxTag = 128;

Error invalid(std::string_view text, const std::string& why) {
  return Error{"invalid image " + quoteInput(text) + ": " + why};
}

bool isLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// One path component: [a-z0-9]+ ((\.|_|__|-+)[a-z0-9]+)*
bool validComponent(std::string_view c) {
  if (c.empty() || !isLowerAlnum(c.front()) || !isLowerAlnum(c.back())) return false;
  for (size_t i = 0; i < c.size(); ++i) {
    if (isLowerAlnum(c[i])) continue;
    size_t next = i + 1;
    if (c[i] == '-') {  // a run of '-' is one separator
      while (next < c.size() && c[next] == '-') ++next;
    } else if (c[i] == '_' && next < c.size() && c[next] == '_') {
      ++next;  // "__"
    } else if (c[i] != '.' && c[i] != '_') {
      return false;
    }
    if (next >= c.size() || !isLowerAlnum(c[next])) return false;
    i = next - 1;
  }
  return true;
}

bool validTag(std::string_view t) {
  if (t.empty() || t.size() > kMaxTag) return false;
  auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  if (!word(t.front())) return false;
  for (char c : t)
    if (!word(c) && c != '.' && c != '-') return false;
  return true;
}

bool looksLikeRegistry(std::string_view first) {
  return first.find('.') != std::string_view::npos || first.find(':') != std::string_view::npos ||
         first == "localhost";
}

}  // namespace

Result<Reference> parse(std::string_view text) {
  if (text.empty()) return invalid(text, "give a name, e.g. busybox or registry:5000/app:1.0");
  Reference ref;
  std::string_view rest = text;
  if (auto at = rest.find('@'); at != std::string_view::npos) {
    ref.digest = std::string(rest.substr(at + 1));
    if (auto st = checkDigest(ref.digest); !st) return invalid(text, st.error().message);
    rest = rest.substr(0, at);
  }
  // A tag is after the last ':' that comes after the last '/' (a ':' before it is a port).
  auto slash = rest.rfind('/');
  auto colon = rest.rfind(':');
  if (colon != std::string_view::npos && (slash == std::string_view::npos || colon > slash)) {
    ref.tag = std::string(rest.substr(colon + 1));
    if (!validTag(ref.tag))
      return invalid(text, "tag " + quoteInput(ref.tag) +
                               " is not valid: letters, digits, '_', '.' and '-', at most 128, "
                               "not starting with '.' or '-'");
    rest = rest.substr(0, colon);
  }
  if (rest.size() > kMaxName) return invalid(text, "a name is at most 255 characters");
  std::vector<std::string_view> parts;
  for (size_t start = 0;;) {
    auto end = rest.find('/', start);
    parts.push_back(rest.substr(start, end == std::string_view::npos ? end : end - start));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  if (parts.size() > 1 && looksLikeRegistry(parts.front())) {
    ref.registry = std::string(parts.front());
    parts.erase(parts.begin());
  } else {
    ref.registry = std::string(kDockerHub);
  }
  if (ref.registry == "index.docker.io" || ref.registry == kDockerHubApi)
    ref.registry = std::string(kDockerHub);
  for (auto part : parts) {
    if (validComponent(part)) continue;
    for (char c : part)
      if (std::isupper(static_cast<unsigned char>(c)))
        return invalid(text, "repository names must be lowercase");
    return invalid(text, "repository name component " + quoteInput(part) +
                             " is not valid: lowercase letters and digits, joined by '.', '_', "
                             "'__' or '-'");
  }
  if (ref.registry == kDockerHub && parts.size() == 1) ref.path = "library/";
  for (size_t i = 0; i < parts.size(); ++i) ref.path += (i ? "/" : "") + std::string(parts[i]);
  if (ref.tag.empty() && ref.digest.empty()) ref.tag = "latest";
  return ref;
}

Status checkDigest(std::string_view d) {
  auto colon = d.find(':');
  if (colon == std::string_view::npos || colon == 0)
    return Error{"a digest is algorithm:hex, e.g. sha256:<64 hex digits>"};
  auto algorithm = d.substr(0, colon), hex = d.substr(colon + 1);
  for (char c : hex) {
    auto u = static_cast<unsigned char>(c);
    if (!std::isxdigit(u) || std::isupper(u)) return Error{"a digest's hex digits are 0-9 and a-f"};
  }
  if (algorithm == "sha256" && hex.size() != 64)
    return Error{"a sha256 digest has 64 hex digits, not " + std::to_string(hex.size())};
  if (hex.size() < 32) return Error{"a digest has at least 32 hex digits"};
  return {};
}

std::string Reference::full() const {
  std::string s = registry + "/" + path;
  if (!tag.empty()) s += ":" + tag;
  if (!digest.empty()) s += "@" + digest;
  return s;
}

std::string Reference::familiar() const {
  std::string s = path;
  if (registry != kDockerHub) s = registry + "/" + path;
  else if (s.rfind("library/", 0) == 0) s = s.substr(8);
  if (!tag.empty()) s += ":" + tag;
  if (!digest.empty()) s += "@" + digest;
  return s;
}

std::string Reference::apiHost() const {
  return registry == kDockerHub ? std::string(kDockerHubApi) : registry;
}

}  // namespace shoal::image
