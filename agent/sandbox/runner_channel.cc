#include "agent/sandbox/runner_channel.h"

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace swissbox {

namespace asio = boost::asio;
using json = nlohmann::json;

namespace {

constexpr const char* kRunnerGone = "the sandbox's runner is gone";

}  // namespace

RunnerChannel::RunnerChannel(asio::io_context& ioc, unique_fd socket)
    : socket_(ioc, socket.release()) {}

RunnerChannel::~RunnerChannel() {
  boost::system::error_code ec;
  socket_.close(ec);
}

void RunnerChannel::start(std::function<void(const std::string&)> on_lost) {
  on_lost_ = std::move(on_lost);
  read();
}

void RunnerChannel::read() {
  socket_.async_read_some(
      asio::buffer(buf_), [self = shared_from_this()](boost::system::error_code ec, size_t n) {
        if (!self->alive_) return;
        if (ec) {
          self->fail(ec == asio::error::eof ? "the sandbox's runner exited"
                                            : "runner read failed: " + ec.message());
          return;
        }
        self->decoder_.feed(self->buf_.data(), n);
        while (auto frame = self->decoder_.next()) {
          std::string error;
          auto event = proto::decode_event(std::move(*frame), &error);
          if (!event) return self->fail("runner protocol error: " + error);
          if (!self->dispatch(std::move(*event))) return;
        }
        if (!self->decoder_.error().empty())
          return self->fail("runner protocol error: " + self->decoder_.error());
        self->read();
      });
}

bool RunnerChannel::dispatch(proto::Event event) {
  if (event.kind == proto::EventKind::kFatal) {
    fail("the runner gave up on the channel: " + event.message.substr(0, 200));
    return false;
  }
  if (event.kind == proto::EventKind::kHello) {
    if (!event.secret.empty() && runner_secret_.empty()) runner_secret_ = event.secret;
    return true;
  }
  auto it = handlers_.find(event.id);
  if (it == handlers_.end()) return true;  // a late event of a finished request
  // The handler is out of the map while it runs: it may make new calls or close the channel
  // (a one-shot deletes its sandbox on exit) without seeing itself twice.
  const uint64_t id = event.id;
  EventFn fn = std::move(it->second);
  handlers_.erase(it);
  bool done = fn(event);
  if (!done && alive_) handlers_[id] = std::move(fn);
  if (!done && !alive_) fn(proto::Event::lost(id, kRunnerGone));
  return alive_;
}

uint64_t RunnerChannel::call(json header, std::string_view payload, EventFn fn) {
  uint64_t id = next_id_++;
  header["id"] = id;
  if (!alive_) {
    fn(proto::Event::lost(id, kRunnerGone));
    return id;
  }
  std::string frame = proto::encode(header, payload);
  if (frame.size() - payload.size() - proto::kFramePrefix > proto::kMaxHeader) {
    proto::Event refused;
    refused.kind = proto::EventKind::kResult;
    refused.id = id;
    refused.error_errno = E2BIG;
    refused.message = fmt::format("the request's header is {} bytes, more than the {} the runner takes",
                                  frame.size() - payload.size() - proto::kFramePrefix, proto::kMaxHeader);
    fn(refused);
    return id;
  }
  handlers_[id] = std::move(fn);
  push(std::move(frame));
  return id;
}

void RunnerChannel::notify(const json& header, std::string_view payload,
                           std::function<void()> written) {
  if (alive_) push(proto::encode(header, payload), std::move(written));
}

void RunnerChannel::push(std::string frame, std::function<void()> written) {
  writes_.push_back({std::move(frame), std::move(written)});
  if (writes_.size() == 1) write_next();
}

void RunnerChannel::write_next() {
  if (writes_.empty() || !alive_) return;
  asio::async_write(socket_, asio::buffer(writes_.front().frame),
                    [self = shared_from_this()](boost::system::error_code ec, size_t) {
                      if (!self->alive_) return;
                      if (ec) return self->fail("runner write failed: " + ec.message());
                      auto written = std::move(self->writes_.front().written);
                      self->writes_.pop_front();
                      self->write_next();
                      if (written) written();
                    });
}

void RunnerChannel::fail(const std::string& reason) {
  if (!alive_) return;
  alive_ = false;
  writes_.clear();
  auto handlers = std::move(handlers_);
  handlers_.clear();
  boost::system::error_code ec;
  socket_.close(ec);
  // The owner hears first, so that the open requests see the sandbox's final state.
  if (auto cb = std::exchange(on_lost_, nullptr)) cb(reason);
  for (auto& [id, fn] : handlers) {
    fn(proto::Event::lost(id, reason));
  }
}

void RunnerChannel::close(const std::string& reason) { fail(reason); }

}  // namespace swissbox
