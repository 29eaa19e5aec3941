#include "scheduler/upstream.h"

#include <fmt/format.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <limits>
#include <optional>

namespace swissbox::sched {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr size_t kPiece = 64 * 1024;

class Call : public UpstreamCall, public std::enable_shared_from_this<Call> {
 public:
  Call(asio::io_context& ioc, UpstreamRequest req, UpstreamHandlers h)
      : stream_(ioc), resolver_(ioc), req_(std::move(req)), h_(std::move(h)) {}

  void run() {
    auto colon = req_.address.rfind(':');
    if (colon == std::string::npos) {
      return finish(make_error(Code::kInvalidArgument, "agent address must be HOST:PORT: " + req_.address));
    }
    std::string host = req_.address.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    resolver_.async_resolve(
        host, req_.address.substr(colon + 1),
        [self = shared_from_this()](beast::error_code ec, tcp::resolver::results_type found) {
          if (self->done_) return;
          if (ec) return self->fail(ec, "resolve");
          self->stream_.expires_after(self->req_.connect_timeout);
          self->stream_.async_connect(found, [self](beast::error_code ec, const tcp::endpoint&) {
            if (self->done_) return;
            if (ec) return self->fail(ec, "connect to");
            beast::error_code ignored;
            self->stream_.socket().set_option(tcp::no_delay(true), ignored);
            self->send_head();
          });
        });
  }

  void cancel() override {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      self->finish(make_error(Code::kUnavailable, "the client went away"));
    });
  }

 private:
  // The head is written by hand: the agent needs nothing but the caller's few headers and
  // the framing, and a hand-made head keeps a relayed upload's framing explicit.
  void send_head() {
    std::string head = fmt::format("{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
                                   req_.method, req_.target, req_.address);
    for (const auto& [k, v] : req_.headers) head += fmt::format("{}: {}\r\n", k, v);
    if (req_.body_stream) {
      auto length = req_.body_stream->content_length();
      chunked_ = !length;
      head += length ? fmt::format("Content-Length: {}\r\n", *length)
                     : std::string("Transfer-Encoding: chunked\r\n");
    } else if (!req_.body.empty() || req_.method == "POST" || req_.method == "PUT") {
      head += fmt::format("Content-Length: {}\r\n", req_.body.size());
    }
    head += "\r\n";
    if (!req_.body_stream) head += req_.body;
    write(std::move(head), [self = shared_from_this()] {
      if (self->req_.body_stream) return self->pump_body();
      self->sent_ = true;
      self->read_head();
    });
  }

  // One piece of the client's upload at a time: read it, write it, then ask for the next.
  void pump_body() {
    req_.body_stream->read([self = shared_from_this()](Result<std::string> piece, bool last) {
      // The client's connection runs on its own strand: continue on this call's.
      asio::post(self->stream_.get_executor(), [self, piece = std::move(piece), last]() mutable {
        if (self->done_) return;
        if (!piece) {
          return self->finish(Error{piece.error().code, 0,
                                    "the client's upload failed: " + piece.error().to_string()});
        }
        std::string out;
        if (self->chunked_ && !piece->empty()) {
          out = fmt::format("{:x}\r\n{}\r\n", piece->size(), *piece);
        } else if (!self->chunked_) {
          out = std::move(*piece);
        }
        if (last && self->chunked_) out += "0\r\n\r\n";
        if (out.empty() && !last) return self->pump_body();
        self->write(std::move(out), [self, last] {
          if (!last) return self->pump_body();
          self->sent_ = true;
          self->read_head();
        });
      });
    });
  }

  void write(std::string data, std::function<void()> next) {
    out_ = std::move(data);
    stream_.expires_after(req_.timeout);
    asio::async_write(stream_, asio::buffer(out_),
                      [self = shared_from_this(), next = std::move(next)](beast::error_code ec,
                                                                           size_t) {
                        if (self->done_) return;
                        // An agent may answer early and close (413, 404): read that answer.
                        if (ec && ec != asio::error::broken_pipe &&
                            ec != asio::error::connection_reset) {
                          return self->fail(ec, "send the request to");
                        }
                        if (ec) return self->read_head();
                        next();
                      });
  }

  void read_head() {
    parser_.emplace();
    // Beast reads at most what the buffer can take (512 bytes when empty): make room for
    // whole pieces, or a large answer costs a system call per 512 bytes.
    buf_.reserve(kPiece);
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());  // callers cap what they keep
    stream_.expires_after(answer_timeout());
    bhttp::async_read_header(stream_, buf_, *parser_,
                             [self = shared_from_this()](beast::error_code ec, size_t) {
                               if (self->done_) return;
                               if (ec) return self->fail(ec, "read the answer from");
                               http::ClientResponse head;
                               head.status = self->parser_->get().result_int();
                               for (const auto& f : self->parser_->get()) {
                                 head.headers.emplace_back(std::string(f.name_string()),
                                                           std::string(f.value()));
                               }
                               self->h_.on_head(head);
                               self->read_piece();
                             });
  }

  // async_read_some returns as soon as some body arrived: an SSE event goes on at once.
  void read_piece() {
    if (done_) return;
    if (parser_->is_done()) return finish(ok_status());
    piece_.resize(kPiece);
    parser_->get().body().data = piece_.data();
    parser_->get().body().size = piece_.size();
    stream_.expires_after(answer_timeout());
    bhttp::async_read_some(
        stream_, buf_, *parser_, [self = shared_from_this()](beast::error_code ec, size_t) {
          if (self->done_) return;
          if (ec == bhttp::error::need_buffer) ec = {};
          if (ec) return self->fail(ec, "read the answer's body from");
          self->piece_.resize(kPiece - self->parser_->get().body().size);
          if (self->piece_.empty()) return self->read_piece();
          self->h_.on_piece(std::move(self->piece_), [self] {
            asio::post(self->stream_.get_executor(), [self] { self->read_piece(); });
          });
        });
  }

  std::chrono::milliseconds answer_timeout() const {
    return req_.answer_timeout.count() > 0 ? req_.answer_timeout : req_.timeout;
  }

  void fail(beast::error_code ec, std::string_view what) {
    if (ec == beast::error::timeout) {
      auto waited = sent_ ? answer_timeout() : req_.timeout;
      return finish(make_error(Code::kDeadlineExceeded,
                               fmt::format("{} {}: no progress within {} ms", what, req_.address,
                                           waited.count())));
    }
    finish(Error{Code::kUnavailable, ec.value(),
                 fmt::format("{} {}: {}", what, req_.address, ec.message())});
  }

  void finish(Status st) {
    if (done_) return;
    done_ = true;
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
    resolver_.cancel();
    // Handlers may hold the call (fetch does), and the upload stream holds the client's
    // connection: drop both, so that an ended call refers to nothing.
    auto end = std::move(h_.on_end);
    h_ = {};
    req_.body_stream.reset();
    end(std::move(st), sent_);
  }

  beast::tcp_stream stream_;
  tcp::resolver resolver_;
  UpstreamRequest req_;
  UpstreamHandlers h_;
  beast::flat_buffer buf_;
  std::optional<bhttp::response_parser<bhttp::buffer_body>> parser_;
  std::string out_, piece_;
  bool chunked_ = false;
  bool sent_ = false;  // the whole request went out
  bool done_ = false;
};

}  // namespace

std::shared_ptr<UpstreamCall> start_upstream(asio::io_context& ioc, UpstreamRequest req,
                                             UpstreamHandlers handlers) {
  auto call = std::make_shared<Call>(ioc, std::move(req), std::move(handlers));
  asio::post(ioc, [call] { call->run(); });
  return call;
}

void fetch(asio::io_context& ioc, UpstreamRequest req, size_t max_body,
           std::function<void(Result<http::ClientResponse>)> done) {
  struct State {
    http::ClientResponse answer;
    // Weak: the call holds the handlers, which hold the state. A strong pointer here made
    // a cycle that only the call's end broke, so a call still under way when its
    // io_context stopped was never freed (LeakSanitizer, SchedulerService test teardown).
    // The call's pending operations keep it alive while it runs.
    std::weak_ptr<UpstreamCall> call;
    bool too_long = false;
  };
  auto state = std::make_shared<State>();
  std::string address = req.address;
  UpstreamHandlers h;
  h.on_head = [state](const http::ClientResponse& head) { state->answer = head; };
  h.on_piece = [state, max_body](std::string piece, std::function<void()> more) {
    state->answer.body += piece;
    if (state->answer.body.size() <= max_body) return more();
    state->too_long = true;
    if (auto call = state->call.lock()) call->cancel();
  };
  h.on_end = [state, max_body, address, done = std::move(done)](Status st, bool) {
    if (state->too_long) {
      return done(make_error(Code::kTooLarge,
                             fmt::format("{} answered more than {} bytes", address, max_body)));
    }
    if (!st) return done(st.error());
    done(std::move(state->answer));
  };
  state->call = start_upstream(ioc, std::move(req), std::move(h));
}

}  // namespace swissbox::sched
