// Placement at scale (issue #5): 1,000 simulated nodes, one core. Reports the mean (Google
// Benchmark's own figure), p99 and placements per second.
//   build/bin/swissbox-placement-bench --benchmark_min_time=2
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>

#include "scheduler/placement.h"

namespace {

using namespace swissbox::sched;

std::vector<NodeState> simulated_nodes(int count, std::mt19937_64& rng) {
  const char* regions[] = {"ch-gva-2", "ch-dk-2", "de-fra-1"};
  std::vector<NodeState> nodes(count);
  std::uniform_int_distribution<int> active(0, 180), warm(0, 10);
  for (int i = 0; i < count; ++i) {
    NodeState& n = nodes[i];
    n.name = "node-" + std::to_string(i);
    n.region = regions[i % 3];
    n.capacity = 200;
    n.active = active(rng);
    n.warm = {{"default", warm(rng)}, {"lightweight", warm(rng)}, {"heavy", warm(rng)}};
    n.draining = i % 50 == 0;
    n.reported_at = Clock::now();
  }
  return nodes;
}

void BM_Place(benchmark::State& state) {
  std::mt19937_64 rng(7);
  auto nodes = simulated_nodes(static_cast<int>(state.range(0)), rng);
  PlacementPolicy policy;
  policy.stale_after = std::chrono::hours(1);  // the reports stay fresh for the whole run
  PlacementRequest req;
  NoPlacement why;
  std::vector<double> us;
  us.reserve(1 << 20);
  for (auto _ : state) {
    auto t0 = std::chrono::steady_clock::now();
    auto c = place(nodes, req, policy, Clock::now(), rng, &why);
    us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0)
                     .count());
    // Placements between reports raise in-flight counts, as in the scheduler.
    if (!c.empty() && ++nodes[c[0]].inflight > 20) nodes[c[0]].inflight = 0;
    benchmark::DoNotOptimize(c);
  }
  std::sort(us.begin(), us.end());
  state.counters["p50_us"] = us[us.size() / 2];
  state.counters["p99_us"] = us[us.size() * 99 / 100];
  state.counters["placements_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Place)->Arg(10)->Arg(100)->Arg(1000)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
