#include "common/auth.h"

#include <nlohmann/json.hpp>

#include "common/fs.h"

namespace swissbox {

using json = nlohmann::json;

namespace {

Error invalid(const std::string& m) { return make_error(Code::kInvalidArgument, m); }

}  // namespace

bool constant_time_equal(std::string_view a, std::string_view b) {
  size_t n = std::max(a.size(), b.size());
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= x ^ y;
  }
  return diff == 0;
}

namespace {

// {"sandboxes": n, "cpu": c, "memory_mb": m, "suspended": n, "workspace_mb": m}, each
// optional and positive.
Result<Quota> parse_quota(const json& q) {
  if (!q.is_object()) return invalid("quota must be an object");
  Quota out;
  for (const auto& [k, v] : q.items()) {
    bool whole = v.is_number_integer() && v.get<int64_t>() > 0;
    if (k == "cpu") {
      if (!v.is_number() || v.get<double>() <= 0) return invalid("quota.cpu must be a positive number");
      out.cpu = v.get<double>();
      continue;
    }
    std::optional<int64_t>* field = k == "sandboxes" ? &out.sandboxes
                                  : k == "memory_mb" ? &out.memory_mb
                                  : k == "suspended" ? &out.suspended
                                  : k == "workspace_mb" ? &out.workspace_mb
                                                        : nullptr;
    if (!field) return invalid("quota has no field '" + k + "'");
    if (!whole) return invalid("quota." + k + " must be a positive whole number");
    *field = v.get<int64_t>();
  }
  return out;
}

}  // namespace

Result<TokenTable> load_tokens(const std::string& path) {
  auto text = fs::read_file(path, 1 << 20);
  if (!text) return text.error();
  json j = json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || j.empty()) {
    return invalid("token file " + path +
                   " must be a non-empty JSON object {\"token\": \"tenant\" | {\"tenant\": …}}");
  }
  TokenTable out;
  for (auto& [k, v] : j.items()) {
    if (k.size() < 16) return invalid("token file " + path + ": tokens need 16+ characters");
    Principal p;
    if (v.is_string()) {
      p.tenant = v.get<std::string>();
    } else if (v.is_object() && v.contains("tenant") && v["tenant"].is_string()) {
      p.tenant = v["tenant"].get<std::string>();
      if (auto a = v.find("admin"); a != v.end()) {
        if (!a->is_boolean()) return invalid("token file " + path + ": admin must be true or false");
        p.admin = a->get<bool>();
      }
      if (auto q = v.find("quota"); q != v.end()) {
        auto quota = parse_quota(*q);
        if (!quota) return invalid("token file " + path + ": tenant " + p.tenant + ": " + quota.error().message);
        p.quota = *quota;
      }
    } else {
      return invalid("token file " + path +
                     ": each token maps to a tenant string or {\"tenant\": \"t\", \"admin\": bool}");
    }
    if (p.tenant.empty()) return invalid("token file " + path + ": a tenant name is empty");
    out[k] = std::move(p);
  }
  std::map<std::string, Quota> quotas;
  for (const auto& [token, p] : out) {
    if (p.quota == Quota{}) continue;
    auto [it, fresh] = quotas.emplace(p.tenant, p.quota);
    if (!fresh && !(it->second == p.quota))
      return invalid("token file " + path + ": tokens of tenant " + p.tenant + " give different quotas");
  }
  // A token without a quota speaks for its tenant under the tenant's quota all the same.
  for (auto& [token, p] : out) {
    if (auto q = quotas.find(p.tenant); q != quotas.end()) p.quota = q->second;
  }
  return out;
}

std::map<std::string, Quota> tenant_quotas(const TokenTable& tokens) {
  std::map<std::string, Quota> out;
  for (const auto& [token, p] : tokens) {
    if (!(p.quota == Quota{})) out[p.tenant] = p.quota;
  }
  return out;
}

const Principal* bearer_principal(std::string_view authorization, const TokenTable& tokens) {
  constexpr std::string_view kScheme = "Bearer ";
  if (authorization.substr(0, kScheme.size()) != kScheme) return nullptr;
  return token_principal(authorization.substr(kScheme.size()), tokens);
}

const Principal* token_principal(std::string_view presented, const TokenTable& tokens) {
  if (presented.empty()) return nullptr;
  const Principal* found = nullptr;
  // Every entry is compared in full: no early exit, no ordered lookup.
  for (const auto& [token, principal] : tokens) {
    if (constant_time_equal(token, presented)) found = &principal;
  }
  return found;
}

std::optional<Error> check_bearer(std::string_view path, std::string_view authorization,
                                  bool from_unix_socket, const TokenTable& tokens) {
  if (from_unix_socket || tokens.empty() || path == "/healthz" || path == "/readyz")
    return std::nullopt;
  if (bearer_principal(authorization, tokens)) return std::nullopt;
  return make_error(Code::kUnauthenticated, "a valid 'Authorization: Bearer <token>' is required");
}

std::string service_token(const TokenTable& tokens) {
  for (const auto& [token, principal] : tokens) {
    if (principal.admin) return token;
  }
  return tokens.empty() ? std::string() : tokens.begin()->first;
}

bool is_loopback_listen(const std::string& host_port) {
  auto colon = host_port.rfind(':');
  std::string host = host_port.substr(0, colon);
  return host.rfind("127.", 0) == 0 || host == "::1" || host == "[::1]" || host == "localhost";
}

}  // namespace swissbox
