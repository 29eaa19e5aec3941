#include "agent/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include "common/fs.h"

namespace swissbox {
namespace {

TEST(AgentConfig, DefaultsMatchTheDesign) {
  auto c = parse_agent_config({});
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(c->listen, "127.0.0.1:7700");
  EXPECT_EQ(c->socket, "/run/swissbox/agent.sock");
  EXPECT_EQ(c->state_dir, "/var/lib/swissbox");
  EXPECT_EQ(c->runsc_root, "/run/swissbox/runsc");
  EXPECT_EQ(c->rootfs, "host");
  EXPECT_FALSE(c->node_name.empty());
}

TEST(AgentConfig, FlagsOverrideTheFileAndPoolFlagsReplace) {
  char path[] = "/tmp/swissbox-config-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  ASSERT_TRUE(fs::write_file_atomic(
                  path, R"({"listen":"127.0.0.1:9000","pool":{"heavy":3},"region":"ch-gva-2"})")
                  .ok());
  auto c =
      parse_agent_config({"--config", path, "--listen=127.0.0.1:9001", "--pool", "lightweight=4"});
  unlink(path);
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(c->listen, "127.0.0.1:9001");
  EXPECT_EQ(c->region, "ch-gva-2");
  EXPECT_EQ(c->pool, (std::map<std::string, int>{{"lightweight", 4}}));
}

TEST(AgentConfig, RejectsBadInputWithAReason) {
  for (const std::vector<std::string>& args : {std::vector<std::string>{"--bogus", "1"},
                                               {"--pool", "nope=1"},
                                               {"--pool", "default=x"},
                                               {"--platform", "vmware"},
                                               {"--cgroup-parent", "/sys/fs/cgroup/x"},
                                               {"--cgroup-parent", "relative/x"},
                                               {"--listen", "0.0.0.0:7700"},
                                               {"--state-dir", "relative"},
                                               {"--listen"},
                                               {"--token-file", "/nonexistent/tokens.json"}}) {
    auto c = parse_agent_config(args);
    EXPECT_FALSE(c.ok()) << args[0];
    if (!c.ok()) {
      EXPECT_FALSE(c.error().message.empty());
    }
  }
}

TEST(AgentConfig, TokenFileAllowsNonLoopbackListen) {
  char path[] = "/tmp/swissbox-tokens-XXXXXX";
  int fd = mkstemp(path);
  close(fd);
  ASSERT_TRUE(fs::write_file_atomic(path, R"({"0123456789abcdef0123":"tenant-a"})").ok());
  auto c = parse_agent_config({"--listen", "0.0.0.0:7700", "--token-file", path});
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  auto t = load_tokens(path);
  unlink(path);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->at("0123456789abcdef0123"), "tenant-a");
}

}  // namespace
}  // namespace swissbox
