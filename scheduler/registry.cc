#include "scheduler/registry.h"

#include "common/sandbox_id.h"

namespace swissbox::sched {

using json = nlohmann::json;

Result<NodeState> parse_node_report(const json& r) {
  try {
    NodeState n;
    n.name = r.at("node").get<std::string>();
    n.region = r.value("region", "");
    n.draining = r.value("draining", false);
    n.capacity = r.at("capacity").at("max_sandboxes").get<int>();
    n.cpus = r["capacity"].value("cpus", 0);
    n.memory_bytes = r["capacity"].value("memory_bytes", uint64_t{0});
    if (auto rt = r.find("runtime"); rt != r.end() && rt->is_object()) n.platform = rt->value("platform", "");
    if (auto load = r.find("load"); load != r.end() && load->is_object()) {
      n.loadavg_1m = load->value("loadavg_1m", 0.0);
      n.memory_available_bytes = load->value("memory_available_bytes", uint64_t{0});
    }
    n.active = r.at("active").get<int>();
    n.warm = r.at("warm").get<std::map<std::string, int>>();
    for (const auto& [t, w] : n.warm) n.warm_total += w;
    if (n.name.empty()) return make_error(Code::kInvalidArgument, "node report without a name");
    return n;
  } catch (const json::exception& e) {
    return make_error(Code::kInvalidArgument, std::string("bad node report: ") + e.what());
  }
}

void NodeRegistry::update(const std::string& address, NodeState report, Clock::time_point now) {
  report.address = address;
  report.reported_at = now;
  report.inflight = 0;
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
