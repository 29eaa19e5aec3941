// Templates from OCI images (issue 22): `PUT /v1/templates/{name}` with an image starts a
// build — the image pulled through the node's containerd and its layers mounted read-only
// (agent/runtime/image_rootfs.h) — that ends ready (the template is registered: sandboxes,
// warm pools, E2B's templateID) or failed with the reason; its log is kept. Each template's
// record is a JSON file in <state>/templates, so an agent restart finds its templates again
// (mounted again, pulled only when containerd lost the image) and resumes a build it was in
// the middle of. Builds run on the worker pool; the rest on the I/O thread.
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
#include "agent/runtime/sandbox_spec.h"
#include "common/error.h"
#include "common/metrics.h"

namespace swissbox {

enum class TemplateState { kBuilding, kReady, kFailed };
std::string_view template_state_name(TemplateState s);

struct TemplateRecord {
  std::string name, image;
  TemplateState state = TemplateState::kBuilding;
  std::string error;   // why it failed
  std::string digest;  // the image manifest's
  int64_t size_bytes = 0;
  Limits limits;
  std::chrono::seconds idle_timeout = kDefaultIdleTimeout;
  OnIdle on_idle = OnIdle::kSuspend;
  double created_at = 0, ready_at = 0;  // unix seconds
  nlohmann::json to_json() const;
  static Result<TemplateRecord> from_json(const nlohmann::json& j);
};

class TemplateStore {
 public:
  // images: null when the agent has no containerd (--cri-socket): image templates are then
  // refused with the reason. dir: <state>/templates.
  TemplateStore(boost::asio::io_context& ioc, boost::asio::thread_pool& workers, Metrics& metrics, ImageRootfs* images,
                std::string dir, LimitBounds bounds, std::chrono::seconds pull_timeout = std::chrono::seconds(600));

  // At the agent's start, before sandboxes: every recorded template; ready ones mounted and
  // registered again (blocking), builds under way started again. A template whose image is
  // gone is failed with the reason.
  void load();
  // Validates the body and starts the build: the record, state building.
  Result<TemplateRecord> put(const std::string& name, const nlohmann::json& body);
  std::optional<TemplateRecord> get(const std::string& name) const;
  std::vector<TemplateRecord> list() const;
  Result<std::string> log(const std::string& name) const;
  // Removes a template that no sandbox uses (in_use: the caller's count); its image is
  // released when no other template has it. A built-in or an unknown name is refused.
  Status remove(const std::string& name, int in_use);
  // At a stop that leaves no sandbox: the images' mounts go (load() makes them again).
  void unmount_images();
  // swissbox_templates{state}: how many are building, ready, failed.
  void update_gauges();
  // Called on the I/O thread when a template became ready or failed.
  void on_change(std::function<void()> fn) { on_change_ = std::move(fn); }

 private:
  void build(const TemplateRecord& record, ImageRootfs::Pull pull);
  // started: when the build began (nullopt: a ready template mounted again at the start).
  void finish(const std::string& name, Result<PreparedImage> image, std::optional<double> started);
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
  std::function<void()> on_change_;
};

}  // namespace swissbox
