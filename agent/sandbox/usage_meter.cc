#include "agent/sandbox/usage_meter.h"

#include <boost/asio/post.hpp>

namespace swissbox {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

UsageMeter::UsageMeter(asio::io_context& ioc, asio::thread_pool& host_work, SandboxRuntime& runtime,
                       Metrics& metrics)
    : ioc_(ioc), runtime_(runtime), metrics_(metrics), host_work_(host_work) {}

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
  double before = sb.usage ? sb.usage->cpu_seconds : u->cpu_seconds;
  if (sb.state == SandboxState::kActive && u->cpu_seconds > before) {
    metrics_.add("swissbox_tenant_cpu_seconds_total", Metrics::labels({{"tenant", sb.tenant}}),
                 u->cpu_seconds - before);
  }
  if (sb.state == SandboxState::kActive && u->net_in_bytes >= 0) {
    auto add = [&](const char* direction, int64_t now_bytes, int64_t before_bytes) {
      if (now_bytes > before_bytes)
        metrics_.add("swissbox_tenant_network_bytes_total",
                     Metrics::labels({{"tenant", sb.tenant}, {"direction", direction}}),
                     static_cast<double>(now_bytes - before_bytes));
    };
    // Counted from the claim on: a warm sandbox's own traffic (none) is nobody's.
    int64_t in0 = sb.usage ? std::max<int64_t>(sb.usage->net_in_bytes, 0) : u->net_in_bytes;
    int64_t out0 = sb.usage ? std::max<int64_t>(sb.usage->net_out_bytes, 0) : u->net_out_bytes;
    add("in", u->net_in_bytes, in0);
    add("out", u->net_out_bytes, out0);
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
