#include "common/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "common/unique_fd.h"

namespace swissbox {

uint64_t raise_fd_limit() {
  rlimit r{};
  if (getrlimit(RLIMIT_NOFILE, &r) != 0) return 0;
  if (r.rlim_cur < r.rlim_max) {
    rlimit raised{r.rlim_max, r.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) r = raised;
  }
  return r.rlim_cur;
}
namespace {

using Clock = std::chrono::steady_clock;

// The children started here, which their starters reap; the orphan reaper leaves them
// alone. A start holds g_starting shared until its child is in g_started, so the reaper
// (exclusive) never mistakes a child that ended at once for an orphan.
std::shared_mutex g_starting;
std::mutex g_started_mu;
std::set<pid_t> g_started;

void started(pid_t pid) {
  std::lock_guard lock(g_started_mu);
  g_started.insert(pid);
}

bool is_started(pid_t pid) {
  std::lock_guard lock(g_started_mu);
  return g_started.count(pid) > 0;
}

Result<std::array<unique_fd, 2>> make_pipe() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return sys_error("pipe2");
  return std::array<unique_fd, 2>{unique_fd(fds[0]), unique_fd(fds[1])};
}

[[noreturn]] void child_fail(int report_fd, int err) {
  [[maybe_unused]] ssize_t n = write(report_fd, &err, sizeof(err));
  _exit(127);
}

// posix_spawn: glibc starts the child with vfork semantics, so the agent's page tables are
// not copied and no copy-on-write faults follow (under a burst of runsc calls fork's
// dup_mmap and do_wp_page were most of the agent's kernel time, measured with perf). The
// child gets its own process group, default signal handlers and an empty mask, the given
// stdio and nothing else; a failed exec is the call's error.
Result<pid_t> spawn_exec(const std::string& path, std::vector<char*>& argv,
                         std::vector<char*>& envp, int in_fd, int o_fd, int e_fd) {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  const int fds[3] = {in_fd, o_fd, e_fd};
  for (int i = 0; i < 3; ++i) posix_spawn_file_actions_adddup2(&actions, fds[i], i);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setpgroup(&attr, 0);  // own group, so a timeout kill reaches grandchildren
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  int err = posix_spawn(&pid, path.c_str(), &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (err != 0) return sys_error("exec " + path, err);
  return pid;
}

// Starts opts.argv with the given stdio. With a pre_exec step it forks (the step runs in
// the child) and the child's exec errno, if any, arrives on *report (read it before
// anything else); otherwise posix_spawn reports a failed exec itself.
Result<pid_t> fork_exec(const ProcessOptions& opts, int in_fd, int o_fd, int e_fd,
                        unique_fd* report) {
  if (opts.argv.empty() || opts.argv[0].empty() || opts.argv[0][0] != '/') {
    return make_error(Code::kInternal, "process: argv[0] must be an absolute path");
  }
  std::vector<char*> argv;
  for (const auto& a : opts.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> env_storage = opts.env;
  if (env_storage.empty()) env_storage.push_back("PATH=/usr/sbin:/usr/bin:/sbin:/bin");
  std::vector<char*> envp;
  for (auto& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::shared_lock starting(g_starting);
  if (!opts.pre_exec) {
    auto pid = spawn_exec(opts.argv[0], argv, envp, in_fd, o_fd, e_fd);
    if (pid) started(*pid);
    return pid;
  }
  auto report_pipe = make_pipe();  // carries the errno of a failed exec
  if (!report_pipe) return report_pipe.error();
  int rep_fd = (*report_pipe)[1].get();

  pid_t pid = fork();
  if (pid < 0) return sys_error("fork " + opts.argv[0]);
  if (pid == 0) {
    // Only async-signal-safe calls from here on: the parent may be multi-threaded.
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, nullptr);
    setpgid(0, 0);  // own group, so a timeout kill reaches grandchildren too
    // Move the report fd out of the way of 0-2 before the dup2s.
    int rep = fcntl(rep_fd, F_DUPFD_CLOEXEC, 3);
    int fds[3] = {fcntl(in_fd, F_DUPFD, 3), fcntl(o_fd, F_DUPFD, 3), fcntl(e_fd, F_DUPFD, 3)};
    for (int i = 0; i < 3; ++i) {
      if (fds[i] < 0 || dup2(fds[i], i) < 0) child_fail(rep, errno);
    }
    for (int i = 0; i < 3; ++i) close(fds[i]);
    // Everything else the agent holds stays behind (close_range leaves rep: it is CLOEXEC).
    if (rep > 3) close_range(3, rep - 1, 0);
    close_range(rep + 1, ~0U, 0);
    if (opts.pre_exec) {
      int err = opts.pre_exec();
      if (err != 0) child_fail(rep, err);
    }
    execve(argv[0], argv.data(), envp.data());
    child_fail(rep, errno);
  }
  started(pid);
  *report = std::move((*report_pipe)[0]);
  return pid;
}

// The errno a child reported on its report pipe, 0 once it exec'd.
int exec_errno(unique_fd& report) {
  int err = 0;
  ssize_t got = read(report.get(), &err, sizeof(err));
  report.reset();
  return got == sizeof(err) ? err : 0;
}

}  // namespace

pid_t wait_process(pid_t pid, int* status, int options) {
  pid_t w = waitpid(pid, status, options);
  if (w == pid) {
    std::lock_guard lock(g_started_mu);
    g_started.erase(pid);
  }
  return w;
}

Result<std::unique_ptr<OrphanReaper>> OrphanReaper::start() {
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) return sys_error("prctl(PR_SET_CHILD_SUBREAPER)");
  std::unique_ptr<OrphanReaper> r(new OrphanReaper());
  r->thread_ = std::thread([raw = r.get()] { raw->run(); });
  return r;
}

OrphanReaper::~OrphanReaper() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

// Polls (WNOHANG) so that it can be stopped: every millisecond right after a child ended,
// backing off to every 50 ms while none does.
void OrphanReaper::run() {
  constexpr auto kBusy = std::chrono::milliseconds(1), kIdle = std::chrono::milliseconds(50);
  auto pause = kBusy;
  auto back_off = [&] { pause = std::clamp(pause * 2, kBusy, kIdle); };
  for (;;) {
    {
      std::unique_lock lock(mu_);
      if (wake_.wait_for(lock, pause, [this] { return stop_; })) return;
    }
    // Looks at an ended child without reaping it: it may be one a starter reaps. While a
    // started child waits for its starter (run_process may still be draining its pipes),
    // waitid keeps answering it: the back-off covers that too.
    siginfo_t info{};
    if (waitid(P_ALL, 0, &info, WEXITED | WNOWAIT | WNOHANG) != 0 || info.si_pid == 0) {
      back_off();
      continue;
    }
    std::unique_lock starting(g_starting);
    if (is_started(info.si_pid)) {
      back_off();
      continue;
    }
    waitpid(info.si_pid, nullptr, WNOHANG);
    pause = std::chrono::milliseconds(0);
  }
}

Result<pid_t> spawn_process(const ProcessOptions& opts) {
  unique_fd null_fd(open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!null_fd) return sys_error("open /dev/null");
  auto pick = [&](int fd) { return fd >= 0 ? fd : null_fd.get(); };
  unique_fd report;
  auto pid = fork_exec(opts, pick(opts.stdin_fd), pick(opts.stdout_fd), pick(opts.stderr_fd),
                       &report);
  if (!pid) return pid;
  if (int err = exec_errno(report)) {
    wait_process(*pid, nullptr, 0);
    return sys_error("exec " + opts.argv[0], err);
  }
  return pid;
}

Result<ProcessResult> run_process(const ProcessOptions& opts) {
  unique_fd null_fd(open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!null_fd) return sys_error("open /dev/null");
  auto out_pipe = make_pipe();
  auto err_pipe = make_pipe();
  if (!out_pipe) return out_pipe.error();
  if (!err_pipe) return err_pipe.error();

  int in_fd = opts.stdin_fd >= 0 ? opts.stdin_fd : null_fd.get();
  int o_fd = opts.stdout_fd >= 0 ? opts.stdout_fd : (*out_pipe)[1].get();
  int e_fd = opts.stderr_fd >= 0 ? opts.stderr_fd : (*err_pipe)[1].get();

  auto start = Clock::now();
  unique_fd report;
  auto forked = fork_exec(opts, in_fd, o_fd, e_fd, &report);
  if (!forked) return forked.error();
  pid_t pid = *forked;
  (*out_pipe)[1].reset();
  (*err_pipe)[1].reset();

  int child_errno = exec_errno(report);
  ProcessResult res;
  bool failed_exec = child_errno != 0;

  auto deadline = start + opts.timeout;
  std::array<pollfd, 2> pfds{pollfd{(*out_pipe)[0].get(), POLLIN, 0},
                             pollfd{(*err_pipe)[0].get(), POLLIN, 0}};
  std::string* sinks[2] = {&res.out, &res.err};
  int open_count = 2;
  char buf[16384];
  while (open_count > 0 && !failed_exec) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      res.timed_out = true;
      break;
    }
    int n = poll(pfds.data(), pfds.size(), static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    for (size_t i = 0; i < pfds.size(); ++i) {
      if (pfds[i].fd < 0 || pfds[i].revents == 0) continue;
      ssize_t r = read(pfds[i].fd, buf, sizeof(buf));
      if (r <= 0) {
        pfds[i].fd = -1;
        --open_count;
        continue;
      }
      size_t room = opts.capture_cap - std::min(opts.capture_cap, sinks[i]->size());
      sinks[i]->append(buf, std::min(room, static_cast<size_t>(r)));
    }
  }
  if (res.timed_out) kill(-pid, SIGKILL), kill(pid, SIGKILL);

  // The pipes may have closed while the process lives on (it closed its stdio): wait for it
  // within the same deadline.
  int status = 0;
  for (;;) {
    pid_t w = wait_process(pid, &status, res.timed_out ? 0 : WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) break;
    if (w == 0) {
      if (Clock::now() >= deadline) {
        res.timed_out = true;
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
      } else {
        usleep(1000);
      }
    }
  }
  res.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  if (failed_exec) return sys_error("exec " + opts.argv[0], child_errno);
  if (WIFEXITED(status)) res.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) res.signal = WTERMSIG(status);
  return res;
}

std::string describe_failure(const ProcessOptions& opts, const ProcessResult& r) {
  std::string what = opts.argv.size() > 1 ? opts.argv[0] + " " + opts.argv[1] : opts.argv[0];
  std::string how = r.timed_out ? "timed out after " + std::to_string(r.elapsed.count()) + " ms"
                    : r.signal  ? "killed by signal " + std::to_string(r.signal)
                                : "exited " + std::to_string(r.exit_code);
  std::string tail = r.err.empty() ? r.out : r.err;
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == ' ')) tail.pop_back();
  // A Go program (runsc) says what went wrong before its goroutine stacks, not in them.
  if (size_t stack = tail.find("\ngoroutine "); stack != std::string::npos) {
    tail.resize(stack);
    while (!tail.empty() && (tail.back() == '\n' || tail.back() == ':')) tail.pop_back();
  }
  if (tail.size() > 600) tail = "…" + tail.substr(tail.size() - 600);
  return what + " " + how + (tail.empty() ? "" : ": " + tail);
}

MemoryFootprint memory_footprint(const std::vector<int>& pids) {
  MemoryFootprint f;
  for (int pid : pids) {
    FILE* in = fopen(fmt::format("/proc/{}/smaps_rollup", pid).c_str(), "re");
    if (!in) continue;
    char line[256];
    long long kb;
    while (fgets(line, sizeof line, in)) {
      if (sscanf(line, "Pss: %lld kB", &kb) == 1) f.pss_bytes += kb * 1024;
      if (sscanf(line, "Rss: %lld kB", &kb) == 1) f.rss_bytes += kb * 1024;
    }
    fclose(in);
  }
  return f;
}

}  // namespace swissbox
