#include "common/process.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
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
  // Idle, the reaper polls at most every 50 ms: it once spun after its first reap (28 % of
  // a core in an idle agent), which 300 ms of this process's CPU time would show.
  auto cpu_ms = [] {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1000.0 + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1000.0;
  };
  double before = cpu_ms();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  if (cpu_ms() - before > 60) return 14;
  return 0;
}

TEST(Process, OrphansAreReapedAndStartersKeepTheirChildren) {
  EXPECT_EXIT(exit(orphans_are_reaped()), testing::ExitedWithCode(0), "");
}

}  // namespace
TEST(DescribeFailure, AGoStackIsLeftOutAndLongOutputQuotedFromItsEnd) {
  ProcessOptions opts;
  opts.argv = {"/usr/bin/runsc", "checkpoint"};
  ProcessResult r;
  r.exit_code = 128;
  r.err = "checkpoint failed: endpoint cannot be saved:\ngoroutine 96 [running]:\n" + std::string(2000, 's');
  EXPECT_EQ(describe_failure(opts, r), "/usr/bin/runsc checkpoint exited 128: checkpoint failed: endpoint cannot be saved");
  r.err = std::string(2000, 'x') + "the end";
  std::string d = describe_failure(opts, r);
  EXPECT_NE(d.find("…"), std::string::npos);
  EXPECT_LT(d.size(), 700u);
  EXPECT_EQ(d.substr(d.size() - 7), "the end");
}

}  // namespace swissbox
