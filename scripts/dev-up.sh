#!/usr/bin/env bash
# Installs what is missing, builds, starts a single-node swissbox in the background (an
# agent with a warm pool of runsc sandboxes, and a scheduler in front of it), and shows a
# real execution through the scheduler.
# Stop it with: kill $(cat /run/swissbox/scheduler.pid) $(cat /run/swissbox/agent.pid)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target swissbox-agent swissbox-init swissboxctl swissbox-scheduler

mkdir -p /run/swissbox
for old in /run/swissbox/scheduler.pid /run/swissbox/agent.pid; do
  if [[ -f $old ]] && kill -0 "$(cat "$old")" 2>/dev/null; then
    echo "dev-up: stopping the process started earlier (pid $(cat "$old"))"
    kill "$(cat "$old")"
    for _ in $(seq 100); do kill -0 "$(cat "$old")" 2>/dev/null || break; sleep 0.2; done
  fi
done
pidfile=/run/swissbox/agent.pid

log=build/agent.log
# Sandboxes have no network unless they ask for "egress": then they get a /30 out of
# 10.200.0.0/24 and reach allowlisted hosts through the agent's proxy on port 3128.
# Language pools hold an interpreter already loaded, so one-shots start no process.
setsid build/bin/swissbox-agent --listen 127.0.0.1:7700 --max-sandboxes 64 \
  --pool default=2 --pool default+python=2 --pool default+javascript=1 \
  --pool default+typescript=1 --pool default:egress=1 --pool code-interpreter=1 \
  --egress-pool 10.200.0.0/24 "$@" >"$log" 2>&1 </dev/null &
echo $! >"$pidfile"
echo "dev-up: agent pid $(cat "$pidfile"), log $log; waiting for the warm pool"
for _ in $(seq 150); do
  curl -sf http://127.0.0.1:7700/readyz >/dev/null 2>&1 && break
  kill -0 "$(cat "$pidfile")" 2>/dev/null || { cat "$log"; echo "dev-up: the agent exited" >&2; exit 1; }
  sleep 0.2
done
curl -sf http://127.0.0.1:7700/readyz >/dev/null || { tail -20 "$log"; echo "dev-up: pool not warm" >&2; exit 1; }

# The scheduler in front: this dev agent reports region "dev", so that is the allowed one.
setsid build/bin/swissbox-scheduler --listen 127.0.0.1:7800 --agents 127.0.0.1:7700 \
  --allowed-regions dev >build/scheduler.log 2>&1 </dev/null &
echo $! >/run/swissbox/scheduler.pid
for _ in $(seq 50); do
  curl -sf http://127.0.0.1:7800/readyz >/dev/null 2>&1 && break
  sleep 0.2
done
curl -sf http://127.0.0.1:7800/readyz >/dev/null || { tail -20 build/scheduler.log; echo "dev-up: scheduler not ready" >&2; exit 1; }

echo
echo '$ curl -s -XPOST http://127.0.0.1:7800/v1/execute -d '"'"'{"language":"python","code":"print(6*7)"}'"'"
curl -s -XPOST http://127.0.0.1:7800/v1/execute -d '{"language":"python","code":"print(6*7)"}'
echo
echo '$ build/bin/swissboxctl pool'
build/bin/swissboxctl pool
echo
echo "dev-up: the scheduler is on http://127.0.0.1:7800, the agent on http://127.0.0.1:7700 and /run/swissbox/agent.sock"
