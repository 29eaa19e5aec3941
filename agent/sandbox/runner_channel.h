// The agent's end of one sandbox's runner protocol: async reads and a write queue on the
// I/O thread, requests multiplexed by id. Every frame from the runner is decoded into a typed
// proto::Event first; a frame that is not a valid event (the runner runs as the sandbox's
// user, so its bytes are untrusted) ends this channel, never the agent. Must be used from
// the io_context's thread only.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/runner_protocol.h"
#include "common/unique_fd.h"

namespace swissbox {

class RunnerChannel : public std::enable_shared_from_this<RunnerChannel> {
 public:
  // Receives every event of one request; returns true when the request is complete. When
  // the channel dies, each open request gets a kLost event with the reason.
  using EventFn = std::function<bool(const proto::Event&)>;

  // socket: the agent's end of the runner's stdin/stdout (agent/runtime/runtime.h, RunnerLink).
  RunnerChannel(boost::asio::io_context& ioc, unique_fd socket);
  ~RunnerChannel();

  // Starts reading; on_lost runs once when the runner's side closes or sends garbage.
  void start(std::function<void(const std::string& reason)> on_lost);
  // Sends a request with a fresh id (set in header["id"]) and routes its events to fn. A
  // request whose header would pass the protocol's limit is not sent: fn gets a failed
  // result with E2BIG at once.
  uint64_t call(nlohmann::json header, std::string_view payload, EventFn fn);
  // Sends a frame that expects no answer (stdin, signal, more of a file) for an existing
  // request id. `written`, if set, runs once the frame is in the socket (a producer that
  // waits for it queues one frame at most); never if the channel dies first.
  void notify(const nlohmann::json& header, std::string_view payload = {},
              std::function<void()> written = {});
  void close(const std::string& reason);
  bool alive() const { return alive_; }
  // The secret of the runner's first hello ("" until then, or from a runner without one).
  const std::string& runner_secret() const { return runner_secret_; }
  size_t pending() const { return handlers_.size(); }

 private:
  void read();
  void push(std::string frame, std::function<void()> written = {});
  void write_next();
  void fail(const std::string& reason);
  // Routes one decoded event to its request; false once the channel is gone.
  bool dispatch(proto::Event event);

  boost::asio::posix::stream_descriptor socket_;
  proto::Decoder decoder_;
  std::map<uint64_t, EventFn> handlers_;
  struct Write {
    std::string frame;
    std::function<void()> written;
  };
  std::deque<Write> writes_;
  std::function<void(const std::string&)> on_lost_;
  std::array<char, 65536> buf_;
  uint64_t next_id_ = 1;
  std::string runner_secret_;
  bool alive_ = true;
};

}  // namespace swissbox
