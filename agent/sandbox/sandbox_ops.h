// What runs inside a sandbox through its runner: commands, language runs and file access.
// Requests are parsed and validated here (the API edge), then sent over the sandbox's
// RunnerChannel. Callbacks run on the I/O thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "agent/sandbox/sandbox_manager.h"
#include "common/error.h"
#include "common/http_server.h"
#include "common/limits.h"
#include "common/runner_protocol.h"

namespace swissbox {

using limits::kDefaultExecTimeoutMs;
using limits::kDefaultOutputCap;
using limits::kMaxExecTimeoutMs;
using limits::kMaxFileBytes;
using limits::kMaxListEntries;
using limits::kMaxOutputCap;

struct ExecRequest {
  std::vector<std::string> argv;
  std::string stdin_data;
  std::map<std::string, std::string> env;
  std::string cwd;  // empty: the sandbox's /workspace
  int64_t timeout_ms = kDefaultExecTimeoutMs;
  size_t output_cap = kDefaultOutputCap;
  bool background = false;
  // Language runs. python, javascript, typescript: the sandbox's language worker runs the
  // code (no file, no argv); keep_worker (session sandboxes) has the runner load the next
  // worker of the language once this one ends. bash: the code is written to code_path
  // first, then argv runs.
  std::string language;
  bool keep_worker = false;
  std::string code_path;
  std::string code;
  // Input stays open after stdin_data: more comes through ExecHandle::send_stdin.
  bool keep_stdin_open = false;
  // A terminal of cols × rows instead of pipes (output comes as stdout); 0: pipes.
  uint16_t pty_cols = 0, pty_rows = 0;
  // A stateful context's id: the code runs there as a cell (at most proto::kMaxPayload
  // bytes; env applies to this run only, stdin is not used).
  std::string context_id;
};

// The runner's exit report, and what the agent adds to it.
struct ExecOutcome : proto::ExitStatus {
  // Set when the sandbox died under the command (it is failed now).
  std::string sandbox_failure;
  std::string out, err;
  size_t out_bytes = 0, err_bytes = 0;  // what the command wrote, up to the cap
  // A context run: the values it showed and what it raised (null: nothing).
  bool in_context = false;
  nlohmann::json results = nlohmann::json::array();
  nlohmann::json error;
  nlohmann::json to_json(bool with_output) const;
};

// POST …/exec body: {command: [argv] | "shell string", stdin, env, cwd, timeout_ms,
// max_output_bytes, background}.
Result<ExecRequest> parse_exec_request(const nlohmann::json& body);
// POST …/code body: {language: python|bash|javascript|typescript, code, stdin, env, cwd,
// timeout_ms, max_output_bytes} or {context_id, code, env, timeout_ms, max_output_bytes}
// (language optional then; the caller checks it against the context's).
Result<ExecRequest> parse_code_request(const nlohmann::json& body);
// The languages /code and /v1/execute accept.
const std::vector<std::string>& supported_languages();
// A language name as /code and contexts take it (python3, js, node, ts, sh, shell are
// aliases); nullopt when unknown.
std::optional<std::string> canonical_language(const std::string& name);

// POST …/contexts body: {language, cwd?, env?}.
struct ContextRequest {
  std::string id;  // empty: a new one
  std::string language;
  std::string cwd;
  std::map<std::string, std::string> env;
};
Result<ContextRequest> parse_context_request(const nlohmann::json& body);
// Starts a context (its interpreter loaded) and records it in the sandbox; done gets its id.
void start_context(SandboxManager& mgr, std::shared_ptr<Sandbox> sb, ContextRequest req,
                   std::function<void(Result<std::string>)> done);
// A fresh interpreter under the same id; the one before (and its state) is gone.
void restart_context(SandboxManager& mgr, std::shared_ptr<Sandbox> sb, std::string id,
                     std::function<void(Status)> done);
void stop_context(SandboxManager& mgr, std::shared_ptr<Sandbox> sb, std::string id,
                  std::function<void(Status)> done);

using OutputFn = std::function<void(bool is_stderr, std::string_view data)>;
using ExecDoneFn = std::function<void(Result<ExecOutcome>)>;
// A context run's value shown (kind "result") or exception (kind "error"), as it comes.
using ValueFn = std::function<void(std::string_view kind, const nlohmann::json& value)>;

// Stops a running exec (SIGKILL to its process group), e.g. when its SSE client leaves.
// Use on the I/O thread only.
struct ExecHandle {
  void cancel();
  // Stops reading the command's output (it blocks once its pipes are full), or starts again.
  void pause(bool on);
  // A signal to the command's process group; more input, and with eof its end (a command
  // started with keep_stdin_open).
  void signal(int sig);
  void send_stdin(std::string_view data, bool eof);
  void resize(uint16_t cols, uint16_t rows);
  // Set once the command has been sent to the runner.
  std::weak_ptr<RunnerChannel> channel;
  uint64_t id = 0;
  bool cancelled = false;
};

// Runs the request; with on_output set, output is streamed there instead of collected, and
// with on_value set a context run's values and exception go there.
std::shared_ptr<ExecHandle> run_exec(SandboxManager& mgr, std::shared_ptr<Sandbox> sb,
                                     ExecRequest req, OutputFn on_output, ExecDoneFn done,
                                     ValueFn on_value = nullptr);

// Files: paths are resolved inside the sandbox by the runner (relative = under /workspace).
void read_file(SandboxManager& mgr, std::shared_ptr<Sandbox> sb, std::string path,
               std::function<void(Result<std::string>)> done);
void write_file(SandboxManager& mgr, std::shared_ptr<Sandbox> sb, std::string path,
                std::string data, std::function<void(Status)> done);
// A file upload as it arrives: each piece of the request body goes to the runner once the
// one before it is in the runner's socket, so the agent holds one piece (64 KiB), never
// the file. A failed or cut-off upload removes what it wrote.
void upload_file(SandboxManager& mgr, std::shared_ptr<Sandbox> sb, std::string path,
                 std::shared_ptr<http::BodyReader> body, std::function<void(Status)> done);
void list_dir(SandboxManager& mgr, std::shared_ptr<Sandbox> sb, std::string path,
              std::function<void(Result<std::vector<proto::FileEntry>>)> done);
void delete_path(SandboxManager& mgr, std::shared_ptr<Sandbox> sb, std::string path,
                 bool recursive, std::function<void(Status)> done);
// One entry (not followed if it is a symlink), a new directory (with its parents; conflict
// when the path exists), and a move (the destination's parents made): each answers the
// entry as it is afterwards.
using EntryFn = std::function<void(Result<proto::FileEntry>)>;
void stat_path(SandboxManager& mgr, std::shared_ptr<Sandbox> sb, std::string path, EntryFn done);
void make_dir(SandboxManager& mgr, std::shared_ptr<Sandbox> sb, std::string path, EntryFn done);
void move_path(SandboxManager& mgr, std::shared_ptr<Sandbox> sb, std::string from, std::string to,
               EntryFn done);
Status validate_sandbox_path(const std::string& path);

// A directory watch in the sandbox (runner/watches.h). Use on the I/O thread only.
struct WatchHandle {
  // Ends the watch: its `ended` then gets ok.
  void stop();
  // Stops reading its changes, or starts again: they wait in the sandbox meanwhile, and a
  // watch that falls too far behind ends as lost.
  void pause(bool on);
  std::weak_ptr<RunnerChannel> channel;
  uint64_t id = 0;
};
using ChangesFn = std::function<void(const std::vector<proto::Change>&)>;
// Watches `path` (and with recursive, every directory under it): `started` runs once, ok
// when the watch is in place, else with the reason; after an ok, `changes` gets what
// changed as it comes and `ended` runs once (ok after stop(); else the directory went
// away, changes were lost, or the sandbox is gone).
std::shared_ptr<WatchHandle> watch_dir(SandboxManager& mgr, std::shared_ptr<Sandbox> sb,
                                       std::string path, bool recursive,
                                       std::function<void(Status)> started, ChangesFn changes,
                                       std::function<void(Status)> ended);

}  // namespace swissbox
