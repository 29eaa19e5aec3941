// Language workers: an interpreter started ahead of time (Python, or Node with or without
// the TypeScript transpiler loaded) that waits for one program and then becomes it.
//
// Inside gVisor, starting an interpreter is most of a short program's run (measured in a
// sandbox on the dev VM, ptrace: `python3 -c pass` ≈ 37 ms, `node -e 0` ≈ 62 ms, node
// loading typescript ≈ 420 ms; process creation alone ≈ 8–10 ms). A warm worker has paid
// all of that before the request comes: the runner hands it the program over the worker's
// fd 3 (a socket pair) and the worker runs it with the request's environment and working
// directory, as `python3 main.py` / `node main.js` would, on stdio pipes the runner
// already holds. The worker then exits like any program: one worker, one program.
//
// Worker protocol on fd 3: the worker writes "R" once its runtime is loaded; the runner
// writes one JSON line {"file","cwd","env"} and the program's bytes, then shuts down its
// side (EOF ends the program). A Node worker writes "X<exit code>\n" when the program is
// over (its output written): the runner answers then, not after the process's teardown.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runner/spawner.h"
#include "common/unique_fd.h"

namespace swissbox::init {

enum class Language { kPython, kJavaScript, kTypeScript };

std::optional<Language> language_from_name(std::string_view name);
const char* language_name(Language lang);

// The interpreter's command line with the worker bootstrap.
std::vector<std::string> worker_argv(Language lang);

// The program's file name, relative to its working directory: what tracebacks and
// __file__ / module.filename show ("main.py", "main.js", "main.ts").
const char* program_file(Language lang);

// Interpreters read some variables only at start-up (PYTHON*, NODE_*, locale, TZ): a worker
// started with `started` may run a request's program only if these are the same in `wanted`
// ("K=V" entries); otherwise a fresh worker is started with the request's environment.
bool worker_env_compatible(const std::vector<std::string>& started,
                           const std::vector<std::string>& wanted);

// The header line of the worker protocol.
std::string worker_header(Language lang, const std::string& cwd,
                          const std::vector<std::string>& env);

struct Worker {
  Launched io;
  unique_fd channel;  // the runner's end of the worker's fd 3, non-blocking
  std::vector<std::string> env;
  bool ready = false;  // "R" came: the runtime is loaded
};

// Starts a worker: 0, or the errno of the failed start.
int start_worker(Spawner& spawner, Language lang, std::vector<std::string> env,
                 const std::string& cwd, Worker* out);

// Reads the worker's "R" (or EOF) from its channel: true when it is ready; false with
// *dead when the worker closed its end before (it failed to load).
bool read_ready(Worker& w, bool* dead);

// The exit code in what a worker wrote on its channel after the program ("R" first if it
// was never read, then "X<code>\n"); nullopt while incomplete.
std::optional<int> reported_exit(const std::string& reply);

}  // namespace swissbox::init
