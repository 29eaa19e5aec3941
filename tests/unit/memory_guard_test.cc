#include "runner/memory_guard.h"

#include <gtest/gtest.h>
#include <unistd.h>

namespace swissbox::init {
namespace {

TEST(MemoryGuard, UsedIsTotalMinusFree) {
  EXPECT_EQ(meminfo_used_bytes("MemTotal:  622592 kB\nMemFree:   403456 kB\nMemAvailable: 1 kB\n"),
            (622592 - 403456) * 1024);
  // MemFree must not match MemFreeX or a field that merely starts with it.
  EXPECT_EQ(meminfo_used_bytes("MemTotal: 10 kB\nMemFreeX: 1 kB\nMemFree: 4 kB\n"), 6 * 1024);
  EXPECT_EQ(meminfo_used_bytes("MemTotal: 10 kB\n"), -1);
  EXPECT_EQ(meminfo_used_bytes(""), -1);
  EXPECT_EQ(meminfo_used_bytes("MemTotal: x kB\nMemFree: 1 kB\n"), -1);
}

TEST(MemoryGuard, ListsResidentProcessesExceptSkipped) {
  auto procs = resident_processes({});
  auto self = std::find_if(procs.begin(), procs.end(), [](auto& p) { return p.pid == getpid(); });
  ASSERT_NE(self, procs.end());
  EXPECT_GT(self->rss_bytes, 0);
  auto skipped = resident_processes({getpid()});
  EXPECT_EQ(std::count_if(skipped.begin(), skipped.end(), [](auto& p) { return p.pid == getpid(); }),
            0);
}

TEST(MemoryGuard, OffWithoutALimit) {
  MemoryGuard g;
  EXPECT_EQ(g.next_check(), MemoryGuard::Clock::time_point::max());
  EXPECT_EQ(g.check(MemoryGuard::Clock::now(), {}), 0);
}

TEST(MemoryGuard, ADeferredGuardReadsNothingUntilItsInterval) {
  using namespace std::chrono_literals;
  MemoryGuard g;
  g.set_limit(1);  // any reading would be over it
  auto now = MemoryGuard::Clock::now();
  EXPECT_LE(g.next_check(), now);  // due at once
  g.defer(now);
  EXPECT_GE(g.next_check(), now + 20ms);
  EXPECT_EQ(g.check(now + 1ms, {}), 0);
  EXPECT_EQ(g.last_used(), 0);  // nothing read
  g.defer(now - 1s);  // never earlier than already due
  EXPECT_GE(g.next_check(), now + 20ms);
}

}  // namespace
}  // namespace swissbox::init
