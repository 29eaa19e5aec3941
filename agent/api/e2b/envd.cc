// E2B's envd (E2b-Sandbox-Port: 49983): processes and the filesystem of one sandbox, over
// the Connect protocol (JSON codec), and plain HTTP for /files and /health.
//
// Process/Start runs a command like POST …/exec in the background mode (what it leaves
// running stays, as with E2B), streams start, data and end events as they happen, and
// keeps it under a pid until it ends, for SendSignal, SendInput, CloseStdin and List.
#include <signal.h>

#include "agent/api/call.h"
#include "agent/api/e2b/e2b.h"
#include "agent/api/e2b/multipart.h"
#include "agent/api/run_stream.h"
#include "common/base64.h"
#include "common/connect.h"

namespace swissbox {

namespace bhttp = boost::beast::http;
using json = nlohmann::json;

namespace {

constexpr size_t kMaxRpcMessage = 4 << 20;

// One Process/Start event on the wire. kind as RunStream's (runs.cc); a terminal's output
// comes as stdout and goes out as pty data.
std::string process_event(bool pty, std::string_view kind, const json& data) {
  if (kind == "stdout" || kind == "stderr") {
    std::string_view stream = pty ? "pty" : kind;
    return connect::message(
        {{"event", {{"data", {{stream, base64_encode(data.value("data", ""))}}}}}});
  }
  if (kind == "exit") {
    int code = data.value("exit_code", -1);
    int sig = data.value("signal", 0);
    json end = {{"exited", sig == 0 && code >= 0},
                {"status", sig != 0 ? std::string(sig == SIGKILL ? "signal: killed"
                                                                 : "signal: " + std::to_string(sig))
                                    : "exit status " + std::to_string(code)}};
    if (code != 0) end["exitCode"] = sig != 0 ? -1 : code;
    if (data.value("timed_out", false)) end["error"] = "the command timed out";
    return connect::message({{"event", {{"end", end}}}}) + connect::end_stream();
  }
  if (kind == "failed") {
    Error e = make_error(Code::kUnavailable, data.value("message", ""));
    return connect::end_stream(&e);
  }
  return {};
}

Result<std::map<std::string, std::string>> string_map(const json& j, const char* what) {
  std::map<std::string, std::string> out;
  if (j.is_null()) return out;
  if (!j.is_object()) return make_error(Code::kInvalidArgument, std::string(what) + " must be an object");
  for (const auto& [k, v] : j.items()) {
    if (!v.is_string()) return make_error(Code::kInvalidArgument, std::string(what) + "." + k + " must be a string");
    out[k] = v.get<std::string>();
  }
  return out;
}

// A terminal's size, {size: {cols, rows}} in Start's pty and Update's.
Result<std::pair<uint16_t, uint16_t>> pty_size(const json& pty) {
  json size = pty.is_object() ? pty.value("size", json()) : json();
  auto number = [&](const char* key) -> int64_t {
    auto it = size.is_object() ? size.find(key) : size.end();
    return size.is_object() && it != size.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
  };
  int64_t cols = number("cols"), rows = number("rows");
  if (cols < 1 || cols > 4096 || rows < 1 || rows > 4096) {
    return make_error(Code::kInvalidArgument, "pty.size must be {cols, rows} in 1-4096");
  }
  return std::pair<uint16_t, uint16_t>(static_cast<uint16_t>(cols), static_cast<uint16_t>(rows));
}

std::string str(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

}  // namespace

void AgentApi::e2b_sandbox(Call& c) {
  std::string id(e2b::header(c.req, "E2b-Sandbox-Id"));
  auto sb = valid_sandbox_id(id) ? mgr_.find(id) : nullptr;
  // The access token is the sandbox's capability: whoever holds it (the tenant that made
  // the sandbox) may use it; nobody else learns whether it exists.
  std::string_view token = e2b::header(c.req, "X-Access-Token");
  if (token.empty()) token = e2b::header(c.req, "E2B-Traffic-Access-Token");
  if (!sb || sb->state == SandboxState::kWarm || (!c.operator_ && !e2b::access_allowed(*sb, token))) {
    if (token.empty() && !c.operator_) {
      return e2b::fail(c.res, make_error(Code::kUnauthenticated,
                                         "X-Access-Token (the sandbox's envdAccessToken) is required"));
    }
    return e2b::fail(c.res, make_error(Code::kNotFound, "sandbox " + id + " not found"));
  }
  if (sb->state == SandboxState::kFailed) {
    return e2b::fail(c.res, make_error(Code::kUnavailable, "sandbox " + id + " failed: " + sb->failure));
  }
  if (sb->state == SandboxState::kSuspended || sb->transition) {
    // E2B's paused sandbox: any call for it resumes it first.
    return mgr_.resume(sb, [this, call = c.shared_from_this()](Status st) {
      if (!st) return e2b::fail(call->res, st.error());
      e2b_sandbox(*call);
    });
  }
  if (e2b::header(c.req, "E2b-Sandbox-Port") == e2b::kCodeInterpreterPort) return e2b_interpreter(c, sb);
  e2b_envd(c, sb);
}

void AgentApi::e2b_envd(Call& c, std::shared_ptr<Sandbox> sb) {
  const auto m = c.req.method();
  auto res = c.res;
  const std::string& p = c.path;
  if (p == "/health") return res->send(204, {}, {});
  if (p == "/files" && m == bhttp::verb::get) {
    std::string path = c.param("path");
    if (auto st = validate_sandbox_path(path); !st) return e2b::fail(res, st.error());
    return read_file(mgr_, sb, path, [res](Result<std::string> r) {
      if (!r) return e2b::fail(res, r.error());
      res->send(200, std::move(*r), "application/octet-stream");
    });
  }
  if (p == "/files" && m == bhttp::verb::post) return e2b_upload(c, sb);
  if (m != bhttp::verb::post) {
    return e2b::rpc_fail(res, make_error(Code::kNotFound, "no route for " + std::string(c.req.method_string()) + " " + p));
  }
  if (p == "/process.Process/Start") return e2b_process_start(c, sb);
  if (p == "/filesystem.Filesystem/WatchDir") return e2b_watch_dir(c, sb);
  if (p == "/process.Process/Connect") {
    // A running process's events from now on, as its Start streams them.
    auto msg = connect::request_message(c.req.body(), kMaxRpcMessage);
    res->start_stream(200, "application/connect+json");
    auto* proc = msg ? envd_processes_->find(sb->id, msg->value("process", json())) : nullptr;
    if (!proc) {
      Error e = msg ? make_error(Code::kNotFound, "process not found") : msg.error();
      return e2b::end_rpc_stream(res, &e);
    }
    proc->streams->push_back(process_stream(res, proc->pid, proc->pty));
    return;
  }
  // The unary calls: a JSON message in, a JSON message out.
  json msg = c.req.body().empty() ? json::object() : json::parse(c.req.body(), nullptr, false);
  if (!msg.is_object()) return e2b::rpc_fail(res, make_error(Code::kInvalidArgument, "the request is not a JSON object"));
  auto ok = [res](const json& answer) { res->send_json(200, answer); };
  auto entry_answer = [res](std::string path) {
    return [res, path](Result<proto::FileEntry> e) {
      if (!e) return e2b::rpc_fail(res, e.error());
      res->send_json(200, {{"entry", e2b::entry_info(path, *e)}});
    };
  };
  std::string path = e2b::client_path(str(msg, "path"));
  if (p == "/filesystem.Filesystem/CreateWatcher" || p == "/filesystem.Filesystem/GetWatcherEvents" ||
      p == "/filesystem.Filesystem/RemoveWatcher") {
    return e2b_watcher(c, sb, msg);
  }
  if (p == "/process.Process/List") {
    json list = json::array();
    for (const auto& [pid, proc] : envd_processes_->by_sandbox[sb->id]) {
      json item = {{"config", proc.config}, {"pid", pid}};
      if (!proc.tag.empty()) item["tag"] = proc.tag;
      list.push_back(std::move(item));
    }
    return ok({{"processes", list}});
  }
  if (p == "/process.Process/SendSignal" || p == "/process.Process/SendInput" ||
      p == "/process.Process/CloseStdin" || p == "/process.Process/Update") {
    auto* proc = envd_processes_->find(sb->id, msg.value("process", json()));
    if (!proc) return e2b::rpc_fail(res, make_error(Code::kNotFound, "process not found"));
    if (p == "/process.Process/SendSignal") {
      std::string sig = str(msg, "signal");
      if (sig == "SIGNAL_SIGKILL") {
        proc->handle->cancel();
      } else if (sig == "SIGNAL_SIGTERM") {
        proc->handle->signal(SIGTERM);
      } else {
        return e2b::rpc_fail(res, make_error(Code::kInvalidArgument, "signal must be SIGNAL_SIGKILL or SIGNAL_SIGTERM"));
      }
      return ok(json::object());
    }
    if (p == "/process.Process/Update") {
      // A terminal's new size.
      auto size = pty_size(msg.value("pty", json()));
      if (!size) return e2b::rpc_fail(res, size.error());
      proc->handle->resize(size->first, size->second);
      return ok(json::object());
    }
    if (p == "/process.Process/CloseStdin") {
      proc->handle->send_stdin({}, true);
      return ok(json::object());
    }
    // {stdin: base64} for a process, {pty: base64} for a terminal: its input either way.
    json input = msg.value("input", json::object());
    std::string text = input.is_object() ? str(input, "stdin") + str(input, "pty") : "";
    auto data = base64_decode(text);
    if (!data) return e2b::rpc_fail(res, make_error(Code::kInvalidArgument, "input is not base64"));
    proc->handle->send_stdin(*data, false);
    return ok(json::object());
  }
  if (p == "/filesystem.Filesystem/Stat") {
    if (auto st = validate_sandbox_path(path); !st) return e2b::rpc_fail(res, st.error());
    return stat_path(mgr_, sb, path, entry_answer(path));
  }
  if (p == "/filesystem.Filesystem/MakeDir") {
    if (auto st = validate_sandbox_path(path); !st) return e2b::rpc_fail(res, st.error());
    return make_dir(mgr_, sb, path, entry_answer(path));
  }
  if (p == "/filesystem.Filesystem/Move") {
    std::string from = e2b::client_path(str(msg, "source"));
    std::string to = e2b::client_path(str(msg, "destination"));
    for (const auto& x : {from, to}) {
      if (auto st = validate_sandbox_path(x); !st) return e2b::rpc_fail(res, st.error());
    }
    return move_path(mgr_, sb, from, to, entry_answer(to));
  }
  if (p == "/filesystem.Filesystem/Remove") {
    if (auto st = validate_sandbox_path(path); !st) return e2b::rpc_fail(res, st.error());
    return delete_path(mgr_, sb, path, /*recursive=*/true, [res](Status st) {
      if (!st) return e2b::rpc_fail(res, st.error());
      res->send_json(200, json::object());
    });
  }
  if (p == "/filesystem.Filesystem/ListDir") {
    if (auto st = validate_sandbox_path(path); !st) return e2b::rpc_fail(res, st.error());
    return list_dir(mgr_, sb, path, [res, path](Result<std::vector<proto::FileEntry>> r) {
      if (!r) return e2b::rpc_fail(res, r.error());
      json entries = json::array();
      std::string dir = path.ends_with("/") ? path : path + "/";
      for (const auto& e : *r) entries.push_back(e2b::entry_info(dir + e.name, e));
      res->send_json(200, {{"entries", std::move(entries)}});
    });
  }
  e2b::rpc_fail(res, make_error(Code::kNotFound, p + " is not served (swissbox's envd: Process Start, List, "
                                            "SendSignal, SendInput, CloseStdin, Update; Filesystem "
                                            "Stat, ListDir, MakeDir, Move, Remove, WatchDir and its "
                                            "unary watchers)"));
}

void AgentApi::e2b_process_start(Call& c, std::shared_ptr<Sandbox> sb) {
  auto res = c.res;
  auto msg = connect::request_message(c.req.body(), kMaxRpcMessage);
  res->start_stream(200, "application/connect+json");
  auto refuse = [&](const Error& e) { e2b::end_rpc_stream(res, &e); };
  if (!msg) return refuse(msg.error());
  json process = msg->value("process", json::object());
  if (!process.is_object() || str(process, "cmd").empty()) {
    return refuse(make_error(Code::kInvalidArgument, "process.cmd is required"));
  }
  ExecRequest req;
  if (auto pty = msg->find("pty"); pty != msg->end() && !pty->is_null()) {
    auto size = pty_size(*pty);
    if (!size) return refuse(size.error());
    std::tie(req.pty_cols, req.pty_rows) = *size;
  }
  req.argv.push_back(str(process, "cmd"));
  for (const auto& a : process.value("args", json::array())) {
    if (!a.is_string()) return refuse(make_error(Code::kInvalidArgument, "process.args must be strings"));
    req.argv.push_back(a.get<std::string>());
  }
  auto env = string_map(process.value("envs", json()), "process.envs");
  if (!env) return refuse(env.error());
  for (const auto& [k, v] : *env) {
    if (!valid_env_name(k)) return refuse(make_error(Code::kInvalidArgument, "env name '" + k + "' is not valid"));
  }
  req.env = std::move(*env);
  req.cwd = str(process, "cwd").empty() ? "/home/user" : str(process, "cwd");
  // The shell's pwd names the directory as asked (/home/user), not the workspace it links to.
  if (!req.env.count("PWD") && req.cwd.starts_with("/")) req.env["PWD"] = req.cwd;
  // Connect-Timeout-Ms is the client's deadline for the whole stream; 0 or none: no limit
  // but the longest one a command may have.
  int64_t timeout = std::atoll(std::string(e2b::header(c.req, "Connect-Timeout-Ms")).c_str());
  req.timeout_ms = timeout > 0 ? std::min(timeout, kMaxExecTimeoutMs) : kMaxExecTimeoutMs;
  req.output_cap = limits::kMaxOutputCap;
  req.background = true;
  // A terminal's input stays open for SendInput; a process's only when asked.
  req.keep_stdin_open = req.pty_cols > 0 || msg->value("stdin", false) == true;
  int64_t pid = envd_processes_->next_pid++;
  bool pty = req.pty_cols > 0;
  auto stream = process_stream(res, pid, pty);
  auto streams = std::make_shared<std::vector<std::shared_ptr<RunStream>>>(1, stream);
  auto processes = envd_processes_;
  auto count = run_recorder("exec", sb->template_name, sb->tenant, req);
  json config = {{"cmd", process["cmd"]},
                 {"args", process.value("args", json::array())},
                 {"envs", process.value("envs", json::object())},
                 {"cwd", req.cwd}};
  // Every stream gets every event; only the first holds the command back when its client
  // reads slowly (a later one that lags is cut off at the output cap).
  auto output = [streams](bool is_err, std::string_view data) {
    for (const auto& s : *streams) s->output()(is_err, data);
  };
  auto handle = run_exec(mgr_, sb, std::move(req), output,
                         [streams, count, processes, id = sb->id, pid](Result<ExecOutcome> r) {
                           count(r);
                           auto& mine = processes->by_sandbox[id];
                           mine.erase(pid);
                           if (mine.empty()) processes->by_sandbox.erase(id);
                           for (const auto& s : *streams) s->done()(r);
                         });
  stream->set_handle(handle);
  envd_processes_->by_sandbox[sb->id][pid] = {pid, std::move(config), str(*msg, "tag"), pty, handle, streams};
  // A client that leaves a background command's stream does not end the command (the SDK
  // disconnects from it and may kill it by pid later).
}

std::shared_ptr<RunStream> AgentApi::process_stream(const std::shared_ptr<http::Responder>& res,
                                                    int64_t pid, bool pty) {
  res->write_chunk(connect::message({{"event", {{"start", {{"pid", pid}}}}}}));
  return std::make_shared<RunStream>(
      res, [pty](std::string_view kind, const json& data) { return process_event(pty, kind, data); });
}

void AgentApi::e2b_upload(Call& c, std::shared_ptr<Sandbox> sb) {
  auto res = c.res;
  auto boundary = e2b::multipart_boundary(e2b::header(c.req, "Content-Type"));
  if (!boundary) return e2b::fail(res, boundary.error());
  auto parts = e2b::parse_multipart(c.req.body(), *boundary);
  if (!parts) return e2b::fail(res, parts.error());
  struct Upload {
    std::vector<std::pair<std::string, std::string>> files;  // path, bytes
    json written = json::array();
  };
  auto up = std::make_shared<Upload>();
  std::string query_path = c.param("path");
  for (const auto& part : *parts) {
    if (part.name != "file") continue;
    // Single-file writes name the path in the query too; the part's filename otherwise.
    std::string path = parts->size() == 1 && !query_path.empty() ? query_path : part.filename;
    if (auto st = validate_sandbox_path(path); !st) return e2b::fail(res, st.error());
    up->files.emplace_back(path, std::string(part.data));
  }
  if (up->files.empty()) return e2b::fail(res, make_error(Code::kInvalidArgument, "no part named file"));
  // One file after another; the answer lists them all.
  auto step = std::make_shared<std::function<void(size_t)>>();
  *step = [this, sb, res, up, step](size_t i) {
    if (i == up->files.size()) {
      *step = nullptr;
      return res->send_json(200, up->written);
    }
    auto& [path, data] = up->files[i];
    std::string shown = e2b::client_path(path);
    write_file(mgr_, sb, path, std::move(data), [res, up, step, i, shown](Status st) {
      if (!st) {
        *step = nullptr;
        return e2b::fail(res, st.error());
      }
      up->written.push_back({{"name", shown.substr(shown.find_last_of('/') + 1)},
                             {"type", "file"},
                             {"path", shown}});
      (*step)(i + 1);
    });
  };
  (*step)(0);
}

}  // namespace swissbox
