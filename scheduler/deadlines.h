// How long the scheduler waits for an agent's answer to one call: as long as the agent's
// own deadline for that operation allows (common/limits.h), plus slack for queueing and
// the network. A node silent past that is reported as such; a node still within it is
// waited for, so that a slow but successful operation (a large upload on a busy disk)
// is not answered 503 while the node answers 200.
#pragma once

#include <chrono>
#include <string_view>

#include "common/limits.h"

namespace swissbox::sched {

struct AgentDeadlines {
  std::chrono::milliseconds exec_grace = limits::kExecGrace;
  std::chrono::milliseconds file_op = limits::kFileOpDeadline;
  std::chrono::milliseconds ready = limits::kReadyTimeout;
  // Commands waiting for the node's exec gate, runsc's own latency, the network.
  std::chrono::milliseconds slack{30000};

  // The deadline of `method path` with its JSON body (commands carry their timeout_ms).
  // It bounds the wait for the answer's head and for each next piece of its body (a
  // streamed command may be silent for its whole timeout); sending has its own bound.
  std::chrono::milliseconds for_call(std::string_view method, std::string_view path,
                                     std::string_view body) const;
};

}  // namespace swissbox::sched
