#include "common/process.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace swissbox
