// RunscDriver runs each sandbox as a gVisor container: it writes the OCI bundle from the
// typed spec, hands runsc create the runner's pipes as stdio, and keeps every runsc call of
// a sandbox on the same global flags. Root filesystems come from HostRootfs.
#pragma once

#include <chrono>
#include <nlohmann/json_fwd.hpp>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "agent/runtime/runtime.h"
#include "agent/runtime/sandbox_disk.h"
#include "agent/net/sandbox_network.h"

namespace swissbox {

struct RunscOptions {
  std::string runsc = "/usr/bin/runsc";
  std::string root_dir = "/run/swissbox/runsc";  // runsc --root
  std::string state_dir = "/var/lib/swissbox";   // sandboxes/<id>/ live here
  std::string rootfs = "host";                   // "host" or a directory
  std::string init_path;                         // swissbox-init on the host
  std::string platform = "ptrace";
  std::chrono::milliseconds command_timeout{30000};
  Cgroups* cgroups = nullptr;  // not owned; every sandbox gets a cgroup under its parent
  // Every sandbox's /workspace and /tmp live on a disk of its own with a hard size; the
  // disk is made big enough for the largest disk_mb a claim may ask for.
  std::string mkfs;  // mkfs.ext4; empty: SandboxDisk::find_mkfs()
  int64_t max_disk_mb = 20480;
  EgressNetworks* egress = nullptr;  // not owned; null: no sandbox has network
  int64_t egress_default_kbit = 0;   // rate limit of every link both ways; 0: none
};

// The host cgroup limits for a sandbox's limits: the sentry, gofer and platform stubs live
// in the cgroup too, so memory and tasks get headroom over what the code inside may use.
// The code's own limits are enforced inside (the runner's memory guard, RLIMIT_NPROC);
// the host cgroup is the backstop that keeps a runaway sandbox off the node.
CgroupLimits host_cgroup_limits(const Limits& limits, const std::string& platform);

// Builds <state>/rootfs-host: mount points, symlinks mirroring the host's merged /usr, and
// a small generated /etc. Only /usr, /bin, /sbin, /lib*, /etc/alternatives and
// ld.so.cache of the host are visible inside; never /home, /root, /var, /run or secrets.
Result<RootfsLayout> prepare_host_rootfs(const std::string& state_dir);
// A prepared rootfs directory (installer/): checked for the mount points the bundle needs.
Result<RootfsLayout> prepare_dir_rootfs(const std::string& dir);

// The OCI config.json for one sandbox (pure: unit-tested without runsc).
// workspace_dir and tmp_dir are bound in as /workspace and /tmp.
nlohmann::json make_oci_config(const SandboxSpec& spec, const RootfsLayout& rootfs,
                               const std::string& workspace_dir, const std::string& tmp_dir,
                               const std::string& support_dir);

class RunscDriver : public SandboxRuntime {
 public:
  // Checks runsc, prepares the rootfs and the support files; fails with the reason.
  static Result<std::unique_ptr<RunscDriver>> create(RunscOptions opts);
  ~RunscDriver() override;

  Result<RunnerLink> start(const SandboxSpec& spec) override;
  Status destroy(const std::string& id) override;
  // `runsc exec <id> init --bridge`: a process in the sandbox that relays its stdio (our
  // pipes) to the runner's control socket. It lives as long as the channel.
  Result<RunnerLink> reattach(const std::string& id) override;
  // `runsc checkpoint --leave-running` (a checkpoint runsc cannot take leaves the sandbox
  // serving), then its processes end as in destroy(); `runsc restore --detach` with a fresh
  // socket pair as the runner's stdio.
  Result<int64_t> checkpoint(const std::string& id) override;
  Result<RunnerLink> restore(const std::string& id, const Limits& limits) override;
  Result<std::string> workspace(const std::string& tenant, const std::string& name, int64_t size_mb) override;
  Status remove_tenant(const std::string& tenant,
                       std::optional<std::chrono::system_clock::time_point> before) override;
  std::map<std::string, std::vector<std::string>> workspaces() const override;
  // At a stop that leaves no sandbox: the workspaces' mounts go (their images stay; the
  // next agent mounts them at its start).
  void unmount_workspaces();
  Status set_limits(const std::string& id, const Limits& limits) override;
  Result<CgroupUsage> cgroup_usage(const std::string& id) override;
  Result<CgroupUsage> usage(const std::string& id) override;
  std::optional<MemoryFootprint> footprint(const std::string& id) override;
  Result<std::vector<std::string>> list() override;
  std::vector<std::string> remove_orphans() override;
  bool offers_egress() const override { return opts_.egress != nullptr; }
  std::optional<NetworkAddresses> network(const std::string& id) const override;
  Status set_bandwidth(const std::string& id, int64_t kbit) override;
  RootfsLayout node_root() const override { return rootfs_; }
  std::string name() const override { return "runsc"; }
  std::string version() const override { return version_; }
  std::string platform() const override { return opts_.platform; }

 private:
  RunscDriver(RunscOptions opts, std::string mkfs)
      : opts_(std::move(opts)), disk_(std::move(mkfs), opts_.state_dir + "/disk-templates") {}
  // runsc's global flags must be the same on every call for one sandbox: with network it
  // runs gVisor's netstack (--network sandbox), without it none.
  std::vector<std::string> command(std::initializer_list<std::string> args, bool netstack) const;
  bool has_network(const std::string& id) const;
  // The sandbox's network record (its network.json), read once and kept: usage() asks for
  // it every second for every active sandbox. nullopt: no network.
  std::optional<SandboxLink> link(const std::string& id) const;
  std::string sandbox_dir(const std::string& id) const;
  // Ends the sandbox's processes and runsc's records of it (destroy() without the host
  // side); false when that was not possible without `runsc delete --force`.
  bool end_processes(const std::string& id);
  std::string checkpoint_dir(const std::string& id) const { return sandbox_dir(id) + "/checkpoint"; }
  // destroy() without `runsc delete`, once the sandbox's processes are gone.
  bool remove_runsc_records(const std::string& id) const;
  // What the agent made around the sandbox: network, disk, directory, cgroup.
  Status remove_host_side(const std::string& id);
  // `runsc delete --force`: what ends a sandbox when end_processes() cannot; ok when it
  // is gone (or was already).
  Status runsc_delete(const std::string& id);
  // Ends the sandbox's reattach bridge, if it has one.
  void end_bridge(const std::string& id);
  // Kills and reaps a child the driver started and owns (a bridge).
  static void end_process(pid_t pid);

  RunscOptions opts_;
  // The `runsc exec … --bridge` of each reattached sandbox, reaped when it is destroyed.
  std::mutex bridges_mu_;
  std::map<std::string, pid_t> bridges_;
  mutable std::mutex links_mu_;
  std::mutex workspaces_mu_;  // one workspace create or tenant removal at a time
  // The workspaces on the node by tenant, for the node report (read on the I/O thread,
  // which must not wait for a workspace being made).
  mutable std::mutex names_mu_;
  std::map<std::string, std::set<std::string>> workspace_names_;
  // <state>/tenants/<tenant>, when the tenant's name is a plain path component.
  std::optional<std::string> tenant_dir(const std::string& tenant) const;
  mutable std::map<std::string, std::optional<SandboxLink>> links_;
  SandboxDisk disk_;
  RootfsLayout rootfs_;
  std::string support_dir_;
  std::string version_;
};

}  // namespace swissbox
