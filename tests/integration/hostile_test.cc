// Code in a sandbox attacking the boundary between it and the node's agent (issue 18): forged
// runner frames on every fd it can open, a forger that outlives an agent restart, a flood on
// the runner's stderr, answers too big for one frame. Each case must leave the agent alive,
// other sandboxes serving, and the node's memory and disk bounded. Needs root and runsc.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <atomic>
#include <sstream>

#include "common/http_server.h"
#include "support/agent_fixture.h"
#include "support/loopback.h"

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
import socket
squatters = []
def squat():
    # The runner's reattach socket: whoever connects while it has no agent.
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect("\0swissbox-runner")
        s.sendall(frames[0])
        squatters.append(s)
    except OSError:
        pass
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1
for i in range(rounds):
    if len(squatters) < 20:
        squat()
    opened, refused = attack()
    if rounds > 1:
        time.sleep(0.05)
print(json.dumps({"opened": opened, "refused": refused}))
)PY";

class Hostile : public AgentRunsc {
 protected:
  static void SetUpTestSuite() {
    extra_args_.clear();  // another suite of this binary may have set its own
    AgentRunsc::SetUpTestSuite();
  }
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
  // Nothing of the runner (root, not dumpable) opens, and its channel least of all: its
  // stdin and stdout are a host socket (ENXIO even for a process that may open the rest).
  EXPECT_TRUE(report["refused"].contains("/proc/1/fd/0")) << report.dump();
  EXPECT_TRUE(report["refused"].contains("/proc/1/fd/1")) << report.dump();
  for (const auto& p : report["opened"]) EXPECT_NE(p.get<std::string>().rfind("/proc/1/", 0), 0u) << p;
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

// An upload past the sandbox's disk: the runner's ENOSPC ends it with a 429 while the rest
// of the body is still arriving; nothing of it lands outside the sandbox's disk.
TEST_F(Hostile, AnUploadPastTheDiskEndsWith429AndTheSandboxGoesOn) {
  std::string id = post("/v1/sandboxes", {{"disk_mb", 16}}, 201).value("id", "");
  http::Client c(tcp());
  auto put = c.request("PUT", "/v1/sandboxes/" + id + "/files?path=fill.bin", std::string(30 << 20, 'f'));
  ASSERT_TRUE(put.ok()) << put.error().to_string();
  EXPECT_EQ(put->status, 429u) << put->body;
  EXPECT_EQ(echo(id), "ok\n");
  // The partial file went with the failed upload: the disk has its room back.
  json ls = exec(id, {{"command", "ls fill.bin 2>&1; df --output=avail -m . | tail -1"}});
  EXPECT_NE(ls.value("stdout", "").find("No such file"), std::string::npos) << ls.dump();
  auto small = c.request("PUT", "/v1/sandboxes/" + id + "/files?path=small.txt", "fits");
  EXPECT_EQ(small->status, 200u) << small->body;
}

// PID 1 is root inside gVisor: the sandbox's code (uid 1000) can neither kill nor trace it.
TEST_F(Hostile, KillingOrTracingTheRunnerIsRefused) {
  std::string id = create();
  json r = exec(id, {{"command", "kill -9 1; echo kill=$?; python3 -c 'import ctypes; "
                                  "print(\"ptrace\", ctypes.CDLL(None).ptrace(16, 1, 0, 0))'"}});
  EXPECT_NE(r.value("stdout", "").find("kill=1"), std::string::npos) << r.dump();
  EXPECT_NE(r.value("stderr", "").find("Operation not permitted"), std::string::npos) << r.dump();
  EXPECT_NE(r.value("stdout", "").find("ptrace -1"), std::string::npos) << r.dump();
  EXPECT_EQ(echo(id), "ok\n");
}

// The audit wrote 50 MiB into /proc/1/fd/2, the runner's stderr, then a file on the node's
// root filesystem. Now the runner is root and not dumpable (the open is refused), and its
// stderr lies on the sandbox's own disk besides: a flood could only fill that disk.
TEST_F(Hostile, AFloodOnTheRunnersStderrStaysWithinTheSandboxDisk) {
  std::string id = post("/v1/sandboxes", {{"disk_mb", 64}}, 201).value("id", "");
  json r = run_python(id, R"PY(
import os
try:
    f = os.open("/proc/1/fd/2", os.O_WRONLY)
except OSError as e:
    print("refused", e.strerror)
    raise SystemExit(0)
chunk, written = b"E" * (1 << 20), 0
try:
    while written < (100 << 20):
        written += os.write(f, chunk)
    print("wrote", written)
except OSError as e:
    print("stopped", written >> 20, e.strerror)
)PY");
  std::string out = r.value("stdout", "");
  bool refused = out.rfind("refused ", 0) == 0;
  bool stopped = out.rfind("stopped ", 0) == 0 && out.find("No space left on device") != std::string::npos;
  EXPECT_TRUE(refused || stopped) << r.dump();
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

// Idle connections past the NOFILE limit the audit had (1,024) stopped /healthz, exec and the
// unix socket, and the accept loop spun re-arming on EMFILE.
TEST_F(Hostile, AConnectionFloodLeavesProbesTheUnixSocketAndExecWorking) {
  std::string id = create();
  auto cpu_ticks = [] {
    auto stat = fs::read_file("/proc/" + std::to_string(pid_) + "/stat");
    if (!stat) return 0L;
    std::istringstream in(stat->substr(stat->rfind(')') + 2));
    std::string f;
    long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && in >> f; ++i) {
      if (i == 14) utime = std::stol(f);
      if (i == 15) stime = std::stol(f);
    }
    return utime + stime;
  };
  std::vector<int> flood;
  for (int i = 0; i < 1100; ++i) {
    if (int fd = connect_loopback(port_); fd >= 0) flood.push_back(fd);
  }
  EXPECT_EQ(flood.size(), 1100u);
  // The probe reserve's idle connections time out within 2 s; the agent does not spin.
  long before = cpu_ticks();
  std::this_thread::sleep_for(2500ms);
  long used_ms = (cpu_ticks() - before) * 1000 / sysconf(_SC_CLK_TCK);
  EXPECT_LT(used_ms, 500) << "the agent spent " << used_ms << " ms of CPU in 2.5 s of an idle flood";
  EXPECT_EQ(http::Client(tcp()).request("GET", "/healthz")->status, 200u);
  http::Client unix_client("unix:" + dir_ + "/agent.sock");
  EXPECT_EQ(unix_client.request("GET", "/v1/sandboxes")->status, 200u);
  json r = json::parse(unix_client.request("POST", "/v1/sandboxes/" + id + "/exec",
                                           json{{"command", "echo ok"}}.dump())->body);
  EXPECT_EQ(r.value("stdout", ""), "ok\n") << r.dump();
  for (int fd : flood) close(fd);
  EXPECT_TRUE(agent_alive());
  bool served = false;  // once the agent saw the closes, TCP clients are served again
  for (int i = 0; i < 50 && !served; ++i) {
    auto got = http::Client(tcp()).request("POST", "/v1/sandboxes/" + id + "/exec",
                                           json{{"command", "echo ok"}}.dump());
    served = got.ok() && got->status == 200;
    if (!served) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(served);
}

// With a token file: what one tenant's token (or none) can do to the node and to others.
class HostileTenants : public AgentRunsc {
 protected:
  static constexpr const char* kTenantA = "tenant-a-token-0123456789";
  static constexpr const char* kTenantB = "tenant-b-token-0123456789";
  static constexpr const char* kAdmin = "admin-token-0123456789abc";
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/swissbox-tokens-XXXXXX";
    token_dir_ = mkdtemp(tmpl);
    std::string file = token_dir_ + "/tokens.json";
    (void)fs::write_file_atomic(
        file, json{{kTenantA, "a"}, {kTenantB, "b"}, {kAdmin, {{"tenant", "ops"}, {"admin", true}}}}.dump());
    extra_args_ = {"--token-file", file};
    AgentRunsc::SetUpTestSuite();
  }
  static void TearDownTestSuite() {
    AgentRunsc::TearDownTestSuite();
    extra_args_.clear();
    (void)fs::remove_tree(token_dir_);
  }
  static http::ClientResponse as(const char* token, std::string_view method, const std::string& path,
                                 const std::string& body = {}) {
    http::Headers h;
    if (token) h.push_back({"Authorization", std::string("Bearer ") + token});
    auto r = http::Client(tcp()).request(method, path, body, h);
    EXPECT_TRUE(r.ok()) << path;
    return r.ok() ? *r : http::ClientResponse{};
  }
  static inline std::string token_dir_;
};

TEST_F(HostileTenants, TokenlessBodiesAreRefusedBeforeTheAgentHoldsThem) {
  long rss_before = rss_kb(pid_);
  std::vector<std::thread> hogs;
  std::atomic<int> refused{0};
  for (int i = 0; i < 5; ++i) {
    hogs.emplace_back([&] {
      auto r = http::Client(tcp()).request("POST", "/v1/sandboxes", std::string(64 << 20, '{'));
      if (r.ok() && r->status == 401) ++refused;
    });
  }
  for (auto& t : hogs) t.join();
  EXPECT_EQ(refused.load(), 5);
  long grown_mb = (rss_kb(pid_) - rss_before) / 1024;
  EXPECT_LT(grown_mb, 16) << "five token-less 64 MiB bodies grew the agent by " << grown_mb << " MiB";
}

TEST_F(HostileTenants, ATenantCannotChangeThePoolsReadOthersOrTheirUsage) {
  auto created = as(kTenantA, "POST", "/v1/sandboxes", "{}");
  ASSERT_EQ(created.status, 201u) << created.body;
  std::string id = json::parse(created.body).value("id", "");
  auto pool = as(kTenantB, "PUT", "/v1/warmpool/default", R"({"target":0})");
  EXPECT_EQ(pool.status, 403u) << pool.body;
  EXPECT_EQ(json::parse(as(kTenantB, "GET", "/v1/warmpool").body)["templates"]["default"].value("target", -1), 2);
  EXPECT_EQ(as(kTenantB, "GET", "/v1/sandboxes/" + id).status, 404u);
  EXPECT_EQ(as(kTenantB, "DELETE", "/v1/sandboxes/" + id).status, 404u);
  EXPECT_EQ(as(kTenantB, "GET", "/metrics").status, 403u);
  EXPECT_EQ(as(nullptr, "GET", "/metrics").status, 401u);
  EXPECT_EQ(as(kAdmin, "GET", "/metrics").status, 200u);
  EXPECT_EQ(as(kAdmin, "PUT", "/v1/warmpool/default", R"({"target":2})").status, 200u);
  EXPECT_EQ(as(kTenantA, "DELETE", "/v1/sandboxes/" + id).status, 204u);
}

}  // namespace
}  // namespace swissbox::testing
