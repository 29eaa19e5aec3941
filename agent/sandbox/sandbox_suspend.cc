// SandboxManager's suspend and resume (sandbox_manager.h, issue 21): a checkpoint of the
// whole sandbox to the node's disk, its processes ended, and a restore from it later. The
// runner keeps its control channel through both (the restored runner talks on the socket
// `runsc restore` hands it), so its commands, workers and contexts come back as they were.
#include <fmt/format.h>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "agent/sandbox/sandbox_manager.h"
#include "common/log.h"

namespace swissbox {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

}  // namespace

void SandboxManager::suspend(SandboxPtr sb, std::function<void(Status)> done) {
  if (sb->state == SandboxState::kSuspended && !sb->transition) return done(ok_status());
  if (sb->transition) {
    return done(make_error(Code::kConflict, "sandbox " + sb->id + " is being suspended or resumed"));
  }
  if (sb->state != SandboxState::kActive) {
    return done(make_error(Code::kConflict, fmt::format("sandbox {} is {}", sb->id, state_name(sb->state))));
  }
  if (sb->busy > 0) {
    return done(make_error(Code::kConflict, fmt::format("sandbox {} has {} requests in flight; suspend it once "
                                                        "they are answered", sb->id, sb->busy)));
  }
  if (auto refused = over_suspended_quota(sb->tenant)) return done(*refused);
  sb->transition = true;
  auto t0 = Clock::now();
  asio::post(workers_, [this, sb, done = std::move(done), t0] {
    auto bytes = runtime_.checkpoint(sb->id);
    asio::post(ioc_, [this, sb, done, t0, bytes = std::move(bytes)] {
      sb->transition = false;
      if (find(sb->id) != sb) {
        // Deleted while its checkpoint was taken: destroyed now that that is over.
        after_transition_.erase(sb->id);
        destroy_later(sb->id, "deleted while suspending");
        return done(make_error(Code::kNotFound, "sandbox " + sb->id + " was deleted"));
      }
      if (!bytes) {
        log::warn("sandbox not suspended", {{"sandbox", sb->id}, {"error", bytes.error().to_string()}});
        metrics_.add("swissbox_suspends_total", Metrics::labels({{"result", "error"}}));
        // Its runner went away meanwhile: that is a loss, now that no suspend explains it.
        if (sb->channel && !sb->channel->alive()) fail(sb, "lost during a suspend");
        return done(bytes.error());
      }
      sb->state = SandboxState::kSuspended;
      sb->checkpoint_bytes = *bytes;
      sb->suspended_at = std::chrono::system_clock::now();
      if (sb->channel) sb->channel->close("suspended");
      sb->channel = nullptr;
      sb->disk_bytes = sb->usage ? std::max<int64_t>(0, sb->usage->disk_used_bytes) : 0;
      sb->usage.reset();
      sb->billed_at = {};
      if (auto st = save_record(*sb); !st) {
        log::warn("sandbox record not written", {{"sandbox", sb->id}, {"error", st.error().to_string()}});
      }
      double ms = ms_since(t0);
      metrics_.add("swissbox_suspends_total", Metrics::labels({{"result", "ok"}}));
      metrics_.observe("swissbox_suspend_duration_seconds", {}, ms / 1000);
      log::info("sandbox suspended", {{"sandbox", sb->id}, {"ms", ms}, {"checkpoint_bytes", *bytes}});
      update_gauges();
      done(ok_status());
    });
  });
}

void SandboxManager::resume(SandboxPtr sb, std::function<void(Status)> done) {
  if (sb->state == SandboxState::kActive && !sb->transition) return done(ok_status());
  if (sb->state != SandboxState::kSuspended) {
    return done(make_error(Code::kConflict, sb->transition ? "sandbox " + sb->id + " is being suspended"
                                                           : fmt::format("sandbox {} is {}", sb->id,
                                                                         state_name(sb->state))));
  }
  if (!sb->transition) {
    if (auto refused = over_quota(sb->tenant, sb->limits)) return done(*refused);
  }
  sb->resume_waiters.push_back(std::move(done));
  if (sb->transition) return;  // the resume under way answers every waiter
  sb->transition = true;
  auto t0 = Clock::now();
  // Every waiter hears the outcome once the sandbox is active again, failed, or gone.
  auto finish = [this, sb, t0](Status st) {
    sb->transition = false;
    metrics_.add("swissbox_resumes_total", Metrics::labels({{"result", st ? "ok" : "error"}}));
    if (st) {
      metrics_.observe("swissbox_resume_duration_seconds", {}, ms_since(t0) / 1000);
      log::info("sandbox resumed", {{"sandbox", sb->id}, {"ms", ms_since(t0)}});
    }
    for (auto& w : std::exchange(sb->resume_waiters, {})) w(st);
    update_gauges();
  };
  asio::post(workers_, [this, sb, finish, limits = sb->limits, kbit = sb->bandwidth_kbit] {
    auto link = runtime_.restore(sb->id, limits);
    // A sandbox with network: its own rate again (a reboot took it), and its addresses,
    // which are new if its /30 went to another sandbox meanwhile.
    std::optional<SandboxRuntime::NetworkAddresses> addresses;
    if (link && sb->network == NetworkMode::kEgress) {
      if (kbit > 0) {
        if (auto st = runtime_.set_bandwidth(sb->id, kbit); !st) link = st.error();
      }
      addresses = runtime_.network(sb->id);
    }
    asio::post(ioc_, [this, sb, finish, link = std::move(link), addresses]() mutable {
      if (find(sb->id) != sb) {
        // Deleted while it was restored: destroyed now, whatever of it the restore made.
        after_transition_.erase(sb->id);
        destroy_later(sb->id, "deleted while resuming");
        return finish(make_error(Code::kNotFound, "sandbox " + sb->id + " was deleted"));
      }
      if (!link) {
        Error e = link.error();
        sb->transition = false;
        fail(sb, "resume failed: " + e.to_string());
        return finish(Error{e.code, e.sys_errno, "sandbox " + sb->id + " could not be resumed: " + e.message});
      }
      if (addresses) readdress_egress(*sb, *addresses);
      sb->channel = std::make_shared<RunnerChannel>(ioc_, std::move(link->socket));
      sb->channel->start([this, id = sb->id](const std::string& why) { on_lost(id, why); });
      // A runner that does not answer in the start deadline has its channel closed, which
      // ends the ping below as lost.
      auto deadline = std::make_shared<asio::steady_timer>(ioc_, opts_.ready_timeout);
      deadline->async_wait([channel = std::weak_ptr<RunnerChannel>(sb->channel)](boost::system::error_code ec) {
        if (auto ch = channel.lock(); !ec && ch) ch->close("no answer from the resumed runner");
      });
      // The restored runner answers on its new channel: then the sandbox serves again.
      sb->channel->call({{"op", "ping"}}, {}, [this, sb, finish, deadline](const proto::Event& e) {
        deadline->cancel();
        if (e.kind != proto::EventKind::kResult) {
          sb->transition = false;
          fail(sb, "resumed runner did not answer: " + e.message);
          finish(make_error(Code::kUnavailable, "sandbox " + sb->id + " did not come back: " + e.message));
          return true;
        }
        sb->state = SandboxState::kActive;
        sb->billed_at = std::chrono::steady_clock::now();  // billed as running again from here
        sb->checkpoint_bytes = 0;
        sb->suspended_at = {};
        sb->last_used = Clock::now();
        // A sandbox that slept past its end of life gets a whole life again (E2B's timeout
        // starts over on a resume), else the next tick would put it back to sleep.
        auto wall_now = std::chrono::system_clock::now();
        if (sb->end_at.time_since_epoch().count() != 0 && sb->end_at < wall_now + sb->timeout)
          sb->end_at = wall_now + sb->timeout;
        if (auto st = save_record(*sb); !st) {
          log::warn("sandbox record not written", {{"sandbox", sb->id}, {"error", st.error().to_string()}});
        }
        finish(ok_status());
        return true;
      });
    });
  });
}

void SandboxManager::readdress_egress(Sandbox& sb, const SandboxRuntime::NetworkAddresses& now) {
  if (now.sandbox_ip == sb.network_address && now.gateway_ip == sb.network_gateway) return;
  forget_egress(sb);
  std::string old_proxy = fmt::format("http://{}:{}", sb.network_gateway, opts_.egress_proxy_port);
  for (const char* k : {"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"}) {
    if (auto it = sb.env.find(k); it != sb.env.end() && it->second == old_proxy) sb.env.erase(it);
  }
  log::info("sandbox network re-made with new addresses",
            {{"sandbox", sb.id}, {"was", sb.network_address}, {"now", now.sandbox_ip}});
  sb.network_address = now.sandbox_ip;
  sb.network_gateway = now.gateway_ip;
  allow_egress(sb);
}

}  // namespace swissbox
