#include "agent/sandbox/template_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <ctime>
#include <nlohmann/json.hpp>

#include "common/fs.h"
#include "common/log.h"
#include "cri/containerd_images.h"

namespace swissbox {

namespace asio = boost::asio;
using json = nlohmann::json;

namespace {

// Package builds under way or queued on one node; past it a new one is refused.
constexpr size_t kMaxLayerBuilds = 8;

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

Template template_of(const TemplateRecord& r) {
  Template t;
  t.name = r.name;
  t.limits = r.limits;
  t.idle_timeout = r.idle_timeout;
  t.on_idle = r.on_idle;
  t.image = r.image;
  t.env = r.env;
  t.parts = r.parts;
  // A layer over a template with warm contexts (code-interpreter) keeps them.
  if (auto base = r.from.empty() ? std::nullopt : find_template(r.from)) t.warm_contexts = base->warm_contexts;
  return t;
}

json parts_json(const std::vector<RootPart>& parts) {
  json out = json::array();
  for (const auto& p : parts) out.push_back({{"destination", p.destination}, {"layers", p.layers}});
  return out;
}

std::vector<RootPart> parts_from_json(const json& j) {
  std::vector<RootPart> out;
  for (const auto& p : j) out.push_back({p.at("destination").get<std::string>(), p.at("layers").get<std::vector<std::string>>()});
  return out;
}

// What identifies a template's root for the layers built on it: the layers it is made of.
std::string root_identity(const std::vector<RootPart>& parts) {
  std::string out;
  for (const auto& p : parts) {
    out += p.destination + "=";
    for (const auto& l : p.layers) out += l + ":";
    out += ";";
  }
  return out;
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
  if (!from.empty()) {
    j["from"] = from;
    j["packages"] = packages_json(packages);
    j["layer"] = layer;
    j["derived"] = derived;
    if (builtin) j["builtin"] = true;
  }
  return j;
}

json TemplateRecord::record_json() const {
  json j = to_json();
  if (!from.empty()) {
    j["parts"] = parts_json(parts);
    j["env"] = env;
  }
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
    if (j.contains("from")) {
      r.from = j.at("from").get<std::string>();
      auto packages = parse_packages(j.at("packages"));
      if (!packages) return packages.error();
      r.packages = *packages;
      r.layer = j.at("layer").get<std::string>();
      r.parts = parts_from_json(j.at("parts"));
      r.env = j.at("env").get<std::vector<std::string>>();
      r.derived = j.value("derived", false);
      r.builtin = j.value("builtin", false);
    }
    return r;
  } catch (const json::exception& e) {
    return make_error(Code::kInvalidArgument, std::string("template record: ") + e.what());
  }
}

TemplateStore::TemplateStore(asio::io_context& ioc, asio::thread_pool& workers, Metrics& metrics, ImageRootfs* images,
                             std::string dir, LimitBounds bounds, std::chrono::seconds pull_timeout,
                             PackageLayerSupport packages)
    : ioc_(ioc),
      workers_(workers),
      metrics_(metrics),
      images_(images),
      dir_(std::move(dir)),
      bounds_(bounds),
      pull_timeout_(pull_timeout),
      packages_(std::move(packages)) {
  using T = Metrics::Type;
  metrics_.describe("swissbox_template_builds_total", T::kCounter,
                    "Template builds (an image's pull and preparation, a package layer's build) that ended, by result.");
  metrics_.describe("swissbox_template_build_seconds", T::kHistogram, "Time from a template's PUT to ready.");
  metrics_.describe("swissbox_templates", T::kGauge, "Image and package-layer templates on the node, by state.");
}

void TemplateStore::update_gauges() {
  std::map<std::string_view, int> by_state = {{"building", 0}, {"ready", 0}, {"failed", 0}};
  for (const auto& [name, r] : records_) by_state[template_state_name(r.state)]++;
  for (const auto& [state, n] : by_state) metrics_.set("swissbox_templates", Metrics::labels({{"state", std::string(state)}}), n);
}

Status TemplateStore::save(const TemplateRecord& r) const {
  if (auto st = fs::make_dirs(dir_, 0700); !st) return st;
  return fs::write_file_atomic(record_path(r.name), r.record_json().dump(2), 0600);
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
    if (!r->from.empty()) {
      if (r->state == TemplateState::kBuilding && packages_.builder) {
        append_line(log_path(r->name), "the agent restarted during the build: building again");
        start_layer(*r);  // held until allow_builds(), after the clean-up below
        continue;
      }
      // Ready before: its layer's disk and read-only view mounted again.
      finish(r->name, layer_built(*r), std::nullopt);
      continue;
    }
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
    finish(r->name, image_built(*r, std::move(image)), std::nullopt);
  }
  // A layer no record names (its template's delete was cut short by a crash) goes.
  if (packages_.layers) {
    for (const auto& key : packages_.layers->keys()) {
      bool named = false;
      for (const auto& [name, r] : records_) named |= r.layer == key;
      if (named) continue;
      log::warn("removing a package layer no template names", {{"layer", key}});
      if (auto st = packages_.layers->remove(key); !st)
        log::warn("package layer not removed", {{"layer", key}, {"error", st.error().to_string()}});
    }
  }
  if (packages_.build_builtins) ensure_builtin_layers();
  update_gauges();
}

void TemplateStore::ensure_builtin_layers() {
  for (const BuiltinLayer& l : builtin_layers()) {
    if (auto it = records_.find(l.name); it != records_.end() && it->second.state != TemplateState::kFailed) continue;
    PackageSet set{l.apt, l.pip, l.npm};
    auto made = layer_record(l.name, l.from, set);
    TemplateRecord r = made ? *made : TemplateRecord{};
    r.name = l.name;
    r.from = l.from;
    r.packages = set;
    r.builtin = true;
    r.limits = l.limits;
    r.env.insert(r.env.end(), l.env.begin(), l.env.end());
    r.created_at = now_s();
    if (!made) {
      r.state = TemplateState::kFailed;
      r.error = made.error().message;
    }
    (void)unlink(log_path(l.name).c_str());
    records_[l.name] = r;
    if (auto st = save(r); !st) log::warn("template record not written", {{"template", l.name}});
    if (!made) {
      append_line(log_path(l.name), "not built: " + r.error);
      continue;
    }
    log::info("building a built-in template", {{"template", l.name}, {"packages", packages_json(set).dump()}});
    start_layer(r);  // held until allow_builds()
  }
}

Result<TemplateRecord> TemplateStore::put(const std::string& name, const json& body) {
  if (!plain_name(name, 64)) {
    return make_error(Code::kInvalidArgument,
                      "template names are 1-64 letters, digits, '.', '_' or '-', not starting with '.'");
  }
  if (is_builtin_template(name)) return make_error(Code::kConflict, "'" + name + "' is a built-in template");
  if (!body.is_object()) return make_error(Code::kInvalidArgument, "request body must be a JSON object");
  auto image = body.find("image");
  const bool layered = body.contains("packages") || body.contains("from");
  if (layered && image != body.end()) {
    return make_error(Code::kInvalidArgument,
                      "a template is an image or packages over a template: PUT the image's template first, then "
                      "one with from and packages");
  }
  TemplateRecord r;
  if (layered) {
    if (!body.contains("packages")) return make_error(Code::kInvalidArgument, "from needs packages: {apt, pip, npm}");
    auto packages = parse_packages(body["packages"]);
    if (!packages) return packages.error();
    auto from = body.value("from", json("default"));
    if (!from.is_string()) return make_error(Code::kInvalidArgument, "from must name a template");
    auto made = layer_record(name, from.get<std::string>(), *packages);
    if (!made) return made.error();
    if (auto st = room_for_build(made->layer); !st) return st.error();
    r = std::move(*made);
  } else {
    if (image == body.end() || !image->is_string() || image->get<std::string>().empty())
      return make_error(Code::kInvalidArgument, "image must name an OCI image (registry/repository:tag), or packages a layer");
    if (!images_) {
      return make_error(Code::kUnavailable,
                        "this node pulls no images: the agent runs without its node's containerd (--cri-socket)");
    }
    r.name = name;
    r.image = *image;
  }
  if (auto it = records_.find(name); it != records_.end() && it->second.state != TemplateState::kFailed) {
    // The same again (the scheduler fans a PUT out again to reach a node that was away):
    // what there is. Something else under the name: refused. A failed one is built again.
    if (it->second.image == r.image && it->second.from == r.from && it->second.packages == r.packages)
      return it->second;
    return make_error(Code::kConflict, "template " + name + " exists (" +
                                           (it->second.from.empty() ? it->second.image : "packages over " + it->second.from) +
                                           ", " + std::string(template_state_name(it->second.state)) +
                                           "); DELETE it first");
  }
  if (auto st = read_limits(body, bounds_, &r.limits); !st) return st.error();
  if (auto st = read_idle_policy(body, &r.idle_timeout, &r.on_idle); !st) return st.error();
  if (auto st = add_record(r); !st) return st.error();
  if (layered) {
    start_layer(r);
  } else {
    build(r, ImageRootfs::Pull::kAlways);
  }
  update_gauges();
  return r;
}

Result<TemplateRecord> TemplateStore::layer_record(const std::string& name, const std::string& from,
                                                   const PackageSet& packages) {
  if (!packages_.layers || !packages_.builder) {
    return make_error(Code::kUnavailable, "this node builds no package layers");
  }
  if (!packages_.builder->has_network()) {
    return make_error(Code::kUnavailable,
                      "this node builds no package layers: builds fetch through its egress network, which the "
                      "agent has not (--egress-pool)");
  }
  auto base = find_template(from);
  if (!base) {
    auto it = records_.find(from);
    return make_error(it == records_.end() ? Code::kNotFound : Code::kConflict,
                      "base template '" + from + "' " +
                          (it == records_.end() ? "does not exist" : "is " + std::string(template_state_name(it->second.state))));
  }
  TemplateRecord r;
  r.name = name;
  r.from = from;
  r.packages = packages;
  r.image = base->image;
  r.limits = base->limits;
  r.idle_timeout = base->idle_timeout;
  r.on_idle = base->on_idle;
  const auto parts = base->parts.empty() ? parts_of(packages_.node_root) : base->parts;
  r.layer = layer_key(root_identity(parts), packages, packages_.builder->indexes());
  r.parts = parts_with_layer(parts, packages_.layers->layer_dir(r.layer));
  r.env = base->env;
  // Global npm packages are found from any directory.
  if (!packages.npm.empty() &&
      std::none_of(r.env.begin(), r.env.end(), [](const std::string& kv) { return kv.starts_with("NODE_PATH="); }))
    r.env.push_back("NODE_PATH=/usr/local/lib/node_modules");
  return r;
}

Result<std::string> TemplateStore::derive(const std::string& base, const PackageSet& packages,
                                          std::function<void(Status)> done) {
  auto made = layer_record("", base, packages);
  if (!made) return made.error();
  // Named by its base template and layer: the same base and packages are one template (the
  // layer is shared with other bases of the same root, their limits are not).
  std::string name = "pkgs-" + cri::sha256_hex(base + " " + made->layer).substr(0, 16);
  if (auto it = records_.find(name); it != records_.end()) {
    if (it->second.state == TemplateState::kReady) {
      asio::post(ioc_, [done = std::move(done)] { done(ok_status()); });  // never before derive() answers
      return name;
    }
    if (it->second.state == TemplateState::kBuilding) {
      waiters_[name].push_back(std::move(done));
      return name;
    }
  }
  if (auto st = room_for_build(made->layer); !st) return st.error();
  made->name = name;
  made->derived = true;
  if (auto st = add_record(*made); !st) return st.error();
  waiters_[name].push_back(std::move(done));
  start_layer(*made);
  update_gauges();
  return name;
}

Status TemplateStore::add_record(TemplateRecord& r) {
  r.created_at = now_s();
  if (auto st = save(r); !st) return st;
  (void)unlink(log_path(r.name).c_str());  // an earlier template's of that name
  records_[r.name] = r;
  return ok_status();
}

Status TemplateStore::room_for_build(const std::string& layer) const {
  if (layer_builds_.count(layer) || layer_builds_.size() < kMaxLayerBuilds) return ok_status();
  return make_error(Code::kResourceExhausted, "this node has " + std::to_string(layer_builds_.size()) +
                                                  " package builds under way or queued; try again later");
}

void TemplateStore::allow_builds() {
  builds_allowed_ = true;
  for (const auto& r : std::exchange(held_builds_, {})) start_layer(r);
}

void TemplateStore::start_layer(const TemplateRecord& r) {
  records_[r.name].state = TemplateState::kBuilding;
  if (!builds_allowed_) return held_builds_.push_back(r);
  // Built for another template already: shared as it is.
  for (const auto& [other, o] : records_) {
    if (other == r.name || o.layer != r.layer || o.state != TemplateState::kReady) continue;
    records_[r.name].size_bytes = o.size_bytes;
    append_line(log_path(r.name), "the layer " + r.layer + " was built for " + other + ": shared");
    return asio::post(ioc_, [this, name = r.name, started = now_s()] {
      if (auto it = records_.find(name); it != records_.end()) finish(name, layer_built(it->second), started);
    });
  }
  if (!layer_builds_.count(r.layer) && !layer_builds_.empty())
    append_line(log_path(r.name), "queued behind " + std::to_string(layer_builds_.size()) + " package build(s)");
  auto& waiting = layer_builds_[r.layer];
  waiting.push_back(r.name);
  if (waiting.size() > 1) {
    append_line(log_path(r.name), "the layer " + r.layer + " is being built for " + waiting.front() + ": waiting for it");
    return;
  }
  log::info("package layer build started", {{"template", r.name}, {"from", r.from}, {"layer", r.layer}});
  asio::post(layer_thread_, [this, r] {
    const double started = now_s();
    TemplateRecord built = r;
    Result<RootfsLayout> root = build_layer(built);
    // Stopped by the agent's stop: the record stays "building", the next agent builds it.
    if (packages_.builder->stopping()) return append_line(log_path(r.name), "the agent stopped during the build");
    const std::string outcome = root ? "ready" : "failed: " + root.error().message;
    append_line(log_path(r.name), outcome);
    asio::post(ioc_, [this, built, root, outcome, started] {
      auto names = std::move(layer_builds_[built.layer]);
      layer_builds_.erase(built.layer);
      for (const auto& name : names) {
        auto it = records_.find(name);
        if (it == records_.end()) continue;
        if (name != built.name) append_line(log_path(name), outcome);
        it->second.size_bytes = built.size_bytes;
        finish(name, root ? Result<Built>(layer_template(it->second, *root)) : Result<Built>(root.error()), started);
      }
    });
  });
}

Result<RootfsLayout> TemplateStore::build_layer(TemplateRecord& r) {
  const std::string log = log_path(r.name);
  std::vector<RootPart> base(r.parts.size());
  for (size_t i = 0; i < r.parts.size(); ++i)
    base[i] = {r.parts[i].destination, {r.parts[i].layers.begin() + 1, r.parts[i].layers.end()}};
  append_line(log, "layer " + r.layer + " over " + r.from + ": " + packages_json(r.packages).dump());
  auto root = packages_.layers->open_for_build(r.layer, base, packages_.layer_disk_mb);
  if (!root) {
    (void)packages_.layers->remove(r.layer);
    return root.error();
  }
  Template base_template;
  if (auto b = find_template(r.from)) base_template = *b;
  Status built = packages_.builder->run(packages_.new_id(), *root, r.packages, sandbox_environment(base_template), log);
  if (auto st = packages_.layers->close_build(r.layer); !st && built) built = st;
  auto mounted = built ? packages_.layers->mount(r.layer, r.parts) : Result<RootfsLayout>(built.error());
  if (!mounted) {
    (void)packages_.layers->remove(r.layer);
    return mounted.error();
  }
  auto size = packages_.layers->size_bytes(r.layer);
  r.size_bytes = size ? *size : 0;
  append_line(log, "the layer holds " + std::to_string(r.size_bytes) + " bytes");
  return mounted;
}

TemplateStore::Built TemplateStore::layer_template(const TemplateRecord& r, RootfsLayout root) {
  Built b;
  b.tmpl = template_of(r);
  b.tmpl.root = std::move(root);
  b.size_bytes = r.size_bytes;
  return b;
}

Result<TemplateStore::Built> TemplateStore::layer_built(const TemplateRecord& r) {
  auto root = packages_.layers ? packages_.layers->mount(r.layer, r.parts)
                               : Result<RootfsLayout>(make_error(Code::kUnavailable, "this node builds no package layers"));
  if (!root) return root.error();
  return layer_template(r, std::move(*root));
}

Result<TemplateStore::Built> TemplateStore::image_built(const TemplateRecord& r, Result<PreparedImage> image) {
  if (!image) return image.error();
  Built b;
  b.tmpl = template_of(r);
  b.tmpl.root = RootfsLayout{image->rootfs, {}};
  b.tmpl.parts = {RootPart{"/", image->layers}};
  b.tmpl.env = image->manifest.env;
  b.digest = image->manifest.digest;
  b.size_bytes = image->manifest.size_bytes;
  b.image = std::move(*image);
  return b;
}

void TemplateStore::build(const TemplateRecord& record, ImageRootfs::Pull pull) {
  log::info("template build started", {{"template", record.name}, {"image", record.image}});
  asio::post(workers_, [this, record, pull, path = log_path(record.name)] {
    const double started = now_s();
    auto prepared = images_->prepare(record.image, pull_timeout_,
                                     [&path](const std::string& line) { append_line(path, line); }, pull);
    append_line(path, prepared ? "ready" : "failed: " + prepared.error().message);
    asio::post(ioc_, [this, record, prepared = std::move(prepared), started]() mutable {
      finish(record.name, image_built(record, std::move(prepared)), started);
    });
  });
}

void TemplateStore::finish(const std::string& name, Result<Built> built, std::optional<double> started) {
  auto it = records_.find(name);
  if (it == records_.end()) return;
  TemplateRecord& r = it->second;
  if (!built) {
    r.state = TemplateState::kFailed;
    r.error = built.error().message;
    unregister_template(name);
    log::warn("template failed", {{"template", name}, {"error", r.error}});
  } else {
    r.state = TemplateState::kReady;
    r.error.clear();
    if (!built->digest.empty()) r.digest = built->digest;
    r.size_bytes = built->size_bytes;
    if (r.ready_at == 0) r.ready_at = now_s();
    if (auto st = register_template(built->tmpl); !st) {
      r.state = TemplateState::kFailed;
      r.error = st.error().message;
    } else {
      if (built->image) prepared_[name] = std::move(*built->image);
      log::info("template ready", {{"template", name}, {"digest", r.digest}, {"layer", r.layer}});
    }
  }
  if (auto st = save(r); !st) log::error("template record not written", {{"template", name}, {"error", st.error().to_string()}});
  if (started) {  // a build, not a ready template mounted again at the agent's start
    metrics_.add("swissbox_template_builds_total",
                 Metrics::labels({{"result", r.state == TemplateState::kReady ? "ready" : "failed"}}));
    if (r.state == TemplateState::kReady) metrics_.observe("swissbox_template_build_seconds", {}, now_s() - *started);
  }
  update_gauges();
  if (auto w = waiters_.find(name); w != waiters_.end()) {
    auto waiting = std::move(w->second);
    waiters_.erase(w);
    Status st = r.state == TemplateState::kReady ? ok_status()
                                                 : make_error(Code::kInvalidArgument, "template " + name + " failed: " + r.error);
    for (auto& done : waiting) done(st);
  }
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

Result<std::string> TemplateStore::log_from(const std::string& name, size_t offset, size_t max) const {
  if (!records_.count(name)) return make_error(Code::kNotFound, "template " + name + " not found");
  int fd = open(log_path(name).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::string();
  std::string out(max, '\0');
  ssize_t n = pread(fd, out.data(), max, static_cast<off_t>(offset));
  close(fd);
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return out;
}

Status TemplateStore::remove(const std::string& name, int in_use) {
  if (is_builtin_template(name)) return make_error(Code::kConflict, "'" + name + "' is a built-in template");
  auto it = records_.find(name);
  if (it == records_.end()) return make_error(Code::kNotFound, "template " + name + " not found");
  if (it->second.state == TemplateState::kBuilding)
    return make_error(Code::kConflict, "template " + name + " is being built; delete it once it is ready or failed");
  if (in_use > 0) {
    return make_error(Code::kConflict,
                      "template " + name + " is used by " + std::to_string(in_use) + " sandbox(es); delete them first");
  }
  for (const auto& [other, r] : records_) {
    if (r.from == name && r.state != TemplateState::kFailed)
      return make_error(Code::kConflict, "template " + name + " is the base of " + other + "; delete that first");
  }
  unregister_template(name);
  if (const std::string layer = it->second.layer; !layer.empty()) {
    bool shared = false;
    for (const auto& [other, r] : records_) shared |= other != name && r.layer == layer && r.state != TemplateState::kFailed;
    if (!shared && packages_.layers) {
      // On the builds' thread: after a build of it under way, before the next one.
      asio::post(layer_thread_, [this, name, layer] {
        if (auto st = packages_.layers->remove(layer); !st)
          log::warn("template's layer not removed", {{"template", name}, {"error", st.error().to_string()}});
      });
    }
  }
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
  } else if (images_ && it->second.from.empty()) {
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
  for (const auto& [name, r] : records_) {
    if (r.layer.empty() || r.state != TemplateState::kReady || !packages_.layers) continue;
    if (auto st = packages_.layers->unmount(r.layer); !st)
      log::warn("template's layer not unmounted", {{"template", name}, {"error", st.error().to_string()}});
  }
  for (const auto& [name, image] : prepared_) {
    if (auto st = ImageRootfs::unmount(image); !st)
      log::warn("template's image not unmounted", {{"template", name}, {"error", st.error().to_string()}});
  }
}

}  // namespace swissbox
