#include "common/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "common/unique_fd.h"

namespace swissbox::fs {

Status make_dirs(const std::string& path, mode_t mode) {
  std::string cur;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    cur = path.substr(0, pos);
    if (cur.empty()) continue;
    if (mkdir(cur.c_str(), mode) != 0 && errno != EEXIST) return sys_error("mkdir " + cur);
  }
  return ok_status();
}

Status write_file_atomic(const std::string& path, std::string_view data, mode_t mode,
                         bool durable) {
  std::string tmp = path + ".tmp";
  unique_fd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (!fd) return sys_error("open " + tmp);
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(fd.get(), data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error("write " + tmp);
    off += n;
  }
  if (durable && fsync(fd.get()) != 0) return sys_error("fsync " + tmp);
  fd.reset();
  if (rename(tmp.c_str(), path.c_str()) != 0) return sys_error("rename " + tmp);
  return ok_status();
}

bool is_mount_point(const std::string& path) {
  auto table = read_file("/proc/self/mountinfo", 64 << 20);
  if (!table) return false;
  // Field 5 of each line is the mount point.
  const std::string needle = " " + path + " ";
  for (size_t pos = 0; (pos = table->find(needle, pos)) != std::string::npos; pos += needle.size()) {
    size_t line = table->rfind('\n', pos);
    line = line == std::string::npos ? 0 : line + 1;
    int spaces = 0;
    for (size_t i = line; i < pos; ++i) spaces += (*table)[i] == ' ';
    if (spaces == 3) return true;  // the needle starts at the fourth
  }
  return false;
}

std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> out;
  DIR* d = opendir(path.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') out.push_back(e->d_name);
  }
  closedir(d);
  return out;
}

Result<int64_t> sync_dir(const std::string& path) {
  unique_fd dir(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return sys_error("open " + path);
  DIR* d = fdopendir(dup(dir.get()));
  if (!d) return sys_error("list " + path);
  int64_t bytes = 0;
  Status st = ok_status();
  while (dirent* e = readdir(d)) {
    struct stat sb {};
    if (fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode)) continue;
    bytes += sb.st_size;
    unique_fd f(openat(dirfd(d), e->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!f || fsync(f.get()) != 0) {
      st = sys_error("fsync " + path + "/" + e->d_name);
      break;
    }
  }
  closedir(d);
  if (!st) return st.error();
  if (fsync(dir.get()) != 0) return sys_error("fsync " + path);
  return bytes;
}

Result<std::string> read_file(const std::string& path, size_t max_bytes) {
  unique_fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return sys_error("open " + path);
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error("read " + path);
    if (n == 0) break;
    if (out.size() + n > max_bytes) return make_error(Code::kTooLarge, path + " is too large");
    out.append(buf, n);
  }
  return out;
}

namespace {

int remove_at(int parent, const char* name, dev_t dev) {
  struct stat st;
  if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return errno == ENOENT ? 0 : errno;
  if (!S_ISDIR(st.st_mode)) return unlinkat(parent, name, 0) == 0 ? 0 : errno;
  if (st.st_dev != dev) return EXDEV;  // a mount point: never delete into another filesystem
  unique_fd dir(openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) return errno;
  DIR* d = fdopendir(dup(dir.get()));
  if (!d) return errno;
  std::vector<std::string> names;
  while (dirent* e = readdir(d)) {
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) names.push_back(e->d_name);
  }
  closedir(d);
  for (const auto& n : names) {
    if (int err = remove_at(dir.get(), n.c_str(), dev)) return err;
  }
  return unlinkat(parent, name, AT_REMOVEDIR) == 0 ? 0 : errno;
}

}  // namespace

Status remove_tree(const std::string& path) {
  if (path.empty() || path == "/") return make_error(Code::kInternal, "refusing to remove " + path);
  struct stat st;
  if (lstat(path.c_str(), &st) != 0)
    return errno == ENOENT ? ok_status() : sys_error("stat " + path);
  if (int err = remove_at(AT_FDCWD, path.c_str(), st.st_dev))
    return sys_error("remove " + path, err);
  return ok_status();
}

bool exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

std::optional<std::chrono::system_clock::time_point> birth_time(const std::string& path) {
  struct statx sx {};
  if (statx(AT_FDCWD, path.c_str(), AT_SYMLINK_NOFOLLOW, STATX_BTIME, &sx) != 0 || !(sx.stx_mask & STATX_BTIME))
    return std::nullopt;
  return std::chrono::system_clock::time_point(std::chrono::seconds(sx.stx_btime.tv_sec) +
                                               std::chrono::nanoseconds(sx.stx_btime.tv_nsec));
}

std::string self_dir() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string exe(buf, static_cast<size_t>(n));
  return exe.substr(0, exe.rfind('/'));
}

}  // namespace swissbox::fs
