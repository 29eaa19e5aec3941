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
  n.tenants = std::move(report->tenants);
  for (auto& [tenant, names] : report->workspaces) n.workspaces[tenant].insert(names.begin(), names.end());
  n.tenant_deletes = std::move(report->tenant_deletes);
  n.templates = std::move(report->templates);
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
    return;
  }
  for (const auto& [where, at] : nodes_[it->second].workspaces_placed) {
    if (now - at > std::chrono::minutes(1) || report.workspaces[where.first].count(where.second)) continue;
    report.workspaces[where.first].insert(where.second);
    report.workspaces_placed[where] = at;
  }
  nodes_[it->second] = std::move(report);
}

void NodeState::place_workspace(const std::string& tenant, const std::string& name, Clock::time_point now) {
  if (workspaces[tenant].insert(name).second) workspaces_placed[{tenant, name}] = now;
}

void NodeState::unplace_workspace(const std::string& tenant, const std::string& name) {
  if (!workspaces_placed.erase({tenant, name})) return;  // reported: it is there
  if (auto it = workspaces.find(tenant); it != workspaces.end()) it->second.erase(name);
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
