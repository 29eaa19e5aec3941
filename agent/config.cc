#include "agent/config.h"

#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "agent/net/egress_policy.h"
#include "agent/runtime/sandbox_spec.h"
#include "agent/sandbox/package_build.h"
#include "common/fs.h"

namespace swissbox {

using json = nlohmann::json;

namespace {

Error invalid(const std::string& m) { return make_error(Code::kInvalidArgument, m); }

// --key's value as a whole number in [min, max].
Result<long long> int_in_range(const std::string& key, const std::string& value, long long min,
                               long long max) {
  char* end = nullptr;
  long long n = strtoll(value.c_str(), &end, 10);
  if (*end != '\0' || n < min || n > max)
    return invalid(fmt::format("--{} must be {}..{}", key, min, max));
  return n;
}

Status parse_pool_entry(const std::string& entry, std::map<std::string, int>* pool) {
  auto eq = entry.find('=');
  if (eq == std::string::npos) return invalid("--pool wants TEMPLATE[:egress][+LANGUAGE]=N, got '" + entry + "'");
  std::string tmpl = entry.substr(0, eq);
  if (!parse_pool_key(tmpl, /*any_template=*/true)) {
    return invalid("--pool: unknown pool '" + tmpl +
                   "' (TEMPLATE[:egress][+python|+javascript|+typescript])");
  }
  char* end = nullptr;
  long n = strtol(entry.c_str() + eq + 1, &end, 10);
  if (*end != '\0' || n < 0 || n > 1000) return invalid("--pool: bad count in '" + entry + "'");
  (*pool)[tmpl] = static_cast<int>(n);
  return ok_status();
}

// {"templates": {"default": ["pypi.org"]}, "tenants": {"acme": ["*.acme.com"]}}
Status load_egress_policy(AgentConfig& c, const std::string& path) {
  auto text = fs::read_file(path, 1 << 20);
  if (!text) return text.error();
  json j = json::parse(*text, nullptr, false);
  if (!j.is_object()) return invalid("--egress-policy " + path + " is not a JSON object");
  for (const char* section : {"templates", "tenants"}) {
    if (!j.contains(section)) continue;
    if (!j[section].is_object()) return invalid(fmt::format("--egress-policy: {} must be an object", section));
    for (auto& [name, list] : j[section].items()) {
      if (std::string(section) == "templates" && !is_builtin_template(name))
        return invalid("--egress-policy: unknown template '" + name + "'");
      if (!list.is_array()) return invalid("--egress-policy: " + name + " must list host patterns");
      std::vector<std::string> patterns;
      for (const auto& p : list) {
        if (!p.is_string() || !valid_allow_pattern(p.get<std::string>()))
          return invalid("--egress-policy: " + p.dump() + " is not a host name or *.suffix");
        patterns.push_back(p.get<std::string>());
      }
      (std::string(section) == "templates" ? c.egress_template_allow : c.egress_tenant_allow)[name] =
          std::move(patterns);
    }
  }
  return ok_status();
}

// The agent's whole-number options with their ranges.
struct IntField {
  int* value;
  long long min, max;
};
std::optional<IntField> int_field(AgentConfig& c, const std::string& key) {
  if (key == "egress-proxy-port") return IntField{&c.egress_proxy_port, 1, 65535};
  if (key == "max-sandboxes") return IntField{&c.max_sandboxes, 1, 10000};
  if (key == "gc-interval") return IntField{&c.gc_interval_s, 1, 10000};
  if (key == "refill-concurrency") return IntField{&c.refill_concurrency, 1, 10000};
  if (key == "exec-slots") return IntField{&c.exec_slots, 0, 10000};
  if (key == "exec-slot-hold-ms") return IntField{&c.exec_slot_hold_ms, 1, 60000};
  if (key == "max-connections") return IntField{&c.max_connections, 16, 1000000};
  if (key == "max-connections-per-client") return IntField{&c.max_connections_per_client, 1, 1000000};
  if (key == "build-timeout") return IntField{&c.build_timeout_s, 10, 86400};
  return std::nullopt;
}

// Applies one key (flag name without dashes, or JSON key with '-' or '_').
Status apply(AgentConfig& c, std::string key, const std::string& value) {
  for (char& ch : key) {
    if (ch == '_') ch = '-';
  }
  if (key == "listen")
    c.listen = value;
  else if (key == "socket")
    c.socket = value;
  else if (key == "state-dir")
    c.state_dir = value;
  else if (key == "runsc")
    c.runsc = value;
  else if (key == "runsc-root")
    c.runsc_root = value;
  else if (key == "rootfs")
    c.rootfs = value;
  else if (key == "platform")
    c.platform = value;
  else if (key == "cgroup-parent")
    c.cgroup_parent = value;
  else if (key == "node-name")
    c.node_name = value;
  else if (key == "region")
    c.region = value;
  else if (key == "token-file")
    c.token_file = value;
  else if (key == "cri-socket")
    c.cri_socket = value;
  else if (key == "apt-mirror" || key == "pip-index" || key == "npm-registry") {
    if (auto host = url_host(value); !host) return invalid("--" + key + ": " + host.error().message);
    (key == "apt-mirror" ? c.apt_mirror : key == "pip-index" ? c.pip_index : c.npm_registry) = value;
  }
  else if (key == "log-level")
    c.log_level = value;
  else if (key == "init")
    c.init_path = value;
  else if (key == "harden" || key == "keep-sandboxes-on-exit" || key == "build-builtins") {
    if (value != "true" && value != "false") return invalid("--" + key + " must be true or false");
    (key == "harden" ? c.harden : key == "build-builtins" ? c.build_builtins : c.keep_sandboxes_on_exit) = value == "true";
  }
  else if (key == "pool")
    return parse_pool_entry(value, &c.pool);
  else if (key == "egress-pool")
    c.egress_pool = value;
  else if (key == "egress-link-prefix")
    c.egress_link_prefix = value;
  else if (key == "egress-deny") {
    c.egress_deny.clear();
    std::stringstream in(value);
    for (std::string item; std::getline(in, item, ',');) {
      if (!Cidr::parse(item)) return invalid("--egress-deny: '" + item + "' is not an address range");
      c.egress_deny.push_back(item);
    }
  } else if (key == "egress-hosts") {
    std::stringstream in(value);
    for (std::string item; std::getline(in, item, ',');) {
      auto eq = item.find('=');
      std::string name = lower_case(item.substr(0, eq));
      if (eq == std::string::npos || !valid_allow_pattern(name) || name[0] == '*' ||
          !Cidr::parse(item.substr(eq + 1)))
        return invalid("--egress-hosts wants NAME=IP[,NAME=IP…], got '" + item + "'");
      c.egress_hosts[name] = item.substr(eq + 1);
    }
  } else if (key == "egress-policy") {
    return load_egress_policy(c, value);
  } else if (key == "egress-rate-kbit") {
    auto n = int_in_range(key, value, 0, 10'000'000);
    if (!n) return n.error();
    c.egress_rate_kbit = *n;
  } else if (auto field = int_field(c, key)) {
    auto n = int_in_range(key, value, field->min, field->max);
    if (!n) return n.error();
    *field->value = static_cast<int>(*n);
  } else {
    return invalid("unknown option --" + key);
  }
  return ok_status();
}

Status apply_file(AgentConfig& c, const std::string& path) {
  auto text = fs::read_file(path, 1 << 20);
  if (!text) return text.error();
  json j = json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return invalid("config " + path + " is not a JSON object");
  for (auto& [k, v] : j.items()) {
    if (k == "pool" && v.is_object()) {
      for (auto& [t, n] : v.items()) {
        if (!n.is_number_integer()) return invalid("config pool." + t + " must be an integer");
        if (auto st = parse_pool_entry(t + "=" + std::to_string(n.get<int>()), &c.pool); !st)
          return st;
      }
      continue;
    }
    std::string value = v.is_string() ? v.get<std::string>() : v.dump();
    if (auto st = apply(c, k, value); !st)
      return invalid("config " + path + ": " + st.error().message);
  }
  return ok_status();
}

}  // namespace

std::string agent_usage() {
  return "usage: swissbox-agent [--config FILE] [--listen HOST:PORT] [--socket PATH]\n"
         "         [--state-dir DIR] [--runsc PATH] [--runsc-root DIR] [--rootfs DIR|host]\n"
         "         [--pool TEMPLATE[:egress][+LANGUAGE]=N]... [--platform ptrace|systrap] [--cgroup-parent PATH]\n"
         "         [--node-name NAME] [--region ZONE] [--token-file FILE] [--log-level L]\n"
         "         [--max-sandboxes N] [--refill-concurrency N] [--init PATH] [--gc-interval SECONDS]\n"
         "         [--max-connections N] [--max-connections-per-client N]\n"
         "         [--harden true|false] [--keep-sandboxes-on-exit true|false]\n"
         "         [--egress-pool CIDR] [--egress-link-prefix P] [--egress-proxy-port N]\n"
         "         [--egress-deny CIDR,…] [--egress-hosts NAME=IP,…] [--egress-rate-kbit N]\n"
         "         [--egress-policy FILE] [--cri-socket PATH]\n"
         "         [--apt-mirror URL] [--pip-index URL] [--npm-registry URL] [--build-timeout SECONDS]\n"
         "         [--build-builtins true|false]\n";
}

Result<AgentConfig> parse_agent_config(const std::vector<std::string>& args) {
  AgentConfig c;
  std::vector<std::pair<std::string, std::string>> flags;
  bool pool_from_flags = false;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    if (a.rfind("--", 0) != 0) return invalid("unexpected argument '" + a + "'");
    std::string key = a.substr(2), value;
    auto eq = key.find('=');
    if (eq != std::string::npos) {
      value = key.substr(eq + 1);
      key = key.substr(0, eq);
    } else {
      if (i + 1 >= args.size()) return invalid("--" + key + " needs a value");
      value = args[++i];
    }
    if (key == "config") {
      if (auto st = apply_file(c, value); !st) return st.error();
      continue;
    }
    if (key == "pool") pool_from_flags = true;
    flags.emplace_back(key, value);
  }
  // --pool on the command line replaces the pool of the defaults and the file.
  if (pool_from_flags) c.pool.clear();
  for (const auto& [k, v] : flags) {
    if (auto st = apply(c, k, v); !st) return st.error();
  }
  if (!c.cgroup_parent.empty() &&
      (c.cgroup_parent[0] != '/' || c.cgroup_parent.rfind("/sys/fs/cgroup", 0) == 0)) {
    return invalid(
        "--cgroup-parent is a path inside the cgroup hierarchy, e.g. /swissbox.slice/sandboxes "
        "(not a /sys/fs/cgroup path)");
  }
  if (c.platform != "ptrace" && c.platform != "systrap" && c.platform != "kvm") {
    return invalid("--platform must be ptrace, systrap or kvm");
  }
  if (c.node_name.empty()) {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    c.node_name = host;
  }
  if (!c.token_file.empty()) {
    if (auto t = load_tokens(c.token_file); !t) return t.error();
  } else if (!c.listen.empty() && !is_loopback_listen(c.listen)) {
    return invalid("--listen " + c.listen +
                   " is not loopback: set --token-file to serve beyond this host");
  }
  for (const auto& [pool, n] : c.pool) {
    if (pool.find(':') != std::string::npos && c.egress_pool.empty() && n > 0)
      return invalid("--pool " + pool + " needs --egress-pool");
  }
  for (const auto& d : {c.state_dir, c.runsc_root}) {
    if (d.empty() || d[0] != '/')
      return invalid("state and runsc directories must be absolute paths");
  }
  return c;
}

}  // namespace swissbox
