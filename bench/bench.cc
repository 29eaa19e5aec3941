// swissbox-bench: latency of the paths that matter, measured in one run so ratios are fair.
//   cold        runsc create + start + exec `echo hi` + (untimed) delete, straight via the CLI
//   runsc-exec  `runsc exec echo hi` on one running container (the CLI exec baseline)
//   warm        claim (POST /v1/sandboxes) + exec `echo hi` through the agent; delete untimed;
//               "claim" reports the claim alone (--network egress: sandboxes with network)
//   exec        exec `echo hi` on one existing sandbox through the agent
//   oneshot     POST /v1/execute with --lang python|bash|javascript|typescript
// Prints p50/p90/p99/max per scenario and the ratios to cold / runsc-exec; --json FILE too.
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/fs.h"
#include "common/http_client.h"
#include "common/process.h"
#include "common/unique_fd.h"

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using swissbox::ProcessOptions;
using swissbox::run_process;

namespace {

struct Options {
  std::vector<std::string> scenarios;
  std::string target = "127.0.0.1:7700";
  std::string runsc = "/usr/bin/runsc";
  std::string platform = "ptrace";
  std::string lang = "python";
  std::string json_out;
  std::string network = "none";  // warm/exec sandboxes: "none" or "egress"
  int iterations = 30;
  std::string pool() const { return network == "none" ? "default" : "default:" + network; }
  json create_body() const { return network == "none" ? json::object() : json{{"network", network}}; }
};

struct Stats {
  std::vector<double> ms;
  int errors = 0;
  double pct(double p) const {
    if (ms.empty()) return 0;
    std::vector<double> s = ms;
    std::sort(s.begin(), s.end());
    size_t i = std::min(s.size() - 1, static_cast<size_t>(p / 100.0 * s.size()));
    return s[i];
  }
};

[[noreturn]] void die(const std::string& m) {
  fprintf(stderr, "swissbox-bench: %s\n", m.c_str());
  exit(1);
}

double since_ms(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

void progress(const std::string& name, int i, int n) {
  if (isatty(STDERR_FILENO)) fprintf(stderr, "\r%-12s %d/%d", name.c_str(), i, n);
  if (i == n && isatty(STDERR_FILENO)) fprintf(stderr, "\n");
}

// A minimal bundle of its own (read-only binds of the host's /usr, merged-usr symlinks):
// the bench measures runsc, not the agent's bundle code.
class CliBaseline {
 public:
  explicit CliBaseline(const Options& o) : o_(o) {
    char tmpl[] = "/tmp/swissbox-bench-XXXXXX";
    dir_ = mkdtemp(tmpl);
    std::string rootfs = dir_ + "/bundle/rootfs";
    for (const char* d : {"/usr", "/proc", "/dev", "/tmp", "/etc"}) {
      if (!swissbox::fs::make_dirs(rootfs + d)) die("mkdir " + rootfs + d);
    }
    for (const char* l : {"bin", "lib", "lib64", "sbin"}) {
      symlink((std::string("usr/") + l).c_str(), (rootfs + "/" + l).c_str());
    }
    json config = {{"ociVersion", "1.0.2"},
                   {"root", {{"path", "rootfs"}, {"readonly", true}}},
                   {"process",
                    {{"args", {"/bin/sleep", "infinity"}},
                     {"cwd", "/"},
                     {"env", {"PATH=/usr/bin:/bin"}},
                     {"user", {{"uid", 1000}, {"gid", 1000}}}}},
                   {"mounts",
                    {{{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}},
                     {{"destination", "/tmp"}, {"type", "tmpfs"}, {"source", "tmpfs"}},
                     {{"destination", "/usr"},
                      {"type", "bind"},
                      {"source", "/usr"},
                      {"options", {"rbind", "ro"}}}}},
                   {"linux",
                    {{"namespaces",
                      {{{"type", "pid"}},
                       {{"type", "mount"}},
                       {{"type", "network"}},
                       {{"type", "ipc"}},
                       {{"type", "uts"}}}}}}};
    if (!swissbox::fs::write_file_atomic(dir_ + "/bundle/config.json", config.dump()))
      die("write bundle");
  }
  ~CliBaseline() { (void)swissbox::fs::remove_tree(dir_); }

  // runsc create hands its stdio to the container: give it /dev/null, not pipes we would
  // wait on until the container exits.
  bool run(std::initializer_list<std::string> args, bool detach_stdio = false) {
    ProcessOptions p;
    swissbox::unique_fd null_fd(open("/dev/null", O_RDWR | O_CLOEXEC));
    if (detach_stdio) p.stdin_fd = p.stdout_fd = p.stderr_fd = null_fd.get();
    p.argv = {o_.runsc,    "--root", dir_ + "/root", "--platform", o_.platform,
              "--network", "none",   "--overlay2",   "none"};
    p.argv.insert(p.argv.end(), args);
    p.timeout = std::chrono::seconds(30);
    auto r = run_process(p);
    return r.ok() && r->exit_code == 0;
  }
  std::string bundle() const { return dir_ + "/bundle"; }

 private:
  const Options& o_;
  std::string dir_;
};

Stats bench_cold(const Options& o) {
  CliBaseline cli(o);
  Stats s;
  for (int i = 0; i < o.iterations; ++i) {
    std::string id = fmt::format("bench-cold-{}-{}", getpid(), i);
    auto t0 = Clock::now();
    bool ok = cli.run({"create", "--bundle", cli.bundle(), id}, true) && cli.run({"start", id}) &&
              cli.run({"exec", id, "/bin/echo", "hi"});
    double ms = since_ms(t0);
    cli.run({"delete", "--force", id});
    ok ? s.ms.push_back(ms) : void(s.errors++);
    progress("cold", i + 1, o.iterations);
  }
  return s;
}

Stats bench_runsc_exec(const Options& o) {
  CliBaseline cli(o);
  Stats s;
  std::string id = fmt::format("bench-exec-{}", getpid());
  if (!cli.run({"create", "--bundle", cli.bundle(), id}, true) || !cli.run({"start", id}))
    die("runsc start failed");
  for (int i = 0; i < o.iterations; ++i) {
    auto t0 = Clock::now();
    bool ok = cli.run({"exec", id, "/bin/echo", "hi"});
    ok ? s.ms.push_back(since_ms(t0)) : void(s.errors++);
    progress("runsc-exec", i + 1, o.iterations);
  }
  cli.run({"delete", "--force", id});
  return s;
}

json call(swissbox::http::Client& c, std::string_view method, const std::string& path,
          const json& body, unsigned want) {
  auto r = c.request(method, path, body.is_null() ? "" : body.dump());
  if (!r || r->status != want) return nullptr;
  return r->body.empty() ? json::object() : json::parse(r->body, nullptr, false);
}

// Lets the pool refill completely and earlier deletes finish between iterations: warm
// scenarios measure one claim on a node whose pool is full and idle (no runsc start or
// delete competing for the CPU).
void wait_for_warm(swissbox::http::Client& c, const std::string& pool) {
  // A scheduler serves no /v1/warmpool: there, wait one report interval, then until every
  // usable node reports a warm sandbox of the template.
  if (call(c, "GET", "/v1/warmpool", nullptr, 200).is_null()) {
    usleep(1100000);
    for (int w = 0; w < 100; ++w) {
      json nodes = call(c, "GET", "/v1/nodes", nullptr, 200);
      bool warm = !nodes.is_null();
      for (const auto& n : warm ? nodes["nodes"] : json::array()) {
        if (n.value("up", false) && n.value("allowed_region", false) && !n.value("draining", false))
          warm = warm && n["warm"].value(pool, 0) > 0;
      }
      if (warm) return;
      usleep(50000);
    }
    return;
  }
  for (int w = 0; w < 400; ++w) {
    json p = call(c, "GET", "/v1/warmpool", nullptr, 200);
    json n = call(c, "GET", "/v1/node", nullptr, 200);
    if (!p.is_null() && !n.is_null() && n.value("deleting", 0) == 0) {
      const json& d = p["templates"][pool];
      if (d.value("ready", 0) > 0 && d.value("ready", 0) >= d.value("target", 0) &&
          d.value("starting", 0) == 0)
        return;
    }
    usleep(50000);
  }
}

// Claim + first exec, and the claim alone.
std::pair<Stats, Stats> bench_warm(const Options& o) {
  swissbox::http::Client c(o.target);
  Stats s, claim;
  for (int i = 0; i < o.iterations; ++i) {
    wait_for_warm(c, o.pool());
    auto t0 = Clock::now();
    json sb = call(c, "POST", "/v1/sandboxes", o.create_body(), 201);
    sb.is_null() ? void(claim.errors++) : claim.ms.push_back(since_ms(t0));
    json r = sb.is_null() ? json()
                          : call(c, "POST", "/v1/sandboxes/" + sb.value("id", "") + "/exec",
                                 {{"command", {"echo", "hi"}}}, 200);
    double ms = since_ms(t0);
    bool ok = !r.is_null() && r.value("stdout", "") == "hi\n";
    if (!sb.is_null()) call(c, "DELETE", "/v1/sandboxes/" + sb.value("id", ""), nullptr, 204);
    ok ? s.ms.push_back(ms) : void(s.errors++);
    progress("warm", i + 1, o.iterations);
  }
  return {s, claim};
}

Stats bench_exec(const Options& o) {
  swissbox::http::Client c(o.target);
  Stats s;
  wait_for_warm(c, o.pool());
  json sb = call(c, "POST", "/v1/sandboxes", o.create_body(), 201);
  if (sb.is_null()) die("cannot create a sandbox on " + o.target);
  // Steady state: the refill that the claim started (a runsc create, CPU-heavy) is over.
  wait_for_warm(c, o.pool());
  std::string path = "/v1/sandboxes/" + sb.value("id", "") + "/exec";
  // A fresh sandbox's first commands are slower while gVisor fills its caches; the first
  // exec is what the warm scenario measures, this one the steady state of a session.
  constexpr int kWarmup = 10;
  for (int i = 0; i < o.iterations + kWarmup; ++i) {
    auto t0 = Clock::now();
    json r = call(c, "POST", path, {{"command", {"echo", "hi"}}}, 200);
    double ms = since_ms(t0);
    if (i < kWarmup) continue;
    (!r.is_null() && r.value("stdout", "") == "hi\n") ? s.ms.push_back(ms) : void(s.errors++);
    progress("exec", i - kWarmup + 1, o.iterations);
  }
  call(c, "DELETE", "/v1/sandboxes/" + sb.value("id", ""), nullptr, 204);
  return s;
}

Stats bench_oneshot(const Options& o) {
  static const std::map<std::string, std::pair<std::string, std::string>> kCode = {
      {"python", {"print(6*7)", "42\n"}},
      {"bash", {"echo $((6*7))", "42\n"}},
      {"javascript", {"console.log(6*7)", "42\n"}},
      {"typescript", {"const x: number = 6*7; console.log(x)", "42\n"}}};
  auto it = kCode.find(o.lang);
  if (it == kCode.end()) die("unknown --lang " + o.lang);
  swissbox::http::Client c(o.target);
  Stats s;
  for (int i = 0; i < o.iterations; ++i) {
    wait_for_warm(c, "default");
    auto t0 = Clock::now();
    json r =
        call(c, "POST", "/v1/execute", {{"language", o.lang}, {"code", it->second.first}}, 200);
    double ms = since_ms(t0);
    (!r.is_null() && r.value("stdout", "") == it->second.second) ? s.ms.push_back(ms)
                                                                 : void(s.errors++);
    progress("oneshot", i + 1, o.iterations);
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--target")
      o.target = next();
    else if (a == "--iterations")
      o.iterations = std::max(1, atoi(next().c_str()));
    else if (a == "--runsc")
      o.runsc = next();
    else if (a == "--platform")
      o.platform = next();
    else if (a == "--lang")
      o.lang = next();
    else if (a == "--json")
      o.json_out = next();
    else if (a == "--network") {
      o.network = next();
      if (o.network != "none" && o.network != "egress") die("--network must be none or egress");
    }
    else if (a == "--help") {
      puts(
          "usage: swissbox-bench SCENARIO... [--target HOST:PORT] [--iterations N] [--lang L]\n"
          "                      [--platform ptrace|systrap] [--runsc PATH] [--json FILE]\n"
          "                      [--network none|egress]\n"
          "scenarios: cold runsc-exec warm exec oneshot");
      return 0;
    } else if (a.rfind("--", 0) == 0)
      die("unknown option " + a);
    else
      o.scenarios.push_back(a);
  }
  if (o.scenarios.empty()) o.scenarios = {"cold", "runsc-exec", "warm", "exec"};
  std::map<std::string, Stats> results;
  for (const auto& sc : o.scenarios) {
    if (sc == "cold")
      results[sc] = bench_cold(o);
    else if (sc == "runsc-exec")
      results[sc] = bench_runsc_exec(o);
    else if (sc == "warm")
      std::tie(results[sc], results["claim"]) = bench_warm(o);
    else if (sc == "exec")
      results[sc] = bench_exec(o);
    else if (sc == "oneshot")
      results[sc + "-" + o.lang] = bench_oneshot(o);
    else
      die("unknown scenario " + sc);
  }
  json out = json::object();
  printf(
      "| scenario | n | errors | p50 ms | p90 ms | p99 ms | max ms | vs baseline "
      "|\n|---|---|---|---|---|---|---|---|\n");
  for (const auto& [name, s] : results) {
    std::string ratio;
    std::string base = name == "exec" ? "runsc-exec" : "cold";
    if (name != base && results.count(base) && s.pct(50) > 0) {
      ratio = fmt::format("{:.1f}x faster than {} p50", results[base].pct(50) / s.pct(50), base);
    }
    printf("| %s | %zu | %d | %.1f | %.1f | %.1f | %.1f | %s |\n", name.c_str(), s.ms.size(),
           s.errors, s.pct(50), s.pct(90), s.pct(99), s.pct(100), ratio.c_str());
    out[name] = {{"n", s.ms.size()},    {"errors", s.errors},  {"p50_ms", s.pct(50)},
                 {"p90_ms", s.pct(90)}, {"p99_ms", s.pct(99)}, {"max_ms", s.pct(100)}};
  }
  if (!o.json_out.empty() && !swissbox::fs::write_file_atomic(o.json_out, out.dump(2)))
    die("write " + o.json_out);
  return 0;
}
