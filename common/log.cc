#include "common/log.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>

namespace swissbox::log {
namespace {

std::atomic<Level> g_level{Level::kInfo};

constexpr std::string_view kNames[] = {"debug", "info", "warn", "error"};

bool is_control(char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }

// Values may come from a sandbox (a host name, an error text): every control byte is
// escaped, so that one log line stays one line and a terminal shows nothing it would obey.
void append_value(std::string& out, std::string_view v) {
  bool quote = v.empty() || v.find_first_of(" \"=\\") != std::string_view::npos ||
               std::any_of(v.begin(), v.end(), is_control);
  if (!quote) {
    out.append(v);
    return;
  }
  out.push_back('"');
  for (char c : v) {
    if (c == '"' || c == '\\') out.push_back('\\');
    if (c == '\n') {
      out.append("\\n");
    } else if (is_control(c)) {
      out.append(fmt::format("\\x{:02x}", static_cast<unsigned char>(c)));
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
}

}  // namespace

Field::Field(std::string_view k, double v) : key(k), value(fmt::format("{:.3f}", v)) {}

void set_level(Level level) { g_level = level; }

bool parse_level(std::string_view name, Level* out) {
  for (int i = 0; i < 4; ++i) {
    if (kNames[i] == name) {
      *out = static_cast<Level>(i);
      return true;
    }
  }
  return false;
}

void write(Level level, std::string_view msg, std::initializer_list<Field> fields) {
  if (level < g_level.load(std::memory_order_relaxed)) return;
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::system_clock::to_time_t(now);
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  std::string line =
      fmt::format("ts={:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z level={} msg=", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms,
                  kNames[static_cast<int>(level)]);
  append_value(line, msg);
  for (const Field& f : fields) {
    line.push_back(' ');
    line.append(f.key);
    line.push_back('=');
    append_value(line, f.value);
  }
  line.push_back('\n');
  // One write(2) per line keeps lines whole when several threads log at once.
  [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace swissbox::log
