#include "agent/runner_channel.h"

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <nlohmann/json.hpp>

namespace swissbox {

namespace asio = boost::asio;
using json = nlohmann::json;

namespace {

// The event every open request gets when the runner goes away.
proto::Frame lost_frame(uint64_t id, const std::string& reason) {
  return proto::Frame{{{"ev", "lost"}, {"id", id}, {"message", reason}}, {}};
}

constexpr const char* kRunnerGone = "the sandbox's runner is gone";

}  // namespace

RunnerChannel::RunnerChannel(asio::io_context& ioc, unique_fd to_runner, unique_fd from_runner)
    : out_(ioc, to_runner.release()), in_(ioc, from_runner.release()) {}

RunnerChannel::~RunnerChannel() {
  boost::system::error_code ec;
  out_.close(ec);
  in_.close(ec);
}

void RunnerChannel::start(std::function<void(const std::string&)> on_lost) {
  on_lost_ = std::move(on_lost);
  read();
}

void RunnerChannel::read() {
  in_.async_read_some(
      asio::buffer(buf_), [self = shared_from_this()](boost::system::error_code ec, size_t n) {
        if (!self->alive_) return;
        if (ec) {
          self->fail(ec == asio::error::eof ? "the sandbox's runner exited"
                                            : "runner read failed: " + ec.message());
          return;
        }
        self->decoder_.feed(self->buf_.data(), n);
        while (auto frame = self->decoder_.next()) {
          uint64_t id = frame->header.value("id", uint64_t{0});
          auto it = self->handlers_.find(id);
          if (it == self->handlers_.end())
            continue;  // hello, or a late event of a finished request
          // The handler is out of the map while it runs: it may make new calls or close the
          // channel (a one-shot deletes its sandbox on exit) without seeing itself twice.
          EventFn fn = std::move(it->second);
          self->handlers_.erase(it);
          bool done = fn(*frame);
          if (!done && self->alive_) self->handlers_[id] = std::move(fn);
          if (!done && !self->alive_) {
            fn(lost_frame(id, kRunnerGone));
          }
          if (!self->alive_) return;
        }
        if (!self->decoder_.error().empty())
          return self->fail("runner protocol error: " + self->decoder_.error());
        self->read();
      });
}

uint64_t RunnerChannel::call(json header, std::string_view payload, EventFn fn) {
  uint64_t id = next_id_++;
  header["id"] = id;
  if (!alive_) {
    fn(lost_frame(id, kRunnerGone));
    return id;
  }
  handlers_[id] = std::move(fn);
  notify(header, payload);
  return id;
}

void RunnerChannel::notify(const json& header, std::string_view payload) {
  if (!alive_) return;
  writes_.push_back(proto::encode(header, payload));
  if (writes_.size() == 1) write_next();
}

void RunnerChannel::write_next() {
  if (writes_.empty() || !alive_) return;
  asio::async_write(out_, asio::buffer(writes_.front()),
                    [self = shared_from_this()](boost::system::error_code ec, size_t) {
                      if (!self->alive_) return;
                      if (ec) return self->fail("runner write failed: " + ec.message());
                      self->writes_.pop_front();
                      self->write_next();
                    });
}

void RunnerChannel::fail(const std::string& reason) {
  if (!alive_) return;
  alive_ = false;
  writes_.clear();
  auto handlers = std::move(handlers_);
  handlers_.clear();
  boost::system::error_code ec;
  out_.close(ec);
  in_.close(ec);
  // The owner hears first, so that the open requests see the sandbox's final state.
  if (auto cb = std::exchange(on_lost_, nullptr)) cb(reason);
  for (auto& [id, fn] : handlers) {
    fn(lost_frame(id, reason));
  }
}

void RunnerChannel::close(const std::string& reason) { fail(reason); }

}  // namespace swissbox
