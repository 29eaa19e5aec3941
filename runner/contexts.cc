#include "runner/contexts.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "runner/proc.h"

namespace swissbox::init {

using json = nlohmann::json;

namespace {

constexpr size_t kReadChunk = 64 * 1024;
constexpr size_t kMaxLoadError = 4096;  // what a kernel that failed to load said, kept

void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

std::string describe_exit(int status) {
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

}  // namespace

struct Contexts::Run {
  uint64_t id = 0;
  std::string code;
  std::map<std::string, std::string> env;
  int64_t timeout_ms = 0;
  int64_t memory_limit = 0;
  size_t cap = 0;
  size_t sent[2] = {0, 0};
  bool started = false;
  bool paused = false;
  bool raised = false;
  bool interrupted = false;  // SIGINT sent; killed at the deadline after it
  bool killed = false;       // SIGKILL sent (a cell that ignored the interrupt, or OOM)
  bool truncated = false;
  bool timed_out = false;
  bool oom_killed = false;
  double cpu_before_ms = 0;
  Clock::time_point start;
  Clock::time_point deadline = Clock::time_point::max();
};

struct Contexts::Context {
  std::string id;
  KernelLanguage language = KernelLanguage::kPython;
  std::string cwd;
  std::vector<std::string> env;  // K=V, the kernel's
  rlim_t pids_limit = 0;
  pid_t pid = -1;
  unique_fd chan, out, err;
  std::string inbox;      // an incomplete line from the kernel
  bool skipping = false;  // dropping the rest of an overlong line
  std::string outbox;     // the cell being written to the kernel
  bool ready = false;
  std::string load_error;         // the kernel's stderr before it was ready
  std::vector<uint64_t> waiters;  // start and restart requests answered at ready
  std::deque<Run> runs;           // the front one runs once started
  std::optional<int> died;        // reaped, not yet handled (tick)

  Run* running() { return !runs.empty() && runs.front().started ? &runs.front() : nullptr; }
  const char* name() const { return kernel_language_name(language); }
};

Contexts::Contexts(Spawner& spawner, Send send) : spawner_(spawner), send_(std::move(send)) {}

Contexts::~Contexts() {
  for (auto& [id, c] : contexts_) {
    if (c->pid > 0) kill(-c->pid, SIGKILL);
  }
}

Contexts::Context* Contexts::find(const std::string& context) {
  auto it = contexts_.find(context);
  return it == contexts_.end() ? nullptr : it->second.get();
}

Contexts::Context* Contexts::find_run(uint64_t run_id, Run** run) {
  for (auto& [id, c] : contexts_) {
    for (auto& r : c->runs) {
      if (r.id == run_id) return *run = &r, c.get();
    }
  }
  return nullptr;
}

void Contexts::send_result(uint64_t id) { send_(proto::result_event(id), {}); }

void Contexts::send_error(uint64_t id, int err, const std::string& message) {
  send_(proto::error_event(id, err, message), {});
}

int Contexts::launch(Context& c) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return errno;
  unique_fd mine(sv[0]), theirs(sv[1]);
  LaunchRequest req{kernel_argv(c.language), c.env, c.cwd, c.pids_limit};
  req.fd3 = theirs.get();
  Launched io;
  if (int err = spawner_.launch(req, &io)) return err;
  io.in.reset();  // a cell that reads stdin reads EOF: cells come on the channel
  c.pid = io.pid;
  c.chan = std::move(mine);
  c.out = std::move(io.out);
  c.err = std::move(io.err);
  for (int fd : {c.chan.get(), c.out.get(), c.err.get()}) set_nonblock(fd);
  c.ready = false;
  c.died.reset();
  c.inbox.clear();
  c.skipping = false;
  c.outbox.clear();
  c.load_error.clear();
  return 0;
}

void Contexts::start(uint64_t id, const proto::ContextStartOp& op) {
  KernelLanguage lang;
  if (!kernel_language_from_name(op.language, &lang)) {
    return send_error(id, EINVAL, "no context for language '" + op.language + "'");
  }
  if (contexts_.count(op.context)) return send_error(id, EEXIST, "context " + op.context + " exists");
  if (contexts_.size() >= limits::kMaxContexts) {
    return send_error(id, ENOSPC, "a sandbox has at most " + std::to_string(limits::kMaxContexts) + " contexts");
  }
  auto c = std::make_unique<Context>();
  c->id = op.context;
  c->language = lang;
  c->cwd = op.cwd;
  auto env = op.env;
  add_kernel_env(lang, &env);
  for (const auto& [k, v] : env) c->env.push_back(k + "=" + v);
  c->pids_limit = static_cast<rlim_t>(op.pids_limit);
  if (int err = launch(*c)) {
    std::string what = access(c->cwd.c_str(), X_OK) != 0 ? "cwd " + c->cwd
                                                         : std::string("start the ") + c->name() + " kernel";
    return send_error(id, err, what + ": " + strerror(err));
  }
  c->waiters.push_back(id);
  contexts_.emplace(op.context, std::move(c));
}

void Contexts::restart(uint64_t id, const std::string& context) {
  Context* c = find(context);
  if (!c) return send_error(id, ENOENT, "no context " + context);
  if (c->pid > 0) kill(-c->pid, SIGKILL);  // reaped as nobody's: the pid is forgotten here
  c->pid = -1;
  if (c->running()) end_run(*c, "ContextRestarted", "the context was restarted by request");
  if (int err = launch(*c)) {
    send_error(id, err, std::string("start the ") + c->name() + " kernel: " + strerror(err));
    fail_waiters(*c, err, "the context's kernel could not be started again");
    contexts_.erase(context);
    return;
  }
  c->waiters.push_back(id);
}

void Contexts::stop(uint64_t id, const std::string& context) {
  Context* c = find(context);
  if (!c) return send_error(id, ENOENT, "no context " + context);
  if (c->pid > 0) kill(-c->pid, SIGKILL);
  c->pid = -1;
  fail_waiters(*c, ECANCELED, "the context was stopped");
  while (!c->runs.empty()) {
    c->runs.front().started = true;
    end_run(*c, "ContextStopped", "the context was stopped");
  }
  contexts_.erase(context);
  send_result(id);
}

void Contexts::run(uint64_t id, const proto::ContextRunOp& op, std::string code) {
  Context* c = find(op.context);
  if (!c) return send_error(id, ENOENT, "no context " + op.context);
  Run r;
  r.id = id;
  r.code = std::move(code);
  r.env = op.env;
  r.timeout_ms = op.timeout_ms;
  r.memory_limit = op.memory_limit;
  r.cap = op.output_cap;
  r.start = Clock::now();
  c->runs.push_back(std::move(r));
  begin_next(*c);
}

void Contexts::begin_next(Context& c) {
  if (!c.ready || c.runs.empty() || c.runs.front().started) return;
  Run& r = c.runs.front();
  r.started = true;
  // The timeout counts from the request, waiting behind another cell included.
  if (r.timeout_ms > 0) r.deadline = r.start + std::chrono::milliseconds(r.timeout_ms);
  if (auto cpu = process_cpu_ms(c.pid)) r.cpu_before_ms = *cpu;
  c.outbox = kernel_cell(c.language, r.code, r.env);
  r.code.clear();
  flush_cell(c);
}

void Contexts::flush_cell(Context& c) {
  while (!c.outbox.empty() && c.chan) {
    ssize_t w = write(c.chan.get(), c.outbox.data(), c.outbox.size());
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) return;
    if (w < 0) return c.outbox.clear();  // the kernel is gone; its reaping ends the run
    c.outbox.erase(0, w);
  }
}

bool Contexts::interrupt(uint64_t run_id) {
  Run* r = nullptr;
  Context* c = find_run(run_id, &r);
  if (!c) return false;
  if (!r->started) {
    // Not begun: it leaves the queue, answered as a cell cancelled before it ran.
    auto it = std::find_if(c->runs.begin(), c->runs.end(),
                           [run_id](const Run& q) { return q.id == run_id; });
    proto::ExitStatus status;
    status.signal = SIGINT;
    send_(proto::exit_event(run_id, status), {});
    c->runs.erase(it);
    return true;
  }
  if (!r->interrupted && c->pid > 0) {
    kill(-c->pid, SIGINT);
    r->interrupted = true;
    r->deadline = Clock::now() + kInterruptGrace;
  }
  return true;
}

bool Contexts::pause(uint64_t run_id, bool on) {
  Run* r = nullptr;
  if (!find_run(run_id, &r)) return false;
  r->paused = on;
  return true;
}

void Contexts::add_pollfds(std::vector<pollfd>* fds) const {
  for (const auto& [id, c] : contexts_) {
    if (c->chan) {
      short events = POLLIN;
      if (!c->outbox.empty()) events |= POLLOUT;
      fds->push_back({c->chan.get(), events, 0});
    }
    bool paused = !c->runs.empty() && c->runs.front().started && c->runs.front().paused;
    if (paused) continue;  // the kernel blocks on its next write: backpressure
    if (c->out) fds->push_back({c->out.get(), POLLIN, 0});
    if (c->err) fds->push_back({c->err.get(), POLLIN, 0});
  }
}

bool Contexts::on_ready(int fd, short revents) {
  for (auto& [id, c] : contexts_) {
    if (c->chan && fd == c->chan.get()) {
      if (revents & POLLOUT) flush_cell(*c);
      if (revents & (POLLIN | POLLHUP | POLLERR)) read_channel(*c);
      return true;
    }
    if ((c->out && fd == c->out.get()) || (c->err && fd == c->err.get())) {
      read_output(*c, fd == c->out.get() ? 0 : 1, revents);
      return true;
    }
  }
  return false;
}

void Contexts::read_channel(Context& c) {
  char buf[kReadChunk];
  for (;;) {
    ssize_t n = read(c.chan.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
      // The kernel closed its channel (a cell closed fd 3): it can no longer say when a
      // cell ends, so it is ended and started again.
      c.chan.reset();
      if (c.pid > 0) kill(-c.pid, SIGKILL);
      return;
    }
    std::string_view data(buf, n);
    while (!data.empty()) {
      auto nl = data.find('\n');
      if (nl == std::string_view::npos) {
        if (!c.skipping) c.inbox.append(data);
        if (c.inbox.size() > kMaxKernelLine) {
          c.inbox.clear();
          c.skipping = true;
          if (Run* r = c.running()) r->truncated = true;
        }
        break;
      }
      if (!c.skipping) {
        c.inbox.append(data.substr(0, nl));
        std::string line = std::move(c.inbox);
        c.inbox.clear();
        on_kernel_line(c, line);
      }
      c.skipping = false;
      data.remove_prefix(nl + 1);
    }
  }
}

void Contexts::on_kernel_line(Context& c, std::string_view line) {
  json m = json::parse(line, nullptr, false);
  if (!m.is_object()) return;
  auto t = m.find("t");
  if (t == m.end() || !t->is_string()) return;
  const std::string& type = t->get_ref<const std::string&>();
  if (type == "ready") {
    if (c.ready) return;
    c.ready = true;
    c.load_error.clear();
    for (uint64_t id : c.waiters) send_result(id);
    c.waiters.clear();
    return begin_next(c);
  }
  Run* r = c.running();
  if (!r) return;  // nothing of a cell's: a kernel may not speak out of turn
  // What the cell printed before it showed a value or raised is in the pipes already (the
  // kernel writes them unbuffered): it goes first, so that the client sees the cell's order.
  drain_output(c);
  if (type == "display") {
    std::string payload = proto::display_payload(m.value("data", json())).dump(
        -1, ' ', false, json::error_handler_t::replace);
    // A value counts against the run's stdout cap; one too large for a frame is dropped.
    if (payload.size() > proto::kMaxPayload || r->sent[0] + payload.size() > r->cap) {
      r->truncated = true;
      return;
    }
    r->sent[0] += payload.size();
    send_({{"ev", "display"}, {"id", r->id}}, payload);
  } else if (type == "error") {
    r->raised = true;
    json e = proto::exception_payload(m);
    for (auto [field, limit] : {std::pair{"value", size_t{64} << 10}, {"traceback", size_t{256} << 10}}) {
      auto& s = e[field].get_ref<std::string&>();
      if (s.size() > limit) s.resize(limit), r->truncated = true;
    }
    send_({{"ev", "exception"}, {"id", r->id}}, e.dump(-1, ' ', false, json::error_handler_t::replace));
  } else if (type == "done") {
    int exit_code = r->raised ? 1 : 0;
    if (auto x = m.find("exit"); c.language == KernelLanguage::kBash && x != m.end() &&
                                 x->is_number_integer() && *x >= 0 && *x <= 255) {
      exit_code = x->get<int>();
    }
    finish_run(c, exit_code, 0);
    begin_next(c);
  }
}

void Contexts::read_output(Context& c, int stream, short revents) {
  unique_fd& fd = stream == 0 ? c.out : c.err;
  if ((revents & (POLLHUP | POLLIN)) == POLLHUP) return fd.reset();
  char buf[kReadChunk];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return;  // EAGAIN
    if (n == 0) return fd.reset();
    Run* r = c.running();
    if (!r) {
      // Between cells output has no reader; before ready it is why a kernel failed.
      if (!c.ready && stream == 1 && c.load_error.size() < kMaxLoadError) {
        c.load_error.append(buf, std::min<size_t>(n, kMaxLoadError - c.load_error.size()));
      }
    } else {
      size_t room = r->cap - std::min(r->cap, r->sent[stream]);
      size_t take = std::min(room, static_cast<size_t>(n));
      if (take < static_cast<size_t>(n)) r->truncated = true;
      if (take > 0) {
        r->sent[stream] += take;
        send_({{"ev", stream == 0 ? "stdout" : "stderr"}, {"id", r->id}}, std::string_view(buf, take));
      }
    }
    if (revents != 0 && n < static_cast<ssize_t>(sizeof buf)) return;
  }
}

void Contexts::drain_output(Context& c) {
  if (c.out) read_output(c, 0, 0);
  if (c.err) read_output(c, 1, 0);
}

void Contexts::finish_run(Context& c, int exit_code, int signal) {
  Run& r = c.runs.front();
  proto::ExitStatus status;
  status.exit_code = exit_code;
  status.signal = signal;
  status.duration_ms =
      std::chrono::duration<double, std::milli>(Clock::now() - r.start).count();
  if (c.pid > 0) {
    if (auto cpu = process_cpu_ms(c.pid)) status.cpu_ms = std::max(0.0, *cpu - r.cpu_before_ms);
    status.max_rss_kb = proc_rss_kb(c.pid);
  }
  status.timed_out = r.timed_out;
  status.truncated = r.truncated;
  status.oom_killed = r.oom_killed;
  send_(proto::exit_event(r.id, status), {});
  c.runs.pop_front();
}

void Contexts::end_run(Context& c, const std::string& name, const std::string& why) {
  Run& r = c.runs.front();
  drain_output(c);
  json e = {{"name", name}, {"value", why}, {"traceback", name + ": " + why + "\n"}};
  send_({{"ev", "exception"}, {"id", r.id}}, e.dump());
  finish_run(c, -1, SIGKILL);
}

void Contexts::fail_waiters(Context& c, int err, const std::string& why) {
  for (uint64_t id : c.waiters) send_error(id, err, why);
  c.waiters.clear();
}

bool Contexts::on_reaped(pid_t pid, int status) {
  for (auto& [id, c] : contexts_) {
    if (c->pid == pid) {
      c->died = status;
      c->pid = -1;
      return true;
    }
  }
  return false;
}

bool Contexts::kernel_died(Context& c, int status) {
  std::string what = std::string("the ") + c.name() + " kernel " + describe_exit(status);
  if (!c.ready) {
    // It never loaded: starting it again would fail the same way.
    drain_output(c);
    std::string said = c.load_error.empty() ? "" : ": " + c.load_error;
    fail_waiters(c, ECHILD, what + " while loading" + said);
    while (!c.runs.empty()) {
      c.runs.front().started = true;
      end_run(c, "ContextFailed", what + " while loading");
    }
    return false;
  }
  if (Run* r = c.running()) {
    std::string because = r->oom_killed ? " (the sandbox's memory limit was reached)"
                          : r->timed_out ? " (interrupted at the cell's timeout)"
                                         : "";
    end_run(c, "ContextRestarted",
            what + because + "; a fresh kernel was started: the context's variables are gone");
  }
  if (int err = launch(c)) {
    std::string why = std::string("start the ") + c.name() + " kernel again: " + strerror(err);
    while (!c.runs.empty()) {
      c.runs.front().started = true;
      end_run(c, "ContextFailed", why);
    }
    return false;
  }
  return true;
}

void Contexts::tick(Clock::time_point now) {
  std::vector<std::string> ended;
  for (auto& [id, c] : contexts_) {
    if (c->died) {
      int status = *c->died;
      c->died.reset();
      if (!kernel_died(*c, status)) ended.push_back(id);
      continue;
    }
    Run* r = c->running();
    if (!r || now < r->deadline || c->pid <= 0) continue;
    if (!r->interrupted) {
      r->timed_out = true;
      kill(-c->pid, SIGINT);
      r->interrupted = true;
      r->deadline = now + kInterruptGrace;
    } else if (!r->killed) {
      kill(-c->pid, SIGKILL);
      r->killed = true;
      r->deadline = Clock::time_point::max();
    }
  }
  for (const auto& id : ended) contexts_.erase(id);
}

Contexts::Clock::time_point Contexts::next_deadline() const {
  auto next = Clock::time_point::max();
  for (const auto& [id, c] : contexts_) {
    if (c->died) return Clock::now();
    if (!c->runs.empty() && c->runs.front().started) next = std::min(next, c->runs.front().deadline);
  }
  return next;
}

std::vector<pid_t> Contexts::pids() const {
  std::vector<pid_t> out;
  for (const auto& [id, c] : contexts_) {
    if (c->pid > 0) out.push_back(c->pid);
  }
  return out;
}

bool Contexts::running() const {
  return std::any_of(contexts_.begin(), contexts_.end(), [](const auto& kv) {
    return !kv.second->runs.empty() && kv.second->runs.front().started;
  });
}

int64_t Contexts::memory_limit() const {
  int64_t limit = 0;
  for (const auto& [id, c] : contexts_) {
    if (!c->runs.empty() && c->runs.front().started)
      limit = std::max(limit, c->runs.front().memory_limit);
  }
  return limit;
}

bool Contexts::oom_killed(pid_t pgrp, pid_t sid, const std::string& message) {
  for (auto& [id, c] : contexts_) {
    if (c->pid <= 0 || (c->pid != pgrp && c->pid != sid)) continue;
    if (Run* r = c->running()) {
      r->oom_killed = true;
      r->killed = true;
      if (r->sent[1] < r->cap) send_({{"ev", "stderr"}, {"id", r->id}}, message);
    }
    kill(-c->pid, SIGKILL);
    return true;
  }
  return false;
}

void Contexts::reassign_ids(const std::function<uint64_t()>& next_id) {
  for (auto& [id, c] : contexts_) {
    c->waiters.clear();
    for (auto& r : c->runs) r.id = next_id();
  }
}

}  // namespace swissbox::init
