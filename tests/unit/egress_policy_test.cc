// The egress proxy's pure decisions: allowlist patterns and the node-wide deny ranges.
#include <gtest/gtest.h>

#include "agent/net/egress_policy.h"

namespace swissbox {
namespace {

namespace ip = boost::asio::ip;

TEST(EgressPolicy, HostsMatchExactNamesAndWildcardsBelowThem) {
  std::vector<std::string> allow = {"allowed.test", "*.pypi.org"};
  EXPECT_TRUE(host_allowed("allowed.test", allow));
  EXPECT_TRUE(host_allowed("ALLOWED.test", allow));
  EXPECT_TRUE(host_allowed("files.pypi.org", allow));
  EXPECT_TRUE(host_allowed("a.b.pypi.org", allow));
  EXPECT_FALSE(host_allowed("pypi.org", allow)) << "a wildcard names what is below";
  EXPECT_FALSE(host_allowed("evilpypi.org", allow));
  EXPECT_FALSE(host_allowed("allowed.test.evil.com", allow));
  EXPECT_FALSE(host_allowed("denied.test", allow));
  EXPECT_FALSE(host_allowed("allowed.test", {}));
  for (std::string good : {"example.com", "*.example.com", "a-b.c1", "localhost"})
    EXPECT_TRUE(valid_allow_pattern(good)) << good;
  for (std::string bad : {"", "*", "*.", "a..b", ".a", "a.", "a b", "a/b", "**.a", "a:80", "*x.com"})
    EXPECT_FALSE(valid_allow_pattern(bad)) << bad;
}

TEST(EgressPolicy, RequestHostsAreDnsNamesOrBracketedIpv6) {
  const std::string longest_label(63, 'a');
  for (const std::string& h : {std::string("example.com"), std::string("a-b.example.com"),
                               std::string("198.51.100.2"), std::string("x"), longest_label})
    EXPECT_TRUE(valid_request_host(h, false)) << h;
  for (const std::string& h : {std::string("198.51.100.2\0.example.com", 25), std::string(""),
                              std::string("a b.example.com"), std::string("a%00.example.com"),
                              std::string("user@example.com"), std::string("example.com."),
                              std::string(".example.com"), std::string("a..b"), std::string(64, 'a'),
                              std::string("::1"), std::string("a\r\n.example.com"),
                              std::string(254, 'a')})
    EXPECT_FALSE(valid_request_host(h, false)) << h;
  EXPECT_TRUE(valid_request_host("2001:db8::1", true));
  EXPECT_FALSE(valid_request_host("example.com", true));
  EXPECT_FALSE(valid_request_host("fe80::1%eth0", true));
  EXPECT_FALSE(valid_request_host(std::string("::1\0x", 5), true));
}

TEST(EgressPolicy, DenyRangesCoverTheNodeTheClusterAndMetadata) {
  std::vector<Cidr> deny;
  for (const auto& c : default_egress_deny()) {
    auto parsed = Cidr::parse(c);
    ASSERT_TRUE(parsed.ok()) << c;
    deny.push_back(*parsed);
  }
  auto denied = [&](const char* a) {
    for (const auto& c : deny) {
      if (c.contains(ip::make_address(a))) return true;
    }
    return false;
  };
  for (const char* a : {"127.0.0.1", "10.96.0.1", "169.254.169.254", "172.20.1.1", "192.168.1.1",
                        "100.64.0.1", "::1", "fe80::1", "fd00::1", "::ffff:10.0.0.1", "0.0.0.0"})
    EXPECT_TRUE(denied(a)) << a;
  for (const char* a : {"192.0.2.10", "8.8.8.8", "172.32.0.1", "2001:db8::1", "::ffff:8.8.8.8"})
    EXPECT_FALSE(denied(a)) << a;
  EXPECT_FALSE(Cidr::parse("10.0.0.0/33").ok());
  EXPECT_FALSE(Cidr::parse("nonsense").ok());
  auto one = Cidr::parse("192.0.2.7");
  ASSERT_TRUE(one.ok());
  EXPECT_TRUE(one->contains(ip::make_address("192.0.2.7")));
  EXPECT_FALSE(one->contains(ip::make_address("192.0.2.8")));
}

}  // namespace
}  // namespace swissbox
