// The node: GET /v1/node (and a drain's answer), the warm pools (/v1/warmpool).
#include <stdlib.h>
#include <sys/sysinfo.h>

#include <thread>

#include "agent/api/call.h"
#include "agent/api/cri_monitor.h"
#include "agent/sandbox/sandbox_ops.h"
#include "agent/sandbox/template_store.h"
#include "common/fs.h"
#include "common/node_report.h"

namespace swissbox {

namespace bhttp = boost::beast::http;
using json = nlohmann::json;

namespace {

// MemAvailable from /proc/meminfo: free memory plus what the kernel can reclaim (page
// cache), the figure that says whether another sandbox fits.
uint64_t memory_available_bytes() {
  auto text = fs::read_file("/proc/meminfo", 1 << 16);
  if (!text) return 0;
  auto at = text->find("MemAvailable:");
  if (at == std::string::npos) return 0;
  return std::strtoull(text->c_str() + at + 13, nullptr, 10) * 1024;
}

}  // namespace

void AgentApi::node_info(Call& c) {
  NodeReport r;
  r.node = mgr_.node_name();
  r.region = opts_.region;
  auto& rt = mgr_.runtime();
  r.runtime_name = rt.name();
  r.runtime_version = rt.version();
  r.platform = rt.platform();
  r.max_sandboxes = mgr_.capacity();
  r.cpus = static_cast<int>(std::thread::hardware_concurrency());
  struct sysinfo si {};
  sysinfo(&si);
  r.memory_bytes = static_cast<uint64_t>(si.totalram) * si.mem_unit;
  double loadavg[1] = {0};
  getloadavg(loadavg, 1);
  r.loadavg_1m = loadavg[0];
  r.memory_available_bytes = memory_available_bytes();
  r.active = mgr_.active_count();
  r.deleting = mgr_.deleting_count();
  for (const auto& [name, p] : mgr_.pool_status()) r.warm[name] = p.ready;
  r.languages = supported_languages();
  r.draining = mgr_.draining();
  for (const auto& [t, load] : mgr_.tenant_loads()) {
    if (load.running > 0 || load.suspended > 0) r.tenants[t] = load;
  }
  r.workspaces = rt.workspaces();
  r.tenant_deletes = mgr_.deleted_tenants();
  if (opts_.templates) {
    for (const auto& t : opts_.templates->list()) r.templates[t.name] = template_state_name(t.state);
  }
  if (opts_.cri) r.cri = opts_.cri->to_json();
  c.res->send_json(200, r.to_json());
}

void AgentApi::warmpool(Call& c, const std::string& tmpl) {
  const auto m = c.req.method();
  if (tmpl.empty()) {
    if (m != bhttp::verb::get)
      return c.fail(make_error(Code::kInvalidArgument, "use GET on /v1/warmpool"));
    json out = json::object();
    for (const auto& [name, p] : mgr_.pool_status()) {
      out[name] = {
          {"target", p.target}, {"ready", p.ready}, {"starting", p.starting}, {"active", p.active}};
    }
    // ?memory=1: the mean host memory of each pool's ready sandboxes (reads /proc of each).
    if (c.param("memory") != "1" && c.param("memory") != "true")
      return c.res->send_json(200, {{"templates", out}});
    return mgr_.warm_footprints([out, res = c.res](std::map<std::string, MemoryFootprint> fs) mutable {
      for (const auto& [name, f] : fs) {
        out[name]["memory_pss_bytes"] = f.pss_bytes;
        out[name]["memory_rss_bytes"] = f.rss_bytes;
      }
      res->send_json(200, {{"templates", out}});
    });
  }
  if (m != bhttp::verb::put)
    return c.fail(make_error(Code::kInvalidArgument, "use PUT on /v1/warmpool/{template}"));
  // The pools are the node's, shared by every tenant.
  if (!c.admin) {
    return c.fail(make_error(Code::kPermissionDenied,
                             "changing a warm pool needs an admin token or the unix socket"));
  }
  auto body = c.body_json(opts_.max_json_body);
  if (!body) return c.fail(body.error());
  auto it = body->find("target");
  if (it == body->end() || !it->is_number_integer()) {
    return c.fail(make_error(Code::kInvalidArgument, "target (integer) is required"));
  }
  if (auto st = mgr_.set_pool_target(tmpl, it->get<int>()); !st) return c.fail(st.error());
  auto p = mgr_.pool_status()[tmpl];
  c.res->send_json(
      200,
      {{"template", tmpl}, {"target", p.target}, {"ready", p.ready}, {"starting", p.starting}});
}

}  // namespace swissbox
