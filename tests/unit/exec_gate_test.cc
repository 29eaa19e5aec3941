#include "agent/sandbox/exec_gate.h"

#include <gtest/gtest.h>

#include <vector>

namespace swissbox {
namespace {

using namespace std::chrono_literals;

TEST(ExecGate, StartsUpToItsSlotsAndTheRestInArrivalOrder) {
  boost::asio::io_context io;
  ExecGate gate(io, 2, 10s);
  std::vector<int> started;
  std::vector<ExecGate::TicketPtr> held;
  for (int i = 0; i < 5; ++i) {
    gate.enter([&, i](ExecGate::TicketPtr t) {
      started.push_back(i);
      held.push_back(std::move(t));
    });
  }
  io.poll();
  EXPECT_EQ(started, (std::vector<int>{0, 1}));
  EXPECT_EQ(gate.in_use(), 2);
  EXPECT_EQ(gate.queued(), 3);

  held[1]->release();
  held[1]->release();  // a second release frees nothing more
  io.poll();
  EXPECT_EQ(started, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(gate.in_use(), 2);

  held[0].reset();  // dropping a ticket releases it too
  io.poll();
  EXPECT_EQ(started, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(gate.queued(), 1);
}

TEST(ExecGate, ANewCommandDoesNotOvertakeTheQueue) {
  boost::asio::io_context io;
  ExecGate gate(io, 1, 10s);
  std::vector<int> started;
  ExecGate::TicketPtr first, second;
  gate.enter([&](ExecGate::TicketPtr t) { started.push_back(0), first = std::move(t); });
  gate.enter([&](ExecGate::TicketPtr t) { started.push_back(1), second = std::move(t); });
  first->release();
  // The slot is promised to the queued command before the event loop hands it over.
  gate.enter([&](ExecGate::TicketPtr) { started.push_back(2); });
  io.poll();
  EXPECT_EQ(started, (std::vector<int>{0, 1}));
  second->release();
  io.poll();
  EXPECT_EQ(started, (std::vector<int>{0, 1, 2}));
}

TEST(ExecGate, ALongCommandGivesUpItsSlotAfterTheHoldTime) {
  boost::asio::io_context io;
  ExecGate gate(io, 1, 20ms);
  ExecGate::TicketPtr long_running;
  bool second = false;
  gate.enter([&](ExecGate::TicketPtr t) { long_running = std::move(t); });
  gate.enter([&](ExecGate::TicketPtr) { second = true; });
  io.poll();
  EXPECT_FALSE(second);
  io.run_for(200ms);
  EXPECT_TRUE(second);
  EXPECT_EQ(gate.in_use(), 0);
  long_running->release();  // its own end later changes nothing
  EXPECT_EQ(gate.in_use(), 0);
}

TEST(ExecGate, WithoutSlotsEverythingStartsAtOnce) {
  boost::asio::io_context io;
  ExecGate gate(io, 0, 10s);
  int started = 0;
  for (int i = 0; i < 100; ++i) {
    gate.enter([&](ExecGate::TicketPtr t) {
      EXPECT_EQ(t, nullptr);
      ++started;
    });
  }
  EXPECT_EQ(started, 100);
}

TEST(ExecGate, ATicketMayOutliveItsGate) {
  boost::asio::io_context io;
  ExecGate::TicketPtr kept;
  {
    ExecGate gate(io, 1, 10s);
    gate.enter([&](ExecGate::TicketPtr t) { kept = std::move(t); });
    gate.enter([](ExecGate::TicketPtr) { ADD_FAILURE() << "queued past the gate's end"; });
  }
  kept->release();
  io.poll();
}

}  // namespace
}  // namespace swissbox
