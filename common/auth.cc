#include "common/auth.h"

#include <nlohmann/json.hpp>

#include "common/fs.h"

namespace swissbox {

using json = nlohmann::json;

namespace {
Error invalid(const std::string& m) { return make_error(Code::kInvalidArgument, m); }
}  // namespace

Result<std::map<std::string, std::string>> load_tokens(const std::string& path) {
  auto text = fs::read_file(path, 1 << 20);
  if (!text) return text.error();
  json j = json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || j.empty()) {
    return invalid("token file " + path +
                   " must be a non-empty JSON object {\"token\": \"tenant\"}");
  }
  std::map<std::string, std::string> out;
  for (auto& [k, v] : j.items()) {
    if (!v.is_string() || k.size() < 16)
      return invalid("token file " + path + ": tokens need 16+ characters and a tenant string");
    out[k] = v.get<std::string>();
  }
  return out;
}

const std::string* bearer_tenant(std::string_view authorization,
                                 const std::map<std::string, std::string>& tokens) {
  constexpr std::string_view kScheme = "Bearer ";
  if (authorization.substr(0, kScheme.size()) != kScheme) return nullptr;
  auto it = tokens.find(std::string(authorization.substr(kScheme.size())));
  return it == tokens.end() ? nullptr : &it->second;
}

bool is_loopback_listen(const std::string& host_port) {
  auto colon = host_port.rfind(':');
  std::string host = host_port.substr(0, colon);
  return host.rfind("127.", 0) == 0 || host == "::1" || host == "[::1]" || host == "localhost";
}

}  // namespace swissbox
