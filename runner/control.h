// The runner's control channel: the socket pair runsc's start gave it, or later a proven
// reattach bridge's connection (agent restart). Frames go out whole; a write may wait for
// the agent, which always reads. Also the other end of a reattach: `swissbox-init
// --bridge` (bridge()), which relays runsc exec's stdio to the runner's abstract socket.
#pragma once

#include <sys/un.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace swissbox::init {

// Where the channel reads and writes (-1 for g_out_fd: no agent; events are dropped until
// one returns).
extern int g_in_fd;
extern int g_out_fd;

// The runner's reattach socket: abstract (nothing on any filesystem), in the sandbox's
// network namespace.
inline constexpr char kBridgeName[] = "swissbox-runner";
sockaddr_un bridge_address(socklen_t* len);

void send(const nlohmann::json& header, std::string_view payload = {});
void send_result(uint64_t id, nlohmann::json fields = nlohmann::json::object());
// A failed result: errno and "what: strerror(errno)".
void send_error(uint64_t id, int err, const std::string& what);

// --bridge: relays this process's stdin/stdout to the runner's control socket until either
// side closes; the exit code of swissbox-init --bridge.
int bridge();

}  // namespace swissbox::init
