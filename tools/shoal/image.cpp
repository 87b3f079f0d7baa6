// shoal image load|ls|rm|pull: this node's images, answered by its agentd on agentd.sock
// (schemas/images.fbs, services/agentd/image_api.h), as docker's are by the local engine.
#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <set>

#include "common/image_ref.h"
#include "services/agentd/image_store.h"
#include "tools/shoal/credentials.h"
#include "tools/shoal/daemons.h"
#include "tools/shoal/format.h"
#include "tools/shoal/services.h"

namespace shoal::cli {
namespace {

using nlohmann::json;

constexpr Millis kCall{10'000};
// A load reads and unpacks a whole archive, a pull downloads an image: minutes on a slow disk
// or link. agentd answers as soon as it is done.
constexpr Millis kLongCall{30 * 60'000};

constexpr std::string_view kImageTable =
    "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";

const Headers& imageHeaders() {
  static const Headers h = {{"Repository", "REPOSITORY"}, {"Tag", "TAG"}, {"ID", "IMAGE ID"},
                            {"CreatedSince", "CREATED"}, {"Size", "SIZE"}};
  return h;
}

// One ImagesReply's JSON from agentd, or why not.
Result<json> callImages(const Globals& g, flatbuffers::FlatBufferBuilder& fbb, imageapi::Body type,
                        flatbuffers::Offset<void> body, Millis timeout, CallError& why) {
  auto reply = callDaemon(g, "agentd", kImageProtocol,
                          bus::message<imageapi::Envelope>(fbb, type, body), timeout, &why);
  if (!reply) return reply.error();
  const auto* env = reply->as<imageapi::Envelope>();
  const auto* r = env ? env->body_as_ImagesReply() : nullptr;
  json j = r && r->json() ? json::parse(r->json()->str(), nullptr, false) : json();
  if (!j.is_object()) {
    why = {CallError::Kind::Daemon, "agentd answered without the images' JSON"};
    return Error{why.message};
  }
  return j;
}

std::vector<json> imagesOf(const json& reply) {
  std::vector<json> out;
  if (reply.contains("images") && reply["images"].is_array())
    for (const auto& i : reply["images"])
      if (i.is_object()) out.push_back(i);
  return out;
}

std::string str(const json& j, const char* key) {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "";
}

// Docker's sizes in image listings: decimal units, 3 significant digits ("4.26MB").
std::string decimalSize(int64_t bytes) {
  static const char* units[] = {"B", "kB", "MB", "GB", "TB", "PB"};
  double v = static_cast<double>(std::max<int64_t>(0, bytes));
  size_t i = 0;
  for (; v >= 999.5 && i + 1 < std::size(units); ++i) v /= 1000;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g%s", v, units[i]);
  return buf;
}

std::string shortId(const std::string& id, bool noTrunc) {
  if (noTrunc) return id;
  auto colon = id.find(':');
  return id.substr(colon == std::string::npos ? 0 : colon + 1, 12);
}

std::string createdAt(int64_t ns) {
  std::time_t t = static_cast<std::time_t>(ns / 1'000'000'000);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S +0000 UTC", &tm);
  return buf;
}

int64_t nowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A row of `image ls`, docker's fields (and Name: the full normalised reference).
json imageRow(const json& image, const std::string& name, bool noTrunc) {
  int64_t created = image.value("created", int64_t(0)), size = image.value("size", int64_t(0));
  std::string repository = "<none>", tag = "<none>";
  if (auto ref = shoal::image::parse(name); !name.empty() && ref) {
    tag = ref->tag.empty() ? "<none>" : ref->tag;
    ref->tag.clear();
    ref->digest.clear();
    repository = ref->familiar();
  }
  std::string ago = humanDuration(std::max<int64_t>(0, nowNs() - created));
  for (auto& c : ago) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return {{"Containers", "N/A"}, {"CreatedAt", createdAt(created)},
          {"CreatedSince", ago + " ago"}, {"Digest", str(image, "digest")},
          {"ID", shortId(str(image, "id"), noTrunc)}, {"Name", name},
          {"Repository", repository}, {"SharedSize", "N/A"}, {"Size", decimalSize(size)},
          {"Tag", tag}, {"UniqueSize", "N/A"}, {"VirtualSize", decimalSize(size)}};
}

// One row per name, an unnamed image once (as <none>), newest first as docker sorts them.
std::vector<json> imageRows(std::vector<json> images, bool noTrunc) {
  std::stable_sort(images.begin(), images.end(), [](const json& a, const json& b) {
    return a.value("created", int64_t(0)) > b.value("created", int64_t(0));
  });
  std::vector<json> rows;
  for (const auto& i : images) {
    std::vector<std::string> names;
    if (i.contains("names") && i["names"].is_array())
      for (const auto& n : i["names"])
        if (n.is_string()) names.push_back(n.get<std::string>());
    if (names.empty()) names.push_back("");
    for (const auto& n : names) rows.push_back(imageRow(i, n, noTrunc));
  }
  return rows;
}

// ---- ls

struct LsOptions {
  bool quiet = false, noTrunc = false;
  std::string format;
};

int ls(const Globals& g, const LsOptions& o) {
  bool quietFormat = o.quiet && (o.format.empty() || o.format == "table");
  auto format = ListingFormat::parse(quietFormat ? std::string_view("{{.ID}}") : o.format, kImageTable);
  if (!format) {
    std::cerr << "error: --format: " << format.error().message << "\n";
    return 2;
  }
  flatbuffers::FlatBufferBuilder fbb;
  CallError why;
  auto reply = callImages(g, fbb, imageapi::Body::ListRequest,
                          imageapi::CreateListRequest(fbb).Union(), kCall, why);
  if (!reply) return printCallError(why);
  auto rows = imageRows(imagesOf(*reply), o.noTrunc);
  if (quietFormat) {  // docker prints each image's id once
    std::set<std::string> seen;
    std::erase_if(rows, [&seen](const json& r) { return !seen.insert(r["ID"]).second; });
  }
  auto text = format->render(rows, imageHeaders());
  if (!text) {
    std::cerr << "error: --format: " << text.error().message << "\n";
    return 1;
  }
  std::cout << *text;
  return 0;
}

// ---- load

// What docker prints for each image loaded.
void printLoaded(const std::vector<json>& images) {
  for (const auto& i : images) {
    bool named = false;
    if (i.contains("names") && i["names"].is_array())
      for (const auto& n : i["names"])
        if (auto ref = shoal::image::parse(n.is_string() ? n.get<std::string>() : ""); ref) {
          std::cout << "Loaded image: " << ref->familiar() << "\n";
          named = true;
        }
    if (!named) std::cout << "Loaded image ID: " << str(i, "id") << "\n";
  }
}

int load(const Globals& g, std::string input, const std::string& positional) {
  if (!input.empty() && !positional.empty() && input != positional) {
    std::cerr << "error: give the archive once: -i FILE or FILE\n";
    return 2;
  }
  if (input.empty()) input = positional;
  if (input.empty() || input == "-") {
    std::cerr << "error: \"shoal image load\" needs the archive's file: -i FILE (reading it "
                 "from stdin is not supported; agentd reads the file itself)\n";
    return 2;
  }
  char real[PATH_MAX];
  if (!::realpath(input.c_str(), real)) {
    std::cerr << "error: open " << input << ": " << std::strerror(errno) << "\n";
    return 1;
  }
  flatbuffers::FlatBufferBuilder fbb;
  auto body = imageapi::CreateLoadRequest(fbb, fbb.CreateString(real));
  CallError why;
  auto reply = callImages(g, fbb, imageapi::Body::LoadRequest, body.Union(), kLongCall, why);
  if (!reply) return printCallError(why);
  printLoaded(imagesOf(*reply));
  return 0;
}

// ---- rm

std::vector<std::string> stringsOf(const json& j, const char* key) {
  std::vector<std::string> out;
  if (j.contains(key) && j[key].is_array())
    for (const auto& s : j[key])
      if (s.is_string()) out.push_back(s.get<std::string>());
  return out;
}

void printRemoved(const json& reply) {
  for (const auto& name : stringsOf(reply, "untagged")) {
    auto ref = shoal::image::parse(name);
    std::cout << "Untagged: " << (ref ? ref->familiar() : name) << "\n";
  }
  for (const auto& id : stringsOf(reply, "deleted")) std::cout << "Deleted: " << id << "\n";
}

int rm(const Globals& g, const std::vector<std::string>& refs, bool force) {
  int code = 0;
  for (const auto& ref : refs) {
    flatbuffers::FlatBufferBuilder fbb;
    auto body = imageapi::CreateRemoveRequest(fbb, fbb.CreateString(ref), force);
    CallError why;
    auto reply = callImages(g, fbb, imageapi::Body::RemoveRequest, body.Union(), kCall, why);
    if (!reply) {
      code = printCallError(why);
      continue;
    }
    printRemoved(*reply);
  }
  return code;
}

// ---- pull

// The X-Registry-Auth of the user's stored credentials for ref's registry; "" when none.
Result<std::string> registryAuthFor(const shoal::image::Reference& ref) {
  auto creds = storedCredentials(ref.registry);
  if (!creds) return creds.error();
  if (!*creds) return std::string();
  auto key = loginKey(ref.registry);
  return agentd::encodeRegistryAuth({(*creds)->username, (*creds)->password,
                                     (*creds)->identityToken, key ? *key : ref.registry});
}

int pull(const Globals& g, const std::string& text) {
  auto ref = shoal::image::parse(text);
  if (!ref) {
    std::cerr << "error: " << ref.error().message << "\n";
    return 1;
  }
  auto auth = registryAuthFor(*ref);
  if (!auth) {
    std::cerr << "error: " << auth.error().message << "\n";
    return 1;
  }
  std::cout << (ref->digest.empty() ? ref->tag : ref->digest) << ": Pulling from "
            << ref->path << std::endl;
  flatbuffers::FlatBufferBuilder fbb;
  auto body = imageapi::CreatePullRequest(fbb, fbb.CreateString(ref->full()), fbb.CreateString(*auth));
  CallError why;
  auto reply = callImages(g, fbb, imageapi::Body::PullRequest, body.Union(), kLongCall, why);
  if (!reply) return printCallError(why);
  for (const auto& i : imagesOf(*reply)) std::cout << "Digest: " << str(i, "digest") << "\n";
  std::cout << "Status: Image is up to date for " << ref->familiar() << "\n" << ref->full() << "\n";
  return 0;
}

}  // namespace

void addImageCommands(CLI::App& app, Globals& g, Outcome& outcome) {
  auto* image = app.add_subcommand("image", "Manage this node's images");
  image->require_subcommand(1);

  static LsOptions ls_;
  auto* l = image->add_subcommand("ls", "List images");
  l->alias("list");
  l->add_flag("-q,--quiet", ls_.quiet, "Only show image IDs");
  l->add_flag("--no-trunc", ls_.noTrunc, "Don't truncate output");
  l->add_option("--format", ls_.format,
                "Format output: 'table', 'table TEMPLATE', 'json' or a Go template, e.g. "
                "'{{.Repository}}:{{.Tag}}'");
  l->callback([&g, &outcome] { outcome.code = ls(g, ls_); });

  static std::string input, positional;
  auto* ld = image->add_subcommand("load", "Load an image from a tar archive (OCI layout or docker save)");
  ld->add_option("-i,--input", input, "Read from tar archive file");
  ld->add_option("FILE", positional, "The tar archive (the same as -i)");
  ld->callback([&g, &outcome] { outcome.code = load(g, input, positional); });

  static std::vector<std::string> rmRefs;
  static bool force = false;
  auto* r = image->add_subcommand("rm", "Remove one or more images");
  r->alias("remove");
  r->add_flag("-f,--force", force, "Force removal of the image");
  r->add_option("IMAGE", rmRefs, "Image name, id or id prefix")->required();
  r->callback([&g, &outcome] { outcome.code = rm(g, rmRefs, force); });

  static std::string pullRef;
  auto* p = image->add_subcommand("pull", "Download an image from a registry");
  p->add_option("NAME", pullRef, "NAME[:TAG|@DIGEST]")->required();
  p->callback([&g, &outcome] { outcome.code = pull(g, pullRef); });
}

}  // namespace shoal::cli
