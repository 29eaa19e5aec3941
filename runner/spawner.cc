#include "runner/spawner.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <utility>

namespace swissbox::init {

namespace {

constexpr size_t kStackSize = 256 * 1024;
// gVisor answers EINVAL to close_range(…, ~0U): it reads the bound as a signed int.
constexpr unsigned kLastFd = 0x7fffffff;
// A spare that neither execs nor fails within this time (stopped by a command's
// `kill -STOP -1`, say) is killed and the command started the slow way.
constexpr int kSpareAnswerMs = 2000;

// The spare's fds as created by the runner; copied into the spare's own table by clone().
enum { kIn, kOut, kErr, kWake, kReport, kFdCount };

struct Setup {
  int fds[kFdCount];
  // Written by the runner just before it wakes the spare, then only read by the spare.
  const char* file = nullptr;
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  const char* cwd = nullptr;
  rlimit nproc{0, 0};
  uid_t uid = static_cast<uid_t>(-1);  // -1: keep the runner's
  gid_t gid = static_cast<gid_t>(-1);
};

// Becomes the command's user: groups, then gid, then uid (which drops every capability).
// Raw system calls: the callers run in a child that shares the runner's memory. 0 or errno.
int become_user(uid_t uid, gid_t gid) {
  if (gid != static_cast<gid_t>(-1)) {
    if (syscall(SYS_setgroups, 0, nullptr) != 0) return errno;
    if (syscall(SYS_setresgid, gid, gid, gid) != 0) return errno;
  }
  if (uid != static_cast<uid_t>(-1) && syscall(SYS_setresuid, uid, uid, uid) != 0) return errno;
  return 0;
}

// The spare: a child sharing the runner's memory (CLONE_VM) but with its own fd table.
// Until woken it runs beside the runner, so it makes raw system calls only (errno is the
// runner's, written only on failure) and touches nothing but its own stack and setup.
// Once woken the runner is blocked reading the report pipe, as a vfork parent would be.
int spare_main(void* arg) {
  const Setup& s = *static_cast<const Setup*>(arg);
  long wake = syscall(SYS_fcntl, s.fds[kWake], F_DUPFD_CLOEXEC, 5);
  long report = syscall(SYS_fcntl, s.fds[kReport], F_DUPFD_CLOEXEC, 5);
  if (wake < 0 || report < 0) syscall(SYS_exit, 127);
  for (int i = 0; i < 3; ++i) syscall(SYS_dup3, s.fds[i], i, 0);  // stdio without CLOEXEC
  syscall(SYS_dup3, wake, 3, O_CLOEXEC);
  syscall(SYS_dup3, report, 4, O_CLOEXEC);
  // Nothing else of the runner's: a copy of another command's stdin pipe would keep that
  // command from ever seeing EOF.
  syscall(SYS_close_range, 5, kLastFd, 0);
  syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  syscall(SYS_setpgid, 0, 0);
  char go = 0;
  if (syscall(SYS_read, 3, &go, 1) != 1) syscall(SYS_exit, 0);

  // The user first: the task limit then counts that user's processes.
  if (int err = become_user(s.uid, s.gid)) {
    syscall(SYS_write, 4, &err, sizeof err);
    syscall(SYS_exit, 127);
  }
  if (s.nproc.rlim_max > 0) syscall(SYS_prlimit64, 0, RLIMIT_NPROC, &s.nproc, nullptr);
  prctl(PR_SET_PDEATHSIG, 0);  // from here on the process belongs to its command
  signal(SIGPIPE, SIG_DFL);    // the runner ignores it; a command must not inherit that
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  if (chdir(s.cwd) == 0) execvpe(s.file, s.argv, s.envp);
  int err = errno;
  syscall(SYS_write, 4, &err, sizeof err);
  syscall(SYS_exit, 127);
  return 127;
}

// Pipe ends: [0] read, [1] write; both close-on-exec.
bool make_pipe(unique_fd (&p)[2]) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return false;
  p[0].reset(fds[0]);
  p[1].reset(fds[1]);
  return true;
}

// The spare's wake-up and report channels. Sockets, not pipes: a command can reopen a pipe
// the spare holds through /proc/<spare>/fd/N and write into it (wake the spare before its
// setup is written, or fake an exec failure), but reopening a socket fails with ENXIO.
bool make_socket_pair(unique_fd (&p)[2]) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return false;
  p[0].reset(fds[0]);
  p[1].reset(fds[1]);
  return true;
}

}  // namespace

struct Spawner::Spare {
  pid_t pid = -1;
  Launched io;
  unique_fd wake, report;
  void* stack = nullptr;
  Setup setup{};
  ~Spare() {
    if (stack) munmap(stack, kStackSize);
  }
};

Spawner::Spawner(const char* static_bash) {
  if (access(static_bash, X_OK) == 0) static_bash_ = static_bash;
  has_bash_ = access("/bin/bash", X_OK) == 0 || access("/usr/bin/bash", X_OK) == 0;
}

Spawner::~Spawner() {
  if (spare_) kill(spare_->pid, SIGKILL);
  if (free_stack_) munmap(free_stack_, kStackSize);
}

const char* Spawner::program(const std::string& argv0) const {
  bool bash = argv0 == "/bin/bash" || argv0 == "/usr/bin/bash";
  if (!bash) return argv0.c_str();
  if (!static_bash_.empty()) return static_bash_.c_str();
  // An image without bash (alpine, busybox, distroless with a shell): its /bin/sh.
  return has_bash_ ? argv0.c_str() : "/bin/sh";
}

pid_t Spawner::spare_pid() const { return spare_ ? spare_->pid : -1; }

void Spawner::on_reaped(pid_t pid) {
  if (spare_ && spare_->pid == pid) spare_.reset();
  std::erase_if(dying_, [pid](const std::unique_ptr<Spare>& s) { return s->pid == pid; });
}

void Spawner::prepare() {
  if (spare_) return;
  auto s = std::make_unique<Spare>();
  unique_fd in[2], out[2], err[2], wake[2], report[2];
  if (!make_pipe(in) || !make_pipe(out) || !make_pipe(err) || !make_socket_pair(wake) ||
      !make_socket_pair(report)) {
    return;  // no spare: the next launch uses vfork
  }
  // The stack of the spare that exec'd last is free again: no mmap + munmap per command.
  void* stack = free_stack_ ? std::exchange(free_stack_, nullptr)
                            : mmap(nullptr, kStackSize, PROT_READ | PROT_WRITE,
                                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) return;
  s->stack = stack;
  s->setup.fds[kIn] = in[0].get();
  s->setup.fds[kOut] = out[1].get();
  s->setup.fds[kErr] = err[1].get();
  s->setup.fds[kWake] = wake[0].get();
  s->setup.fds[kReport] = report[1].get();
  pid_t pid =
      clone(spare_main, static_cast<char*>(stack) + kStackSize, CLONE_VM | SIGCHLD, &s->setup);
  if (pid < 0) return;
  // The spare holds its own copies of the child ends; the runner's close at scope exit.
  s->pid = pid;
  s->io.pid = pid;
  s->io.in = std::move(in[1]);
  s->io.out = std::move(out[0]);
  s->io.err = std::move(err[0]);
  s->wake = std::move(wake[1]);
  s->report = std::move(report[0]);
  spare_ = std::move(s);
}

int Spawner::launch(const LaunchRequest& req, Launched* out) {
  std::vector<char*> argv, envp;
  for (const auto& a : req.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : req.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  // execvpe searches the runner's PATH: make it the command's, as a shell
  // would.
  const char* path = "/usr/local/bin:/usr/bin:/bin";
  for (const auto& e : req.env) {
    if (e.rfind("PATH=", 0) == 0) path = e.c_str() + 5;
  }
  setenv("PATH", path, 1);
  const char* file = program(req.argv[0]);
  if (spare_ && req.fd3 < 0 && req.tty < 0) {
    int err = launch_spare(file, argv.data(), envp.data(), req.cwd.c_str(), req.max_processes, out);
    if (err != ECHILD) return err;
  }
  return launch_vfork(file, argv.data(), envp.data(), req.cwd.c_str(), req.max_processes, req.fd3, req.tty,
                      out);
}

// ECHILD: the spare was gone; the caller starts the command another way.
int Spawner::launch_spare(const char* file, char* const* argv, char* const* envp, const char* cwd,
                          rlim_t nproc, Launched* out) {
  std::unique_ptr<Spare> s = std::move(spare_);
  // Killed but not yet reaped (a command ran `kill -9 -1`): its pipes would read as a
  // successful exec.
  siginfo_t info{};
  if (waitid(P_PID, s->pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == s->pid) {
    dying_.push_back(std::move(s));
    return ECHILD;
  }
  s->setup.file = file;
  s->setup.argv = argv;
  s->setup.envp = envp;
  s->setup.cwd = cwd;
  s->setup.nproc = {nproc, nproc};
  s->setup.uid = uid_;
  s->setup.gid = gid_;
  char go = 1;
  if (write(s->wake.get(), &go, 1) != 1) {
    dying_.push_back(std::move(s));
    return ECHILD;
  }
  s->wake.reset();
  pollfd p{s->report.get(), POLLIN, 0};
  int ready;
  do ready = poll(&p, 1, kSpareAnswerMs);
  while (ready < 0 && errno == EINTR);
  if (ready <= 0) {
    kill(s->pid, SIGKILL);
    dying_.push_back(std::move(s));
    return ECHILD;
  }
  int err = 0;
  ssize_t n;
  do n = read(s->report.get(), &err, sizeof err);
  while (n < 0 && errno == EINTR);
  if (n == sizeof err) {
    dying_.push_back(std::move(s));  // it exits now; its stack goes when it is reaped
    return err;
  }
  // EOF: the exec closed the report pipe and the spare's memory is its own now (or it
  // died on the way, and the reaper reports how). Either way it runs on its stack no more.
  *out = std::move(s->io);
  if (!free_stack_) free_stack_ = std::exchange(s->stack, nullptr);
  return 0;
}

int Spawner::launch_vfork(const char* file, char* const* argv, char* const* envp, const char* cwd,
                          rlim_t nproc, int fd3, int tty, Launched* out) {
  unique_fd in[2], o[2], e[2];
  if (tty < 0 && (!make_pipe(in) || !make_pipe(o) || !make_pipe(e))) return errno;
  // posix_spawn cannot set a limit before the exec, and one set afterwards leaves the new
  // program a moment to raise it: the child sets it itself. Until it execs, the runner is
  // suspended and the child shares its memory: system calls only, errors through
  // child_err, and no signal handler may run in it.
  volatile int child_err = 0;
  const int fds[3] = {tty >= 0 ? tty : in[0].get(), tty >= 0 ? tty : o[1].get(),
                      tty >= 0 ? tty : e[1].get()};
  const uid_t uid = uid_;
  const gid_t gid = gid_;
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, &old);
  pid_t pid = vfork();
  if (pid == 0) {
    if (int err = become_user(uid, gid)) {
      child_err = err;
      _exit(127);
    }
    if (nproc > 0) {
      rlimit both{nproc, nproc};
      if (setrlimit(RLIMIT_NPROC, &both) != 0) {
        child_err = errno;
        _exit(127);
      }
    }
    for (int i = 0; i < 3; ++i) dup2(fds[i], i);  // without CLOEXEC
    if (fd3 >= 0) dup2(fd3, 3);
    if (tty >= 0) {
      // Its own session (and group, pid = pgid as for every command) with the terminal.
      setsid();
      ioctl(0, TIOCSCTTY, 0);
    } else {
      setpgid(0, 0);
    }
    signal(SIGPIPE, SIG_DFL);  // the runner ignores it; a command must not inherit that
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    if (chdir(cwd) == 0) execvpe(file, argv, envp);
    child_err = errno;
    _exit(127);
  }
  int fork_err = errno;
  sigprocmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) return fork_err;
  if (child_err != 0) {
    waitpid(pid, nullptr, 0);  // it has exited already; the runner is single-threaded
    return child_err;
  }
  out->pid = pid;
  out->in = std::move(in[1]);
  out->out = std::move(o[0]);
  out->err = std::move(e[0]);
  return 0;
}

}  // namespace swissbox::init
