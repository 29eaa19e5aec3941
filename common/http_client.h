// A small blocking HTTP/1.1 client over TCP ("HOST:PORT") or a unix socket ("unix:/path"),
// for swissboxctl and tests. Answers are read whole (capped) or streamed chunk by chunk.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/error.h"

namespace swissbox::http {

struct ClientResponse {
  unsigned status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string header(std::string_view name) const;
};

class Client {
 public:
  // target: "HOST:PORT", "http://HOST:PORT" or "unix:/path/to.sock".
  explicit Client(std::string target, std::chrono::milliseconds timeout = std::chrono::seconds(60));
  ~Client();

  Result<ClientResponse> request(std::string_view method, std::string_view path,
                                 std::string body = {},
                                 std::vector<std::pair<std::string, std::string>> headers = {});
  // Calls on_data for every piece of the body as it arrives; the body is not kept. on_head,
  // if set, sees the status and headers before the first piece.
  Result<ClientResponse> stream(std::string_view method, std::string_view path, std::string body,
                                std::vector<std::pair<std::string, std::string>> headers,
                                const std::function<void(std::string_view)>& on_data,
                                const std::function<void(const ClientResponse&)>& on_head = {});

 private:
  struct Conn;
  Status connect();
  std::string target_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<Conn> conn_;
};

}  // namespace swissbox::http
