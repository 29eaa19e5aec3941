#include "runner/control.h"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>

#include "common/runner_protocol.h"
#include "common/unique_fd.h"

namespace swissbox::init {

using json = nlohmann::json;
namespace proto = swissbox::proto;

int g_in_fd = STDIN_FILENO;
int g_out_fd = STDOUT_FILENO;


sockaddr_un bridge_address(socklen_t* len) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  memcpy(a.sun_path + 1, kBridgeName, sizeof(kBridgeName) - 1);
  *len = offsetof(sockaddr_un, sun_path) + 1 + sizeof(kBridgeName) - 1;
  return a;
}

void send(const json& header, std::string_view payload) {
  if (g_out_fd < 0) return;
  std::string buf = swissbox::proto::encode(header, payload);
  size_t off = 0;
  while (off < buf.size()) {
    ssize_t n = write(g_out_fd, buf.data() + off, buf.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      pollfd p{g_out_fd, POLLOUT, 0};
      poll(&p, 1, -1);
      continue;
    }
    if (n <= 0) {  // the agent went away: keep running, drop events until it returns
      g_out_fd = -1;
      return;
    }
    off += n;
  }
}

void send_result(uint64_t id, json fields) { send(proto::result_event(id, std::move(fields))); }

void send_error(uint64_t id, int err, const std::string& what) {
  send(proto::error_event(id, err, what + ": " + std::strerror(err)));
}

bool AttachListener::listen() {
  unsigned char b[16];
  if (getrandom(b, sizeof(b), 0) != static_cast<ssize_t>(sizeof(b))) return false;
  static const char kHex[] = "0123456789abcdef";
  for (unsigned char c : b) secret_ += kHex[c >> 4], secret_ += kHex[c & 15];
  listener_.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  socklen_t len;
  sockaddr_un a = bridge_address(&len);
  if (!listener_ || bind(listener_.get(), reinterpret_cast<sockaddr*>(&a), len) != 0 ||
      ::listen(listener_.get(), 4) != 0) {
    listener_.reset();
    secret_.clear();
    return false;
  }
  return true;
}

void AttachListener::add_pollfds(std::vector<pollfd>* fds, bool orphaned) const {
  if (listener_ && orphaned && candidates_.size() < kMaxCandidates) fds->push_back({listener_.get(), POLLIN, 0});
  for (const auto& c : candidates_) fds->push_back({c.fd.get(), POLLIN, 0});
}

std::optional<AttachListener::Proven> AttachListener::on_ready(int fd, char* buf, size_t size) {
  if (listener_ && fd == listener_.get()) {
    unique_fd conn(accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (conn) candidates_.push_back({std::move(conn), {}, Clock::now() + kAttachWindow});
    return std::nullopt;
  }
  auto it = std::find_if(candidates_.begin(), candidates_.end(), [fd](const Candidate& c) { return c.fd.get() == fd; });
  if (it == candidates_.end()) return std::nullopt;
  ssize_t r = read(fd, buf, size);
  if (r < 0 && (errno == EAGAIN || errno == EINTR)) return std::nullopt;
  if (r <= 0) return candidates_.erase(it), std::nullopt;
  it->decoder.feed(buf, r);
  auto frame = it->decoder.next();
  if (!frame) {
    if (!it->decoder.error().empty() || it->decoder.buffered() > 4096) candidates_.erase(it);
    return std::nullopt;
  }
  const nlohmann::json& h = frame->header;
  auto op = h.find("op");
  auto secret = h.find("secret");
  bool proven = op != h.end() && *op == "attach" && secret != h.end() && secret->is_string() &&
                same_secret(secret->get<std::string>());
  if (!proven) return candidates_.erase(it), std::nullopt;
  Proven winner{std::move(it->fd), std::move(it->decoder)};
  candidates_.clear();  // the others were not the agent
  return winner;
}

void AttachListener::expire(Clock::time_point now) {
  std::erase_if(candidates_, [now](const Candidate& c) { return now >= c.deadline; });
}

AttachListener::Clock::time_point AttachListener::next_deadline() const {
  auto next = Clock::time_point::max();
  for (const auto& c : candidates_) next = std::min(next, c.deadline);
  return next;
}

bool AttachListener::same_secret(const std::string& s) const {
  if (secret_.empty() || s.size() != secret_.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < s.size(); ++i) diff |= static_cast<unsigned char>(s[i] ^ secret_[i]);
  return diff == 0;
}

// --bridge: relays this process's stdin/stdout (the pipes of `runsc exec`, held by a
// restarted agent) to the runner's control socket, until either side closes.
int bridge() {
  swissbox::unique_fd sock(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  socklen_t len;
  sockaddr_un a = bridge_address(&len);
  if (!sock || connect(sock.get(), reinterpret_cast<sockaddr*>(&a), len) != 0) {
    fprintf(stderr, "swissbox-init --bridge: connect to the runner: %s\n", strerror(errno));
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  prctl(PR_SET_DUMPABLE, 0);  // as the runner: no ptrace from the sandbox's code
  struct Leg {
    int from, to;
  } legs[2] = {{STDIN_FILENO, sock.get()}, {sock.get(), STDOUT_FILENO}};
  char buf[64 * 1024];
  for (;;) {
    pollfd p[2] = {{legs[0].from, POLLIN, 0}, {legs[1].from, POLLIN, 0}};
    if (poll(p, 2, -1) < 0 && errno != EINTR) return 1;
    for (int i = 0; i < 2; ++i) {
      if (p[i].revents == 0) continue;
      ssize_t r = read(legs[i].from, buf, sizeof buf);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return 0;
      for (ssize_t off = 0; off < r;) {
        ssize_t w = write(legs[i].to, buf + off, r - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return 0;
        off += w;
      }
    }
  }
}


}  // namespace swissbox::init
