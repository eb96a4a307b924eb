#!/usr/bin/env bash
# Instructions the server executes per request, counted by valgrind's callgrind: a figure
# that does not move with the machine's load, for comparing two builds of the gateway
# where requests per second cannot tell a few percent apart.
#
#   bash crates/tenantry-server/benches/instructions_per_request.sh [path/to/tenantry]
#
# Needs valgrind and wrk (apt-get install -y valgrind wrk). Starts the server under
# callgrind with instrumentation off, warms each route for 2 s with `wrk -c8`, counts the
# instructions of every thread over 6 s of the same load, and divides by the requests wrk
# completed. Prints `healthz_instructions_per_request` and
# `invoke_instructions_per_request` (POST .../invoke/tenant-db.query, as the http bench).
# Counts are those of callgrind's simulated CPU: library paths chosen by CPU features
# (SHA-NI, AVX-512 memcpy) may differ from a native run, so compare builds, not machines.
set -euo pipefail

bin=${1:-target/release/tenantry}
port=${TENANTRY_BENCH_PORT:-7979}
base="http://127.0.0.1:$port"
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

cat >"$work/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"sql": "select * from orders", "limit": 3}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer demo-acme-key"
EOF

valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/cg.out" \
  "$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$port" >"$work/log" 2>&1 &
server=$!
for _ in $(seq 120); do
  curl -sf "$base/healthz" >/dev/null && break
  sleep 1
done

# measure NAME WRK_ARGS...: instructions per request over 6 s of that load.
measure() {
  local name=$1
  shift
  wrk -t1 -c8 -d2s "$@" >/dev/null
  callgrind_control -i on "$server" >/dev/null 2>&1
  local requests
  requests=$(wrk -t1 -c8 -d6s "$@" | awk '/requests in/ {print $1}')
  callgrind_control -d "$server" >/dev/null 2>&1
  callgrind_control -i off "$server" >/dev/null 2>&1
  sleep 1
  local dump instructions
  dump=$(ls -t "$work"/cg.out.* | head -1)
  instructions=$(awk '/^summary:/ {print $2; exit}' "$dump")
  callgrind_control -z "$server" >/dev/null 2>&1
  echo "${name}_instructions_per_request: $((instructions / requests)) instructions"
}

measure healthz "$base/healthz"
measure invoke -s "$work/post.lua" "$base/v1/partitions/acme/invoke/tenant-db.query"
