// swissbox-pause: the process of a pod sandbox image built locally (no registry): it holds
// the pod's namespaces and does nothing else until told to stop. Static, so that the image
// is one file.
#include <csignal>
#include <unistd.h>

namespace {
volatile sig_atomic_t stop = 0;
void on_signal(int) { stop = 1; }
}  // namespace

int main() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  signal(SIGCHLD, SIG_IGN);  // as pid 1 of a pod: never keep zombies
  while (!stop) pause();
  return 0;
}
