#include <gtest/gtest.h>

#include "common/runner_protocol.h"

namespace swissbox::proto {
namespace {

TEST(RunnerProtocol, RoundTripsFramesFedByteByByte) {
  std::string wire = encode({{"op", "exec"}, {"id", 7}}, std::string("a\0b", 3));
  wire += encode({{"ev", "exit"}, {"id", 7}, {"exit_code", 3}});
  Decoder d;
  std::vector<Frame> frames;
  for (char c : wire) {
    d.feed(&c, 1);
    while (auto f = d.next()) frames.push_back(std::move(*f));
  }
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].header["op"], "exec");
  EXPECT_EQ(frames[0].payload, std::string("a\0b", 3));
  EXPECT_EQ(frames[1].header["exit_code"], 3);
  EXPECT_TRUE(frames[1].payload.empty());
  EXPECT_EQ(d.buffered(), 0u);
}

TEST(RunnerProtocol, RejectsOversizedAndNonObjectHeaders) {
  Decoder big;
  std::string prefix = {'\xff', '\xff', '\xff', '\x00', 0, 0, 0, 0};
  big.feed(prefix.data(), prefix.size());
  EXPECT_FALSE(big.next().has_value());
  EXPECT_FALSE(big.error().empty());

  Decoder notobj;
  std::string h = "[1]";
  std::string wire = {static_cast<char>(h.size()), 0, 0, 0, 0, 0, 0, 0};
  wire += h;
  notobj.feed(wire.data(), wire.size());
  EXPECT_FALSE(notobj.next().has_value());
  EXPECT_NE(notobj.error().find("JSON object"), std::string::npos);
}

TEST(RunnerProtocol, WaitsForAWholeFrame) {
  std::string wire = encode({{"ev", "stdout"}, {"id", 1}}, std::string(1000, 'x'));
  Decoder d;
  d.feed(wire.data(), wire.size() - 1);
  EXPECT_FALSE(d.next().has_value());
  EXPECT_TRUE(d.error().empty());
  d.feed(wire.data() + wire.size() - 1, 1);
  auto f = d.next();
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->payload.size(), 1000u);
}

// Frames a runner (code in the sandbox, to the agent) could send. Each must decode to an
// error, never throw and never reach a request as a half-typed event.
TEST(RunnerEvents, RejectsEveryFieldOfTheWrongTypeOrRange) {
  const std::vector<nlohmann::json> bad = {
      {{"ev", "result"}, {"id", "x"}},                       // the audit's frame
      {{"ev", "result"}, {"id", -1}, {"ok", true}},
      {{"ev", "result"}, {"id", 1.5}, {"ok", true}},
      {{"ev", "result"}, {"id", 1}},                          // ok missing
      {{"ev", "result"}, {"id", 1}, {"ok", "yes"}},
      {{"ev", "result"}, {"id", 1}, {"ok", false}, {"error", "EIO"}},
      {{"ev", "result"}, {"id", 1}, {"ok", false}, {"error", {{"errno", "5"}}}},
      {{"ev", "result"}, {"id", 1}, {"ok", true}, {"size", -4}},
      {{"ev", "result"}, {"id", 1}, {"ok", true}, {"entries", {{{"name", 1}, {"type", "file"}}}}},
      {{"ev", "entries"}, {"id", 1}, {"entries", {{{"name", "a"}, {"type", "bomb"}}}}},
      {{"ev", "entries"}, {"id", 1}},
      {{"ev", "exit"}, {"id", 1}},                            // exit_code missing
      {{"ev", "exit"}, {"id", 1}, {"exit_code", "0"}},
      {{"ev", "exit"}, {"id", 1}, {"exit_code", 1 << 20}},
      {{"ev", "exit"}, {"id", 1}, {"exit_code", 0}, {"duration_ms", -1}},
      {{"ev", "exit"}, {"id", 1}, {"exit_code", 0}, {"timed_out", 1}},
      {{"ev", "stdout"}},                                     // no id
      {{"ev", "lost"}, {"id", 1}},                            // the agent's own, never the wire's
      {{"ev", 7}, {"id", 1}},
      {{"op", "exec"}, {"id", 1}},
  };
  for (const auto& h : bad) {
    std::string error;
    EXPECT_FALSE(decode_event(Frame{h, {}}, &error).has_value()) << h.dump();
    EXPECT_FALSE(error.empty()) << h.dump();
  }
  std::string error;
  EXPECT_FALSE(decode_event(Frame{{{"ev", "result"}, {"id", 1}, {"ok", true}}, "payload"}, &error));
}

TEST(RunnerEvents, DecodesWhatTheRunnerSends) {
  std::string error;
  auto exit = decode_event(Frame{{{"ev", "exit"},      {"id", 9},        {"exit_code", 3},
                                  {"signal", 0},       {"duration_ms", 1.5}, {"cpu_ms", 0.25},
                                  {"max_rss_kb", 2048}, {"timed_out", true}, {"truncated", false},
                                  {"oom_killed", false}},
                                 {}},
                           &error);
  ASSERT_TRUE(exit.has_value()) << error;
  EXPECT_EQ(exit->kind, EventKind::kExit);
  EXPECT_EQ(exit->id, 9u);
  EXPECT_EQ(exit->exit.exit_code, 3);
  EXPECT_TRUE(exit->exit.timed_out);
  EXPECT_EQ(exit->exit.max_rss_kb, 2048);

  auto failed = decode_event(
      Frame{{{"ev", "result"}, {"id", 2}, {"ok", false}, {"error", {{"errno", 2}, {"message", "open x"}}}}, {}},
      &error);
  ASSERT_TRUE(failed.has_value()) << error;
  EXPECT_FALSE(failed->ok);
  EXPECT_EQ(failed->error_errno, 2);
  EXPECT_EQ(failed->message, "open x");

  auto stat = decode_event(Frame{{{"ev", "result"}, {"id", 3}, {"ok", true}, {"name", "/w/f"},
                                  {"type", "file"}, {"size", 12}, {"mode", 0644}, {"mtime", 5}},
                                 {}},
                           &error);
  ASSERT_TRUE(stat.has_value() && stat->entry.has_value()) << error;
  EXPECT_EQ(stat->entry->size, 12u);
  EXPECT_FALSE(stat->size.has_value());

  auto out = decode_event(Frame{{{"ev", "stdout"}, {"id", 4}}, "bytes"}, &error);
  ASSERT_TRUE(out.has_value()) << error;
  EXPECT_EQ(out->payload, "bytes");
  auto hello = decode_event(Frame{{{"ev", "hello"}, {"pid", 1}, {"version", 1}, {"extra", "ok"}}, {}}, &error);
  ASSERT_TRUE(hello.has_value()) << error;
  EXPECT_EQ(hello->version, 1);
}

}  // namespace
}  // namespace swissbox::proto

namespace swissbox::proto {
namespace {

// What the agent encodes is what the runner decodes, field for field; what the runner
// sends as exit and hello is what the agent reads.
TEST(RunnerOps, ExecAndPrepareRoundTrip) {
  ExecOp op;
  op.language = "python";
  op.code_bytes = 12;
  op.keep_worker = true;
  op.env = {{"A", "1"}, {"PATH", "/bin"}};
  op.cwd = "sub";
  op.timeout_ms = 5000;
  op.output_cap = 4096;
  op.background = true;
  op.memory_limit = 256 << 20;
  op.pids_limit = 64;
  op.stdin_eof = false;
  std::string error;
  auto back = decode_exec(encode_op(op), &error);
  ASSERT_TRUE(back) << error;
  EXPECT_EQ(back->language, "python");
  EXPECT_EQ(back->code_bytes, 12u);
  EXPECT_TRUE(back->keep_worker);
  EXPECT_EQ(back->env, op.env);
  EXPECT_EQ(back->cwd, "sub");
  EXPECT_EQ(back->timeout_ms, 5000);
  EXPECT_EQ(back->output_cap, 4096u);
  EXPECT_TRUE(back->background);
  EXPECT_EQ(back->memory_limit, 256 << 20);
  EXPECT_EQ(back->pids_limit, 64);
  EXPECT_FALSE(back->stdin_eof);
  ExecOp command;
  command.argv = {"echo", "hi"};
  auto c = decode_exec(encode_op(command), &error);
  ASSERT_TRUE(c) << error;
  EXPECT_EQ(c->argv, command.argv);
  EXPECT_TRUE(c->language.empty());
  auto prepare = decode_prepare(encode_op(PrepareOp{{"python", "javascript"}, {{"HOME", "/workspace"}}}), &error);
  ASSERT_TRUE(prepare) << error;
  EXPECT_EQ(prepare->languages, (std::vector<std::string>{"python", "javascript"}));
  EXPECT_EQ(prepare->env.at("HOME"), "/workspace");

  ExitStatus status;
  status.exit_code = 3;
  status.signal = 9;
  status.duration_ms = 12.5;
  status.max_rss_kb = 2048;
  status.timed_out = status.truncated = status.oom_killed = true;
  auto exit = decode_event({exit_event(7, status), ""}, &error);
  ASSERT_TRUE(exit) << error;
  EXPECT_EQ(exit->id, 7u);
  EXPECT_EQ(exit->exit.exit_code, 3);
  EXPECT_EQ(exit->exit.signal, 9);
  EXPECT_EQ(exit->exit.max_rss_kb, 2048);
  EXPECT_TRUE(exit->exit.timed_out && exit->exit.truncated && exit->exit.oom_killed);
  auto hello = decode_event({hello_event(1, "00ff", std::nullopt), ""}, &error);
  ASSERT_TRUE(hello) << error;
  EXPECT_EQ(hello->version, kVersion);
  EXPECT_EQ(hello->secret, "00ff");
}

TEST(RunnerOps, TheRunnerRefusesMalformedExecAndPrepareWithTheField) {
  using json = nlohmann::json;
  const std::pair<json, std::string> bad[] = {
      {json{{"op", "exec"}}, "argv missing"},
      {json{{"op", "exec"}, {"argv", json::array()}}, "argv is empty"},
      {json{{"op", "exec"}, {"argv", "echo hi"}}, "argv not an array"},
      {json{{"op", "exec"}, {"argv", {"echo", 1}}}, "argv has an element"},
      {json{{"op", "exec"}, {"argv", {"true"}}, {"env", {{"A", 1}}}}, "env has a value"},
      {json{{"op", "exec"}, {"argv", {"true"}}, {"timeout_ms", -1}}, "timeout_ms out of range"},
      {json{{"op", "exec"}, {"argv", {"true"}}, {"stdin_eof", "yes"}}, "stdin_eof not a boolean"},
      {json{{"op", "exec"}, {"language", "python"}, {"code_bytes", 1.5}}, "code_bytes not an integer"},
  };
  for (const auto& [header, why] : bad) {
    std::string error;
    EXPECT_FALSE(decode_exec(header, &error)) << header.dump();
    EXPECT_NE(error.find(why), std::string::npos) << header.dump() << " → " << error;
  }
  std::string error;
  EXPECT_FALSE(decode_prepare(json{{"languages", "python"}}, &error));
  EXPECT_NE(error.find("languages not an array"), std::string::npos) << error;
}

}  // namespace
}  // namespace swissbox::proto

namespace swissbox::proto {
namespace {

using json = nlohmann::json;

// What a cell shows and raises comes from the sandbox's user through the kernel: the runner
// keeps only known formats and fields, and the agent refuses anything else.
TEST(ContextEvents, OnlyKnownFormatsAndStringFieldsPass) {
  json kept = display_payload({{"is_main_result", true},
                               {"text", "42"},
                               {"png", "iVBOR"},
                               {"json", {{"a", 1}}},
                               {"html", 7},            // not a string: dropped
                               {"evil", "x"},          // unknown format: dropped
                               {"t", "display"}});
  EXPECT_EQ(kept, json({{"is_main_result", true}, {"text", "42"}, {"png", "iVBOR"}, {"json", {{"a", 1}}}}));
  EXPECT_EQ(display_payload("not an object"), json({{"is_main_result", false}}));
  EXPECT_EQ(exception_payload({{"name", "E"}, {"value", 3}}),
            json({{"name", "E"}, {"value", ""}, {"traceback", ""}}));

  std::string error;
  auto shown = decode_event(Frame{{{"ev", "display"}, {"id", 5}}, kept.dump()}, &error);
  ASSERT_TRUE(shown.has_value()) << error;
  EXPECT_EQ(shown->kind, EventKind::kDisplay);
  EXPECT_EQ(shown->value, kept);
  EXPECT_TRUE(shown->payload.empty());
  auto raised = decode_event(
      Frame{{{"ev", "exception"}, {"id", 5}}, R"({"name":"E","value":"v","traceback":"t"})"}, &error);
  ASSERT_TRUE(raised.has_value()) << error;
  EXPECT_EQ(raised->value.value("name", ""), "E");

  for (std::string bad : {"", "[1]", "not json", R"({"text":1})", R"({"evil":"x"})",
                          R"({"is_main_result":"yes"})"}) {
    EXPECT_FALSE(decode_event(Frame{{{"ev", "display"}, {"id", 5}}, bad}, &error)) << bad;
  }
  for (std::string bad : {"{}", R"({"name":"E","value":"v"})", R"({"name":1,"value":"v","traceback":"t"})"}) {
    EXPECT_FALSE(decode_event(Frame{{{"ev", "exception"}, {"id", 5}}, bad}, &error)) << bad;
  }
}

TEST(ContextOps, RoundTripAndRefuseBadIds) {
  ContextStartOp start;
  start.context = "ctx-0123abcd";
  start.language = "python";
  start.env = {{"A", "b"}};
  start.pids_limit = 64;
  std::string error;
  auto s = decode_context_start(encode_op(start), &error);
  ASSERT_TRUE(s.has_value()) << error;
  EXPECT_EQ(s->context, start.context);
  EXPECT_EQ(s->env, start.env);
  EXPECT_EQ(s->pids_limit, 64);
  ContextRunOp run;
  run.context = "c1";
  run.timeout_ms = 500;
  auto r = decode_context_run(encode_op(run), &error);
  ASSERT_TRUE(r.has_value()) << error;
  EXPECT_EQ(r->timeout_ms, 500);
  for (std::string id : {std::string(), std::string("../x"), std::string("a b"), std::string(65, 'a')}) {
    EXPECT_FALSE(decode_context_name(context_op("context_stop", id), &error)) << id;
  }
  EXPECT_TRUE(decode_context_name(context_op("context_stop", "ok_id-1"), &error));
}

}  // namespace
}  // namespace swissbox::proto

namespace swissbox::proto {
namespace {

TEST(WatchEvents, ChangesPassOnlyWithKnownTypesAndBoundedNames) {
  std::string error;
  std::vector<Change> sent = {{"a/b", "create"}, {"a/b", "write"}, {"c", "rename"}};
  auto changes = decode_event(Frame{changes_event(5, sent), {}}, &error);
  ASSERT_TRUE(changes.has_value()) << error;
  EXPECT_EQ(changes->kind, EventKind::kChanges);
  EXPECT_EQ(changes->changes, sent);
  auto watching = decode_event(Frame{watching_event(5), {}}, &error);
  ASSERT_TRUE(watching.has_value()) << error;
  EXPECT_EQ(watching->kind, EventKind::kWatching);

  std::vector<Change> too_many(kMaxChangesPerEvent + 1, Change{"x", "write"});
  const std::vector<nlohmann::json> bad = {
      {{"ev", "changes"}, {"id", 1}},
      {{"ev", "changes"}, {"id", 1}, {"changes", nlohmann::json::array()}},
      {{"ev", "changes"}, {"id", 1}, {"changes", {{{"name", "a"}, {"type", "explode"}}}}},
      {{"ev", "changes"}, {"id", 1}, {"changes", {{{"name", 7}, {"type", "write"}}}}},
      {{"ev", "changes"}, {"id", 1}, {"changes", {"a"}}},
      {{"ev", "changes"}, {"id", 1}, {"changes", {{{"name", std::string(5000, 'n')}, {"type", "write"}}}}},
      changes_event(1, too_many),
  };
  for (const auto& h : bad) {
    EXPECT_FALSE(decode_event(Frame{h, {}}, &error).has_value()) << h.dump().substr(0, 200);
  }
}

TEST(WatchOps, RoundTripAndRefuseAnEmptyPath) {
  std::string error;
  auto op = decode_watch(encode_op(WatchOp{"/w", true}), &error);
  ASSERT_TRUE(op.has_value()) << error;
  EXPECT_EQ(op->path, "/w");
  EXPECT_TRUE(op->recursive);
  EXPECT_FALSE(decode_watch({{"op", "watch"}, {"path", ""}}, &error).has_value());
  EXPECT_FALSE(decode_watch({{"op", "watch"}, {"path", "/w"}, {"recursive", "yes"}}, &error).has_value());
  EXPECT_NE(error.find("recursive"), std::string::npos) << error;
}

// A file name in a sandbox need not be UTF-8: its frame is encoded (the bytes that are not
// become U+FFFD) instead of throwing in the runner's loop.
TEST(RunnerProtocol, EncodesNamesThatAreNotUtf8) {
  std::string frame;
  ASSERT_NO_THROW(frame = encode(changes_event(1, {{std::string("bad\xff\xfe", 5), "create"}})));
  Decoder d;
  d.feed(frame.data(), frame.size());
  auto f = d.next();
  ASSERT_TRUE(f.has_value()) << d.error();
  std::string error;
  auto e = decode_event(std::move(*f), &error);
  ASSERT_TRUE(e.has_value()) << error;
  EXPECT_EQ(e->changes.at(0).name, "bad\xef\xbf\xbd\xef\xbf\xbd");
}

}  // namespace
}  // namespace swissbox::proto
