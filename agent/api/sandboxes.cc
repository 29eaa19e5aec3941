// POST /v1/sandboxes.
#include "agent/api/call.h"
#include "agent/sandbox/template_store.h"
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
  auto create = [this, res, tenant = c.tenant, metadata](CreateRequest req) mutable {
    req.metadata = &metadata;
    mgr_.create(req, tenant, metadata, [this, res](Result<std::shared_ptr<Sandbox>> sb, bool) {
      if (!sb) return res->send_error(sb.error());
      res->send_json(201, (*sb)->to_json(mgr_.node_name()));
    });
  };
  auto packages = body->find("pre_install_packages");
  if (packages == body->end()) return create(std::move(*req));
  // A template of the base plus the packages (issue 22): the first create waits for its
  // build, later ones find it ready.
  auto set = parse_package_list(*packages);
  if (!set) return c.fail(set.error());
  if (!opts_.templates) return c.fail(make_error(Code::kUnavailable, "this node builds no package layers"));
  auto shared = std::make_shared<CreateRequest>(std::move(*req));
  auto name = opts_.templates->derive(shared->template_name, *set, [this, shared, create, res](Status built) mutable {
    if (!built) return res->send_error(built.error());
    // Its next creates are claimed warm: a pool of one unless it has one.
    const std::string pool = pool_key(shared->template_name, shared->network);
    auto pools = mgr_.pool_status();
    if (auto it = pools.find(pool); it == pools.end() || it->second.target == 0) {
      if (auto st = mgr_.set_pool_target(pool, 1); !st)
        log::warn("no warm pool for a derived template", {{"pool", pool}, {"error", st.error().to_string()}});
    }
    create(std::move(*shared));
  });
  if (!name) return c.fail(name.error());
  shared->template_name = *name;
}

}  // namespace swissbox
