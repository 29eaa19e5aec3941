// The seam between the sandbox manager and the thing that runs sandboxes. The product uses
// RunscDriver; unit tests use a runtime that starts swissbox-init as a plain host process.
// Every method blocks: callers run them on the worker pool, never on the I/O thread.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "agent/runtime/cgroups.h"
#include "agent/runtime/sandbox_spec.h"
#include "common/error.h"
#include "common/process.h"
#include "common/unique_fd.h"

namespace swissbox {

// The agent's end of the runner's control channel: a unix socket pair whose other end is the
// runner's stdin and stdout. A socket, not pipes: code in the sandbox can reopen a pipe or
// file that the runner holds through /proc/<pid>/fd/N (gVisor allows it even across uids
// and with PR_SET_DUMPABLE 0) and write forged frames into it, but reopening a host socket
// fails with ENXIO.
struct RunnerLink {
  unique_fd socket;
};

class SandboxRuntime {
 public:
  virtual ~SandboxRuntime() = default;
  // Creates and starts the sandbox with swissbox-init as its first process.
  virtual Result<RunnerLink> start(const SandboxSpec& spec) = 0;
  // Kills and removes the sandbox and everything made for it. Idempotent.
  virtual Status destroy(const std::string& id) = 0;
  // Rewrites a running sandbox's limits (claim time): cgroup files and the disk's
  // reservation (fallocate). Short, but blocking: not on the I/O thread.
  virtual Status set_limits(const std::string& id, const Limits& limits) = 0;
  // What the sandbox uses now: cgroup files, its disk (statvfs), its link's counters
  // (netlink). Not on the I/O thread.
  virtual Result<CgroupUsage> usage(const std::string& id) = 0;
  // The cgroup part of usage() alone (a few small files): what tells why the host ended a
  // sandbox, read on the I/O thread when its runner goes away.
  virtual Result<CgroupUsage> cgroup_usage(const std::string& id) { return usage(id); }
  // Host memory of the sandbox's processes (PSS and RSS, from /proc/<pid>/smaps_rollup);
  // nullopt when the runtime cannot tell. Not on the I/O thread.
  virtual std::optional<MemoryFootprint> footprint(const std::string& /*id*/) { return std::nullopt; }
  // Reconnects to the runner of a sandbox that an earlier agent process started (its
  // control socket died with that process).
  virtual Result<RunnerLink> reattach(const std::string& id) {
    return make_error(Code::kUnavailable, name() + " cannot reattach to sandbox " + id);
  }
  // Suspend (issue 21): saves the sandbox's whole state — memory, processes, open files —
  // to the node's disk and ends its processes, keeping what a restore needs (bundle, disk,
  // cgroup with its limits). A checkpoint that fails leaves the sandbox running. Answers the
  // image's size in bytes.
  virtual Result<int64_t> checkpoint(const std::string& id) {
    return make_error(Code::kUnavailable, name() + " cannot suspend sandbox " + id);
  }
  // Resume: starts the sandbox again from its checkpoint; its runner comes back with its
  // state, on a fresh channel. What a node reboot took (cgroup, disk mount, network) is
  // made again first, the cgroup with `limits`; a sandbox with network gets its address back
  // (network() may answer a new one after a reboot). The checkpoint is removed once the
  // sandbox runs.
  virtual Result<RunnerLink> restore(const std::string& id, const Limits& /*limits*/) {
    return make_error(Code::kUnavailable, name() + " cannot resume sandbox " + id);
  }
  // A tenant's persistent workspace (issue 21): made on first use with size_mb, mounted
  // again after a reboot; answers the host directory a sandbox binds. Not on the I/O thread.
  virtual Result<std::string> workspace(const std::string& tenant, const std::string& workspace,
                                        int64_t /*size_mb*/) {
    return make_error(Code::kUnavailable, name() + " keeps no workspaces (" + tenant + "/" + workspace + ")");
  }
  // Removes every workspace and whatever else the runtime keeps for the tenant; with
  // `before`, only what was made before that time (a delete that reaches a node late must
  // not take what the tenant made since). Not on the I/O thread.
  virtual Status remove_tenant(const std::string& /*tenant*/,
                               std::optional<std::chrono::system_clock::time_point> /*before*/) {
    return ok_status();
  }
  // The workspaces on this node: names by tenant (the scheduler places a create that names
  // one on its node). Kept in memory: the one method that may be called on the I/O thread.
  virtual std::map<std::string, std::vector<std::string>> workspaces() const { return {}; }
  // Ids of every sandbox this runtime holds (for start-up garbage collection).
  virtual Result<std::vector<std::string>> list() = 0;
  // Removes what the runtime made that none of its sandboxes explains any more (a network
  // link whose sandbox directory is gone); answers what it removed.
  virtual std::vector<std::string> remove_orphans() { return {}; }
  // Whether sandboxes can have network ("egress"); see agent/net/sandbox_network.h.
  virtual bool offers_egress() const { return false; }
  struct NetworkAddresses {
    std::string sandbox_ip, gateway_ip;
  };
  // The addresses of a sandbox started with network "egress".
  virtual std::optional<NetworkAddresses> network(const std::string& /*id*/) const {
    return std::nullopt;
  }
  // Its rate limit both ways in kbit/s (0: the node's default).
  virtual Status set_bandwidth(const std::string& id, int64_t /*kbit*/) {
    return make_error(Code::kUnavailable, "sandbox " + id + " has no network");
  }
  // The root the node's own templates (default, …) have: what a package layer on them is
  // built on. Empty root: the runtime has none to offer.
  virtual RootfsLayout node_root() const { return {}; }
  virtual std::string name() const = 0;      // "runsc"
  virtual std::string version() const = 0;   // "0.0~20240729.0"
  virtual std::string platform() const = 0;  // "ptrace"
};

}  // namespace swissbox
