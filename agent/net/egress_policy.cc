#include "agent/net/egress_policy.h"

#include <algorithm>
#include <array>

namespace swissbox {

namespace asio = boost::asio;

Result<Cidr> Cidr::parse(const std::string& text) {
  auto slash = text.find('/');
  boost::system::error_code ec;
  Cidr c;
  c.network = asio::ip::make_address(text.substr(0, slash), ec);
  if (ec) return make_error(Code::kInvalidArgument, "'" + text + "' is not an address range");
  int max = c.network.is_v4() ? 32 : 128;
  c.prefix_len = max;
  if (slash != std::string::npos) {
    std::string bits = text.substr(slash + 1);
    if (bits.empty() || bits.size() > 3 || bits.find_first_not_of("0123456789") != std::string::npos ||
        std::stoi(bits) > max) {
      return make_error(Code::kInvalidArgument, "'" + text + "' has a bad prefix length");
    }
    c.prefix_len = std::stoi(bits);
  }
  return c;
}

bool Cidr::contains(const asio::ip::address& a) const {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    return contains(asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()));
  }
  if (a.is_v4() != network.is_v4()) return false;
  auto bytes_of = [](const asio::ip::address& x) {
    std::array<unsigned char, 16> out{};
    if (x.is_v4()) {
      auto b = x.to_v4().to_bytes();
      std::copy(b.begin(), b.end(), out.begin());
    } else {
      out = x.to_v6().to_bytes();
    }
    return out;
  };
  auto x = bytes_of(a), n = bytes_of(network);
  int bits = prefix_len;
  for (size_t i = 0; bits > 0; ++i, bits -= 8) {
    unsigned char mask = bits >= 8 ? 0xff : static_cast<unsigned char>(0xff << (8 - bits));
    if ((x[i] & mask) != (n[i] & mask)) return false;
  }
  return true;
}

std::string lower_case(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

namespace {

// Letters, digits and hyphens in labels of 1 to 63 characters, at most 253 in all.
bool valid_host_name(const std::string& h) {
  if (h.empty() || h.size() > 253 || h.front() == '.' || h.back() == '.') return false;
  size_t label = 0;
  for (char c : h) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    if (!isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
    if (++label > 63) return false;
  }
  return true;
}

}  // namespace

bool valid_request_host(const std::string& host, bool bracketed) {
  if (!bracketed) return valid_host_name(host);
  // Checked by character first: the parser reads a C string, so a NUL would end it early;
  // and no "%zone": nothing link-local.
  if (host.empty() || host.find_first_not_of("0123456789abcdefABCDEF:.") != std::string::npos)
    return false;
  boost::system::error_code ec;
  boost::asio::ip::make_address_v6(host, ec);
  return !ec;
}

bool valid_allow_pattern(const std::string& p) {
  return valid_host_name(p.rfind("*.", 0) == 0 ? p.substr(2) : p);
}

bool host_allowed(const std::string& host, const std::vector<std::string>& allow) {
  std::string h = lower_case(host);
  for (const auto& raw : allow) {
    std::string p = lower_case(raw);
    if (p == h) return true;
    if (p.rfind("*.", 0) == 0) {
      std::string suffix = p.substr(1);  // ".example.com"
      if (h.size() > suffix.size() && h.compare(h.size() - suffix.size(), suffix.size(), suffix) == 0)
        return true;
    }
  }
  return false;
}

std::vector<std::string> default_egress_deny() {
  return {"0.0.0.0/8",     "10.0.0.0/8",  "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
          "172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/4", "240.0.0.0/4", "::/128",
          "::1/128",       "fc00::/7",    "fe80::/10",     "ff00::/8"};
}


}  // namespace swissbox
