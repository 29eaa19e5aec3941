// Tenants on the scheduler (issue 21): GET /v1/tenants/{t}/usage sums the tenant's usage
// over every node; DELETE /v1/tenants/{t} goes to every node the scheduler knows and is
// answered 200 only when each confirmed. A node that could not be reached is named in the
// 503. Each node that did the delete records it (tenant, time) and reports it; a node whose
// report lacks a delete another node reports is sent it, with `before` that time, so a node
// that was away finishes the delete when it is back, whichever scheduler replica sees it,
// across scheduler restarts, and without taking what the tenant made since. (Were no node
// reachable, nothing is recorded: the 503 says so and the caller repeats.)
#include <fmt/format.h>

#include "common/log.h"
#include "scheduler/service.h"
#include "scheduler/upstream.h"

namespace swissbox::sched {

namespace bhttp = boost::beast::http;
using json = nlohmann::json;

namespace {

// Sums the numbers of two usage objects field by field.
void add_usage(json& total, const json& u) {
  for (const auto& [k, v] : u.items()) {
    if (!v.is_number()) continue;
    if (v.is_number_float() || (total.contains(k) && total[k].is_number_float()))
      total[k] = total.value(k, 0.0) + v.get<double>();
    else
      total[k] = total.value(k, int64_t{0}) + v.get<int64_t>();
  }
}

}  // namespace

void Scheduler::tenant_route(http::Request&& req, std::shared_ptr<http::Responder> res, const std::string& tenant,
                             const std::string& rest) {
  const auto m = req.method();
  if (rest == "/usage" && m == bhttp::verb::get) return tenant_usage(std::move(req), std::move(res), tenant);
  if (rest.empty() && m == bhttp::verb::delete_) return delete_tenant(std::move(req), std::move(res), tenant);
  res->send_error(make_error(Code::kNotFound, "no route for " + std::string(http::target_path(req.target())) +
                                                  " on the scheduler"));
}

void Scheduler::tenant_usage(http::Request&& req, std::shared_ptr<http::Responder> res, const std::string& tenant) {
  struct Sum {
    json usage = json::object(), nodes = json::object(), unreachable = json::array();
    int64_t running = 0, suspended = 0;
    std::optional<http::ClientResponse> refused;  // a node's 4xx: the caller may not ask
  };
  auto sum = std::make_shared<Sum>();
  ask_every_node(
      req,
      [sum](const std::string& name, const Result<http::ClientResponse>& r) {
        if (r && r->status >= 400 && r->status < 500) {
          sum->refused = *r;
          return;
        }
        json j = r && r->status == 200 ? json::parse(r->body, nullptr, false) : json();
        if (!j.is_object()) {
          sum->unreachable.push_back(name);
          return;
        }
        add_usage(sum->usage, j["usage"]);
        sum->running += j.value("running", int64_t{0});
        sum->suspended += j.value("suspended", int64_t{0});
        sum->nodes[name] = j["usage"];
      },
      [sum, res, tenant] {
        if (sum->refused) return res->send(sum->refused->status, sum->refused->body, "application/json");
        res->send_json(200, {{"tenant", tenant},
                             {"running", sum->running},
                             {"suspended", sum->suspended},
                             {"usage", sum->usage},
                             {"nodes", sum->nodes},
                             {"unreachable_nodes", sum->unreachable}});
      });
}

void Scheduler::delete_tenant(http::Request&& req, std::shared_ptr<http::Responder> res, const std::string& tenant) {
  struct Outcome {
    json confirmed = json::array(), unreachable = json::array();
    int64_t deleted = 0;
    std::optional<http::ClientResponse> refused;
  };
  auto out = std::make_shared<Outcome>();
  ask_every_node(
      req,
      [out](const std::string& name, const Result<http::ClientResponse>& r) {
        if (r && (r->status == 401 || r->status == 403)) {
          out->refused = *r;
          return;
        }
        json j = r && r->status == 200 ? json::parse(r->body, nullptr, false) : json();
        if (j.is_object()) {
          out->confirmed.push_back(name);
          out->deleted += j.value("sandboxes_deleted", int64_t{0});
          return;
        }
        out->unreachable.push_back(name);
      },
      [out, res, tenant] {
        if (out->refused) return res->send(out->refused->status, out->refused->body, "application/json");
        if (out->unreachable.empty()) {
          return res->send_json(200, {{"tenant", tenant},
                                      {"nodes_confirmed", out->confirmed},
                                      {"sandboxes_deleted", out->deleted}});
        }
        std::vector<std::string> missing = out->unreachable.get<std::vector<std::string>>();
        res->send_error(make_error(
            Code::kUnavailable,
            fmt::format("tenant {} deleted on {} node(s); not confirmed by {}: deleted there when they report "
                        "again",
                        tenant, out->confirmed.size(), fmt::join(missing, ", "))));
      },
      /*every_known_node=*/true);
}

void Scheduler::finish_tenant_deletes(const NodeState& node) {
  // The latest delete of each tenant any node reports.
  std::map<std::string, double> latest;
  for (const auto& n : registry_.nodes()) {
    for (const auto& [tenant, at] : n.tenant_deletes) latest[tenant] = std::max(latest[tenant], at);
  }
  for (const auto& [tenant, at] : latest) {
    auto mine = node.tenant_deletes.find(tenant);
    // Times travel as text with millisecond precision.
    if (mine != node.tenant_deletes.end() && mine->second + 0.0005 >= at) continue;
    if (!deletes_in_flight_.insert({node.address, tenant}).second) continue;  // asked already
    UpstreamRequest up;
    up.address = node.address;
    up.method = "DELETE";
    up.target = fmt::format("/v1/tenants/{}?before={:.3f}", tenant, at);
    if (!opts_.agent_token.empty()) up.headers.emplace_back("Authorization", "Bearer " + opts_.agent_token);
    up.timeout = std::chrono::seconds(120);
    fetch(ioc_, std::move(up), 1 << 20, [this, address = node.address, tenant](Result<http::ClientResponse> r) {
      deletes_in_flight_.erase({address, tenant});
      if (!r || r->status != 200) return;  // asked again at a later report
      log::info("tenant delete finished on a node that did not have it", {{"tenant", tenant}, {"agent", address}});
    });
  }
}

}  // namespace swissbox::sched
