// Issue #5 on the dev VM: three real agents (regions ch-gva-2, ch-dk-2, de-fra-1, each with
// its own state, runsc root, socket, port and cgroup parent) and two scheduler replicas.
// Needs root and runsc.
#include <future>
#include <map>

#include "common/http_server.h"
#include "support/agent_fixture.h"

namespace swissbox::testing {
namespace {

struct Node {
  std::string name, region, dir;
  int port = 0;
  pid_t pid = -1;
  std::string address() const { return "127.0.0.1:" + std::to_string(port); }
};

class Scheduling : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) return void(skip_ = "needs root (runsc)");
    runsc_ = find_runsc();
    if (runsc_.empty()) return void(skip_ = "runsc is not installed");
    char tmpl[] = "/tmp/swissbox-sched-XXXXXX";
    dir_ = mkdtemp(tmpl);
    const char* names[] = {"gva", "dk", "fra"};
    const char* regions[] = {"ch-gva-2", "ch-dk-2", "de-fra-1"};
    std::string agents;
    for (int i = 0; i < 3; ++i) {
      Node n{names[i], regions[i], dir_ + "/" + names[i], free_port()};
      agents += (i ? "," : "") + n.address();
      nodes_.push_back(n);
    }
    for (auto& n : nodes_) start_agent(n);
    for (auto& n : nodes_) {
      if (!wait_ready(n.address())) return void(skip_ = "agent " + n.name + " not ready; see " + n.dir);
    }
    for (int i = 0; i < 2; ++i) {
      int port = free_port();
      schedulers_.push_back("127.0.0.1:" + std::to_string(port));
      scheduler_pids_.push_back(spawn_daemon(
          {std::string(SWISSBOX_BIN_DIR) + "/swissbox-scheduler", "--listen", schedulers_.back(),
           "--agents", agents},
          dir_ + "/scheduler" + std::to_string(i) + ".log"));
    }
    for (const auto& s : schedulers_) {
      if (!wait_ready(s, 20s)) return void(skip_ = "scheduler " + s + " not ready");
    }
    // Both replicas have seen every node once.
    std::this_thread::sleep_for(1500ms);
  }

  static void start_agent(Node& n) {
    n.pid = spawn_daemon(
        {std::string(SWISSBOX_BIN_DIR) + "/swissbox-agent", "--listen", n.address(), "--socket",
         n.dir + "/agent.sock", "--state-dir", n.dir + "/state", "--runsc-root", n.dir + "/runsc",
         "--runsc", runsc_, "--node-name", n.name, "--region", n.region, "--pool", "default=2",
         "--max-sandboxes", "48", "--cgroup-parent", cgroup_parent(n), "--keep-sandboxes-on-exit",
         "false"},
        dir_ + "/" + n.name + ".log");
  }

  static std::string cgroup_parent(const Node& n) {
    return "/swissbox-sched-" + dir_.substr(dir_.rfind('-') + 1) + "-" + n.name;
  }

  static void TearDownTestSuite() {
    for (pid_t pid : scheduler_pids_) EXPECT_TRUE(stop_daemon(pid, 20s));
    for (auto& n : nodes_) {
      if (n.pid > 0) {
        EXPECT_TRUE(stop_daemon(n.pid)) << n.name;
      }
      EXPECT_TRUE(runsc_list(runsc_, n.dir + "/runsc").empty()) << n.name;
      EXPECT_EQ(remove_cgroup_parent(cgroup_parent(n)), "") << n.name;
    }
    if (!::testing::Test::HasFailure() && !dir_.empty()) (void)fs::remove_tree(dir_);
    nodes_.clear();
    schedulers_.clear();
    scheduler_pids_.clear();
  }

  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
  }

  static std::pair<unsigned, json> call(const std::string& server, const std::string& method,
                                        const std::string& path, const std::string& body = {},
                                        http::Headers headers = {}) {
    http::Client c(server, 60s);
    auto r = c.request(method, path, body, headers);
    if (!r) return {0, json()};
    return {r->status, json::parse(r->body, nullptr, false)};
  }
  static std::string raw(const std::string& server, const std::string& method,
                         const std::string& path, const std::string& body = {},
                         http::Headers headers = {}) {
    http::Client c(server, 60s);
    auto r = c.request(method, path, body, headers);
    return r ? r->body : r.error().to_string();
  }

  static inline std::string skip_, dir_, runsc_;
  static inline std::vector<Node> nodes_;
  static inline std::vector<std::string> schedulers_;
  static inline std::vector<pid_t> scheduler_pids_;
};

TEST_F(Scheduling, SixtyCreatesSpreadOverTheSwissNodesOnly) {
  std::map<std::string, int> per_node;
  std::vector<std::string> ids, owners;
  for (int i = 0; i < 60; ++i) {
    auto [status, sb] = call(schedulers_[i % 2], "POST", "/v1/sandboxes", "{}");
    ASSERT_EQ(status, 201u) << sb.dump();
    per_node[sb.value("node", "")]++;
    ids.push_back(sb.value("id", ""));
    owners.push_back(sb.value("node", ""));
  }
  EXPECT_EQ(per_node.count("fra"), 0u);
  for (const char* swiss : {"gva", "dk"}) {
    EXPECT_GE(per_node[swiss], 24) << swiss;
    EXPECT_LE(per_node[swiss], 36) << swiss;
  }
  // Exec, files and SSE through either replica give the bytes the agent gives directly.
  const std::string& id = ids[0];
  std::string direct = nodes_[owners[0] == "gva" ? 0 : 1].address();
  std::string exec_body = R"({"command":"printf 'a\\0b\\n'; echo err >&2"})";
  auto via = call(schedulers_[1], "POST", "/v1/sandboxes/" + id + "/exec", exec_body).second;
  auto own = call(direct, "POST", "/v1/sandboxes/" + id + "/exec", exec_body).second;
  EXPECT_EQ(via["stdout"], own["stdout"]);
  EXPECT_EQ(via["stderr"], "err\n");
  // 3 MB: above what the scheduler relays whole, so both directions go piece by piece.
  std::string bytes(3000000, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 7);
  EXPECT_EQ(call(schedulers_[0], "PUT", "/v1/sandboxes/" + id + "/files?path=blob", bytes).first, 200u);
  EXPECT_EQ(raw(schedulers_[1], "GET", "/v1/sandboxes/" + id + "/files?path=blob"), bytes);
  EXPECT_EQ(raw(direct, "GET", "/v1/sandboxes/" + id + "/files?path=blob"), bytes);
  std::string sse_body = R"({"command":"echo one; echo two"})";
  http::Headers sse = {{"Accept", "text/event-stream"}};
  std::string via_sse = raw(schedulers_[0], "POST", "/v1/sandboxes/" + id + "/exec", sse_body, sse);
  EXPECT_NE(via_sse.find("event: stdout"), std::string::npos) << via_sse;
  EXPECT_NE(via_sse.find("event: exit"), std::string::npos) << via_sse;
  // A one-shot is placed and streamed in one call.
  std::string oneshot = raw(schedulers_[1], "POST", "/v1/execute",
                            R"({"language":"bash","code":"echo placed"})", sse);
  EXPECT_NE(oneshot.find("placed"), std::string::npos) << oneshot;
  EXPECT_NE(oneshot.find("event: exit"), std::string::npos) << oneshot;
  // Lists merge every node's sandboxes.
  EXPECT_EQ(call(schedulers_[1], "GET", "/v1/sandboxes").second["sandboxes"].size(), 60u);
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(call(schedulers_[i % 2], "DELETE", "/v1/sandboxes/" + ids[i]).first, 204u);
  }
}

TEST_F(Scheduling, LostNodeIsAvoidedAnswers503AndComesBack) {
  auto [s1, on_gva] = call(schedulers_[0], "POST", "/v1/sandboxes", R"({"zone":"ch-gva-2"})");
  ASSERT_EQ(s1, 201u) << on_gva.dump();
  std::string gva_id = on_gva.value("id", "");
  call(schedulers_[0], "POST", "/v1/sandboxes/" + gva_id + "/exec", R"({"command":"echo hi > f"})");
  Node& gva = nodes_[0];
  kill(gva.pid, SIGKILL);
  waitpid(gva.pid, nullptr, 0);
  gva.pid = -1;
  // At once (a refused or unreachable candidate is retried elsewhere) and after the node
  // has gone silent, every create lands on dk.
  for (int i = 0; i < 6; ++i) {
    auto [s, sb] = call(schedulers_[i % 2], "POST", "/v1/sandboxes", "{}");
    EXPECT_EQ(s, 201u) << sb.dump();
    EXPECT_EQ(sb.value("node", ""), "dk");
    call(schedulers_[0], "DELETE", "/v1/sandboxes/" + sb.value("id", ""));
    if (i == 2) std::this_thread::sleep_for(3500ms);
  }
  auto [s503, err] = call(schedulers_[1], "POST", "/v1/sandboxes/" + gva_id + "/exec",
                          R"({"command":"true"})");
  EXPECT_EQ(s503, 503u) << err.dump();
  EXPECT_NE(err["error"].value("message", "").find("has not reported"), std::string::npos);
  // The agent restarts, takes its sandbox back, and the schedulers route to it again.
  start_agent(gva);
  ASSERT_TRUE(wait_ready(gva.address()));
  std::this_thread::sleep_for(1500ms);
  for (const auto& s : schedulers_) {
    auto r = call(s, "POST", "/v1/sandboxes/" + gva_id + "/exec", R"({"command":"cat f"})");
    EXPECT_EQ(r.second.value("stdout", ""), "hi\n") << r.second.dump();
  }
  call(schedulers_[0], "DELETE", "/v1/sandboxes/" + gva_id);
}

TEST_F(Scheduling, DrainedNodeGetsNothingNewAndKeepsServing) {
  auto [s, on_dk] = call(schedulers_[0], "POST", "/v1/sandboxes", R"({"zone":"ch-dk-2"})");
  ASSERT_EQ(s, 201u);
  ProcessOptions drain;
  drain.argv = {std::string(SWISSBOX_BIN_DIR) + "/swissboxctl", "--socket",
                nodes_[1].dir + "/agent.sock", "drain"};
  ASSERT_TRUE(run_process(drain).ok());
  std::this_thread::sleep_for(1500ms);  // both replicas hear of it
  for (int i = 0; i < 8; ++i) {
    auto [st, sb] = call(schedulers_[i % 2], "POST", "/v1/sandboxes", "{}");
    EXPECT_EQ(sb.value("node", ""), "gva") << sb.dump();
    call(schedulers_[0], "DELETE", "/v1/sandboxes/" + sb.value("id", ""));
  }
  auto pinned = call(schedulers_[1], "POST", "/v1/sandboxes", R"({"zone":"ch-dk-2"})");
  EXPECT_EQ(pinned.first, 429u) << pinned.second.dump();
  auto r = call(schedulers_[1], "POST", "/v1/sandboxes/" + on_dk.value("id", "") + "/exec",
                R"({"command":"echo served"})");
  EXPECT_EQ(r.second.value("stdout", ""), "served\n");
  drain.argv.back() = "undrain";
  ASSERT_TRUE(run_process(drain).ok());
  call(schedulers_[0], "DELETE", "/v1/sandboxes/" + on_dk.value("id", ""));
}

}  // namespace
}  // namespace swissbox::testing
