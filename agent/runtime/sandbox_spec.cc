#include "agent/runtime/sandbox_spec.h"

#include <algorithm>

#include "agent/net/egress_policy.h"

#include <nlohmann/json.hpp>

namespace swissbox {

using json = nlohmann::json;

const std::map<std::string, Template>& builtin_templates() {
  static const std::map<std::string, Template> kTemplates = {
      {"default", {"default", {2, 512, 10240, 512}}},
      {"lightweight", {"lightweight", {1, 256, 5120, 256}}},
      {"heavy", {"heavy", {4, 2048, 20480, 1024}}},
      // default's root with numpy, pandas and matplotlib (installer/build-rootfs.sh), for
      // stateful code contexts (E2B's code-interpreter-v1).
      {"code-interpreter", {"code-interpreter", {2, 1024, 10240, 512}, {"python", "javascript"}}},
  };
  return kTemplates;
}

const std::vector<BuiltinLayer>& builtin_layers() {
  // Debian's chromium, and puppeteer-core from npm to drive it from Node (chromium runs
  // with --no-sandbox: gVisor is the sandbox; CHROME_PATH names it for the library).
  static const std::vector<BuiltinLayer> kLayers = {
      {"browser", "default", {"chromium"}, {}, {"puppeteer-core@24.32.0"}, {2, 1024, 10240, 1024},
       {"CHROME_PATH=/usr/bin/chromium", "PUPPETEER_EXECUTABLE_PATH=/usr/bin/chromium"}},
  };
  return kLayers;
}

bool is_builtin_template(const std::string& name) {
  if (builtin_templates().count(name)) return true;
  for (const auto& l : builtin_layers()) {
    if (l.name == name) return true;
  }
  return false;
}

namespace {

struct Registry {
  std::mutex mu;
  std::map<std::string, Template> templates = builtin_templates();
};
Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

std::optional<Template> find_template(const std::string& name) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  auto it = r.templates.find(name);
  if (it == r.templates.end()) return std::nullopt;
  return it->second;
}

std::vector<std::string> template_names() {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  std::vector<std::string> out;
  for (const auto& [name, t] : r.templates) out.push_back(name);
  return out;
}

Status register_template(Template t) {
  if (builtin_templates().count(t.name))
    return make_error(Code::kConflict, "'" + t.name + "' is a built-in template");
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  r.templates[t.name] = std::move(t);
  return ok_status();
}

void unregister_template(const std::string& name) {
  if (builtin_templates().count(name)) return;
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  r.templates.erase(name);
}

std::string_view network_name(NetworkMode mode) {
  return mode == NetworkMode::kEgress ? "egress" : "none";
}

std::string_view on_idle_name(OnIdle o) { return o == OnIdle::kDelete ? "delete" : "suspend"; }

std::optional<OnIdle> parse_on_idle(std::string_view name) {
  if (name == "suspend") return OnIdle::kSuspend;
  if (name == "delete") return OnIdle::kDelete;
  return std::nullopt;
}

std::optional<NetworkMode> parse_network(std::string_view name) {
  if (name == "none") return NetworkMode::kNone;
  if (name == "egress") return NetworkMode::kEgress;
  return std::nullopt;
}

std::string pool_key(const std::string& template_name, NetworkMode network,
                     const std::string& language) {
  std::string key = template_name;
  if (network != NetworkMode::kNone) key += ":" + std::string(network_name(network));
  if (!language.empty()) key += "+" + language;
  return key;
}

const std::vector<std::string>& worker_languages() {
  static const std::vector<std::string> langs = {"python", "javascript", "typescript"};
  return langs;
}

std::optional<PoolKey> parse_pool_key(const std::string& key, bool any_template) {
  PoolKey k;
  auto plus = key.find('+');
  std::string rest = key.substr(0, plus);
  if (plus != std::string::npos) k.language = key.substr(plus + 1);
  auto colon = rest.find(':');
  k.template_name = rest.substr(0, colon);
  bool network_ok = true;
  if (colon != std::string::npos) {
    // "default:none" is not a key: the plain pool is "default".
    auto mode = parse_network(rest.substr(colon + 1));
    network_ok = mode == NetworkMode::kEgress;
    k.network = NetworkMode::kEgress;
  }
  const auto& langs = worker_languages();
  bool language_ok = plus == std::string::npos ||
                     std::find(langs.begin(), langs.end(), k.language) != langs.end();
  bool template_ok = any_template ? plain_name(k.template_name, 64) : find_template(k.template_name).has_value();
  if (!template_ok || !network_ok || !language_ok) return std::nullopt;
  return k;
}

const std::map<std::string, std::string>& base_environment() {
  static const std::map<std::string, std::string> env = {
      {"PATH", "/usr/local/bin:/usr/bin:/bin"},
      {"HOME", "/workspace"},
      {"LC_CTYPE", "C.UTF-8"},
      {"SHELL", "/bin/bash"},
      {"USER", "sandbox"},
  };
  return env;
}

std::map<std::string, std::string> template_environment(const Template& t) {
  std::map<std::string, std::string> env = base_environment();
  for (const auto& kv : t.env) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0 || kv.compare(0, eq, "HOME") == 0) continue;
    env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return env;
}

std::map<std::string, std::string> template_environment(const std::string& template_name) {
  // Every command asks: from the registry's entry, without copying the whole template.
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  auto it = r.templates.find(template_name);
  return it == r.templates.end() ? base_environment() : template_environment(it->second);
}

std::vector<std::string> sandbox_environment(const Template& t) {
  std::map<std::string, std::string> env = template_environment(t);
  std::vector<std::string> out;
  for (const auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

bool valid_env_name(std::string_view name) {
  if (name.empty() || name.size() > 256 || (name[0] >= '0' && name[0] <= '9')) return false;
  for (char c : name) {
    if (!isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

bool plain_name(std::string_view name, size_t max_size) {
  if (name.empty() || name.size() > max_size || name[0] == '.') return false;
  for (char c : name) {
    if (!isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') return false;
  }
  return true;
}

namespace {

Error invalid(const std::string& msg) { return make_error(Code::kInvalidArgument, msg); }

template <typename T>
Status read_number(const json& body, const char* field, T min, T max, T* out) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return ok_status();
  if (!it->is_number()) return invalid(std::string(field) + " must be a number");
  double v = it->get<double>();
  if (v < static_cast<double>(min) || v > static_cast<double>(max)) {
    return invalid(std::string(field) + " must be between " + std::to_string(min) + " and " +
                   std::to_string(max));
  }
  *out = static_cast<T>(v);
  return ok_status();
}

}  // namespace

json limits_json(const Limits& l) {
  return {{"cpu", l.cpu}, {"memory_mb", l.memory_mb}, {"disk_mb", l.disk_mb}, {"pids", l.pids}};
}

Limits limits_from_json(const json& j) {
  return {j.at("cpu").get<double>(), j.at("memory_mb").get<int64_t>(), j.at("disk_mb").get<int64_t>(),
          j.at("pids").get<int64_t>()};
}

Status read_limits(const json& body, const LimitBounds& bounds, Limits* limits) {
  if (auto st = read_number(body, "cpu", 0.1, bounds.max_cpu, &limits->cpu); !st) return st;
  if (auto st = read_number<int64_t>(body, "memory_mb", 64, bounds.max_memory_mb, &limits->memory_mb); !st) return st;
  if (auto st = read_number<int64_t>(body, "disk_mb", 16, bounds.max_disk_mb, &limits->disk_mb); !st) return st;
  return read_number<int64_t>(body, "pids", 16, bounds.max_pids, &limits->pids);
}

Status read_idle_policy(const json& body, std::chrono::seconds* idle_timeout, OnIdle* on_idle) {
  // idle_timeout_s; timeout_s is its older name.
  int64_t timeout_s = idle_timeout->count();
  const char* timeout_field = body.contains("idle_timeout_s") ? "idle_timeout_s" : "timeout_s";
  if (auto st = read_number<int64_t>(body, timeout_field, 1, 7 * 24 * 3600, &timeout_s); !st) return st;
  *idle_timeout = std::chrono::seconds(timeout_s);
  if (auto it = body.find("on_idle"); it != body.end() && !it->is_null()) {
    auto parsed = it->is_string() ? parse_on_idle(it->get<std::string>()) : std::nullopt;
    if (!parsed) return invalid("on_idle must be \"suspend\" or \"delete\"");
    *on_idle = *parsed;
  }
  return ok_status();
}

Result<CreateRequest> parse_create_request(const json& body, const LimitBounds& bounds,
                                           json* metadata_out) {
  if (!body.is_object()) return invalid("request body must be a JSON object");
  CreateRequest req;
  if (auto it = body.find("template"); it != body.end() && !it->is_null()) {
    if (!it->is_string()) return invalid("template must be a string");
    req.template_name = it->get<std::string>();
  }
  auto tmpl = find_template(req.template_name);
  if (!tmpl) {
    std::string known;
    for (const auto& n : template_names()) known += (known.empty() ? "" : ", ") + n;
    return invalid("unknown template '" + req.template_name + "' (known: " + known + ")");
  }
  req.limits = tmpl->limits;
  req.timeout = tmpl->idle_timeout;
  req.on_idle = tmpl->on_idle;
  if (auto st = read_limits(body, bounds, &req.limits); !st) return st.error();
  if (auto st = read_idle_policy(body, &req.timeout, &req.on_idle); !st) return st.error();
  int64_t retention_s = req.retention.count();
  if (auto st = read_number<int64_t>(body, "retention_s", 1, 365 * 24 * 3600, &retention_s); !st)
    return st.error();
  req.retention = std::chrono::seconds(retention_s);
  if (auto it = body.find("network"); it != body.end() && !it->is_null()) {
    auto mode = it->is_string() ? parse_network(it->get<std::string>()) : std::nullopt;
    if (!mode) return invalid("network must be \"none\" or \"egress\"");
    req.network = *mode;
  }
  if (auto it = body.find("egress_allowlist"); it != body.end() && !it->is_null()) {
    if (!it->is_array()) return invalid("egress_allowlist must be an array of host names");
    if (it->size() > 64) return invalid("egress_allowlist has more than 64 entries");
    for (const auto& h : *it) {
      if (!h.is_string() || !valid_allow_pattern(h.get<std::string>()))
        return invalid("egress_allowlist entry " + h.dump() +
                       " is not a host name or *.suffix pattern");
      req.egress_allowlist.push_back(h.get<std::string>());
    }
    if (req.network != NetworkMode::kEgress && !req.egress_allowlist.empty())
      return invalid("egress_allowlist needs network \"egress\"");
  }
  if (auto st = read_number<int64_t>(body, "bandwidth_kbit", 64, 10'000'000, &req.bandwidth_kbit); !st)
    return st.error();
  if (req.bandwidth_kbit != 0 && req.network != NetworkMode::kEgress)
    return invalid("bandwidth_kbit needs network \"egress\"");
  if (auto it = body.find("env"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) return invalid("env must be an object of strings");
    if (it->size() > 256) return invalid("env has more than 256 entries");
    for (auto& [k, v] : it->items()) {
      if (!valid_env_name(k)) return invalid("env name '" + k + "' is not valid");
      if (!v.is_string()) return invalid("env value of " + k + " must be a string");
      req.env[k] = v.get<std::string>();
    }
  }
  if (auto it = body.find("workspace"); it != body.end() && !it->is_null()) {
    if (!it->is_string() || !valid_workspace_name(it->get<std::string>()))
      return invalid("workspace must be a name of 1-64 letters, digits, '.', '_' or '-'");
    req.workspace = it->get<std::string>();
  }
  if (auto it = body.find("metadata"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) return invalid("metadata must be an object");
    if (it->dump().size() > 16384) return invalid("metadata is larger than 16 KiB");
    if (metadata_out) *metadata_out = *it;
  }
  return req;
}

}  // namespace swissbox
