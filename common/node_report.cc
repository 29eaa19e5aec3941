#include "common/node_report.h"

namespace swissbox {

using json = nlohmann::json;

int NodeReport::warm_total() const {
  int total = 0;
  for (const auto& [pool, ready] : warm) total += ready;
  return total;
}

json NodeReport::tenants_json() const {
  json out = json::object();
  for (const auto& [tenant, l] : tenants) {
    out[tenant] = {{"running", l.running}, {"cpu", l.cpu}, {"memory_mb", l.memory_mb}, {"suspended", l.suspended}};
  }
  return out;
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
          {"tenants", tenants_json()},
          {"workspaces", workspaces},
          {"tenant_deletes", tenant_deletes},
          {"templates", templates},
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
    if (auto t = r.find("tenants"); t != r.end() && t->is_object()) {
      for (const auto& [tenant, load] : t->items()) {
        TenantLoad& l = n.tenants[tenant];
        if (load.is_number_integer()) {  // an agent of before cpu and memory were reported
          l.running = load.get<int64_t>();
          continue;
        }
        l.running = load.value("running", int64_t{0});
        l.cpu = load.value("cpu", 0.0);
        l.memory_mb = load.value("memory_mb", int64_t{0});
        l.suspended = load.value("suspended", int64_t{0});
      }
    }
    n.workspaces = r.value("workspaces", std::map<std::string, std::vector<std::string>>{});
    n.tenant_deletes = r.value("tenant_deletes", std::map<std::string, double>{});
    n.templates = r.value("templates", std::map<std::string, std::string>{});
    return n;
  } catch (const json::exception& e) {
    return make_error(Code::kInvalidArgument, std::string("bad node report: ") + e.what());
  }
}

}  // namespace swissbox
