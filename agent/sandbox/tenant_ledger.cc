#include "agent/sandbox/tenant_ledger.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <nlohmann/json.hpp>

#include "common/fs.h"

namespace swissbox {

using json = nlohmann::json;

json TenantUsage::to_json() const {
  return {{"cpu_seconds", cpu_seconds},
          {"memory_gb_seconds", memory_gb_seconds},
          {"disk_gb_hours", disk_gb_hours},
          {"network_in_bytes", net_in_bytes},
          {"network_out_bytes", net_out_bytes},
          {"sandboxes_created", sandboxes_created},
          {"executions", executions}};
}

Status TenantLedger::load() {
  if (path_.empty() || !fs::exists(path_)) return ok_status();
  auto text = fs::read_file(path_);
  if (!text) return text.error();
  json j = json::parse(*text, nullptr, false);
  if (!j.is_object() || !j["tenants"].is_object()) {
    return make_error(Code::kInvalidArgument, "tenant usage file " + path_ + " is not a JSON object of tenants");
  }
  try {
    for (const auto& [tenant, u] : j["tenants"].items()) {
      TenantUsage& t = tenants_[tenant];
      t.cpu_seconds = u.value("cpu_seconds", 0.0);
      t.memory_gb_seconds = u.value("memory_gb_seconds", 0.0);
      t.disk_gb_hours = u.value("disk_gb_hours", 0.0);
      t.net_in_bytes = u.value("network_in_bytes", int64_t{0});
      t.net_out_bytes = u.value("network_out_bytes", int64_t{0});
      t.sandboxes_created = u.value("sandboxes_created", int64_t{0});
      t.executions = u.value("executions", int64_t{0});
    }
    if (auto d = j.find("deleted"); d != j.end()) deleted_ = d->get<std::map<std::string, double>>();
  } catch (const json::exception& e) {
    return make_error(Code::kInvalidArgument, "tenant usage file " + path_ + ": " + e.what());
  }
  return ok_status();
}

Status TenantLedger::save() {
  if (path_.empty() || !dirty_) return ok_status();
  json j = {{"version", 1}, {"tenants", json::object()}, {"deleted", json::object()}};
  for (const auto& [tenant, u] : tenants_) j["tenants"][tenant] = u.to_json();
  const double now = static_cast<double>(time(nullptr));
  std::erase_if(deleted_, [now](const auto& d) { return now - d.second > kDeletesKeptFor; });
  for (const auto& [tenant, when] : deleted_) j["deleted"][tenant] = when;
  if (auto st = fs::write_file_atomic(path_, j.dump(), 0600); !st) return st;
  dirty_ = false;
  return ok_status();
}

TenantUsage TenantLedger::usage(const std::string& tenant) const {
  auto it = tenants_.find(tenant);
  return it == tenants_.end() ? TenantUsage{} : it->second;
}

void TenantLedger::forget(const std::string& tenant, double when) {
  tenants_.erase(tenant);
  double& at = deleted_[tenant];
  at = std::max(at, std::round(when * 1000) / 1000);  // as the scheduler passes it on
  dirty_ = true;
}

}  // namespace swissbox
