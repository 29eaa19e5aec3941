#include "scheduler/service.h"

#include <fmt/format.h>

#include <boost/asio/post.hpp>
#include <nlohmann/json.hpp>

#include "common/auth.h"
#include "common/http_client.h"
#include "common/log.h"
#include "common/sandbox_id.h"

namespace swissbox::sched {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using json = nlohmann::json;

namespace {

// Agent answers that mean "not here, try another node".
bool refusal(unsigned status) { return status == 429 || status == 409 || status == 503; }

// What an agent needs to see of the caller's request.
std::vector<std::pair<std::string, std::string>> forwarded_headers(const http::Request& req) {
  std::vector<std::pair<std::string, std::string>> out;
  for (auto field : {bhttp::field::authorization, bhttp::field::content_type, bhttp::field::accept}) {
    if (auto it = req.find(field); it != req.end())
      out.emplace_back(std::string(it->name_string()), std::string(it->value()));
  }
  if (auto it = req.find("X-Request-Id"); it != req.end())
    out.emplace_back("X-Request-Id", std::string(it->value()));
  return out;
}

}  // namespace

struct Scheduler::Forward {
  std::string method, target, body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::shared_ptr<http::Responder> res;
  bool stream = false;  // relay the body piece by piece (SSE, file bytes)
  std::string kind;     // metrics label: create, sandbox
  Clock::time_point start = Clock::now();
};

Scheduler::Scheduler(asio::io_context& ioc, asio::thread_pool& workers, SchedulerOptions opts,
                     Metrics& metrics)
    : ioc_(ioc), workers_(workers), opts_(std::move(opts)), metrics_(metrics), poll_timer_(ioc) {
  using T = Metrics::Type;
  metrics_.describe("swissbox_scheduler_placements_total", T::kCounter,
                    "Creates placed on a node, or refused because no node could take them.");
  metrics_.describe("swissbox_scheduler_retries_total", T::kCounter,
                    "Creates sent to a next candidate after a node refused or failed.");
  metrics_.describe("swissbox_scheduler_node_load", T::kGauge,
                    "Active sandboxes / capacity per node, from its last report.");
  metrics_.describe("swissbox_scheduler_node_up", T::kGauge,
                    "1 while the node reports within the staleness limit.");
  metrics_.describe("swissbox_scheduler_proxy_seconds", T::kHistogram,
                    "Time to an agent's answer head, per kind of call.");
}

void Scheduler::start() { poll(); }

bool Scheduler::can_place() const {
  auto now = Clock::now();
  for (const auto& n : registry_.nodes()) {
    if (fresh(n, opts_.policy, now) && !n.draining && opts_.policy.allowed_regions.count(n.region))
      return true;
  }
  return false;
}

void Scheduler::poll() {
  auto timeout = opts_.poll_interval * 8 / 10;
  std::vector<std::pair<std::string, std::string>> auth;
  if (!opts_.agent_token.empty()) auth.emplace_back("Authorization", "Bearer " + opts_.agent_token);
  for (const auto& address : opts_.agents) {
    asio::post(workers_, [this, address, timeout, auth] {
      http::Client c(address, timeout);
      auto r = c.request("GET", "/v1/node", {}, auth);
      Result<NodeState> report = !r                  ? Result<NodeState>(r.error())
                                 : r->status != 200 ? make_error(Code::kUnavailable,
                                                                 fmt::format("status {}", r->status))
                                                    : parse_node_report(json::parse(r->body, nullptr, false));
      asio::post(ioc_, [this, address, report = std::move(report)]() mutable {
        if (!report) {
          log::debug("node report failed", {{"agent", address}, {"error", report.error().to_string()}});
          if (NodeState* n = registry_.by_address(address))
            metrics_.set("swissbox_scheduler_node_up", Metrics::labels({{"node", n->name}}), 0);
          return;
        }
        std::string labels = Metrics::labels({{"node", report->name}});
        metrics_.set("swissbox_scheduler_node_load", labels,
                     static_cast<double>(report->active) / std::max(1, report->capacity));
        metrics_.set("swissbox_scheduler_node_up", labels, 1);
        registry_.update(address, std::move(*report), Clock::now());
      });
    });
  }
  poll_timer_.expires_after(opts_.poll_interval);
  poll_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) poll();
  });
}

void Scheduler::handle(http::Request&& req, std::shared_ptr<http::Responder> res) {
  std::string_view target = req.target();
  std::string path(target.substr(0, target.find('?')));
  if (path == "/healthz") return res->send_json(200, {{"status", "ok"}});
  if (path == "/readyz") {
    bool ok = can_place();
    return res->send_json(ok ? 200 : 503,
                          {{"ready", ok}, {"reason", ok ? "nodes reporting" : "no eligible node reports"}});
  }
  if (path == "/metrics") return res->send(200, metrics_.render(), "text/plain; version=0.0.4");
  if (!opts_.tokens.empty()) {
    auto it = req.find(bhttp::field::authorization);
    if (!bearer_tenant(it == req.end() ? std::string_view{} : it->value(), opts_.tokens)) {
      return res->send_error(make_error(Code::kUnauthenticated,
                                        "a valid 'Authorization: Bearer <token>' is required"));
    }
  }
  const auto m = req.method();
  if (path == "/v1/nodes" && m == bhttp::verb::get) return nodes(res);
  if ((path == "/v1/sandboxes" || path == "/v1/execute") && m == bhttp::verb::post)
    return place_and_forward(std::move(req), res);
  if (path == "/v1/sandboxes" && m == bhttp::verb::get) return list_all(std::move(req), res);
  if (path.rfind("/v1/sandboxes/", 0) == 0) {
    std::string rest = path.substr(14);
    return route_to_node(std::move(req), res, rest.substr(0, rest.find('/')));
  }
  res->send_error(make_error(Code::kNotFound, "no route for " + path + " on the scheduler"));
}

void Scheduler::place_and_forward(http::Request&& req, std::shared_ptr<http::Responder> res) {
  json body = json::parse(req.body(), nullptr, false);
  if (!body.is_object()) {
    return res->send_error(make_error(Code::kInvalidArgument, "request body must be a JSON object"));
  }
  PlacementRequest pr;
  if (auto t = body.find("template"); t != body.end() && t->is_string()) pr.template_name = *t;
  if (auto z = body.find("zone"); z != body.end()) {
    if (!z->is_string()) return res->send_error(make_error(Code::kInvalidArgument, "zone must be a string"));
    pr.zone = *z;
  }
  NoPlacement why;
  auto picked = place(registry_.nodes(), pr, opts_.policy, Clock::now(), rng_, &why);
  if (picked.empty()) {
    metrics_.add("swissbox_scheduler_placements_total", Metrics::labels({{"result", "refused"}}));
    return res->send_error(make_error(Code::kResourceExhausted, why.describe()));
  }
  std::vector<std::string> addresses, names;
  for (size_t i : picked) addresses.push_back(registry_.nodes()[i].address), names.push_back(registry_.nodes()[i].name);
  registry_.nodes()[picked[0]].inflight++;
  auto f = std::make_shared<Forward>();
  f->method = std::string(req.method_string());
  f->target = std::string(req.target());
  f->body = std::move(req.body());
  f->headers = forwarded_headers(req);
  f->res = res;
  f->kind = "create";
  asio::post(workers_, [this, f, addresses, names] {
    std::string last = "no answer";
    for (size_t i = 0; i < addresses.size(); ++i) {
      if (i > 0) {
        metrics_.add("swissbox_scheduler_retries_total");
        asio::post(ioc_, [this, a = addresses[i]] {
          if (NodeState* n = registry_.by_address(a)) n->inflight++;
        });
      }
      http::Client c(addresses[i], opts_.agent_timeout);
      auto r = c.request(f->method, f->target, f->body, f->headers);
      if (!r) {
        last = fmt::format("{}: {}", names[i], r.error().to_string());
        continue;
      }
      if (refusal(r->status)) {
        last = fmt::format("{} answered {}: {}", names[i], r->status, r->body.substr(0, 300));
        continue;
      }
      metrics_.add("swissbox_scheduler_placements_total", Metrics::labels({{"result", "placed"}}));
      metrics_.observe("swissbox_scheduler_proxy_seconds", Metrics::labels({{"kind", "create"}}),
                       std::chrono::duration<double>(Clock::now() - f->start).count());
      http::Headers extra;
      if (auto ra = r->header("Retry-After"); !ra.empty()) extra.push_back({"Retry-After", ra});
      std::string ct = r->header("Content-Type");
      return asio::post(ioc_, [f, r = std::move(*r), ct, extra]() mutable {
        f->res->send(r.status, std::move(r.body), ct.empty() ? "application/json" : ct, extra);
      });
    }
    metrics_.add("swissbox_scheduler_placements_total", Metrics::labels({{"result", "refused"}}));
    asio::post(ioc_, [f, n = addresses.size(), last] {
      f->res->send_error(make_error(Code::kResourceExhausted,
                                    fmt::format("all {} candidate nodes refused; last: {}", n, last)));
    });
  });
}

void Scheduler::route_to_node(http::Request&& req, std::shared_ptr<http::Responder> res,
                              const std::string& id) {
  auto id_node = node_of_sandbox_id(id);
  if (!id_node) {
    return res->send_error(
        make_error(Code::kInvalidArgument, "'" + id + "' is not a sandbox id (sbx-<node>-<hex>)"));
  }
  const NodeState* n = registry_.by_id_node(*id_node);
  if (!n) {
    return res->send_error(make_error(
        Code::kUnavailable, "node " + *id_node + " of sandbox " + id + " is not known to this scheduler"));
  }
  if (!fresh(*n, opts_.policy, Clock::now())) {
    auto age = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - n->reported_at);
    return res->send_error(make_error(
        Code::kUnavailable, fmt::format("node {} of sandbox {} has not reported for {:.1f} s",
                                        n->name, id, age.count() / 1000.0)));
  }
  auto f = std::make_shared<Forward>();
  f->method = std::string(req.method_string());
  f->target = std::string(req.target());
  f->headers = forwarded_headers(req);
  auto accept = req.find(bhttp::field::accept);
  std::string_view path = f->target;
  f->stream = (accept != req.end() && accept->value().find("text/event-stream") != std::string_view::npos) ||
              (req.method() == bhttp::verb::get && path.find("/files?") != std::string_view::npos);
  f->body = std::move(req.body());
  f->res = res;
  f->kind = "sandbox";
  proxy(f, n->address);
}

void Scheduler::proxy(std::shared_ptr<Forward> f, const std::string& address) {
  asio::post(workers_, [this, f, address] {
    http::Client c(address, opts_.agent_timeout);
    auto observe = [this, f] {
      metrics_.observe("swissbox_scheduler_proxy_seconds", Metrics::labels({{"kind", f->kind}}),
                       std::chrono::duration<double>(Clock::now() - f->start).count());
    };
    if (!f->stream) {
      auto r = c.request(f->method, f->target, f->body, f->headers);
      observe();
      return asio::post(ioc_, [f, r = std::move(r)]() mutable {
        if (!r) return f->res->send_error(make_error(Code::kUnavailable, "node unreachable: " + r.error().to_string()));
        std::string ct = r->header("Content-Type");
        f->res->send(r->status, std::move(r->body), ct.empty() ? "application/json" : ct);
      });
    }
    // Streamed: the head goes out when it arrives, then each piece as the agent sends it.
    bool started = false;
    auto r = c.stream(
        f->method, f->target, f->body, f->headers,
        [this, f](std::string_view piece) {
          asio::post(ioc_, [f, data = std::string(piece)]() mutable { f->res->write_chunk(std::move(data)); });
        },
        [this, f, &started, &observe](const http::ClientResponse& head) {
          started = true;
          observe();
          std::string ct = head.header("Content-Type");
          asio::post(ioc_, [f, status = head.status, ct] {
            f->res->start_stream(status, ct.empty() ? "application/octet-stream" : ct);
          });
        });
    asio::post(ioc_, [f, started, err = r.ok() ? std::string() : r.error().to_string()] {
      if (started) return f->res->end_stream();
      f->res->send_error(make_error(Code::kUnavailable, "node unreachable: " + err));
    });
  });
}

void Scheduler::list_all(http::Request&& req, std::shared_ptr<http::Responder> res) {
  std::vector<std::pair<std::string, std::string>> targets;  // name, address
  auto now = Clock::now();
  for (const auto& n : registry_.nodes()) {
    if (fresh(n, opts_.policy, now)) targets.emplace_back(n.name, n.address);
  }
  auto headers = forwarded_headers(req);
  std::string target(req.target());
  asio::post(workers_, [this, res, targets, headers, target] {
    json all = json::array(), unreachable = json::array();
    for (const auto& [name, address] : targets) {
      http::Client c(address, std::chrono::seconds(5));
      auto r = c.request("GET", target, {}, headers);
      json j = r && r->status == 200 ? json::parse(r->body, nullptr, false) : json();
      if (!j.is_object() || !j["sandboxes"].is_array()) {
        unreachable.push_back(name);
        continue;
      }
      for (auto& sb : j["sandboxes"]) all.push_back(std::move(sb));
    }
    asio::post(ioc_, [res, all = std::move(all), unreachable = std::move(unreachable)] {
      res->send_json(200, {{"sandboxes", all}, {"unreachable_nodes", unreachable}});
    });
  });
}

void Scheduler::nodes(std::shared_ptr<http::Responder> res) const {
  json out = json::array();
  auto now = Clock::now();
  for (const auto& n : registry_.nodes()) {
    auto age = std::chrono::duration_cast<std::chrono::milliseconds>(now - n.reported_at);
    out.push_back({{"node", n.name},
                   {"address", n.address},
                   {"region", n.region},
                   {"allowed_region", opts_.policy.allowed_regions.count(n.region) > 0},
                   {"up", fresh(n, opts_.policy, now)},
                   {"report_age_ms", age.count()},
                   {"draining", n.draining},
                   {"capacity", n.capacity},
                   {"active", n.active},
                   {"inflight", n.inflight},
                   {"warm", n.warm}});
  }
  res->send_json(200, {{"nodes", out}});
}

}  // namespace swissbox::sched
