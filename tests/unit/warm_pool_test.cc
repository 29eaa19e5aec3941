// The warm pools' bookkeeping on its own: which pool a refill goes to, which ready sandbox
// a claim gets, what a lowered target retires, and the creates that wait for refills.
#include "agent/sandbox/warm_pool.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <boost/asio/io_context.hpp>

namespace swissbox {
namespace {

class WarmPoolTest : public ::testing::Test {
 protected:
  // A ready sandbox of `pool` whose runner channel is open (the other end held here).
  std::shared_ptr<Sandbox> Ready(const std::string& id, const std::string& pool = "default") {
    int sv[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    peers_.emplace_back(sv[1]);
    auto sb = std::make_shared<Sandbox>();
    sb->id = id;
    auto key = parse_pool_key(pool);
    sb->template_name = key->template_name;
    sb->language = key->language;
    sb->channel = std::make_shared<RunnerChannel>(ioc_, unique_fd(sv[0]));
    return sb;
  }

  boost::asio::io_context ioc_;
  std::vector<unique_fd> peers_;
};

TEST_F(WarmPoolTest, RefillsGoToThePoolFurthestBelowItsTarget) {
  WarmPool pool({{"default", 4}, {"default+python", 2}, {"lightweight", 0}});
  pool.put("default", Ready("a"));
  pool.put("default", Ready("b"));
  pool.start_begun("default+python");
  EXPECT_EQ(pool.emptiest(), "default");  // 1/2 starting vs 2/4 ready: a tie, the first by name
  pool.start_ended("default+python");
  EXPECT_EQ(pool.emptiest(), "default+python");  // 0/2
  pool.put("default+python", Ready("p1", "default+python"));
  pool.put("default+python", Ready("p2", "default+python"));
  EXPECT_EQ(pool.emptiest(), "default");  // 2/4; python full; a target of 0 never refills
  pool.put("default", Ready("c"));
  pool.start_begun("default");
  EXPECT_EQ(pool.starting_total(), 1);
  EXPECT_EQ(pool.emptiest(), "");
  EXPECT_TRUE(pool.warm());
}

TEST_F(WarmPoolTest, AClaimGetsTheNewestLiveSandboxAndALoweredTargetRetiresTheOldest) {
  WarmPool pool({{"default", 3}});
  EXPECT_FALSE(pool.warm());
  EXPECT_EQ(pool.take("default"), nullptr);
  auto a = Ready("a"), b = Ready("b"), c = Ready("c");
  pool.put("default", a);
  pool.put("default", b);
  pool.put("default", c);
  c->channel->close("lost");
  EXPECT_EQ(pool.take("default"), b);  // c's runner is gone: dropped, not handed out
  EXPECT_EQ(pool.ready_ids(), (std::map<std::string, std::vector<std::string>>{{"default", {"a"}}}));
  pool.put("default", b);
  auto surplus = pool.set_target("default", 1);
  ASSERT_EQ(surplus.size(), 1u);
  EXPECT_EQ(surplus[0], a);
  EXPECT_EQ(pool.status({"default"}).at("default").target, 1);
  EXPECT_EQ(pool.status({"default"}).at("default").ready, 1);
  pool.erase(b);
  EXPECT_EQ(pool.status({"default"}).at("default").ready, 0);
}

TEST_F(WarmPoolTest, CreatesWaitOnlyBehindRefillsUnderWayAndInTheirOrder) {
  WarmPool pool({{"default", 1}});
  std::vector<std::string> got;
  auto waiter = [&](std::string name) {
    return [&got, name](Result<WarmPool::SandboxPtr> r) { got.push_back(name + (r ? ":ok" : ":err")); };
  };
  EXPECT_FALSE(pool.wait_for_refill("default", waiter("early"), 8));  // nothing refills yet
  pool.refill_begun("default");
  EXPECT_TRUE(pool.wait_for_refill("default", waiter("w1"), 2));
  EXPECT_TRUE(pool.wait_for_refill("default", waiter("w2"), 2));
  EXPECT_FALSE(pool.wait_for_refill("default", waiter("w3"), 2));  // the queue is full
  EXPECT_TRUE(pool.stranded(false).empty());                       // still refilling
  auto first = pool.refill_ended("default");
  ASSERT_TRUE(first);
  first(Ready("s"));
  EXPECT_EQ(got, std::vector<std::string>{"w1:ok"});
  // The pool no longer refills: the create still waiting is released.
  auto stranded = pool.stranded(false);
  ASSERT_EQ(stranded.size(), 1u);
  stranded[0](make_error(Code::kUnavailable, "stopped"));
  EXPECT_EQ(got, (std::vector<std::string>{"w1:ok", "w2:err"}));
  EXPECT_FALSE(pool.refill_ended("default"));
}

}  // namespace
}  // namespace swissbox
