// Tenants on real runsc (issue 21): quotas from the token file, held under concurrency
// (20 creates at once against a quota of 5 give exactly 5 sandboxes), for suspended
// sandboxes and for resumes; a refusal is 429 and names the quota.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <atomic>
#include <thread>

#include "support/agent_fixture.h"

namespace swissbox::testing {
namespace {

constexpr const char* kTokenA = "tenant-a-token-0123456789";
constexpr const char* kTokenB = "tenant-b-token-0123456789";

class Tenants : public AgentRunsc {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/swissbox-tokens-XXXXXX";
    tokens_dir_ = mkdtemp(tmpl);
    std::string tokens = tokens_dir_ + "/tokens.json";
    (void)fs::write_file_atomic(
        tokens, fmt::format(R"({{"{}": {{"tenant": "a", "quota": {{"sandboxes": 5, "suspended": 1, "workspace_mb": 64}}}},
                                 "{}": "b"}})",
                            kTokenA, kTokenB));
    extra_args_ = {"--token-file", tokens};
    AgentRunsc::SetUpTestSuite();
  }
  static void TearDownTestSuite() {
    AgentRunsc::TearDownTestSuite();
    (void)fs::remove_tree(tokens_dir_);
  }

  static Result<http::ClientResponse> call(const char* token, const std::string& method, const std::string& path,
                                           const std::string& body = "") {
    http::Client c(tcp());
    return c.request(method, path, body, {{"Authorization", std::string("Bearer ") + token}});
  }
  static std::string create(const char* token) {
    auto r = call(token, "POST", "/v1/sandboxes", "{}");
    EXPECT_TRUE(r.ok() && r->status == 201u) << (r.ok() ? r->body : r.error().to_string());
    return r.ok() ? json::parse(r->body, nullptr, false).value("id", "") : "";
  }

  static json usage(const char* token, const std::string& tenant) {
    auto r = call(token, "GET", "/v1/tenants/" + tenant + "/usage");
    EXPECT_TRUE(r.ok() && r->status == 200u) << (r.ok() ? r->body : r.error().to_string());
    return r.ok() ? json::parse(r->body, nullptr, false) : json();
  }
  // Regular files under dir_ (up to 64 MiB each: sparse disk templates are left out) that
  // hold `needle`.
  static std::vector<std::string> files_holding(const std::string& needle, const std::string& dir) {
    std::vector<std::string> found;
    for (const auto& name : fs::list_dir(dir)) {
      std::string path = dir + "/" + name;
      struct stat st {};
      if (lstat(path.c_str(), &st) != 0) continue;
      if (S_ISDIR(st.st_mode)) {
        for (auto& f : files_holding(needle, path)) found.push_back(std::move(f));
      } else if (S_ISREG(st.st_mode) && st.st_size < (64 << 20)) {
        auto text = fs::read_file(path, 64 << 20);
        if (text && text->find(needle) != std::string::npos) found.push_back(path);
      }
    }
    return found;
  }

  static inline std::string tokens_dir_;
};

TEST_F(Tenants, TwentyConcurrentCreatesAgainstAQuotaOfFiveGiveExactlyFive) {
  std::atomic<int> made{0}, refused{0}, other{0};
  std::vector<std::string> ids(20);
  std::vector<std::thread> clients;
  for (int i = 0; i < 20; ++i) {
    clients.emplace_back([&, i] {
      auto r = call(kTokenA, "POST", "/v1/sandboxes", "{}");
      if (r.ok() && r->status == 201u) {
        made++;
        ids[i] = json::parse(r->body, nullptr, false).value("id", "");
      } else if (r.ok() && r->status == 429u && r->body.find("quota.sandboxes") != std::string::npos) {
        refused++;
      } else {
        other++;
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(made.load(), 5);
  EXPECT_EQ(refused.load(), 15);
  EXPECT_EQ(other.load(), 0);
  // Another tenant is not held by a's quota.
  std::string b = create(kTokenB);
  EXPECT_FALSE(b.empty());
  // One of a's sandboxes sleeps: its place frees up for a create, and its resume is then
  // past the quota; its quota of one suspended sandbox refuses a second suspend.
  std::vector<std::string> live;
  for (const auto& id : ids) {
    if (!id.empty()) live.push_back(id);
  }
  ASSERT_EQ(live.size(), 5u);
  ASSERT_EQ(call(kTokenA, "POST", "/v1/sandboxes/" + live[0] + "/suspend", "{}")->status, 200u);
  auto second = call(kTokenA, "POST", "/v1/sandboxes/" + live[1] + "/suspend", "{}");
  EXPECT_EQ(second->status, 429u);
  EXPECT_NE(second->body.find("quota.suspended"), std::string::npos) << second->body;
  std::string sixth = create(kTokenA);
  EXPECT_FALSE(sixth.empty());
  auto resume = call(kTokenA, "POST", "/v1/sandboxes/" + live[0] + "/exec", R"({"command": "true"})");
  EXPECT_EQ(resume->status, 429u);
  EXPECT_NE(resume->body.find("quota.sandboxes"), std::string::npos) << resume->body;
  // With one deleted, the resume fits.
  EXPECT_EQ(call(kTokenA, "DELETE", "/v1/sandboxes/" + sixth)->status, 204u);
  auto resumed = call(kTokenA, "POST", "/v1/sandboxes/" + live[0] + "/exec", R"({"command": "true"})");
  EXPECT_EQ(resumed->status, 200u) << resumed->body;
  for (const auto& id : live) EXPECT_EQ(call(kTokenA, "DELETE", "/v1/sandboxes/" + id)->status, 204u);
  EXPECT_EQ(call(kTokenB, "DELETE", "/v1/sandboxes/" + b)->status, 204u);
}

TEST_F(Tenants, UsageAddsUpAcrossACrashAndADeleteMidResumeLeavesNothingOfTheTenant) {
  const std::string marker = "tenant-b-secret-" + std::to_string(getpid()) + "-" + std::to_string(time(nullptr));
  std::string busy = create(kTokenB), sleeper = create(kTokenB);
  for (int i = 0; i < 3; ++i) {
    auto r = call(kTokenB, "POST", "/v1/sandboxes/" + busy + "/exec",
                  json{{"command", "python3 -c 'sum(range(3000000))'; echo " + marker + " > m.txt"}}.dump());
    EXPECT_EQ(r->status, 200u);
  }
  EXPECT_EQ(call(kTokenB, "POST", "/v1/sandboxes/" + sleeper + "/exec", json{{"command", "echo " + marker + " > m.txt"}}.dump())->status, 200u);
  ASSERT_EQ(call(kTokenB, "POST", "/v1/sandboxes/" + sleeper + "/suspend", "{}")->status, 200u);
  // The usage rounds (one a second, later on a loaded machine) have read the sandboxes.
  json before;
  for (int i = 0; i < 100; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    before = usage(kTokenB, "b");
    const json& so_far = before["usage"];
    if (so_far.value("cpu_seconds", 0.0) > 0 && so_far.value("memory_gb_seconds", 0.0) > 0 &&
        so_far.value("disk_gb_hours", 0.0) > 0)
      break;
  }
  const json& u = before["usage"];
  EXPECT_EQ(u.value("executions", 0), 4) << before.dump();
  EXPECT_GE(u.value("sandboxes_created", 0), 2);
  EXPECT_GT(u.value("cpu_seconds", 0.0), 0.0);
  EXPECT_GT(u.value("memory_gb_seconds", 0.0), 0.0);
  EXPECT_GT(u.value("disk_gb_hours", 0.0), 0.0);
  EXPECT_EQ(before.value("running", 0), 1);
  EXPECT_EQ(before.value("suspended", 0), 1);
  EXPECT_EQ(call(kTokenA, "GET", "/v1/tenants/b/usage")->status, 404u) << "a tenant sees only its own bill";

  // kill -9 after the ledger's next save (every 5 s, seen in its file): the numbers are all
  // there afterwards.
  for (int i = 0; i < 150; ++i) {
    auto text = fs::read_file(dir_ + "/state/tenants/usage.json");
    json saved = json::parse(text.ok() ? *text : "{}", nullptr, false);
    const json b = saved.is_object() && saved["tenants"].is_object() ? saved["tenants"].value("b", json::object()) : json();
    if (b.is_object() && b.value("executions", 0) == 4 && b.value("cpu_seconds", 0.0) >= u.value("cpu_seconds", 0.0))
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  crash_agent();
  ASSERT_TRUE(launch_agent());
  EXPECT_EQ(call(kTokenB, "POST", "/v1/sandboxes/" + busy + "/exec", json{{"command", "true"}}.dump())->status, 200u);
  json after = usage(kTokenB, "b");
  EXPECT_EQ(after["usage"].value("executions", 0), 5) << after.dump();
  EXPECT_GE(after["usage"].value("cpu_seconds", 0.0), u.value("cpu_seconds", 0.0));

  // The suspended one is resuming (its next call) when the tenant is deleted.
  std::thread waking([&] { (void)call(kTokenB, "POST", "/v1/sandboxes/" + sleeper + "/exec", R"({"command": "true"})"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(40));
  http::Client local("unix:" + dir_ + "/agent.sock");
  auto deleted = local.request("DELETE", "/v1/tenants/b");
  waking.join();
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(deleted->status, 200u) << deleted->body;
  EXPECT_EQ(json::parse(deleted->body, nullptr, false).value("sandboxes_deleted", 0), 2) << deleted->body;
  // Nothing of it is left: no sandbox, process, directory, record or usage, and its bytes
  // are nowhere on the node's disk.
  auto listed = json::parse(call(kTokenB, "GET", "/v1/sandboxes")->body, nullptr, false);
  EXPECT_TRUE(listed["sandboxes"].empty()) << listed.dump();
  for (const auto& id : {busy, sleeper}) {
    for (const auto& r : runsc_ids()) EXPECT_NE(r, id);
    EXPECT_EQ(processes_mentioning(id), 0);
    EXPECT_FALSE(fs::exists(dir_ + "/state/sandboxes/" + id));
    EXPECT_TRUE(files_holding(id, dir_ + "/state").empty());
  }
  EXPECT_TRUE(files_holding(marker, dir_).empty());
  json gone = usage(kTokenB, "b");
  EXPECT_EQ(gone["usage"].value("executions", -1), 0) << gone.dump();
  // Its usage record is gone; what is left is the record that it was deleted (and when).
  auto text = fs::read_file(dir_ + "/state/tenants/usage.json");
  json file = json::parse(text.ok() ? *text : "{}", nullptr, false);
  EXPECT_FALSE(file["tenants"].contains("b")) << file.dump();
  EXPECT_TRUE(file["deleted"].contains("b")) << file.dump();
  // Deleting a tenant needs an admin.
  EXPECT_EQ(call(kTokenA, "DELETE", "/v1/tenants/a")->status, 403u);
}

TEST_F(Tenants, AWorkspaceOutlivesItsSandboxesStaysWithItsTenantAndGoesWithIt) {
  auto made = call(kTokenA, "POST", "/v1/sandboxes", R"({"workspace": "proj"})");
  ASSERT_EQ(made->status, 201u) << made->body;
  std::string first = json::parse(made->body).value("id", "");
  EXPECT_EQ(json::parse(made->body).value("workspace", ""), "proj");
  auto run = [&](const char* token, const std::string& id, const std::string& command) {
    auto r = call(token, "POST", "/v1/sandboxes/" + id + "/exec", json{{"command", command}}.dump());
    return r.ok() ? json::parse(r->body, nullptr, false) : json();
  };
  EXPECT_EQ(run(kTokenA, first, "echo kept > /home/user/workspace/f && cat /home/user/workspace/f").value("stdout", ""),
            "kept\n");
  // One sandbox at a time has it.
  auto twice = call(kTokenA, "POST", "/v1/sandboxes", R"({"workspace": "proj"})");
  EXPECT_EQ(twice->status, 409u) << twice->body;
  EXPECT_EQ(call(kTokenA, "DELETE", "/v1/sandboxes/" + first)->status, 204u);
  std::string second = json::parse(call(kTokenA, "POST", "/v1/sandboxes", R"({"workspace": "proj"})")->body).value("id", "");
  ASSERT_FALSE(second.empty());
  EXPECT_EQ(run(kTokenA, second, "cat /home/user/workspace/f").value("stdout", ""), "kept\n");
  // Its size is the tenant's quota.workspace_mb (64).
  json full = run(kTokenA, second, "dd if=/dev/zero of=/home/user/workspace/big bs=1M count=100 2>&1");
  EXPECT_NE(full.value("exit_code", 0), 0) << full.dump();
  EXPECT_NE(full.value("stdout", "").find("No space left"), std::string::npos) << full.dump();
  // Another tenant's workspace of the same name is its own.
  std::string other = json::parse(call(kTokenB, "POST", "/v1/sandboxes", R"({"workspace": "proj"})")->body).value("id", "");
  ASSERT_FALSE(other.empty());
  EXPECT_EQ(run(kTokenB, other, "ls -A /home/user/workspace").value("stdout", ""), "");
  // A tenant's delete takes its workspaces too.
  http::Client local("unix:" + dir_ + "/agent.sock");
  for (const char* t : {"a", "b"}) {
    auto deleted = local.request("DELETE", std::string("/v1/tenants/") + t);
    EXPECT_EQ(deleted->status, 200u) << deleted->body;
    EXPECT_FALSE(fs::exists(dir_ + "/state/tenants/" + t));
  }
  EXPECT_EQ(mounts_under(dir_ + "/state/tenants"), 0);
}

// A delete the scheduler finishes late on a node that was away (?before=T) takes what the
// tenant had there before T and keeps what it made since; the node records and reports it.
TEST_F(Tenants, ADeleteFinishedLateKeepsWhatTheTenantMadeSinceAndIsReported) {
  auto made_before = call(kTokenB, "POST", "/v1/sandboxes", R"({"workspace": "old"})");
  ASSERT_EQ(made_before->status, 201u) << made_before->body;
  std::string before = json::parse(made_before->body).value("id", "");
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const double at = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  auto made_after = call(kTokenB, "POST", "/v1/sandboxes", R"({"workspace": "new"})");
  ASSERT_EQ(made_after->status, 201u) << made_after->body;
  std::string after = json::parse(made_after->body).value("id", "");

  http::Client local("unix:" + dir_ + "/agent.sock");
  EXPECT_EQ(local.request("DELETE", "/v1/tenants/b?before=yesterday")->status, 400u);
  auto late = local.request("DELETE", fmt::format("/v1/tenants/b?before={:.3f}", at));
  ASSERT_EQ(late->status, 200u) << late->body;
  EXPECT_EQ(json::parse(late->body).value("sandboxes_deleted", -1), 1);
  EXPECT_EQ(call(kTokenB, "GET", "/v1/sandboxes/" + before)->status, 404u);
  auto still = call(kTokenB, "POST", "/v1/sandboxes/" + after + "/exec", R"({"command": "echo still"})");
  EXPECT_EQ(json::parse(still->body, nullptr, false).value("stdout", ""), "still\n") << still->body;
  EXPECT_FALSE(fs::exists(dir_ + "/state/tenants/b/workspaces/old"));
  EXPECT_TRUE(fs::exists(dir_ + "/state/tenants/b/workspaces/new/disk.img"));
  json node = json::parse(local.request("GET", "/v1/node")->body);
  EXPECT_NEAR(node["tenant_deletes"].value("b", 0.0), at, 0.001) << node.dump();
  EXPECT_EQ(node["workspaces"].value("b", json::array()), json::array({"new"})) << node.dump();

  auto all = local.request("DELETE", "/v1/tenants/b");
  ASSERT_EQ(all->status, 200u) << all->body;
  EXPECT_FALSE(fs::exists(dir_ + "/state/tenants/b"));
  node = json::parse(local.request("GET", "/v1/node")->body);
  EXPECT_FALSE(node["workspaces"].contains("b")) << node.dump();
  EXPECT_GT(node["tenant_deletes"].value("b", 0.0), at);
  // A workspace is left for the agent's stop: its mount goes then, its image stays (the
  // suite's tear-down checks that no mount is left).
  auto left = call(kTokenA, "POST", "/v1/sandboxes", R"({"workspace": "left"})");
  EXPECT_EQ(left->status, 201u) << left->body;
}

}  // namespace
}  // namespace swissbox::testing
