// shoal login|logout (docs/containers.md "Registry auth"): the credentials are checked against
// the registry (services/agentd/registry.h, the puller's own code) and kept as docker keeps
// them (credentials.h), for `image pull` and `service create|update --with-registry-auth`.
#include <termios.h>
#include <unistd.h>

#include <iostream>
#include <string>

#include "services/agentd/registry.h"
#include "tools/shoal/cli.h"
#include "tools/shoal/credentials.h"

namespace shoal::cli {
namespace {

constexpr size_t kMaxPassword = 64 * 1024;

struct LoginOptions {
  std::string username, password, server;
  bool passwordStdin = false;
  std::vector<std::string> insecure;
};

// A line from the terminal, echoed or not (a password).
std::string prompt(const char* what, bool echo) {
  std::cout << what << std::flush;
  termios saved{};
  bool hide = !echo && ::tcgetattr(STDIN_FILENO, &saved) == 0;
  if (hide) {
    termios quiet = saved;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
  }
  std::string line;
  std::getline(std::cin, line);
  if (hide) {
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
    std::cout << "\n";
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

// --password-stdin: all of stdin, without its trailing newline (docker's way).
Result<std::string> passwordFromStdin() {
  std::string all;
  char buf[4096];
  while (std::cin.read(buf, sizeof buf) || std::cin.gcount() > 0) {
    all.append(buf, static_cast<size_t>(std::cin.gcount()));
    if (all.size() > kMaxPassword) return Error{"--password-stdin: more than 64 KiB on stdin"};
  }
  while (!all.empty() && (all.back() == '\n' || all.back() == '\r')) all.pop_back();
  return all;
}

// The user name and password: flags, stdin, or a prompt on a terminal only.
Result<Credentials> credentialsOf(const LoginOptions& o) {
  if (o.passwordStdin && !o.password.empty())
    return Error{"--password and --password-stdin are mutually exclusive"};
  if (o.passwordStdin && o.username.empty())
    return Error{"Must provide --username with --password-stdin"};
  if (!o.password.empty())
    std::cerr << "WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n";
  Credentials c{o.username, o.password, ""};
  if (o.passwordStdin) {
    auto p = passwordFromStdin();
    if (!p) return p.error();
    c.password = *p;
  }
  bool tty = ::isatty(STDIN_FILENO);
  if ((c.username.empty() || c.password.empty()) && !tty)
    return Error{"Cannot perform an interactive login from a non TTY device: give -u USER and "
                 "--password-stdin (or -p PASSWORD)"};
  if (c.username.empty()) c.username = prompt("Username: ", true);
  if (c.password.empty()) c.password = prompt("Password: ", false);
  if (c.username.empty()) return Error{"Error: Non-null Username Required"};
  if (c.password.empty()) return Error{"Error: Password Required"};
  return c;
}

int login(const LoginOptions& o) {
  auto key = loginKey(o.server);
  if (!key) {
    std::cerr << "error: " << key.error().message << "\n";
    return 1;
  }
  auto creds = credentialsOf(o);
  if (!creds) {
    std::cerr << "error: " << creds.error().message << "\n";
    return 1;
  }
  std::string host = registryHostOf(*key);
  agentd::RegistryAuth auth{creds->username, creds->password, "", *key};
  agentd::registry::Options options;
  options.insecureRegistries.insert(o.insecure.begin(), o.insecure.end());
  if (auto st = agentd::registry::checkLogin(host, auth, options); !st) {
    std::cerr << "error: " << st.error().message << "\n";
    return 1;
  }
  auto path = configPath();
  auto config = path ? readConfig(*path) : Result<nlohmann::json>(path.error());
  Status saved = config ? writeConfig(*path, withCredentials(*config, *key, *creds))
                        : Status(config.error());
  if (!saved) {
    std::cerr << "error: the login to " << host << " succeeded, but " << saved.error().message
              << "\n";
    return 1;
  }
  std::cout << "Login Succeeded\n";
  return 0;
}

int logout(const std::string& server) {
  auto key = loginKey(server);
  auto path = configPath();
  auto config = path ? readConfig(*path) : Result<nlohmann::json>(path.error());
  if (!key || !config) {
    std::cerr << "error: " << (!key ? key.error() : config.error()).message << "\n";
    return 1;
  }
  if (!removeCredentials(*config, *key)) {
    std::cout << "Not logged in to " << *key << "\n";
    return 0;
  }
  std::cout << "Removing login credentials for " << *key << "\n";
  if (auto st = writeConfig(*path, *config); !st) {
    std::cerr << "error: " << st.error().message << "\n";
    return 1;
  }
  return 0;
}

}  // namespace

void addLoginCommands(CLI::App& app, Globals&, Outcome& outcome) {
  static LoginOptions o;
  auto* in = app.add_subcommand("login", "Log in to a registry (Docker Hub by default)");
  in->add_option("-u,--username", o.username, "Username");
  in->add_option("-p,--password", o.password, "Password");
  in->add_flag("--password-stdin", o.passwordStdin, "Take the password from stdin");
  in->add_option("--insecure-registry", o.insecure,
                 "Talk plain HTTP to this registry (host:port), as agentd's flag of that name; "
                 "localhost and 127.0.0.0/8 always are");
  in->add_option("SERVER", o.server, "The registry, host[:port] (default Docker Hub)");
  in->callback([&outcome] { outcome.code = login(o); });

  static std::string logoutServer;
  auto* out = app.add_subcommand("logout", "Log out from a registry (Docker Hub by default)");
  out->add_option("SERVER", logoutServer, "The registry, host[:port] (default Docker Hub)");
  out->callback([&outcome] { outcome.code = logout(logoutServer); });
}

}  // namespace shoal::cli
