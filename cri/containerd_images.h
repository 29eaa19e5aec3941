// Images through the node's containerd (issue 22): a pull through CRI (so the node's
// registry configuration, mirrors and credentials apply, and the CRI plugin unpacks the
// layers into its snapshotter), then containerd's own services — the image store for the
// image's target, the content store for its index, manifest and config, and the
// snapshotter for a read-only view of the unpacked layers, which the agent mounts. The way
// nerdctl and BuildKit get at an image's root filesystem, with no copy of the layers.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"

namespace swissbox::cri {

struct Descriptor {
  std::string media_type, digest;
  int64_t size = 0;
};

// A mount as containerd describes it: type "bind" or "overlay", a source, options
// ("ro", "rbind", "lowerdir=…").
struct Mount {
  std::string type, source;
  std::vector<std::string> options;
};

class ContainerdImages {
 public:
  // socket: containerd's (it serves CRI and its own services); ns: the namespace the CRI
  // plugin keeps images in.
  ContainerdImages(const std::string& socket, std::string ns = "k8s.io", std::string snapshotter = "overlayfs");
  ~ContainerdImages();

  // CRI PullImage: fetches and unpacks the image; answers the image id ("sha256:…").
  Result<std::string> pull(const std::string& ref, std::chrono::seconds timeout);
  // The image's target (an index or a manifest) by name: a reference or the image id.
  Result<Descriptor> image(const std::string& name);
  // A blob from the content store, at most max_bytes.
  Result<std::string> read(const std::string& digest, size_t max_bytes = 4 << 20);
  // A read-only view named `key` of the committed snapshot `parent` (a chain id); when the
  // view exists already, its mounts. The view is a GC root until removed.
  Result<std::vector<Mount>> view(const std::string& key, const std::string& parent);
  Status remove_view(const std::string& key);
  // Removes every name of the image whose target has that digest (the CRI plugin names an
  // image by its reference, its repository digest and its id); containerd's GC then takes
  // the layers no image holds.
  Status delete_image(const std::string& target_digest);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// SHA-256 of data, lowercase hex.
std::string sha256_hex(std::string_view data);
// The chain id of a stack of layers (OCI image spec): the first layer's diff id, then
// sha256(parent chain id + " " + diff id) for each next one. The name under which
// containerd's snapshotter keeps the unpacked stack.
std::string chain_id(const std::vector<std::string>& diff_ids);

}  // namespace swissbox::cri
