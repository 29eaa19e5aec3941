// Templates (issue 22): GET /v1/templates (the built-ins and the node's image and package templates with
// their states), GET /v1/templates/{name}, GET …/{name}/log (the build log), PUT
// /v1/templates/{name} (an admin: starts a build, 202), DELETE …/{name} (an admin; 409 while
// sandboxes use it; its warm pools go first).
#include "agent/api/call.h"
#include "agent/sandbox/template_store.h"

namespace swissbox {

namespace bhttp = boost::beast::http;
using json = nlohmann::json;

namespace {

json builtin_json(const Template& t) {
  return {{"name", t.name}, {"state", "ready"}, {"builtin", true}, {"limits", limits_json(t.limits)}};
}

}  // namespace

void AgentApi::templates(Call& c, const std::string& name, const std::string& rest) {
  const auto m = c.req.method();
  TemplateStore* store = opts_.templates;
  if (name.empty()) {
    if (m != bhttp::verb::get) return c.fail(make_error(Code::kInvalidArgument, "use GET on /v1/templates"));
    json items = json::array();
    for (const auto& [n, t] : builtin_templates()) items.push_back(builtin_json(t));
    if (store) {
      for (const auto& r : store->list()) items.push_back(r.to_json());
    }
    return c.res->send_json(200, {{"templates", items}});
  }
  if (rest == "/log") {
    if (m != bhttp::verb::get) return c.fail(make_error(Code::kInvalidArgument, "use GET on a template's log"));
    auto text = store ? store->log(name) : Result<std::string>(make_error(Code::kNotFound, "template " + name + " not found"));
    if (!text) return c.fail(text.error());
    return c.res->send(200, *text, "text/plain; charset=utf-8");
  }
  if (!rest.empty()) return c.fail(make_error(Code::kNotFound, "no route for " + c.path));
  if (m == bhttp::verb::get) {
    if (auto b = builtin_templates().find(name); b != builtin_templates().end())
      return c.res->send_json(200, builtin_json(b->second));
    auto r = store ? store->get(name) : std::nullopt;
    if (!r) return c.fail(make_error(Code::kNotFound, "template " + name + " not found"));
    return c.res->send_json(200, r->to_json());
  }
  if (m != bhttp::verb::put && m != bhttp::verb::delete_)
    return c.fail(make_error(Code::kInvalidArgument, "use GET, PUT or DELETE on /v1/templates/{name}"));
  if (!c.admin) return c.fail(make_error(Code::kPermissionDenied, "templates are made and deleted with an admin token"));
  if (!store) {
    return c.fail(make_error(Code::kUnavailable, "this node keeps no templates of its own"));
  }
  if (m == bhttp::verb::put) {
    auto body = c.body_json(opts_.max_json_body);
    if (!body) return c.fail(body.error());
    auto r = store->put(name, *body);
    if (!r) return c.fail(r.error());
    return c.res->send_json(202, r->to_json());
  }
  // Sandboxes in use keep it; its warm ones go with it.
  if (auto st = store->remove(name, mgr_.sandboxes_of_template(name)); !st) return c.fail(st.error());
  mgr_.drop_pools_of(name);
  c.res->send(204, "", "application/json");
}

}  // namespace swissbox
