// SandboxManager's starts (sandbox_manager.h): refilling the warm pools (WarmPool decides
// which pool, at most refill_concurrency at once) and one sandbox's start as a sequence of
// steps, for a refill and for a cold start alike.
#include <fmt/format.h>

#include <boost/asio/post.hpp>

#include "agent/sandbox/sandbox_manager.h"
#include "common/log.h"
#include "common/sandbox_id.h"

namespace swissbox {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

void SandboxManager::refill() {
  if (stopping_) return release_stranded_waiters();
  while (pool_.starting_total() < opts_.refill_concurrency && total_sandboxes() < opts_.max_sandboxes) {
    // A pool of an image template that is not ready (yet, or any more) waits.
    std::string tmpl = pool_.emptiest(template_ready);
    if (tmpl.empty()) break;
    pool_.refill_begun(tmpl);
    start_one(tmpl, [this, tmpl = tmpl](Result<SandboxPtr> r) {
      // A create that found the pool empty waits for this start (or, if it failed, starts
      // its own sandbox).
      if (auto waiter = pool_.refill_ended(tmpl)) {
        if (r && !(*r)->channel->alive()) r = make_error(Code::kUnavailable, "the sandbox was lost");
        waiter(std::move(r));
        return refill();
      }
      if (!r) {
        log::warn("warm sandbox failed to start",
                  {{"template", tmpl}, {"error", r.error().to_string()}});
        // Back off a little so a broken runtime does not spin.
        auto t = std::make_shared<asio::steady_timer>(ioc_, std::chrono::seconds(2));
        t->async_wait([this, t](boost::system::error_code) { refill(); });
        return;
      }
      pool_.put(tmpl, *r);
      update_gauges();
      refill();
    });
  }
  release_stranded_waiters();
  update_gauges();
}

// Creates waiting on a pool that no longer refills (target lowered, node full, stopping)
// start their own sandboxes (or get the reason they cannot).
void SandboxManager::release_stranded_waiters() {
  for (auto& w : pool_.stranded(stopping_)) w(make_error(Code::kUnavailable, "the pool stopped refilling"));
}

void SandboxManager::refill_later() {
  if (refill_pending_) return;
  refill_pending_ = true;
  refill_timer_.expires_after(opts_.refill_delay);
  refill_timer_.async_wait([this](boost::system::error_code ec) {
    refill_pending_ = false;
    if (!ec) refill();
  });
}

// One sandbox's start, as a sequence of steps on the I/O thread, each ending it on failure:
//   start_one    the runtime starts it (workers_), then
//   on_started   its runner channel opens and the start deadline is armed,
//   warm_up      the runner answers a ping and runs the warm-up command (each sandbox has
//                its own page cache: without it the claimer's first command pays for
//                loading the loader, libc and the shell through the gofer), or
//   load_worker  for a language pool, its worker loads the runtime (which warms the cache
//                as well),
//   load_contexts  for a template with warm contexts, they start (a context that does not
//                load is left out, the sandbox serves without it), and
//   start_over   it is ready (or failed: destroyed, never handed out).
struct SandboxManager::Starting {
  Starting(asio::io_context& ioc, SandboxPtr s, std::function<void(Result<SandboxPtr>)> r)
      : sb(std::move(s)), ready(std::move(r)), deadline(ioc) {}
  SandboxPtr sb;
  std::function<void(Result<SandboxPtr>)> ready;
  Clock::time_point t0 = Clock::now();
  asio::steady_timer deadline;
  bool over = false;
};

void SandboxManager::start_one(const std::string& pool, std::function<void(Result<SandboxPtr>)> ready,
                               std::string workspace_dir) {
  // Only well-formed keys get here; the template itself may have gone meanwhile (an image
  // template deleted between a create's check and its start), which is answered below.
  PoolKey key = *parse_pool_key(pool, /*any_template=*/true);
  auto tmpl = find_template(key.template_name);
  if (!tmpl) {
    return asio::post(ioc_, [ready = std::move(ready), name = key.template_name] {
      ready(make_error(Code::kNotFound, "template '" + name + "' is not ready on this node"));
    });
  }
  auto sb = std::make_shared<Sandbox>();
  sb->id = new_id();
  sb->template_name = key.template_name;
  sb->network = key.network;
  sb->language = key.language;
  sb->limits = tmpl->limits;
  SandboxSpec spec;
  spec.id = sb->id;
  spec.hostname = "sandbox";
  spec.limits = sb->limits;
  spec.network = key.network;
  spec.workspace_dir = std::move(workspace_dir);
  spec.root = tmpl->root;
  spec.env = sandbox_environment(*tmpl);
  pool_.start_begun(pool);
  starting_ids_.insert(sb->id);
  auto start = std::make_shared<Starting>(ioc_, sb, std::move(ready));
  asio::post(workers_, [this, start, spec] {
    auto link = runtime_.start(spec);
    if (link && spec.network == NetworkMode::kEgress) {
      if (auto addrs = runtime_.network(spec.id)) {
        start->sb->network_address = addrs->sandbox_ip;  // not shared with the I/O thread yet
        start->sb->network_gateway = addrs->gateway_ip;
      }
    }
    asio::post(ioc_, [this, start, link = std::move(link)]() mutable { on_started(start, std::move(link)); });
  });
}

void SandboxManager::on_started(std::shared_ptr<Starting> start, Result<RunnerLink> link) {
  SandboxPtr sb = start->sb;
  if (!link) {
    count_start_end(*start, false);
    return start->ready(link.error());
  }
  sb->channel = std::make_shared<RunnerChannel>(ioc_, std::move(link->socket));
  sb->channel->start([this, id = sb->id](const std::string& why) { on_lost(id, why); });
  start->deadline.expires_after(opts_.ready_timeout);
  start->deadline.async_wait([this, start](boost::system::error_code ec) {
    if (!ec) start_over(start, "runner did not answer within the start deadline");
  });
  unready_[sb->id] = sb;
  sb->channel->call({{"op", "ping"}}, {}, [this, start](const proto::Event& e) {
    if (e.kind != proto::EventKind::kResult) return start_over(start, e.message), true;
    warm_up(start);
    return true;
  });
}

void SandboxManager::warm_up(std::shared_ptr<Starting> start) {
  if (opts_.warmup_argv.empty() || !start->sb->language.empty()) return load_worker(start);
  proto::ExecOp op;
  op.argv = opts_.warmup_argv;
  op.timeout_ms = 10000;
  op.env = template_environment(start->sb->template_name);
  start->sb->channel->call(proto::encode_op(op), {}, [this, start](const proto::Event& e) {
    using proto::EventKind;
    if (e.kind == EventKind::kStdout || e.kind == EventKind::kStderr) return false;
    // A failing warm-up only means a cold cache, not a broken sandbox.
    if (e.kind == EventKind::kLost) return start_over(start, e.message), true;
    load_worker(start);
    return true;
  });
}

void SandboxManager::load_worker(std::shared_ptr<Starting> start) {
  const SandboxPtr& sb = start->sb;
  if (sb->language.empty()) return load_contexts(start, 0);
  sb->channel->call(proto::encode_op(proto::PrepareOp{{sb->language}, template_environment(sb->template_name)}), {},
                    [this, start](const proto::Event& e) {
                      if (e.kind == proto::EventKind::kResult && e.ok) return load_contexts(start, 0), true;
                      start_over(start, fmt::format("{} worker: {}", start->sb->language, e.message));
                      return true;
                    });
}

void SandboxManager::load_contexts(std::shared_ptr<Starting> start, size_t i) {
  const SandboxPtr& sb = start->sb;
  auto tmpl = find_template(sb->template_name);
  const auto languages = tmpl ? tmpl->warm_contexts : std::vector<std::string>{};
  if (i == languages.size()) return start_over(start, "");
  proto::ContextStartOp op;
  op.context = "default-" + languages[i];
  op.language = languages[i];
  op.env = tmpl ? template_environment(*tmpl) : base_environment();
  op.pids_limit = sb->limits.pids;
  sb->channel->call(proto::encode_op(op), {}, [this, start, i, op](const proto::Event& e) {
    if (e.kind == proto::EventKind::kLost) return start_over(start, e.message), true;
    if (e.kind == proto::EventKind::kResult && e.ok) {
      start->sb->contexts[op.context] = {op.language, ""};
    } else {
      log::warn("warm context not started", {{"sandbox", start->sb->id}, {"language", op.language},
                                              {"error", e.message}});
    }
    load_contexts(start, i + 1);
    return true;
  });
}

void SandboxManager::start_over(std::shared_ptr<Starting> start, std::string err) {
  if (std::exchange(start->over, true)) return;
  SandboxPtr sb = start->sb;
  start->deadline.cancel();
  unready_.erase(sb->id);
  if (!err.empty() || stopping_) {
    sb->channel->close("not ready");
    // Queued before the start is counted over: a shutdown waiting for the last start must
    // also wait for this destroy.
    destroy_later(sb->id, err.empty() ? "agent stopping" : err);
    count_start_end(*start, err.empty());
    return start->ready(make_error(Code::kUnavailable, err.empty() ? "agent stopping" : err));
  }
  count_start_end(*start, true);
  sb->runner_secret = sb->channel->runner_secret();
  sb->created_at = std::chrono::system_clock::now();
  sb->last_used = Clock::now();
  sandboxes_[sb->id] = sb;
  log::info("sandbox ready",
            {{"sandbox", sb->id},
             {"template", sb->template_name},
             {"ms", std::chrono::duration<double, std::milli>(Clock::now() - start->t0).count()}});
  start->ready(sb);
}

void SandboxManager::count_start_end(const Starting& start, bool ok) {
  const SandboxPtr& sb = start.sb;
  starting_ids_.erase(sb->id);
  pool_.start_ended(sb->pool());
  metrics_.add("swissbox_sandbox_starts_total", Metrics::labels({{"result", ok ? "ok" : "error"}}));
  if (ok) {
    metrics_.observe("swissbox_sandbox_start_duration_seconds", Metrics::labels({{"pool", sb->pool()}}),
                     std::chrono::duration<double>(Clock::now() - start.t0).count());
  }
  check_all_destroyed();
}

}  // namespace swissbox
