#include "common/metrics.h"

#include <dirent.h>
#include <fmt/format.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace swissbox {

void Metrics::describe(const std::string& name, Type type, std::string help) {
  std::lock_guard lock(mu_);
  auto& f = families_[name];
  f.type = type;
  f.help = std::move(help);
}

void Metrics::add(const std::string& name, const std::string& labels, double v) {
  std::lock_guard lock(mu_);
  families_[name].series[labels] += v;
}

void Metrics::set(const std::string& name, const std::string& labels, double v) {
  std::lock_guard lock(mu_);
  families_[name].series[labels] = v;
}

double Metrics::get(const std::string& name, const std::string& labels) const {
  std::lock_guard lock(mu_);
  auto f = families_.find(name);
  if (f == families_.end()) return 0;
  auto s = f->second.series.find(labels);
  return s == f->second.series.end() ? 0 : s->second;
}

namespace {

constexpr double kBuckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                               0.25,  0.5,    1,     2.5,  5,     10};

// {a="b"} + le → {a="b",le="0.5"}
std::string with_le(const std::string& labels, const std::string& le) {
  std::string l = "le=\"" + le + "\"";
  return labels.size() > 2 ? labels.substr(0, labels.size() - 1) + "," + l + "}" : "{" + l + "}";
}

}  // namespace

void Metrics::observe(const std::string& name, const std::string& labels, double seconds) {
  std::lock_guard lock(mu_);
  auto& h = families_[name].histograms[labels];
  h.buckets.resize(std::size(kBuckets));
  for (size_t i = 0; i < std::size(kBuckets); ++i) {
    if (seconds <= kBuckets[i]) {
      ++h.buckets[i];
      break;
    }
  }
  h.sum += seconds;
  ++h.count;
}

std::string Metrics::render() const {
  std::lock_guard lock(mu_);
  std::string out;
  for (const auto& [name, f] : families_) {
    if (!f.help.empty()) out += fmt::format("# HELP {} {}\n", name, f.help);
    const char* type = f.type == Type::kCounter ? "counter"
                       : f.type == Type::kGauge ? "gauge"
                                                : "histogram";
    out += fmt::format("# TYPE {} {}\n", name, type);
    for (const auto& [labels, v] : f.series) out += fmt::format("{}{} {}\n", name, labels, v);
    for (const auto& [labels, h] : f.histograms) {
      uint64_t cumulative = 0;
      for (size_t i = 0; i < h.buckets.size(); ++i) {
        cumulative += h.buckets[i];
        out += fmt::format("{}_bucket{} {}\n", name, with_le(labels, fmt::format("{}", kBuckets[i])),
                           cumulative);
      }
      out += fmt::format("{}_bucket{} {}\n", name, with_le(labels, "+Inf"), h.count);
      out += fmt::format("{}_sum{} {}\n{}_count{} {}\n", name, labels, h.sum, name, labels, h.count);
    }
  }
  return out;
}

std::string Metrics::labels(
    std::initializer_list<std::pair<std::string_view, std::string_view>> kv) {
  std::string out = "{";
  for (const auto& [k, v] : kv) {
    if (out.size() > 1) out += ',';
    out += fmt::format("{}=\"", k);
    for (char c : v) {
      if (c == '\\' || c == '"') out += '\\';
      if (c == '\n') {
        out += "\\n";
        continue;
      }
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

namespace {

// Boot time in seconds since the epoch (/proc/stat btime).
double boot_time() {
  FILE* f = fopen("/proc/stat", "re");
  if (!f) return 0;
  char line[256];
  double btime = 0;
  while (fgets(line, sizeof line, f)) {
    if (sscanf(line, "btime %lf", &btime) == 1) break;
  }
  fclose(f);
  return btime;
}

int open_fds() {
  DIR* d = opendir("/proc/self/fd");
  if (!d) return 0;
  int n = 0;
  while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
  closedir(d);
  return n - 1;  // the directory's own
}

}  // namespace

std::string render_process_metrics() {
  char buf[1024];
  FILE* f = fopen("/proc/self/stat", "re");
  if (!f) return {};
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  const char* p = strrchr(buf, ')');  // comm may hold spaces
  unsigned long long utime = 0, stime = 0, start = 0, vsize = 0;
  long long rss = 0;
  // Fields after comm: state(3) … utime(14) stime(15) … starttime(22) vsize(23) rss(24).
  if (!p || sscanf(p + 2,
                   "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d "
                   "%llu %llu %lld",
                   &utime, &stime, &start, &vsize, &rss) != 5) {
    return {};
  }
  double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  rlimit nofile{};
  getrlimit(RLIMIT_NOFILE, &nofile);
  std::string out;
  auto family = [&](const char* name, const char* type, const char* help, double v) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, v);
  };
  family("process_cpu_seconds_total", "counter", "User and system CPU time of the process.",
         (utime + stime) / tick);
  family("process_resident_memory_bytes", "gauge", "Resident memory of the process.",
         static_cast<double>(rss) * sysconf(_SC_PAGESIZE));
  family("process_virtual_memory_bytes", "gauge", "Virtual memory of the process.",
         static_cast<double>(vsize));
  family("process_open_fds", "gauge", "Open file descriptors.", open_fds());
  family("process_max_fds", "gauge", "The file descriptor limit.",
         static_cast<double>(nofile.rlim_cur));
  family("process_start_time_seconds", "gauge", "Start time since the epoch.",
         boot_time() + start / tick);
  return out;
}

}  // namespace swissbox
