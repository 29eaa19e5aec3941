// The framed protocol between the agent and swissbox-init (one definition, both ends).
//
// A frame is: u32 header length (LE) | u32 payload length (LE) | header (JSON object) |
// payload (raw bytes). Requests (agent → init) carry "op" and "id"; events (init → agent)
// carry "ev" and the "id" of the request they answer. Many requests run at once,
// multiplexed by id. Ops and their events:
//   ping                          → result {pid}
//   exec {argv, env, cwd, timeout_ms, output_cap, background, stdin_eof}
//        payload = first stdin   → stdout/stderr (payload) … → exit {exit_code, signal,
//                                  duration_ms, cpu_ms, max_rss_kb, timed_out, truncated}
//   stdin {eof} payload          (no answer; feeds a running exec)
//   signal {signal}              (no answer; signals the exec's process group)
//   read_file {path, max_bytes}  → data (payload) … → result {size} | result {error}
//   write_file {path, mode, append, last} payload → result on last | result {error}
//   list {path}                  → result {entries:[{name,type,size,mode,mtime}]}
//   delete {path, recursive}     → result
//   stat {path}                  → result {name,type,size,mode,mtime}
// Every result is {"ev":"result","id":N,"ok":true,…} or {…,"ok":false,"error":{"errno":E,
// "message":"…"}}. init announces itself with {"ev":"hello","pid":P} at start.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace swissbox::proto {

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

}  // namespace swissbox::proto
