// One sandbox as the agent keeps it: its template, network, tenant, limits, state, usage
// and the channel to its runner. Owned by SandboxManager, on the I/O thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/runtime/cgroups.h"
#include "agent/runtime/sandbox_spec.h"
#include "agent/sandbox/runner_channel.h"
#include "common/error.h"

namespace swissbox {

// kSuspended: checkpointed to the node's disk, no process (issue 21); a call that needs it
// running resumes it first.
enum class SandboxState { kWarm, kActive, kFailed, kSuspended };
std::string_view state_name(SandboxState s);

// Why the host ended a sandbox, when its cgroup tells: its memory limit (an OOM kill of
// the sentry) or its task limit.
enum class HostLimit { kNone, kMemory, kTasks };
std::string_view limit_name(HostLimit l);  // "", "oom", "tasks" (the metric's label)

// A stateful code context the sandbox's runner keeps (runner/contexts.h).
struct ContextInfo {
  std::string language;  // python, javascript, typescript, bash
  std::string cwd;       // as asked; empty: the workspace
  uint64_t runs = 0;     // cells run since the agent started (E2B's execution count)
  nlohmann::json to_json(const std::string& id) const;
};

struct Sandbox {
  std::string id;
  std::string template_name;
  NetworkMode network = NetworkMode::kNone;
  std::string language;  // the worker its pool loaded ("": none); see PoolKey
  std::vector<std::string> egress_allowlist;
  int64_t bandwidth_kbit = 0;   // 0: the node's default
  std::string network_address;  // the sandbox's own address ("egress" only)
  std::string network_gateway;  // the node's end, where the egress proxy listens
  // From the runner's first hello; a reattaching agent presents it (op attach) through the
  // bridge, so that code in the sandbox cannot pose as the agent on the reattach socket.
  std::string runner_secret;
  std::string tenant;
  std::string workspace;  // the tenant's workspace bound in ("": none)
  SandboxState state = SandboxState::kWarm;
  Limits limits;
  std::map<std::string, std::string> env;
  nlohmann::json metadata = nlohmann::json::object();
  std::chrono::seconds timeout = kDefaultIdleTimeout;  // idle this long (or past end_at): on_idle
  OnIdle on_idle = OnIdle::kSuspend;
  std::chrono::seconds retention = kDefaultRetention;  // kept this long once suspended
  std::chrono::system_clock::time_point suspended_at{};
  std::chrono::system_clock::time_point created_at;
  // An end of life, busy or not (E2B's timeout); the epoch: none.
  std::chrono::system_clock::time_point end_at{};
  // What an E2B client calls it: the templateID it asked for, and the token its envd and
  // code-interpreter calls must carry (X-Access-Token).
  std::string client_template;
  std::string access_token;
  std::chrono::steady_clock::time_point last_used;
  bool from_pool = false;
  std::string failure;
  HostLimit failure_limit = HostLimit::kNone;
  uint64_t exec_count = 0;
  int last_exit_code = 0;
  int busy = 0;  // requests in flight; an idle sandbox may expire, a busy one never
  // Host resources (the sandbox's cgroup), sampled every second and on GET.
  std::optional<CgroupUsage> usage;
  double cpu_percent = 0;  // over the last ≥ 0.5 s; 100 = one full CPU
  // Since when its memory and disk are billed to its tenant (TenantLedger): its claim or
  // resume, then each usage reading; none while suspended, and after an agent restart until
  // the first reading (the previous agent billed up to its last one).
  std::chrono::steady_clock::time_point billed_at{};
  int64_t disk_bytes = 0;  // its disk's used bytes when it was suspended (billed meanwhile)
  double cpu_base = -1;    // CPU seconds at cpu_base_at, the start of that interval
  std::chrono::steady_clock::time_point cpu_base_at;
  // Runner pings: consecutive misses and all misses; three in a row fail the sandbox.
  int health_misses = 0;
  int health_failures_total = 0;
  std::shared_ptr<RunnerChannel> channel;  // null while suspended
  // A suspend or a resume is under way; the callers that wait for the resume.
  bool transition = false;
  std::vector<std::function<void(Status)>> resume_waiters;
  int64_t checkpoint_bytes = 0;  // the image's size while suspended
  std::map<std::string, ContextInfo> contexts;  // by id; in the record, so reattach finds them

  nlohmann::json to_json(const std::string& node) const;
  std::string pool() const { return pool_key(template_name, network, language); }
};

}  // namespace swissbox
