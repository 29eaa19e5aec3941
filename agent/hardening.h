// What the agent gives up once it has started: every capability neither it nor the runsc
// it starts needs (bounding, effective, permitted and inheritable sets), and the system
// calls no part of it makes (a libseccomp filter, inherited by runsc). The same deny list
// is seccomp-profiles/agent.json, the kubelet Localhost profile of the agent container; a
// test keeps the two equal.
//
// Call it first thing in main: capability sets are per thread, so threads made earlier
// would keep theirs.
#pragma once

#include <string>
#include <vector>

#include "common/error.h"

namespace swissbox {

// Capability names ("CAP_SYS_ADMIN") the agent keeps; all others are dropped.
const std::vector<std::string>& kept_capabilities();
// System calls the agent and its children may not make (they fail with EPERM).
const std::vector<std::string>& denied_syscalls();

struct HardeningReport {
  int capabilities_dropped = 0;
  int syscalls_denied = 0;  // of denied_syscalls(), those this architecture has
};

Result<HardeningReport> harden_agent();

}  // namespace swissbox
