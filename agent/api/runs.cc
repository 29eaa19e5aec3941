// Commands and code: POST …/exec and …/code (whole, or as SSE), and the one-shot
// POST /v1/execute.
#include "agent/api/call.h"
#include "agent/api/run_stream.h"
#include "agent/sandbox/sandbox_ops.h"

namespace swissbox {

namespace bhttp = boost::beast::http;
using json = nlohmann::json;

namespace {

// The native API's stream: SSE events named by kind; a run that could not be done ends
// with an error event {code, message}.
std::shared_ptr<RunStream> sse_stream(std::shared_ptr<http::Responder> res) {
  res->start_stream(200, "text/event-stream");
  return std::make_shared<RunStream>(std::move(res), [](std::string_view kind, const json& data) {
    return sse_event(kind == "failed" ? "error" : kind, data);
  });
}

}  // namespace

void AgentApi::watch_client(const std::shared_ptr<http::Responder>& res,
                            const std::shared_ptr<ExecHandle>& handle) {
  // A client that hangs up (or leaves an SSE stream) takes its command with it.
  res->on_client_gone(
      [this, handle] { boost::asio::post(mgr_.io(), [handle] { handle->cancel(); }); });
}

void AgentApi::stream_run(std::shared_ptr<Sandbox> sb, ExecRequest req, std::shared_ptr<RunStream> stream,
                          std::function<void(const Result<ExecOutcome>&)> count,
                          std::function<void()> after) {
  auto handle = run_exec(mgr_, sb, std::move(req), stream->output(),
                         [done = stream->done(std::move(after)), count](Result<ExecOutcome> r) {
                           count(r);
                           done(std::move(r));
                         },
                         stream->values());
  stream->set_handle(handle);
  watch_client(stream->responder(), handle);
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
  if (c.wants_sse()) return stream_run(sb, std::move(*req), sse_stream(res), count);
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
                  if (sse) return stream_run(box, std::move(req), sse_stream(res), count, cleanup);
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
