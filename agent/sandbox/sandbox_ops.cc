#include "agent/sandbox/sandbox_ops.h"

#include <fmt/format.h>
#include <signal.h>

#include <atomic>
#include <boost/asio/steady_timer.hpp>

#include "common/log.h"
#include "common/runner_protocol.h"
#include "common/sandbox_id.h"

namespace swissbox {

using json = nlohmann::json;

namespace {

Error invalid(const std::string& m) { return make_error(Code::kInvalidArgument, m); }

// A lost runner means the sandbox itself died under the request.
Error lost_error(const Sandbox& sb, const proto::Event& e) {
  std::string why = sb.failure.empty() ? e.message : sb.failure;
  return make_error(Code::kConflict, fmt::format("sandbox {} failed: {}", sb.id, why));
}

// Maps a runner-side errno to the API's codes.
Error runner_error(const proto::Event& e) {
  Code code = Code::kInvalidArgument;
  switch (e.error_errno) {
    case ENOENT: code = Code::kNotFound; break;
    case EFBIG: case E2BIG: code = Code::kTooLarge; break;
    case EEXIST: case EBUSY: case ENOTEMPTY: code = Code::kConflict; break;
    case ENOSPC: case EDQUOT: case EOVERFLOW: code = Code::kResourceExhausted; break;
    default: break;
  }
  return make_error(code, e.message.empty() ? "runner error" : e.message);
}

Status parse_common(const json& body, ExecRequest* req) {
  if (auto it = body.find("stdin"); it != body.end() && !it->is_null()) {
    if (!it->is_string()) return invalid("stdin must be a string");
    req->stdin_data = it->get<std::string>();
  }
  if (auto it = body.find("env"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) return invalid("env must be an object of strings");
    for (auto& [k, v] : it->items()) {
      if (!valid_env_name(k)) return invalid("env name '" + k + "' is not valid");
      if (!v.is_string()) return invalid("env value of " + k + " must be a string");
      req->env[k] = v.get<std::string>();
    }
  }
  if (auto it = body.find("cwd"); it != body.end() && !it->is_null()) {
    if (!it->is_string() || it->get<std::string>().empty())
      return invalid("cwd must be a non-empty string");
    req->cwd = it->get<std::string>();
    if (req->cwd.find('\0') != std::string::npos) return invalid("cwd contains a NUL byte");
  }
  if (auto it = body.find("timeout_ms"); it != body.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<int64_t>() <= 0 ||
        it->get<int64_t>() > kMaxExecTimeoutMs) {
      return invalid(
          fmt::format("timeout_ms must be an integer between 1 and {}", kMaxExecTimeoutMs));
    }
    req->timeout_ms = it->get<int64_t>();
  }
  if (auto it = body.find("max_output_bytes"); it != body.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<int64_t>() <= 0 ||
        it->get<int64_t>() > static_cast<int64_t>(kMaxOutputCap)) {
      return invalid(fmt::format("max_output_bytes must be between 1 and {}", kMaxOutputCap));
    }
    req->output_cap = it->get<size_t>();
  }
  if (auto it = body.find("background"); it != body.end() && !it->is_null()) {
    if (!it->is_boolean()) return invalid("background must be a boolean");
    req->background = it->get<bool>();
  }
  return ok_status();
}

}  // namespace

json ExecOutcome::to_json(bool with_output) const {
  json j = {{"exit_code", exit_code},   {"duration_ms", duration_ms}, {"cpu_ms", cpu_ms},
            {"max_rss_kb", max_rss_kb}, {"timed_out", timed_out},     {"oom_killed", oom_killed},
            {"truncated", truncated}};
  if (signal) j["signal"] = signal;
  if (!sandbox_failure.empty()) j["sandbox_failure"] = sandbox_failure;
  if (with_output) {
    j["stdout"] = out;
    j["stderr"] = err;
  }
  if (in_context && with_output) j["results"] = results;
  if (in_context) j["error"] = error;
  return j;
}

Result<ExecRequest> parse_exec_request(const json& body) {
  if (!body.is_object()) return invalid("request body must be a JSON object");
  ExecRequest req;
  auto it = body.find("command");
  if (it == body.end() || it->is_null()) return invalid("command is required");
  if (it->is_string()) {
    if (it->get<std::string>().empty()) return invalid("command must not be empty");
    req.argv = {"/bin/bash", "-c", it->get<std::string>()};
  } else if (it->is_array()) {
    if (it->empty()) return invalid("command must not be empty");
    if (it->size() > 4096) return invalid("command has more than 4096 arguments");
    for (const auto& a : *it) {
      if (!a.is_string()) return invalid("command array must hold strings only");
      req.argv.push_back(a.get<std::string>());
    }
    if (req.argv[0].empty()) return invalid("command[0] must not be empty");
  } else {
    return invalid("command must be an array of strings or a shell string");
  }
  for (const auto& a : req.argv) {
    if (a.find('\0') != std::string::npos) return invalid("command contains a NUL byte");
  }
  if (auto st = parse_common(body, &req); !st) return st.error();
  return req;
}

const std::vector<std::string>& supported_languages() {
  static const std::vector<std::string> kLangs = {"python", "bash", "javascript", "typescript"};
  return kLangs;
}

std::optional<std::string> canonical_language(const std::string& name) {
  static const std::pair<const char*, const char*> kNames[] = {
      {"python", "python"},         {"python3", "python"}, {"bash", "bash"},
      {"shell", "bash"},            {"sh", "bash"},        {"javascript", "javascript"},
      {"js", "javascript"},         {"node", "javascript"}, {"typescript", "typescript"},
      {"ts", "typescript"}};
  for (auto [alias, canonical] : kNames) {
    if (name == alias) return canonical;
  }
  return std::nullopt;
}

Result<ExecRequest> parse_code_request(const json& body) {
  if (!body.is_object()) return invalid("request body must be a JSON object");
  ExecRequest req;
  if (auto it = body.find("context_id"); it != body.end() && !it->is_null()) {
    if (!it->is_string() || !proto::valid_context_id(it->get<std::string>()))
      return invalid("context_id must be a context's id");
    req.context_id = it->get<std::string>();
  }
  auto lang_it = body.find("language");
  bool has_language = lang_it != body.end() && !lang_it->is_null();
  if ((!has_language && req.context_id.empty()) || (has_language && !lang_it->is_string()))
    return invalid("language is required (python, bash, javascript, typescript)");
  auto code_it = body.find("code");
  if (code_it == body.end() || !code_it->is_string())
    return invalid("code is required and must be a string");
  std::optional<std::string> lang;
  if (has_language) {
    lang = canonical_language(lang_it->get<std::string>());
    if (!lang) {
      return invalid("unknown language '" + lang_it->get<std::string>() +
                     "' (python, bash, javascript, typescript)");
    }
  }
  req.code = code_it->get<std::string>();
  if (!req.context_id.empty()) {
    req.language = lang.value_or("");
    if (req.code.size() > proto::kMaxPayload)
      return make_error(Code::kTooLarge, "a context's code is at most 1 MiB per run");
    if (auto st = parse_common(body, &req); !st) return st.error();
    if (!req.stdin_data.empty()) return invalid("a context run takes no stdin");
    return req;
  }
  if (*lang == "bash") {
    static std::atomic<uint64_t> seq{0};
    req.code_path = fmt::format("/tmp/.swissbox-code-{}.sh", ++seq);
    req.argv = {"/bin/bash", req.code_path};
  } else {
    req.language = *lang;
  }
  if (req.code.size() > kMaxFileBytes)
    return make_error(Code::kTooLarge, "code is larger than 64 MiB");
  if (auto st = parse_common(body, &req); !st) return st.error();
  return req;
}

Result<ContextRequest> parse_context_request(const json& body) {
  if (!body.is_object()) return invalid("request body must be a JSON object");
  ContextRequest req;
  auto lang_it = body.find("language");
  std::string name = lang_it != body.end() && lang_it->is_string() ? lang_it->get<std::string>() : "python";
  if (lang_it != body.end() && !lang_it->is_null() && !lang_it->is_string())
    return invalid("language must be a string");
  auto lang = canonical_language(name);
  if (!lang) return invalid("unknown language '" + name + "' (python, bash, javascript, typescript)");
  req.language = *lang;
  // The fields an exec takes for its environment and directory, checked the same way.
  ExecRequest common;
  json subset = json::object();
  for (const char* k : {"env", "cwd"}) {
    if (auto it = body.find(k); it != body.end()) subset[k] = *it;
  }
  if (auto st = parse_common(subset, &common); !st) return st.error();
  req.cwd = common.cwd;
  req.env = common.env;
  return req;
}

Status validate_sandbox_path(const std::string& path) {
  if (path.empty()) return invalid("path is required");
  if (path.size() > 4096) return invalid("path is longer than 4096 bytes");
  if (path.find('\0') != std::string::npos) return invalid("path contains a NUL byte");
  return ok_status();
}

namespace {

// The outcome of a request's final event: a lost runner, a runner-side error, or success.
// Any other event there is the runner breaking the protocol.
Status final_status(const Sandbox& sb, const proto::Event& e) {
  if (e.kind == proto::EventKind::kLost) return lost_error(sb, e);
  if (e.kind != proto::EventKind::kResult)
    return make_error(Code::kInternal, "the runner answered with an unexpected event");
  if (!e.ok) return runner_error(e);
  return ok_status();
}

// Wraps a request's completion: it runs exactly once, either with the runner's answer or,
// when none came within `limit` (a frozen sandbox), with deadline_exceeded. While it is
// pending the sandbox counts as busy and cannot expire.
template <typename T>
std::function<void(T)> settle_once(SandboxManager& mgr, const std::shared_ptr<Sandbox>& sb,
                                   std::chrono::milliseconds limit, std::string what,
                                   std::function<void(T)> done) {
  struct State {
    explicit State(boost::asio::io_context& ioc) : timer(ioc) {}
    boost::asio::steady_timer timer;
    bool settled = false;
  };
  auto state = std::make_shared<State>(mgr.io());
  mgr.touch(*sb, +1);
  std::function<void(T)> finish = [&mgr, sb, state, done](T value) {
    if (state->settled) return;
    state->settled = true;
    state->timer.cancel();
    mgr.touch(*sb, -1);
    done(std::move(value));
  };
  state->timer.expires_after(limit);
  state->timer.async_wait([finish, what, limit, id = sb->id](boost::system::error_code ec) {
    if (ec) return;
    finish(make_error(
        Code::kDeadlineExceeded,
        fmt::format("{} in sandbox {} got no answer within {} ms", what, id, limit.count())));
  });
  return finish;
}

// Where a run's events go as they come.
struct RunSinks {
  OutputFn output;
  ValueFn value;
};

void send_command(SandboxManager& mgr, std::shared_ptr<Sandbox> sb, ExecRequest req,
                  RunSinks sinks, ExecDoneFn done, std::shared_ptr<ExecHandle> handle);

// The command goes to the runner once the node's exec gate lets it start.
void start_command(SandboxManager& mgr, std::shared_ptr<Sandbox> sb, ExecRequest req,
                   RunSinks sinks, ExecDoneFn done, std::shared_ptr<ExecHandle> handle) {
  auto queued_at = std::chrono::steady_clock::now();
  mgr.exec_gate().enter([&mgr, sb = std::move(sb), req = std::move(req), sinks = std::move(sinks),
                         done = std::move(done), handle, queued_at](ExecGate::TicketPtr ticket) mutable {
    if (ticket) {
      mgr.metrics().observe("swissbox_exec_queue_seconds", {},
                            std::chrono::duration<double>(std::chrono::steady_clock::now() - queued_at).count());
    }
    send_command(mgr, std::move(sb), std::move(req), std::move(sinks),
                 [done = std::move(done), ticket](Result<ExecOutcome> r) {
                   if (ticket) ticket->release();
                   done(std::move(r));
                 },
                 std::move(handle));
  });
}

// The request as the runner takes it: its header and the first payload (a context run's
// cell whole; an exec's first frame of input, the rest following as stdin frames).
std::pair<json, std::string> runner_request(const Sandbox& sb, ExecRequest& req) {
  if (!req.context_id.empty()) {
    proto::ContextRunOp op;
    op.context = req.context_id;
    op.env = req.env;
    op.timeout_ms = req.timeout_ms;
    op.output_cap = req.output_cap;
    op.memory_limit = sb.limits.memory_mb << 20;
    return {proto::encode_op(op), std::move(req.code)};
  }
  proto::ExecOp op;
  op.env = template_environment(sb.template_name);
  for (const auto& [k, v] : sb.env) op.env[k] = v;
  for (const auto& [k, v] : req.env) op.env[k] = v;
  // A language worker reads its program from the same input stream, ahead of stdin.
  if (req.language.empty()) {
    op.argv = req.argv;
  } else {
    op.language = req.language;
    op.code_bytes = req.code.size();
    op.keep_worker = req.keep_worker;
    req.stdin_data.insert(0, req.code);
  }
  size_t first = std::min(req.stdin_data.size(), static_cast<size_t>(proto::kMaxPayload));
  op.cwd = req.cwd;
  op.timeout_ms = req.timeout_ms;
  op.output_cap = req.output_cap;
  op.background = req.background;
  op.memory_limit = sb.limits.memory_mb << 20;
  op.pids_limit = sb.limits.pids;
  op.stdin_eof = first == req.stdin_data.size() && !req.keep_stdin_open;
  op.pty_cols = req.pty_cols;
  op.pty_rows = req.pty_rows;
  std::string payload = req.stdin_data.substr(0, first);
  req.stdin_data.erase(0, first);
  return {proto::encode_op(op), std::move(payload)};
}

void send_command(SandboxManager& mgr, std::shared_ptr<Sandbox> sb, ExecRequest req,
                  RunSinks sinks, ExecDoneFn done, std::shared_ptr<ExecHandle> handle) {
  if (handle->cancelled) {
    return done(make_error(Code::kInvalidArgument, "exec cancelled by the client"));
  }
  auto [header, payload] = runner_request(*sb, req);
  auto outcome = std::make_shared<ExecOutcome>();
  outcome->in_context = !req.context_id.empty();
  auto finish = settle_once<Result<ExecOutcome>>(
      mgr, sb, std::chrono::milliseconds(req.timeout_ms) + mgr.options().exec_grace, "exec",
      std::move(done));
  uint64_t id = sb->channel->call(
      header, payload,
      [sb, outcome, sinks, finish, cap = req.output_cap](const proto::Event& e) {
        using proto::EventKind;
        const auto& on_output = sinks.output;
        if (e.kind == EventKind::kDisplay || e.kind == EventKind::kException) {
          std::string_view kind = e.kind == EventKind::kDisplay ? "result" : "error";
          if (sinks.value) {
            sinks.value(kind, e.value);
          } else if (e.kind == EventKind::kDisplay) {
            outcome->results.push_back(e.value);
          }
          if (e.kind == EventKind::kException) outcome->error = e.value;
          return false;
        }
        if (e.kind == EventKind::kStdout || e.kind == EventKind::kStderr) {
          // The cap holds here too, whatever the runner sends: collected output and output
          // streamed to a client that reads slowly both stay within it.
          bool is_err = e.kind == EventKind::kStderr;
          size_t& seen = is_err ? outcome->err_bytes : outcome->out_bytes;
          size_t room = cap - std::min(cap, seen);
          std::string_view piece = std::string_view(e.payload).substr(0, room);
          seen += piece.size();
          if (piece.size() < e.payload.size()) outcome->truncated = true;
          if (piece.empty()) return false;
          if (on_output) {
            on_output(is_err, piece);
          } else {
            (is_err ? outcome->err : outcome->out).append(piece);
          }
          return false;
        }
        if (e.kind == EventKind::kLost && sb->failure_limit != HostLimit::kNone) {
          // A host limit ended the whole sandbox while this command ran: it is the result.
          outcome->signal = SIGKILL;
          outcome->oom_killed = sb->failure_limit == HostLimit::kMemory;
          outcome->sandbox_failure = sb->failure;
          finish(std::move(*outcome));
          return true;
        }
        if (e.kind != EventKind::kExit) {
          Status st = final_status(*sb, e);
          finish(st ? make_error(Code::kInternal, "the runner answered exec without an exit")
                    : st.error());
          return true;
        }
        bool truncated_here = outcome->truncated;
        static_cast<proto::ExitStatus&>(*outcome) = e.exit;
        outcome->truncated = outcome->truncated || truncated_here;
        sb->exec_count++;
        sb->last_exit_code = outcome->exit_code;
        finish(std::move(*outcome));
        return true;
      });
  handle->channel = sb->channel;
  handle->id = id;
  // Stdin beyond one frame follows in frames of its own.
  for (size_t off = 0; off < req.stdin_data.size(); off += proto::kMaxPayload) {
    size_t n = std::min(req.stdin_data.size() - off, static_cast<size_t>(proto::kMaxPayload));
    sb->channel->notify({{"op", "stdin"}, {"id", id}, {"eof", off + n >= req.stdin_data.size()}},
                        std::string_view(req.stdin_data).substr(off, n));
  }
}

}  // namespace

void ExecHandle::pause(bool on) {
  auto ch = channel.lock();
  if (ch && id != 0 && !cancelled) ch->notify({{"op", on ? "pause" : "resume"}, {"id", id}});
}

void ExecHandle::signal(int sig) {
  auto ch = channel.lock();
  if (ch && id != 0 && !cancelled) ch->notify({{"op", "signal"}, {"id", id}, {"signal", sig}});
}

void ExecHandle::send_stdin(std::string_view data, bool eof) {
  auto ch = channel.lock();
  if (!ch || id == 0 || cancelled) return;
  // In frames the protocol takes; an empty one carries only the end.
  size_t off = 0;
  do {
    size_t n = std::min(data.size() - off, static_cast<size_t>(proto::kMaxPayload));
    bool last = off + n >= data.size();
    ch->notify({{"op", "stdin"}, {"id", id}, {"eof", eof && last}}, data.substr(off, n));
    off += n;
  } while (off < data.size());
}

void ExecHandle::resize(uint16_t cols, uint16_t rows) {
  auto ch = channel.lock();
  if (ch && id != 0 && !cancelled) ch->notify({{"op", "resize"}, {"id", id}, {"cols", cols}, {"rows", rows}});
}

void ExecHandle::cancel() {
  cancelled = true;
  auto ch = channel.lock();
  if (ch && id != 0) ch->notify({{"op", "signal"}, {"id", id}, {"signal", SIGKILL}});
}

std::shared_ptr<ExecHandle> run_exec(SandboxManager& mgr, std::shared_ptr<Sandbox> sb,
                                     ExecRequest req, OutputFn on_output, ExecDoneFn done,
                                     ValueFn on_value) {
  auto handle = std::make_shared<ExecHandle>();
  RunSinks sinks{std::move(on_output), std::move(on_value)};
  if (req.code_path.empty()) {
    start_command(mgr, std::move(sb), std::move(req), std::move(sinks), done, handle);
    return handle;
  }
  std::string path = req.code_path;
  std::string code = std::move(req.code);
  write_file(mgr, sb, path, std::move(code),
             [&mgr, sb, req = std::move(req), sinks, done, handle](Status st) mutable {
               if (!st) return done(st.error());
               std::string path = req.code_path;
               start_command(
                   mgr, sb, std::move(req), std::move(sinks),
                   [sb, path, done](Result<ExecOutcome> r) {
                     // The code file goes with the run; failures here do not matter.
                     if (sb->channel->alive()) {
                       sb->channel->call({{"op", "delete"}, {"path", path}}, {},
                                         [](const proto::Event&) { return true; });
                     }
                     done(std::move(r));
                   },
                   handle);
             });
  return handle;
}

void read_file(SandboxManager& mgr, std::shared_ptr<Sandbox> sb, std::string path,
               std::function<void(Result<std::string>)> done) {
  auto data = std::make_shared<std::string>();
  auto finish = settle_once<Result<std::string>>(mgr, sb, mgr.options().file_op_deadline,
                                                 "read " + path, std::move(done));
  sb->channel->call({{"op", "read_file"}, {"path", path}, {"max_bytes", kMaxFileBytes}}, {},
                    [sb, data, finish](const proto::Event& e) {
                      if (e.kind == proto::EventKind::kData) {
                        if (data->size() + e.payload.size() > kMaxFileBytes) {
                          // More than it was asked for: not a runner that keeps the protocol.
                          finish(make_error(Code::kInternal, "the runner sent more than the file's limit"));
                          sb->channel->close("the runner sent more file data than asked for");
                          return true;
                        }
                        data->append(e.payload);
                        return false;
                      }
                      Status st = final_status(*sb, e);
                      finish(st ? Result<std::string>(std::move(*data)) : st.error());
                      return true;
                    });
}

void write_file(SandboxManager& mgr, std::shared_ptr<Sandbox> sb, std::string path,
                std::string data, std::function<void(Status)> done) {
  auto finish = settle_once<Status>(mgr, sb, mgr.options().file_op_deadline, "write " + path,
                                    std::move(done));
  size_t off = 0;
  uint64_t id = 0;
  // The first frame creates (truncates) the file; further frames append under the same id.
  do {
    size_t n = std::min(data.size() - off, static_cast<size_t>(proto::kMaxPayload));
    bool last = off + n >= data.size();
    json h = {{"op", "write_file"}, {"path", path}, {"append", off > 0}, {"last", last}};
    std::string_view chunk = std::string_view(data).substr(off, n);
    if (off == 0) {
      id = sb->channel->call(h, chunk, [sb, finish](const proto::Event& e) {
        finish(final_status(*sb, e));
        return true;
      });
    } else {
      h["id"] = id;
      sb->channel->notify(h, chunk);
    }
    off += n;
  } while (off < data.size());
}

void upload_file(SandboxManager& mgr, std::shared_ptr<Sandbox> sb, std::string path,
                 std::shared_ptr<http::BodyReader> body, std::function<void(Status)> done) {
  struct Upload {
    uint64_t id = 0;  // the runner's request, once the first piece went
    size_t bytes = 0;
    bool ended = false;
    bool sent_last = false;
    http::BodyReader::ReadHandler step;  // reset when the upload ends: it refers to itself
  };
  auto up = std::make_shared<Upload>();
  auto finish = settle_once<Status>(mgr, sb, mgr.options().file_op_deadline, "write " + path,
                                    std::move(done));
  // An upload that fails midway leaves nothing: the runner's request is closed with an
  // empty last piece (it keeps a failed write's id until then) and the partial file goes.
  auto discard_partial = [sb, up, path] {
    if (up->id == 0 || !sb->channel->alive()) return;
    if (!up->sent_last) {
      up->sent_last = true;
      sb->channel->notify({{"op", "write_file"}, {"path", path}, {"append", true}, {"last", true}, {"id", up->id}});
    }
    sb->channel->call({{"op", "delete"}, {"path", path}}, {}, [](const proto::Event&) { return true; });
  };
  // The client failed (went away, sent too much).
  auto abandon = [up, finish, discard_partial](Error why) {
    up->ended = true;
    up->step = nullptr;  // not the handler running now (the reader holds a copy)
    discard_partial();
    finish(std::move(why));
  };
  up->step = [sb, up, path, body, finish, abandon, discard_partial](Result<std::string> piece,
                                                                    bool last) {
    if (up->ended) return;
    if (!piece) return abandon(piece.error());
    up->bytes += piece->size();
    if (up->bytes > kMaxFileBytes) return abandon(make_error(Code::kTooLarge, "file larger than 64 MiB"));
    auto next = [up, body, last] {
      if (!last && !up->ended && up->step) body->read(up->step);
    };
    if (up->id == 0) {
      // An empty first frame creates (truncates) the file; the pieces follow, and the
      // runner answers the one marked last.
      json create = {{"op", "write_file"}, {"path", path}, {"append", false}, {"last", false}};
      up->id = sb->channel->call(create, {}, [sb, up, finish, discard_partial](const proto::Event& e) {
        up->ended = true;
        up->step = nullptr;
        Status st = final_status(*sb, e);
        if (!st) discard_partial();  // an early error (disk full): the rest is not sent
        finish(std::move(st));
        return true;
      });
      if (up->ended) return;  // refused at once (the channel is gone)
    }
    json h = {{"op", "write_file"}, {"path", path}, {"append", true}, {"last", last}, {"id", up->id}};
    // The handler running now is the reader's copy: dropping ours only ends the cycle.
    if (last) up->step = nullptr, up->sent_last = true;
    sb->channel->notify(h, *piece, next);
  };
  body->read(up->step);
}

void list_dir(SandboxManager& mgr, std::shared_ptr<Sandbox> sb, std::string path,
              std::function<void(Result<std::vector<proto::FileEntry>>)> done) {
  auto entries = std::make_shared<std::vector<proto::FileEntry>>();
  auto finish = settle_once<Result<std::vector<proto::FileEntry>>>(
      mgr, sb, mgr.options().file_op_deadline, "list " + path, std::move(done));
  sb->channel->call({{"op", "list"}, {"path", path}}, {},
                    [sb, entries, finish](const proto::Event& e) {
                      auto take = [&] {
                        if (entries->size() + e.entries.size() > kMaxListEntries) return false;
                        for (const auto& x : e.entries) entries->push_back(x);
                        return true;
                      };
                      if (!take()) {
                        finish(make_error(Code::kInternal, "the runner sent more entries than a list holds"));
                        sb->channel->close("the runner sent more directory entries than a list holds");
                        return true;
                      }
                      if (e.kind == proto::EventKind::kEntries) return false;
                      Status st = final_status(*sb, e);
                      finish(st ? Result<std::vector<proto::FileEntry>>(std::move(*entries))
                                : st.error());
                      return true;
                    });
}

void delete_path(SandboxManager& mgr, std::shared_ptr<Sandbox> sb, std::string path,
                 bool recursive, std::function<void(Status)> done) {
  auto finish = settle_once<Status>(mgr, sb, mgr.options().file_op_deadline, "delete " + path,
                                    std::move(done));
  sb->channel->call({{"op", "delete"}, {"path", path}, {"recursive", recursive}}, {},
                    [sb, finish](const proto::Event& e) {
                      finish(final_status(*sb, e));
                      return true;
                    });
}

void start_context(SandboxManager& mgr, std::shared_ptr<Sandbox> sb, ContextRequest req,
                   std::function<void(Result<std::string>)> done) {
  if (sb->contexts.size() >= limits::kMaxContexts) {
    return done(make_error(Code::kResourceExhausted,
                           fmt::format("sandbox {} has {} contexts, the most it may have", sb->id,
                                       limits::kMaxContexts)));
  }
  proto::ContextStartOp op;
  op.context = req.id.empty() ? "ctx-" + random_hex(8) : req.id;
  if (sb->contexts.count(op.context)) {
    return done(make_error(Code::kConflict, "context " + op.context + " exists"));
  }
  op.language = req.language;
  op.cwd = req.cwd;
  op.env = template_environment(sb->template_name);
  for (const auto& [k, v] : sb->env) op.env[k] = v;
  for (const auto& [k, v] : req.env) op.env[k] = v;
  op.pids_limit = sb->limits.pids;
  auto finish = settle_once<Status>(mgr, sb, limits::kContextStartDeadline, "context start",
                                    [&mgr, sb, id = op.context, info = ContextInfo{req.language, req.cwd},
                                     done = std::move(done)](Status st) {
                                      if (!st) return done(st.error());
                                      sb->contexts[id] = info;
                                      if (auto saved = mgr.save_record(*sb); !saved) {
                                        log::warn("sandbox record not written",
                                                  {{"sandbox", sb->id}, {"error", saved.error().to_string()}});
                                      }
                                      done(id);
                                    });
  sb->channel->call(proto::encode_op(op), {}, [sb, finish](const proto::Event& e) {
    finish(final_status(*sb, e));
    return true;
  });
}

namespace {

// A context op that answers with a result: restart and stop.
void context_call(SandboxManager& mgr, const std::shared_ptr<Sandbox>& sb, std::string_view op,
                  const std::string& id, std::function<void(Status)> done) {
  if (!sb->contexts.count(id)) {
    return done(make_error(Code::kNotFound, fmt::format("no context {} in sandbox {}", id, sb->id)));
  }
  auto finish = settle_once<Status>(mgr, sb, limits::kContextStartDeadline, std::string(op), std::move(done));
  sb->channel->call(proto::context_op(op, id), {}, [sb, finish](const proto::Event& e) {
    finish(final_status(*sb, e));
    return true;
  });
}

}  // namespace

void restart_context(SandboxManager& mgr, std::shared_ptr<Sandbox> sb, std::string id,
                     std::function<void(Status)> done) {
  context_call(mgr, sb, "context_restart", id, [&mgr, sb, id, done](Status st) {
    // A context whose interpreter cannot load again is gone in the runner.
    if (!st && st.error().code != Code::kDeadlineExceeded) sb->contexts.erase(id), (void)mgr.save_record(*sb);
    done(std::move(st));
  });
}

void stop_context(SandboxManager& mgr, std::shared_ptr<Sandbox> sb, std::string id,
                  std::function<void(Status)> done) {
  context_call(mgr, sb, "context_stop", id, [&mgr, sb, id, done](Status st) {
    // Known here, unknown to the runner (its kernel never loaded again): gone all the same.
    bool gone = st || (st.error().code == Code::kNotFound && sb->contexts.count(id));
    if (gone) sb->contexts.erase(id), (void)mgr.save_record(*sb);
    done(gone ? ok_status() : std::move(st));
  });
}

namespace {

// A file request answered with one entry (stat, mkdir, rename).
void entry_call(SandboxManager& mgr, const std::shared_ptr<Sandbox>& sb, json op, std::string what,
                EntryFn done) {
  auto finish = settle_once<Result<proto::FileEntry>>(mgr, sb, mgr.options().file_op_deadline,
                                                      std::move(what), std::move(done));
  sb->channel->call(op, {}, [sb, finish](const proto::Event& e) {
    Status st = final_status(*sb, e);
    if (!st) return finish(st.error()), true;
    if (!e.entry) return finish(make_error(Code::kInternal, "the runner answered without the entry")), true;
    finish(*e.entry);
    return true;
  });
}

}  // namespace

void stat_path(SandboxManager& mgr, std::shared_ptr<Sandbox> sb, std::string path, EntryFn done) {
  entry_call(mgr, sb, {{"op", "stat"}, {"path", path}}, "stat " + path, std::move(done));
}

void make_dir(SandboxManager& mgr, std::shared_ptr<Sandbox> sb, std::string path, EntryFn done) {
  entry_call(mgr, sb, {{"op", "mkdir"}, {"path", path}}, "mkdir " + path, std::move(done));
}

void move_path(SandboxManager& mgr, std::shared_ptr<Sandbox> sb, std::string from, std::string to,
               EntryFn done) {
  entry_call(mgr, sb, {{"op", "rename"}, {"from", from}, {"to", to}}, "move " + from, std::move(done));
}

void WatchHandle::stop() {
  auto ch = channel.lock();
  if (ch && id != 0) ch->notify({{"op", "unwatch"}, {"id", id}});
}

void WatchHandle::pause(bool on) {
  auto ch = channel.lock();
  if (ch && id != 0) ch->notify({{"op", on ? "pause" : "resume"}, {"id", id}});
}

std::shared_ptr<WatchHandle> watch_dir(SandboxManager& mgr, std::shared_ptr<Sandbox> sb,
                                       std::string path, bool recursive,
                                       std::function<void(Status)> started, ChangesFn changes,
                                       std::function<void(Status)> ended) {
  struct State {
    bool watching = false;
    bool gave_up = false;  // the start's deadline passed: a watch that comes later is ended
  };
  auto state = std::make_shared<State>();
  auto handle = std::make_shared<WatchHandle>();
  handle->channel = sb->channel;
  auto start = settle_once<Status>(mgr, sb, mgr.options().file_op_deadline, "watch " + path,
                                   [state, started = std::move(started)](Status st) {
                                     if (!st) state->gave_up = true;
                                     started(std::move(st));
                                   });
  handle->id = sb->channel->call(
      proto::encode_op(proto::WatchOp{path, recursive}), {},
      [sb, state, start, handle, changes = std::move(changes), ended = std::move(ended)](const proto::Event& e) {
        if (e.kind == proto::EventKind::kWatching) {
          if (state->gave_up) return handle->stop(), false;
          state->watching = true;
          start(ok_status());
          return false;
        }
        if (e.kind == proto::EventKind::kChanges) {
          if (state->watching) changes(e.changes);
          return false;
        }
        Status st = final_status(*sb, e);
        if (!state->watching) {
          start(st ? make_error(Code::kInternal, "the runner ended a watch it had not started") : st);
        } else {
          ended(std::move(st));
        }
        return true;
      });
  return handle;
}

}  // namespace swissbox
