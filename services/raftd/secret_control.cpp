#include "services/raftd/secret_control.h"

#include <spdlog/spdlog.h>

#include <vector>

#include "common/ids.h"
#include "common/object_codec.h"
#include "services/raftd/service_rules.h"
#include "wire_generated.h"

namespace shoal::raftd {

namespace {

using objects::ObjectKind;
using objects::Operation;
using wire::ErrorCode;

template <class T>
using Owned = std::vector<std::unique_ptr<T>>;

ErrorCode codeOf(const Error& e) {
  auto code = static_cast<ErrorCode>(e.code);
  return code == ErrorCode::None ? ErrorCode::Internal : code;
}

Error withCode(ErrorCode code, std::string message) {
  return Error{std::move(message), static_cast<int>(code)};
}

// What differs between secrets and configs, for the templates below.
struct SecretKind {
  using Table = objects::Secret;
  using Object = objects::SecretT;
  using Spec = objects::SecretSpecT;
  static constexpr ObjectKind kKind = ObjectKind::Secret;
  static constexpr const char* kWord = "secret";
  static Status validate(const Spec& s, const Owned<Object>& all) {
    return service_rules::validateSecret(s, all);
  }
  static Result<const Object*> resolve(const std::string& q, const Owned<Object>& all) {
    return service_rules::resolveSecret(q, all);
  }
  static Status unused(const Object& o, const Owned<objects::ServiceT>& services) {
    return service_rules::checkSecretUnused(o, services);
  }
  static std::unique_ptr<Object> make(std::string id, const Spec& s) {
    return service_rules::newSecret(std::move(id), s);
  }
};

struct ConfigKind {
  using Table = objects::Config;
  using Object = objects::ConfigT;
  using Spec = objects::ConfigSpecT;
  static constexpr ObjectKind kKind = ObjectKind::Config;
  static constexpr const char* kWord = "config";
  static Status validate(const Spec& s, const Owned<Object>& all) {
    return service_rules::validateConfig(s, all);
  }
  static Result<const Object*> resolve(const std::string& q, const Owned<Object>& all) {
    return service_rules::resolveConfig(q, all);
  }
  static Status unused(const Object& o, const Owned<objects::ServiceT>& services) {
    return service_rules::checkConfigUnused(o, services);
  }
  static std::unique_ptr<Object> make(std::string id, const Spec& s) {
    return service_rules::newConfig(std::move(id), s);
  }
};

// Every object of T's kind, decoded (linearizable read).
template <class T>
void listAll(LocalStore& store, ObjectKind kind, const char* what,
             std::function<void(Result<std::shared_ptr<Owned<typename T::NativeTableType>>>)> fn) {
  store.list(kind, false, [what, fn = std::move(fn)](Result<std::vector<std::string>> r) {
    if (!r)
      return fn(Error{"reading the " + std::string(what) + "s: " + r.error().message, r.error().code});
    auto out = std::make_shared<Owned<typename T::NativeTableType>>();
    for (const auto& bytes : *r) {
      auto o = objects_codec::unpack<T>(bytes, what);
      if (!o) return fn(o.error());
      out->push_back(std::move(o).value());
    }
    fn(out);
  });
}

template <class K>
std::string nameOf(const typename K::Object& o) {
  return o.spec && o.spec->annotations ? o.spec->annotations->name : o.id;
}

}  // namespace

template <class K>
void SecretControl::create(std::shared_ptr<const typename K::Spec> spec, Done done) {
  listAll<typename K::Table>(store_, K::kKind, K::kWord, [this, spec, done](auto all) {
    if (!all) return done(all.error());
    if (auto st = K::validate(*spec, **all); !st) return done(st.error());
    auto object = K::make(newId(), *spec);
    std::string id = object->id, name = nameOf<K>(*object);
    store_.commit({{K::kKind, Operation::Create, id, 0, objects_codec::pack<typename K::Table>(*object)}},
                  [id, name, done](Result<uint64_t> index) {
      if (!index && codeOf(index.error()) == ErrorCode::Conflict)  // the unique name index
        return done(withCode(ErrorCode::Conflict, std::string(K::kWord) + " " + name + " already exists"));
      if (!index)
        return done(withCode(codeOf(index.error()), "creating " + std::string(K::kWord) + " " +
                                                        name + ": " + index.error().message));
      spdlog::info("{} {} ({}) created", K::kWord, name, id);
      done(id);
    });
  });
}

template <class K>
void SecretControl::remove(std::string query, Done done) {
  listAll<objects::Service>(store_, ObjectKind::Service, "service", [this, query, done](auto services) {
    if (!services) return done(services.error());
    listAll<typename K::Table>(store_, K::kKind, K::kWord, [this, query, done, services](auto all) {
      if (!all) return done(all.error());
      auto found = K::resolve(query, **all);
      if (!found) return done(found.error());
      if (auto st = K::unused(**found, **services); !st) return done(st.error());
      std::string id = (*found)->id, name = nameOf<K>(**found);
      uint64_t version = objects_codec::versionOf((*found)->meta);
      store_.commit({{K::kKind, Operation::Delete, id, version, {}}},
                    [id, name, done](Result<uint64_t> index) {
        if (!index && codeOf(index.error()) == ErrorCode::NotFound)
          return done(withCode(ErrorCode::NotFound, std::string(K::kWord) + " " + name +
                                                        " was removed meanwhile"));
        if (!index)
          return done(withCode(codeOf(index.error()), "removing " + std::string(K::kWord) + " " +
                                                          name + ": " + index.error().message +
                                                          "; run the command again"));
        spdlog::info("{} {} ({}) removed", K::kWord, name, id);
        done(id);
      });
    });
  });
}

void SecretControl::createSecret(std::shared_ptr<const objects::SecretSpecT> spec, Done done) {
  create<SecretKind>(std::move(spec), std::move(done));
}

void SecretControl::createConfig(std::shared_ptr<const objects::ConfigSpecT> spec, Done done) {
  create<ConfigKind>(std::move(spec), std::move(done));
}

void SecretControl::removeSecret(std::string query, Done done) {
  remove<SecretKind>(std::move(query), std::move(done));
}

void SecretControl::removeConfig(std::string query, Done done) {
  remove<ConfigKind>(std::move(query), std::move(done));
}

}  // namespace shoal::raftd
