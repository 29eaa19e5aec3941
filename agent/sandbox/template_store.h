// Templates from OCI images and package layers (issue 22). `PUT /v1/templates/{name}` starts a
// build that ends ready (the template is registered: sandboxes, warm pools, E2B's
// templateID) or failed with the reason; its log is kept:
// - with `image`: the image pulled through the node's containerd and its layers mounted
//   read-only (agent/runtime/image_rootfs.h);
// - with `packages` (and `from`, a template, default "default"): the packages installed in a
//   gVisor sandbox of `from` into a layer of their own (agent/sandbox/package_build.h,
//   agent/runtime/package_layers.h), shared by every template with the same base, packages
//   and indexes. A create's pre_install_packages names such a template: derive().
// Each template's record is a JSON file in <state>/templates, so an agent restart finds its
// templates again (mounted again, pulled only when containerd lost the image) and resumes a
// build it was in the middle of. Builds run on the worker pool; the rest on the I/O thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>

#include "agent/runtime/image_rootfs.h"
#include "agent/runtime/package_layers.h"
#include "agent/sandbox/package_build.h"
#include "agent/runtime/sandbox_spec.h"
#include "common/error.h"
#include "common/metrics.h"

namespace swissbox {

enum class TemplateState { kBuilding, kReady, kFailed };
std::string_view template_state_name(TemplateState s);

struct TemplateRecord {
  std::string name, image;
  // A package layer's: its base template, its packages, the layer's key, and once ready
  // the parts its root is made of and its environment (what a restart mounts again).
  std::string from;
  PackageSet packages;
  std::string layer;
  std::vector<RootPart> parts;
  std::vector<std::string> env;
  bool derived = false;  // made for a create's pre_install_packages
  bool builtin = false;  // one of builtin_layers()
  TemplateState state = TemplateState::kBuilding;
  std::string error;   // why it failed
  std::string digest;  // the image manifest's
  int64_t size_bytes = 0;
  Limits limits;
  std::chrono::seconds idle_timeout = kDefaultIdleTimeout;
  OnIdle on_idle = OnIdle::kSuspend;
  double created_at = 0, ready_at = 0;  // unix seconds
  // What the API shows; the record on disk adds how its root is made (host paths).
  nlohmann::json to_json() const;
  nlohmann::json record_json() const;
  static Result<TemplateRecord> from_json(const nlohmann::json& j);
};

// What package layers need; a store without it refuses them with the reason.
struct PackageLayerSupport {
  PackageLayers* layers = nullptr;
  PackageBuilder* builder = nullptr;
  RootfsLayout node_root;                  // what the built-in templates' root is
  std::function<std::string()> new_id;     // a build sandbox's id
  int64_t layer_disk_mb = 8192;            // the most a layer may hold
  bool build_builtins = true;              // builtin_layers() at the start
};

class TemplateStore {
 public:
  // images: null when the agent has no containerd (--cri-socket): image templates are then
  // refused with the reason. dir: <state>/templates.
  TemplateStore(boost::asio::io_context& ioc, boost::asio::thread_pool& workers, Metrics& metrics, ImageRootfs* images,
                std::string dir, LimitBounds bounds, std::chrono::seconds pull_timeout = std::chrono::seconds(600),
                PackageLayerSupport packages = {});

  // At the agent's start, before sandboxes: every recorded template; ready ones mounted and
  // registered again (blocking), builds under way started again. A template whose image is
  // gone is failed with the reason.
  void load();
  // Validates the body and starts the build: the record, state building.
  Result<TemplateRecord> put(const std::string& name, const nlohmann::json& body);
  // The template of `base` plus `packages` (a create's pre_install_packages): its name, and
  // `done` called on the I/O thread, after derive() answered, once it is ready (soon when it
  // is) or failed. The
  // first such create starts its build; later ones wait for the same build.
  Result<std::string> derive(const std::string& base, const PackageSet& packages, std::function<void(Status)> done);
  std::optional<TemplateRecord> get(const std::string& name) const;
  std::vector<TemplateRecord> list() const;
  Result<std::string> log(const std::string& name) const;
  // Up to max bytes of the build log from offset (what a follower has not seen yet).
  Result<std::string> log_from(const std::string& name, size_t offset, size_t max) const;
  // Removes a template that no sandbox uses (in_use: the caller's count); its image is
  // released when no other template has it. A built-in or an unknown name is refused.
  Status remove(const std::string& name, int in_use);
  // At a stop that leaves no sandbox: the images' mounts go (load() makes them again).
  void unmount_images();
  // swissbox_templates{state}: how many are building, ready, failed.
  void update_gauges();
  // Package builds wait for this (the manager's start-up clean-up would remove a build
  // sandbox that started before it); then those held back start. On the I/O thread.
  void allow_builds();
  // Called on the I/O thread when a template became ready or failed.
  void on_change(std::function<void()> fn) { on_change_ = std::move(fn); }

 private:
  void build(const TemplateRecord& record, ImageRootfs::Pull pull);
  // A package layer's build on its thread, for every template waiting for that layer: the
  // layer's read-only view once built (its size in record.size_bytes).
  Result<RootfsLayout> build_layer(TemplateRecord& record);
  // What a build or a mount at the start made: the template to register.
  struct Built {
    Template tmpl;
    std::string digest;
    int64_t size_bytes = 0;
    std::optional<PreparedImage> image;
  };
  // An image template's, once its image is prepared.
  static Result<Built> image_built(const TemplateRecord& r, Result<PreparedImage> image);
  // A package layer's, on its mounted root; layer_built() mounts it first (again at a start).
  static Built layer_template(const TemplateRecord& r, RootfsLayout root);
  Result<Built> layer_built(const TemplateRecord& r);
  // started: when the build began (nullopt: a ready template mounted again at the start).
  void finish(const std::string& name, Result<Built> built, std::optional<double> started);
  // A package-layer template's record from a PUT body or a derive: validated, its base ready.
  Result<TemplateRecord> layer_record(const std::string& name, const std::string& from, const PackageSet& packages);
  // At the start: each of builtin_layers() that is not ready is built (again), or failed
  // with the reason when this node builds no package layers.
  void ensure_builtin_layers();
  // A new record (created now): saved, an earlier log of its name removed, kept.
  Status add_record(TemplateRecord& r);
  // Whether a build of `layer` may start (or join one under way): a bounded queue.
  Status room_for_build(const std::string& layer) const;
  // Registers a record as building and starts (or joins) its layer's build.
  void start_layer(const TemplateRecord& r);
  Status save(const TemplateRecord& r) const;
  std::string record_path(const std::string& name) const { return dir_ + "/" + name + ".json"; }
  std::string log_path(const std::string& name) const { return dir_ + "/" + name + ".log"; }

  boost::asio::io_context& ioc_;
  boost::asio::thread_pool& workers_;
  Metrics& metrics_;
  ImageRootfs* images_;
  std::string dir_;
  LimitBounds bounds_;
  std::chrono::seconds pull_timeout_;
  std::map<std::string, TemplateRecord> records_;  // on the I/O thread
  std::map<std::string, PreparedImage> prepared_;  // ready ones' images, by template
  PackageLayerSupport packages_;
  std::map<std::string, std::vector<std::string>> layer_builds_;  // layer key → templates waiting
  bool builds_allowed_ = false;
  std::vector<TemplateRecord> held_builds_;  // start_layer() before allow_builds()
  // Package builds, one at a time, on a thread of their own: a build may take minutes and
  // must not hold a worker that sandbox starts need.
  boost::asio::thread_pool layer_thread_{1};
  std::map<std::string, std::vector<std::function<void(Status)>>> waiters_;  // derive()'s
  std::function<void()> on_change_;
};

}  // namespace swissbox
