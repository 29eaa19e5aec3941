// Language workers on the host: the protocol on fd 3, the program's semantics, and the
// helpers that decide which worker may run what.
#include "runner/workers.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "support/read_all.h"

namespace swissbox::init {
namespace {

using swissbox::testing::read_all;

// Reads the worker's channel until `want` bytes came or it closed (the channel is
// non-blocking on the runner's side).
std::string read_channel(int fd, size_t want) {
  std::string out;
  while (out.size() < want) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 10000) <= 0) break;
    char buf[64];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, n);
  }
  return out;
}

struct Outcome {
  std::string out, err, reply;
  int status = 0;
};

// Starts a worker, waits for "R", hands it the program, collects what it does.
Outcome run(Language lang, const std::string& code) {
  signal(SIGPIPE, SIG_IGN);
  Spawner spawner;
  Worker w;
  std::vector<std::string> env = {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp"};
  EXPECT_EQ(start_worker(spawner, lang, env, "/tmp", &w), 0);
  bool dead = false;
  EXPECT_EQ(read_channel(w.channel.get(), 1), "R");
  EXPECT_FALSE(read_ready(w, &dead));  // nothing more to read yet: not a second "R"
  EXPECT_FALSE(dead);
  std::string program = worker_header(lang, "/tmp", {"PATH=/usr/bin:/bin", "GREETING=hi"}) + code;
  EXPECT_EQ(write(w.channel.get(), program.data(), program.size()), static_cast<ssize_t>(program.size()));
  shutdown(w.channel.get(), SHUT_WR);
  w.io.in.reset();
  Outcome r;
  r.out = read_all(w.io.out.get());
  r.err = read_all(w.io.err.get());
  r.reply = read_channel(w.channel.get(), 16);
  waitpid(w.io.pid, &r.status, 0);
  spawner.on_reaped(w.io.pid);
  return r;
}

TEST(Workers, PythonRunsTheProgramAsMainWithTheRequestsEnvironment) {
  Outcome r = run(Language::kPython,
              "import os, sys\nprint(__name__, sys.argv, os.getcwd(), os.environ['GREETING'], "
              "'HOME' in os.environ)\nsys.exit(3)\n");
  EXPECT_EQ(r.out, "__main__ ['main.py'] /tmp hi False\n") << r.err;
  EXPECT_TRUE(WIFEXITED(r.status));
  EXPECT_EQ(WEXITSTATUS(r.status), 3);
  EXPECT_EQ(r.reply, "");  // Python reports through its exit only
}

TEST(Workers, NodeReportsTheExitAfterItsOutputAndExitListeners) {
  Outcome r = run(Language::kJavaScript,
              "process.on('exit', () => { console.log('bye'); process.exitCode = 7 });"
              "console.log(process.env.GREETING, require('path').basename(__filename))");
  EXPECT_EQ(r.out, "hi main.js\nbye\n") << r.err;
  EXPECT_EQ(r.reply, "X7\n");
  EXPECT_EQ(WEXITSTATUS(r.status), 7);
  Outcome thrown = run(Language::kJavaScript, "throw new Error('boom')");
  EXPECT_NE(thrown.err.find("Error: boom"), std::string::npos);
  EXPECT_EQ(thrown.reply, "");  // an uncaught exception waits for the real exit
  EXPECT_EQ(WEXITSTATUS(thrown.status), 1);
}

TEST(Workers, TypeScriptIsTranspiledInTheWorker) {
  Outcome r = run(Language::kTypeScript, "const n: number = 6 * 7;\nconsole.log(n)");
  EXPECT_EQ(r.out, "42\n") << r.err;
  EXPECT_EQ(r.reply, "X0\n");
  Outcome bad = run(Language::kTypeScript, "const n: number = ;");
  EXPECT_NE(bad.err.find("main.ts:1:19 - error TS1109"), std::string::npos) << bad.err;
  EXPECT_EQ(WEXITSTATUS(bad.status), 1);
}

TEST(Workers, ExitReportsAndStartUpVariables) {
  EXPECT_EQ(reported_exit("RX0\n"), 0);
  EXPECT_EQ(reported_exit("X255\n"), 255);
  EXPECT_EQ(reported_exit("X300\n"), 300 & 0xff);
  EXPECT_FALSE(reported_exit("X12").has_value());   // not complete yet
  EXPECT_FALSE(reported_exit("X\n").has_value());
  EXPECT_FALSE(reported_exit("Xab\n").has_value());
  EXPECT_FALSE(reported_exit("R").has_value());
  std::vector<std::string> base = {"PATH=/usr/bin", "HOME=/workspace", "LC_CTYPE=C.UTF-8"};
  EXPECT_TRUE(worker_env_compatible(base, {"LC_CTYPE=C.UTF-8", "PATH=/bin", "X=1"}));
  EXPECT_FALSE(worker_env_compatible(base, {"LC_CTYPE=C.UTF-8", "PYTHONPATH=/x"}));
  EXPECT_FALSE(worker_env_compatible(base, {"LC_CTYPE=C.UTF-8", "NODE_OPTIONS=--x"}));
  EXPECT_FALSE(worker_env_compatible(base, {"LC_CTYPE=C.UTF-8", "TZ=UTC"}));
  EXPECT_FALSE(worker_env_compatible(base, {}));
  EXPECT_EQ(language_from_name("typescript"), Language::kTypeScript);
  EXPECT_FALSE(language_from_name("bash").has_value());
  EXPECT_STREQ(program_file(Language::kPython), "main.py");
}

}  // namespace
}  // namespace swissbox::init
