#include "runner/kernels.h"

#include <nlohmann/json.hpp>

namespace swissbox::init {

namespace {

// Runs cells in one __main__ namespace (see kernels.h). Kept small at rest: what it needs
// then is built into the interpreter; traceback, asyncio, base64 and json come on first use.
constexpr const char* kPythonKernel = R"py(import os, sys
def _swissbox_kernel():
    # What it needs at rest is built in (no re, enum, json or ast modules loaded): an idle
    # context costs little more than the interpreter. The rest comes on first use.
    import _signal, _ast, builtins
    from _json import encode_basestring_ascii as quote
    def encode(v):
        if isinstance(v, str):
            return quote(v)
        if v is True or v is False or v is None:
            return 'true' if v is True else 'false' if v is False else 'null'
        if isinstance(v, dict) and all(isinstance(k, str) for k in v):
            return '{' + ','.join(quote(k) + ':' + encode(x) for k, x in v.items()) + '}'
        import json
        return json.dumps(v)
    def send(msg):
        data = encode(msg).encode() + b'\n'
        while data:
            data = data[os.write(3, data):]
    pending = bytearray()
    def read_until(n=None):
        while True:
            if n is None:
                nl = pending.find(b'\n')
                if nl >= 0:
                    line = bytes(pending[:nl])
                    del pending[:nl + 1]
                    return line
            elif len(pending) >= n:
                out = bytes(pending[:n])
                del pending[:n]
                return out
            chunk = os.read(3, 1 << 20)
            if not chunk:
                os._exit(0)
            pending.extend(chunk)
    limit = 256 << 10
    def clip(s):
        s = s.encode('utf-8', 'replace').decode('utf-8')
        return s if len(s) <= limit else s[:limit] + '\u2026'
    formats = (('html', '_repr_html_'), ('markdown', '_repr_markdown_'), ('svg', '_repr_svg_'),
               ('png', '_repr_png_'), ('jpeg', '_repr_jpeg_'), ('latex', '_repr_latex_'),
               ('json', '_repr_json_'), ('javascript', '_repr_javascript_'))
    def figure_png(fig):
        import io, base64
        buf = io.BytesIO()
        fig.savefig(buf, format='png', bbox_inches='tight')
        return base64.b64encode(buf.getvalue()).decode()
    def shown(obj, main):
        data = {'is_main_result': main}
        try:
            data['text'] = clip(repr(obj))
        except BaseException as e:
            data['text'] = '<repr failed: %s>' % type(e).__name__
        if isinstance(obj, type):
            return data
        if type(obj).__module__ == 'matplotlib.figure':
            try:
                data['png'] = figure_png(obj)
            except Exception:
                pass
            return data
        for key, name in formats:
            try:
                f = getattr(obj, name, None)
                v = f() if callable(f) else None
                if isinstance(v, tuple):
                    v = v[0]
                if v is None:
                    continue
                if isinstance(v, bytes):
                    import base64
                    v = base64.b64encode(v).decode()
                if key == 'json':
                    import json
                    json.dumps(v)
                    data[key] = v
                elif isinstance(v, str):
                    data[key] = clip(v)
            except Exception:
                pass
        return data
    def display(*objs):
        for obj in objs:
            send({'t': 'display', 'data': shown(obj, False)})
    def show_figures(*args, **kwargs):
        plt = sys.modules.get('matplotlib.pyplot')
        if plt is None:
            return
        for num in plt.get_fignums():
            fig = plt.figure(num)
            send({'t': 'display', 'data': {'is_main_result': False, 'text': clip(repr(fig)),
                                           'png': figure_png(fig)}})
        plt.close('all')
    class PyplotHook:
        # Once a cell imports matplotlib.pyplot, its show() hands the figures over.
        def find_spec(self, name, path, target=None):
            if name != 'matplotlib.pyplot':
                return None
            sys.meta_path.remove(self)
            import importlib.util
            spec = importlib.util.find_spec(name)
            if spec is None or spec.loader is None:
                return spec
            loader_exec = spec.loader.exec_module
            def exec_module(module):
                loader_exec(module)
                module.show = show_figures
            spec.loader.exec_module = exec_module
            return spec
    sys.meta_path.insert(0, PyplotHook())
    # Output streams line by line as the cell prints it (a print is one write, not two).
    for f in (sys.stdout, sys.stderr):
        f.reconfigure(line_buffering=True)
    main = type(sys)('__main__')
    main.__builtins__ = builtins
    main.display = display
    sys.modules['__main__'] = main
    ns = main.__dict__
    del sys.argv[:]
    sys.argv.append('')
    sources = {}
    loop = None
    flags = _ast.PyCF_ONLY_AST | getattr(_ast, 'PyCF_ALLOW_TOP_LEVEL_AWAIT', 0x2000)
    def run(code, name):
        nonlocal loop
        sources[name] = code
        tree = compile(code, name, 'exec', flags)
        last = None
        if tree.body and isinstance(tree.body[-1], _ast.Expr):
            last = _ast.Expression(tree.body.pop().value)
        for part, mode in ((tree, 'exec'), (last, 'eval')):
            if part is None:
                continue
            compiled = compile(part, name, mode, flags & ~_ast.PyCF_ONLY_AST)
            value = eval(compiled, ns)
            if compiled.co_flags & 0x80:  # CO_COROUTINE: the cell awaited at its top level
                if loop is None:
                    import asyncio
                    loop = asyncio.new_event_loop()
                value = loop.run_until_complete(value)
            if mode == 'eval' and value is not None:
                ns['_'] = value
                send({'t': 'display', 'data': shown(value, True)})
    def report(e):
        import linecache, traceback  # the cells' sources for the traceback's lines
        for name, code in sources.items():
            linecache.cache[name] = (len(code), None, code.splitlines(True), name)
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == '<string>':
            tb = tb.tb_next  # the kernel's own frames
        if isinstance(e, SyntaxError):  # raised by the parser: no frame of the cell's
            lines = traceback.format_exception_only(type(e), e)
        else:
            lines = traceback.format_exception(type(e), e, tb)
        send({'t': 'error', 'name': type(e).__name__, 'value': clip(str(e)),
              'traceback': clip(''.join(lines))})
    os.write(3, b'{"t":"ready"}\n')
    cells = 0
    while True:
        _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
        # "<code bytes> <env bytes>\n", the env as K=V entries each ended by NUL, the code.
        code_bytes, env_bytes = map(int, read_until().split())
        env = dict(e.split('=', 1) for e in read_until(env_bytes).decode('utf-8', 'replace').split('\0') if e)
        code = read_until(code_bytes).decode('utf-8', 'replace')
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        cells += 1
        raised = None
        if cells == 1:
            try:
                import site  # started with -S: what it sets up comes with the first cell
                site.main()
            except Exception:
                pass
        _signal.signal(_signal.SIGINT, _signal.default_int_handler)
        try:
            run(code, '<cell %d>' % cells)
        except BaseException as e:
            raised = e
        _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
        if raised is not None:
            report(raised)
            raised = None
        try:
            show_figures()
        except Exception as e:
            report(e)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except Exception:
                pass
        send({'t': 'done'})
_swissbox_kernel()
)py";

// Evaluates cells through the inspector in REPL mode (see kernels.h).
constexpr const char* kNodeKernel = R"js('use strict';
(() => {
  const fs = require('fs'), net = require('net'), path = require('path'), util = require('util');
  const inspector = require('inspector'), Module = require('module');
  const typescript = process.argv[1] === 'typescript';
  let ts = null;
  if (typescript) {
    for (const c of ['/usr/share/nodejs/typescript', '/usr/lib/node_modules/typescript',
                     '/usr/local/lib/node_modules/typescript']) {
      try { ts = require(c); break; } catch (e) {}
    }
    if (!ts) {
      process.stderr.write('swissbox: this sandbox image has no TypeScript transpiler\n');
      process.exit(2);
    }
  }
  const session = new inspector.Session();
  session.connect();
  const post = (method, params) => new Promise((resolve) =>
      session.post(method, params, (error, result) => resolve(error ? {error} : result)));
  const inspect = (v) => util.inspect(v, {depth: 4, maxArrayLength: 200, maxStringLength: 100000});
  Object.defineProperty(globalThis, Symbol.for('swissbox.inspect'), {value: inspect});
  globalThis.require = Module.createRequire(path.join(process.cwd(), '[cell]'));
  globalThis.exports = {};  // what CommonJS output of a TypeScript cell with imports expects
  // An error in a callback or an unhandled rejection is reported, and the context lives on.
  process.on('uncaughtException', (e) => console.error('Uncaught', e));
  process.on('unhandledRejection', (e) => console.error('Unhandled promise rejection:', e));
  const chan = new net.Socket({fd: 3, readable: true, writable: true});
  const send = (m) => chan.write(JSON.stringify(m) + '\n');
  let pending = Buffer.alloc(0), header = null, cells = 0, queue = Promise.resolve();
  chan.on('data', (d) => {
    pending = Buffer.concat([pending, d]);
    for (;;) {
      if (!header) {
        const nl = pending.indexOf(10);
        if (nl < 0) return;
        header = JSON.parse(pending.subarray(0, nl).toString());
        pending = pending.subarray(nl + 1);
      }
      if (pending.length < header.bytes) return;
      const code = pending.subarray(0, header.bytes).toString();
      const env = header.env || {};
      pending = pending.subarray(header.bytes);
      header = null;
      queue = queue.then(() => run(code, env));
    }
  });
  chan.on('end', () => process.exit(0));
  chan.on('error', () => process.exit(0));
  const clip = (s) => s.length <= 262144 ? s : s.slice(0, 262144) + '\u2026';
  const kernelFrames = /\n\s+at [^\n]*node:inspector[\s\S]*$/;
  async function text(o) {
    if (o.objectId === undefined) {
      return o.unserializableValue !== undefined ? o.unserializableValue : inspect(o.value);
    }
    const r = await post('Runtime.callFunctionOn', {objectId: o.objectId, returnByValue: true,
        functionDeclaration: 'function () { return globalThis[Symbol.for("swissbox.inspect")](this); }'});
    return r.result ? String(r.result.value) : String(o.description);
  }
  async function raised(details) {
    const ex = details.exception;
    if (!ex || ex.objectId === undefined) {
      const v = ex ? await text(ex) : details.text;
      return {name: 'Error', value: v, traceback: `Uncaught ${v}`};
    }
    // A syntax error has no frame of the cell: where it is comes with the details.
    const at = `    at ${details.url || 'cell'}:${details.lineNumber + 1}:${details.columnNumber + 1}`;
    const r = await post('Runtime.callFunctionOn', {objectId: ex.objectId, returnByValue: true,
        functionDeclaration: 'function () { return this instanceof Error ? ' +
            '{name: this.name, message: this.message, stack: String(this.stack)} : null; }'});
    const e = r.result && r.result.value;
    if (!e) {
      const v = await text(ex);
      return {name: 'Error', value: v, traceback: `Uncaught ${v}`};
    }
    let stack = e.stack.replace(kernelFrames, '');
    if (!stack.includes('\n')) stack += '\n' + at;
    return {name: String(e.name), value: clip(String(e.message)), traceback: clip(stack)};
  }
  async function run(code, env) {
    const name = `cell-${++cells}.${typescript ? 'ts' : 'js'}`;
    const saved = {};
    for (const k of Object.keys(env)) saved[k] = process.env[k], process.env[k] = env[k];
    try {
      if (ts) {
        const out = ts.transpileModule(code, {fileName: name, reportDiagnostics: true,
            compilerOptions: {target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.CommonJS,
                              esModuleInterop: true}});
        if (out.diagnostics && out.diagnostics.length) {
          const d = out.diagnostics[0];
          const msg = ts.flattenDiagnosticMessageText(d.messageText, '\n');
          const pos = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start) : null;
          const where = pos ? `${name}:${pos.line + 1}:${pos.character + 1}` : name;
          return send({t: 'error', name: 'SyntaxError', value: msg,
                       traceback: `${where} - error TS${d.code}: ${msg}`});
        }
        code = out.outputText;
      }
      const r = await post('Runtime.evaluate', {expression: `${code}\n//# sourceURL=${name}`,
          replMode: true, awaitPromise: true, objectGroup: 'cell'});
      if (r.error) {
        send({t: 'error', name: 'Error', value: String(r.error.message), traceback: ''});
      } else if (r.exceptionDetails) {
        send(Object.assign({t: 'error'}, await raised(r.exceptionDetails)));
      } else if (r.result.type !== 'undefined') {
        send({t: 'display', data: {is_main_result: true, text: clip(await text(r.result))}});
      }
    } catch (e) {
      send({t: 'error', name: 'Error', value: String(e), traceback: String(e.stack)});
    } finally {
      session.post('Runtime.releaseObjectGroup', {objectGroup: 'cell'});
      for (const k of Object.keys(saved)) {
        if (saved[k] === undefined) delete process.env[k]; else process.env[k] = saved[k];
      }
      send({t: 'done'});
    }
  }
  send({t: 'ready'});
})();
)js";

// One shell; a cell is evaluated in it, so what it sets stays. SIGINT (a timeout) ends the
// cell's foreground program and the shell goes on.
constexpr const char* kBashKernel = R"sh(trap : INT
printf '{"t":"ready"}\n' >&3
while IFS= read -r -u 3 __swissbox_bytes; do
  __swissbox_cell=
  [[ $__swissbox_bytes == 0 ]] || LC_ALL=C IFS= read -r -d '' -N "$__swissbox_bytes" -u 3 __swissbox_cell
  eval "$__swissbox_cell"
  printf '{"t":"done","exit":%d}\n' "$?" >&3
done
)sh";

struct KernelInfo {
  KernelLanguage language;
  const char* name;
};
constexpr KernelInfo kKernels[] = {{KernelLanguage::kPython, "python"},
                                   {KernelLanguage::kJavaScript, "javascript"},
                                   {KernelLanguage::kTypeScript, "typescript"},
                                   {KernelLanguage::kBash, "bash"}};

// A value in single quotes for bash: every ' becomes '\''.
std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

}  // namespace

bool kernel_language_from_name(const std::string& name, KernelLanguage* out) {
  for (const auto& k : kKernels) {
    if (name == k.name) return *out = k.language, true;
  }
  return false;
}

const char* kernel_language_name(KernelLanguage lang) {
  for (const auto& k : kKernels) {
    if (k.language == lang) return k.name;
  }
  return "?";
}

std::vector<std::string> kernel_argv(KernelLanguage lang) {
  switch (lang) {
    // -S: site (site-packages, .pth files, 30 modules) loads before the first cell, so an
    // idle context does not carry it.
    case KernelLanguage::kPython: return {"python3", "-S", "-c", kPythonKernel};
    case KernelLanguage::kBash: return {"/bin/bash", "-c", kBashKernel};
    default: return {"node", "-e", kNodeKernel, kernel_language_name(lang)};
  }
}

void add_kernel_env(KernelLanguage lang, std::map<std::string, std::string>* env) {
  if (lang != KernelLanguage::kPython) return;
  env->emplace("MPLBACKEND", "Agg");
}

std::string kernel_cell(KernelLanguage lang, const std::string& code,
                        const std::map<std::string, std::string>& env) {
  if (lang == KernelLanguage::kBash) {
    std::string prefix;
    for (const auto& [k, v] : env) prefix += "export " + k + "=" + shell_quote(v) + "\n";
    return std::to_string(prefix.size() + code.size()) + "\n" + prefix + code;
  }
  if (lang == KernelLanguage::kPython) {
    std::string block;
    for (const auto& [k, v] : env) block += k + "=" + v + '\0';
    return std::to_string(code.size()) + " " + std::to_string(block.size()) + "\n" + block + code;
  }
  nlohmann::json h = {{"bytes", code.size()}, {"env", env}};
  return h.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n" + code;
}

}  // namespace swissbox::init
