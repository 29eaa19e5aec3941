// Root filesystems from OCI images (issue 22): an image is pulled through the node's
// containerd, its unpacked layers are viewed read-only through containerd's snapshotter and
// mounted once under <state>/images/<digest>/rootfs, which every sandbox of every template
// made from it shares. Nothing is copied: the layers stay containerd's, and its garbage
// collector takes them once the agent has removed its view and the image's name.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "common/error.h"
#include "cri/containerd_images.h"

namespace swissbox {

// What swissbox reads of an image: its manifest's layers and its config's.
struct ImageManifest {
  std::string digest;  // the manifest's (the image's identity on every node)
  std::vector<std::string> diff_ids;  // the unpacked layers, bottom first
  int64_t size_bytes = 0;             // of the compressed layers
  std::vector<std::string> env;       // the config's "K=V"
  std::string working_dir;
};

// From an index (or a manifest list), the digest of the manifest for linux/<arch>.
Result<std::string> platform_manifest(const nlohmann::json& index, const std::string& arch);
// A manifest and its config, as JSON: what ImageManifest holds.
Result<ImageManifest> parse_image(const std::string& manifest_digest, const nlohmann::json& manifest,
                                  const nlohmann::json& config);

struct PreparedImage {
  std::string ref;       // as asked ("registry/repo:tag")
  std::string image_id;  // containerd's ("sha256:…" of the config), when it was pulled here
  std::string target;    // the digest of what the reference names (an index or the manifest)
  ImageManifest manifest;
  // Its layers, top first: the skeleton (the mount points a bundle needs), then the
  // image's unpacked layers as containerd's snapshotter keeps them.
  std::vector<std::string> layers;
  std::string rootfs;  // the read-only mount of them
};

class ImageRootfs {
 public:
  // images_dir: <state>/images.
  ImageRootfs(cri::ContainerdImages& containerd, std::string images_dir);

  // Pulls the image (always: a tag may have moved; or never: kNotFound when containerd lacks
  // it, as at an agent's start, which must not wait for a registry), resolves it for this
  // machine's architecture, and mounts its layers read-only (again after a reboot; nothing
  // when mounted). `log` gets each step. Blocks.
  enum class Pull { kAlways, kNever };
  Result<PreparedImage> prepare(const std::string& ref, std::chrono::seconds pull_timeout,
                                const std::function<void(const std::string&)>& log, Pull pull = Pull::kAlways);
  // Unmounts the rootfs, removes the view and the image's name (when no template uses it).
  Status release(const PreparedImage& image);
  // Removes the names of an image that was pulled but never prepared (a failed template's),
  // so that containerd collects it. Nothing when containerd does not have it.
  Status forget(const std::string& ref);
  // Unmounts the rootfs only (an agent stop that leaves no sandbox); prepare mounts it again.
  static Status unmount(const PreparedImage& image);
  std::string rootfs_of(const std::string& manifest_digest) const;

 private:
  cri::ContainerdImages& containerd_;
  std::string dir_;
};

}  // namespace swissbox
