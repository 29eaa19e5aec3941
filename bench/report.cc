#include "bench/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace swissbox::bench {

using json = nlohmann::json;

double Stats::pct(double p) const {
  if (ms.empty()) return 0;
  std::vector<double> s = ms;
  std::sort(s.begin(), s.end());
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * s.size()));
  return s[std::clamp<size_t>(rank, 1, s.size()) - 1];
}

namespace {

std::string ratio_text(const Report& r, const std::string& name, const Stats& s) {
  auto b = r.baseline_of.find(name);
  if (b == r.baseline_of.end()) return "";
  auto base = r.latency.find(b->second);
  if (base == r.latency.end() || base->second.ms.empty() || s.pct(50) <= 0) return "";
  const double speedup = base->second.pct(50) / s.pct(50);
  // Below 1 it is not "faster": the time it takes against the baseline's.
  if (speedup < 1) return fmt::format("{:.2f}× the time of {}", 1 / speedup, b->second);
  return fmt::format("{:.{}f}× faster than {}", speedup, speedup < 2 ? 2 : 1, b->second);
}

json stats_json(const Stats& s) {
  return {{"n", s.ms.size()},    {"errors", s.errors},  {"p50_ms", s.pct(50)},
          {"p90_ms", s.pct(90)}, {"p99_ms", s.pct(99)}, {"max_ms", s.pct(100)}};
}

}  // namespace

std::string Report::markdown() const {
  std::string out;
  if (!latency.empty()) {
    out += "| scenario | n | errors | p50 ms | p90 ms | p99 ms | max ms | vs baseline (p50) |\n"
           "|---|---|---|---|---|---|---|---|\n";
    for (const auto& [name, s] : latency) {
      out += fmt::format("| {} | {} | {} | {:.1f} | {:.1f} | {:.1f} | {:.1f} | {} |\n", name,
                         s.ms.size(), s.errors, s.pct(50), s.pct(90), s.pct(99), s.pct(100),
                         ratio_text(*this, name, s));
    }
  }
  if (!concurrency.empty()) {
    out += "\n| clients | executions/s | p50 ms | p99 ms | max ms | errors |\n"
           "|---|---|---|---|---|---|\n";
    for (const auto& p : concurrency) {
      out += fmt::format("| {} | {:.0f} | {:.1f} | {:.1f} | {:.1f} | {} |\n", p.clients,
                         p.stats.throughput(), p.stats.pct(50), p.stats.pct(99),
                         p.stats.pct(100), p.stats.errors);
    }
  }
  for (const auto& [pool, per_s] : refill_per_s) {
    out += fmt::format("\nrefill {}: {} sandboxes ready in {:.2f} s = {:.1f} sandboxes/s", pool,
                       refill_count.value_or(0), refill_count.value_or(0) / per_s, per_s);
    if (auto cpu = refill_cpu_ms.find(pool); cpu != refill_cpu_ms.end()) {
      out += fmt::format(", {:.0f} ms of node CPU each", cpu->second);
    }
    out += "\n";
  }
  if (!memory.empty()) {
    out += "\n| sandbox | PSS MB | RSS MB |\n|---|---|---|\n";
    for (const auto& m : memory) {
      out += fmt::format("| {} | {:.1f} | {:.1f} |\n", m.what, m.pss_mb, m.rss_mb);
    }
  }
  if (!scale.empty()) {
    out += "\n| idle active sandboxes | agent CPU, % of one core | claim + echo p50 ms | p99 ms |\n"
           "|---|---|---|---|\n";
    for (const auto& p : scale) {
      out += fmt::format("| {} | {:.1f} | {:.1f} | {:.1f} |\n", p.live, p.agent_cpu_percent,
                         p.claim_exec.pct(50), p.claim_exec.pct(99));
    }
    const auto& few = scale.front().claim_exec;
    if (scale.size() > 1 && few.pct(50) > 0) {
      out += fmt::format("claim + echo p50 with {} live / with {} live: {:.2f}x\n", scale.back().live,
                         scale.front().live, scale.back().claim_exec.pct(50) / few.pct(50));
    }
  }
  for (const auto& [what, mb] : checkpoint_mb) {
    out += fmt::format("\ncheckpoint of a sandbox ({}): {:.2f} MB on disk", what, mb);
  }
  if (template_ready_s) {
    out += template_kind == "image"
               ? fmt::format("\nimage template: ready {:.1f} s after its PUT (pull and preparation of {:.0f} MB)\n",
                             *template_ready_s, template_image_mb.value_or(0))
               : fmt::format("\n{}: ready {:.1f} s after its PUT (its build; the layer holds {:.1f} MB)\n",
                             template_kind, *template_ready_s, template_image_mb.value_or(0));
  }
  if (context_survived) {
    out += fmt::format("\na Python context's variable after every suspend and resume: {}\n",
                       *context_survived ? "kept" : "LOST");
  }
  if (density) {
    const DensityPoint& d = *density;
    out += fmt::format(
        "\ndensity: {} suspended + {} live sandboxes: {} host processes of suspended ones "
        "({:.1f} MB PSS), agent CPU {:.1f} % of one core idle, checkpoints {:.2f} MB each "
        "({:.0f} MB in all)\n",
        d.suspended, d.live, d.suspended_processes, d.suspended_memory_mb, d.agent_cpu_percent,
        d.checkpoint_mb_mean, d.checkpoint_mb_total);
  }
  if (cold_fallbacks) {
    out += fmt::format("\nsustained at {:.1f} one-shots/s: {} cold-start fallbacks\n",
                       sustained_rate.value_or(0), *cold_fallbacks);
    if (sustained_cpu_ms && *sustained_cpu_ms > 0 && cpus > 0) {
      out += fmt::format(
          "node CPU per one-shot (claim, run, delete, refill): {:.0f} ms, so {} CPUs carry at "
          "most {:.1f} one-shots/s\n",
          *sustained_cpu_ms, cpus, cpus * 1000 / *sustained_cpu_ms);
    }
  }
  if (machine_before && machine_after) {
    out += fmt::format(
        "\nmachine speed (compute loop / pipe ping-pong, lower is faster): before {:.0f} / "
        "{:.0f} ms, after {:.0f} / {:.0f} ms\n",
        machine_before->compute_ms, machine_before->pingpong_ms, machine_after->compute_ms,
        machine_after->pingpong_ms);
  }
  return out;
}

json Report::to_json() const {
  json j = {{"target", target}, {"platform", platform}, {"latency", json::object()}};
  for (const auto& [name, s] : latency) {
    j["latency"][name] = stats_json(s);
    if (auto b = baseline_of.find(name); b != baseline_of.end()) {
      j["latency"][name]["baseline"] = b->second;
    }
  }
  for (const auto& p : concurrency) {
    json point = stats_json(p.stats);
    point["clients"] = p.clients;
    point["per_s"] = p.stats.throughput();
    j["concurrency"].push_back(point);
  }
  for (const auto& [pool, per_s] : refill_per_s) {
    j["refill"][pool] = {{"sandboxes", refill_count.value_or(0)}, {"per_s", per_s}};
    if (auto cpu = refill_cpu_ms.find(pool); cpu != refill_cpu_ms.end()) {
      j["refill"][pool]["cpu_ms_each"] = cpu->second;
    }
  }
  if (sustained_rate) j["sustained_rate"] = *sustained_rate;
  if (sustained_cpu_ms) j["sustained_cpu_ms_per_oneshot"] = *sustained_cpu_ms;
  if (cpus > 0) j["cpus"] = cpus;
  for (const auto& m : memory) {
    j["memory"].push_back({{"sandbox", m.what}, {"pss_mb", m.pss_mb}, {"rss_mb", m.rss_mb}});
  }
  if (cold_fallbacks) j["sustained_cold_fallbacks"] = *cold_fallbacks;
  for (const auto& p : scale) {
    json point = stats_json(p.claim_exec);
    point["live"] = p.live;
    point["agent_cpu_percent"] = p.agent_cpu_percent;
    j["scale"].push_back(point);
  }
  for (const auto& [what, mb] : checkpoint_mb) j["checkpoint_mb"][what] = mb;
  if (context_survived) j["context_survived_suspend"] = *context_survived;
  if (template_ready_s) {
    j["template"] = {{"kind", template_kind}, {"ready_s", *template_ready_s}, {"size_mb", template_image_mb.value_or(0)}};
  }
  if (density) {
    const DensityPoint& d = *density;
    j["density"] = {{"suspended", d.suspended},
                    {"live", d.live},
                    {"suspended_processes", d.suspended_processes},
                    {"suspended_memory_mb", d.suspended_memory_mb},
                    {"agent_cpu_percent", d.agent_cpu_percent},
                    {"checkpoint_mb_mean", d.checkpoint_mb_mean},
                    {"checkpoint_mb_total", d.checkpoint_mb_total}};
  }
  for (const auto& [key, m] : {std::pair{"before", machine_before}, {"after", machine_after}}) {
    if (m) j["machine"][key] = {{"compute_ms", m->compute_ms}, {"pingpong_ms", m->pingpong_ms}};
  }
  return j;
}

namespace {

constexpr int kWidth = 960;
constexpr int kLeft = 190;   // scenario names
constexpr int kRight = 40;
constexpr double kMinMs = 0.1, kMaxMs = 10000;

std::string esc(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else out += c;
  }
  return out;
}

// x position of a latency on the log axis.
double log_x(double ms) {
  double f = (std::log10(std::clamp(ms, kMinMs, kMaxMs)) - std::log10(kMinMs)) /
             (std::log10(kMaxMs) - std::log10(kMinMs));
  return kLeft + f * (kWidth - kLeft - kRight);
}

// One row per scenario: a bar from p50 to p99, a whisker to max, the p50 written beside.
std::string latency_panel(const Report& r, int top, int* height) {
  std::string out = fmt::format(
      "<text x='10' y='{}' font-weight='bold'>Latency per scenario (ms, log scale): bar p50–p99, "
      "whisker to max, tick p90</text>\n",
      top + 16);
  int y0 = top + 40;
  for (double ms : {0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0}) {
    double x = log_x(ms);
    out += fmt::format("<line x1='{0:.1f}' x2='{0:.1f}' y1='{1}' y2='{2}' stroke='#ddd'/>"
                       "<text x='{0:.1f}' y='{3}' text-anchor='middle' fill='#666'>{4:g}</text>\n",
                       x, y0 - 10, y0 + 24 * static_cast<int>(r.latency.size()), y0 - 14, ms);
  }
  int row = 0;
  for (const auto& [name, s] : r.latency) {
    int y = y0 + 24 * row++;
    out += fmt::format("<text x='{}' y='{}' text-anchor='end'>{}</text>\n", kLeft - 8, y + 14,
                       esc(name));
    if (s.ms.empty()) continue;
    double p50 = log_x(s.pct(50)), p90 = log_x(s.pct(90)), p99 = log_x(s.pct(99)),
           mx = log_x(s.pct(100));
    out += fmt::format(
        "<line x1='{0:.1f}' x2='{1:.1f}' y1='{2}' y2='{2}' stroke='#888'/>"
        "<rect x='{3:.1f}' y='{4}' width='{5:.1f}' height='14' fill='#4e79a7'/>"
        "<line x1='{6:.1f}' x2='{6:.1f}' y1='{4}' y2='{7}' stroke='#f28e2b' stroke-width='2'/>"
        "<text x='{8:.1f}' y='{9}' fill='#333'>{10:.1f}</text>\n",
        p99, mx, y + 9, p50, y + 2, std::max(1.0, p99 - p50), p90, y + 16, mx + 6, y + 14,
        s.pct(50));
  }
  *height = 40 + 24 * static_cast<int>(r.latency.size()) + 20;
  return out;
}

// Executions per second against clients (log2 x axis), p99 written at each point.
std::string concurrency_panel(const Report& r, int top, int* height) {
  const int h = 220, y_base = top + 40 + h;
  double max_tp = 1;
  for (const auto& p : r.concurrency) max_tp = std::max(max_tp, p.stats.throughput());
  max_tp *= 1.15;
  int max_c = r.concurrency.back().clients;
  auto x_of = [&](int c) {
    double f = max_c > 1 ? std::log2(c) / std::log2(max_c) : 0.5;
    return kLeft + f * (kWidth - kLeft - kRight);
  };
  auto y_of = [&](double tp) { return y_base - tp / max_tp * h; };
  std::string out = fmt::format(
      "<text x='10' y='{}' font-weight='bold'>Throughput against concurrent clients "
      "(executions/s; label: p99 ms)</text>\n",
      top + 16);
  out += fmt::format("<line x1='{0}' x2='{1}' y1='{2}' y2='{2}' stroke='#888'/>"
                     "<line x1='{0}' x2='{0}' y1='{3}' y2='{2}' stroke='#888'/>\n",
                     kLeft, kWidth - kRight, y_base, y_base - h);
  for (int i = 0; i <= 4; ++i) {
    double tp = max_tp * i / 4;
    out += fmt::format("<text x='{}' y='{:.1f}' text-anchor='end' fill='#666'>{:.0f}</text>\n",
                       kLeft - 8, y_of(tp) + 4, tp);
  }
  std::string points;
  for (const auto& p : r.concurrency) {
    double x = x_of(p.clients), y = y_of(p.stats.throughput());
    points += fmt::format("{:.1f},{:.1f} ", x, y);
    out += fmt::format(
        "<circle cx='{0:.1f}' cy='{1:.1f}' r='4' fill='#e15759'/>"
        "<text x='{0:.1f}' y='{2}' text-anchor='middle' fill='#666'>{3}</text>"
        "<text x='{0:.1f}' y='{4:.1f}' text-anchor='middle' fill='#333'>{5:.0f} ms</text>\n",
        x, y, y_base + 16, p.clients, y - 10, p.stats.pct(99));
  }
  out += fmt::format("<polyline points='{}' fill='none' stroke='#e15759' stroke-width='2'/>\n",
                     points);
  *height = 40 + h + 30;
  return out;
}

}  // namespace

std::string Report::svg() const {
  std::string body;
  int y = 10, h = 0;
  if (!latency.empty()) {
    body += latency_panel(*this, y, &h);
    y += h;
  }
  if (!concurrency.empty()) {
    body += concurrency_panel(*this, y, &h);
    y += h;
  }
  return fmt::format(
      "<svg xmlns='http://www.w3.org/2000/svg' width='{0}' height='{1}' "
      "font-family='sans-serif' font-size='12'>\n"
      "<rect width='{0}' height='{1}' fill='white'/>\n"
      "<text x='10' y='{1}' dy='-6' fill='#666'>swissbox-bench · target {2} · platform {3}</text>\n"
      "{4}</svg>\n",
      kWidth, y + 24, esc(target), esc(platform), body);
}

}  // namespace swissbox::bench
