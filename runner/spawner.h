// How swissbox-init starts a command: in its own process group, with pipes as stdio.
//
// Process creation is the floor of every exec inside gVisor, so it is done ahead of time.
// Measured in a sandbox on the dev VM (ptrace platform), start + exit of /bin/true:
//   posix_spawn (vfork + execve)                          6.1–6.8 ms
//   clone(CLONE_VM) of a child that waits                 0.2 ms
//   that child's execve + exit, once told to go           3.8–4.1 ms
// So the runner keeps one such waiting child (the spare) and hands it the next command;
// vfork + execve stays as the fallback when no spare is ready (concurrent starts, a spare
// that died); its child sets the command's task limit itself before the exec.
//
// bash itself starts in 6.4 ms there (`bash -c 'echo hi'` less a fork, 50 runs in a
// loop); Debian's bash-static (the same source and version, linked statically, so no
// loader, no libc relocations) in 3.5 ms. So a command whose program
// is /bin/bash or /usr/bin/bash runs the image's static build when it has one, with argv
// unchanged: $0, $BASH and `ps -f` read as before; the process name (`ps`, /proc/PID/comm)
// is bash-static. An image with no bash at all runs them with its /bin/sh.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "common/unique_fd.h"

namespace swissbox::init {

struct LaunchRequest {
  std::vector<std::string> argv;  // argv[0] is searched in env's PATH unless it has a '/'
  std::vector<std::string> env;   // "K=V"
  std::string cwd;
  // RLIMIT_NPROC (soft and hard) of the command: gVisor enforces it over every process of
  // the sandbox's user, so it is the sandbox's task limit. 0: inherit the runner's.
  rlim_t max_processes = 0;
  // Given to the command as its fd 3 (a language worker's program channel); such a launch
  // takes the vfork path, the spare's fds 3 and 4 being its own.
  int fd3 = -1;
  // A PTY's terminal side: the command's stdin, stdout, stderr and controlling terminal (in
  // a session of its own); Launched then has no pipes. Takes the vfork path.
  int tty = -1;
};

struct Launched {
  pid_t pid = -1;          // also the process group id
  unique_fd in, out, err;  // the runner's ends of the command's stdin/stdout/stderr
};

// Used from one thread; the process ignores SIGPIPE (a dead spare is found by a failed write).
class Spawner {
 public:
  // static_bash: used for /bin/bash and /usr/bin/bash when it exists (checked here, once).
  explicit Spawner(const char* static_bash = "/bin/bash-static");
  ~Spawner();
  Spawner(const Spawner&) = delete;
  Spawner& operator=(const Spawner&) = delete;

  // Commands from now on run as uid:gid with no supplementary groups (the runner itself
  // runs as root inside the sandbox, so that they cannot signal, trace or reopen it).
  void set_user(uid_t uid, gid_t gid) { uid_ = uid, gid_ = gid; }
  // Starts the command; 0, or the errno of the failed start (nothing is left running then).
  int launch(const LaunchRequest& req, Launched* out);
  // Makes the spare for the next launch if there is none.
  void prepare();
  // The waiting spare (a child of the runner that no command owns), or -1.
  pid_t spare_pid() const;
  // The runner reaped pid: releases what belonged to a spare that died or failed to exec.
  void on_reaped(pid_t pid);

 private:
  struct Spare;
  // The file to exec for argv[0] (searched in PATH unless it has a '/').
  const char* program(const std::string& argv0) const;
  int launch_spare(const char* file, char* const* argv, char* const* envp, const char* cwd,
                   rlim_t nproc, Launched* out);
  int launch_vfork(const char* file, char* const* argv, char* const* envp, const char* cwd,
                   rlim_t nproc, int fd3, int tty, Launched* out);

  std::string static_bash_;  // empty: the image has none
  bool has_bash_ = true;      // false: /bin/bash commands run with /bin/sh
  uid_t uid_ = static_cast<uid_t>(-1);  // -1: the runner's own
  gid_t gid_ = static_cast<gid_t>(-1);
  std::unique_ptr<Spare> spare_;
  void* free_stack_ = nullptr;  // the last exec'd spare's stack, for the next spare
  // Spares whose exec failed: their stack stays mapped until they are reaped.
  std::vector<std::unique_ptr<Spare>> dying_;
};

}  // namespace swissbox::init
