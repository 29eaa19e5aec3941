// The Connect protocol's framing (connectrpc.com/docs/protocol), JSON codec only: what E2B's
// envd speaks and its SDKs call. Unary calls are a plain JSON body and answer; streams are
// envelopes: 1 byte of flags, a 4-byte big-endian length, that many bytes of JSON. A
// server stream ends with an envelope flagged kEndStream holding {} or {"error": …}.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "common/error.h"

namespace swissbox::connect {

inline constexpr uint8_t kCompressed = 0x01;
inline constexpr uint8_t kEndStream = 0x02;
inline constexpr size_t kPrefix = 5;

std::string envelope(uint8_t flags, std::string_view data);
// One message of a stream: an envelope around its JSON.
std::string message(const nlohmann::json& m);
// The stream's last envelope: {} or {"error":{"code","message"}}.
std::string end_stream(const Error* error = nullptr);

// The one message a client stream request carries (a server-streaming call's request).
// Refused: a short or overlong frame, compression, anything but one JSON object.
Result<nlohmann::json> request_message(std::string_view body, size_t max_bytes);

// Connect's code for an error, and its unary answer {"code","message"}.
std::string_view connect_code(Code code);
nlohmann::json error_json(const Error& e);

}  // namespace swissbox::connect
