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
  // Polls a sandbox's state until it is `want` or 10 s passed (the tick runs every second).
  static std::string wait_for_state(const std::string& id, const std::string& want) {
    std::string state;
    for (int i = 0; i < 100 && state != want; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      state = get(id).value("state", "gone");
    }
    return state;
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

TEST_F(Suspend, ACheckpointThatCannotBeRestoredLeavesTheSandboxFailedWithTheReason) {
  std::string id = create();
  post("/v1/sandboxes/" + id + "/suspend", json::object());
  const std::string image = dir_ + "/state/sandboxes/" + id + "/checkpoint/checkpoint.img";
  ASSERT_TRUE(fs::exists(image));
  ASSERT_TRUE(fs::write_file_atomic(image, std::string(4096, 'x')).ok());
  json refused = post("/v1/sandboxes/" + id + "/exec", {{"command", "echo hi"}}, 503);
  EXPECT_NE(refused.dump().find("could not be resumed"), std::string::npos) << refused.dump();
  json info = get(id);
  EXPECT_EQ(info.value("state", ""), "failed") << info.dump();
  EXPECT_NE(info.value("failure", "").find("resume failed"), std::string::npos) << info.dump();
  EXPECT_FALSE(running(id)) << "no half-started sandbox";
  // Its destroy runs in the background (a `runsc delete` names the sandbox too).
  for (int i = 0; i < 100 && processes_mentioning(id) > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(processes_mentioning(id), 0);
  http::Client c(tcp());
  EXPECT_EQ(c.request("DELETE", "/v1/sandboxes/" + id)->status, 204u);
}

TEST_F(Suspend, AnIdleSandboxSleepsAndTheNextCallWakesIt) {
  std::string id = post("/v1/sandboxes", {{"idle_timeout_s", 1}}, 201).value("id", "");
  json made = get(id);
  EXPECT_EQ(made.value("on_idle", ""), "suspend") << made.dump();
  exec(id, {{"command", "echo slept > f"}});
  EXPECT_EQ(wait_for_state(id, "suspended"), "suspended");
  EXPECT_FALSE(running(id));
  EXPECT_EQ(exec(id, {{"command", "cat f"}}).value("stdout", ""), "slept\n");
  // on_idle delete: it ends instead.
  std::string gone = post("/v1/sandboxes", {{"idle_timeout_s", 1}, {"on_idle", "delete"}}, 201).value("id", "");
  EXPECT_EQ(wait_for_state(gone, "gone"), "gone");
  http::Client c(tcp());
  EXPECT_EQ(c.request("DELETE", "/v1/sandboxes/" + id)->status, 204u);
}

TEST_F(Suspend, ASuspendedSandboxIsDeletedAfterItsRetention) {
  std::string id = post("/v1/sandboxes", {{"retention_s", 2}}, 201).value("id", "");
  post("/v1/sandboxes/" + id + "/suspend", json::object());
  std::string dir = dir_ + "/state/sandboxes/" + id;
  EXPECT_EQ(wait_for_state(id, "gone"), "gone");
  // Its checkpoint and disk went with it.
  for (int i = 0; i < 50 && fs::exists(dir); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(fs::exists(dir)) << dir;
}

TEST_F(Suspend, E2bAutoPausePausesAtTheTimeoutInsteadOfKilling) {
  http::Client c(tcp());
  std::string paused = post("/sandboxes", {{"templateID", "base"}, {"timeout", 1}, {"autoPause", true}}, 201)
                           .value("sandboxID", "");
  std::string killed = post("/sandboxes", {{"templateID", "base"}, {"timeout", 1}}, 201).value("sandboxID", "");
  auto info = json::parse(c.request("GET", "/sandboxes/" + paused)->body, nullptr, false);
  EXPECT_EQ(info["lifecycle"].value("onTimeout", ""), "pause") << info.dump();
  EXPECT_EQ(wait_for_state(paused, "suspended"), "suspended");
  EXPECT_EQ(wait_for_state(killed, "gone"), "gone");
  auto connected = c.request("POST", "/sandboxes/" + paused + "/connect", "{\"timeout\": 60}");
  EXPECT_EQ(connected->status, 201u) << connected->body;
  EXPECT_EQ(get(paused).value("state", ""), "active");
  EXPECT_EQ(c.request("DELETE", "/sandboxes/" + paused)->status, 204u);
}

}  // namespace
}  // namespace swissbox::testing
