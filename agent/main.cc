// swissbox-agent: wires the runsc driver, the sandbox manager and the HTTP API together
// and runs them on one I/O thread plus a worker pool for blocking work.
#include <signal.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/thread_pool.hpp>
#include <filesystem>
#include <thread>

#include "agent/api/api.h"
#include "agent/sandbox/sandbox_ops.h"
#include "agent/config.h"
#include "agent/api/cri_monitor.h"
#include "agent/net/egress_filter.h"
#include "agent/net/egress_proxy.h"
#include "agent/hardening.h"
#include "agent/net/sandbox_network.h"
#include "agent/runtime/image_rootfs.h"
#include "agent/runtime/runsc_driver.h"
#include "agent/sandbox/template_store.h"
#include "cri/containerd_images.h"
#include "common/sandbox_id.h"
#include "agent/sandbox/sandbox_manager.h"
#include "common/fs.h"
#include "common/http_server.h"
#include "common/log.h"
#include "common/process.h"

using namespace swissbox;

int main(int argc, char** argv) {
  // A runner or bridge that dies (or code in the sandbox that kills its bridge) leaves the
  // agent writing into a closed socket: that is an EPIPE for its channel, never a signal
  // that ends the agent with every sandbox of the node.
  signal(SIGPIPE, SIG_IGN);
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
  auto reaper = OrphanReaper::start();
  if (!reaper) {
    log::error("cannot reap orphaned sandbox processes", {{"error", reaper.error().to_string()}});
    return 1;
  }
  TokenTable tokens;
  if (!cfg->token_file.empty()) tokens = load_tokens(cfg->token_file).value();  // validated above
  // Connections, sandboxes' channels and runsc's pipes all take fds: take the hard limit.
  log::info("file descriptor limit", {{"nofile", static_cast<int64_t>(raise_fd_limit())}});

  auto cgroups = open_cgroups({.parent = cfg->cgroup_parent});
  if (!cgroups) {
    log::error("cgroups not usable", {{"error", cgroups.error().to_string()}});
    return 1;
  }
  log::info("cgroups ready", {{"version", (*cgroups)->version()}, {"parent", (*cgroups)->parent()}});

  // Egress networking: the address pool, the packet filter and the proxy, on a thread of
  // its own so that sandbox traffic never delays the API.
  Metrics metrics;
  std::unique_ptr<EgressNetworks> networks;
  boost::asio::io_context proxy_ioc(1);
  auto proxy_work = boost::asio::make_work_guard(proxy_ioc);
  std::unique_ptr<EgressProxy> proxy;
  std::thread proxy_thread;
  EgressFilterConfig filter{"swissbox_" + cfg->egress_link_prefix, cfg->egress_link_prefix,
                            cfg->egress_pool, static_cast<uint16_t>(cfg->egress_proxy_port)};
  if (!cfg->egress_pool.empty()) {
    auto n = EgressNetworks::create({cfg->egress_pool, cfg->egress_link_prefix, filter.proxy_port});
    Status st = n ? install_egress_filter(filter) : Status(n.error());
    EgressProxyOptions po;
    po.port = filter.proxy_port;
    po.static_hosts = cfg->egress_hosts;
    for (const auto& c : cfg->egress_deny.empty() ? default_egress_deny() : cfg->egress_deny)
      po.deny.push_back(Cidr::parse(c).value());  // validated with the config
    if (auto pool = Cidr::parse(cfg->egress_pool)) po.deny.push_back(*pool);
    if (st) {
      proxy = std::make_unique<EgressProxy>(proxy_ioc, po, metrics);
      st = proxy->listen();
    }
    if (!st) {
      log::error("egress networking not usable", {{"error", st.error().to_string()}});
      return 1;
    }
    networks = std::move(*n);
    proxy_thread = std::thread([&proxy_ioc] { proxy_ioc.run(); });
    log::info("egress ready", {{"pool", cfg->egress_pool},
                               {"links", cfg->egress_link_prefix + "*"},
                               {"proxy_port", cfg->egress_proxy_port},
                               {"filter", filter.table}});
  }
  auto stop_egress = [&](bool remove_filter) {
    proxy_work.reset();
    proxy_ioc.stop();
    if (proxy_thread.joinable()) proxy_thread.join();
    if (networks && remove_filter) (void)remove_egress_filter(filter.table);
  };

  RunscOptions ro;
  ro.cgroups = cgroups->get();
  ro.egress = networks.get();
  ro.egress_default_kbit = cfg->egress_rate_kbit;
  ro.runsc = cfg->runsc;
  ro.root_dir = cfg->runsc_root;
  ro.state_dir = cfg->state_dir;
  ro.rootfs = cfg->rootfs;
  ro.platform = cfg->platform;
  ro.max_disk_mb = LimitBounds{}.max_disk_mb;
  ro.init_path = cfg->init_path.empty() ? fs::self_dir() + "/swissbox-init" : cfg->init_path;
  auto driver = RunscDriver::create(ro);
  if (!driver) {
    log::error("runtime not usable", {{"error", driver.error().to_string()}});
    stop_egress(false);
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
  ManagerOptions mo;
  mo.egress_proxy = proxy.get();
  mo.egress_template_allow = cfg->egress_template_allow;
  mo.egress_tenant_allow = cfg->egress_tenant_allow;
  mo.quotas = tenant_quotas(tokens);
  mo.egress_proxy_port = filter.proxy_port;
  mo.node_name = cfg->node_name;
  mo.pool_targets = cfg->pool;
  mo.max_sandboxes = cfg->max_sandboxes;
  mo.refill_concurrency = cfg->refill_concurrency;
  mo.exec_slots = cfg->exec_slots >= 0 ? cfg->exec_slots
                                        : 2 * static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  mo.exec_slot_hold = std::chrono::milliseconds(cfg->exec_slot_hold_ms);
  mo.gc_interval = std::chrono::seconds(cfg->gc_interval_s);
  mo.records_dir = cfg->state_dir + "/records";
  mo.ledger_path = cfg->state_dir + "/tenants/usage.json";
  // Image templates (issue 22): through the node's containerd when the agent has it; their
  // records are read (and ready ones mounted again) before any sandbox of them is.
  std::unique_ptr<cri::ContainerdImages> containerd;
  std::unique_ptr<ImageRootfs> images;
  if (!cfg->cri_socket.empty()) {
    containerd = std::make_unique<cri::ContainerdImages>(cfg->cri_socket);
    images = std::make_unique<ImageRootfs>(*containerd, cfg->state_dir + "/images");
  }
  // Package layers: built in sandboxes the manager holds from its garbage collection; builds
  // start once the agent serves (allow_builds below), after the manager's start-up clean-up.
  SandboxManager* holder = nullptr;
  std::unique_ptr<PackageLayers> layers;
  if (auto mkfs = SandboxDisk::find_mkfs()) layers = std::make_unique<PackageLayers>(cfg->state_dir + "/layers", *mkfs);
  PackageBuildOptions bo;
  bo.timeout = std::chrono::seconds(cfg->build_timeout_s);
  PackageBuilder builder(**driver, proxy.get(), PackageIndexes{cfg->apt_mirror, cfg->pip_index, cfg->npm_registry}, bo,
                         [&holder](const std::string& id, bool held) { holder->hold_for_build(id, held); });
  PackageLayerSupport pls;
  pls.layers = layers.get();
  pls.builder = &builder;
  pls.node_root = (*driver)->node_root();
  pls.build_builtins = cfg->build_builtins;
  pls.new_id = [node = cfg->node_name] { return new_sandbox_id(node); };
  TemplateStore templates(ioc, workers, metrics, images.get(), cfg->state_dir + "/templates", LimitBounds{},
                          std::chrono::seconds(600), pls);
  templates.load();
  SandboxManager manager(ioc, workers, **driver, mo, metrics);
  holder = &manager;
  templates.on_change([&manager] { manager.templates_changed(); });
  std::unique_ptr<CriMonitor> cri;
  if (!cfg->cri_socket.empty()) {
    cri = std::make_unique<CriMonitor>(ioc, workers, cfg->cri_socket);
    cri->start();
  }
  ApiOptions ao;
  ao.region = cfg->region;
  ao.tokens = tokens;
  ao.cri = cri.get();
  ao.templates = &templates;
  AgentApi api(manager, metrics, ao);
  http::ServerOptions so;
  so.max_connections = static_cast<size_t>(cfg->max_connections);
  so.max_connections_per_client = static_cast<size_t>(cfg->max_connections_per_client);
  so.admit = [&api](const http::RequestHeader& h, bool unix_socket) { return api.admit(h, unix_socket); };
  so.body_limit_for = [&api](const http::RequestHeader& h) { return api.body_limit(h); };
  so.stream_body = &AgentApi::streams_body;
  so.stream_body_limit = kMaxFileBytes;
  http::Server server(ioc, so,
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
    // Package builds start now: their sandboxes would have been the start-up clean-up's.
    templates.allow_builds();
    log::info("agent serving", {{"listen", cfg->listen},
                                {"socket", cfg->socket},
                                {"node", cfg->node_name},
                                {"port", static_cast<int>(server.tcp_port())}});
  });

  boost::asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code ec, int sig) {
    if (ec) return;
    log::info("draining", {{"signal", sig}});
    builder.stop();
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
  // Sandboxes left for the next agent still need the filter around them, and their
  // workspaces mounted.
  stop_egress(!cfg->keep_sandboxes_on_exit);
  if (!cfg->keep_sandboxes_on_exit) {
    (*driver)->unmount_workspaces();
    templates.unmount_images();
  }
  return exit_code;
}
