#pragma once
// The secrets and configs of the node's tasks (docs/containers.md "Secrets and configs"), as
// the assignments carry them (dispatch.fbs Assignments.secrets/configs). In memory only, as
// Swarm keeps them: never written to the agent's disk except into a task's tmpfs. A complete
// set replaces what is held; an increment adds to it. The executor reads them when it
// prepares a task; a task whose secret is not here is REJECTED, naming it.

#include <map>
#include <optional>
#include <string>

#include "objects_generated.h"

namespace shoal::agentd {

class SecretStore {
 public:
  struct Item {
    std::string name;
    std::string data;
  };

  template <class Secrets, class Configs>
  void take(const Secrets* secrets, const Configs* configs, bool full) {
    if (full) {
      secrets_.clear();
      configs_.clear();
    }
    if (secrets)
      for (const auto* s : *secrets) put(secrets_, s->id(), s->spec());
    if (configs)
      for (const auto* c : *configs) put(configs_, c->id(), c->spec());
  }

  std::optional<Item> secret(const std::string& id) const { return find(secrets_, id); }
  std::optional<Item> config(const std::string& id) const { return find(configs_, id); }
  size_t size() const { return secrets_.size() + configs_.size(); }

 private:
  template <class Spec>
  static void put(std::map<std::string, Item>& into, const flatbuffers::String* id,
                  const Spec* spec) {
    if (!id || !spec) return;
    Item item;
    if (spec->annotations() && spec->annotations()->name())
      item.name = spec->annotations()->name()->str();
    if (spec->data()) item.data.assign(spec->data()->begin(), spec->data()->end());
    into[id->str()] = std::move(item);
  }
  static std::optional<Item> find(const std::map<std::string, Item>& in, const std::string& id) {
    auto it = in.find(id);
    if (it == in.end()) return std::nullopt;
    return it->second;
  }

  std::map<std::string, Item> secrets_, configs_;
};

}  // namespace shoal::agentd
