#include "common/metrics.h"

#include <fmt/format.h>

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

std::string Metrics::render() const {
  std::lock_guard lock(mu_);
  std::string out;
  for (const auto& [name, f] : families_) {
    if (!f.help.empty()) out += fmt::format("# HELP {} {}\n", name, f.help);
    out += fmt::format("# TYPE {} {}\n", name, f.type == Type::kCounter ? "counter" : "gauge");
    for (const auto& [labels, v] : f.series) out += fmt::format("{}{} {}\n", name, labels, v);
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

}  // namespace swissbox
