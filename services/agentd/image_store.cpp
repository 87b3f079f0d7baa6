#include "services/agentd/image_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sodium.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <shared_mutex>
#include <sstream>
#include <thread>

#include <spdlog/spdlog.h>

#include "common/image_ref.h"
#include "schemas/wire_generated.h"
#include "services/agentd/image_manifest.h"
#include "services/agentd/layer_unpack.h"
#include "services/agentd/registry.h"

namespace shoal::agentd {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using wire::ErrorCode;

constexpr int64_t kMaxConfig = 8 << 20;  // an image config is read into memory
// A blob put by a load stays out of collect()'s reach this long, so that the load's commit
// (which comes after its putBlob calls) still finds it.
constexpr auto kPinTime = std::chrono::minutes(10);

Error failure(ErrorCode code, std::string message) {
  return Error{std::move(message), static_cast<int>(code)};
}

std::string hexOf(std::string_view digest) {
  auto colon = digest.find(':');
  return std::string(colon == std::string_view::npos ? digest : digest.substr(colon + 1));
}

int64_t nowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ---- the image config

Result<std::vector<std::string>> strings(const json& j, const char* field) {
  std::vector<std::string> out;
  if (!j.contains(field) || j[field].is_null()) return out;
  if (!j[field].is_array()) return Error{std::string("the image config's ") + field +
                                         " is not a list of strings"};
  for (auto& s : j[field]) {
    if (!s.is_string())
      return Error{std::string("the image config's ") + field + " is not a list of strings"};
    out.push_back(s);
  }
  return out;
}

Result<std::string> text(const json& j, const char* field) {
  if (!j.contains(field) || j[field].is_null()) return std::string();
  if (!j[field].is_string())
    return Error{std::string("the image config's ") + field + " is not a string"};
  return j[field].get<std::string>();
}

Result<int64_t> integer(const json& j, const char* field) {
  if (!j.contains(field) || j[field].is_null()) return int64_t{0};
  if (!j[field].is_number_integer() || j[field].get<int64_t>() < 0)
    return Error{std::string("the image config's Healthcheck.") + field +
                 " is not a non-negative integer"};
  return j[field].get<int64_t>();
}

Result<ImageHealthcheck> healthcheck(const json& j) {
  if (!j.is_object()) return Error{"the image config's Healthcheck is not an object"};
  ImageHealthcheck h;
  auto test = strings(j, "Test");
  if (!test) return test.error();
  h.test = *test;
  int64_t* fields[] = {&h.interval, &h.timeout, &h.startPeriod, &h.startInterval};
  const char* names[] = {"Interval", "Timeout", "StartPeriod", "StartInterval"};
  for (int i = 0; i < 4; ++i) {
    auto v = integer(j, names[i]);
    if (!v) return v.error();
    *fields[i] = *v;
  }
  auto retries = integer(j, "Retries");
  if (!retries) return retries.error();
  h.retries = static_cast<int>(std::min<int64_t>(*retries, 1 << 20));
  return h;
}

Result<std::map<std::string, std::string>> labels(const json& j) {
  std::map<std::string, std::string> out;
  if (!j.contains("Labels") || j["Labels"].is_null()) return out;
  if (!j["Labels"].is_object()) return Error{"the image config's Labels is not an object"};
  for (auto& [k, v] : j["Labels"].items()) {
    if (!v.is_string()) return Error{"the image config's label " + k + " is not a string"};
    out[k] = v;
  }
  return out;
}

Status readContainerConfig(const json& c, ImageConfig& out) {
  std::pair<const char*, std::vector<std::string>*> lists[] = {
      {"Entrypoint", &out.entrypoint}, {"Cmd", &out.cmd}, {"Env", &out.env}};
  for (auto& [name, dest] : lists) {
    auto v = strings(c, name);
    if (!v) return v.error();
    *dest = *v;
  }
  std::pair<const char*, std::string*> texts[] = {
      {"User", &out.user}, {"WorkingDir", &out.workingDir}, {"StopSignal", &out.stopSignal}};
  for (auto& [name, dest] : texts) {
    auto v = text(c, name);
    if (!v) return v.error();
    *dest = *v;
  }
  auto l = labels(c);
  if (!l) return l.error();
  out.labels = *l;
  if (c.contains("Healthcheck") && !c["Healthcheck"].is_null()) {
    auto h = healthcheck(c["Healthcheck"]);
    if (!h) return h.error();
    out.healthcheck = *h;
  }
  return {};
}

// ---- files

Result<std::string> readFile(const std::string& path, int64_t limit) {
  std::error_code ec;
  auto size = fs::file_size(path, ec);
  if (ec) return Error{"cannot read " + path + ": " + ec.message(), ec.value()};
  if (static_cast<int64_t>(size) > limit)
    return Error{path + " is larger than " + std::to_string(limit) + " bytes", EFBIG};
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  if (!in) return Error{"cannot read " + path + ": " + std::strerror(errno), errno};
  return out.str();
}

Status writeFileSynced(const std::string& path, std::string_view data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Error{"cannot create " + path + ": " + std::strerror(errno), errno};
  size_t off = 0;
  while (off < data.size()) {
    ssize_t w = ::write(fd, data.data() + off, data.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    off += static_cast<size_t>(w);
  }
  bool ok = off == data.size() && ::fsync(fd) == 0;
  int e = errno;
  ::close(fd);
  if (!ok) return Error{"cannot write " + path + ": " + std::strerror(e), e};
  return {};
}

Result<std::string> sha256File(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error{"cannot read " + path + ": " + std::strerror(errno), errno};
  crypto_hash_sha256_state st;
  crypto_hash_sha256_init(&st);
  std::vector<unsigned char> buf(1 << 16);
  ssize_t n;
  while ((n = ::read(fd, buf.data(), buf.size())) > 0)
    crypto_hash_sha256_update(&st, buf.data(), static_cast<size_t>(n));
  int e = errno;
  ::close(fd);
  if (n < 0) return Error{"cannot read " + path + ": " + std::strerror(e), e};
  unsigned char d[crypto_hash_sha256_BYTES];
  crypto_hash_sha256_final(&st, d);
  char hex[crypto_hash_sha256_BYTES * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, d, sizeof d);
  return "sha256:" + std::string(hex);
}

// Paths under tmp/ a pull or commit made: removed when it ends, whatever happened.
struct TempFiles {
  std::vector<std::string> paths;
  ~TempFiles() {
    std::error_code ec;
    for (auto& p : paths) fs::remove_all(p, ec);
  }
};

// ---- a small pool of worker threads for pulls and collect()

class Pool {
 public:
  explicit Pool(size_t n) {
    for (size_t i = 0; i < n; ++i) threads_.emplace_back([this] { work(); });
  }
  ~Pool() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  void submit(std::function<void()> job) {
    {
      std::lock_guard lock(mutex_);
      jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
  }

 private:
  void work() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
        if (stop_) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
    }
  }
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

// What images.json keeps of an image, beyond the Image itself: what it refers to in blobs/.
struct Record {
  Image image;
  std::string manifestDigest;             // the platform's manifest (== image.digest unless
                                          // the reference named an index)
  std::vector<std::string> layerDigests;  // lowest first
};

json recordJson(const Record& r) {
  return {{"names", r.image.names}, {"id", r.image.id}, {"digest", r.image.digest},
          {"manifest", r.manifestDigest}, {"layers", r.layerDigests}, {"size", r.image.size},
          {"created", r.image.created}};
}

}  // namespace

// ---- the pure helpers of the header

Result<ImageConfig> parseImageConfig(std::string_view text) {
  json doc = json::parse(text.begin(), text.end(), nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return Error{"the image config is not a JSON object"};
  ImageConfig out;
  auto arch = shoal::agentd::text(doc, "architecture");
  auto os = shoal::agentd::text(doc, "os");
  if (!arch || !os) return (!arch ? arch : os).error();
  out.architecture = *arch;
  out.os = *os;
  if (doc.contains("config") && !doc["config"].is_null()) {
    if (!doc["config"].is_object()) return Error{"the image config's config is not an object"};
    if (auto st = readContainerConfig(doc["config"], out); !st) return st.error();
  }
  return out;
}

nlohmann::json imageJson(const Image& image) {
  return {{"names", image.names}, {"id", image.id}, {"digest", image.digest},
          {"size", image.size}, {"created", image.created}, {"layers", image.layers}};
}

Result<RegistryAuth> decodeRegistryAuth(std::string_view encoded) {
  std::vector<unsigned char> raw(encoded.size() + 1);
  size_t len = 0;
  bool decoded = false;
  // docker sends URL-safe base64; other clients send the standard alphabet, padded or not.
  for (int variant : {sodium_base64_VARIANT_URLSAFE, sodium_base64_VARIANT_URLSAFE_NO_PADDING,
                      sodium_base64_VARIANT_ORIGINAL, sodium_base64_VARIANT_ORIGINAL_NO_PADDING})
    if (!decoded && sodium_base642bin(raw.data(), raw.size(), encoded.data(), encoded.size(),
                                      nullptr, &len, nullptr, variant) == 0)
      decoded = true;
  if (!decoded) return failure(ErrorCode::InvalidArgument,
                               "the registry auth is not base64: give it as docker's "
                               "X-Registry-Auth (shoal login, then --with-registry-auth)");
  json doc = json::parse(raw.begin(), raw.begin() + static_cast<long>(len), nullptr, false);
  if (!doc.is_object())
    return failure(ErrorCode::InvalidArgument, "the registry auth is not a JSON object");
  RegistryAuth a;
  std::pair<const char*, std::string*> fields[] = {{"username", &a.username},
      {"password", &a.password}, {"identitytoken", &a.identityToken},
      {"serveraddress", &a.serverAddress}};
  for (auto& [k, dest] : fields) {
    if (!doc.contains(k) || doc[k].is_null()) continue;
    if (!doc[k].is_string())
      return failure(ErrorCode::InvalidArgument, std::string("the registry auth's ") + k +
                                                     " is not a string");
    *dest = doc[k];
  }
  return a;
}

std::string encodeRegistryAuth(const RegistryAuth& auth) {
  json doc = json::object();
  if (!auth.username.empty()) doc["username"] = auth.username;
  if (!auth.password.empty()) doc["password"] = auth.password;
  if (!auth.identityToken.empty()) doc["identitytoken"] = auth.identityToken;
  if (!auth.serverAddress.empty()) doc["serveraddress"] = auth.serverAddress;
  std::string text = doc.dump();
  std::string out(sodium_base64_ENCODED_LEN(text.size(), sodium_base64_VARIANT_URLSAFE), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(text.data()),
                    text.size(), sodium_base64_VARIANT_URLSAFE);
  out.resize(std::strlen(out.c_str()));
  return out;
}

// ---- the store's state

struct ImageStore::State {
  State(Loop& l, std::string r, Options o)
      : loop(l), root(std::move(r)), options(std::move(o)),
        registry(registry::Options{options.insecureRegistries, options.caFile}) {}

  Loop& loop;
  std::string root;
  Options options;
  registry::Registry registry;

  mutable std::mutex mutex;                 // everything below
  std::map<std::string, Record> images;     // by id
  std::map<std::string, std::vector<PullFn>> pulls;  // by normalised reference
  std::map<std::string, std::chrono::steady_clock::time_point> pinned;  // digest → until
  int64_t pulled = 0, failed = 0;
  std::atomic<int64_t> bytesDownloaded{0};
  std::atomic<uint64_t> tempCounter{0};
  // Held shared by a pull or commit from "is this blob/layer here?" to its record, and
  // exclusively by collect() while it deletes, so nothing is deleted under a commit.
  std::shared_mutex gc;

  std::unique_ptr<Pool> pool;  // last: its threads stop before the rest goes

  std::string blobPath(std::string_view digest) const {
    return root + "/blobs/sha256/" + hexOf(digest);
  }
  std::string layerPath(std::string_view digest) const { return root + "/layers/" + hexOf(digest); }
  std::string temp() {
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    return root + "/tmp/" + std::to_string(::getpid()) + "-" + std::to_string(++tempCounter) +
           "-" + std::to_string(rng() % 1000000);
  }

  Status save() const;  // images.json; with mutex held
  Status load();
  Result<Record> recordFrom(const json& j) const;
  Result<std::string> put(const std::string& path, std::string_view expected);
  Result<Image> record(const std::string& name, const std::string& topDigest,
                       const std::string& manifestDigest, const image::Manifest& m,
                       const std::string& configJson);
  Result<Image> commitFromBlobs(const std::string& name, const std::string& topDigest,
                                const std::string& manifestDigest);
  Result<std::vector<std::pair<std::string, std::string>>> unpackLayers(
      const image::Manifest& m, const std::map<std::string, std::string>& sources,
      TempFiles& temps);
  Result<Image> commitDownloads(const shoal::image::Reference& ref, const std::string& top,
                                const std::string& manifestDigest, const image::Manifest& m,
                                const std::vector<std::pair<std::string, std::string>>& files,
                                TempFiles& temps);
  Result<Image> pullNow(const shoal::image::Reference& ref, const RegistryAuth& auth);
  void startPull(const std::string& key, const shoal::image::Reference& ref,
                 const RegistryAuth& auth, PullFn done);
  std::optional<std::string> findId(std::string_view refOrId, Error& why) const;
};

Status ImageStore::State::save() const {
  json doc = {{"images", json::array()}};
  for (auto& [id, r] : images) doc["images"].push_back(recordJson(r));
  std::string tmp = root + "/images.json.tmp";
  if (auto st = writeFileSynced(tmp, doc.dump(2)); !st) return st;
  if (::rename(tmp.c_str(), (root + "/images.json").c_str()) != 0)
    return Error{"cannot rename " + tmp + " to images.json: " + std::strerror(errno), errno};
  return {};
}

Result<Record> ImageStore::State::recordFrom(const json& j) const {
  Record r;
  try {
    r.image.names = j.at("names").get<std::vector<std::string>>();
    r.image.id = j.at("id").get<std::string>();
    r.image.digest = j.at("digest").get<std::string>();
    r.manifestDigest = j.at("manifest").get<std::string>();
    r.layerDigests = j.at("layers").get<std::vector<std::string>>();
    r.image.size = j.at("size").get<int64_t>();
    r.image.created = j.at("created").get<int64_t>();
  } catch (const json::exception& e) {
    return Error{std::string("an image record is malformed: ") + e.what()};
  }
  for (auto& d : r.layerDigests) r.image.layers.push_back(layerPath(d));
  auto config = readFile(blobPath(r.image.id), kMaxConfig);
  if (!config) return config.error();
  auto parsed = parseImageConfig(*config);
  if (!parsed) return Error{"image " + r.image.id + ": " + parsed.error().message};
  r.image.config = *parsed;
  return r;
}

Status ImageStore::State::load() {
  std::string path = root + "/images.json";
  if (!fs::exists(path)) return {};
  auto text = readFile(path, 256 << 20);
  if (!text) return text.error();
  json doc = json::parse(*text, nullptr, false);
  if (!doc.is_object() || !doc.contains("images") || !doc["images"].is_array())
    return Error{path + " is not an image list: move it away (the images will be pulled again)"};
  for (auto& j : doc["images"]) {
    auto r = recordFrom(j);
    if (!r) return Error{path + ": " + r.error().message + ": move it away (the images will be "
                         "pulled again)"};
    images[r->image.id] = std::move(*r);
  }
  return {};
}

Result<std::string> ImageStore::State::put(const std::string& path, std::string_view expected) {
  auto digest = sha256File(path);
  if (!digest) return digest.error();
  if (!expected.empty() && *digest != expected)
    return failure(ErrorCode::InvalidArgument, "blob " + std::string(expected) +
                                                   ": digest mismatch: got " + *digest);
  {
    std::lock_guard lock(mutex);
    pinned[*digest] = std::chrono::steady_clock::now() + kPinTime;
  }
  std::string dest = blobPath(*digest);
  if (fs::exists(dest)) {
    ::unlink(path.c_str());
    return digest;
  }
  if (::rename(path.c_str(), dest.c_str()) != 0)
    return Error{"cannot rename " + path + " to " + dest + ": " + std::strerror(errno), errno};
  return digest;
}

// Unpacks the manifest's layers that are not in layers/ yet into tmp/, from `sources` (a
// digest's download in tmp/) or else from blobs/. Returns (tmp dir, layers/ dir) pairs to
// rename in once everything else is in place.
Result<std::vector<std::pair<std::string, std::string>>> ImageStore::State::unpackLayers(
    const image::Manifest& m, const std::map<std::string, std::string>& sources,
    TempFiles& temps) {
  std::vector<std::pair<std::string, std::string>> renames;
  for (auto& layer : m.layers) {
    std::string dest = layerPath(layer.digest);
    if (fs::exists(dest)) continue;
    std::string tmp = temp();
    temps.paths.push_back(tmp);
    if (::mkdir(tmp.c_str(), 0755) != 0)
      return Error{"cannot create " + tmp + ": " + std::strerror(errno), errno};
    auto source = sources.find(layer.digest);
    std::string tarball = source == sources.end() ? blobPath(layer.digest) : source->second;
    if (auto st = layer::unpack(tarball, tmp); !st)
      return Error{"layer " + layer.digest + ": " + st.error().message, st.error().code};
    renames.emplace_back(tmp, dest);
  }
  return renames;
}

static Status renameLayers(const std::vector<std::pair<std::string, std::string>>& renames) {
  for (auto& [tmp, dest] : renames)
    // Another pull may have renamed the same layer in meanwhile: then its copy stays.
    if (::rename(tmp.c_str(), dest.c_str()) != 0 && errno != EEXIST && errno != ENOTEMPTY)
      return Error{"cannot rename " + tmp + " to " + dest + ": " + std::strerror(errno), errno};
  return {};
}

// Names the image (the name leaves any other image) and saves images.json.
Result<Image> ImageStore::State::record(const std::string& name, const std::string& topDigest,
                                        const std::string& manifestDigest,
                                        const image::Manifest& m, const std::string& configJson) {
  auto config = parseImageConfig(configJson);
  if (!config) return config.error();
  Record r;
  r.image.id = m.config.digest;
  r.image.digest = topDigest;
  r.image.config = *config;
  r.image.created = nowNs();
  r.manifestDigest = manifestDigest;
  for (auto& l : m.layers) {
    r.layerDigests.push_back(l.digest);
    r.image.layers.push_back(layerPath(l.digest));
    r.image.size += l.size;
  }
  std::lock_guard lock(mutex);
  for (auto& [id, other] : images) std::erase(other.image.names, name);
  auto [it, fresh] = images.try_emplace(r.image.id, std::move(r));
  if (!fresh) it->second.image.digest = topDigest;
  if (!name.empty()) it->second.image.names.push_back(name);
  if (auto st = save(); !st) return st.error();
  return it->second.image;
}

Result<Image> ImageStore::State::commitFromBlobs(const std::string& name,
                                                 const std::string& topDigest,
                                                 const std::string& manifestDigest) {
  auto body = readFile(blobPath(manifestDigest), 4 << 20);
  if (!body) return Error{"manifest " + manifestDigest + " is not in the store: " +
                          body.error().message};
  auto parsed = image::parse(*body, "");
  if (!parsed) return parsed.error();
  if (parsed->isIndex)
    return failure(ErrorCode::InvalidArgument,
                   manifestDigest + " is an index, not an image manifest: commit the platform's "
                   "manifest");
  for (auto& d : parsed->manifest.layers)
    if (!fs::exists(blobPath(d.digest)))
      return Error{"layer " + d.digest + " is not in the store"};
  auto config = readFile(blobPath(parsed->manifest.config.digest), kMaxConfig);
  if (!config) return config.error();
  TempFiles temps;
  std::shared_lock gcLock(gc);
  auto renames = unpackLayers(parsed->manifest, {}, temps);
  if (!renames) return renames.error();
  if (auto st = renameLayers(*renames); !st) return st.error();
  return record(name, topDigest, manifestDigest, parsed->manifest, *config);
}

// ---- pulls

namespace {

// What a pull downloaded into tmp/: its path and what it must be.
struct Download {
  std::string path;
  image::Descriptor descriptor;
};

// Downloads descriptors[i] for every i, parallel at most n at a time; the first error wins.
Status downloadAll(registry::Registry& reg, const shoal::image::Reference& ref,
                   const RegistryAuth& auth, std::vector<Download>& downloads, size_t n,
                   std::atomic<int64_t>& bytes) {
  std::atomic<size_t> next{0};
  std::mutex mutex;
  std::optional<Error> first;
  auto work = [&] {
    for (size_t i; (i = next++) < downloads.size();) {
      {
        std::lock_guard lock(mutex);
        if (first) return;  // no point in fetching more
      }
      auto got = reg.blob(ref, downloads[i].descriptor, downloads[i].path, auth);
      std::lock_guard lock(mutex);
      if (got) bytes += *got;
      else if (!first) first = got.error();
    }
  };
  std::vector<std::thread> threads;
  for (size_t t = 0; t < std::min(std::max<size_t>(n, 1), downloads.size()); ++t)
    threads.emplace_back(work);
  for (auto& t : threads) t.join();
  if (first) return *first;
  return {};
}

Error withImage(const shoal::image::Reference& ref, const Error& e) {
  // Registry errors name the repository already; others get the image's name in front.
  std::string repo = ref.registry + "/" + ref.path;
  if (e.message.find(repo) != std::string::npos || e.message.rfind("cannot reach", 0) == 0)
    return e;
  return Error{ref.full() + ": " + e.message, e.code};
}

}  // namespace

Result<Image> ImageStore::State::pullNow(const shoal::image::Reference& ref,
                                         const RegistryAuth& auth) {
  auto top = registry.manifest(ref, ref.manifestRef(), auth);
  if (!top) return top.error();
  auto parsed = image::parse(top->body, top->contentType);
  if (!parsed) return parsed.error();
  registry::FetchedManifest chosen = *top;
  if (parsed->isIndex) {
    auto pick = image::pickPlatform(parsed->entries, image::hostPlatform());
    if (!pick) return pick.error();
    auto m = registry.manifest(ref, pick->digest, auth);
    if (!m) return m.error();
    parsed = image::parse(m->body, m->contentType);
    if (!parsed) return parsed.error();
    if (parsed->isIndex) return Error{"the index names another index for this platform"};
    chosen = *m;
  }
  const image::Manifest& manifest = parsed->manifest;
  if (manifest.config.size > kMaxConfig)
    return Error{"its config is " + std::to_string(manifest.config.size) + " bytes, more than " +
                 std::to_string(kMaxConfig)};
  TempFiles temps;
  std::vector<std::pair<std::string, std::string>> docs = {{top->digest, top->body}};
  if (chosen.digest != top->digest) docs.emplace_back(chosen.digest, chosen.body);
  std::vector<Download> downloads;
  for (auto& d : manifest.layers)
    if (!fs::exists(blobPath(d.digest))) downloads.push_back({temp(), d});
  if (!fs::exists(blobPath(manifest.config.digest)))
    downloads.push_back({temp(), manifest.config});
  for (auto& d : downloads) temps.paths.push_back(d.path);
  if (auto st = downloadAll(registry, ref, auth, downloads, options.parallelDownloads,
                            bytesDownloaded); !st)
    return st.error();
  // Everything is here and checked; the manifests go to tmp/ too, then all is renamed in.
  std::vector<std::pair<std::string, std::string>> files;  // tmp path, digest
  for (auto& d : downloads) files.emplace_back(d.path, d.descriptor.digest);
  for (auto& [digest, body] : docs) {
    std::string path = temp();
    temps.paths.push_back(path);
    if (auto st = writeFileSynced(path, body); !st) return st.error();
    files.emplace_back(path, digest);
  }
  return commitDownloads(ref, top->digest, chosen.digest, manifest, files, temps);
}

// Unpacks the new layers from tmp/, then renames the blobs and the layers in and records the
// image: a failure before the renames leaves the store as it was.
Result<Image> ImageStore::State::commitDownloads(
    const shoal::image::Reference& ref, const std::string& top, const std::string& manifestDigest,
    const image::Manifest& m, const std::vector<std::pair<std::string, std::string>>& files,
    TempFiles& temps) {
  std::map<std::string, std::string> sources;
  for (auto& [path, digest] : files) sources[digest] = path;
  auto configPath = sources.count(m.config.digest) ? sources[m.config.digest]
                                                   : blobPath(m.config.digest);
  auto config = readFile(configPath, kMaxConfig);
  if (!config) return config.error();
  if (auto parsed = parseImageConfig(*config); !parsed) return parsed.error();
  std::shared_lock gcLock(gc);
  auto renames = unpackLayers(m, sources, temps);
  if (!renames) return renames.error();
  for (auto& [path, digest] : files) {
    std::string dest = blobPath(digest);
    if (::rename(path.c_str(), dest.c_str()) != 0)
      return Error{"cannot rename " + path + " to " + dest + ": " + std::strerror(errno), errno};
  }
  if (auto st = renameLayers(*renames); !st) return st.error();
  return record(ref.full(), top, manifestDigest, m, *config);
}

void ImageStore::State::startPull(const std::string& key, const shoal::image::Reference& ref,
                                  const RegistryAuth& auth, PullFn done) {
  {
    std::lock_guard lock(mutex);
    auto [it, fresh] = pulls.try_emplace(key);
    it->second.push_back(std::move(done));
    if (!fresh) return;  // joins the pull under way
  }
  pool->submit([this, key, ref, auth] {
    auto started = std::chrono::steady_clock::now();
    auto result = pullNow(ref, auth);
    if (!result) result = withImage(ref, result.error());
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - started).count();
    if (result) spdlog::info("pulled {} ({}) in {} ms", key, result->id, ms);
    else spdlog::warn("pull of {} failed: {}", key, result.error().message);
    std::vector<PullFn> waiters;
    {
      std::lock_guard lock(mutex);
      waiters = std::move(pulls[key]);
      pulls.erase(key);
      ++(result ? pulled : failed);
    }
    for (auto& w : waiters) loop.post([w, result] { w(result); });
  });
}

// The id refOrId names: a full id, a reference (normalised), or a unique id prefix.
std::optional<std::string> ImageStore::State::findId(std::string_view refOrId, Error& why) const {
  std::string hex = hexOf(refOrId);
  if (images.count("sha256:" + hex)) return "sha256:" + hex;
  if (auto ref = shoal::image::parse(refOrId)) {
    for (auto& [id, r] : images)
      for (auto& n : r.image.names)
        if (n == ref->full()) return id;
  }
  std::vector<std::string> matches;
  bool hexOnly = !hex.empty() && hex.find_first_not_of("0123456789abcdef") == std::string::npos;
  if (hexOnly)
    for (auto& [id, r] : images)
      if (hexOf(id).rfind(hex, 0) == 0) matches.push_back(id);
  if (matches.size() == 1) return matches.front();
  why = failure(matches.empty() ? ErrorCode::NotFound : ErrorCode::InvalidArgument,
                matches.empty() ? "no such image: " + std::string(refOrId) + " (shoal image ls "
                                  "lists the node's images)"
                                : "image id prefix " + std::string(refOrId) + " is ambiguous: "
                                  "give more of it");
  return std::nullopt;
}

// ---- ImageStore

ImageStore::ImageStore(std::unique_ptr<State> state) : state_(std::move(state)) {}
ImageStore::~ImageStore() { state_->pool.reset(); }

Result<std::unique_ptr<ImageStore>> ImageStore::open(Loop& loop, std::string root,
                                                     Options options) {
  if (sodium_init() < 0) return Error{"libsodium cannot start"};
  std::error_code ec;
  for (const char* sub : {"blobs/sha256", "layers", "tmp"}) {
    fs::create_directories(root + "/" + sub, ec);
    if (ec) return Error{"cannot create " + root + "/" + sub + ": " + ec.message(), ec.value()};
  }
  // What an earlier run left half-done: never renamed in, so never used.
  for (auto& e : fs::directory_iterator(root + "/tmp", ec)) fs::remove_all(e.path(), ec);
  if (ec) return Error{"cannot empty " + root + "/tmp: " + ec.message(), ec.value()};
  auto state = std::make_unique<State>(loop, root, std::move(options));
  if (auto st = state->load(); !st) return st.error();
  state->pool = std::make_unique<Pool>(4);
  return std::unique_ptr<ImageStore>(new ImageStore(std::move(state)));
}

void ImageStore::ensure(const std::string& ref, const RegistryAuth& auth, PullFn done) {
  auto parsed = shoal::image::parse(ref);
  if (!parsed) {
    Error e = failure(ErrorCode::InvalidArgument, parsed.error().message);
    state_->loop.post([done, e] { done(e); });
    return;
  }
  if (auto image = find(parsed->full())) {
    state_->loop.post([done, image = *image] { done(image); });
    return;
  }
  state_->startPull(parsed->full(), *parsed, auth, std::move(done));
}

void ImageStore::pull(const std::string& ref, const RegistryAuth& auth, PullFn done) {
  auto parsed = shoal::image::parse(ref);
  if (!parsed) {
    Error e = failure(ErrorCode::InvalidArgument, parsed.error().message);
    state_->loop.post([done, e] { done(e); });
    return;
  }
  state_->startPull(parsed->full(), *parsed, auth, std::move(done));
}

Result<Image> ImageStore::find(std::string_view refOrId) const {
  std::lock_guard lock(state_->mutex);
  Error why;
  auto id = state_->findId(refOrId, why);
  if (!id) return why;
  return state_->images.at(*id).image;
}

std::vector<Image> ImageStore::list() const {
  std::lock_guard lock(state_->mutex);
  std::vector<Image> out;
  for (auto& [id, r] : state_->images) out.push_back(r.image);
  return out;
}

Result<std::string> ImageStore::putBlob(const std::string& path, std::string_view expectedDigest) {
  if (!expectedDigest.empty())
    if (auto st = shoal::image::checkDigest(expectedDigest); !st)
      return failure(ErrorCode::InvalidArgument, "digest \"" + std::string(expectedDigest) +
                                                     "\": " + st.error().message);
  return state_->put(path, expectedDigest);
}

Result<Image> ImageStore::commit(const std::string& ref, std::string_view manifestDigest) {
  std::string name;
  if (!ref.empty()) {
    auto parsed = shoal::image::parse(ref);
    if (!parsed) return failure(ErrorCode::InvalidArgument, parsed.error().message);
    name = parsed->full();
  }
  if (auto st = shoal::image::checkDigest(manifestDigest); !st)
    return failure(ErrorCode::InvalidArgument, "manifest digest \"" +
                                                   std::string(manifestDigest) + "\": " +
                                                   st.error().message);
  std::string digest(manifestDigest);
  return state_->commitFromBlobs(name, digest, digest);
}

std::string ImageStore::tempPath() const { return state_->temp(); }

Status ImageStore::remove(std::string_view refOrId, bool force,
                          const std::set<std::string>& inUse) {
  std::lock_guard lock(state_->mutex);
  Error why;
  auto id = state_->findId(refOrId, why);
  if (!id) return why;
  Record& r = state_->images.at(*id);
  auto ref = shoal::image::parse(refOrId);
  bool byName = ref && std::count(r.image.names.begin(), r.image.names.end(), ref->full());
  bool used = inUse.count(*id) > 0;
  if (used && !force)
    return failure(ErrorCode::Conflict, "image " + std::string(refOrId) + " is used by a task "
                   "on this node: remove the service first, or -f to remove only its name");
  if (byName) std::erase(r.image.names, ref->full());
  else r.image.names.clear();
  if (r.image.names.empty() && !used) state_->images.erase(*id);
  return state_->save();
}

void ImageStore::collect(const std::set<std::string>& inUse) {
  State* s = state_.get();
  s->pool->submit([s, inUse] {
    std::unique_lock gcLock(s->gc);
    std::set<std::string> keep;  // hex digests of blobs and layers still referred to
    {
      std::lock_guard lock(s->mutex);
      std::erase_if(s->images, [&](auto& kv) {
        return kv.second.image.names.empty() && !inUse.count(kv.first);
      });
      for (auto& [id, r] : s->images) {
        for (auto& d : {r.image.id, r.image.digest, r.manifestDigest}) keep.insert(hexOf(d));
        for (auto& d : r.layerDigests) keep.insert(hexOf(d));
      }
      auto now = std::chrono::steady_clock::now();
      std::erase_if(s->pinned, [&](auto& kv) { return kv.second < now; });
      for (auto& [d, until] : s->pinned) keep.insert(hexOf(d));
      if (auto st = s->save(); !st) spdlog::warn("image collect: {}", st.error().message);
    }
    size_t removed = 0;
    std::error_code ec;
    for (const char* dir : {"/blobs/sha256", "/layers"})
      for (auto& e : fs::directory_iterator(s->root + dir, ec))
        if (!keep.count(e.path().filename().string()) && fs::remove_all(e.path(), ec) > 0)
          ++removed;
    spdlog::info("image collect: {} unused blobs and layers removed", removed);
  });
}

const std::string& ImageStore::root() const { return state_->root; }

nlohmann::json ImageStore::status() const {
  auto count = [&](const std::string& dir) {
    std::error_code ec;
    size_t n = 0;
    for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
         it.increment(ec))
      ++n;
    return n;
  };
  std::lock_guard lock(state_->mutex);
  return {{"images", state_->images.size()},
          {"blobs", count(state_->root + "/blobs/sha256")},
          {"layers", count(state_->root + "/layers")},
          {"pulls_in_flight", state_->pulls.size()},
          {"pulled", state_->pulled},
          {"failed", state_->failed},
          {"bytes_downloaded", state_->bytesDownloaded.load()}};
}

}  // namespace shoal::agentd
