// A sandbox's writable storage with a hard size: an ext4 filesystem in a sparse image file,
// loop-mounted on the host at <sandbox dir>/disk and bound into the sandbox as /workspace
// and /tmp. Writing past the size gives ENOSPC inside the sandbox; the node's disk holds
// only what the sandbox really wrote (the image is sparse and mounted with discard, so
// deleted files give their blocks back).
//
// The image is made once per sandbox at the largest size a claim may ask for; the size the
// sandbox sees is set by a preallocated file outside the bound directories (.reserve) that
// takes up the rest. Changing it at claim time is one fallocate or ftruncate (≈ 10 ms for
// 9 GiB here, and no host blocks are written). Measured here: mkfs.ext4 of a 20 GiB
// sparse image ≈ 20 ms, the mount ≈ 8 ms, ≈ 5 MiB of host disk for the metadata.
//
// mkfs and the reserve's fallocate run once per image size and start-time limit, into a
// template; each sandbox's image is a sparse copy of it (copy_file_range of ≈ 25 data
// extents, ≈ 2 ms, instead of a mkfs process, ≈ 10 ms of CPU, and a fallocate of ≈ 19 GiB,
// 10–20 ms, on every sandbox start). The copies share the filesystem UUID, which ext4 does
// not mind.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <mutex>
#include <string>

#include "common/error.h"

namespace swissbox {

struct DiskUsage {
  int64_t used_bytes = 0;   // by the sandbox's files
  int64_t limit_bytes = 0;  // what it may use in all
};

class SandboxDisk {
 public:
  // mkfs: absolute path of mkfs.ext4 (found_mkfs() finds it); templates: the directory
  // for the formatted templates (made when missing).
  SandboxDisk(std::string mkfs, std::string templates)
      : mkfs_(std::move(mkfs)), templates_(std::move(templates)) {}
  // The mkfs.ext4 of this host, or an error naming the package that brings it.
  static Result<std::string> find_mkfs();

  // Makes <dir>/disk.img able to hold max_mb, formats it, mounts it at <dir>/disk with
  // workspace/ and tmp/ owned by uid:gid, and sets the usable size to limit_mb.
  Status create(const std::string& dir, int64_t max_mb, int64_t limit_mb, uid_t uid,
                gid_t gid) const;
  // Everything written to the disk reaches the node's disk (its filesystem, then the
  // image file): what a suspended sandbox wrote survives a node reboot.
  static Status flush(const std::string& dir);
  // Mounts the image again where a node reboot unmounted it; nothing when it is mounted.
  static Status mount(const std::string& dir);
  // Sets the usable size (files already written count against it).
  static Status set_limit(const std::string& dir, int64_t limit_mb);
  static Result<DiskUsage> usage(const std::string& dir);
  // Unmounts (lazily, if something still holds it); the image stays. Idempotent.
  static Status unmount(const std::string& dir);
  // Unmounts (lazily, if something still holds it) and deletes the image. Idempotent.
  static Status remove(const std::string& dir);
  // Whether <dir>/disk is a mount point (for garbage collection after a crash).
  static bool mounted(const std::string& dir);

  static std::string workspace(const std::string& dir) { return dir + "/disk/workspace"; }
  static std::string tmp(const std::string& dir) { return dir + "/disk/tmp"; }

 private:
  // The formatted template of an image of `bytes` whose reserve leaves limit_mb usable,
  // made on first use.
  Result<std::string> template_for(int64_t bytes, int64_t limit_mb) const;

  std::string mkfs_;
  std::string templates_;
  mutable std::mutex template_mu_;  // one mkfs per size, even with starts in parallel
};

}  // namespace swissbox
