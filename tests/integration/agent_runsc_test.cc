// The behaviour issue #3 promises, through a real swissbox-agent on real runsc (see
// support/agent_fixture.h). Needs root and runsc.
#include <future>

#include "support/agent_fixture.h"

namespace swissbox::testing {
namespace {

TEST_F(AgentRunsc, OneShotRunsEveryLanguage) {
  std::vector<std::pair<std::string, std::string>> programs = {
      {"python", "print(6*7)"},
      {"bash", "echo $((6*7))"},
      {"javascript", "console.log(6*7)"},
      {"typescript", "const x: number = 6*7; console.log(x)"},
  };
  for (const auto& [lang, code] : programs) {
    json r = post("/v1/execute", {{"language", lang}, {"code", code}});
    EXPECT_EQ(r["exit_code"], 0) << lang << ": " << r;
    EXPECT_EQ(r["stdout"], "42\n") << lang << ": " << r;
  }
  json bad = post("/v1/execute", {{"language", "python"}, {"code", "print(("}});
  EXPECT_NE(bad["exit_code"], 0);
  EXPECT_NE(bad["stderr"].get<std::string>().find("SyntaxError"), std::string::npos);
  json bad_ts = post("/v1/execute", {{"language", "typescript"}, {"code", "const x: number = ;"}});
  EXPECT_NE(bad_ts["exit_code"], 0);
  EXPECT_FALSE(bad_ts["stderr"].get<std::string>().empty());
}

// A one-shot served from a language pool runs in the interpreter the sandbox loaded while
// it was warm: the process that prints was there long before the request.
TEST_F(AgentRunsc, LanguagePoolOneShotsRunInAPreloadedInterpreter) {
  http::Client c(tcp());
  auto set_target = [&](const std::string& pool, int n) {
    auto r = c.request("PUT", "/v1/warmpool/" + pool, json{{"target", n}}.dump());
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->status, 200u) << r->body;
  };
  set_target("default+python", 1);
  set_target("default+typescript", 1);
  auto ready = [&](const std::string& pool) {
    auto r = c.request("GET", "/v1/warmpool");
    return r.ok() && json::parse(r->body)["templates"][pool].value("ready", 0) >= 1;
  };
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!(ready("default+python") && ready("default+typescript")) &&
         std::chrono::steady_clock::now() < deadline) {
    usleep(50000);
  }
  ASSERT_TRUE(ready("default+python") && ready("default+typescript"));
  usleep(800000);
  json py = post("/v1/execute",
                 {{"language", "python"},
                  {"code", "import os\n"
                           "start = int(open('/proc/self/stat').read().rsplit(')', 1)[1].split()[19])\n"
                           "up = float(open('/proc/uptime').read().split()[0])\n"
                           "print(up - start / os.sysconf('SC_CLK_TCK'))\n"}});
  ASSERT_EQ(py["exit_code"], 0) << py;
  EXPECT_GE(std::stod(py["stdout"].get<std::string>()), 0.5) << py;
  json ts = post("/v1/execute", {{"language", "typescript"},
                                 {"code", "const age: number = process.uptime(); console.log(age)"}});
  ASSERT_EQ(ts["exit_code"], 0) << ts;
  EXPECT_GE(std::stod(ts["stdout"].get<std::string>()), 0.5) << ts;
  set_target("default+python", 0);
  set_target("default+typescript", 0);
}

// Stateful contexts inside gVisor: each language's kernel keeps its state, shows its final
// expression, and a Python cell past its timeout is interrupted with the state kept.
TEST_F(AgentRunsc, ContextsKeepStateInEveryLanguage) {
  std::string id = create();
  auto run = [&](const std::string& ctx, const std::string& code, int timeout_ms = 20000) {
    return post("/v1/sandboxes/" + id + "/code",
                {{"context_id", ctx}, {"code", code}, {"timeout_ms", timeout_ms}});
  };
  auto main_text = [](const json& r) {
    for (const auto& res : r.value("results", json::array())) {
      if (res.value("is_main_result", false)) return res.value("text", "");
    }
    return std::string("<none> ") + r.dump();
  };
  std::map<std::string, std::string> ctx;
  for (std::string lang : {"python", "javascript", "typescript", "bash"}) {
    ctx[lang] = post("/v1/sandboxes/" + id + "/contexts", {{"language", lang}}, 201).value("id", "");
    ASSERT_FALSE(ctx[lang].empty()) << lang;
  }
  run(ctx["python"], "x = 41");
  EXPECT_EQ(main_text(run(ctx["python"], "x + 1")), "42");
  json slow = run(ctx["python"], "import time\ntime.sleep(60)", 1000);
  EXPECT_TRUE(slow.value("timed_out", false)) << slow;
  EXPECT_EQ(slow["error"].value("name", ""), "KeyboardInterrupt") << slow;
  EXPECT_EQ(main_text(run(ctx["python"], "x")), "41");
  run(ctx["javascript"], "const v = await Promise.resolve(6)");
  EXPECT_EQ(main_text(run(ctx["javascript"], "const v = 7; v * 6")), "42");
  run(ctx["typescript"], "const n: number = 21");
  EXPECT_EQ(main_text(run(ctx["typescript"], "n * 2")), "42");
  run(ctx["bash"], "N=42; cd /tmp");
  EXPECT_EQ(run(ctx["bash"], "echo $N $PWD").value("stdout", ""), "42 /tmp\n");
}

TEST_F(AgentRunsc, SessionKeepsFilesCwdAndEnv) {
  std::string id = create();
  EXPECT_EQ(
      exec(id, {{"command", "mkdir -p d && echo $V > d/f"}, {"env", {{"V", "kept"}}}})["exit_code"],
      0);
  EXPECT_EQ(exec(id, {{"command", {"cat", "f"}}, {"cwd", "d"}})["stdout"], "kept\n");
  http::Client c(tcp());
  auto f = c.request("GET", "/v1/sandboxes/" + id + "/files?path=d/f");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->body, "kept\n");
  auto put = c.request("PUT", "/v1/sandboxes/" + id + "/files?path=up.txt", "uploaded");
  ASSERT_TRUE(put.ok());
  EXPECT_EQ(put->status, 200u);
  EXPECT_EQ(exec(id, {{"command", "cat /workspace/up.txt"}})["stdout"], "uploaded");
  auto list = c.request("GET", "/v1/sandboxes/" + id + "/files/list?path=.");
  ASSERT_TRUE(list.ok());
  EXPECT_NE(list->body.find("\"up.txt\""), std::string::npos);
}

// Shell strings run the image's static bash (the dev rootfs is the host's /usr), which a
// command sees as /bin/bash.
TEST_F(AgentRunsc, ShellCommandsRunTheStaticBashUnderBashsName) {
  if (access("/usr/bin/bash-static", X_OK) != 0) GTEST_SKIP() << "no bash-static on this host";
  std::string id = create();
  // `; :` keeps bash from exec'ing cat in its place.
  json r = exec(id, {{"command", "echo $0 $BASH; cat /proc/$$/comm; :"}});
  EXPECT_EQ(r["stdout"], "/bin/bash /bin/bash\nbash-static\n") << r;
  json code = post("/v1/execute", {{"language", "bash"}, {"code", "cat /proc/$$/comm; :"}});
  EXPECT_EQ(code["stdout"], "bash-static\n") << code;
}

TEST_F(AgentRunsc, SandboxSeesOnlyItsOwnRootAsNonRoot) {
  std::string id = create();
  json r = exec(id, {{"command",
                      "id -u; ls -d /root /var /run 2>&1; echo home: $(ls -A /home) $(readlink /home/user); "
                      "touch /usr/x 2>&1; cat /proc/net/dev | tail -n +3 | cut -d: -f1"}});
  std::string out = r["stdout"];
  EXPECT_EQ(out.substr(0, 5), "1000\n") << out;
  for (const char* d : {"/root", "/var", "/run"}) {
    EXPECT_NE(out.find(std::string("ls: cannot access '") + d), std::string::npos) << out;
  }
  // /home holds only E2B's user home, a link to the sandbox's own workspace: no host home.
  EXPECT_NE(out.find("home: user /workspace\n"), std::string::npos) << out;
  EXPECT_TRUE(out.find("Read-only file system") != std::string::npos ||
              out.find("Permission denied") != std::string::npos)
      << out;
  EXPECT_EQ(out.substr(out.rfind(':') + 1).find("eth"), std::string::npos) << out;
}

TEST_F(AgentRunsc, TimeoutKillsTheCommandAndWhatItStarted) {
  std::string id = create();
  auto t0 = Clock::now();
  json r = exec(id, {{"command", "sleep 30 & sleep 30"}, {"timeout_ms", 500}});
  EXPECT_LT(Clock::now() - t0, 1500ms);
  EXPECT_EQ(r["timed_out"], true);
  std::string ps = exec(id, {{"command", {"ps", "-eo", "comm"}}})["stdout"];
  EXPECT_EQ(ps.find("sleep"), std::string::npos) << ps;
}

TEST_F(AgentRunsc, BackgroundProcessesDieWithTheirCommandUnlessAsked) {
  std::string id = create();
  EXPECT_EQ(exec(id, {{"command", "setsid sleep 300 & sleep 300 & echo started"}})["stdout"],
            "started\n");
  std::string ps = exec(id, {{"command", {"ps", "-eo", "comm"}}})["stdout"];
  EXPECT_EQ(ps.find("sleep"), std::string::npos) << ps;
  exec(id, {{"command", "sleep 300 >/dev/null 2>&1 &"}, {"background", true}});
  // It outlives later foreground commands too.
  exec(id, {{"command", "true"}});
  ps = exec(id, {{"command", {"ps", "-eo", "comm"}}})["stdout"];
  EXPECT_NE(ps.find("sleep"), std::string::npos) << ps;
}

TEST_F(AgentRunsc, EndlessOutputIsTruncatedAndAgentMemoryStaysFlat) {
  std::string id = create();
  long before = rss_kb(pid_);
  for (int i = 0; i < 3; ++i) {
    json r = exec(id, {{"command", "timeout 2 yes"}});
    EXPECT_EQ(r["truncated"], true);
    EXPECT_LE(r["stdout"].get<std::string>().size(), 1u << 20);
    EXPECT_GT(r["stdout"].get<std::string>().size(), 0u);
  }
  json capped = exec(id, {{"command", "timeout 1 yes"}, {"max_output_bytes", 1000}});
  EXPECT_EQ(capped["stdout"].get<std::string>().size(), 1000u);
  long after = rss_kb(pid_);
  EXPECT_LT(after - before, 64 * 1024)
      << "agent RSS grew from " << before << " kB to " << after << " kB";
}

TEST_F(AgentRunsc, TwentyConcurrentExecsAndOneShots) {
  std::string id = create();
  std::vector<std::future<std::string>> execs, shots;
  for (int i = 0; i < 20; ++i) {
    execs.push_back(std::async(std::launch::async, [&, i] {
      json r = exec(id, {{"command", {"echo", std::to_string(i)}}});
      // The whole answer when it is not the expected one, so a failure explains itself.
      std::string out = r.value("stdout", "");
      return out == std::to_string(i) + "\n" ? out : r.dump();
    }));
    shots.push_back(std::async(std::launch::async, [i] {
      return post("/v1/execute",
                  {{"language", "python"}, {"code", "print(" + std::to_string(i) + "*2)"}})
          .value("stdout", "error");
    }));
  }
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(execs[i].get(), std::to_string(i) + "\n");
    EXPECT_EQ(shots[i].get(), std::to_string(i * 2) + "\n");
  }
}

TEST_F(AgentRunsc, ClaimTimeLimitsGoToTheCgroupAndUsageIsReported) {
  json sb = post("/v1/sandboxes", {{"memory_mb", 256}, {"cpu", 1}}, 201);
  std::string id = sb.value("id", "");
  ASSERT_FALSE(id.empty()) << sb.dump();
  EXPECT_EQ(sb["limits"].value("memory_mb", 0), 256);
  std::string cg = memory_cgroup(id);
  ASSERT_TRUE(fs::exists(cg)) << cg;
  auto limit = fs::read_file(cg + (fs::exists(cg + "/memory.max") ? "/memory.max"
                                                                    : "/memory.limit_in_bytes"));
  ASSERT_TRUE(limit.ok());
  // The code's 256 MiB plus the sentry's and gofer's headroom.
  EXPECT_EQ(std::stoll(*limit), (256 + 96) << 20);
  exec(id, {{"command", {"python3", "-c", "x = bytearray(64 << 20)"}}});
  http::Client c(tcp());
  json got = json::parse(c.request("GET", "/v1/sandboxes/" + id)->body);
  const json& m = got["metrics"];
  EXPECT_GT(m.value("cpu_seconds", 0.0), 0) << got.dump();
  EXPECT_GT(m.value("memory_bytes", 0), 0) << got.dump();
  EXPECT_GT(m.value("memory_peak_bytes", 0), 64 << 20) << got.dump();
  EXPECT_EQ(m.value("health", ""), "ok");
  EXPECT_EQ(m.value("exec_count", 0), 1);
  EXPECT_EQ(c.request("DELETE", "/v1/sandboxes/" + id)->status, 204u);
}

TEST_F(AgentRunsc, DeleteAnswersAtOnceAndLeavesNothing) {
  std::string id = create();
  exec(id, {{"command", "echo data > f"}});
  // runsc's records (state, lock, control socket) go with the sandbox: the agent removes
  // them itself once the sandbox's processes are gone, as `runsc delete` would.
  auto records = [&] {
    int n = 0;
    for (const auto& e : dir_entries(dir_ + "/runsc")) n += e.find(id) != std::string::npos;
    return n;
  };
  EXPECT_GT(records(), 0);
  http::Client c(tcp());
  auto t0 = Clock::now();
  auto del = c.request("DELETE", "/v1/sandboxes/" + id);
  auto took = Clock::now() - t0;
  ASSERT_TRUE(del.ok());
  EXPECT_EQ(del->status, 204u);
  EXPECT_LT(took, 300ms);
  auto gone = [&] {
    ProcessOptions ls;
    ls.argv = {runsc_, "--root", dir_ + "/runsc", "list", "--quiet"};
    auto r = run_process(ls);
    return r.ok() && r->out.find(id) == std::string::npos && records() == 0 &&
           !fs::exists(dir_ + "/state/sandboxes/" + id) && processes_mentioning(id) == 0 &&
           mounts_under(dir_ + "/state/sandboxes/" + id) == 0 &&
           !fs::exists(memory_cgroup(id));
  };
  auto deadline = Clock::now() + 20s;
  while (!gone() && Clock::now() < deadline) std::this_thread::sleep_for(200ms);
  EXPECT_TRUE(gone());
  EXPECT_EQ(c.request("GET", "/v1/sandboxes/" + id)->status, 404u);
}

TEST_F(AgentRunsc, MalformedRequestsGetErrorsOverTheRealAgent) {
  http::Client c(tcp());
  auto r = c.request("POST", "/v1/sandboxes", "{\"template\":");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 400u);
  EXPECT_NE(r->body.find("\"invalid_argument\""), std::string::npos);
  r = c.request("POST", "/v1/execute", R"({"language":"klingon","code":"x"})");
  EXPECT_EQ(r->status, 400u);
  r = c.request("GET", "/v1/sandboxes/sbx-it-ffffffffffff");
  EXPECT_EQ(r->status, 404u);
  r = c.request("POST", "/v1/sandboxes", std::string(100 << 20, 'x'));
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->status, 413u);
}

TEST_F(AgentRunsc, SwissboxctlOverTheUnixSocket) {
  std::string ctl = std::string(SWISSBOX_BIN_DIR) + "/swissboxctl";
  std::string sock = dir_ + "/agent.sock";
  ProcessOptions create_cmd;
  create_cmd.argv = {ctl, "--socket", sock, "create"};
  auto created = run_process(create_cmd);
  ASSERT_TRUE(created.ok());
  ASSERT_EQ(created->exit_code, 0) << created->err;
  std::string id = created->out.substr(0, created->out.find('\n'));
  ProcessOptions exec_cmd;
  exec_cmd.argv = {ctl, "--socket", sock, "exec", id, "--", "sh", "-c", "echo out; exit 5"};
  auto r = run_process(exec_cmd);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, 5);
  EXPECT_EQ(r->out, "out\n");
  ProcessOptions ls_cmd;
  ls_cmd.argv = {ctl, "--socket", sock, "ls"};
  auto ls = run_process(ls_cmd);
  ASSERT_TRUE(ls.ok());
  EXPECT_NE(ls->out.find(id), std::string::npos);
  ls_cmd.argv = {ctl, "--socket", sock, "ls", "--json"};  // the flag after the command
  ls = run_process(ls_cmd);
  ASSERT_TRUE(ls.ok());
  json listed = json::parse(ls->out, nullptr, false);
  ASSERT_TRUE(listed.is_object()) << ls->out;
  // Earlier tests of the same run may have left sandboxes of their own.
  bool found = false;
  for (const auto& sb : listed["sandboxes"]) found |= sb.value("id", "") == id;
  EXPECT_TRUE(found) << ls->out;
  ProcessOptions rm_cmd;
  rm_cmd.argv = {ctl, "--socket", sock, "rm", id};
  EXPECT_EQ(run_process(rm_cmd)->exit_code, 0);
}

}  // namespace
}  // namespace swissbox::testing

namespace swissbox::testing {
namespace {

TEST_F(AgentRunsc, DrainedNodeTakesNoNewSandboxesButServesItsOwn) {
  std::string id = create();
  std::string ctl = std::string(SWISSBOX_BIN_DIR) + "/swissboxctl";
  auto ctl_run = [&](const std::string& cmd) {
    ProcessOptions p;
    p.argv = {ctl, "--socket", dir_ + "/agent.sock", cmd};
    auto r = run_process(p);
    return r.ok() ? r->out : r.error().to_string();
  };
  EXPECT_NE(ctl_run("drain").find("draining=yes"), std::string::npos);
  http::Client c(tcp());
  auto refused = c.request("POST", "/v1/sandboxes", "{}");
  EXPECT_EQ(refused->status, 409u) << refused->body;
  EXPECT_NE(refused->body.find("draining"), std::string::npos);
  EXPECT_EQ(json::parse(c.request("GET", "/v1/node")->body).value("draining", false), true);
  EXPECT_EQ(exec(id, {{"command", "echo still"}}).value("stdout", ""), "still\n");
  // Only the node's operator (the unix socket) drains it.
  EXPECT_EQ(c.request("POST", "/v1/node/undrain")->status, 404u);
  EXPECT_NE(ctl_run("undrain").find("draining=no"), std::string::npos);
  EXPECT_EQ(c.request("POST", "/v1/sandboxes", "{}")->status, 201u);
}

}  // namespace
}  // namespace swissbox::testing
