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

}  // namespace
}  // namespace swissbox::proto
