// The agent's end of one sandbox's runner protocol: async reads and a write queue on the
// I/O thread, requests multiplexed by id. Must be used from the io_context's thread only.
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
  // the channel dies, each open request gets a synthetic {"ev":"lost","message":…} event.
  using EventFn = std::function<bool(const proto::Frame&)>;

  RunnerChannel(boost::asio::io_context& ioc, unique_fd to_runner, unique_fd from_runner);
  ~RunnerChannel();

  // Starts reading; on_lost runs once when the runner's side closes or sends garbage.
  void start(std::function<void(const std::string& reason)> on_lost);
  // Sends a request with a fresh id (set in header["id"]) and routes its events to fn.
  uint64_t call(nlohmann::json header, std::string_view payload, EventFn fn);
  // Sends a frame that expects no answer (stdin, signal) for an existing request id.
  void notify(const nlohmann::json& header, std::string_view payload = {});
  void close(const std::string& reason);
  bool alive() const { return alive_; }
  size_t pending() const { return handlers_.size(); }

 private:
  void read();
  void write_next();
  void fail(const std::string& reason);

  boost::asio::posix::stream_descriptor out_;  // to the runner
  boost::asio::posix::stream_descriptor in_;   // from the runner
  proto::Decoder decoder_;
  std::map<uint64_t, EventFn> handlers_;
  std::deque<std::string> writes_;
  std::function<void(const std::string&)> on_lost_;
  std::array<char, 65536> buf_;
  uint64_t next_id_ = 1;
  bool alive_ = true;
};

}  // namespace swissbox
