#include "common/process.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace swissbox {
namespace {

TEST(Process, CapturesOutputAndExitCode) {
  ProcessOptions o;
  o.argv = {"/bin/sh", "-c", "echo out; echo err >&2; exit 3"};
  auto r = run_process(o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->out, "out\n");
  EXPECT_EQ(r->err, "err\n");
}

TEST(Process, TimeoutKillsTheWholeGroup) {
  ProcessOptions o;
  o.argv = {"/bin/sh", "-c", "sleep 30 & sleep 30"};
  o.timeout = std::chrono::milliseconds(200);
  auto r = run_process(o);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->timed_out);
  EXPECT_LT(r->elapsed.count(), 2000);
}

TEST(Process, MissingBinaryIsAnError) {
  ProcessOptions o;
  o.argv = {"/nonexistent/bin"};
  auto r = run_process(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().sys_errno, ENOENT);
}

TEST(Process, CaptureIsCapped) {
  ProcessOptions o;
  o.argv = {"/bin/sh", "-c", "head -c 100000 /dev/zero"};
  o.capture_cap = 1000;
  auto r = run_process(o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->out.size(), 1000u);
  EXPECT_EQ(r->exit_code, 0);
}

// The parent pid of a running process, from /proc/<pid>/status; 0 if gone.
pid_t parent_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("PPid:", 0) == 0) return std::stoi(line.substr(5));
  }
  return 0;
}

// Runs in a child of the test (a subreaper changes the whole process): each command leaves
// a background sleep behind; the sleeps become this process's children and, once they
// end, must not stay zombies, while run_process still gets every command's own status.
int orphans_are_reaped() {
  auto reaper = OrphanReaper::start();
  if (!reaper.ok()) return 10;
  std::vector<pid_t> orphans;
  for (int i = 0; i < 20; ++i) {
    ProcessOptions o;
    o.argv = {"/bin/sh", "-c", "sleep 0.3 >/dev/null 2>&1 & echo $!; exit 7"};
    auto r = run_process(o);
    if (!r.ok() || r->exit_code != 7) return 11;
    orphans.push_back(std::stoi(r->out));
  }
  if (parent_of(orphans.back()) != getpid()) return 12;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (pid_t p : orphans) {
    while (kill(p, 0) == 0) {  // a zombie still answers
      if (std::chrono::steady_clock::now() > deadline) return 13;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  return 0;
}

TEST(Process, OrphansAreReapedAndStartersKeepTheirChildren) {
  EXPECT_EXIT(exit(orphans_are_reaped()), testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace swissbox
