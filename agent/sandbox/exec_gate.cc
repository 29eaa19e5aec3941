#include "agent/sandbox/exec_gate.h"

#include <boost/asio/post.hpp>

namespace swissbox {

ExecGate::Ticket::Ticket(ExecGate& gate)
    : gate_(&gate), gate_alive_(gate.alive_), hold_(gate.ioc_) {}

void ExecGate::Ticket::release() {
  if (released_) return;
  released_ = true;
  hold_.cancel();
  if (!gate_alive_.expired()) gate_->leave();
}

ExecGate::ExecGate(boost::asio::io_context& ioc, int slots, std::chrono::milliseconds hold)
    : ioc_(ioc), slots_(slots), hold_(hold) {}

void ExecGate::enter(std::function<void(TicketPtr)> start) {
  if (slots_ <= 0) return start(nullptr);
  if (in_use_ < slots_ && queue_.empty()) {
    ++in_use_;
    return admit(std::move(start));
  }
  queue_.push_back(std::move(start));
}

void ExecGate::admit(std::function<void(TicketPtr)> start) {
  auto ticket = std::shared_ptr<Ticket>(new Ticket(*this));
  ticket->hold_.expires_after(hold_);
  ticket->hold_.async_wait([weak = std::weak_ptr<Ticket>(ticket)](boost::system::error_code ec) {
    if (ec) return;
    if (auto t = weak.lock()) t->release();
  });
  start(std::move(ticket));
}

void ExecGate::leave() {
  if (queue_.empty()) {
    --in_use_;
    return;
  }
  // The slot passes to the first queued command (so an enter() meanwhile cannot jump the
  // queue), which starts from the event loop, not inside the releasing callback.
  auto next = std::move(queue_.front());
  queue_.pop_front();
  boost::asio::post(ioc_, [this, alive = std::weak_ptr<bool>(alive_), next = std::move(next)]() mutable {
    if (!alive.expired()) admit(std::move(next));
  });
}

}  // namespace swissbox
