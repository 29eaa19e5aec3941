#include "agent/hardening.h"

#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "common/fs.h"

namespace swissbox {
namespace {

// The kubelet Localhost profile and the agent's own filter come from one list.
TEST(Hardening, SeccompProfileMatchesTheAgentsFilter) {
  auto text = fs::read_file(std::string(SWISSBOX_SOURCE_DIR) + "/seccomp-profiles/agent.json");
  ASSERT_TRUE(text.ok()) << text.error().to_string();
  auto profile = nlohmann::json::parse(*text);
  EXPECT_EQ(profile["defaultAction"], "SCMP_ACT_ALLOW");
  ASSERT_EQ(profile["syscalls"].size(), 1u);
  const auto& rule = profile["syscalls"][0];
  EXPECT_EQ(rule["action"], "SCMP_ACT_ERRNO");
  EXPECT_EQ(rule["errnoRet"], 1);  // EPERM, as the agent's filter answers
  auto in_profile = rule["names"].get<std::vector<std::string>>();
  auto in_agent = denied_syscalls();
  std::sort(in_profile.begin(), in_profile.end());
  std::sort(in_agent.begin(), in_agent.end());
  EXPECT_EQ(in_profile, in_agent) << "regenerate seccomp-profiles/agent.json from agent/hardening.cc";
}

// In a child (the filter and the dropped capabilities cannot be undone): denied calls get
// EPERM, dropped capabilities are gone from the bounding set, kept ones stay.
TEST(Hardening, ChildLosesCapabilitiesAndDeniedCalls) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (capabilities to drop)";
  pid_t pid = fork();
  if (pid == 0) {
    if (!harden_agent().ok()) _exit(10);
    errno = 0;
    if (syscall(SYS_swapoff, "/nonexistent") != -1 || errno != EPERM) _exit(11);
    if (syscall(SYS_perf_event_open, nullptr, 0, -1, -1, 0) != -1 || errno != EPERM) _exit(12);
    if (prctl(PR_CAPBSET_READ, CAP_SYS_MODULE) != 0) _exit(13);
    if (prctl(PR_CAPBSET_READ, CAP_SYS_ADMIN) != 1) _exit(14);
    if (getpid() <= 0) _exit(15);  // allowed calls still work
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "10 harden failed, 11/12 call allowed, 13/14 capabilities";
}

}  // namespace
}  // namespace swissbox
