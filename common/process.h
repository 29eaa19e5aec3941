// Child processes: spawn with explicit stdio, capped output capture and a timeout; the child
// never inherits any descriptor beyond 0-2 and is always killed and reaped.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"

namespace swissbox {

// Raises this process's soft RLIMIT_NOFILE to its hard limit; answers the soft limit now.
uint64_t raise_fd_limit();

struct ProcessOptions {
  std::vector<std::string> argv;  // argv[0] must be an absolute path
  std::vector<std::string> env;   // "K=V"; empty = a minimal PATH only
  int stdin_fd = -1;              // -1: /dev/null
  int stdout_fd = -1;             // -1: captured into ProcessResult::out
  int stderr_fd = -1;             // -1: captured into ProcessResult::err
  std::chrono::milliseconds timeout{30000};
  size_t capture_cap = 1 << 20;
  // Runs in the child after fork, before exec (async-signal-safe work only); a non-zero
  // return aborts the exec and is reported as the child's errno.
  int (*pre_exec)() = nullptr;
};

struct ProcessResult {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  bool timed_out = false;
  std::string out;
  std::string err;
  std::chrono::milliseconds elapsed{0};
};

// Runs to completion (blocking). Fails only when the process could not be started.
Result<ProcessResult> run_process(const ProcessOptions& opts);
// Starts a long-lived child (stdio fds as given, -1 = /dev/null; timeout and capture are
// not used) and returns once it has exec'd. The caller owns reaping it, with wait_process.
Result<pid_t> spawn_process(const ProcessOptions& opts);
// waitpid() for a child that spawn_process started.
pid_t wait_process(pid_t pid, int* status, int options);

// Makes this process the reaper of its orphaned descendants (PR_SET_CHILD_SUBREAPER) and
// reaps them on a thread of its own, leaving the children that run_process and
// spawn_process started to their callers. `runsc run --detach` leaves the sandbox and
// gofer processes orphaned: without this they are reaped by the host's init, which may
// take seconds (≈ 2 s on the dev VM), and `runsc delete` waits for that. One per process;
// its thread stops when it is destroyed (orphans that end later stay zombies until the
// process ends).
class OrphanReaper {
 public:
  static Result<std::unique_ptr<OrphanReaper>> start();
  ~OrphanReaper();
  OrphanReaper(const OrphanReaper&) = delete;
  OrphanReaper& operator=(const OrphanReaper&) = delete;

 private:
  OrphanReaper() = default;
  void run();

  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

// Memory of a set of host processes from /proc/<pid>/smaps_rollup: PSS (shared pages
// divided among their users, so a sum over processes counts each page once) and RSS.
// Processes that are gone count 0.
struct MemoryFootprint {
  int64_t pss_bytes = 0;
  int64_t rss_bytes = 0;
};
MemoryFootprint memory_footprint(const std::vector<int>& pids);

// "argv[0] exited 1: <stderr tail>" for error messages.
std::string describe_failure(const ProcessOptions& opts, const ProcessResult& r);

}  // namespace swissbox
