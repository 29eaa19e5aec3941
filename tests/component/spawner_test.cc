// The runner's process starter: the spare path, the posix_spawn fallback, and the spare
// going away (killed, stopped) between commands.
#include "runner/spawner.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>

#include "support/read_all.h"

namespace swissbox::init {
namespace {

using Clock = std::chrono::steady_clock;

using swissbox::testing::read_all;

struct Ran {
  int err = 0;
  std::string out, err_text;
  int status = 0;
};

// Launches, closes stdin, collects output and reaps the command (telling the spawner).
Ran run(Spawner& sp, LaunchRequest req) {
  Ran r;
  Launched l;
  r.err = sp.launch(req, &l);
  if (r.err != 0) return r;
  l.in.reset();
  r.out = read_all(l.out.get());
  r.err_text = read_all(l.err.get());
  waitpid(l.pid, &r.status, 0);
  sp.on_reaped(l.pid);
  return r;
}

LaunchRequest echo(const std::string& word) {
  return {{"echo", word}, {"PATH=/usr/bin:/bin"}, "/"};
}

// Reaps a spare the test killed, as the runner's SIGCHLD handling would.
void reap(Spawner& sp, pid_t pid) {
  waitpid(pid, nullptr, 0);
  sp.on_reaped(pid);
}

class SpawnerEnv : public ::testing::Environment {
  void SetUp() override { signal(SIGPIPE, SIG_IGN); }  // as in the runner
};
const auto* const kEnv = ::testing::AddGlobalTestEnvironment(new SpawnerEnv);

TEST(Spawner, RunsTheCommandInAPreparedSpare) {
  Spawner sp;
  sp.prepare();
  pid_t spare = sp.spare_pid();
  ASSERT_GT(spare, 0);
  Launched l;
  ASSERT_EQ(sp.launch(echo("hi"), &l), 0);
  EXPECT_EQ(l.pid, spare);
  EXPECT_EQ(getpgid(l.pid), l.pid);  // its own process group, for group kills
  l.in.reset();
  EXPECT_EQ(read_all(l.out.get()), "hi\n");
  int status = 0;
  waitpid(l.pid, &status, 0);
  sp.on_reaped(l.pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(sp.spare_pid(), -1);
}

TEST(Spawner, WorksWithoutASpareAndPassesEnvCwdAndStdin) {
  Spawner sp;
  Launched l;
  ASSERT_EQ(sp.launch({{"/bin/sh", "-c", "pwd; echo $X; cat"}, {"X=42"}, "/tmp"}, &l), 0);
  ASSERT_EQ(write(l.in.get(), "in\n", 3), 3);
  l.in.reset();
  EXPECT_EQ(read_all(l.out.get()), "/tmp\n42\nin\n");
  waitpid(l.pid, nullptr, 0);
}

TEST(Spawner, ReportsAMissingCommandOrCwdWithBothPaths) {
  for (bool spare : {true, false}) {
    Spawner sp;
    if (spare) sp.prepare();
    EXPECT_EQ(run(sp, {{"no-such-command"}, {"PATH=/usr/bin:/bin"}, "/"}).err, ENOENT);
    if (spare) sp.prepare();
    EXPECT_EQ(run(sp, {{"/bin/true"}, {}, "/no/such/dir"}).err, ENOENT);
    // The failed spare exits; once reaped, nothing of it is left.
    int status = 0;
    while (waitpid(-1, &status, WNOHANG) > 0) {
    }
  }
}

TEST(Spawner, ASpareThatWasKilledIsReplacedByTheFallback) {
  Spawner sp;
  sp.prepare();
  pid_t spare = sp.spare_pid();
  kill(spare, SIGKILL);
  siginfo_t info{};
  waitid(P_PID, spare, &info, WEXITED | WNOWAIT);  // dead, but not reaped yet
  // The launch finds the spare dead by itself.
  Ran r = run(sp, echo("after kill"));
  EXPECT_EQ(r.err, 0);
  EXPECT_EQ(r.out, "after kill\n");
  reap(sp, spare);
}

TEST(Spawner, AStoppedSpareIsGivenUpWithinItsDeadline) {
  Spawner sp;
  sp.prepare();
  pid_t spare = sp.spare_pid();
  kill(spare, SIGSTOP);
  auto t0 = Clock::now();
  Ran r = run(sp, echo("after stop"));
  EXPECT_EQ(r.out, "after stop\n");
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(5));
  reap(sp, spare);  // killed by the spawner
}

TEST(Spawner, TheSpareKeepsNoCopyOfOtherPipes) {
  // A command reading stdin sees EOF once the runner closes its end, even though a spare
  // was made while the command ran.
  Spawner sp;
  Launched cat;
  ASSERT_EQ(sp.launch({{"/bin/cat"}, {}, "/"}, &cat), 0);
  sp.prepare();
  cat.in.reset();
  EXPECT_EQ(read_all(cat.out.get()), "");  // returns: cat got EOF and exited
  waitpid(cat.pid, nullptr, 0);
}

// /bin/bash and /usr/bin/bash run the static build when there is one (here /bin/sh stands
// in for it), with argv as given; any other program, bash found through PATH included, runs
// as named, and so does /bin/bash when the static build is missing.
TEST(Spawner, BashByItsPathRunsTheStaticBuildWithArgvUnchanged) {
  const std::string script = "echo $0; readlink /proc/$$/exe; :";  // not exec'd as the last
  const std::string sh = std::filesystem::canonical("/bin/sh").string();
  const std::string bash = std::filesystem::canonical("/bin/bash").string();
  ASSERT_NE(sh, bash);
  for (bool spare : {true, false}) {
    Spawner with("/bin/sh");
    Spawner without("/no/such/bash-static");
    auto ran = [spare](Spawner& sp, const std::string& argv0, const std::string& cmd) {
      if (spare) sp.prepare();
      return run(sp, {{argv0, "-c", cmd}, {"PATH=/usr/bin:/bin"}, "/"}).out;
    };
    EXPECT_EQ(ran(with, "/bin/bash", script), "/bin/bash\n" + sh + "\n");
    EXPECT_EQ(ran(with, "/usr/bin/bash", script), "/usr/bin/bash\n" + sh + "\n");
    EXPECT_EQ(ran(with, "bash", script), "bash\n" + bash + "\n");
    EXPECT_EQ(ran(without, "/bin/bash", script), "/bin/bash\n" + bash + "\n");
  }
}

}  // namespace
}  // namespace swissbox::init

namespace swissbox::init {
namespace {

// Both paths give the command the task limit, soft and hard, so it cannot raise it.
TEST(Spawner, CommandsGetTheTaskLimitOnBothPaths) {
  Spawner sp;
  LaunchRequest req{{"grep", "Max processes", "/proc/self/limits"}, {"PATH=/usr/bin:/bin"}, "/", 64};
  Ran fallback = run(sp, req);  // no spare prepared yet: posix_spawn
  sp.prepare();
  Ran spare = run(sp, req);
  for (const Ran& r : {fallback, spare}) {
    ASSERT_EQ(r.err, 0);
    EXPECT_NE(r.out.find("64                   64"), std::string::npos) << r.out;
  }
  // The runner's own limit is untouched.
  rlimit own{};
  getrlimit(RLIMIT_NPROC, &own);
  EXPECT_NE(own.rlim_cur, 64u);
}

}  // namespace
}  // namespace swissbox::init
