#include "runner/files.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "common/limits.h"
#include "common/unique_fd.h"
#include "runner/control.h"

namespace swissbox::init {

using json = nlohmann::json;
using swissbox::unique_fd;

std::string g_workspace = "/workspace";
uid_t g_uid = static_cast<uid_t>(-1);
gid_t g_gid = static_cast<gid_t>(-1);

// Relative paths are relative to /workspace. Everything resolves inside the sandbox's own
// filesystem, so neither ".." nor symlinks can leave it.
std::string resolve(const std::string& path) {
  if (!path.empty() && path[0] == '/') return path;
  return g_workspace + "/" + path;
}


AsCommandUser::AsCommandUser() {
  if (g_uid == static_cast<uid_t>(-1)) return;
  active_ = setresgid(-1, g_gid, -1) == 0 && setresuid(-1, g_uid, -1) == 0;
}

AsCommandUser::~AsCommandUser() {
  if (g_uid == static_cast<uid_t>(-1)) return;
  (void)!setresuid(-1, 0, -1);
  (void)!setresgid(-1, 0, -1);
}

bool AsCommandUser::ok() const { return g_uid == static_cast<uid_t>(-1) || active_; }

namespace {

int make_parents(const std::string& path) {
  for (size_t pos = 1; (pos = path.find('/', pos)) != std::string::npos; ++pos) {
    std::string dir = path.substr(0, pos);
    if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return errno;
  }
  return 0;
}

const char* type_name(mode_t m) {
  if (S_ISREG(m)) return "file";
  if (S_ISDIR(m)) return "dir";
  if (S_ISLNK(m)) return "symlink";
  return "other";
}

json entry_json(const std::string& name, const struct stat& st) {
  return {{"name", name},
          {"type", type_name(st.st_mode)},
          {"size", static_cast<uint64_t>(st.st_size)},
          {"mode", st.st_mode & 07777},
          {"mtime", static_cast<int64_t>(st.st_mtime)}};
}

int remove_tree(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return errno;
  if (S_ISDIR(st.st_mode)) {
    DIR* d = opendir(path.c_str());
    if (!d) return errno;
    std::vector<std::string> names;
    while (dirent* e = readdir(d)) {
      if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) names.push_back(e->d_name);
    }
    closedir(d);
    for (auto& n : names) {
      if (int err = remove_tree(path + "/" + n)) return err;
    }
    return rmdir(path.c_str()) == 0 ? 0 : errno;
  }
  return unlink(path.c_str()) == 0 ? 0 : errno;
}

}  // namespace

bool FileOps::handles(std::string_view op) {
  return op == "read_file" || op == "write_file" || op == "list" || op == "stat" ||
         op == "delete" || op == "mkdir" || op == "rename";
}

void FileOps::handle(std::string_view op, uint64_t id, const json& h, const std::string& payload) {
  AsCommandUser as_user;
  if (!as_user.ok()) return send_error(id, errno, "switch to the sandbox's user");
  if (op == "read_file") return read_file(id, h);
  if (op == "write_file") return write_file(id, h, payload);
  if (op == "list") return list_dir(id, h);
  if (op == "stat") return stat_path(id, h);
  if (op == "mkdir") return make_dir(id, h);
  if (op == "rename") return rename_path(id, h);
  return delete_path(id, h);
}

void FileOps::read_file(uint64_t id, const json& h) {
  std::string path = resolve(h.at("path").get<std::string>());
  uint64_t max = h.value("max_bytes", uint64_t{64} << 20);
  unique_fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd) return send_error(id, errno, "open " + path);
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return send_error(id, errno, "stat " + path);
  if (S_ISDIR(st.st_mode)) return send_error(id, EISDIR, path);
  if (!S_ISREG(st.st_mode)) return send_error(id, EINVAL, path + " is not a regular file");
  if (static_cast<uint64_t>(st.st_size) > max) return send_error(id, EFBIG, path);
  std::string buf(256 * 1024, '\0');
  uint64_t total = 0;
  for (;;) {
    ssize_t r = read(fd.get(), buf.data(), buf.size());
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return send_error(id, errno, "read " + path);
    if (r == 0) break;
    total += r;
    if (total > max) return send_error(id, EFBIG, path);
    send({{"ev", "data"}, {"id", id}}, std::string_view(buf.data(), r));
  }
  send_result(id, {{"size", total}});
}


void FileOps::write_file(uint64_t id, const json& h, const std::string& data) {
  std::string path = resolve(h.at("path").get<std::string>());
  bool append = h.value("append", false);
  bool last = h.value("last", true);
  // A write that failed already got its error; its remaining chunks are dropped.
  if (append && failed_writes_.count(id)) {
    if (last) failed_writes_.erase(id);
    return;
  }
  auto fail = [&](int err, const std::string& what) {
    if (!last) failed_writes_.insert(id);
    send_error(id, err, what);
  };
  if (!append) {
    if (int err = make_parents(path)) return fail(err, "mkdir for " + path);
  }
  int flags = O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (append ? O_APPEND : O_TRUNC);
  unique_fd fd(open(path.c_str(), flags, h.value("mode", 0644)));
  if (!fd) return fail(errno, "open " + path);
  size_t off = 0;
  while (off < data.size()) {
    ssize_t w = write(fd.get(), data.data() + off, data.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return fail(errno, "write " + path);
    off += w;
  }
  if (last) send_result(id);
}



void FileOps::list_dir(uint64_t id, const json& h) {
  std::string path = resolve(h.value("path", std::string(".")));
  DIR* d = opendir(path.c_str());
  if (!d) return send_error(id, errno, "opendir " + path);
  // Entries go out in frames whose header stays well below the protocol's limit (a name
  // of 255 bytes escapes to at most 1.5 kB of JSON).
  constexpr size_t kFrameBudget = 32 * 1024;
  json entries = json::array();
  size_t bytes = 0, total = 0;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    json entry = entry_json(name, st);
    bytes += entry.dump(-1, ' ', false, json::error_handler_t::replace).size() + 1;
    entries.push_back(std::move(entry));
    if (bytes >= kFrameBudget) {
      send({{"ev", "entries"}, {"id", id}, {"entries", std::exchange(entries, json::array())}});
      bytes = 0;
    }
    if (++total >= swissbox::limits::kMaxListEntries) break;
  }
  closedir(d);
  if (!entries.empty()) send({{"ev", "entries"}, {"id", id}, {"entries", std::move(entries)}});
  send_result(id);
}

void FileOps::stat_path(uint64_t id, const json& h) {
  std::string path = resolve(h.at("path").get<std::string>());
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return send_error(id, errno, "stat " + path);
  send_result(id, entry_json(path, st));
}


void FileOps::make_dir(uint64_t id, const json& h) {
  std::string path = resolve(h.at("path").get<std::string>());
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) return send_error(id, EEXIST, path + " exists");
  if (int err = make_parents(path + "/.")) return send_error(id, err, "mkdir " + path);
  if (lstat(path.c_str(), &st) != 0) return send_error(id, errno, "stat " + path);
  send_result(id, entry_json(path, st));
}

void FileOps::rename_path(uint64_t id, const json& h) {
  std::string from = resolve(h.at("from").get<std::string>());
  std::string to = resolve(h.at("to").get<std::string>());
  if (int err = make_parents(to)) return send_error(id, err, "mkdir for " + to);
  if (rename(from.c_str(), to.c_str()) != 0) return send_error(id, errno, "rename " + from + " to " + to);
  struct stat st;
  if (lstat(to.c_str(), &st) != 0) return send_error(id, errno, "stat " + to);
  send_result(id, entry_json(to, st));
}

void FileOps::delete_path(uint64_t id, const json& h) {
  std::string path = resolve(h.at("path").get<std::string>());
  if (path == g_workspace || path == g_workspace + "/" || path == "/") {
    return send_error(id, EBUSY, "refusing to delete " + path);
  }
  int err = 0;
  if (h.value("recursive", false)) {
    err = remove_tree(path);
  } else {
    struct stat st;
    if (lstat(path.c_str(), &st) != 0)
      err = errno;
    else if (S_ISDIR(st.st_mode))
      err = rmdir(path.c_str()) == 0 ? 0 : errno;
    else
      err = unlink(path.c_str()) == 0 ? 0 : errno;
  }
  if (err) return send_error(id, err, "delete " + path);
  send_result(id);
}

}  // namespace swissbox::init
