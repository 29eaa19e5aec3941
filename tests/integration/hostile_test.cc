// Code in a sandbox attacking the boundary between it and the node's agent (issue 18): forged
// runner frames on every fd it can open, a forger that outlives an agent restart, a flood on
// the runner's stderr, answers too big for one frame. Each case must leave the agent alive,
// other sandboxes serving, and the node's memory and disk bounded. Needs root and runsc.
#include <signal.h>
#include <sys/wait.h>

#include "support/agent_fixture.h"

namespace swissbox::testing {
namespace {

// Writes forged frames into every fd of every other process that it can open for writing,
// then prints {"opened": [...], "refused": {path: strerror}} as its last line. The frames:
// the audit's (an id that is a string), a fake exit for request 1, 4 MiB of fake file data,
// and a length prefix far past the limit.
constexpr const char* kForger = R"PY(
import os, struct, json, sys, time
def frame(h, payload=b""):
    h = json.dumps(h).encode()
    return struct.pack("<II", len(h), len(payload)) + h + payload
frames = [frame({"ev": "result", "id": "x"}),
          frame({"ev": "exit", "id": 1, "exit_code": 0}),
          b"".join(frame({"ev": "data", "id": 2}, b"A" * (1 << 20)) for _ in range(4)),
          struct.pack("<II", 0xffffffff, 0)]
def attack():
    opened, refused = [], {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            p = f"/proc/{pid}/fd/{fd}"
            try:
                f = os.open(p, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as e:
                refused[p] = e.strerror
                continue
            try:
                for fr in frames:
                    os.write(f, fr)
                opened.append(p)
            except OSError:
                pass
            os.close(f)
    return opened, refused
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1
for i in range(rounds):
    opened, refused = attack()
    if rounds > 1:
        time.sleep(0.05)
print(json.dumps({"opened": opened, "refused": refused}))
)PY";

class Hostile : public AgentRunsc {
 protected:
  static bool agent_alive() {
    return pid_ > 0 && waitpid(pid_, nullptr, WNOHANG) == 0 &&
           http::Client(tcp()).request("GET", "/healthz")->status == 200;
  }
  static json run_python(const std::string& id, const std::string& code, json extra = json::object()) {
    json body = {{"language", "python"}, {"code", code}};
    body.update(extra);
    return post("/v1/sandboxes/" + id + "/code", body);
  }
  // "ok\n" when the sandbox runs a command. The command after a forger may carry what it
  // wrote into the waiting spare's stdio pipes (its own next command's output: not a way
  // out of the sandbox), so one retry.
  static std::string echo(const std::string& id) {
    json r;
    for (int i = 0; i < 2; ++i) {
      r = exec(id, {{"command", "echo ok"}});
      if (r.value("stdout", "") == "ok\n" && r.value("stderr", "") == "") return "ok\n";
    }
    return r.dump().substr(0, 600);
  }
};

TEST_F(Hostile, ForgedFramesOnEveryOpenableFdLeaveTheAgentAndTheSandboxServing) {
  std::string other = create(), id = create();
  // Files and a language worker, so that the runner holds more than its channel.
  ASSERT_EQ(run_python(id, "print(1)").value("stdout", ""), "1\n");
  json r = run_python(id, kForger);
  std::string out = r.value("stdout", "");
  json report = json::parse(out.substr(out.rfind('{', out.rfind("\"opened\""))), nullptr, false);
  ASSERT_TRUE(report.is_object()) << r.dump().substr(0, 2000);
  // The runner's channel cannot be reopened: its stdin and stdout are a host socket.
  EXPECT_EQ(report["refused"].value("/proc/1/fd/0", ""), "No such device or address") << report.dump();
  EXPECT_EQ(report["refused"].value("/proc/1/fd/1", ""), "No such device or address") << report.dump();
  EXPECT_TRUE(agent_alive()) << "see " << dir_ << "/agent.log";
  EXPECT_EQ(echo(id), "ok\n");
  EXPECT_EQ(echo(other), "ok\n");
  http::Client c(tcp());
  auto got = c.request("GET", "/v1/sandboxes/" + id);
  EXPECT_EQ(json::parse(got->body).value("state", ""), "active") << got->body;
}

// Before the fix a forger left running in one sandbox killed every later agent within
// seconds of its start, through the reattach bridge's stdio.
TEST_F(Hostile, ABackgroundForgerDoesNotReachTheAgentAcrossARestart) {
  std::string id = create();
  http::Client c(tcp());
  ASSERT_EQ(c.request("PUT", "/v1/sandboxes/" + id + "/files?path=forger.py", kForger)->status, 200u);
  exec(id, {{"command", "nohup python3 forger.py 400 >/dev/null 2>&1 &"}, {"background", true}});
  crash_agent();
  ASSERT_TRUE(launch_agent()) << "see " << dir_ << "/agent.log";
  // The forger runs for ~20 s more; the new agent reattaches through a bridge and serves.
  // (Every command of this sandbox meanwhile gets what the forger writes into the spare's
  // stdio pipes: the sandbox's own output, not a way out of it.)
  auto runs = [&] {
    json r = exec(id, {{"command", "echo ok"}});
    std::string out = r.value("stdout", "");
    return r.value("exit_code", -1) == 0 && out.size() >= 3 && out.substr(out.size() - 3) == "ok\n";
  };
  EXPECT_TRUE(runs());
  for (int i = 0; i < 10; ++i) {
    std::this_thread::sleep_for(300ms);
    ASSERT_TRUE(agent_alive()) << "agent died while the forger ran; see " << dir_ << "/agent.log";
  }
  EXPECT_TRUE(runs());
  EXPECT_NE(exec(id, {{"command", "pgrep -f forger.py"}}).value("stdout", ""), "");
  EXPECT_EQ(http::Client(tcp()).request("DELETE", "/v1/sandboxes/" + id)->status, 204u);
}

// The runner's stderr lies on the sandbox's own disk: a flood into /proc/1/fd/2 fills that
// disk, up to its size, and nothing of the node's.
TEST_F(Hostile, AFloodOnTheRunnersStderrStaysWithinTheSandboxDisk) {
  std::string id = post("/v1/sandboxes", {{"disk_mb", 64}}, 201).value("id", "");
  json r = run_python(id, R"PY(
import os
f = os.open("/proc/1/fd/2", os.O_WRONLY)
chunk, written = b"E" * (1 << 20), 0
try:
    while written < (100 << 20):
        written += os.write(f, chunk)
    print("wrote", written)
except OSError as e:
    print("stopped", written >> 20, e.strerror)
)PY");
  EXPECT_EQ(r.value("stdout", "").rfind("stopped ", 0), 0u) << r.dump();
  EXPECT_NE(r.value("stdout", "").find("No space left on device"), std::string::npos) << r.dump();
  // On the host: nothing in the sandbox's directory outside its disk image grew.
  std::string dir = dir_ + "/state/sandboxes/" + id;
  int64_t outside = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::string p = e.path().string();
    if (p == dir + "/disk.img" || p.rfind(dir + "/disk/", 0) == 0) continue;
    outside += static_cast<int64_t>(e.file_size());
  }
  EXPECT_LT(outside, 1 << 20);
  struct stat st {};
  ASSERT_EQ(stat((dir + "/disk.img").c_str(), &st), 0);
  EXPECT_LT(st.st_blocks * 512, int64_t{80} << 20) << "the image holds more than the disk's size";
  EXPECT_TRUE(agent_alive());
}

TEST_F(Hostile, AnswersLargerThanOneFrameDoNotKillTheSandbox) {
  std::string id = create();
  // 1,000 entries made a 112 kB list header, past the 64 KiB limit of a frame.
  json made = exec(id, {{"command", "mkdir d && cd d && p=$(printf %0100d 0) && "
                                    "for i in $(seq 1000); do : > \"file-$p-$i\"; done"}});
  ASSERT_EQ(made.value("exit_code", -1), 0) << made.dump();
  http::Client c(tcp());
  auto list = c.request("GET", "/v1/sandboxes/" + id + "/files/list?path=d");
  ASSERT_EQ(list->status, 200u) << list->body.substr(0, 300);
  EXPECT_EQ(json::parse(list->body)["entries"].size(), 1000u);
  // An argv past the limit is refused before it reaches the runner.
  json big = {{"command", {"echo", std::string(100000, 'a')}}};
  auto r = c.request("POST", "/v1/sandboxes/" + id + "/exec", big.dump());
  EXPECT_EQ(r->status, 413u) << r->body;
  EXPECT_EQ(echo(id), "ok\n");
}

}  // namespace
}  // namespace swissbox::testing
