// The Beast server and the blocking client against each other on loopback and a unix socket.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <atomic>
#include <functional>
#include <thread>

#include "common/http_client.h"
#include "common/http_server.h"
#include "support/loopback.h"

namespace swissbox::http {
namespace {

using namespace std::chrono_literals;

class HttpTest : public ::testing::Test {
 protected:
  void Start(ServerOptions opts = {}) {
    server_ =
        std::make_unique<Server>(ioc_, opts, [this](Request&& req, std::shared_ptr<Responder> res) {
          ++requests_;
          std::string target(req.target());
          if (target == "/stream") {
            res->start_stream(200, "text/event-stream");
            for (int i = 0; i < 3; ++i) res->write_chunk("data: " + std::to_string(i) + "\n\n");
            res->end_stream();
          } else if (target == "/upload" && res->body()) {
            ReadAll(res);
          } else if (target == "/early" && res->body()) {
            res->send(404, "nothing here", "text/plain");  // the body is never read
          } else if (target == "/paced") {
            // 400 pieces of 64 KiB, each written only after the one before went out.
            res->start_stream(200, "application/octet-stream");
            auto next = std::make_shared<std::function<void(int)>>();
            *next = [this, res, next](int i) {
              if (i == 400 || !res->client_alive()) {
                res->end_stream();
                *next = nullptr;
                return;
              }
              ++pieces_;
              res->write_chunk(std::string(64 * 1024, static_cast<char>('a' + i % 26)),
                               [next, i] { if (*next) (*next)(i + 1); });
            };
            (*next)(0);
          } else if (target == "/drop") {
            // Never answered explicitly: the Responder's destructor must answer 500.
          } else {
            res->send(200, std::string(req.method_string()) + " " + target + " " + req.body(),
                      "text/plain");
          }
        });
    ASSERT_TRUE(server_->listen_tcp("127.0.0.1:0").ok());
    sock_ = "/tmp/swissbox-http-test-" + std::to_string(getpid()) + ".sock";
    ASSERT_TRUE(server_->listen_unix(sock_).ok());
    thread_ = std::thread([this] { ioc_.run(); });
  }
  void TearDown() override {
    ioc_.stop();
    if (thread_.joinable()) thread_.join();
  }
  std::string tcp() const { return "127.0.0.1:" + std::to_string(server_->tcp_port()); }
  // A plain TCP connection, for bytes no HTTP client would send.
  int ConnectRaw() const { return testing::connect_loopback(server_->tcp_port()); }

  // Reads a streamed body piece by piece; answers "<bytes> <sum of bytes>".
  static void ReadAll(std::shared_ptr<Responder> res) {
    auto total = std::make_shared<std::pair<uint64_t, uint64_t>>();
    auto step = std::make_shared<BodyReader::ReadHandler>();
    *step = [res, total, step](Result<std::string> piece, bool last) {
      if (!piece) {
        *step = nullptr;
        return res->send_error(piece.error());
      }
      total->first += piece->size();
      for (unsigned char ch : *piece) total->second += ch;
      if (!last) return res->body()->read(*step);
      *step = nullptr;
      res->send(200, std::to_string(total->first) + " " + std::to_string(total->second),
                "text/plain");
    };
    res->body()->read(*step);
  }
  static std::string Sum(const std::string& s) {
    uint64_t sum = 0;
    for (unsigned char ch : s) sum += ch;
    return std::to_string(s.size()) + " " + std::to_string(sum);
  }
  // Reads what a raw connection answers until `want` appears or 2 s pass.
  static std::string ReadUntil(int fd, const std::string& want) {
    std::string got;
    char buf[4096];
    auto deadline = std::chrono::steady_clock::now() + 2s;
    timeval tv{0, 100000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    while (got.find(want) == std::string::npos && std::chrono::steady_clock::now() < deadline) {
      ssize_t n = read(fd, buf, sizeof(buf));
      if (n == 0) break;
      if (n > 0) got.append(buf, n);
    }
    return got;
  }
  static ServerOptions StreamPuts() {
    ServerOptions o;
    o.body_limit = 1000;  // buffered bodies stay small; streamed ones may be larger
    o.stream_body_limit = 32 << 20;
    o.stream_body = [](const RequestHeader& h) { return h.method() == boost::beast::http::verb::put; };
    return o;
  }

  boost::asio::io_context ioc_;
  std::atomic<int> pieces_{0};
  std::unique_ptr<Server> server_;
  std::thread thread_;
  std::string sock_;
  std::atomic<int> requests_{0};
};

TEST_F(HttpTest, AnswersOverTcpAndUnixWithRequestIds) {
  Start();
  Client tcp_client(tcp());
  auto r = tcp_client.request("POST", "/x", "body", {{"X-Request-Id", "abc-123"}});
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->status, 200u);
  EXPECT_EQ(r->body, "POST /x body");
  EXPECT_EQ(r->header("X-Request-Id"), "abc-123");
  // A second request reuses the keep-alive connection; an invalid id is replaced.
  auto r2 = tcp_client.request("GET", "/y", "", {{"X-Request-Id", "bad id with spaces"}});
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->header("X-Request-Id").size(), 16u);
  Client unix_client("unix:" + sock_);
  auto r3 = unix_client.request("GET", "/z");
  ASSERT_TRUE(r3.ok()) << r3.error().to_string();
  EXPECT_EQ(r3->body, "GET /z ");
}

TEST_F(HttpTest, UnixSocketIsRootOnly) {
  Start();
  struct stat st;
  ASSERT_EQ(stat(sock_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
}

TEST_F(HttpTest, BodyOverLimitIs413AndMalformedIs400) {
  ServerOptions o;
  o.body_limit = 1000;
  Start(o);
  Client c(tcp());
  auto r = c.request("POST", "/big", std::string(5000, 'x'));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 413u);
  EXPECT_NE(r->body.find("\"too_large\""), std::string::npos);

  int fd = ConnectRaw();
  ASSERT_GE(fd, 0);
  std::string junk = "NOT-HTTP garbage\r\n\r\n";
  ASSERT_EQ(write(fd, junk.data(), junk.size()), static_cast<ssize_t>(junk.size()));
  char buf[512] = {};
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf).rfind("HTTP/1.1 400", 0), 0u) << buf;
}

// A request refused on its header (no token) is answered before its body is read, and the
// body is dropped for a while so that a client still sending it reads the answer. Bodies past
// the limit likewise: a 20 MiB upload gets a readable 413, not a reset.
TEST_F(HttpTest, RefusedOnTheHeaderTheBodyIsNeverHeldAndTheClientReadsTheAnswer) {
  ServerOptions o;
  o.body_limit = 1000;
  o.admit = [](const RequestHeader& h, bool) -> std::optional<Error> {
    if (h.find(boost::beast::http::field::authorization) == h.end())
      return make_error(Code::kUnauthenticated, "no token");
    return std::nullopt;
  };
  o.body_limit_for = [](const RequestHeader& h) -> uint64_t { return h.target() == "/big" ? 4000 : 0; };
  Start(o);
  Client c(tcp());
  auto r = c.request("POST", "/x", std::string(20 << 20, 'x'));
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->status, 401u);
  EXPECT_EQ(requests_.load(), 0);
  Headers token = {{"Authorization", "Bearer t"}};
  auto big = c.request("POST", "/x", std::string(20 << 20, 'x'), token);
  ASSERT_TRUE(big.ok()) << big.error().to_string();
  EXPECT_EQ(big->status, 413u);
  // The per-request limit: /big takes 4000 bytes, others 1000.
  EXPECT_EQ(c.request("POST", "/big", std::string(3000, 'x'), token)->status, 200u);
  EXPECT_EQ(c.request("POST", "/x", std::string(3000, 'x'), token)->status, 413u);
}

// Past the limits a client gets probes answered (a kubelet still sees the node) and a 503 for
// anything else; past the probes' reserve too, a 503 at once. The unix socket always serves.
TEST_F(HttpTest, ConnectionsPastTheCapAnswerProbesOnlyAndTheUnixSocketStillServes) {
  ServerOptions o;
  o.max_connections_per_client = 3;
  Start(o);
  std::vector<int> held;
  for (int i = 0; i < 3; ++i) held.push_back(ConnectRaw());
  EXPECT_EQ(Client(tcp()).request("GET", "/healthz")->status, 200u);
  EXPECT_EQ(Client(tcp()).request("GET", "/x")->status, 503u);
  EXPECT_EQ(requests_.load(), 1);
  std::vector<int> probes;
  for (size_t i = 0; i < ServerOptions::kProbeReserve; ++i) probes.push_back(ConnectRaw());
  int extra = ConnectRaw();
  ASSERT_GE(extra, 0);
  EXPECT_EQ(ReadUntil(extra, "\r\n").rfind("HTTP/1.1 503", 0), 0u);
  close(extra);
  for (int fd : probes) close(fd);
  EXPECT_EQ(Client("unix:" + sock_).request("GET", "/x")->status, 200u);
  close(held.back());
  held.pop_back();
  // The slot comes back once the server saw the close.
  bool served = false;
  for (int i = 0; i < 50 && !served; ++i) {
    auto r = Client(tcp()).request("GET", "/x");
    served = r.ok() && r->status == 200;
    if (!served) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(served);
  for (int fd : held) close(fd);
}

TEST_F(HttpTest, SlowClientIsDisconnected) {
  ServerOptions o;
  o.read_timeout = 300ms;
  Start(o);
  int fd = ConnectRaw();
  ASSERT_GE(fd, 0);
  std::string partial = "POST / HTTP/1.1\r\nContent-Length: 10\r\n";
  ASSERT_GT(write(fd, partial.data(), partial.size()), 0);
  auto t0 = std::chrono::steady_clock::now();
  char buf[64];
  ssize_t n = read(fd, buf, sizeof(buf));  // EOF once the server gives up
  close(fd);
  EXPECT_EQ(n, 0);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  EXPECT_EQ(requests_, 0);
}

TEST_F(HttpTest, StreamsChunksAndAnswersDroppedRequests) {
  Start();
  Client c(tcp());
  std::string got;
  auto r = c.stream("GET", "/stream", "", {}, [&](std::string_view d) { got.append(d); });
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(got, "data: 0\n\ndata: 1\n\ndata: 2\n\n");
  auto d = c.request("GET", "/drop");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->status, 500u);
}

TEST_F(HttpTest, StreamedBodiesArrivePieceByPieceWithinTheirOwnLimit) {
  Start(StreamPuts());
  Client c(tcp());
  std::string big(20 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7919 % 251);
  auto r = c.request("PUT", "/upload", big);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->status, 200u);
  EXPECT_EQ(r->body, Sum(big));
  // The connection carries a next request after a streamed body.
  EXPECT_EQ(c.request("GET", "/after")->body, "GET /after ");
  // Over the streamed limit: 413 before a byte of the body is read.
  EXPECT_EQ(c.request("PUT", "/upload", std::string((32 << 20) + 1, 'x'))->status, 413u);
  // Bodies not chosen for streaming keep the buffered limit.
  EXPECT_EQ(Client(tcp()).request("POST", "/upload", std::string(2000, 'x'))->status, 413u);
}

TEST_F(HttpTest, ChunkedUploadExpectContinueAndEarlyAnswers) {
  Start(StreamPuts());
  int fd = ConnectRaw();
  ASSERT_GE(fd, 0);
  std::string head =
      "PUT /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
      "Expect: 100-continue\r\n\r\n";
  ASSERT_EQ(write(fd, head.data(), head.size()), static_cast<ssize_t>(head.size()));
  // The client waits for this before it sends the body.
  EXPECT_EQ(ReadUntil(fd, "\r\n\r\n"), "HTTP/1.1 100 Continue\r\n\r\n");
  std::string body = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
  ASSERT_EQ(write(fd, body.data(), body.size()), static_cast<ssize_t>(body.size()));
  std::string answer = ReadUntil(fd, Sum("hello world"));
  EXPECT_NE(answer.find("200 OK"), std::string::npos) << answer;
  EXPECT_NE(answer.find(Sum("hello world")), std::string::npos) << answer;
  close(fd);

  // Answered before its body was read: the connection closes after the answer.
  fd = ConnectRaw();
  std::string early = "PUT /early HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n";
  ASSERT_EQ(write(fd, early.data(), early.size()), static_cast<ssize_t>(early.size()));
  std::string got = ReadUntil(fd, "nothing here");
  EXPECT_NE(got.find("404"), std::string::npos) << got;
  EXPECT_NE(got.find("Connection: close"), std::string::npos) << got;
  char c;
  EXPECT_EQ(read(fd, &c, 1), 0);  // closed
  close(fd);
}

TEST_F(HttpTest, WrittenCallbacksPaceAProducerToItsClient) {
  Start();
  int fd = ConnectRaw();
  ASSERT_GE(fd, 0);
  std::string req = "GET /paced HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
  // The client reads nothing: the producer stops once the socket buffers are full, far
  // short of its 400 pieces (25 MiB).
  std::this_thread::sleep_for(500ms);
  int stalled = pieces_;
  EXPECT_LT(stalled, 200) << "pieces were queued without waiting for the client";
  // Reading lets it finish.
  std::string all;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    all.append(buf, n);
    if (all.size() > 5 && all.compare(all.size() - 5, 5, "0\r\n\r\n") == 0) break;
  }
  close(fd);
  EXPECT_EQ(pieces_, 400);
  EXPECT_GT(all.size(), 400u * 64 * 1024);
}

TEST_F(HttpTest, DrainClosesListenersAndFinishes) {
  Start();
  Client c(tcp());
  ASSERT_TRUE(c.request("GET", "/a").ok());
  std::atomic<bool> drained{false};
  server_->drain(2s, [&] { drained = true; });
  for (int i = 0; i < 200 && !drained; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(drained);
  Client fresh(tcp());
  EXPECT_FALSE(fresh.request("GET", "/b").ok());
}

TEST(QueryString, DecodesPercentAndPlus) {
  auto q = parse_query("path=a%2Fb+c&x=&flag");
  ASSERT_EQ(q.size(), 3u);
  EXPECT_EQ(q[0].second, "a/b c");
  EXPECT_EQ(q[1].first, "x");
  EXPECT_EQ(q[2].first, "flag");
}

}  // namespace
}  // namespace swissbox::http

namespace swissbox {
namespace {

// Every code's status reads back as that code (the API error metric labels by it).
TEST(ErrorCodes, EachStatusReadsBackAsItsCode) {
  for (int c = 0; c <= static_cast<int>(Code::kInternal); ++c) {
    auto code = static_cast<Code>(c);
    EXPECT_EQ(code_name_of_status(http_status(code)), code_name(code));
  }
  EXPECT_EQ(code_name_of_status(200), "");
  EXPECT_EQ(code_name_of_status(418), "other");
  EXPECT_EQ(code_name_of_status(502), "internal");
}

}  // namespace
}  // namespace swissbox
