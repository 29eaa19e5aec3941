// Package builds (issue 22): apt, pip and npm packages installed into a layer over a
// template's root, inside a gVisor sandbox of that template — as root inside gVisor, on the
// writable root agent/runtime/package_layers.h mounts, with network only through the egress
// proxy and only to the configured package indexes. Nothing of a build runs on the host.
//
// The sandbox's first process is a shell script written here from validated package names:
// it waits for the proxy's address on its stdin, runs each package manager in turn in a
// subshell whose stderr joins its stdout (a socket the agent copies into the build log) and
// ends with a status line "swissbox-build: exit N". (The first process itself keeps its
// stderr, runsc's log file: with `exec 2>&1` in it, runsc 20240729 ended the sandbox at
// once — measured.) The build is bounded in time (the sandbox is
// destroyed at the deadline), memory and tasks (its cgroup), disk (the layer's own disk,
// and the sandbox's for downloads and caches) and log size.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "agent/runtime/runtime.h"
#include "common/error.h"
#include "common/limits.h"

namespace swissbox {

class EgressProxy;

struct PackageSet {
  std::vector<std::string> apt, pip, npm;  // each sorted, no duplicates
  bool empty() const { return apt.empty() && pip.empty() && npm.empty(); }
  bool operator==(const PackageSet&) const = default;
};

// A package spec as a package manager takes it ("pandas", "pandas==2.2.2", "@types/node@20",
// "jq=1.6-2.1", a URL): 1–200 printable characters with no shell meaning (no space, quote,
// '$', '`', ';', '&', '|', '(', ')', '*', '?', '\\', '#'), not starting with '-'.
bool valid_package_spec(std::string_view spec);
// `packages` of a template PUT: {"apt": [...], "pip": [...], "npm": [...]}.
Result<PackageSet> parse_packages(const nlohmann::json& packages);
// `pre_install_packages` of a create: ["pip:pandas", "npm:left-pad", "apt:jq"].
Result<PackageSet> parse_package_list(const nlohmann::json& list);
nlohmann::json packages_json(const PackageSet& set);

// Where builds may fetch from (agent flags --apt-mirror, --pip-index, --npm-registry).
struct PackageIndexes {
  std::string apt_mirror = "http://deb.debian.org/debian";
  std::string pip_index = "https://pypi.org/simple";
  std::string npm_registry = "https://registry.npmjs.org/";
};
// An index URL's host (lowercase), or an error naming the flag's problem.
Result<std::string> url_host(const std::string& url);
// The hosts a build may reach: each index's, and PyPI's file host with PyPI's index.
std::vector<std::string> index_hosts(const PackageIndexes& indexes);
// The layer's identity: the base's and the package set's, and the indexes they came from.
std::string layer_key(const std::string& base_identity, const PackageSet& set, const PackageIndexes& indexes);
// The script a build sandbox runs (pure: unit-tested).
std::string build_script(const PackageSet& set, const PackageIndexes& indexes);

struct PackageBuildOptions {
  Limits limits{2, 2048, 4096, 1024};  // the build sandbox's (disk: its /tmp, for downloads)
  std::chrono::seconds timeout = limits::kDefaultBuildTimeout;
  size_t max_log_bytes = 4 << 20;
};

class PackageBuilder {
 public:
  // hold(id, true) before a build sandbox starts and hold(id, false) once it is gone: the
  // manager's garbage collector leaves it alone meanwhile.
  PackageBuilder(SandboxRuntime& runtime, EgressProxy* proxy, PackageIndexes indexes, PackageBuildOptions options,
                 std::function<void(const std::string& id, bool held)> hold);

  // Runs the build of `set` in sandbox `id` on `root` (writable), with `env` ("K=V": the
  // base template's environment); its output is appended to log_path. Blocks (a worker's).
  // The error names what failed: the package manager's last words, the deadline, or why
  // the sandbox could not start.
  Status run(const std::string& id, const RootfsLayout& root, const PackageSet& set, std::vector<std::string> env,
             const std::string& log_path);
  // The agent stops: a build under way ends within a second (its sandbox destroyed, its
  // template left "building" for the next agent to build again). Thread-safe.
  void stop() { stopping_ = true; }
  bool stopping() const { return stopping_; }
  const PackageIndexes& indexes() const { return indexes_; }
  bool has_network() const { return proxy_ != nullptr && runtime_.offers_egress(); }

 private:
  SandboxRuntime& runtime_;
  EgressProxy* proxy_;
  PackageIndexes indexes_;
  PackageBuildOptions opts_;
  std::function<void(const std::string&, bool)> hold_;
  std::atomic<bool> stopping_ = false;
};

}  // namespace swissbox
