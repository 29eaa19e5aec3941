// E2B's control plane: create, list, info, kill, timeout, connect (/sandboxes and
// /v2/sandboxes, as the SDKs of each version call them).
#include <algorithm>

#include "agent/api/call.h"
#include "agent/api/e2b/e2b.h"

namespace swissbox {

namespace bhttp = boost::beast::http;
using json = nlohmann::json;

namespace {

// The list's page size when the caller names none, and the most it may ask for.
constexpr size_t kPageSize = 100;

bool metadata_matches(const json& metadata, const std::vector<std::pair<std::string, std::string>>& want) {
  for (const auto& [k, v] : want) {
    auto it = metadata.find(k);
    if (it == metadata.end() || !it->is_string() || it->get<std::string>() != v) return false;
  }
  return true;
}

}  // namespace

void AgentApi::e2b_control(Call& c) {
  const auto m = c.req.method();
  auto res = c.res;
  std::string p = c.path.starts_with("/v2/") ? c.path.substr(3) : c.path;  // /sandboxes…
  if (p == "/sandboxes" && m == bhttp::verb::post) {
    auto body = c.body_json(opts_.max_json_body);
    if (!body) return e2b::fail(res, body.error());
    json metadata = json::object();
    auto req = e2b::parse_create(*body, &metadata,
                                 [this](const std::string& tmpl) { return mgr_.offers_internet(tmpl); });
    if (!req) return e2b::fail(res, req.error());
    return mgr_.create(*req, c.tenant, metadata, [res](Result<std::shared_ptr<Sandbox>> sb, bool) {
      if (!sb) return e2b::fail(res, sb.error());
      res->send_json(201, e2b::sandbox_json(**sb));
    });
  }
  if (p == "/sandboxes" && m == bhttp::verb::get) {
    // state=running,paused (comma-joined); none: both.
    std::string states = c.param("state");
    bool running = states.empty() || states.find("running") != std::string::npos;
    bool paused = states.empty() || states.find("paused") != std::string::npos;
    auto filter = http::parse_query(c.param("metadata"));
    size_t limit = kPageSize;
    if (c.has_param("limit")) {
      limit = std::clamp<size_t>(std::strtoul(c.param("limit").c_str(), nullptr, 10), 1, kPageSize);
    }
    std::string after = c.param("nextToken");
    auto all = mgr_.list(c.operator_ ? "" : c.tenant);
    std::erase_if(all, [&](const auto& sb) {
      return sb->state == SandboxState::kSuspended ? !paused : sb->state != SandboxState::kActive || !running;
    });
    std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a->id < b->id; });
    json page = json::array();
    std::string last;
    bool more = false;
    for (const auto& sb : all) {
      if (!after.empty() && sb->id <= after) continue;
      if (!metadata_matches(sb->metadata, filter)) continue;
      if (page.size() == limit) {
        more = true;
        break;
      }
      page.push_back(e2b::listed_json(*sb, false));
      last = sb->id;
    }
    http::Headers headers;
    if (more) headers.push_back({"X-Next-Token", last});
    return res->send_json(200, page, headers);
  }
  // /sandboxes/{id}[/action]
  std::string rest = p.substr(std::string_view("/sandboxes/").size());
  auto slash = rest.find('/');
  std::string id = rest.substr(0, slash);
  std::string action = slash == std::string::npos ? "" : rest.substr(slash);
  auto sb = valid_sandbox_id(id) ? mgr_.find(id) : nullptr;
  bool live = sb && (sb->state == SandboxState::kActive || sb->state == SandboxState::kSuspended);
  if (!live || (!c.operator_ && sb->tenant != c.tenant)) {
    return e2b::fail(res, make_error(Code::kNotFound, "sandbox " + id + " not found"));
  }
  if (action == "/pause" && m == bhttp::verb::post) {
    // E2B's pause is swissbox's suspend; a paused one answers 409 (the SDK returns false).
    if (sb->state == SandboxState::kSuspended) {
      return e2b::fail(res, make_error(Code::kConflict, "sandbox " + id + " is already paused"));
    }
    return mgr_.suspend(sb, [res](Status st) {
      if (!st) return e2b::fail(res, st.error());
      res->send(204, {}, {});
    });
  }
  if (action.empty() && m == bhttp::verb::get) return res->send_json(200, e2b::listed_json(*sb, true));
  if (action.empty() && m == bhttp::verb::delete_) {
    if (auto st = mgr_.remove(id, "killed by E2B API"); !st) return e2b::fail(res, st.error());
    return res->send(204, {}, {});
  }
  if ((action == "/timeout" || action == "/connect") && m == bhttp::verb::post) {
    auto body = c.body_json(opts_.max_json_body);
    if (!body) return e2b::fail(res, body.error());
    auto t = body->find("timeout");
    bool has_timeout = t != body->end() && !t->is_null();
    if (has_timeout && (!t->is_number_integer() || t->get<int64_t>() < 1 ||
                        t->get<int64_t>() > 7 * 24 * 3600)) {
      return e2b::fail(res, make_error(Code::kInvalidArgument,
                                       "timeout must be a whole number of seconds between 1 and 604800"));
    }
    if (action == "/timeout" && !has_timeout) {
      return e2b::fail(res, make_error(Code::kInvalidArgument, "timeout is required"));
    }
    if (has_timeout) {
      // timeout: the sandbox lives that long from now; connect only ever extends its life.
      auto life = std::chrono::seconds(t->get<int64_t>());
      auto end = std::chrono::system_clock::now() + life;
      if (action == "/timeout" || end > sb->end_at) {
        sb->end_at = end;
        sb->timeout = std::max(sb->timeout, life);
        if (auto st = mgr_.save_record(*sb); !st) return e2b::fail(res, st.error());
      }
    }
    if (action == "/timeout") return res->send(204, {}, {});
    // connect resumes a paused sandbox: 201 then, 200 for one that was running.
    bool paused = sb->state == SandboxState::kSuspended;
    return mgr_.resume(sb, [res, sb, paused](Status st) {
      if (!st) return e2b::fail(res, st.error());
      res->send_json(paused ? 201 : 200, e2b::sandbox_json(*sb));
    });
  }
  e2b::fail(res, make_error(Code::kNotFound, "no route for " + std::string(c.req.method_string()) +
                                                 " " + c.path));
}

}  // namespace swissbox
