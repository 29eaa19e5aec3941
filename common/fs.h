// Small filesystem helpers with errors as values.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"

namespace swissbox::fs {

Status make_dirs(const std::string& path, mode_t mode = 0755);
// Writes via a temp file (+ fsync when durable) + rename, so readers see the old or the new
// file whole. Without fsync the file survives a crash of the process, not of the machine.
Status write_file_atomic(const std::string& path, std::string_view data, mode_t mode = 0644,
                         bool durable = true);
// fsync of every regular file in a directory and of the directory itself: what it holds
// survives a crash of the machine. Answers the files' total size.
Result<int64_t> sync_dir(const std::string& path);
Result<std::string> read_file(const std::string& path, size_t max_bytes = 16 << 20);
// rm -rf that does not cross mount points or follow symlinks.
Status remove_tree(const std::string& path);
bool exists(const std::string& path);
// When the file was made (statx's birth time); nullopt where the filesystem does not keep it.
std::optional<std::chrono::system_clock::time_point> birth_time(const std::string& path);
// Whether path is a mount point, from /proc/self/mountinfo (a bind of a directory on the
// same filesystem has its parent's st_dev). Paths with characters the table escapes
// (space, tab, newline, backslash) are never found.
bool is_mount_point(const std::string& path);
// Names in a directory but "." and ".." and other dot files; empty if it cannot be read.
std::vector<std::string> list_dir(const std::string& path);
// The directory of the running executable ("." if it cannot be read): where a binary finds
// the files shipped beside it.
std::string self_dir();

}  // namespace swissbox::fs
