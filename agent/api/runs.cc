// Commands and code: POST …/exec and …/code (whole, or as SSE), and the one-shot
// POST /v1/execute.
#include "agent/api/call.h"
#include "agent/sandbox/sandbox_ops.h"

namespace swissbox {

namespace bhttp = boost::beast::http;
using json = nlohmann::json;

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
  // A context run's values and exception, as SSE result and error events.
  static ValueFn values(std::shared_ptr<http::Responder> res) {
    return [res](std::string_view kind, const json& value) { res->write_chunk(sse_event(kind, value)); };
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
  if (!req->context_id.empty()) {
    auto ctx = sb->contexts.find(req->context_id);
    if (ctx == sb->contexts.end()) {
      return c.fail(make_error(Code::kNotFound, "no context " + req->context_id + " in sandbox " + sb->id));
    }
    if (!req->language.empty() && req->language != ctx->second.language) {
      return c.fail(make_error(Code::kInvalidArgument, "context " + req->context_id + " runs " +
                                                           ctx->second.language + ", not " + req->language));
    }
    req->language = ctx->second.language;
  }
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
                           },
                           SseExec::values(res));
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

}  // namespace swissbox
