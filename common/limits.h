// The limits and deadlines of one request, shared by everything that must agree on them:
// the agent enforces them, the runner (swissbox-init) stops at them, and the scheduler
// waits as long as they allow before it calls a node silent.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace swissbox::limits {

using std::chrono::milliseconds;

// A command's output kept per stream (stdout, stderr), unless the request asks otherwise.
inline constexpr size_t kDefaultOutputCap = 1 << 20;
inline constexpr size_t kMaxOutputCap = 16 << 20;
inline constexpr int64_t kDefaultExecTimeoutMs = 60000;
inline constexpr int64_t kMaxExecTimeoutMs = 3600 * 1000;
// A file's bytes in one upload or download.
inline constexpr size_t kMaxFileBytes = 64 << 20;
// Entries of one directory listing (the runner stops listing there).
inline constexpr size_t kMaxListEntries = 10000;

// The agent's own guard above a command's timeout: past it the request answers
// deadline_exceeded even if the runner never does.
inline constexpr milliseconds kExecGrace{10000};
// The deadline of one file request (read, write, list, delete) in the sandbox.
inline constexpr milliseconds kFileOpDeadline{60000};
// How long a new sandbox may take to start (a claim that finds no warm one starts one).
inline constexpr milliseconds kReadyTimeout{15000};
// How long a package layer's build may take by default (the agent's --build-timeout): what
// the first create with pre_install_packages may wait for.
inline constexpr std::chrono::seconds kDefaultBuildTimeout{300};

// Stateful code contexts per sandbox, and how long one may take to load its interpreter
// (tens of milliseconds on a host, hundreds in gVisor, TypeScript's transpiler the most; a
// minute is a sandbox that is stuck).
inline constexpr size_t kMaxContexts = 16;
inline constexpr milliseconds kContextStartDeadline{60000};
// Directory watches per sandbox (envd's WatchDir and watchers), the directories one
// recursive watch may hold, and the changes a watcher keeps for its next GetWatcherEvents.
inline constexpr size_t kMaxWatches = 16;
inline constexpr size_t kMaxWatchedDirs = 4096;
inline constexpr size_t kMaxWatcherBacklog = 10000;
// A cell of E2B's /execute: as long as E2B's own default allows (a client that leaves
// interrupts it).
inline constexpr int64_t kInterpreterRunTimeoutMs = 300000;

}  // namespace swissbox::limits
