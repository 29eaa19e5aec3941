// The pieces of E2B's API that parse what a client sends: Connect envelopes, base64,
// multipart uploads, create requests, and the routes agent and scheduler tell apart.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "agent/api/e2b/e2b.h"
#include "agent/api/e2b/multipart.h"
#include "common/base64.h"
#include "common/connect.h"
#include "scheduler/deadlines.h"

namespace swissbox {
namespace {

using json = nlohmann::json;

TEST(Connect, EnvelopesRoundTripAndMalformedOnesAreRefused) {
  std::string env = connect::message({{"a", 1}});
  ASSERT_GE(env.size(), connect::kPrefix);
  EXPECT_EQ(env[0], 0);
  EXPECT_EQ(env.substr(1, 4), std::string("\0\0\0\x07", 4));
  auto back = connect::request_message(env, 1 << 20);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, json({{"a", 1}}));
  std::string end = connect::end_stream();
  EXPECT_EQ(end[0], connect::kEndStream);
  EXPECT_EQ(end.substr(5), "{}");
  Error e = make_error(Code::kNotFound, "gone");
  EXPECT_EQ(json::parse(connect::end_stream(&e).substr(5))["error"]["code"], "not_found");
  // Short, truncated, too large, compressed, not an object.
  EXPECT_FALSE(connect::request_message("", 100).ok());
  EXPECT_FALSE(connect::request_message(env.substr(0, env.size() - 1), 100).ok());
  EXPECT_EQ(connect::request_message(env, 3).error().code, Code::kTooLarge);
  std::string compressed = env;
  compressed[0] = connect::kCompressed;
  EXPECT_FALSE(connect::request_message(compressed, 100).ok());
  EXPECT_FALSE(connect::request_message(connect::envelope(0, "[1]"), 100).ok());
  EXPECT_FALSE(connect::request_message(std::string("\0\xff\xff\xff\xff", 5), 1 << 30).ok());
}

TEST(Base64, RoundTripsEveryLengthAndRefusesOtherText) {
  std::string bytes;
  for (int i = 0; i < 300; ++i) {
    EXPECT_EQ(base64_decode(base64_encode(bytes)), bytes) << i;
    bytes.push_back(static_cast<char>(i * 37));
  }
  EXPECT_EQ(base64_encode("hi\n"), "aGkK");
  EXPECT_EQ(base64_decode("aGk"), "hi");  // padding optional
  EXPECT_FALSE(base64_decode("a").has_value());
  EXPECT_FALSE(base64_decode("aG!K").has_value());
}

TEST(Multipart, PartsAsTheSdksSendThem) {
  auto boundary = e2b::multipart_boundary("multipart/form-data; boundary=----formdata-undici-0123");
  ASSERT_TRUE(boundary.ok());
  EXPECT_EQ(*boundary, "----formdata-undici-0123");
  EXPECT_EQ(*e2b::multipart_boundary(R"(multipart/form-data; boundary="a b")"), "a b");
  EXPECT_FALSE(e2b::multipart_boundary("application/json").ok());
  EXPECT_FALSE(e2b::multipart_boundary("multipart/form-data").ok());
  std::string body =
      "------formdata-undici-0123\r\n"
      "Content-Disposition: form-data; name=\"file\"; filename=\"/home/user/a.txt\"\r\n"
      "Content-Type: application/octet-stream\r\n\r\n"
      "line1\r\nline2\r\n"
      "------formdata-undici-0123\r\n"
      "Content-Disposition: form-data; name=\"file\"; filename=\"b\\\"q.bin\"\r\n\r\n"
      "\r\n"
      "------formdata-undici-0123--\r\n";
  auto parts = e2b::parse_multipart(body, *boundary);
  ASSERT_TRUE(parts.ok()) << parts.error().to_string();
  ASSERT_EQ(parts->size(), 2u);
  EXPECT_EQ((*parts)[0].name, "file");
  EXPECT_EQ((*parts)[0].filename, "/home/user/a.txt");
  EXPECT_EQ((*parts)[0].data, "line1\r\nline2");
  EXPECT_EQ((*parts)[1].filename, "b\"q.bin");
  EXPECT_EQ((*parts)[1].data, "");
  // Cut off before the last boundary, or with no part terminated.
  EXPECT_FALSE(e2b::parse_multipart(body.substr(0, body.size() - 40), *boundary).ok());
  EXPECT_FALSE(e2b::parse_multipart("garbage", *boundary).ok());
}

TEST(E2bCreate, TemplatesTimeoutsAndEnvironment) {
  json metadata;
  auto base = e2b::parse_create(json::object(), &metadata);
  ASSERT_TRUE(base.ok());
  EXPECT_EQ(base->template_name, "default");
  EXPECT_EQ(base->lifetime, std::chrono::seconds(e2b::kDefaultTimeoutS));
  EXPECT_EQ(base->env.at("HOME"), "/home/user");
  auto ci = e2b::parse_create({{"templateID", "code-interpreter-v1"}, {"timeout", 60},
                               {"metadata", {{"user", "u1"}}}, {"envVars", {{"A", "b"}}}},
                              &metadata);
  ASSERT_TRUE(ci.ok());
  EXPECT_EQ(ci->template_name, "code-interpreter");
  EXPECT_EQ(ci->client_template, "code-interpreter-v1");
  EXPECT_EQ(ci->lifetime, std::chrono::seconds(60));
  EXPECT_EQ(ci->env.at("A"), "b");
  EXPECT_EQ(metadata, json({{"user", "u1"}}));
  EXPECT_EQ(e2b::parse_create({{"templateID", "nope"}}, &metadata).error().code, Code::kNotFound);
  for (json bad : {json{{"timeout", 0}}, json{{"timeout", "x"}}, json{{"envVars", {{"A", 1}}}},
                   json{{"envVars", {{"1BAD", "x"}}}}, json{{"metadata", 3}}, json::array()}) {
    EXPECT_EQ(e2b::parse_create(bad, &metadata).error().code, Code::kInvalidArgument) << bad;
  }
}

// allow_internet_access never widens the node's policy: egress only where the policy
// gives the template hosts, none when the client says false.
TEST(E2bCreate, InternetAccessIsWhatTheNodesPolicyGivesTheTemplate) {
  json metadata;
  auto policy = [](const std::string& tmpl) { return tmpl == "default"; };
  EXPECT_EQ(e2b::parse_create(json::object(), &metadata, policy)->network, NetworkMode::kEgress);
  EXPECT_EQ(e2b::parse_create({{"allow_internet_access", true}}, &metadata, policy)->network,
            NetworkMode::kEgress);
  EXPECT_EQ(e2b::parse_create({{"allow_internet_access", false}}, &metadata, policy)->network,
            NetworkMode::kNone);
  EXPECT_EQ(e2b::parse_create({{"templateID", "code-interpreter-v1"}}, &metadata, policy)->network,
            NetworkMode::kNone);
  EXPECT_EQ(e2b::parse_create({{"allow_internet_access", true}}, &metadata)->network, NetworkMode::kNone);
  EXPECT_EQ(e2b::parse_create({{"allow_internet_access", "yes"}}, &metadata, policy).error().code,
            Code::kInvalidArgument);
}

TEST(E2bRoutes, KindsTemplateNamesAndDeadlines) {
  auto req = [](const char* target, const char* sandbox_header) {
    http::RequestHeader h;
    h.target(target);
    if (sandbox_header) h.set("E2b-Sandbox-Id", sandbox_header);
    return h;
  };
  EXPECT_EQ(e2b::kind_of(req("/v2/sandboxes", nullptr)), e2b::Kind::kControl);
  EXPECT_EQ(e2b::kind_of(req("/sandboxes/sbx-a-1/timeout", nullptr)), e2b::Kind::kControl);
  EXPECT_EQ(e2b::kind_of(req("/sandboxesX", nullptr)), e2b::Kind::kNone);
  EXPECT_EQ(e2b::kind_of(req("/v1/sandboxes", nullptr)), e2b::Kind::kNone);
  EXPECT_EQ(e2b::kind_of(req("/files?path=x", "sbx-a-1")), e2b::Kind::kSandbox);
  EXPECT_EQ(e2b::template_name("base"), "default");
  EXPECT_EQ(e2b::template_name("code-interpreter-v1"), "code-interpreter");
  EXPECT_EQ(e2b::template_name("heavy"), "heavy");
  // The scheduler waits for a process as long as a command may run, silent or not.
  sched::AgentDeadlines d;
  EXPECT_GT(d.for_call("POST", "/process.Process/Start", ""),
            std::chrono::milliseconds(limits::kMaxExecTimeoutMs));
  EXPECT_GT(d.for_call("POST", "/execute", ""), std::chrono::milliseconds(limits::kInterpreterRunTimeoutMs));
}

}  // namespace
}  // namespace swissbox
