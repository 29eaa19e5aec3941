#include "runner/memory_guard.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>

#include "common/unique_fd.h"

namespace swissbox::init {

namespace {

using namespace std::chrono_literals;

// Far from the limit a sandbox cannot reach it between two checks (python fills ≈ 1 GiB/s
// in gVisor here: 20 ms is ≈ 20 MiB); close to it checks come faster. After a kill the
// victim's memory takes a moment to be returned.
constexpr auto kRelaxedInterval = 20ms;
constexpr auto kCloseInterval = 5ms;
constexpr auto kAfterKill = 50ms;

// "Key:   1234 kB" → 1234 * 1024; -1 when absent.
int64_t meminfo_field(std::string_view text, std::string_view key) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    std::string_view line = text.substr(pos, eol == std::string_view::npos ? eol : eol - pos);
    pos = eol == std::string_view::npos ? text.size() : eol + 1;
    if (line.size() <= key.size() || line.substr(0, key.size()) != key || line[key.size()] != ':')
      continue;
    std::string_view rest = line.substr(key.size() + 1);
    rest.remove_prefix(std::min(rest.find_first_not_of(' '), rest.size()));
    int64_t kb = 0;
    auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), kb);
    if (ec != std::errc()) return -1;
    return kb * 1024;
  }
  return -1;
}

}  // namespace

std::string_view read_small(const char* path, char* buf, size_t size) {
  unique_fd fd(open(path, O_RDONLY | O_CLOEXEC));
  if (!fd) return {};
  // A /proc read fills what it is asked for unless the file ends, so one read is the whole
  // file (a second, returning 0, would be one more ptrace stop in gVisor).
  ssize_t r = read(fd.get(), buf, size);
  return {buf, r > 0 ? static_cast<size_t>(r) : 0};
}

int64_t meminfo_used_bytes(std::string_view meminfo) {
  int64_t total = meminfo_field(meminfo, "MemTotal");
  int64_t free = meminfo_field(meminfo, "MemFree");
  if (total < 0 || free < 0) return -1;
  return std::max<int64_t>(0, total - free);
}

std::vector<ProcessMemory> resident_processes(const std::vector<pid_t>& skip) {
  std::vector<ProcessMemory> out;
  DIR* d = opendir("/proc");
  if (!d) return out;
  long page = sysconf(_SC_PAGESIZE);
  char path[64], buf[256];
  while (dirent* e = readdir(d)) {
    char* end = nullptr;
    long pid = strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    if (std::find(skip.begin(), skip.end(), pid) != skip.end()) continue;
    snprintf(path, sizeof(path), "/proc/%ld/statm", pid);
    std::string_view statm = read_small(path, buf, sizeof(buf) - 1);
    // statm: size resident shared text lib data dt (pages)
    size_t sp = statm.find(' ');
    if (sp == std::string_view::npos) continue;
    int64_t pages = 0;
    std::from_chars(statm.data() + sp + 1, statm.data() + statm.size(), pages);
    out.push_back({static_cast<pid_t>(pid), pages * page});
  }
  closedir(d);
  return out;
}

MemoryGuard::Clock::time_point MemoryGuard::next_check() const {
  return limit_ > 0 ? next_ : Clock::time_point::max();
}

void MemoryGuard::defer(Clock::time_point now) { next_ = std::max(next_, now + kRelaxedInterval); }

pid_t MemoryGuard::check(Clock::time_point now, const std::vector<pid_t>& skip) {
  if (limit_ <= 0 || now < next_) return 0;
  char buf[4096];
  used_ = meminfo_used_bytes(read_small("/proc/meminfo", buf, sizeof(buf) - 1));
  next_ = now + (used_ * 4 > limit_ * 3 ? kCloseInterval : kRelaxedInterval);
  if (used_ <= limit_) return 0;
  auto procs = resident_processes(skip);
  auto biggest = std::max_element(procs.begin(), procs.end(), [](auto& a, auto& b) {
    return a.rss_bytes < b.rss_bytes;
  });
  if (biggest == procs.end()) return 0;
  next_ = now + kAfterKill;
  return biggest->pid;
}

}  // namespace swissbox::init
