// SandboxManager's upkeep (sandbox_manager.h): the once-a-second tick (idle and
// end-of-life suspends or expiry, suspended and failed sandboxes' retention, usage samples), health pings, garbage
// collection of what the runtime holds that the agent does not explain, destroys in the
// background, and the gauges.
#include <fmt/format.h>
#include <sys/resource.h>
#include <unistd.h>

#include <boost/asio/post.hpp>

#include "agent/sandbox/sandbox_manager.h"
#include "agent/sandbox/sandbox_records.h"
#include "common/log.h"

namespace swissbox {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

// Teardown yields to serving: a destroy worker runs at nice 10, and so do the runsc
// processes it starts (a child takes its thread's nice value), so that on a busy CPU
// refills and commands come first. Nice 10 still gets ≈ 10 % of a contended CPU.
void lower_this_threads_priority() {
  thread_local bool lowered = false;
  if (!std::exchange(lowered, true)) setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 10);
}

}  // namespace

namespace {

// A sandbox whose host usage changes: warm or active (a suspended one has no process).
bool running(const Sandbox& sb) {
  return sb.state == SandboxState::kWarm || sb.state == SandboxState::kActive;
}

}  // namespace

// Every running sandbox's usage; the node's totals once all of it is in.
void SandboxManager::sample_all_usage() {
  std::vector<SandboxPtr> live;
  for (const auto& [id, sb] : sandboxes_) {
    if (running(*sb)) live.push_back(sb);
  }
  meter_.sample(
      std::move(live), [this](const Sandbox& s) { return find(s.id).get() == &s && running(s); },
      [this] {
        int64_t memory = 0, disk = 0;
        for (const auto& [id, sb] : sandboxes_) {
          if (!running(*sb) || !sb->usage) continue;
          memory += sb->usage->memory_bytes;
          disk += std::max<int64_t>(0, sb->usage->disk_used_bytes);
        }
        metrics_.set("swissbox_sandboxes_memory_bytes", {}, static_cast<double>(memory));
        metrics_.set("swissbox_sandboxes_disk_bytes", {}, static_cast<double>(disk));
      });
}

void SandboxManager::destroy_later(const std::string& id, const std::string& why) {
  // Gone from disk before anyone hears of the removal: a crash from here on must not
  // bring the sandbox back.
  if (records_) {
    if (auto st = records_->remove(id); !st)
      log::error("sandbox record not removed", {{"sandbox", id}, {"error", st.error().to_string()}});
  }
  destroying_.insert(id);
  asio::post(destroy_workers_, [this, id, why] {
    lower_this_threads_priority();
    auto st = runtime_.destroy(id);
    if (!st)
      log::error("sandbox destroy failed", {{"sandbox", id}, {"error", st.error().to_string()}});
    else
      log::info("sandbox destroyed", {{"sandbox", id}, {"why", why}});
    metrics_.add("swissbox_sandbox_destroys_total",
                 Metrics::labels({{"result", st.ok() ? "ok" : "error"}}));
    asio::post(ioc_, [this, id] {
      destroying_.erase(id);
      check_all_destroyed();
    });
  });
}

void SandboxManager::check_all_destroyed() {
  // Shutdown is over when no start is in flight and no destroy is pending.
  if (destroying_.empty() && after_transition_.empty() && pool_.starting_total() == 0 && on_all_destroyed_) {
    std::exchange(on_all_destroyed_, nullptr)();
  }
}

void SandboxManager::tick() {
  if (stopping_) return;
  auto now = Clock::now();
  auto wall_now = std::chrono::system_clock::now();
  std::vector<std::pair<std::string, std::string>> ended;  // id, why
  std::vector<SandboxPtr> to_sleep;
  // A suspended sandbox's checkpoint and disk are on the node's disk: billed as held.
  double since_tick = last_tick_ == Clock::time_point{} ? 0 : std::chrono::duration<double>(now - last_tick_).count();
  last_tick_ = now;
  for (const auto& [id, sb] : sandboxes_) {
    if (sb->state == SandboxState::kSuspended && since_tick > 0)
      ledger_.add_disk(sb->tenant, static_cast<double>(sb->checkpoint_bytes + sb->disk_bytes), since_tick);
  }
  if (now >= next_ledger_save_) {
    next_ledger_save_ = now + std::chrono::seconds(5);
    if (auto st = ledger_.save(); !st) log::warn("tenant usage not saved", {{"error", st.error().to_string()}});
  }
  for (const auto& [id, sb] : sandboxes_) {
    if (sb->transition) continue;
    bool idle = sb->busy == 0 && now - sb->last_used > sb->timeout;
    bool over = sb->end_at.time_since_epoch().count() != 0 && wall_now >= sb->end_at;
    if (sb->state == SandboxState::kActive && (idle || over)) {
      // A sandbox goes to sleep between requests only; one past its end of life but busy
      // sleeps once its requests are answered.
      if (sb->on_idle == OnIdle::kDelete) {
        ended.emplace_back(id, over ? "end of life" : "idle timeout");
      } else if (sb->busy == 0) {
        to_sleep.push_back(sb);
      }
    }
    if (sb->state == SandboxState::kSuspended && wall_now - sb->suspended_at > sb->retention) {
      ended.emplace_back(id, "suspended longer than its retention");
    }
    if (sb->state == SandboxState::kFailed && now - sb->last_used > opts_.failed_retention) {
      ended.emplace_back(id, "failed record retention over");
    }
  }
  for (const auto& [id, why] : ended) {
    log::info("sandbox expired", {{"sandbox", id}, {"why", why}});
    retire(id, why);
  }
  for (const auto& sb : to_sleep) {
    log::info("sandbox idle: suspending", {{"sandbox", sb->id}});
    suspend(sb, [this, sb](Status st) {
      if (st || find(sb->id) != sb || sb->state != SandboxState::kActive || sb->transition) return;
      // It cannot sleep (a checkpoint that failed): it ends as an idle sandbox without
      // on_idle suspend would, rather than holding its memory for ever.
      log::warn("idle sandbox could not be suspended: deleting it",
                {{"sandbox", sb->id}, {"error", st.error().to_string()}});
      retire(sb->id, "idle and could not be suspended: " + st.error().to_string());
    });
  }
  sample_all_usage();
  if (now >= next_gc_) {
    next_gc_ = now + opts_.gc_interval;
    collect_garbage();
  }
  if (now >= next_health_) {
    next_health_ = now + opts_.health_interval;
    health_check();
  }
  tick_timer_.expires_after(std::chrono::seconds(1));
  tick_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) tick();
  });
}

// The runtime lists everything it holds; what the agent neither serves, starts nor deletes
// is left from a failure the agent did not see (a destroy that failed, a crash mid-start).
void SandboxManager::collect_garbage() {
  if (gc_running_ || stopping_) return;
  gc_running_ = true;
  asio::post(workers_, [this] {
    auto ids = runtime_.list();
    for (const auto& what : runtime_.remove_orphans()) {
      log::warn("gc: removed a network link no sandbox explains", {{"link", what}});
      metrics_.add("swissbox_gc_removed_total");
    }
    asio::post(ioc_, [this, ids = std::move(ids)]() mutable {
      gc_running_ = false;
      if (stopping_) return;
      if (!ids) {
        log::warn("gc: listing the runtime failed", {{"error", ids.error().to_string()}});
        return;
      }
      for (const auto& id : *ids) {
        if (sandboxes_.count(id) || destroying_.count(id) || starting_ids_.count(id) || build_ids_.count(id)) continue;
        log::warn("gc: removing a sandbox the agent does not know", {{"sandbox", id}});
        metrics_.add("swissbox_gc_removed_total");
        destroy_later(id, "garbage collection");
      }
    });
  });
}

// Every warm and active sandbox's runner is pinged; a warm one that misses is replaced at
// once, an active one is failed after three misses in a row (a long burst of output can
// delay one answer, a hung runner misses them all).
void SandboxManager::health_check() {
  for (const auto& [id, sb] : sandboxes_) {
    if (running(*sb) && !sb->transition && sb->channel) ping(sb);
  }
}

void SandboxManager::ping(const SandboxPtr& sb) {
  static constexpr int kMissesToFail = 3;
  auto answered = std::make_shared<bool>(false);
  auto timer = std::make_shared<asio::steady_timer>(ioc_, std::chrono::seconds(5));
  timer->async_wait([this, sb, answered](boost::system::error_code ec) {
    if (ec || *answered || find(sb->id) != sb) return;
    sb->health_misses++;
    sb->health_failures_total++;
    metrics_.add("swissbox_health_check_failures_total",
                 Metrics::labels({{"state", state_name(sb->state)}}));
    log::warn("sandbox missed a health check",
              {{"sandbox", sb->id}, {"state", state_name(sb->state)}, {"misses", sb->health_misses}});
    if (sb->state == SandboxState::kWarm) {
      retire(sb->id, "health check timed out");
    } else if (sb->state == SandboxState::kActive && sb->health_misses >= kMissesToFail) {
      sb->channel->close(fmt::format("the runner missed {} health checks", kMissesToFail));
    }
  });
  sb->channel->call({{"op", "ping"}}, {}, [sb, answered, timer](const proto::Event& e) {
    *answered = true;
    timer->cancel();
    if (e.kind == proto::EventKind::kResult) sb->health_misses = 0;
    return true;
  });
}

void SandboxManager::update_gauges() {
  std::map<std::string_view, int> by_state{{"warm", 0}, {"active", 0}, {"failed", 0}, {"suspended", 0}};
  for (const auto& [id, sb] : sandboxes_) by_state[state_name(sb->state)]++;
  for (const auto& [s, n] : by_state)
    metrics_.set("swissbox_sandboxes", Metrics::labels({{"state", s}}), n);
  for (const auto& [name, p] : pool_status()) {
    auto l = Metrics::labels({{"template", name}});
    metrics_.set("swissbox_pool_target", l, p.target);
    metrics_.set("swissbox_pool_ready", l, p.ready);
    metrics_.set("swissbox_pool_starting", l, p.starting);
    metrics_.set("swissbox_pool_active", l, p.active);
  }
  metrics_.set("swissbox_exec_slots", {}, opts_.exec_slots);
  metrics_.set("swissbox_exec_slots_in_use", {}, exec_gate_.in_use());
  metrics_.set("swissbox_exec_queued", {}, exec_gate_.queued());
}

void SandboxManager::publish_tenant_usage() {
  for (const auto& [tenant, u] : ledger_.all()) {
    auto l = Metrics::labels({{"tenant", tenant}});
    metrics_.set("swissbox_tenant_cpu_seconds_total", l, u.cpu_seconds);
    metrics_.set("swissbox_tenant_memory_byte_seconds_total", l, u.memory_gb_seconds * 1e9);
    metrics_.set("swissbox_tenant_disk_byte_seconds_total", l, u.disk_gb_hours * 1e9 * 3600);
    metrics_.set("swissbox_tenant_network_bytes_total", Metrics::labels({{"tenant", tenant}, {"direction", "in"}}),
                 static_cast<double>(u.net_in_bytes));
    metrics_.set("swissbox_tenant_network_bytes_total", Metrics::labels({{"tenant", tenant}, {"direction", "out"}}),
                 static_cast<double>(u.net_out_bytes));
    metrics_.set("swissbox_tenant_sandboxes_created_total", l, static_cast<double>(u.sandboxes_created));
    metrics_.set("swissbox_tenant_executions_total", l, static_cast<double>(u.executions));
  }
}

}  // namespace swissbox
