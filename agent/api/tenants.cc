// Tenants (issue 21): GET /v1/tenants (admin: every tenant the node knows, what it holds
// and its quota), GET /v1/tenants/{t}/usage (the tenant itself or an admin: its bill on this
// node), DELETE /v1/tenants/{t} (an admin token or the unix socket: every sandbox,
// checkpoint, disk, workspace, record and usage of it, answered once they are gone; the
// delete is recorded and shown in the node report, for the scheduler to finish it on nodes
// that were away).
#include <cerrno>
#include <cstdlib>

#include "agent/api/call.h"
#include "common/sandbox_id.h"

namespace swissbox {

namespace bhttp = boost::beast::http;
using json = nlohmann::json;

namespace {

json quota_json(const Quota& q) {
  json j = json::object();
  if (q.sandboxes) j["sandboxes"] = *q.sandboxes;
  if (q.cpu) j["cpu"] = *q.cpu;
  if (q.memory_mb) j["memory_mb"] = *q.memory_mb;
  if (q.suspended) j["suspended"] = *q.suspended;
  if (q.workspace_mb) j["workspace_mb"] = *q.workspace_mb;
  return j;
}

// Tenant names come from token files: printable, no slash, not too long.
bool valid_tenant(std::string_view t) {
  if (t.empty() || t.size() > 128) return false;
  for (char ch : t) {
    if (static_cast<unsigned char>(ch) < 0x21 || ch == '/' || ch == 0x7f) return false;
  }
  return true;
}

// A time as the scheduler sends it: unix seconds, with a fraction (a node's tombstone).
std::optional<std::chrono::system_clock::time_point> parse_unix_seconds(const std::string& text) {
  char* end = nullptr;
  errno = 0;
  double s = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || errno != 0 || !(s >= 0 && s < 1e11)) return std::nullopt;
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::duration<double>(s)));
}

}  // namespace

json AgentApi::tenant_json(const std::string& tenant, const TenantLoad& load) const {
  json j = {{"tenant", tenant},
            {"node", mgr_.node_name()},
            {"running", load.running},
            {"suspended", load.suspended},
            {"cpu", load.cpu},
            {"memory_mb", load.memory_mb},
            {"usage", mgr_.tenant_usage(tenant).to_json()}};
  if (auto q = mgr_.options().quotas.find(tenant); q != mgr_.options().quotas.end()) j["quota"] = quota_json(q->second);
  return j;
}

void AgentApi::tenants(Call& c, const std::string& tenant, const std::string& rest) {
  const auto m = c.req.method();
  if (tenant.empty()) {
    if (m != bhttp::verb::get) return c.fail(make_error(Code::kInvalidArgument, "use GET on /v1/tenants"));
    if (!c.admin) return c.fail(make_error(Code::kPermissionDenied, "listing tenants needs an admin token"));
    json items = json::array();
    auto loads = mgr_.tenant_loads();
    for (const auto& t : mgr_.tenants()) items.push_back(tenant_json(t, loads[t]));
    return c.res->send_json(200, {{"tenants", items}});
  }
  if (!valid_tenant(tenant)) return c.fail(make_error(Code::kInvalidArgument, "not a tenant name: " + tenant));
  // Another tenant's numbers are not found, as its sandboxes are not.
  if (!c.admin && tenant != c.tenant) return c.fail(make_error(Code::kNotFound, "tenant " + tenant + " not found"));
  if (rest == "/usage") {
    if (m != bhttp::verb::get) return c.fail(make_error(Code::kInvalidArgument, "use GET on /v1/tenants/{t}/usage"));
    return c.res->send_json(200, tenant_json(tenant, mgr_.load_of(tenant)));
  }
  if (rest.empty() && m == bhttp::verb::delete_) {
    if (!c.admin) {
      return c.fail(make_error(Code::kPermissionDenied, "deleting a tenant needs an admin token or the unix socket"));
    }
    // ?before=<unix seconds>: the scheduler finishing, on a node that was away, a delete
    // made then; what the tenant made here since stays.
    std::optional<std::chrono::system_clock::time_point> before;
    if (c.has_param("before")) {
      auto at = parse_unix_seconds(c.param("before"));
      if (!at) return c.fail(make_error(Code::kInvalidArgument, "before must be unix seconds, not '" + c.param("before") + "'"));
      before = *at;
    }
    return mgr_.delete_tenant(tenant, before, [call = c.shared_from_this(), tenant, node = mgr_.node_name()](int n) {
      call->res->send_json(200, {{"tenant", tenant}, {"node", node}, {"sandboxes_deleted", n}});
    });
  }
  c.fail(make_error(Code::kNotFound, "no route for " + c.path));
}

}  // namespace swissbox
