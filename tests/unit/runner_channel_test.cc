// The agent's end of a runner channel fed by a hostile runner: forged and malformed frames
// end that channel (its open requests hear why), never the agent's I/O thread.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>

#include "agent/sandbox/runner_channel.h"

namespace swissbox {
namespace {

class RunnerChannelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    runner_.reset(sv[1]);
    channel_ = std::make_shared<RunnerChannel>(ioc_, unique_fd(sv[0]));
    channel_->start([this](const std::string& why) { lost_ = why; });
  }
  // Writes raw bytes as the runner and runs the agent's loop until it is idle.
  void runner_sends(const std::string& bytes) {
    ASSERT_EQ(write(runner_.get(), bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
    for (int i = 0; i < 10; ++i) {
      ioc_.restart();
      ioc_.run_for(std::chrono::milliseconds(2));
    }
  }

  boost::asio::io_context ioc_;
  unique_fd runner_;
  std::shared_ptr<RunnerChannel> channel_;
  std::string lost_;
};

TEST_F(RunnerChannelTest, AForgedFrameEndsTheChannelAndItsRequestsNotTheAgent) {
  std::vector<proto::Event> seen;
  uint64_t id = channel_->call({{"op", "ping"}}, {}, [&](const proto::Event& e) {
    seen.push_back(e);
    return true;
  });
  ASSERT_EQ(id, 1u);
  // The audit's frame: an id that is a string (json::value threw from here before).
  runner_sends(proto::encode({{"ev", "result"}, {"id", "x"}}));
  EXPECT_FALSE(channel_->alive());
  EXPECT_NE(lost_.find("runner protocol error"), std::string::npos) << lost_;
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].kind, proto::EventKind::kLost);
  // Later calls are answered at once, as for any dead runner.
  bool answered = false;
  channel_->call({{"op", "ping"}}, {}, [&](const proto::Event& e) {
    answered = e.kind == proto::EventKind::kLost;
    return true;
  });
  EXPECT_TRUE(answered);
}

TEST_F(RunnerChannelTest, FatalFromTheRunnerEndsTheChannel) {
  runner_sends(proto::encode({{"ev", "fatal"}, {"message", "frame too large"}}));
  EXPECT_FALSE(channel_->alive());
  EXPECT_NE(lost_.find("frame too large"), std::string::npos) << lost_;
}

TEST_F(RunnerChannelTest, ValidEventsReachTheirRequestInOrder) {
  std::string out;
  int exit_code = -2;
  channel_->call({{"op", "exec"}}, {}, [&](const proto::Event& e) {
    if (e.kind == proto::EventKind::kStdout) return out += e.payload, false;
    exit_code = e.exit.exit_code;
    return true;
  });
  runner_sends(proto::encode({{"ev", "hello"}, {"pid", 1}, {"version", 1}}) +
               proto::encode({{"ev", "stdout"}, {"id", 1}}, "hi ") +
               proto::encode({{"ev", "stdout"}, {"id", 99}}, "not ours") +
               proto::encode({{"ev", "stdout"}, {"id", 1}}, "there") +
               proto::encode({{"ev", "exit"}, {"id", 1}, {"exit_code", 4}}));
  EXPECT_TRUE(channel_->alive()) << lost_;
  EXPECT_EQ(out, "hi there");
  EXPECT_EQ(exit_code, 4);
}

TEST_F(RunnerChannelTest, ARequestPastTheHeaderLimitIsRefusedBeforeItIsSent) {
  proto::Event answer;
  channel_->call({{"op", "exec"}, {"argv", {std::string(proto::kMaxHeader, 'a')}}}, {},
                 [&](const proto::Event& e) {
                   answer = e;
                   return true;
                 });
  EXPECT_EQ(answer.kind, proto::EventKind::kResult);
  EXPECT_FALSE(answer.ok);
  EXPECT_EQ(answer.error_errno, E2BIG);
  EXPECT_TRUE(channel_->alive());
  // Nothing went to the runner.
  char c;
  EXPECT_EQ(recv(runner_.get(), &c, 1, MSG_DONTWAIT), -1);
}

}  // namespace
}  // namespace swissbox
