#include "common/e2b_routes.h"

#include <nlohmann/json.hpp>

namespace swissbox::e2b {

Kind kind_of(const http::RequestHeader& h) {
  if (!header(h, "E2b-Sandbox-Id").empty()) return Kind::kSandbox;
  std::string_view path = http::target_path(h.target());
  for (std::string_view prefix : {"/sandboxes", "/v2/sandboxes"}) {
    if (path == prefix || (path.starts_with(prefix) && path[prefix.size()] == '/')) return Kind::kControl;
  }
  return Kind::kNone;
}

std::string_view header(const http::RequestHeader& h, std::string_view name) {
  auto it = h.find(name);
  return it == h.end() ? std::string_view{} : it->value();
}

std::string template_name(std::string_view id) {
  if (id == "base") return "default";
  if (id == "code-interpreter-v1") return "code-interpreter";
  return std::string(id);
}

void fail(const std::shared_ptr<http::Responder>& res, const Error& e) {
  int status = http_status(e.code);
  res->send_json(status, nlohmann::json{{"code", status}, {"message", e.to_string()}});
}

}  // namespace swissbox::e2b
