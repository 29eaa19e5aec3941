// The sandbox's own out-of-memory killer.
//
// gVisor's sentry and the code it runs share one host cgroup. When that cgroup hits its
// memory limit the host OOM killer picks the biggest host process, which is the sentry,
// and the whole sandbox dies (measured: python allocating 1 GiB under a 256 MiB limit
// kills the sandbox within 0.5 s). gVisor enforces no memory limit of its own, but its
// /proc/meminfo counts every page the sandbox's code holds (MemTotal − MemFree, tmpfs
// included). The runner polls that while commands run and, once the sandbox's code uses
// more than its limit, kills the process with the largest resident set — below the host
// cgroup's limit, which has room for the sentry on top.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string_view>
#include <vector>

namespace swissbox::init {

// Reads a small /proc file whole into buf (at most size bytes); empty on error. Meant for
// /proc, where a short read is the end of the file.
std::string_view read_small(const char* path, char* buf, size_t size);

// Bytes in use from /proc/meminfo text (MemTotal − MemFree); -1 when the fields are absent.
int64_t meminfo_used_bytes(std::string_view meminfo);

struct ProcessMemory {
  pid_t pid = 0;
  int64_t rss_bytes = 0;
};

// Resident set sizes of every process in /proc except those in `skip`.
std::vector<ProcessMemory> resident_processes(const std::vector<pid_t>& skip);

class MemoryGuard {
 public:
  using Clock = std::chrono::steady_clock;

  // limit_bytes ≤ 0 turns the guard off.
  void set_limit(int64_t limit_bytes) { limit_ = limit_bytes; }
  int64_t limit() const { return limit_; }
  // When the next check is due (time_point::max() when off).
  Clock::time_point next_check() const;
  // No check before now + the relaxed interval (guarding starts again after a pause).
  void defer(Clock::time_point now);
  // Reads the sandbox's use if a check is due; returns the process to kill (0: none).
  pid_t check(Clock::time_point now, const std::vector<pid_t>& skip);
  int64_t last_used() const { return used_; }

 private:
  int64_t limit_ = 0;
  int64_t used_ = 0;
  Clock::time_point next_{};  // due at once
};

}  // namespace swissbox::init
