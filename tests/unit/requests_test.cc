// Validation at the API edge: create, exec and code requests, ids, JSON nesting.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "agent/api/api.h"
#include "agent/sandbox/sandbox_ops.h"
#include "agent/runtime/sandbox_spec.h"

namespace swissbox {
namespace {

using json = nlohmann::json;

TEST(CreateRequest, TemplateDefaultsAndOverrides) {
  json meta;
  auto r = parse_create_request(
      json{{"template", "lightweight"}, {"memory_mb", 300}, {"metadata", {{"k", "v"}}}},
      LimitBounds{}, &meta);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->limits.cpu, 1);
  EXPECT_EQ(r->limits.memory_mb, 300);
  EXPECT_EQ(r->limits.disk_mb, 5120);
  EXPECT_EQ(meta["k"], "v");
  auto d = parse_create_request(json::object(), LimitBounds{}, nullptr);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->template_name, "default");
  EXPECT_EQ(d->limits.memory_mb, 512);
}

TEST(CreateRequest, RejectsOutOfBoundsAndWrongTypes) {
  for (const json& body :
       {json{{"template", "x"}}, json{{"memory_mb", -1}}, json{{"memory_mb", 1 << 30}},
        json{{"cpu", "2"}}, json{{"cpu", 0}}, json{{"env", {{"1BAD", "x"}}}},
        json{{"env", {{"OK", 1}}}}, json{{"timeout_s", 0}}, json{{"network", "bridge"}},
        json{{"egress_allowlist", {"a.test"}}}, json{{"network", "egress"}, {"egress_allowlist", "a.test"}},
        json{{"network", "egress"}, {"egress_allowlist", {"bad host"}}},
        json{{"network", "egress"}, {"bandwidth_kbit", 1}}, json{{"bandwidth_kbit", 1000}},
        json{{"metadata", "str"}}, json{{"on_idle", "sleep"}}, json{{"on_idle", true}},
        json{{"idle_timeout_s", 0}}, json{{"retention_s", 0}}, json{{"workspace", "../x"}},
        json{{"workspace", ".hidden"}}, json{{"workspace", 7}}, json{{"workspace", std::string(65, 'w')}},
        json::array()}) {
    auto r = parse_create_request(body, LimitBounds{}, nullptr);
    EXPECT_FALSE(r.ok()) << body;
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, Code::kInvalidArgument);
    }
  }
}

TEST(CreateRequest, IdlePolicyDefaultsToSuspendAfter900sKeptSevenDays) {
  auto d = parse_create_request(json::object(), LimitBounds{}, nullptr);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->timeout, std::chrono::seconds(900));
  EXPECT_EQ(d->on_idle, OnIdle::kSuspend);
  EXPECT_EQ(d->retention, std::chrono::hours(24 * 7));
  auto r = parse_create_request(json{{"idle_timeout_s", 60}, {"on_idle", "delete"}, {"retention_s", 3600}},
                                LimitBounds{}, nullptr);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->timeout, std::chrono::seconds(60));
  EXPECT_EQ(r->on_idle, OnIdle::kDelete);
  EXPECT_EQ(r->retention, std::chrono::seconds(3600));
  EXPECT_EQ(parse_create_request(json{{"workspace", "proj-1.v2_x"}}, LimitBounds{}, nullptr)->workspace, "proj-1.v2_x");
  // timeout_s: the older name of idle_timeout_s.
  EXPECT_EQ(parse_create_request(json{{"timeout_s", 30}}, LimitBounds{}, nullptr)->timeout,
            std::chrono::seconds(30));
}

TEST(CreateRequest, EgressTakesAnAllowlistAndABandwidth) {
  auto r = parse_create_request(
      json{{"network", "egress"}, {"egress_allowlist", {"pypi.org", "*.pythonhosted.org"}},
           {"bandwidth_kbit", 1000}},
      LimitBounds{}, nullptr);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->network, NetworkMode::kEgress);
  EXPECT_EQ(r->egress_allowlist.size(), 2u);
  EXPECT_EQ(r->bandwidth_kbit, 1000);
  EXPECT_EQ(pool_key("default", NetworkMode::kEgress), "default:egress");
  EXPECT_EQ(pool_key("heavy", NetworkMode::kNone), "heavy");
  EXPECT_EQ(pool_key("default", NetworkMode::kEgress, "python"), "default:egress+python");
  EXPECT_TRUE(parse_pool_key("heavy:egress").has_value());
  EXPECT_FALSE(parse_pool_key("heavy:none").has_value());
  EXPECT_FALSE(parse_pool_key("nope:egress").has_value());
  EXPECT_FALSE(parse_pool_key("default:bridge").has_value());
  auto ts = parse_pool_key("default:egress+typescript");
  ASSERT_TRUE(ts.has_value());
  EXPECT_EQ(ts->template_name, "default");
  EXPECT_EQ(ts->network, NetworkMode::kEgress);
  EXPECT_EQ(ts->language, "typescript");
  EXPECT_EQ(pool_key(ts->template_name, ts->network, ts->language), "default:egress+typescript");
  EXPECT_EQ(parse_pool_key("lightweight+python")->network, NetworkMode::kNone);
  EXPECT_FALSE(parse_pool_key("default+bash").has_value());
  EXPECT_FALSE(parse_pool_key("default+").has_value());
}

TEST(ExecRequest, ShellStringAndArgv) {
  auto s = parse_exec_request(json{{"command", "echo hi | wc -c"}});
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->argv, (std::vector<std::string>{"/bin/bash", "-c", "echo hi | wc -c"}));
  auto a = parse_exec_request(json{{"command", {"ls", "-l"}},
                                   {"timeout_ms", 500},
                                   {"background", true},
                                   {"max_output_bytes", 10}});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->argv.size(), 2u);
  EXPECT_EQ(a->timeout_ms, 500);
  EXPECT_TRUE(a->background);
  EXPECT_EQ(a->output_cap, 10u);
}

TEST(ExecRequest, RejectsMalformed) {
  for (const json& body :
       {json::object(), json{{"command", ""}}, json{{"command", json::array()}},
        json{{"command", {1, 2}}}, json{{"command", 5}}, json{{"command", "x"}, {"timeout_ms", 0}},
        json{{"command", "x"}, {"timeout_ms", "1"}},
        json{{"command", "x"}, {"max_output_bytes", 1 << 30}}, json{{"command", "x"}, {"cwd", ""}},
        json{{"command", "x"}, {"stdin", 1}}}) {
    EXPECT_FALSE(parse_exec_request(body).ok()) << body;
  }
}

TEST(CodeRequest, LanguagesGoToWorkersOrInterpreters) {
  auto py = parse_code_request(json{{"language", "python3"}, {"code", "print(1)"}});
  ASSERT_TRUE(py.ok());
  EXPECT_EQ(py->language, "python");
  EXPECT_TRUE(py->argv.empty());
  EXPECT_EQ(py->code, "print(1)");
  auto ts = parse_code_request(json{{"language", "typescript"}, {"code", "let x: number = 1"}});
  ASSERT_TRUE(ts.ok());
  EXPECT_EQ(ts->language, "typescript");
  auto sh = parse_code_request(json{{"language", "bash"}, {"code", "echo 1"}});
  ASSERT_TRUE(sh.ok());
  EXPECT_EQ(sh->argv[0], "/bin/bash");
  EXPECT_EQ(sh->argv[1], sh->code_path);
  EXPECT_FALSE(parse_code_request(json{{"language", "cobol"}, {"code", "x"}}).ok());
  EXPECT_FALSE(parse_code_request(json{{"language", "python"}}).ok());
}

TEST(SandboxId, OnlyWellFormedIdsPass) {
  EXPECT_TRUE(valid_sandbox_id("sbx-node-1-0123456789ab"));
  EXPECT_FALSE(valid_sandbox_id("sbx-../../etc"));
  EXPECT_FALSE(valid_sandbox_id("abc"));
  EXPECT_FALSE(valid_sandbox_id("sbx-UPPER"));
  EXPECT_FALSE(valid_sandbox_id(std::string("sbx-a\0b", 7)));
}

TEST(JsonDepth, CountsOnlyStructureOutsideStrings) {
  EXPECT_TRUE(json_depth_ok(R"({"a":[[["[[[[[[[[[[[[[[[[[[[["]]]})", 4));
  EXPECT_FALSE(json_depth_ok(std::string(100, '['), 32));
  EXPECT_TRUE(json_depth_ok(std::string(32, '[') + std::string(32, ']'), 32));
}

}  // namespace
}  // namespace swissbox
