#include "agent/sandbox/template_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <ctime>
#include <nlohmann/json.hpp>

#include "common/fs.h"
#include "common/log.h"

namespace swissbox {

namespace asio = boost::asio;
using json = nlohmann::json;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::optional<TemplateState> parse_state(std::string_view s) {
  if (s == "building") return TemplateState::kBuilding;
  if (s == "ready") return TemplateState::kReady;
  if (s == "failed") return TemplateState::kFailed;
  return std::nullopt;
}

// One line of a build's log, appended (a build writes it from a worker; readers read the
// file).
void append_line(const std::string& path, const std::string& line) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return;
  char stamp[32];
  std::time_t t = std::time(nullptr);
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ ", std::gmtime(&t));
  std::string text = stamp + line + "\n";
  (void)!write(fd, text.data(), text.size());
  close(fd);
}

Template template_of(const TemplateRecord& r, const PreparedImage& image) {
  Template t;
  t.name = r.name;
  t.limits = r.limits;
  t.idle_timeout = r.idle_timeout;
  t.on_idle = r.on_idle;
  t.rootfs = image.rootfs;
  t.image = r.image;
  t.env = image.manifest.env;
  return t;
}

}  // namespace

std::string_view template_state_name(TemplateState s) {
  switch (s) {
    case TemplateState::kBuilding: return "building";
    case TemplateState::kReady: return "ready";
    case TemplateState::kFailed: return "failed";
  }
  return "failed";
}

json TemplateRecord::to_json() const {
  json j = {{"name", name},
            {"image", image},
            {"state", template_state_name(state)},
            {"digest", digest},
            {"size_bytes", size_bytes},
            {"limits", limits_json(limits)},
            {"idle_timeout_s", idle_timeout.count()},
            {"on_idle", on_idle_name(on_idle)},
            {"created_at", created_at}};
  if (state == TemplateState::kReady) j["ready_at"] = ready_at;
  if (state == TemplateState::kFailed) j["error"] = error;
  return j;
}

Result<TemplateRecord> TemplateRecord::from_json(const json& j) {
  try {
    TemplateRecord r;
    r.name = j.at("name").get<std::string>();
    r.image = j.at("image").get<std::string>();
    auto state = parse_state(j.at("state").get<std::string>());
    if (!state) return make_error(Code::kInvalidArgument, "template " + r.name + ": unknown state");
    r.state = *state;
    r.error = j.value("error", "");
    r.digest = j.value("digest", "");
    r.size_bytes = j.value("size_bytes", int64_t{0});
    r.limits = limits_from_json(j.at("limits"));
    r.idle_timeout = std::chrono::seconds(j.value("idle_timeout_s", kDefaultIdleTimeout.count()));
    r.on_idle = parse_on_idle(j.value("on_idle", "suspend")).value_or(OnIdle::kSuspend);
    r.created_at = j.value("created_at", 0.0);
    r.ready_at = j.value("ready_at", 0.0);
    return r;
  } catch (const json::exception& e) {
    return make_error(Code::kInvalidArgument, std::string("template record: ") + e.what());
  }
}

TemplateStore::TemplateStore(asio::io_context& ioc, asio::thread_pool& workers, Metrics& metrics, ImageRootfs* images,
                             std::string dir, LimitBounds bounds, std::chrono::seconds pull_timeout)
    : ioc_(ioc),
      workers_(workers),
      metrics_(metrics),
      images_(images),
      dir_(std::move(dir)),
      bounds_(bounds),
      pull_timeout_(pull_timeout) {
  using T = Metrics::Type;
  metrics_.describe("swissbox_template_builds_total", T::kCounter,
                    "Image template builds (pull and preparation) that ended, by result.");
  metrics_.describe("swissbox_template_build_seconds", T::kHistogram, "Time from a template's PUT to ready.");
  metrics_.describe("swissbox_templates", T::kGauge, "Image templates on the node, by state.");
}

void TemplateStore::update_gauges() {
  std::map<std::string_view, int> by_state = {{"building", 0}, {"ready", 0}, {"failed", 0}};
  for (const auto& [name, r] : records_) by_state[template_state_name(r.state)]++;
  for (const auto& [state, n] : by_state) metrics_.set("swissbox_templates", Metrics::labels({{"state", std::string(state)}}), n);
}

Status TemplateStore::save(const TemplateRecord& r) const {
  if (auto st = fs::make_dirs(dir_, 0700); !st) return st;
  return fs::write_file_atomic(record_path(r.name), r.to_json().dump(2), 0600);
}

void TemplateStore::load() {
  for (const auto& file : fs::list_dir(dir_)) {
    if (!file.ends_with(".json")) continue;
    auto text = fs::read_file(dir_ + "/" + file);
    auto r = text ? TemplateRecord::from_json(json::parse(*text, nullptr, false)) : Result<TemplateRecord>(text.error());
    if (!r || !plain_name(r->name, 64) || file != r->name + ".json") {
      log::error("template record not read", {{"file", file}, {"error", r ? "its name" : r.error().to_string()}});
      continue;
    }
    records_[r->name] = *r;
    if (r->state == TemplateState::kFailed) continue;
    if (!images_) {
      finish(r->name, make_error(Code::kUnavailable, "this node has no containerd (--cri-socket) any more"), std::nullopt);
      continue;
    }
    if (r->state == TemplateState::kBuilding) {
      append_line(log_path(r->name), "the agent restarted during the build: building again");
      build(*r, ImageRootfs::Pull::kAlways);
      continue;
    }
    // Ready before: mounted again (after a reboot) here, before any sandbox of it starts;
    // if containerd lost the image, built again in the background (the start does not wait
    // for a registry).
    auto image = images_->prepare(r->image, pull_timeout_, [](const std::string&) {}, ImageRootfs::Pull::kNever);
    if (!image && image.error().code == Code::kNotFound) {
      append_line(log_path(r->name), "containerd no longer has " + r->image + ": building again");
      records_[r->name].state = TemplateState::kBuilding;
      build(*r, ImageRootfs::Pull::kAlways);
      continue;
    }
    finish(r->name, std::move(image), std::nullopt);
  }
  update_gauges();
}

Result<TemplateRecord> TemplateStore::put(const std::string& name, const json& body) {
  if (!plain_name(name, 64)) {
    return make_error(Code::kInvalidArgument,
                      "template names are 1-64 letters, digits, '.', '_' or '-', not starting with '.'");
  }
  if (builtin_templates().count(name)) return make_error(Code::kConflict, "'" + name + "' is a built-in template");
  if (!body.is_object()) return make_error(Code::kInvalidArgument, "request body must be a JSON object");
  if (body.contains("packages") || body.contains("from")) {
    return make_error(Code::kInvalidArgument, "package layers (packages, from) are not built on this agent yet");
  }
  auto image = body.find("image");
  if (image == body.end() || !image->is_string() || image->get<std::string>().empty())
    return make_error(Code::kInvalidArgument, "image must name an OCI image (registry/repository:tag)");
  if (!images_) {
    return make_error(Code::kUnavailable,
                      "this node pulls no images: the agent runs without its node's containerd (--cri-socket)");
  }
  if (auto it = records_.find(name); it != records_.end() && it->second.state != TemplateState::kFailed) {
    // The same again (the scheduler fans a PUT out again to reach a node that was away):
    // what there is. Another image under the name: refused. A failed one is built again.
    if (it->second.image == image->get<std::string>()) return it->second;
    return make_error(Code::kConflict, "template " + name + " exists (" + it->second.image + ", " +
                                           std::string(template_state_name(it->second.state)) +
                                           "); DELETE it first");
  }
  TemplateRecord r;
  r.name = name;
  r.image = *image;
  if (auto st = read_limits(body, bounds_, &r.limits); !st) return st.error();
  if (auto st = read_idle_policy(body, &r.idle_timeout, &r.on_idle); !st) return st.error();
  r.created_at = now_s();
  if (auto st = save(r); !st) return st.error();
  (void)unlink(log_path(name).c_str());
  records_[name] = r;
  build(r, ImageRootfs::Pull::kAlways);
  update_gauges();
  return r;
}

void TemplateStore::build(const TemplateRecord& record, ImageRootfs::Pull pull) {
  log::info("template build started", {{"template", record.name}, {"image", record.image}});
  asio::post(workers_, [this, name = record.name, image = record.image, pull, path = log_path(record.name)] {
    const double started = now_s();
    auto prepared = images_->prepare(image, pull_timeout_, [&path](const std::string& line) { append_line(path, line); },
                                     pull);
    append_line(path, prepared ? "ready" : "failed: " + prepared.error().message);
    asio::post(ioc_, [this, name, prepared = std::move(prepared), started]() mutable {
      finish(name, std::move(prepared), started);
    });
  });
}

void TemplateStore::finish(const std::string& name, Result<PreparedImage> image, std::optional<double> started) {
  auto it = records_.find(name);
  if (it == records_.end()) return;
  TemplateRecord& r = it->second;
  if (!image) {
    r.state = TemplateState::kFailed;
    r.error = image.error().message;
    unregister_template(name);
    log::warn("template failed", {{"template", name}, {"error", r.error}});
  } else {
    r.state = TemplateState::kReady;
    r.error.clear();
    r.digest = image->manifest.digest;
    r.size_bytes = image->manifest.size_bytes;
    if (r.ready_at == 0) r.ready_at = now_s();
    if (auto st = register_template(template_of(r, *image)); !st) {
      r.state = TemplateState::kFailed;
      r.error = st.error().message;
    } else {
      prepared_[name] = std::move(*image);
      log::info("template ready", {{"template", name}, {"digest", r.digest}});
    }
  }
  if (auto st = save(r); !st) log::error("template record not written", {{"template", name}, {"error", st.error().to_string()}});
  if (started) {  // a build, not a ready template mounted again at the agent's start
    metrics_.add("swissbox_template_builds_total",
                 Metrics::labels({{"result", r.state == TemplateState::kReady ? "ready" : "failed"}}));
    if (r.state == TemplateState::kReady) metrics_.observe("swissbox_template_build_seconds", {}, now_s() - *started);
  }
  update_gauges();
  if (on_change_) on_change_();
}

std::optional<TemplateRecord> TemplateStore::get(const std::string& name) const {
  auto it = records_.find(name);
  if (it == records_.end()) return std::nullopt;
  return it->second;
}

std::vector<TemplateRecord> TemplateStore::list() const {
  std::vector<TemplateRecord> out;
  for (const auto& [name, r] : records_) out.push_back(r);
  return out;
}

Result<std::string> TemplateStore::log(const std::string& name) const {
  if (!records_.count(name)) return make_error(Code::kNotFound, "template " + name + " not found");
  auto text = fs::read_file(log_path(name), 4 << 20);
  return text ? *text : std::string();
}

Status TemplateStore::remove(const std::string& name, int in_use) {
  if (builtin_templates().count(name)) return make_error(Code::kConflict, "'" + name + "' is a built-in template");
  auto it = records_.find(name);
  if (it == records_.end()) return make_error(Code::kNotFound, "template " + name + " not found");
  if (it->second.state == TemplateState::kBuilding)
    return make_error(Code::kConflict, "template " + name + " is being built; delete it once it is ready or failed");
  if (in_use > 0) {
    return make_error(Code::kConflict,
                      "template " + name + " is used by " + std::to_string(in_use) + " sandbox(es); delete them first");
  }
  unregister_template(name);
  if (auto p = prepared_.find(name); p != prepared_.end()) {
    bool shared = false;
    for (const auto& [other, image] : prepared_) shared |= other != name && image.manifest.digest == p->second.manifest.digest;
    if (!shared && images_) {
      asio::post(workers_, [this, name, image = p->second] {
        if (auto st = images_->release(image); !st)
          log::warn("template's image not released", {{"template", name}, {"error", st.error().to_string()}});
      });
    }
    prepared_.erase(p);
  } else if (images_) {
    // A failed template may have pulled its image: unless a ready one has that image too,
    // its names go, so that containerd collects it.
    bool used = false;
    for (const auto& [other, r] : records_) used |= other != name && r.image == it->second.image;
    if (!used) {
      asio::post(workers_, [this, name, ref = it->second.image] {
        if (auto st = images_->forget(ref); !st)
          log::warn("failed template's image not removed", {{"template", name}, {"error", st.error().to_string()}});
      });
    }
  }
  records_.erase(it);
  (void)unlink(log_path(name).c_str());
  if (unlink(record_path(name).c_str()) != 0 && errno != ENOENT) return sys_error("remove " + record_path(name));
  log::info("template deleted", {{"template", name}});
  update_gauges();
  return ok_status();
}

void TemplateStore::unmount_images() {
  for (const auto& [name, image] : prepared_) {
    if (auto st = ImageRootfs::unmount(image); !st)
      log::warn("template's image not unmounted", {{"template", name}, {"error", st.error().to_string()}});
  }
}

}  // namespace swissbox
