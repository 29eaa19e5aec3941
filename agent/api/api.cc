// The agent's HTTP API: admission (token, body limits), the routing table, and what every
// answer records (request and error metrics). Each resource's handlers are in a file of
// their own: sandboxes.cc, runs.cc (exec, code, one-shots), files.cc, contexts.cc,
// node.cc (node, pools).
#include "agent/api/api.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "agent/api/call.h"
#include "agent/api/e2b/e2b.h"
#include "agent/api/cri_monitor.h"
#include "agent/sandbox/sandbox_ops.h"
#include "common/auth.h"
#include "common/log.h"

namespace swissbox {

namespace bhttp = boost::beast::http;
using json = nlohmann::json;

bool json_depth_ok(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"')
      in_string = true;
    else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

AgentApi::AgentApi(SandboxManager& mgr, Metrics& metrics, ApiOptions opts)
    : mgr_(mgr), metrics_(metrics), opts_(std::move(opts)),
      envd_processes_(std::make_shared<e2b::Processes>()),
      envd_watchers_(std::make_shared<e2b::Watchers>()) {
  metrics_.describe("swissbox_http_requests_total", Metrics::Type::kCounter,
                    "HTTP requests by method and answer status.");
  metrics_.describe("swissbox_exec_total", Metrics::Type::kCounter,
                    "Commands run, by kind (exec, code, oneshot) and outcome (ok, timeout, "
                    "oom_killed, error).");
  metrics_.describe("swissbox_exec_duration_seconds", Metrics::Type::kHistogram,
                    "Time from request to result of a run, by kind (exec, code, oneshot; a "
                    "one-shot includes its claim), template and language (command for exec).");
  metrics_.describe("swissbox_exec_truncated_total", Metrics::Type::kCounter,
                    "Runs whose output went past its cap, by kind.");
  metrics_.describe("swissbox_api_errors_total", Metrics::Type::kCounter,
                    "Error answers by error code (invalid_argument, not_found, ...).");
}

namespace {

std::string language_label(const ExecRequest& req) {
  if (!req.language.empty()) return req.language;
  return req.code_path.empty() ? "command" : "bash";
}

}  // namespace

std::function<void(const Result<ExecOutcome>&)> AgentApi::run_recorder(std::string kind,
                                                                        std::string template_name,
                                                                        std::string tenant,
                                                                        const ExecRequest& req) {
  auto t0 = std::chrono::steady_clock::now();
  return [this, t0, kind = std::move(kind), tmpl = std::move(template_name),
          tenant = std::move(tenant), language = language_label(req)](const Result<ExecOutcome>& r) {
    std::string outcome = !r              ? "error"
                          : r->oom_killed ? "oom_killed"
                          : r->timed_out  ? "timeout"
                                          : "ok";
    metrics_.add("swissbox_exec_total", Metrics::labels({{"kind", kind}, {"outcome", outcome}}));
    if (r && r->truncated) metrics_.add("swissbox_exec_truncated_total", Metrics::labels({{"kind", kind}}));
    mgr_.count_execution(tenant);
    std::chrono::duration<double> d = std::chrono::steady_clock::now() - t0;
    metrics_.observe("swissbox_exec_duration_seconds",
                     Metrics::labels({{"kind", kind}, {"template", tmpl}, {"language", language}}),
                     d.count());
  };
}

std::optional<Error> AgentApi::admit(const http::RequestHeader& header, bool from_unix_socket) const {
  switch (e2b::kind_of(header)) {
    case e2b::Kind::kControl:
      return std::nullopt;  // small bodies; the key is checked with the body, in E2B's shape
    case e2b::Kind::kSandbox: {
      // A sandbox's token is checked before its body (an upload) is read.
      if (from_unix_socket) return std::nullopt;
      std::string_view token = e2b::header(header, "X-Access-Token");
      if (token.empty()) token = e2b::header(header, "E2B-Traffic-Access-Token");
      auto sb = mgr_.find(std::string(e2b::header(header, "E2b-Sandbox-Id")));
      if (sb && e2b::access_allowed(*sb, token)) return std::nullopt;
      return make_error(Code::kUnauthenticated, "X-Access-Token does not open this sandbox");
    }
    case e2b::Kind::kNone:
      break;
  }
  return http::check_bearer(header, from_unix_socket, opts_.tokens);
}

uint64_t AgentApi::body_limit(const http::RequestHeader& header) const {
  constexpr uint64_t kSmallJson = 1 << 20;
  const auto m = header.method();
  if (m == bhttp::verb::get || m == bhttp::verb::head || m == bhttp::verb::delete_) return 64 << 10;
  // E2B's control plane is read before its key is checked (answers in E2B's shape): small.
  if (e2b::kind_of(header) == e2b::Kind::kControl) return 64 << 10;
  std::string_view path = http::target_path(header.target());
  if (m == bhttp::verb::put && path.ends_with("/files")) return kMaxFileBytes;
  // Code and stdin travel in these.
  if (path == "/v1/execute" || path.ends_with("/exec") || path.ends_with("/code"))
    return opts_.max_json_body;
  if (e2b::kind_of(header) == e2b::Kind::kSandbox) {
    if (path == "/execute") return opts_.max_json_body;
    if (path == "/files") return kMaxFileBytes + (1 << 20);  // a multipart upload
  }
  return kSmallJson;
}

bool AgentApi::streams_body(const http::RequestHeader& header) {
  std::string_view path = http::target_path(header.target());
  return header.method() == bhttp::verb::put && path.starts_with("/v1/sandboxes/") &&
         path.ends_with("/files");
}

void AgentApi::handle(http::Request&& req, std::shared_ptr<http::Responder> res) {
  auto c = std::make_shared<Call>();
  c->req = std::move(req);
  c->res = std::move(res);
  std::string_view target = c->req.target();
  auto q = target.find('?');
  c->path = std::string(target.substr(0, q));
  if (q != std::string_view::npos) c->query = http::parse_query(target.substr(q + 1));
  c->res->on_answer([this, method = std::string(c->req.method_string())](unsigned status) {
    metrics_.add("swissbox_http_requests_total",
                 Metrics::labels({{"method", method}, {"code", std::to_string(status)}}));
    if (auto code = code_name_of_status(status); !code.empty())
      metrics_.add("swissbox_api_errors_total", Metrics::labels({{"code", code}}));
  });

  auto e2b_kind = e2b::kind_of(c->req);
  if (c->res->peer_is_unix()) {
    c->operator_ = true;
    c->admin = true;
    c->tenant = "local";
  } else if (e2b_kind == e2b::Kind::kSandbox) {
    // Authorised by the sandbox's access token (e2b_sandbox).
  } else if (e2b_kind == e2b::Kind::kControl) {
    // E2B's API key names the tenant, through the same token file.
    std::string_view key = e2b::header(c->req, "X-API-KEY");
    const Principal* who = token_principal(key, opts_.tokens);
    if (!opts_.tokens.empty() && !who) {
      return e2b::fail(c->res, make_error(Code::kUnauthenticated, "Invalid API key"));
    }
    c->tenant = who ? who->tenant : "default";
    c->admin = who ? who->admin : true;
  } else if (!opts_.tokens.empty() && c->path != "/healthz" && c->path != "/readyz") {
    auto it = c->req.find(bhttp::field::authorization);
    const Principal* who =
        bearer_principal(it == c->req.end() ? std::string_view{} : it->value(), opts_.tokens);
    if (!who) {
      return c->fail(make_error(Code::kUnauthenticated,
                                "a valid 'Authorization: Bearer <token>' is required"));
    }
    c->tenant = who->tenant;
    c->admin = who->admin;
  } else {
    c->tenant = "default";
    c->admin = opts_.tokens.empty();
  }
  try {
    if (e2b_kind == e2b::Kind::kControl) return e2b_control(*c);
    if (e2b_kind == e2b::Kind::kSandbox) return e2b_sandbox(*c);
    route(*c);
  } catch (const std::exception& e) {
    c->fail(make_error(Code::kInternal, std::string("unexpected error: ") + e.what()));
  }
}

void AgentApi::route(Call& c) {
  const auto m = c.req.method();
  const std::string& p = c.path;
  auto method_not_allowed = [&] {
    c.fail(make_error(Code::kInvalidArgument, fmt::format("method {} not allowed on {}",
                                                          std::string(c.req.method_string()), p)));
  };
  if (p == "/healthz") return c.res->send_json(200, {{"status", "ok"}});
  if (p == "/readyz") {
    if (auto why = opts_.cri ? opts_.cri->not_ready() : std::nullopt) {
      return c.res->send_json(503, {{"ready", false}, {"reason", *why}});
    }
    bool warm = mgr_.pools_warm();
    return c.res->send_json(
        warm ? 200 : 503,
        {{"ready", warm}, {"reason", warm ? "pools warm" : "warm pools are filling"}});
  }
  if (p == "/metrics") {
    // Every tenant's usage is in there.
    if (!c.admin) return c.fail(make_error(Code::kPermissionDenied, "/metrics needs an admin token"));
    mgr_.update_gauges();
    mgr_.publish_tenant_usage();
    return c.res->send(200, metrics_.render() + render_process_metrics(), "text/plain; version=0.0.4");
  }
  if (p == "/v1/node") return node_info(c);
  if (p == "/v1/node/drain" || p == "/v1/node/undrain") {
    if (m != bhttp::verb::post) return method_not_allowed();
    if (!c.operator_) {
      return c.fail(make_error(Code::kNotFound, "draining is done over the agent's unix socket"));
    }
    mgr_.set_draining(p == "/v1/node/drain");
    return node_info(c);
  }
  if (p == "/v1/tenants") return tenants(c, "", "");
  if (p.rfind("/v1/tenants/", 0) == 0) {
    std::string rest = p.substr(12);
    auto slash = rest.find('/');
    return tenants(c, rest.substr(0, slash), slash == std::string::npos ? "" : rest.substr(slash));
  }
  if (p == "/v1/templates") return templates(c, "", "");
  if (p.rfind("/v1/templates/", 0) == 0) {
    std::string rest = p.substr(14);
    auto slash = rest.find('/');
    return templates(c, rest.substr(0, slash), slash == std::string::npos ? "" : rest.substr(slash));
  }
  if (p == "/v1/warmpool") return warmpool(c, "");
  if (p.rfind("/v1/warmpool/", 0) == 0) return warmpool(c, p.substr(13));
  if (p == "/v1/execute") {
    if (m != bhttp::verb::post) return method_not_allowed();
    return execute_oneshot(c);
  }
  if (p == "/v1/sandboxes") {
    if (m == bhttp::verb::post) return create_sandbox(c);
    if (m != bhttp::verb::get) return method_not_allowed();
    json items = json::array();
    for (const auto& sb : mgr_.list(c.operator_ ? "" : c.tenant))
      items.push_back(sb->to_json(mgr_.node_name()));
    return c.res->send_json(200, {{"sandboxes", items}});
  }
  if (p.rfind("/v1/sandboxes/", 0) == 0) {
    std::string rest = p.substr(14);
    auto slash = rest.find('/');
    std::string id = rest.substr(0, slash);
    return sandbox_route(c, id, slash == std::string::npos ? "" : rest.substr(slash));
  }
  c.fail(make_error(Code::kNotFound, "no route for " + p));
}

void AgentApi::sandbox_route(Call& c, const std::string& id, const std::string& rest) {
  if (!valid_sandbox_id(id)) {
    return c.fail(
        make_error(Code::kInvalidArgument, "'" + id + "' is not a sandbox id (sbx-<node>-<hex>)"));
  }
  auto sb = mgr_.find(id);
  // Another tenant's sandbox does not exist for this caller.
  if (!sb || sb->state == SandboxState::kWarm || (!c.operator_ && sb->tenant != c.tenant)) {
    return c.fail(make_error(Code::kNotFound, "sandbox " + id + " not found"));
  }
  const auto m = c.req.method();
  if (rest.empty()) {
    if (m == bhttp::verb::get) {
      return mgr_.read_usage(sb, [this, sb, res = c.res](std::optional<MemoryFootprint> f) {
        json j = sb->to_json(mgr_.node_name());
        if (f) {
          j["metrics"]["memory_pss_bytes"] = f->pss_bytes;
          j["metrics"]["memory_rss_bytes"] = f->rss_bytes;
        }
        res->send_json(200, j);
      });
    }
    if (m == bhttp::verb::delete_) {
      if (auto st = mgr_.remove(id, "deleted by API"); !st) return c.fail(st.error());
      return c.res->send(204, {}, {});
    }
    return c.fail(make_error(Code::kInvalidArgument, "use GET or DELETE on a sandbox"));
  }
  if (sb->state == SandboxState::kFailed) {
    return c.fail(make_error(Code::kConflict, "sandbox " + id + " failed: " + sb->failure));
  }
  if ((rest == "/suspend" || rest == "/resume") && m == bhttp::verb::post) {
    auto answer = [this, sb, res = c.res](Status st) {
      if (!st) return res->send_error(st.error());
      res->send_json(200, sb->to_json(mgr_.node_name()));
    };
    return rest == "/suspend" ? mgr_.suspend(sb, answer) : mgr_.resume(sb, answer);
  }
  if (sb->state == SandboxState::kSuspended || sb->transition) {
    // What needs the sandbox running resumes it first (a suspend under way answers 409).
    return mgr_.resume(sb, [this, call = c.shared_from_this(), id, rest](Status st) {
      if (!st) return call->fail(st.error());
      sandbox_route(*call, id, rest);
    });
  }
  if (rest == "/exec" && m == bhttp::verb::post) return exec(c, sb, false);
  if (rest == "/code" && m == bhttp::verb::post) return exec(c, sb, true);
  if (rest == "/files") return files(c, sb, false);
  if (rest == "/files/list" && m == bhttp::verb::get) return files(c, sb, true);
  if (rest == "/contexts" || rest.starts_with("/contexts/")) {
    return contexts(c, sb, rest.substr(std::string_view("/contexts").size()));
  }
  c.fail(make_error(Code::kNotFound,
                    "no route for " + std::string(c.req.method_string()) + " " + c.path));
}

}  // namespace swissbox
