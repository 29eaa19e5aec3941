// swissbox-init: the first process of every sandbox. Serves the runner protocol
// (common/runner_protocol.h) on fd 0/1: runs commands in their own process groups with
// timeouts and output caps, reaps every zombie, and reads/writes files inside the sandbox.
// Single-threaded poll loop: no command may block another; only a write to the agent may
// wait, and the agent always reads.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/limits.h"
#include "common/runner_protocol.h"
#include "common/unique_fd.h"
#include "runner/contexts.h"
#include "runner/control.h"
#include "runner/files.h"
#include "runner/memory_guard.h"
#include "runner/proc.h"
#include "runner/spawner.h"
#include "runner/watches.h"
#include "runner/workers.h"

namespace {

namespace proto = swissbox::proto;
using namespace swissbox::init;

using json = nlohmann::json;
using swissbox::unique_fd;
using Clock = std::chrono::steady_clock;

constexpr size_t kReadChunk = 64 * 1024;
constexpr auto kDrainGrace = std::chrono::milliseconds(100);
// How long the output of a command that ended while its reader was paused (a slow SSE
// client) may wait to be read before the rest is dropped.
constexpr auto kPausedDrainGrace = std::chrono::seconds(30);

// For the runner's pipe ends, which carry no other status flag: no F_GETFL first.
void set_nonblock(int fd) { fcntl(fd, F_SETFL, O_NONBLOCK); }

struct Command {
  uint64_t id = 0;
  pid_t pid = -1;
  unique_fd in, out, err;
  std::string pending_in;
  bool in_eof = false;
  // A language worker's program channel: the header line and the program's bytes go there
  // first; the request's input stream carries program_left more program bytes, then stdin.
  unique_fd program;
  std::string pending_program;
  size_t program_left = 0;
  bool program_sent = false;
  std::string program_reply;  // what the worker wrote back (its exit report)
  std::optional<swissbox::init::Language> language;
  std::vector<std::string> env;  // for the worker that replaces this one (keep_worker)
  bool keep_worker = false;
  size_t cap = swissbox::limits::kDefaultOutputCap;
  size_t sent[2] = {0, 0};
  bool truncated = false;
  bool background = false;
  bool pty = false;  // out is a PTY's runner side (in a duplicate of it)
  bool timed_out = false;
  bool oom_killed = false;
  bool exited = false;
  // The agent's client is behind: the pipes are not read, so the command blocks on its next
  // write once they are full (backpressure, op pause/resume).
  bool paused = false;
  int status = 0;
  rusage usage{};
  // A worker's CPU time when it got the program (its start-up is not the program's), and
  // when it reported the program's end (before the process is reaped).
  double cpu_before_ms = 0;
  std::optional<double> cpu_at_end_ms;
  Clock::time_point start;
  Clock::time_point deadline = Clock::time_point::max();
  Clock::time_point finalize_by = Clock::time_point::max();
};

class Runner {
 public:
  Runner() {
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    sigchld_.reset(signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
    signal(SIGPIPE, SIG_IGN);
    // Orphans of our commands come to us even when we are not PID 1 (tests on the host).
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    // In a sandbox the runner is root and commands run as --user: they cannot signal,
    // trace or open it. Not dumpable as well, for a runner started without --user (and
    // gVisor checks dumpability for ptrace and /proc/<pid>/mem). Its channel is a socket,
    // which nobody can reopen through /proc/1/fd (agent/runtime/runtime.h).
    prctl(PR_SET_DUMPABLE, 0);
    spawner_.set_user(g_uid, g_gid);
    fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);
    if (self_ == 1) attach_.listen();
  }

  int run() {
    // The secret goes to the agent on the channel runsc gave us, which nothing else in the
    // sandbox can read or write; a later bridge must present it (AttachListener).
    send(proto::hello_event(getpid(), attach_.secret(), std::nullopt));
    spawner_.prepare();
    char buf[kReadChunk];
    for (;;) {
      std::vector<pollfd> fds;
      // Commands: stream 0/1 = out/err, 2 = stdin, 3 = program. Runner: 0 = control,
      // 1 = SIGCHLD, 2 = a starting worker's channel, kAttachFd = the reattach listener's
      // or a candidate's, kContextFd = a context's, kWatchFd = a watch's.
      std::vector<std::pair<Command*, int>> owners;
      if (!control_eof_) fds.push_back({g_in_fd, POLLIN, 0}), owners.push_back({nullptr, 0});
      attach_.add_pollfds(&fds, /*orphaned=*/control_eof_ || g_out_fd < 0);
      owners.resize(fds.size(), {nullptr, kAttachFd});
      fds.push_back({sigchld_.get(), POLLIN, 0});
      owners.push_back({nullptr, 1});
      for (auto& [id, c] : commands_) {
        if (c.out && !c.paused) fds.push_back({c.out.get(), POLLIN, 0}), owners.push_back({&c, 0});
        if (c.err && !c.paused) fds.push_back({c.err.get(), POLLIN, 0}), owners.push_back({&c, 1});
        if (c.in && !c.pending_in.empty()) {
          fds.push_back({c.in.get(), POLLOUT, 0}), owners.push_back({&c, 2});
        }
        if (c.program && !c.pending_program.empty()) {
          fds.push_back({c.program.get(), POLLOUT, 0}), owners.push_back({&c, 3});
        } else if (c.program && c.program_sent && !c.exited) {
          fds.push_back({c.program.get(), POLLIN, 0}), owners.push_back({&c, 4});
        }
      }
      for (auto& [lang, w] : idle_workers_) {
        if (!w.ready) fds.push_back({w.channel.get(), POLLIN, 0}), owners.push_back({nullptr, 2});
      }
      contexts_.add_pollfds(&fds);
      owners.resize(fds.size(), {nullptr, kContextFd});
      watches_.add_pollfds(&fds);
      owners.resize(fds.size(), {nullptr, kWatchFd});
      int n = poll(fds.data(), fds.size(), next_timeout_ms());
      if (n < 0 && errno != EINTR) return 1;
      for (size_t i = 0; n > 0 && i < fds.size(); ++i) {
        if (fds[i].revents == 0) continue;
        auto [cmd, stream] = owners[i];
        if (cmd == nullptr && fds[i].fd == g_in_fd && !control_eof_) {
          read_control(buf);
        } else if (cmd == nullptr && stream == kAttachFd) {
          // A candidate that proves itself replaces commands_ (new ids): the pointers this
          // round collected are stale, so the round ends here.
          if (auto proven = attach_.on_ready(fds[i].fd, buf, kReadChunk)) {
            become_controller(std::move(*proven));
            break;
          }
        } else if (cmd == nullptr && stream == 2) {
          worker_loaded(fds[i].fd);
        } else if (cmd == nullptr && stream == kContextFd) {
          contexts_.on_ready(fds[i].fd, fds[i].revents);
        } else if (cmd == nullptr && stream == kWatchFd) {
          watches_.on_ready(fds[i].fd);
        } else if (cmd == nullptr) {
          reap();
        } else if (stream == 2) {
          flush_stdin(*cmd);
        } else if (stream == 3) {
          flush_program(*cmd);
        } else if (stream == 4) {
          read_program_reply(*cmd, buf);
        } else {
          read_output(*cmd, stream, buf, fds[i].revents);
        }
      }
      tick();
    }
  }

 private:
  void read_control(char* buf) {
    for (;;) {
      ssize_t r = read(g_in_fd, buf, kReadChunk);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return;  // EAGAIN
      if (r == 0) {
        // The agent closed its end. In a sandbox (PID 1) running commands go on and the
        // sandbox waits for the agent; anywhere else (tests on the host) that is the end.
        control_eof_ = true;
        g_out_fd = -1;
        watches_.clear();  // their clients were the agent's
        if (getpid() != 1) {
          for (auto& [cid, c] : commands_) kill(-c.pid, SIGKILL);
          _exit(0);
        }
        return;
      }
      decoder_.feed(buf, r);
      while (auto frame = decoder_.next()) handle(*frame);
      if (!decoder_.error().empty()) {
        send(proto::fatal_event(decoder_.error()));
        control_eof_ = true;
        return;
      }
    }
  }

  // The proven bridge is the control channel from now on. Commands of the previous agent
  // keep running, but their ids meant something only to it: they get ids no agent uses and
  // their events are dropped by the new one.
  void become_controller(AttachListener::Proven c) {
    controller_ = std::move(c.fd);  // closes the previous bridge's connection, if any
    g_in_fd = g_out_fd = controller_.get();
    control_eof_ = false;
    decoder_ = std::move(c.decoder);  // may hold the agent's next requests already
    std::map<uint64_t, Command> kept;
    for (auto& [id, c] : commands_) {
      c.id = kOrphanIds + orphan_seq_++;
      kept.emplace(c.id, std::move(c));
    }
    commands_ = std::move(kept);
    contexts_.reassign_ids([this] { return kOrphanIds + orphan_seq_++; });
    watches_.clear();
    send(proto::hello_event(getpid(), "", commands_.size()));
    while (auto frame = decoder_.next()) handle(*frame);
  }

  void handle(swissbox::proto::Frame& f) {
    const json& h = f.header;
    uint64_t id = 0;
    // A malformed request is answered as one; it never ends PID 1 (and with it the sandbox).
    try {
      auto id_it = h.find("id");
      if (id_it != h.end() && id_it->is_number_unsigned()) id = id_it->get<uint64_t>();
      std::string op = h.value("op", "");
      if (op == "attach") return;  // the bridge's proof, already checked: nothing to answer
      if (op == "ping") return send_result(id, {{"pid", getpid()}});
      std::string error;
      if (op == "exec") {
        auto exec = proto::decode_exec(h, &error);
        if (!exec) return send_error(id, EINVAL, error);
        if (!exec->language.empty()) return start_program(id, *exec, std::move(f.payload));
        return start_exec(id, *exec, std::move(f.payload));
      }
      if (op == "context_start") {
        auto start = proto::decode_context_start(h, &error);
        if (!start) return send_error(id, EINVAL, error);
        start->cwd = resolve(start->cwd.empty() ? g_workspace : start->cwd);
        return contexts_.start(id, *start);
      }
      if (op == "context_run") {
        auto run = proto::decode_context_run(h, &error);
        if (!run) return send_error(id, EINVAL, error);
        if (self_ == 1) guard_.set_limit(run->memory_limit);
        if (!guarding()) guard_.defer(Clock::now());
        return contexts_.run(id, *run, std::move(f.payload));
      }
      if (op == "context_stop" || op == "context_restart") {
        auto context = proto::decode_context_name(h, &error);
        if (!context) return send_error(id, EINVAL, error);
        if (op == "context_stop") return contexts_.stop(id, *context);
        return contexts_.restart(id, *context);
      }
      if (op == "watch") {
        auto watch = proto::decode_watch(h, &error);
        if (!watch) return send_error(id, EINVAL, error);
        watch->path = resolve(watch->path);
        return watches_.start(id, *watch);
      }
      if (op == "unwatch") return (void)watches_.stop(id);
      if (op == "prepare") {
        auto prepare = proto::decode_prepare(h, &error);
        if (!prepare) return send_error(id, EINVAL, error);
        return prepare_workers(id, *prepare);
      }
      if (op == "stdin") return feed_stdin(id, h, std::move(f.payload));
      if (op == "signal") {
        if (contexts_.interrupt(id)) return;  // a cell is interrupted, whatever the signal
        return signal_command(id, h.value("signal", SIGTERM));
      }
      if (op == "resize") return resize_command(id, h);
      if (op == "pause" || op == "resume") {
        if (contexts_.pause(id, op == "pause") || watches_.pause(id, op == "pause")) return;
        return pause_command(id, op == "pause");
      }
      if (FileOps::handles(op)) return files_.handle(op, id, h, f.payload);
      send_error(id, EINVAL, "unknown op '" + op + "'");
    } catch (const std::exception& e) {
      send_error(id, EINVAL, std::string("bad request: ") + e.what());
    }
  }

  // A request's environment as K=V entries.
  static std::vector<std::string> env_entries(const std::map<std::string, std::string>& env) {
    std::vector<std::string> out;
    for (const auto& [k, v] : env) out.push_back(k + "=" + v);
    return out;
  }

  // A request's working directory: its cwd, resolved, or the workspace.
  static std::string working_directory(const proto::ExecOp& op) {
    return resolve(op.cwd.empty() ? g_workspace : op.cwd);
  }

  // What every command takes from its exec request.
  Command new_command(uint64_t id, const proto::ExecOp& op) {
    Command c;
    c.id = id;
    c.cap = std::min<size_t>(op.output_cap, swissbox::limits::kMaxOutputCap);
    c.background = op.background;
    c.start = Clock::now();
    // The guard reads gVisor's /proc/meminfo; on a host (tests) it would count the machine.
    if (self_ == 1) guard_.set_limit(op.memory_limit);
    // An idle sandbox (the runner, idle workers) is far below its limit: the first reading
    // can wait for the guard's interval, so a short command costs no read of /proc/meminfo.
    if (!guarding()) guard_.defer(c.start);
    if (op.timeout_ms > 0) c.deadline = c.start + std::chrono::milliseconds(op.timeout_ms);
    c.in_eof = op.stdin_eof;
    c.env = env_entries(op.env);
    return c;
  }

  // A command that could not start: answered like a shell, 127 for a missing program, 126
  // otherwise, the reason on stderr.
  void report_not_started(uint64_t id, int err, const std::string& what) {
    std::string msg = "swissbox-init: " + what + ": " + std::strerror(err) + "\n";
    send({{"ev", "stderr"}, {"id", id}}, msg);
    proto::ExitStatus status;
    status.exit_code = err == ENOENT ? 127 : 126;
    send(proto::exit_event(id, status));
  }

  Command& add_command(Command c, swissbox::init::Launched& proc, std::string input) {
    c.pid = proc.pid;
    c.in = std::move(proc.in);
    c.out = std::move(proc.out);
    c.err = std::move(proc.err);
    set_nonblock(c.in.get());
    set_nonblock(c.out.get());
    set_nonblock(c.err.get());
    uint64_t id = c.id;
    auto& stored = commands_[id] = std::move(c);
    take_input(stored, std::move(input));
    return stored;
  }

  void start_exec(uint64_t id, const proto::ExecOp& op, std::string stdin_data) {
    if (commands_.count(id)) return send_error(id, EEXIST, "exec id in use");
    const std::string& argv0 = op.argv[0];  // decode_exec refuses an empty argv
    std::string cwd = working_directory(op);
    Command c = new_command(id, op);
    swissbox::init::Launched proc;
    swissbox::init::LaunchRequest req{op.argv, c.env, cwd, static_cast<rlim_t>(op.pids_limit)};
    unique_fd master, terminal;
    if (op.pty_cols > 0) {
      if (int err = open_pty(op.pty_cols, op.pty_rows, &master, &terminal)) {
        return report_not_started(id, err, "a terminal");
      }
      req.tty = terminal.get();
    }
    if (int err = spawner_.launch(req, &proc)) {
      return report_not_started(id, err, access(cwd.c_str(), X_OK) != 0 ? "cwd " + cwd : argv0);
    }
    if (master) {
      // The terminal's output is the command's stdout; its input the command's stdin.
      proc.in.reset(fcntl(master.get(), F_DUPFD_CLOEXEC, 0));
      proc.out = std::move(master);
      c.pty = true;
    }
    add_command(std::move(c), proc, std::move(stdin_data));
    spawner_.prepare();  // while the command loads, not on the next one's path
  }

  // A program in a language with workers: the idle worker runs it when it can (same
  // start-up environment), a new one otherwise. The request's input stream starts with the
  // program (code_bytes), then stdin.
  void start_program(uint64_t id, const proto::ExecOp& op, std::string input) {
    using namespace swissbox::init;
    if (commands_.count(id)) return send_error(id, EEXIST, "exec id in use");
    auto lang = language_from_name(op.language);
    if (!lang) return send_error(id, EINVAL, "exec: no worker for language '" + op.language + "'");
    std::string cwd = working_directory(op);
    Command c = new_command(id, op);
    c.language = lang;
    c.keep_worker = op.keep_worker;
    c.program_left = op.code_bytes;
    Worker w;
    auto idle = idle_workers_.find(*lang);
    if (idle != idle_workers_.end() && worker_env_compatible(idle->second.env, c.env)) {
      w = std::move(idle->second);
      idle_workers_.erase(idle);
    } else if (int err = start_worker(spawner_, *lang, c.env, cwd, &w)) {
      return report_not_started(id, err, access(cwd.c_str(), X_OK) != 0 ? "cwd " + cwd
                                                                         : worker_argv(*lang)[0]);
    }
    // Workers start without the task limit (a kept one serves later requests); the program
    // gets the request's before it gets its code.
    if (rlim_t nproc = static_cast<rlim_t>(op.pids_limit); nproc > 0) {
      rlimit both{nproc, nproc};
      if (prlimit(w.io.pid, RLIMIT_NPROC, &both, nullptr) != 0) {
        int err = errno;
        kill(-w.io.pid, SIGKILL);
        return report_not_started(id, err, "task limit of the worker");
      }
    }
    if (auto loaded = process_cpu_ms(w.io.pid)) c.cpu_before_ms = *loaded;
    c.program = std::move(w.channel);
    c.pending_program = worker_header(*lang, cwd, c.env);
    Command& stored = add_command(std::move(c), w.io, std::move(input));
    flush_program(stored);
  }

  // Starts idle workers for the languages asked for; answers once all of them have loaded
  // their runtime (or one failed).
  void prepare_workers(uint64_t id, const proto::PrepareOp& op) {
    using namespace swissbox::init;
    std::vector<std::string> env = env_entries(op.env);
    std::set<Language> waiting;
    for (const auto& name : op.languages) {
      auto lang = language_from_name(name);
      if (!lang) return send_error(id, EINVAL, "prepare: no worker for language '" + name + "'");
      if (int err = add_idle_worker(*lang, env)) {
        return send_error(id, err, std::string("start a ") + name + " worker");
      }
      if (!idle_workers_.at(*lang).ready) waiting.insert(*lang);
    }
    if (waiting.empty()) return send_result(id);
    preparing_[id] = std::move(waiting);
  }

  int add_idle_worker(swissbox::init::Language lang, const std::vector<std::string>& env) {
    if (idle_workers_.count(lang)) return 0;
    swissbox::init::Worker w;
    if (int err = start_worker(spawner_, lang, env, g_workspace, &w)) return err;
    idle_workers_.emplace(lang, std::move(w));
    return 0;
  }

  void worker_loaded(int channel_fd) {
    for (auto it = idle_workers_.begin(); it != idle_workers_.end(); ++it) {
      if (it->second.channel.get() != channel_fd) continue;
      bool dead = false;
      if (read_ready(it->second, &dead)) return prepared(it->first, 0);
      if (dead) {
        kill(-it->second.io.pid, SIGKILL);  // reaped as usual; it is nobody's command
        auto lang = it->first;
        idle_workers_.erase(it);
        prepared(lang, ECHILD);
      }
      return;
    }
  }

  // A worker of `lang` loaded (err 0) or died: answers the prepare requests it completes.
  void prepared(swissbox::init::Language lang, int err) {
    for (auto it = preparing_.begin(); it != preparing_.end();) {
      if (!it->second.count(lang)) {
        ++it;
        continue;
      }
      it->second.erase(lang);
      if (err != 0) {
        send_error(it->first, err,
                   std::string("the ") + swissbox::init::language_name(lang) +
                       " worker exited while loading");
        it = preparing_.erase(it);
      } else if (it->second.empty()) {
        send_result(it->first);
        it = preparing_.erase(it);
      } else {
        ++it;
      }
    }
  }

  void feed_stdin(uint64_t id, const json& h, std::string data) {
    auto it = commands_.find(id);
    if (it == commands_.end()) return;
    if (h.value("eof", false)) it->second.in_eof = true;
    take_input(it->second, std::move(data));
  }

  // The request's input stream: a worker's program first, then the command's stdin.
  void take_input(Command& c, std::string data) {
    size_t n = std::min(c.program_left, data.size());
    if (n > 0) {
      c.pending_program.append(data, 0, n);
      c.program_left -= n;
      data.erase(0, n);
      flush_program(c);
    }
    if (c.in) c.pending_in += data;
    flush_stdin(c);
  }

  // Everything of the program written: the worker sees EOF and runs it.
  void flush_program(Command& c) {
    while (!c.pending_program.empty() && c.program) {
      ssize_t w = write(c.program.get(), c.pending_program.data(), c.pending_program.size());
      if (w < 0 && errno == EINTR) continue;
      if (w < 0 && errno == EAGAIN) return;
      if (w < 0) {  // the worker is gone; the reaper reports how it ended
        c.pending_program.clear();
        c.program.reset();
        return;
      }
      c.pending_program.erase(0, w);
    }
    // The channel stays open until the command ends: closing it while the worker's "R" is
    // unread would reset the connection under the worker's reads.
    if (c.program && !c.program_sent && c.pending_program.empty() && c.program_left == 0) {
      shutdown(c.program.get(), SHUT_WR);
      c.program_sent = true;
    }
  }

  void flush_stdin(Command& c) {
    while (!c.pending_in.empty() && c.in) {
      ssize_t w = write(c.in.get(), c.pending_in.data(), c.pending_in.size());
      if (w < 0 && errno == EINTR) continue;
      if (w < 0 && errno == EAGAIN) return;
      if (w < 0) {  // the command closed its stdin
        c.pending_in.clear();
        c.in.reset();
        return;
      }
      c.pending_in.erase(0, w);
    }
    if (c.pending_in.empty() && c.in_eof) c.in.reset();
  }

  void read_program_reply(Command& c, char* buf) {
    for (;;) {
      ssize_t r = read(c.program.get(), buf, kReadChunk);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && errno == EAGAIN) break;
      if (r <= 0) {  // the worker closed it (or died): the reaper reports the exit
        c.program.reset();
        return;
      }
      c.program_reply.append(buf, r);  // "R", then "X<code>\n": only the end matters
      if (c.program_reply.size() > 64) c.program_reply.erase(0, c.program_reply.size() - 64);
    }
    if (auto code = swissbox::init::reported_exit(c.program_reply)) program_over(c, *code, buf);
  }

  // The worker reported its program's end: all its output is in the pipes. The command is
  // answered now; the process's teardown (and anything it left, unless background) goes on
  // without holding up the answer.
  void program_over(Command& c, int code, char* buf) {
    c.cpu_at_end_ms = process_cpu_ms(c.pid);
    c.usage.ru_maxrss = proc_rss_kb(c.pid);
    read_output(c, 0, buf);
    read_output(c, 1, buf);
    c.out.reset();
    c.err.reset();
    c.program.reset();
    c.exited = true;
    c.status = code << 8;  // as wait() reports exit(code)
    on_leader_exit(c);
  }

  static double tv_ms(const timeval& tv) { return tv.tv_sec * 1000.0 + tv.tv_usec / 1000.0; }

  // A PTY of cols × rows: the runner's side and the terminal the command gets.
  static int open_pty(uint16_t cols, uint16_t rows, unique_fd* master, unique_fd* terminal) {
    master->reset(posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (!*master || grantpt(master->get()) != 0 || unlockpt(master->get()) != 0) return errno;
    char name[64];
    if (ptsname_r(master->get(), name, sizeof name) != 0) return errno;
    terminal->reset(open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (!*terminal) return errno;
    resize_pty(master->get(), cols, rows);
    return 0;
  }

  static void resize_pty(int master, uint16_t cols, uint16_t rows) {
    winsize ws{};
    ws.ws_col = cols;
    ws.ws_row = rows;
    ioctl(master, TIOCSWINSZ, &ws);
  }

  void resize_command(uint64_t id, const json& h) {
    auto it = commands_.find(id);
    if (it == commands_.end() || !it->second.pty || !it->second.out) return;
    auto cols = h.value("cols", 0), rows = h.value("rows", 0);
    if (cols < 1 || cols > 4096 || rows < 1 || rows > 4096) return;
    resize_pty(it->second.out.get(), static_cast<uint16_t>(cols), static_cast<uint16_t>(rows));
  }

  void signal_command(uint64_t id, int sig) {
    auto it = commands_.find(id);
    if (it != commands_.end() && !it->second.exited) kill(-it->second.pid, sig);
  }

  void pause_command(uint64_t id, bool pause) {
    auto it = commands_.find(id);
    if (it == commands_.end()) return;
    Command& c = it->second;
    c.paused = pause;
    if (!pause && c.exited) c.finalize_by = std::min(c.finalize_by, Clock::now() + kDrainGrace);
  }

  // Reads what the pipe holds. From poll (revents given): a hang-up without data is EOF
  // without a read, and a short read ends the turn (poll reports what arrives later);
  // without revents it reads until EAGAIN or EOF (the final drain).
  void read_output(Command& c, int stream, char* buf, short revents = 0) {
    unique_fd& fd = stream == 0 ? c.out : c.err;
    if ((revents & (POLLHUP | POLLIN)) == POLLHUP) return fd.reset();
    for (;;) {
      ssize_t r = read(fd.get(), buf, kReadChunk);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && errno == EAGAIN) return;
      if (r <= 0) {
        fd.reset();
        return;
      }
      // Past the cap the bytes are drained and dropped, so the command never blocks on a
      // full pipe and the agent never buffers more than the cap.
      size_t room = c.cap - std::min(c.cap, c.sent[stream]);
      size_t n = std::min(room, static_cast<size_t>(r));
      if (n < static_cast<size_t>(r)) c.truncated = true;
      if (n > 0) {
        c.sent[stream] += n;
        send({{"ev", stream == 0 ? "stdout" : "stderr"}, {"id", c.id}}, std::string_view(buf, n));
      }
      if (revents != 0 && r < static_cast<ssize_t>(kReadChunk)) return;
    }
  }

  void reap() {
    // Only empties the signalfd: wait4 below finds every child that ended.
    signalfd_siginfo si[16];
    while (read(sigchld_.get(), si, sizeof(si)) == static_cast<ssize_t>(sizeof(si))) {
    }
    for (;;) {
      int status = 0;
      rusage ru{};
      pid_t pid = wait4(-1, &status, WNOHANG, &ru);
      if (pid <= 0) return;
      spawner_.on_reaped(pid);
      if (contexts_.on_reaped(pid, status)) continue;
      idle_worker_gone(pid);
      for (auto& [id, c] : commands_) {
        if (c.pid != pid || c.exited) continue;  // exited: its worker reported it already
        c.exited = true;
        c.status = status;
        c.usage = ru;
        on_leader_exit(c);
      }
    }
  }

  void idle_worker_gone(pid_t pid) {
    for (auto it = idle_workers_.begin(); it != idle_workers_.end(); ++it) {
      if (it->second.io.pid != pid) continue;
      auto lang = it->first;
      idle_workers_.erase(it);
      return prepared(lang, ECHILD);
    }
  }

  void on_leader_exit(Command& c) {
    if (c.background) {
      keep_background_orphans();
    } else {
      kill(-c.pid, SIGKILL);
      kill_strays();
    }
    c.in.reset();
    c.finalize_by = Clock::now() + (c.paused ? kPausedDrainGrace : kDrainGrace);
  }

  // A background command's leader is gone: the processes it left became the runner's
  // children as it died, and they are the command's to keep. Kept by pid, because a daemon
  // may not have left the command's group yet (setsid, nohup and sleep exec one after the
  // other): once it makes its own group and session, their id is its pid. Processes in a
  // running foreground command's group are that command's.
  void keep_background_orphans() {
    std::set<pid_t> known = {spawner_.spare_pid()};
    std::set<pid_t> foreground_groups;
    for (auto& [lang, w] : idle_workers_) known.insert(w.io.pid);
    for (pid_t kernel : contexts_.pids()) known.insert(kernel);
    for (auto& [id, c] : commands_) {
      known.insert(c.pid);
      if (!c.exited && !c.background) foreground_groups.insert(c.pid);
    }
    for (pid_t pid : children()) {
      if (known.count(pid) || kept_orphans_.count(pid)) continue;
      auto st = proc_stat(pid);
      if (st && !foreground_groups.count(st->pgrp)) kept_orphans_.insert(pid);
    }
  }

  // Processes that left their command's group (setsid, setpgid) end up as children of the
  // runner once their parent dies; they are killed when a foreground command ends, unless
  // they belong to a running command, a background one, or are the spare. Process groups of
  // background commands stay protected after their leader is gone, as long as some process
  // of the group lives, and so do the processes a background command left (and their
  // groups and sessions).
  void kill_strays() {
    std::erase_if(kept_orphans_, [](pid_t p) { return kill(p, 0) != 0 && errno == ESRCH; });
    std::set<pid_t> protect = background_groups_;
    protect.insert(kept_orphans_.begin(), kept_orphans_.end());
    for (auto& [lang, w] : idle_workers_) protect.insert(w.io.pid);
    for (pid_t kernel : contexts_.pids()) protect.insert(kernel);  // and their groups
    for (auto& [id, c] : commands_) {
      if (!c.exited || c.background) protect.insert(c.pid);
    }
    for (int round = 0; round < 3; ++round) {
      bool killed = false;
      for (pid_t pid : children()) {
        // The spare may not have made its own group yet.
        if (pid == spawner_.spare_pid() || protect.count(pid)) continue;
        auto st = proc_stat(pid);
        if (!st || protect.count(st->pgrp) || protect.count(st->sid)) continue;
        kill(pid, SIGKILL);
        killed = true;
      }
      if (!killed) break;
      usleep(2000);
      reap_strays();
    }
    std::erase_if(background_groups_, [](pid_t g) { return kill(-g, 0) != 0 && errno == ESRCH; });
  }

  // The runner's own children: one read instead of a stat of every process in /proc.
  std::vector<pid_t> children() const {
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/task/%d/children", static_cast<int>(self_tid_));
    std::vector<pid_t> out;
    unique_fd fd(open(path, O_RDONLY | O_CLOEXEC));
    if (!fd) return out;
    std::string text;
    char buf[4096];
    for (ssize_t n; (n = read(fd.get(), buf, sizeof(buf))) > 0;) {
      text.append(buf, n);
      if (n < static_cast<ssize_t>(sizeof(buf))) break;  // a short read is the whole file
    }
    for (const char* p = text.c_str(); *p;) {
      char* end;
      long pid = strtol(p, &end, 10);
      if (end == p) break;
      out.push_back(static_cast<pid_t>(pid));
      p = end;
    }
    return out;
  }

  void reap_strays() {
    for (;;) {
      int status;
      pid_t pid = waitpid(-1, &status, WNOHANG);
      if (pid <= 0) return;
      spawner_.on_reaped(pid);
      if (contexts_.on_reaped(pid, status)) continue;
      for (auto& [id, c] : commands_) {
        if (c.pid == pid && !c.exited) c.exited = true, c.status = status;
      }
    }
  }

  bool guarding() const {
    return !commands_.empty() || !background_groups_.empty() || contexts_.running();
  }

  // Kills the biggest process once the sandbox's code uses more than its memory limit; the
  // command it belongs to (by process group or session) is reported as OOM-killed.
  void guard_memory(Clock::time_point now) {
    if (!guarding()) return;
    if (now < guard_.next_check()) return;
    pid_t victim = guard_.check(now, {self_, spawner_.spare_pid()});
    if (victim <= 0) return;
    auto st = proc_stat(victim);
    pid_t pgrp = st ? st->pgrp : 0, sid = st ? st->sid : 0;
    kill(victim, SIGKILL);
    std::string msg = "swissbox-init: killed process " + std::to_string(victim) +
                      ": the sandbox's memory limit of " + std::to_string(guard_.limit() >> 20) +
                      " MiB was reached\n";
    if (contexts_.oom_killed(pgrp, sid, msg)) return;
    for (auto& [id, c] : commands_) {
      if (c.pid != pgrp && c.pid != sid) continue;
      c.oom_killed = true;
      kill(-c.pid, SIGKILL);
      if (c.sent[1] < c.cap) send({{"ev", "stderr"}, {"id", id}}, msg);
    }
  }

  void tick() {
    auto now = Clock::now();
    guard_memory(now);
    contexts_.tick(now);
    attach_.expire(now);
    std::vector<uint64_t> done;
    for (auto& [id, c] : commands_) {
      if (!c.exited && now >= c.deadline) {
        c.timed_out = true;
        kill(-c.pid, SIGKILL);
        c.deadline = Clock::time_point::max();
      }
      if (c.exited && ((!c.out && !c.err) || now >= c.finalize_by)) {
        if (c.paused && (c.out || c.err)) c.truncated = true;  // its reader never caught up
        done.push_back(id);
      }
    }
    for (uint64_t id : done) finish(commands_.at(id)), commands_.erase(id);
  }

  void finish(Command& c) {
    if (c.background) background_groups_.insert(c.pid);
    // A session's next program in this language finds a loaded worker.
    if (c.language && c.keep_worker) add_idle_worker(*c.language, c.env);
    auto dur = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - c.start);
    proto::ExitStatus status;
    status.exit_code = WIFEXITED(c.status) ? WEXITSTATUS(c.status) : -1;
    status.signal = WIFSIGNALED(c.status) ? WTERMSIG(c.status) : 0;
    status.duration_ms = dur.count() / 1000.0;
    status.cpu_ms = std::max(0.0, c.cpu_at_end_ms.value_or(tv_ms(c.usage.ru_utime) + tv_ms(c.usage.ru_stime)) -
                                      c.cpu_before_ms);
    status.max_rss_kb = c.usage.ru_maxrss;
    status.timed_out = c.timed_out;
    status.oom_killed = c.oom_killed;
    status.truncated = c.truncated;
    send(proto::exit_event(c.id, status));
  }

  int next_timeout_ms() const {
    auto now = Clock::now();
    auto next = Clock::time_point::max();
    for (auto& [id, c] : commands_) next = std::min({next, c.deadline, c.finalize_by});
    next = std::min(next, contexts_.next_deadline());
    if (guarding()) next = std::min(next, guard_.next_check());
    next = std::min(next, attach_.next_deadline());
    if (next == Clock::time_point::max()) return -1;
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count() + 1;
    return static_cast<int>(std::max<int64_t>(0, ms));
  }

  FileOps files_;
  unique_fd sigchld_;
  // The runner's pid and (single) thread id, asked once.
  const pid_t self_ = getpid();
  const pid_t self_tid_ = gettid();
  swissbox::init::Spawner spawner_;
  swissbox::init::MemoryGuard guard_;
  static constexpr int kContextFd = 5;  // a poll entry of contexts_
  swissbox::init::Contexts contexts_{
      spawner_, [](const json& h, std::string_view payload) { send(h, payload); }};
  static constexpr int kWatchFd = 6;  // a poll entry of watches_
  swissbox::init::Watches watches_{[](const json& h, std::string_view payload) { send(h, payload); }};
  bool control_eof_ = false;
  unique_fd controller_;  // a proven bridge's connection, once there was one
  static constexpr int kAttachFd = 7;  // a poll entry of attach_
  AttachListener attach_;
  static constexpr uint64_t kOrphanIds = uint64_t{1} << 62;
  uint64_t orphan_seq_ = 0;
  swissbox::proto::Decoder decoder_;
  std::map<uint64_t, Command> commands_;
  std::set<pid_t> background_groups_;
  std::set<pid_t> kept_orphans_;  // processes background commands left (keep_background_orphans)
  std::map<swissbox::init::Language, swissbox::init::Worker> idle_workers_;
  std::map<uint64_t, std::set<swissbox::init::Language>> preparing_;  // prepare requests
};

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && strcmp(argv[1], "--bridge") == 0) return bridge();
  // --user UID:GID: commands and file requests run as that user; the runner stays root
  // (inside gVisor) so that their code cannot signal it, trace it or open its fds.
  if (argc > 2 && strcmp(argv[1], "--user") == 0) {
    unsigned long uid = 0, gid = 0;
    if (sscanf(argv[2], "%lu:%lu", &uid, &gid) != 2 || uid == 0) {
      fprintf(stderr, "swissbox-init: --user needs UID:GID of a user other than root\n");
      return 2;
    }
    g_uid = static_cast<uid_t>(uid);
    g_gid = static_cast<gid_t>(gid);
  }
  if (const char* ws = getenv("SWISSBOX_WORKSPACE"); ws && ws[0] == '/') g_workspace = ws;
  Runner runner;
  return runner.run();
}
