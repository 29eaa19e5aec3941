#include "common/runner_protocol.h"

#include <algorithm>
#include <cstring>

namespace swissbox::proto {
namespace {

void put_u32(std::string* out, uint32_t v) {
  char b[4] = {static_cast<char>(v & 0xff), static_cast<char>((v >> 8) & 0xff),
               static_cast<char>((v >> 16) & 0xff), static_cast<char>((v >> 24) & 0xff)};
  out->append(b, 4);
}

uint32_t get_u32(const char* p) {
  auto u = reinterpret_cast<const unsigned char*>(p);
  return u[0] | (u[1] << 8) | (u[2] << 16) | (static_cast<uint32_t>(u[3]) << 24);
}

}  // namespace

void encode(const nlohmann::json& header, std::string_view payload, std::string* out) {
  // Names from the sandbox (files, watched changes) need not be UTF-8: bytes that are not
  // become U+FFFD rather than an exception in the runner's loop.
  std::string h = header.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  put_u32(out, static_cast<uint32_t>(h.size()));
  put_u32(out, static_cast<uint32_t>(payload.size()));
  out->append(h);
  out->append(payload);
}

std::string encode(const nlohmann::json& header, std::string_view payload) {
  std::string out;
  encode(header, payload, &out);
  return out;
}

std::optional<Frame> Decoder::next() {
  if (!error_.empty()) return std::nullopt;
  if (buf_.size() - pos_ < kFramePrefix) return std::nullopt;
  const char* p = buf_.data() + pos_;
  uint32_t hlen = get_u32(p);
  uint32_t plen = get_u32(p + 4);
  if (hlen == 0 || hlen > kMaxHeader || plen > kMaxPayload) {
    error_ = "frame too large or empty header (header " + std::to_string(hlen) + ", payload " +
             std::to_string(plen) + ")";
    return std::nullopt;
  }
  if (buf_.size() - pos_ < kFramePrefix + hlen + plen) return std::nullopt;
  Frame f;
  f.header = nlohmann::json::parse(p + kFramePrefix, p + kFramePrefix + hlen, nullptr, false);
  if (f.header.is_discarded() || !f.header.is_object()) {
    error_ = "frame header is not a JSON object";
    return std::nullopt;
  }
  f.payload.assign(p + kFramePrefix + hlen, plen);
  pos_ += kFramePrefix + hlen + plen;
  // Compact once the consumed prefix dominates, so the buffer stays bounded.
  if (pos_ > 65536 && pos_ * 2 > buf_.size()) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  return f;
}

}  // namespace swissbox::proto

namespace swissbox::proto {
namespace {

using json = nlohmann::json;

// Reads the fields of one event header, each checked for its type and range; the first
// field that is wrong is remembered and every later read is a no-op.
class Fields {
 public:
  // what: how an error starts, e.g. "runner sent a bad 'exit' event".
  Fields(const json& h, std::string what) : h_(h), what_(std::move(what)) {}

  // Integers in [lo, hi]; a number with a fraction or out of range is an error.
  template <typename T>
  void integer(const char* name, T* out, bool required, int64_t lo, uint64_t hi) {
    const json* v = find(name, required);
    if (!v) return;
    if (v->is_number_unsigned()) {
      uint64_t u = v->get<uint64_t>();
      if (u > hi || (lo > 0 && u < static_cast<uint64_t>(lo))) return wrong(name, "out of range");
      *out = static_cast<T>(u);
    } else if (v->is_number_integer()) {
      int64_t i = v->get<int64_t>();
      if (i < lo || (i >= 0 && static_cast<uint64_t>(i) > hi)) return wrong(name, "out of range");
      *out = static_cast<T>(i);
    } else {
      wrong(name, "not an integer");
    }
  }
  void number(const char* name, double* out) {
    const json* v = find(name, false);
    if (!v) return;
    if (!v->is_number() || !(v->get<double>() >= 0) || v->get<double>() > 1e15)
      return wrong(name, "not a finite number >= 0");
    *out = v->get<double>();
  }
  void boolean(const char* name, bool* out, bool required = false) {
    const json* v = find(name, required);
    if (!v) return;
    if (!v->is_boolean()) return wrong(name, "not a boolean");
    *out = v->get<bool>();
  }
  void string(const char* name, std::string* out, bool required = false) {
    const json* v = find(name, required);
    if (!v) return;
    if (!v->is_string()) return wrong(name, "not a string");
    *out = v->get<std::string>();
  }
  void strings(const char* name, std::vector<std::string>* out, bool required = false) {
    const json* v = find(name, required);
    if (!v) return;
    if (!v->is_array()) return wrong(name, "not an array");
    for (const json& s : *v) {
      if (!s.is_string()) return wrong(name, "has an element that is not a string");
      out->push_back(s.get<std::string>());
    }
  }
  void string_map(const char* name, std::map<std::string, std::string>* out) {
    const json* v = find(name, false);
    if (!v) return;
    if (!v->is_object()) return wrong(name, "not an object");
    for (const auto& [k, val] : v->items()) {
      if (!val.is_string()) return wrong(name, "has a value that is not a string");
      (*out)[k] = val.get<std::string>();
    }
  }
  bool has(const char* name) const { return h_.contains(name); }
  const json* find(const char* name, bool required) {
    if (!error_.empty()) return nullptr;
    auto it = h_.find(name);
    if (it == h_.end() || it->is_null()) {
      if (required) wrong(name, "missing");
      return nullptr;
    }
    return &*it;
  }
  void wrong(const std::string& name, const std::string& problem) {
    if (error_.empty()) error_ = what_ + ": " + name + " " + problem;
  }
  const std::string& error() const { return error_; }

 private:
  const json& h_;
  std::string what_;
  std::string error_;
};

std::string bad_event(const std::string& ev) { return "runner sent a bad '" + ev + "' event"; }

bool is_display_format(const std::string& key) {
  const auto& known = display_formats();
  return std::find(known.begin(), known.end(), key) != known.end();
}

// Why a display event's value is not what display_payload() makes; empty when it is.
std::string display_problem(const json& v) {
  if (!v.is_object()) return "is not a JSON object";
  for (const auto& [key, val] : v.items()) {
    if (key == "is_main_result") {
      if (!val.is_boolean()) return "is_main_result is not a boolean";
    } else if (!is_display_format(key)) {
      return "has an unknown format " + json(key).dump();
    } else if (key != "json" && !val.is_string()) {
      return "format " + key + " is not a string";
    }
  }
  return {};
}

constexpr const char* kExceptionFields[] = {"name", "value", "traceback"};

std::string exception_problem(const json& v) {
  if (!v.is_object()) return "is not a JSON object";
  for (const char* field : kExceptionFields) {
    auto it = v.find(field);
    if (it == v.end() || !it->is_string()) return std::string(field) + " is not a string";
  }
  return {};
}

std::optional<FileEntry> decode_entry(const json& j, Fields* outer) {
  if (!j.is_object()) {
    outer->wrong("entry", "not an object");
    return std::nullopt;
  }
  Fields f(j, bad_event("entry"));
  FileEntry e;
  f.string("name", &e.name, true);
  f.string("type", &e.type, true);
  f.integer("size", &e.size, false, 0, UINT64_MAX);
  f.integer("mode", &e.mode, false, 0, 07777);
  f.integer("mtime", &e.mtime, false, INT64_MIN, INT64_MAX);
  if (e.type != "file" && e.type != "dir" && e.type != "symlink" && e.type != "other")
    f.wrong("type", "is not file, dir, symlink or other");
  if (!f.error().empty()) {
    outer->wrong("entry", "(" + f.error() + ")");
    return std::nullopt;
  }
  return e;
}

void decode_entries(const json* list, Fields* f, std::vector<FileEntry>* out) {
  if (!list) return;
  if (!list->is_array()) return f->wrong("entries", "not an array");
  for (const json& j : *list) {
    auto e = decode_entry(j, f);
    if (!e) return;
    out->push_back(std::move(*e));
  }
}

void decode_changes(const json* list, Fields* f, std::vector<Change>* out) {
  if (!list) return;
  if (!list->is_array() || list->empty() || list->size() > kMaxChangesPerEvent)
    return f->wrong("changes", "is not an array of 1-" + std::to_string(kMaxChangesPerEvent) + " changes");
  const auto& types = change_types();
  for (const json& j : *list) {
    if (!j.is_object()) return f->wrong("changes", "holds a change that is not an object");
    Fields c(j, bad_event("change"));
    Change change;
    c.string("name", &change.name, true);
    c.string("type", &change.type, true);
    if (c.error().empty() && std::find(types.begin(), types.end(), change.type) == types.end())
      c.wrong("type", "is not one of create, write, remove, rename, chmod");
    if (c.error().empty() && (change.name.size() > 4096 || change.name.find('\0') != std::string::npos))
      c.wrong("name", "is not a path");
    if (!c.error().empty()) return f->wrong("changes", "(" + c.error() + ")");
    out->push_back(std::move(change));
  }
}

}  // namespace

const std::vector<std::string>& change_types() {
  static const std::vector<std::string> kTypes = {"create", "write", "remove", "rename", "chmod"};
  return kTypes;
}

json FileEntry::to_json() const {
  return {{"name", name}, {"type", type}, {"size", size}, {"mode", mode}, {"mtime", mtime}};
}

Event Event::lost(uint64_t id, std::string why) {
  Event e;
  e.kind = EventKind::kLost;
  e.id = id;
  e.message = std::move(why);
  return e;
}

std::optional<Event> decode_event(Frame frame, std::string* error) {
  const json& h = frame.header;
  auto ev_it = h.find("ev");
  if (ev_it == h.end() || !ev_it->is_string()) {
    *error = "runner sent a frame without an event name";
    return std::nullopt;
  }
  const std::string ev = ev_it->get<std::string>();
  static const std::pair<const char*, EventKind> kKinds[] = {
      {"hello", EventKind::kHello},   {"result", EventKind::kResult}, {"stdout", EventKind::kStdout},
      {"stderr", EventKind::kStderr}, {"data", EventKind::kData},     {"entries", EventKind::kEntries},
      {"exit", EventKind::kExit},     {"fatal", EventKind::kFatal},   {"display", EventKind::kDisplay},
      {"exception", EventKind::kException}, {"watching", EventKind::kWatching},
      {"changes", EventKind::kChanges}};
  Event e;
  bool known = false;
  for (auto [name, kind] : kKinds) {
    if (ev == name) e.kind = kind, known = true;
  }
  if (!known) {
    *error = "runner sent an unknown event";
    return std::nullopt;
  }
  Fields f(h, bad_event(ev));
  const bool has_id = e.kind != EventKind::kHello && e.kind != EventKind::kFatal;
  // Id 0 answers no request (a runner of the previous version answers an op it does not
  // know, such as attach, with id 0): decoded, then dropped as unrouted.
  f.integer("id", &e.id, has_id, 0, UINT64_MAX);
  const bool carries_payload =
      e.kind == EventKind::kStdout || e.kind == EventKind::kStderr || e.kind == EventKind::kData;
  const bool carries_value = e.kind == EventKind::kDisplay || e.kind == EventKind::kException;
  if (!carries_payload && !carries_value && !frame.payload.empty()) f.wrong("payload", "not expected");
  if (carries_value) {
    e.value = json::parse(frame.payload, nullptr, false);
    frame.payload.clear();
    std::string problem = e.kind == EventKind::kDisplay ? display_problem(e.value)
                                                        : exception_problem(e.value);
    if (!problem.empty()) f.wrong("payload", problem);
  }
  switch (e.kind) {
    case EventKind::kHello:
      f.integer("pid", &e.pid, false, 1, INT32_MAX);
      f.integer("version", &e.version, false, 0, INT32_MAX);
      f.string("secret", &e.secret);
      if (e.secret.size() > 64 ||
          e.secret.find_first_not_of("0123456789abcdef") != std::string::npos)
        f.wrong("secret", "is not up to 64 hex digits");
      break;
    case EventKind::kFatal:
      f.string("message", &e.message);
      break;
    case EventKind::kResult: {
      f.boolean("ok", &e.ok, true);
      if (!e.ok) {
        const json* err = f.find("error", true);
        if (err && !err->is_object()) f.wrong("error", "not an object");
        if (err && err->is_object()) {
          Fields ef(*err, bad_event("error"));
          ef.integer("errno", &e.error_errno, false, 0, 4095);
          ef.string("message", &e.message);
          if (!ef.error().empty()) f.wrong("error", "(" + ef.error() + ")");
        }
      }
      uint64_t size = 0;
      if (f.has("size") && !f.has("name")) f.integer("size", &size, false, 0, UINT64_MAX), e.size = size;
      f.integer("pid", &e.pid, false, 1, INT32_MAX);
      if (f.has("name")) {
        if (auto entry = decode_entry(h, &f)) e.entry = std::move(*entry);
      }
      decode_entries(f.find("entries", false), &f, &e.entries);
      break;
    }
    case EventKind::kEntries:
      decode_entries(f.find("entries", true), &f, &e.entries);
      break;
    case EventKind::kChanges:
      decode_changes(f.find("changes", true), &f, &e.changes);
      break;
    case EventKind::kExit:
      f.integer("exit_code", &e.exit.exit_code, true, -1, 255);
      f.integer("signal", &e.exit.signal, false, 0, 64);
      f.number("duration_ms", &e.exit.duration_ms);
      f.number("cpu_ms", &e.exit.cpu_ms);
      f.integer("max_rss_kb", &e.exit.max_rss_kb, false, 0, INT64_MAX);
      f.boolean("timed_out", &e.exit.timed_out);
      f.boolean("truncated", &e.exit.truncated);
      f.boolean("oom_killed", &e.exit.oom_killed);
      break;
    default:
      break;
  }
  if (!f.error().empty()) {
    *error = f.error();
    return std::nullopt;
  }
  e.payload = std::move(frame.payload);
  return e;
}

json result_event(uint64_t id, json fields) {
  fields["ev"] = "result";
  fields["id"] = id;
  fields["ok"] = true;
  return fields;
}

json error_event(uint64_t id, int err, const std::string& message) {
  return {{"ev", "result"}, {"id", id}, {"ok", false}, {"error", {{"errno", err}, {"message", message}}}};
}

json watching_event(uint64_t id) { return {{"ev", "watching"}, {"id", id}}; }

json changes_event(uint64_t id, const std::vector<Change>& changes) {
  json list = json::array();
  for (const auto& c : changes) list.push_back({{"name", c.name}, {"type", c.type}});
  return {{"ev", "changes"}, {"id", id}, {"changes", std::move(list)}};
}

json hello_event(int64_t pid, const std::string& secret, std::optional<size_t> reattached_running) {
  json h = {{"ev", "hello"}, {"pid", pid}, {"version", kVersion}};
  if (!secret.empty()) h["secret"] = secret;
  if (reattached_running) h["reattached"] = true, h["running"] = *reattached_running;
  return h;
}

json exit_event(uint64_t id, const ExitStatus& s) {
  return {{"ev", "exit"},           {"id", id},
          {"exit_code", s.exit_code}, {"signal", s.signal},
          {"duration_ms", s.duration_ms}, {"cpu_ms", s.cpu_ms},
          {"max_rss_kb", s.max_rss_kb}, {"timed_out", s.timed_out},
          {"truncated", s.truncated},   {"oom_killed", s.oom_killed}};
}

json fatal_event(const std::string& message) { return {{"ev", "fatal"}, {"message", message}}; }

json encode_op(const ExecOp& op) {
  json h = {{"op", "exec"},
            {"env", op.env},
            {"timeout_ms", op.timeout_ms},
            {"output_cap", op.output_cap},
            {"background", op.background},
            {"memory_limit", op.memory_limit},
            {"pids_limit", op.pids_limit},
            {"stdin_eof", op.stdin_eof}};
  if (!op.cwd.empty()) h["cwd"] = op.cwd;
  if (op.pty_cols > 0) h["pty"] = {{"cols", op.pty_cols}, {"rows", op.pty_rows}};
  if (op.language.empty()) {
    h["argv"] = op.argv;
  } else {
    h["language"] = op.language;
    h["code_bytes"] = op.code_bytes;
    h["keep_worker"] = op.keep_worker;
  }
  return h;
}

const std::vector<std::string>& display_formats() {
  static const std::vector<std::string> kFormats = {"text",  "html", "markdown", "svg",
                                                    "png",   "jpeg", "pdf",      "latex",
                                                    "json",  "javascript"};
  return kFormats;
}

json display_payload(const json& kernel_data) {
  json out = {{"is_main_result", false}};
  if (!kernel_data.is_object()) return out;
  for (const auto& [key, val] : kernel_data.items()) {
    if (key == "is_main_result" && val.is_boolean()) out[key] = val;
    if (is_display_format(key) && (key == "json" || val.is_string())) out[key] = val;
  }
  return out;
}

json exception_payload(const json& kernel_error) {
  json out = json::object();
  for (const char* field : kExceptionFields) {
    auto it = kernel_error.is_object() ? kernel_error.find(field) : kernel_error.end();
    out[field] = it != kernel_error.end() && it->is_string() ? it->get<std::string>() : "";
  }
  return out;
}

bool valid_context_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-';
  });
}

json encode_op(const ContextStartOp& op) {
  json h = {{"op", "context_start"},
            {"context", op.context},
            {"language", op.language},
            {"env", op.env},
            {"pids_limit", op.pids_limit}};
  if (!op.cwd.empty()) h["cwd"] = op.cwd;
  return h;
}

json encode_op(const ContextRunOp& op) {
  return {{"op", "context_run"},          {"context", op.context},
          {"env", op.env},                {"timeout_ms", op.timeout_ms},
          {"output_cap", op.output_cap},  {"memory_limit", op.memory_limit}};
}

json encode_op(const WatchOp& op) {
  return {{"op", "watch"}, {"path", op.path}, {"recursive", op.recursive}};
}

json context_op(std::string_view op, const std::string& context) {
  return {{"op", op}, {"context", context}};
}

json encode_op(const PrepareOp& op) {
  return {{"op", "prepare"}, {"languages", op.languages}, {"env", op.env}};
}

std::optional<ExecOp> decode_exec(const json& h, std::string* error) {
  Fields f(h, "bad 'exec' request");
  ExecOp op;
  f.string("language", &op.language);
  if (op.language.empty()) {
    f.strings("argv", &op.argv, true);
    if (f.error().empty() && op.argv.empty()) f.wrong("argv", "is empty");
  } else {
    f.integer("code_bytes", &op.code_bytes, false, 0, UINT64_MAX);
    f.boolean("keep_worker", &op.keep_worker);
  }
  f.string_map("env", &op.env);
  f.string("cwd", &op.cwd);
  f.integer("timeout_ms", &op.timeout_ms, false, 0, INT64_MAX);
  f.integer("output_cap", &op.output_cap, false, 0, UINT64_MAX);
  f.boolean("background", &op.background);
  f.integer("memory_limit", &op.memory_limit, false, 0, INT64_MAX);
  f.integer("pids_limit", &op.pids_limit, false, 0, INT64_MAX);
  f.boolean("stdin_eof", &op.stdin_eof);
  if (const json* pty = f.find("pty", false)) {
    Fields p(*pty, "bad 'exec' request: pty");
    p.integer("cols", &op.pty_cols, true, 1, 4096);
    p.integer("rows", &op.pty_rows, true, 1, 4096);
    if (!pty->is_object() || !p.error().empty()) f.wrong("pty", "is not {cols, rows} in 1-4096");
  }
  if (!f.error().empty()) return *error = f.error(), std::nullopt;
  return op;
}

std::optional<PrepareOp> decode_prepare(const json& h, std::string* error) {
  Fields f(h, "bad 'prepare' request");
  PrepareOp op;
  f.strings("languages", &op.languages);
  f.string_map("env", &op.env);
  if (!f.error().empty()) return *error = f.error(), std::nullopt;
  return op;
}

namespace {

void context_field(Fields& f, std::string* context) {
  f.string("context", context, true);
  if (f.error().empty() && !valid_context_id(*context))
    f.wrong("context", "is not 1-64 of [A-Za-z0-9_-]");
}

}  // namespace

std::optional<ContextStartOp> decode_context_start(const json& h, std::string* error) {
  Fields f(h, "bad 'context_start' request");
  ContextStartOp op;
  context_field(f, &op.context);
  f.string("language", &op.language, true);
  f.string("cwd", &op.cwd);
  f.string_map("env", &op.env);
  f.integer("pids_limit", &op.pids_limit, false, 0, INT64_MAX);
  if (!f.error().empty()) return *error = f.error(), std::nullopt;
  return op;
}

std::optional<ContextRunOp> decode_context_run(const json& h, std::string* error) {
  Fields f(h, "bad 'context_run' request");
  ContextRunOp op;
  context_field(f, &op.context);
  f.string_map("env", &op.env);
  f.integer("timeout_ms", &op.timeout_ms, false, 0, INT64_MAX);
  f.integer("output_cap", &op.output_cap, false, 0, UINT64_MAX);
  f.integer("memory_limit", &op.memory_limit, false, 0, INT64_MAX);
  if (!f.error().empty()) return *error = f.error(), std::nullopt;
  return op;
}

std::optional<WatchOp> decode_watch(const json& h, std::string* error) {
  Fields f(h, "bad 'watch' request");
  WatchOp op;
  f.string("path", &op.path, true);
  f.boolean("recursive", &op.recursive);
  if (f.error().empty() && op.path.empty()) f.wrong("path", "is empty");
  if (!f.error().empty()) return *error = f.error(), std::nullopt;
  return op;
}

std::optional<std::string> decode_context_name(const json& h, std::string* error) {
  Fields f(h, "bad context request");
  std::string context;
  context_field(f, &context);
  if (!f.error().empty()) return *error = f.error(), std::nullopt;
  return context;
}

}  // namespace swissbox::proto
