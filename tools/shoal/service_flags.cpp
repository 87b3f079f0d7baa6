// Docker's service flags → ServiceSpec (see service_flags.h).
#include "tools/shoal/service_flags.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>
#include <memory>

#include "common/constraints.h"
#include "common/units.h"

namespace shoal::cli {
namespace {

using Values = std::vector<std::string>;

// ---- errors and scalar values

Error bad(std::string_view flag, std::string_view value, std::string_view what) {
  return Error{"invalid argument " + quoteInput(value) + " for \"--" + std::string(flag) +
               "\" flag: " + std::string(what)};
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

Result<uint64_t> parseUint(std::string_view flag, std::string_view text) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size())
    return bad(flag, text, "use a whole number, 0 or more");
  return v;
}

Result<int64_t> parseNonNegativeDuration(std::string_view flag, std::string_view text) {
  auto d = parseDuration(text);
  if (!d) return bad(flag, text, d.error().message);
  if (d->count() < 0) return bad(flag, text, "a duration cannot be negative");
  return d->count();
}

Result<int64_t> parseMemory(std::string_view flag, std::string_view text) {
  auto b = parseBytes(text);
  if (!b) return bad(flag, text, b.error().message);
  if (*b > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    return bad(flag, text, "too large");
  return static_cast<int64_t>(*b);
}

Result<bool> parseBool(std::string_view flag, std::string_view text) {
  std::string t = lower(text);
  if (t == "true" || t == "1" || t.empty()) return true;
  if (t == "false" || t == "0") return false;
  return bad(flag, text, "use true or false");
}

// key=value (or key alone) for labels and env: the key must be there.
Result<std::pair<std::string, std::string>> keyValue(std::string_view flag, std::string_view text) {
  auto eq = text.find('=');
  std::string key(text.substr(0, eq));
  if (key.empty() || key.find_first_of(" \t\n") != std::string::npos)
    return bad(flag, text, "use KEY=VALUE (or KEY), with a key and no spaces in it");
  return std::pair{key,
                   eq == std::string_view::npos ? std::string() : std::string(text.substr(eq + 1))};
}

// Docker reads --mount, --secret, --publish and --network as one CSV record (encoding/csv):
// fields split on commas, a field in double quotes may hold commas ("" is a quote).
Result<Values> csvFields(std::string_view flag, std::string_view text) {
  Values out(1);
  bool quoted = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (quoted && c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
      out.back() += '"';
      ++i;
    } else if (c == '"') {
      quoted = !quoted;
    } else if (c == ',' && !quoted) {
      out.emplace_back();
    } else {
      out.back() += c;
    }
  }
  if (quoted) return bad(flag, text, "a quote is not closed");
  return out;
}

// A CSV field key=value, the key in lower case; a key alone has no value.
std::pair<std::string, std::optional<std::string>> field(std::string_view f) {
  auto eq = f.find('=');
  if (eq == std::string_view::npos) return {lower(f), std::nullopt};
  return {lower(f.substr(0, eq)), std::string(f.substr(eq + 1))};
}

// ---- the parts of the spec, made when a flag first needs them

template <class T>
T& ensure(std::unique_ptr<T>& p) {
  if (!p) p = std::make_unique<T>();
  return *p;
}

objects::TaskSpecT& taskOf(objects::ServiceSpecT& s) { return ensure(s.task); }
objects::ContainerSpecT& containerOf(objects::ServiceSpecT& s) {
  return ensure(taskOf(s).container);
}
objects::ResourcesT& limitsOf(objects::ServiceSpecT& s) {
  return ensure(ensure(taskOf(s).resources).limits);
}
objects::ResourcesT& reservationsOf(objects::ServiceSpecT& s) {
  return ensure(ensure(taskOf(s).resources).reservations);
}
objects::RestartPolicyT& restartOf(objects::ServiceSpecT& s) { return ensure(taskOf(s).restart); }
objects::PlacementT& placementOf(objects::ServiceSpecT& s) { return ensure(taskOf(s).placement); }
objects::HealthConfigT& healthOf(objects::ServiceSpecT& s) {
  return ensure(containerOf(s).healthcheck);
}
objects::EndpointSpecT& endpointOf(objects::ServiceSpecT& s) { return ensure(s.endpoint); }
objects::ServiceModeT& modeOf(objects::ServiceSpecT& s) { return ensure(s.mode); }
objects::AnnotationsT& annotationsOf(objects::ServiceSpecT& s) { return ensure(s.annotations); }

// ---- lists keyed by something: the add/rm pairs of `service update`

using KeyValues = std::vector<std::unique_ptr<objects::KeyValueT>>;

void putLabel(KeyValues& labels, const std::string& key, const std::string& value) {
  auto it =
      std::find_if(labels.begin(), labels.end(), [&](auto& kv) { return kv && kv->key == key; });
  if (it == labels.end()) {
    auto kv = std::make_unique<objects::KeyValueT>();
    kv->key = key;
    it = labels.insert(
        std::upper_bound(labels.begin(), labels.end(), key,
                         [](const std::string& k, auto& e) { return e && k < e->key; }),
        std::move(kv));
  }
  (*it)->value = value;
}

void eraseLabel(KeyValues& labels, std::string_view key) {
  std::erase_if(labels, [&](auto& kv) { return kv && kv->key == key; });
}

Status addLabels(std::string_view flag, const Values& values, KeyValues& labels) {
  for (const auto& v : values) {
    auto kv = keyValue(flag, v);
    if (!kv) return kv.error();
    putLabel(labels, kv->first, kv->second);
  }
  return {};
}

std::string envKey(std::string_view env) { return std::string(env.substr(0, env.find('='))); }

Status addEnv(std::string_view flag, const Values& values, std::vector<std::string>& env) {
  for (const auto& v : values) {
    if (auto kv = keyValue(flag, v); !kv) return kv.error();
    std::string key = envKey(v);
    auto it = std::find_if(env.begin(), env.end(), [&](auto& e) { return envKey(e) == key; });
    if (it != env.end())
      *it = v;
    else
      env.push_back(v);
  }
  return {};
}

void addUnique(std::vector<std::string>& list, const Values& values) {
  for (const auto& v : values)
    if (std::find(list.begin(), list.end(), v) == list.end()) list.push_back(v);
}

void removeAll(std::vector<std::string>& list, const Values& values) {
  std::erase_if(
      list, [&](auto& e) { return std::find(values.begin(), values.end(), e) != values.end(); });
}

// ---- flag by flag

// Swarm's placement language is common/constraints.h's, the one raftd checks a spec with.
Status checkConstraint(std::string_view flag, std::string_view c) {
  if (auto parsed = constraints::parseConstraint(c); !parsed)
    return bad(flag, c, parsed.error().message);
  return {};
}

Result<objects::PlacementPreferenceT> parsePreference(std::string_view flag,
                                                      std::string_view text) {
  auto parsed = constraints::parsePreference(text);
  if (!parsed) return bad(flag, text, parsed.error().message);
  objects::PlacementPreferenceT p;
  p.spread_descriptor = parsed->text;
  return p;
}

Result<objects::ServiceModeKind> parseMode(std::string_view text) {
  if (text == "replicated") return objects::ServiceModeKind::Replicated;
  if (text == "global") return objects::ServiceModeKind::Global;
  if (text == "replicated-job") return objects::ServiceModeKind::ReplicatedJob;
  if (text == "global-job") return objects::ServiceModeKind::GlobalJob;
  return bad("mode", text, "use replicated, global, replicated-job or global-job");
}

Result<objects::RestartCondition> parseCondition(std::string_view text) {
  if (text == "none") return objects::RestartCondition::None;
  if (text == "on-failure") return objects::RestartCondition::OnFailure;
  if (text == "any") return objects::RestartCondition::Any;
  return bad("restart-condition", text, "use none, on-failure or any");
}

Result<objects::UpdateFailureAction> parseFailureAction(std::string_view flag,
                                                        std::string_view text, bool rollback) {
  if (text == "pause") return objects::UpdateFailureAction::Pause;
  if (text == "continue") return objects::UpdateFailureAction::Continue;
  if (text == "rollback" && !rollback) return objects::UpdateFailureAction::Rollback;
  return bad(flag, text, rollback ? "use pause or continue" : "use pause, continue or rollback");
}

Result<objects::UpdateOrder> parseOrder(std::string_view flag, std::string_view text) {
  if (text == "stop-first") return objects::UpdateOrder::StopFirst;
  if (text == "start-first") return objects::UpdateOrder::StartFirst;
  return bad(flag, text, "use stop-first or start-first");
}

Result<float> parseRatio(std::string_view flag, std::string_view text) {
  std::string s(text);
  char* end = nullptr;
  double v = s.empty() ? NAN : std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || !std::isfinite(v) || v < 0 || v > 1)
    return bad(flag, text, "use a number from 0 to 1, e.g. 0.2");
  return static_cast<float>(v);
}

// --update-* and --rollback-* share their handlers; `rollback` picks the table.
using Handler = std::function<Status(std::string_view flag, const Values&, objects::ServiceSpecT&)>;

// A table made here starts from Swarm's parallelism 1 (docker's flag default): raftd fills the
// defaults of a table that is absent only, and 0 would mean "all at once".
objects::UpdateConfigT& configOf(objects::ServiceSpecT& s, bool rollback) {
  auto& config = rollback ? s.rollback : s.update;
  if (!config) {
    config = std::make_unique<objects::UpdateConfigT>();
    config->parallelism = 1;
  }
  return *config;
}

void addUpdateConfigHandlers(std::map<std::string, Handler, std::less<>>& h, bool rollback) {
  std::string p = rollback ? "rollback-" : "update-";
  h[p + "parallelism"] = [rollback](auto flag, auto& v, auto& s) -> Status {
    auto n = parseUint(flag, v.back());
    if (!n) return n.error();
    configOf(s, rollback).parallelism = *n;
    return {};
  };
  h[p + "delay"] = [rollback](auto flag, auto& v, auto& s) -> Status {
    auto d = parseNonNegativeDuration(flag, v.back());
    if (!d) return d.error();
    configOf(s, rollback).delay = *d;
    return {};
  };
  h[p + "monitor"] = [rollback](auto flag, auto& v, auto& s) -> Status {
    auto d = parseNonNegativeDuration(flag, v.back());
    if (!d) return d.error();
    configOf(s, rollback).monitor = *d;
    return {};
  };
  h[p + "failure-action"] = [rollback](auto flag, auto& v, auto& s) -> Status {
    auto a = parseFailureAction(flag, v.back(), rollback);
    if (!a) return a.error();
    configOf(s, rollback).failure_action = *a;
    return {};
  };
  h[p + "max-failure-ratio"] = [rollback](auto flag, auto& v, auto& s) -> Status {
    auto r = parseRatio(flag, v.back());
    if (!r) return r.error();
    configOf(s, rollback).max_failure_ratio = *r;
    return {};
  };
  h[p + "order"] = [rollback](auto flag, auto& v, auto& s) -> Status {
    auto o = parseOrder(flag, v.back());
    if (!o) return o.error();
    configOf(s, rollback).order = *o;
    return {};
  };
}

// A handler that sets one scalar from the flag's last value.
template <class Parse, class Set>
Handler scalar(Parse parse, Set set) {
  return [parse, set](std::string_view flag, const Values& v, objects::ServiceSpecT& s) -> Status {
    auto x = parse(flag, v.back());
    if (!x) return x.error();
    set(s, *x);
    return {};
  };
}

Result<std::string> anyText(std::string_view, std::string_view text) { return std::string(text); }

Result<std::string> nonEmpty(std::string_view flag, std::string_view text) {
  if (text.empty()) return bad(flag, text, "cannot be empty");
  return std::string(text);
}

Result<int64_t> parsePids(std::string_view flag, std::string_view text) {
  auto n = parseUint(flag, text);
  if (!n) return n.error();
  if (*n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    return bad(flag, text, "too large");
  return static_cast<int64_t>(*n);
}

Result<int32_t> parseRetries(std::string_view flag, std::string_view text) {
  auto n = parseUint(flag, text);
  if (!n || *n > static_cast<uint64_t>(std::numeric_limits<int32_t>::max()))
    return bad(flag, text, "use a whole number from 0 to 2147483647");
  return static_cast<int32_t>(*n);
}

// Splits --args and --entrypoint like a shell: words on blanks, single and double quotes.
Result<Values> shellWords(std::string_view flag, std::string_view text) {
  Values out;
  std::string word;
  bool inWord = false;
  char quote = 0;
  for (char c : text) {
    if (quote) {
      if (c == quote)
        quote = 0;
      else
        word += c;
    } else if (c == '\'' || c == '"') {
      quote = c;
      inWord = true;
    } else if (c == ' ' || c == '\t' || c == '\n') {
      if (inWord) out.push_back(std::move(word));
      word.clear();
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (quote) return bad(flag, text, "a quote is not closed");
  if (inWord) out.push_back(std::move(word));
  return out;
}

void addScalarHandlers(std::map<std::string, Handler, std::less<>>& h) {
  h["replicas-max-per-node"] =
      scalar(parseUint, [](auto& s, uint64_t n) { placementOf(s).max_replicas = n; });
  h["limit-cpu"] = scalar(parseCpus, [](auto& s, int64_t n) { limitsOf(s).nano_cpus = n; });
  h["limit-memory"] = scalar(parseMemory, [](auto& s, int64_t n) { limitsOf(s).memory_bytes = n; });
  h["limit-pids"] = scalar(parsePids, [](auto& s, int64_t n) { limitsOf(s).pids = n; });
  h["reserve-cpu"] = scalar(parseCpus, [](auto& s, int64_t n) { reservationsOf(s).nano_cpus = n; });
  h["reserve-memory"] =
      scalar(parseMemory, [](auto& s, int64_t n) { reservationsOf(s).memory_bytes = n; });
  h["restart-condition"] =
      scalar([](auto, auto t) { return parseCondition(t); },
             [](auto& s, objects::RestartCondition c) { restartOf(s).condition = c; });
  h["restart-delay"] =
      scalar(parseNonNegativeDuration, [](auto& s, int64_t d) { restartOf(s).delay = d; });
  h["restart-max-attempts"] =
      scalar(parseUint, [](auto& s, uint64_t n) { restartOf(s).max_attempts = n; });
  h["restart-window"] =
      scalar(parseNonNegativeDuration, [](auto& s, int64_t d) { restartOf(s).window = d; });
  h["stop-grace-period"] = scalar(parseNonNegativeDuration,
                                  [](auto& s, int64_t d) { containerOf(s).stop_grace_period = d; });
  h["stop-signal"] =
      scalar(nonEmpty, [](auto& s, std::string v) { containerOf(s).stop_signal = v; });
  h["health-cmd"] = scalar(nonEmpty, [](auto& s, std::string v) {
    healthOf(s).test = {"CMD-SHELL", v};
  });
  h["health-interval"] =
      scalar(parseNonNegativeDuration, [](auto& s, int64_t d) { healthOf(s).interval = d; });
  h["health-timeout"] =
      scalar(parseNonNegativeDuration, [](auto& s, int64_t d) { healthOf(s).timeout = d; });
  h["health-retries"] = scalar(parseRetries, [](auto& s, int32_t n) { healthOf(s).retries = n; });
  h["health-start-period"] =
      scalar(parseNonNegativeDuration, [](auto& s, int64_t d) { healthOf(s).start_period = d; });
  h["no-healthcheck"] = scalar(parseBool, [](auto& s, bool on) {
    if (!on) return;
    healthOf(s) = objects::HealthConfigT{};
    healthOf(s).test = {"NONE"};
  });
  h["user"] = scalar(anyText, [](auto& s, std::string v) { containerOf(s).user = v; });
  h["workdir"] = scalar(anyText, [](auto& s, std::string v) { containerOf(s).dir = v; });
  h["hostname"] = scalar(anyText, [](auto& s, std::string v) { containerOf(s).hostname = v; });
  h["read-only"] = scalar(parseBool, [](auto& s, bool on) { containerOf(s).read_only = on; });
  h["init"] = scalar(parseBool, [](auto& s, bool on) { containerOf(s).init = on; });
  h["entrypoint"] = scalar(shellWords, [](auto& s, Values v) { containerOf(s).command = v; });
  h["endpoint-mode"] = scalar(
      [](std::string_view flag, std::string_view t) -> Result<objects::ResolutionMode> {
        if (t == "vip") return objects::ResolutionMode::Vip;
        if (t == "dnsrr") return objects::ResolutionMode::Dnsrr;
        return bad(flag, t, "use vip or dnsrr");
      },
      [](auto& s, objects::ResolutionMode m) { endpointOf(s).mode = m; });
  addUpdateConfigHandlers(h, false);
  addUpdateConfigHandlers(h, true);
}

// --cap-add and --cap-drop: docker upper-cases and adds CAP_ (cli opts/capabilities.go).
std::string normalizeCapability(std::string_view cap) {
  std::string c;
  for (char ch : cap) c += static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  if (c != "ALL" && c.rfind("CAP_", 0) != 0) c = "CAP_" + c;
  return c;
}

Values capabilities(const Values& values) {
  Values out;
  for (const auto& v : values) out.push_back(normalizeCapability(v));
  return out;
}

// The list flags, as create adds them (and update's -add flags do).
Status addMounts(const Values& v, objects::ServiceSpecT& s) {
  auto& mounts = containerOf(s).mounts;
  for (const auto& text : v) {
    auto m = parseMount(text);
    if (!m) return m.error();
    std::erase_if(mounts, [&](auto& e) { return e && e->target == m->target; });
    mounts.push_back(std::make_unique<objects::MountT>(std::move(*m)));
  }
  return {};
}

Status addPorts(std::string_view flag, const Values& v, objects::ServiceSpecT& s) {
  auto& ports = endpointOf(s).ports;
  for (const auto& text : v) {
    auto parsed = parsePublish(text);
    if (!parsed) return bad(flag, text, parsed.error().message);
    for (auto& p : *parsed) {
      // A published port is one per protocol: a new mapping of it replaces the old one.
      std::erase_if(ports, [&](auto& e) {
        return e && e->protocol == p.protocol &&
               (p.published_port ? e->published_port == p.published_port
                                 : !e->published_port && e->target_port == p.target_port);
      });
      ports.push_back(std::make_unique<objects::PortConfigT>(std::move(p)));
    }
  }
  return {};
}

Status addSecrets(std::string_view flag, const Values& v, objects::ServiceSpecT& s) {
  auto& secrets = containerOf(s).secrets;
  for (const auto& text : v) {
    auto r = parseSecret(flag, text);
    if (!r) return r.error();
    std::string target = r->file ? r->file->name : "";
    std::erase_if(secrets, [&](auto& e) { return e && e->file && e->file->name == target; });
    secrets.push_back(std::make_unique<objects::SecretReferenceT>(std::move(*r)));
  }
  return {};
}

Status addConfigs(std::string_view flag, const Values& v, objects::ServiceSpecT& s) {
  auto& configs = containerOf(s).configs;
  for (const auto& text : v) {
    auto r = parseSecret(flag, text);  // the same form as --secret
    if (!r) return r.error();
    auto c = std::make_unique<objects::ConfigReferenceT>();
    c->config_name = r->secret_name;
    c->file = std::move(r->file);
    std::erase_if(configs, [&](auto& e) {
      return e && e->file && c->file && e->file->name == c->file->name;
    });
    configs.push_back(std::move(c));
  }
  return {};
}

Status addNetworks(const Values& v, objects::ServiceSpecT& s) {
  auto& networks = taskOf(s).networks;
  for (const auto& text : v) {
    auto n = parseNetwork(text);
    if (!n) return n.error();
    std::erase_if(networks, [&](auto& e) { return e && e->target == n->target; });
    networks.push_back(std::make_unique<objects::NetworkAttachmentConfigT>(std::move(*n)));
  }
  return {};
}

Status addConstraints(std::string_view flag, const Values& v, objects::ServiceSpecT& s) {
  for (const auto& c : v)
    if (auto ok = checkConstraint(flag, c); !ok) return ok;
  addUnique(placementOf(s).constraints, v);
  return {};
}

Status addPreferences(std::string_view flag, const Values& v, objects::ServiceSpecT& s) {
  auto& prefs = placementOf(s).preferences;
  for (const auto& text : v) {
    auto p = parsePreference(flag, text);
    if (!p) return p.error();
    bool known = std::any_of(prefs.begin(), prefs.end(), [&](auto& e) {
      return e && e->spread_descriptor == p->spread_descriptor;
    });
    if (!known) prefs.push_back(std::make_unique<objects::PlacementPreferenceT>(std::move(*p)));
  }
  return {};
}

void addListHandlers(std::map<std::string, Handler, std::less<>>& h, std::string_view suffix) {
  std::string sfx(suffix);
  h["env" + sfx] = [](auto flag, auto& v, auto& s) { return addEnv(flag, v, containerOf(s).env); };
  h["label" + sfx] = [](auto flag, auto& v, auto& s) {
    return addLabels(flag, v, annotationsOf(s).labels);
  };
  h["container-label" + sfx] = [](auto flag, auto& v, auto& s) {
    return addLabels(flag, v, containerOf(s).labels);
  };
  h["constraint" + sfx] = [](auto flag, auto& v, auto& s) { return addConstraints(flag, v, s); };
  h["placement-pref" + sfx] = [](auto flag, auto& v, auto& s) {
    return addPreferences(flag, v, s);
  };
  h["mount" + sfx] = [](auto, auto& v, auto& s) { return addMounts(v, s); };
  h["publish" + sfx] = [](auto flag, auto& v, auto& s) { return addPorts(flag, v, s); };
  h["secret" + sfx] = [](auto flag, auto& v, auto& s) { return addSecrets(flag, v, s); };
  h["config" + sfx] = [](auto flag, auto& v, auto& s) { return addConfigs(flag, v, s); };
  h["network" + sfx] = [](auto, auto& v, auto& s) { return addNetworks(v, s); };
}

// --cap-add X also takes X out of the dropped ones, and --cap-drop the other way round, as
// docker's update does; for create both lists are just the flags'.
void addCapabilityHandlers(std::map<std::string, Handler, std::less<>>& h) {
  h["cap-add"] = [](auto, auto& v, auto& s) -> Status {
    auto caps = capabilities(v);
    removeAll(containerOf(s).capability_drop, caps);
    addUnique(containerOf(s).capability_add, caps);
    return {};
  };
  h["cap-drop"] = [](auto, auto& v, auto& s) -> Status {
    auto caps = capabilities(v);
    removeAll(containerOf(s).capability_add, caps);
    addUnique(containerOf(s).capability_drop, caps);
    return {};
  };
}

// ---- update's removals

std::string portKey(std::string_view text) {
  // "80", "80/udp" or "8080:80": the target port, and the protocol when given.
  auto colon = text.rfind(':');
  return std::string(colon == std::string_view::npos ? text : text.substr(colon + 1));
}

Status removePorts(std::string_view flag, const Values& v, objects::ServiceSpecT& s) {
  auto& ports = endpointOf(s).ports;
  for (const auto& text : v) {
    std::string key = portKey(text);
    auto slash = key.find('/');
    auto target = parseUint(flag, key.substr(0, slash));
    if (!target || *target == 0 || *target > 65535)
      return bad(flag, text, "give the target port of a published port, e.g. 80 or 80/udp");
    std::optional<objects::PortProtocol> proto;
    if (slash != std::string::npos) {
      std::string p = lower(key.substr(slash + 1));
      if (p == "tcp")
        proto = objects::PortProtocol::Tcp;
      else if (p == "udp")
        proto = objects::PortProtocol::Udp;
      else if (p == "sctp")
        proto = objects::PortProtocol::Sctp;
      else
        return bad(flag, text, "the protocol is tcp, udp or sctp");
    }
    std::erase_if(ports, [&](auto& e) {
      return e && e->target_port == *target && (!proto || e->protocol == *proto);
    });
  }
  return {};
}

void addRemoveHandlers(std::map<std::string, Handler, std::less<>>& h) {
  h["env-rm"] = [](auto, auto& v, auto& s) -> Status {
    std::erase_if(containerOf(s).env, [&](auto& e) {
      return std::any_of(v.begin(), v.end(), [&](auto& k) { return envKey(k) == envKey(e); });
    });
    return {};
  };
  h["label-rm"] = [](auto, auto& v, auto& s) -> Status {
    for (const auto& k : v) eraseLabel(annotationsOf(s).labels, envKey(k));
    return {};
  };
  h["container-label-rm"] = [](auto, auto& v, auto& s) -> Status {
    for (const auto& k : v) eraseLabel(containerOf(s).labels, envKey(k));
    return {};
  };
  h["constraint-rm"] = [](auto, auto& v, auto& s) -> Status {
    removeAll(placementOf(s).constraints, v);
    return {};
  };
  h["placement-pref-rm"] = [](auto flag, auto& v, auto& s) -> Status {
    for (const auto& text : v) {
      auto p = parsePreference(flag, text);
      if (!p) return p.error();
      std::erase_if(placementOf(s).preferences,
                    [&](auto& e) { return e && e->spread_descriptor == p->spread_descriptor; });
    }
    return {};
  };
  h["mount-rm"] = [](auto, auto& v, auto& s) -> Status {
    std::erase_if(containerOf(s).mounts, [&](auto& e) {
      return e && std::find(v.begin(), v.end(), e->target) != v.end();
    });
    return {};
  };
  h["publish-rm"] = [](auto flag, auto& v, auto& s) { return removePorts(flag, v, s); };
  h["secret-rm"] = [](auto, auto& v, auto& s) -> Status {
    std::erase_if(containerOf(s).secrets, [&](auto& e) {
      return e && std::any_of(v.begin(), v.end(),
                              [&](auto& n) { return n == e->secret_name || n == e->secret_id; });
    });
    return {};
  };
  h["config-rm"] = [](auto, auto& v, auto& s) -> Status {
    std::erase_if(containerOf(s).configs, [&](auto& e) {
      return e && std::any_of(v.begin(), v.end(),
                              [&](auto& n) { return n == e->config_name || n == e->config_id; });
    });
    return {};
  };
  h["network-rm"] = [](auto, auto& v, auto& s) -> Status {
    std::erase_if(taskOf(s).networks, [&](auto& e) {
      return e && std::find(v.begin(), v.end(), e->target) != v.end();
    });
    return {};
  };
}

// ---- the handler tables

const std::map<std::string, Handler, std::less<>>& createHandlers() {
  static const auto handlers = [] {
    std::map<std::string, Handler, std::less<>> h;
    addScalarHandlers(h);
    addListHandlers(h, "");
    addCapabilityHandlers(h);
    h["name"] = scalar(nonEmpty, [](auto& s, std::string v) { annotationsOf(s).name = v; });
    return h;
  }();
  return handlers;
}

const std::map<std::string, Handler, std::less<>>& updateHandlers() {
  static const auto handlers = [] {
    std::map<std::string, Handler, std::less<>> h;
    addScalarHandlers(h);
    addListHandlers(h, "-add");
    addCapabilityHandlers(h);
    addRemoveHandlers(h);
    h["image"] = scalar(nonEmpty, [](auto& s, std::string v) { containerOf(s).image = v; });
    h["args"] = scalar(shellWords, [](auto& s, Values v) { containerOf(s).args = v; });
    h["force"] = scalar(parseBool, [](auto& s, bool on) {
      if (on) ++taskOf(s).force_update;
    });
    return h;
  }();
  return handlers;
}

// Flags whose removal must run before the additions of the same list.
bool isRemoval(std::string_view name) {
  return name.size() > 3 && name.substr(name.size() - 3) == "-rm";
}

Status applyHandlers(const std::map<std::string, Handler, std::less<>>& handlers,
                     const FlagValues& flags, objects::ServiceSpecT& spec, bool removals) {
  for (const auto& [name, values] : flags) {
    if (values.empty() || isRemoval(name) != removals) continue;
    auto it = handlers.find(name);
    if (it == handlers.end()) continue;  // handled by the caller (mode, replicas, ...)
    if (auto s = it->second(name, values, spec); !s) return s;
  }
  return {};
}

const std::string* last(const FlagValues& flags, std::string_view name) {
  auto it = flags.find(name);
  return it == flags.end() || it->second.empty() ? nullptr : &it->second.back();
}

bool anyHealthFlag(const FlagValues& flags) {
  for (const char* f :
       {"health-cmd", "health-interval", "health-timeout", "health-retries", "health-start-period"})
    if (last(flags, f)) return true;
  return false;
}

Status checkHealthFlags(const FlagValues& flags) {
  const auto* off = last(flags, "no-healthcheck");
  if (off && *off == "true" && anyHealthFlag(flags))
    return Error{"--no-healthcheck conflicts with --health-* options: give one or the other"};
  return {};
}

// --mode, --replicas and --max-concurrent together make the mode (docker's ToServiceMode).
Status applyMode(const FlagValues& flags, objects::ServiceSpecT& spec) {
  auto kind = objects::ServiceModeKind::Replicated;
  if (const auto* m = last(flags, "mode")) {
    auto k = parseMode(*m);
    if (!k) return k.error();
    kind = *k;
  }
  std::optional<uint64_t> replicas, concurrent;
  if (const auto* r = last(flags, "replicas")) {
    auto n = parseReplicas("replicas", *r);
    if (!n) return n.error();
    replicas = *n;
  }
  if (const auto* c = last(flags, "max-concurrent")) {
    auto n = parseUint("max-concurrent", *c);
    if (!n) return n.error();
    concurrent = *n;
  }
  bool replicated = kind == objects::ServiceModeKind::Replicated ||
                    kind == objects::ServiceModeKind::ReplicatedJob;
  if (replicas && !replicated)
    return Error{"--replicas can only be used with replicated or replicated-job mode"};
  if (concurrent && kind != objects::ServiceModeKind::ReplicatedJob)
    return Error{"--max-concurrent can only be used with replicated-job mode"};
  if (last(flags, "replicas-max-per-node") && !replicated)
    return Error{"--replicas-max-per-node can only be used with replicated or replicated-job mode"};
  auto& mode = modeOf(spec);
  mode.kind = kind;
  if (kind == objects::ServiceModeKind::Replicated) mode.replicas = replicas.value_or(1);
  if (kind == objects::ServiceModeKind::ReplicatedJob) {
    mode.total_completions = replicas.value_or(1);
    mode.max_concurrent = concurrent.value_or(replicas.value_or(1));
  }
  return {};
}

// update's --replicas and --max-concurrent on the mode the service has.
Status updateMode(const FlagValues& flags, objects::ServiceSpecT& spec) {
  auto& mode = modeOf(spec);
  if (const auto* r = last(flags, "replicas")) {
    auto n = parseReplicas("replicas", *r);
    if (!n) return n.error();
    if (mode.kind == objects::ServiceModeKind::Replicated)
      mode.replicas = *n;
    else if (mode.kind == objects::ServiceModeKind::ReplicatedJob)
      mode.total_completions = *n;
    else
      return Error{
          "--replicas can only be used with replicated or replicated-job mode: this service is "
          "global"};
  }
  if (const auto* c = last(flags, "max-concurrent")) {
    auto n = parseUint("max-concurrent", *c);
    if (!n) return n.error();
    if (mode.kind != objects::ServiceModeKind::ReplicatedJob)
      return Error{"--max-concurrent can only be used with replicated-job mode"};
    mode.max_concurrent = *n;
  }
  return {};
}

// Shared help texts: docker's, with the forms shoal accepts.
std::vector<FlagInfo> commonFlags() {
  return {
      {"replicas", "", "Number of tasks"},
      {"max-concurrent", "",
       "Number of job tasks to run concurrently (default equal to --replicas)"},
      {"replicas-max-per-node", "", "Maximum number of tasks per node (default 0 = unlimited)"},
      {"limit-cpu", "", "Limit CPUs, e.g. 0.5"},
      {"limit-memory", "", "Limit Memory, e.g. 512M"},
      {"limit-pids", "", "Limit maximum number of processes (default 0 = unlimited)"},
      {"reserve-cpu", "", "Reserve CPUs"},
      {"reserve-memory", "", "Reserve Memory"},
      {"restart-condition", "",
       "Restart when condition is met (\"none\", \"on-failure\", \"any\") (default \"any\")"},
      {"restart-delay", "", "Delay between restart attempts (ns|us|ms|s|m|h) (default 5s)"},
      {"restart-max-attempts", "", "Maximum number of restarts before giving up"},
      {"restart-window", "", "Window used to evaluate the restart policy (ns|us|ms|s|m|h)"},
      {"update-parallelism", "",
       "Maximum number of tasks updated simultaneously (0 to update all at once)"},
      {"update-delay", "", "Delay between updates (ns|us|ms|s|m|h) (default 0s)"},
      {"update-failure-action", "",
       "Action on update failure (\"pause\", \"continue\", \"rollback\")"},
      {"update-monitor", "",
       "Duration after each task update to monitor for failure (ns|us|ms|s|m|h)"},
      {"update-max-failure-ratio", "", "Failure rate to tolerate during an update"},
      {"update-order", "", "Update order (\"start-first\", \"stop-first\")"},
      {"rollback-parallelism", "",
       "Maximum number of tasks rolled back simultaneously (0 to roll back all at once)"},
      {"rollback-delay", "", "Delay between task rollbacks (ns|us|ms|s|m|h) (default 0s)"},
      {"rollback-failure-action", "", "Action on rollback failure (\"pause\", \"continue\")"},
      {"rollback-monitor", "",
       "Duration after each task rollback to monitor for failure (ns|us|ms|s|m|h)"},
      {"rollback-max-failure-ratio", "", "Failure rate to tolerate during a rollback"},
      {"rollback-order", "", "Rollback order (\"start-first\", \"stop-first\")"},
      {"stop-grace-period", "",
       "Time to wait before force killing a container (ns|us|ms|s|m|h) (default 10s)"},
      {"stop-signal", "", "Signal to stop the container"},
      {"health-cmd", "", "Command to run to check health"},
      {"health-interval", "", "Time between running the check (ms|s|m|h)"},
      {"health-timeout", "", "Maximum time to allow one check to run (ms|s|m|h)"},
      {"health-retries", "", "Consecutive failures needed to report unhealthy"},
      {"health-start-period", "",
       "Start period for the container to initialize before counting retries towards unstable "
       "(ms|s|m|h)"},
      {"no-healthcheck", "", "Disable any container-specified HEALTHCHECK", true},
      {"user", "u", "Username or UID (format: <name|uid>[:<group|gid>])"},
      {"workdir", "w", "Working directory inside the container"},
      {"hostname", "", "Container hostname"},
      {"read-only", "", "Mount the container's root filesystem as read only", true},
      {"init", "",
       "Use an init inside each service container to forward signals and reap processes", true},
      {"entrypoint", "", "Overwrite the default ENTRYPOINT of the image"},
      {"cap-add", "", "Add Linux capabilities"},
      {"cap-drop", "", "Drop Linux capabilities"},
      {"endpoint-mode", "", "Endpoint mode (vip or dnsrr)"},
      // Read by service.cpp, which looks the credentials up (credentials.h).
      {"with-registry-auth", "", "Send registry authentication details to swarm agents", true},
  };
}

}  // namespace

// ---- the public pieces

Result<uint64_t> parseReplicas(std::string_view flag, std::string_view text) {
  auto n = parseUint(flag, text);
  if (!n) return bad(flag, text, "the number of replicas is a whole number, 0 or more");
  return n;
}

Result<int64_t> parseCpus(std::string_view flag, std::string_view text) {
  // Docker's NanoCPUs: a decimal number of CPUs, exact to the nano-CPU ("0.5" is 5e8).
  auto dot = text.find('.');
  std::string_view whole = text.substr(0, dot),
                   frac = dot == std::string_view::npos ? "" : text.substr(dot + 1);
  auto digits = [](std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (text.empty() || (whole.empty() && frac.empty()) || !digits(whole) || !digits(frac) ||
      whole.size() > 9)
    return bad(flag, text, "use a number of CPUs, e.g. 1, 0.5 or 1.25");
  if (frac.size() > 9) return bad(flag, text, "too precise: at most 9 decimal places");
  int64_t nanos = 0;
  for (char c : whole) nanos = nanos * 10 + (c - '0');
  nanos *= 1'000'000'000;
  int64_t scale = 100'000'000;
  for (char c : frac) nanos += (c - '0') * scale, scale /= 10;
  return nanos;
}

Result<objects::MountT> parseMount(std::string_view text) {
  auto fields = csvFields("mount", text);
  if (!fields) return fields.error();
  objects::MountT m;
  m.type = objects::MountType::Volume;  // docker's default
  auto fail = [&](std::string what) { return bad("mount", text, what); };
  for (const auto& f : *fields) {
    auto [key, value] = field(f);
    if (key.empty()) continue;
    std::string v = value.value_or("");
    if (key == "readonly" || key == "ro") {
      auto b = parseBool("mount", v);
      if (!b) return fail("readonly is true or false");
      m.read_only = *b;
      continue;
    }
    if (!value) return fail("invalid field '" + f + "': it must be a key=value pair");
    if (key == "type") {
      if (v == "bind")
        m.type = objects::MountType::Bind;
      else if (v == "volume")
        m.type = objects::MountType::Volume;
      else if (v == "tmpfs")
        m.type = objects::MountType::Tmpfs;
      else
        return fail("type is bind, volume or tmpfs");
    } else if (key == "source" || key == "src") {
      m.source = v;
    } else if (key == "target" || key == "dst" || key == "destination") {
      m.target = v;
    } else if (key == "volume-nocopy") {
      auto b = parseBool("mount", v);
      if (!b) return fail("volume-nocopy is true or false");
      ensure(m.volume_options).no_copy = *b;
    } else if (key == "volume-driver") {
      ensure(ensure(m.volume_options).driver_config).name = v;
    } else if (key == "volume-label") {
      auto kv = keyValue("mount", v);
      if (!kv) return fail("volume-label is KEY=VALUE");
      putLabel(ensure(m.volume_options).labels, kv->first, kv->second);
    } else if (key == "tmpfs-size") {
      auto b = parseMemory("mount", v);
      if (!b) return fail("tmpfs-size is a size, e.g. 64M");
      ensure(m.tmpfs_options).size_bytes = *b;
    } else if (key == "tmpfs-mode") {
      uint32_t mode = 0;
      auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), mode, 8);
      if (v.empty() || ec != std::errc() || end != v.data() + v.size() || mode > 07777)
        return fail("tmpfs-mode is octal permission bits, e.g. 1777");
      ensure(m.tmpfs_options).mode = mode;
    } else if (key == "bind-propagation") {
      static const std::map<std::string, objects::BindPropagation, std::less<>> kinds = {
          {"rprivate", objects::BindPropagation::RPrivate},
          {"private", objects::BindPropagation::Private},
          {"rshared", objects::BindPropagation::RShared},
          {"shared", objects::BindPropagation::Shared},
          {"rslave", objects::BindPropagation::RSlave},
          {"slave", objects::BindPropagation::Slave}};
      auto it = kinds.find(v);
      if (it == kinds.end())
        return fail("bind-propagation is rprivate, private, rshared, shared, rslave or slave");
      ensure(m.bind_options).propagation = it->second;
    } else if (key == "bind-nonrecursive") {
      auto b = parseBool("mount", v);
      if (!b) return fail("bind-nonrecursive is true or false");
      ensure(m.bind_options).non_recursive = *b;
    } else if (key != "consistency") {  // docker accepts and ignores it on Linux
      return fail("unexpected key '" + key +
                  "': use type, source, target, readonly, volume-*, tmpfs-* or bind-*");
    }
  }
  if (m.target.empty()) return fail("target is required, e.g. target=/data");
  if (m.type == objects::MountType::Bind && m.source.empty())
    return fail("a bind mount needs a source (a host path)");
  if (m.type == objects::MountType::Tmpfs && !m.source.empty())
    return fail("a tmpfs mount has no source");
  if (m.type != objects::MountType::Bind && m.bind_options)
    return fail("bind-* options are for type=bind only");
  if (m.type != objects::MountType::Volume && m.volume_options)
    return fail("volume-* options are for type=volume only");
  if (m.type != objects::MountType::Tmpfs && m.tmpfs_options)
    return fail("tmpfs-* options are for type=tmpfs only");
  return m;
}

namespace {

Result<objects::PortProtocol> parseProtocol(std::string_view text) {
  std::string p = lower(text);
  if (p == "tcp" || p.empty()) return objects::PortProtocol::Tcp;
  if (p == "udp") return objects::PortProtocol::Udp;
  if (p == "sctp") return objects::PortProtocol::Sctp;
  return Error{"the protocol is tcp, udp or sctp"};
}

// "80" or "8080-8081": a port or a range of ports.
Result<std::pair<uint32_t, uint32_t>> portRange(std::string_view text) {
  auto dash = text.find('-');
  auto one = [](std::string_view t) -> Result<uint32_t> {
    uint32_t v = 0;
    auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (t.empty() || ec != std::errc() || end != t.data() + t.size() || v == 0 || v > 65535)
      return Error{"a port is a number from 1 to 65535"};
    return v;
  };
  auto lo = one(text.substr(0, dash));
  if (!lo) return lo.error();
  if (dash == std::string_view::npos) return std::pair{*lo, *lo};
  auto hi = one(text.substr(dash + 1));
  if (!hi) return hi.error();
  if (*hi < *lo) return Error{"a port range goes from low to high"};
  return std::pair{*lo, *hi};
}

Result<std::vector<objects::PortConfigT>> parseLongPublish(const Values& fields) {
  objects::PortConfigT p;
  for (const auto& f : fields) {
    auto [key, value] = field(f);
    if (!value)
      return Error{"invalid field '" + f + "': use published=, target=, protocol= and mode="};
    if (key == "published" || key == "target") {
      auto r = portRange(*value);
      if (!r || r->first != r->second) return Error{key + " is one port, from 1 to 65535"};
      (key == "target" ? p.target_port : p.published_port) = r->first;
    } else if (key == "protocol") {
      auto proto = parseProtocol(*value);
      if (!proto) return proto.error();
      p.protocol = *proto;
    } else if (key == "mode") {
      if (*value == "ingress")
        p.publish_mode = objects::PublishMode::Ingress;
      else if (*value == "host")
        p.publish_mode = objects::PublishMode::Host;
      else
        return Error{"mode is ingress or host"};
    } else {
      return Error{"unexpected key '" + key + "': use published=, target=, protocol= and mode="};
    }
  }
  if (!p.target_port) return Error{"target= is required, the port in the container"};
  return std::vector<objects::PortConfigT>{std::move(p)};
}

}  // namespace

Result<std::vector<objects::PortConfigT>> parsePublish(std::string_view text) {
  if (text.find('=') != std::string_view::npos) {
    auto fields = csvFields("publish", text);
    if (!fields) return fields.error();
    return parseLongPublish(*fields);
  }
  // [published:]target[/protocol], each a port or a range (docker's nat.ParsePortSpec).
  auto slash = text.find('/');
  auto proto = parseProtocol(slash == std::string_view::npos ? "" : text.substr(slash + 1));
  if (!proto) return proto.error();
  std::string_view ports = text.substr(0, slash);
  if (std::count(ports.begin(), ports.end(), ':') > 1)
    return Error{
        "a host IP cannot be given: a published port is open on every node; use PUBLISHED:TARGET"};
  auto colon = ports.find(':');
  auto target = portRange(colon == std::string_view::npos ? ports : ports.substr(colon + 1));
  if (!target) return target.error();
  std::pair<uint32_t, uint32_t> published{0, 0};
  if (colon != std::string_view::npos) {
    auto pub = portRange(ports.substr(0, colon));
    if (!pub) return pub.error();
    published = *pub;
    if (published.second - published.first != target->second - target->first)
      return Error{"the published and target ranges are not the same size"};
  }
  std::vector<objects::PortConfigT> out;
  for (uint32_t i = 0; i <= target->second - target->first; ++i) {
    objects::PortConfigT p;
    p.protocol = *proto;
    p.target_port = target->first + i;
    p.published_port = published.first ? published.first + i : 0;
    out.push_back(std::move(p));
  }
  return out;
}

Result<objects::SecretReferenceT> parseSecret(std::string_view flag, std::string_view text) {
  objects::SecretReferenceT r;
  auto& file = ensure(r.file);
  file.uid = "0";
  file.gid = "0";
  file.mode = 0444;
  if (text.find_first_of("=,") == std::string_view::npos) {  // docker's short form: the name
    if (text.empty()) return bad(flag, text, "give a name, or source=NAME[,target=...]");
    r.secret_name = file.name = std::string(text);
    return r;
  }
  auto fields = csvFields(flag, text);
  if (!fields) return fields.error();
  for (const auto& f : *fields) {
    auto [key, value] = field(f);
    if (!value) return bad(flag, text, "invalid field '" + f + "': it must be a key=value pair");
    if (key == "source" || key == "src") {
      r.secret_name = *value;
    } else if (key == "target") {
      file.name = *value;
    } else if (key == "uid") {
      file.uid = *value;
    } else if (key == "gid") {
      file.gid = *value;
    } else if (key == "mode") {
      uint32_t mode = 0;
      auto [end, ec] = std::from_chars(value->data(), value->data() + value->size(), mode, 8);
      if (value->empty() || ec != std::errc() || end != value->data() + value->size() ||
          mode > 0777)
        return bad(flag, text, "mode is octal permission bits, e.g. 0400");
      file.mode = mode;
    } else {
      return bad(flag, text, "unexpected key '" + key + "': use source, target, uid, gid and mode");
    }
  }
  if (r.secret_name.empty()) return bad(flag, text, "source= is required: the name");
  if (file.name.empty()) file.name = r.secret_name;
  return r;
}

Result<objects::NetworkAttachmentConfigT> parseNetwork(std::string_view text) {
  objects::NetworkAttachmentConfigT n;
  if (text.find('=') == std::string_view::npos) {
    if (text.empty()) return bad("network", text, "give a network's name or id");
    n.target = std::string(text);
    return n;
  }
  auto fields = csvFields("network", text);
  if (!fields) return fields.error();
  for (const auto& f : *fields) {
    auto [key, value] = field(f);
    if (!value)
      return bad("network", text, "invalid field '" + f + "': it must be a key=value pair");
    if (key == "name") {
      n.target = *value;
    } else if (key == "alias") {
      n.aliases.push_back(*value);
    } else if (key == "driver-opt") {
      auto kv = keyValue("network", *value);
      if (!kv) return kv.error();
      putLabel(n.driver_attachment_opts, kv->first, kv->second);
    } else {
      return bad("network", text, "unexpected key '" + key + "': use name, alias and driver-opt");
    }
  }
  if (n.target.empty()) return bad("network", text, "name= is required");
  return n;
}

Result<ScaleArg> parseScaleArg(std::string_view text) {
  auto eq = text.rfind('=');
  if (eq == std::string_view::npos || eq == 0)
    return Error{"invalid scale specifier " + quoteInput(text) +
                 ": use SERVICE=REPLICAS, e.g. web=3"};
  auto n = parseUint("", text.substr(eq + 1));
  if (!n)
    return Error{"invalid replicas value for service " + quoteInput(text.substr(0, eq)) + ": " +
                 quoteInput(text.substr(eq + 1)) + " is not a whole number, 0 or more"};
  return ScaleArg{std::string(text.substr(0, eq)), *n};
}

const std::vector<FlagInfo>& createFlags() {
  static const auto flags = [] {
    std::vector<FlagInfo> f = {
        {"name", "", "Service name"},
        {"mode", "",
         "Service mode (\"replicated\", \"global\", \"replicated-job\", \"global-job\") (default "
         "\"replicated\")"},
        {"env", "e", "Set environment variables"},
        {"label", "l", "Service labels"},
        {"container-label", "", "Container labels"},
        {"constraint", "", "Placement constraints"},
        {"placement-pref", "", "Add a placement preference"},
        {"mount", "", "Attach a filesystem mount to the service"},
        {"secret", "", "Specify secrets to expose to the service"},
        {"config", "", "Specify configurations to expose to the service"},
        {"network", "", "Network attachments"},
        {"publish", "p", "Publish a port as a node port"},
    };
    for (auto& c : commonFlags()) f.push_back(c);
    return f;
  }();
  return flags;
}

const std::vector<FlagInfo>& updateFlags() {
  static const auto flags = [] {
    std::vector<FlagInfo> f = {
        {"image", "", "Service image tag"},
        {"args", "", "Service command args"},
        {"force", "", "Force update even if no changes require it", true},
    };
    // docker's pairs: what -add takes and what -rm names the entry by.
    const std::vector<std::array<std::string, 3>> lists = {
        {"env", "Add or update an environment variable",
         "Remove an environment variable (by name)"},
        {"label", "Add or update a service label", "Remove a service label (by key)"},
        {"container-label", "Add or update a container label", "Remove a container label (by key)"},
        {"constraint", "Add or update a placement constraint", "Remove a constraint"},
        {"placement-pref", "Add a placement preference", "Remove a placement preference"},
        {"mount", "Add or update a mount on a service", "Remove a mount by its target path"},
        {"secret", "Add or update a secret on a service", "Remove a secret (by name)"},
        {"config", "Add or update a config file on a service",
         "Remove a configuration file (by name)"},
        {"network", "Add a network", "Remove a network"},
        {"publish", "Add or update a published port", "Remove a published port by its target port"},
    };
    for (const auto& [list, add, rm] : lists) {
      f.push_back({list + "-add", "", add});
      f.push_back({list + "-rm", "", rm});
    }
    for (auto& c : commonFlags()) f.push_back(c);
    return f;
  }();
  return flags;
}

Result<objects::ServiceSpecT> specFromCreateFlags(const FlagValues& flags, std::string_view image,
                                                  const std::vector<std::string>& args) {
  objects::ServiceSpecT spec;
  if (image.empty()) return Error{"\"shoal service create\" requires at least 1 argument: IMAGE"};
  containerOf(spec).image = std::string(image);
  containerOf(spec).args = args;
  if (auto s = checkHealthFlags(flags); !s) return s.error();
  if (auto s = applyMode(flags, spec); !s) return s.error();
  if (auto s = applyHandlers(createHandlers(), flags, spec, false); !s) return s.error();
  annotationsOf(spec);  // a service always has its annotations; raftd names it when unnamed
  return spec;
}

Status applyUpdateFlags(const FlagValues& flags, objects::ServiceSpecT& spec) {
  if (auto s = checkHealthFlags(flags); !s) return s;
  if (auto s = updateMode(flags, spec); !s) return s;
  // A --health-cmd on a service whose check was switched off turns it back on.
  if (anyHealthFlag(flags) && spec.task && spec.task->container &&
      spec.task->container->healthcheck &&
      spec.task->container->healthcheck->test == std::vector<std::string>{"NONE"})
    spec.task->container->healthcheck->test.clear();
  if (auto s = applyHandlers(updateHandlers(), flags, spec, true); !s) return s;
  return applyHandlers(updateHandlers(), flags, spec, false);
}

}  // namespace shoal::cli
