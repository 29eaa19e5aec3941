#!/usr/bin/env bash
# Installs the pinned official E2B SDKs the compatibility tests run, from PyPI and the npm
# registry, into build/e2b (a Python venv and a node_modules), unless they are there.
set -euo pipefail
dir="$(cd "$(dirname "$0")/.." && pwd)/build/e2b"
mkdir -p "$dir"
if [[ ! -x $dir/venv/bin/python ]] || ! "$dir/venv/bin/python" -c 'import e2b_code_interpreter' 2>/dev/null; then
  python3 -m venv "$dir/venv"
  "$dir/venv/bin/pip" install -q --disable-pip-version-check e2b==2.63.0 e2b-code-interpreter==2.11.5
fi
if [[ ! -f $dir/npm/node_modules/@e2b/code-interpreter/package.json ]]; then
  mkdir -p "$dir/npm"
  npm install --prefix "$dir/npm" --no-audit --no-fund --silent e2b@2.51.0 @e2b/code-interpreter@2.8.0
fi
