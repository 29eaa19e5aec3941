// Named network namespaces, the way `ip netns` keeps them: a namespace is made on a
// short-lived thread (unshare(CLONE_NEWNET) affects only the calling thread) and kept alive
// by bind-mounting /proc/thread-self/ns/net onto a file, so that it outlives both the
// thread and the agent, and runsc finds it by path in the OCI spec. Work inside a
// namespace runs on a thread that joins it with setns() and exits afterwards, so no agent
// thread ever changes namespace.
#pragma once

#include <functional>
#include <string>

#include "common/error.h"
#include "common/unique_fd.h"

namespace swissbox::netns {

// Makes a new namespace pinned at `path` (a file that must not exist yet).
Status create(const std::string& path);
// Unpins and removes `path`; the namespace itself goes when nothing uses it any more.
// Missing is fine.
Status remove(const std::string& path);
// Whether `path` pins a namespace (a file with a namespace mounted on it).
bool pinned(const std::string& path);
// Opens the namespace pinned at `path` (for setns, or IFLA_NET_NS_FD).
Result<unique_fd> open(const std::string& path);
// Runs fn on a thread inside the namespace and answers what it answers.
Status run_in(const std::string& path, const std::function<Status()>& fn);

}  // namespace swissbox::netns
