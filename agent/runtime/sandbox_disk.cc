#include "agent/runtime/sandbox_disk.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "common/fs.h"
#include "common/process.h"
#include "common/unique_fd.h"

namespace swissbox {

namespace {

constexpr int kLoopMajor = 7;

std::string image_path(const std::string& dir) { return dir + "/disk.img"; }
std::string mount_point(const std::string& dir) { return dir + "/disk"; }
std::string reserve_path(const std::string& dir) { return dir + "/disk/.reserve"; }

// Inode tables and group descriptors take ≈ 0.5 % of a filesystem with one inode per
// 64 KiB; the image gets that much more than the largest size a claim may ask for.
int64_t image_bytes(int64_t max_mb) { return (max_mb << 20) + (max_mb << 20) / 100 + (16 << 20); }

struct Loop {
  std::string path;
  unique_fd fd;
};

// Attaches the image to a free loop device that detaches itself once it is neither mounted
// nor open: the returned descriptor must stay open until the mount is made.
Result<Loop> attach_loop(int image_fd, const std::string& image) {
  unique_fd ctl(open("/dev/loop-control", O_RDWR | O_CLOEXEC));
  if (!ctl) return sys_error("open /dev/loop-control (the agent needs loop devices)");
  for (int attempt = 0; attempt < 16; ++attempt) {
    int n = ioctl(ctl.get(), LOOP_CTL_GET_FREE);
    if (n < 0) return sys_error("LOOP_CTL_GET_FREE");
    std::string dev = fmt::format("/dev/loop{}", n);
    // A container's /dev may lack nodes for devices made after it started.
    if (access(dev.c_str(), F_OK) != 0 &&
        mknod(dev.c_str(), S_IFBLK | 0660, makedev(kLoopMajor, n)) != 0 && errno != EEXIST) {
      return sys_error("mknod " + dev);
    }
    unique_fd loop(open(dev.c_str(), O_RDWR | O_CLOEXEC));
    if (!loop) return sys_error("open " + dev);
    loop_config cfg{};
    cfg.fd = static_cast<uint32_t>(image_fd);
    cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
    strncpy(reinterpret_cast<char*>(cfg.info.lo_file_name), image.c_str(), LO_NAME_SIZE - 1);
    if (ioctl(loop.get(), LOOP_CONFIGURE, &cfg) == 0) return Loop{dev, std::move(loop)};
    if (errno != EBUSY) return sys_error("LOOP_CONFIGURE " + dev);
    // Another process took it between GET_FREE and CONFIGURE: ask again.
  }
  return make_error(Code::kUnavailable, "no free loop device after 16 attempts");
}

Status make_owned_dir(const std::string& path, mode_t mode, uid_t uid, gid_t gid) {
  if (mkdir(path.c_str(), mode) != 0 && errno != EEXIST) return sys_error("mkdir " + path);
  if (chmod(path.c_str(), mode) != 0) return sys_error("chmod " + path);
  if (chown(path.c_str(), uid, gid) != 0) return sys_error("chown " + path);
  return ok_status();
}

// What the filesystem can give to files at most: ext4 holds back a few clusters
// (reserved_clusters, ≈ 16 MiB) that show in f_bavail but not in f_bfree.
Result<int64_t> usable_capacity(const std::string& mount) {
  struct statfs sf;
  if (statfs(mount.c_str(), &sf) != 0) return sys_error("statfs " + mount);
  return static_cast<int64_t>(sf.f_blocks - (sf.f_bfree - sf.f_bavail)) * sf.f_bsize;
}

// Copies a sparse file's data extents (the holes stay holes) into dst, which has its size.
Status copy_sparse(int src, int dst, int64_t size) {
  for (off_t at = 0; at < size;) {
    off_t data = lseek(src, at, SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;  // only a hole is left
    if (data < 0) return sys_error("seek in the disk template");
    off_t hole = lseek(src, data, SEEK_HOLE);
    if (hole < 0) return sys_error("seek in the disk template");
    for (loff_t in = data, out = data; in < hole;) {
      ssize_t n = copy_file_range(src, &in, dst, &out, static_cast<size_t>(hole - in), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EXDEV || errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL)) {
        char buf[1 << 16];  // a filesystem without copy_file_range: through a buffer
        n = pread(src, buf, static_cast<size_t>(std::min<loff_t>(hole - in, sizeof buf)), in);
        if (n > 0 && pwrite(dst, buf, n, out) != n) n = -1;
        if (n > 0) in += n, out += n;
      }
      if (n <= 0) return sys_error("copy the disk template");
    }
    at = hole;
  }
  return ok_status();
}

// The reserve's size, which fallocate made all allocated.
int64_t file_size(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
}

// Mounts the image behind image_fd at target (made if missing).
Status mount_image(int image_fd, const std::string& image, const std::string& target) {
  if (auto st = fs::make_dirs(target, 0755); !st) return st;
  auto loop = attach_loop(image_fd, image);
  if (!loop) return loop.error();
  // On failure the device frees itself when loop->fd closes (autoclear).
  if (mount(loop->path.c_str(), target.c_str(), "ext4", MS_NOSUID | MS_NODEV | MS_NOATIME,
            "discard,noinit_itable") != 0) {
    return sys_error("mount " + loop->path + " on " + target);
  }
  return ok_status();
}

}  // namespace

Result<std::string> SandboxDisk::find_mkfs() {
  for (const char* p : {"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"}) {
    if (access(p, X_OK) == 0) return std::string(p);
  }
  return make_error(Code::kUnavailable,
                    "mkfs.ext4 not found (Debian package e2fsprogs): sandbox disks need it");
}

Result<std::string> SandboxDisk::template_for(int64_t bytes, int64_t limit_mb) const {
  // The name carries the template's version (mkfs options, contents) and what it holds.
  constexpr std::string_view kVersion = "ext4-v2-";
  const std::string path = fmt::format("{}/{}{}-{}.img", templates_, kVersion, bytes, limit_mb);
  std::lock_guard lock(template_mu_);
  if (fs::exists(path)) return path;
  if (auto st = fs::make_dirs(templates_, 0700); !st) return st.error();
  // Templates of earlier versions are not used again.
  if (DIR* d = opendir(templates_.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string_view n = e->d_name;
      if (e->d_type == DT_REG && !n.starts_with(kVersion)) unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
  }
  // The template is mounted where set_limit(templates_) looks: <templates_>/disk.
  const std::string part = path + ".part", mnt = mount_point(templates_);
  umount2(mnt.c_str(), MNT_DETACH);  // left mounted by a crash while a template was made
  unique_fd fd(open(part.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return sys_error("create " + part);
  if (ftruncate(fd.get(), bytes) != 0) return sys_error("size " + part);
  ProcessOptions mkfs;
  // No journal (scratch space that dies with the sandbox; fewer host writes), no reserved
  // blocks, inode tables initialised lazily and never in the background (noinit_itable).
  mkfs.argv = {mkfs_, "-q", "-F", "-m", "0", "-i", "65536", "-O", "^has_journal",
               "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", part};
  auto r = run_process(mkfs);
  if (!r) return r.error();
  if (r->exit_code != 0) return make_error(Code::kInternal, describe_failure(mkfs, *r));
  // The reserve for limit_mb is allocated once, here: fallocate of ≈ 19 GiB costs 10–20 ms
  // of CPU, a copy of the allocation (≈ 0.5 MiB of bitmaps) nearly nothing.
  if (auto st = mount_image(fd.get(), part, mnt); !st) return st.error();
  Status reserved = set_limit(templates_, limit_mb);
  rmdir((mnt + "/lost+found").c_str());
  if (umount2(mnt.c_str(), 0) != 0) return sys_error("unmount " + mnt);
  if (!reserved) return reserved.error();
  if (rename(part.c_str(), path.c_str()) != 0) return sys_error("rename " + part);
  return path;
}

Status SandboxDisk::create(const std::string& dir, int64_t max_mb, int64_t limit_mb, uid_t uid,
                           gid_t gid) const {
  const std::string image = image_path(dir), target = mount_point(dir);
  const int64_t bytes = image_bytes(max_mb);
  auto formatted = template_for(bytes, limit_mb);
  if (!formatted) return formatted.error();
  unique_fd tpl(open(formatted->c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!tpl) return sys_error("open " + *formatted);
  unique_fd img(open(image.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!img) return sys_error("create " + image);
  if (ftruncate(img.get(), bytes) != 0) return sys_error("size " + image);
  if (auto st = copy_sparse(tpl.get(), img.get(), bytes); !st) return st;
  if (auto st = mount_image(img.get(), image, target); !st) return st;
  if (auto st = make_owned_dir(target + "/workspace", 0755, uid, gid); !st) return st;
  if (auto st = make_owned_dir(target + "/tmp", 01777, 0, 0); !st) return st;
  return set_limit(dir, limit_mb);  // the template's reserve already fits: no change
}

Status SandboxDisk::flush(const std::string& dir) {
  unique_fd mnt(open(mount_point(dir).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!mnt) return sys_error("open " + mount_point(dir));
  if (syncfs(mnt.get()) != 0) return sys_error("sync " + mount_point(dir));
  unique_fd img(open(image_path(dir).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!img || fsync(img.get()) != 0) return sys_error("fsync " + image_path(dir));
  return ok_status();
}

Status SandboxDisk::mount(const std::string& dir) {
  if (mounted(dir)) return ok_status();
  const std::string image = image_path(dir);
  unique_fd img(open(image.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
  if (!img) return sys_error("open " + image);
  return mount_image(img.get(), image, mount_point(dir));
}

Status SandboxDisk::set_limit(const std::string& dir, int64_t limit_mb) {
  auto capacity = usable_capacity(mount_point(dir));
  if (!capacity) return capacity.error();
  int64_t limit = limit_mb << 20;
  if (limit > *capacity) {
    return make_error(Code::kInvalidArgument,
                      fmt::format("disk_mb {} is more than this sandbox's disk holds ({} MiB)",
                                  limit_mb, *capacity >> 20));
  }
  const std::string reserve = reserve_path(dir);
  unique_fd fd(open(reserve.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return sys_error("open " + reserve);
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return sys_error("stat " + reserve);
  int64_t want = *capacity - limit;
  if (want < st.st_size) {
    if (ftruncate(fd.get(), want) != 0) return sys_error("shrink " + reserve);
  } else if (want > st.st_size && fallocate(fd.get(), 0, 0, want) != 0) {
    if (errno == ENOSPC) {
      return make_error(Code::kResourceExhausted,
                        fmt::format("the sandbox already uses more than disk_mb {}", limit_mb));
    }
    return sys_error("fallocate " + reserve);
  }
  return ok_status();
}

Result<DiskUsage> SandboxDisk::usage(const std::string& dir) {
  struct statfs sf;
  if (statfs(mount_point(dir).c_str(), &sf) != 0) return sys_error("statfs " + mount_point(dir));
  int64_t used = static_cast<int64_t>(sf.f_blocks - sf.f_bfree) * sf.f_bsize;
  int64_t capacity = static_cast<int64_t>(sf.f_blocks - (sf.f_bfree - sf.f_bavail)) * sf.f_bsize;
  int64_t reserved = file_size(reserve_path(dir));
  return DiskUsage{std::max<int64_t>(0, used - reserved), capacity - reserved};
}

bool SandboxDisk::mounted(const std::string& dir) {
  struct stat a, b;
  return stat(mount_point(dir).c_str(), &a) == 0 && stat(dir.c_str(), &b) == 0 &&
         a.st_dev != b.st_dev;
}

Status SandboxDisk::unmount(const std::string& dir) {
  if (mounted(dir) && umount2(mount_point(dir).c_str(), MNT_DETACH) != 0 && errno != EINVAL) {
    return sys_error("unmount " + mount_point(dir));
  }
  return ok_status();
}

Status SandboxDisk::remove(const std::string& dir) {
  if (auto st = unmount(dir); !st) return st;
  if (unlink(image_path(dir).c_str()) != 0 && errno != ENOENT) {
    return sys_error("remove " + image_path(dir));
  }
  return ok_status();
}

}  // namespace swissbox
