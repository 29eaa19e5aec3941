// A small Prometheus registry: counters and gauges with labels, rendered in the text
// exposition format. Thread-safe; label sets are rendered once by the caller's labels().
#pragma once

#include <initializer_list>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace swissbox {

class Metrics {
 public:
  enum class Type { kCounter, kGauge, kHistogram };
  void describe(const std::string& name, Type type, std::string help);
  void add(const std::string& name, const std::string& labels = {}, double v = 1);
  void set(const std::string& name, const std::string& labels, double v);
  double get(const std::string& name, const std::string& labels = {}) const;
  // Histograms (seconds): buckets from 1 ms to 10 s.
  void observe(const std::string& name, const std::string& labels, double seconds);
  std::string render() const;

  // {k="v",…} with values escaped as the format requires.
  static std::string labels(
      std::initializer_list<std::pair<std::string_view, std::string_view>> kv);

 private:
  struct Family {
    Type type = Type::kCounter;
    std::string help;
    std::map<std::string, double> series;
    struct Histogram {
      std::vector<uint64_t> buckets;  // cumulative counts come at render time
      double sum = 0;
      uint64_t count = 0;
    };
    std::map<std::string, Histogram> histograms;
  };
  mutable std::mutex mu_;
  std::map<std::string, Family> families_;
};

// The standard process_* families of this process (CPU seconds, resident and virtual
// memory, open and maximum file descriptors, start time), read from /proc/self now.
std::string render_process_metrics();

}  // namespace swissbox
