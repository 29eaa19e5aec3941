#include "agent/runtime/image_rootfs.h"

#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "agent/runtime/package_layers.h"
#include "common/fs.h"

namespace swissbox {

using json = nlohmann::json;

namespace {

bool is_index(std::string_view media_type) {
  return media_type == "application/vnd.oci.image.index.v1+json" ||
         media_type == "application/vnd.docker.distribution.manifest.list.v2+json";
}

// The OCI name of this machine's architecture.
std::string machine_arch() {
  utsname u{};
  uname(&u);
  std::string m = u.machine;
  if (m == "x86_64") return "amd64";
  if (m == "aarch64") return "arm64";
  return m;
}

// The directories and links a sandbox's bundle needs in its root (mount points for
// /workspace, /tmp and the runner's support directory; E2B's /home/user), which an image
// seldom has and a read-only root cannot get later: the top layer of every image root.
Status make_skeleton(const std::string& dir) {
  for (const char* d : {"/workspace", "/tmp", "/proc", "/dev", "/sys", "/home", "/.swissbox"}) {
    if (auto st = fs::make_dirs(dir + d); !st) return st;
  }
  std::string home = dir + "/home/user";
  if (!fs::exists(home) && symlink("/workspace", home.c_str()) != 0) return sys_error("symlink " + home);
  return ok_status();
}

// The layer directories of what containerd describes (a bind of one layer, or an overlay of
// several lower directories), top first.
Result<std::vector<std::string>> layers_of(const std::vector<cri::Mount>& mounts) {
  if (mounts.size() != 1) {
    return make_error(Code::kInternal, "containerd described the image's view in " + std::to_string(mounts.size()) +
                                           " mounts; one was expected");
  }
  const cri::Mount& m = mounts[0];
  std::vector<std::string> layers;
  if (m.type == "bind") {
    layers.push_back(m.source);
  } else if (m.type == "overlay") {
    for (const auto& o : m.options) {
      if (!o.starts_with("lowerdir=")) continue;
      for (size_t from = 9, colon; from <= o.size(); from = colon + 1) {
        colon = o.find(':', from);
        if (colon == std::string::npos) colon = o.size();
        if (colon > from) layers.push_back(o.substr(from, colon - from));
      }
    }
  } else {
    return make_error(Code::kInternal, "containerd described the image's view as a '" + m.type + "' mount");
  }
  if (layers.empty()) return make_error(Code::kInternal, "containerd's view of the image names no layer");
  return layers;
}

std::string hex_of(const std::string& digest) {
  auto colon = digest.find(':');
  return colon == std::string::npos ? digest : digest.substr(colon + 1);
}

}  // namespace

Result<std::string> platform_manifest(const json& index, const std::string& arch) {
  if (!index.is_object() || !index.contains("manifests") || !index["manifests"].is_array())
    return make_error(Code::kInvalidArgument, "the image index lists no manifests");
  std::vector<std::string> offered;
  for (const auto& m : index["manifests"]) {
    const json& p = m.value("platform", json::object());
    std::string os = p.value("os", ""), a = p.value("architecture", "");
    if (os == "linux" && a == arch && m.contains("digest")) return m["digest"].get<std::string>();
    if (!os.empty()) offered.push_back(os + "/" + a);
  }
  std::string list;
  for (const auto& o : offered) list += (list.empty() ? "" : ", ") + o;
  return make_error(Code::kInvalidArgument,
                    "the image has no linux/" + arch + " variant (it has: " + (list.empty() ? "none" : list) + ")");
}

Result<ImageManifest> parse_image(const std::string& manifest_digest, const json& manifest, const json& config) {
  try {
    ImageManifest out;
    out.digest = manifest_digest;
    for (const auto& l : manifest.at("layers")) out.size_bytes += l.value("size", int64_t{0});
    const json& rootfs = config.at("rootfs");
    out.diff_ids = rootfs.at("diff_ids").get<std::vector<std::string>>();
    if (out.diff_ids.empty()) return make_error(Code::kInvalidArgument, "the image has no layers");
    if (auto c = config.find("config"); c != config.end() && c->is_object()) {
      if (auto e = c->find("Env"); e != c->end() && e->is_array()) out.env = e->get<std::vector<std::string>>();
      out.working_dir = c->value("WorkingDir", "");
    }
    return out;
  } catch (const json::exception& e) {
    return make_error(Code::kInvalidArgument, std::string("the image's manifest or config is not as OCI says: ") +
                                                  e.what());
  }
}

ImageRootfs::ImageRootfs(cri::ContainerdImages& containerd, std::string images_dir)
    : containerd_(containerd), dir_(std::move(images_dir)) {}

std::string ImageRootfs::rootfs_of(const std::string& manifest_digest) const {
  return dir_ + "/" + hex_of(manifest_digest) + "/rootfs";
}

Result<PreparedImage> ImageRootfs::prepare(const std::string& ref, std::chrono::seconds pull_timeout,
                                           const std::function<void(const std::string&)>& log, Pull pull) {
  PreparedImage out;
  out.ref = ref;
  auto target = pull == Pull::kNever ? containerd_.image(ref) : Result<cri::Descriptor>(cri::Descriptor{});
  if (pull == Pull::kAlways) {
    log("pulling " + ref + " through containerd");
    auto id = containerd_.pull(ref, pull_timeout);
    if (!id) return id.error();
    out.image_id = *id;
    target = containerd_.image(ref);
    if (!target && target.error().code == Code::kNotFound) target = containerd_.image(*id);
  }
  if (!target) return target.error();
  out.target = target->digest;
  std::string manifest_digest = target->digest;
  auto blob = containerd_.read(manifest_digest);
  if (!blob) return blob.error();
  json manifest = json::parse(*blob, nullptr, false);
  if (is_index(target->media_type) || (manifest.is_object() && manifest.contains("manifests"))) {
    auto picked = platform_manifest(manifest, machine_arch());
    if (!picked) return picked.error();
    manifest_digest = *picked;
    blob = containerd_.read(manifest_digest);
    if (!blob) return blob.error();
    manifest = json::parse(*blob, nullptr, false);
  }
  if (!manifest.is_object() || !manifest.contains("config"))
    return make_error(Code::kInvalidArgument, "the image's manifest " + manifest_digest + " is not a manifest");
  auto config_blob = containerd_.read(manifest["config"].value("digest", ""));
  if (!config_blob) return config_blob.error();
  auto parsed = parse_image(manifest_digest, manifest, json::parse(*config_blob, nullptr, false));
  if (!parsed) return parsed.error();
  out.manifest = *parsed;
  log("image " + manifest_digest + ": " + std::to_string(out.manifest.diff_ids.size()) + " layer(s), " +
      std::to_string(out.manifest.size_bytes) + " bytes");

  const std::string skeleton = dir_ + "/skeleton";
  if (auto st = make_skeleton(skeleton); !st) return st.error();
  auto mounts = containerd_.view("swissbox-image-" + hex_of(manifest_digest), cri::chain_id(out.manifest.diff_ids));
  if (!mounts) return mounts.error();
  auto layers = layers_of(*mounts);
  if (!layers) return layers.error();
  out.layers = {skeleton};
  out.layers.insert(out.layers.end(), layers->begin(), layers->end());
  out.rootfs = rootfs_of(manifest_digest);
  if (fs::is_mount_point(out.rootfs)) return out;
  if (auto st = fs::make_dirs(out.rootfs, 0755); !st) return st.error();
  if (auto st = mount_layers(out.layers, out.rootfs); !st) return st.error();
  log("layers mounted read-only at " + out.rootfs);
  return out;
}

Status ImageRootfs::unmount(const PreparedImage& image) {
  if (fs::is_mount_point(image.rootfs) && umount2(image.rootfs.c_str(), MNT_DETACH) != 0)
    return sys_error("unmount " + image.rootfs);
  return ok_status();
}

Status ImageRootfs::forget(const std::string& ref) {
  auto target = containerd_.image(ref);
  if (!target) return target.error().code == Code::kNotFound ? ok_status() : Status(target.error());
  return containerd_.delete_image(target->digest);
}

Status ImageRootfs::release(const PreparedImage& image) {
  if (auto st = unmount(image); !st) return st;
  if (auto st = fs::remove_tree(dir_ + "/" + hex_of(image.manifest.digest)); !st) return st;
  if (auto st = containerd_.remove_view("swissbox-image-" + hex_of(image.manifest.digest)); !st) return st;
  return containerd_.delete_image(image.target);
}

}  // namespace swissbox
