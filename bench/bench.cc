// swissbox-bench: latency and throughput of the paths that matter, measured in one run so
// that ratios are fair. Scenarios:
//   cold         runsc create + start + exec `echo hi` + (untimed) delete, straight via the CLI;
//                with oneshot also cold-<lang>: the same with the language's interpreter
//   runsc-exec   `runsc exec echo hi` on one running container (the CLI exec baseline), and
//                runsc-exec-shell: `runsc exec bash -c "echo hi"`, alternating
//   warm         claim (POST /v1/sandboxes) + exec `echo hi` through the API; delete untimed;
//                "claim" reports the claim alone (--network egress: sandboxes with network)
//   exec         exec `echo hi` on one existing sandbox, and exec-shell: the shell string
//                "echo hi" (bash -c), alternating
//   oneshot      POST /v1/execute for each --lang (python, bash, javascript, typescript)
//   concurrency  --concurrency levels (1,2,4,8,16,32): each client execs on its own sandbox
//   refill       empties a pool, raises its target to --pool-size, times until all are
//                ready: the plain pool and each --lang pool the agent has (agent only),
//                with the node CPU per sandbox when the agent runs on this machine
//   memory       PSS/RSS of idle warm sandboxes per pool and of active ones (agent only)
//   sustained    one-shots (--lang's first) at --rate per second (default: the refill rate
//                of that language's pool, measured) on a pool of --pool-size, counting
//                cold-start fallbacks (agent only); on this machine also the node CPU per
//                one-shot and so the rate the node's CPUs can carry
//   suspend      one sandbox with a Python context holding a variable: suspend (timed), then
//                exec `echo hi`, which resumes it (timed: resume to the first result; its
//                baseline is cold, measured in this run if not asked for); the variable is
//                checked at the end; checkpoint sizes of it and of an idle sandbox
//   density      --density S,L: S sandboxes suspended next to L live idle ones; host
//                processes and memory of the suspended ones, the agent's CPU over --idle
//                seconds, checkpoint sizes (agent on this machine)
//   template     --image REF on an agent with its node's containerd: the image template's PUT
//                until ready (pull and preparation), then claim + first exec on a warm
//                sandbox of it against default's, alternating; or --packages
//                npm:a,pip:b,… on an agent with egress: a package layer over default, its
//                PUT until ready (the build), then creates with pre_install_packages (the
//                same set: its layer, no build; warm after the first) against default's
// Prints Markdown tables (p50/p90/p99/max, ratios to the baselines); --json, --svg and
// --markdown write them to files. --target is an agent or a scheduler.
#include <fcntl.h>
#include <sys/wait.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bench/report.h"
#include "common/fs.h"
#include "common/http_client.h"
#include "common/process.h"
#include "common/unique_fd.h"

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using swissbox::ProcessOptions;
using swissbox::run_process;
using swissbox::bench::Report;
using swissbox::bench::MachineSpeed;
using swissbox::bench::Stats;

namespace {

struct Options {
  std::vector<std::string> scenarios;
  std::string target = "127.0.0.1:7700";
  std::string token;
  std::string runsc = "/usr/bin/runsc";
  std::string platform = "ptrace";
  std::vector<std::string> langs = {"python"};
  std::vector<int> clients = {1, 2, 4, 8, 16, 32};
  std::string json_out, svg_out, md_out;
  std::string network = "none";  // warm/exec sandboxes: "none" or "egress"
  int iterations = 30;
  double duration_s = 0;  // > 0: run each scenario this long instead of N iterations
  double rate = 0;        // sustained: one-shots per second (0: the pool's refill rate)
  int pool_size = 10;     // sustained and refill: the pool's target
  std::vector<int> scale_live = {10, 300};  // scale: idle active sandboxes at each step
  std::vector<int> density = {200, 50};     // density: suspended, live
  std::string image;                        // template: the image to make a template of
  std::vector<std::string> packages;        // template: or the packages of a layer
  double scale_idle_s = 30;                 // scale: the idle window for the agent's CPU
  std::string pool() const { return network == "none" ? "default" : "default:" + network; }
  json create_body() const { return network == "none" ? json::object() : json{{"network", network}}; }
};

[[noreturn]] void die(const std::string& m) {
  fprintf(stderr, "swissbox-bench: %s\n", m.c_str());
  exit(1);
}

double since_ms(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// See MachineSpeed. Forks: async-signal-safe calls only in the child.
MachineSpeed measure_machine() {
  MachineSpeed m;
  auto t0 = Clock::now();
  volatile uint64_t x = 1;  // kept in memory: the loop cannot be folded away
  for (int i = 0; i < 50'000'000; ++i) x = x * 6364136223846793005ULL + 1442695040888963407ULL;
  m.compute_ms = since_ms(t0);
  constexpr int kRoundTrips = 20000;
  int there[2], back[2];
  if (pipe2(there, O_CLOEXEC) != 0) return m;
  if (pipe2(back, O_CLOEXEC) != 0) return close(there[0]), close(there[1]), m;
  pid_t pid = fork();
  if (pid == 0) {
    char c;
    for (int i = 0; i < kRoundTrips; ++i) {
      if (read(there[0], &c, 1) != 1 || write(back[1], &c, 1) != 1) _exit(1);
    }
    _exit(0);
  }
  if (pid > 0) {
    t0 = Clock::now();
    char c = 'x';
    bool ok = true;
    for (int i = 0; ok && i < kRoundTrips; ++i) {
      ok = write(there[1], &c, 1) == 1 && read(back[0], &c, 1) == 1;
    }
    if (ok) m.pingpong_ms = since_ms(t0);
  }
  for (int fd : {there[0], there[1], back[0], back[1]}) close(fd);
  if (pid > 0) waitpid(pid, nullptr, 0);
  return m;
}

// N iterations or a duration; shows progress on stderr (a rewritten line on a terminal,
// a line every 5 s otherwise) unless quiet (the other clients of a concurrent run).
class Loop {
 public:
  Loop(const Options& o, std::string name, int iterations = -1, bool quiet = false)
      : name_(std::move(name)), n_(iterations >= 0 ? iterations : o.iterations), quiet_(quiet),
        end_(o.duration_s > 0 && iterations < 0
                 ? Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(o.duration_s))
                 : Clock::time_point::max()),
        tty_(isatty(STDERR_FILENO)) {}
  ~Loop() {
    if (tty_ && !quiet_) fprintf(stderr, "\r%-24s %d done\n", name_.c_str(), i_);
  }
  bool next() {
    bool more = end_ != Clock::time_point::max() ? Clock::now() < end_ : i_ < n_;
    if (!more) return false;
    if (!quiet_) show_progress();
    ++i_;
    return true;
  }

 private:
  void show_progress() {
    if (tty_) {
      fprintf(stderr, "\r%-24s %d/%s", name_.c_str(), i_,
              end_ != Clock::time_point::max() ? "…" : std::to_string(n_).c_str());
    } else if (Clock::now() >= next_line_) {
      fprintf(stderr, "swissbox-bench: %s %d done\n", name_.c_str(), i_);
      next_line_ = Clock::now() + std::chrono::seconds(5);
    }
  }

  std::string name_;
  int n_;
  bool quiet_;
  int i_ = 0;
  Clock::time_point end_, next_line_ = Clock::now() + std::chrono::seconds(5);
  bool tty_;
};

// The target's API; one connection per instance (one per client thread).
class Api {
 public:
  explicit Api(const Options& o) : client_(o.target), token_(o.token) {
    if (!o.token.empty()) headers_.push_back({"Authorization", "Bearer " + o.token});
  }
  // The answer's JSON when the status is `want`, null otherwise.
  json call(std::string_view method, const std::string& path, const json& body, unsigned want) {
    auto r = client_.request(method, path, body.is_null() ? "" : body.dump(), headers_);
    if (!r || r->status != want) return nullptr;
    return r->body.empty() ? json::object() : json::parse(r->body, nullptr, false);
  }
  // A call as E2B's SDKs make it: the API key (the bench's token, or any key for an agent
  // without tokens) and the extra headers (a sandbox's id, port and access token).
  swissbox::Result<swissbox::http::ClientResponse> e2b(std::string_view method, const std::string& path,
                                                       const json& body, std::vector<std::pair<std::string, std::string>> extra) {
    extra.push_back({"X-API-KEY", token_.empty() ? "e2b_" + std::string(40, '0') : token_});
    return client_.request(method, path, body.dump(), extra);
  }
  std::string text(const std::string& path) {
    auto r = client_.request("GET", path, "", headers_);
    return r && r->status == 200 ? r->body : "";
  }
  // Only an agent serves /v1/warmpool; asked once, the target does not change.
  bool is_agent() {
    if (!is_agent_) is_agent_ = !call("GET", "/v1/warmpool", nullptr, 200).is_null();
    return *is_agent_;
  }

 private:
  std::optional<bool> is_agent_;
  swissbox::http::Client client_;
  std::string token_;
  std::vector<std::pair<std::string, std::string>> headers_;
};

// The command that prints 42 in each language, and what the one-shot sends.
struct LanguageCase {
  std::vector<std::string> cli;  // for the cold baseline
  std::string code;
};
const std::map<std::string, LanguageCase>& language_cases() {
  static const std::map<std::string, LanguageCase> cases = {
      {"python", {{"/usr/bin/python3", "-c", "print(6*7)"}, "print(6*7)"}},
      {"bash", {{"/bin/bash", "-c", "echo $((6*7))"}, "echo $((6*7))"}},
      {"javascript", {{"/usr/bin/node", "-e", "console.log(6*7)"}, "console.log(6*7)"}},
      {"typescript",
       {{"/usr/bin/node", "-e",
         "const ts = require('/usr/share/nodejs/typescript'); eval(ts.transpileModule("
         "'const x: number = 6*7; console.log(x)', {}).outputText)"},
        "const x: number = 6*7; console.log(x)"}}};
  return cases;
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
  bool run(const std::vector<std::string>& args, bool detach_stdio = false) {
    ProcessOptions p;
    swissbox::unique_fd null_fd(open("/dev/null", O_RDWR | O_CLOEXEC));
    if (detach_stdio) p.stdin_fd = p.stdout_fd = p.stderr_fd = null_fd.get();
    p.argv = {o_.runsc,    "--root", dir_ + "/root", "--platform", o_.platform,
              "--network", "none",   "--overlay2",   "none"};
    p.argv.insert(p.argv.end(), args.begin(), args.end());
    p.timeout = std::chrono::seconds(30);
    auto r = run_process(p);
    return r.ok() && r->exit_code == 0;
  }
  std::string bundle() const { return dir_ + "/bundle"; }

 private:
  const Options& o_;
  std::string dir_;
};

Stats bench_cold(const Options& o, const std::vector<std::string>& argv, const std::string& name) {
  CliBaseline cli(o);
  Stats s;
  Loop loop(o, name);
  for (int i = 0; loop.next(); ++i) {
    std::string id = fmt::format("bench-cold-{}-{}", getpid(), i);
    auto t0 = Clock::now();
    std::vector<std::string> exec = {"exec", id};
    exec.insert(exec.end(), argv.begin(), argv.end());
    bool ok = cli.run({"create", "--bundle", cli.bundle(), id}, true) && cli.run({"start", id}) &&
              cli.run(exec);
    double ms = since_ms(t0);
    cli.run({"delete", "--force", id});
    ok ? s.ms.push_back(ms) : void(s.errors++);
  }
  return s;
}

// The CLI exec baseline, of the program and of the same through bash, alternating.
std::pair<Stats, Stats> bench_runsc_exec(const Options& o) {
  CliBaseline cli(o);
  Stats program, shell;
  std::string id = fmt::format("bench-exec-{}", getpid());
  if (!cli.run({"create", "--bundle", cli.bundle(), id}, true) || !cli.run({"start", id}))
    die("runsc start failed");
  Loop loop(o, "runsc-exec");
  while (loop.next()) {
    for (Stats* s : {&program, &shell}) {
      auto t0 = Clock::now();
      bool ok = s == &program ? cli.run({"exec", id, "/bin/echo", "hi"})
                              : cli.run({"exec", id, "/bin/bash", "-c", "echo hi"});
      ok ? s->ms.push_back(since_ms(t0)) : void(s->errors++);
    }
  }
  cli.run({"delete", "--force", id});
  return {program, shell};
}

// Lets the pool refill completely and earlier deletes finish between iterations: warm
// scenarios measure one claim on a node whose pool is full and idle (no runsc start or
// delete competing for the CPU).
void wait_for_warm(Api& api, const std::string& pool) {
  // A scheduler serves no /v1/warmpool: there, wait one report interval, then until every
  // usable node reports a warm sandbox of the pool.
  if (!api.is_agent()) {
    usleep(1100000);
    for (int w = 0; w < 100; ++w) {
      json nodes = api.call("GET", "/v1/nodes", nullptr, 200);
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
  for (int w = 0; w < 600; ++w) {
    json p = api.call("GET", "/v1/warmpool", nullptr, 200);
    json n = api.call("GET", "/v1/node", nullptr, 200);
    if (!p.is_null() && !n.is_null() && n.value("deleting", 0) == 0) {
      const json& d = p["templates"][pool];
      if (d.value("ready", 0) > 0 && d.value("ready", 0) >= d.value("target", 0) &&
          d.value("starting", 0) == 0)
        return;
    }
    usleep(50000);
  }
}

// The pool a one-shot in `lang` is served from: the language's own when the target has
// one (an agent with a target for it, or a scheduler whose nodes report it).
std::string oneshot_pool(Api& api, const std::string& lang) {
  std::string own = "default+" + lang;
  if (api.is_agent()) {
    json p = api.call("GET", "/v1/warmpool", nullptr, 200);
    return p["templates"].contains(own) && p["templates"][own].value("target", 0) > 0 ? own : "default";
  }
  json nodes = api.call("GET", "/v1/nodes", nullptr, 200);
  for (const auto& n : nodes.is_null() ? json::array() : nodes["nodes"]) {
    if (n["warm"].value(own, 0) > 0) return own;
  }
  return "default";
}

// Claim + first exec (into s), and the claim alone, on a full idle pool. `echo`: argv, or a
// shell string (an image may have a shell and no /bin/echo).
void claim_and_echo(Api& api, const std::string& pool, const json& body, Stats& s, Stats& claim,
                    const json& echo = {"echo", "hi"}) {
  wait_for_warm(api, pool);
  auto t0 = Clock::now();
  json sb = api.call("POST", "/v1/sandboxes", body, 201);
  sb.is_null() ? void(claim.errors++) : claim.ms.push_back(since_ms(t0));
  json r = sb.is_null() ? json()
                        : api.call("POST", "/v1/sandboxes/" + sb.value("id", "") + "/exec",
                                   {{"command", echo}}, 200);
  double ms = since_ms(t0);
  bool ok = !r.is_null() && r.value("stdout", "") == "hi\n";
  if (!sb.is_null()) api.call("DELETE", "/v1/sandboxes/" + sb.value("id", ""), nullptr, 204);
  ok ? s.ms.push_back(ms) : void(s.errors++);
}

std::pair<Stats, Stats> bench_warm(const Options& o) {
  Api api(o);
  Stats s, claim;
  Loop loop(o, "warm");
  while (loop.next()) claim_and_echo(api, o.pool(), o.create_body(), s, claim);
  return {s, claim};
}

// An image template (--image) on an agent with its node's containerd: its PUT until ready
// (the pull and the preparation; a previous run's template is deleted first, which releases
// the image, so the image is pulled again), then claim + first exec on a warm sandbox of
// it and of default, alternating in the same run.
// A template's PUT until it is ready (a previous run's template is deleted first, which
// releases its image or layer, so that this run pulls or builds it again): its record.
json put_until_ready(Api& api, const std::string& name, const json& body, Report& report) {
  (void)api.call("PUT", "/v1/warmpool/" + name, {{"target", 0}}, 200);
  usleep(500000);  // its warm sandboxes retired
  (void)api.call("DELETE", "/v1/templates/" + name, nullptr, 204);
  usleep(500000);  // the release of the image or layer runs on the agent's workers
  auto t0 = Clock::now();
  if (api.call("PUT", "/v1/templates/" + name, body, 202).is_null())
    die("template: PUT /v1/templates/" + name + " was refused (an image needs --cri-socket, packages --egress-pool)");
  json t = json::object();
  for (int i = 0; i < 12000 && t.value("state", "building") == "building"; ++i) {
    usleep(50000);
    t = api.call("GET", "/v1/templates/" + name, nullptr, 200);
    if (t.is_null()) t = json::object();
  }
  if (t.value("state", "") != "ready") die("template: " + name + " did not become ready: " + t.dump());
  report.template_ready_s = since_ms(t0) / 1000;
  report.template_image_mb = t.value("size_bytes", int64_t{0}) / 1048576.0;
  report.template_kind = body.contains("image") ? "image" : "package layer (" + body["packages"].dump() + ")";
  return t;
}

void bench_template(const Options& o, Report& report) {
  if (o.image.empty() == o.packages.empty())
    die("template: --image REF names an image to make a template of, or --packages npm:a,pip:b,… a layer's");
  Api api(o);
  if (!api.is_agent()) die("template: the target must be an agent (a scheduler fans templates out)");
  Stats& made = report.latency["template warm"];
  Stats& plain = report.latency["template default"];
  report.baseline_of["template warm"] = "template default";
  Stats claims;
  std::string pool;
  json create;
  if (!o.image.empty()) {
    pool = "bench-image";
    put_until_ready(api, pool, {{"image", o.image}}, report);
    if (api.call("PUT", "/v1/warmpool/" + pool, {{"target", 1}}, 200).is_null()) die("template: its pool was refused");
    create = {{"template", pool}};
  } else {
    json packages = {{"apt", json::array()}, {"pip", json::array()}, {"npm", json::array()}};
    for (const auto& p : o.packages) {
      auto colon = p.find(':');
      if (colon == std::string::npos || !packages.contains(p.substr(0, colon))) die("--packages: " + p + " is not apt:, pip: or npm:");
      packages[p.substr(0, colon)].push_back(p.substr(colon + 1));
    }
    // Derived templates of an earlier run hold the layer: they go first.
    json list = api.call("GET", "/v1/templates", nullptr, 200);
    for (const auto& t : list.value("templates", json::array())) {
      if (!t.value("derived", false)) continue;
      (void)api.call("PUT", "/v1/warmpool/" + t.value("name", ""), {{"target", 0}}, 200);
      usleep(500000);
      (void)api.call("DELETE", "/v1/templates/" + t.value("name", ""), nullptr, 204);
    }
    put_until_ready(api, "bench-layer", {{"from", "default"}, {"packages", packages}}, report);
    // The same set on a create: the layer is there (no build); the first create makes its
    // warm pool, the next ones are claimed from it.
    create = {{"pre_install_packages", o.packages}};
    json first = api.call("POST", "/v1/sandboxes", create, 201);
    if (first.is_null()) die("template: a create with pre_install_packages was refused");
    pool = first.value("template", "");
    api.call("DELETE", "/v1/sandboxes/" + first.value("id", ""), nullptr, 204);
  }
  Loop loop(o, "template");
  while (loop.next()) {
    claim_and_echo(api, pool, create, made, claims, "echo hi");
    claim_and_echo(api, "default", json::object(), plain, claims, "echo hi");
  }
  (void)api.call("PUT", "/v1/warmpool/" + pool, {{"target", 0}}, 200);
  usleep(500000);  // its warm sandbox retired
  (void)api.call("DELETE", "/v1/templates/" + pool, nullptr, 204);
  if (pool != "bench-layer" && o.image.empty()) (void)api.call("DELETE", "/v1/templates/bench-layer", nullptr, 204);
}

// The agent process's CPU seconds so far (process_cpu_seconds_total in its /metrics).
std::optional<double> agent_cpu_s(Api& api) {
  std::string text = api.text("/metrics");
  size_t at = text.find("\nprocess_cpu_seconds_total ");
  if (at == std::string::npos) return std::nullopt;
  return atof(text.c_str() + at + strlen("\nprocess_cpu_seconds_total "));
}

// The agent's own CPU, in percent of one core, over `seconds` in which nobody calls it.
double agent_idle_cpu_percent(Api& api, double seconds, const char* scenario) {
  auto cpu0 = agent_cpu_s(api);
  auto t0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  auto cpu1 = agent_cpu_s(api);
  if (!cpu0 || !cpu1) die(fmt::format("{}: the agent's /metrics has no process_cpu_seconds_total (admin token?)", scenario));
  return 100 * (*cpu1 - *cpu0) / (since_ms(t0) / 1000);
}

// The agent with --live LOW,HIGH idle active sandboxes: its own CPU over --idle seconds in
// which nobody calls it, then claim + echo on top of them (as the warm scenario), at each.
void bench_scale(const Options& o, Report& report) {
  Api api(o);
  if (!api.is_agent()) die("scale needs an agent as --target");
  std::vector<std::string> held;
  auto release = [&] {
    Loop deleting(o, "scale: delete", static_cast<int>(held.size()));
    for (const auto& id : held) {
      deleting.next();
      api.call("DELETE", "/v1/sandboxes/" + id, nullptr, 204);
    }
  };
  for (int live : o.scale_live) {
    Loop creating(o, fmt::format("scale: {} live", live), live - static_cast<int>(held.size()));
    while (creating.next()) {
      json sb = api.call("POST", "/v1/sandboxes", o.create_body(), 201);
      if (sb.is_null()) {
        release();
        die(fmt::format("scale: create {} of {} refused (the agent's --max-sandboxes must leave "
                        "room for them and its pool)", held.size() + 1, live));
      }
      held.push_back(sb.value("id", ""));
    }
    wait_for_warm(api, o.pool());  // the refills the creates caused are over
    swissbox::bench::ScalePoint point;
    point.live = live;
    point.agent_cpu_percent = agent_idle_cpu_percent(api, o.scale_idle_s, "scale");
    Stats claim;
    Loop loop(o, fmt::format("scale: claim + echo, {} live", live));
    while (loop.next()) claim_and_echo(api, o.pool(), o.create_body(), point.claim_exec, claim);
    report.scale.push_back(std::move(point));
  }
  release();
}

// Suspends a sandbox; its checkpoint's size in bytes, or nullopt.
std::optional<int64_t> suspend(Api& api, const std::string& id) {
  json r = api.call("POST", "/v1/sandboxes/" + id + "/suspend", json::object(), 200);
  if (r.is_null() || r.value("state", "") != "suspended") return std::nullopt;
  return r.value("checkpoint_bytes", int64_t{0});
}

void bench_suspend(const Options& o, Report& report) {
  Api api(o);
  wait_for_warm(api, o.pool());
  json idle = api.call("POST", "/v1/sandboxes", o.create_body(), 201);
  if (idle.is_null()) die("cannot create a sandbox on " + o.target);
  if (auto bytes = suspend(api, idle.value("id", ""))) report.checkpoint_mb["idle"] = *bytes / 1048576.0;
  api.call("DELETE", "/v1/sandboxes/" + idle.value("id", ""), nullptr, 204);

  wait_for_warm(api, o.pool());
  json sb = api.call("POST", "/v1/sandboxes", o.create_body(), 201);
  if (sb.is_null()) die("cannot create a sandbox on " + o.target);
  std::string id = sb.value("id", "");
  json ctx = api.call("POST", "/v1/sandboxes/" + id + "/contexts", {{"language", "python"}}, 201);
  if (ctx.is_null()) die("cannot start a python context on " + o.target);
  std::string context = ctx.value("id", "");
  api.call("POST", "/v1/sandboxes/" + id + "/code", {{"context_id", context}, {"code", "x = 41"}}, 200);
  Stats& sleep = report.latency["suspend"];
  Stats& wake = report.latency["resume"];
  report.baseline_of["resume"] = "cold";
  int64_t bytes = 0;
  Loop loop(o, "suspend");
  while (loop.next()) {
    auto t0 = Clock::now();
    auto saved = suspend(api, id);
    if (!saved) {
      sleep.errors++;
      continue;
    }
    sleep.ms.push_back(since_ms(t0));
    bytes = *saved;
    auto t1 = Clock::now();
    json r = api.call("POST", "/v1/sandboxes/" + id + "/exec", {{"command", {"echo", "hi"}}}, 200);
    !r.is_null() && r.value("stdout", "") == "hi\n" ? wake.ms.push_back(since_ms(t1)) : void(wake.errors++);
  }
  report.checkpoint_mb["python context"] = bytes / 1048576.0;
  json cell = api.call("POST", "/v1/sandboxes/" + id + "/code", {{"context_id", context}, {"code", "x + 1"}}, 200);
  report.context_survived = cell.dump().find(R"("text":"42")") != std::string::npos;
  api.call("DELETE", "/v1/sandboxes/" + id, nullptr, 204);
}

// Host processes whose command line names one of `ids` (a sandbox's sentry, gofer and
// their runsc parents do), and their PSS.
std::pair<int, double> processes_naming(const std::vector<std::string>& ids) {
  std::vector<int> pids;
  for (const auto& e : swissbox::fs::list_dir("/proc")) {
    if (e.find_first_not_of("0123456789") != std::string::npos) continue;
    auto cmdline = swissbox::fs::read_file("/proc/" + e + "/cmdline", 1 << 16);
    if (!cmdline) continue;
    for (const auto& id : ids) {
      if (cmdline->find(id) != std::string::npos) {
        pids.push_back(atoi(e.c_str()));
        break;
      }
    }
  }
  return {static_cast<int>(pids.size()), swissbox::memory_footprint(pids).pss_bytes / 1048576.0};
}

void bench_density(const Options& o, Report& report) {
  Api api(o);
  if (!api.is_agent()) die("density needs an agent on this machine as --target");
  swissbox::bench::DensityPoint d;
  d.suspended = o.density[0];
  d.live = o.density[1];
  std::vector<std::string> asleep, awake;
  auto release = [&] {
    Loop deleting(o, "density: delete", static_cast<int>(asleep.size() + awake.size()));
    for (const auto* group : {&asleep, &awake}) {
      for (const auto& id : *group) {
        deleting.next();
        api.call("DELETE", "/v1/sandboxes/" + id, nullptr, 204);
      }
    }
  };
  auto make = [&](std::vector<std::string>& into, int n, const char* what) {
    Loop creating(o, fmt::format("density: {} {}", n, what), n);
    while (creating.next()) {
      json sb = api.call("POST", "/v1/sandboxes", o.create_body(), 201);
      if (sb.is_null()) {
        release();
        die(fmt::format("density: create refused after {} sandboxes (the agent's --max-sandboxes must "
                        "leave room for all of them and its pool)", asleep.size() + awake.size()));
      }
      into.push_back(sb.value("id", ""));
      if (&into == &asleep && !suspend(api, into.back())) {
        release();
        die("density: suspending " + into.back() + " failed");
      }
    }
  };
  make(asleep, d.suspended, "suspended");
  make(awake, d.live, "live");
  wait_for_warm(api, o.pool());  // the refills the creates caused are over
  std::tie(d.suspended_processes, d.suspended_memory_mb) = processes_naming(asleep);
  d.agent_cpu_percent = agent_idle_cpu_percent(api, o.scale_idle_s, "density");
  for (const auto& id : asleep) {
    json info = api.call("GET", "/v1/sandboxes/" + id, nullptr, 200);
    d.checkpoint_mb_total += info.value("checkpoint_bytes", int64_t{0}) / 1048576.0;
  }
  d.checkpoint_mb_mean = asleep.empty() ? 0 : d.checkpoint_mb_total / static_cast<double>(asleep.size());
  report.density = d;
  release();
}

// Execs on one sandbox, alternating the program `echo hi` (what `runsc exec` runs) and the
// shell string "echo hi" (how the orchestrator sends commands: bash -c).
std::pair<Stats, Stats> bench_exec(const Options& o) {
  Api api(o);
  Stats program, shell;
  wait_for_warm(api, o.pool());
  json sb = api.call("POST", "/v1/sandboxes", o.create_body(), 201);
  if (sb.is_null()) die("cannot create a sandbox on " + o.target);
  // Steady state: the refill that the claim started (a runsc create, CPU-heavy) is over.
  wait_for_warm(api, o.pool());
  std::string path = "/v1/sandboxes/" + sb.value("id", "") + "/exec";
  const json as_program = {{"command", {"echo", "hi"}}}, as_shell = {{"command", "echo hi"}};
  // A fresh sandbox's first commands are slower while gVisor fills its caches; the first
  // exec is what the warm scenario measures, this one the steady state of a session.
  for (int i = 0; i < 10; ++i) api.call("POST", path, i % 2 ? as_shell : as_program, 200);
  Loop loop(o, "exec");
  while (loop.next()) {
    for (Stats* s : {&program, &shell}) {
      auto t0 = Clock::now();
      json r = api.call("POST", path, s == &program ? as_program : as_shell, 200);
      double ms = since_ms(t0);
      (!r.is_null() && r.value("stdout", "") == "hi\n") ? s->ms.push_back(ms) : void(s->errors++);
    }
  }
  api.call("DELETE", "/v1/sandboxes/" + sb.value("id", ""), nullptr, 204);
  return {program, shell};
}

bool oneshot(Api& api, const std::string& lang, double* ms) {
  auto t0 = Clock::now();
  json r = api.call("POST", "/v1/execute",
                    {{"language", lang}, {"code", language_cases().at(lang).code}}, 200);
  *ms = since_ms(t0);
  return !r.is_null() && r.value("stdout", "") == "42\n";
}

Stats bench_oneshot(const Options& o, const std::string& lang) {
  Api api(o);
  Stats s;
  std::string pool = oneshot_pool(api, lang);
  Loop loop(o, "oneshot-" + lang);
  while (loop.next()) {
    wait_for_warm(api, pool);
    double ms;
    oneshot(api, lang, &ms) ? s.ms.push_back(ms) : void(s.errors++);
  }
  return s;
}

// E2B's path as its SDKs take it, on the code-interpreter template: create (POST
// /v2/sandboxes) and the first run_code (/execute x = 1, in the warm default context) as one
// figure, then run_code of x + 1 in that live context, ten per sandbox.
std::pair<Stats, Stats> bench_context(const Options& o) {
  Api api(o);
  Stats first, run;
  auto execute = [&](const std::string& id, const std::string& token, const std::string& code,
                     const std::string& want) {
    auto r = api.e2b("POST", "/execute", {{"code", code}},
                     {{"E2b-Sandbox-Id", id}, {"E2b-Sandbox-Port", "49999"}, {"X-Access-Token", token},
                      {"Content-Type", "application/json"}});
    return r && r->status == 200 && r->body.find("end_of_execution") != std::string::npos &&
           r->body.find(want) != std::string::npos;
  };
  Loop loop(o, "context");
  while (loop.next()) {
    wait_for_warm(api, "code-interpreter");
    auto t0 = Clock::now();
    auto created = api.e2b("POST", "/v2/sandboxes", {{"templateID", "code-interpreter-v1"}},
                           {{"Content-Type", "application/json"}});
    json sb = created && created->status == 201 ? json::parse(created->body, nullptr, false) : json();
    if (!sb.is_object()) {
      first.errors++;
      continue;
    }
    std::string id = sb.value("sandboxID", ""), token = sb.value("envdAccessToken", "");
    execute(id, token, "x = 1", "") ? first.ms.push_back(since_ms(t0)) : void(first.errors++);
    for (int i = 0; i < 10; ++i) {
      auto t = Clock::now();
      execute(id, token, "x + 1", R"("text":"2")") ? run.ms.push_back(since_ms(t)) : void(run.errors++);
    }
    (void)api.e2b("DELETE", "/sandboxes/" + id, nullptr, {});
  }
  return {first, run};
}

// Each client runs execs on a sandbox of its own, all at once; throughput over the wall time
// of the whole level.
std::vector<swissbox::bench::ConcurrencyPoint> bench_concurrency(const Options& o) {
  Api api(o);
  std::vector<swissbox::bench::ConcurrencyPoint> out;
  for (int clients : o.clients) {
    wait_for_warm(api, o.pool());
    std::vector<std::string> ids;
    for (int i = 0; i < clients; ++i) {
      json sb = api.call("POST", "/v1/sandboxes", o.create_body(), 201);
      if (!sb.is_null()) ids.push_back(sb.value("id", ""));
    }
    // Warm every sandbox's caches and let the refills of the claims finish.
    for (const auto& id : ids) {
      for (int i = 0; i < 3; ++i) api.call("POST", "/v1/sandboxes/" + id + "/exec", {{"command", {"true"}}}, 200);
    }
    wait_for_warm(api, o.pool());
    swissbox::bench::ConcurrencyPoint point{clients, {}};
    point.stats.errors = clients - static_cast<int>(ids.size());
    std::mutex mu;
    auto t0 = Clock::now();
    std::vector<std::thread> threads;
    for (const auto& id : ids) {
      threads.emplace_back([&, id, first = threads.empty()] {
        Api mine(o);
        Stats local;
        Loop loop(o, fmt::format("concurrency-{} (client 1)", clients), -1, !first);
        std::string path = "/v1/sandboxes/" + id + "/exec";
        while (loop.next()) {
          auto t = Clock::now();
          json r = mine.call("POST", path, {{"command", {"echo", "hi"}}}, 200);
          double ms = since_ms(t);
          (!r.is_null() && r.value("stdout", "") == "hi\n") ? local.ms.push_back(ms)
                                                            : void(local.errors++);
        }
        std::lock_guard lock(mu);
        point.stats.ms.insert(point.stats.ms.end(), local.ms.begin(), local.ms.end());
        point.stats.errors += local.errors;
      });
    }
    for (auto& t : threads) t.join();
    point.stats.wall_s = since_ms(t0) / 1000;
    for (const auto& id : ids) api.call("DELETE", "/v1/sandboxes/" + id, nullptr, 204);
    out.push_back(std::move(point));
  }
  return out;
}

int pool_ready(Api& api, const std::string& pool) {
  json p = api.call("GET", "/v1/warmpool", nullptr, 200);
  return p.is_null() ? -1 : p["templates"][pool].value("ready", 0);
}

bool set_target(Api& api, const std::string& pool, int target) {
  return !api.call("PUT", "/v1/warmpool/" + pool, {{"target", target}}, 200).is_null();
}

// Node CPU used so far, in ms: user, system and interrupt time of every CPU (not idle,
// iowait, or steal, which is the hypervisor's). Across a scenario it is what the agent,
// its sandboxes and this bench cost together, when the target runs on this machine.
std::optional<double> node_cpu_ms(const Options& o) {
  const std::string host = o.target.substr(0, o.target.rfind(':'));
  if (host != "127.0.0.1" && host != "localhost" && host != "[::1]") return std::nullopt;
  unsigned long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0;
  FILE* f = fopen("/proc/stat", "re");
  if (!f) return std::nullopt;
  int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu", &user, &nice, &system, &idle, &iowait,
                 &irq, &softirq);
  fclose(f);
  if (n != 7) return std::nullopt;
  return (user + nice + system + irq + softirq) * 1000.0 / sysconf(_SC_CLK_TCK);
}

// Empties the pool, then times how long the agent takes to make --pool-size sandboxes
// ready, and what node CPU that took.
void bench_refill(const Options& o, const std::string& pool, swissbox::bench::Report& report) {
  Api api(o);
  if (!api.is_agent()) die("refill needs an agent as --target");
  json before = api.call("GET", "/v1/warmpool", nullptr, 200);
  int old_target = before["templates"].contains(pool) ? before["templates"][pool].value("target", 0) : 0;
  if (!set_target(api, pool, 0)) die("cannot set the pool target of " + pool);
  for (int w = 0; w < 600; ++w) {
    json n = api.call("GET", "/v1/node", nullptr, 200);
    if (pool_ready(api, pool) == 0 && n.value("deleting", 1) == 0) break;
    usleep(50000);
  }
  auto cpu0 = node_cpu_ms(o);
  auto t0 = Clock::now();
  set_target(api, pool, o.pool_size);
  Loop loop(o, "refill " + pool, o.pool_size);
  int ready = 0;
  while (ready < o.pool_size && since_ms(t0) < 120000) {
    usleep(10000);
    ready = pool_ready(api, pool);
  }
  double s = since_ms(t0) / 1000;
  auto cpu1 = node_cpu_ms(o);
  set_target(api, pool, old_target);
  if (ready < o.pool_size) die(fmt::format("refill: only {} of {} ready after 120 s", ready, o.pool_size));
  report.refill_per_s[pool] = o.pool_size / s;
  report.refill_count = o.pool_size;
  if (cpu0 && cpu1) report.refill_cpu_ms[pool] = (*cpu1 - *cpu0) / o.pool_size;
}

// The plain pool, and the pool of each --lang that has language workers.
void bench_refills(const Options& o, swissbox::bench::Report& report) {
  Api api(o);
  bench_refill(o, o.pool(), report);
  json p = api.call("GET", "/v1/warmpool", nullptr, 200);
  for (const auto& lang : o.langs) {
    std::string pool = "default+" + lang;
    if (!p.is_null() && p["templates"].contains(pool)) bench_refill(o, pool, report);
  }
}

std::vector<swissbox::bench::MemoryRow> bench_memory(const Options& o) {
  Api api(o);
  if (!api.is_agent()) die("memory needs an agent as --target");
  std::vector<swissbox::bench::MemoryRow> rows;
  wait_for_warm(api, o.pool());
  json p = api.call("GET", "/v1/warmpool?memory=1", nullptr, 200);
  for (const auto& [pool, d] : p["templates"].items()) {
    if (!d.contains("memory_pss_bytes")) continue;
    rows.push_back({pool + " idle warm", d.value("memory_pss_bytes", 0) / 1048576.0,
                    d.value("memory_rss_bytes", 0) / 1048576.0});
  }
  // Active: a claimed sandbox after a command, and after a run in each language.
  json sb = api.call("POST", "/v1/sandboxes", o.create_body(), 201);
  if (sb.is_null()) die("cannot create a sandbox on " + o.target);
  std::string id = sb.value("id", "");
  auto measure = [&](const std::string& what) {
    json info = api.call("GET", "/v1/sandboxes/" + id, nullptr, 200);
    const json& m = info.is_null() ? json::object() : info["metrics"];
    if (m.contains("memory_pss_bytes")) {
      rows.push_back({what, m.value("memory_pss_bytes", 0) / 1048576.0,
                      m.value("memory_rss_bytes", 0) / 1048576.0});
    }
  };
  api.call("POST", "/v1/sandboxes/" + id + "/exec", {{"command", {"echo", "hi"}}}, 200);
  measure(o.pool() + " active, after an exec");
  for (const auto& lang : o.langs) {
    api.call("POST", "/v1/sandboxes/" + id + "/code",
             {{"language", lang}, {"code", language_cases().at(lang).code}}, 200);
    usleep(1500000);  // the session's next worker loads meanwhile; it counts too
    bool worker = lang != "bash";  // bash runs as a plain command
    measure(o.pool() + " active, after " + lang + (worker ? " (worker kept)" : ""));
  }
  api.call("DELETE", "/v1/sandboxes/" + id, nullptr, 204);
  // What a stateful Python context adds to a sandbox: idle, then after two cells (PSS and
  // RSS of the sandbox with it minus without it, the mean of three sandboxes).
  std::vector<std::string> ids;
  auto sum = [&] {
    std::pair<double, double> total{0, 0};
    for (const auto& sid : ids) {
      json info = api.call("GET", "/v1/sandboxes/" + sid, nullptr, 200);
      const json& m = info.is_null() ? json::object() : info["metrics"];
      total.first += m.value("memory_pss_bytes", 0) / 1048576.0;
      total.second += m.value("memory_rss_bytes", 0) / 1048576.0;
    }
    return total;
  };
  for (int i = 0; i < 3; ++i) {
    json made = api.call("POST", "/v1/sandboxes", o.create_body(), 201);
    if (!made.is_null()) ids.push_back(made.value("id", ""));
  }
  if (ids.empty()) return rows;
  usleep(1500000);
  auto without = sum();
  std::vector<std::string> contexts;
  for (const auto& sid : ids) {
    json made = api.call("POST", "/v1/sandboxes/" + sid + "/contexts", {{"language", "python"}}, 201);
    if (made.is_null()) die("cannot start a python context on " + o.target);
    contexts.push_back(made.value("id", ""));
  }
  usleep(1500000);
  auto idle = sum();
  for (size_t i = 0; i < ids.size(); ++i) {
    for (const char* code : {"x = 1", "x + 1"}) {
      api.call("POST", "/v1/sandboxes/" + ids[i] + "/code", {{"context_id", contexts[i]}, {"code", code}}, 200);
    }
  }
  usleep(1500000);
  auto used = sum();
  double n = static_cast<double>(ids.size());
  rows.push_back({"python context added, idle", (idle.first - without.first) / n,
                  (idle.second - without.second) / n});
  rows.push_back({"python context added, after two cells", (used.first - without.first) / n,
                  (used.second - without.second) / n});
  for (const auto& sid : ids) api.call("DELETE", "/v1/sandboxes/" + sid, nullptr, 204);
  return rows;
}

double cold_starts(Api& api) {
  double total = 0;
  std::string text = api.text("/metrics");
  for (size_t at = 0; (at = text.find("\nswissbox_cold_starts_total{", at)) != std::string::npos;) {
    size_t sp = text.find(' ', text.find('}', at));
    total += atof(text.c_str() + sp + 1);
    at = sp;
  }
  return total;
}

// Open loop: a one-shot every 1/rate seconds, whatever the earlier ones are doing. The
// node CPU it reports per one-shot runs until the pool is full again: each one-shot's
// delete and the refill it caused are part of its cost.
void bench_sustained(const Options& o, double rate, swissbox::bench::Report& report) {
  Api api(o);
  if (!api.is_agent()) die("sustained needs an agent as --target");
  const std::string& lang = o.langs.front();
  std::string pool = "default+" + lang;
  json before = api.call("GET", "/v1/warmpool", nullptr, 200);
  int old_target = before["templates"].contains(pool) ? before["templates"][pool].value("target", 0) : 0;
  if (!set_target(api, pool, o.pool_size)) die("cannot set the pool target of " + pool);
  for (int w = 0; w < 1200 && pool_ready(api, pool) < o.pool_size; ++w) usleep(50000);
  wait_for_warm(api, pool);
  double cold0 = cold_starts(api);
  auto cpu0 = node_cpu_ms(o);
  Stats s;
  std::mutex mu;
  std::vector<std::thread> threads;
  auto period = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1 / rate));
  auto t0 = Clock::now();
  Loop loop(o, "sustained-" + lang);
  int sent = 0;
  for (; loop.next(); ++sent) {
    std::this_thread::sleep_until(t0 + sent * period);
    threads.emplace_back([&] {
      Api mine(o);
      double ms;
      bool ok = oneshot(mine, lang, &ms);
      std::lock_guard lock(mu);
      ok ? s.ms.push_back(ms) : void(s.errors++);
    });
  }
  for (auto& t : threads) t.join();
  s.wall_s = since_ms(t0) / 1000;
  report.cold_fallbacks = static_cast<int>(cold_starts(api) - cold0);
  wait_for_warm(api, pool);
  auto cpu1 = node_cpu_ms(o);
  if (cpu0 && cpu1 && sent > 0) report.sustained_cpu_ms = (*cpu1 - *cpu0) / sent;
  report.latency["sustained-" + lang] = std::move(s);
  set_target(api, pool, old_target);
}

std::vector<std::string> split(const std::string& list) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= list.size()) {
    size_t comma = list.find(',', pos);
    if (comma == std::string::npos) comma = list.size();
    if (comma > pos) out.push_back(list.substr(pos, comma - pos));
    pos = comma + 1;
  }
  return out;
}

// "4,1,16" → 1, 4, 16 (each at least 1).
std::vector<int> counts(const std::string& list) {
  std::vector<int> out;
  for (const auto& n : split(list)) out.push_back(std::max(1, atoi(n.c_str())));
  std::sort(out.begin(), out.end());
  return out;
}

void write_out(const std::string& path, const std::string& text) {
  if (!path.empty() && !swissbox::fs::write_file_atomic(path, text)) die("write " + path);
}

constexpr const char* kUsage =
    "usage: swissbox-bench SCENARIO... [--target HOST:PORT] [--token T]\n"
    "                      [--iterations N | --duration S] [--lang L1,L2]\n"
    "                      [--concurrency C1,C2,… (also --clients)]\n"
    "                      [--rate R] [--pool-size N] [--network none|egress]\n"
    "                      [--live N1,N2,… (scale)] [--idle S (scale, density)]\n"
    "                      [--density SUSPENDED,LIVE (density)] [--image REF (template)]\n"
    "                      [--platform ptrace|systrap] [--runsc PATH]\n"
    "                      [--json FILE] [--svg FILE] [--markdown FILE]\n"
    "scenarios: cold runsc-exec warm exec oneshot context concurrency refill memory sustained scale\n"
    "           suspend density template, or all (all but scale, density and template)\n";

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--target") o.target = next();
    else if (a == "--token") o.token = next();
    else if (a == "--iterations") o.iterations = std::max(1, atoi(next().c_str()));
    else if (a == "--duration") o.duration_s = std::max(0.1, atof(next().c_str()));
    else if (a == "--runsc") o.runsc = next();
    else if (a == "--platform") o.platform = next();
    else if (a == "--lang") o.langs = split(next());
    else if (a == "--rate") o.rate = std::max(0.1, atof(next().c_str()));
    else if (a == "--pool-size") o.pool_size = std::max(1, atoi(next().c_str()));
    else if (a == "--idle") o.scale_idle_s = std::max(1.0, atof(next().c_str()));
    else if (a == "--live") o.scale_live = counts(next());
    else if (a == "--image") o.image = next();
    else if (a == "--packages") o.packages = split(next());
    else if (a == "--density") {
      o.density = counts(next());
      if (o.density.size() != 2) die("--density needs SUSPENDED,LIVE");
    }
    else if (a == "--json") o.json_out = next();
    else if (a == "--svg") o.svg_out = next();
    else if (a == "--markdown") o.md_out = next();
    else if (a == "--clients" || a == "--concurrency") o.clients = counts(next());
    else if (a == "--network") {
      o.network = next();
      if (o.network != "none" && o.network != "egress") die("--network must be none or egress");
    } else if (a == "--help") {
      fputs(kUsage, stdout);
      exit(0);
    } else if (a.rfind("--", 0) == 0) {
      die("unknown option " + a);
    } else {
      o.scenarios.push_back(a);
    }
  }
  for (const auto& l : o.langs) {
    if (!language_cases().count(l)) die("unknown language " + l + " (python, bash, javascript, typescript)");
  }
  if (o.langs.empty()) die("--lang needs at least one language");
  if (o.scenarios.empty()) o.scenarios = {"cold", "runsc-exec", "warm", "exec"};
  if (o.scenarios == std::vector<std::string>{"all"}) {
    o.scenarios = {"cold",   "runsc-exec", "warm",      "exec",   "oneshot",
                   "concurrency", "refill", "memory", "sustained", "suspend"};
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  Report report;
  report.target = o.target;
  report.platform = o.platform;
  report.cpus = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  report.machine_before = measure_machine();
  bool with_oneshot = std::count(o.scenarios.begin(), o.scenarios.end(), "oneshot") > 0;
  for (const auto& sc : o.scenarios) {
    if (sc == "cold") {
      report.latency["cold"] = bench_cold(o, {"/bin/echo", "hi"}, "cold");
      for (const auto& lang : with_oneshot ? o.langs : std::vector<std::string>{}) {
        report.latency["cold-" + lang] = bench_cold(o, language_cases().at(lang).cli, "cold-" + lang);
      }
    } else if (sc == "runsc-exec") {
      auto& shell = report.latency["runsc-exec-shell"];
      std::tie(report.latency[sc], shell) = bench_runsc_exec(o);
    } else if (sc == "warm") {
      std::tie(report.latency["warm"], report.latency["claim"]) = bench_warm(o);
      report.baseline_of["warm"] = report.baseline_of["claim"] = "cold";
    } else if (sc == "exec") {
      std::tie(report.latency[sc], report.latency["exec-shell"]) = bench_exec(o);
      report.baseline_of[sc] = "runsc-exec";
      report.baseline_of["exec-shell"] = "runsc-exec-shell";
    } else if (sc == "oneshot") {
      for (const auto& lang : o.langs) {
        report.latency["oneshot-" + lang] = bench_oneshot(o, lang);
        report.baseline_of["oneshot-" + lang] = "cold-" + lang;
      }
    } else if (sc == "concurrency") {
      report.concurrency = bench_concurrency(o);
    } else if (sc == "refill") {
      bench_refills(o, report);
    } else if (sc == "context") {
      std::tie(report.latency["sdk-create-first-run"], report.latency["context-python"]) = bench_context(o);
      report.baseline_of["context-python"] = "oneshot-python";
    } else if (sc == "memory") {
      report.memory = bench_memory(o);
    } else if (sc == "scale") {
      bench_scale(o, report);
    } else if (sc == "suspend") {
      if (!report.latency.count("cold")) report.latency["cold"] = bench_cold(o, {"/bin/echo", "hi"}, "cold");
      bench_suspend(o, report);
    } else if (sc == "density") {
      bench_density(o, report);
    } else if (sc == "template") {
      bench_template(o, report);
    } else if (sc == "sustained") {
      // Without --rate: one-shots as fast as the pool refills (measured now, or by the
      // refill scenario of this run).
      std::string pool = "default+" + o.langs.front();
      double rate = o.rate;
      if (rate <= 0) {
        if (!report.refill_per_s.count(pool)) bench_refill(o, pool, report);
        rate = report.refill_per_s[pool];
      }
      report.sustained_rate = rate;
      bench_sustained(o, rate, report);
    } else {
      die("unknown scenario " + sc + "\n" + kUsage);
    }
  }
  report.machine_after = measure_machine();
  std::string md = report.markdown();
  fputs(md.c_str(), stdout);
  write_out(o.md_out, md);
  write_out(o.json_out, report.to_json().dump(2) + "\n");
  write_out(o.svg_out, report.svg());
  return 0;
}
