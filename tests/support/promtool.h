// Checks Prometheus exposition text with Prometheus's own parser and linter (`promtool
// check metrics`, Debian package prometheus): names, types, label syntax, histogram
// buckets, unit suffixes.
#pragma once

#include <unistd.h>

#include <optional>
#include <string>

#include "common/fs.h"
#include "common/process.h"
#include "common/unique_fd.h"

namespace swissbox::testing {

inline constexpr const char* kPromtool = "/usr/bin/promtool";

// What promtool objects to ("" when the text passes); nullopt when promtool is missing.
inline std::optional<std::string> promtool_problems(const std::string& text) {
  if (access(kPromtool, X_OK) != 0) return std::nullopt;
  char path[] = "/tmp/swissbox-metrics-XXXXXX";
  unique_fd fd(mkstemp(path));
  if (!fd || !fs::write_file_atomic(path, text)) return "cannot write " + std::string(path);
  unique_fd in(open(path, O_RDONLY | O_CLOEXEC));
  unlink(path);
  ProcessOptions p;
  p.argv = {kPromtool, "check", "metrics"};
  p.stdin_fd = in.get();
  auto r = run_process(p);
  if (!r) return r.error().to_string();
  if (r->exit_code != 0 || !r->out.empty() || !r->err.empty()) {
    return "promtool exited " + std::to_string(r->exit_code) + ": " + r->out + r->err;
  }
  return std::string();
}

}  // namespace swissbox::testing
