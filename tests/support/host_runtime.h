// A SandboxRuntime for unit tests: each "sandbox" is swissbox-init started as a plain host
// process with its own temp workspace. It exercises the real runner, channel, manager and
// API without root or runsc; it is never used by the product.
//
// Isolated (root only): each runner is PID 1 of its own PID, network and mount namespaces
// (with its own /proc), as in a sandbox, so it behaves as there (commands outlive a lost agent, the reattach socket
// listens), and reattach() connects through the real `swissbox-init --bridge`.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "agent/runtime/runtime.h"
#include "common/fs.h"

namespace swissbox::testing {

class HostRuntime : public SandboxRuntime {
 public:
  HostRuntime(std::string init_path, std::string root, bool isolated = false)
      : init_(std::move(init_path)), root_(std::move(root)), isolated_(isolated) {}
  ~HostRuntime() override {
    std::lock_guard lock(mu_);
    for (auto& [id, pid] : pids_) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    reap_bridges(0);
  }

  Result<RunnerLink> start(const SandboxSpec& spec) override {
    starts++;
    // A start as slow as a real one, so that a test can act while it is under way.
    if (int ms = start_delay_ms; ms > 0) usleep(ms * 1000);
    if (fail_next > 0) {
      fail_next--;
      return make_error(Code::kUnavailable, "injected start failure");
    }
    std::string ws = root_ + "/" + spec.id;
    if (auto st = fs::make_dirs(ws); !st) return st.error();
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return sys_error("socketpair");
    // Everything the child needs is built before fork(): the test process has other threads,
    // and a malloc in the child can deadlock on an allocator lock one of them held.
    std::string env_ws = "SWISSBOX_WORKSPACE=" + ws;
    std::string meminfo = root_ + "/meminfo";
    if (isolated_) {
      if (auto st = fs::write_file_atomic(meminfo, "MemTotal: 8388608 kB\nMemFree: 8388608 kB\n"); !st)
        return st.error();
    }
    char* envp[] = {env_ws.data(), const_cast<char*>("PATH=/usr/bin:/bin"), nullptr};
    char* argv[] = {const_cast<char*>(init_.c_str()), nullptr};
    // clone() without a stack runs the child on a copy of this one, as fork() does.
    pid_t pid = isolated_ ? static_cast<pid_t>(syscall(SYS_clone, CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWNS | SIGCHLD,
                                                       nullptr, nullptr, nullptr, nullptr))
                          : fork();
    if (pid == 0) {
      // Ends with the thread that started it, so that a test that dies leaves no runner
      // (PID 1 of its namespace, its commands with it) behind.
      if (isolated_) prctl(PR_SET_PDEATHSIG, SIGKILL);
      // Its own /proc, as in a sandbox: the runner reads its children and their groups
      // there, and its memory guard scans it.
      // Its meminfo says nothing is in use: in gVisor it counts the sandbox's pages alone,
      // and the host's would have the runner's memory guard kill the biggest process.
      if (isolated_ && (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
                        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0 ||
                        mount(meminfo.c_str(), "/proc/meminfo", nullptr, MS_BIND, nullptr) != 0)) {
        _exit(126);
      }
      exec_on_socket(sv[1], argv, envp);
    }
    auto link = parent_end(pid, sv, "start the runner");
    if (!link) return link.error();
    std::lock_guard lock(mu_);
    pids_[spec.id] = pid;
    return RunnerLink{std::move(*link)};
  }

  // The runner process alone: enough to see the figures reach the API.
  std::optional<MemoryFootprint> footprint(const std::string& id) override {
    std::lock_guard lock(mu_);
    auto it = pids_.find(id);
    if (it == pids_.end()) return std::nullopt;
    return memory_footprint({it->second});
  }

  Status destroy(const std::string& id) override {
    destroys++;
    pid_t pid = -1;
    {
      std::lock_guard lock(mu_);
      auto it = pids_.find(id);
      if (it != pids_.end()) pid = it->second, pids_.erase(it);
    }
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    return fs::remove_tree(root_ + "/" + id);
  }

  // Isolated runners only: `swissbox-init --bridge` in the runner's network namespace (where
  // its abstract reattach socket is), as root, on a new socket pair, as runsc exec runs it.
  Result<RunnerLink> reattach(const std::string& id) override {
    if (!isolated_) return SandboxRuntime::reattach(id);
    pid_t runner = -1;
    {
      std::lock_guard lock(mu_);
      if (auto it = pids_.find(id); it != pids_.end()) runner = it->second;
    }
    if (runner < 0) return make_error(Code::kNotFound, "no sandbox " + id);
    unique_fd netns(open(("/proc/" + std::to_string(runner) + "/ns/net").c_str(), O_RDONLY | O_CLOEXEC));
    if (!netns) return sys_error("open the runner's network namespace");
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return sys_error("socketpair");
    char bridge_flag[] = "--bridge";
    char* argv[] = {const_cast<char*>(init_.c_str()), bridge_flag, nullptr};
    char* envp[] = {nullptr};
    pid_t pid = fork();
    if (pid == 0) {
      if (setns(netns.get(), CLONE_NEWNET) != 0) _exit(126);
      exec_on_socket(sv[1], argv, envp);
    }
    auto link = parent_end(pid, sv, "start the bridge");
    if (!link) return link.error();
    std::lock_guard lock(mu_);
    reap_bridges(WNOHANG);
    bridges_.push_back(pid);
    return RunnerLink{std::move(*link)};
  }

  // The runner's host PID (isolated: PID 1 of its namespace).
  pid_t runner_pid(const std::string& id) {
    std::lock_guard lock(mu_);
    auto it = pids_.find(id);
    return it == pids_.end() ? -1 : it->second;
  }

  Status set_limits(const std::string& id, const Limits& limits) override {
    std::lock_guard lock(mu_);
    if (!pids_.count(id)) return make_error(Code::kNotFound, "no sandbox " + id);
    limits_[id] = limits;
    return ok_status();
  }

  // The runner process's own CPU time and RSS, from /proc.
  Result<CgroupUsage> usage(const std::string& id) override {
    pid_t pid = -1;
    {
      std::lock_guard lock(mu_);
      if (auto it = pids_.find(id); it != pids_.end()) pid = it->second;
    }
    if (pid < 0) return make_error(Code::kNotFound, "no sandbox " + id);
    auto stat = fs::read_file("/proc/" + std::to_string(pid) + "/stat");
    if (!stat) return stat.error();
    std::istringstream in(stat->substr(stat->rfind(')') + 2));
    std::string field;
    std::vector<std::string> f;
    while (in >> field) f.push_back(field);
    CgroupUsage u;
    // After ")": state is field 3 of stat(5); utime/stime are 14/15, rss (pages) 24.
    u.cpu_seconds = (std::stod(f[11]) + std::stod(f[12])) / sysconf(_SC_CLK_TCK);
    u.memory_bytes = std::stoll(f[21]) * sysconf(_SC_PAGESIZE);
    u.memory_peak_bytes = u.memory_bytes;
    u.pids = 1;
    return u;
  }

  std::optional<Limits> limits_of(const std::string& id) {
    std::lock_guard lock(mu_);
    auto it = limits_.find(id);
    return it == limits_.end() ? std::nullopt : std::optional<Limits>(it->second);
  }

  // Simulates a sandbox dying (the runner killed from outside).
  void kill_sandbox(const std::string& id) {
    std::lock_guard lock(mu_);
    if (auto it = pids_.find(id); it != pids_.end()) kill(it->second, SIGKILL);
  }

  // Simulates a frozen sandbox: the runner stops answering but its pipes stay open.
  void freeze_sandbox(const std::string& id) {
    std::lock_guard lock(mu_);
    if (auto it = pids_.find(id); it != pids_.end()) kill(it->second, SIGSTOP);
  }

  Result<std::vector<std::string>> list() override {
    std::lock_guard lock(mu_);
    std::vector<std::string> ids;
    for (auto& [id, pid] : pids_) ids.push_back(id);
    return ids;
  }
  size_t live() {
    std::lock_guard lock(mu_);
    return pids_.size();
  }
  std::string name() const override { return "host-test"; }
  std::string version() const override { return "test"; }
  std::string platform() const override { return "none"; }

  std::atomic<int> starts{0}, destroys{0}, fail_next{0}, start_delay_ms{0};

 private:
  // In the child: the socket pair's end as stdin and stdout, then the program.
  [[noreturn]] static void exec_on_socket(int fd, char* const argv[], char* const envp[]) {
    dup2(fd, 0);
    dup2(fd, 1);
    execve(argv[0], argv, envp);
    _exit(127);
  }
  // In the parent: the other end, once the child (pid) was made.
  static Result<unique_fd> parent_end(pid_t pid, int sv[2], const char* what) {
    close(sv[1]);
    if (pid < 0) {
      close(sv[0]);
      return sys_error(what);
    }
    return unique_fd(sv[0]);
  }

  // Bridges end when their channel closes (0: kill and wait for all of them).
  void reap_bridges(int options) {
    std::erase_if(bridges_, [options](pid_t pid) {
      if (options == 0) kill(pid, SIGKILL);
      return waitpid(pid, nullptr, options) != 0;
    });
  }

  std::string init_, root_;
  bool isolated_;
  std::vector<pid_t> bridges_;
  std::mutex mu_;
  std::map<std::string, pid_t> pids_;
  std::map<std::string, Limits> limits_;
};

}  // namespace swissbox::testing
