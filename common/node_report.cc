#include "common/node_report.h"

namespace swissbox {

using json = nlohmann::json;

int NodeReport::warm_total() const {
  int total = 0;
  for (const auto& [pool, ready] : warm) total += ready;
  return total;
}

json NodeReport::to_json() const {
  return {{"node", node},
          {"region", region},
          {"runtime", {{"name", runtime_name}, {"version", runtime_version}, {"platform", platform}}},
          {"capacity", {{"max_sandboxes", max_sandboxes}, {"cpus", cpus}, {"memory_bytes", memory_bytes}}},
          {"load", {{"loadavg_1m", loadavg_1m}, {"memory_available_bytes", memory_available_bytes}}},
          {"active", active},
          {"warm_total", warm_total()},
          {"deleting", deleting},
          {"warm", warm},
          {"languages", languages},
          {"draining", draining},
          {"tenants", tenant_running},
          {"workspaces", workspaces},
          {"tenant_deletes", tenant_deletes},
          {"cri", cri}};
}

Result<NodeReport> NodeReport::parse(const json& r) {
  try {
    NodeReport n;
    n.node = r.at("node").get<std::string>();
    if (n.node.empty()) return make_error(Code::kInvalidArgument, "node report without a name");
    n.region = r.value("region", "");
    n.draining = r.value("draining", false);
    const json& capacity = r.at("capacity");
    n.max_sandboxes = capacity.at("max_sandboxes").get<int>();
    n.cpus = capacity.value("cpus", 0);
    n.memory_bytes = capacity.value("memory_bytes", uint64_t{0});
    if (auto rt = r.find("runtime"); rt != r.end() && rt->is_object()) {
      n.runtime_name = rt->value("name", "");
      n.runtime_version = rt->value("version", "");
      n.platform = rt->value("platform", "");
    }
    if (auto load = r.find("load"); load != r.end() && load->is_object()) {
      n.loadavg_1m = load->value("loadavg_1m", 0.0);
      n.memory_available_bytes = load->value("memory_available_bytes", uint64_t{0});
    }
    n.active = r.at("active").get<int>();
    n.deleting = r.value("deleting", 0);
    n.warm = r.at("warm").get<std::map<std::string, int>>();
    n.languages = r.value("languages", std::vector<std::string>{});
    if (auto cri = r.find("cri"); cri != r.end()) n.cri = *cri;
    n.tenant_running = r.value("tenants", std::map<std::string, int>{});
    n.workspaces = r.value("workspaces", std::map<std::string, std::vector<std::string>>{});
    n.tenant_deletes = r.value("tenant_deletes", std::map<std::string, double>{});
    return n;
  } catch (const json::exception& e) {
    return make_error(Code::kInvalidArgument, std::string("bad node report: ") + e.what());
  }
}

}  // namespace swissbox
