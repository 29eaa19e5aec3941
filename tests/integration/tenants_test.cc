// Tenants on real runsc (issue 21): quotas from the token file, held under concurrency
// (20 creates at once against a quota of 5 give exactly 5 sandboxes), for suspended
// sandboxes and for resumes; a refusal is 429 and names the quota.
#include <fmt/format.h>
#include <gtest/gtest.h>

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
        tokens, fmt::format(R"({{"{}": {{"tenant": "a", "quota": {{"sandboxes": 5, "suspended": 1}}}},
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

}  // namespace
}  // namespace swissbox::testing
