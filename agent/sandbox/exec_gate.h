// Bounds how many commands start at once on the node.
//
// Starting a process inside gVisor is CPU work in the sentry (on the ptrace platform most of
// it context switches between the sandboxed process and its tracer). With many commands
// starting together on a small node the switches crowd each other out: two cores run ≈ 260
// `echo` execs/s with two at a time but ≈ 170/s with sixteen, and a command's latency then
// depends on the scheduler's luck (p99 ≈ 10 × p50). The gate lets `slots` commands start at
// once and queues the rest in arrival order, so each waits its turn instead of slowing all.
//
// A command holds its slot until it ends or for `hold`, whichever comes first: the gate
// shapes the start of commands, not their run, so a long command never keeps a short one
// waiting longer than `hold`.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>

namespace swissbox {

class ExecGate {
 public:
  // Frees its slot when released or destroyed, or after the gate's hold time.
  class Ticket {
   public:
    ~Ticket() { release(); }
    void release();

   private:
    friend class ExecGate;
    explicit Ticket(ExecGate& gate);
    ExecGate* gate_;
    std::weak_ptr<bool> gate_alive_;
    boost::asio::steady_timer hold_;
    bool released_ = false;
  };
  using TicketPtr = std::shared_ptr<Ticket>;

  // slots <= 0: no gate, every command starts at once.
  ExecGate(boost::asio::io_context& ioc, int slots, std::chrono::milliseconds hold);

  // Runs start(ticket) now if a slot is free, else once one frees up (FIFO). Call on the
  // I/O thread; start runs there too.
  void enter(std::function<void(TicketPtr)> start);

  int in_use() const { return in_use_; }
  int queued() const { return static_cast<int>(queue_.size()); }

 private:
  // Starts a command on a slot already counted in in_use_.
  void admit(std::function<void(TicketPtr)> start);
  void leave();

  boost::asio::io_context& ioc_;
  int slots_;
  std::chrono::milliseconds hold_;
  int in_use_ = 0;
  std::deque<std::function<void(TicketPtr)>> queue_;
  // Tickets and posted hand-overs hold it weakly: expired once the gate is gone.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace swissbox
