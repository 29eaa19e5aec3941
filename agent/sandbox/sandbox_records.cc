#include "agent/sandbox/sandbox_records.h"

#include <dirent.h>
#include <unistd.h>

#include "common/fs.h"
#include "common/log.h"

namespace swissbox {

using json = nlohmann::json;

namespace {

constexpr int kRecordVersion = 1;

json contexts_record(const Sandbox& sb) {
  json out = json::object();
  for (const auto& [id, c] : sb.contexts) out[id] = {{"language", c.language}, {"cwd", c.cwd}};
  return out;
}

}  // namespace

json sandbox_record(const Sandbox& sb) {
  auto created = std::chrono::duration_cast<std::chrono::milliseconds>(
      sb.created_at.time_since_epoch());
  return {{"version", kRecordVersion},
          {"id", sb.id},
          {"template", sb.template_name},
          {"tenant", sb.tenant},
          {"workspace", sb.workspace},
          {"limits", limits_json(sb.limits)},
          {"env", sb.env},
          {"metadata", sb.metadata},
          {"timeout_s", sb.timeout.count()},
          {"on_idle", on_idle_name(sb.on_idle)},
          {"retention_s", sb.retention.count()},
          {"suspended_at_ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                  sb.suspended_at.time_since_epoch()).count()},
          {"created_at_ms", created.count()},
          {"warm", sb.from_pool},
          {"exec_count", sb.exec_count},
          {"last_exit_code", sb.last_exit_code},
          {"runner_secret", sb.runner_secret},
          {"contexts", contexts_record(sb)},
          {"end_at_ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                            sb.end_at.time_since_epoch()).count()},
          {"client_template", sb.client_template},
          {"access_token", sb.access_token},
          {"state", state_name(sb.state)},
          {"checkpoint_bytes", sb.checkpoint_bytes},
          {"disk_bytes", sb.disk_bytes},
          {"network",
           {{"mode", network_name(sb.network)},
            {"egress_allowlist", sb.egress_allowlist},
            {"bandwidth_kbit", sb.bandwidth_kbit},
            {"address", sb.network_address},
            {"gateway", sb.network_gateway}}}};
}

Result<Sandbox> sandbox_from_record(const json& r) {
  try {
    if (r.at("version").get<int>() != kRecordVersion)
      return make_error(Code::kInvalidArgument, "record version " + r.at("version").dump());
    Sandbox sb;
    sb.id = r.at("id").get<std::string>();
    if (!valid_sandbox_id(sb.id)) return make_error(Code::kInvalidArgument, "bad id " + sb.id);
    sb.template_name = r.at("template").get<std::string>();
    if (!find_template(sb.template_name))
      return make_error(Code::kInvalidArgument, "unknown template " + sb.template_name);
    sb.tenant = r.at("tenant").get<std::string>();
    sb.workspace = r.value("workspace", std::string());
    sb.limits = limits_from_json(r.at("limits"));
    sb.env = r.at("env").get<std::map<std::string, std::string>>();
    sb.metadata = r.at("metadata");
    sb.timeout = std::chrono::seconds(r.at("timeout_s").get<int64_t>());
    sb.created_at = std::chrono::system_clock::time_point(
        std::chrono::milliseconds(r.at("created_at_ms").get<int64_t>()));
    sb.from_pool = r.at("warm").get<bool>();
    sb.exec_count = r.at("exec_count").get<uint64_t>();
    sb.last_exit_code = r.at("last_exit_code").get<int>();
    sb.runner_secret = r.value("runner_secret", std::string());
    // Absent in records written before contexts and the E2B surface.
    sb.end_at = std::chrono::system_clock::time_point(
        std::chrono::milliseconds(r.value("end_at_ms", int64_t{0})));
    sb.client_template = r.value("client_template", std::string());
    sb.access_token = r.value("access_token", std::string());
    if (auto cs = r.find("contexts"); cs != r.end()) {
      for (const auto& [id, c] : cs->items()) {
        sb.contexts[id] = {c.at("language").get<std::string>(), c.at("cwd").get<std::string>()};
      }
    }
    if (auto n = r.find("network"); n != r.end()) {
      auto mode = parse_network(n->at("mode").get<std::string>());
      if (!mode) return make_error(Code::kInvalidArgument, "unknown network " + n->at("mode").dump());
      sb.network = *mode;
      sb.egress_allowlist = n->at("egress_allowlist").get<std::vector<std::string>>();
      sb.bandwidth_kbit = n->at("bandwidth_kbit").get<int64_t>();
      sb.network_address = n->at("address").get<std::string>();
      sb.network_gateway = n->at("gateway").get<std::string>();
    }
    // Absent in records written before suspend: those were all active.
    sb.state = r.value("state", std::string("active")) == "suspended" ? SandboxState::kSuspended
                                                                      : SandboxState::kActive;
    sb.checkpoint_bytes = r.value("checkpoint_bytes", int64_t{0});
    sb.disk_bytes = r.value("disk_bytes", int64_t{0});
    // Absent in records written before idle suspend: those ended when idle.
    sb.on_idle = parse_on_idle(r.value("on_idle", std::string("delete"))).value_or(OnIdle::kDelete);
    sb.retention = std::chrono::seconds(r.value("retention_s", kDefaultRetention.count()));
    sb.suspended_at = std::chrono::system_clock::time_point(
        std::chrono::milliseconds(r.value("suspended_at_ms", int64_t{0})));
    return sb;
  } catch (const json::exception& e) {
    return make_error(Code::kInvalidArgument, std::string("bad record: ") + e.what());
  }
}

Status RecordStore::open() const { return fs::make_dirs(dir_, 0700); }

Status RecordStore::save(const Sandbox& sb) const {
  // A suspended sandbox outlives a node reboot; a running one does not (see above).
  return fs::write_file_atomic(path(sb.id), sandbox_record(sb).dump(), 0600,
                               /*durable=*/sb.state == SandboxState::kSuspended);
}

Status RecordStore::remove(const std::string& id) const {
  if (unlink(path(id).c_str()) != 0 && errno != ENOENT) return sys_error("remove " + path(id));
  return ok_status();
}

std::vector<Sandbox> RecordStore::load(int* bad) const {
  std::vector<Sandbox> out;
  *bad = 0;
  DIR* d = opendir(dir_.c_str());
  if (!d) return out;
  std::vector<std::string> names;
  while (dirent* e = readdir(d)) names.push_back(e->d_name);
  closedir(d);
  for (const auto& name : names) {
    if (name == "." || name == "..") continue;
    std::string file = dir_ + "/" + name;
    // A temp file left by a crash mid-write: the record it would have replaced is whole.
    bool is_record = name.size() > 5 && name.ends_with(".json");
    auto text = is_record ? fs::read_file(file, 1 << 20) : Result<std::string>(std::string());
    auto sb = text ? sandbox_from_record(json::parse(*text, nullptr, false))
                   : Result<Sandbox>(text.error());
    if (is_record && sb && sb->id + ".json" == name) {
      out.push_back(std::move(*sb));
      continue;
    }
    if (is_record) {
      ++*bad;
      log::warn("unreadable sandbox record removed",
                {{"file", file}, {"error", sb ? "name does not match id" : sb.error().to_string()}});
    }
    unlink(file.c_str());
  }
  return out;
}

}  // namespace swissbox
