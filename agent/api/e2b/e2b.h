// E2B's API on swissbox: what the control plane, envd and the code interpreter's routes
// share. The official SDKs, pointed at an agent or a scheduler with E2B_API_URL and
// E2B_SANDBOX_URL (one plain-HTTP base URL), must work unchanged; ../shared/
// e2b-protocol-facts.md has what they send and expect. Internal to agent/api.
//
//   control plane   /sandboxes…, /v2/sandboxes…   X-API-KEY → a tenant (the token file)
//   envd            any path with E2b-Sandbox-Id   X-Access-Token = the sandbox's token
//   interpreter     the same, E2b-Sandbox-Port: 49999 (/execute, /contexts)
//
// Errors use E2B's shape {"code": <status>, "message": "…"}; the SDKs read the JSON code.
#pragma once

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "agent/runtime/sandbox_spec.h"
#include "agent/sandbox/sandbox.h"
#include "common/runner_protocol.h"
#include "common/e2b_routes.h"
#include "common/error.h"
#include "common/http_server.h"

namespace swissbox {
struct WatchHandle;  // agent/sandbox/sandbox_ops.h
}

namespace swissbox::e2b {

// The envd version swissbox answers as: ≥ 0.4.0 (the SDK sends no user), ≥ 0.5.2
// (closeStdin), < 0.5.7 (uploads stay multipart).
inline constexpr char kEnvdVersion[] = "0.5.4";
inline constexpr char kCodeInterpreterPort[] = "49999";
// A sandbox's default life, as E2B's (seconds).
inline constexpr int64_t kDefaultTimeoutS = 300;

// Whether `token` is the sandbox's access token (compared in constant time).
bool access_allowed(const Sandbox& sb, std::string_view token);

// POST /sandboxes and /v2/sandboxes: {templateID, timeout, metadata, envVars,
// allow_internet_access, …}. allow_internet_access (E2B's default: true) asks for the
// network the node's egress policy gives the template, never more: egress (through the
// egress proxy, to the hosts the policy lists) when `internet` says the node has such a
// policy for it, else none; false is always none.
Result<CreateRequest> parse_create(const nlohmann::json& body, nlohmann::json* metadata,
                                   const std::function<bool(const std::string& tmpl)>& internet = {});

// The Sandbox answer of create and connect (with the access tokens).
nlohmann::json sandbox_json(const Sandbox& sb);
// ListedSandbox; with detail, SandboxDetail (adds the access token).
nlohmann::json listed_json(const Sandbox& sb, bool detail);

std::string rfc3339(std::chrono::system_clock::time_point t);

// The processes envd's Process/Start runs, by sandbox, under the pids E2B's SDKs use to
// signal them, feed their stdin and list them. Kept while they run; on the I/O thread.
struct EnvdProcess {
  int64_t pid = 0;
  nlohmann::json config;  // ProcessConfig {cmd, args, envs, cwd}
  std::string tag;
  bool pty = false;
  std::shared_ptr<struct ExecHandle> handle;
  // Where its events go: the stream of the Start that made it, and those of later
  // Process/Connect calls (from then on). Shared with the run's callbacks.
  std::shared_ptr<std::vector<std::shared_ptr<class RunStream>>> streams;
};
struct Processes {
  std::map<std::string, std::map<int64_t, EnvdProcess>> by_sandbox;
  int64_t next_pid = 1000;
  // The process a ProcessSelector ({pid} or {tag}) names in a sandbox; nullptr if none.
  EnvdProcess* find(const std::string& sandbox, const nlohmann::json& selector);
};

// The watchers of envd's CreateWatcher (the Python SDK's files.watch_dir), by sandbox and
// watcher id: what changed is kept until the next GetWatcherEvents, at most
// limits::kMaxWatcherBacklog changes (past that the watcher stops, as lost). A watcher
// stays until RemoveWatcher or its sandbox's end; on the I/O thread.
struct EnvdWatcher {
  std::shared_ptr<WatchHandle> handle;
  std::vector<proto::Change> changes;
  std::optional<Error> error;  // it ended: GetWatcherEvents answers this
};
struct Watchers {
  std::map<std::string, std::map<std::string, EnvdWatcher>> by_sandbox;
};
// FilesystemEvent of envd's filesystem service for a change a watch saw.
nlohmann::json filesystem_event(const proto::Change& change);

// envd's answers in the Connect protocol: a unary call's error (its HTTP status and
// {code, message}), and a server stream ended, with an error or without one.
void rpc_fail(const std::shared_ptr<http::Responder>& res, const Error& e);
void end_rpc_stream(const std::shared_ptr<http::Responder>& res, const Error* e = nullptr);

// A sandbox path as E2B's clients see it: relative ones under the user's home.
std::string client_path(const std::string& path);
// EntryInfo of envd's filesystem service for an entry at `path`.
nlohmann::json entry_info(const std::string& path, const proto::FileEntry& e);

}  // namespace swissbox::e2b
