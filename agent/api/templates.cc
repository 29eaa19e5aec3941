// Templates (issue 22): GET /v1/templates (the built-ins and the node's image and package templates with
// their states), GET /v1/templates/{name}, GET …/{name}/log (the build log; ?follow=1 streams
// it as it is written until the build has ended), PUT
// /v1/templates/{name} (an admin: starts a build, 202), DELETE …/{name} (an admin; 409 while
// sandboxes use it; its warm pools go first).
#include <boost/asio/steady_timer.hpp>

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

void AgentApi::follow_log(std::shared_ptr<http::Responder> res, const std::string& name, size_t offset) {
  TemplateStore* store = opts_.templates;
  auto state = store->get(name);
  auto chunk = store->log_from(name, offset, 64 << 10);
  if (!res->client_alive() || !chunk) return res->end_stream();
  const bool building = state && state->state == TemplateState::kBuilding;
  if (chunk->empty() && !building) return res->end_stream();
  offset += chunk->size();
  auto next = [this, res, name, offset, more = !chunk->empty()] {
    if (more) return follow_log(res, name, offset);
    auto timer = std::make_shared<boost::asio::steady_timer>(mgr_.io(), std::chrono::milliseconds(250));
    timer->async_wait([this, res, name, offset, timer](boost::system::error_code) { follow_log(res, name, offset); });
  };
  if (chunk->empty()) return next();
  res->write_chunk(std::move(*chunk), next);
}

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
    if (c.param("follow") != "true" && c.param("follow") != "1") return c.res->send(200, *text, "text/plain; charset=utf-8");
    // ?follow=1: the log as the build writes it, until the build has ended.
    c.res->start_stream(200, "text/plain; charset=utf-8");
    follow_log(c.res, name, 0);
    return;
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
