// A real swissbox-agent on real runsc for integration tests: one agent per test suite
// with its own state dir, runsc root, socket, port and cgroup parent. Suites skip with a
// reason without root or runsc. Tear-down checks that the agent left nothing behind.
#pragma once

#include <dirent.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "common/fs.h"
#include "common/http_client.h"
#include "common/process.h"

namespace swissbox::testing {

using json = nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

inline std::string find_runsc() {
  for (const char* p : {"/usr/bin/runsc", "/usr/local/bin/runsc", "/usr/sbin/runsc"}) {
    if (access(p, X_OK) == 0) return p;
  }
  return {};
}

inline int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

inline long rss_kb(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// Host processes whose command line names the sandbox (runsc sandbox, gofer, …).
// Mount points below `dir` in the agent's (this test's) mount namespace.
// A private containerd's config (DESIGN.md, "containerd facts"): root, state, socket, opt
// and CNI directories all under dir. cri_lines go first in the CRI plugin's table, tail at the
// end (more of its sub-tables); both indented as the table's lines are.
inline std::string private_containerd_config(const std::string& dir, const std::string& cri_lines,
                                             const std::string& tail = "") {
  return "version = 2\nroot = \"" + dir + "/root\"\nstate = \"" + dir + "/state\"\n[grpc]\n  address = \"" + dir +
         "/containerd.sock\"\n[plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"" + dir +
         "/opt\"\n[plugins.\"io.containerd.grpc.v1.cri\"]\n" + cri_lines +
         "  restrict_oom_score_adj = true\n  [plugins.\"io.containerd.grpc.v1.cri\".cni]\n    bin_dir = \"" + dir +
         "/cni/bin\"\n    conf_dir = \"" + dir + "/cni/conf\"\n" + tail;
}

inline int mounts_under(const std::string& dir) {
  std::ifstream f("/proc/self/mountinfo");
  std::string line;
  int n = 0;
  while (std::getline(f, line)) n += line.find(" " + dir + "/") != std::string::npos;
  return n;
}

// Host processes whose command line names `text` (a sandbox id: runsc sandbox, gofer, …),
// with their command lines.
inline std::map<pid_t, std::string> processes_with(const std::string& text) {
  std::map<pid_t, std::string> out;
  DIR* d = opendir("/proc");
  while (dirent* e = readdir(d)) {
    if (!isdigit(e->d_name[0])) continue;
    auto cmd = fs::read_file(std::string("/proc/") + e->d_name + "/cmdline");
    if (cmd.ok() && cmd->find(text) != std::string::npos) out[atoi(e->d_name)] = *cmd;
  }
  closedir(d);
  return out;
}

inline int processes_mentioning(const std::string& id) {
  return static_cast<int>(processes_with(id).size());
}

// Entries of a directory (none if it does not exist).
inline std::vector<std::string> dir_entries(const std::string& dir) { return fs::list_dir(dir); }

// Starts a daemon of ours (argv[0] an absolute path) with stdout and stderr appended to
// `log`; returns its pid.
inline pid_t spawn_daemon(std::vector<std::string> args, const std::string& log) {
  pid_t pid = fork();
  if (pid == 0) {
    freopen(log.c_str(), "a", stderr);
    dup2(STDERR_FILENO, STDOUT_FILENO);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

// Waits until GET /readyz at HOST:PORT answers 200.
inline bool wait_ready(const std::string& host_port, std::chrono::seconds within = 60s) {
  http::Client c(host_port, 2s);
  auto deadline = Clock::now() + within;
  while (Clock::now() < deadline) {
    auto r = c.request("GET", "/readyz");
    if (r.ok() && r->status == 200) return true;
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

// SIGTERM, then SIGKILL after `grace`; false if it took the SIGKILL.
inline bool stop_daemon(pid_t pid, std::chrono::seconds grace = 60s) {
  kill(pid, SIGTERM);
  int status = 0;
  auto deadline = Clock::now() + grace;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (Clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return false;
    }
    std::this_thread::sleep_for(100ms);
  }
  return true;
}

// Sandbox ids in a runsc root.
inline std::vector<std::string> runsc_list(const std::string& runsc, const std::string& root) {
  ProcessOptions ls;
  ls.argv = {runsc, "--root", root, "list", "--quiet"};
  auto r = run_process(ls);
  std::vector<std::string> ids;
  std::string line;
  std::istringstream in(r.ok() ? r->out : "");
  while (std::getline(in, line)) {
    if (!line.empty()) ids.push_back(line);
  }
  return ids;
}

// Removes a test agent's (empty) cgroup parents in every hierarchy. Answers what is left:
// empty when all went, else each parent that stays with the cgroups it still holds. The
// kernel may answer EBUSY for a moment after the last child went (its tasks are still
// being released), so it retries for up to 5 s.
// Where a sandbox's cgroup may be: the v2 root, the v1 hierarchies the agent makes it in,
// and the others runsc makes it in on a v1 host.
inline const std::vector<std::string> kCgroupHierarchies = {
    "", "/cpu", "/cpuacct", "/memory", "/pids", "/blkio", "/cpuset", "/devices", "/freezer",
    "/systemd"};

inline std::string remove_cgroup_parent(const std::string& parent) {
  auto deadline = Clock::now() + 5s;
  for (;;) {
    std::string left;
    for (const std::string& h : kCgroupHierarchies) {
      std::string dir = "/sys/fs/cgroup" + h + parent;
      if (!fs::exists(dir) || rmdir(dir.c_str()) == 0 || errno == ENOENT) continue;
      left += dir + " [" + std::strerror(errno) + "]:";
      for (const auto& child : dir_entries(dir)) {
        struct stat st {};
        if (stat((dir + "/" + child).c_str(), &st) == 0 && S_ISDIR(st.st_mode)) left += " " + child;
      }
      left += "\n";
    }
    if (left.empty() || Clock::now() > deadline) return left;
    std::this_thread::sleep_for(100ms);
  }
}

class AgentRunsc : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) {
      skip_ = "needs root (runsc)";
      return;
    }
    runsc_ = find_runsc();
    if (runsc_.empty()) {
      skip_ = "runsc is not installed (scripts/install-deps.sh installs it)";
      return;
    }
    char tmpl[] = "/tmp/swissbox-it-XXXXXX";
    dir_ = mkdtemp(tmpl);
    port_ = free_port();
    if (!launch_agent()) skip_ = "agent did not become ready; see " + dir_ + "/agent.log";
  }

  // Starts the agent (again, after a crash: same state, root, port and cgroup parent) and
  // waits until it is ready.
  static bool launch_agent() {
    std::vector<std::string> args = {
        std::string(SWISSBOX_BIN_DIR) + "/swissbox-agent", "--listen", tcp(),
        "--socket", dir_ + "/agent.sock", "--state-dir", dir_ + "/state",
        "--runsc-root", dir_ + "/runsc", "--runsc", runsc_, "--pool", "default=2",
        "--node-name", "it", "--max-sandboxes", "48",
        // Its own cgroup parent: the agent's start-up GC removes whatever it finds there.
        "--cgroup-parent", cgroup_parent(),
        // tear-down checks that a stopped agent leaves nothing
        "--keep-sandboxes-on-exit", "false",
        // the browser's build (a download of ≈ 125 MB) only where a suite asks for it
        "--build-builtins", "false"};
    args.insert(args.end(), extra_args_.begin(), extra_args_.end());
    pid_ = spawn_daemon(args, dir_ + "/agent.log");
    return wait_ready(tcp());
  }

  // kill -9 of the agent alone: its sandboxes keep running.
  static void crash_agent() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  static void TearDownTestSuite() {
    // The next suite in this process starts from a clean slate (its own arguments).
    extra_args_.clear();
    skip_.clear();
    if (pid_ <= 0) return;
    EXPECT_TRUE(stop_daemon(pid_)) << "agent did not stop within 60 s of SIGTERM";
    // A stopped agent leaves no sandbox behind.
    EXPECT_TRUE(runsc_ids().empty());
    EXPECT_EQ(processes_mentioning(dir_ + "/runsc"), 0);
    EXPECT_EQ(mounts_under(dir_), 0) << "sandbox disks still mounted";
    // Every sandbox cgroup is gone; only the (empty) parents the agent made stay, and go.
    EXPECT_EQ(remove_cgroup_parent(cgroup_parent()), "") << "cgroups left behind";
    if (!::testing::Test::HasFailure()) (void)fs::remove_tree(dir_);
    pid_ = -1;
  }

  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
  }

  static std::string tcp() { return "127.0.0.1:" + std::to_string(port_); }

  static json post(const std::string& path, const json& body, unsigned want = 200) {
    http::Client c(tcp());
    auto r = c.request("POST", path, body.dump());
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().to_string());
    if (!r.ok()) return {};
    EXPECT_EQ(r->status, want) << path << " " << body.dump().substr(0, 200) << " → " << r->body;
    return json::parse(r->body, nullptr, false);
  }

  static std::string create() { return post("/v1/sandboxes", json::object(), 201).value("id", ""); }
  // Through the unix socket: an admin.
  static Result<http::ClientResponse> admin(const std::string& method, const std::string& path,
                                            const std::string& body = "") {
    http::Client c("unix:" + dir_ + "/agent.sock");
    return c.request(method, path, body);
  }
  // A template's record once its build has ended (or after `within`).
  static json built(const std::string& name, std::chrono::seconds within = 90s) {
    json t;
    for (auto until = Clock::now() + within; Clock::now() < until;) {
      auto r = admin("GET", "/v1/templates/" + name);
      t = r.ok() ? json::parse(r->body, nullptr, false) : json();
      if (t.value("state", "") != "building") break;
      std::this_thread::sleep_for(100ms);
    }
    return t;
  }
  static json exec(const std::string& id, const json& body) {
    return post("/v1/sandboxes/" + id + "/exec", body);
  }

  static std::string cgroup_parent() {
    return "/swissbox-it-" + dir_.substr(dir_.rfind('-') + 1);
  }
  // The sandbox's cgroup in the memory hierarchy (v1) or the unified one (v2).
  static std::string memory_cgroup(const std::string& id) {
    std::string v1 = "/sys/fs/cgroup/memory" + cgroup_parent() + "/" + id;
    return fs::exists("/sys/fs/cgroup/cgroup.controllers")
               ? "/sys/fs/cgroup" + cgroup_parent() + "/" + id
               : v1;
  }

  // Sandbox ids runsc holds in the agent's root.
  static std::vector<std::string> runsc_ids() { return runsc_list(runsc_, dir_ + "/runsc"); }

  static inline std::string skip_, dir_, runsc_;
  static inline std::vector<std::string> extra_args_;  // for the agent, set before SetUp
  static inline int port_ = 0;
  static inline pid_t pid_ = -1;
};


}  // namespace swissbox::testing
