#include "agent/config.h"
#include "agent/runtime/sandbox_spec.h"
#include "common/quota.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include "common/fs.h"

namespace swissbox {
namespace {

// A temporary file holding `text`, removed with the object.
struct TempFile {
  explicit TempFile(const std::string& text) {
    int fd = mkstemp(path);
    if (fd >= 0) close(fd);
    ok = fd >= 0 && fs::write_file_atomic(path, text).ok();
  }
  ~TempFile() { unlink(path); }
  char path[32] = "/tmp/swissbox-config-XXXXXX";
  bool ok = false;
};

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
  TempFile file(R"({"listen":"127.0.0.1:9000","pool":{"heavy":3},"region":"ch-gva-2"})");
  ASSERT_TRUE(file.ok);
  auto c = parse_agent_config(
      {"--config", file.path, "--listen=127.0.0.1:9001", "--pool", "lightweight=4"});
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(c->listen, "127.0.0.1:9001");
  EXPECT_EQ(c->region, "ch-gva-2");
  EXPECT_EQ(c->pool, (std::map<std::string, int>{{"lightweight", 4}}));
}

TEST(AgentConfig, RejectsBadInputWithAReason) {
  for (const std::vector<std::string>& args : {std::vector<std::string>{"--bogus", "1"},
                                               {"--pool", "nope:wifi=1"},
                                               {"--pool", "default+cobol=1"},
                                               {"--pool", "../x=1"},
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
  TempFile tokens(R"({"0123456789abcdef0123":"tenant-a"})");
  ASSERT_TRUE(tokens.ok);
  auto c = parse_agent_config({"--listen", "0.0.0.0:7700", "--token-file", tokens.path});
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  auto t = load_tokens(tokens.path);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->at("0123456789abcdef0123").tenant, "tenant-a");
  EXPECT_FALSE(t->at("0123456789abcdef0123").admin);
}

TEST(AgentConfig, ConnectionLimits) {
  auto c = parse_agent_config({"--max-connections", "2000", "--max-connections-per-client", "64"});
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(c->max_connections, 2000);
  EXPECT_EQ(c->max_connections_per_client, 64);
  EXPECT_FALSE(parse_agent_config({"--max-connections", "3"}).ok());
  EXPECT_FALSE(parse_agent_config({"--max-connections-per-client", "0"}).ok());
}

TEST(Tokens, ObjectEntriesCarryAnAdminFlagAndBadOnesAreRefused) {
  TempFile tokens(R"({"0123456789abcdef0123":"tenant-a",
                      "admin-token-0123456789":{"tenant":"ops","admin":true}})");
  ASSERT_TRUE(tokens.ok);
  auto t = load_tokens(tokens.path);
  ASSERT_TRUE(t.ok()) << t.error().to_string();
  const Principal* ops = bearer_principal("Bearer admin-token-0123456789", *t);
  ASSERT_NE(ops, nullptr);
  EXPECT_EQ(ops->tenant, "ops");
  EXPECT_TRUE(ops->admin);
  EXPECT_EQ(service_token(*t), "admin-token-0123456789");
  // A prefix, an extension, another scheme or no header match nothing.
  for (const char* h : {"Bearer admin-token-012345678", "Bearer admin-token-01234567890",
                        "Basic admin-token-0123456789", "", "Bearer "})
    EXPECT_EQ(bearer_principal(h, *t), nullptr) << h;
  EXPECT_FALSE(check_bearer("/v1/sandboxes", "", false, *t)->message.empty());
  EXPECT_FALSE(check_bearer("/healthz", "", false, *t).has_value());
  EXPECT_FALSE(check_bearer("/v1/sandboxes", "", true, *t).has_value());  // the unix socket
  for (const char* bad : {R"({"0123456789abcdef0123":{"tenant":"a","admin":"yes"}})",
                          R"({"0123456789abcdef0123":{"admin":true}})",
                          R"({"0123456789abcdef0123":""})", R"({"short":"a"})"}) {
    TempFile f(bad);
    EXPECT_FALSE(load_tokens(f.path).ok()) << bad;
  }
}

TEST(Tokens, ATenantsQuotaComesFromItsTokensAndBadOnesAreRefused) {
  TempFile tokens(R"({"0123456789abcdef0123":{"tenant":"a","quota":{"sandboxes":5,"cpu":2.5,"memory_mb":2048,
                                                                 "suspended":20,"workspace_mb":512}},
                      "another-token-of-a-0123":"a", "token-of-b-0123456789":"b"})");
  ASSERT_TRUE(tokens.ok);
  auto t = load_tokens(tokens.path);
  ASSERT_TRUE(t.ok()) << t.error().to_string();
  // The string form speaks for the tenant under the same quota.
  const Principal* a = token_principal("another-token-of-a-0123", *t);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->quota.sandboxes, 5);
  EXPECT_EQ(a->quota.cpu, 2.5);
  EXPECT_EQ(a->quota.workspace_mb, 512);
  auto quotas = tenant_quotas(*t);
  EXPECT_EQ(quotas.size(), 1u);
  EXPECT_EQ(quotas.at("a").suspended, 20);
  for (const char* bad : {R"({"0123456789abcdef0123":{"tenant":"a","quota":{"sandbox":5}}})",
                          R"({"0123456789abcdef0123":{"tenant":"a","quota":{"sandboxes":0}}})",
                          R"({"0123456789abcdef0123":{"tenant":"a","quota":{"cpu":"2"}}})",
                          R"({"0123456789abcdef0123":{"tenant":"a","quota":5}})",
                          R"({"0123456789abcdef0123":{"tenant":"a","quota":{"sandboxes":5}},
                              "0123456789abcdef0124":{"tenant":"a","quota":{"sandboxes":6}}})"}) {
    TempFile f(bad);
    EXPECT_FALSE(load_tokens(f.path).ok()) << bad;
  }
}

TEST(Quota, EachLimitIsCheckedAndTheRefusalNamesIt) {
  Quota q;
  q.sandboxes = 2;
  q.cpu = 3;
  q.memory_mb = 1024;
  q.suspended = 1;
  Limits l{1, 512, 1024, 64};
  TenantLoad load;
  EXPECT_FALSE(check_running("t", q, load, l.cpu, l.memory_mb));
  load.add_running(l.cpu, l.memory_mb);
  EXPECT_FALSE(check_running("t", q, load, l.cpu, l.memory_mb));
  load.add_running(l.cpu, l.memory_mb);
  auto full = check_running("t", q, load, l.cpu, l.memory_mb);
  ASSERT_TRUE(full);
  EXPECT_EQ(full->code, Code::kResourceExhausted);
  EXPECT_NE(full->message.find("quota.sandboxes"), std::string::npos) << full->message;
  load.add_running(l.cpu, l.memory_mb, -1);
  EXPECT_NE(check_running("t", q, load, 2.5, 256)->message.find("quota.cpu"), std::string::npos);
  EXPECT_NE(check_running("t", q, load, 1, 600)->message.find("quota.memory_mb"), std::string::npos);
  EXPECT_FALSE(check_suspended("t", q, load));
  load.suspended = 1;
  EXPECT_NE(check_suspended("t", q, load)->message.find("quota.suspended"), std::string::npos);
  EXPECT_FALSE(check_running("t", Quota{}, load, l.cpu, l.memory_mb));  // no quota: unlimited
}

TEST(AgentConfig, EgressFlagsAndPolicyFile) {
  TempFile policy(R"({"templates":{"default":["pypi.org","*.pythonhosted.org"]},
                      "tenants":{"acme":["*.acme.com"]}})");
  ASSERT_TRUE(policy.ok);
  auto c = parse_agent_config({"--egress-pool", "10.200.0.0/16", "--pool", "default:egress=2",
                               "--egress-hosts", "Allowed.test=198.19.0.2", "--egress-deny",
                               "10.0.0.0/8,fd00::/8", "--egress-rate-kbit", "5000",
                               "--egress-policy", policy.path});
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(c->pool, (std::map<std::string, int>{{"default:egress", 2}}));
  EXPECT_EQ(c->egress_hosts.at("allowed.test"), "198.19.0.2");
  EXPECT_EQ(c->egress_deny.size(), 2u);
  EXPECT_EQ(c->egress_rate_kbit, 5000);
  EXPECT_EQ(c->egress_template_allow.at("default").size(), 2u);
  EXPECT_EQ(c->egress_tenant_allow.at("acme"), std::vector<std::string>{"*.acme.com"});

  TempFile unknown_template(R"({"templates":{"nope":["a.b"]}})");
  EXPECT_FALSE(parse_agent_config({"--egress-policy", unknown_template.path}).ok());
  TempFile bad_pattern(R"({"tenants":{"acme":["bad host"]}})");
  EXPECT_FALSE(parse_agent_config({"--egress-policy", bad_pattern.path}).ok());
  // An egress pool without egress networking, and malformed values, are refused.
  EXPECT_FALSE(parse_agent_config({"--pool", "default:egress=1"}).ok());
  EXPECT_FALSE(parse_agent_config({"--egress-hosts", "x"}).ok());
  EXPECT_FALSE(parse_agent_config({"--egress-deny", "10.0.0.0/99"}).ok());
  EXPECT_FALSE(parse_agent_config({"--egress-proxy-port", "0"}).ok());
}

}  // namespace
}  // namespace swissbox
