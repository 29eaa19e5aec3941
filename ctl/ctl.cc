// swissboxctl: the on-call engineer's CLI. Talks to the agent over its root-only unix
// socket (no token needed), so it works while the scheduler is down.
#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/fs.h"
#include "common/http_client.h"
#include "common/node_report.h"

using json = nlohmann::json;
using swissbox::http::Client;
using swissbox::http::ClientResponse;

namespace {

constexpr const char* kUsage =
    "usage: swissboxctl [--socket PATH | --target HOST:PORT] [--json] COMMAND\n"
    "  ls                          list sandboxes\n"
    "  inspect ID                  show one sandbox\n"
    "  create [--template T]       claim a sandbox, print its id\n"
    "  exec ID -- CMD...           run a command, stream its output, exit with its code\n"
    "  run --lang L FILE|-         one-shot run of a file (python, bash, javascript, typescript)\n"
    "  cp SRC DST                  copy a file in or out: one side is ID:PATH\n"
    "  rm ID                       delete a sandbox\n"
    "  suspend ID | resume ID      put a sandbox to sleep on the node's disk, or wake it\n"
    "  tenants                     every tenant here: sandboxes running and suspended, quota\n"
    "  usage TENANT                a tenant's usage on this node (CPU, memory, disk, network, runs)\n"
    "  delete-tenant TENANT        delete every sandbox, checkpoint, record and usage of a tenant\n"
    "  templates                   every template here: built-in, from an image or packages, with its state\n"
    "  template NAME [IMAGE | apt:X,pip:Y,npm:Z | log | rm]\n"
    "                              show one, make it from an image or from default plus packages,\n"
    "                              show its build log, delete it\n"
    "  pool [POOL=N]               show the warm pools (TEMPLATE or TEMPLATE:egress), or set a target\n"
    "  drain | undrain             stop or resume taking new sandboxes (existing ones go on)\n";

struct Ctl {
  std::string target = "unix:/run/swissbox/agent.sock";
  bool as_json = false;

  Client client() const { return Client(target, std::chrono::minutes(65)); }

  [[noreturn]] static void die(const std::string& msg, int code = 1) {
    fprintf(stderr, "swissboxctl: %s\n", msg.c_str());
    exit(code);
  }

  // Fails with the API's error message for non-2xx answers.
  ClientResponse call(std::string_view method, const std::string& path,
                      std::string body = {}) const {
    auto c = client();
    auto r = c.request(method, path, std::move(body), {{"Content-Type", "application/json"}});
    if (!r) die(r.error().to_string() + " (is the agent running? --socket/--target)");
    if (r->status >= 300) {
      json j = json::parse(r->body, nullptr, false);
      std::string msg =
          j.is_object() && j.contains("error") ? j["error"].value("message", r->body) : r->body;
      die(fmt::format("{} (HTTP {})", msg, r->status));
    }
    return *r;
  }

  static std::string age(double created) {
    long s = static_cast<long>(time(nullptr) - created);
    if (s < 120) return fmt::format("{}s", s);
    if (s < 7200) return fmt::format("{}m", s / 60);
    return fmt::format("{}h", s / 3600);
  }

  int ls() const {
    json j = json::parse(call("GET", "/v1/sandboxes").body);
    if (as_json) return puts(j.dump(2).c_str()), 0;
    printf("%-32s %-12s %-8s %-10s %6s %6s\n", "ID", "TEMPLATE", "STATE", "TENANT", "AGE", "EXECS");
    for (const auto& s : j["sandboxes"]) {
      printf("%-32s %-12s %-8s %-10s %6s %6lu\n", s.value("id", "").c_str(),
             s.value("template", "").c_str(), s.value("state", "").c_str(),
             s.value("tenant", "-").c_str(), age(s.value("created_at", 0.0)).c_str(),
             static_cast<unsigned long>(s["metrics"].value("exec_count", 0)));
    }
    return 0;
  }

  int tenants() const {
    json j = json::parse(call("GET", "/v1/tenants").body);
    if (as_json) return puts(j.dump(2).c_str()), 0;
    printf("%-20s %8s %10s %6s %10s %12s %10s\n", "TENANT", "RUNNING", "SUSPENDED", "CPU", "MEMORY_MB",
           "CPU_SECONDS", "EXECS");
    for (const auto& t : j["tenants"]) {
      const json& u = t["usage"];
      printf("%-20s %8lld %10lld %6.1f %10lld %12.1f %10lld\n", t.value("tenant", "").c_str(),
             static_cast<long long>(t.value("running", 0)), static_cast<long long>(t.value("suspended", 0)),
             t.value("cpu", 0.0), static_cast<long long>(t.value("memory_mb", 0)),
             u.value("cpu_seconds", 0.0), static_cast<long long>(u.value("executions", 0)));
    }
    return 0;
  }

  int templates() const {
    json j = json::parse(call("GET", "/v1/templates").body);
    if (as_json) return puts(j.dump(2).c_str()), 0;
    printf("%-24s %-9s %6s %10s  %s\n", "TEMPLATE", "STATE", "CPU", "MEMORY_MB", "IMAGE");
    for (const auto& t : j["templates"]) {
      const json& l = t["limits"];
      printf("%-24s %-9s %6.1f %10lld  %s\n", t.value("name", "").c_str(), t.value("state", "").c_str(),
             l.value("cpu", 0.0), static_cast<long long>(l.value("memory_mb", 0)),
             t.contains("from") ? ("packages over " + t.value("from", "") + (t.value("builtin", false) ? " (built-in)" : "")).c_str()
             : t.value("builtin", false) ? "(built-in)"
                                         : t.value("image", "").c_str());
      if (t.contains("error")) printf("  error: %s\n", t.value("error", "").c_str());
    }
    return 0;
  }

  // template NAME: show it; NAME IMAGE: make it from an image; NAME apt:x,pip:y,npm:z: from
  // default plus those packages; NAME log: its build log; NAME rm: delete it.
  int template_command(const std::string& name, const std::string& what) const {
    const std::string path = "/v1/templates/" + name;
    if (what == "log") return fputs(call("GET", path + "/log").body.c_str(), stdout), 0;
    if (what == "rm") return call("DELETE", path), 0;
    json body = {{"image", what}};
    json packages = {{"apt", json::array()}, {"pip", json::array()}, {"npm", json::array()}};
    bool all_packages = !what.empty();
    for (size_t from = 0, comma; from <= what.size() && all_packages; from = comma + 1) {
      comma = what.find(',', from);
      if (comma == std::string::npos) comma = what.size();
      std::string item = what.substr(from, comma - from);
      std::string manager = item.substr(0, item.find(':'));
      all_packages = item.find(':') != std::string::npos && packages.contains(manager);
      if (all_packages) packages[manager].push_back(item.substr(manager.size() + 1));
    }
    if (all_packages) body = {{"from", "default"}, {"packages", packages}};
    json j = json::parse(what.empty() ? call("GET", path).body : call("PUT", path, body.dump()).body);
    puts(j.dump(2).c_str());
    return 0;
  }

  int usage(const std::string& tenant) const {
    json j = json::parse(call("GET", "/v1/tenants/" + tenant + "/usage").body);
    if (as_json) return puts(j.dump(2).c_str()), 0;
    const json& u = j["usage"];
    printf("tenant %s on %s: %lld running, %lld suspended\n", tenant.c_str(), j.value("node", "").c_str(),
           static_cast<long long>(j.value("running", 0)), static_cast<long long>(j.value("suspended", 0)));
    printf("  cpu %.1f s, memory %.3f GB*s, disk %.6f GB*h, network in %lld / out %lld bytes\n",
           u.value("cpu_seconds", 0.0), u.value("memory_gb_seconds", 0.0), u.value("disk_gb_hours", 0.0),
           static_cast<long long>(u.value("network_in_bytes", 0)),
           static_cast<long long>(u.value("network_out_bytes", 0)));
    printf("  %lld sandboxes created, %lld executions\n", static_cast<long long>(u.value("sandboxes_created", 0)),
           static_cast<long long>(u.value("executions", 0)));
    return 0;
  }

  int inspect(const std::string& id) const {
    puts(json::parse(call("GET", "/v1/sandboxes/" + id).body).dump(2).c_str());
    return 0;
  }

  int create(const std::string& tmpl) const {
    json j = json::parse(call("POST", "/v1/sandboxes", json{{"template", tmpl}}.dump()).body);
    if (as_json) return puts(j.dump(2).c_str()), 0;
    printf("%s\n", j.value("id", "").c_str());
    return 0;
  }

  // Streams an SSE exec: stdout/stderr events to our stdout/stderr; the exit code of the
  // command becomes ours (128+signal when killed, 124 on timeout like timeout(1)).
  int stream_exec(const std::string& path, const json& body) const {
    auto c = client();
    std::string buf;
    int code = 1;
    bool got_exit = false;
    auto on_data = [&](std::string_view d) {
      buf.append(d);
      size_t end;
      while ((end = buf.find("\n\n")) != std::string::npos) {
        std::string ev = buf.substr(0, end);
        buf.erase(0, end + 2);
        std::string name, data;
        size_t pos = 0;
        while (pos < ev.size()) {
          size_t nl = ev.find('\n', pos);
          std::string line = ev.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
          if (line.rfind("event: ", 0) == 0) name = line.substr(7);
          if (line.rfind("data: ", 0) == 0) data += line.substr(6);
          if (nl == std::string::npos) break;
          pos = nl + 1;
        }
        json j = json::parse(data, nullptr, false);
        if (j.is_discarded()) continue;
        if (name == "stdout" || name == "stderr") {
          std::string s = j.value("data", "");
          fwrite(s.data(), 1, s.size(), name == "stdout" ? stdout : stderr);
          fflush(name == "stdout" ? stdout : stderr);
        } else if (name == "exit") {
          got_exit = true;
          code = j.value("exit_code", 1);
          if (j.value("timed_out", false))
            code = 124;
          else if (j.value("signal", 0))
            code = 128 + j.value("signal", 0);
          if (j.value("truncated", false))
            fprintf(stderr, "swissboxctl: output truncated at the cap\n");
          if (as_json) fprintf(stderr, "%s\n", j.dump().c_str());
        } else if (name == "error") {
          fprintf(stderr, "swissboxctl: %s\n", j.value("message", data).c_str());
        }
      }
    };
    auto r =
        c.stream("POST", path, body.dump(),
                 {{"Accept", "text/event-stream"}, {"Content-Type", "application/json"}}, on_data);
    if (!r) die(r.error().to_string());
    if (r->status >= 300) die(fmt::format("HTTP {}", r->status));
    if (!got_exit) return 1;
    return code;
  }

  int run(const std::string& lang, const std::string& file) const {
    std::string code;
    if (file == "-") {
      code.assign(std::istreambuf_iterator<char>(std::cin), {});
    } else {
      auto r = swissbox::fs::read_file(file, 64 << 20);
      if (!r) die(r.error().to_string());
      code = *r;
    }
    return stream_exec("/v1/execute", {{"language", lang}, {"code", code}});
  }

  int cp(const std::string& src, const std::string& dst) const {
    auto split = [](const std::string& s, std::string* id, std::string* path) {
      auto colon = s.find(':');
      if (colon == std::string::npos || s.rfind("sbx-", 0) != 0) return false;
      *id = s.substr(0, colon);
      *path = s.substr(colon + 1);
      return true;
    };
    std::string id, path;
    if (split(src, &id, &path)) {
      auto r = call("GET", "/v1/sandboxes/" + id + "/files?path=" + url_encode(path));
      if (dst == "-")
        return fwrite(r.body.data(), 1, r.body.size(), stdout) == r.body.size() ? 0 : 1;
      auto st = swissbox::fs::write_file_atomic(dst, r.body);
      if (!st) die(st.error().to_string());
      return 0;
    }
    if (!split(dst, &id, &path)) die("cp: one side must be ID:PATH");
    auto data = swissbox::fs::read_file(src, 64 << 20);
    if (!data) die(data.error().to_string());
    call("PUT", "/v1/sandboxes/" + id + "/files?path=" + url_encode(path), *data);
    return 0;
  }

  int pool(const std::string& arg) const {
    if (!arg.empty()) {
      auto eq = arg.find('=');
      if (eq == std::string::npos) die("pool wants TEMPLATE=N");
      call("PUT", "/v1/warmpool/" + arg.substr(0, eq),
           json{{"target", atoi(arg.c_str() + eq + 1)}}.dump());
    }
    json j = json::parse(call("GET", "/v1/warmpool").body);
    if (as_json) return puts(j.dump(2).c_str()), 0;
    printf("%-20s %6s %6s %8s %6s\n", "TEMPLATE", "TARGET", "READY", "STARTING", "ACTIVE");
    for (auto& [name, p] : j["templates"].items()) {
      printf("%-20s %6d %6d %8d %6d\n", name.c_str(), p.value("target", 0), p.value("ready", 0),
             p.value("starting", 0), p.value("active", 0));
    }
    return 0;
  }

  static std::string url_encode(const std::string& s) {
    std::string out;
    for (unsigned char c : s) {
      if (isalnum(c) || c == '/' || c == '.' || c == '-' || c == '_' || c == '~')
        out.push_back(c);
      else
        out += fmt::format("%{:02X}", c);
    }
    return out;
  }
};

}  // namespace

int main(int argc, char** argv) {
  Ctl ctl;
  std::vector<std::string> args(argv + 1, argv + argc);
  size_t i = 0;
  for (; i < args.size() && args[i].rfind("--", 0) == 0; ++i) {
    if (args[i] == "--json")
      ctl.as_json = true;
    else if (args[i] == "--socket" && i + 1 < args.size())
      ctl.target = "unix:" + args[++i];
    else if (args[i] == "--target" && i + 1 < args.size())
      ctl.target = args[++i];
    else if (args[i] == "--help")
      return fputs(kUsage, stdout), 0;
    else
      return fputs(kUsage, stderr), 2;
  }
  if (i >= args.size()) return fputs(kUsage, stderr), 2;
  std::string cmd = args[i++];
  std::vector<std::string> rest(args.begin() + i, args.end());
  // --json may also follow the command (`swissboxctl ls --json`), but never inside the
  // command line given to exec after `--`.
  for (auto it = rest.begin(); it != rest.end() && *it != "--";) {
    if (*it == "--json") {
      ctl.as_json = true;
      it = rest.erase(it);
    } else {
      ++it;
    }
  }
  if (cmd == "ls" && rest.empty()) return ctl.ls();
  if (cmd == "inspect" && rest.size() == 1) return ctl.inspect(rest[0]);
  if (cmd == "create") {
    std::string tmpl = "default";
    if (rest.size() == 2 && rest[0] == "--template")
      tmpl = rest[1];
    else if (!rest.empty())
      return fputs(kUsage, stderr), 2;
    return ctl.create(tmpl);
  }
  if (cmd == "exec" && rest.size() >= 3 && rest[1] == "--") {
    json argv_json(std::vector<std::string>(rest.begin() + 2, rest.end()));
    return ctl.stream_exec("/v1/sandboxes/" + rest[0] + "/exec", {{"command", argv_json}});
  }
  if (cmd == "run" && rest.size() == 3 && rest[0] == "--lang") return ctl.run(rest[1], rest[2]);
  if (cmd == "cp" && rest.size() == 2) return ctl.cp(rest[0], rest[1]);
  if (cmd == "rm" && rest.size() == 1) {
    ctl.call("DELETE", "/v1/sandboxes/" + rest[0]);
    return 0;
  }
  if (cmd == "pool" && rest.size() <= 1) return ctl.pool(rest.empty() ? "" : rest[0]);
  if ((cmd == "suspend" || cmd == "resume") && rest.size() == 1) {
    json j = json::parse(ctl.call("POST", "/v1/sandboxes/" + rest[0] + "/" + cmd, "{}").body);
    if (ctl.as_json) return puts(j.dump(2).c_str()), 0;
    printf("%s: %s", j.value("id", "").c_str(), j.value("state", "").c_str());
    if (j.contains("checkpoint_bytes")) printf(" (checkpoint %.2f MB)", j.value("checkpoint_bytes", 0) / 1048576.0);
    printf("\n");
    return 0;
  }
  if (cmd == "templates" && rest.empty()) return ctl.templates();
  if (cmd == "template" && (rest.size() == 1 || rest.size() == 2))
    return ctl.template_command(rest[0], rest.size() == 2 ? rest[1] : "");
  if (cmd == "tenants" && rest.empty()) return ctl.tenants();
  if (cmd == "usage" && rest.size() == 1) return ctl.usage(rest[0]);
  if (cmd == "delete-tenant" && rest.size() == 1) {
    json j = json::parse(ctl.call("DELETE", "/v1/tenants/" + rest[0]).body);
    if (ctl.as_json) return puts(j.dump(2).c_str()), 0;
    printf("tenant %s deleted on %s: %d sandboxes\n", rest[0].c_str(), j.value("node", "").c_str(),
           j.value("sandboxes_deleted", 0));
    return 0;
  }
  if ((cmd == "drain" || cmd == "undrain") && rest.empty()) {
    json answer = json::parse(ctl.call("POST", "/v1/node/" + cmd).body);
    if (ctl.as_json) return puts(answer.dump(2).c_str()), 0;
    auto node = swissbox::NodeReport::parse(answer);
    if (!node) return fprintf(stderr, "swissboxctl: %s\n", node.error().to_string().c_str()), 1;
    printf("%s: draining=%s, %d active, %d warm\n", node->node.c_str(), node->draining ? "yes" : "no",
           node->active, node->warm_total());
    return 0;
  }
  fputs(kUsage, stderr);
  return 2;
}
