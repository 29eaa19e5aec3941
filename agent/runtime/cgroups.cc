#include "agent/runtime/cgroups.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fmt/format.h>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "common/fs.h"
#include "common/unique_fd.h"

namespace swissbox {

namespace {

constexpr int64_t kCpuPeriodUs = 100000;

// One write() per value: the kernel parses each write of a cgroup file as a whole.
// O_CREAT only matters on the temp trees of unit tests; cgroupfs refuses to create files.
Status write_value(const std::string& path, const std::string& value) {
  unique_fd fd(open(path.c_str(), O_WRONLY | O_TRUNC | O_CREAT | O_CLOEXEC, 0644));
  if (!fd) return sys_error("open " + path);
  if (write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size()))
    return sys_error(fmt::format("write '{}' to {}", value, path));
  return ok_status();
}

Result<int64_t> read_int(const std::string& path) {
  auto text = fs::read_file(path, 4096);
  if (!text) return text.error();
  try {
    return static_cast<int64_t>(std::stoll(*text));
  } catch (const std::exception&) {
    return make_error(Code::kInternal, fmt::format("{}: not a number: '{}'", path, *text));
  }
}

// "key value" lines (cpu.stat, memory.events, memory.oom_control); 0 when absent.
int64_t read_keyed(const std::string& path, const std::string& key) {
  auto text = fs::read_file(path, 65536);
  if (!text) return 0;
  std::istringstream in(*text);
  std::string k;
  int64_t v = 0;
  while (in >> k >> v) {
    if (k == key) return v;
  }
  return 0;
}

std::string limit_or(int64_t value, const char* unlimited) {
  return value > 0 ? std::to_string(value) : unlimited;
}

int64_t cpu_quota_us(double cpu) {
  return cpu > 0 ? std::max<int64_t>(1000, std::llround(cpu * kCpuPeriodUs)) : -1;
}

bool valid_name(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos && name != "." && name != "..";
}

// Path of this process's cgroup from /proc/self/cgroup: the v2 line ("0::/path"), or the
// v1 line whose controller list has `controller`.
Result<std::string> own_cgroup(const std::string& proc_file, const std::string& controller) {
  auto text = fs::read_file(proc_file);
  if (!text) return text.error();
  std::istringstream in(*text);
  std::string line;
  while (std::getline(in, line)) {
    size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    std::string ctrls = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    std::istringstream list(ctrls);
    std::string c;
    bool match = controller.empty() && line.compare(0, 3, "0::") == 0;
    while (!match && std::getline(list, c, ',')) match = c == controller;
    if (match) return path == "/" ? std::string() : path;
  }
  return make_error(Code::kInternal,
                    fmt::format("{} names no {} cgroup", proc_file,
                                controller.empty() ? "v2" : controller));
}

void read_members(const std::string& dir, std::set<pid_t>* pids) {
  auto text = fs::read_file(dir + "/cgroup.procs");
  if (!text) return;
  std::istringstream in(*text);
  pid_t p;
  while (in >> p) pids->insert(p);
}

// Sends SIGKILL to everything listed in the cgroup.procs files until they are empty or
// the deadline passes.
void kill_members(const std::vector<std::string>& dirs) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  for (;;) {
    std::set<pid_t> pids;
    for (const auto& d : dirs) read_members(d, &pids);
    if (pids.empty() || std::chrono::steady_clock::now() > deadline) return;
    for (pid_t p : pids) kill(p, SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// The kernel answers EBUSY for a moment after the last member was killed (its exit is
// still being accounted), so EBUSY is retried for up to two seconds.
Status remove_dir(const std::string& dir) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  for (;;) {
    if (rmdir(dir.c_str()) == 0 || errno == ENOENT) return ok_status();
    // On a temp tree the control files are plain files; cgroupfs removes them with the dir.
    if (errno == ENOTEMPTY) return fs::remove_tree(dir);
    if (errno != EBUSY || std::chrono::steady_clock::now() > deadline) {
      return sys_error("rmdir " + dir);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

Result<std::vector<std::string>> subdirs(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (!d) return sys_error("opendir " + dir);
  std::vector<std::string> out;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != ".." && e->d_type == DT_DIR) out.push_back(n);
  }
  closedir(d);
  return out;
}

// What both drivers hold: the hierarchy root on this host and the parent inside it.
class CgroupTree : public Cgroups {
 public:
  CgroupTree(std::string root, std::string parent)
      : root_(std::move(root)), parent_(std::move(parent)) {}
  const std::string& parent() const override { return parent_; }

 protected:
  std::string root_, parent_;
};

class CgroupsV2 : public CgroupTree {
 public:
  using CgroupTree::CgroupTree;
  std::string version() const override { return "v2"; }

  // Controllers reach a cgroup only through every ancestor's cgroup.subtree_control, and
  // v2 refuses them below a cgroup that holds processes ("no internal processes").
  Status init() {
    if (auto st = fs::make_dirs(root_ + parent_); !st) return st;
    std::vector<std::string> dirs = {root_};  // the root, each ancestor, the parent
    for (size_t i = 1; i <= parent_.size(); ++i) {
      if (i == parent_.size() || parent_[i] == '/') dirs.push_back(root_ + parent_.substr(0, i));
    }
    for (const auto& dir : dirs) {
      auto text = fs::read_file(dir + "/cgroup.subtree_control", 4096);
      std::string have = text ? *text : "";
      std::string want;
      for (const char* c : {"cpu", "memory", "pids"}) {
        if (have.find(c) == std::string::npos) want += std::string(want.empty() ? "+" : " +") + c;
      }
      if (want.empty()) continue;
      auto st = write_value(dir + "/cgroup.subtree_control", want);
      if (!st && st.error().sys_errno == EBUSY) {
        return make_error(Code::kUnavailable,
                          fmt::format("cgroup v2: cannot enable cpu, memory and pids in {}: it "
                                      "holds processes; pass --cgroup-parent with a cgroup "
                                      "outside the agent's own (e.g. /swissbox.slice/sandboxes)",
                                      dir));
      }
      if (!st) return st;
    }
    return ok_status();
  }

  Status create(const std::string& name, const CgroupLimits& limits) override {
    if (!valid_name(name)) return make_error(Code::kInvalidArgument, "bad cgroup name " + name);
    if (mkdir(dir(name).c_str(), 0755) != 0 && errno != EEXIST)
      return sys_error("mkdir " + dir(name));
    return set_limits(name, limits);
  }

  Status set_limits(const std::string& name, const CgroupLimits& l) override {
    std::string d = dir(name);
    int64_t quota = cpu_quota_us(l.cpu);
    std::string cpu = fmt::format("{} {}", quota > 0 ? std::to_string(quota) : "max", kCpuPeriodUs);
    if (auto st = write_value(d + "/cpu.max", cpu); !st) return st;
    if (auto st = write_value(d + "/memory.max", limit_or(l.memory_bytes, "max")); !st) return st;
    if (fs::exists(d + "/memory.swap.max")) {
      if (auto st = write_value(d + "/memory.swap.max", "0"); !st) return st;
    }
    return write_value(d + "/pids.max", limit_or(l.pids, "max"));
  }

  Result<CgroupUsage> usage(const std::string& name) const override {
    std::string d = dir(name);
    CgroupUsage u;
    auto mem = read_int(d + "/memory.current");
    if (!mem) return mem.error();
    u.memory_bytes = *mem;
    u.cpu_seconds = read_keyed(d + "/cpu.stat", "usage_usec") / 1e6;
    if (auto peak = read_int(d + "/memory.peak")) u.memory_peak_bytes = *peak;
    if (auto pids = read_int(d + "/pids.current")) u.pids = *pids;
    u.oom_kills = read_keyed(d + "/memory.events", "oom_kill");
    u.pids_limit_hits = read_keyed(d + "/pids.events", "max");
    return u;
  }

  Status remove(const std::string& name) override {
    if (!valid_name(name)) return make_error(Code::kInvalidArgument, "bad cgroup name " + name);
    std::string d = dir(name);
    if (!fs::exists(d)) return ok_status();
    if (fs::exists(d + "/cgroup.kill")) (void)write_value(d + "/cgroup.kill", "1");
    kill_members({d});
    return remove_dir(d);
  }

  std::vector<int> processes(const std::string& name) const override {
    std::set<pid_t> pids;
    read_members(dir(name), &pids);
    return {pids.begin(), pids.end()};
  }

  Result<std::vector<std::string>> children() const override { return subdirs(root_ + parent_); }

 private:
  std::string dir(const std::string& name) const { return root_ + parent_ + "/" + name; }
};

class CgroupsV1 : public CgroupTree {
 public:
  using CgroupTree::CgroupTree;
  std::string version() const override { return "v1"; }

  Status init() {
    for (const char* c : kControllers) {
      if (auto st = fs::make_dirs(root_ + "/" + c + parent_); !st) return st;
    }
    return ok_status();
  }

  Status create(const std::string& name, const CgroupLimits& limits) override {
    if (!valid_name(name)) return make_error(Code::kInvalidArgument, "bad cgroup name " + name);
    for (const char* c : kControllers) {
      std::string d = dir(c, name);
      if (mkdir(d.c_str(), 0755) != 0 && errno != EEXIST) return sys_error("mkdir " + d);
    }
    return set_limits(name, limits);
  }

  Status set_limits(const std::string& name, const CgroupLimits& l) override {
    std::string cpu = dir("cpu", name);
    if (auto st = write_value(cpu + "/cpu.cfs_period_us", std::to_string(kCpuPeriodUs)); !st)
      return st;
    if (auto st = write_value(cpu + "/cpu.cfs_quota_us", std::to_string(cpu_quota_us(l.cpu)));
        !st)
      return st;
    if (auto st = set_memory(dir("memory", name), l.memory_bytes); !st) return st;
    return write_value(dir("pids", name) + "/pids.max", limit_or(l.pids, "max"));
  }

  Result<CgroupUsage> usage(const std::string& name) const override {
    CgroupUsage u;
    std::string mem = dir("memory", name);
    auto cur = read_int(mem + "/memory.usage_in_bytes");
    if (!cur) return cur.error();
    u.memory_bytes = *cur;
    if (auto peak = read_int(mem + "/memory.max_usage_in_bytes")) u.memory_peak_bytes = *peak;
    if (auto ns = read_int(dir("cpuacct", name) + "/cpuacct.usage")) u.cpu_seconds = *ns / 1e9;
    if (auto pids = read_int(dir("pids", name) + "/pids.current")) u.pids = *pids;
    u.oom_kills = read_keyed(mem + "/memory.oom_control", "oom_kill");
    u.pids_limit_hits = read_keyed(dir("pids", name) + "/pids.events", "max");
    return u;
  }

  Status remove(const std::string& name) override {
    if (!valid_name(name)) return make_error(Code::kInvalidArgument, "bad cgroup name " + name);
    std::vector<std::string> dirs;
    auto add = [&](const char* c) {
      if (fs::exists(dir(c, name))) dirs.push_back(dir(c, name));
    };
    for (const char* c : kControllers) add(c);
    for (const char* c : kRunscOnly) add(c);
    kill_members(dirs);
    // Every hierarchy is tried even when one fails, so that no half-removed cgroup stays.
    Status first = ok_status();
    for (const auto& d : dirs) {
      if (auto st = remove_dir(d); !st && first) first = st;
    }
    return first;
  }

  std::vector<int> processes(const std::string& name) const override {
    std::set<pid_t> pids;
    read_members(dir("memory", name), &pids);
    return {pids.begin(), pids.end()};
  }

  // The union over the hierarchies: a cgroup left in any one of them is found.
  Result<std::vector<std::string>> children() const override {
    std::set<std::string> names;
    for (const char* c : kControllers) {
      auto sub = subdirs(root_ + "/" + c + parent_);
      if (!sub) return sub.error();
      names.insert(sub->begin(), sub->end());
    }
    for (const char* c : kRunscOnly) {
      if (auto sub = subdirs(root_ + "/" + c + parent_)) names.insert(sub->begin(), sub->end());
    }
    return std::vector<std::string>(names.begin(), names.end());
  }

 private:
  // The hierarchies the agent makes each sandbox's cgroup in (limits and usage).
  static constexpr const char* kControllers[] = {"cpu", "cpuacct", "memory", "pids"};
  // The others runsc makes it in, when mounted, and leaves behind on delete (runsc
  // 20240729, container/cgroup.go's list; on the dev VM blkio, cpuset, devices, freezer
  // and name=systemd): removed with the rest.
  static constexpr const char* kRunscOnly[] = {"blkio",   "cpuset",  "devices",  "freezer",
                                               "hugetlb", "net_cls", "net_prio", "perf_event",
                                               "rdma",    "systemd"};

  // memory.memsw.limit_in_bytes (memory + swap) must never be below the memory limit:
  // raising writes it first, lowering last. Equal values mean no swap.
  static Status set_memory(const std::string& d, int64_t bytes) {
    std::string v = bytes > 0 ? std::to_string(bytes) : "-1";
    std::string mem = d + "/memory.limit_in_bytes", memsw = d + "/memory.memsw.limit_in_bytes";
    if (!fs::exists(memsw)) {
      if (auto st = write_value(mem, v); !st) return st;
      return write_value(d + "/memory.swappiness", "0");
    }
    if (write_value(mem, v)) return write_value(memsw, v);
    if (auto st = write_value(memsw, v); !st) return st;
    return write_value(mem, v);
  }

  std::string dir(const char* controller, const std::string& name) const {
    return root_ + "/" + controller + parent_ + "/" + name;
  }
};

// Through syscall(): glibc 2.36's <sys/pidfd.h> declares these without C linkage.
int pidfd_open(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }
void pidfd_kill(int pidfd) { (void)syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0); }

bool has_exited(int pidfd) {
  pollfd p{pidfd, POLLIN, 0};
  return poll(&p, 1, 0) == 1;
}

}  // namespace

bool Cgroups::kill_all(const std::string& name, std::chrono::milliseconds timeout) const {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    // A listed pid without a process (reaped: pidfd_open fails) or with an exited one (a
    // zombie) is gone; a real cgroup lists neither, a unit test's file may.
    std::map<pid_t, unique_fd> alive;
    for (pid_t pid : processes(name)) {
      unique_fd fd(pidfd_open(pid));
      if (fd && !has_exited(fd.get())) alive.emplace(pid, std::move(fd));
    }
    if (alive.empty()) return true;
    if (Clock::now() >= deadline) return false;
    std::vector<pollfd> waits;
    for (pid_t pid : processes(name)) {
      auto it = alive.find(pid);
      if (it == alive.end()) continue;
      pidfd_kill(it->second.get());
      waits.push_back({it->second.get(), POLLIN, 0});
    }
    // A pidfd turns readable when its process exits; each round waits for all of them.
    for (auto& w : waits) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      while (!(w.revents & POLLIN) && left.count() > 0) {
        if (poll(&w, 1, static_cast<int>(left.count())) < 0 && errno != EINTR) break;
        left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      }
    }
  }
}

Result<std::unique_ptr<Cgroups>> open_cgroups(const CgroupOptions& opts) {
  bool v2 = fs::exists(opts.root + "/cgroup.controllers");
  if (!v2 && !fs::exists(opts.root + "/memory")) {
    return make_error(Code::kUnavailable,
                      fmt::format("no cgroup hierarchy under {}: neither cgroup.controllers "
                                  "(v2) nor memory/ (v1)",
                                  opts.root));
  }
  std::string parent = opts.parent;
  if (parent.empty()) {
    auto own = own_cgroup(opts.proc_self_cgroup, v2 ? "" : "memory");
    if (!own) return own.error();
    parent = *own + "/sandboxes";
  }
  if (parent[0] != '/' || parent.find("/../") != std::string::npos || parent.ends_with("/..") ||
      parent == "/") {
    return make_error(Code::kInvalidArgument,
                      "cgroup parent must be an absolute path below the hierarchy root, got '" +
                          parent + "'");
  }
  while (parent.size() > 1 && parent.back() == '/') parent.pop_back();
  if (v2) {
    auto cg = std::make_unique<CgroupsV2>(opts.root, parent);
    if (auto st = cg->init(); !st) return st.error();
    return std::unique_ptr<Cgroups>(std::move(cg));
  }
  auto cg = std::make_unique<CgroupsV1>(opts.root, parent);
  if (auto st = cg->init(); !st) return st.error();
  return std::unique_ptr<Cgroups>(std::move(cg));
}

}  // namespace swissbox
