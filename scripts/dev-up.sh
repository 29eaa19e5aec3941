#!/usr/bin/env bash
# Installs what is missing, builds, starts a single-node swissbox (agent with a warm pool
# of runsc sandboxes) in the background, and shows a real execution.
# Stop it with: kill $(cat /run/swissbox/agent.pid)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target swissbox-agent swissbox-init swissboxctl

mkdir -p /run/swissbox
pidfile=/run/swissbox/agent.pid
if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "dev-up: stopping the agent started earlier (pid $(cat "$pidfile"))"
  kill "$(cat "$pidfile")"
  for _ in $(seq 100); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.2; done
fi

log=build/agent.log
setsid build/bin/swissbox-agent --listen 127.0.0.1:7700 --pool default=2 "$@" >"$log" 2>&1 </dev/null &
echo $! >"$pidfile"
echo "dev-up: agent pid $(cat "$pidfile"), log $log; waiting for the warm pool"
for _ in $(seq 150); do
  curl -sf http://127.0.0.1:7700/readyz >/dev/null 2>&1 && break
  kill -0 "$(cat "$pidfile")" 2>/dev/null || { cat "$log"; echo "dev-up: the agent exited" >&2; exit 1; }
  sleep 0.2
done
curl -sf http://127.0.0.1:7700/readyz >/dev/null || { tail -20 "$log"; echo "dev-up: pool not warm" >&2; exit 1; }

echo
echo '$ curl -s -XPOST http://127.0.0.1:7700/v1/execute -d '"'"'{"language":"python","code":"print(6*7)"}'"'"
curl -s -XPOST http://127.0.0.1:7700/v1/execute -d '{"language":"python","code":"print(6*7)"}'
echo
echo '$ build/bin/swissboxctl pool'
build/bin/swissboxctl pool
echo
echo "dev-up: swissbox is running on http://127.0.0.1:7700 and /run/swissbox/agent.sock"
