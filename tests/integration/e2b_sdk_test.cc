// Issue #20's proof: the unmodified official E2B SDKs (Python e2b 2.63.0 +
// e2b-code-interpreter 2.11.5, npm e2b 2.51.0 + @e2b/code-interpreter 2.8.0, installed by
// scripts/install-e2b-sdks.sh from PyPI and npm) run the platform's calls against a real
// agent on runsc and through a real scheduler, configured by E2B_API_URL, E2B_SANDBOX_URL
// and E2B_API_KEY only (tests/e2b/sdk_check.*). Two tenants' keys in the token file.
// Needs root, runsc, and the SDKs.
#include <sys/wait.h>

#include <cstdio>

#include "support/agent_fixture.h"

namespace swissbox::testing {
namespace {

const std::string kKeyA = "e2b_" + std::string(40, 'a');  // tenant-a, admin (the scheduler polls with it)
const std::string kKeyB = "e2b_" + std::string(40, 'b');  // tenant-b

class E2bSdk : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) return void(skip_ = "needs root (runsc)");
    runsc_ = find_runsc();
    if (runsc_.empty()) return void(skip_ = "runsc is not installed");
    sdk_ = std::string(SWISSBOX_SOURCE_DIR) + "/build/e2b";
    if (!fs::exists(sdk_ + "/venv/bin/python") || !fs::exists(sdk_ + "/npm/node_modules/@e2b/code-interpreter")) {
      return void(skip_ = "the E2B SDKs are not installed (scripts/install-e2b-sdks.sh)");
    }
    char tmpl[] = "/tmp/swissbox-e2b-XXXXXX";
    dir_ = mkdtemp(tmpl);
    std::string tokens = dir_ + "/tokens.json";
    (void)fs::write_file_atomic(
        tokens, json{{kKeyA, {{"tenant", "tenant-a"}, {"admin", true}}}, {kKeyB, "tenant-b"}}.dump(), 0600);
    agent_ = "127.0.0.1:" + std::to_string(free_port());
    agent_pid_ = spawn_daemon(
        {std::string(SWISSBOX_BIN_DIR) + "/swissbox-agent", "--listen", agent_, "--socket",
         dir_ + "/agent.sock", "--state-dir", dir_ + "/state", "--runsc-root", dir_ + "/runsc",
         "--runsc", runsc_, "--pool", "code-interpreter=1", "--pool", "default=1",
         "--token-file", tokens, "--cgroup-parent", cgroup_parent(), "--keep-sandboxes-on-exit", "false"},
        dir_ + "/agent.log");
    if (!wait_ready(agent_)) return void(skip_ = "agent not ready; see " + dir_ + "/agent.log");
    scheduler_ = "127.0.0.1:" + std::to_string(free_port());
    scheduler_pid_ = spawn_daemon(
        {std::string(SWISSBOX_BIN_DIR) + "/swissbox-scheduler", "--listen", scheduler_, "--agents",
         agent_, "--allowed-regions", "dev", "--token-file", tokens},
        dir_ + "/scheduler.log");
    if (!wait_ready(scheduler_, 20s)) return void(skip_ = "scheduler not ready; see " + dir_);
  }

  static void TearDownTestSuite() {
    if (scheduler_pid_ > 0) {
      EXPECT_TRUE(stop_daemon(scheduler_pid_, 20s));
    }
    if (agent_pid_ > 0) {
      EXPECT_TRUE(stop_daemon(agent_pid_));
    }
    if (!dir_.empty()) {
      EXPECT_TRUE(runsc_list(runsc_, dir_ + "/runsc").empty());
      EXPECT_EQ(remove_cgroup_parent(cgroup_parent()), "");
      if (!::testing::Test::HasFailure()) (void)fs::remove_tree(dir_);
    }
    scheduler_pid_ = agent_pid_ = -1;
  }

  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
  }

  static std::string cgroup_parent() { return "/swissbox-e2b-" + dir_.substr(dir_.rfind('-') + 1); }

  // Runs a check script against `target` (HOST:PORT) with E2B's environment variables only;
  // its exit status, and all it printed.
  static std::pair<int, std::string> run_sdk(const std::vector<std::string>& argv, const std::string& target) {
    std::string cmd = "env E2B_API_URL=http://" + target + " E2B_SANDBOX_URL=http://" + target +
                      " E2B_API_KEY=" + kKeyA + " OTHER_TENANT_KEY=" + kKeyB +
                      " E2B_NODE_MODULES=" + sdk_ + "/npm/node_modules";
    for (const auto& a : argv) cmd += " '" + a + "'";
    cmd += " 2>&1";
    std::string out;
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return {-1, "popen failed"};
    char buf[4096];
    while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    int status = pclose(p);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
  }

  static inline std::string skip_, dir_, runsc_, sdk_, agent_, scheduler_;
  static inline pid_t agent_pid_ = -1, scheduler_pid_ = -1;
};

TEST_F(E2bSdk, PythonAgainstTheAgentAndThroughTheScheduler) {
  for (const auto& target : {agent_, scheduler_}) {
    auto [status, out] = run_sdk({sdk_ + "/venv/bin/python", std::string(SWISSBOX_SOURCE_DIR) + "/tests/e2b/sdk_check.py"}, target);
    EXPECT_EQ(status, 0) << target << ":\n" << out;
  }
}

TEST_F(E2bSdk, JavaScriptAgainstTheAgentAndThroughTheScheduler) {
  for (const auto& target : {agent_, scheduler_}) {
    auto [status, out] = run_sdk({"node", std::string(SWISSBOX_SOURCE_DIR) + "/tests/e2b/sdk_check.mjs"}, target);
    EXPECT_EQ(status, 0) << target << ":\n" << out;
  }
}

}  // namespace
}  // namespace swissbox::testing
