// POST /v1/sandboxes.
#include "agent/api/call.h"
#include "agent/sandbox/sandbox_ops.h"

namespace swissbox {

namespace bhttp = boost::beast::http;
using json = nlohmann::json;

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

}  // namespace swissbox
