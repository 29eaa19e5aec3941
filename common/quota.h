// Tenant quotas (issue 21): what a tenant holds (on a node for the agent, summed over the
// nodes' reports for the scheduler) and whether one more running or suspended sandbox stays
// within its quota (common/auth.h). A request past it answers 429 naming the quota.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/auth.h"
#include "common/error.h"

namespace swissbox {

struct TenantLoad {
  int64_t running = 0;   // active sandboxes, and ones being claimed or resumed
  double cpu = 0;        // the sum of their cpu limits
  int64_t memory_mb = 0;  // … and of their memory limits
  int64_t suspended = 0;
  void add_running(double sandbox_cpu, int64_t sandbox_memory_mb, int sign = 1) {
    running += sign;
    cpu += sign * sandbox_cpu;
    memory_mb += sign * sandbox_memory_mb;
  }
  TenantLoad& operator+=(const TenantLoad& o) {
    running += o.running;
    cpu += o.cpu;
    memory_mb += o.memory_mb;
    suspended += o.suspended;
    return *this;
  }
};

// nullopt when `load` plus one more running sandbox of `cpu` and `memory_mb` fits the
// quota, else the refusal (kResourceExhausted) naming the quota that would be passed.
std::optional<Error> check_running(const std::string& tenant, const Quota& quota, const TenantLoad& load, double cpu,
                                   int64_t memory_mb);
// The same for one more suspended sandbox.
std::optional<Error> check_suspended(const std::string& tenant, const Quota& quota, const TenantLoad& load);

}  // namespace swissbox
