// Tenants on the scheduler (issue 21): GET /v1/tenants/{t}/usage sums the tenant's usage
// over every node; DELETE /v1/tenants/{t} goes to every node the scheduler knows and is
// answered 200 only when each confirmed. A node that could not be reached is named in the
// 503, and the delete is sent to it again when it reports next (kept in this scheduler
// process's memory: a scheduler restart forgets it, and the caller, told which nodes are
// missing, repeats the delete).
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
      [this, out, tenant](const std::string& name, const Result<http::ClientResponse>& r) {
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
        for (const auto& n : registry_.nodes()) {
          if (n.name == name) pending_deletes_[n.address].insert(tenant);
        }
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

void Scheduler::finish_pending_deletes(const std::string& address) {
  auto it = pending_deletes_.find(address);
  if (it == pending_deletes_.end()) return;
  for (const auto& tenant : it->second) {
    if (!pending_in_flight_.insert({address, tenant}).second) continue;  // asked already
    UpstreamRequest up;
    up.address = address;
    up.method = "DELETE";
    up.target = "/v1/tenants/" + tenant;
    if (!opts_.agent_token.empty()) up.headers.emplace_back("Authorization", "Bearer " + opts_.agent_token);
    up.timeout = std::chrono::seconds(120);
    fetch(ioc_, std::move(up), 1 << 20, [this, address, tenant](Result<http::ClientResponse> r) {
      pending_in_flight_.erase({address, tenant});
      if (!r || r->status != 200) return;  // asked again at its next report
      log::info("tenant delete finished on a node that was away", {{"tenant", tenant}, {"agent", address}});
      auto p = pending_deletes_.find(address);
      if (p == pending_deletes_.end()) return;
      p->second.erase(tenant);
      if (p->second.empty()) pending_deletes_.erase(p);
    });
  }
}

}  // namespace swissbox::sched
