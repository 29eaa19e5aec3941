// Host cgroups for sandboxes: one cgroup per sandbox under one parent, holding runsc's
// sandbox (sentry), gofer and stub processes. runsc joins an existing cgroup named by the
// OCI spec's linux.cgroupsPath, keeps the limits it finds there and leaves the cgroup in
// place on delete; on v1 it also makes it in every other hierarchy mounted (blkio, cpuset,
// devices, freezer, name=systemd…) and leaves those too (measured with runsc 20240729) —
// so the agent owns each cgroup: it makes it with the limits before `runsc create`,
// rewrites limits at claim time (file writes only), reads usage, and removes it, in every
// hierarchy, once the sandbox's processes are gone.
//
// Two drivers behind one interface: v2 (the unified hierarchy: SKS nodes) and v1 (one
// hierarchy per controller: hybrid hosts such as the dev VM). The cgroup filesystem root is
// injectable so both are unit-tested on a temp tree.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"

namespace swissbox {

struct CgroupLimits {
  double cpu = 0;            // CPUs; 0 = no quota
  int64_t memory_bytes = 0;  // 0 = no limit; swap is always 0
  int64_t pids = 0;          // host tasks; 0 = no limit
};

struct CgroupUsage {
  double cpu_seconds = 0;
  int64_t memory_bytes = 0;
  int64_t memory_peak_bytes = 0;  // 0 when the kernel does not report it
  int64_t pids = 0;
  int64_t oom_kills = 0;  // OOM kills inside this cgroup since it was made
  int64_t pids_limit_hits = 0;  // forks refused by pids.max
  // Not the cgroup's: the runtime adds the sandbox's disk (-1: unknown).
  int64_t disk_used_bytes = -1;
  int64_t disk_limit_bytes = -1;
  // Neither: bytes the sandbox received and sent over its network link (-1: no network).
  int64_t net_in_bytes = -1;
  int64_t net_out_bytes = -1;
};

class Cgroups {
 public:
  virtual ~Cgroups() = default;
  virtual std::string version() const = 0;  // "v1" or "v2"
  // The parent, as a path inside the hierarchy ("/swissbox/sandboxes").
  virtual const std::string& parent() const = 0;
  // Makes the sandbox's cgroup (idempotent) and writes its limits.
  virtual Status create(const std::string& name, const CgroupLimits& limits) = 0;
  virtual Status set_limits(const std::string& name, const CgroupLimits& limits) = 0;
  virtual Result<CgroupUsage> usage(const std::string& name) const = 0;
  // Kills what is still inside and removes the cgroup; a missing cgroup is fine.
  virtual Status remove(const std::string& name) = 0;
  // Host processes in the sandbox's cgroup (sentry, gofer, stubs); empty if none or gone.
  virtual std::vector<int> processes(const std::string& name) const = 0;
  // Kills every process in the cgroup and waits for them to exit: true when none is left
  // alive within the timeout. Signals go through pidfds, to processes still listed after
  // their pidfd was opened, so a pid reused outside the cgroup is never signalled.
  bool kill_all(const std::string& name, std::chrono::milliseconds timeout) const;
  // Names of the cgroups under the parent (for garbage collection).
  virtual Result<std::vector<std::string>> children() const = 0;
  // linux.cgroupsPath for the OCI spec.
  std::string oci_path(const std::string& name) const { return parent() + "/" + name; }
};

struct CgroupOptions {
  std::string root = "/sys/fs/cgroup";
  // Path inside the hierarchy; empty = "sandboxes" under the agent's own cgroup (the v2
  // one, or the v1 memory one), read from proc_self_cgroup.
  std::string parent;
  std::string proc_self_cgroup = "/proc/self/cgroup";
};

// Detects the cgroup version under root (v2 when root itself has cgroup.controllers, v1
// when root has a memory hierarchy), makes the parent and, on v2, enables the cpu, memory
// and pids controllers down to it. Errors name the file and what to do.
Result<std::unique_ptr<Cgroups>> open_cgroups(const CgroupOptions& opts);

}  // namespace swissbox
