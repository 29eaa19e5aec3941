// One HTTP/1.1 call from the scheduler to an agent, asynchronous on the scheduler's
// io_context, so that a replica holds thousands of calls (long execs, SSE streams, file
// transfers) without a thread each. The request body goes out whole, or relayed piece by
// piece from the client's upload; the answer's head and then each body piece are handed
// to the caller, and the next piece is read only when the caller asks for it: a slow
// client slows the agent's stream down instead of filling the scheduler's memory.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "common/error.h"
#include "common/http_client.h"
#include "common/http_server.h"

namespace swissbox::sched {

struct UpstreamRequest {
  std::string address;  // the agent's HOST:PORT
  std::string method, target;
  http::Headers headers;
  std::string body;                               // sent whole, unless
  std::shared_ptr<http::BodyReader> body_stream;  // relayed from the client piece by piece
  std::chrono::milliseconds connect_timeout{2000};
  // For each write of the request (no progress sending it that long: the agent is stuck).
  std::chrono::milliseconds timeout{60000};
  // For the answer's head once the request is sent, and between two pieces of its body:
  // the agent's own deadline for the operation (it may work, or a command be silent, that
  // long). Zero: the same as timeout.
  std::chrono::milliseconds answer_timeout{0};
};

struct UpstreamHandlers {
  // The answer's status and headers (ClientResponse::body stays empty).
  std::function<void(const http::ClientResponse& head)> on_head;
  // One piece of the answer's body; calling `more` has the next one read.
  std::function<void(std::string piece, std::function<void()> more)> on_piece;
  // Exactly once: ok after the last piece, else why the call failed. `sent` tells whether
  // the whole request reached the agent before the failure (then it may have acted on it,
  // and the call must not be repeated elsewhere).
  std::function<void(Status, bool sent)> on_end;
};

class UpstreamCall {
 public:
  virtual ~UpstreamCall() = default;
  // Abandons the call (its client went away): the connection closes, on_end gets an error.
  virtual void cancel() = 0;
};

// Starts the call; every handler runs later, on the io_context's thread.
std::shared_ptr<UpstreamCall> start_upstream(boost::asio::io_context& ioc, UpstreamRequest req,
                                             UpstreamHandlers handlers);

// The whole answer, its body capped at max_body bytes (a longer one is an error).
void fetch(boost::asio::io_context& ioc, UpstreamRequest req, size_t max_body,
           std::function<void(Result<http::ClientResponse>)> done);

}  // namespace swissbox::sched
