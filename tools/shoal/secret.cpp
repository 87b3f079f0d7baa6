// shoal secret create|ls|inspect|rm and shoal config create|ls|inspect|rm (docs/containers.md
// "Secrets and configs"): writes through raftd's service API (schemas/service.fbs), reads
// through the store client, docker's flags and output. A secret's data is never printed; a
// config's is, base64 in Spec.Data as docker's inspect shows it.
#include <sodium.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>

#include "common/object_codec.h"
#include "common/units.h"
#include "tools/shoal/daemons.h"
#include "tools/shoal/nodes.h"
#include "tools/shoal/services.h"

namespace shoal::cli {
namespace {

using nlohmann::json;

constexpr Millis kCall{10'000};

// What differs between `secret` and `config`.
struct Kind {
  const char* word;  // "secret" or "config"
  objects::ObjectKind kind;
  size_t maxBytes;   // raftd's limit, checked here first so a huge file is not sent
  bool showData;     // configs: inspect shows the data; secrets: never
  const char* table;
};

const Kind kSecret{"secret", objects::ObjectKind::Secret, 500 * 1024, false,
                   "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.CreatedAt}}\t{{.UpdatedAt}}"};
const Kind kConfig{"config", objects::ObjectKind::Config, 1000 * 1024, true,
                   "table {{.ID}}\t{{.Name}}\t{{.CreatedAt}}\t{{.UpdatedAt}}"};

int64_t nowNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ---- create

// FILE, or standard input for "-"; at most `max` bytes (one more tells that it is too large).
Result<std::string> readData(const std::string& file, size_t max, std::string_view word) {
  std::ifstream fileIn;
  if (file != "-") {
    fileIn.open(file, std::ios::binary);
    if (!fileIn)
      return Error{"cannot read " + file + ": " + std::strerror(errno) + "; give a readable file, or - for standard input"};
  }
  std::istream& in = file == "-" ? std::cin : fileIn;
  std::string data(max + 1, '\0');
  in.read(data.data(), static_cast<std::streamsize>(data.size()));
  data.resize(static_cast<size_t>(in.gcount()));
  if (in.bad()) return Error{"reading " + (file == "-" ? std::string("standard input") : file) + " failed"};
  if (data.size() > max)
    return Error{std::string("the data is larger than a ") + std::string(word) + " may hold (" +
                 std::to_string(max / 1024) + " KiB)"};
  return data;
}

// docker's --label key=value (or key, for an empty value).
Result<std::vector<std::unique_ptr<objects::KeyValueT>>> parseLabels(const std::vector<std::string>& labels) {
  std::vector<std::unique_ptr<objects::KeyValueT>> out;
  for (const auto& l : labels) {
    auto eq = l.find('=');
    auto kv = std::make_unique<objects::KeyValueT>();
    kv->key = l.substr(0, eq);
    if (eq != std::string::npos) kv->value = l.substr(eq + 1);
    if (kv->key.empty()) return Error{"invalid --label " + quoteInput(l) + ": give key=value"};
    out.push_back(std::move(kv));
  }
  return out;
}

template <class Spec>
flatbuffers::Offset<void> createBody(flatbuffers::FlatBufferBuilder& fbb, const Spec& spec);

template <>
flatbuffers::Offset<void> createBody(flatbuffers::FlatBufferBuilder& fbb, const objects::SecretSpecT& s) {
  return serviceapi::CreateCreateSecretRequest(fbb, objects::SecretSpec::Pack(fbb, &s)).Union();
}

template <>
flatbuffers::Offset<void> createBody(flatbuffers::FlatBufferBuilder& fbb, const objects::ConfigSpecT& s) {
  return serviceapi::CreateCreateConfigRequest(fbb, objects::ConfigSpec::Pack(fbb, &s)).Union();
}

// One request to raftd's service API; the ObjectReply's id.
Result<std::string> send(const Globals& g, flatbuffers::FlatBufferBuilder& fbb, serviceapi::Body type,
                         flatbuffers::Offset<void> body, CallError& why) {
  auto reply = callDaemon(g, "raftd", kServiceProtocol,
                          bus::message<serviceapi::Envelope>(fbb, type, body), kCall, &why);
  if (!reply) return reply.error();
  const auto* r = reply->as<serviceapi::Envelope>()->body_as_ObjectReply();
  if (!r || !r->id()) {
    why = {CallError::Kind::Daemon, "raftd answered without the object's id"};
    return Error{why.message};
  }
  return r->id()->str();
}

struct CreateOptions {
  std::string name, file;
  std::vector<std::string> labels;
};

template <class Spec>
int create(const Globals& g, const Kind& k, const CreateOptions& o, serviceapi::Body type) {
  auto data = readData(o.file, k.maxBytes, k.word);
  if (!data) {
    std::cerr << "error: " << data.error().message << "\n";
    return 1;
  }
  auto labels = parseLabels(o.labels);
  if (!labels) {
    std::cerr << "error: " << labels.error().message << "\n";
    return 2;
  }
  Spec spec;
  spec.annotations = std::make_unique<objects::AnnotationsT>();
  spec.annotations->name = o.name;
  spec.annotations->labels = std::move(*labels);
  spec.data.assign(data->begin(), data->end());
  sodium_memzero(data->data(), data->size());
  flatbuffers::FlatBufferBuilder fbb;
  auto body = createBody(fbb, spec);
  sodium_memzero(spec.data.data(), spec.data.size());
  CallError why;
  auto id = send(g, fbb, type, body, why);
  if (!id) return printCallError(why);
  std::cout << *id << "\n";
  return 0;
}

// ---- rm

int remove(const Globals& g, const Kind& k, const std::vector<std::string>& refs) {
  int code = 0;
  for (const auto& ref : refs) {
    flatbuffers::FlatBufferBuilder fbb;
    bool secret = k.kind == objects::ObjectKind::Secret;
    auto body = secret ? serviceapi::CreateRemoveSecretRequestDirect(fbb, ref.c_str()).Union()
                       : serviceapi::CreateRemoveConfigRequestDirect(fbb, ref.c_str()).Union();
    CallError why;
    auto id = send(g, fbb, secret ? serviceapi::Body::RemoveSecretRequest : serviceapi::Body::RemoveConfigRequest,
                   body, why);
    if (!id) {
      code = printCallError(why);
      if (why.kind != CallError::Kind::Daemon) return code;  // the rest would fail alike
      continue;
    }
    std::cout << ref << "\n";
  }
  return code;
}

// ---- reading: ls and inspect

// The stored objects of the kind, as bytes (each verified by the caller's unpack).
Result<std::vector<std::string>> readAll(const Globals& g, const Kind& k, CallError& why) {
  if (auto m = requireManager(g, &why); !m) return m.error();
  store::SyncClient client;
  if (auto c = client.connect(store::endpointIn(g.runDir)); !c) {
    why = {CallError::Kind::Unreachable, "cannot connect to raftd at " + socketOf(g, "raftd") + ": " + c.error().message};
    return Error{why.message};
  }
  auto l = client.list(k.kind);
  if (!l) {
    why = {CallError::Kind::Daemon, l.error().message};
    return l.error();
  }
  return std::move(l->objects);
}

// A secret or config as docker's inspect shows it (Spec.Data only for configs, base64).
template <class T>
json inspectJson(const T& o, bool showData) {
  const auto* spec = o.spec ? o.spec.get() : nullptr;
  json labels = json::object();
  if (spec && spec->annotations)
    for (const auto& l : spec->annotations->labels) labels[l->key] = l->value;
  json specJ = {{"Name", spec && spec->annotations ? spec->annotations->name : ""}, {"Labels", labels}};
  if (showData && spec) {
    std::string b64(sodium_base64_encoded_len(spec->data.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
    sodium_bin2base64(b64.data(), b64.size(), spec->data.data(), spec->data.size(),
                      sodium_base64_VARIANT_ORIGINAL);
    b64.resize(std::strlen(b64.c_str()));
    specJ["Data"] = b64;
  }
  return {{"ID", o.id},
          {"Version", {{"Index", o.meta ? o.meta->version() : 0}}},
          {"CreatedAt", rfc3339Nano(o.meta ? o.meta->created_at() : 0)},
          {"UpdatedAt", rfc3339Nano(o.meta ? o.meta->updated_at() : 0)},
          {"Spec", specJ}};
}

template <class T>
std::string pretty(const T& o, bool showData) {
  json j = inspectJson(o, showData);
  std::string out = "ID:              " + o.id + "\nName:            " + j["Spec"]["Name"].get<std::string>() + "\n";
  if (o.spec && o.spec->annotations && !o.spec->annotations->labels.empty()) {
    out += "Labels:\n";
    for (const auto& l : o.spec->annotations->labels) out += " - " + l->key + "=" + l->value + "\n";
  }
  if (!showData) out += "Driver:\n";
  out += "Created at:      " + j["CreatedAt"].get<std::string>() + "\n";
  out += "Updated at:      " + j["UpdatedAt"].get<std::string>() + "\n";
  if (showData && o.spec) out += "Data:\n" + std::string(o.spec->data.begin(), o.spec->data.end()) + "\n";
  return out;
}

// docker's ls row: times as "5 minutes ago".
template <class T>
json row(const T& o, int64_t now) {
  auto ago = [now](int64_t t) { return humanDuration(std::max<int64_t>(0, now - t)) + " ago"; };
  std::string labels;
  if (o.spec && o.spec->annotations)
    for (const auto& l : o.spec->annotations->labels) labels += (labels.empty() ? "" : ",") + l->key + "=" + l->value;
  return {{"ID", o.id},
          {"Name", o.spec && o.spec->annotations ? o.spec->annotations->name : ""},
          {"Driver", ""},
          {"Labels", labels},
          {"CreatedAt", ago(o.meta ? o.meta->created_at() : 0)},
          {"UpdatedAt", ago(o.meta ? o.meta->updated_at() : 0)}};
}

template <class Table>
using Owned = std::vector<std::unique_ptr<typename Table::NativeTableType>>;

template <class Table>
Result<Owned<Table>> readObjects(const Globals& g, const Kind& k, CallError& why) {
  auto all = readAll(g, k, why);
  if (!all) return all.error();
  Owned<Table> out;
  for (const auto& b : *all) {
    auto o = objects_codec::unpack<Table>(b, k.word);
    if (!o) {
      why = {CallError::Kind::Daemon, o.error().message};
      return o.error();
    }
    out.push_back(std::move(*o));
  }
  return out;
}

struct LsOptions {
  bool quiet = false;
  std::string format;
};

template <class Table>
int ls(const Globals& g, const Kind& k, const LsOptions& o) {
  bool quietFormat = o.quiet && (o.format.empty() || o.format == "table");
  auto format = ListingFormat::parse(quietFormat ? std::string_view("{{.ID}}") : o.format, k.table);
  if (!format) {
    std::cerr << "error: --format: " << format.error().message << "\n";
    return 2;
  }
  CallError why;
  auto all = readObjects<Table>(g, k, why);
  if (!all) return printCallError(why);
  std::sort(all->begin(), all->end(), [](const auto& a, const auto& b) {
    return a->spec && b->spec && a->spec->annotations && b->spec->annotations &&
           naturalLess(a->spec->annotations->name, b->spec->annotations->name);
  });
  std::vector<json> rows;
  int64_t now = nowNanos();
  for (const auto& s : *all) rows.push_back(row(*s, now));
  auto text = format->render(rows, Headers{{"CreatedAt", "CREATED"}, {"UpdatedAt", "UPDATED"}});
  if (!text) {
    std::cerr << "error: --format: " << text.error().message << "\n";
    return 1;
  }
  std::cout << *text;
  return 0;
}

// The object `ref` names: id, name or unique id prefix.
template <class T>
const T* find(const std::vector<std::unique_ptr<T>>& all, const std::string& ref) {
  for (const auto& o : all)
    if (o->id == ref || (o->spec && o->spec->annotations && o->spec->annotations->name == ref)) return o.get();
  const T* found = nullptr;
  for (const auto& o : all)
    if (!ref.empty() && o->id.rfind(ref, 0) == 0) {
      if (found) return nullptr;  // ambiguous
      found = o.get();
    }
  return found;
}

template <class Table>
int inspect(const Globals& g, const Kind& k, const std::vector<std::string>& refs,
            const std::string& formatFlag, bool prettyFlag) {
  auto format = InspectFormat::parse(prettyFlag ? "" : formatFlag);
  if (!format) {
    std::cerr << "error: --format: " << format.error().message << "\n";
    return 2;
  }
  CallError why;
  auto all = readObjects<Table>(g, k, why);
  if (!all) return printCallError(why);
  std::vector<json> objects;
  std::vector<std::string> missing;
  for (const auto& ref : refs) {
    const auto* o = find(*all, ref);
    if (!o) missing.push_back(ref);
    else if (prettyFlag) std::cout << pretty(*o, k.showData);
    else objects.push_back(inspectJson(*o, k.showData));
  }
  if (!prettyFlag && (!objects.empty() || format->kind() != InspectFormat::Kind::Template)) {
    auto text = format->render(objects);
    if (!text) {
      std::cerr << "error: --format: " << text.error().message << "\n";
      return 1;
    }
    std::cout << *text;
  }
  for (const auto& m : missing)
    std::cerr << "Error response from daemon: no such " << k.word << ": " << m << "\n";
  return missing.empty() ? 0 : 1;
}

template <class Table, class Spec>
void addCommands(CLI::App& app, const Kind& k, serviceapi::Body createType, Globals& g, Outcome& outcome) {
  std::string word = k.word;
  auto* top = app.add_subcommand(word, "Manage swarm " + word + "s");
  top->require_subcommand(1);

  // CLI11 binds to these; one set per instantiation (secret, config), as service.cpp's statics.
  static CreateOptions createOptions;
  static LsOptions lsOptions;
  static std::vector<std::string> inspectRefs, rmRefsStore;
  static std::string inspectFormat;
  static bool prettyStore = false;
  auto* co = &createOptions;
  auto* create = top->add_subcommand("create", "Create a " + word + " from a file or STDIN as content");
  create->add_option("NAME", co->name, "The " + word + "'s name")->required();
  create->add_option("FILE", co->file, "A file, or - for standard input")->required();
  create->add_option("-l,--label", co->labels, word + " labels (key=value)");
  create->callback([&g, &outcome, &k, co, createType] { outcome.code = cli::create<Spec>(g, k, *co, createType); });

  auto* lo = &lsOptions;
  auto* l = top->add_subcommand("ls", "List " + word + "s");
  l->alias("list");
  l->add_flag("-q,--quiet", lo->quiet, "Only display IDs");
  l->add_option("--format", lo->format, "Format output: 'table', 'table TEMPLATE', 'json' or a Go template");
  l->callback([&g, &outcome, &k, lo] { outcome.code = ls<Table>(g, k, *lo); });

  auto* refs = &inspectRefs;
  auto* fmt = &inspectFormat;
  auto* prettyFlag = &prettyStore;
  auto* in = top->add_subcommand("inspect", "Display detailed information on one or more " + word + "s");
  in->add_flag("--pretty", *prettyFlag, "Print the information in a human friendly format");
  in->add_option("-f,--format", *fmt, "Format output: 'json' or a Go template");
  in->add_option(word, *refs, word + " name, id or id prefix")->required();
  in->callback([&g, &outcome, &k, refs, fmt, prettyFlag] {
    outcome.code = inspect<Table>(g, k, *refs, *fmt, *prettyFlag);
  });

  auto* rmRefs = &rmRefsStore;
  auto* rm = top->add_subcommand("rm", "Remove one or more " + word + "s");
  rm->alias("remove");
  rm->add_option(word, *rmRefs, word + " name, id or id prefix")->required();
  rm->callback([&g, &outcome, &k, rmRefs] { outcome.code = remove(g, k, *rmRefs); });
}

}  // namespace

void addSecretCommands(CLI::App& app, Globals& g, Outcome& outcome) {
  addCommands<objects::Secret, objects::SecretSpecT>(app, kSecret, serviceapi::Body::CreateSecretRequest, g, outcome);
  addCommands<objects::Config, objects::ConfigSpecT>(app, kConfig, serviceapi::Body::CreateConfigRequest, g, outcome);
}

}  // namespace shoal::cli
