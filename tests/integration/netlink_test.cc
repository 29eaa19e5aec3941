// The kernel pieces of sandbox networking, as root, without runsc: a pinned network
// namespace, the veth pair into it with addresses and a default route, traffic across it
// counted on the host end, a rate limit, and removal that leaves nothing behind.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include <fcntl.h>
#include <poll.h>

#include "agent/net/egress_filter.h"
#include "agent/net/netns.h"
#include "agent/net/veth.h"
#include "common/unique_fd.h"

namespace swissbox {
namespace {

using namespace std::chrono_literals;

class Netlink : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces)";
    char tmpl[] = "/tmp/swissbox-netlink-XXXXXX";
    dir_ = mkdtemp(tmpl);
    ns_ = dir_ + "/ns";
    // A prefix of our own, so a parallel agent's links are never touched.
    prefix_ = "swt" + std::to_string(getpid() % 10000);
  }
  void TearDown() override {
    if (dir_.empty()) return;
    (void)veth::remove_link(prefix_ + "h");
    (void)netns::remove(ns_);
    rmdir(dir_.c_str());
  }

  // Sends `bytes` from inside the namespace to a listener on the host end; answers what
  // the listener received.
  size_t send_from_inside(const std::string& host_ip, size_t bytes) {
    unique_fd listener(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    inet_pton(AF_INET, host_ip.c_str(), &a.sin_addr);
    EXPECT_EQ(bind(listener.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    socklen_t len = sizeof(a);
    getsockname(listener.get(), reinterpret_cast<sockaddr*>(&a), &len);
    listen(listener.get(), 1);
    size_t received = 0;
    std::thread reader([&] {
      unique_fd c(accept(listener.get(), nullptr, nullptr));
      char buf[65536];
      ssize_t n;
      while ((n = read(c.get(), buf, sizeof(buf))) > 0) received += n;
    });
    auto st = netns::run_in(ns_, [&]() -> Status {
      unique_fd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
      if (connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0)
        return sys_error("connect from the namespace");
      std::string chunk(65536, 'x');
      for (size_t sent = 0; sent < bytes; sent += chunk.size()) {
        if (write(s.get(), chunk.data(), std::min(chunk.size(), bytes - sent)) <= 0)
          return sys_error("write");
      }
      return ok_status();
    });
    EXPECT_TRUE(st.ok()) << (st ? "" : st.error().to_string());
    reader.join();
    return received;
  }

  // A listener on ip (port 0: any); answers its fd and port.
  static std::pair<unique_fd, uint16_t> listen_on(const std::string& ip) {
    unique_fd l(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
    bind(l.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a));
    listen(l.get(), 8);
    socklen_t len = sizeof(a);
    getsockname(l.get(), reinterpret_cast<sockaddr*>(&a), &len);
    return {std::move(l), ntohs(a.sin_port)};
  }
  // Connects to ip:port within 500 ms: 0, or the errno (ETIMEDOUT when nothing answered).
  static int try_connect(const std::string& ip, uint16_t port) {
    unique_fd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
    if (connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) return 0;
    if (errno != EINPROGRESS) return errno;
    pollfd p{s.get(), POLLOUT, 0};
    if (poll(&p, 1, 500) == 0) return ETIMEDOUT;
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    return err;
  }
  int connect_from_inside(const std::string& ip, uint16_t port) {
    int result = -1;
    EXPECT_TRUE(netns::run_in(ns_, [&] {
                  result = try_connect(ip, port);
                  return ok_status();
                }).ok());
    return result;
  }

  std::string dir_, ns_, prefix_;
};

TEST_F(Netlink, VethPairCarriesTrafficIsCountedAndGoesAway) {
  ASSERT_TRUE(netns::create(ns_).ok());
  EXPECT_TRUE(netns::pinned(ns_));
  veth::PairConfig c{prefix_ + "h", ns_, "198.18.7.1", "198.18.7.2", 30};
  auto st = veth::create_pair(c);
  ASSERT_TRUE(st.ok()) << st.error().to_string();
  auto links = veth::links_with_prefix(prefix_);
  ASSERT_TRUE(links.ok());
  EXPECT_EQ(*links, std::vector<std::string>{prefix_ + "h"});
  // The same name again is refused, and the refusal removes nothing that exists.
  EXPECT_FALSE(veth::create_pair(c).ok());

  auto before = veth::counters(prefix_ + "h");
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(send_from_inside(c.host_ip, 1 << 20), 1u << 20);
  auto after = veth::counters(prefix_ + "h");
  ASSERT_TRUE(after.ok());
  // What the sandbox sends arrives on the host end: its RX, with headers on top.
  uint64_t rx = after->rx_bytes - before->rx_bytes;
  EXPECT_GE(rx, 1u << 20);
  EXPECT_LE(rx, (1u << 20) * 105 / 100);

  // An upload limit inside the namespace (eth0 sends) holds: 256 KB at 1 Mbit/s ≈ 2 s.
  ASSERT_TRUE(netns::run_in(ns_, [] { return veth::set_rate("eth0", 1'000'000); }).ok());
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(send_from_inside(c.host_ip, 256 * 1024), 256u * 1024);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double mbit = 256 * 1024 * 8 / s / 1e6;
  EXPECT_GT(mbit, 0.8) << s << " s";
  EXPECT_LT(mbit, 1.2) << s << " s";

  ASSERT_TRUE(veth::remove_link(prefix_ + "h").ok());
  ASSERT_TRUE(netns::remove(ns_).ok());
  EXPECT_FALSE(netns::pinned(ns_));
  EXPECT_TRUE(veth::links_with_prefix(prefix_)->empty());
  EXPECT_TRUE(veth::remove_link(prefix_ + "h").ok()) << "removing a missing link is fine";
}

}  // namespace
}  // namespace swissbox

namespace swissbox {
namespace {

TEST_F(Netlink, EgressFilterLetsSandboxesReachOnlyTheProxy) {
  ASSERT_TRUE(netns::create(ns_).ok());
  veth::PairConfig c{prefix_ + "h", ns_, "198.18.9.1", "198.18.9.2", 30};
  ASSERT_TRUE(veth::create_pair(c).ok());
  auto [proxy, proxy_port] = listen_on("0.0.0.0");
  auto [other, other_port] = listen_on(c.host_ip);
  EgressFilterConfig f{"swissbox_" + prefix_, prefix_, "198.18.9.0/30", proxy_port};
  // Before the filter, the sandbox reaches any port of the node — once the new pair
  // carries: a first SYN sent before the link is up is retried only after 1 s, past one
  // attempt's 500 ms (seen once in CI).
  int before = -1;
  for (int i = 0; i < 6 && before != 0; ++i) before = connect_from_inside(c.host_ip, other_port);
  EXPECT_EQ(before, 0);
  auto st = install_egress_filter(f);
  ASSERT_TRUE(st.ok()) << st.error().to_string();
  EXPECT_TRUE(egress_filter_present(f.table));
  EXPECT_TRUE(install_egress_filter(f).ok()) << "a second install replaces the table";
  EXPECT_EQ(connect_from_inside(c.host_ip, proxy_port), 0);
  // Anything else is reset at once, even a port that listens.
  EXPECT_EQ(connect_from_inside(c.host_ip, other_port), ECONNREFUSED);
  EXPECT_EQ(connect_from_inside("127.0.0.1", other_port), ECONNREFUSED) << "loopback is its own";
  // The proxy port answers no one but sandboxes.
  EXPECT_EQ(try_connect("127.0.0.1", proxy_port), ETIMEDOUT);
  EXPECT_EQ(try_connect(c.host_ip, other_port), 0) << "other node traffic is untouched";
  ASSERT_TRUE(remove_egress_filter(f.table).ok());
  EXPECT_FALSE(egress_filter_present(f.table));
  EXPECT_TRUE(remove_egress_filter(f.table).ok()) << "removing a missing table is fine";
  EXPECT_EQ(try_connect("127.0.0.1", proxy_port), 0);
}

}  // namespace
}  // namespace swissbox
