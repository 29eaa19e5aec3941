#include "agent/api/e2b/e2b.h"

#include <fmt/format.h>
#include <time.h>

#include <cmath>

#include "agent/sandbox/sandbox_ops.h"
#include "common/auth.h"
#include "common/connect.h"

namespace swissbox::e2b {

using json = nlohmann::json;
namespace bhttp = boost::beast::http;

namespace {

Error invalid(const std::string& m) { return make_error(Code::kInvalidArgument, m); }

// E2B's template ids and swissbox's: its two public ones, and swissbox's own by name.
std::optional<std::string> template_of(const std::string& id) {
  std::string name = template_name(id);
  if (find_template(name)) return name;
  return std::nullopt;
}

Status string_map(const json& body, const char* field, std::map<std::string, std::string>* out) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return ok_status();
  if (!it->is_object()) return invalid(fmt::format("{} must be an object of strings", field));
  for (const auto& [k, v] : it->items()) {
    if (!v.is_string()) return invalid(fmt::format("{}.{} must be a string", field, k));
    (*out)[k] = v.get<std::string>();
  }
  return ok_status();
}

}  // namespace

bool access_allowed(const Sandbox& sb, std::string_view token) {
  return !sb.access_token.empty() && constant_time_equal(sb.access_token, token);
}

Result<CreateRequest> parse_create(const json& body, json* metadata,
                                   const std::function<bool(const std::string&)>& internet) {
  if (!body.is_object()) return invalid("request body must be a JSON object");
  CreateRequest req;
  std::string tmpl = "base";
  if (auto it = body.find("templateID"); it != body.end() && !it->is_null()) {
    if (!it->is_string()) return invalid("templateID must be a string");
    tmpl = it->get<std::string>();
  }
  auto name = template_of(tmpl);
  if (!name) return make_error(Code::kNotFound, "template '" + tmpl + "' not found");
  req.template_name = *name;
  req.client_template = tmpl;
  req.limits = find_template(*name)->limits;
  int64_t timeout = kDefaultTimeoutS;
  if (auto it = body.find("timeout"); it != body.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 1 || it->get<int64_t>() > 7 * 24 * 3600)
      return invalid("timeout must be a whole number of seconds between 1 and 604800");
    timeout = it->get<int64_t>();
  }
  // The life E2B gives a sandbox; idle for as long, it ends as well.
  req.lifetime = std::chrono::seconds(timeout);
  req.timeout = std::chrono::seconds(timeout);
  // autoPause: at its timeout the sandbox is paused (suspended) instead of killed, and a
  // later connect or envd call resumes it.
  req.on_idle = OnIdle::kDelete;
  if (auto it = body.find("autoPause"); it != body.end() && !it->is_null()) {
    if (!it->is_boolean()) return invalid("autoPause must be a boolean");
    if (it->get<bool>()) req.on_idle = OnIdle::kSuspend;
  }
  // As in E2B's sandboxes: the user's home is where commands and files start.
  req.env = {{"HOME", "/home/user"}, {"USER", "user"}};
  if (auto st = string_map(body, "envVars", &req.env); !st) return st.error();
  for (const auto& [k, v] : req.env) {
    if (!valid_env_name(k)) return invalid("envVars name '" + k + "' is not valid");
  }
  std::map<std::string, std::string> meta;
  if (auto st = string_map(body, "metadata", &meta); !st) return st.error();
  bool wants_internet = true;
  if (auto it = body.find("allow_internet_access"); it != body.end() && !it->is_null()) {
    if (!it->is_boolean()) return invalid("allow_internet_access must be a boolean");
    wants_internet = it->get<bool>();
  }
  if (wants_internet && internet && internet(req.template_name)) req.network = NetworkMode::kEgress;
  *metadata = json(meta);
  return req;
}

json sandbox_json(const Sandbox& sb) {
  return {{"sandboxID", sb.id},
          {"templateID", sb.client_template.empty() ? sb.template_name : sb.client_template},
          {"alias", sb.template_name},
          {"clientID", "swissbox"},
          {"envdVersion", kEnvdVersion},
          {"envdAccessToken", sb.access_token},
          {"trafficAccessToken", sb.access_token}};
}

json listed_json(const Sandbox& sb, bool detail) {
  auto end = sb.end_at.time_since_epoch().count() != 0 ? sb.end_at : sb.created_at + sb.timeout;
  json j = {{"sandboxID", sb.id},
            {"templateID", sb.client_template.empty() ? sb.template_name : sb.client_template},
            {"alias", sb.template_name},
            {"clientID", "swissbox"},
            {"startedAt", rfc3339(sb.created_at)},
            {"endAt", rfc3339(end)},
            {"cpuCount", static_cast<int64_t>(std::ceil(sb.limits.cpu))},
            {"memoryMB", sb.limits.memory_mb},
            {"diskSizeMB", sb.limits.disk_mb},
            {"state", sb.state == SandboxState::kSuspended ? "paused" : "running"},
            {"envdVersion", kEnvdVersion},
            {"metadata", sb.metadata}};
  if (detail) {
    j["envdAccessToken"] = sb.access_token;
    j["allowInternetAccess"] = sb.network == NetworkMode::kEgress;
    j["lifecycle"] = {{"onTimeout", sb.on_idle == OnIdle::kSuspend ? "pause" : "kill"},
                      {"autoResume", true}};
  }
  return j;
}

EnvdProcess* Processes::find(const std::string& sandbox, const json& selector) {
  auto sb = by_sandbox.find(sandbox);
  if (sb == by_sandbox.end() || !selector.is_object()) return nullptr;
  if (auto pid = selector.find("pid"); pid != selector.end() && pid->is_number_integer()) {
    auto it = sb->second.find(pid->get<int64_t>());
    return it == sb->second.end() ? nullptr : &it->second;
  }
  if (auto tag = selector.find("tag"); tag != selector.end() && tag->is_string()) {
    for (auto& [pid, p] : sb->second) {
      if (p.tag == tag->get<std::string>()) return &p;
    }
  }
  return nullptr;
}

void rpc_fail(const std::shared_ptr<http::Responder>& res, const Error& e) {
  res->send_json(http_status(e.code), connect::error_json(e));
}

void end_rpc_stream(const std::shared_ptr<http::Responder>& res, const Error* e) {
  res->write_chunk(connect::end_stream(e));
  res->end_stream();
}

json filesystem_event(const proto::Change& change) {
  std::string type = "EVENT_TYPE_";
  for (char ch : change.type) type += static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return {{"name", change.name}, {"type", type}};
}

std::string client_path(const std::string& path) {
  if (!path.empty() && path[0] == '/') return path;
  return path.empty() || path == "." ? "/home/user" : "/home/user/" + path;
}

json entry_info(const std::string& path, const proto::FileEntry& e) {
  static const std::map<std::string, std::string> kTypes = {
      {"file", "FILE_TYPE_FILE"}, {"dir", "FILE_TYPE_DIRECTORY"}, {"symlink", "FILE_TYPE_SYMLINK"}};
  auto type = kTypes.find(e.type);
  std::string perms = e.type == "dir" ? "d" : e.type == "symlink" ? "l" : "-";
  for (int shift = 6; shift >= 0; shift -= 3) {
    perms += (e.mode >> shift) & 4 ? 'r' : '-';
    perms += (e.mode >> shift) & 2 ? 'w' : '-';
    perms += (e.mode >> shift) & 1 ? 'x' : '-';
  }
  std::string name = path.substr(path.find_last_of('/') + 1);
  return {{"name", name.empty() ? path : name},
          {"type", type == kTypes.end() ? "FILE_TYPE_UNSPECIFIED" : type->second},
          {"path", path},
          {"size", std::to_string(e.size)},
          {"mode", e.mode},
          {"permissions", perms},
          {"owner", "user"},
          {"group", "user"},
          {"modifiedTime", rfc3339(std::chrono::system_clock::time_point(std::chrono::seconds(e.mtime)))}};
}

std::string rfc3339(std::chrono::system_clock::time_point t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  time_t secs = static_cast<time_t>(ms / 1000);
  tm utc{};
  gmtime_r(&secs, &utc);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", utc.tm_year + 1900,
                     utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, ms % 1000);
}

}  // namespace swissbox::e2b
