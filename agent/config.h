// The agent's configuration: command-line flags (DESIGN.md "Command lines") over an
// optional JSON file with the same keys; validated once, before anything starts.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/auth.h"
#include "common/limits.h"

namespace swissbox {

struct AgentConfig {
  std::string listen = "127.0.0.1:7700";
  std::string socket = "/run/swissbox/agent.sock";
  std::string state_dir = "/var/lib/swissbox";
  std::string runsc = "/usr/bin/runsc";
  std::string runsc_root = "/run/swissbox/runsc";
  std::string rootfs = "host";
  std::map<std::string, int> pool = {{"default", 2}};
  std::string platform = "ptrace";
  std::string cgroup_parent;
  std::string node_name;
  std::string region = "dev";
  std::string token_file;
  std::string cri_socket;  // the node's CRI socket to watch (empty: not watched)
  // Where package-layer builds may fetch from (issue 22); and how long one may take.
  std::string apt_mirror = "http://deb.debian.org/debian";
  std::string pip_index = "https://pypi.org/simple";
  std::string npm_registry = "https://registry.npmjs.org/";
  int build_timeout_s = static_cast<int>(limits::kDefaultBuildTimeout.count());
  bool build_builtins = true;  // build the built-in package-layer templates (browser) at start
  std::string log_level = "info";
  std::string init_path;  // swissbox-init; default: next to the agent binary
  int max_sandboxes = 32;
  // Sandboxes started at once to refill the pools (runsc create + start is mostly CPU).
  int refill_concurrency = 4;
  // Commands that start at once on the node, the rest queue (exec_gate.h); -1: two per
  // CPU, 0: no limit.
  int exec_slots = -1;
  int exec_slot_hold_ms = 50;
  // TCP connections at once, in all and per client address (http::ServerOptions).
  int max_connections = 4096;
  int max_connections_per_client = 512;
  int gc_interval_s = 60;  // garbage collection of unexplained runtime sandboxes
  bool harden = true;      // drop capabilities and install the seccomp filter at start
  // On SIGTERM, leave active sandboxes running for the next agent (a DaemonSet update)
  // instead of destroying them; warm ones are always destroyed.
  bool keep_sandboxes_on_exit = true;
  // Egress networking (network "egress"); off while egress_pool is empty. See
  // agent/net/sandbox_network.h, egress_filter.h and egress_proxy.h.
  std::string egress_pool;                 // node-local IPv4 CIDR for the sandboxes' /30s
  std::string egress_link_prefix = "sbx";  // host-side veth names: <prefix><index>
  int egress_proxy_port = 3128;
  std::vector<std::string> egress_deny;    // node-wide; empty: default_egress_deny()
  std::map<std::string, std::string> egress_hosts;  // name → IP the proxy uses before DNS
  int64_t egress_rate_kbit = 0;            // every link, both ways; 0: unlimited
  // From --egress-policy FILE: {"templates": {T: [patterns]}, "tenants": {tenant: [patterns]}}.
  std::map<std::string, std::vector<std::string>> egress_template_allow, egress_tenant_allow;
};

// argv excludes the program name. Flags win over the --config file.
Result<AgentConfig> parse_agent_config(const std::vector<std::string>& args);
std::string agent_usage();

}  // namespace swissbox
