// SandboxManager (sandbox_manager.h): taking back an earlier agent's sandboxes, creates
// and claims, removal and loss, egress, records, shutdown and the pools' settings. Its
// starts are sandbox_start.cc, its upkeep (tick, health, garbage collection, destroys)
// sandbox_upkeep.cc, the pools' bookkeeping WarmPool.
#include "agent/sandbox/sandbox_manager.h"

#include <fmt/format.h>

#include <boost/asio/post.hpp>
#include <future>

#include "agent/net/egress_proxy.h"
#include "agent/sandbox/sandbox_records.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/sandbox_id.h"

namespace swissbox {

namespace asio = boost::asio;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// How many creates may queue per refill start when their pools are empty (see create()).
constexpr int kMaxWaitersPerStart = 4;

SandboxManager::SandboxManager(asio::io_context& ioc, asio::thread_pool& workers,
                               SandboxRuntime& runtime, ManagerOptions opts, Metrics& metrics)
    : ioc_(ioc),
      workers_(workers),
      ledger_(opts.ledger_path),
      meter_(ioc, host_work_, runtime, ledger_),
      runtime_(runtime),
      opts_(std::move(opts)),
      metrics_(metrics),
      pool_(opts_.pool_targets),
      tick_timer_(ioc),
      refill_timer_(ioc),
      exec_gate_(ioc, opts_.exec_slots, opts_.exec_slot_hold) {
  if (!opts_.records_dir.empty()) records_ = std::make_unique<RecordStore>(opts_.records_dir);
  using T = Metrics::Type;
  metrics_.describe("swissbox_sandboxes", T::kGauge, "Sandboxes on this node by state.");
  metrics_.describe("swissbox_pool_target", T::kGauge, "Warm pool target per template.");
  metrics_.describe("swissbox_pool_ready", T::kGauge, "Warm sandboxes ready to claim.");
  metrics_.describe("swissbox_pool_starting", T::kGauge, "Warm sandboxes being started.");
  metrics_.describe("swissbox_claims_total", T::kCounter, "Sandbox creations, warm or cold.");
  metrics_.describe("swissbox_sandbox_starts_total", T::kCounter,
                    "runsc sandbox starts by result.");
  metrics_.describe("swissbox_sandbox_start_duration_seconds", T::kHistogram,
                    "Time to make a sandbox ready (runsc create + start, runner answer, warm-up, "
                    "language worker loaded), by pool.");
  metrics_.describe("swissbox_claim_duration_seconds", T::kHistogram,
                    "Time from a create request to a sandbox claimed for it, by template and "
                    "whether it came warm from a pool.");
  metrics_.describe("swissbox_cold_starts_total", T::kCounter,
                    "Creates that found their pool empty and started a sandbox, by pool.");
  metrics_.describe("swissbox_pool_active", T::kGauge, "Claimed sandboxes that came from each pool.");
  metrics_.describe("swissbox_claim_waits_total", T::kCounter,
                    "Creates that found their pools empty and took a sandbox that was already "
                    "starting for the pool, by pool.");
  metrics_.describe("swissbox_exec_queue_seconds", T::kHistogram,
                    "Time a command waited for one of the node's exec slots.");
  metrics_.describe("swissbox_exec_slots", T::kGauge, "Commands that may start at once (0: no limit).");
  metrics_.describe("swissbox_exec_slots_in_use", T::kGauge, "Exec slots held by starting commands.");
  metrics_.describe("swissbox_exec_queued", T::kGauge, "Commands waiting for an exec slot.");
  metrics_.describe("swissbox_sandbox_failures_total", T::kCounter,
                    "Sandboxes lost while warm or active, by state.");
  metrics_.describe("swissbox_sandbox_limit_failures_total", T::kCounter,
                    "Sandboxes ended by a host limit they hit (oom, tasks).");
  metrics_.describe("swissbox_sandboxes_adopted_total", T::kCounter,
                    "Active sandboxes of an earlier agent process served again after a restart.");
  metrics_.describe("swissbox_gc_bad_records_total", T::kCounter,
                    "Unreadable sandbox records found and removed at start.");
  metrics_.describe("swissbox_sandbox_destroys_total", T::kCounter, "Sandbox removals by result.");
  metrics_.describe("swissbox_tenant_cpu_seconds_total", T::kCounter,
                    "Host CPU time of claimed sandboxes (sentry, gofer, code) per tenant.");
  // Base units for Prometheus; the usage API answers GB-seconds and GB-hours.
  metrics_.describe("swissbox_tenant_memory_byte_seconds_total", T::kCounter,
                    "Host memory of claimed sandboxes over time per tenant (bytes x seconds).");
  metrics_.describe("swissbox_tenant_disk_byte_seconds_total", T::kCounter,
                    "Disk used by a tenant's sandboxes and checkpoints over time (bytes x seconds).");
  metrics_.describe("swissbox_tenant_network_bytes_total", T::kCounter,
                    "Bytes a tenant's sandboxes received (in) and sent (out).");
  metrics_.describe("swissbox_tenant_sandboxes_created_total", T::kCounter, "Sandboxes created per tenant.");
  metrics_.describe("swissbox_tenant_executions_total", T::kCounter, "Runs (exec, code, one-shot) per tenant.");
  metrics_.describe("swissbox_node_draining", T::kGauge, "1 while the node takes no new sandboxes.");
  metrics_.describe("swissbox_sandboxes_disk_bytes", T::kGauge,
                    "Bytes the sandboxes' files use on their disks.");
  metrics_.describe("swissbox_sandboxes_memory_bytes", T::kGauge,
                    "Host memory charged to the cgroups of all sandboxes of this node.");
  metrics_.describe("swissbox_health_check_failures_total", T::kCounter,
                    "Runner pings that got no answer in time, by sandbox state.");
  metrics_.describe("swissbox_gc_removed_total", T::kCounter,
                    "Leftover sandboxes of an earlier run removed at start.");
  metrics_.describe("swissbox_suspends_total", T::kCounter, "Sandbox suspends (checkpoints) by result.");
  metrics_.describe("swissbox_quota_refusals_total", T::kCounter,
                    "Requests refused because a tenant was at a quota (429).");
  metrics_.describe("swissbox_resumes_total", T::kCounter, "Sandbox resumes (restores) by result.");
  metrics_.describe("swissbox_suspend_duration_seconds", T::kHistogram,
                    "Time to checkpoint a sandbox and end its processes.");
  metrics_.describe("swissbox_resume_duration_seconds", T::kHistogram,
                    "Time to restore a sandbox until its runner answers.");
}

SandboxManager::~SandboxManager() {
  host_work_.join();
  destroy_workers_.join();
}

std::string SandboxManager::new_id() { return new_sandbox_id(opts_.node_name); }

void SandboxManager::hold_for_build(const std::string& id, bool held) {
  // On the I/O thread, in order: a hold posted before its sandbox starts is in place before
  // a garbage collection that lists the sandbox compares.
  asio::post(ioc_, [this, id, held] {
    if (held) {
      build_ids_.insert(id);
    } else {
      build_ids_.erase(id);
    }
  });
}

void SandboxManager::start(std::function<void(Status)> done) {
  if (records_) {
    if (auto st = records_->open(); !st) return done(st.error());
  }
  if (!opts_.ledger_path.empty()) {
    std::string dir = opts_.ledger_path.substr(0, opts_.ledger_path.rfind('/'));
    if (auto st = fs::make_dirs(dir, 0700); !st) return done(st.error());
  }
  if (auto st = ledger_.load(); !st) {
    // A bill that cannot be read is kept aside for an operator, not served from zero silently.
    std::string aside = opts_.ledger_path + ".unreadable";
    log::error("tenant usage unreadable: kept aside, counting from zero",
               {{"error", st.error().to_string()}, {"kept_as", aside}});
    (void)rename(opts_.ledger_path.c_str(), aside.c_str());
  }
  asio::post(workers_, [this, done = std::move(done)] {
    auto ids = runtime_.list();
    if (!ids) {
      asio::post(ioc_, [done, e = ids.error()] { done(e); });
      return;
    }
    // An active sandbox with a record and a running runtime sandbox is taken back; every
    // other thing the runtime holds (warm sandboxes, half-made or half-deleted ones) is
    // garbage from the earlier run and is removed before serving.
    std::set<std::string> leftover(ids->begin(), ids->end());
    std::vector<std::pair<Sandbox, RunnerLink>> adopted;
    std::vector<Sandbox> suspended;
    int bad = 0;
    for (Sandbox& rec : records_ ? records_->load(&bad) : std::vector<Sandbox>{}) {
      if (!leftover.count(rec.id)) {
        log::warn("sandbox of the earlier run is gone", {{"sandbox", rec.id}});
        (void)records_->remove(rec.id);
        continue;
      }
      if (rec.state == SandboxState::kSuspended) {
        // No process to reattach to: its checkpoint waits on the disk for a resume.
        leftover.erase(rec.id);
        suspended.push_back(std::move(rec));
        continue;
      }
      auto link = runtime_.reattach(rec.id);
      if (!link) {
        log::warn("sandbox of the earlier run could not be reattached",
                  {{"sandbox", rec.id}, {"error", link.error().to_string()}});
        (void)records_->remove(rec.id);
        continue;
      }
      leftover.erase(rec.id);
      adopted.emplace_back(std::move(rec), std::move(*link));
    }
    // In parallel on the delete threads: a crash amid a burst of deletes can leave dozens,
    // at ≈ 1.5 s each.
    std::vector<std::future<void>> removals;
    for (const auto& id : leftover) {
      std::packaged_task<void()> remove([this, id] {
        auto st = runtime_.destroy(id);
        log::info("gc removed leftover sandbox", {{"sandbox", id}, {"ok", st.ok()}});
        metrics_.add("swissbox_gc_removed_total");
      });
      removals.push_back(remove.get_future());
      asio::post(destroy_workers_, std::move(remove));
    }
    for (auto& r : removals) r.wait();
    if (bad > 0) metrics_.add("swissbox_gc_bad_records_total", {}, bad);
    asio::post(ioc_, [this, done, adopted = std::move(adopted), suspended = std::move(suspended)]() mutable {
      for (auto& [rec, link] : adopted) adopt(std::move(rec), std::move(link));
      for (auto& rec : suspended) {
        auto sb = std::make_shared<Sandbox>(std::move(rec));
        sb->last_used = Clock::now();
        log::info("suspended sandbox of the earlier run kept", {{"sandbox", sb->id}, {"tenant", sb->tenant}});
        allow_egress(*sb);  // its allowlist waits for it at the proxy
        sandboxes_[sb->id] = std::move(sb);
      }
      next_health_ = Clock::now() + opts_.health_interval;
      next_gc_ = Clock::now() + opts_.gc_interval;
      refill();
      tick();
      done(ok_status());
    });
  });
}

int SandboxManager::total_sandboxes() const {
  int live = 0;
  for (const auto& [id, sb] : sandboxes_) live += sb->state != SandboxState::kFailed;
  return live + pool_.starting_total();
}

void SandboxManager::adopt(Sandbox record, RunnerLink link) {
  auto sb = std::make_shared<Sandbox>(std::move(record));
  sb->last_used = Clock::now();
  sb->channel = std::make_shared<RunnerChannel>(ioc_, std::move(link.socket));
  sb->channel->start([this, id = sb->id](const std::string& why) { on_lost(id, why); });
  sandboxes_[sb->id] = sb;
  allow_egress(*sb);
  metrics_.add("swissbox_sandboxes_adopted_total");
  log::info("sandbox of the earlier run adopted", {{"sandbox", sb->id}, {"tenant", sb->tenant}});
  // The bridge's first frame proves to the runner that the agent is on the other end.
  sb->channel->notify({{"op", "attach"}, {"secret", sb->runner_secret}});
  // The bridge answers or the channel dies and on_lost fails the sandbox with the reason.
  sb->channel->call({{"op", "ping"}}, {}, [](const proto::Event&) { return true; });
}

void SandboxManager::create(const CreateRequest& req, std::string tenant, json metadata,
                            CreateFn fn) {
  if (stopping_) return fn(make_error(Code::kUnavailable, "the agent is shutting down"), false);
  if (draining_) {
    return fn(make_error(Code::kConflict,
                         fmt::format("node {} is draining: it takes no new sandboxes", opts_.node_name)),
              false);
  }
  if (req.network == NetworkMode::kEgress && !(runtime_.offers_egress() && opts_.egress_proxy)) {
    return fn(make_error(Code::kInvalidArgument,
                         fmt::format("node {} offers no network to sandboxes (network \"none\" only)",
                                     opts_.node_name)),
              false);
  }
  if (auto refused = over_quota(tenant, req.limits)) return fn(*refused, false);
  if (auto busy = workspace_in_use(tenant, req.workspace)) return fn(*busy, false);
  // Counted against the quota from now until the create is answered: concurrent creates
  // each see the others.
  claiming_[tenant].add_running(req.limits.cpu, req.limits.memory_mb);
  if (!req.workspace.empty()) workspaces_claimed_.insert({tenant, req.workspace});
  fn = [this, tenant, limits = req.limits, workspace = req.workspace, fn = std::move(fn),
        answered = std::make_shared<bool>(false)](Result<SandboxPtr> r, bool warm) {
    if (!std::exchange(*answered, true)) {
      TenantLoad& load = claiming_[tenant];
      load.add_running(limits.cpu, limits.memory_mb, -1);
      if (load.running == 0) claiming_.erase(tenant);
      workspaces_claimed_.erase({tenant, workspace});
    }
    fn(std::move(r), warm);
  };
  auto terms = std::make_shared<ClaimTerms>(ClaimTerms{req, std::move(tenant), std::move(metadata), Clock::now()});
  // A workspace is bound when runsc starts the sandbox: never a warm one.
  if (!req.workspace.empty()) return start_with_workspace(std::move(terms), std::move(fn));
  // A one-shot's language pool first (its worker is loaded), then the plain pool.
  std::vector<std::string> pools = {pool_key(req.template_name, req.network)};
  if (!req.language.empty()) pools.insert(pools.begin(), pool_key(req.template_name, req.network, req.language));
  for (const auto& key : pools) {
    if (SandboxPtr sb = pool_.take(key)) {
      claim(sb, true, terms, std::move(fn));
      return refill_later();
    }
  }
  auto cold_start = [this, terms, fn] { this->cold_start(terms, fn); };
  // The pools are empty but refilling: the create takes the next sandbox the refill makes
  // ready. A start under way ends sooner than a cold start begun now, and a burst queues
  // behind the refill instead of adding starts that slow every start on the node's cores
  // (measured: one-shots at 9/s for 30 s on two cores drained the pool, then made 182 cold
  // starts and a p99 of 5.6 s; queued, none, p99 2.9 s). Past kMaxWaitersPerStart waiting
  // creates per concurrent refill start (per pool), a create cold-starts.
  const size_t max_waiting = kMaxWaitersPerStart * opts_.refill_concurrency;
  for (const auto& key : pools) {
    auto waiter = [this, terms, fn, cold_start](Result<SandboxPtr> r) {
      if (!r) return cold_start();
      claim(*r, true, terms, fn);
    };
    if (!pool_.wait_for_refill(key, std::move(waiter), max_waiting)) continue;
    metrics_.add("swissbox_claim_waits_total", Metrics::labels({{"pool", key}}));
    return;
  }
  cold_start();
}

// Cold start: the same path as a refill, claimed as soon as the runner answers.
void SandboxManager::cold_start(std::shared_ptr<const ClaimTerms> terms, CreateFn fn, std::string workspace_dir) {
  if (stopping_) return fn(make_error(Code::kUnavailable, "the agent is shutting down"), false);
  if (total_sandboxes() >= opts_.max_sandboxes) {
    return fn(make_error(Code::kResourceExhausted,
                         fmt::format("node {} is at its limit of {} sandboxes", opts_.node_name, opts_.max_sandboxes)),
              false);
  }
  std::string key = pool_key(terms->req.template_name, terms->req.network);
  metrics_.add("swissbox_cold_starts_total", Metrics::labels({{"pool", key}}));
  start_one(
      key,
      [this, terms, fn](Result<SandboxPtr> r) {
        if (!r) return fn(r.error(), false);
        claim(*r, false, terms, fn);
      },
      std::move(workspace_dir));
  refill();
}

std::optional<Error> SandboxManager::workspace_in_use(const std::string& tenant, const std::string& workspace) const {
  if (workspace.empty()) return std::nullopt;
  if (workspaces_claimed_.count({tenant, workspace})) {
    return make_error(Code::kConflict, "workspace " + workspace + " is being mounted for another sandbox");
  }
  for (const auto& [id, sb] : sandboxes_) {
    if (sb->tenant == tenant && sb->workspace == workspace && sb->state != SandboxState::kFailed) {
      return make_error(Code::kConflict, fmt::format("workspace {} is in use by sandbox {}", workspace, id));
    }
  }
  return std::nullopt;
}

// The tenant's workspace made (or mounted) on a worker, then a cold start that binds it.
void SandboxManager::start_with_workspace(std::shared_ptr<const ClaimTerms> terms, CreateFn fn) {
  int64_t size_mb = opts_.workspace_mb;
  if (auto q = opts_.quotas.find(terms->tenant); q != opts_.quotas.end() && q->second.workspace_mb)
    size_mb = *q->second.workspace_mb;
  asio::post(workers_, [this, terms, fn = std::move(fn), size_mb]() mutable {
    auto dir = runtime_.workspace(terms->tenant, terms->req.workspace, size_mb);
    asio::post(ioc_, [this, terms, fn = std::move(fn), dir = std::move(dir)]() mutable {
      if (!dir) return fn(dir.error(), false);
      cold_start(terms, std::move(fn), *dir);
    });
  });
}

// The host side of a claim — limits other than the pool's (cgroup writes, and the disk
// reservation's fallocate), a bandwidth other than the node's default (netlink in the
// sandbox's namespace) — runs on the host-work threads; the sandbox stays out of every pool
// and hidden meanwhile (still warm: lost meanwhile, it is retired as a warm one), and is the
// tenant's once that work is done and its record written.
void SandboxManager::claim(SandboxPtr sb, bool warm, std::shared_ptr<const ClaimTerms> terms,
                           CreateFn fn) {
  const CreateRequest& req = terms->req;
  bool limits = sb->limits != req.limits, bandwidth = sb->bandwidth_kbit != req.bandwidth_kbit;
  if (!limits && !bandwidth) return finish_claim(std::move(sb), warm, std::move(terms), ok_status(), std::move(fn));
  asio::post(host_work_, [this, sb, warm, terms, fn = std::move(fn), limits, bandwidth]() mutable {
    const char* step = "limits";
    Status st = limits ? runtime_.set_limits(sb->id, terms->req.limits) : ok_status();
    if (st && bandwidth) step = "bandwidth", st = runtime_.set_bandwidth(sb->id, terms->req.bandwidth_kbit);
    if (!st) {
      const Error& e = st.error();
      st = Error{e.code, e.sys_errno, fmt::format("{} could not be applied: {}", step, e.message)};
    }
    asio::post(ioc_, [this, sb = std::move(sb), warm, terms = std::move(terms), st = std::move(st),
                      fn = std::move(fn)]() mutable {
      finish_claim(std::move(sb), warm, std::move(terms), std::move(st), std::move(fn));
    });
  });
}

void SandboxManager::finish_claim(SandboxPtr sb, bool warm, std::shared_ptr<const ClaimTerms> terms,
                                  Status host_work, CreateFn fn) {
  const CreateRequest& req = terms->req;
  if (stopping_) return fn(make_error(Code::kUnavailable, "the agent is shutting down"), false);
  if (find(sb->id) != sb || !sb->channel->alive()) {
    return fn(make_error(Code::kUnavailable,
                         fmt::format("sandbox {} was lost while it was being claimed: {}", sb->id,
                                     sb->failure.empty() ? "its runner went away" : sb->failure)),
              false);
  }
  if (!host_work) {
    retire(sb->id, host_work.error().to_string());
    return fn(host_work.error(), false);
  }
  sb->state = SandboxState::kActive;
  sb->billed_at = std::chrono::steady_clock::now();  // the tenant's from the claim on
  sb->tenant = terms->tenant;
  sb->limits = req.limits;
  sb->bandwidth_kbit = req.bandwidth_kbit;
  sb->workspace = req.workspace;
  sb->env = req.env;
  sb->egress_allowlist = req.egress_allowlist;
  if (auto t = opts_.egress_template_allow.find(req.template_name);
      req.egress_allowlist.empty() && t != opts_.egress_template_allow.end()) {
    sb->egress_allowlist = t->second;
  }
  allow_egress(*sb);
  sb->timeout = req.timeout;
  sb->on_idle = req.on_idle;
  sb->retention = req.retention;
  sb->metadata = terms->metadata.is_object() ? terms->metadata : json::object();
  sb->from_pool = warm;
  sb->created_at = std::chrono::system_clock::now();
  if (req.lifetime.count() > 0) sb->end_at = sb->created_at + req.lifetime;
  sb->client_template = req.client_template;
  sb->access_token = random_hex(16);
  sb->last_used = Clock::now();
  // On disk before the API answers: a crash from here on leaves a sandbox to take back.
  if (records_) {
    if (auto st = records_->save(*sb); !st) {
      retire(sb->id, "its record could not be written: " + st.error().to_string());
      return fn(st.error(), false);
    }
  }
  auto labels = Metrics::labels({{"template", req.template_name}, {"warm", warm ? "true" : "false"}});
  metrics_.add("swissbox_claims_total", labels);
  metrics_.observe("swissbox_claim_duration_seconds", labels,
                   std::chrono::duration<double>(Clock::now() - terms->started).count());
  ledger_.count_created(sb->tenant);
  log::info("sandbox claimed", {{"sandbox", sb->id}, {"tenant", sb->tenant}, {"warm", warm}});
  update_gauges();
  fn(std::move(sb), warm);
}

SandboxManager::SandboxPtr SandboxManager::find(const std::string& id) const {
  auto it = sandboxes_.find(id);
  return it == sandboxes_.end() ? nullptr : it->second;
}

std::vector<SandboxManager::SandboxPtr> SandboxManager::list(const std::string& tenant) const {
  std::vector<SandboxPtr> out;
  for (const auto& [id, sb] : sandboxes_) {
    if (sb->state == SandboxState::kWarm) continue;
    if (tenant.empty() || sb->tenant == tenant) out.push_back(sb);
  }
  return out;
}

void SandboxManager::read_usage(SandboxPtr sb, std::function<void(std::optional<MemoryFootprint>)> done) {
  meter_.read(std::move(sb), [this](const Sandbox& s) { return find(s.id).get() == &s; }, std::move(done));
}

void SandboxManager::warm_footprints(std::function<void(std::map<std::string, MemoryFootprint>)> done) {
  meter_.footprints(pool_.ready_ids(), std::move(done));
}

void SandboxManager::allow_egress(Sandbox& sb) {
  if (sb.network != NetworkMode::kEgress || sb.network_address.empty() || !opts_.egress_proxy) return;
  std::optional<std::vector<std::string>> ceiling;
  if (auto t = opts_.egress_tenant_allow.find(sb.tenant); t != opts_.egress_tenant_allow.end())
    ceiling = t->second;
  opts_.egress_proxy->allow(sb.network_address, sb.id, sb.egress_allowlist, std::move(ceiling));
  // Every command finds the way out in the variables curl, pip, npm and requests read;
  // the request's own env wins.
  std::string proxy = fmt::format("http://{}:{}", sb.network_gateway, opts_.egress_proxy_port);
  for (const char* k : {"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"}) sb.env.try_emplace(k, proxy);
  sb.env.try_emplace("NO_PROXY", "localhost,127.0.0.1");
  sb.env.try_emplace("no_proxy", "localhost,127.0.0.1");
}

void SandboxManager::forget_egress(const Sandbox& sb) {
  if (!sb.network_address.empty() && opts_.egress_proxy) opts_.egress_proxy->forget(sb.network_address);
}

Status SandboxManager::save_record(const Sandbox& sb) {
  return records_ ? records_->save(sb) : ok_status();
}

void SandboxManager::touch(Sandbox& sb, int delta) {
  sb.busy += delta;
  sb.last_used = Clock::now();
}

Status SandboxManager::remove(const std::string& id, const std::string& why) {
  auto it = sandboxes_.find(id);
  if (it == sandboxes_.end()) return make_error(Code::kNotFound, "sandbox " + id + " not found");
  SandboxPtr sb = it->second;
  sandboxes_.erase(it);
  pool_.erase(sb);
  forget_egress(*sb);
  bool failed = sb->state == SandboxState::kFailed;
  if (sb->channel) sb->channel->close("sandbox deleted");
  if (sb->transition) {
    // Its checkpoint or restore runs on a worker: it is destroyed once that is over
    // (sandbox_suspend.cc), not under its feet. Its record goes now.
    if (records_) (void)records_->remove(id);
    after_transition_.insert(id);
  } else if (!failed) {
    destroy_later(id, why);  // a failed sandbox was destroyed when it failed
  }
  update_gauges();
  refill();
  return ok_status();
}

void SandboxManager::delete_tenant(const std::string& tenant, std::optional<std::chrono::system_clock::time_point> before,
                                   std::function<void(int)> done) {
  std::vector<std::string> ids;
  for (const auto& [id, sb] : sandboxes_) {
    if (sb->tenant == tenant && (!before || sb->created_at < *before)) ids.push_back(id);
  }
  for (const auto& id : ids) retire(id, "tenant " + tenant + " deleted");
  const auto when = before.value_or(std::chrono::system_clock::now());
  ledger_.forget(tenant, std::chrono::duration<double>(when.time_since_epoch()).count());
  if (auto st = ledger_.save(); !st) log::warn("tenant usage not saved", {{"error", st.error().to_string()}});
  log::info("tenant deleted", {{"tenant", tenant}, {"sandboxes", ids.size()}});
  // Answered once every one of them is gone from the node's disk too, and its workspaces.
  auto poll = std::make_shared<asio::steady_timer>(ioc_);
  poll_until_destroyed(std::move(ids), std::move(poll), Clock::now() + std::chrono::seconds(120),
                       [this, tenant, before, done = std::move(done)](int n) {
                         asio::post(workers_, [this, tenant, before, done, n] {
                           auto st = runtime_.remove_tenant(tenant, before);
                           if (!st)
                             log::error("tenant's workspaces not removed",
                                        {{"tenant", tenant}, {"error", st.error().to_string()}});
                           asio::post(ioc_, [done, n] { done(n); });
                         });
                       });
}

void SandboxManager::poll_until_destroyed(std::vector<std::string> ids, std::shared_ptr<asio::steady_timer> poll,
                                          Clock::time_point deadline, std::function<void(int)> done) {
  bool pending = false;
  for (const auto& id : ids) pending = pending || destroying_.count(id) || after_transition_.count(id);
  if (!pending || Clock::now() > deadline) return done(static_cast<int>(ids.size()));
  poll->expires_after(std::chrono::milliseconds(50));
  poll->async_wait([this, ids = std::move(ids), poll, deadline, done = std::move(done)](boost::system::error_code) mutable {
    poll_until_destroyed(std::move(ids), std::move(poll), deadline, std::move(done));
  });
}

std::set<std::string> SandboxManager::tenants() const {
  std::set<std::string> out;
  for (const auto& [id, sb] : sandboxes_) {
    if (!sb->tenant.empty() && sb->state != SandboxState::kWarm) out.insert(sb->tenant);
  }
  for (const auto& [tenant, u] : ledger_.all()) out.insert(tenant);
  for (const auto& [tenant, q] : opts_.quotas) out.insert(tenant);
  return out;
}

namespace {

// What one sandbox counts for its tenant's load.
void count_load(const Sandbox& sb, TenantLoad& load) {
  // One being resumed runs already as far as its quota goes.
  bool resuming = sb.state == SandboxState::kSuspended && sb.transition;
  if (sb.state == SandboxState::kActive || resuming) load.add_running(sb.limits.cpu, sb.limits.memory_mb);
  if (sb.state == SandboxState::kSuspended && !resuming) load.suspended++;
}

}  // namespace

TenantLoad SandboxManager::load_of(const std::string& tenant) const {
  TenantLoad load;
  if (auto c = claiming_.find(tenant); c != claiming_.end()) load = c->second;
  for (const auto& [id, sb] : sandboxes_) {
    if (sb->tenant == tenant) count_load(*sb, load);
  }
  return load;
}

std::map<std::string, TenantLoad> SandboxManager::tenant_loads() const {
  std::map<std::string, TenantLoad> out = claiming_;
  for (const auto& [id, sb] : sandboxes_) {
    if (sb->state != SandboxState::kWarm) count_load(*sb, out[sb->tenant]);
  }
  return out;
}

std::optional<Error> SandboxManager::over_quota(const std::string& tenant, const Limits& limits) const {
  auto q = opts_.quotas.find(tenant);
  if (q == opts_.quotas.end()) return std::nullopt;
  auto refused = check_running(tenant, q->second, load_of(tenant), limits.cpu, limits.memory_mb);
  if (refused) metrics_.add("swissbox_quota_refusals_total");
  return refused;
}

std::optional<Error> SandboxManager::over_suspended_quota(const std::string& tenant) const {
  auto q = opts_.quotas.find(tenant);
  if (q == opts_.quotas.end()) return std::nullopt;
  auto refused = check_suspended(tenant, q->second, load_of(tenant));
  if (refused) metrics_.add("swissbox_quota_refusals_total");
  return refused;
}

void SandboxManager::retire(const std::string& id, const std::string& why) {
  // Internal removals: the sandbox may already be gone, which is fine.
  (void)remove(id, why);
}

void SandboxManager::on_lost(const std::string& id, const std::string& reason) {
  auto sb = find(id);
  if (!sb) return;  // deleted by us
  // A suspend ends the sandbox's processes, and a resume that fails says why itself.
  if (sb->transition || sb->state == SandboxState::kSuspended) return;
  fail(sb, reason);
}

void SandboxManager::fail(const SandboxPtr& sb, const std::string& reason) {
  const std::string& id = sb->id;
  metrics_.add("swissbox_sandbox_failures_total",
               Metrics::labels({{"state", state_name(sb->state)}}));
  log::warn("sandbox lost",
            {{"sandbox", id}, {"state", state_name(sb->state)}, {"reason", reason}});
  if (sb->state == SandboxState::kWarm) {
    retire(id, "lost while warm: " + reason);
    return;
  }
  sb->state = SandboxState::kFailed;
  sb->failure = reason;
  forget_egress(*sb);
  // When the host's limits end a sandbox (an OOM kill of the sentry, a sentry that cannot
  // make threads) the runner's pipe closing is all that is seen: the cgroup tells why. Read
  // here, before anyone can ask (a rare path, and a few small files).
  if (auto u = runtime_.cgroup_usage(id)) sb->usage = *u;
  if (sb->usage && sb->usage->oom_kills > 0) {
    sb->failure_limit = HostLimit::kMemory;
    sb->failure = fmt::format(
        "out of memory: the sandbox went over its memory limit of {} MiB faster than its "
        "guard could stop it and the host killed it ({})",
        sb->limits.memory_mb, reason);
  } else if (sb->usage && sb->usage->pids_limit_hits > 0) {
    sb->failure_limit = HostLimit::kTasks;
    sb->failure = fmt::format(
        "task limit: the sandbox's processes (pids {}) made the runtime exceed its host task "
        "limit and it stopped ({})",
        sb->limits.pids, reason);
  }
  if (sb->failure_limit != HostLimit::kNone) {
    metrics_.add("swissbox_sandbox_limit_failures_total",
                 Metrics::labels({{"limit", limit_name(sb->failure_limit)}}));
  }
  sb->last_used = Clock::now();
  destroy_later(id, reason);
  update_gauges();
}

void SandboxManager::set_draining(bool on) {
  if (draining_ != on) log::info(on ? "draining" : "undrained", {{"node", opts_.node_name}});
  draining_ = on;
  metrics_.set("swissbox_node_draining", {}, on ? 1 : 0);
}

void SandboxManager::shutdown(bool keep_active, std::function<void()> done) {
  stopping_ = true;
  if (auto st = ledger_.save(); !st) log::error("tenant usage not saved", {{"error", st.error().to_string()}});
  tick_timer_.cancel();
  refill_timer_.cancel();
  release_stranded_waiters();
  std::vector<std::string> ids;
  for (const auto& [id, sb] : sandboxes_) ids.push_back(id);
  for (const auto& id : ids) {
    SandboxPtr sb = sandboxes_.at(id);
    bool kept = sb->state == SandboxState::kActive || sb->state == SandboxState::kSuspended;
    if (keep_active && kept && !sb->transition) {
      // Left running with its record for the next agent process; forgotten first, so that
      // closing its channel is not taken for a lost sandbox.
      sandboxes_.erase(id);
      if (sb->channel) sb->channel->close("agent stopping; the sandbox stays for the next agent");
      log::info("sandbox left for the next agent", {{"sandbox", id}});
      continue;
    }
    retire(id, "agent shutdown");
  }
  // Closing fails the readiness call, whose handler queues the destroy.
  auto unready = unready_;
  for (const auto& [id, sb] : unready) sb->channel->close("agent stopping");
  if (destroying_.empty() && pool_.starting_total() == 0) return done();
  on_all_destroyed_ = std::move(done);
}

std::map<std::string, PoolStatus> SandboxManager::pool_status() const {
  std::set<std::string> pools;
  for (const auto& name : template_names()) {
    pools.insert(name);
    if (runtime_.offers_egress() && opts_.egress_proxy) pools.insert(pool_key(name, NetworkMode::kEgress));
  }
  for (const auto& [name, target] : pool_.targets()) pools.insert(name);  // language pools
  auto out = pool_.status(pools);
  for (const auto& [id, sb] : sandboxes_) {
    if (sb->state == SandboxState::kActive) out[sb->pool()].active++;
  }
  return out;
}

Status SandboxManager::set_pool_target(const std::string& tmpl, int target) {
  auto key = parse_pool_key(tmpl);
  if (!key) return make_error(Code::kNotFound, "unknown pool '" + tmpl + "'");
  if (key->network == NetworkMode::kEgress && !(runtime_.offers_egress() && opts_.egress_proxy))
    return make_error(Code::kInvalidArgument, "this node offers no network to sandboxes");
  if (target < 0 || target > opts_.max_sandboxes) {
    return make_error(Code::kInvalidArgument,
                      fmt::format("target must be between 0 and {}", opts_.max_sandboxes));
  }
  // Shrinking retires the surplus warm sandboxes.
  for (const auto& sb : pool_.set_target(tmpl, target)) retire(sb->id, "pool target lowered");
  refill();
  return ok_status();
}

int SandboxManager::sandboxes_of_template(const std::string& name) const {
  int n = 0;
  for (const auto& [id, sb] : sandboxes_) n += sb->template_name == name && sb->state != SandboxState::kWarm;
  return n;
}

void SandboxManager::drop_pools_of(const std::string& name) {
  std::vector<std::string> keys;
  for (const auto& [key, target] : pool_.targets()) {
    auto k = parse_pool_key(key, /*any_template=*/true);
    if (k && k->template_name == name) keys.push_back(key);
  }
  for (const auto& key : keys) {
    for (const auto& sb : pool_.set_target(key, 0)) retire(sb->id, "template deleted");
  }
}

bool SandboxManager::pools_warm() const { return pool_.warm(template_ready); }

bool SandboxManager::template_ready(const std::string& pool) {
  return parse_pool_key(pool).has_value();  // without any_template: its template is looked up
}

void SandboxManager::templates_changed() { refill(); }

int SandboxManager::active_count() const {
  int n = 0;
  for (const auto& [id, sb] : sandboxes_) n += sb->state == SandboxState::kActive;
  return n;
}

bool SandboxManager::offers_internet(const std::string& template_name) const {
  auto policy = opts_.egress_template_allow.find(template_name);
  return runtime_.offers_egress() && opts_.egress_proxy && policy != opts_.egress_template_allow.end() &&
         !policy->second.empty();
}

}  // namespace swissbox
