// What every route of the agent's API shares: one request in flight (AgentApi::Call) and
// the JSON and SSE helpers. Internal to agent/api.
#pragma once

#include <memory>

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/api/api.h"
#include "common/log.h"

namespace swissbox {

// JSON out: invalid UTF-8 from a sandbox is replaced, never an exception.
inline std::string dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

inline std::string sse_event(std::string_view name, const nlohmann::json& data) {
  return fmt::format("event: {}\ndata: {}\n\n", name, dump(data));
}

// One request in flight: the parsed pieces every handler needs. Held by a shared_ptr, so
// that a route can go on after waiting (a suspended sandbox's resume).
struct AgentApi::Call : std::enable_shared_from_this<AgentApi::Call> {
  http::Request req;
  std::shared_ptr<http::Responder> res;
  std::string path;
  std::vector<std::pair<std::string, std::string>> query;
  std::string tenant;      // owner of new sandboxes
  bool operator_ = false;  // unix socket: sees every tenant
  bool admin = false;      // may change the node: the unix socket, an admin token, or no tokens
  std::string param(std::string_view k) const {
    for (const auto& [key, v] : query) {
      if (key == k) return v;
    }
    return {};
  }
  bool has_param(std::string_view k) const {
    for (const auto& [key, v] : query) {
      if (key == k) return true;
    }
    return false;
  }
  bool wants_sse() const {
    auto it = req.find(boost::beast::http::field::accept);
    return it != req.end() && it->value().find("text/event-stream") != std::string_view::npos;
  }
  void fail(const Error& e) const {
    if (e.code == Code::kInternal)
      log::error("request failed", {{"request_id", res->request_id()}, {"error", e.to_string()}});
    res->send_error(e);
  }
  Result<nlohmann::json> body_json(size_t limit) const {
    if (req.body().size() > limit)
      return make_error(Code::kTooLarge, "JSON body larger than the limit");
    if (req.body().empty()) return nlohmann::json::object();
    if (!json_depth_ok(req.body(), 32))
      return make_error(Code::kInvalidArgument, "JSON nested deeper than 32 levels");
    nlohmann::json j = nlohmann::json::parse(req.body(), nullptr, false);
    if (j.is_discarded())
      return make_error(Code::kInvalidArgument, "request body is not valid JSON");
    if (!j.is_object())
      return make_error(Code::kInvalidArgument, "request body must be a JSON object");
    return j;
  }
};

}  // namespace swissbox
