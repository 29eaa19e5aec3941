#include "agent/sandbox/sandbox.h"

namespace swissbox {

using json = nlohmann::json;

std::string_view state_name(SandboxState s) {
  switch (s) {
    case SandboxState::kWarm:
      return "warm";
    case SandboxState::kActive:
      return "active";
    case SandboxState::kFailed:
      return "failed";
    case SandboxState::kSuspended:
      return "suspended";
  }
  return "unknown";
}

std::string_view limit_name(HostLimit l) {
  switch (l) {
    case HostLimit::kMemory:
      return "oom";
    case HostLimit::kTasks:
      return "tasks";
    case HostLimit::kNone:
      break;
  }
  return "";
}

json Sandbox::to_json(const std::string& node) const {
  auto created =
      std::chrono::duration_cast<std::chrono::milliseconds>(created_at.time_since_epoch());
  json j = {{"id", id},
            {"node", node},
            {"template", template_name},
            {"tenant", tenant},
            {"state", state_name(state)},
            {"workspace", workspace},
            // cpu, memory and pids are the sandbox's cgroup; disk comes with its quota.
            {"limits", limits_json(limits)},
            {"created_at", created.count() / 1000.0},
            {"timeout_s", timeout.count()},
            {"idle_timeout_s", timeout.count()},
            {"on_idle", on_idle_name(on_idle)},
            {"retention_s", retention.count()},
            {"warm", from_pool},
            {"metadata", metadata},
            {"metrics",
             {{"exec_count", exec_count},
              {"last_exit_code", last_exit_code},
              {"health", health_misses == 0 ? "ok" : "unresponsive"},
              {"health_check_failures", health_failures_total}}}};
  if (usage) {
    json& m = j["metrics"];
    m["cpu_seconds"] = usage->cpu_seconds;
    m["cpu_percent"] = cpu_percent;
    m["memory_bytes"] = usage->memory_bytes;
    m["memory_peak_bytes"] = usage->memory_peak_bytes;
    m["host_tasks"] = usage->pids;
    m["oom_kills"] = usage->oom_kills;
    if (usage->disk_used_bytes >= 0) {
      m["disk_used_bytes"] = usage->disk_used_bytes;
      m["disk_limit_bytes"] = usage->disk_limit_bytes;
    }
  }
  j["network"] = {{"mode", network_name(network)}};
  if (network == NetworkMode::kEgress) {
    json& n = j["network"];
    n["address"] = network_address;
    n["egress_allowlist"] = egress_allowlist;
    n["bandwidth_kbit"] = bandwidth_kbit;
    if (usage && usage->net_in_bytes >= 0) {
      n["bytes_in"] = usage->net_in_bytes;
      n["bytes_out"] = usage->net_out_bytes;
    }
  }
  if (!failure.empty()) j["failure"] = failure;
  if (state == SandboxState::kSuspended) {
    j["checkpoint_bytes"] = checkpoint_bytes;
    auto at = std::chrono::duration_cast<std::chrono::milliseconds>(suspended_at.time_since_epoch());
    j["suspended_at"] = at.count() / 1000.0;
  }
  return j;
}

nlohmann::json ContextInfo::to_json(const std::string& id) const {
  return {{"id", id}, {"language", language}, {"cwd", cwd.empty() ? "/workspace" : cwd}};
}

}  // namespace swissbox
