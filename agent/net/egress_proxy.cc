#include "agent/net/egress_proxy.h"

#include <fmt/format.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include "common/log.h"

namespace swissbox {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// ---- one proxied connection ------------------------------------------------------------

namespace {

class Conn : public std::enable_shared_from_this<Conn> {
 public:
  // slot: the sandbox address whose connection count this one holds ("" for none).
  Conn(EgressProxy& proxy, tcp::socket client, EgressProxy::Policy policy, std::string slot)
      : proxy_(proxy),
        client_(std::move(client)),
        upstream_(proxy.ioc()),
        resolver_(proxy.ioc()),
        timer_(proxy.ioc()),
        policy_(std::move(policy)),
        slot_(std::move(slot)) {}
  ~Conn() {
    if (!slot_.empty()) proxy_.release_slot(slot_);
  }

  // A connection past the sandbox's limit: answered and closed without reading it.
  void refuse_over_limit() {
    arm(proxy_.options().header_timeout);
    refuse(503, fmt::format("this sandbox already has {} connections open through the proxy",
                            proxy_.options().max_connections_per_sandbox));
  }

  void start() {
    arm(proxy_.options().header_timeout);
    asio::async_read_until(client_, head_buf_, "\r\n\r\n",
                           [self = shared_from_this()](boost::system::error_code ec, size_t n) {
                             self->on_head(ec, n);
                           });
  }

 private:
  void arm(std::chrono::milliseconds d) {
    timer_.expires_after(d);
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec) self->close();
    });
  }

  void on_head(boost::system::error_code ec, size_t n) {
    if (ec || n > kMaxHead) return refuse(400, "bad or oversized request head");
    std::string head(asio::buffers_begin(head_buf_.data()), asio::buffers_begin(head_buf_.data()) + n);
    head_buf_.consume(n);
    auto eol = head.find("\r\n");
    std::string line = head.substr(0, eol);
    auto sp1 = line.find(' '), sp2 = line.rfind(' ');
    if (sp1 == std::string::npos || sp2 == sp1) return refuse(400, "bad request line");
    std::string method = line.substr(0, sp1), target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    std::string rest = head.substr(eol + 2);
    if (method == "CONNECT") {
      connect_ = true;
      if (!split_host_port(target, 443))
        return refuse(400, "CONNECT needs host:port with a DNS name or [IPv6] as host");
    } else {
      // Plain HTTP: an absolute URI, sent on in origin form, one request per connection.
      if (target.rfind("http://", 0) != 0) {
        return refuse(400, "only CONNECT and absolute http:// requests go through this proxy");
      }
      auto slash = target.find('/', 7);
      std::string authority = target.substr(7, slash == std::string::npos ? std::string::npos : slash - 7);
      if (!split_host_port(authority, 80))
        return refuse(400, "the URL's host is not a DNS name or [IPv6] literal");
      std::string path = slash == std::string::npos ? "/" : target.substr(slash);
      forward_ = method + " " + path + " " + line.substr(sp2 + 1) + "\r\n" + strip_hop_headers(rest);
    }
    if (!host_allowed(host_, policy_.patterns)) {
      return refuse(403, fmt::format("host '{}' is not in this sandbox's egress allowlist", host_));
    }
    if (policy_.tenant_ceiling && !host_allowed(host_, *policy_.tenant_ceiling)) {
      return refuse(403, fmt::format("host '{}' is not in the tenant's egress allowlist", host_));
    }
    resolve();
  }

  bool split_host_port(const std::string& hp, uint16_t default_port) {
    std::string h = hp, p;
    const bool bracketed = !h.empty() && h.front() == '[';
    if (bracketed) {  // [v6]:port
      auto close = h.find(']');
      if (close == std::string::npos) return false;
      if (close + 1 < h.size() && h[close + 1] != ':') return false;
      p = close + 1 < h.size() ? h.substr(close + 2) : "";
      h = h.substr(1, close - 1);
    } else if (auto colon = h.rfind(':'); colon != std::string::npos) {
      p = h.substr(colon + 1);
      h = h.substr(0, colon);
    }
    if (!valid_request_host(h, bracketed)) return false;
    port_ = default_port;
    if (!p.empty()) {
      if (p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos) return false;
      int n = std::stoi(p);
      if (n < 1 || n > 65535) return false;
      port_ = static_cast<uint16_t>(n);
    }
    host_ = lower_case(h);
    return true;
  }

  // Drops the headers meant for the proxy and asks the origin to close after its answer.
  static std::string strip_hop_headers(const std::string& headers) {
    std::string out;
    size_t pos = 0;
    while (pos < headers.size()) {
      size_t eol = headers.find("\r\n", pos);
      if (eol == std::string::npos) break;
      std::string h = headers.substr(pos, eol - pos);
      pos = eol + 2;
      if (h.empty()) break;
      std::string name = lower_case(h.substr(0, h.find(':')));
      if (name == "proxy-connection" || name == "proxy-authorization" || name == "connection" ||
          name == "keep-alive") {
        continue;
      }
      out += h + "\r\n";
    }
    return out + "Connection: close\r\n\r\n";
  }

  void resolve() {
    auto known = proxy_.options().static_hosts.find(host_);
    std::string name = known != proxy_.options().static_hosts.end() ? known->second : host_;
    resolver_.async_resolve(
        name, std::to_string(port_),
        [self = shared_from_this()](boost::system::error_code ec, tcp::resolver::results_type r) {
          if (ec) return self->refuse(502, fmt::format("'{}' does not resolve: {}", self->host_, ec.message()));
          std::vector<tcp::endpoint> allowed;
          for (const auto& e : r) {
            if (!self->proxy_.denied(e.endpoint().address())) allowed.push_back(e.endpoint());
          }
          if (allowed.empty()) {
            return self->refuse(403, fmt::format("'{}' resolves only to addresses sandboxes may not "
                                                 "reach (node, cluster, private or metadata ranges)",
                                                 self->host_));
          }
          self->connect(std::move(allowed));
        });
  }

  void connect(std::vector<tcp::endpoint> endpoints) {
    arm(proxy_.options().connect_timeout);
    asio::async_connect(upstream_, endpoints,
                        [self = shared_from_this()](boost::system::error_code ec, const tcp::endpoint&) {
                          if (ec) return self->refuse(502, fmt::format("cannot connect to {}:{}: {}", self->host_,
                                                                       self->port_, ec.message()));
                          self->connected();
                        });
  }

  void connected() {
    count("allowed");
    log::info("egress allowed", {{"sandbox", policy_.sandbox_id}, {"host", host_}, {"port", port_}});
    std::string first = connect_ ? "HTTP/1.1 200 Connection established\r\n\r\n" : forward_;
    auto& to = connect_ ? client_ : upstream_;
    // Bytes the client sent after its head go on to the origin before the relay starts.
    std::string early(asio::buffers_begin(head_buf_.data()), asio::buffers_end(head_buf_.data()));
    head_buf_.consume(head_buf_.size());
    pending_ = std::move(first);
    asio::async_write(to, asio::buffer(pending_), [self = shared_from_this(), early](boost::system::error_code ec, size_t) {
      if (ec) return self->close();
      self->pending_ = early;
      asio::async_write(self->upstream_, asio::buffer(self->pending_),
                        [self](boost::system::error_code ec, size_t) {
                          if (ec) return self->close();
                          self->arm(self->proxy_.options().idle_timeout);
                          self->pump(self->client_, self->upstream_, self->up_buf_);
                          self->pump(self->upstream_, self->client_, self->down_buf_);
                        });
    });
  }

  void pump(tcp::socket& from, tcp::socket& to, std::array<char, 16384>& buf) {
    from.async_read_some(asio::buffer(buf), [self = shared_from_this(), &from, &to, &buf](
                                                boost::system::error_code ec, size_t n) {
      if (ec) {
        // One side finished: pass the end on, the other direction may still carry data.
        boost::system::error_code ignored;
        to.shutdown(tcp::socket::shutdown_send, ignored);
        if (++self->closed_halves_ == 2) self->close();
        return;
      }
      self->arm(self->proxy_.options().idle_timeout);
      asio::async_write(to, asio::buffer(buf.data(), n), [self, &from, &to, &buf](boost::system::error_code ec, size_t) {
        if (ec) return self->close();
        self->pump(from, to, buf);
      });
    });
  }

  void refuse(int status, const std::string& why) {
    count(status == 403 ? "denied" : status == 503 ? "over_limit" : "failed");
    log::warn("egress refused", {{"sandbox", policy_.sandbox_id}, {"host", host_}, {"reason", why}});
    std::string body = "swissbox egress: " + why + "\n";
    pending_ = fmt::format("HTTP/1.1 {} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n"
                           "Connection: close\r\n\r\n{}",
                           status,
                           status == 403   ? "Forbidden"
                           : status == 400 ? "Bad Request"
                           : status == 503 ? "Service Unavailable"
                                           : "Bad Gateway",
                           body.size(), body);
    asio::async_write(client_, asio::buffer(pending_),
                      [self = shared_from_this()](boost::system::error_code, size_t) { self->close(); });
  }

  void count(const char* result) {
    proxy_.metrics().add("swissbox_egress_connections_total", Metrics::labels({{"result", result}}));
  }

  void close() {
    boost::system::error_code ignored;
    timer_.cancel();
    resolver_.cancel();
    client_.close(ignored);
    upstream_.close(ignored);
  }

  static constexpr size_t kMaxHead = 16 * 1024;
  EgressProxy& proxy_;
  tcp::socket client_, upstream_;
  tcp::resolver resolver_;
  asio::steady_timer timer_;
  EgressProxy::Policy policy_;
  std::string slot_;
  asio::streambuf head_buf_{kMaxHead};
  std::string host_, forward_, pending_;
  uint16_t port_ = 0;
  bool connect_ = false;
  int closed_halves_ = 0;
  std::array<char, 16384> up_buf_{}, down_buf_{};
};

}  // namespace

// ---- the proxy -------------------------------------------------------------------------

struct EgressProxy::Listener {
  explicit Listener(asio::io_context& ioc) : acceptor(ioc) {}
  tcp::acceptor acceptor;
};

EgressProxy::EgressProxy(asio::io_context& ioc, EgressProxyOptions options, Metrics& metrics)
    : ioc_(ioc), opts_(std::move(options)), metrics_(metrics) {
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY) {
    opts_.max_connections = std::max<size_t>(16, std::min<size_t>(opts_.max_connections, nofile.rlim_cur / 8));
  }
  open_ = ConnectionLimits(opts_.max_connections, opts_.max_connections_per_sandbox);
  metrics_.describe("swissbox_egress_connections_total", Metrics::Type::kCounter,
                    "Connections sandboxes opened through the egress proxy, by result.");
}

EgressProxy::~EgressProxy() = default;

Status EgressProxy::listen() {
  listener_ = std::make_unique<Listener>(ioc_);
  boost::system::error_code ec;
  tcp::endpoint ep(asio::ip::address_v4::any(), opts_.port);
  listener_->acceptor.open(ep.protocol(), ec);
  if (!ec) listener_->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) listener_->acceptor.bind(ep, ec);
  if (!ec) listener_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Error{Code::kUnavailable, ec.value(), fmt::format("egress proxy listen on port {}", opts_.port)};
  accept();
  return ok_status();
}

void EgressProxy::accept() {
  listener_->acceptor.async_accept([this](boost::system::error_code ec, tcp::socket s) {
    if (ec == asio::error::operation_aborted) return;
    if (ec == asio::error::no_descriptors || ec.value() == ENFILE) {
      // Out of fds: try again after a pause rather than spin on the error.
      log::warn("egress proxy: out of file descriptors; pausing", {{"open", open_.open()}});
      auto timer = std::make_shared<asio::steady_timer>(ioc_, std::chrono::milliseconds(100));
      timer->async_wait([this, timer](boost::system::error_code) { accept(); });
      return;
    }
    if (!ec) {
      boost::system::error_code peer_ec;
      auto peer = s.remote_endpoint(peer_ec);
      std::string ip = peer_ec ? std::string() : peer.address().to_string();
      auto policy = peer_ec ? std::nullopt : policy_of(ip);
      if (policy && take_slot(ip)) {
        std::make_shared<Conn>(*this, std::move(s), std::move(*policy), ip)->start();
      } else if (policy) {
        std::make_shared<Conn>(*this, std::move(s), std::move(*policy), "")->refuse_over_limit();
      } else {
        // Not a sandbox with network (the filter should have stopped it): no answer at all.
        metrics_.add("swissbox_egress_connections_total", Metrics::labels({{"result", "stranger"}}));
      }
    }
    accept();
  });
}

bool EgressProxy::take_slot(const std::string& ip) { return open_.take(ip); }

void EgressProxy::release_slot(const std::string& ip) { open_.release(ip); }

void EgressProxy::allow(const std::string& sandbox_ip, const std::string& sandbox_id,
                        std::vector<std::string> patterns,
                        std::optional<std::vector<std::string>> tenant_ceiling) {
  std::lock_guard lock(mu_);
  policies_[sandbox_ip] = Policy{sandbox_id, std::move(patterns), std::move(tenant_ceiling)};
}

void EgressProxy::forget(const std::string& sandbox_ip) {
  std::lock_guard lock(mu_);
  policies_.erase(sandbox_ip);
}

std::optional<EgressProxy::Policy> EgressProxy::policy_of(const std::string& sandbox_ip) const {
  std::lock_guard lock(mu_);
  auto it = policies_.find(sandbox_ip);
  if (it == policies_.end()) return std::nullopt;
  return it->second;
}

bool EgressProxy::denied(const asio::ip::address& a) const {
  for (const auto& c : opts_.deny) {
    if (c.contains(a)) return true;
  }
  // The node's own addresses, asked each time: interfaces come and go.
  bool own = false;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) == 0) {
    for (ifaddrs* i = list; i && !own; i = i->ifa_next) {
      if (!i->ifa_addr) continue;
      if (i->ifa_addr->sa_family == AF_INET) {
        auto* in = reinterpret_cast<sockaddr_in*>(i->ifa_addr);
        own = a.is_v4() && a.to_v4().to_uint() == ntohl(in->sin_addr.s_addr);
      } else if (i->ifa_addr->sa_family == AF_INET6 && a.is_v6()) {
        auto* in6 = reinterpret_cast<sockaddr_in6*>(i->ifa_addr);
        asio::ip::address_v6::bytes_type b;
        std::copy(std::begin(in6->sin6_addr.s6_addr), std::end(in6->sin6_addr.s6_addr), b.begin());
        own = a.to_v6().to_bytes() == b;
      }
    }
    freeifaddrs(list);
  }
  return own;
}

}  // namespace swissbox
