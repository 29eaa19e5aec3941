#include "agent/sandbox/usage_meter.h"

#include <boost/asio/post.hpp>

namespace swissbox {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

UsageMeter::UsageMeter(asio::io_context& ioc, asio::thread_pool& host_work, SandboxRuntime& runtime,
                       TenantLedger& ledger)
    : ioc_(ioc), runtime_(runtime), ledger_(ledger), host_work_(host_work) {}

void UsageMeter::read(SandboxPtr sb, Still still, std::function<void(std::optional<MemoryFootprint>)> done) {
  asio::post(host_work_, [this, sb = std::move(sb), still = std::move(still), done = std::move(done)]() mutable {
    auto u = runtime_.usage(sb->id);
    auto f = runtime_.footprint(sb->id);
    asio::post(ioc_, [this, sb = std::move(sb), still = std::move(still), u = std::move(u), f,
                      done = std::move(done)] {
      if (u && still(*sb)) apply(*sb, *u);
      done(f);
    });
  });
}

void UsageMeter::footprints(std::map<std::string, std::vector<std::string>> pools,
                            std::function<void(std::map<std::string, MemoryFootprint>)> done) {
  asio::post(host_work_, [this, pools = std::move(pools), done = std::move(done)]() mutable {
    std::map<std::string, MemoryFootprint> out;
    for (const auto& [pool, members] : pools) {
      MemoryFootprint sum;
      int64_t n = 0;
      for (const auto& id : members) {
        auto f = runtime_.footprint(id);
        if (!f) continue;
        sum.pss_bytes += f->pss_bytes;
        sum.rss_bytes += f->rss_bytes;
        ++n;
      }
      if (n > 0) out[pool] = {sum.pss_bytes / n, sum.rss_bytes / n};
    }
    asio::post(ioc_, [out = std::move(out), done = std::move(done)] { done(out); });
  });
}

void UsageMeter::sample(std::vector<SandboxPtr> sandboxes, Still still, std::function<void()> done) {
  if (sampling_) return;
  constexpr size_t kBatch = 16;
  auto left = std::make_shared<size_t>((sandboxes.size() + kBatch - 1) / kBatch);
  if (*left == 0) return done();
  sampling_ = true;
  auto shared_still = std::make_shared<Still>(std::move(still));
  auto shared_done = std::make_shared<std::function<void()>>(std::move(done));
  for (size_t first = 0; first < sandboxes.size(); first += kBatch) {
    std::vector<SandboxPtr> batch(sandboxes.begin() + first,
                                  sandboxes.begin() + std::min(sandboxes.size(), first + kBatch));
    asio::post(host_work_, [this, batch = std::move(batch), left, shared_still, shared_done]() mutable {
      std::vector<std::pair<SandboxPtr, CgroupUsage>> read;
      for (auto& sb : batch) {
        if (auto u = runtime_.usage(sb->id)) read.emplace_back(std::move(sb), std::move(*u));
      }
      asio::post(ioc_, [this, read = std::move(read), left, shared_still, shared_done] {
        for (const auto& [sb, u] : read) {
          if ((*shared_still)(*sb)) apply(*sb, u);
        }
        if (--*left > 0) return;
        sampling_ = false;
        (*shared_done)();
      });
    });
  }
}

void UsageMeter::apply(Sandbox& sb, const CgroupUsage& usage) {
  const CgroupUsage* u = &usage;
  auto now = Clock::now();
  if (sb.state == SandboxState::kActive) {
    // CPU and network are counters: the first reading after a resume or an agent restart
    // has nothing to count from (what came before was counted before); after a claim it
    // counts from the last reading of the warm sandbox.
    const CgroupUsage& before = sb.usage ? *sb.usage : *u;
    if (u->cpu_seconds > before.cpu_seconds) ledger_.add_cpu(sb.tenant, u->cpu_seconds - before.cpu_seconds);
    if (u->net_in_bytes >= 0) {
      ledger_.add_network(sb.tenant, std::max<int64_t>(0, u->net_in_bytes - std::max<int64_t>(before.net_in_bytes, 0)),
                          std::max<int64_t>(0, u->net_out_bytes - std::max<int64_t>(before.net_out_bytes, 0)));
    }
    if (sb.billed_at != Clock::time_point{}) {
      double held = std::chrono::duration<double>(now - sb.billed_at).count();
      ledger_.add_memory(sb.tenant, static_cast<double>(u->memory_bytes), held);
      if (u->disk_used_bytes > 0) ledger_.add_disk(sb.tenant, static_cast<double>(u->disk_used_bytes), held);
    }
    sb.billed_at = now;
  }
  double wall = std::chrono::duration<double>(now - sb.cpu_base_at).count();
  if (sb.cpu_base < 0) {
    sb.cpu_base = u->cpu_seconds;
    sb.cpu_base_at = now;
  } else if (wall >= 0.5) {
    sb.cpu_percent = 100.0 * (u->cpu_seconds - sb.cpu_base) / wall;
    sb.cpu_base = u->cpu_seconds;
    sb.cpu_base_at = now;
  }
  sb.usage = *u;
}

}  // namespace swissbox
