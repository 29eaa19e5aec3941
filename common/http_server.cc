#include "common/http_server.h"

#include <fmt/format.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <deque>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>

#include "common/log.h"

namespace swissbox::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using generic = asio::generic::stream_protocol;
using Stream = beast::basic_stream<generic>;

namespace {

std::string new_request_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{:016x}", rng());
}

bool valid_request_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') return false;
  }
  return true;
}

std::string_view reason(unsigned status) {
  return bhttp::obsolete_reason(static_cast<bhttp::status>(status));
}

// A body the server will not read is read and dropped for this long after the answer, so
// that a client still sending it gets to read the answer instead of a reset.
constexpr auto kLinger = std::chrono::seconds(5);

// The answer to a connection the server will not serve; written without waiting.
void refuse_connection(int fd, std::string_view why) {
  std::string body = fmt::format(R"({{"error":{{"code":"unavailable","message":"{}"}}}})", why) + "\n";
  std::string out = fmt::format(
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
      "Content-Length: {}\r\nConnection: close\r\n\r\n{}",
      body.size(), body);
  (void)!::send(fd, out.data(), out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
}

// The peer's address, the key of the per-client limit.
std::string peer_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  char buf[INET6_ADDRSTRLEN] = "?";
  if (ss.ss_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr, buf, sizeof(buf));
  if (ss.ss_family == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr, buf, sizeof(buf));
  return buf;
}

}  // namespace

// One connection: reads requests one at a time, writes answers from a queue.
class Session : public std::enable_shared_from_this<Session> {
 public:
  // limited: taken past the connection limits, it answers probes only (ServerOptions).
  Session(Server& server, generic::socket socket, bool is_unix, std::string client, bool limited)
      : server_(server),
        stream_(std::move(socket)),
        is_unix_(is_unix),
        client_(std::move(client)),
        limited_(limited) {}

  void start() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read(); });
  }

  // Thread-safe: queue bytes; `last` ends the current response. `written` runs once the
  // bytes went out, or when the connection closes before that.
  void write(std::string head, std::string body, bool last, bool close_after,
             std::function<void()> written = {}) {
    asio::post(stream_.get_executor(),
               [self = shared_from_this(), head = std::move(head), body = std::move(body), last,
                close_after, written = std::move(written)]() mutable {
                 if (self->closed_) {
                   if (written) written();
                   return;
                 }
                 self->queue_.push_back(
                     {std::move(head), std::move(body), last, close_after, std::move(written)});
                 if (self->queue_.size() == 1) self->flush();
               });
  }

  // BodyReader::read, on the strand.
  void read_body_piece(BodyReader::ReadHandler handler) {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this(),
                                            handler = std::move(handler)]() mutable {
      self->next_body_piece(std::move(handler));
    });
  }

  // Closes after what is queued went out (not ending the answer).
  void abort() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      if (self->queue_.empty()) return self->close();
      self->queue_.push_back({{}, {}, true, true, {}});
    });
  }

  void drain() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      if (!self->busy_) self->close();
    });
  }

  bool is_unix() const { return is_unix_; }
  bool alive() const { return !closed_; }

  // Runs fn (on the strand) if the client goes away before the current answer is complete.
  void on_client_gone(std::function<void()> fn) {
    asio::post(stream_.get_executor(), [self = shared_from_this(), fn = std::move(fn)]() mutable {
      if (self->closed_) return fn();
      self->on_gone_ = std::move(fn);
    });
  }

 private:
  struct Out {
    std::string head, body;
    bool last, close_after;
    std::function<void()> written;
  };

  class StreamedBody : public BodyReader {
   public:
    StreamedBody(std::shared_ptr<Session> s, std::optional<uint64_t> length)
        : session_(std::move(s)), length_(length) {}
    void read(ReadHandler handler) override { session_->read_body_piece(std::move(handler)); }
    std::optional<uint64_t> content_length() const override { return length_; }
    bool finished() const override { return finished_; }
    void set_finished() { finished_ = true; }

   private:
    std::shared_ptr<Session> session_;
    std::optional<uint64_t> length_;
    std::atomic<bool> finished_{false};
  };

  static constexpr size_t kBodyPiece = 64 * 1024;

  // The header is read first; then the body either whole (string_body) or, for requests
  // that ServerOptions::stream_body picks, piece by piece as the handler asks.
  void read() {
    if (server_.draining()) return close();
    buffer_.shrink_to_fit();  // an idle keep-alive connection keeps no body-sized buffer
    header_parser_.emplace();
    header_parser_->header_limit(server_.options().header_limit);
    // Beast checks a Content-Length against the limit while parsing the header, before the
    // body's fate is known: on_header applies the right limit instead.
    header_parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    // The whole request (header and a buffered body) must arrive within this.
    // A connection taken for probes only gets little time: a flood must not hold the reserve.
    stream_.expires_after(limited_         ? std::chrono::milliseconds(2000)
                          : first_request_ ? server_.options().read_timeout
                                           : server_.options().idle_timeout);
    busy_ = false;
    bhttp::async_read_header(
        stream_, buffer_, *header_parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->on_header(ec); });
  }

  void on_header(beast::error_code ec) {
    if (ec) return read_failed(ec);
    first_request_ = false;
    busy_ = true;
    const auto& header = header_parser_->get();
    bool has_body = !header_parser_->is_done();
    bool expect_continue = has_body && beast::iequals(header[bhttp::field::expect], "100-continue");
    const auto& stream_body = server_.options().stream_body;
    if (limited_ && !server_.options().quiet_paths.count(target_path(header.target()))) {
      return answer_unread(
          make_error(Code::kUnavailable, "too many connections; only health probes are answered"),
          std::string(header.method_string()) + " " + std::string(header.target()));
    }
    if (const auto& admit = server_.options().admit) {
      if (auto refused = admit(header, is_unix_)) {
        return answer_unread(*refused, std::string(header.method_string()) + " " +
                                           std::string(header.target()));
      }
    }
    bool streamed = has_body && stream_body && stream_body(header);
    uint64_t whole_limit = server_.options().body_limit;
    if (const auto& limit_for = server_.options().body_limit_for) {
      if (uint64_t l = limit_for(header); l > 0) whole_limit = l;
    }
    uint64_t limit = streamed ? server_.options().stream_body_limit : whole_limit;
    if (auto n = header_parser_->content_length(); n && *n > limit) {
      return read_failed(bhttp::error::body_limit);
    }
    if (streamed) {
      body_parser_.emplace(std::move(*header_parser_));
      header_parser_.reset();
      body_parser_->body_limit(server_.options().stream_body_limit);
      if (expect_continue) write_continue();
      Request req(RequestHeader(body_parser_->get().base()));
      std::optional<uint64_t> length;
      if (auto n = body_parser_->content_length()) length = *n;
      auto body = std::make_shared<StreamedBody>(shared_from_this(), length);
      streamed_ = body;
      return dispatch(std::move(req), std::move(body));
    }
    parser_.emplace(std::move(*header_parser_));
    header_parser_.reset();
    parser_->body_limit(whole_limit);
    if (!has_body) return on_read({});
    if (expect_continue) write_continue();
    buffer_.reserve(kBodyPiece);  // Beast reads no more than the buffer's room (512 bytes)
    bhttp::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec) return read_failed(ec);
    Request req = parser_->release();
    parser_.reset();
    dispatch(std::move(req), nullptr);
  }

  // Answers a request whose body (if any) stays unread; the connection then lingers to
  // drop that body and closes.
  void answer_unread(const Error& error, std::string request_line = "-") {
    header_parser_.reset();
    parser_.reset();
    busy_ = true;
    unread_body_ = true;
    auto res = std::make_shared<Responder>(shared_from_this(), new_request_id(), false, 11);
    res->set_request_line(std::move(request_line));
    res->send_error(error);
  }

  void read_failed(beast::error_code ec) {
    if (ec == bhttp::error::body_limit || ec == bhttp::error::header_limit) {
      return answer_unread(make_error(Code::kTooLarge, ec == bhttp::error::body_limit
                                                           ? "request body exceeds the limit"
                                                           : "request headers exceed the limit"));
    }
    header_parser_.reset();
    parser_.reset();
    // Timeouts, resets and EOF end the connection; a malformed request gets a 400 first.
    if (ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category() &&
        ec != bhttp::error::end_of_stream) {
      busy_ = true;
      auto res = std::make_shared<Responder>(shared_from_this(), new_request_id(), false, 11);
      res->send_error(make_error(Code::kInvalidArgument, "malformed HTTP request: " + ec.message()));
      return;
    }
    close();
  }

  void dispatch(Request&& req, std::shared_ptr<BodyReader> body) {
    auto it = req.find("X-Request-Id");
    std::string rid = it != req.end() && valid_request_id(it->value()) ? std::string(it->value())
                                                                       : new_request_id();
    auto res = std::make_shared<Responder>(shared_from_this(), std::move(rid),
                                           req.keep_alive() && !server_.draining() && !limited_,
                                           req.version());
    res->set_request_line(std::string(req.method_string()) + " " + std::string(req.target()));
    std::string_view target = req.target();
    res->set_quiet(req.method() == bhttp::verb::get &&
                   server_.options().quiet_paths.count(target_path(target)) > 0);
    if (body) {
      res->set_body(std::move(body));  // timeouts now apply per piece
    } else {
      stream_.expires_never();
      watch_peer();
    }
    server_.handler()(std::move(req), std::move(res));
  }

  // A client that sent `Expect: 100-continue` waits for this before its body.
  void write_continue() {
    queue_.push_back({"HTTP/1.1 100 Continue\r\n\r\n", {}, false, false, {}});
    if (queue_.size() == 1) flush();
  }

  void next_body_piece(BodyReader::ReadHandler handler) {
    if (closed_ || !body_parser_) {
      return handler(make_error(Code::kUnavailable, "the client's connection closed"), true);
    }
    if (body_parser_->is_done()) {
      body_done();
      return handler(std::string(), true);
    }
    piece_.resize(kBodyPiece);
    buffer_.reserve(kBodyPiece);  // Beast reads no more than the buffer's room
    body_parser_->get().body().data = piece_.data();
    body_parser_->get().body().size = piece_.size();
    stream_.expires_after(server_.options().read_timeout);
    bhttp::async_read(stream_, buffer_, *body_parser_,
                      [self = shared_from_this(), handler = std::move(handler)](
                          beast::error_code ec, size_t) {
                        if (ec == bhttp::error::need_buffer) ec = {};
                        if (ec || !self->body_parser_) {
                          self->body_parser_.reset();
                          return handler(body_error(ec), true);
                        }
                        self->piece_.resize(kBodyPiece - self->body_parser_->get().body().size);
                        bool last = self->body_parser_->is_done();
                        if (last) self->body_done();
                        handler(std::move(self->piece_), last);
                      });
  }

  static Error body_error(beast::error_code ec) {
    if (ec == bhttp::error::body_limit) {
      return make_error(Code::kTooLarge, "request body exceeds the limit");
    }
    if (ec == beast::error::timeout) {
      return make_error(Code::kDeadlineExceeded, "the request body stopped arriving");
    }
    return make_error(Code::kUnavailable, "reading the request body: " + ec.message());
  }

  // The body was read whole: the connection can carry a next request, and a client that
  // leaves is noticed again.
  void body_done() {
    body_parser_.reset();
    if (auto b = streamed_.lock()) b->set_finished();
    stream_.expires_never();
    if (busy_ && !closed_) watch_peer();
  }

  // While a request is being answered nothing reads the socket, so a client that hangs up
  // would go unnoticed until the answer is written (never, for a silent command). Waiting for
  // readability and peeking tells EOF (gone) from pipelined bytes (left for the next read).
  void watch_peer() {
    stream_.socket().async_wait(
        generic::socket::wait_read, [self = shared_from_this()](beast::error_code ec) {
          if (ec || self->closed_ || !self->busy_) return;
          char c;
          ssize_t n =
              ::recv(self->stream_.socket().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
          if (n == 0) return self->close();
          if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            return self->watch_peer();
          }
          if (n < 0) self->close();
        });
  }

  void flush() {
    if (queue_.empty() || closed_) return;
    Out& o = queue_.front();
    std::array<asio::const_buffer, 2> bufs{asio::buffer(o.head), asio::buffer(o.body)};
    // A slow reader gets the read timeout for every write as well.
    stream_.expires_after(server_.options().read_timeout);
    writing_ = true;
    asio::async_write(stream_, bufs, [self = shared_from_this()](beast::error_code ec, size_t) {
      self->writing_ = false;
      Out done = std::move(self->queue_.front());
      self->queue_.pop_front();
      if (done.written) done.written();
      if (ec || self->closed_) return self->close();
      if (done.last) {
        self->on_gone_ = nullptr;  // answered in full: nothing to cancel any more
        self->stream_.expires_never();
        // An answer given before the body was read whole leaves unread bytes: close, after
        // dropping them for a while so that the client reads the answer.
        if (self->unread_body_ || self->body_parser_) return self->linger_close();
        if (done.close_after) return self->close();
        self->read();
        return;
      }
      self->flush();
    });
  }

  void linger_close() {
    if (closed_) return;
    beast::error_code ec;
    stream_.socket().shutdown(generic::socket::shutdown_send, ec);
    body_parser_.reset();
    stream_.expires_after(kLinger);
    discard_input();
  }

  void discard_input() {
    linger_buf_.resize(kBodyPiece);
    stream_.async_read_some(asio::buffer(linger_buf_),
                            [self = shared_from_this()](beast::error_code ec, size_t) {
                              if (ec || self->closed_) return self->close();
                              self->discard_input();
                            });
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    // A piece being written stays queued until its write completes: asio reads from it.
    auto first = queue_.begin() + (writing_ ? 1 : 0);
    std::deque<Out> queued(std::make_move_iterator(first), std::make_move_iterator(queue_.end()));
    queue_.erase(first, queue_.end());
    for (auto& o : queued) {
      if (o.written) o.written();
    }
    if (auto gone = std::exchange(on_gone_, nullptr)) gone();
    beast::error_code ec;
    stream_.socket().shutdown(generic::socket::shutdown_both, ec);
    stream_.close();
    server_.remove_session(this, client_, limited_);
  }

  Server& server_;
  Stream stream_;
  bool is_unix_;
  std::string client_;
  bool limited_;
  bool unread_body_ = false;
  std::string linger_buf_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::empty_body>> header_parser_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::optional<bhttp::request_parser<bhttp::buffer_body>> body_parser_;  // a streamed body
  std::string piece_;
  std::weak_ptr<StreamedBody> streamed_;
  std::deque<Out> queue_;
  std::function<void()> on_gone_;
  bool first_request_ = true;
  bool busy_ = false;
  bool closed_ = false;
  bool writing_ = false;  // an async_write of queue_.front() is in flight
};

// ---- Responder -------------------------------------------------------------------------

Responder::Responder(std::shared_ptr<Session> session, std::string request_id, bool keep_alive,
                     unsigned version)
    : session_(std::move(session)),
      request_id_(std::move(request_id)),
      keep_alive_(keep_alive),
      version_(version) {}

Responder::~Responder() {
  if (!answered_) {
    log::error("request dropped without an answer", {{"request_id", request_id_}});
    send_error(make_error(Code::kInternal, "the request was not answered"));
  }
}

bool Responder::peer_is_unix() const { return session_->is_unix(); }
bool Responder::client_alive() const { return session_->alive(); }
void Responder::on_client_gone(std::function<void()> fn) {
  session_->on_client_gone(std::move(fn));
}

std::string Responder::head(unsigned status, std::string_view content_type, const Headers& extra,
                            bool chunked, size_t length) const {
  std::string h = fmt::format("HTTP/{}.{} {} {}\r\nServer: swissbox\r\nX-Request-Id: {}\r\n",
                              version_ / 10, version_ % 10, status, reason(status), request_id_);
  if (!content_type.empty()) h += fmt::format("Content-Type: {}\r\n", content_type);
  for (const auto& [k, v] : extra) h += fmt::format("{}: {}\r\n", k, v);
  if (chunked) {
    h += "Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n";
  } else {
    h += fmt::format("Content-Length: {}\r\n", length);
  }
  if (!keep_alive()) h += "Connection: close\r\n";
  h += "\r\n";
  return h;
}

void Responder::log_answer(unsigned status, std::string_view error) const {
  double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start_).count();
  log::Level level = status >= 500                ? log::Level::kWarn
                     : quiet_ && status < 400 ? log::Level::kDebug
                                              : log::Level::kInfo;
  int code = static_cast<int>(status);
  if (error.empty()) {
    log::write(level, "http",
               {{"request_id", request_id_}, {"req", request_line_}, {"status", code}, {"ms", ms}});
  } else {
    log::write(level, "http",
               {{"request_id", request_id_},
                {"req", request_line_},
                {"status", code},
                {"ms", ms},
                {"error", error}});
  }
}

void Responder::send(unsigned status, std::string body, std::string_view content_type,
                     const Headers& extra) {
  if (answered_.exchange(true)) return;
  // Error bodies carry their message; keep it in the access log line too.
  log_answer(status, status >= 400 ? std::string_view(body).substr(0, 300) : std::string_view());
  if (on_answer_) on_answer_(status);
  std::string h = head(status, content_type, extra, false, body.size());
  session_->write(std::move(h), std::move(body), true, !keep_alive());
}

void Responder::send_json(unsigned status, const nlohmann::json& body, const Headers& extra) {
  // Output of untrusted code need not be UTF-8: replace, never throw on the I/O thread.
  send(status, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n",
       "application/json", extra);
}

void Responder::send_error(const Error& error, const Headers& extra) {
  nlohmann::json body = {
      {"error", {{"code", code_name(error.code)}, {"message", error.to_string()}}}};
  // Every 429 tells the client when to come back (DESIGN.md error shape).
  Headers headers = extra;
  bool has_retry = false;
  for (const auto& [k, v] : headers) has_retry |= beast::iequals(k, "Retry-After");
  if (error.code == Code::kResourceExhausted && !has_retry) headers.push_back({"Retry-After", "2"});
  send_json(http_status(error.code), body, headers);
}

void Responder::start_stream(unsigned status, std::string_view content_type,
                             const Headers& extra) {
  if (answered_.exchange(true)) return;
  log_answer(status, {});
  if (on_answer_) on_answer_(status);
  session_->write(head(status, content_type, extra, true, 0), {}, false, false);
}

void Responder::write_chunk(std::string data, std::function<void()> written) {
  if (data.empty()) {
    if (written) written();
    return;
  }
  std::string h = fmt::format("{:x}\r\n", data.size());
  data += "\r\n";
  session_->write(std::move(h), std::move(data), false, false, std::move(written));
}

void Responder::end_stream() { session_->write("0\r\n\r\n", {}, true, !keep_alive()); }

void Responder::abort_stream() { session_->abort(); }

// ---- Server ----------------------------------------------------------------------------

struct Server::Listener {
  explicit Listener(asio::io_context& ioc) : acceptor(ioc) {}
  asio::basic_socket_acceptor<generic> acceptor;
  bool is_unix = false;
};

Server::Server(asio::io_context& ioc, ServerOptions opts, Handler handler)
    : ioc_(ioc), opts_(opts), handler_(std::move(handler)) {
  // Connections may take half of the fds; the rest stay for sandboxes, files and runsc.
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY) {
    opts_.max_connections = std::max<size_t>(16, std::min<size_t>(opts_.max_connections, nofile.rlim_cur / 2));
  }
  connections_ = ConnectionLimits(opts_.max_connections, opts_.max_connections_per_client);
  reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
}

Server::~Server() {
  for (const auto& p : unix_paths_) ::unlink(p.c_str());
  if (reserve_fd_ >= 0) ::close(reserve_fd_);
}

Status Server::listen_tcp(const std::string& host_port) {
  auto colon = host_port.rfind(':');
  if (colon == std::string::npos) {
    return make_error(Code::kInvalidArgument, "listen address must be HOST:PORT: " + host_port);
  }
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(host_port.substr(0, colon), ec);
  if (ec) return make_error(Code::kInvalidArgument, "bad listen host in " + host_port);
  int port = atoi(host_port.c_str() + colon + 1);
  asio::ip::tcp::endpoint ep(addr, static_cast<uint16_t>(port));
  auto l = std::make_shared<Listener>(ioc_);
  generic::endpoint gep(ep);
  l->acceptor.open(gep.protocol(), ec);
  if (!ec) l->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) l->acceptor.bind(gep, ec);
  if (!ec) l->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Error{Code::kUnavailable, ec.value(), "listen on " + host_port};
  // Read the chosen port back through the native handle: generic endpoints hide it.
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  getsockname(l->acceptor.native_handle(), reinterpret_cast<sockaddr*>(&ss), &len);
  tcp_port_ = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                             : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  listeners_.push_back(l);
  accept(l);
  return ok_status();
}

Status Server::listen_unix(const std::string& path) {
  ::unlink(path.c_str());
  auto l = std::make_shared<Listener>(ioc_);
  l->is_unix = true;
  boost::system::error_code ec;
  generic::endpoint gep(asio::local::stream_protocol::endpoint{path});
  l->acceptor.open(gep.protocol(), ec);
  // Root-only before anyone can connect: nobody can connect before listen(), so the mode is
  // set in between. (Not via umask: it is process-wide, and a worker thread creating a
  // sandbox's workspace meanwhile would get a directory its uid cannot enter.)
  if (!ec) l->acceptor.bind(gep, ec);
  if (!ec && ::chmod(path.c_str(), 0600) != 0) ec.assign(errno, boost::system::system_category());
  if (!ec) l->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Error{Code::kUnavailable, ec.value(), "listen on unix socket " + path};
  unix_paths_.push_back(path);
  listeners_.push_back(l);
  accept(l);
  return ok_status();
}

void Server::accept(std::shared_ptr<Listener> l) {
  l->acceptor.async_accept(asio::make_strand(ioc_),
                           [this, l](boost::system::error_code ec, generic::socket sock) {
                             if (ec) {
                               if (ec == asio::error::operation_aborted || draining_) return;
                               if (ec == asio::error::no_descriptors ||
                                   ec.value() == ENFILE || ec == asio::error::no_buffer_space ||
                                   ec == asio::error::no_memory) {
                                 return shed_and_retry(l);
                               }
                               return accept(l);
                             }
                             if (draining_) return;
                             std::string client;
                             bool limited = false;
                             if (!l->is_unix) {
                               sock.set_option(asio::ip::tcp::no_delay(true), ec);
                               client = peer_address(sock.native_handle());
                               if (!admit_connection(client)) {
                                 limited = true;
                                 if (!admit_probe_connection()) {
                                   refuse_connection(sock.native_handle(),
                                                     "too many connections; try again");
                                   sock.close(ec);
                                   return accept(l);
                                 }
                               }
                             }
                             auto s = std::make_shared<Session>(*this, std::move(sock), l->is_unix,
                                                                std::move(client), limited);
                             add_session(s);
                             s->start();
                             accept(l);
                           });
}

bool Server::admit_connection(const std::string& client) { return connections_.take(client); }

bool Server::admit_probe_connection() {
  if (probe_sessions_ >= ServerOptions::kProbeReserve) return false;
  ++probe_sessions_;
  return true;
}

void Server::shed_and_retry(std::shared_ptr<Listener> l) {
  if (reserve_fd_ >= 0) {
    ::close(reserve_fd_);
    reserve_fd_ = -1;
    int fd = ::accept4(l->acceptor.native_handle(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0) {
      refuse_connection(fd, "the server is out of file descriptors; try again");
      ::close(fd);
    }
    reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  }
  log::warn("accept: out of file descriptors; pausing", {{"open_connections", connections_.open()}});
  auto timer = std::make_shared<asio::steady_timer>(ioc_, std::chrono::milliseconds(100));
  timer->async_wait([this, l, timer](boost::system::error_code ec) {
    if (!ec && !draining_) accept(l);
  });
}

void Server::add_session(const std::shared_ptr<Session>& s) {
  asio::post(ioc_, [this, w = std::weak_ptr<Session>(s)] { sessions_.insert(w); });
}

void Server::remove_session(Session* s, const std::string& client, bool limited) {
  asio::post(ioc_, [this, s, client, limited] {
    if (limited) {
      if (probe_sessions_ > 0) --probe_sessions_;
    } else if (!client.empty()) {
      connections_.release(client);
    }
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      auto p = it->lock();
      if (!p || p.get() == s) {
        it = sessions_.erase(it);
      } else {
        ++it;
      }
    }
    check_drained();
  });
}

void Server::drain(std::chrono::milliseconds grace, std::function<void()> done) {
  asio::post(ioc_, [this, grace, done = std::move(done)]() mutable {
    draining_ = true;
    drained_ = std::move(done);
    for (auto& l : listeners_) {
      boost::system::error_code ec;
      l->acceptor.close(ec);
    }
    for (const auto& p : unix_paths_) ::unlink(p.c_str());
    unix_paths_.clear();
    for (auto& w : sessions_) {
      if (auto s = w.lock()) s->drain();
    }
    drain_timer_ = std::make_unique<asio::steady_timer>(ioc_, grace);
    drain_timer_->async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      if (auto d = std::exchange(drained_, nullptr)) d();
    });
    check_drained();
  });
}

void Server::check_drained() {
  if (!draining_ || !drained_) return;
  for (auto& w : sessions_) {
    if (!w.expired()) return;
  }
  if (drain_timer_) drain_timer_->cancel();
  std::exchange(drained_, nullptr)();
}

std::string percent_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else if (s[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::optional<Error> check_bearer(const RequestHeader& header, bool from_unix_socket,
                                  const TokenTable& tokens) {
  auto auth = header.find(bhttp::field::authorization);
  return swissbox::check_bearer(target_path(header.target()),
                                auth == header.end() ? std::string_view{} : auth->value(),
                                from_unix_socket, tokens);
}

std::vector<std::pair<std::string, std::string>> parse_query(std::string_view q) {
  std::vector<std::pair<std::string, std::string>> out;
  while (!q.empty()) {
    auto amp = q.find('&');
    std::string_view part = q.substr(0, amp);
    auto eq = part.find('=');
    if (!part.empty()) {
      out.emplace_back(percent_decode(part.substr(0, eq)),
                       eq == std::string_view::npos ? "" : percent_decode(part.substr(eq + 1)));
    }
    if (amp == std::string_view::npos) break;
    q.remove_prefix(amp + 1);
  }
  return out;
}

}  // namespace swissbox::http
