#include "agent/runtime/package_layers.h"

#include <sys/mount.h>

#include <cerrno>

#include "common/fs.h"

namespace swissbox {

namespace {

std::string join_layers(const std::vector<std::string>& layers) {
  std::string out;
  for (const auto& l : layers) out += (out.empty() ? "" : ":") + l;
  return out;
}

Status unmount_all(const std::string& dir) {
  for (const auto& name : fs::list_dir(dir)) {
    const std::string target = dir + "/" + name;
    if (fs::is_mount_point(target) && umount2(target.c_str(), MNT_DETACH) != 0 && errno != EINVAL)
      return sys_error("unmount " + target);
  }
  return ok_status();
}

RootfsLayout layout_of(const std::vector<RootPart>& parts, const std::string& mounts, bool read_only) {
  RootfsLayout out{mounts + "/0", {}};
  for (size_t i = 1; i < parts.size(); ++i)
    out.binds.push_back({mounts + "/" + std::to_string(i), parts[i].destination, read_only});
  return out;
}

std::string upper_dir(const std::string& layer_dir, size_t part) {
  return SandboxDisk::workspace(layer_dir) + "/upper/" + std::to_string(part);
}

}  // namespace

Status mount_layers(const std::vector<std::string>& layers, const std::string& target) {
  if (layers.empty()) return make_error(Code::kInternal, "no layer to mount at " + target);
  if (layers.size() == 1) {
    if (mount(layers[0].c_str(), target.c_str(), nullptr, MS_BIND, nullptr) != 0)
      return sys_error("bind " + layers[0] + " at " + target);
    if (mount(nullptr, target.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr) != 0) {
      Status st = sys_error("make " + target + " read-only");
      umount2(target.c_str(), MNT_DETACH);
      return st;
    }
    return ok_status();
  }
  std::string data = "lowerdir=" + join_layers(layers);
  if (mount("overlay", target.c_str(), "overlay", MS_RDONLY | MS_NOSUID | MS_NODEV, data.c_str()) != 0)
    return sys_error("mount layers (overlay) at " + target);
  return ok_status();
}

std::vector<RootPart> parts_of(const RootfsLayout& root) {
  std::vector<RootPart> parts = {{"/", {root.root}}};
  bool has_dpkg = false;
  for (const BindMount& b : root.binds) {
    parts.push_back({b.destination, {b.source}});
    has_dpkg |= b.destination == "/var/lib/dpkg";
  }
  // The node's root binds host directories: the host's package database belongs with them
  // (apt installs on top of what the host's /usr has). Its mount point is made by the build
  // in the layer's writable root (the node's own root shows no /var).
  if (!root.binds.empty() && !has_dpkg && fs::exists("/var/lib/dpkg/status"))
    parts.push_back({"/var/lib/dpkg", {"/var/lib/dpkg"}});
  return parts;
}

std::vector<RootPart> parts_with_layer(const std::vector<RootPart>& base, const std::string& layer_dir) {
  std::vector<RootPart> out;
  for (size_t i = 0; i < base.size(); ++i) {
    RootPart p{base[i].destination, {upper_dir(layer_dir, i)}};
    p.layers.insert(p.layers.end(), base[i].layers.begin(), base[i].layers.end());
    out.push_back(std::move(p));
  }
  return out;
}

PackageLayers::PackageLayers(std::string dir, std::string mkfs)
    : dir_(std::move(dir)), disk_(std::move(mkfs), dir_ + "/disk-templates") {}

Result<RootfsLayout> PackageLayers::open_for_build(const std::string& key, const std::vector<RootPart>& base,
                                                   int64_t size_mb) {
  if (base.empty() || base[0].destination != "/") return make_error(Code::kInternal, "a layer's base has no root");
  // What an interrupted build left goes first.
  if (auto st = remove(key); !st) return st.error();
  const std::string dir = layer_dir(key);
  if (auto st = fs::make_dirs(dir, 0700); !st) return st.error();
  if (auto st = disk_.create(dir, size_mb, size_mb, 0, 0); !st) return st.error();
  const std::string work = SandboxDisk::workspace(dir) + "/work/";
  for (size_t i = 0; i < base.size(); ++i) {
    const std::string upper = upper_dir(dir, i), target = dir + "/build/" + std::to_string(i);
    for (const auto& d : {upper, work + std::to_string(i), target}) {
      if (auto st = fs::make_dirs(d, 0755); !st) return st.error();
    }
    std::string data = "lowerdir=" + join_layers(base[i].layers) + ",upperdir=" + upper +
                       ",workdir=" + work + std::to_string(i);
    if (::mount("overlay", target.c_str(), "overlay", MS_NOSUID | MS_NODEV, data.c_str()) != 0)
      return sys_error("mount a writable layer over " + base[i].destination + " at " + target);
  }
  return layout_of(base, dir + "/build", false);
}

Status PackageLayers::close_build(const std::string& key) {
  const std::string dir = layer_dir(key);
  if (auto st = unmount_all(dir + "/build"); !st) return st;
  // The overlays' work directories hold nothing once they are unmounted.
  if (auto st = fs::remove_tree(SandboxDisk::workspace(dir) + "/work"); !st) return st;
  return fs::remove_tree(dir + "/build");
}

Result<RootfsLayout> PackageLayers::mount(const std::string& key, const std::vector<RootPart>& parts) {
  const std::string dir = layer_dir(key);
  if (parts.empty() || parts[0].destination != "/") return make_error(Code::kInternal, "layer " + key + " has no root");
  if (auto st = SandboxDisk::mount(dir); !st) return st.error();
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string target = dir + "/root/" + std::to_string(i);
    if (fs::is_mount_point(target)) continue;
    if (auto st = fs::make_dirs(target, 0755); !st) return st.error();
    if (auto st = mount_layers(parts[i].layers, target); !st) return st.error();
  }
  return layout_of(parts, dir + "/root", true);
}

Status PackageLayers::unmount(const std::string& key) {
  if (auto st = unmount_all(layer_dir(key) + "/root"); !st) return st;
  return SandboxDisk::unmount(layer_dir(key));
}

Status PackageLayers::remove(const std::string& key) {
  const std::string dir = layer_dir(key);
  if (!fs::exists(dir)) return ok_status();
  for (const char* mounts : {"/build", "/root"}) {
    if (auto st = unmount_all(dir + mounts); !st) return st;
  }
  if (auto st = SandboxDisk::remove(dir); !st) return st;
  return fs::remove_tree(dir);
}

std::vector<std::string> PackageLayers::keys() const {
  std::vector<std::string> out;
  for (auto& name : fs::list_dir(dir_)) {
    if (name != "disk-templates") out.push_back(std::move(name));
  }
  return out;
}

Result<int64_t> PackageLayers::size_bytes(const std::string& key) const {
  auto usage = SandboxDisk::usage(layer_dir(key));
  if (!usage) return usage.error();
  return usage->used_bytes;
}

}  // namespace swissbox
