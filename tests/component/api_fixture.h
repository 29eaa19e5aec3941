// The agent's HTTP API end to end with the real runner, channel and manager, on a runtime
// that starts swissbox-init as a host process (no root, no runsc): the fixture the
// component tests of the API share.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "agent/api/api.h"
#include "agent/sandbox/sandbox_manager.h"
#include "common/fs.h"
#include "common/limits.h"
#include "common/http_client.h"
#include "common/http_server.h"
#include "support/host_runtime.h"

namespace swissbox::testing {

using json = nlohmann::json;
using namespace std::chrono_literals;

template <typename Pred>
bool wait_until(Pred pred, std::chrono::milliseconds limit = 5s) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return pred();
}

class AgentApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/swissbox-api-test-XXXXXX";
    root_ = mkdtemp(tmpl);
    runtime_ = std::make_unique<testing::HostRuntime>(SWISSBOX_INIT_PATH, root_);
  }

  // A pool of one whose only sandbox was just claimed: its replacement starts refill_delay
  // (100 ms) after the claim and takes 400 ms; 150 ms after the claim it is under way.
  void EmptyPoolWhileItsReplacementStarts() {
    runtime_->start_delay_ms = 400;
    Start({{"default", 1}});
    ASSERT_TRUE(wait_until([&] { return Ready() == 1; }));
    ASSERT_EQ(Call("POST", "/v1/sandboxes", "{}").first, 201u);
    std::this_thread::sleep_for(150ms);
  }

  void Start(std::map<std::string, int> pool, int max_sandboxes = 8, ApiOptions api = {}) {
    ManagerOptions mo;
    mo.node_name = "unit";
    mo.pool_targets = std::move(pool);
    mo.max_sandboxes = max_sandboxes;
    mo.health_interval = 1s;
    mo.exec_grace = 300ms;
    mo.file_op_deadline = 300ms;
    mo.records_dir = root_ + "/records";
    mgr_ = std::make_unique<SandboxManager>(*ioc_, workers_, *runtime_, mo, metrics_);
    api_ = std::make_unique<AgentApi>(*mgr_, metrics_, std::move(api));
    http::ServerOptions so;
    so.body_limit = 1 << 20;
    so.admit = [this](const http::RequestHeader& h, bool u) { return api_->admit(h, u); };
    so.body_limit_for = [this](const http::RequestHeader& h) { return api_->body_limit(h); };
    so.stream_body = &AgentApi::streams_body;
    so.stream_body_limit = limits::kMaxFileBytes;
    server_ = std::make_unique<http::Server>(
        *ioc_, so, [this](http::Request&& r, std::shared_ptr<http::Responder> res) {
          api_->handle(std::move(r), std::move(res));
        });
    ASSERT_TRUE(server_->listen_tcp("127.0.0.1:0").ok());
    std::promise<Status> started;
    mgr_->start([&](Status st) { started.set_value(st); });
    io_thread_ = std::thread([this] { ioc_->run(); });
    ASSERT_TRUE(started.get_future().get().ok());
    client_ = std::make_unique<http::Client>("127.0.0.1:" + std::to_string(server_->tcp_port()));
  }

  // Stops the agent as an update does (keep_active: its sandboxes go on running, for the
  // next agent process to adopt); a next Start() is that process.
  void Stop(bool keep_active) {
    std::promise<void> done;
    boost::asio::post(*ioc_, [&] { mgr_->shutdown(keep_active, [&] { done.set_value(); }); });
    done.get_future().wait_for(10s);
    ioc_->stop();
    io_thread_.join();
    client_.reset();
    server_.reset();
    api_.reset();
    mgr_.reset();
    ioc_ = std::make_unique<boost::asio::io_context>();
  }

  void TearDown() override {
    if (mgr_) Stop(false);
    workers_.join();
    runtime_.reset();
    (void)fs::remove_tree(root_);
  }

  std::pair<unsigned, json> Call(std::string_view method, const std::string& path,
                                 const std::string& body = {}, const std::string& token = {}) {
    http::Headers h;
    if (!token.empty()) h.push_back({"Authorization", "Bearer " + token});
    auto r = client_->request(method, path, body, h);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().to_string());
    if (!r.ok()) return {0, {}};
    json j = json::parse(r->body, nullptr, false);
    return {r->status, j};
  }

  // As root: an agent whose runners are PID 1 of their own namespaces, as in a sandbox
  // (HostRuntime isolated), and one sandbox of it; its id and its runner's host pid.
  void StartIsolatedSandbox(std::string* id, pid_t* runner) {
    runtime_ = std::make_unique<testing::HostRuntime>(SWISSBOX_INIT_PATH, root_, /*isolated=*/true);
    Start({});
    auto [status, sb] = Call("POST", "/v1/sandboxes", "{}");
    ASSERT_EQ(status, 201u) << sb;
    *id = sb["id"];
    *runner = runtime_->runner_pid(*id);
  }

  int Ready(const std::string& tmpl = "default") {
    return Call("GET", "/v1/warmpool").second["templates"][tmpl].value("ready", -1);
  }

  std::string root_;
  std::unique_ptr<boost::asio::io_context> ioc_ = std::make_unique<boost::asio::io_context>();
  boost::asio::thread_pool workers_{2};
  Metrics metrics_;
  std::unique_ptr<testing::HostRuntime> runtime_;
  std::unique_ptr<SandboxManager> mgr_;
  std::unique_ptr<AgentApi> api_;
  std::unique_ptr<http::Server> server_;
  std::unique_ptr<http::Client> client_;
  std::thread io_thread_;
};

}  // namespace swissbox::testing
