#include "installer/containerd_config.h"

#include <fmt/format.h>

#include <algorithm>

namespace swissbox::installer {

namespace {

class TomlScanner {
 public:
  explicit TomlScanner(const std::string& t) : t_(t) {}

  Result<TomlOutline> run() {
    TomlOutline out;
    bool in_table = false;
    for (;;) {
      skip_blank_lines();
      if (done()) return out;
      if (peek() == '[') {
        bool array = at(1) == '[';
        pos_ += array ? 2 : 1;
        auto key = parse_key(array ? "]]" : "]");
        if (!key) return key.error();
        pos_ += array ? 2 : 1;
        if (auto st = end_of_line(); !st) return st.error();
        out.tables.push_back(*key);
        in_table = true;
        continue;
      }
      auto key = parse_key("=");
      if (!key) return key.error();
      ++pos_;  // '='
      size_t value_start = pos_;
      if (auto st = parse_value(); !st) return st.error();
      if (!in_table) {
        out.root_keys.push_back(*key);
        if (*key == "version") out.version = trim(t_.substr(value_start, pos_ - value_start));
      }
      if (auto st = end_of_line(); !st) return st.error();
    }
  }

 private:
  bool done() const { return pos_ >= t_.size(); }
  char peek() const { return done() ? '\0' : t_[pos_]; }
  char at(size_t ahead) const { return pos_ + ahead < t_.size() ? t_[pos_ + ahead] : '\0'; }
  int line() const { return 1 + static_cast<int>(std::count(t_.begin(), t_.begin() + pos_, '\n')); }
  Error fail(const std::string& what) const {
    return make_error(Code::kInvalidArgument, fmt::format("TOML line {}: {}", line(), what));
  }
  static std::string trim(std::string s) {
    while (!s.empty() && isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
    while (!s.empty() && isspace(static_cast<unsigned char>(s.front()))) s.erase(0, 1);
    return s;
  }

  void skip_spaces() {
    while (peek() == ' ' || peek() == '\t') ++pos_;
  }
  void skip_comment() {
    if (peek() == '#')
      while (!done() && peek() != '\n') ++pos_;
  }
  void skip_blank_lines() {
    for (;;) {
      skip_spaces();
      skip_comment();
      if (peek() == '\n' || peek() == '\r') {
        ++pos_;
        continue;
      }
      return;
    }
  }
  Status end_of_line() {
    skip_spaces();
    skip_comment();
    if (peek() == '\r') ++pos_;
    if (!done() && peek() != '\n') return fail(fmt::format("unexpected '{}' after a value", peek()));
    return ok_status();
  }

  // Dotted key of bare and quoted parts, up to `stop`; answered as written, spaces removed.
  Result<std::string> parse_key(std::string_view stop) {
    std::string key;
    for (;;) {
      skip_spaces();
      if (peek() == '"' || peek() == '\'') {
        size_t start = pos_;
        if (auto st = parse_string(); !st) return st.error();
        key += t_.substr(start, pos_ - start);
      } else {
        size_t start = pos_;
        while (isalnum(static_cast<unsigned char>(peek())) || peek() == '_' || peek() == '-') ++pos_;
        if (pos_ == start) return fail("a key is expected");
        key += t_.substr(start, pos_ - start);
      }
      skip_spaces();
      if (peek() == '.') {
        key += '.';
        ++pos_;
        continue;
      }
      if (t_.compare(pos_, stop.size(), stop) != 0)
        return fail(fmt::format("'{}' is expected after key {}", stop, key));
      return key;
    }
  }

  Status parse_string() {
    char q = peek();
    bool multi = at(1) == q && at(2) == q;
    pos_ += multi ? 3 : 1;
    for (;;) {
      if (done()) return fail("a string is not closed");
      char c = peek();
      if (!multi && c == '\n') return fail("a string runs past the end of its line");
      if (q == '"' && c == '\\') {
        pos_ += 2;
        continue;
      }
      if (c == q && (!multi || (at(1) == q && at(2) == q))) {
        pos_ += multi ? 3 : 1;
        return ok_status();
      }
      ++pos_;
    }
  }

  Status parse_value() {
    skip_spaces();
    char c = peek();
    if (c == '"' || c == '\'') return parse_string();
    if (c == '[') {
      ++pos_;
      for (;;) {
        skip_blank_lines();
        if (peek() == ']') break;
        if (auto st = parse_value(); !st) return st;
        skip_blank_lines();
        if (peek() == ',') {
          ++pos_;
          continue;
        }
        if (peek() != ']') return fail("',' or ']' is expected in an array");
        break;
      }
      ++pos_;
      return ok_status();
    }
    if (c == '{') {
      ++pos_;
      skip_spaces();
      if (peek() == '}') {
        ++pos_;
        return ok_status();
      }
      for (;;) {
        if (auto key = parse_key("="); !key) return key.error();
        ++pos_;
        if (auto st = parse_value(); !st) return st;
        skip_spaces();
        if (peek() == ',') {
          ++pos_;
          continue;
        }
        if (peek() != '}') return fail("',' or '}' is expected in an inline table");
        ++pos_;
        return ok_status();
      }
    }
    size_t start = pos_;
    while (!done() && (isalnum(static_cast<unsigned char>(peek())) ||
                       std::string_view("_:+.-").find(peek()) != std::string_view::npos)) {
      ++pos_;
    }
    if (pos_ == start) return fail("a value is expected");
    return ok_status();
  }

  const std::string& t_;
  size_t pos_ = 0;
};

std::string handler_table(const HandlerConfig& h) {
  return fmt::format("plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.{}", h.handler);
}

}  // namespace

Result<TomlOutline> outline_toml(const std::string& text) { return TomlScanner(text).run(); }

std::string without_handler(const std::string& config) {
  auto begin = config.find(kBlockBegin);
  if (begin == std::string::npos) return config;
  auto end = config.find(kBlockEnd, begin);
  if (end == std::string::npos) return config;
  end = config.find('\n', end);
  end = end == std::string::npos ? config.size() : end + 1;
  // The block was appended after one blank line: take that back too.
  if (begin >= 2 && config.compare(begin - 2, 2, "\n\n") == 0) --begin;
  return config.substr(0, begin) + config.substr(end);
}

Result<std::string> with_handler(const std::string& config, const HandlerConfig& h) {
  std::string base = without_handler(config);
  auto outline = outline_toml(base);
  if (!outline) return outline.error();
  if (outline->version != "2") {
    return make_error(Code::kInvalidArgument,
                      "containerd config is not version 2 (containerd 1.6/1.7): found version '" +
                          outline->version + "'");
  }
  const std::string table = handler_table(h);
  bool has_runc = false;
  for (const auto& t : outline->tables) {
    if (t == table || t.rfind(table + ".", 0) == 0)
      return make_error(Code::kConflict, "containerd config already defines [" + t +
                                             "] outside swissbox's block; not touching it");
    const std::string runc = "plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc";
    has_runc |= t == runc || t.rfind(runc + ".", 0) == 0;
  }
  std::string block = std::string(kBlockBegin) + "\n";
  // Naming any runtime drops containerd's built-in runc: keep it when the file has none.
  if (!has_runc) {
    block += "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n"
             "  runtime_type = \"io.containerd.runc.v2\"\n";
  }
  block += fmt::format("[{}]\n", table);
  if (h.runsc_shim) {
    block += "  runtime_type = \"io.containerd.runsc.v1\"\n";
  } else {
    block += fmt::format("  runtime_type = \"io.containerd.runc.v2\"\n[{}.options]\n"
                         "  BinaryName = \"{}\"\n  Root = \"{}\"\n",
                         table, h.binary, h.root);
  }
  block += std::string(kBlockEnd) + "\n";
  std::string out = base;
  if (!out.empty() && out.back() != '\n') out += '\n';
  out += "\n" + block;
  if (auto check = outline_toml(out); !check) return check.error();
  return out;
}

}  // namespace swissbox::installer
