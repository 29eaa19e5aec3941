#include "agent/api/cri_monitor.h"

#include <boost/asio/post.hpp>
#include <nlohmann/json.hpp>

#include "cri/cri_client.h"

namespace swissbox {

namespace asio = boost::asio;

CriMonitor::CriMonitor(asio::io_context& ioc, asio::thread_pool& workers, std::string socket,
                       std::chrono::seconds interval)
    : ioc_(ioc), workers_(workers), socket_(std::move(socket)), interval_(interval), timer_(ioc) {}

void CriMonitor::start() { check(); }

void CriMonitor::check() {
  asio::post(workers_, [this] {
    cri::Client c(socket_, std::chrono::seconds(5));
    Sample s;
    s.at = std::chrono::steady_clock::now();
    auto v = c.version();
    auto st = v ? c.status() : Result<cri::RuntimeStatus>(v.error());
    s.answered = st.ok();
    if (v) s.runtime = v->runtime_name + " " + v->runtime_version;
    if (st) {
      s.runtime_ready = st->runtime_ready;
      s.network_ready = st->network_ready;
      s.message = st->message;
    } else {
      s.message = st.error().to_string();
    }
    asio::post(ioc_, [this, s = std::move(s)]() mutable {
      last_ = std::move(s);
      timer_.expires_after(interval_);
      timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec) check();
      });
    });
  });
}

std::optional<std::string> CriMonitor::not_ready() const {
  if (!last_) return "the container runtime has not answered yet (" + socket_ + ")";
  if (!last_->answered) return "the container runtime does not answer: " + last_->message;
  if (!last_->runtime_ready) return "the container runtime is not ready: " + last_->message;
  return std::nullopt;
}

nlohmann::json CriMonitor::to_json() const {
  nlohmann::json j = {{"socket", socket_}};
  if (!last_) return j;
  auto age = std::chrono::duration<double>(std::chrono::steady_clock::now() - last_->at).count();
  j["answered"] = last_->answered;
  j["runtime"] = last_->runtime;
  j["runtime_ready"] = last_->runtime_ready;
  j["network_ready"] = last_->network_ready;
  if (!last_->message.empty()) j["message"] = last_->message;
  j["checked_s_ago"] = age;
  return j;
}

}  // namespace swissbox
