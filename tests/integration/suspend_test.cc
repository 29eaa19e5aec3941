// Suspend and resume on real runsc (issue 21): a checkpoint on the node's disk and no
// process while suspended; files, background processes and a context's variables back
// after a resume, explicit or by the next call; and a suspended sandbox that an agent
// killed with -9 finds again.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "support/agent_fixture.h"

namespace swissbox::testing {
namespace {

using json = nlohmann::json;

class Suspend : public AgentRunsc {
 protected:
  static json get(const std::string& id) {
    http::Client c(tcp());
    auto r = c.request("GET", "/v1/sandboxes/" + id);
    return r.ok() ? json::parse(r->body, nullptr, false) : json();
  }
  static bool running(const std::string& id) {
    for (const auto& r : runsc_ids()) {
      if (r == id) return true;
    }
    return false;
  }
};

TEST_F(Suspend, FilesProcessesAndContextStateComeBack) {
  std::string id = create();
  exec(id, {{"command", "echo kept > f"}});
  exec(id, {{"command", "sleep 600 >/dev/null 2>&1 &"}, {"background", true}});
  std::string ctx = post("/v1/sandboxes/" + id + "/contexts", {{"language", "python"}}, 201).value("id", "");
  post("/v1/sandboxes/" + id + "/code", {{"context_id", ctx}, {"code", "x = 41"}});

  json suspended = post("/v1/sandboxes/" + id + "/suspend", json::object());
  EXPECT_EQ(suspended.value("state", ""), "suspended") << suspended.dump();
  EXPECT_GT(suspended.value("checkpoint_bytes", 0), 0) << suspended.dump();
  EXPECT_FALSE(running(id)) << "a suspended sandbox has no runsc container";
  EXPECT_EQ(processes_mentioning(id), 0) << "a suspended sandbox has no host process";
  EXPECT_EQ(get(id).value("state", ""), "suspended");

  json resumed = post("/v1/sandboxes/" + id + "/resume", json::object());
  EXPECT_EQ(resumed.value("state", ""), "active") << resumed.dump();
  EXPECT_EQ(exec(id, {{"command", "cat f"}}).value("stdout", ""), "kept\n");
  EXPECT_NE(exec(id, {{"command", "ps -eo comm"}}).value("stdout", "").find("sleep"), std::string::npos);
  json cell = post("/v1/sandboxes/" + id + "/code", {{"context_id", ctx}, {"code", "x + 1"}});
  EXPECT_NE(cell.dump().find("\"text\":\"42\""), std::string::npos) << cell.dump();
}

TEST_F(Suspend, TheNextCallResumesAndAKilledAgentFindsItSuspended) {
  std::string id = create();
  exec(id, {{"command", "echo before > f"}});
  post("/v1/sandboxes/" + id + "/suspend", json::object());
  crash_agent();
  ASSERT_TRUE(launch_agent()) << "see " << dir_ << "/agent.log";
  EXPECT_EQ(get(id).value("state", ""), "suspended");
  // An exec resumes it on the way.
  json r = exec(id, {{"command", "cat f"}});
  EXPECT_EQ(r.value("stdout", ""), "before\n") << r.dump();
  EXPECT_EQ(get(id).value("state", ""), "active");
  // A second suspend and a delete while suspended leave nothing.
  post("/v1/sandboxes/" + id + "/suspend", json::object());
  http::Client c(tcp());
  EXPECT_EQ(c.request("DELETE", "/v1/sandboxes/" + id)->status, 204u);
}

TEST_F(Suspend, ABusySandboxIsNotSuspendedAndAnActiveOneIsNotResumed) {
  std::string id = create();
  json again = post("/v1/sandboxes/" + id + "/resume", json::object());  // nothing to do
  EXPECT_EQ(again.value("state", ""), "active");
  std::thread busy([&] { exec(id, {{"command", "sleep 2"}}); });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  json refused = post("/v1/sandboxes/" + id + "/suspend", json::object(), 409);
  EXPECT_NE(refused.dump().find("in flight"), std::string::npos) << refused.dump();
  busy.join();
  EXPECT_EQ(get(id).value("state", ""), "active");
  post("/v1/sandboxes/nope/suspend", json::object(), 400);
  post("/v1/sandboxes/sbx-it-000000000000/suspend", json::object(), 404);
}

TEST_F(Suspend, E2bPauseIsASuspendAndConnectResumes) {
  json made = post("/sandboxes", {{"templateID", "base"}}, 201);
  std::string id = made.value("sandboxID", "");
  exec(id, {{"command", "echo e2b > f"}});
  http::Client c(tcp());
  EXPECT_EQ(c.request("POST", "/sandboxes/" + id + "/pause", "{}")->status, 204u);
  EXPECT_EQ(c.request("POST", "/sandboxes/" + id + "/pause", "{}")->status, 409u);  // already paused
  auto info = json::parse(c.request("GET", "/sandboxes/" + id)->body, nullptr, false);
  EXPECT_EQ(info.value("state", ""), "paused") << info.dump();
  auto paused = json::parse(c.request("GET", "/v2/sandboxes?state=paused")->body, nullptr, false);
  ASSERT_TRUE(paused.is_array()) << paused.dump();
  EXPECT_NE(paused.dump().find(id), std::string::npos);
  auto running = json::parse(c.request("GET", "/v2/sandboxes?state=running")->body, nullptr, false);
  EXPECT_EQ(running.dump().find(id), std::string::npos);
  auto connected = c.request("POST", "/sandboxes/" + id + "/connect", "{}");
  EXPECT_EQ(connected->status, 201u) << connected->body;  // resumed
  EXPECT_EQ(c.request("POST", "/sandboxes/" + id + "/connect", "{}")->status, 200u);  // was running
  EXPECT_EQ(exec(id, {{"command", "cat f"}}).value("stdout", ""), "e2b\n");
}

}  // namespace
}  // namespace swissbox::testing
