#include "common/http_client.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <limits>

namespace swissbox::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using generic = asio::generic::stream_protocol;

struct Client::Conn {
  asio::io_context ioc;
  generic::socket sock{ioc};
  beast::flat_buffer buf;
};

std::string ClientResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (beast::iequals(k, name)) return v;
  }
  return {};
}

Client::Client(std::string target, std::chrono::milliseconds timeout)
    : target_(std::move(target)), timeout_(timeout) {
  if (target_.rfind("http://", 0) == 0) target_ = target_.substr(7);
  while (!target_.empty() && target_.back() == '/') target_.pop_back();
}

Client::~Client() = default;

Status Client::connect() {
  conn_ = std::make_unique<Conn>();
  boost::system::error_code ec;
  if (target_.rfind("unix:", 0) == 0) {
    generic::endpoint ep(asio::local::stream_protocol::endpoint(target_.substr(5)));
    conn_->sock.connect(ep, ec);
  } else {
    auto colon = target_.rfind(':');
    if (colon == std::string::npos)
      return make_error(Code::kInvalidArgument, "bad target " + target_);
    asio::ip::tcp::resolver resolver(conn_->ioc);
    auto results = resolver.resolve(target_.substr(0, colon), target_.substr(colon + 1), ec);
    if (!ec) {
      ec = asio::error::host_not_found;
      for (const auto& r : results) {
        conn_->sock = generic::socket(conn_->ioc);
        conn_->sock.connect(generic::endpoint(r.endpoint()), ec);
        if (!ec) break;
      }
    }
  }
  if (ec) {
    conn_.reset();
    return Error{Code::kUnavailable, ec.value(), "connect to " + target_};
  }
  timeval tv{static_cast<time_t>(timeout_.count() / 1000),
             static_cast<suseconds_t>((timeout_.count() % 1000) * 1000)};
  setsockopt(conn_->sock.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(conn_->sock.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  return ok_status();
}

Result<ClientResponse> Client::request(std::string_view method, std::string_view path,
                                       std::string body,
                                       std::vector<std::pair<std::string, std::string>> headers) {
  std::string all;
  auto r = stream(method, path, std::move(body), std::move(headers),
                  [&](std::string_view d) { all.append(d); });
  if (r.ok()) r->body = std::move(all);
  return r;
}

Result<ClientResponse> Client::stream(std::string_view method, std::string_view path,
                                      std::string body,
                                      std::vector<std::pair<std::string, std::string>> headers,
                                      const std::function<void(std::string_view)>& on_data,
                                      const std::function<void(const ClientResponse&)>& on_head) {
  // One retry on a fresh connection covers a keep-alive connection the server has closed.
  for (int attempt = 0; attempt < 2; ++attempt) {
    bool reused = conn_ != nullptr;
    if (!conn_) {
      if (auto st = connect(); !st) return st.error();
    }
    bhttp::request<bhttp::string_body> req(bhttp::string_to_verb(method), std::string(path), 11);
    req.set(bhttp::field::host, target_.rfind("unix:", 0) == 0 ? "localhost" : target_);
    for (auto& [k, v] : headers) req.set(k, v);
    if (!body.empty() || method == "POST" || method == "PUT") req.body() = body;
    req.prepare_payload();
    boost::system::error_code ec;
    bhttp::write(conn_->sock, req, ec);
    // A server may answer early and close (413 on a huge body): read that answer anyway.
    bool early_close = ec == asio::error::broken_pipe || ec == asio::error::connection_reset;
    if (ec && !early_close) {
      conn_.reset();
      if (reused) continue;
      return Error{Code::kUnavailable, ec.value(), "send request to " + target_};
    }
    bhttp::response_parser<bhttp::buffer_body> parser;
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());  // callers cap what they keep
    bhttp::read_header(conn_->sock, conn_->buf, parser, ec);
    if (ec) {
      conn_.reset();
      if (reused && !early_close && ec == bhttp::error::end_of_stream) continue;
      return Error{ec == asio::error::would_block ? Code::kDeadlineExceeded : Code::kUnavailable,
                   ec.value(), "read response from " + target_ + ": " + ec.message()};
    }
    ClientResponse out;
    out.status = parser.get().result_int();
    for (const auto& f : parser.get()) {
      out.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    }
    if (on_head) on_head(out);
    char chunk[65536];
    conn_->buf.reserve(sizeof(chunk));  // Beast reads no more than the buffer's room
    while (!parser.is_done()) {
      parser.get().body().data = chunk;
      parser.get().body().size = sizeof(chunk);
      // read_some: each piece goes to on_data as it arrives (an SSE event, a watch's change),
      // not once 64 KiB have gathered.
      bhttp::read_some(conn_->sock, conn_->buf, parser, ec);
      if (ec == bhttp::error::need_buffer) ec = {};
      if (ec) {
        conn_.reset();
        return Error{Code::kUnavailable, ec.value(),
                     "read body from " + target_ + ": " + ec.message()};
      }
      size_t n = sizeof(chunk) - parser.get().body().size;
      if (n > 0) on_data(std::string_view(chunk, n));
    }
    if (!parser.get().keep_alive()) conn_.reset();
    return out;
  }
  return make_error(Code::kUnavailable, "connection to " + target_ + " closed");
}

}  // namespace swissbox::http
