// What an agent reports about its node (GET /v1/node, and the answer to a drain): the
// scheduler places sandboxes by it, swissboxctl shows it. One definition for all three:
// the agent writes it with to_json(), the others read it with parse().
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/quota.h"

namespace swissbox {

struct NodeReport {
  std::string node;
  std::string region;
  std::string runtime_name, runtime_version, platform;  // "runsc", its version, "ptrace"
  int max_sandboxes = 0;  // warm + active
  int cpus = 0;
  uint64_t memory_bytes = 0;
  double loadavg_1m = 0;
  uint64_t memory_available_bytes = 0;
  int active = 0;
  int deleting = 0;
  std::map<std::string, int> warm;  // ready sandboxes per pool key (the pools offered)
  std::vector<std::string> languages;
  bool draining = false;
  // What each tenant runs here (active sandboxes and ones being claimed or resumed: count,
  // cpu and memory limits; and its suspended ones): the scheduler sums them for cluster-wide
  // quotas.
  std::map<std::string, TenantLoad> tenants;
  // Workspace names by tenant: a create naming one is placed on its node.
  std::map<std::string, std::vector<std::string>> workspaces;
  // Tenants deleted on this node (last 30 days) and when, unix seconds: the scheduler
  // sends the delete to nodes that did not record it.
  std::map<std::string, double> tenant_deletes;
  // The node's image templates and their states (building, ready, failed): the scheduler
  // shows them; a template is offered (placed on) only where it is ready (in `warm`).
  std::map<std::string, std::string> templates;
  nlohmann::json cri;  // the node's containerd as CRI shows it; null without --cri-socket

  int warm_total() const;
  nlohmann::json tenants_json() const;
  nlohmann::json to_json() const;
  // The fields a reader needs (node, capacity.max_sandboxes, active, warm) must be there;
  // the rest default when an older agent leaves them out.
  static Result<NodeReport> parse(const nlohmann::json& j);
};

}  // namespace swissbox
