#include "runner/workers.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <nlohmann/json.hpp>

namespace swissbox::init {

namespace {

// Runs the program as `python3 main.py` would: a fresh __main__ module, sys.argv, the
// source in linecache for tracebacks (which start at the program's own frames), normal
// interpreter exit (atexit handlers, flushed stdio, SystemExit codes).
constexpr const char* kPythonWorker = R"py(import sys, os, json, builtins, types, linecache
def _swissbox_worker():
    os.write(3, b'R')
    chunks = []
    while True:
        b = os.read(3, 1 << 20)
        if not b:
            break
        chunks.append(b)
    os.close(3)
    data = b''.join(chunks)
    nl = data.index(b'\n')
    h = json.loads(data[:nl])
    code = data[nl + 1:]
    os.environ.clear()
    os.environ.update(h['env'])
    os.chdir(h['cwd'])
    name = h['file']
    sys.argv = [name]
    main = types.ModuleType('__main__')
    main.__file__ = name
    main.__builtins__ = builtins
    sys.modules['__main__'] = main
    linecache.cache[name] = (len(code), None,
                             code.decode('utf-8', 'replace').splitlines(True), name)
    try:
        exec(compile(code, name, 'exec'), main.__dict__)
    except SystemExit:
        raise
    except BaseException as e:
        tb = e.__traceback__
        e = e.with_traceback(tb.tb_next if tb else None)
        if sys.excepthook is sys.__excepthook__:
            import traceback  # reads the source from linecache; the built-in hook does not
            traceback.print_exception(type(e), e, e.__traceback__)
        else:
            sys.excepthook(type(e), e, e.__traceback__)
        sys.exit(1)
_swissbox_worker()
)py";

// Runs the program as a CommonJS main module (`node main.js`); for TypeScript the
// transpiler is loaded (and exercised once) before "R", and the program is transpiled in
// this process: no tsc, nothing on the host.
constexpr const char* kNodeWorker = R"js('use strict';
(() => {
  const fs = require('fs'), path = require('path'), Module = require('module');
  const typescript = process.argv[1] === 'typescript';
  const tsOptions = (ts) => ({module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2020,
                              esModuleInterop: true});
  let ts = null;
  if (typescript) {
    for (const c of ['/usr/share/nodejs/typescript', '/usr/lib/node_modules/typescript',
                     '/usr/local/lib/node_modules/typescript']) {
      try { ts = require(c); break; } catch (e) {}
    }
    if (ts) ts.transpileModule('const x: number = 1;', {compilerOptions: tsOptions(ts)});
  }
  // A process's first console.log creates its stdout stream and loads util.inspect: 7-15 ms
  // in a sandbox, 2 ms once done here, while the worker loads (stdin is left alone).
  process.stdout; process.stderr; require('util').inspect({});
  fs.writeSync(3, 'R');
  const chunks = [], buf = Buffer.allocUnsafe(1 << 20);
  for (;;) {
    const n = fs.readSync(3, buf, 0, buf.length, null);
    if (n === 0) break;
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
  const data = Buffer.concat(chunks);
  const nl = data.indexOf(10);
  const h = JSON.parse(data.subarray(0, nl).toString());
  let code = data.subarray(nl + 1).toString();
  for (const k of Object.keys(process.env)) delete process.env[k];
  Object.assign(process.env, h.env);
  process.chdir(h.cwd);
  const file = path.resolve(h.file);
  if (typescript) {
    if (!ts) {
      process.stderr.write('swissbox: this sandbox image has no TypeScript transpiler\n');
      process.exitCode = 2;
      return;
    }
    const out = ts.transpileModule(code, {fileName: file, reportDiagnostics: true,
                                          compilerOptions: tsOptions(ts)});
    if (out.diagnostics && out.diagnostics.length) {
      for (const d of out.diagnostics) {
        const msg = ts.flattenDiagnosticMessageText(d.messageText, '\n');
        const pos = d.file && d.start !== undefined ?
            d.file.getLineAndCharacterOfPosition(d.start) : null;
        process.stderr.write(`${h.file}${pos ? `:${pos.line + 1}:${pos.character + 1}` : ''}` +
                             ` - error TS${d.code}: ${msg}\n`);
      }
      process.exitCode = 1;
      return;
    }
    code = out.outputText;
  }
  // The exit code goes to the runner once the program's own exit listeners have run (all
  // output is written by then: stdio on pipes is synchronous), so that the process's
  // teardown inside gVisor (20-40 ms for a Node heap) is off the request's path. Node emits
  // 'exit' through process.emit, for process.exit() and for an empty event loop alike.
  // It prints an uncaught exception only after the exit listeners: then the runner waits
  // for the real exit, which comes after the message.
  let crashed = false;
  process.on('uncaughtExceptionMonitor', () => { crashed = true; });
  const emit = process.emit;
  process.emit = function (event, ...args) {
    const result = emit.call(this, event, ...args);
    if (event === 'exit' && !crashed) {
      const code = process.exitCode !== undefined ? process.exitCode : args[0];
      try { fs.writeSync(3, `X${code}\n`); } catch (e) {}
    }
    return result;
  };
  process.argv = [process.argv[0], file];
  const m = new Module(file, null);
  m.filename = file;
  m.paths = Module._nodeModulePaths(path.dirname(file));
  m._compile(code, file);
})();
)js";

bool start_up_variable(std::string_view entry) {
  for (std::string_view p : {"PYTHON", "NODE_", "UV_", "LC_", "LANG=", "LANGUAGE=", "TZ="}) {
    if (entry.substr(0, p.size()) == p) return true;
  }
  return false;
}

std::vector<std::string> start_up_variables(const std::vector<std::string>& env) {
  std::vector<std::string> out;
  for (const auto& e : env) {
    if (start_up_variable(e)) out.push_back(e);
  }
  std::sort(out.begin(), out.end());
  return out;
}

struct LanguageInfo {
  Language language;
  const char* name;
  const char* file;
};
constexpr LanguageInfo kLanguages[] = {{Language::kPython, "python", "main.py"},
                                       {Language::kJavaScript, "javascript", "main.js"},
                                       {Language::kTypeScript, "typescript", "main.ts"}};

const LanguageInfo& info(Language lang) {
  for (const auto& l : kLanguages) {
    if (l.language == lang) return l;
  }
  return kLanguages[0];
}

}  // namespace

std::optional<Language> language_from_name(std::string_view name) {
  for (const auto& l : kLanguages) {
    if (name == l.name) return l.language;
  }
  return std::nullopt;
}

const char* language_name(Language lang) { return info(lang).name; }

const char* program_file(Language lang) { return info(lang).file; }

std::vector<std::string> worker_argv(Language lang) {
  if (lang == Language::kPython) return {"python3", "-c", kPythonWorker};
  return {"node", "-e", kNodeWorker, language_name(lang)};
}

bool worker_env_compatible(const std::vector<std::string>& started,
                           const std::vector<std::string>& wanted) {
  return start_up_variables(started) == start_up_variables(wanted);
}

std::string worker_header(Language lang, const std::string& cwd,
                          const std::vector<std::string>& env) {
  nlohmann::json vars = nlohmann::json::object();
  for (const auto& e : env) {
    auto eq = e.find('=');
    if (eq != std::string::npos) vars[e.substr(0, eq)] = e.substr(eq + 1);
  }
  nlohmann::json h = {{"file", program_file(lang)}, {"cwd", cwd}, {"env", std::move(vars)}};
  return h.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

int start_worker(Spawner& spawner, Language lang, std::vector<std::string> env,
                 const std::string& cwd, Worker* out) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return errno;
  unique_fd mine(sv[0]), theirs(sv[1]);
  LaunchRequest req{worker_argv(lang), env, cwd};
  req.fd3 = theirs.get();
  Worker w;
  if (int err = spawner.launch(req, &w.io)) return err;
  fcntl(mine.get(), F_SETFL, fcntl(mine.get(), F_GETFL) | O_NONBLOCK);
  w.channel = std::move(mine);
  w.env = std::move(env);
  *out = std::move(w);
  return 0;
}

bool read_ready(Worker& w, bool* dead) {
  char c;
  ssize_t n;
  do n = read(w.channel.get(), &c, 1);
  while (n < 0 && errno == EINTR);
  if (n == 1) w.ready = true;
  *dead = n == 0 || (n < 0 && errno != EAGAIN);
  return w.ready;
}

std::optional<int> reported_exit(const std::string& reply) {
  auto x = reply.find('X');
  auto nl = reply.find('\n', x);
  if (x == std::string::npos || nl == std::string::npos || nl == x + 1) return std::nullopt;
  int code = 0;
  for (size_t i = x + 1; i < nl; ++i) {
    if (reply[i] < '0' || reply[i] > '9' || code > 255) return std::nullopt;
    code = code * 10 + (reply[i] - '0');
  }
  return code & 0xff;
}

}  // namespace swissbox::init
