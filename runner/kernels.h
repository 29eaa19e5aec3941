// Kernels: the long-lived interpreters behind stateful code contexts (runner/contexts.h).
//
// A kernel runs cells, one after another, in one persistent namespace, as a notebook does:
//   python      one __main__ dict; the value of a final expression is shown (text/plain
//               repr, and the _repr_*_ formats an object offers, e.g. a DataFrame's HTML);
//               matplotlib figures shown or left open become PNGs; SIGINT raises
//               KeyboardInterrupt in the cell; tracebacks name the cell ("<cell 3>") and
//               the user's own line numbers.
//   javascript  Node's inspector evaluates each cell in REPL mode (V8's, as a browser
//   typescript  console does): top-level await, and const/let/class redeclared by a later
//               cell replace the earlier binding; the final expression's value is shown with
//               util.inspect. TypeScript cells are transpiled first (types are erased, not
//               checked). A cell cannot be interrupted: SIGINT ends the kernel.
//   bash        one shell evaluates each cell, so variables, functions and the working
//               directory persist; the cell's status is its exit code.
//
// Protocol on the kernel's fd 3 (a socket pair), one JSON object per line from the kernel:
//   {"t":"ready"}                                     loaded, once
//   {"t":"display","data":{is_main_result, text, html, png, …}}   a value shown
//   {"t":"error","name","value","traceback"}          the cell raised
//   {"t":"done"} or, from bash, {"t":"done","exit":N}  the cell is over (its output written)
// The runner writes a cell as a header line and the code's bytes: node reads
// {"bytes":N,"env":{…}}\n, python "N E\n" and E bytes of K=V entries each ended by NUL (it
// parses no JSON: an idle context loads no json module), both set the env for that cell
// only; bash reads N\n (the runner puts the env in front of the code as exports).
#pragma once

#include <map>
#include <string>
#include <vector>

namespace swissbox::init {

enum class KernelLanguage { kPython, kJavaScript, kTypeScript, kBash };

bool kernel_language_from_name(const std::string& name, KernelLanguage* out);
const char* kernel_language_name(KernelLanguage lang);

// The interpreter's command line with the kernel's bootstrap.
std::vector<std::string> kernel_argv(KernelLanguage lang);

// Variables the kernel needs that a user's env does not set (matplotlib without a
// display).
void add_kernel_env(KernelLanguage lang, std::map<std::string, std::string>* env);

// What the runner writes to the kernel for one cell.
std::string kernel_cell(KernelLanguage lang, const std::string& code,
                        const std::map<std::string, std::string>& env);

}  // namespace swissbox::init
