#include "scheduler/registry.h"

#include "common/node_report.h"
#include "common/sandbox_id.h"

namespace swissbox::sched {

using json = nlohmann::json;

Result<NodeState> parse_node_report(const json& r) {
  auto report = NodeReport::parse(r);
  if (!report) return report.error();
  NodeState n;
  n.name = report->node;
  n.region = report->region;
  n.platform = report->platform;
  n.draining = report->draining;
  n.capacity = report->max_sandboxes;
  n.cpus = report->cpus;
  n.memory_bytes = report->memory_bytes;
  n.memory_available_bytes = report->memory_available_bytes;
  n.loadavg_1m = report->loadavg_1m;
  n.active = report->active;
  n.warm_total = report->warm_total();
  n.warm = std::move(report->warm);
  n.tenant_running = std::move(report->tenant_running);
  return n;
}

void NodeRegistry::update(const std::string& address, NodeState report, Clock::time_point now) {
  report.address = address;
  report.reported_at = now;
  report.inflight = 0;
  report.tenant_inflight.clear();
  std::string key = sandbox_id_node(report.name);
  auto it = by_id_node_.find(key);
  if (it == by_id_node_.end()) {
    by_id_node_[key] = nodes_.size();
    nodes_.push_back(std::move(report));
  } else {
    nodes_[it->second] = std::move(report);
  }
}

const NodeState* NodeRegistry::by_id_node(const std::string& id_node) const {
  auto it = by_id_node_.find(id_node);
  return it == by_id_node_.end() ? nullptr : &nodes_[it->second];
}

NodeState* NodeRegistry::by_address(const std::string& address) {
  for (auto& n : nodes_) {
    if (n.address == address) return &n;
  }
  return nullptr;
}

}  // namespace swissbox::sched
