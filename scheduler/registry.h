// The scheduler's view of the nodes: one NodeState per agent, refreshed from its
// `GET /v1/node` report. Lives on the scheduler's I/O thread.
//
// Why polling rather than agent heartbeats: schedulers stay stateless and need no address
// of their own that every agent must know (a replica that starts, moves or scales is simply
// another poller), agents need no scheduler flag, and a node's silence is seen the same way
// by every replica. The cost is one small request per node per second per replica.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/error.h"
#include "scheduler/placement.h"

namespace swissbox::sched {

// Parses an agent's /v1/node answer.
Result<NodeState> parse_node_report(const nlohmann::json& report);

class NodeRegistry {
 public:
  // A fresh report from the agent at `address`: replaces what was known, resets in-flight
  // (but for workspaces placed there in the last minute that it does not report yet).
  void update(const std::string& address, NodeState report, Clock::time_point now);
  std::vector<NodeState>& nodes() { return nodes_; }
  const std::vector<NodeState>& nodes() const { return nodes_; }
  // The node whose sandbox ids carry `id_node` (see common/sandbox_id.h); nullptr if none.
  const NodeState* by_id_node(const std::string& id_node) const;
  NodeState* by_address(const std::string& address);

 private:
  std::vector<NodeState> nodes_;
  std::map<std::string, size_t> by_id_node_;
};

}  // namespace swissbox::sched
