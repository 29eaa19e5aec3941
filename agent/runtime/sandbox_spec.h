// Typed descriptions of a sandbox: templates (presets of limits), the limits a request may
// set, and the spec the runtime turns into an OCI bundle. Validated once, at the API edge.
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/sandbox_id.h"

namespace swissbox {

struct Limits {
  double cpu = 2;  // CPUs
  int64_t memory_mb = 512;
  int64_t disk_mb = 10240;
  int64_t pids = 512;
  bool operator==(const Limits&) const = default;
};

// What becomes of a sandbox idle for its idle timeout (issue 21): it sleeps (a checkpoint
// on the node's disk, resumed by its next call) or it ends. Named "suspend" and "delete".
enum class OnIdle { kSuspend, kDelete };
std::string_view on_idle_name(OnIdle o);
std::optional<OnIdle> parse_on_idle(std::string_view name);

// How long a sandbox may sit idle, and a suspended one be kept, unless a request says.
inline constexpr std::chrono::seconds kDefaultIdleTimeout{900};
inline constexpr std::chrono::seconds kDefaultRetention{7 * 24 * 3600};

// One bind mount of a sandbox's root.
struct BindMount {
  std::string source, destination;
  bool read_only = true;
};

// A sandbox's root: a directory plus the binds that fill it.
struct RootfsLayout {
  std::string root;
  std::vector<BindMount> binds;
};

// How one directory of a template's root is made (issue 22): read-only layers, top first,
// laid over each other (one layer: the directory itself). Destination "/" is the root.
struct RootPart {
  std::string destination;
  std::vector<std::string> layers;
  bool operator==(const RootPart&) const = default;
};

struct Template {
  std::string name;
  Limits limits;
  // Stateful contexts its warm sandboxes have running before they are claimed, one per
  // language, as "default-<language>" (what E2B's run_code without a context uses).
  std::vector<std::string> warm_contexts = {};
  // The idle policy of its sandboxes when a create request does not set one.
  std::chrono::seconds idle_timeout = kDefaultIdleTimeout;
  OnIdle on_idle = OnIdle::kSuspend;
  // An image or package-layer template's (issue 22): its read-only root as mounted on the
  // host, the parts it is made of (what a package layer is built on), the image it came
  // from and its environment. Empty root: the node's root.
  RootfsLayout root = {};
  std::vector<RootPart> parts = {};
  std::string image = {};
  std::vector<std::string> env = {};
};

// default / lightweight / heavy / code-interpreter, as DESIGN.md lists them: the node's root
// with limits (and warm contexts).
const std::map<std::string, Template>& builtin_templates();
// Built-in templates made as package layers over one of those (issue 22): browser. Every
// agent that builds package layers builds them at its first start (agent/sandbox/
// template_store.h); they are ready once built.
struct BuiltinLayer {
  std::string name, from;
  std::vector<std::string> apt, pip, npm;
  Limits limits;
  std::vector<std::string> env;  // "K=V", over the base's
};
const std::vector<BuiltinLayer>& builtin_layers();
// Either kind of built-in: never made, replaced or deleted through the API.
bool is_builtin_template(const std::string& name);
// The templates sandboxes can be made from: the built-ins and the ready image templates the
// agent registers (agent/sandbox/template_store.h). Thread-safe.
std::optional<Template> find_template(const std::string& name);
std::vector<std::string> template_names();
// Adds or replaces a template (not a built-in: refused), and takes one away.
Status register_template(Template t);
void unregister_template(const std::string& name);

// Network modes: none (loopback only, the default) and egress (a veth into the node, out
// only through the egress proxy; see agent/net/sandbox_network.h). Named "none" and
// "egress" in requests, pool keys and records.
enum class NetworkMode { kNone, kEgress };
std::string_view network_name(NetworkMode mode);
std::optional<NetworkMode> parse_network(std::string_view name);

// Warm pools are per template and network mode, since the mode is fixed when runsc starts
// the sandbox, and optionally per language: the pool's sandboxes hold a loaded worker of it
// (runner/workers.h), so a one-shot run in that language starts no process. Keys:
// "default", "default:egress", "default+python", "default:egress+typescript".
struct PoolKey {
  std::string template_name;
  NetworkMode network = NetworkMode::kNone;
  std::string language;  // "" (no worker), python, javascript or typescript
};
std::string pool_key(const std::string& template_name, NetworkMode network,
                     const std::string& language = "");
// nullopt if the template, network or language is unknown. any_template: the template's
// name is not looked up (command-line pools name image templates the agent loads later).
std::optional<PoolKey> parse_pool_key(const std::string& key, bool any_template = false);
// The languages that have workers (and so pools of their own).
const std::vector<std::string>& worker_languages();

// The node's per-sandbox ceiling; a request may lower or raise limits up to it.
struct LimitBounds {
  double max_cpu = 4;
  int64_t max_memory_mb = 4096;
  int64_t max_disk_mb = 20480;
  int64_t max_pids = 4096;
};

struct CreateRequest {
  std::string template_name = "default";
  Limits limits;
  NetworkMode network = NetworkMode::kNone;
  std::vector<std::string> egress_allowlist;  // host names and "*.suffix" patterns
  int64_t bandwidth_kbit = 0;                 // both ways; 0: the node's default
  std::map<std::string, std::string> env;
  std::chrono::seconds timeout = kDefaultIdleTimeout;  // idle this long: on_idle
  OnIdle on_idle = OnIdle::kSuspend;
  std::chrono::seconds retention = kDefaultRetention;  // kept this long once suspended
  std::chrono::seconds lifetime{0};    // end of life after the claim, busy or not; 0: none
  std::string client_template;         // the name an E2B client asked for
  nlohmann::json* metadata = nullptr;  // not owned; copied by the manager
  // A one-shot run's language: a sandbox of that language's pool is taken first.
  std::string language;
  // The tenant's persistent workspace to mount at /home/user/workspace ("": none).
  std::string workspace;
};

// Limits as JSON ({cpu, memory_mb, disk_mb, pids}): in answers and in the records a
// restart reads back (limits_from_json throws json's exception when a field is missing).
nlohmann::json limits_json(const Limits& l);
Limits limits_from_json(const nlohmann::json& j);

// cpu, memory_mb, disk_mb and pids of a request body (a create, a template), each within
// bounds; absent ones leave *limits as it is.
Status read_limits(const nlohmann::json& body, const LimitBounds& bounds, Limits* limits);
// idle_timeout_s (or its older name timeout_s) and on_idle, the same way.
Status read_idle_policy(const nlohmann::json& body, std::chrono::seconds* idle_timeout, OnIdle* on_idle);

// Parses and validates POST /v1/sandboxes; unknown template, wrong types, negative or
// too-large limits are kInvalidArgument with the field named.
Result<CreateRequest> parse_create_request(const nlohmann::json& body, const LimitBounds& bounds,
                                           nlohmann::json* metadata_out);

// What the runtime needs to start one sandbox.
struct SandboxSpec {
  std::string id;
  std::string hostname;
  std::vector<std::string> env;  // "K=V" for the runner itself
  uint32_t uid = 1000;
  uint32_t gid = 1000;
  Limits limits;
  std::string cgroup_path;  // linux.cgroupsPath; empty = none
  NetworkMode network = NetworkMode::kNone;
  std::string netns_path;        // the pinned network namespace to join; empty = a new one
  // A tenant's workspace on the host, bound at /workspace/workspace (= /home/user/workspace:
  // home is /workspace); empty: none.
  std::string workspace_dir;
  RootfsLayout root;  // an image or package-layer template's read-only root; empty: the node's
  // A package build's (issue 22): instead of the runner, the sandbox's process runs this as
  // root inside gVisor, with a default container's capabilities, on a writable root (its
  // binds too); its stdin and stdout are the runner link.
  std::vector<std::string> build_command;
};

// A name that is a plain path component: 1–max_size of letters, digits, '.', '_', '-', not
// starting with '.'. Workspace names (max 64), and tenant names that hold workspaces.
bool plain_name(std::string_view name, size_t max_size);
inline bool valid_workspace_name(std::string_view name) { return plain_name(name, 64); }

// The environment every process in a sandbox starts from; the sandbox's and the request's
// env are laid over it. Only LC_CTYPE is UTF-8: LANG=C.UTF-8 would make every process that
// calls setlocale() load all 13 locale files through the gofer, measured at ≈ 3.5 ms per
// process under gVisor-ptrace, while LC_CTYPE alone gives the same UTF-8 text handling.
// SHELL is set because bash, finding it unset, looks the user up (nscd socket attempts,
// nsswitch.conf, /etc/passwd: 18 of the ≈ 112 system calls of `bash -c 'echo hi'`,
// ≈ 0.7 ms of every shell command).
const std::map<std::string, std::string>& base_environment();
// A template's sandboxes' environment: the base, with the template's own variables laid
// over it (an image's PATH, LANG, …; a package layer's NODE_PATH), HOME staying the
// workspace. What every command, worker and context in its sandboxes starts from; by name,
// the base for a template that is gone.
std::map<std::string, std::string> template_environment(const Template& t);
std::map<std::string, std::string> template_environment(const std::string& template_name);
// The same as "K=V" (the runner's own).
std::vector<std::string> sandbox_environment(const Template& t);

bool valid_env_name(std::string_view name);

}  // namespace swissbox
