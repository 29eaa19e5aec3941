// Base64 (RFC 4648, standard alphabet, padded): protobuf's JSON form of bytes.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace swissbox {

std::string base64_encode(std::string_view data);
// nullopt when `text` is not base64 (padding optional; URL-safe letters accepted, as
// protobuf's JSON parsers do).
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace swissbox
