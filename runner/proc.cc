#include "runner/proc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runner/memory_guard.h"

namespace swissbox::init {

std::optional<double> process_cpu_ms(pid_t pid) {
  clockid_t clock;
  timespec ts;
  if (clock_getcpuclockid(pid, &clock) != 0 || clock_gettime(clock, &ts) != 0) return std::nullopt;
  return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

std::optional<ProcStat> proc_stat(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  size_t n = read_small(path, buf, sizeof(buf) - 1).size();
  if (n == 0) return std::nullopt;
  buf[n] = 0;
  const char* p = strrchr(buf, ')');  // comm may contain spaces
  ProcStat st;
  char state;
  if (!p || sscanf(p + 1, " %c %*d %d %d", &state, &st.pgrp, &st.sid) != 3) return std::nullopt;
  return st;
}

long proc_rss_kb(pid_t pid) {
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  size_t n = read_small(path, buf, sizeof buf - 1).size();
  if (n == 0) return 0;
  buf[n] = 0;
  if (const char* hwm = strstr(buf, "VmHWM:")) return strtol(hwm + 6, nullptr, 10);
  if (const char* rss = strstr(buf, "VmRSS:")) return strtol(rss + 6, nullptr, 10);
  return 0;
}

}  // namespace swissbox::init
