// The scheduler's HTTP service against two fake agents in-process (no runsc): a refusing
// node sends creates to the next candidate, tokens are checked and passed on, calls are
// routed by the node in the id, unknown nodes answer 503, a call a node received is not
// repeated, file bytes pass both ways.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/http_client.h"
#include "common/http_server.h"
#include "common/sandbox_id.h"
#include "scheduler/service.h"
#include "support/promtool.h"

namespace swissbox::sched {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
constexpr char kToken[] = "tenant-token-0123456789";       // admin
constexpr char kPlainToken[] = "plain-token-0123456789";  // a tenant's, no admin
constexpr char kQuotaToken[] = "quota-token-0123456789";  // tenant q, quota of 2 sandboxes
constexpr char kCpuToken[] = "cpu-token-01234567890";     // tenant q, quota of 5 CPUs

namespace bhttp = boost::beast::http;
constexpr size_t kFileBytes = 9 << 20;  // above what the scheduler relays whole
constexpr auto kSlowStore = std::chrono::milliseconds(1500);

std::string pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i * 131 % 253);
  return s;
}
uint64_t sum(const std::string& s) {
  uint64_t total = 0;
  for (unsigned char c : s) total += c;
  return total;
}

// A stand-in agent: reports itself, and either refuses creates (429) or makes sandboxes.
struct FakeAgent {
  FakeAgent(boost::asio::io_context& ioc, std::string name, int capacity, bool refuses)
      : name(std::move(name)), server(ioc, {}, [this, &ioc, capacity, refuses](http::Request&& req,
                                                                          std::shared_ptr<http::Responder> res) {
          std::string target(req.target());
          if (auto it = req.find("Authorization"); it != req.end()) {
            std::lock_guard lock(mu);
            auth_seen = std::string(it->value());
          }
          if (target == "/v1/node") {
            if (silent) return res->send_error(make_error(Code::kUnavailable, "not reporting"));
            return res->send_json(200, {{"node", this->name},
                                        {"region", "ch-gva-2"},
                                        {"draining", false},
                                        {"capacity", {{"max_sandboxes", capacity}}},
                                        // "small" is half full: "big" is always less loaded
                                        {"active", refuses ? 0 : capacity / 2},
                                        {"warm", {{"default", 1}}},
                                        {"tenants", {{"q", {{"running", 1}, {"cpu", 2.0}, {"memory_mb", 1024}}}}},
                                        {"workspaces", reported_workspaces()},
                                        {"tenant_deletes", deleted()}});
          }
          if (target.rfind("/v1/templates/", 0) == 0 && req.method() == bhttp::verb::put) {
            if (target == "/v1/templates/default")
              return res->send_error(make_error(Code::kConflict, "'default' is a built-in template"));
            if (target == "/v1/templates/nocri" && refuses)
              return res->send_error(make_error(Code::kUnavailable, "this node pulls no images"));
            std::lock_guard lock(mu);
            template_puts.push_back(req.body());
            return res->send_json(202, {{"name", target.substr(14)}, {"state", "building"}});
          }
          if (target.rfind("/v1/tenants/", 0) == 0 && req.method() == bhttp::verb::delete_) {
            if (away) return res->send_error(make_error(Code::kUnavailable, "away"));
            // /v1/tenants/<t>[?before=<unix seconds>]: recorded as the agent does.
            std::string rest = target.substr(12), tenant = rest.substr(0, rest.find('?'));
            size_t b = rest.find("?before=");
            std::lock_guard lock(mu);
            deletes.push_back(rest);
            tenant_deleted[tenant] = b == std::string::npos ? 1e9 : std::stod(rest.substr(b + 8));
            return res->send_json(200, {{"tenant", tenant}, {"node", this->name}, {"sandboxes_deleted", 1}});
          }
          if (target.rfind("/v1/tenants/t", 0) == 0) {
            return res->send_json(200, {{"tenant", "t"}, {"running", 1}, {"suspended", 2},
                                        {"usage", {{"cpu_seconds", 1.5}, {"executions", 2}}}});
          }
          if (target == "/v1/sandboxes" && refuses) {
            ++refused;
            return res->send_error(make_error(Code::kResourceExhausted, "full"));
          }
          if (target == "/v1/execute") {
            ++executes;
            // "big" takes one-shots and never answers (a node that hangs mid-call).
            if (refuses) return parked.push_back(res);
          }
          if (target == "/v1/sandboxes") {
            return res->send_json(201, {{"id", new_sandbox_id(this->name)}, {"node", this->name}});
          }
          if (target.find("/files?") != std::string::npos && req.method() == bhttp::verb::put) {
            json stored = {{"bytes", req.body().size()}, {"sum", sum(req.body())}};
            if (target.find("path=slow") == std::string::npos) return res->send_json(200, stored);
            // A node that takes its time to store the upload (a slow disk, a sanitizer build).
            auto later = std::make_shared<boost::asio::steady_timer>(ioc, kSlowStore);
            return later->async_wait([later, res, stored](boost::system::error_code) {
              res->send_json(200, stored);
            });
          }
          if (target.find("/files?") != std::string::npos) {
            return res->send(200, pattern(kFileBytes), "application/octet-stream");
          }
          res->send_json(200, {{"stdout", "from " + this->name}, {"path", target}});
        }) {
    EXPECT_TRUE(server.listen_tcp("127.0.0.1:0").ok());
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(server.tcp_port()); }

  std::string name;
  http::Server server;
  std::mutex mu;
  std::string auth_seen;
  std::atomic<int> refused{0};
  std::atomic<int> executes{0};
  std::atomic<bool> away{false};  // tenant deletes answer 503
  std::atomic<bool> silent{false};  // no node report
  std::vector<std::string> deletes;  // "<tenant>[?before=…]" of each delete done
  std::vector<std::string> template_puts;  // their bodies
  std::map<std::string, double> tenant_deleted;  // the agent's record, reported
  json workspaces = json::object();  // reported as is
  json reported_workspaces() {
    std::lock_guard lock(mu);
    return workspaces;
  }
  json deleted() {
    std::lock_guard lock(mu);
    return tenant_deleted;
  }
  size_t deletes_done() {
    std::lock_guard lock(mu);
    return deletes.size();
  }
  std::vector<std::shared_ptr<http::Responder>> parked;  // on the I/O thread only
};

class SchedulerService : public ::testing::Test {
 protected:
  void SetUp() override {
    // "big" looks least loaded, so it is always picked first, and always refuses.
    big_ = std::make_unique<FakeAgent>(ioc_, "big", 100, true);
    small_ = std::make_unique<FakeAgent>(ioc_, "small", 10, false);
    SchedulerOptions o;
    // A name is resolved at every poll; each address it yields is an agent.
    o.agents = {big_->address(), "localhost:" + std::to_string(small_->server.tcp_port())};
    o.poll_interval = 100ms;
    o.policy.stale_after = 2s;  // a slow (sanitizer) run may delay a poll
    Quota two;
    two.sandboxes = 2;
    Quota five_cpus;
    five_cpus.cpu = 5;
    o.tokens = {{kToken, {"tenant-a", true}},
                {kPlainToken, {"tenant-b", false}},
                {kQuotaToken, {"q", false, two}},
                {kCpuToken, {"q", false, five_cpus}}};
    o.agent_token = kToken;
    // The agent's deadlines, shortened: a hung node is found in a second, a slow answer
    // within its file deadline is waited for.
    o.deadlines.exec_grace = 200ms;
    o.deadlines.ready = 200ms;
    o.deadlines.slack = 300ms;
    o.deadlines.file_op = 3s;
    scheduler_ = std::make_unique<Scheduler>(ioc_, o, metrics_);
    server_ = std::make_unique<http::Server>(ioc_, scheduler_->server_options(),
                                             [this](http::Request&& req, std::shared_ptr<http::Responder> res) {
                                               scheduler_->handle(std::move(req), std::move(res));
                                             });
    ASSERT_TRUE(server_->listen_tcp("127.0.0.1:0").ok());
    scheduler_->start();
    thread_ = std::thread([this] { ioc_.run(); });
    // Until both nodes have reported (a sanitizer run is slow to start).
    http::Client c(address());
    for (int i = 0; i < 250; ++i) {
      auto r = c.request("GET", "/v1/nodes", "", auth());
      json j = r.ok() ? json::parse(r->body, nullptr, false) : json();
      int up = 0;
      if (j.is_object() && j["nodes"].is_array()) {
        for (const auto& n : j["nodes"]) up += n.value("up", false);
      }
      if (up == 2) break;
      std::this_thread::sleep_for(20ms);
    }
  }
  void TearDown() override {
    ioc_.stop();
    thread_.join();
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(server_->tcp_port()); }
  http::Headers auth() const { return {{"Authorization", std::string("Bearer ") + kToken}}; }

  boost::asio::io_context ioc_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ =
      boost::asio::make_work_guard(ioc_);
  Metrics metrics_;
  std::unique_ptr<FakeAgent> big_, small_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<http::Server> server_;
  std::thread thread_;
};

TEST_F(SchedulerService, RefusedCreatesGoToTheNextNodeWithTheCallersToken) {
  http::Client c(address());
  EXPECT_EQ(c.request("POST", "/v1/sandboxes", "{}")->status, 401u);
  for (int i = 0; i < 5; ++i) {
    auto r = c.request("POST", "/v1/sandboxes", "{}", auth());
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->status, 201u) << r->body;
    EXPECT_EQ(json::parse(r->body).value("node", ""), "small");
  }
  // "big" is picked first whenever its report is fresh; each refusal became a retry.
  EXPECT_GE(big_->refused.load(), 1);
  EXPECT_EQ(metrics_.get("swissbox_scheduler_retries_total"), big_->refused.load());
  std::lock_guard lock(small_->mu);
  EXPECT_EQ(small_->auth_seen, std::string("Bearer ") + kToken);
}

// Four token-less 64 MiB bodies took the scheduler from 4 to 245 MiB (its pod limit is
// 256 Mi): the token is checked on the header now, and the body is never held.
TEST_F(SchedulerService, TokenlessBodiesAreRefusedBeforeTheyAreRead) {
  http::Client c(address());
  auto r = c.request("POST", "/v1/sandboxes", std::string(32 << 20, '{'));
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->status, 401u);
  auto upload = c.request("PUT", "/v1/sandboxes/sbx-small-000000000001/files?path=x",
                          std::string(32 << 20, 'x'));
  ASSERT_TRUE(upload.ok()) << upload.error().to_string();
  EXPECT_EQ(upload->status, 401u);
  EXPECT_EQ(metrics_.get("swissbox_scheduler_placements_total", "{result=\"placed\"}"), 0);
}

TEST_F(SchedulerService, MetricsAreValidPrometheusText) {
  http::Client c(address());
  ASSERT_EQ(c.request("POST", "/v1/sandboxes", "{}", auth())->status, 201u);
  // Metrics and the node list are not for anyone who can reach the port.
  EXPECT_EQ(c.request("GET", "/metrics")->status, 401u);
  EXPECT_EQ(c.request("GET", "/v1/nodes")->status, 401u);
  http::Headers plain = {{"Authorization", std::string("Bearer ") + kPlainToken}};
  EXPECT_EQ(c.request("GET", "/metrics", "", plain)->status, 403u);
  auto r = c.request("GET", "/metrics", "", auth());
  ASSERT_TRUE(r.ok());
  EXPECT_NE(r->body.find("swissbox_scheduler_placements_total{result=\"placed\"} 1"), std::string::npos)
      << r->body;
  EXPECT_NE(r->body.find("process_cpu_seconds_total "), std::string::npos);
  EXPECT_NE(r->body.find("swissbox_scheduler_create_seconds_count{call=\"sandbox\",template=\"default\","
                         "language=\"\"} 1"),
            std::string::npos)
      << r->body;
  auto problems = testing::promtool_problems(r->body);
  if (!problems) GTEST_SKIP() << "promtool is not installed (Debian package prometheus)";
  EXPECT_EQ(*problems, "") << r->body;
}

TEST_F(SchedulerService, RoutesByTheNodeInTheIdAndAnswers503ForUnknownNodes) {
  http::Client c(address());
  std::string id = new_sandbox_id("small");
  auto r = c.request("POST", "/v1/sandboxes/" + id + "/exec", R"({"command":"true"})", auth());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(json::parse(r->body).value("stdout", ""), "from small");
  EXPECT_EQ(json::parse(r->body).value("path", ""), "/v1/sandboxes/" + id + "/exec");
  auto unknown = c.request("GET", "/v1/sandboxes/" + new_sandbox_id("gone"), "", auth());
  EXPECT_EQ(unknown->status, 503u) << unknown->body;
  auto bad = c.request("GET", "/v1/sandboxes/not-an-id", "", auth());
  EXPECT_EQ(bad->status, 400u);
  json nodes = json::parse(c.request("GET", "/v1/nodes", "", auth())->body);
  EXPECT_EQ(nodes["nodes"].size(), 2u);
  // Neither node offers sandboxes with network (no "default:egress" pool in its report).
  auto egress = c.request("POST", "/v1/sandboxes", R"({"network":"egress"})", auth());
  EXPECT_EQ(egress->status, 429u) << egress->body;
  EXPECT_NE(egress->body.find("without the template"), std::string::npos) << egress->body;
}

TEST_F(SchedulerService, ATenantsQuotaHoldsAcrossTheNodes) {
  http::Client c(address());
  // Each node runs one sandbox of q: two in all, its quota.
  auto refused = c.request("POST", "/v1/sandboxes", "{}", {{"Authorization", std::string("Bearer ") + kQuotaToken}});
  EXPECT_EQ(refused->status, 429u) << refused->body;
  EXPECT_NE(refused->body.find("quota.sandboxes: 2 of 2"), std::string::npos) << refused->body;
  auto other = c.request("POST", "/v1/sandboxes", "{}", {{"Authorization", std::string("Bearer ") + kPlainToken}});
  EXPECT_EQ(other->status, 201u) << other->body;
  // CPUs: 2 + 2 reported; one more fits, then the one placed counts until the next report.
  http::Headers cpu = {{"Authorization", std::string("Bearer ") + kCpuToken}};
  auto fits = c.request("POST", "/v1/sandboxes", R"({"cpu": 1})", cpu);
  EXPECT_EQ(fits->status, 201u) << fits->body;
  auto over = c.request("POST", "/v1/sandboxes", "{}", cpu);
  EXPECT_EQ(over->status, 429u) << over->body;
  EXPECT_NE(over->body.find("quota.cpu: 5 CPUs in use and 0.1 asked of 5 across the cluster"), std::string::npos)
      << over->body;
}

TEST_F(SchedulerService, TenantUsageIsSummedAndADeleteReachesANodeThatWasAway) {
  http::Client c(address());
  json u = json::parse(c.request("GET", "/v1/tenants/t/usage", "", auth())->body);
  EXPECT_EQ(u["usage"].value("cpu_seconds", 0.0), 3.0) << u.dump();
  EXPECT_EQ(u["usage"].value("executions", 0), 4);
  EXPECT_EQ(u.value("suspended", 0), 4);
  EXPECT_EQ(u["nodes"].size(), 2u);
  big_->away = true;
  auto partial = c.request("DELETE", "/v1/tenants/t", "", auth());
  EXPECT_EQ(partial->status, 503u) << partial->body;
  EXPECT_NE(partial->body.find("not confirmed by big"), std::string::npos) << partial->body;
  ASSERT_EQ(small_->deletes_done(), 1u);
  EXPECT_EQ(small_->deletes[0], "t");
  // Back: small reports the delete it recorded, big does not have it: the scheduler sends
  // it, with small's time, so that what t made on big since stays.
  big_->away = false;
  for (int i = 0; i < 200 && big_->deletes_done() == 0; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(big_->deletes_done(), 1u);
  EXPECT_EQ(big_->deletes[0], "t?before=1000000000.000");
  std::this_thread::sleep_for(300ms);  // reports later: both have it, nothing more is sent
  EXPECT_EQ(big_->deletes_done(), 1u);
  EXPECT_EQ(small_->deletes_done(), 1u);
  auto whole = c.request("DELETE", "/v1/tenants/t", "", auth());
  EXPECT_EQ(whole->status, 200u) << whole->body;
  EXPECT_EQ(json::parse(whole->body).value("sandboxes_deleted", 0), 2);
}

// The scheduler keeps no record of deletes: what one node reports reaches the others,
// whichever scheduler (a new replica, one restarted) sees it.
TEST_F(SchedulerService, ADeleteOneNodeRecordedReachesTheOthersWithoutTheSchedulerSeeingIt) {
  {
    std::lock_guard lock(small_->mu);
    small_->tenant_deleted["gone"] = 1796470022.5;
  }
  for (int i = 0; i < 200 && big_->deletes_done() == 0; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(big_->deletes_done(), 1u);
  EXPECT_EQ(big_->deletes[0], "gone?before=1796470022.500");
  EXPECT_EQ(small_->deletes_done(), 0u);
}
TEST_F(SchedulerService, ACreateNamingAWorkspaceGoesToItsNode) {
  http::Client c(address());
  {
    std::lock_guard lock(small_->mu);
    small_->workspaces = {{"tenant-a", {"ws"}}};
  }
  std::this_thread::sleep_for(300ms);  // a report or two
  // big looks less loaded and is always asked first; the workspace is on small.
  auto r = c.request("POST", "/v1/sandboxes", R"({"workspace":"ws"})", auth());
  EXPECT_EQ(r->status, 201u) << r->body;
  EXPECT_EQ(big_->refused.load(), 0);
  // Another tenant's workspace of that name is not small's: placed as any create.
  auto other = c.request("POST", "/v1/sandboxes", R"({"workspace":"ws"})",
                         {{"Authorization", std::string("Bearer ") + kPlainToken}});
  EXPECT_EQ(other->status, 201u) << other->body;
  EXPECT_EQ(big_->refused.load(), 1);
  // A new workspace is made where its first create went (small, after big refused); the next
  // create naming it goes there before small reports it.
  auto first = c.request("POST", "/v1/sandboxes", R"({"workspace":"new"})", auth());
  EXPECT_EQ(first->status, 201u) << first->body;
  EXPECT_EQ(big_->refused.load(), 2);
  auto second = c.request("POST", "/v1/sandboxes", R"({"workspace":"new"})", auth());
  EXPECT_EQ(second->status, 201u) << second->body;
  EXPECT_EQ(big_->refused.load(), 2);
  // The node holding it is away: 503 naming it, not a sandbox elsewhere without its files.
  small_->silent = true;
  std::this_thread::sleep_for(2500ms);  // past stale_after
  auto away = c.request("POST", "/v1/sandboxes", R"({"workspace":"ws"})", auth());
  EXPECT_EQ(away->status, 503u) << away->body;
  EXPECT_NE(away->body.find("is on node small"), std::string::npos) << away->body;
  EXPECT_EQ(big_->refused.load(), 2);
}

TEST_F(SchedulerService, ATemplateGoesToEveryNodeAndARefusalIsRelayed) {
  http::Client c(address());
  auto put = c.request("PUT", "/v1/templates/marker", R"({"image": "localhost:5000/marker:1"})", auth());
  ASSERT_EQ(put->status, 202u) << put->body;
  json nodes = json::parse(put->body)["nodes"];
  EXPECT_EQ(nodes["big"].value("state", ""), "building") << put->body;
  EXPECT_EQ(nodes["small"].value("state", ""), "building") << put->body;
  for (auto* agent : {big_.get(), small_.get()}) {
    std::lock_guard lock(agent->mu);
    ASSERT_EQ(agent->template_puts.size(), 1u);
    EXPECT_EQ(json::parse(agent->template_puts[0]).value("image", ""), "localhost:5000/marker:1");
  }
  auto builtin = c.request("PUT", "/v1/templates/default", R"({"image": "x"})", auth());
  EXPECT_EQ(builtin->status, 409u) << builtin->body;
  EXPECT_NE(builtin->body.find("built-in"), std::string::npos) << builtin->body;
  // A node that cannot take it is named with its own reason.
  auto partial = c.request("PUT", "/v1/templates/nocri", R"({"image": "x"})", auth());
  EXPECT_EQ(partial->status, 503u) << partial->body;
  EXPECT_NE(partial->body.find("not confirmed by big (this node pulls no images)"), std::string::npos)
      << partial->body;
}

TEST_F(SchedulerService, ACallTheNodeReceivedIsNeverRepeatedElsewhere) {
  http::Client c(address());
  auto r = c.request("POST", "/v1/execute", R"({"language":"bash","code":"echo once","timeout_ms":300})", auth());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 503u) << r->body;
  EXPECT_NE(r->body.find("may have run"), std::string::npos) << r->body;
  EXPECT_EQ(big_->executes.load(), 1);
  EXPECT_EQ(small_->executes.load(), 0);
}

TEST_F(SchedulerService, FileBytesPassThroughBothWaysUnchanged) {
  http::Client c(address());
  std::string files = "/v1/sandboxes/" + new_sandbox_id("small") + "/files?path=big.bin";
  std::string up = pattern(20 << 20);
  auto put = c.request("PUT", files, up, auth());
  ASSERT_TRUE(put.ok()) << put.error().to_string();
  ASSERT_EQ(put->status, 200u) << put->body;
  json j = json::parse(put->body);
  EXPECT_EQ(j.value("bytes", 0u), up.size());
  EXPECT_EQ(j.value("sum", uint64_t{0}), sum(up));
  // A download larger than an answer relayed whole comes back in pieces, byte for byte.
  http::ClientResponse head;
  std::string down;
  auto get = c.stream("GET", files, "", auth(), [&](std::string_view d) { down.append(d); },
                      [&](const http::ClientResponse& h) { head = h; });
  ASSERT_TRUE(get.ok()) << get.error().to_string();
  EXPECT_EQ(get->status, 200u);
  EXPECT_EQ(head.header("Transfer-Encoding"), "chunked");
  EXPECT_TRUE(down == pattern(kFileBytes));
}

// Found on a fresh machine: an upload the node took 1,357 ms to store was answered 503 "node
// did not answer" although it succeeded. The scheduler waits as long as the agent's own
// deadline for the operation, not a fixed second.
TEST_F(SchedulerService, ASlowAnswerWithinTheAgentsDeadlineIsWaitedFor) {
  http::Client c(address());
  std::string files = "/v1/sandboxes/" + new_sandbox_id("small") + "/files?path=slow.bin";
  auto start = std::chrono::steady_clock::now();
  auto put = c.request("PUT", files, pattern(1 << 20), auth());
  ASSERT_TRUE(put.ok()) << put.error().to_string();
  EXPECT_EQ(put->status, 200u) << put->body;
  EXPECT_GE(std::chrono::steady_clock::now() - start, kSlowStore);
  EXPECT_EQ(json::parse(put->body, nullptr, false).value("bytes", 0u), 1u << 20);
}

// E2B's calls carry an API key, not a bearer token: the control plane answers a missing or
// wrong key in E2B's shape, after reading at most a small body.
TEST_F(SchedulerService, E2bControlPlaneChecksTheKeyInE2bsShape) {
  http::Client c(address());
  auto none = c.request("GET", "/v2/sandboxes");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->status, 401u);
  json j = json::parse(none->body, nullptr, false);
  EXPECT_EQ(j.value("code", 0), 401) << none->body;
  EXPECT_FALSE(j.value("message", "").empty());
  auto big = c.request("POST", "/v2/sandboxes", std::string(100 << 10, 'x'), {{"X-API-KEY", "nope"}});
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big->status, 413u);
}

}  // namespace
}  // namespace swissbox::sched

namespace swissbox::sched {
namespace {

TEST(AgentDeadlines, FollowTheAgentsOwnDeadlinePerOperation) {
  using namespace std::chrono_literals;
  AgentDeadlines d;
  d.exec_grace = 10s;
  d.ready = 15s;
  d.file_op = 60s;
  d.slack = 30s;
  EXPECT_EQ(d.for_call("POST", "/v1/sandboxes/sbx-a-1/exec", R"({"timeout_ms":5000})"), 45s);
  EXPECT_EQ(d.for_call("POST", "/v1/sandboxes/sbx-a-1/code", "{}"), 100s);  // the default 60 s
  EXPECT_EQ(d.for_call("POST", "/v1/execute", R"({"timeout_ms":1000})"), 56s);
  // A timeout the agent refuses is answered at once; it never stretches the wait.
  EXPECT_EQ(d.for_call("POST", "/v1/sandboxes/sbx-a-1/exec", R"({"timeout_ms":1e12})"), 100s);
  EXPECT_EQ(d.for_call("POST", "/v1/sandboxes/sbx-a-1/exec", R"({"timeout_ms":99999999999})"),
            std::chrono::milliseconds(limits::kMaxExecTimeoutMs) + 40s);
  EXPECT_EQ(d.for_call("POST", "/v1/sandboxes", "{}"), 45s);
  // The first create of a package set waits for its build on the node.
  EXPECT_EQ(d.for_call("POST", "/v1/sandboxes", R"({"pre_install_packages": ["pip:pandas"]})"),
            45s + limits::kDefaultBuildTimeout);
  EXPECT_EQ(d.for_call("PUT", "/v1/sandboxes/sbx-a-1/files", ""), 90s);
}

}  // namespace
}  // namespace swissbox::sched
