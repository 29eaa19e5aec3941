// The agent's HTTP API end to end with the real runner, channel and manager, on a runtime
// that starts swissbox-init as a host process (no root, no runsc).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "agent/api/api.h"
#include "agent/sandbox/sandbox_ops.h"
#include "agent/sandbox/sandbox_manager.h"
#include "common/http_client.h"
#include "common/http_server.h"
#include "component/api_fixture.h"
#include "support/host_runtime.h"
#include "support/loopback.h"
#include "support/promtool.h"

namespace swissbox {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
using testing::AgentApiTest;
using testing::wait_until;

// The pools belong to the node: one tenant must not empty them for the others (the audit
// set default to 0 with a tenant's token and the next tenant's create got 429).
TEST_F(AgentApiTest, OnlyAdminsChangeThePoolsOrReadTheMetrics) {
  ApiOptions api;
  api.tokens = {{"tenant-a-token-0123456789", {"a", false}}, {"admin-token-0123456789", {"ops", true}}};
  Start({{"default", 1}}, 8, api);
  const std::string tenant = "tenant-a-token-0123456789", admin = "admin-token-0123456789";
  EXPECT_EQ(Call("PUT", "/v1/warmpool/default", R"({"target":0})").first, 401u);
  auto [status, body] = Call("PUT", "/v1/warmpool/default", R"({"target":0})", tenant);
  EXPECT_EQ(status, 403u) << body;
  EXPECT_EQ(body["error"].value("code", ""), "permission_denied");
  EXPECT_EQ(Call("GET", "/v1/warmpool", "", tenant).second["templates"]["default"].value("target", -1), 1);
  EXPECT_EQ(Call("GET", "/metrics", "", tenant).first, 403u);
  EXPECT_EQ(Call("PUT", "/v1/warmpool/default", R"({"target":2})", admin).first, 200u);
  EXPECT_EQ(Call("GET", "/metrics", "", admin).first, 200u);
  EXPECT_EQ(Call("GET", "/healthz").first, 200u);
  // A JSON route takes a small body: a tenant's 2 MiB create is refused before it is read.
  EXPECT_EQ(Call("POST", "/v1/sandboxes", std::string(2 << 20, ' '), tenant).first, 413u);
}

TEST_F(AgentApiTest, PoolFillsAndClaimStartsNoSandbox) {
  Start({{"default", 2}});
  ASSERT_TRUE(wait_until([&] { return Ready() == 2; }));
  int starts_before = runtime_->starts;
  auto [status, body] = Call("POST", "/v1/sandboxes", R"({"template":"default","memory_mb":256})");
  ASSERT_EQ(status, 201u) << body;
  EXPECT_EQ(body["state"], "active");
  EXPECT_EQ(body["warm"], true);
  EXPECT_EQ(body["limits"]["memory_mb"], 256);
  EXPECT_EQ(body["node"], "unit");
  EXPECT_EQ(body["id"].get<std::string>().rfind("sbx-unit-", 0), 0u);
  // The claim itself started nothing; the refill that follows starts one replacement.
  EXPECT_TRUE(wait_until([&] { return Ready() == 2; }));
  EXPECT_EQ(runtime_->starts, starts_before + 1);
  EXPECT_EQ(metrics_.get("swissbox_claims_total",
                         Metrics::labels({{"template", "default"}, {"warm", "true"}})),
            1);
}

TEST_F(AgentApiTest, EmptyPoolFallsBackToColdStart) {
  Start({});
  auto [status, body] = Call("POST", "/v1/sandboxes", "{}");
  ASSERT_EQ(status, 201u) << body;
  EXPECT_EQ(body["warm"], false);
  EXPECT_EQ(metrics_.get("swissbox_claims_total",
                         Metrics::labels({{"template", "default"}, {"warm", "false"}})),
            1);
}

TEST_F(AgentApiTest, ACreateOnAnEmptyRefillingPoolTakesTheSandboxAlreadyStarting) {
  ASSERT_NO_FATAL_FAILURE(EmptyPoolWhileItsReplacementStarts());
  auto [status, body] = Call("POST", "/v1/sandboxes", "{}");
  ASSERT_EQ(status, 201u) << body;
  EXPECT_EQ(body["warm"], true);
  EXPECT_EQ(metrics_.get("swissbox_claim_waits_total", Metrics::labels({{"pool", "default"}})), 1);
  EXPECT_EQ(metrics_.get("swissbox_cold_starts_total", Metrics::labels({{"pool", "default"}})), 0);
  EXPECT_TRUE(wait_until([&] { return Ready() == 1; }));  // and the pool refills behind it
}

TEST_F(AgentApiTest, ACreateWaitingForAStartThatFailsStartsItsOwn) {
  ASSERT_NO_FATAL_FAILURE(EmptyPoolWhileItsReplacementStarts());
  runtime_->fail_next = 1;  // the replacement under way fails
  auto [status, body] = Call("POST", "/v1/sandboxes", "{}");
  ASSERT_EQ(status, 201u) << body;
  EXPECT_EQ(body["warm"], false);
  EXPECT_EQ(metrics_.get("swissbox_claim_waits_total", Metrics::labels({{"pool", "default"}})), 1);
  EXPECT_EQ(metrics_.get("swissbox_cold_starts_total", Metrics::labels({{"pool", "default"}})), 1);
}

TEST_F(AgentApiTest, ExecKeepsSessionStateAndAppliesCwdEnv) {
  Start({{"default", 1}});
  auto [s, sb] = Call("POST", "/v1/sandboxes", R"({"env":{"GREETING":"hello"}})");
  ASSERT_EQ(s, 201u);
  std::string id = sb["id"];
  auto [s1, r1] = Call(
      "POST", "/v1/sandboxes/" + id + "/exec",
      R"({"command":"mkdir -p sub && echo $GREETING $EXTRA > sub/f.txt","env":{"EXTRA":"world"}})");
  ASSERT_EQ(s1, 200u) << r1;
  EXPECT_EQ(r1["exit_code"], 0);
  auto [s2, r2] =
      Call("POST", "/v1/sandboxes/" + id + "/exec", R"({"command":["cat","f.txt"],"cwd":"sub"})");
  ASSERT_EQ(s2, 200u) << r2;
  EXPECT_EQ(r2["stdout"], "hello world\n");
  auto file = client_->request("GET", "/v1/sandboxes/" + id + "/files?path=sub/f.txt");
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(file->status, 200u);
  EXPECT_EQ(file->body, "hello world\n");
  auto [s3, list] = Call("GET", "/v1/sandboxes/" + id + "/files/list?path=sub");
  ASSERT_EQ(s3, 200u);
  ASSERT_EQ(list["entries"].size(), 1u);
  EXPECT_EQ(list["entries"][0]["name"], "f.txt");
  EXPECT_EQ(list["entries"][0]["size"], 12);
  auto put = client_->request("PUT", "/v1/sandboxes/" + id + "/files?path=up/data.bin",
                              std::string("\x00\x01\xff", 3));
  ASSERT_TRUE(put.ok());
  EXPECT_EQ(put->status, 200u) << put->body;
  auto [s4, r4] =
      Call("POST", "/v1/sandboxes/" + id + "/exec", R"({"command":"wc -c < up/data.bin"})");
  EXPECT_EQ(r4["stdout"], "3\n");
  auto del = client_->request("DELETE", "/v1/sandboxes/" + id + "/files?path=up/data.bin");
  ASSERT_TRUE(del.ok());
  EXPECT_EQ(del->status, 204u);
  auto missing = Call("GET", "/v1/sandboxes/" + id + "/files/list?path=nope");
  EXPECT_EQ(missing.first, 404u);
  EXPECT_EQ(missing.second["error"]["code"], "not_found");
}

// How long the process that runs the code has existed, in seconds (from /proc).
constexpr const char* kPythonProcessAge =
    "import os\n"
    "start = int(open('/proc/self/stat').read().rsplit(')', 1)[1].split()[19])\n"
    "up = float(open('/proc/uptime').read().split()[0])\n"
    "print(round(up - start / os.sysconf('SC_CLK_TCK'), 2))\n";

TEST_F(AgentApiTest, OneShotRunsOnTheWorkerItsPoolLoaded) {
  Start({{"default+python", 1}});
  ASSERT_TRUE(wait_until([&] { return Ready("default+python") == 1; }, 10s));
  std::this_thread::sleep_for(500ms);
  auto [s, r] = Call("POST", "/v1/execute",
                     json{{"language", "python"}, {"code", kPythonProcessAge}}.dump());
  ASSERT_EQ(s, 200u) << r;
  ASSERT_EQ(r["exit_code"], 0) << r;
  // The interpreter was running before the request came: no process was started for it.
  EXPECT_GE(std::stod(r["stdout"].get<std::string>()), 0.4) << r;
  // Its CPU time counts from the handover: the interpreter's start-up is not the program's.
  EXPECT_LT(r["cpu_ms"].get<double>(), 20) << r;
  EXPECT_EQ(metrics_.get("swissbox_claims_total",
                         Metrics::labels({{"template", "default"}, {"warm", "true"}})),
            1);
}

TEST_F(AgentApiTest, LanguageRunsBehaveLikeTheInterpreterOnAFile) {
  Start({{"default", 1}});
  std::string id = Call("POST", "/v1/sandboxes", R"({"env":{"GREETING":"hi"}})").second["id"];
  auto code = [&](json body) {
    auto [s, r] = Call("POST", "/v1/sandboxes/" + id + "/code", body.dump());
    EXPECT_EQ(s, 200u) << r;
    return r;
  };
  auto r1 = code({{"language", "python"},
                  {"code", "import os, sys\nprint(__name__, sys.argv, os.getcwd(), "
                           "os.environ['GREETING'], os.environ['EXTRA'], sys.stdin.read())\n"
                           "def f():\n    raise ValueError('boom')\nf()\n"},
                  {"env", {{"EXTRA", "x"}}},
                  {"stdin", "in"}});
  std::string workspace = Call("POST", "/v1/sandboxes/" + id + "/exec", R"({"command":"pwd"})")
                              .second["stdout"];
  EXPECT_EQ(r1["stdout"], "__main__ ['main.py'] " + workspace.substr(0, workspace.size() - 1) +
                              " hi x in\n")
      << r1;
  EXPECT_EQ(r1["exit_code"], 1);
  // The traceback starts at the program and shows its lines, as `python3 main.py` does.
  EXPECT_EQ(r1["stderr"],
            "Traceback (most recent call last):\n  File \"main.py\", line 5, in <module>\n    f()\n"
            "  File \"main.py\", line 4, in f\n    raise ValueError('boom')\nValueError: boom\n");
  EXPECT_EQ(code({{"language", "python"}, {"code", "import sys; sys.exit(3)"}})["exit_code"], 3);
  auto syntax = code({{"language", "python"}, {"code", "print(1"}});
  EXPECT_EQ(syntax["exit_code"], 1);
  EXPECT_NE(syntax["stderr"].get<std::string>().find("SyntaxError"), std::string::npos);
  // A start-up variable is honoured: the worker kept for the session was started without it.
  auto seeded = code({{"language", "python"},
                      {"code", "import sys; print(sys.flags.hash_randomization)"},
                      {"env", {{"PYTHONHASHSEED", "0"}}}});
  EXPECT_EQ(seeded["stdout"], "0\n");
  // The session keeps a loaded worker for its next run.
  std::this_thread::sleep_for(500ms);
  auto aged = code({{"language", "python"}, {"code", kPythonProcessAge}});
  EXPECT_GE(std::stod(aged["stdout"].get<std::string>()), 0.2) << aged;

  // The worker answers when the program is over, its exit listeners included.
  auto js = code({{"language", "javascript"},
                  {"code", "console.log(require('path').basename(__filename), process.env.GREETING);"
                           "process.on('exit', () => { console.log('bye'); process.exitCode = 4; });"
                           "setTimeout(() => console.log('later'), 50);"}});
  EXPECT_EQ(js["stdout"], "main.js hi\nlater\nbye\n") << js;
  EXPECT_EQ(js["exit_code"], 4);
  auto thrown = code({{"language", "javascript"}, {"code", "throw new Error('boom')"}});
  EXPECT_EQ(thrown["exit_code"], 1);
  EXPECT_NE(thrown["stderr"].get<std::string>().find("Error: boom"), std::string::npos) << thrown;
  auto ts = code({{"language", "typescript"},
                  {"code", "interface P { n: number }\nconst p: P = {n: 6 * 7};\nconsole.log(p.n)"}});
  EXPECT_EQ(ts["stdout"], "42\n") << ts;
  auto bad_ts = code({{"language", "typescript"}, {"code", "const x: number = ;"}});
  EXPECT_EQ(bad_ts["exit_code"], 1);
  EXPECT_NE(bad_ts["stderr"].get<std::string>().find("main.ts:1:19 - error TS1109"), std::string::npos)
      << bad_ts;
}

TEST_F(AgentApiTest, MetricsAreValidPrometheusTextWithLatenciesByTemplateAndLanguage) {
  Start({{"default", 1}, {"default+python", 1}});
  ASSERT_TRUE(wait_until([&] { return Ready("default+python") == 1; }, 10s));
  std::string id = Call("POST", "/v1/sandboxes", "{}").second["id"];
  Call("POST", "/v1/sandboxes/" + id + "/exec", R"({"command":"head -c 100 /dev/zero","max_output_bytes":10})");
  Call("POST", "/v1/execute", R"j({"language":"python","code":"print(1)"})j");
  Call("POST", "/v1/execute", R"({"language":"cobol","code":"x"})");
  auto r = client_->request("GET", "/metrics");
  ASSERT_TRUE(r.ok());
  const std::string& text = r->body;
  for (const char* want :
       {"swissbox_exec_duration_seconds_count{kind=\"exec\",template=\"default\",language=\"command\"} 1",
        "swissbox_exec_duration_seconds_count{kind=\"oneshot\",template=\"default\",language=\"python\"} 1",
        "swissbox_claim_duration_seconds_count{template=\"default\",warm=\"true\"} 2",
        "swissbox_exec_truncated_total{kind=\"exec\"} 1", "swissbox_api_errors_total{code=\"invalid_argument\"} 1",
        "swissbox_tenant_executions_total{tenant=\"default\"} 2", "swissbox_pool_active{template=\"default\"} 1",
        "# TYPE swissbox_sandbox_start_duration_seconds histogram", "process_resident_memory_bytes "}) {
    EXPECT_NE(text.find(want), std::string::npos) << want << "\n" << text;
  }
  auto problems = testing::promtool_problems(text);
  if (!problems) GTEST_SKIP() << "promtool is not installed (Debian package prometheus)";
  EXPECT_EQ(*problems, "") << text;
}

TEST_F(AgentApiTest, TimeoutTruncationAndExitCodes) {
  Start({{"default", 1}});
  std::string id = Call("POST", "/v1/sandboxes", "{}").second["id"];
  auto t0 = std::chrono::steady_clock::now();
  auto [s1, r1] = Call("POST", "/v1/sandboxes/" + id + "/exec",
                       R"({"command":["sleep","30"],"timeout_ms":300})");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1500ms);
  EXPECT_EQ(r1["timed_out"], true);
  auto [s2, r2] =
      Call("POST", "/v1/sandboxes/" + id + "/exec",
           R"({"command":"head -c 3000000 /dev/zero | tr '\\0' y","max_output_bytes":100000})");
  EXPECT_EQ(r2["truncated"], true);
  EXPECT_EQ(r2["stdout"].get<std::string>().size(), 100000u);
  auto [s3, r3] =
      Call("POST", "/v1/sandboxes/" + id + "/exec", R"({"command":"echo oops >&2; exit 7"})");
  EXPECT_EQ(r3["exit_code"], 7);
  EXPECT_EQ(r3["stderr"], "oops\n");
  auto [s4, r4] =
      Call("POST", "/v1/sandboxes/" + id + "/exec", R"({"command":["no-such-binary-here"]})");
  EXPECT_EQ(r4["exit_code"], 127);
}

TEST_F(AgentApiTest, BadRequestsGetTheErrorShapeAndChangeNothing) {
  Start({{"default", 1}});
  ASSERT_TRUE(wait_until([&] { return Ready() == 1; }));
  std::string id = Call("POST", "/v1/sandboxes", "{}").second["id"];
  struct Case {
    std::string method, path, body;
    unsigned status;
    std::string code;
  };
  std::string deep(1000, '[');
  std::vector<Case> cases = {
      {"POST", "/v1/sandboxes", "{not json", 400, "invalid_argument"},
      {"POST", "/v1/sandboxes", R"({"template":"nope"})", 400, "invalid_argument"},
      {"POST", "/v1/sandboxes", R"({"memory_mb":-5})", 400, "invalid_argument"},
      {"POST", "/v1/sandboxes", R"({"cpu":"two"})", 400, "invalid_argument"},
      {"POST", "/v1/sandboxes", R"([1,2])", 400, "invalid_argument"},
      {"POST", "/v1/sandboxes", deep, 400, "invalid_argument"},
      {"POST", "/v1/sandboxes", R"({"network":"host"})", 400, "invalid_argument"},
      {"GET", "/v1/sandboxes/../../etc/passwd", "", 400, "invalid_argument"},
      {"GET", "/v1/sandboxes/sbx-unit-000000000000", "", 404, "not_found"},
      {"POST", "/v1/sandboxes/" + id + "/exec", R"({})", 400, "invalid_argument"},
      {"POST", "/v1/sandboxes/" + id + "/exec", R"({"command":[]})", 400, "invalid_argument"},
      {"POST", "/v1/sandboxes/" + id + "/exec", R"({"command":[1]})", 400, "invalid_argument"},
      {"POST", "/v1/sandboxes/" + id + "/exec", R"({"command":"true","timeout_ms":-1})", 400,
       "invalid_argument"},
      {"POST", "/v1/sandboxes/" + id + "/code", R"({"language":"cobol","code":"x"})", 400,
       "invalid_argument"},
      {"POST", "/v1/sandboxes/" + id + "/code", R"({"language":"python"})", 400,
       "invalid_argument"},
      {"POST", "/v1/execute", R"({"language":"brainfuck","code":"+"})", 400, "invalid_argument"},
      {"POST", "/v1/sandboxes", std::string(2 << 20, ' '), 413, "too_large"},
      // A fresh machine's client saw its connection reset, with no status, while it still sent
      // this: the answer is given, and the rest of the body dropped, before the close.
      {"POST", "/v1/execute", std::string(100 << 20, ' '), 413, "too_large"},
      {"GET", "/v1/nothing-here", "", 404, "not_found"},
      {"PUT", "/v1/warmpool/default", R"({"target":-1})", 400, "invalid_argument"},
      {"PUT", "/v1/warmpool/unknown", R"({"target":1})", 404, "not_found"},
  };
  for (const auto& c : cases) {
    auto r = client_->request(c.method, c.path, c.body);
    ASSERT_TRUE(r.ok()) << c.path;
    EXPECT_EQ(r->status, c.status)
        << c.method << " " << c.path << " " << c.body.substr(0, 60) << " → " << r->body;
    json j = json::parse(r->body, nullptr, false);
    EXPECT_EQ(j["error"]["code"], c.code) << r->body;
    EXPECT_FALSE(j["error"]["message"].get<std::string>().empty());
    EXPECT_FALSE(r->header("X-Request-Id").empty());
  }
  // Nothing changed: still one active sandbox, the pool as it was.
  EXPECT_EQ(Call("GET", "/v1/sandboxes").second["sandboxes"].size(), 1u);
  EXPECT_TRUE(wait_until([&] { return Ready() == 1; }));
  // Requests are counted by their answer's status.
  EXPECT_GE(metrics_.get("swissbox_http_requests_total",
                         Metrics::labels({{"method", "POST"}, {"code", "400"}})),
            2);
  EXPECT_GE(metrics_.get("swissbox_http_requests_total",
                         Metrics::labels({{"method", "POST"}, {"code", "201"}})),
            1);
}

// Uploads reach the sandbox as they arrive (the agent holds one 64 KiB piece, never the
// file): 5 MiB arrive whole and byte for byte; one cut off midway leaves no partial file.
TEST_F(AgentApiTest, UploadsStreamIntoTheSandboxAndACutOffOneLeavesNothing) {
  Start({{"default", 1}});
  auto [s, sb] = Call("POST", "/v1/sandboxes", "{}");
  ASSERT_EQ(s, 201u);
  std::string id = sb["id"];
  std::string data(5 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 2654435761u >> 24);
  auto put = client_->request("PUT", "/v1/sandboxes/" + id + "/files?path=big.bin", data);
  ASSERT_TRUE(put.ok());
  EXPECT_EQ(put->status, 200u) << put->body;
  auto got = client_->request("GET", "/v1/sandboxes/" + id + "/files?path=big.bin");
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->body == data) << got->body.size() << " bytes came back";

  // 1 MiB of a declared 3 MiB, then the client goes away.
  int fd = testing::connect_loopback(server_->tcp_port());
  ASSERT_GE(fd, 0);
  std::string head = "PUT /v1/sandboxes/" + id + "/files?path=cut.bin HTTP/1.1\r\nHost: x\r\n"
                     "Content-Length: 3145728\r\n\r\n";
  std::string part = head + std::string(1 << 20, 'c');
  ASSERT_EQ(write(fd, part.data(), part.size()), static_cast<ssize_t>(part.size()));
  std::this_thread::sleep_for(200ms);
  close(fd);
  bool gone = false;
  for (int i = 0; i < 50 && !gone; ++i) {
    std::this_thread::sleep_for(20ms);
    gone = Call("GET", "/v1/sandboxes/" + id + "/files/list?path=.").second.dump().find("cut.bin") ==
           std::string::npos;
  }
  EXPECT_TRUE(gone) << "the cut-off upload left a partial file";
  EXPECT_EQ(Call("POST", "/v1/sandboxes/" + id + "/exec", R"({"command":"echo ok"})").second["stdout"], "ok\n");
}

TEST_F(AgentApiTest, DeleteDestroysAndOneShotCleansUp) {
  Start({{"default", 1}});
  std::string id = Call("POST", "/v1/sandboxes", "{}").second["id"];
  auto del = client_->request("DELETE", "/v1/sandboxes/" + id);
  ASSERT_TRUE(del.ok());
  EXPECT_EQ(del->status, 204u);
  EXPECT_EQ(Call("GET", "/v1/sandboxes/" + id).first, 404u);
  EXPECT_EQ(Call("DELETE", "/v1/sandboxes/" + id).first, 404u);
  auto [s, r] =
      Call("POST", "/v1/execute", R"({"command":"cat in.txt","files":{"in.txt":"from file"}})");
  ASSERT_EQ(s, 200u) << r;
  EXPECT_EQ(r["stdout"], "from file");
  EXPECT_EQ(Call("GET", "/v1/sandboxes").second["sandboxes"].size(), 0u);
  // Only the warm pool's sandbox remains once the background destroys ran.
  EXPECT_TRUE(wait_until([&] { return runtime_->live() == 1; }));
}

TEST_F(AgentApiTest, SandboxThatDiesIsFailedAndAnswers409) {
  Start({{"default", 1}});
  std::string id = Call("POST", "/v1/sandboxes", "{}").second["id"];
  runtime_->kill_sandbox(id);
  ASSERT_TRUE(
      wait_until([&] { return Call("GET", "/v1/sandboxes/" + id).second["state"] == "failed"; }));
  auto [s, r] = Call("POST", "/v1/sandboxes/" + id + "/exec", R"({"command":"true"})");
  EXPECT_EQ(s, 409u);
  EXPECT_NE(r["error"]["message"].get<std::string>().find("failed"), std::string::npos);
}

TEST_F(AgentApiTest, FrozenSandboxAnswersDeadlineExceeded) {
  Start({{"default", 1}});
  std::string id = Call("POST", "/v1/sandboxes", "{}").second["id"];
  runtime_->freeze_sandbox(id);
  auto t0 = std::chrono::steady_clock::now();
  auto [s1, r1] =
      Call("POST", "/v1/sandboxes/" + id + "/exec", R"({"command":"true","timeout_ms":100})");
  EXPECT_EQ(s1, 504u) << r1;
  EXPECT_EQ(r1["error"]["code"], "deadline_exceeded");
  auto [s2, r2] = Call("GET", "/v1/sandboxes/" + id + "/files/list?path=.");
  EXPECT_EQ(s2, 504u) << r2;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  // Deleting a frozen sandbox still works.
  EXPECT_EQ(client_->request("DELETE", "/v1/sandboxes/" + id)->status, 204u);
}

TEST_F(AgentApiTest, BrokenRuntimeIsRetriedAndPoolRecovers) {
  runtime_->fail_next = 1;
  Start({{"default", 1}});
  EXPECT_TRUE(wait_until([&] { return Ready() == 1; }, 8s));
  EXPECT_GE(runtime_->starts, 2);
}

TEST_F(AgentApiTest, CapacityLimitAnswers429WithRetryAfter) {
  Start({}, /*max_sandboxes=*/1);
  ASSERT_EQ(Call("POST", "/v1/sandboxes", "{}").first, 201u);
  auto r = client_->request("POST", "/v1/sandboxes", "{}");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 429u);
  EXPECT_EQ(r->header("Retry-After"), "2");
}

TEST_F(AgentApiTest, ConcurrentExecsOnOneSandbox) {
  Start({{"default", 1}});
  std::string id = Call("POST", "/v1/sandboxes", "{}").second["id"];
  std::string target = "127.0.0.1:" + std::to_string(server_->tcp_port());
  std::vector<std::future<std::string>> futs;
  for (int i = 0; i < 20; ++i) {
    futs.push_back(std::async(std::launch::async, [&, i] {
      http::Client c(target);
      auto r = c.request("POST", "/v1/sandboxes/" + id + "/exec",
                         json{{"command", {"echo", std::to_string(i)}}}.dump());
      return r.ok() ? json::parse(r->body).value("stdout", "") : std::string("error");
    }));
  }
  for (int i = 0; i < 20; ++i) EXPECT_EQ(futs[i].get(), std::to_string(i) + "\n");
}

// Host processes whose command line is exactly argv (NUL-separated, as in /proc).
int CountProcesses(const std::string& cmdline) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    auto c = fs::read_file(e.path().string() + "/cmdline");
    if (c.ok() && *c == cmdline) ++n;
  }
  return n;
}

TEST_F(AgentApiTest, LeavingAnSseStreamKillsTheCommand) {
  Start({{"default", 1}});
  std::string id = Call("POST", "/v1/sandboxes", "{}").second["id"];
  std::string body = R"({"command":"echo started; exec sleep 31.5"})";
  // Close-on-exec: a runner the host runtime starts meanwhile (the pool's refill) must not
  // inherit the client's end, or closing it here would not end the connection.
  int fd = testing::connect_loopback(server_->tcp_port());
  ASSERT_GE(fd, 0);
  std::string req = "POST /v1/sandboxes/" + id +
                    "/exec HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n" +
                    "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  ASSERT_EQ(write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
  std::string got;
  char buf[4096];
  while (got.find("started") == std::string::npos) {
    ssize_t n = read(fd, buf, sizeof(buf));
    ASSERT_GT(n, 0);
    got.append(buf, n);
  }
  const std::string sleeper = std::string(
      "sleep\0"
      "31.5\0",
      11);
  ASSERT_TRUE(wait_until([&] { return CountProcesses(sleeper) == 1; }));
  close(fd);
  EXPECT_TRUE(wait_until([&] { return CountProcesses(sleeper) == 0; }, 3s));
  // The sandbox itself goes on serving.
  EXPECT_EQ(Call("POST", "/v1/sandboxes/" + id + "/exec", R"({"command":["echo","ok"]})")
                .second["stdout"],
            "ok\n");
}

TEST_F(AgentApiTest, BackgroundCommandsOutliveLaterCommandsOthersDoNot) {
  Start({{"default", 1}});
  std::string id = Call("POST", "/v1/sandboxes", "{}").second["id"];
  const std::string kept = std::string(
      "sleep\0"
      "300.25\0",
      13);
  const std::string stray = std::string(
      "sleep\0"
      "300.75\0",
      13);
  Call("POST", "/v1/sandboxes/" + id + "/exec",
       R"({"command":"sleep 300.25 >/dev/null 2>&1 &","background":true})");
  Call("POST", "/v1/sandboxes/" + id + "/exec", R"({"command":"sleep 300.75 >/dev/null 2>&1 &"})");
  Call("POST", "/v1/sandboxes/" + id + "/exec", R"({"command":["true"]})");
  EXPECT_EQ(CountProcesses(kept), 1);
  EXPECT_TRUE(wait_until([&] { return CountProcesses(stray) == 0; }));
  Call("POST", "/v1/sandboxes/" + id + "/exec", R"({"command":["pkill","-f","sleep 300.25"]})");
  EXPECT_TRUE(wait_until([&] { return CountProcesses(kept) == 0; }));
}

TEST_F(AgentApiTest, SseStreamsOutputThenExit) {
  Start({{"default", 1}});
  std::string id = Call("POST", "/v1/sandboxes", "{}").second["id"];
  std::string all;
  auto r = client_->stream(
      "POST", "/v1/sandboxes/" + id + "/exec", R"({"command":"echo a; echo b >&2; exit 4"})",
      {{"Accept", "text/event-stream"}}, [&](std::string_view d) { all.append(d); });
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->header("Content-Type"), "text/event-stream");
  EXPECT_NE(all.find("event: stdout\ndata: {\"data\":\"a\\n\"}"), std::string::npos) << all;
  EXPECT_NE(all.find("event: stderr\ndata: {\"data\":\"b\\n\"}"), std::string::npos) << all;
  EXPECT_NE(all.find("event: exit\ndata: {"), std::string::npos) << all;
  EXPECT_NE(all.find("\"exit_code\":4"), std::string::npos) << all;
}

// A client that stops reading an SSE stream holds the command back (the agent queues about
// 1 MiB, then the runner stops reading the command's pipes) instead of the agent queueing
// all the command writes: 15 MB of output take as long as the client's pause.
TEST_F(AgentApiTest, ASlowSseClientHoldsTheCommandBack) {
  Start({{"default", 1}});
  std::string id = Call("POST", "/v1/sandboxes", "{}").second["id"];
  std::string exit_event;
  size_t bytes = 0;
  bool paused = false;
  auto r = client_->stream(
      "POST", "/v1/sandboxes/" + id + "/exec",
      R"({"command":"yes | head -c 15000000","max_output_bytes":16777216})",
      {{"Accept", "text/event-stream"}}, [&](std::string_view d) {
        if (!paused) {
          paused = true;
          std::this_thread::sleep_for(1500ms);
        }
        bytes += d.size();
        if (auto at = d.find("event: exit"); at != std::string_view::npos) exit_event = d.substr(at);
      });
  ASSERT_TRUE(r.ok());
  EXPECT_GT(bytes, 15000000u);
  auto data = exit_event.find("data: ");
  ASSERT_NE(data, std::string::npos) << exit_event;
  json exit = json::parse(exit_event.substr(data + 6, exit_event.find('\n', data) - data - 6));
  EXPECT_EQ(exit.value("truncated", true), false) << exit;
  EXPECT_GE(exit.value("duration_ms", 0.0), 1000.0) << "the command ran on while its client read nothing";
}

// Found by reading swissbox-init: a bridge that proved itself in the same poll round as a
// command's output was ready rebuilt the command table while the round still held
// pointers into it (a use after free once per reattach). Here the runner is PID 1 of its
// own namespaces, as in a sandbox, and in the sanitizer build it is built with ASan: the
// agent restarts three times while a command writes without a pause, and each new agent
// reattaches to the same runner and serves it.
// Processes named `comm` in the PID namespace of `pid`.
int ProcessesInNamespaceOf(pid_t pid, const std::string& comm) {
  namespace stdfs = std::filesystem;
  std::error_code ec;
  auto ns = stdfs::read_symlink("/proc/" + std::to_string(pid) + "/ns/pid", ec);
  int n = 0;
  for (const auto& e : stdfs::directory_iterator("/proc", ec)) {
    std::error_code gone;
    if (stdfs::read_symlink(e.path() / "ns" / "pid", gone) != ns || gone) continue;
    auto name = fs::read_file((e.path() / "comm").string());
    n += name && *name == comm + "\n";
  }
  return n;
}

TEST_F(AgentApiTest, ReattachWhileACommandStreamsOutput) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root: the runner runs as PID 1 of its own namespaces";
  std::string id;
  pid_t runner = 0;
  ASSERT_NO_FATAL_FAILURE(StartIsolatedSandbox(&id, &runner));
  // Its client goes away with the first agent; the command goes on writing.
  std::jthread writer([this, port = server_->tcp_port(), id] {
    http::Client c("127.0.0.1:" + std::to_string(port));
    (void)c.request("POST", "/v1/sandboxes/" + id + "/exec",
                    R"({"command":"yes streaming-output-line","timeout_ms":20000})");
  });
  ASSERT_TRUE(wait_until([&] { return ProcessesInNamespaceOf(runner, "yes") == 1; }));
  for (int restart = 0; restart < 3; ++restart) {
    Stop(/*keep_active=*/true);
    ASSERT_EQ(ProcessesInNamespaceOf(runner, "yes"), 1) << "the command must go on without an agent";
    Start({});
    auto [s, out] = Call("POST", "/v1/sandboxes/" + id + "/exec", R"({"command":"echo served"})");
    ASSERT_EQ(s, 200u) << "restart " << restart << ": " << out;
    EXPECT_EQ(out.value("stdout", ""), "served\n");
  }
  EXPECT_EQ(runtime_->runner_pid(id), runner);
  EXPECT_EQ(kill(runner, 0), 0) << "the runner died";

}

// A daemon a background command starts (setsid nohup …&) outlives the command and every
// foreground command after it; it was killed as a stray when the next foreground command
// ended (the integration test that looks for it with ps was flaky). Isolated runner: its
// namespace ends with it, daemon included.
TEST_F(AgentApiTest, ADaemonOfABackgroundCommandOutlivesTheCommandsAfterIt) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root: the runner runs as PID 1 of its own namespaces";
  std::string id;
  pid_t runner = 0;
  ASSERT_NO_FATAL_FAILURE(StartIsolatedSandbox(&id, &runner));
  auto exec = [&](const std::string& command, bool background = false) {
    json body = {{"command", command}, {"background", background}};
    return Call("POST", "/v1/sandboxes/" + id + "/exec", body.dump()).first;
  };
  ASSERT_EQ(exec("setsid nohup sleep 1000 >/dev/null 2>&1 &"), 200u);
  ASSERT_TRUE(wait_until([&] { return ProcessesInNamespaceOf(runner, "sleep") == 0; }))
      << "a foreground command's daemon is killed when the command ends";
  ASSERT_EQ(exec("setsid nohup sleep 1000 >/dev/null 2>&1 &", true), 200u);
  ASSERT_TRUE(wait_until([&] { return ProcessesInNamespaceOf(runner, "sleep") == 1; }));
  for (int i = 0; i < 5; ++i) ASSERT_EQ(exec("true"), 200u);
  EXPECT_EQ(ProcessesInNamespaceOf(runner, "sleep"), 1) << "the background command's daemon was killed";
  Call("DELETE", "/v1/sandboxes/" + id);
}

}  // namespace
}  // namespace swissbox
