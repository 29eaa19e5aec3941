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
