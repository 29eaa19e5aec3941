// swissbox-installer against a real containerd (Debian's), started by this test with its
// own config, root, state and socket, and a pause image built here (nothing is pulled):
// the handler goes in and is proven through CRI, a pod really runs under gVisor, a second
// run is a no-op, a broken config is reported and left alone, a missing socket is a clear
// error, and uninstall takes the handler out while containerd keeps working.
#include <fmt/format.h>

#include <atomic>
#include <thread>

#include "cri/cri_client.h"
#include "support/agent_fixture.h"

namespace swissbox::testing {
namespace {

class Installer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) {
      skip_ = "needs root (containerd)";
      return;
    }
    for (const char* tool : {"/usr/bin/containerd", "/usr/bin/ctr", "/usr/bin/runsc"}) {
      if (access(tool, X_OK) != 0) {
        skip_ = std::string(tool) + " is not installed (scripts/install-deps.sh installs it)";
        return;
      }
    }
    char tmpl[] = "/tmp/swissbox-ctd-XXXXXX";
    dir_ = mkdtemp(tmpl);
    for (const char* d : {"/cni/bin", "/cni/conf", "/bin"}) (void)fs::make_dirs(dir_ + d);
    original_config_ = private_containerd_config(dir_, "  sandbox_image = \"swissbox.local/pause:1\"\n");
    (void)fs::write_file_atomic(config(), original_config_);
    shims_before_ = dir_entries("/run/containerd/s");
    // containerd under a supervisor, as systemd would keep it: the installer's restart
    // command stops it, the supervisor starts it again.
    supervisor_ = std::thread([] {
      while (!stop_) {
        pid_t pid = spawn_daemon({"/usr/bin/containerd", "--config", config()}, dir_ + "/containerd.log");
        (void)fs::write_file_atomic(dir_ + "/containerd.pid", std::to_string(pid));
        containerd_pid_ = pid;
        waitpid(pid, nullptr, 0);
        if (!stop_) std::this_thread::sleep_for(200ms);
      }
    });
    cri::Client c(socket(), 2s);
    auto deadline = Clock::now() + 20s;
    while (!c.version() && Clock::now() < deadline) std::this_thread::sleep_for(100ms);
    ProcessOptions image;
    image.argv = {std::string(SWISSBOX_SOURCE_DIR) + "/installer/make-pause-image.sh",
                  "swissbox.local/pause:1", std::string(SWISSBOX_BIN_DIR) + "/swissbox-pause",
                  dir_ + "/pause.tar"};
    ProcessOptions import;
    import.argv = {"/usr/bin/ctr", "--address", socket(), "-n", "k8s.io", "images", "import",
                   dir_ + "/pause.tar"};
    auto made = run_process(image);
    auto imported = made && made->exit_code == 0 ? run_process(import) : made;
    if (!c.version() || !imported || imported->exit_code != 0)
      skip_ = "the test's containerd did not start or take the pause image; see " + dir_;
  }

  static void TearDownTestSuite() {
    if (dir_.empty()) return;
    stop_ = true;
    if (containerd_pid_ > 0) kill(containerd_pid_, SIGTERM);
    if (supervisor_.joinable()) supervisor_.join();
    // Shim sockets land in /run/containerd/s whatever the config says: remove ours.
    auto before = shims_before_;
    for (const auto& s : dir_entries("/run/containerd/s")) {
      if (std::find(before.begin(), before.end(), s) == before.end())
        unlink(("/run/containerd/s/" + s).c_str());
    }
    EXPECT_TRUE(runsc_list("/usr/bin/runsc", dir_ + "/runsc/k8s.io").empty());
    if (!::testing::Test::HasFailure()) {
      (void)fs::remove_tree(dir_);
    }
  }

  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
  }

  static std::string config() { return dir_ + "/config.toml"; }
  static std::string socket() { return dir_ + "/containerd.sock"; }

  // Runs the installer with the test's paths; answers its exit code and JSON report.
  static std::pair<int, json> install(std::vector<std::string> extra = {}) {
    ProcessOptions p;
    p.argv = {std::string(SWISSBOX_BIN_DIR) + "/swissbox-installer",
              "--containerd-config", config(),
              "--containerd-socket", socket(),
              "--bin-dir", dir_ + "/bin",
              "--runsc", "/usr/bin/runsc",
              "--wrapper", std::string(SWISSBOX_BIN_DIR) + "/swissbox-runsc",
              "--runsc-state", dir_ + "/runsc",
              "--restart-command", "/usr/bin/pkill -TERM -F " + dir_ + "/containerd.pid",
              "--seccomp-profile", std::string(SWISSBOX_SOURCE_DIR) + "/seccomp-profiles/agent.json",
              "--seccomp-dir", dir_ + "/seccomp/swissbox"};
    p.argv.insert(p.argv.end(), extra.begin(), extra.end());
    p.timeout = 120s;
    auto r = run_process(p);
    if (!r) return {-1, json()};
    std::string last = r->out.substr(r->out.rfind('{') == std::string::npos ? 0 : r->out.rfind("\n{") + 1);
    return {r->exit_code, json::parse(last, nullptr, false)};
  }

  static inline std::string skip_, dir_, original_config_;
  static inline std::vector<std::string> shims_before_;
  static inline std::thread supervisor_;
  static inline std::atomic<bool> stop_{false};
  static inline std::atomic<pid_t> containerd_pid_{-1};
};

TEST_F(Installer, DryRunChangesNothing) {
  auto [rc, report] = install({"--dry-run"});
  EXPECT_EQ(rc, 0) << report.dump();
  EXPECT_TRUE(report.value("config_changed", false));
  EXPECT_EQ(report["would_install"].size(), 3u);  // runsc, the wrapper, the seccomp profile
  EXPECT_EQ(*fs::read_file(config()), original_config_);
  EXPECT_FALSE(fs::exists(dir_ + "/bin/runsc"));
}

TEST_F(Installer, InstallsProvesItThroughCriAndASecondRunIsANoOp) {
  pid_t before = containerd_pid_;
  auto [rc, report] = install();
  ASSERT_EQ(rc, 0) << report.dump();
  EXPECT_TRUE(report.value("config_changed", false));
  EXPECT_TRUE(report.value("restarted", false));
  EXPECT_NE(containerd_pid_.load(), before) << "containerd was restarted";
  EXPECT_FALSE(report["pod_sandbox"].value("id", "").empty());
  EXPECT_EQ(*fs::read_file(config() + ".swissbox-backup"), original_config_);
  // The agent's Localhost seccomp profile is where the kubelet looks for it.
  EXPECT_EQ(*fs::read_file(dir_ + "/seccomp/swissbox/agent.json"),
            *fs::read_file(std::string(SWISSBOX_SOURCE_DIR) + "/seccomp-profiles/agent.json"));

  pid_t after = containerd_pid_;
  std::string config_now = *fs::read_file(config());
  auto [rc2, again] = install();
  ASSERT_EQ(rc2, 0) << again.dump();
  EXPECT_FALSE(again.value("config_changed", true));
  EXPECT_FALSE(again.value("binaries_changed", true));
  EXPECT_FALSE(again.contains("restarted"));
  EXPECT_EQ(containerd_pid_.load(), after) << "no restart when nothing changed";
  EXPECT_EQ(*fs::read_file(config()), config_now);
}

// CTest runs every test in a process (and a containerd) of its own: each test that needs the
// handler installs it first.
TEST_F(Installer, APodWithTheHandlerRunsUnderGvisor) {
  auto [rc, report] = install();
  ASSERT_EQ(rc, 0) << report.dump();
  cri::Client c(socket(), 30s);
  cri::PodConfig pod;
  pod.name = "swissbox-it-pod";
  pod.uid = "0123456789abcdef";
  auto id = c.run_pod_sandbox(pod, "runsc");
  ASSERT_TRUE(id.ok()) << id.error().to_string();
  // runsc's own state knows the pod's sandbox: it is a gVisor sandbox, not runc's.
  auto ids = runsc_list("/usr/bin/runsc", dir_ + "/runsc/k8s.io");
  EXPECT_NE(std::find(ids.begin(), ids.end(), *id), ids.end()) << "runsc list: " << ids.size();
  auto status = c.pod_sandbox_status(*id);
  ASSERT_TRUE(status.ok());
  EXPECT_TRUE(status->first);
  EXPECT_TRUE(c.stop_pod_sandbox(*id).ok());
  EXPECT_TRUE(c.remove_pod_sandbox(*id).ok());
  EXPECT_TRUE(runsc_list("/usr/bin/runsc", dir_ + "/runsc/k8s.io").empty());
}

TEST_F(Installer, ABrokenConfigIsReportedAndLeftAlone) {
  std::string good = *fs::read_file(config());
  std::string broken = good + "\n[plugins.\"unterminated\n";
  ASSERT_TRUE(fs::write_file_atomic(config(), broken).ok());
  auto [rc, report] = install();
  EXPECT_EQ(rc, 1);
  EXPECT_NE(report.value("error", "").find("TOML line"), std::string::npos) << report.dump();
  EXPECT_EQ(*fs::read_file(config()), broken) << "not overwritten";
  ASSERT_TRUE(fs::write_file_atomic(config(), good).ok());

  auto [rc2, missing] = install({"--containerd-socket", dir_ + "/nope.sock"});
  EXPECT_EQ(rc2, 1);
  EXPECT_NE(missing.value("error", "").find("no containerd socket"), std::string::npos) << missing.dump();
}

// The agent watches the runtime: its report shows it, and it is not ready without it.
TEST_F(Installer, TheAgentReportsTheRuntimeAndIsNotReadyWithoutIt) {
  auto agent = [](const std::string& name, const std::string& cri_socket) {
    int port = free_port();
    pid_t pid = spawn_daemon(
        {std::string(SWISSBOX_BIN_DIR) + "/swissbox-agent", "--listen", fmt::format("127.0.0.1:{}", port),
         "--socket", dir_ + "/" + name + ".sock", "--state-dir", dir_ + "/" + name,
         "--runsc-root", dir_ + "/" + name + "-runsc", "--pool", "default=0", "--node-name", name,
         "--cgroup-parent", "/swissbox-it-" + name, "--keep-sandboxes-on-exit", "false",
         "--cri-socket", cri_socket},
        dir_ + "/" + name + ".log");
    return std::pair{pid, fmt::format("127.0.0.1:{}", port)};
  };
  auto [good_pid, good] = agent("cri-ok", socket());
  auto [bad_pid, bad] = agent("cri-missing", dir_ + "/nope.sock");
  EXPECT_TRUE(wait_ready(good, 30s));
  json node = json::parse(http::Client(good).request("GET", "/v1/node")->body);
  EXPECT_TRUE(node["cri"].value("runtime_ready", false)) << node["cri"].dump();
  EXPECT_NE(node["cri"].value("runtime", "").find("containerd"), std::string::npos);
  EXPECT_EQ(node["runtime"].value("name", ""), "runsc");
  http::Client c(bad, 5s);
  auto deadline = Clock::now() + 20s;
  auto r = c.request("GET", "/readyz");
  while ((!r.ok() || r->status == 0) && Clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);
    r = c.request("GET", "/readyz");
  }
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 503u);
  EXPECT_NE(r->body.find("container runtime"), std::string::npos) << r->body;
  for (auto [pid, name] : {std::pair{good_pid, "cri-ok"}, {bad_pid, "cri-missing"}}) {
    EXPECT_TRUE(stop_daemon(pid));
    EXPECT_EQ(remove_cgroup_parent(std::string("/swissbox-it-") + name), "");
  }
}

TEST_F(Installer, UninstallTakesTheHandlerOutAndContainerdKeepsWorking) {
  auto [installed, first] = install();
  ASSERT_EQ(installed, 0) << first.dump();
  ASSERT_TRUE(fs::exists(dir_ + "/bin/runsc"));
  auto [rc, report] = install({"--uninstall"});
  ASSERT_EQ(rc, 0) << report.dump();
  EXPECT_EQ(*fs::read_file(config()), original_config_);
  EXPECT_FALSE(fs::exists(dir_ + "/bin/runsc"));
  EXPECT_FALSE(fs::exists(dir_ + "/bin/swissbox-runsc"));
  EXPECT_FALSE(fs::exists(dir_ + "/seccomp/swissbox/agent.json"));
  cri::Client c(socket(), 10s);
  auto deadline = Clock::now() + 20s;
  while (!c.version() && Clock::now() < deadline) std::this_thread::sleep_for(100ms);
  ASSERT_TRUE(c.version().ok());
  cri::PodConfig pod;
  pod.name = "swissbox-it-gone";
  pod.uid = "fedcba9876543210";
  auto gone = c.run_pod_sandbox(pod, "runsc");
  EXPECT_FALSE(gone.ok());
}

}  // namespace
}  // namespace swissbox::testing
