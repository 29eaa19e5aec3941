#include "scheduler/service.h"

#include <fmt/format.h>

#include <boost/asio/post.hpp>
#include <nlohmann/json.hpp>

#include "common/auth.h"
#include "common/log.h"
#include "common/e2b_routes.h"
#include "common/sandbox_id.h"
#include "scheduler/upstream.h"

namespace swissbox::sched {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using json = nlohmann::json;

namespace {

// Agent answers that mean "not here, try another node".
bool refusal(unsigned status) { return status == 429 || status == 409 || status == 503; }

// What an agent needs to see of the caller's request.
http::Headers forwarded_headers(const http::Request& req) {
  http::Headers out;
  for (auto field : {bhttp::field::authorization, bhttp::field::content_type, bhttp::field::accept}) {
    if (auto it = req.find(field); it != req.end())
      out.emplace_back(std::string(it->name_string()), std::string(it->value()));
  }
  // The request id, and what E2B's SDKs authenticate and route with.
  for (const char* name : {"X-Request-Id", "X-API-KEY", "E2b-Sandbox-Id", "E2b-Sandbox-Port",
                           "X-Access-Token", "E2B-Traffic-Access-Token", "Connect-Timeout-Ms",
                           "Connect-Protocol-Version"}) {
    if (auto it = req.find(name); it != req.end()) out.emplace_back(name, std::string(it->value()));
  }
  return out;
}

// Answers up to this size are relayed whole, with their Content-Length.
constexpr size_t kWholeAnswer = 1 << 20;

std::string content_type(const http::ClientResponse& r) {
  std::string ct = r.header("Content-Type");
  return ct.empty() ? "application/octet-stream" : ct;
}

// What of an agent's answer head the client needs besides status and type.
http::Headers passed_headers(const http::ClientResponse& r) {
  http::Headers out;
  for (const char* name : {"Retry-After", "Location", "X-Next-Token"}) {
    if (auto v = r.header(name); !v.empty()) out.emplace_back(name, v);
  }
  return out;
}

}  // namespace

// One call relayed to an agent.
struct Scheduler::Forward {
  std::string method, target, body;
  std::shared_ptr<http::BodyReader> body_stream;  // an upload, relayed piece by piece
  http::Headers headers;
  std::shared_ptr<http::Responder> res;
  std::string kind;  // metrics label: create, sandbox
  bool e2b = false;  // errors in E2B's shape
  std::string placed_labels;  // a create's {call, template, language}, for its histogram
  std::string tenant;  // a create's, for its cluster-wide quota
  double asked_cpu = 0;
  int64_t asked_memory_mb = 0;
  // A create that makes a new workspace: (tenant, name), remembered on the node asked.
  std::optional<std::pair<std::string, std::string>> new_workspace;
  Clock::time_point start = Clock::now();
};

Scheduler::Scheduler(asio::io_context& ioc, SchedulerOptions opts, Metrics& metrics)
    : ioc_(ioc), opts_(std::move(opts)), metrics_(metrics), poll_timer_(ioc), resolver_(ioc) {
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
  metrics_.describe("swissbox_scheduler_create_seconds", T::kHistogram,
                    "Placed calls (call: sandbox or execute) from arrival to the agent's answer "
                    "head, retries included, by template and one-shot language.");
}

http::ServerOptions Scheduler::server_options() const {
  http::ServerOptions o;
  // File uploads (and E2B's multipart ones) are relayed as they arrive, never held whole.
  o.stream_body = [](const http::RequestHeader& h) {
    // A template's PUT is small JSON, read whole: it goes to every node.
    if (http::target_path(h.target()).starts_with("/v1/templates/")) return false;
    return h.method() == bhttp::verb::put ||
           (e2b::kind_of(h) == e2b::Kind::kSandbox && http::target_path(h.target()) == "/files");
  };
  // E2B's calls carry no bearer token: the API key is checked with the body (small), a
  // sandbox's access token by its agent, which refuses before it reads a body.
  o.admit = [this](const http::RequestHeader& h, bool from_unix_socket) -> std::optional<Error> {
    if (e2b::kind_of(h) != e2b::Kind::kNone) return std::nullopt;
    return http::check_bearer(h, from_unix_socket, opts_.tokens);
  };
  // What the scheduler reads whole is JSON to place (code and stdin included). E2B's control
  // plane is read before its key is checked (the answer must be in E2B's shape): its bodies
  // are small, and so is what an unauthenticated caller can make it read.
  o.body_limit_for = [](const http::RequestHeader& h) -> uint64_t {
    auto m = h.method();
    if (m == bhttp::verb::get || m == bhttp::verb::delete_) return 64 << 10;
    return e2b::kind_of(h) == e2b::Kind::kControl ? 64 << 10 : 16 << 20;
  };
  return o;
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
  for (const auto& entry : opts_.agents) {
    auto colon = entry.rfind(':');
    std::string host = entry.substr(0, colon), port = entry.substr(colon + 1);
    boost::system::error_code literal;
    asio::ip::make_address(host, literal);
    if (!literal) {
      poll_agent(entry);
      continue;
    }
    resolver_.async_resolve(host, port, [this, entry](boost::system::error_code ec,
                                                      asio::ip::tcp::resolver::results_type found) {
      if (ec) {
        log::warn("agent name does not resolve", {{"agents", entry}, {"error", ec.message()}});
        return;
      }
      std::set<std::string> addresses;
      for (const auto& r : found) {
        const auto& ep = r.endpoint();
        addresses.insert(ep.address().is_v6()
                             ? fmt::format("[{}]:{}", ep.address().to_string(), ep.port())
                             : fmt::format("{}:{}", ep.address().to_string(), ep.port()));
      }
      for (const auto& a : addresses) poll_agent(a);
    });
  }
  poll_timer_.expires_after(opts_.poll_interval);
  poll_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) poll();
  });
}

void Scheduler::poll_agent(const std::string& address) {
  // A node slower than the interval is not asked twice at once.
  if (!polling_.insert(address).second) return;
  UpstreamRequest req;
  req.address = address;
  req.method = "GET";
  req.target = "/v1/node";
  if (!opts_.agent_token.empty()) req.headers.emplace_back("Authorization", "Bearer " + opts_.agent_token);
  req.connect_timeout = req.timeout = opts_.poll_interval * 8 / 10;
  fetch(ioc_, std::move(req), 1 << 20, [this, address](Result<http::ClientResponse> r) {
    polling_.erase(address);
    Result<NodeState> report =
        !r                  ? Result<NodeState>(r.error())
        : r->status != 200 ? make_error(Code::kUnavailable, fmt::format("status {}", r->status))
                           : parse_node_report(json::parse(r->body, nullptr, false));
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
    if (const NodeState* n = registry_.by_address(address)) finish_tenant_deletes(*n);
  });
}

void Scheduler::handle(http::Request&& req, std::shared_ptr<http::Responder> res) {
  std::string_view target = req.target();
  std::string path(http::target_path(target));
  if (path == "/healthz") return res->send_json(200, {{"status", "ok"}});
  if (path == "/readyz") {
    bool ok = can_place();
    return res->send_json(ok ? 200 : 503,
                          {{"ready", ok}, {"reason", ok ? "nodes reporting" : "no eligible node reports"}});
  }
  switch (e2b::kind_of(req)) {
    case e2b::Kind::kSandbox: {
      // The owning agent checks the sandbox's access token.
      std::string id(e2b::header(req, "E2b-Sandbox-Id"));
      return route_to_node(std::move(req), res, id, /*e2b=*/true);
    }
    case e2b::Kind::kControl:
      return e2b_control(std::move(req), res);
    case e2b::Kind::kNone:
      break;
  }
  const Principal* who = nullptr;
  if (!opts_.tokens.empty()) {
    auto it = req.find(bhttp::field::authorization);
    who = bearer_principal(it == req.end() ? std::string_view{} : it->value(), opts_.tokens);
    if (!who) {
      return res->send_error(make_error(Code::kUnauthenticated,
                                        "a valid 'Authorization: Bearer <token>' is required"));
    }
  }
  if (path == "/metrics") {
    if (who && !who->admin)
      return res->send_error(make_error(Code::kPermissionDenied, "/metrics needs an admin token"));
    return res->send(200, metrics_.render() + render_process_metrics(), "text/plain; version=0.0.4");
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
  if (path == "/v1/templates" || path.rfind("/v1/templates/", 0) == 0) return templates(std::move(req), res);
  if (path.rfind("/v1/tenants/", 0) == 0) {
    std::string rest = path.substr(12);
    auto slash = rest.find('/');
    return tenant_route(std::move(req), res, rest.substr(0, slash), slash == std::string::npos ? "" : rest.substr(slash));
  }
  res->send_error(make_error(Code::kNotFound, "no route for " + path + " on the scheduler"));
}

void Scheduler::fail(const Forward& f, const Error& e) {
  if (f.e2b) return e2b::fail(f.res, e);
  f.res->send_error(e);
}

// E2B's control plane: creates placed like native ones, lists merged from every node in id
// order (so that a page token, the last id shown, pages across nodes), the rest routed by
// the node in the sandbox's id. The agents check the API key again.
void Scheduler::e2b_control(http::Request&& req, std::shared_ptr<http::Responder> res) {
  if (!opts_.tokens.empty() && !token_principal(e2b::header(req, "X-API-KEY"), opts_.tokens)) {
    return e2b::fail(res, make_error(Code::kUnauthenticated, "Invalid API key"));
  }
  std::string path(http::target_path(req.target()));
  if (path.starts_with("/v2/")) path = path.substr(3);
  const auto m = req.method();
  if (path == "/sandboxes" && m == bhttp::verb::post) {
    json body = json::parse(req.body(), nullptr, false);
    if (!body.is_object()) {
      return e2b::fail(res, make_error(Code::kInvalidArgument, "request body must be a JSON object"));
    }
    PlacementRequest pr;
    auto t = body.find("templateID");
    pr.template_name = e2b::template_name(t != body.end() && t->is_string() ? t->get<std::string>() : "base");
    return place(std::move(req), std::move(res), pr, /*e2b=*/true);
  }
  if (path == "/sandboxes" && m == bhttp::verb::get) return e2b_list(std::move(req), std::move(res));
  std::string rest = path.substr(std::min(path.size(), std::string_view("/sandboxes/").size()));
  route_to_node(std::move(req), res, rest.substr(0, rest.find('/')), /*e2b=*/true);
}

void Scheduler::e2b_list(http::Request&& req, std::shared_ptr<http::Responder> res) {
  struct Merge {
    std::vector<json> all;
    bool more = false;
  };
  auto m = std::make_shared<Merge>();
  std::string_view target = req.target();
  auto q = target.find('?');
  size_t limit = 100;
  if (q != std::string_view::npos) {
    for (const auto& [k, v] : http::parse_query(target.substr(q + 1))) {
      if (k == "limit") limit = std::clamp<size_t>(std::strtoul(v.c_str(), nullptr, 10), 1, 100);
    }
  }
  ask_every_node(
      req,
      [m](const std::string&, const Result<http::ClientResponse>& r) {
        json page = r && r->status == 200 ? json::parse(r->body, nullptr, false) : json();
        if (!page.is_array()) return;
        for (auto& sb : page) m->all.push_back(std::move(sb));
        if (!r->header("X-Next-Token").empty()) m->more = true;
      },
      [m, res, limit] {
        std::sort(m->all.begin(), m->all.end(), [](const json& a, const json& b) {
          return a.value("sandboxID", "") < b.value("sandboxID", "");
        });
        http::Headers headers;
        if (m->all.size() > limit || m->more) {
          m->all.resize(std::min(m->all.size(), limit));
          if (!m->all.empty()) headers.push_back({"X-Next-Token", m->all.back().value("sandboxID", "")});
        }
        res->send_json(200, json(m->all), headers);
      });
}

std::shared_ptr<Scheduler::Forward> Scheduler::forward_of(http::Request&& req,
                                                          std::shared_ptr<http::Responder> res,
                                                          std::string kind) {
  auto f = std::make_shared<Forward>();
  f->method = std::string(req.method_string());
  f->target = std::string(req.target());
  f->headers = forwarded_headers(req);
  f->body = std::move(req.body());
  f->body_stream = res->body();
  f->res = std::move(res);
  f->kind = std::move(kind);
  return f;
}

void Scheduler::place_and_forward(http::Request&& req, std::shared_ptr<http::Responder> res) {
  json body = json::parse(req.body(), nullptr, false);
  if (!body.is_object()) {
    return res->send_error(make_error(Code::kInvalidArgument, "request body must be a JSON object"));
  }
  PlacementRequest pr;
  if (auto t = body.find("template"); t != body.end() && t->is_string()) pr.template_name = *t;
  // Sandboxes with network come from their own warm pools ("default:egress"), offered only
  // by nodes that have egress networking.
  if (auto n = body.find("network"); n != body.end() && n->is_string() && *n != "none")
    pr.template_name += ":" + n->get<std::string>();
  if (auto l = body.find("language"); l != body.end() && l->is_string()) pr.language = *l;
  if (auto w = body.find("workspace"); w != body.end() && w->is_string()) pr.workspace = *w;
  if (auto cpu = body.find("cpu"); cpu != body.end() && cpu->is_number()) pr.cpu = *cpu;
  if (auto mem = body.find("memory_mb"); mem != body.end() && mem->is_number_integer()) pr.memory_mb = *mem;
  if (auto z = body.find("zone"); z != body.end()) {
    if (!z->is_string()) return res->send_error(make_error(Code::kInvalidArgument, "zone must be a string"));
    pr.zone = *z;
  }
  place(std::move(req), std::move(res), pr, /*e2b=*/false);
}

std::optional<Error> Scheduler::over_cluster_quota(const Principal& who, double cpu, int64_t memory_mb) const {
  // What the nodes reported (at most one report interval old) plus this scheduler's
  // placements since. Each agent holds the whole quota exactly on its own node.
  TenantLoad load;
  for (const auto& n : registry_.nodes()) {
    if (!fresh(n, opts_.policy, Clock::now())) continue;
    for (const auto* by : {&n.tenants, &n.tenant_inflight}) {
      if (auto r = by->find(who.tenant); r != by->end()) load += r->second;
    }
  }
  auto refused = check_running(who.tenant, who.quota, load, cpu, memory_mb);
  if (refused) refused->message += " across the cluster";
  return refused;
}

Result<std::string> Scheduler::workspace_node(const std::string& tenant, const std::string& workspace) const {
  if (workspace.empty()) return std::string();
  const NodeState* holder = nullptr;
  for (const auto& n : registry_.nodes()) {
    if (auto w = n.workspaces.find(tenant); w != n.workspaces.end() && w->second.count(workspace)) holder = &n;
  }
  if (!holder) return std::string();  // a new workspace: made where the create goes
  if (!fresh(*holder, opts_.policy, Clock::now())) {
    return make_error(Code::kUnavailable, fmt::format("workspace {} of tenant {} is on node {}, which does not report",
                                                      workspace, tenant, holder->name));
  }
  return holder->name;
}

void Scheduler::place(http::Request&& req, std::shared_ptr<http::Responder> res,
                      const PlacementRequest& pr, bool e2b) {
  const Principal* who = e2b ? token_principal(e2b::header(req, "X-API-KEY"), opts_.tokens) : nullptr;
  if (!e2b) {
    auto it = req.find(bhttp::field::authorization);
    who = bearer_principal(it == req.end() ? std::string_view{} : it->value(), opts_.tokens);
  }
  std::string tenant = who ? who->tenant : "";
  // The sandbox's own cpu and memory are the request's, or the least a sandbox can have
  // when its template decides them (its node checks them exactly).
  const double asked_cpu = pr.cpu > 0 ? pr.cpu : 0.1;
  const int64_t asked_memory_mb = pr.memory_mb > 0 ? pr.memory_mb : 64;
  if (auto refused = who ? over_cluster_quota(*who, asked_cpu, asked_memory_mb) : std::nullopt) {
    metrics_.add("swissbox_scheduler_placements_total", Metrics::labels({{"result", "quota"}}));
    return e2b ? e2b::fail(res, *refused) : res->send_error(*refused);
  }
  // A workspace lives on one node: a create naming it goes there, or nowhere.
  const std::string owner = tenant.empty() ? "default" : tenant;  // as an agent without tokens
  auto node = workspace_node(owner, pr.workspace);
  if (!node) {
    metrics_.add("swissbox_scheduler_placements_total", Metrics::labels({{"result", "refused"}}));
    return e2b ? e2b::fail(res, node.error()) : res->send_error(node.error());
  }
  PlacementRequest bound = pr;
  bound.node = *node;
  NoPlacement why;
  auto picked = sched::place(registry_.nodes(), bound, opts_.policy, Clock::now(), rng_, &why);
  if (picked.empty()) {
    metrics_.add("swissbox_scheduler_placements_total", Metrics::labels({{"result", "refused"}}));
    std::string on = bound.node.empty() ? "" : fmt::format("workspace {} is on node {}: ", pr.workspace, bound.node);
    Error e = make_error(Code::kResourceExhausted, on + why.describe());
    return e2b ? e2b::fail(res, e) : res->send_error(e);
  }
  std::vector<std::string> addresses;
  for (size_t i : picked) addresses.push_back(registry_.nodes()[i].address);
  bool execute = req.target().starts_with("/v1/execute");
  auto f = forward_of(std::move(req), std::move(res), "create");
  f->e2b = e2b;
  f->tenant = tenant;
  f->asked_cpu = asked_cpu;
  f->asked_memory_mb = asked_memory_mb;
  if (!pr.workspace.empty() && bound.node.empty()) f->new_workspace = {owner, pr.workspace};
  f->placed_labels = Metrics::labels({{"call", execute ? "execute" : "sandbox"},
                                      {"template", pr.template_name},
                                      {"language", pr.language}});
  try_candidates(std::move(f), std::move(addresses), 0, "no answer");
}

// Candidate i gets the call; a refusal (or no answer) moves on to i + 1.
void Scheduler::try_candidates(std::shared_ptr<Forward> f, std::vector<std::string> addresses,
                               size_t i, std::string last) {
  if (i == addresses.size()) {
    metrics_.add("swissbox_scheduler_placements_total", Metrics::labels({{"result", "refused"}}));
    return fail(*f, make_error(
        Code::kResourceExhausted,
        fmt::format("all {} candidate nodes refused; last: {}", addresses.size(), last)));
  }
  if (i > 0) metrics_.add("swissbox_scheduler_retries_total");
  NodeState* n = registry_.by_address(addresses[i]);
  if (n) {
    n->inflight++;
    if (!f->tenant.empty()) n->tenant_inflight[f->tenant].add_running(f->asked_cpu, f->asked_memory_mb);
    // The first create of a workspace makes it where it goes: until that node reports it,
    // this scheduler sends the next create naming it there too.
    if (f->new_workspace) n->place_workspace(f->new_workspace->first, f->new_workspace->second, Clock::now());
  }
  std::string name = n ? n->name : addresses[i];
  relay(f, addresses[i], [this, f, addresses, i, name](std::string why) mutable {
    // Not there: it counts neither for the tenant's quota nor as the workspace's node. (A
    // report in between has reset both already; the count is not taken below zero.)
    if (NodeState* refused = registry_.by_address(addresses[i])) {
      if (auto t = refused->tenant_inflight.find(f->tenant); t != refused->tenant_inflight.end() && t->second.running > 0)
        t->second.add_running(f->asked_cpu, f->asked_memory_mb, -1);
      if (f->new_workspace) refused->unplace_workspace(f->new_workspace->first, f->new_workspace->second);
    }
    try_candidates(f, std::move(addresses), i + 1, name + ": " + why);
  });
}

void Scheduler::route_to_node(http::Request&& req, std::shared_ptr<http::Responder> res,
                              const std::string& id, bool e2b) {
  auto f = forward_of(std::move(req), std::move(res), "sandbox");
  f->e2b = e2b;
  auto id_node = node_of_sandbox_id(id);
  if (!id_node) {
    // E2B's SDKs expect an unknown sandbox to be not found, whatever its id looks like.
    return fail(*f, make_error(e2b ? Code::kNotFound : Code::kInvalidArgument,
                               "'" + id + "' is not a sandbox id (sbx-<node>-<hex>)"));
  }
  const NodeState* n = registry_.by_id_node(*id_node);
  if (!n) {
    return fail(*f, make_error(Code::kUnavailable,
                               "node " + *id_node + " of sandbox " + id + " is not known to this scheduler"));
  }
  if (!fresh(*n, opts_.policy, Clock::now())) {
    auto age = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - n->reported_at);
    return fail(*f, make_error(Code::kUnavailable,
                               fmt::format("node {} of sandbox {} has not reported for {:.1f} s",
                                           n->name, id, age.count() / 1000.0)));
  }
  relay(std::move(f), n->address, nullptr);
}

void Scheduler::relay(std::shared_ptr<Forward> f, const std::string& address,
                      std::function<void(std::string why)> on_refused) {
  // How the answer goes back: small bodies whole (keeping Content-Length), chunked and
  // large ones (SSE, file bytes) piece by piece, each piece written before the next is read.
  enum class Mode { kWhole, kStream, kRefused };
  struct Relay {
    Mode mode = Mode::kWhole;
    http::ClientResponse head;
    std::string body;
    bool started = false;
  };
  auto r = std::make_shared<Relay>();
  UpstreamRequest up;
  up.address = address;
  up.method = f->method;
  up.target = f->target;
  up.headers = f->headers;
  up.body = f->body;
  up.body_stream = f->body_stream;
  up.answer_timeout = opts_.deadlines.for_call(f->method, http::target_path(f->target), f->body);
  UpstreamHandlers h;
  h.on_head = [this, f, r, refusable = on_refused != nullptr](const http::ClientResponse& head) {
    r->head = head;
    r->started = true;
    if (refusable && refusal(head.status)) {
      r->mode = Mode::kRefused;
      return;
    }
    metrics_.observe("swissbox_scheduler_proxy_seconds", Metrics::labels({{"kind", f->kind}}),
                     std::chrono::duration<double>(Clock::now() - f->start).count());
    if (f->kind == "create") {
      metrics_.add("swissbox_scheduler_placements_total", Metrics::labels({{"result", "placed"}}));
      metrics_.observe("swissbox_scheduler_create_seconds", f->placed_labels,
                       std::chrono::duration<double>(Clock::now() - f->start).count());
    }
    std::string length = head.header("Content-Length");
    bool chunked = head.header("Transfer-Encoding").find("chunked") != std::string::npos;
    if (chunked || (!length.empty() && std::stoull(length) > kWholeAnswer)) {
      r->mode = Mode::kStream;
      f->res->start_stream(head.status, content_type(head), passed_headers(head));
    }
  };
  h.on_piece = [f, r](std::string piece, std::function<void()> more) {
    if (r->mode == Mode::kWhole && r->body.size() + piece.size() > kWholeAnswer) {
      // Longer than announced (no Content-Length): go on piece by piece after all.
      r->mode = Mode::kStream;
      f->res->start_stream(r->head.status, content_type(r->head), passed_headers(r->head));
      f->res->write_chunk(std::exchange(r->body, {}));
    }
    if (r->mode == Mode::kStream) return f->res->write_chunk(std::move(piece), std::move(more));
    r->body += piece;
    if (r->body.size() > kWholeAnswer) r->body.resize(kWholeAnswer);  // a refusal's message
    more();
  };
  h.on_end = [this, f, r, on_refused = std::move(on_refused)](Status st, bool sent) {
    if (!r->started && sent) {
      // The agent has the request and may have acted on it (a create, a one-shot): it is
      // not sent anywhere else.
      return fail(*f, make_error(
          Code::kUnavailable,
          "node did not answer after it received the call (it may have run): " +
              st.error().to_string()));
    }
    if (!r->started || r->mode == Mode::kRefused) {
      std::string why = !r->started ? "unreachable: " + st.error().to_string()
                                    : fmt::format("answered {}: {}", r->head.status,
                                                  r->body.substr(0, 300));
      if (on_refused) return on_refused(why);
      return fail(*f, make_error(Code::kUnavailable, "node " + why));
    }
    if (r->mode == Mode::kStream) return st ? f->res->end_stream() : f->res->abort_stream();
    if (!st) {
      return fail(*f,
          make_error(Code::kUnavailable, "node answer broke off: " + st.error().to_string()));
    }
    f->res->send(r->head.status, std::move(r->body), content_type(r->head), passed_headers(r->head));
  };
  auto call = start_upstream(ioc_, std::move(up), std::move(h));
  // A client that leaves stops the agent's work too (the agent sees its connection close).
  // Weak: the call holds the client's upload stream, which holds the connection that keeps
  // this function; a strong pointer was a cycle whenever the connection outlived its last
  // write's completion (LeakSanitizer, SchedulerService teardown). A running call is kept
  // alive by its own pending operations.
  f->res->on_client_gone([weak = std::weak_ptr<UpstreamCall>(call)] {
    if (auto running = weak.lock()) running->cancel();
  });
}

void Scheduler::ask_every_node(const http::Request& req, NodeAnswer each, std::function<void()> done,
                               bool every_known_node) {
  std::vector<std::pair<std::string, std::string>> targets;  // name, address
  for (const auto& n : registry_.nodes()) {
    if (every_known_node || fresh(n, opts_.policy, Clock::now())) targets.emplace_back(n.name, n.address);
  }
  if (targets.empty()) return done();
  auto waiting = std::make_shared<size_t>(targets.size());
  auto headers = forwarded_headers(req);
  for (const auto& [name, address] : targets) {
    UpstreamRequest up;
    up.address = address;
    up.method = std::string(req.method_string());
    up.target = std::string(req.target());
    up.headers = headers;
    up.body = req.body();
    // A tenant's delete is answered once its sandboxes are gone from the node's disk.
    up.timeout = req.method() == bhttp::verb::delete_ ? std::chrono::seconds(130) : std::chrono::seconds(5);
    fetch(ioc_, std::move(up), 64 << 20,
          [waiting, each, done, name = name](Result<http::ClientResponse> r) {
            each(name, r);
            if (--*waiting == 0) done();
          });
  }
}

void Scheduler::list_all(http::Request&& req, std::shared_ptr<http::Responder> res) {
  struct Merge {
    json all = json::array(), unreachable = json::array();
  };
  auto m = std::make_shared<Merge>();
  ask_every_node(
      req,
      [m](const std::string& name, const Result<http::ClientResponse>& r) {
        json j = r && r->status == 200 ? json::parse(r->body, nullptr, false) : json();
        if (j.is_object() && j["sandboxes"].is_array()) {
          for (auto& sb : j["sandboxes"]) m->all.push_back(std::move(sb));
        } else {
          m->unreachable.push_back(name);
        }
      },
      [m, res] { res->send_json(200, {{"sandboxes", m->all}, {"unreachable_nodes", m->unreachable}}); });
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
                   {"platform", n.platform},
                   {"capacity", n.capacity},
                   {"cpus", n.cpus},
                   {"memory_bytes", n.memory_bytes},
                   {"memory_available_bytes", n.memory_available_bytes},
                   {"loadavg_1m", n.loadavg_1m},
                   {"active", n.active},
                   {"inflight", n.inflight},
                   {"warm", n.warm},
                   {"templates", n.templates}});
  }
  res->send_json(200, {{"nodes", out}});
}

}  // namespace swissbox::sched
