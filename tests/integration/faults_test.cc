// 200 create → exec → delete cycles with faults injected (the sentry killed mid-exec, the
// runner killed, a delete during a running exec, the agent killed with -9 and restarted).
// Afterwards nothing may be left but the warm pool: no container, cgroup, mount, directory
// or process. Needs root and runsc.
#include <future>
#include <set>

#include "support/agent_fixture.h"

namespace swissbox::testing {
namespace {

class Faults : public AgentRunsc {
 protected:
  static void SetUpTestSuite() {
    extra_args_ = {"--gc-interval", "2"};
    AgentRunsc::SetUpTestSuite();
  }

  // A raw call: faults make 409s and 404s legitimate answers.
  static unsigned call(const std::string& method, const std::string& path, const json& body = {}) {
    http::Client c(tcp(), 30s);
    auto r = c.request(method, path, body.is_null() ? "" : body.dump());
    return r.ok() ? r->status : 0;
  }

  // Kills every host process of the sandbox (its sentry and gofer).
  static void kill_sentry(const std::string& id) {
    for (const auto& [pid, cmd] : processes_with(id)) {
      if (cmd.find("boot") != std::string::npos || cmd.find("gofer") != std::string::npos)
        kill(pid, SIGKILL);
    }
  }

  static void kill_runner(const std::string& id) {
    ProcessOptions k;
    k.argv = {runsc_, "--root", dir_ + "/runsc", "kill", id, "KILL"};
    (void)run_process(k);
  }

  // What the agent's runtime holds, by kind.
  struct Held {
    std::set<std::string> containers, dirs, cgroups;
    int mounts = 0;
    int stray_processes = 0;  // naming the runsc root but not the agent or a container
  };
  static Held held() {
    Held h;
    for (auto& id : runsc_ids()) h.containers.insert(id);
    for (auto& d : dir_entries(dir_ + "/state/sandboxes")) h.dirs.insert(d);
    // A cgroup in any hierarchy counts (a crash mid-create leaves some hierarchies only).
    for (const std::string& hierarchy : kCgroupHierarchies) {
      for (auto& c : dir_entries("/sys/fs/cgroup" + hierarchy + cgroup_parent())) {
        if (c.rfind("sbx-", 0) == 0) h.cgroups.insert(c);
      }
    }
    h.mounts = mounts_under(dir_ + "/state");
    for (const auto& [pid, cmd] : processes_with(dir_ + "/runsc")) {
      bool known = pid == pid_;  // the agent names its root too
      for (const auto& id : h.containers) known |= cmd.find(id) != std::string::npos;
      h.stray_processes += !known;
    }
    return h;
  }
};

TEST_F(Faults, TwoHundredCyclesWithFaultsLeaveOnlyThePool) {
  const auto deadline = Clock::now() + 360s;
  int cycles = 0;
  for (; cycles < 200 && Clock::now() < deadline; ++cycles) {
    if (cycles > 0 && cycles % 50 == 0) {
      crash_agent();
      ASSERT_TRUE(launch_agent()) << "see " << dir_ << "/agent.log";
    }
    json sb = post("/v1/sandboxes", json::object(), 201);
    std::string id = sb.value("id", "");
    ASSERT_FALSE(id.empty()) << "cycle " << cycles << ": " << sb.dump();
    int fault = cycles % 4;
    if (fault == 0) {
      EXPECT_EQ(exec(id, {{"command", "echo ok"}}).value("stdout", ""), "ok\n");
      EXPECT_EQ(call("DELETE", "/v1/sandboxes/" + id), 204u);
      continue;
    }
    auto running = std::async(std::launch::async, [id] {
      return call("POST", "/v1/sandboxes/" + id + "/exec",
                  {{"command", "sleep 5"}, {"timeout_ms", 10000}});
    });
    std::this_thread::sleep_for(100ms);
    if (fault == 1) kill_sentry(id);
    if (fault == 2) kill_runner(id);
    if (fault == 3) {
      EXPECT_EQ(call("DELETE", "/v1/sandboxes/" + id), 204u);
    }
    // The exec ends well before its 5 s, with an answer.
    EXPECT_EQ(running.wait_for(4s), std::future_status::ready) << "cycle " << cycles;
    unsigned status = running.get();
    EXPECT_TRUE(status == 200 || status == 409 || status == 404 || status == 410)
        << "cycle " << cycles << " fault " << fault << ": " << status;
    unsigned del = call("DELETE", "/v1/sandboxes/" + id);
    EXPECT_TRUE(del == 204 || del == 404) << del;
  }
  EXPECT_EQ(cycles, 200) << "the cycles did not finish within 6 minutes";

  // Everything settles to the warm pool (2) within the deletes' and the GC's time.
  Held h;
  auto settle = Clock::now() + 90s;
  auto settled = [&] {
    h = held();
    return h.containers.size() <= 2 && h.dirs == h.containers && h.cgroups == h.containers &&
           h.mounts == static_cast<int>(h.containers.size()) && h.stray_processes == 0;
  };
  while (!settled() && Clock::now() < settle) std::this_thread::sleep_for(500ms);
  EXPECT_TRUE(settled()) << "containers " << h.containers.size() << ", dirs " << h.dirs.size()
                         << ", cgroups " << h.cgroups.size() << ", mounts " << h.mounts
                         << ", stray processes " << h.stray_processes;
  http::Client c(tcp());
  json listed = json::parse(c.request("GET", "/v1/sandboxes")->body);
  for (const auto& sb : listed["sandboxes"]) {
    EXPECT_EQ(sb.value("state", ""), "failed") << "an active sandbox is left: " << sb.dump();
  }
}

}  // namespace
}  // namespace swissbox::testing
