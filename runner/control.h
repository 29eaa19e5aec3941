// The runner's control channel: the socket pair runsc's start gave it, or later a proven
// reattach bridge's connection (agent restart). Frames go out whole; a write may wait for
// the agent, which always reads. The reattach socket and the proof a connection to it must
// give (AttachListener), and the other end of a reattach: `swissbox-init --bridge`
// (bridge()), which relays runsc exec's stdio to the runner's abstract socket.
#pragma once

#include <poll.h>
#include <sys/un.h>

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/runner_protocol.h"
#include "common/unique_fd.h"

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

// The runner's reattach socket (PID 1 only). Anyone in the sandbox can connect to it: a
// connection becomes the controller only once its first frame is {"op":"attach",
// "secret":…} with the secret of the runner's first hello (which went to the agent on the
// channel runsc gave it, which nothing else in the sandbox can read), within kAttachWindow;
// at most kMaxCandidates wait to prove themselves, and the listener is polled only while
// the runner has no controller (a process in the sandbox cannot take the channel from a
// live agent).
class AttachListener {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr size_t kMaxCandidates = 8;
  static constexpr auto kAttachWindow = std::chrono::seconds(2);

  // Makes the secret and listens; false (no reattach for this sandbox, everything else
  // works) when either fails.
  bool listen();
  bool listening() const { return static_cast<bool>(listener_); }
  const std::string& secret() const { return secret_; }

  // The poll loop: the listener (while `orphaned`) and the candidates, then each ready one
  // of them handed back.
  void add_pollfds(std::vector<pollfd>* fds, bool orphaned) const;
  // A connection that proved itself: the new controller, with what it sent after its
  // attach frame still in the decoder. The other candidates are dropped then.
  struct Proven {
    unique_fd fd;
    proto::Decoder decoder;
  };
  std::optional<Proven> on_ready(int fd, char* buf, size_t size);
  // Candidates past their window are dropped.
  void expire(Clock::time_point now);
  Clock::time_point next_deadline() const;

 private:
  struct Candidate {
    unique_fd fd;
    proto::Decoder decoder;
    Clock::time_point deadline;
  };
  bool same_secret(const std::string& s) const;

  unique_fd listener_;
  std::vector<Candidate> candidates_;
  std::string secret_;
};

// --bridge: relays this process's stdin/stdout to the runner's control socket until either
// side closes; the exit code of swissbox-init --bridge.
int bridge();

}  // namespace swissbox::init
