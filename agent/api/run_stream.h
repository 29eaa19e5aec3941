// Streams one run to its client as it happens, in a wire format of the route's choosing
// (SSE for the native API, newline-delimited JSON for E2B's /execute). Internal to
// agent/api.
//
// A client that reads slower than the command writes holds the command back: past kHigh
// bytes waiting for the client the runner stops reading the command's pipes (it blocks on
// its next write), and starts again below kLow. So a stream holds ≈ 1 MiB of the agent's
// memory, whatever the command writes and however slowly the client reads.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "agent/sandbox/sandbox_ops.h"
#include "common/http_server.h"

namespace swissbox {

class RunStream : public std::enable_shared_from_this<RunStream> {
 public:
  static constexpr size_t kHigh = 1 << 20, kLow = 256 << 10;
  // One event on the wire. kind: stdout, stderr (data {"data": text}), result, error (a
  // context run's value and exception), exit (the outcome), failed ({code, message}: the
  // run could not be done).
  using Format = std::function<std::string(std::string_view kind, const nlohmann::json& data)>;

  RunStream(std::shared_ptr<http::Responder> res, Format format)
      : res_(std::move(res)), format_(std::move(format)) {}

  // Set once the run (ExecHandle) or the watch (WatchHandle) was handed to the runner:
  // the flow control pauses it.
  template <typename Handle>
  void set_handle(const std::shared_ptr<Handle>& handle) {
    pause_ = [weak = std::weak_ptr<Handle>(handle)](bool on) {
      if (auto h = weak.lock()) h->pause(on);
    };
  }
  const std::shared_ptr<http::Responder>& responder() const { return res_; }

  OutputFn output() {
    return [self = shared_from_this()](bool is_err, std::string_view data) {
      self->write(self->format_(is_err ? "stderr" : "stdout", {{"data", data}}));
    };
  }
  ValueFn values() {
    return [self = shared_from_this()](std::string_view kind, const nlohmann::json& value) {
      self->write(self->format_(kind, value));
    };
  }
  // One event already in the wire format, under the same flow control.
  void send(std::string event) { write(std::move(event)); }

  // The last event, then the end of the stream; `after` runs then (a one-shot's cleanup).
  ExecDoneFn done(std::function<void()> after = {}) {
    return [self = shared_from_this(), after](Result<ExecOutcome> r) {
      self->res_->write_chunk(
          r ? self->format_("exit", r->to_json(false))
            : self->format_("failed", {{"code", code_name(r.error().code)},
                                       {"message", r.error().to_string()}}));
      self->res_->end_stream();
      if (after) after();
    };
  }

 private:
  void write(std::string event) {
    queued_ += event.size();
    if (pause_ && !paused_ && queued_ > kHigh) {
      paused_ = true;
      pause_(true);
    }
    size_t n = event.size();
    res_->write_chunk(std::move(event), [self = shared_from_this(), n] {
      self->queued_ -= std::min(self->queued_, n);
      if (self->pause_ && self->paused_ && self->queued_ < kLow) {
        self->paused_ = false;
        self->pause_(false);
      }
    });
  }

  std::shared_ptr<http::Responder> res_;
  Format format_;
  size_t queued_ = 0;
  bool paused_ = false;
  std::function<void(bool on)> pause_;
};

}  // namespace swissbox
