// What the node's container runtime says over CRI (cri/cri_client.h), asked every
// few seconds off the I/O thread: whether it is ready and which runtime it is. The agent
// shows it in GET /v1/node and is not ready (/readyz) while a configured runtime is not.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>

namespace swissbox {

class CriMonitor {
 public:
  CriMonitor(boost::asio::io_context& ioc, boost::asio::thread_pool& workers, std::string socket,
             std::chrono::seconds interval = std::chrono::seconds(10));
  void start();
  // Ready unless the last answer said otherwise or no answer came yet; the reason if not.
  std::optional<std::string> not_ready() const;
  nlohmann::json to_json() const;

 private:
  struct Sample {
    bool answered = false, runtime_ready = false, network_ready = false;
    std::string runtime, message;
    std::chrono::steady_clock::time_point at;
  };
  void check();

  boost::asio::io_context& ioc_;
  boost::asio::thread_pool& workers_;
  std::string socket_;
  std::chrono::seconds interval_;
  boost::asio::steady_timer timer_;
  std::optional<Sample> last_;  // I/O thread only
};

}  // namespace swissbox
