#include "common/connect.h"

namespace swissbox::connect {

using json = nlohmann::json;

std::string envelope(uint8_t flags, std::string_view data) {
  std::string out;
  out.reserve(kPrefix + data.size());
  out.push_back(static_cast<char>(flags));
  uint32_t n = static_cast<uint32_t>(data.size());
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((n >> shift) & 0xff));
  out.append(data);
  return out;
}

std::string message(const json& m) {
  return envelope(0, m.dump(-1, ' ', false, json::error_handler_t::replace));
}

std::string end_stream(const Error* error) {
  json end = json::object();
  if (error) end["error"] = error_json(*error);
  return envelope(kEndStream, end.dump(-1, ' ', false, json::error_handler_t::replace));
}

Result<json> request_message(std::string_view body, size_t max_bytes) {
  if (body.size() < kPrefix) return make_error(Code::kInvalidArgument, "Connect envelope is incomplete");
  auto u = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(body[i])); };
  uint8_t flags = static_cast<uint8_t>(body[0]);
  uint32_t n = (u(1) << 24) | (u(2) << 16) | (u(3) << 8) | u(4);
  if (flags & kCompressed) return make_error(Code::kInvalidArgument, "compressed Connect messages are not accepted");
  if (n > max_bytes) return make_error(Code::kTooLarge, "Connect message larger than the limit");
  if (body.size() < kPrefix + n) return make_error(Code::kInvalidArgument, "Connect envelope is truncated");
  json m = json::parse(body.substr(kPrefix, n), nullptr, false);
  if (!m.is_object()) return make_error(Code::kInvalidArgument, "Connect message is not a JSON object");
  return m;
}

std::string_view connect_code(Code code) {
  switch (code) {
    case Code::kInvalidArgument: return "invalid_argument";
    case Code::kUnauthenticated: return "unauthenticated";
    case Code::kPermissionDenied: return "permission_denied";
    case Code::kNotFound: return "not_found";
    case Code::kConflict: return "already_exists";
    case Code::kTooLarge: return "resource_exhausted";
    case Code::kResourceExhausted: return "resource_exhausted";
    case Code::kUnavailable: return "unavailable";
    case Code::kDeadlineExceeded: return "deadline_exceeded";
    case Code::kInternal: return "internal";
  }
  return "unknown";
}

json error_json(const Error& e) { return {{"code", connect_code(e.code)}, {"message", e.to_string()}}; }

}  // namespace swissbox::connect
