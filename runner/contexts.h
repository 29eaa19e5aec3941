// Stateful code contexts inside the runner: each is one kernel (runner/kernels.h) that
// runs the cells sent to it, in order, in one persistent namespace.
//
// A run streams the kernel's stdout/stderr (the pipes stay open across cells: what the
// kernel writes while a cell runs belongs to that cell, what it writes between cells is
// dropped), then the values it displayed and what it raised, then an exit report. The
// output cap applies per run, displayed values counting as stdout. A timeout or a client's
// cancel sends SIGINT to the kernel's process group (Python: KeyboardInterrupt in the
// cell); a kernel that has not ended the cell within kInterruptGrace is killed. A kernel
// that dies (killed, out of memory, exit() in bash, a crash) is started again at once with
// the same settings, and the run it had gets an exception ContextRestarted saying so: the
// context keeps its id, not its state. A kernel that dies before it is ready ends its
// context: whoever waits for it gets the kernel's stderr as the reason.
//
// Everything a kernel writes on its channel is input from the sandbox's user: lines are
// bounded (kMaxKernelLine), parsed defensively, and only known fields are passed on.
#pragma once

#include <poll.h>
#include <sys/types.h>

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/limits.h"
#include "common/runner_protocol.h"
#include "common/unique_fd.h"
#include "runner/kernels.h"
#include "runner/spawner.h"

namespace swissbox::init {

class Contexts {
 public:
  using Clock = std::chrono::steady_clock;
  using Send = std::function<void(const nlohmann::json& header, std::string_view payload)>;
  static constexpr size_t kMaxKernelLine = 4 << 20;
  static constexpr auto kInterruptGrace = std::chrono::seconds(2);

  Contexts(Spawner& spawner, Send send);
  ~Contexts();

  // The ops (runner_protocol.h). Every op is answered: a result, or a run's exit. A
  // start's cwd is resolved by the caller.
  void start(uint64_t id, const proto::ContextStartOp& op);
  void restart(uint64_t id, const std::string& context);
  void stop(uint64_t id, const std::string& context);
  void run(uint64_t id, const proto::ContextRunOp& op, std::string code);
  // For signal, pause and resume on a run's id: false when the id is not a context run.
  bool interrupt(uint64_t run_id);
  bool pause(uint64_t run_id, bool on);

  // The poll loop: fds to watch (appended), then each ready one handed back.
  void add_pollfds(std::vector<pollfd>* fds) const;
  // True when fd was one of this class's (handled).
  bool on_ready(int fd, short revents);
  // A child was reaped: true when it was a kernel. Its context starts a new one on the
  // next tick (not here: the runner may be in the middle of killing strays).
  bool on_reaped(pid_t pid, int status);
  // Timeouts, interrupt graces, kernels to start again.
  void tick(Clock::time_point now);
  Clock::time_point next_deadline() const;

  // Kernels' pids (each its process group): the runner's stray killer leaves them alone.
  std::vector<pid_t> pids() const;
  bool running() const;  // a cell runs somewhere (the memory guard watches then)
  // The memory guard killed a process of this process group or session: the run there
  // is reported as OOM-killed. True when it was a kernel's.
  bool oom_killed(pid_t pgrp, pid_t sid, const std::string& message);
  // Memory limit of the run in progress with the highest one (0: none).
  int64_t memory_limit() const;
  // A new agent took the channel: the earlier agent's ids mean nothing to it, so running
  // runs get ids from next_id (events of theirs are dropped) and waiters are forgotten.
  void reassign_ids(const std::function<uint64_t()>& next_id);

 private:
  struct Run;
  struct Context;
  Context* find(const std::string& context);
  Context* find_run(uint64_t run_id, Run** run);
  int launch(Context& c);
  void begin_next(Context& c);
  void flush_cell(Context& c);
  void read_channel(Context& c);
  void on_kernel_line(Context& c, std::string_view line);
  void read_output(Context& c, int stream, short revents);
  void drain_output(Context& c);
  void finish_run(Context& c, int exit_code, int signal);
  void end_run(Context& c, const std::string& name, const std::string& why);
  // Returns false when the context is gone (it never became ready).
  bool kernel_died(Context& c, int status);
  void fail_waiters(Context& c, int err, const std::string& why);
  void send_result(uint64_t id);
  void send_error(uint64_t id, int err, const std::string& message);

  Spawner& spawner_;
  Send send_;
  std::map<std::string, std::unique_ptr<Context>> contexts_;
};

}  // namespace swissbox::init
