// HTTP/1.1 server on Boost.Beast for TCP and unix sockets: keep-alive, header and body
// limits, read timeouts, X-Request-Id on every response, chunked streaming (SSE) with
// backpressure, request bodies read whole or (for a proxy) piece by piece, `100 Continue`,
// and a graceful drain. One io_context thread runs it; Responder methods may be called from any
// thread (they post to the connection's strand).
#pragma once

#include <atomic>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/auth.h"
#include "common/connection_limits.h"
#include "common/error.h"

namespace swissbox::http {

using Request = boost::beast::http::request<boost::beast::http::string_body>;
using Headers = std::vector<std::pair<std::string, std::string>>;

using RequestHeader = boost::beast::http::request_header<>;

struct ServerOptions {
  uint32_t header_limit = 16 * 1024;
  uint64_t body_limit = 64ull << 20;
  std::chrono::milliseconds read_timeout{30000};  // a whole request must arrive within this
  std::chrono::milliseconds idle_timeout{75000};  // keep-alive connection without a request
  // Requests for which this answers true reach the handler as soon as their header is read,
  // with an empty body; the handler reads the body through Responder::body() piece by
  // piece (a proxy relaying an upload). Each piece must arrive within read_timeout, and the
  // whole body may be up to stream_body_limit.
  std::function<bool(const RequestHeader&)> stream_body;
  uint64_t stream_body_limit = 1ull << 30;
  // Runs once a request's header is read, before any of its body: an Error answers the
  // request at once and the connection closes (its body is read and dropped, for a bounded
  // time, so that the client sees the answer). Authentication goes here, so that nobody
  // without a token makes the server hold a body.
  std::function<std::optional<Error>(const RequestHeader&, bool from_unix_socket)> admit;
  // The limit of a body read whole, per request (e.g. small for JSON routes); 0 or unset:
  // body_limit.
  std::function<uint64_t(const RequestHeader&)> body_limit_for;
  // TCP connections open at once, in all and from one client address. Past either limit a
  // connection is still taken while kProbeReserve more fit, but it answers only the
  // quiet_paths probes (so that a kubelet or a scheduler still sees the node) and 503 to
  // anything else, then closes; past that too it gets a 503 at once. The unix socket is
  // never limited. Server lowers max_connections to what half its NOFILE limit allows.
  size_t max_connections = 4096;
  size_t max_connections_per_client = 512;
  static constexpr size_t kProbeReserve = 64;
  // Probes and polls (every second, from kubelets and schedulers): their successful
  // answers are logged at debug, not info.
  std::set<std::string, std::less<>> quiet_paths = {"/healthz", "/readyz", "/metrics", "/v1/node"};
};

class Session;

// The body of a request that ServerOptions::stream_body chose, read as the handler asks.
class BodyReader {
 public:
  // The next piece (up to 64 KiB) and whether it is the last; runs on the connection's
  // strand. An error (the client went away, a timeout, bad chunk framing, over the limit)
  // ends the body. Call again only after the previous read answered.
  using ReadHandler = std::function<void(Result<std::string> piece, bool last)>;
  virtual ~BodyReader() = default;
  virtual void read(ReadHandler handler) = 0;
  // The declared length, when the client sent Content-Length (else the body is chunked).
  virtual std::optional<uint64_t> content_length() const = 0;
  // Whether the last piece was read (an answer before that closes the connection).
  virtual bool finished() const = 0;
};

// The answer to one request. Exactly one of send*() or a start_stream()…end_stream() run;
// dropping the last reference without answering sends a 500 so a client never hangs.
class Responder : public std::enable_shared_from_this<Responder> {
 public:
  Responder(std::shared_ptr<Session> session, std::string request_id, bool keep_alive,
            unsigned version);
  ~Responder();

  const std::string& request_id() const { return request_id_; }
  // "METHOD target", for the access log line written when the answer starts.
  void set_request_line(std::string line) { request_line_ = std::move(line); }
  // Successful answers are logged at debug (a probe's).
  void set_quiet(bool quiet) { quiet_ = quiet; }
  // fn runs once with the status when the answer starts (for request metrics by code).
  void on_answer(std::function<void(unsigned status)> fn) { on_answer_ = std::move(fn); }
  bool peer_is_unix() const;

  void send(unsigned status, std::string body, std::string_view content_type,
            const Headers& extra = {});
  void send_json(unsigned status, const nlohmann::json& body, const Headers& extra = {});
  void send_error(const Error& error, const Headers& extra = {});

  void start_stream(unsigned status, std::string_view content_type, const Headers& extra = {});
  // `written`, if set, runs on the connection's strand once the piece is on its way to the
  // client or the connection closed: a producer that waits for it never queues more than
  // one piece (backpressure from a slow client).
  void write_chunk(std::string data, std::function<void()> written = {});
  void end_stream();
  // Ends a started stream without its final chunk and closes the connection, so that the
  // client sees a broken transfer rather than a complete one (an upstream that failed).
  void abort_stream();
  // The request body for a request that ServerOptions::stream_body chose; else null. An
  // answer sent before the body was read whole closes the connection afterwards.
  const std::shared_ptr<BodyReader>& body() const { return body_; }
  void set_body(std::shared_ptr<BodyReader> body) { body_ = std::move(body); }
  // False once the client has gone away (a stream can stop producing).
  bool client_alive() const;
  // fn runs once if the connection closes before this answer is complete (a client leaving
  // an SSE stream); it runs on the connection's strand. The connection keeps fn until then:
  // what fn captures must not hold the connection (capture such things weakly).
  void on_client_gone(std::function<void()> fn);

 private:
  std::string head(unsigned status, std::string_view content_type, const Headers& extra,
                   bool chunked, size_t length) const;
  void log_answer(unsigned status, std::string_view error) const;

  std::shared_ptr<Session> session_;
  std::string request_id_;
  std::string request_line_ = "-";
  bool quiet_ = false;
  std::function<void(unsigned)> on_answer_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  // Whether the connection carries a next request; false when the answer goes out before
  // a streamed body was read whole.
  bool keep_alive() const { return keep_alive_ && (!body_ || body_->finished()); }
  bool keep_alive_;
  unsigned version_;
  std::atomic<bool> answered_{false};
  std::shared_ptr<BodyReader> body_;
};

using Handler = std::function<void(Request&& req, std::shared_ptr<Responder> res)>;

class Server {
 public:
  Server(boost::asio::io_context& ioc, ServerOptions opts, Handler handler);
  ~Server();

  // "HOST:PORT" (port 0 picks one; see tcp_port()).
  Status listen_tcp(const std::string& host_port);
  // Replaces a stale socket file; the socket is made mode 0600 (root-only).
  Status listen_unix(const std::string& path);
  uint16_t tcp_port() const { return tcp_port_; }

  // Stops accepting, closes idle connections, lets in-flight requests finish, then calls
  // done (at the latest after `grace`).
  void drain(std::chrono::milliseconds grace, std::function<void()> done);

  // Internal: sessions register themselves; `client` is the peer's address ("" for unix).
  void add_session(const std::shared_ptr<Session>& s);
  void remove_session(Session* s, const std::string& client, bool limited);
  const ServerOptions& options() const { return opts_; }
  const Handler& handler() const { return handler_; }
  bool draining() const { return draining_; }

 private:
  struct Listener;
  void accept(std::shared_ptr<Listener> l);
  // Whether a new TCP connection from `client` fits under the limits (counted if so).
  bool admit_connection(const std::string& client);
  // Whether it fits in the reserve for probes (counted if so).
  bool admit_probe_connection();
  // Out of fds: frees the reserve to take one waiting connection off the backlog with a
  // 503, then tries accepting again after a pause instead of spinning.
  void shed_and_retry(std::shared_ptr<Listener> l);
  void check_drained();

  boost::asio::io_context& ioc_;
  ServerOptions opts_;
  Handler handler_;
  std::vector<std::shared_ptr<Listener>> listeners_;
  std::set<std::weak_ptr<Session>, std::owner_less<std::weak_ptr<Session>>> sessions_;
  std::vector<std::string> unix_paths_;
  uint16_t tcp_port_ = 0;
  bool draining_ = false;
  std::function<void()> drained_;
  std::unique_ptr<boost::asio::steady_timer> drain_timer_;
  ConnectionLimits connections_{0, 0};  // TCP sessions, in all and per client address
  size_t probe_sessions_ = 0;           // taken past the limits, for probes only
  int reserve_fd_ = -1;  // an fd kept free for shed_and_retry
};

// The path of a request target, without its query.
inline std::string_view target_path(std::string_view target) {
  return target.substr(0, target.find('?'));
}

// ServerOptions::admit for a server with bearer tokens (agent, scheduler): check_bearer on
// the header's path and Authorization.
std::optional<Error> check_bearer(const RequestHeader& header, bool from_unix_socket,
                                  const TokenTable& tokens);

// Splits "a=b&c=d" (percent-decoded).
std::vector<std::pair<std::string, std::string>> parse_query(std::string_view q);
std::string percent_decode(std::string_view s);

}  // namespace swissbox::http
