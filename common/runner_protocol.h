// The framed protocol between the agent and swissbox-init (one definition, both ends).
//
// A frame is: u32 header length (LE) | u32 payload length (LE) | header (JSON object) |
// payload (raw bytes). Requests (agent → init) carry "op" and "id"; events (init → agent)
// carry "ev" and the "id" of the request they answer. Many requests run at once,
// multiplexed by id. Ops and their events:
//   ping                          → result {pid}
//   exec (ExecOp) payload = first stdin (a program's code first)
//                                 → stdout/stderr (payload) … → exit (ExitStatus)
//   prepare (PrepareOp)           → result once the languages' idle workers have loaded
//   stdin {eof} payload          (no answer; feeds a running exec)
//   signal {signal}              (no answer; signals the exec's process group)
//   resize {cols, rows}          (no answer; a PTY exec's terminal size)
//   pause, resume                (no answer; stop/start reading the exec's output, so that
//                                  a command whose client reads slowly blocks on its writes)
//   read_file {path, max_bytes}  → data (payload) … → result {size} | result {error}
//   write_file {path, mode, append, last} payload → result on last | result {error}
//   list {path}                  → entries {entries:[{name,type,size,mode,mtime}]} … → result
//                                  (split so that no header passes kMaxHeader)
//   delete {path, recursive}     → result
//   attach {secret}              (no answer; the first frame through a reattach bridge, which
//                                  becomes the controller only with the secret of the runner's
//                                  first hello)
//   stat {path}                  → result {name,type,size,mode,mtime}
//   mkdir {path}                 → result {name,…} of the new directory (parents made too;
//                                  EEXIST when the path exists)
//   rename {from, to}            → result {name,…} of the moved entry (parents of to made)
//   context_start (ContextStartOp) → result once the context's interpreter has loaded
//   context_run (ContextRunOp) payload = the cell's code
//                                 → stdout/stderr (payload), display (payload: a value shown,
//                                    DisplayFormats), exception (payload {name, value,
//                                    traceback}) … → exit (ExitStatus; exit_code 1 when the
//                                    cell raised). Runs of one context are queued in order.
//   context_restart {context}    → result once a fresh interpreter has loaded (same id)
//   context_stop {context}       → result
//   watch (WatchOp)              → watching once the directory is watched → changes
//                                  {changes:[{name, type}]} … → result: ok after unwatch,
//                                  failed when the directory went away or changes were lost
//                                  (the runner could not keep up, or the watch was paused
//                                  too long). Names are relative to the watched directory.
//   unwatch                      (no answer; on a watch's id: ends it)
//   signal on a context run's id interrupts the cell (SIGINT; killed and restarted if it
//   does not end within a grace); pause/resume work on it, and on a watch, as on an exec.
// Every result is {"ev":"result","id":N,"ok":true,…} or {…,"ok":false,"error":{"errno":E,
// "message":"…"}}. init announces itself with hello_event() at start (and after a
// reattach) and sends fatal_event() before it stops reading a broken channel. The ops with
// more than a field or two (exec, prepare) and the runner's hello, exit and fatal events
// are structs here with one encoder and one decoder each.
//
// The runner runs as the sandbox's user, so the agent treats every byte of it as hostile:
// decode_event() turns a frame into a typed Event with every field type- and range-checked,
// and anything else is a protocol error that ends that sandbox's channel only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace swissbox::proto {

// In every hello. 2: the reattach secret, attach, pause/resume, prepare. 3: contexts.
// 4: watches.
constexpr int kVersion = 4;

constexpr uint32_t kMaxHeader = 64 * 1024;
constexpr uint32_t kMaxPayload = 1024 * 1024;
constexpr size_t kFramePrefix = 8;

struct Frame {
  nlohmann::json header;
  std::string payload;
};

// Appends one encoded frame to `out`. The payload must be at most kMaxPayload bytes.
void encode(const nlohmann::json& header, std::string_view payload, std::string* out);
std::string encode(const nlohmann::json& header, std::string_view payload = {});

// Incremental decoder: feed bytes as they arrive, take whole frames out.
class Decoder {
 public:
  void feed(const char* data, size_t n) { buf_.append(data, n); }
  // A frame if one is complete; nullopt when more bytes are needed. Sets error() and
  // returns nullopt forever after a malformed frame (oversized or bad JSON).
  std::optional<Frame> next();
  const std::string& error() const { return error_; }
  size_t buffered() const { return buf_.size() - pos_; }

 private:
  std::string buf_;
  size_t pos_ = 0;
  std::string error_;
};

// What the agent reads from a runner.
enum class EventKind {
  kHello, kResult, kStdout, kStderr, kData, kEntries, kExit, kFatal, kLost,
  kDisplay,    // a context run showed a value (value: DisplayFormats, checked)
  kException,  // a context run raised (value: {name, value, traceback}, strings)
  kWatching,   // a watch is in place
  kChanges,    // a watch saw changes (changes)
};

// The formats a displayed value may carry besides is_main_result (a bool): each a string
// (png and jpeg base64), except json, any JSON value.
const std::vector<std::string>& display_formats();

struct FileEntry {
  std::string name;
  std::string type;  // file, dir, symlink, other
  uint64_t size = 0;
  uint32_t mode = 0;
  int64_t mtime = 0;
  nlohmann::json to_json() const;
};

// One change a watch saw: the entry's path relative to the watched directory, and what
// happened to it (create, write, remove, rename — moved away —, chmod).
struct Change {
  std::string name;
  std::string type;
  bool operator==(const Change&) const = default;
};
// The change types, and the most one changes event holds.
const std::vector<std::string>& change_types();
constexpr size_t kMaxChangesPerEvent = 512;

struct ExitStatus {
  int exit_code = -1;
  int signal = 0;
  double duration_ms = 0;
  double cpu_ms = 0;
  int64_t max_rss_kb = 0;
  bool timed_out = false;
  bool truncated = false;
  bool oom_killed = false;
};

struct Event {
  EventKind kind = EventKind::kLost;
  uint64_t id = 0;      // the request answered; 0 for hello and fatal
  std::string payload;  // stdout, stderr, data
  // result: ok, or the runner-side errno and message. fatal, lost: message.
  bool ok = false;
  int error_errno = 0;
  std::string message;
  std::optional<uint64_t> size;     // result of read_file
  std::optional<FileEntry> entry;   // result of stat
  std::vector<FileEntry> entries;   // entries (and the result of a list from an older runner)
  int64_t pid = 0;                  // hello, result of ping
  int version = 0;                  // hello
  std::string secret;               // hello at start: what a reattaching bridge presents
  ExitStatus exit;                  // exit
  nlohmann::json value;             // display, exception
  std::vector<Change> changes;      // changes

  // The event an open request gets when its runner's channel ends (never on the wire).
  static Event lost(uint64_t id, std::string why);
};

// A typed event, or nullopt with *error saying which field of which event was wrong.
std::optional<Event> decode_event(Frame frame, std::string* error);

// What the runner sends: hello (reattached: how many commands of the earlier agent still
// run), exit, fatal. decode_event() reads them.
nlohmann::json hello_event(int64_t pid, const std::string& secret, std::optional<size_t> reattached_running);
nlohmann::json exit_event(uint64_t id, const ExitStatus& status);
nlohmann::json fatal_event(const std::string& message);
// A request's result: ok with the op's fields, or failed with the runner-side errno and a
// message.
nlohmann::json result_event(uint64_t id, nlohmann::json fields = nlohmann::json::object());
nlohmann::json error_event(uint64_t id, int err, const std::string& message);
// What a watch sends: watching, then changes (at most kMaxChangesPerEvent each).
nlohmann::json watching_event(uint64_t id);
nlohmann::json changes_event(uint64_t id, const std::vector<Change>& changes);

// exec: a command (argv), or a program that the language's worker runs (language set; its
// code, code_bytes long, leads the input stream, and the command's stdin follows).
struct ExecOp {
  std::vector<std::string> argv;
  std::string language;
  uint64_t code_bytes = 0;
  bool keep_worker = false;  // load the language's next worker once this one ends
  std::map<std::string, std::string> env;
  std::string cwd;             // empty: the workspace
  int64_t timeout_ms = 0;      // 0: none
  uint64_t output_cap = 1 << 20;  // per stream
  bool background = false;     // what it leaves running is not killed when it ends
  int64_t memory_limit = 0;    // bytes, for the runner's memory guard; 0: none
  int64_t pids_limit = 0;      // RLIMIT_NPROC of the command; 0: none
  bool stdin_eof = true;       // the payload is all of the input
  // A terminal instead of pipes: the command gets a PTY of this size as its controlling
  // terminal and stdin/stdout/stderr (its output comes as stdout); 0 cols: pipes.
  uint16_t pty_cols = 0, pty_rows = 0;
};

// prepare: start an idle worker per language, with this environment.
struct PrepareOp {
  std::vector<std::string> languages;
  std::map<std::string, std::string> env;
};

// A context id: 1-64 of [A-Za-z0-9_-].
bool valid_context_id(std::string_view id);

// context_start: a long-lived interpreter (python, javascript, typescript, bash) whose
// globals persist from one run to the next.
struct ContextStartOp {
  std::string context;
  std::string language;
  std::string cwd;  // empty: the workspace
  std::map<std::string, std::string> env;
  int64_t pids_limit = 0;  // RLIMIT_NPROC of the interpreter; 0: none
};

// context_run: one cell (the frame's payload, at most kMaxPayload bytes).
struct ContextRunOp {
  std::string context;
  std::map<std::string, std::string> env;  // for this run only (bash: exported, it stays)
  int64_t timeout_ms = 0;                  // 0: none
  uint64_t output_cap = 1 << 20;           // per stream; displayed values count as stdout
  int64_t memory_limit = 0;                // bytes, for the runner's memory guard; 0: none
};

// watch: a directory's changes, and with recursive those of every directory under it.
struct WatchOp {
  std::string path;
  bool recursive = false;
};

// The request header (without its id, which the channel adds).
nlohmann::json encode_op(const ExecOp& op);
nlohmann::json encode_op(const PrepareOp& op);
nlohmann::json encode_op(const ContextStartOp& op);
nlohmann::json encode_op(const ContextRunOp& op);
nlohmann::json encode_op(const WatchOp& op);
// context_stop and context_restart.
nlohmann::json context_op(std::string_view op, const std::string& context);
// The runner's decoders: nullopt with *error naming the field that was wrong.
std::optional<ExecOp> decode_exec(const nlohmann::json& header, std::string* error);
std::optional<PrepareOp> decode_prepare(const nlohmann::json& header, std::string* error);
std::optional<ContextStartOp> decode_context_start(const nlohmann::json& header, std::string* error);
std::optional<ContextRunOp> decode_context_run(const nlohmann::json& header, std::string* error);
std::optional<WatchOp> decode_watch(const nlohmann::json& header, std::string* error);
// The context a context_stop or context_restart names.
std::optional<std::string> decode_context_name(const nlohmann::json& header, std::string* error);

// What the runner sends for a value a cell showed, and for what it raised. The runner
// passes on only what these keep of a kernel's message (known formats, strings).
nlohmann::json display_payload(const nlohmann::json& kernel_data);
nlohmann::json exception_payload(const nlohmann::json& kernel_error);

}  // namespace swissbox::proto
