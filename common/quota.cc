#include "common/quota.h"

#include <fmt/format.h>

namespace swissbox {

namespace {

Error refusal(const std::string& tenant, std::string_view quota, const std::string& detail) {
  return make_error(Code::kResourceExhausted,
                    fmt::format("tenant {} is at its quota.{}: {}", tenant, quota, detail));
}

}  // namespace

std::optional<Error> check_running(const std::string& tenant, const Quota& quota, const TenantLoad& load, double cpu,
                                   int64_t memory_mb) {
  if (quota.sandboxes && load.running + 1 > *quota.sandboxes) {
    return refusal(tenant, "sandboxes", fmt::format("{} of {} running sandboxes", load.running, *quota.sandboxes));
  }
  // A small tolerance: cpu limits are fractions summed in floating point.
  if (quota.cpu && load.cpu + cpu > *quota.cpu + 1e-9) {
    return refusal(tenant, "cpu",
                   fmt::format("{:g} CPUs in use and {:g} asked of {:g}", load.cpu, cpu, *quota.cpu));
  }
  if (quota.memory_mb && load.memory_mb + memory_mb > *quota.memory_mb) {
    return refusal(tenant, "memory_mb",
                   fmt::format("{} MiB in use and {} MiB asked of {} MiB", load.memory_mb, memory_mb,
                               *quota.memory_mb));
  }
  return std::nullopt;
}

std::optional<Error> check_suspended(const std::string& tenant, const Quota& quota, const TenantLoad& load) {
  if (quota.suspended && load.suspended + 1 > *quota.suspended) {
    return refusal(tenant, "suspended",
                   fmt::format("{} of {} suspended sandboxes", load.suspended, *quota.suspended));
  }
  return std::nullopt;
}

}  // namespace swissbox
