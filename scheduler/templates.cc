// Templates on the scheduler (issue 22): every /v1/templates call goes to every node that
// reports. A PUT or DELETE is answered with each node's answer once all have answered: the
// first refusal (4xx) a node gave, else 503 naming the nodes that did not answer, else the
// nodes' status (202 for a PUT: each node builds in the background; GET /v1/nodes shows
// each node's template states, and placement only uses nodes where the template is ready).
// A GET is the nodes' answers side by side (a build log: each node's text).
#include <fmt/format.h>

#include "scheduler/service.h"
#include "scheduler/upstream.h"

namespace swissbox::sched {

using json = nlohmann::json;

void Scheduler::templates(http::Request&& req, std::shared_ptr<http::Responder> res) {
  struct Answers {
    json nodes = json::object();
    std::vector<std::string> unreachable;
    std::optional<http::ClientResponse> refused;
    unsigned status = 0;
  };
  auto a = std::make_shared<Answers>();
  const bool log = std::string_view(req.target()).ends_with("/log");
  ask_every_node(
      req,
      [a, log](const std::string& name, const Result<http::ClientResponse>& r) {
        if (!r || r->status >= 500) {
          // The node's own reason when it gave one (no containerd, a full disk), else why it
          // could not be asked.
          json body = r ? json::parse(r->body, nullptr, false) : json();
          std::string why = !r ? r.error().message
                            : body.is_object() && body.contains("error")
                                ? body["error"].value("message", r->body)
                                : fmt::format("status {}", r->status);
          a->unreachable.push_back(name + " (" + why + ")");
          return;
        }
        if (r->status >= 400) {
          if (!a->refused) a->refused = *r;
          a->nodes[name] = json::parse(r->body, nullptr, false);
          return;
        }
        a->status = r->status;
        a->nodes[name] = log ? json(r->body) : r->body.empty() ? json::object() : json::parse(r->body, nullptr, false);
      },
      [a, res] {
        if (a->refused) return res->send(a->refused->status, a->refused->body, "application/json");
        if (!a->unreachable.empty()) {
          return res->send_error(make_error(Code::kUnavailable,
                                            fmt::format("not confirmed by {}; the others answered: {}",
                                                        fmt::join(a->unreachable, ", "), a->nodes.dump())));
        }
        if (a->status == 0) return res->send_error(make_error(Code::kUnavailable, "no node reports"));
        if (a->status == 204) return res->send(204, "", "application/json");
        res->send_json(a->status, {{"nodes", a->nodes}});
      });
}

}  // namespace swissbox::sched
