// What the runner reads about its processes from the kernel (gVisor's /proc).
#pragma once

#include <sys/types.h>

#include <optional>

namespace swissbox::init {

// A process's CPU time, all its threads, to the nanosecond (/proc/<pid>/stat counts clock
// ticks of 10 ms, for user and system time each).
std::optional<double> process_cpu_ms(pid_t pid);

// A process's group and session from /proc/<pid>/stat.
struct ProcStat {
  pid_t pgrp = 0, sid = 0;
};
std::optional<ProcStat> proc_stat(pid_t pid);

// The peak resident size of a process that is still there (kB), for its exit report;
// gVisor shows no VmHWM: the resident size at the end is the closest it tells.
long proc_rss_kb(pid_t pid);

}  // namespace swissbox::init
