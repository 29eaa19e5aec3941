// swissbox-scheduler's HTTP service: the agent's /v1 shape in front of many agents.
// Creates (and one-shots) are placed (scheduler/placement.h) and forwarded, trying the
// next candidate when an agent refuses; every call on a sandbox goes to the node its id
// names, bodies streamed back as they arrive (SSE, file bytes); lists fan out and merge.
// Node reports come from polling each agent's GET /v1/node (see registry.h).
//
// Threads: none of its own. Registry, placement, the HTTP server and every call to an
// agent (scheduler/upstream.h) run asynchronously on one io_context thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/auth.h"
#include "common/http_client.h"
#include "common/http_server.h"
#include "common/metrics.h"
#include "scheduler/deadlines.h"
#include "scheduler/registry.h"

namespace swissbox::sched {

struct SchedulerOptions {
  // HOST:PORT of the agents to poll. A HOST that is a name (a headless Service's) is
  // resolved at every poll and each address it yields is an agent: agents that come and
  // go are found without a restart.
  std::vector<std::string> agents;
  PlacementPolicy policy;
  std::chrono::milliseconds poll_interval{1000};
  // How long a call waits for an agent's answer, per operation.
  AgentDeadlines deadlines;
  TokenTable tokens;  // empty: no auth (loopback)
  std::string agent_token;  // what the scheduler itself shows agents when polling
};

class Scheduler {
 public:
  Scheduler(boost::asio::io_context& ioc, SchedulerOptions opts, Metrics& metrics);
  // What the HTTP server in front of it needs (uploads relayed piece by piece).
  // Streams uploads through, and checks the token on the header (before any body).
  http::ServerOptions server_options() const;
  void start();
  void handle(http::Request&& req, std::shared_ptr<http::Responder> res);
  // Whether some node could take a sandbox now (readiness).
  bool can_place() const;

 private:
  struct Forward;
  void poll();
  void poll_agent(const std::string& address);
  static std::shared_ptr<Forward> forward_of(http::Request&& req,
                                             std::shared_ptr<http::Responder> res,
                                             std::string kind);
  void place_and_forward(http::Request&& req, std::shared_ptr<http::Responder> res);
  void try_candidates(std::shared_ptr<Forward> f, std::vector<std::string> addresses, size_t i,
                      std::string last);
  // The refusal of one more running sandbox (cpu, memory_mb) past the tenant's quota,
  // summed over the nodes; and the node that holds the tenant's workspace ("" when none
  // does; an error naming it when it does not report).
  std::optional<Error> over_cluster_quota(const Principal& who, double cpu, int64_t memory_mb) const;
  Result<std::string> workspace_node(const std::string& tenant, const std::string& workspace) const;
  // Places a create (native or E2B's) and sends it to the candidates in turn.
  void place(http::Request&& req, std::shared_ptr<http::Responder> res, const PlacementRequest& pr,
             bool e2b);
  // e2b: errors in E2B's shape.
  void route_to_node(http::Request&& req, std::shared_ptr<http::Responder> res,
                     const std::string& id, bool e2b = false);
  void e2b_control(http::Request&& req, std::shared_ptr<http::Responder> res);
  void e2b_list(http::Request&& req, std::shared_ptr<http::Responder> res);
  void fail(const Forward& f, const Error& e);
  void list_all(http::Request&& req, std::shared_ptr<http::Responder> res);
  // Sends the request's method and target to every node that reports (every_known_node:
  // every node ever reported, up or not), each answer (or failure) to `each` by node name,
  // then `done` once all have answered.
  using NodeAnswer = std::function<void(const std::string& node, const Result<http::ClientResponse>&)>;
  void ask_every_node(const http::Request& req, NodeAnswer each, std::function<void()> done,
                      bool every_known_node = false);
  // /v1/tenants/{t}/usage (summed over the nodes) and DELETE /v1/tenants/{t} (every node,
  // and later on the ones that were away): scheduler/tenants.cc.
  void tenant_route(http::Request&& req, std::shared_ptr<http::Responder> res, const std::string& tenant,
                    const std::string& rest);
  void tenant_usage(http::Request&& req, std::shared_ptr<http::Responder> res, const std::string& tenant);
  void delete_tenant(http::Request&& req, std::shared_ptr<http::Responder> res, const std::string& tenant);
  // Sends the node every tenant delete another node reports and it does not.
  void finish_tenant_deletes(const NodeState& node);
  void nodes(std::shared_ptr<http::Responder> res) const;
  // /v1/templates…: sent to every node (scheduler/templates.cc).
  void templates(http::Request&& req, std::shared_ptr<http::Responder> res);
  // Sends the call to the agent at `address` and relays its answer to the client. With
  // on_refused set, a refusal (429/409/503) or no answer calls it instead, with the reason.
  void relay(std::shared_ptr<Forward> f, const std::string& address,
             std::function<void(std::string why)> on_refused);

  boost::asio::io_context& ioc_;
  SchedulerOptions opts_;
  Metrics& metrics_;
  NodeRegistry registry_;
  boost::asio::steady_timer poll_timer_;
  std::mt19937_64 rng_{std::random_device{}()};
  std::set<std::string> polling_;  // agents whose report is being fetched
  std::set<std::pair<std::string, std::string>> deletes_in_flight_;  // address, tenant
  boost::asio::ip::tcp::resolver resolver_;
};

}  // namespace swissbox::sched
