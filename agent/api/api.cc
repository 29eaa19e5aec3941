#include "agent/api/api.h"

#include <fmt/format.h>
#include <stdlib.h>
#include <sys/sysinfo.h>

#include <boost/asio/post.hpp>
#include <nlohmann/json.hpp>
#include <thread>

#include "agent/sandbox/sandbox_ops.h"
#include "agent/api/cri_monitor.h"
#include "common/auth.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/node_report.h"

namespace swissbox {

namespace bhttp = boost::beast::http;
using json = nlohmann::json;

namespace {

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string sse_event(std::string_view name, const json& data) {
  return fmt::format("event: {}\ndata: {}\n\n", name, dump(data));
}

}  // namespace

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

// One request in flight: the parsed pieces every handler needs.
struct AgentApi::Call {
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
    auto it = req.find(bhttp::field::accept);
    return it != req.end() && it->value().find("text/event-stream") != std::string_view::npos;
  }
  void fail(const Error& e) const {
    if (e.code == Code::kInternal)
      log::error("request failed", {{"request_id", res->request_id()}, {"error", e.to_string()}});
    res->send_error(e);
  }
  Result<json> body_json(size_t limit) const {
    if (req.body().size() > limit)
      return make_error(Code::kTooLarge, "JSON body larger than the limit");
    if (req.body().empty()) return json::object();
    if (!json_depth_ok(req.body(), 32))
      return make_error(Code::kInvalidArgument, "JSON nested deeper than 32 levels");
    json j = json::parse(req.body(), nullptr, false);
    if (j.is_discarded())
      return make_error(Code::kInvalidArgument, "request body is not valid JSON");
    if (!j.is_object())
      return make_error(Code::kInvalidArgument, "request body must be a JSON object");
    return j;
  }
};

AgentApi::AgentApi(SandboxManager& mgr, Metrics& metrics, ApiOptions opts)
    : mgr_(mgr), metrics_(metrics), opts_(std::move(opts)) {
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
  metrics_.describe("swissbox_tenant_executions_total", Metrics::Type::kCounter,
                    "Runs (exec, code, one-shot) by tenant.");
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
    metrics_.add("swissbox_tenant_executions_total", Metrics::labels({{"tenant", tenant}}));
    std::chrono::duration<double> d = std::chrono::steady_clock::now() - t0;
    metrics_.observe("swissbox_exec_duration_seconds",
                     Metrics::labels({{"kind", kind}, {"template", tmpl}, {"language", language}}),
                     d.count());
  };
}

std::optional<Error> AgentApi::admit(const http::RequestHeader& header, bool from_unix_socket) const {
  return http::check_bearer(header, from_unix_socket, opts_.tokens);
}

uint64_t AgentApi::body_limit(const http::RequestHeader& header) const {
  constexpr uint64_t kSmallJson = 1 << 20;
  const auto m = header.method();
  if (m == bhttp::verb::get || m == bhttp::verb::head || m == bhttp::verb::delete_) return 64 << 10;
  std::string_view path = http::target_path(header.target());
  if (m == bhttp::verb::put && path.ends_with("/files")) return kMaxFileBytes;
  // Code and stdin travel in these.
  if (path == "/v1/execute" || path.ends_with("/exec") || path.ends_with("/code"))
    return opts_.max_json_body;
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

  if (c->res->peer_is_unix()) {
    c->operator_ = true;
    c->admin = true;
    c->tenant = "local";
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
  if (rest == "/exec" && m == bhttp::verb::post) return exec(c, sb, false);
  if (rest == "/code" && m == bhttp::verb::post) return exec(c, sb, true);
  if (rest == "/files") return files(c, sb, false);
  if (rest == "/files/list" && m == bhttp::verb::get) return files(c, sb, true);
  c.fail(make_error(Code::kNotFound,
                    "no route for " + std::string(c.req.method_string()) + " " + c.path));
}

void AgentApi::create_sandbox(Call& c) {
  auto body = c.body_json(opts_.max_json_body);
  if (!body) return c.fail(body.error());
  json metadata = json::object();
  auto req = parse_create_request(*body, LimitBounds{}, &metadata);
  if (!req) return c.fail(req.error());
  auto res = c.res;
  mgr_.create(*req, c.tenant, metadata, [this, res](Result<std::shared_ptr<Sandbox>> sb, bool) {
    if (!sb) return res->send_error(sb.error());
    res->send_json(201, (*sb)->to_json(mgr_.node_name()));
  });
}

namespace {

// Streams one exec as SSE: stdout/stderr events as output arrives, then exit (or error).
// A client that reads slower than the command writes holds the command back: past kHigh
// bytes waiting for the client the runner stops reading the command's pipes (it blocks on
// its next write), and starts again below kLow. So a stream holds ≈ 1 MiB of the agent's
// memory, whatever the command writes and however slowly the client reads.
struct SseExec {
  static constexpr size_t kHigh = 1 << 20, kLow = 256 << 10;
  struct Flow {
    size_t queued = 0;
    bool paused = false;
    std::weak_ptr<ExecHandle> handle;  // set once the command was handed to the runner
  };
  static OutputFn output(std::shared_ptr<http::Responder> res, std::shared_ptr<Flow> flow) {
    return [res, flow](bool is_err, std::string_view data) {
      std::string event = sse_event(is_err ? "stderr" : "stdout", {{"data", data}});
      flow->queued += event.size();
      auto handle = flow->handle.lock();
      if (handle && !flow->paused && flow->queued > kHigh) {
        flow->paused = true;
        handle->pause(true);
      }
      size_t n = event.size();
      res->write_chunk(std::move(event), [flow, n] {
        flow->queued -= std::min(flow->queued, n);
        auto h = flow->handle.lock();
        if (h && flow->paused && flow->queued < kLow) {
          flow->paused = false;
          h->pause(false);
        }
      });
    };
  }
  static ExecDoneFn done(std::shared_ptr<http::Responder> res, std::function<void()> after = {}) {
    return [res, after](Result<ExecOutcome> r) {
      if (r)
        res->write_chunk(sse_event("exit", r->to_json(false)));
      else
        res->write_chunk(sse_event(
            "error", {{"code", code_name(r.error().code)}, {"message", r.error().to_string()}}));
      res->end_stream();
      if (after) after();
    };
  }
};

}  // namespace

void AgentApi::watch_client(const std::shared_ptr<http::Responder>& res,
                            const std::shared_ptr<ExecHandle>& handle) {
  // A client that hangs up (or leaves an SSE stream) takes its command with it.
  res->on_client_gone(
      [this, handle] { boost::asio::post(mgr_.io(), [handle] { handle->cancel(); }); });
}

void AgentApi::exec(Call& c, std::shared_ptr<Sandbox> sb, bool code) {
  auto body = c.body_json(opts_.max_json_body);
  if (!body) return c.fail(body.error());
  auto req = code ? parse_code_request(*body) : parse_exec_request(*body);
  if (!req) return c.fail(req.error());
  req->keep_worker = true;  // a session: its next run in this language finds a worker loaded
  auto res = c.res;
  auto count = run_recorder(code ? "code" : "exec", sb->template_name, sb->tenant, *req);
  if (c.wants_sse()) {
    res->start_stream(200, "text/event-stream");
    auto done = SseExec::done(res);
    auto flow = std::make_shared<SseExec::Flow>();
    auto handle = run_exec(mgr_, sb, std::move(*req), SseExec::output(res, flow),
                           [done, count](Result<ExecOutcome> r) {
                             count(r);
                             done(std::move(r));
                           });
    flow->handle = handle;
    watch_client(res, handle);
    return;
  }
  auto handle = run_exec(mgr_, sb, std::move(*req), nullptr, [res, count](Result<ExecOutcome> r) {
    count(r);
    if (!r) return res->send_error(r.error());
    res->send_json(200, r->to_json(true));
  });
  watch_client(res, handle);
}

void AgentApi::files(Call& c, std::shared_ptr<Sandbox> sb, bool list) {
  std::string path = c.has_param("path") ? c.param("path") : (list ? "." : "");
  if (auto st = validate_sandbox_path(path); !st) return c.fail(st.error());
  auto res = c.res;
  const auto m = c.req.method();
  if (list) {
    return list_dir(mgr_, sb, path, [res](Result<std::vector<proto::FileEntry>> r) {
      if (!r) return res->send_error(r.error());
      json entries = json::array();
      for (const auto& e : *r) entries.push_back(e.to_json());
      res->send_json(200, {{"entries", std::move(entries)}});
    });
  }
  if (m == bhttp::verb::get) {
    return read_file(mgr_, sb, path, [res](Result<std::string> r) {
      if (!r) return res->send_error(r.error());
      res->send(200, std::move(*r), "application/octet-stream");
    });
  }
  if (m == bhttp::verb::put && c.res->body()) {
    return upload_file(mgr_, sb, path, c.res->body(), [res, path](Status st) {
      if (!st) return res->send_error(st.error());
      res->send_json(200, {{"path", path}, {"ok", true}});
    });
  }
  if (m == bhttp::verb::put) {
    if (c.req.body().size() > kMaxFileBytes)
      return c.fail(make_error(Code::kTooLarge, "file larger than 64 MiB"));
    return write_file(mgr_, sb, path, std::move(c.req.body()), [res, path](Status st) {
      if (!st) return res->send_error(st.error());
      res->send_json(200, {{"path", path}, {"ok", true}});
    });
  }
  if (m == bhttp::verb::delete_) {
    bool recursive = c.param("recursive") == "true" || c.param("recursive") == "1";
    return delete_path(mgr_, sb, path, recursive, [res](Status st) {
      if (!st) return res->send_error(st.error());
      res->send(204, {}, {});
    });
  }
  c.fail(make_error(Code::kInvalidArgument, "use GET, PUT or DELETE on files"));
}

void AgentApi::execute_oneshot(Call& c) {
  auto body = c.body_json(opts_.max_json_body);
  if (!body) return c.fail(body.error());
  Result<ExecRequest> req =
      body->contains("language") ? parse_code_request(*body) : parse_exec_request(*body);
  if (!req) return c.fail(req.error());
  json create_body = {{"template", body->value("template", json("default"))}};
  auto create = parse_create_request(create_body, LimitBounds{}, nullptr);
  if (!create) return c.fail(create.error());
  create->language = req->language;
  auto count = run_recorder("oneshot", create->template_name, c.tenant, *req);
  std::vector<std::pair<std::string, std::string>> files;
  if (auto it = body->find("files"); it != body->end() && !it->is_null()) {
    if (!it->is_object())
      return c.fail(make_error(Code::kInvalidArgument, "files must be an object {path: content}"));
    for (auto& [k, v] : it->items()) {
      if (!v.is_string())
        return c.fail(
            make_error(Code::kInvalidArgument, "content of file " + k + " must be a string"));
      if (auto st = validate_sandbox_path(k); !st) return c.fail(st.error());
      files.emplace_back(k, v.get<std::string>());
    }
  }
  auto res = c.res;
  bool sse = c.wants_sse();
  mgr_.create(*create, c.tenant, json::object(),
              [this, res, sse, count, req = std::move(*req), files = std::move(files)](
                  Result<std::shared_ptr<Sandbox>> sb, bool) mutable {
                if (!sb) return res->send_error(sb.error());
                auto box = *sb;
                // The client may have deleted it meanwhile: nothing left to do then.
                auto cleanup = [this, id = box->id] { (void)mgr_.remove(id, "one-shot finished"); };
                auto run = [this, res, sse, box, cleanup, count, req = std::move(req)]() mutable {
                  if (sse) {
                    res->start_stream(200, "text/event-stream");
                    auto flow = std::make_shared<SseExec::Flow>();
                    auto handle = run_exec(mgr_, box, std::move(req), SseExec::output(res, flow),
                                           [count, done = SseExec::done(res, cleanup)](
                                               Result<ExecOutcome> r) {
                                             count(r);
                                             done(std::move(r));
                                           });
                    flow->handle = handle;
                    watch_client(res, handle);
                    return;
                  }
                  auto handle = run_exec(mgr_, box, std::move(req), nullptr,
                                         [res, cleanup, count](Result<ExecOutcome> r) {
                                           count(r);
                                           cleanup();
                                           if (!r) return res->send_error(r.error());
                                           res->send_json(200, r->to_json(true));
                                         });
                  watch_client(res, handle);
                };
                // Files first, one after another, then the run.
                auto step = std::make_shared<std::function<void(size_t)>>();
                *step = [this, box, files = std::move(files), run = std::move(run), res, cleanup,
                         step](size_t i) mutable {
                  if (i == files.size()) {
                    auto r = std::move(run);
                    *step = nullptr;  // break the self-reference
                    return r();
                  }
                  write_file(mgr_, box, files[i].first, files[i].second,
                             [step, i, res, cleanup](Status st) {
                               if (!st) {
                                 cleanup();
                                 *step = nullptr;
                                 return res->send_error(st.error());
                               }
                               (*step)(i + 1);
                             });
                };
                (*step)(0);
              });
}

namespace {

// MemAvailable from /proc/meminfo: free memory plus what the kernel can reclaim (page
// cache), the figure that says whether another sandbox fits.
uint64_t memory_available_bytes() {
  auto text = fs::read_file("/proc/meminfo", 1 << 16);
  if (!text) return 0;
  auto at = text->find("MemAvailable:");
  if (at == std::string::npos) return 0;
  return std::strtoull(text->c_str() + at + 13, nullptr, 10) * 1024;
}

}  // namespace

void AgentApi::node_info(Call& c) {
  NodeReport r;
  r.node = mgr_.node_name();
  r.region = opts_.region;
  auto& rt = mgr_.runtime();
  r.runtime_name = rt.name();
  r.runtime_version = rt.version();
  r.platform = rt.platform();
  r.max_sandboxes = mgr_.capacity();
  r.cpus = static_cast<int>(std::thread::hardware_concurrency());
  struct sysinfo si {};
  sysinfo(&si);
  r.memory_bytes = static_cast<uint64_t>(si.totalram) * si.mem_unit;
  double loadavg[1] = {0};
  getloadavg(loadavg, 1);
  r.loadavg_1m = loadavg[0];
  r.memory_available_bytes = memory_available_bytes();
  r.active = mgr_.active_count();
  r.deleting = mgr_.deleting_count();
  for (const auto& [name, p] : mgr_.pool_status()) r.warm[name] = p.ready;
  r.languages = supported_languages();
  r.draining = mgr_.draining();
  if (opts_.cri) r.cri = opts_.cri->to_json();
  c.res->send_json(200, r.to_json());
}

void AgentApi::warmpool(Call& c, const std::string& tmpl) {
  const auto m = c.req.method();
  if (tmpl.empty()) {
    if (m != bhttp::verb::get)
      return c.fail(make_error(Code::kInvalidArgument, "use GET on /v1/warmpool"));
    json out = json::object();
    for (const auto& [name, p] : mgr_.pool_status()) {
      out[name] = {
          {"target", p.target}, {"ready", p.ready}, {"starting", p.starting}, {"active", p.active}};
    }
    // ?memory=1: the mean host memory of each pool's ready sandboxes (reads /proc of each).
    if (c.param("memory") != "1" && c.param("memory") != "true")
      return c.res->send_json(200, {{"templates", out}});
    return mgr_.warm_footprints([out, res = c.res](std::map<std::string, MemoryFootprint> fs) mutable {
      for (const auto& [name, f] : fs) {
        out[name]["memory_pss_bytes"] = f.pss_bytes;
        out[name]["memory_rss_bytes"] = f.rss_bytes;
      }
      res->send_json(200, {{"templates", out}});
    });
  }
  if (m != bhttp::verb::put)
    return c.fail(make_error(Code::kInvalidArgument, "use PUT on /v1/warmpool/{template}"));
  // The pools are the node's, shared by every tenant.
  if (!c.admin) {
    return c.fail(make_error(Code::kPermissionDenied,
                             "changing a warm pool needs an admin token or the unix socket"));
  }
  auto body = c.body_json(opts_.max_json_body);
  if (!body) return c.fail(body.error());
  auto it = body->find("target");
  if (it == body->end() || !it->is_number_integer()) {
    return c.fail(make_error(Code::kInvalidArgument, "target (integer) is required"));
  }
  if (auto st = mgr_.set_pool_target(tmpl, it->get<int>()); !st) return c.fail(st.error());
  auto p = mgr_.pool_status()[tmpl];
  c.res->send_json(
      200,
      {{"template", tmpl}, {"target", p.target}, {"ready", p.ready}, {"starting", p.starting}});
}

}  // namespace swissbox
