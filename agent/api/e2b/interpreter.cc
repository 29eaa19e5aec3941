// E2B's code interpreter (E2b-Sandbox-Port: 49999): POST /execute streams a cell's output,
// values and error as newline-delimited JSON; /contexts manages the contexts it runs in.
// run_code without a context runs in the language's default context, which is stateful
// (made on first use): x = 41 in one call, x + 1 in the next gives 42.
#include "agent/api/call.h"
#include "agent/api/e2b/e2b.h"
#include "agent/api/run_stream.h"

namespace swissbox {

namespace bhttp = boost::beast::http;
using json = nlohmann::json;

namespace {

// One line of /execute's stream, as E2B's server writes it.
std::string execute_line(std::string_view kind, const json& data) {
  json line;
  if (kind == "stdout" || kind == "stderr") {
    line = {{"type", kind},
            {"text", data.value("data", "")},
            {"timestamp", e2b::rfc3339(std::chrono::system_clock::now())}};
  } else if (kind == "result") {
    line = data;
    line["type"] = "result";
    line["extra"] = json::object();
  } else if (kind == "error") {
    line = {{"type", "error"},
            {"name", data.value("name", "")},
            {"value", data.value("value", "")},
            {"traceback", data.value("traceback", "")}};
  } else if (kind == "failed") {
    // The run could not be done (the sandbox failed, its context is gone): an error the
    // SDK shows, then the end.
    line = {{"type", "error"}, {"name", "SandboxError"}, {"value", data.value("message", "")},
            {"traceback", ""}};
    return dump(line) + "\n" + dump({{"type", "end_of_execution"}}) + "\n";
  } else {
    line = {{"type", "end_of_execution"}};
  }
  return dump(line) + "\n";
}

std::string context_id_of(const json& body) {
  auto it = body.find("context_id");
  return it != body.end() && it->is_string() ? it->get<std::string>() : "";
}

}  // namespace

void AgentApi::e2b_interpreter(Call& c, std::shared_ptr<Sandbox> sb) {
  const auto m = c.req.method();
  auto res = c.res;
  if (c.path == "/health") return res->send(204, {}, {});
  if (c.path == "/execute" && m == bhttp::verb::post) {
    auto body = c.body_json(opts_.max_json_body);
    if (!body) return e2b::fail(res, body.error());
    auto code = body->find("code");
    if (code == body->end() || !code->is_string()) {
      return e2b::fail(res, make_error(Code::kInvalidArgument, "code is required and must be a string"));
    }
    std::string context_id = context_id_of(*body);
    std::string language = "python";
    if (auto l = body->find("language"); l != body->end() && l->is_string()) {
      auto canonical = canonical_language(l->get<std::string>());
      if (!canonical) {
        return e2b::fail(res, make_error(Code::kInvalidArgument,
                                         "language '" + l->get<std::string>() +
                                             "' is not supported (python, javascript, typescript, bash)"));
      }
      language = *canonical;
    }
    json request = {{"code", *code}, {"timeout_ms", limits::kInterpreterRunTimeoutMs},
                    {"max_output_bytes", limits::kMaxOutputCap}};
    // The sandbox's environment (E2B's HOME=/home/user…) for every cell, as the contexts of
    // a warm sandbox started before it had one; the run's env_vars over it.
    json env = sb->env;
    if (auto vars = body->find("env_vars"); vars != body->end() && vars->is_object()) {
      for (const auto& [k, v] : vars->items()) env[k] = v;
    } else if (vars != body->end() && !vars->is_null()) {
      return e2b::fail(res, make_error(Code::kInvalidArgument, "env_vars must be an object of strings"));
    }
    request["env"] = std::move(env);
    if (context_id.empty()) {
      context_id = "default-" + language;
    } else if (!sb->contexts.count(context_id)) {
      return e2b::fail(res, make_error(Code::kNotFound, "context " + context_id + " not found"));
    }
    request["context_id"] = context_id;
    auto req = parse_code_request(request);
    if (!req) return e2b::fail(res, req.error());
    auto run = [this, res, sb, req = std::move(*req)]() mutable {
      auto& info = sb->contexts.at(req.context_id);
      req.language = info.language;
      res->start_stream(200, "application/json");
      res->write_chunk(dump({{"type", "number_of_executions"}, {"execution_count", ++info.runs}}) + "\n");
      auto count = run_recorder("code", sb->template_name, sb->tenant, req);
      stream_run(sb, std::move(req), std::make_shared<RunStream>(res, &execute_line), count);
    };
    if (sb->contexts.count(context_id)) return run();
    ContextRequest start;
    start.id = context_id;
    start.language = language;
    return start_context(mgr_, sb, std::move(start), [res, sb, context_id, run](Result<std::string> id) mutable {
      // Two first runs at once both start the default context: the second finds it made.
      if (!id && !sb->contexts.count(context_id)) return e2b::fail(res, id.error());
      run();
    });
  }
  // E2B's contexts start in the user's home, which is the workspace.
  auto shown = [](const std::string& id, const ContextInfo& info) {
    json j = info.to_json(id);
    if (info.cwd.empty()) j["cwd"] = "/home/user";
    return j;
  };
  if (c.path == "/contexts" && m == bhttp::verb::get) {
    json list = json::array();
    for (const auto& [id, info] : sb->contexts) list.push_back(shown(id, info));
    return res->send_json(200, list);
  }
  if (c.path == "/contexts" && m == bhttp::verb::post) {
    auto body = c.body_json(opts_.max_json_body);
    if (!body) return e2b::fail(res, body.error());
    auto req = parse_context_request(*body);
    if (!req) return e2b::fail(res, req.error());
    ContextInfo info{req->language, req->cwd};
    return start_context(mgr_, sb, std::move(*req), [res, info, shown](Result<std::string> id) {
      if (!id) return e2b::fail(res, id.error());
      res->send_json(200, shown(*id, info));
    });
  }
  if (c.path.starts_with("/contexts/")) {
    std::string rest = c.path.substr(std::string_view("/contexts/").size());
    bool restart = rest.ends_with("/restart") && m == bhttp::verb::post;
    std::string id = restart ? rest.substr(0, rest.size() - 8) : rest;
    auto answer = [res](Status st) {
      if (!st) return e2b::fail(res, st.error());
      res->send(204, {}, {});
    };
    if (restart) return restart_context(mgr_, sb, id, answer);
    if (m == bhttp::verb::delete_) return stop_context(mgr_, sb, id, answer);
  }
  e2b::fail(res, make_error(Code::kNotFound, "no route for " + std::string(c.req.method_string()) +
                                                 " " + c.path + " on the code interpreter"));
}

}  // namespace swissbox
