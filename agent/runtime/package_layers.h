// Package layers (issue 22): what a package build wrote into a template's root, kept as a
// read-only layer over the template it was built on.
//
// A root is made of parts (sandbox_spec.h: RootPart): the root directory and each
// directory bound into it — for the node's own root /usr, /etc/alternatives and
// /var/lib/dpkg of the host; for an image, its layers under one "/". A build gets each part
// as an overlay with a writable upper directory; the finished layer is each part's upper
// laid over the base's layers, mounted as overlays of lower layers only, which the kernel
// keeps read-only. The uppers live on a disk of the layer's own (an ext4 loop image with a
// hard size, sandbox_disk.h), so that a build cannot fill the node's disk:
//
//   <dir>/<key>/disk.img, disk/workspace/{upper,work}/<part>   what the build wrote
//   <dir>/<key>/build/<part>                                    a build's writable view
//   <dir>/<key>/root/<part>                                     the read-only view
#pragma once

#include <string>
#include <vector>

#include "agent/runtime/sandbox_disk.h"
#include "agent/runtime/sandbox_spec.h"
#include "common/error.h"

namespace swissbox {

// The node's root (a directory and the host directories bound into it) as parts; the host's
// /var/lib/dpkg is added (a package build needs the base's package database) where the
// root has its mount point.
std::vector<RootPart> parts_of(const RootfsLayout& root);
// Mounts layers (top first) at target as one overlay of lower directories only, which the
// kernel keeps read-only (one layer: a read-only bind of it).
Status mount_layers(const std::vector<std::string>& layers, const std::string& target);
// The parts of a layer: the base's with the layer's upper directory of each on top.
std::vector<RootPart> parts_with_layer(const std::vector<RootPart>& base, const std::string& layer_dir);

class PackageLayers {
 public:
  // dir: <state>/layers; mkfs: mkfs.ext4 (SandboxDisk::find_mkfs()).
  PackageLayers(std::string dir, std::string mkfs);

  // Makes the layer's disk (size_mb, made anew) and mounts each base part as an overlay
  // with a writable upper on it: the root a build sandbox gets, every bind writable.
  Result<RootfsLayout> open_for_build(const std::string& key, const std::vector<RootPart>& base, int64_t size_mb);
  // After the build: its writable mounts go (what it wrote stays on the layer's disk).
  Status close_build(const std::string& key);
  // A finished layer's parts (parts_with_layer) mounted read-only — again after a reboot;
  // nothing when mounted: what its template's sandboxes get.
  Result<RootfsLayout> mount(const std::string& key, const std::vector<RootPart>& parts);
  // Its read-only mounts go (a stop that leaves no sandbox); mount() makes them again.
  Status unmount(const std::string& key);
  // Every mount of the layer, its disk and its directory go. Idempotent.
  Status remove(const std::string& key);
  // The layers on the node (their keys).
  std::vector<std::string> keys() const;
  // What the build wrote, in bytes.
  Result<int64_t> size_bytes(const std::string& key) const;
  std::string layer_dir(const std::string& key) const { return dir_ + "/" + key; }

 private:
  std::string dir_;
  SandboxDisk disk_;
};

}  // namespace swissbox
