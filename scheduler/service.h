// swissbox-scheduler's HTTP service: the agent's /v1 shape in front of many agents.
// Creates (and one-shots) are placed (scheduler/placement.h) and forwarded, trying the
// next candidate when an agent refuses; every call on a sandbox goes to the node its id
// names, bodies streamed back as they arrive (SSE, file bytes); lists fan out and merge.
// Node reports come from polling each agent's GET /v1/node (see registry.h).
//
// Threads: registry, placement and the HTTP server live on one I/O thread; calls to
// agents block a worker thread each.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "common/http_server.h"
#include "common/metrics.h"
#include "scheduler/registry.h"

namespace swissbox::sched {

struct SchedulerOptions {
  std::vector<std::string> agents;  // HOST:PORT of every agent to poll
  PlacementPolicy policy;
  std::chrono::milliseconds poll_interval{1000};
  std::chrono::milliseconds agent_timeout{60 * 60 * 1000 + 30000};  // above the longest exec
  std::map<std::string, std::string> tokens;  // token → tenant; empty: no auth (loopback)
  std::string agent_token;  // what the scheduler itself shows agents when polling
};

class Scheduler {
 public:
  Scheduler(boost::asio::io_context& ioc, boost::asio::thread_pool& workers,
            SchedulerOptions opts, Metrics& metrics);
  void start();
  void handle(http::Request&& req, std::shared_ptr<http::Responder> res);
  // Whether some node could take a sandbox now (readiness).
  bool can_place() const;

 private:
  struct Forward;
  void poll();
  void place_and_forward(http::Request&& req, std::shared_ptr<http::Responder> res);
  void route_to_node(http::Request&& req, std::shared_ptr<http::Responder> res,
                     const std::string& id);
  void list_all(http::Request&& req, std::shared_ptr<http::Responder> res);
  void nodes(std::shared_ptr<http::Responder> res) const;
  // Sends the request to `address` on a worker, streaming the answer back to `res`.
  void proxy(std::shared_ptr<Forward> f, const std::string& address);

  boost::asio::io_context& ioc_;
  boost::asio::thread_pool& workers_;
  SchedulerOptions opts_;
  Metrics& metrics_;
  NodeRegistry registry_;
  boost::asio::steady_timer poll_timer_;
  std::mt19937_64 rng_{std::random_device{}()};
};

}  // namespace swissbox::sched
