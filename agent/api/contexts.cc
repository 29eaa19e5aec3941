// A sandbox's stateful code contexts: POST/GET …/contexts, DELETE …/contexts/{cid},
// POST …/contexts/{cid}/restart. Runs go through …/code with context_id (runs.cc).
#include "agent/api/call.h"
#include "agent/sandbox/sandbox_ops.h"

namespace swissbox {

namespace bhttp = boost::beast::http;
using json = nlohmann::json;

void AgentApi::contexts(Call& c, std::shared_ptr<Sandbox> sb, const std::string& rest) {
  const auto m = c.req.method();
  auto res = c.res;
  if (rest.empty() && m == bhttp::verb::get) {
    json list = json::array();
    for (const auto& [id, info] : sb->contexts) list.push_back(info.to_json(id));
    return res->send_json(200, {{"contexts", std::move(list)}});
  }
  if (rest.empty() && m == bhttp::verb::post) {
    auto body = c.body_json(opts_.max_json_body);
    if (!body) return c.fail(body.error());
    auto req = parse_context_request(*body);
    if (!req) return c.fail(req.error());
    ContextInfo info{req->language, req->cwd};
    return start_context(mgr_, sb, std::move(*req), [res, info](Result<std::string> id) {
      if (!id) return res->send_error(id.error());
      res->send_json(201, info.to_json(*id));
    });
  }
  // rest is "/{cid}" or "/{cid}/restart".
  auto slash = rest.find('/', 1);
  std::string id = rest.substr(1, slash == std::string::npos ? std::string::npos : slash - 1);
  std::string action = slash == std::string::npos ? "" : rest.substr(slash);
  if (!proto::valid_context_id(id)) {
    return c.fail(make_error(Code::kInvalidArgument, "'" + id + "' is not a context id"));
  }
  if (action.empty() && m == bhttp::verb::delete_) {
    return stop_context(mgr_, sb, id, [res](Status st) {
      if (!st) return res->send_error(st.error());
      res->send(204, {}, {});
    });
  }
  if (action == "/restart" && m == bhttp::verb::post) {
    return restart_context(mgr_, sb, id, [res, sb, id](Status st) {
      if (!st) return res->send_error(st.error());
      auto it = sb->contexts.find(id);
      res->send_json(200, it != sb->contexts.end() ? it->second.to_json(id) : json{{"id", id}});
    });
  }
  c.fail(make_error(Code::kNotFound,
                    "no route for " + std::string(c.req.method_string()) + " " + c.path));
}

}  // namespace swissbox
