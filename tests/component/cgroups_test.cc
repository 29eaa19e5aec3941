// Both cgroup drivers on temp trees shaped like /sys/fs/cgroup, and the v1 driver on the
// real hierarchy when this host has one and we are root.
#include "agent/runtime/cgroups.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include <fmt/format.h>

#include "common/fs.h"

namespace swissbox {
namespace {

std::string slurp(const std::string& path) {
  auto r = fs::read_file(path);
  return r ? *r : "<missing>";
}

class TempTree : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/swissbox-cg-XXXXXX";
    root_ = mkdtemp(tmpl);
  }
  void TearDown() override { (void)fs::remove_tree(root_); }

  void put(const std::string& rel, const std::string& text) {
    std::string path = root_ + "/" + rel;
    ASSERT_TRUE(fs::make_dirs(path.substr(0, path.rfind('/'))).ok());
    std::ofstream(path) << text;
  }
  std::string get(const std::string& rel) {
    return slurp(root_ + "/" + rel);
  }
  CgroupOptions opts(const std::string& parent = "") {
    return {root_, parent, root_ + "/proc-self-cgroup"};
  }

  std::string root_;
};

TEST_F(TempTree, V2DefaultParentIsBelowOwnCgroupWithControllersEnabledOnTheWay) {
  put("cgroup.controllers", "cpuset cpu io memory pids");
  put("proc-self-cgroup", "0::/system.slice/agent.service\n");
  auto cg = open_cgroups(opts());
  ASSERT_TRUE(cg.ok()) << cg.error().to_string();
  EXPECT_EQ((*cg)->version(), "v2");
  EXPECT_EQ((*cg)->parent(), "/system.slice/agent.service/sandboxes");
  EXPECT_EQ((*cg)->oci_path("sbx-1"), "/system.slice/agent.service/sandboxes/sbx-1");
  for (std::string d : {"", "/system.slice", "/system.slice/agent.service",
                        "/system.slice/agent.service/sandboxes"}) {
    EXPECT_EQ(get(d + "/cgroup.subtree_control"), "+cpu +memory +pids") << d;
  }
}

TEST_F(TempTree, V2OnlyAddsMissingControllers) {
  put("cgroup.controllers", "cpu memory pids");
  put("cgroup.subtree_control", "cpu memory pids");
  put("swissbox/cgroup.subtree_control", "memory");
  ASSERT_TRUE(open_cgroups(opts("/swissbox")).ok());
  EXPECT_EQ(get("cgroup.subtree_control"), "cpu memory pids");  // untouched
  EXPECT_EQ(get("swissbox/cgroup.subtree_control"), "+cpu +pids");
}

TEST_F(TempTree, V2LimitsUsageAndRemoval) {
  put("cgroup.controllers", "cpu memory pids");
  auto cg = open_cgroups(opts("/swissbox/"));  // a trailing slash is dropped
  ASSERT_TRUE(cg.ok()) << cg.error().to_string();
  put("swissbox/sbx-1/memory.swap.max", "max");  // only written when the kernel has it
  ASSERT_TRUE((*cg)->create("sbx-1", {1.5, 256 << 20, 128}).ok());
  EXPECT_EQ(get("swissbox/sbx-1/cpu.max"), "150000 100000");
  EXPECT_EQ(get("swissbox/sbx-1/memory.max"), "268435456");
  EXPECT_EQ(get("swissbox/sbx-1/memory.swap.max"), "0");
  EXPECT_EQ(get("swissbox/sbx-1/pids.max"), "128");
  // Claim-time change, then no limits at all.
  ASSERT_TRUE((*cg)->set_limits("sbx-1", {0, 0, 0}).ok());
  EXPECT_EQ(get("swissbox/sbx-1/cpu.max"), "max 100000");
  EXPECT_EQ(get("swissbox/sbx-1/memory.max"), "max");
  EXPECT_EQ(get("swissbox/sbx-1/pids.max"), "max");

  put("swissbox/sbx-1/memory.current", "1048576\n");
  put("swissbox/sbx-1/memory.peak", "4194304\n");
  put("swissbox/sbx-1/pids.current", "31\n");
  put("swissbox/sbx-1/cpu.stat", "usage_usec 2500000\nuser_usec 2000000\n");
  put("swissbox/sbx-1/memory.events", "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n");
  auto u = (*cg)->usage("sbx-1");
  ASSERT_TRUE(u.ok()) << u.error().to_string();
  EXPECT_EQ(u->memory_bytes, 1 << 20);
  EXPECT_EQ(u->memory_peak_bytes, 4 << 20);
  EXPECT_EQ(u->pids, 31);
  EXPECT_DOUBLE_EQ(u->cpu_seconds, 2.5);
  EXPECT_EQ(u->oom_kills, 1);

  auto kids = (*cg)->children();
  ASSERT_TRUE(kids.ok());
  EXPECT_EQ(*kids, std::vector<std::string>{"sbx-1"});
  ASSERT_TRUE((*cg)->remove("sbx-1").ok());
  EXPECT_FALSE(fs::exists(root_ + "/swissbox/sbx-1"));
  EXPECT_TRUE((*cg)->remove("sbx-1").ok());  // idempotent
  EXPECT_FALSE((*cg)->usage("sbx-1").ok());
}

TEST_F(TempTree, V1UsesEveryControllerHierarchy) {
  for (std::string c : {"cpu", "cpuacct", "memory", "pids"}) put(c + "/tasks", "");
  put("proc-self-cgroup",
      "4:memory:/process_api/abc\n2:cpuacct:/\n1:cpu:/\n8:pids:/\n0::/\n");
  auto cg = open_cgroups(opts());
  ASSERT_TRUE(cg.ok()) << cg.error().to_string();
  EXPECT_EQ((*cg)->version(), "v1");
  EXPECT_EQ((*cg)->parent(), "/process_api/abc/sandboxes");  // below the memory cgroup
  put("memory/process_api/abc/sandboxes/sbx-2/memory.memsw.limit_in_bytes", "-1");
  ASSERT_TRUE((*cg)->create("sbx-2", {0.5, 512 << 20, 64}).ok());
  std::string p = "/process_api/abc/sandboxes/sbx-2";
  EXPECT_EQ(get("cpu" + p + "/cpu.cfs_period_us"), "100000");
  EXPECT_EQ(get("cpu" + p + "/cpu.cfs_quota_us"), "50000");
  EXPECT_EQ(get("memory" + p + "/memory.limit_in_bytes"), "536870912");
  EXPECT_EQ(get("memory" + p + "/memory.memsw.limit_in_bytes"), "536870912");
  EXPECT_EQ(get("pids" + p + "/pids.max"), "64");
  EXPECT_TRUE(fs::exists(root_ + "/cpuacct" + p));

  put("memory" + p + "/memory.usage_in_bytes", "2097152\n");
  put("memory" + p + "/memory.max_usage_in_bytes", "8388608\n");
  put("memory" + p + "/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
  put("cpuacct" + p + "/cpuacct.usage", "1500000000\n");
  put("pids" + p + "/pids.current", "12\n");
  auto u = (*cg)->usage("sbx-2");
  ASSERT_TRUE(u.ok()) << u.error().to_string();
  EXPECT_EQ(u->memory_bytes, 2 << 20);
  EXPECT_EQ(u->memory_peak_bytes, 8 << 20);
  EXPECT_DOUBLE_EQ(u->cpu_seconds, 1.5);
  EXPECT_EQ(u->pids, 12);
  EXPECT_EQ(u->oom_kills, 2);

  // runsc makes the cgroup in the other hierarchies too (here devices and name=systemd)
  // and leaves it there: the agent finds and removes those as well.
  put("devices" + p + "/tasks", "");
  put("systemd/process_api/abc/sandboxes/sbx-9/tasks", "");  // left by a crash
  auto kids = (*cg)->children();
  ASSERT_TRUE(kids.ok()) << kids.error().to_string();
  EXPECT_EQ(*kids, (std::vector<std::string>{"sbx-2", "sbx-9"}));
  ASSERT_TRUE((*cg)->remove("sbx-2").ok());
  for (std::string c : {"cpu", "cpuacct", "memory", "pids", "devices"})
    EXPECT_FALSE(fs::exists(root_ + "/" + c + p)) << c;
  ASSERT_TRUE((*cg)->remove("sbx-9").ok());
  EXPECT_FALSE(fs::exists(root_ + "/systemd/process_api/abc/sandboxes/sbx-9"));
}

TEST_F(TempTree, V1WithoutSwapAccountingTurnsSwappinessOff) {
  put("memory/tasks", "");
  auto cg = open_cgroups(opts("/sb"));
  ASSERT_TRUE(cg.ok()) << cg.error().to_string();
  ASSERT_TRUE((*cg)->create("x", {1, 64 << 20, 0}).ok());
  EXPECT_EQ(get("memory/sb/x/memory.swappiness"), "0");
  EXPECT_EQ(get("pids/sb/x/pids.max"), "max");
}

TEST_F(TempTree, BadInputIsRefused) {
  EXPECT_EQ(open_cgroups(opts("/x")).error().code, Code::kUnavailable);  // no hierarchy
  put("cgroup.controllers", "cpu memory pids");
  EXPECT_EQ(open_cgroups(opts("relative")).error().code, Code::kInvalidArgument);
  EXPECT_EQ(open_cgroups(opts("/a/../b")).error().code, Code::kInvalidArgument);
  EXPECT_EQ(open_cgroups(opts("/")).error().code, Code::kInvalidArgument);
  auto cg = open_cgroups(opts("/ok"));
  ASSERT_TRUE(cg.ok());
  EXPECT_FALSE((*cg)->create("../escape", {}).ok());
  EXPECT_FALSE((*cg)->create("", {}).ok());
  EXPECT_FALSE((*cg)->remove("..").ok());
}

// The v1 driver against the kernel: what the files say after our writes, and removal of a
// cgroup that still holds a process.
pid_t paused_child() {
  pid_t pid = fork();
  if (pid == 0) {
    pause();
    _exit(0);
  }
  return pid;
}

TEST_F(TempTree, KillAllEndsTheListedProcessesAndWaitsForThem) {
  put("cgroup.controllers", "cpu memory pids");
  auto cg = open_cgroups(opts("/sb"));
  ASSERT_TRUE(cg.ok()) << cg.error().to_string();
  ASSERT_TRUE((*cg)->create("sbx-1", {}).ok());
  pid_t listed = paused_child(), outside = paused_child();
  pid_t zombie = fork();
  if (zombie == 0) _exit(0);
  siginfo_t info{};
  ASSERT_EQ(waitid(P_PID, zombie, &info, WEXITED | WNOWAIT), 0);  // exited, not reaped
  put("sb/sbx-1/cgroup.procs", fmt::format("{}\n{}\n", listed, zombie));

  EXPECT_TRUE((*cg)->kill_all("sbx-1", std::chrono::seconds(5)));
  int status = 0;
  ASSERT_EQ(waitpid(listed, &status, WNOHANG), listed) << "kill_all returned before the exit";
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  EXPECT_EQ(kill(outside, 0), 0) << "a process outside the cgroup was signalled";
  // Listed pids whose processes are gone (reaped) count as gone too.
  ASSERT_EQ(waitpid(zombie, nullptr, 0), zombie);
  EXPECT_TRUE((*cg)->kill_all("sbx-1", std::chrono::milliseconds(100)));
  kill(outside, SIGKILL);
  waitpid(outside, nullptr, 0);
}

// The v1 driver on this host's hierarchies, under a parent of the test's own.
class RealCgroupV1 : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    if (!fs::exists("/sys/fs/cgroup/memory/cgroup.procs"))
      GTEST_SKIP() << "no cgroup v1 memory hierarchy on this host";
    auto cg = open_cgroups({"/sys/fs/cgroup", parent_, "/proc/self/cgroup"});
    ASSERT_TRUE(cg.ok()) << cg.error().to_string();
    cg_ = std::move(*cg);
  }
  void TearDown() override {
    for (const char* c : kControllers) rmdir(("/sys/fs/cgroup/" + std::string(c) + parent_).c_str());
  }
  std::string dir(const std::string& controller, const std::string& name) const {
    return "/sys/fs/cgroup/" + controller + parent_ + "/" + name;
  }
  void join(const std::string& name, pid_t pid) const {
    for (const char* c : kControllers) std::ofstream(dir(c, name) + "/cgroup.procs") << pid;
  }

  static constexpr const char* kControllers[] = {"cpu", "cpuacct", "memory", "pids"};
  const std::string parent_ = "/swissbox-unit-" + std::to_string(getpid());
  std::unique_ptr<Cgroups> cg_;
};

TEST_F(RealCgroupV1, LimitsReadBackAndRemoveKillsMembers) {
  ASSERT_TRUE(cg_->create("c1", {1, 64 << 20, 16}).ok());
  std::string mem = dir("memory", "c1");
  EXPECT_EQ(slurp(mem + "/memory.limit_in_bytes"), "67108864\n");
  EXPECT_EQ(slurp(dir("pids", "c1") + "/pids.max"), "16\n");
  // Raising the limit needs memsw raised first.
  ASSERT_TRUE(cg_->set_limits("c1", {2, 128 << 20, 0}).ok());
  EXPECT_EQ(slurp(mem + "/memory.limit_in_bytes"), "134217728\n");
  EXPECT_EQ(slurp(dir("cpu", "c1") + "/cpu.cfs_quota_us"), "200000\n");

  pid_t child = paused_child();
  join("c1", child);
  auto u = cg_->usage("c1");
  ASSERT_TRUE(u.ok()) << u.error().to_string();
  EXPECT_EQ(u->pids, 1);  // (memory charges stay where a moved task made them)
  EXPECT_TRUE(cg_->remove("c1").ok());
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_FALSE(fs::exists(mem));
}

TEST_F(RealCgroupV1, KillAllLeavesTheCgroupEmpty) {
  ASSERT_TRUE(cg_->create("c1", {}).ok());
  std::vector<pid_t> children = {paused_child(), paused_child()};
  for (pid_t child : children) join("c1", child);
  ASSERT_EQ(cg_->processes("c1").size(), 2u);
  EXPECT_TRUE(cg_->kill_all("c1", std::chrono::seconds(5)));
  EXPECT_TRUE(cg_->processes("c1").empty());  // exited (not yet reaped) tasks are not listed
  for (pid_t child : children) {
    int status = 0;
    EXPECT_EQ(waitpid(child, &status, WNOHANG), child);
    EXPECT_TRUE(WIFSIGNALED(status));
  }
  EXPECT_TRUE(cg_->remove("c1").ok());
}

}  // namespace
}  // namespace swissbox
