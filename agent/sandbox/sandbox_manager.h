// SandboxManager owns every sandbox of the node: the warm pools (refilled in the background
// with bounded concurrency, health-checked), claims (no runsc call: pop, record, answer),
// cold starts when a pool is empty, idle expiry, and deletion (runsc work in the
// background). All state lives on the I/O thread; runtime calls run on the worker pool.
// Its code: sandbox_manager.cc (creates, claims, loss, shutdown), sandbox_start.cc
// (refills and a start's steps), sandbox_upkeep.cc (tick, health, GC, destroys); the
// pools' bookkeeping is WarmPool (warm_pool.h).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "agent/sandbox/exec_gate.h"
#include "agent/sandbox/sandbox.h"
#include "agent/sandbox/usage_meter.h"
#include "agent/sandbox/warm_pool.h"
#include "agent/sandbox/runner_channel.h"
#include "agent/runtime/runtime.h"
#include "agent/runtime/sandbox_spec.h"
#include "common/quota.h"
#include "agent/sandbox/tenant_ledger.h"
#include "common/limits.h"
#include "common/metrics.h"

namespace swissbox {

class EgressProxy;

struct ManagerOptions {
  std::string node_name = "node";
  std::map<std::string, int> pool_targets = {{"default", 2}};  // at start; then the pool's
  int max_sandboxes = 32;
  int refill_concurrency = 4;
  // Commands that start at once; the rest queue (ExecGate). 0: no gate.
  int exec_slots = 0;
  std::chrono::milliseconds exec_slot_hold{50};
  std::chrono::milliseconds ready_timeout = limits::kReadyTimeout;
  std::chrono::seconds health_interval{10};
  std::chrono::seconds failed_retention{600};
  // How often the runtime's sandboxes (containers, directories, cgroups) are compared with
  // the agent's and the unexplained ones removed.
  std::chrono::seconds gc_interval{60};
  // A claim's replacement starts this much later: a runsc start takes both cores of a small
  // node for ≈ 200 ms, and the claimer's first command should not compete with it.
  std::chrono::milliseconds refill_delay{100};
  // The agent's own guard above a command's timeout, and the deadline of a file request:
  // past them a request answers deadline_exceeded even if the runner never does.
  std::chrono::milliseconds exec_grace = limits::kExecGrace;
  std::chrono::milliseconds file_op_deadline = limits::kFileOpDeadline;
  // Run once in every new sandbox before it counts as ready (empty: none).
  std::vector<std::string> warmup_argv = {"/bin/bash", "-c", "/bin/true"};
  // Where active sandboxes' records live (empty: nothing survives a restart).
  std::string records_dir;
  // Where sandboxes with network get out (null: the runtime offers no network); its port,
  // for the proxy variables every command of such a sandbox sees.
  EgressProxy* egress_proxy = nullptr;
  uint16_t egress_proxy_port = 3128;
  // A template's allowlist, for requests that bring none; a tenant's ceiling, which every
  // host its sandboxes reach must match too.
  std::map<std::string, std::vector<std::string>> egress_template_allow, egress_tenant_allow;
  // Tenants' quotas on this node (from the token file); a tenant without one is unlimited.
  std::map<std::string, Quota> quotas;
  // Where each tenant's usage is kept across restarts (empty: not kept).
  std::string ledger_path;
  // A workspace's size when its tenant's quota sets none.
  int64_t workspace_mb = 1024;
};

class RecordStore;

class SandboxManager {
 public:
  using SandboxPtr = std::shared_ptr<Sandbox>;
  using CreateFn = std::function<void(Result<SandboxPtr>, bool warm)>;

  SandboxManager(boost::asio::io_context& ioc, boost::asio::thread_pool& workers,
                 SandboxRuntime& runtime, ManagerOptions opts, Metrics& metrics);
  ~SandboxManager();

  // Takes back the active sandboxes an earlier agent process left (their records and
  // running runtime sandboxes), removes everything else the runtime holds, then fills the
  // pools. done(error) once that is over.
  void start(std::function<void(Status)> done);
  // Stops refilling and destroys every sandbox, except active ones when keep_active (an
  // agent update: the next agent process adopts them); done() when the rest are gone.
  void shutdown(bool keep_active, std::function<void()> done);

  void create(const CreateRequest& req, std::string tenant, nlohmann::json metadata, CreateFn fn);
  // nullptr when unknown.
  SandboxPtr find(const std::string& id) const;
  std::vector<SandboxPtr> list(const std::string& tenant) const;  // empty tenant = all
  // Forgets the sandbox now; the runtime clean-up runs in the background.
  Status remove(const std::string& id, const std::string& why);

  std::map<std::string, PoolStatus> pool_status() const;
  // Per pool, the mean memory footprint of its ready sandboxes (pools with none are left
  // out), read on the host-work threads; done on the I/O thread.
  void warm_footprints(std::function<void(std::map<std::string, MemoryFootprint>)> done);
  // pool: a pool key ("default", "default:egress", "default+python").
  Status set_pool_target(const std::string& pool, int target);
  bool pools_warm() const;
  int active_count() const;
  // A draining node takes no new sandboxes (creates answer 409); the ones it has go on.
  void set_draining(bool on);
  bool draining() const { return draining_; }
  int deleting_count() const { return static_cast<int>(destroying_.size()); }
  int capacity() const { return opts_.max_sandboxes; }
  const std::string& node_name() const { return opts_.node_name; }
  SandboxRuntime& runtime() { return runtime_; }
  boost::asio::io_context& io() { return ioc_; }
  const ManagerOptions& options() const { return opts_; }
  // Whether sandboxes of the template may reach the internet here: the node offers egress
  // and its egress policy lists hosts for the template.
  bool offers_internet(const std::string& template_name) const;
  ExecGate& exec_gate() { return exec_gate_; }
  Metrics& metrics() { return metrics_; }
  // Reads the sandbox's host usage (into sb.usage) and memory footprint on the host-work
  // threads; done(footprint) on the I/O thread.
  void read_usage(SandboxPtr sb, std::function<void(std::optional<MemoryFootprint>)> done);
  // Tells the egress proxy what an active sandbox with network may reach, and its commands
  // where the proxy is.
  void allow_egress(Sandbox& sb);
  // The sandbox is gone or failed: the proxy refuses its address from now on.
  void forget_egress(const Sandbox& sb);
  // Brings the gauges (sandboxes by state, pools, exec slots) up to date, e.g. for a scrape.
  void update_gauges();
  // The tenants' usage counters (swissbox_tenant_*_total) from the ledger: for a scrape.
  void publish_tenant_usage();
  // Marks a request in flight on the sandbox (no expiry meanwhile) and refreshes last_used.
  void touch(Sandbox& sb, int delta);
  // Suspend (issue 21): checkpoints an active sandbox with no request in flight to the
  // node's disk and ends its processes (sandbox_suspend.cc); done(ok) once it is
  // suspended, else the reason it still runs.
  void suspend(SandboxPtr sb, std::function<void(Status)> done);
  // Resume: restores a suspended sandbox; done(ok) once its runner answers (at once for an
  // active one). Callers that come during a resume wait for it. A sandbox that cannot be
  // restored is failed with the reason.
  void resume(SandboxPtr sb, std::function<void(Status)> done);
  // Deletes every sandbox of the tenant (running, suspended, failed, mid-resume) with its
  // checkpoint, disk and record, its workspaces and its usage, and records the delete;
  // done(count) once they are gone from the node's disk. With `before` (a delete finished
  // late on a node that was away), only what was made before then.
  void delete_tenant(const std::string& tenant, std::optional<std::chrono::system_clock::time_point> before,
                     std::function<void(int)> done);
  // Sandboxes made from the template that are not warm (active, suspended, being made);
  // and the template's warm pools emptied (its template is being deleted).
  int sandboxes_of_template(const std::string& name) const;
  void drop_pools_of(const std::string& name);
  // A template became ready (or went): its pools refill. Whether a pool's template is
  // offered now (pools of image templates wait for theirs; readiness does not count them).
  void templates_changed();
  static bool template_ready(const std::string& pool);
  // Tenants deleted here in the last 30 days, and when (unix seconds).
  const std::map<std::string, double>& deleted_tenants() const { return ledger_.deleted(); }
  // What the tenant holds here: its sandboxes by state and the claims under way; and the
  // same for every tenant with something here, in one pass.
  TenantLoad load_of(const std::string& tenant) const;
  std::map<std::string, TenantLoad> tenant_loads() const;
  // Every tenant the node knows: with sandboxes, usage or a quota here.
  std::set<std::string> tenants() const;
  // The tenant's usage on this node, for its bill; and an execution to count in it.
  TenantUsage tenant_usage(const std::string& tenant) const { return ledger_.usage(tenant); }
  void count_execution(const std::string& tenant) { ledger_.count_execution(tenant); }
  // Writes an active sandbox's record again (its contexts changed).
  Status save_record(const Sandbox& sb);
  // A package build's sandbox (agent/sandbox/package_build.h), which the manager does not
  // serve: its garbage collection leaves it alone while it is held. Thread-safe.
  void hold_for_build(const std::string& id, bool held);

 private:
  std::string new_id();
  int total_sandboxes() const;
  void refill();
  void refill_later();
  void release_stranded_waiters();
  // Starts one sandbox of the pool; ready(sandbox) runs once its runner answers, has warmed
  // up and (language pools) loaded its worker. The steps, in order (sandbox_start.cc):
  struct Starting;
  void start_one(const std::string& pool, std::function<void(Result<SandboxPtr>)> ready,
                 std::string workspace_dir = "");
  void on_started(std::shared_ptr<Starting> start, Result<RunnerLink> link);
  void warm_up(std::shared_ptr<Starting> start);
  void load_worker(std::shared_ptr<Starting> start);
  void load_contexts(std::shared_ptr<Starting> start, size_t i);
  void start_over(std::shared_ptr<Starting> start, std::string err);  // err "": ready
  void count_start_end(const Starting& start, bool ok);
  // What a create asks of the sandbox it gets, kept until the claim is over.
  struct ClaimTerms {
    CreateRequest req;
    std::string tenant;
    nlohmann::json metadata;
    std::chrono::steady_clock::time_point started;
  };
  // Makes a ready sandbox, out of its pool, the tenant's; fn(sandbox or error, warm).
  void claim(SandboxPtr sb, bool warm, std::shared_ptr<const ClaimTerms> terms, CreateFn fn);
  // A sandbox started for this create (workspace_dir: a workspace bound in), then claimed.
  void cold_start(std::shared_ptr<const ClaimTerms> terms, CreateFn fn, std::string workspace_dir = "");
  void start_with_workspace(std::shared_ptr<const ClaimTerms> terms, CreateFn fn);
  // 409 when another sandbox of the tenant has (or is getting) the workspace.
  std::optional<Error> workspace_in_use(const std::string& tenant, const std::string& workspace) const;
  void finish_claim(SandboxPtr sb, bool warm, std::shared_ptr<const ClaimTerms> terms,
                    Status host_work, CreateFn fn);
  // The refusal when one more running (or suspended) sandbox would pass its quota.
  std::optional<Error> over_quota(const std::string& tenant, const Limits& limits) const;
  std::optional<Error> over_suspended_quota(const std::string& tenant) const;
  void on_lost(const std::string& id, const std::string& reason);
  // The sandbox is failed with the reason (the host's limits named when its cgroup tells)
  // and destroyed in the background.
  void fail(const SandboxPtr& sb, const std::string& reason);
  void sample_all_usage();
  // Serves a sandbox of an earlier agent process again, over reattached runner pipes.
  void adopt(Sandbox record, RunnerLink link);
  void retire(const std::string& id, const std::string& why);
  // After a restore that re-made the network with other addresses: the proxy's entry and
  // the proxy variables follow them.
  void readdress_egress(Sandbox& sb, const SandboxRuntime::NetworkAddresses& now);
  void destroy_later(const std::string& id, const std::string& why);
  // done(ids.size()) once none of ids is being destroyed (or past the deadline).
  void poll_until_destroyed(std::vector<std::string> ids, std::shared_ptr<boost::asio::steady_timer> poll,
                            std::chrono::steady_clock::time_point deadline, std::function<void(int)> done);
  void check_all_destroyed();
  void tick();
  void health_check();
  void collect_garbage();
  void ping(const SandboxPtr& sb);

  boost::asio::io_context& ioc_;
  boost::asio::thread_pool& workers_;
  // Deletes get threads of their own, so a burst of them never holds up the starts that
  // refill the pools. `runsc delete --force` takes ≈ 1.5 s but almost no CPU (it waits for
  // the sandbox to go), so several run at once.
  boost::asio::thread_pool destroy_workers_{8};
  // Short host work that must not run on the I/O thread: a claim's limits (cgroup writes,
  // the disk reservation's fallocate) and bandwidth (netlink), and the usage readings of
  // meter_. Never a runsc call: starts queue on workers_, so a claim never waits behind one.
  boost::asio::thread_pool host_work_{2};
  TenantLedger ledger_;
  UsageMeter meter_;
  SandboxRuntime& runtime_;
  ManagerOptions opts_;
  Metrics& metrics_;
  std::map<std::string, SandboxPtr> sandboxes_;
  std::map<std::string, TenantLoad> claiming_;  // by tenant: creates not answered yet
  std::set<std::pair<std::string, std::string>> workspaces_claimed_;  // tenant, workspace
  WarmPool pool_;  // ready sandboxes, starts and waiting creates per pool
  // Sandboxes whose runner is up but not yet ready; shutdown closes their channels rather
  // than waiting out the start deadline.
  std::map<std::string, SandboxPtr> unready_;
  std::set<std::string> destroying_;
  // Deleted while a suspend or resume ran on a worker: destroyed when it is over.
  std::set<std::string> after_transition_;
  std::unique_ptr<RecordStore> records_;
  bool stopping_ = false;
  bool draining_ = false;
  std::function<void()> on_all_destroyed_;
  boost::asio::steady_timer tick_timer_;
  boost::asio::steady_timer refill_timer_;
  bool refill_pending_ = false;
  std::chrono::steady_clock::time_point next_health_;
  std::chrono::steady_clock::time_point last_tick_, next_ledger_save_;
  std::chrono::steady_clock::time_point next_gc_;
  bool gc_running_ = false;
  std::set<std::string> starting_ids_;  // made by start_one, not yet ready or failed
  std::set<std::string> build_ids_;     // hold_for_build
  ExecGate exec_gate_;
};

}  // namespace swissbox
