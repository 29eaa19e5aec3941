// Stateful code contexts through the agent's API, with the real runner and the host's
// python3, node and bash as kernels: state kept between runs, final expressions as
// results, errors as results with the user's line numbers, timeouts that interrupt,
// restart, delete, SSE, and contexts found again by an agent that restarts.
#include <gtest/gtest.h>

#include <string>

#include "component/api_fixture.h"

namespace swissbox {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

class ContextsTest : public testing::AgentApiTest {
 protected:
  // A sandbox, and a context of `language` in it; its id.
  std::string NewContext(const std::string& language, std::string* sandbox) {
    if (sandbox_.empty()) {
      auto [s, sb] = Call("POST", "/v1/sandboxes", "{}");
      EXPECT_EQ(s, 201u) << sb;
      sandbox_ = sb.value("id", "");
    }
    *sandbox = sandbox_;
    auto [s, ctx] = Call("POST", "/v1/sandboxes/" + sandbox_ + "/contexts",
                         json{{"language", language}}.dump());
    EXPECT_EQ(s, 201u) << ctx;
    EXPECT_EQ(ctx.value("language", ""), language);
    return ctx.value("id", "");
  }

  json Run(const std::string& sandbox, const std::string& context, const std::string& code,
           int timeout_ms = 10000) {
    auto [s, r] = Call("POST", "/v1/sandboxes/" + sandbox + "/code",
                       json{{"context_id", context}, {"code", code}, {"timeout_ms", timeout_ms}}.dump());
    EXPECT_EQ(s, 200u) << r;
    return r;
  }

  static std::string MainText(const json& r) {
    for (const auto& res : r.value("results", json::array())) {
      if (res.value("is_main_result", false)) return res.value("text", "");
    }
    return "<no main result>";
  }

  std::string sandbox_;
};

TEST_F(ContextsTest, PythonKeepsItsGlobalsAndShowsTheFinalExpression) {
  Start({});
  std::string sb;
  std::string ctx = NewContext("python", &sb);
  json first = Run(sb, ctx, "x = 41\nprint('set')");
  EXPECT_EQ(first.value("stdout", ""), "set\n");
  EXPECT_EQ(first["results"], json::array());
  EXPECT_TRUE(first["error"].is_null()) << first;
  json second = Run(sb, ctx, "x + 1");
  EXPECT_EQ(MainText(second), "42");
  EXPECT_EQ(second.value("exit_code", -1), 0);
  // An object's own rich formats come along (a DataFrame's HTML, here a small class).
  json rich = Run(sb, ctx, "class T:\n    def _repr_html_(self): return '<b>t</b>'\nT()");
  ASSERT_EQ(rich["results"].size(), 1u) << rich;
  EXPECT_EQ(rich["results"][0].value("html", ""), "<b>t</b>");
}

TEST_F(ContextsTest, AnExceptionIsAResultWithTheUsersLineNumbers) {
  Start({});
  std::string sb;
  std::string ctx = NewContext("python", &sb);
  json r = Run(sb, ctx, "def f():\n    return 1 / 0\n\nf()");
  EXPECT_EQ(r.value("exit_code", -1), 1);
  ASSERT_TRUE(r["error"].is_object()) << r;
  EXPECT_EQ(r["error"].value("name", ""), "ZeroDivisionError");
  EXPECT_EQ(r["error"].value("value", ""), "division by zero");
  std::string tb = r["error"].value("traceback", "");
  EXPECT_NE(tb.find("line 4, in <module>"), std::string::npos) << tb;
  EXPECT_NE(tb.find("line 2, in f"), std::string::npos) << tb;
  EXPECT_EQ(tb.find("<string>"), std::string::npos) << "the kernel's own frames show: " << tb;
  // The context lives on.
  EXPECT_EQ(MainText(Run(sb, ctx, "'still here'")), "'still here'");
}

TEST_F(ContextsTest, ATimeoutInterruptsThePythonCellAndKeepsTheState) {
  Start({});
  std::string sb;
  std::string ctx = NewContext("python", &sb);
  Run(sb, ctx, "kept = 'yes'");
  json r = Run(sb, ctx, "import time\nprint('started', flush=True)\ntime.sleep(30)", 500);
  EXPECT_TRUE(r.value("timed_out", false)) << r;
  EXPECT_EQ(r.value("stdout", ""), "started\n");
  EXPECT_EQ(r["error"].value("name", ""), "KeyboardInterrupt") << r;
  EXPECT_LT(r.value("duration_ms", 1e9), 5000);
  EXPECT_EQ(MainText(Run(sb, ctx, "kept")), "'yes'");
}

TEST_F(ContextsTest, ACellThatIgnoresTheInterruptEndsInAFreshContextSaidSo) {
  Start({});
  std::string sb;
  std::string ctx = NewContext("javascript", &sb);
  Run(sb, ctx, "let lost = 1");
  json r = Run(sb, ctx, "while (true) {}", 300);
  EXPECT_TRUE(r.value("timed_out", false)) << r;
  EXPECT_EQ(r["error"].value("name", ""), "ContextRestarted") << r;
  EXPECT_EQ(MainText(Run(sb, ctx, "typeof lost")), "'undefined'");
}

TEST_F(ContextsTest, JavaScriptAwaitsAtTopLevelAndLetsALaterCellRedeclare) {
  Start({});
  std::string sb;
  std::string ctx = NewContext("javascript", &sb);
  json a = Run(sb, ctx, "const n = await Promise.resolve(20); console.log('n', n); n + 1");
  EXPECT_EQ(a.value("stdout", ""), "n 20\n");
  EXPECT_EQ(MainText(a), "21");
  json b = Run(sb, ctx, "const n = 5; let m = n * 2; m");
  EXPECT_TRUE(b["error"].is_null()) << b;
  EXPECT_EQ(MainText(b), "10");
  json err = Run(sb, ctx, "function g() { return null.x }\ng()");
  EXPECT_EQ(err["error"].value("name", ""), "TypeError") << err;
  EXPECT_NE(err["error"].value("traceback", "").find(":2:1"), std::string::npos) << err;
}

TEST_F(ContextsTest, BashKeepsVariablesAndTheWorkingDirectory) {
  Start({});
  std::string sb;
  std::string ctx = NewContext("bash", &sb);
  json a = Run(sb, ctx, "GREETING=hi; mkdir -p d && cd d");
  EXPECT_EQ(a.value("exit_code", -1), 0) << a;
  json b = Run(sb, ctx, "echo $GREETING $(basename $PWD); false");
  EXPECT_EQ(b.value("stdout", ""), "hi d\n");
  EXPECT_EQ(b.value("exit_code", -1), 1);
}

TEST_F(ContextsTest, ListRestartAndDelete) {
  Start({});
  std::string sb;
  std::string py = NewContext("python", &sb);
  std::string js = NewContext("javascript", &sb);
  auto [s, list] = Call("GET", "/v1/sandboxes/" + sb + "/contexts");
  ASSERT_EQ(s, 200u);
  EXPECT_EQ(list["contexts"].size(), 2u) << list;
  Run(sb, py, "x = 1");
  auto [rs, restarted] = Call("POST", "/v1/sandboxes/" + sb + "/contexts/" + py + "/restart");
  EXPECT_EQ(rs, 200u) << restarted;
  EXPECT_EQ(restarted.value("id", ""), py);
  EXPECT_EQ(Run(sb, py, "x")["error"].value("name", ""), "NameError");
  EXPECT_EQ(Call("DELETE", "/v1/sandboxes/" + sb + "/contexts/" + js).first, 204u);
  EXPECT_EQ(Call("DELETE", "/v1/sandboxes/" + sb + "/contexts/" + js).first, 404u);
  auto [rs2, gone] = Call("POST", "/v1/sandboxes/" + sb + "/code",
                          json{{"context_id", js}, {"code", "1"}}.dump());
  EXPECT_EQ(rs2, 404u) << gone;
  auto [rs3, wrong] = Call("POST", "/v1/sandboxes/" + sb + "/code",
                           json{{"context_id", py}, {"language", "bash"}, {"code", "1"}}.dump());
  EXPECT_EQ(rs3, 400u) << wrong;
  auto [rs4, unknown] = Call("POST", "/v1/sandboxes/" + sb + "/contexts", R"({"language":"cobol"})");
  EXPECT_EQ(rs4, 400u) << unknown;
}

TEST_F(ContextsTest, SseStreamsOutputThenResultThenExit) {
  Start({});
  std::string sb;
  std::string ctx = NewContext("python", &sb);
  std::string all;
  auto r = client_->stream("POST", "/v1/sandboxes/" + sb + "/code",
                           json{{"context_id", ctx}, {"code", "print('a')\n6 * 7"}}.dump(),
                           {{"Accept", "text/event-stream"}}, [&](std::string_view d) { all.append(d); });
  ASSERT_TRUE(r.ok());
  // Events in order; stdout may come in pieces (print writes "a" and "\n" unbuffered).
  std::vector<std::string> kinds;
  std::string stdout_text;
  for (size_t at = 0; (at = all.find("event: ", at)) != std::string::npos;) {
    size_t nl = all.find('\n', at);
    std::string kind = all.substr(at + 7, nl - at - 7);
    size_t data_end = all.find('\n', nl + 1);
    json data = json::parse(all.substr(nl + 7, data_end - nl - 7), nullptr, false);
    if (kind == "stdout") stdout_text += data.value("data", "");
    if (kinds.empty() || kinds.back() != kind) kinds.push_back(kind);
    if (kind == "result") {
      EXPECT_EQ(data, json({{"is_main_result", true}, {"text", "42"}}));
    }
    at = data_end;
  }
  EXPECT_EQ(kinds, (std::vector<std::string>{"stdout", "result", "exit"})) << all;
  EXPECT_EQ(stdout_text, "a\n");
}

TEST_F(ContextsTest, AContextOutlivesAnAgentRestart) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root: the runner runs as PID 1 of its own namespaces";
  std::string id;
  pid_t runner = 0;
  ASSERT_NO_FATAL_FAILURE(StartIsolatedSandbox(&id, &runner));
  sandbox_ = id;
  std::string sb;
  std::string ctx = NewContext("python", &sb);
  Run(sb, ctx, "counter = 41");
  Stop(/*keep_active=*/true);
  Start({});
  auto [s, list] = Call("GET", "/v1/sandboxes/" + sb + "/contexts");
  ASSERT_EQ(s, 200u);
  ASSERT_EQ(list["contexts"].size(), 1u) << list;
  EXPECT_EQ(MainText(Run(sb, ctx, "counter + 1")), "42");
}

}  // namespace
}  // namespace swissbox
