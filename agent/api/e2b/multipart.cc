#include "agent/api/e2b/multipart.h"

#include <strings.h>

namespace swissbox::e2b {

namespace {

Error bad(const std::string& m) { return make_error(Code::kInvalidArgument, "multipart body: " + m); }

// A parameter of a header value (name="value" or name=value), "" when absent.
std::string param(std::string_view header, std::string_view name) {
  for (size_t at = 0; (at = header.find(name, at)) != std::string_view::npos; at += name.size()) {
    bool starts = at == 0 || header[at - 1] == ';' || header[at - 1] == ' ';
    size_t eq = at + name.size();
    if (!starts || eq >= header.size() || header[eq] != '=') continue;
    std::string_view v = header.substr(eq + 1);
    if (!v.empty() && v.front() == '"') {
      std::string out;
      for (size_t i = 1; i < v.size() && v[i] != '"'; ++i) {
        if (v[i] == '\\' && i + 1 < v.size()) ++i;
        out.push_back(v[i]);
      }
      return out;
    }
    return std::string(v.substr(0, v.find(';')));
  }
  return {};
}

}  // namespace

Result<std::string> multipart_boundary(std::string_view content_type) {
  if (content_type.size() < 19 || strncasecmp(content_type.data(), "multipart/form-data", 19) != 0)
    return bad("Content-Type is not multipart/form-data");
  std::string b = param(content_type, "boundary");
  if (b.empty() || b.size() > 200) return bad("no usable boundary");
  return b;
}

Result<std::vector<FormPart>> parse_multipart(std::string_view body, std::string_view boundary) {
  std::string delim = "--" + std::string(boundary);
  std::vector<FormPart> parts;
  size_t at = body.find(delim);
  if (at == std::string_view::npos) return bad("no boundary");
  for (;;) {
    at += delim.size();
    if (body.substr(at, 2) == "--") return parts;  // the final boundary
    if (body.substr(at, 2) != "\r\n") return bad("boundary not followed by CRLF");
    at += 2;
    size_t head_end = body.find("\r\n\r\n", at);
    if (head_end == std::string_view::npos) return bad("part headers not terminated");
    FormPart part;
    std::string_view headers = body.substr(at, head_end - at);
    for (size_t line = 0; line < headers.size();) {
      size_t eol = headers.find("\r\n", line);
      std::string_view h = headers.substr(line, eol == std::string_view::npos ? std::string_view::npos : eol - line);
      if (h.size() > 20 && strncasecmp(h.data(), "Content-Disposition:", 20) == 0) {
        part.name = param(h, "name");
        part.filename = param(h, "filename");
      }
      if (eol == std::string_view::npos) break;
      line = eol + 2;
    }
    size_t data_start = head_end + 4;
    size_t next = body.find("\r\n" + delim, data_start);
    if (next == std::string_view::npos) return bad("part not terminated by a boundary");
    part.data = body.substr(data_start, next - data_start);
    parts.push_back(std::move(part));
    at = next + 2;
  }
}

}  // namespace swissbox::e2b
