// envd's directory watches through the agent's E2B surface, with the real runner (inotify
// on the host here, gVisor's in a sandbox): the unary watchers the Python SDK polls, the
// WatchDir stream the JS SDK reads, their errors and their limit.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/connect.h"
#include "common/limits.h"
#include "component/api_fixture.h"

namespace swissbox {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

class E2bWatchTest : public testing::AgentApiTest {
 protected:
  void SetUp() override {
    AgentApiTest::SetUp();
    Start({});
    auto [s, sb] = Call("POST", "/sandboxes", R"({"templateID":"base"})");
    ASSERT_EQ(s, 201u) << sb;
    id_ = sb.value("sandboxID", "");
    token_ = sb.value("envdAccessToken", "");
    // The runner runs on the host here: its workspace is a temporary directory.
    workspace_ = Exec("pwd");
    workspace_.pop_back();
    dir_ = workspace_ + "/w";
    Exec("mkdir w");
  }

  std::string Exec(const std::string& command) {
    auto [s, r] = Call("POST", "/v1/sandboxes/" + id_ + "/exec", json{{"command", command}}.dump());
    EXPECT_EQ(s, 200u) << r;
    EXPECT_EQ(r.value("exit_code", -1), 0) << r;
    return r.value("stdout", "");
  }

  http::Headers EnvdHeaders(std::string_view content_type) const {
    return {{"E2b-Sandbox-Id", id_}, {"X-Access-Token", token_}, {"Content-Type", std::string(content_type)},
            {"Connect-Protocol-Version", "1"}};
  }

  std::pair<unsigned, json> Rpc(const std::string& method, const json& msg) {
    auto r = client_->request("POST", "/filesystem.Filesystem/" + method, msg.dump(),
                              EnvdHeaders("application/json"));
    EXPECT_TRUE(r.ok());
    if (!r.ok()) return {0, {}};
    return {r->status, json::parse(r->body, nullptr, false)};
  }

  // The events GetWatcherEvents has for `watcher` once `count` have come (or 5 s passed).
  std::vector<std::string> Poll(const std::string& watcher, size_t count) {
    std::vector<std::string> seen;
    testing::wait_until([&] {
      auto [s, r] = Rpc("GetWatcherEvents", {{"watcherId", watcher}});
      EXPECT_EQ(s, 200u) << r;
      for (const auto& e : r.value("events", json::array())) {
        seen.push_back(e.value("type", "") + " " + e.value("name", ""));
      }
      return seen.size() >= count;
    });
    return seen;
  }

  std::string id_, token_, workspace_, dir_;
};

// The messages of a Connect stream's body, and its end-stream JSON.
struct Envelopes {
  std::vector<json> messages;
  json end;
};
Envelopes ParseEnvelopes(std::string_view body) {
  Envelopes out;
  while (body.size() >= 5) {
    auto flags = static_cast<unsigned char>(body[0]);
    size_t n = (static_cast<unsigned char>(body[1]) << 24) | (static_cast<unsigned char>(body[2]) << 16) |
               (static_cast<unsigned char>(body[3]) << 8) | static_cast<unsigned char>(body[4]);
    if (body.size() < 5 + n) break;
    json j = json::parse(body.substr(5, n), nullptr, false);
    (flags & 2 ? out.end : (out.messages.push_back(j), out.messages.back())) = j;
    body.remove_prefix(5 + n);
  }
  return out;
}

TEST_F(E2bWatchTest, AWatcherKeepsTheChangesUntilTheyAreFetched) {
  auto [s, created] = Rpc("CreateWatcher", {{"path", dir_}, {"recursive", true}});
  ASSERT_EQ(s, 200u) << created;
  std::string watcher = created.value("watcherId", "");
  ASSERT_FALSE(watcher.empty());
  // A new directory is watched once the runner has seen it appear (inotify's way: what
  // happens in it before that is not seen), so the test waits for it.
  Exec("mkdir w/sub");
  EXPECT_EQ(Poll(watcher, 1), std::vector<std::string>{"EVENT_TYPE_CREATE sub"});
  Exec("cd w && echo hi > sub/f && mv sub/f g && chmod 600 g && rm g");
  auto seen = Poll(watcher, 6);
  const std::vector<std::string> want = {"EVENT_TYPE_CREATE sub/f", "EVENT_TYPE_WRITE sub/f",
                                         "EVENT_TYPE_RENAME sub/f", "EVENT_TYPE_CREATE g",
                                         "EVENT_TYPE_CHMOD g",      "EVENT_TYPE_REMOVE g"};
  EXPECT_EQ(seen, want);
  // Fetched once: the next call has nothing new.
  auto [s2, again] = Rpc("GetWatcherEvents", {{"watcherId", watcher}});
  EXPECT_EQ(s2, 200u);
  EXPECT_TRUE(again.value("events", json::array()).empty()) << again;
  EXPECT_EQ(Rpc("RemoveWatcher", {{"watcherId", watcher}}).first, 200u);
  auto [s3, gone] = Rpc("GetWatcherEvents", {{"watcherId", watcher}});
  EXPECT_EQ(s3, 404u);
  EXPECT_EQ(gone.value("code", ""), "not_found") << gone;
}

TEST_F(E2bWatchTest, AWatcherOfOneDirectorySeesNothingBelowIt) {
  Exec("mkdir w/sub");
  auto [s, created] = Rpc("CreateWatcher", {{"path", dir_}});
  ASSERT_EQ(s, 200u) << created;
  Exec("mkdir w/sub/deep w/top");
  EXPECT_EQ(Poll(created.value("watcherId", ""), 1), std::vector<std::string>{"EVENT_TYPE_CREATE top"});
}

TEST_F(E2bWatchTest, WatchDirStreamsTheStartThenEachChangeAndEndsWithTheDirectory) {
  std::string body;
  bool acted = false;
  auto r = client_->stream(
      "POST", "/filesystem.Filesystem/WatchDir",
      connect::envelope(0, json{{"path", dir_}, {"recursive", false}}.dump()),
      EnvdHeaders("application/connect+json"), [&](std::string_view d) {
        body.append(d);
        // Once the watch is in place: a change, then the directory goes (which ends it).
        if (!acted && body.find("start") != std::string::npos) {
          acted = true;
          http::Client other("127.0.0.1:" + std::to_string(server_->tcp_port()));
          auto x = other.request("POST", "/v1/sandboxes/" + id_ + "/exec",
                                 R"({"command":"echo x > w/x && sleep 0.2 && rm -r w"})", {});
          EXPECT_TRUE(x.ok() && x->status == 200);
        }
      });
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  auto env = ParseEnvelopes(body);
  ASSERT_GE(env.messages.size(), 4u) << body;
  EXPECT_EQ(env.messages[0], json::parse(R"({"start":{}})"));
  EXPECT_EQ(env.messages[1]["filesystem"], json::parse(R"({"name":"x","type":"EVENT_TYPE_CREATE"})"));
  EXPECT_EQ(env.messages[2]["filesystem"], json::parse(R"({"name":"x","type":"EVENT_TYPE_WRITE"})"));
  EXPECT_EQ(env.messages.back()["filesystem"], json::parse(R"({"name":"x","type":"EVENT_TYPE_REMOVE"})"));
  EXPECT_EQ(env.end["error"].value("code", ""), "not_found") << env.end;
  EXPECT_NE(env.end["error"].value("message", "").find("was removed or moved"), std::string::npos) << env.end;
}

TEST_F(E2bWatchTest, WhatCannotBeWatchedIsRefusedInTheRpcsShape) {
  auto [s, missing] = Rpc("CreateWatcher", {{"path", workspace_ + "/nope"}});
  EXPECT_EQ(s, 404u) << missing;
  EXPECT_EQ(missing.value("code", ""), "not_found");
  Exec("touch file");
  auto [s2, file] = Rpc("CreateWatcher", {{"path", workspace_ + "/file"}});
  EXPECT_EQ(s2, 400u) << file;
  EXPECT_EQ(Rpc("CreateWatcher", {{"path", dir_}, {"recursive", "yes"}}).first, 400u);
  EXPECT_EQ(Rpc("GetWatcherEvents", {{"watcherId", "w-none"}}).first, 404u);
  // The stream's refusal is its end-stream message.
  auto r = client_->request("POST", "/filesystem.Filesystem/WatchDir",
                            connect::envelope(0, json{{"path", workspace_ + "/nope"}}.dump()),
                            EnvdHeaders("application/connect+json"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 200u);
  auto env = ParseEnvelopes(r->body);
  EXPECT_TRUE(env.messages.empty()) << r->body;
  EXPECT_EQ(env.end["error"].value("code", ""), "not_found") << r->body;
  // With another token, nothing (refused before the body is read).
  auto denied = client_->request("POST", "/filesystem.Filesystem/CreateWatcher", json{{"path", dir_}}.dump(),
                                 {{"E2b-Sandbox-Id", id_}, {"X-Access-Token", "wrong-token-wrong-token"}});
  ASSERT_TRUE(denied.ok());
  EXPECT_EQ(denied->status, 401u) << denied->body;
}

TEST_F(E2bWatchTest, ASandboxHoldsAtMostItsWatchersAndARemovedOneMakesRoom) {
  std::vector<std::string> ids;
  for (size_t i = 0; i < limits::kMaxWatches; ++i) {
    auto [s, w] = Rpc("CreateWatcher", {{"path", dir_}});
    ASSERT_EQ(s, 200u) << w;
    ids.push_back(w.value("watcherId", ""));
  }
  auto [s, refused] = Rpc("CreateWatcher", {{"path", dir_}});
  EXPECT_EQ(s, 429u) << refused;
  EXPECT_EQ(refused.value("code", ""), "resource_exhausted");
  EXPECT_EQ(Rpc("RemoveWatcher", {{"watcherId", ids[0]}}).first, 200u);
  EXPECT_EQ(Rpc("CreateWatcher", {{"path", dir_}}).first, 200u);
  // Every watcher sees the same change.
  Exec("mkdir w/all");
  for (size_t i = 1; i < ids.size(); ++i) {
    EXPECT_EQ(Poll(ids[i], 1), std::vector<std::string>{"EVENT_TYPE_CREATE all"}) << i;
  }
}

}  // namespace
}  // namespace swissbox

namespace swissbox {
namespace {

// Code in the sandbox that changes more than anyone fetches fills no memory of the agent:
// past its backlog the watcher stops, says why, and the sandbox goes on serving.
TEST_F(E2bWatchTest, AWatcherNobodyPollsStopsAtItsBacklog) {
  auto [s, created] = Rpc("CreateWatcher", {{"path", dir_}});
  ASSERT_EQ(s, 200u) << created;
  std::string watcher = created.value("watcherId", "");
  // Writes to two files in turn (each a change: only a repeat is folded), twice the
  // backlog: the runner passes changes on while the code runs, and those it sent come
  // before the command's exit, so the agent holds more than the backlog once the exec has
  // answered, whatever the runner had not read yet (a poll in between would drain them).
  Exec("python3 -c \"import os\na, b = (os.open(f'w/{n}', os.O_WRONLY | os.O_CREAT) for n in 'ab')\n"
       "for i in range(" + std::to_string(limits::kMaxWatcherBacklog + 100) +
       "): os.write(a, b'x'); os.write(b, b'y')\"");
  auto [status, got] = Rpc("GetWatcherEvents", {{"watcherId", watcher}});
  EXPECT_EQ(status, 429u) << got.dump().substr(0, 300);
  EXPECT_EQ(got.value("code", ""), "resource_exhausted");
  EXPECT_NE(got.value("message", "").find("were not fetched"), std::string::npos) << got;
  EXPECT_EQ(Rpc("RemoveWatcher", {{"watcherId", watcher}}).first, 200u);
  EXPECT_EQ(Exec("echo alive"), "alive\n");
}

}  // namespace
}  // namespace swissbox
