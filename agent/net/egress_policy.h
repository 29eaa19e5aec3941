// What a sandbox with network may reach, as pure decisions: allowlist patterns of host
// names, and address ranges no request can lift (see agent/net/egress_proxy.h).
#pragma once

#include <boost/asio/ip/address.hpp>
#include <string>
#include <vector>

#include "common/error.h"

namespace swissbox {

struct Cidr {
  boost::asio::ip::address network;
  int prefix_len = 0;
  static Result<Cidr> parse(const std::string& text);
  bool contains(const boost::asio::ip::address& a) const;
};

std::string lower_case(std::string s);
// Whether `host` matches a pattern of `allow`: equal (case-insensitive), or "*.suffix"
// matching any name below suffix (not suffix itself).
bool host_allowed(const std::string& host, const std::vector<std::string>& allow);
// Whether a host from a sandbox's request is one the proxy will look at: a DNS name
// (letters, digits, hyphens, dots; a dotted IPv4 address is one) or, when it came in
// brackets, an IPv6 literal. Anything else (a NUL, a space, "%", "@") is refused before it
// is matched or resolved, so that the name matched is exactly the name resolved.
bool valid_request_host(const std::string& host, bool bracketed);
// Whether `pattern` may be put in an allowlist: a host name, optionally "*." in front.
bool valid_allow_pattern(const std::string& pattern);
// The node-wide deny list when none is configured.
std::vector<std::string> default_egress_deny();

}  // namespace swissbox
