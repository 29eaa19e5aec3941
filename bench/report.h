// What swissbox-bench measured and how it shows it: a Markdown table (with each result's
// ratio to its baseline measured in the same run), JSON, and an SVG chart (latency
// distribution per scenario, throughput and p99 against concurrency).
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace swissbox::bench {

struct Stats {
  std::vector<double> ms;  // one per successful operation
  int errors = 0;
  double wall_s = 0;  // the whole run, for throughput
  // p in [0, 100]; nearest rank over the sorted samples (0 with no samples).
  double pct(double p) const;
  double throughput() const { return wall_s > 0 ? ms.size() / wall_s : 0; }
};

struct ConcurrencyPoint {
  int clients = 0;
  Stats stats;
};

struct MemoryRow {
  std::string what;  // "default idle warm", "default+python idle warm", "active after exec"
  double pss_mb = 0, rss_mb = 0;
};

// The agent with `live` idle active sandboxes: its own CPU (percent of one core, over an
// idle window) and claim + first exec on top of them.
struct ScalePoint {
  int live = 0;
  double agent_cpu_percent = 0;
  Stats claim_exec;
};

// Many sandboxes asleep next to a few awake: the host memory of the suspended ones' processes
// (there should be none), the agent's own CPU over an idle window, and their checkpoints.
struct DensityPoint {
  int suspended = 0, live = 0;
  int suspended_processes = 0;       // host processes that name a suspended sandbox
  double suspended_memory_mb = 0;    // their PSS
  double agent_cpu_percent = 0;      // of one core
  double checkpoint_mb_mean = 0, checkpoint_mb_total = 0;
};

// How fast the machine was: a fixed integer loop and 20,000 round trips of one byte
// over pipes between two processes (scheduler and context-switch cost, what gVisor's
// ptrace platform lives on). A shared VM drifts: on the dev VM the loop took 55–76 ms and
// the round trips anywhere from 119 to 1,044 ms on one afternoon, sometimes changing
// within a run, so each report carries both, taken before and after its scenarios.
struct MachineSpeed {
  double compute_ms = 0, pingpong_ms = 0;
};

struct Report {
  std::map<std::string, Stats> latency;             // scenario → samples
  std::map<std::string, std::string> baseline_of;   // scenario → the scenario it is compared to
  std::vector<ConcurrencyPoint> concurrency;
  // Pool → sandboxes made ready per second, refilling refill_count from empty.
  std::map<std::string, double> refill_per_s;
  std::optional<int> refill_count;
  std::optional<double> sustained_rate;  // one-shots per second offered
  std::vector<MemoryRow> memory;
  std::vector<ScalePoint> scale;
  std::optional<int> cold_fallbacks;  // during the sustained scenario
  // Suspend: a checkpoint's size on disk by what the sandbox held ("idle", "python context").
  std::map<std::string, double> checkpoint_mb;
  std::optional<bool> context_survived;  // the Python variable after every suspend
  std::optional<DensityPoint> density;
  // Template: an image template's PUT until ready (pull and preparation), and the image.
  std::optional<double> template_ready_s;
  std::optional<double> template_image_mb;
  std::string template_kind;  // "image" or "package layer (…)"
  // Node CPU (every process, all CPUs) per sandbox made ready, by pool, and per one-shot of
  // the sustained scenario (its claim, run, delete and the refill it causes): known when
  // the target runs on this machine. With `cpus` they bound the rate a node sustains.
  std::map<std::string, double> refill_cpu_ms;
  std::optional<double> sustained_cpu_ms;
  int cpus = 0;
  std::string target, platform;
  std::optional<MachineSpeed> machine_before, machine_after;

  std::string markdown() const;
  nlohmann::json to_json() const;
  std::string svg() const;
};

}  // namespace swissbox::bench
