// The only way out for sandboxes with network: an HTTP proxy on the node (CONNECT for TLS
// and anything else over TCP, absolute-URI requests for plain HTTP). The packet filter
// (agent/net/egress_filter.h) lets sandboxes reach nothing but its port, and lets nobody else
// reach that port. A connection belongs to the sandbox whose address it comes from; its
// destination host must match that sandbox's allowlist ("example.com", "*.example.com"),
// and every address the host resolves to must lie outside the node-wide deny list
// (loopback, private and link-local ranges, the metadata service, the node's own
// addresses, the sandbox pool), which no request can lift: a name that resolves inside
// the cluster is refused even when allowed.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "agent/net/egress_policy.h"
#include "common/connection_limits.h"
#include "common/error.h"
#include "common/metrics.h"

namespace swissbox {

struct EgressProxyOptions {
  uint16_t port = 3128;
  std::vector<Cidr> deny;                          // on top of the node's own addresses
  std::map<std::string, std::string> static_hosts;  // name → IP, asked before DNS
  std::chrono::milliseconds header_timeout{10000};
  std::chrono::milliseconds connect_timeout{10000};
  std::chrono::milliseconds idle_timeout{300000};
  // Connections open at once: from one sandbox, and in all (each holds two fds; the proxy
  // lowers the total to what a quarter of its NOFILE limit allows). Past them a sandbox's
  // new connection is answered 503 and closed.
  size_t max_connections_per_sandbox = 256;
  size_t max_connections = 4096;
};

class EgressProxy {
 public:
  EgressProxy(boost::asio::io_context& ioc, EgressProxyOptions options, Metrics& metrics);
  ~EgressProxy();
  // Listens on every address of the node at the port (only sandboxes get through the filter).
  Status listen();
  // What the sandbox at `sandbox_ip` may reach: hosts matching `patterns` and, when the
  // sandbox's tenant has a ceiling, matching that too. Replaces what was set. Thread-safe.
  void allow(const std::string& sandbox_ip, const std::string& sandbox_id,
             std::vector<std::string> patterns,
             std::optional<std::vector<std::string>> tenant_ceiling = std::nullopt);
  // The sandbox is gone: its connections are refused from now on. Thread-safe.
  void forget(const std::string& sandbox_ip);

  struct Policy {
    std::string sandbox_id;
    std::vector<std::string> patterns;
    std::optional<std::vector<std::string>> tenant_ceiling;
  };
  std::optional<Policy> policy_of(const std::string& sandbox_ip) const;
  bool denied(const boost::asio::ip::address& a) const;
  // Counts a connection of the sandbox at `ip` if it fits under the limits; on the proxy's
  // thread only.
  bool take_slot(const std::string& ip);
  void release_slot(const std::string& ip);
  const EgressProxyOptions& options() const { return opts_; }
  Metrics& metrics() { return metrics_; }
  boost::asio::io_context& ioc() { return ioc_; }

 private:
  struct Listener;
  void accept();

  boost::asio::io_context& ioc_;
  EgressProxyOptions opts_;
  Metrics& metrics_;
  std::unique_ptr<Listener> listener_;
  mutable std::mutex mu_;
  std::map<std::string, Policy> policies_;  // by sandbox address
  // Open connections, in all and by sandbox address: touched on the proxy's thread only.
  ConnectionLimits open_{0, 0};
};

}  // namespace swissbox
