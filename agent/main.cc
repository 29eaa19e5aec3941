// swissbox-agent: wires the runsc driver, the sandbox manager and the HTTP API together
// and runs them on one I/O thread plus a worker pool for blocking work.
#include <limits.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/thread_pool.hpp>
#include <filesystem>

#include "agent/api.h"
#include "agent/config.h"
#include "agent/hardening.h"
#include "agent/runsc_driver.h"
#include "agent/sandbox_manager.h"
#include "common/fs.h"
#include "common/http_server.h"
#include "common/log.h"

using namespace swissbox;

namespace {

std::string self_dir() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  buf[n] = 0;
  return std::filesystem::path(buf).parent_path().string();
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  for (const auto& a : args) {
    if (a == "--help" || a == "-h") {
      fputs(agent_usage().c_str(), stdout);
      return 0;
    }
  }
  auto cfg = parse_agent_config(args);
  if (!cfg) {
    fprintf(stderr, "swissbox-agent: %s\n%s", cfg.error().to_string().c_str(),
            agent_usage().c_str());
    return 2;
  }
  log::Level level;
  if (!log::parse_level(cfg->log_level, &level)) {
    fprintf(stderr, "swissbox-agent: unknown --log-level %s\n", cfg->log_level.c_str());
    return 2;
  }
  log::set_level(level);
  // Before any thread exists: capability sets are per thread.
  if (cfg->harden) {
    auto hardened = harden_agent();
    if (!hardened) {
      log::error("hardening failed", {{"error", hardened.error().to_string()}});
      return 1;
    }
    log::info("hardened", {{"capabilities_dropped", hardened->capabilities_dropped},
                           {"syscalls_denied", hardened->syscalls_denied}});
  }
  std::map<std::string, std::string> tokens;
  if (!cfg->token_file.empty()) tokens = load_tokens(cfg->token_file).value();  // validated above

  auto cgroups = open_cgroups({.parent = cfg->cgroup_parent});
  if (!cgroups) {
    log::error("cgroups not usable", {{"error", cgroups.error().to_string()}});
    return 1;
  }
  log::info("cgroups ready", {{"version", (*cgroups)->version()}, {"parent", (*cgroups)->parent()}});

  RunscOptions ro;
  ro.cgroups = cgroups->get();
  ro.runsc = cfg->runsc;
  ro.root_dir = cfg->runsc_root;
  ro.state_dir = cfg->state_dir;
  ro.rootfs = cfg->rootfs;
  ro.platform = cfg->platform;
  ro.max_disk_mb = LimitBounds{}.max_disk_mb;
  ro.init_path = cfg->init_path.empty() ? self_dir() + "/swissbox-init" : cfg->init_path;
  auto driver = RunscDriver::create(ro);
  if (!driver) {
    log::error("runtime not usable", {{"error", driver.error().to_string()}});
    return 1;
  }
  log::info("runtime ready", {{"runsc", (*driver)->version()},
                              {"platform", ro.platform},
                              {"rootfs", ro.rootfs},
                              {"state_dir", ro.state_dir}});

  boost::asio::io_context ioc(1);
  // Runtime calls finish on the worker pool and post back: the I/O loop must not run out of
  // work (and return) while one is in flight. The guard goes when shutdown is complete.
  auto work = boost::asio::make_work_guard(ioc);
  boost::asio::thread_pool workers(4);
  Metrics metrics;
  ManagerOptions mo;
  mo.node_name = cfg->node_name;
  mo.pool_targets = cfg->pool;
  mo.max_sandboxes = cfg->max_sandboxes;
  mo.gc_interval = std::chrono::seconds(cfg->gc_interval_s);
  mo.records_dir = cfg->state_dir + "/records";
  SandboxManager manager(ioc, workers, **driver, mo, metrics);
  AgentApi api(manager, metrics, ApiOptions{cfg->region, tokens});
  http::Server server(ioc, http::ServerOptions{},
                      [&api](http::Request&& req, std::shared_ptr<http::Responder> res) {
                        api.handle(std::move(req), std::move(res));
                      });

  int exit_code = 0;
  manager.start([&](Status st) {
    if (!st) {
      log::error("start-up clean-up failed", {{"error", st.error().to_string()}});
      exit_code = 1;
      ioc.stop();
      return;
    }
    if (!cfg->listen.empty()) {
      if (auto s = server.listen_tcp(cfg->listen); !s) {
        log::error("cannot listen", {{"error", s.error().to_string()}});
        exit_code = 1;
        return ioc.stop();
      }
    }
    if (!cfg->socket.empty()) {
      // A failure here shows up as the listen error just below.
      (void)fs::make_dirs(std::filesystem::path(cfg->socket).parent_path().string(), 0755);
      if (auto s = server.listen_unix(cfg->socket); !s) {
        log::error("cannot listen", {{"error", s.error().to_string()}});
        exit_code = 1;
        return ioc.stop();
      }
    }
    log::info("agent serving", {{"listen", cfg->listen},
                                {"socket", cfg->socket},
                                {"node", cfg->node_name},
                                {"port", static_cast<int>(server.tcp_port())}});
  });

  boost::asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code ec, int sig) {
    if (ec) return;
    log::info("draining", {{"signal", sig}});
    server.drain(std::chrono::seconds(10), [&] {
      manager.shutdown(cfg->keep_sandboxes_on_exit, [&] {
        log::info("stopped");
        work.reset();
        ioc.stop();
      });
    });
  });
  ioc.run();
  workers.join();
  return exit_code;
}
