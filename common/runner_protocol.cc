#include "common/runner_protocol.h"

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
  std::string h = header.dump();
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
