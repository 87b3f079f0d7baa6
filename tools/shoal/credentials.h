#pragma once
// The user's registry credentials, kept as docker keeps them (docs/containers.md "Registry
// auth"): `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`, whose "auths" object maps
// a registry to {"auth": base64(user:password)}. `shoal login` writes it, `shoal logout`
// removes an entry, and `service create|update --with-registry-auth` and `image pull` read the
// entry of the image's registry. Other keys of the file (credsStore, proxies, ...) are kept.
//
// Keys as docker writes them: Docker Hub's is "https://index.docker.io/v1/"; another
// registry's is its host[:port]. Lookups match a key by its host (a scheme and path dropped),
// so entries written by other tools ("https://host:5000", "host:5000/v2/") are found too.

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/result.h"

namespace shoal::cli {

inline constexpr std::string_view kDockerHubKey = "https://index.docker.io/v1/";

struct Credentials {
  std::string username, password;
  std::string identityToken;  // an OAuth refresh token some registries give instead
};

// The key `shoal login SERVER` stores under: Docker Hub's for "" and any of its names
// (docker.io, index.docker.io, registry-1.docker.io, its v1 URL); else host[:port], a scheme
// and a path dropped. Errors: a server that names no host.
Result<std::string> loginKey(std::string_view server);
// The registry host a key or a server names, as common/image_ref.h names registries:
// docker.io for Docker Hub's names, else host[:port].
std::string registryHostOf(std::string_view keyOrServer);

// The credentials config.json holds for a registry host ("docker.io", "127.0.0.1:5000"), or
// nullopt when it holds none. An entry that is there but cannot be read is an error saying
// which key and why.
Result<std::optional<Credentials>> credentialsFor(const nlohmann::json& config,
                                                  std::string_view registryHost);
// config with credentials stored under key (docker's {"auth": base64(user:password)}).
nlohmann::json withCredentials(nlohmann::json config, const std::string& key,
                               const Credentials& credentials);
// config without the entries for server's registry; false when it had none.
bool removeCredentials(nlohmann::json& config, std::string_view server);

// ---- the file
// $DOCKER_CONFIG/config.json, else $HOME/.docker/config.json.
Result<std::string> configPath();
// The file's JSON object; {} when there is no file. Errors name the file.
Result<nlohmann::json> readConfig(const std::string& path);
// Written atomically (a temp file renamed over it), mode 0600, its dir made 0700 if needed.
Status writeConfig(const std::string& path, const nlohmann::json& config);

// What `--with-registry-auth` and `image pull` use: the stored credentials for a registry
// host; nullopt when none are stored.
Result<std::optional<Credentials>> storedCredentials(std::string_view registryHost);

}  // namespace shoal::cli
