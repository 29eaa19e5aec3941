// A simulated day for the scheduler's placement (issue #5): 100k tasks over 24 h on 10
// nodes, with bursts that take the platform to 10,000 concurrent sessions, placed by two
// scheduler replicas that each see node reports once a second and count only their own
// placements in between. Reports the max/mean load ratio across nodes.
//   build/bin/swissbox-schedsim [--nodes 10] [--tasks 100000] [--burst 10000] [--seed 1]
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <queue>
#include <random>
#include <string>
#include <vector>

#include "scheduler/placement.h"

using namespace swissbox::sched;

namespace {

struct Options {
  int nodes = 10;
  int tasks = 100000;
  int burst = 10000;       // sessions that start in each burst
  int bursts = 2;          // at 10:00 and 15:00
  int capacity = 1500;     // sandboxes per node
  double base_mean_s = 120;   // the day's ordinary tool calls
  double burst_mean_s = 900;  // burst sessions last longer
  uint64_t seed = 1;
};

struct Task {
  double start, duration;
};

std::vector<Task> make_day(const Options& o, std::mt19937_64& rng) {
  std::vector<Task> tasks;
  int base = o.tasks - o.burst * o.bursts;
  // Ordinary arrivals follow the working day: density ∝ 0.2 + sin² over 06:00–22:00.
  std::uniform_real_distribution<double> u(0, 1);
  std::exponential_distribution<double> base_len(1.0 / o.base_mean_s), burst_len(1.0 / o.burst_mean_s);
  while (static_cast<int>(tasks.size()) < base) {
    double t = u(rng) * 86400;
    double day = (t > 6 * 3600 && t < 22 * 3600) ? std::pow(std::sin((t - 6 * 3600) / (16 * 3600.0) * M_PI), 2) : 0;
    if (u(rng) < 0.2 + 0.8 * day) tasks.push_back({t, base_len(rng)});
  }
  for (int b = 0; b < o.bursts; ++b) {
    double at = (10 + 5 * b) * 3600.0;
    for (int i = 0; i < o.burst; ++i) tasks.push_back({at + u(rng) * 20, burst_len(rng)});
  }
  std::sort(tasks.begin(), tasks.end(), [](auto& a, auto& b) { return a.start < b.start; });
  return tasks;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    long v = std::atol(argv[i + 1]);
    if (k == "--nodes") o.nodes = static_cast<int>(v);
    else if (k == "--tasks") o.tasks = static_cast<int>(v);
    else if (k == "--burst") o.burst = static_cast<int>(v);
    else if (k == "--seed") o.seed = static_cast<uint64_t>(v);
    else {
      fmt::print(stderr, "usage: swissbox-schedsim [--nodes N] [--tasks N] [--burst N] [--seed S]\n");
      return 2;
    }
  }
  std::mt19937_64 rng(o.seed);
  auto tasks = make_day(o, rng);

  const auto epoch = Clock::now();
  auto at = [&](double s) { return epoch + std::chrono::milliseconds(static_cast<int64_t>(s * 1000)); };
  std::vector<int> active(o.nodes, 0);
  std::vector<NodeState> truth(o.nodes);
  for (int i = 0; i < o.nodes; ++i) {
    truth[i].name = "node-" + std::to_string(i);
    truth[i].region = i % 2 ? "ch-dk-2" : "ch-gva-2";
    truth[i].capacity = o.capacity;
    truth[i].warm = {{"default", 10}};
  }
  std::vector<std::vector<NodeState>> views(2, truth);  // what each replica knows
  PlacementPolicy policy;
  using Departure = std::pair<double, int>;
  std::priority_queue<Departure, std::vector<Departure>, std::greater<>> departures;
  long placed = 0, retries = 0, refused = 0;
  double worst_ratio = 1, ratio_at_peak = 1;
  int peak = 0, concurrent = 0;
  double next_report = 0;
  auto report = [&](double now) {
    for (auto& view : views) {
      for (int i = 0; i < o.nodes; ++i) {
        view[i].active = active[i];
        view[i].inflight = 0;
        view[i].reported_at = at(now);
      }
    }
    int max = *std::max_element(active.begin(), active.end());
    double mean = static_cast<double>(concurrent) / o.nodes;
    if (mean >= 50) worst_ratio = std::max(worst_ratio, max / mean);
    if (concurrent > peak) peak = concurrent, ratio_at_peak = max / std::max(mean, 1.0);
  };
  size_t replica = 0;
  for (const Task& t : tasks) {
    while (!departures.empty() && departures.top().first <= t.start) {
      --active[departures.top().second];
      --concurrent;
      departures.pop();
    }
    while (next_report <= t.start) report(next_report), next_report += 1;
    auto& view = views[replica++ % 2];
    NoPlacement why;
    auto candidates = place(view, {}, policy, at(t.start), rng, &why);
    bool ok = false;
    for (size_t c = 0; c < candidates.size() && !ok; ++c) {
      int n = static_cast<int>(candidates[c]);
      if (c > 0) ++retries;
      if (active[n] >= o.capacity) continue;  // the agent refuses: it is full
      ++active[n];
      ++view[n].inflight;
      ++concurrent;
      departures.push({t.start + t.duration, n});
      ok = true;
    }
    ok ? ++placed : ++refused;
  }
  fmt::print("| nodes | tasks | peak concurrent | placed | retries | refused | max/mean at peak | worst max/mean (mean ≥ 50) |\n");
  fmt::print("|---|---|---|---|---|---|---|---|\n");
  fmt::print("| {} | {} | {} | {} | {} | {} | {:.3f} | {:.3f} |\n", o.nodes, tasks.size(), peak,
             placed, retries, refused, ratio_at_peak, worst_ratio);
  return worst_ratio <= 1.25 ? 0 : 1;
}
